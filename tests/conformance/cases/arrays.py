# Building and reshaping arrays: concatenate, stack, split, tile, repeat, flip, pad, cumsum.
import jax
import jax.numpy as jnp

A = jnp.arange(6.0).reshape(2, 3)
v = jnp.array([1.0, -2.0, 3.0])
# eval: jnp.concatenate([A, A * 10.0], axis=1)
# eval: jnp.concatenate((v, v[:2], jnp.array([7.0])))
# eval: jnp.stack([v, v * 2.0], axis=1)
# eval: (jnp.hstack([v, v]), jnp.vstack([v, v]), jnp.hstack([A, A]))
# eval: jnp.split(jnp.arange(6.0), 3)
# eval: jnp.split(A, [1, 2], axis=1)
# eval: (jnp.tile(v, 2), jnp.tile(A, (2, 1)))
# eval: (jnp.repeat(v, 2), jnp.repeat(A, 2, axis=0))
# eval: (jnp.flip(A), jnp.flip(A, axis=1))
# eval: (jnp.pad(v, 2), jnp.pad(A, ((1, 0), (0, 2)), constant_values=-1.0))
# eval: (jnp.cumsum(v), jnp.cumsum(A, axis=1), jnp.cumsum(A))
# eval: jnp.broadcast_to(v, (2, 3))
# eval: jax.grad(lambda x: jnp.sum(jnp.concatenate([x, x ** 2]) * jnp.arange(6.0)))(v)
# eval: jax.grad(lambda x: jnp.sum(jnp.cumsum(x) ** 2))(v)
# eval: jax.grad(lambda x: jnp.sum(jnp.tile(x, 2) * jnp.repeat(x, 2) + jnp.pad(jnp.flip(x), (1, 2)) ** 2))(v)
# eval: jax.jacfwd(lambda x: jnp.stack([x, jnp.sin(x)]))(v)
