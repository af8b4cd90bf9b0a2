# A two-layer MLP with softmax cross-entropy, trained by SGD inside the file.
#
#   ferrax run examples/mlp.py train     prints the loss before each step
#
# The same file runs under JAX: python3 -c "import runpy; print(runpy.run_path('examples/mlp.py')['train']())"
import jax
import jax.numpy as jnp

STEPS = 30
LEARNING_RATE = 0.5


def init_params():
    # A deterministic initialisation, so that the file gives the same numbers everywhere.
    w1 = jnp.sin(jnp.arange(4 * 16, dtype=jnp.float32).reshape(4, 16)) * 0.5
    b1 = jnp.zeros(16)
    w2 = jnp.cos(jnp.arange(16 * 3, dtype=jnp.float32).reshape(16, 3)) * 0.5
    b2 = jnp.zeros(3)
    return w1, b1, w2, b2


def data():
    x = jnp.sin(jnp.arange(32 * 4, dtype=jnp.float32).reshape(32, 4) * 0.37)
    labels = jnp.argmax(x[:, :3], axis=1)
    return x, jax.nn.one_hot(labels, 3)


def predict(params, x):
    w1, b1, w2, b2 = params
    hidden = jnp.tanh(x @ w1 + b1)
    return hidden @ w2 + b2


def loss(params, x, y):
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(predict(params, x)) * y, axis=1))


def sgd_step(params, x, y):
    w1, b1, w2, b2 = params
    g1, gb1, g2, gb2 = jax.grad(loss)(params, x, y)
    return (
        w1 - LEARNING_RATE * g1,
        b1 - LEARNING_RATE * gb1,
        w2 - LEARNING_RATE * g2,
        b2 - LEARNING_RATE * gb2,
    )


def train():
    params = init_params()
    x, y = data()
    losses = []
    for step in range(STEPS):
        losses = losses + [loss(params, x, y)]
        params = sgd_step(params, x, y)
    return jnp.array(losses + [loss(params, x, y)])

# eval[rtol=1e-5]: train()
