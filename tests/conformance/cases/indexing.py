# Indexing: negative steps, integer-array gathers and .at[] updates, with derivatives.
import jax
import jax.numpy as jnp

X = jnp.arange(12.0).reshape(3, 4)
v = jnp.array([3.0, 1.0, 4.0, 1.0, 5.0])
# eval: v[::-1]
# eval: X[::-1, ::-2]
# eval: X[2:0:-1, 1]
# eval: v[jnp.array([4, 0, -1])]
# eval: v[jnp.array([7, -9, 2])]
# eval: X[jnp.array([[0, 2], [1, 1]])]
# eval: X.at[1].set(jnp.array([9.0, 8.0, 7.0, 6.0]))
# eval: X.at[:, ::2].add(100.0)
# eval: X.at[0, 1:3].multiply(-1.0)
# eval: v.at[::-2].set(0.0)
# eval: X.at[1, 2].get()
# eval: jax.grad(lambda x: jnp.sum(x.at[1:3].set(x[0:2] * 2.0) ** 2))(v)
# eval: jax.grad(lambda x: jnp.sum(x[::-1] * jnp.arange(5.0)))(v)
# eval: jax.grad(lambda x: jnp.sum(x[jnp.array([0, 0, 3])] ** 2))(v)
