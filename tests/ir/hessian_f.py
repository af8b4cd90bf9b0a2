# compile: h x1: f32[], x2: f32[]
import jax
import jax.numpy as jnp


def f(x1, x2):
    return x1 * x2 + jnp.sin(x1 * x2)


def h(x1, x2):
    return jax.hessian(f, argnums=0)(x1, x2)
