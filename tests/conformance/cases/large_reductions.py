# Reductions over every axis of large inputs, which are split into pieces that threads reduce
# (262,144 elements or more): sums, products, extrema, booleans, integers, a mean, a norm, and
# a gradient through one. Sizes with and without a divisor that makes such pieces.
import jax
import jax.numpy as jnp

X = jnp.sin(0.001 * jnp.arange(1_000_000, dtype=jnp.float32))
Y = jnp.cos(0.002 * jnp.arange(1_000_000, dtype=jnp.float32))
M = jnp.sin(0.01 * jnp.arange(512 * 1024, dtype=jnp.float32)).reshape(512, 1024)
N = jnp.arange(300_007, dtype=jnp.int32)


def dist(x, y, order):
    return jnp.power(jnp.sum(jnp.abs(x - y) ** order), 1.0 / order)


# eval: jnp.sum(X)
# eval: jnp.sum(jnp.abs(X - Y) ** 3)
# eval: dist(X, Y, 2)
# eval: jnp.max(X * Y)
# eval: jnp.min(M)
# eval: jnp.sum(M)
# eval: jnp.mean(M * M)
# eval: jnp.prod(jnp.where(jnp.arange(524_288) % 65_536 == 0, 2.0, 1.0))
# eval: jnp.sum(jnp.arange(1_048_576, dtype=jnp.int32) % 7)
# eval: jnp.sum(N)
# eval: jnp.any(X > 0.99999)
# eval: jnp.all(jnp.abs(X) <= 1.0)
# eval: jnp.argmax(X)
# eval: jnp.sqrt(jnp.sum(Y * Y))
# eval: jax.grad(lambda x: jnp.sum(jnp.exp(0.5 * x) * x))(X)[::99_999]
# eval: jax.grad(dist)(X, Y, 2)[::123_457]
