# compile: jac x: f32[3]
import jax
import jax.numpy as jnp


def f2(x):
    return jnp.array([
        x[0]**2 + x[1]**2 - x[1] * x[2],
        x[0]**2 - x[1]**2 + 3 * x[0] * x[2],
    ])


def jac(x):
    return jax.jacrev(f2)(x)
