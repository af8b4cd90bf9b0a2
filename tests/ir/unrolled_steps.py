# compile: f x: f32[4]
# A Python loop of elementwise steps: one generic at `linalg`, its constants in its body
# (`elementwise-runs`), which keeps the compile time linear in the number of steps.
import jax.numpy as jnp


def f(x):
    for i in range(3):
        x = jnp.sin(x) * 0.5 + x * 0.25 + i
    return x
