import jax
import jax.numpy as jnp


def f(x):
    return jnp.sin(x)

# error: jax.vjp(f, jnp.ones(3))[1](jnp.ones(2))
