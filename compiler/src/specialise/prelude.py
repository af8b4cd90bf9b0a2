# The parts of jax.nn and jax.scipy.special that Ferrax defines in its own language, from the
# primitives, as JAX does. Their derivatives follow from the primitives' rules; inputs that a
# branch of `where` does not take are kept finite, so no NaN leaks into a gradient.
import jax
import jax.numpy as jnp
from jax import lax


def relu(x):
    return jnp.where(x > 0, x, jnp.zeros_like(x))


def sigmoid(x):
    return 1.0 / (1.0 + jnp.exp(-x))


def softplus(x):
    positive = jnp.where(x > 0, x, jnp.zeros_like(x))
    negative = jnp.where(x > 0, jnp.zeros_like(x), x)
    return jnp.where(x > 0, positive + jnp.log1p(jnp.exp(-positive)), jnp.log1p(jnp.exp(negative)))


def silu(x):
    return x * sigmoid(x)


swish = silu


def gelu(x, approximate=True):
    if approximate:
        cdf = 0.5 * (1.0 + jnp.tanh(0.7978845608028654 * (x + 0.044715 * (x ** 3))))
        return x * cdf
    return x * 0.5 * (1.0 + lax.erf(x * 0.7071067811865476))


def elu(x, alpha=1.0):
    negative = jnp.where(x > 0, jnp.zeros_like(x), x)
    return jnp.where(x > 0, x, alpha * jnp.expm1(negative))


def selu(x):
    alpha = 1.6732632423543772848170429916717
    scale = 1.0507009873554804934193349852946
    return scale * elu(x, alpha)


def leaky_relu(x, negative_slope=0.01):
    return jnp.where(x >= 0, x, negative_slope * x)


def one_hot(x, num_classes, dtype=jnp.float32):
    return (jnp.expand_dims(x, -1) == jnp.arange(num_classes)).astype(dtype)


def logsumexp(a, axis=None, keepdims=False):
    largest = jnp.max(a, axis=axis, keepdims=True)
    largest = lax.stop_gradient(jnp.where(jnp.isfinite(largest), largest, jnp.zeros_like(largest)))
    total = jnp.log(jnp.sum(jnp.exp(a - largest), axis=axis, keepdims=True)) + largest
    if keepdims:
        return total
    return jnp.squeeze(total, axis=axis)


def softmax(x, axis=-1):
    unnormalized = jnp.exp(x - lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True)))
    return unnormalized / jnp.sum(unnormalized, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    shifted = x - lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=axis, keepdims=True))
