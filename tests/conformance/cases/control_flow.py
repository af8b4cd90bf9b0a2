# Control flow: lax.cond, fori_loop, scan and while_loop, and derivatives through the first three.
import jax
import jax.numpy as jnp
from jax import lax


def collatz_steps(n):
    def cond(state):
        value, steps = state
        return value != 1

    def body(state):
        value, steps = state
        return jnp.where(value % 2 == 0, value // 2, 3 * value + 1), steps + 1

    return lax.while_loop(cond, body, (n, 0))[1]


def newton_sqrt(a):
    def cond(x):
        return jnp.abs(x * x - a) > 1e-5

    def body(x):
        return 0.5 * (x + a / x)

    return lax.while_loop(cond, body, a)


def power(x, n):
    return lax.fori_loop(0, n, lambda i, acc: acc * x, jnp.ones_like(x))


def cumulative(xs):
    return lax.scan(lambda carry, x: (carry + x, carry * x), 0.0, xs)


def piecewise(x):
    return lax.cond(x > 0.0, lambda x: jnp.sin(x) * x, lambda x: x ** 3, x)

# eval: collatz_steps(jnp.array(27))
# eval: newton_sqrt(jnp.array(2.0))
# eval: power(jnp.array([1.5, -2.0]), 3)
# eval: cumulative(jnp.array([1.0, 2.0, 3.0, 4.0]))
# eval: (piecewise(2.0), piecewise(-2.0))
# eval: lax.cond(True, lambda: 1.0, lambda: 2.0)
# eval: (jax.grad(piecewise)(2.0), jax.grad(piecewise)(-2.0))
# eval: jax.grad(lambda x: jnp.sum(power(x, 4)))(jnp.array([1.5, -2.0]))
# eval: jax.grad(lambda xs: cumulative(xs)[0] + jnp.sum(cumulative(xs)[1]))(jnp.array([1.0, 2.0, 3.0, 4.0]))
# eval: jax.jvp(piecewise, (0.5,), (1.0,))
