# compile: f x: f32[4], i: i32[2]
import jax
import jax.numpy as jnp


def f(x, i):
    picked = x[i] * jnp.flip(x)[:2]
    updated = x.at[1:3].set(picked)
    joined = jnp.concatenate([updated, jnp.cumsum(x)])
    return jax.grad(lambda v: jnp.prod(jnp.arctan2(v, 2.0)) + jnp.sum(jax.scipy.special.erf(v) * jnp.round(v)))(joined)
