# Linear algebra: dot_general behind dot, matmul, einsum and friends, and its derivatives.
import jax
import jax.numpy as jnp

A = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
B = jnp.array([[1.0, -1.0], [0.5, 2.0], [3.0, 0.0]])
v = jnp.array([1.0, 2.0, 3.0])
T = jnp.arange(24.0).reshape(2, 3, 4)
# eval: A @ B
# eval: jnp.dot(A, v)
# eval: jnp.dot(v, B)
# eval: jnp.matmul(T, jnp.ones((4, 2)))
# eval: jnp.vdot(v, v)
# eval: jnp.inner(A, A)
# eval: jnp.outer(v, jnp.array([1.0, 2.0]))
# eval: jnp.tensordot(T, jnp.ones((3, 4)), axes=2)
# eval: jnp.einsum("ij,jk->ki", A, B)
# eval: jnp.einsum("bij,j->bi", T[:, :, :3], v)
# eval: jnp.einsum("ij->j", A)
# eval: jnp.matmul(T, jnp.swapaxes(T, 1, 2))
# eval: jnp.tensordot(jnp.transpose(T, (2, 1, 0)), jnp.array([1.0, -2.0]), axes=([2], [0]))
# eval: jax.grad(lambda w: jnp.sum(jnp.sin(A @ w.T)))(B.T)
# eval: A.T
# eval: jnp.transpose(T, (2, 0, 1)).shape
# eval: jnp.swapaxes(T, 0, 2)[1]
# eval: jax.grad(lambda a, b: jnp.sum(jnp.tanh(0.1 * (a @ b))), argnums=(0, 1))(A, B)
# eval: jax.jacrev(lambda b: A @ b)(v)
# eval: jax.grad(lambda t: jnp.sum(jnp.einsum("bij,jk->bik", t, B) ** 2))(T[:, :, :3])
# eval: jax.jvp(lambda a: (a.T @ a), (A,), (jnp.ones_like(A),))
# eval: (jnp.dot(jnp.array([True, False]), jnp.array([True, True])), jnp.array([[True, False]]) @ jnp.array([[False], [True]]))
