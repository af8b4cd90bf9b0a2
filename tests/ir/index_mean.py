# compile: f x: f32[3,4]
import jax.numpy as jnp


def f(x):
    row = x[1]
    return row[::2].mean() + x[:, -1].max() + jnp.sum(x > 0)
