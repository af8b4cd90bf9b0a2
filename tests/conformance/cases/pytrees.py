# Pytrees: tuples and lists of arrays as differentiated arguments and gradients.
import jax
import jax.numpy as jnp


def loss(params, x, y):
    w, b = params
    return jnp.sum((x @ w + b - y) ** 2)

W = jnp.array([[1.0, -1.0], [0.5, 0.25]])
B = jnp.array([0.1, -0.2])
X = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
Y = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
# eval: jax.grad(loss)((W, B), X, Y)
# eval: jax.value_and_grad(loss, argnums=(0, 2))([W, B], X, Y)
# eval: jax.vjp(loss, (W, B), X, Y)[1](1.0)[0]
