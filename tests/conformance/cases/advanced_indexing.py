# Integer-array indices combined with slices, integers, None and ...: where the gathered
# dimensions land (together: in place; apart: first), broadcasting of several arrays,
# negative and clamped indices, and derivatives.
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
