# SELU, the example of the tutorial's JIT chapter.
import jax
import jax.numpy as jnp


@jax.jit
def selu(x, alpha=1.6732632423543772, scale=1.0507009873554805):
    """Scaled exponential linear unit."""
    return scale * jnp.where(x > 0, x, alpha * jnp.exp(x) - alpha)
