import jax
from jax import lax


def triangle(x):
    return lax.fori_loop(0, 3, lambda i, c: lax.fori_loop(0, i, lambda j, e: e * x, c), x)  # <- error

# error: jax.grad(triangle)(1.1)
