# jax.nn, logsumexp, and the remaining reductions and elementwise functions.
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

X = jnp.array([[-2.0, -0.5, 0.0], [0.5, 2.0, 30.0]])
# eval: jax.nn.relu(X)
# eval: jax.nn.sigmoid(X)
# eval: jax.nn.softplus(X)
# eval: jax.nn.silu(X)
# eval: jax.nn.gelu(X)
# eval: jax.nn.elu(X)
# eval: jax.nn.selu(X)
# eval: jax.nn.leaky_relu(X)
# eval: jax.nn.one_hot(jnp.array([0, 2, 1]), 3)
# eval: jax.nn.softmax(X)
# eval: jax.nn.log_softmax(X, axis=0)
# eval: jax.nn.logsumexp(X, axis=1)
# eval: logsumexp(X)
# eval: jax.grad(lambda x: jnp.sum(jax.nn.relu(x) + jax.nn.softplus(x) + jax.nn.sigmoid(x)))(X)
# eval: jax.grad(lambda x: jnp.sum(jax.nn.log_softmax(x) * jnp.array([1.0, 0.0, 0.0])))(X)
# eval: jax.grad(lambda x: logsumexp(x))(X)
# eval: (jnp.argmax(X), jnp.argmin(X, axis=1), jnp.all(X > -3.0), jnp.any(X > 10.0, axis=0))
# eval: (jnp.var(X), jnp.std(X, axis=1, ddof=1))
# eval: jnp.expand_dims(jnp.squeeze(jnp.ones((1, 3, 1))), 0).shape
# eval: (jnp.ceil(X), jnp.exp2(X), jnp.log2(jnp.abs(X) + 1.0), jnp.log10(jnp.abs(X) + 1.0))
# eval: (jnp.sinh(X), jnp.cosh(X[0]), jnp.tan(X[0]), jnp.cbrt(X), jnp.arcsinh(X), jnp.arctanh(X[0] * 0.3), jnp.arccosh(X[1] + 3.0))
# eval: (jnp.isfinite(X / 0.0), jnp.isnan(X * 0.0 / 0.0), jnp.logical_xor(X > 0.0, X > 1.0))
