# compile: dist2 x: f32[262144], y: f32[262144]
import jax.numpy as jnp


# A sum over every element of an input this large is split: 64 pieces of 4,096 elements are
# reduced in a parallel loop (the elementwise producer fused into it), then the 64 partial sums.
def dist2(x, y):
    return jnp.sqrt(jnp.sum((x - y) ** 2))
