# Integer-array indices combined with slices, integers, None and ...: where the gathered
# dimensions land (together: in place; apart: first), broadcasting of several arrays,
# negative and clamped indices, `.at[...]` updates (out-of-range ones dropped), and
# derivatives.
import jax
import jax.numpy as jnp

X = jnp.arange(12.0).reshape(3, 4)
Y = jnp.arange(60.0).reshape(3, 4, 5)
i = jnp.array([0, 2, -1])
j = jnp.array([[1], [3]])
labels = jnp.array([2, 0, 3])
# eval: X[:, i]
# eval: X[i, 1]
# eval: X[1, i]
# eval: X[jnp.arange(3), labels]
# eval: X[i, j]
# eval: X[1:, jnp.array([5, -7])]
# eval: X[None, :, i]
# eval: Y[:, i, 2]
# eval: Y[i, :, 2]
# eval: Y[..., i]
# eval: Y[1, :, j]
# eval: Y[i, j, :]
# eval: jnp.arange(12).reshape(3, 4)[:, i]
# eval: jax.grad(lambda x: jnp.sum(x[jnp.arange(3), labels] ** 2))(X)
# eval: jax.grad(lambda y: jnp.sum(y[i, :, 2] * jnp.arange(12.0).reshape(3, 4)))(Y)
# eval: jnp.mean(jax.nn.log_softmax(X)[jnp.arange(3), labels]) * -1.0
# eval: X.at[:, i].set(0.0)
# eval: X.at[i, 1].add(10.0)
# eval: X.at[jnp.arange(3), labels].set(jnp.array([7.0, 8.0, 9.0]))
# eval: Y.at[i, :, 2].multiply(2.0)
# eval: Y.at[..., i].max(30.0)
# eval: Y.at[:, j, jnp.array([0, 4])].add(1.0)
# eval: Y.at[i, :, j].set(jnp.arange(6.0).reshape(2, 3, 1))
# eval: X.at[:, jnp.array([9, 1])].set(5.0)
# eval: jax.grad(lambda x: jnp.sum(x.at[:, i].add(x[:, 0:3] * 2.0) ** 2))(X)
# eval: X.at[1:, i].set(0.0)
# eval: Y.at[::-1, j, 1:4].add(jnp.arange(3.0))
# eval: X.at[:2, jnp.array([3, 0])].multiply(jnp.array([[2.0], [3.0]]))
# eval: jax.grad(lambda x: jnp.sum(x.at[1:, i].set(x[:2, :3] * 3.0) ** 2))(X)
