# compile: tangent p: f32[], x: f32[3]
# Forward mode through lax.cond: one scf.if whose branches return values and tangents.
import jax
import jax.numpy as jnp
from jax import lax


def branch(p, x):
    return lax.cond(p > 0.0, lambda v: jnp.sin(v), lambda v: v * v, x)


def tangent(p, x):
    return jax.jvp(lambda v: branch(p, v), (x,), (jnp.ones_like(x),))[1]
