# The remaining elementwise functions: round, inverse trigonometry, arctan2, erf, exact gelu.
import jax
import jax.numpy as jnp
from jax.scipy.special import erf

X = jnp.array([-0.9, -0.25, 0.0, 0.5, 0.75])
# eval: (jnp.round(X * 2.0), jnp.round(jnp.array([0.5, 1.5, 2.5, -0.5])), jnp.round(X, 1))
# eval: (jnp.arcsin(X), jnp.arccos(X), jnp.arctan(X * 3.0))
# eval: jnp.arctan2(X, jnp.array([1.0, -1.0, -1.0, 0.0, 2.0]))
# eval: (erf(X), jax.nn.gelu(X, approximate=False))
# eval: jax.grad(lambda x: jnp.sum(jnp.arcsin(x) + jnp.arctan2(x, 2.0) + erf(x) + jnp.round(x)))(X)
# eval: (jnp.prod(X), jnp.prod(X.reshape(5, 1) + 1.0, axis=0), jnp.prod(jnp.array([2, 3, 4])))
# eval: jax.grad(lambda x: jnp.prod(x))(X)
# eval: jax.grad(lambda x: jnp.sum(jnp.prod(x.reshape(5, 1) * jnp.ones((5, 2)) + x.reshape(5, 1), axis=0)))(X + 1.0)
