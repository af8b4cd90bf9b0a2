# libm functions on arrays long enough that their loops are vectorised (2,048 elements and
# more), where the JIT and the cache call glibc's vector variants (not for sin, cos and tan).
import jax
import jax.numpy as jnp
from jax.scipy.special import erf

# Grids whose elements are single products, so exact on both sides.
X = jnp.arange(-2048, 2048) * 0.0029296875
P = jnp.arange(1, 4097) * 0.01220703125
U = jnp.arange(-2048, 2048) * (0.999 / 2048)
W = jnp.arange(4096) * (1.0 / 4096) + 0.5


def summary(v):
    """A weighted sum, the largest magnitude and a few elements of a long result."""
    return jnp.sum(v * W), jnp.max(jnp.abs(v)), v[::512]


# eval: (summary(jnp.sinh(X)), summary(jnp.cosh(X)), summary(jnp.exp2(X)), summary(jnp.cbrt(P)))
# eval: (summary(jnp.log(P)), summary(jnp.log1p(P)), summary(jnp.expm1(X)))
# eval: (summary(jnp.tanh(X)), summary(jnp.arctan(X)), summary(jnp.arcsin(U)), summary(erf(X)))
# eval: (summary(jnp.power(P, 0.37)), summary(jnp.arctan2(X, P)))
# eval: jax.grad(lambda x: jnp.sum(jnp.sin(x) * jnp.log(jnp.abs(x) + 1.0)))(X)[::256]
