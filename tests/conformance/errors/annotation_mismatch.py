from __future__ import annotations

import jax.numpy as jnp


def pairwise(x: f32[n], y: f32[n]) -> f32[n]:  # <- error
    return x * y

# error: pairwise(jnp.ones(3), jnp.ones(4))
