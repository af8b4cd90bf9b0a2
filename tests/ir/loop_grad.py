# compile: dpower x: f32[2]
# Reverse mode through a loop: the forward loop stacks its carry, the backward loop
# recomputes each iteration from the stack and transposes it.
import jax
import jax.numpy as jnp
from jax import lax


def power(x):
    return jnp.sum(lax.fori_loop(0, 3, lambda i, c: c * x, jnp.ones_like(x)))


def dpower(x):
    return jax.grad(power)(x)
