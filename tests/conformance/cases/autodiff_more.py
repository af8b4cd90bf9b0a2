# Differentiation beyond the seed: pullbacks used twice, higher order, has_aux, ties, indexing.
import jax
import jax.numpy as jnp


def f(x1, x2):
    return x1 * x2 + jnp.sin(x1 * x2)


def f2(x):
    return jnp.array([
        x[0]**2 + x[1]**2 - x[1] * x[2],
        x[0]**2 - x[1]**2 + 3 * x[0] * x[2],
    ])


def pullback_twice(x):
    out, pullback = jax.vjp(jnp.sin, x)
    return out, pullback(jnp.ones_like(x)), pullback(2.0 * jnp.ones_like(x))


def loss_with_aux(w, x):
    y = jnp.tanh(w * x)
    return jnp.sum(y ** 2), y

# eval: pullback_twice(jnp.array([0.1, 0.2]))
# eval: jax.jvp(jax.grad(f), (7.0, 2.0), (1.0, 0.0))
# eval: jax.jacfwd(jax.jacrev(f2))(jnp.array([1.0, 2.0, 3.0]))
# eval: jax.hessian(lambda x: jnp.sum(jnp.sin(x) * x))(jnp.array([0.5, 1.0, 1.5]))
# eval: jax.grad(loss_with_aux, has_aux=True)(0.5, jnp.array([1.0, 2.0]))
# eval: jax.value_and_grad(loss_with_aux, argnums=(0, 1), has_aux=True)(0.5, jnp.array([1.0, 2.0]))
# eval: jax.grad(lambda x: jnp.max(x) + jnp.min(x))(jnp.array([1.0, 3.0, 3.0, -2.0]))
# eval: jax.grad(lambda x: jnp.sum(jnp.where(x > 0.0, jnp.sqrt(jnp.abs(x)), x ** 2)))(jnp.array([-1.5, 0.25, 4.0]))
# eval: jax.jacrev(lambda x: x[::2] * x[1])(jnp.array([1.0, 2.0, 3.0, 4.0]))
# eval: jax.grad(lambda x, y: jnp.sum(jnp.dot(x, y)) * jnp.mean(x))(jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([0.5, -1.0]))
# eval: jax.vjp(lambda a, b: (a * b, a + b), 2.0, 3.0)[1]((1.0, 1.0))
# eval: jax.grad(jax.grad(jax.grad(lambda x: x ** 4)))(2.0)
