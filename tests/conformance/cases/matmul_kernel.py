# Matrix products large enough for the tiled kernel: edge tiles in every direction, operands
# stored either way round, products inside gradients, and a product that adds to a result.
import jax
import jax.numpy as jnp

P = jnp.sin(jnp.arange(37 * 53, dtype=jnp.float32).reshape(37, 53))
Q = jnp.cos(jnp.arange(53 * 41, dtype=jnp.float32).reshape(53, 41))
R = jnp.sin(0.5 * jnp.arange(41 * 53, dtype=jnp.float32).reshape(41, 53))
# eval: (P @ Q)[::9, ::8]
# eval: (P @ Q)[-1]
# eval: (P.T @ jnp.cos(P))[::13, ::11]
# eval: (P @ R.T)[::6, -5:]
# eval: (Q.T @ P.T)[::10, ::9]
# eval: jnp.sum(P @ Q, axis=0)[::5]
# eval: (1.0 + P @ Q)[3, :7]
# eval: jnp.dot(P, Q)[36, 40]
# eval: jax.grad(lambda q: jnp.sum(jnp.tanh(P @ q)))(Q)[::9, ::7]
# eval: jax.grad(lambda p: jnp.sum(jnp.tanh(p @ Q) ** 2))(P)[::8, ::10]
# eval: jnp.einsum("ij,kj->ik", P, R)[::7, ::9]
