# The workloads of benches/run.py, in the language (this file also runs under JAX).
import jax
import jax.numpy as jnp


def selu(x, alpha=1.6732632423543772, scale=1.0507009873554805):
    return scale * jnp.where(x > 0, x, alpha * jnp.exp(x) - alpha)


# Reads and writes 8 bytes per element, as SELU does: the traffic reference for SELU, on 1M
# float32 (8 MB, which stays in cache from call to call) and on 16M (from memory).
def stream(x):
    return x + 1.0


def f(x1, x2):
    return x1 * x2 + jnp.sin(x1 * x2)


def grad_f(x1, x2):
    return jax.grad(f, argnums=(0, 1))(x1, x2)


def dist(x, y, order):
    return jnp.power(jnp.sum(jnp.abs(x - y) ** order), 1.0 / order)


def dist1(x, y):
    return dist(x, y, 1)


def dist2(x, y):
    return dist(x, y, 2)


def dist3(x, y):
    return dist(x, y, 3)


def dense(x, w, b):
    return selu(x @ w + b)


def dense_grad_w(x, w, b):
    return jax.grad(lambda w: jnp.sum(dense(x, w, b)))(w)


def mlp_loss(w1, b1, w2, b2, w3, b3, x, y):
    h = jax.nn.relu(x @ w1 + b1)
    h = jax.nn.relu(h @ w2 + b2)
    logits = h @ w3 + b3
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * y, axis=1))


def mlp_step(w1, b1, w2, b2, w3, b3, x, y):
    grads = jax.grad(mlp_loss, argnums=(0, 1, 2, 3, 4, 5))(w1, b1, w2, b2, w3, b3, x, y)
    g1, gb1, g2, gb2, g3, gb3 = grads
    return (w1 - 0.01 * g1, b1 - 0.01 * gb1, w2 - 0.01 * g2, b2 - 0.01 * gb2, w3 - 0.01 * g3, b3 - 0.01 * gb3)
