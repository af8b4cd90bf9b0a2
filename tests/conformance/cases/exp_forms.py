# float32 exp and the forms its lowering takes: a product with a constant computed by the
# polynomial (`k * exp(x)`), and exp observed only where a `where` bounds its argument (no
# overflow test), at NaN, infinities, the overflow and underflow edges and beyond.
import jax
import jax.numpy as jnp

EDGES = jnp.array([jnp.nan, jnp.inf, -jnp.inf, 0.0, -0.0, 1.5, 88.0, 88.2, 88.72283, 88.72284,
                   -87.33, -87.34, -88.0, -103.0, -150.0, 1e30, -1e30, 3.4e38, -3.4e38])
X = jnp.linspace(-100.0, 100.0, 41)


def selu(x, alpha=1.6732632423543772, scale=1.0507009873554805):
    return scale * jnp.where(x > 0, x, alpha * jnp.exp(x) - alpha)


def show(v):
    """NaN, +inf and -inf as flags, the finite values as they are (expectations hold only
    finite numbers)."""
    return jnp.isnan(v), v == jnp.inf, v == -jnp.inf, jnp.where(jnp.isfinite(v), v, 0.0)


# eval: (show(jnp.exp(EDGES)), show(jnp.exp(X)))
# eval: (show(1.6732632423543772 * jnp.exp(EDGES)), show(jnp.exp(X) * 1.6732632423543772))
# eval: (show(jnp.exp(EDGES) * 0.001), show(jnp.exp(X) * 0.001))
# eval: (show(jnp.exp(EDGES) * 1000.0), show(jnp.exp(X) * 1000.0))
# eval: (show(selu(EDGES)), selu(X))
# eval: show(jnp.where(EDGES <= 2.0, jnp.exp(EDGES) * 3.0, 0.0))
# eval: jnp.where(2.0 > X, 5.0 - jnp.exp(X), X)
# eval: show(jnp.where(EDGES < -1.0, -jnp.exp(EDGES), jnp.exp(EDGES)))
# eval: show(jax.grad(lambda x: jnp.sum(selu(x)))(X))
