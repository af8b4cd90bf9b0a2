# Loops and branches as real control flow: fori_loop, scan and cond with derivatives in both
# modes (through the saved carries), while_loop in forward mode, run-time indices, scatter.
import jax
import jax.numpy as jnp
from jax import lax


def rnn(w, xs):
    def step(h, x):
        h = jnp.tanh(w @ h + x)
        return h, jnp.sum(h * h)

    h, energies = lax.scan(step, jnp.zeros(3), xs)
    return jnp.sum(h) + jnp.sum(energies)


def running_sum(xs):
    def body(i, acc):
        return acc.at[i].set(acc[i - 1] + xs[i])

    return lax.fori_loop(1, xs.shape[0], body, xs)


def weighted_rows(m):
    def body(i, total):
        return total + m[i, :] * m[i, i]

    return lax.fori_loop(0, m.shape[0], body, jnp.zeros(m.shape[1]))


def nested(x):
    def outer(i, acc):
        return lax.fori_loop(0, 3, lambda j, a: jnp.sin(a) * x + j, acc) * 0.5

    return lax.fori_loop(0, 2, outer, x)


def branchy(x, y):
    def body(i, carry):
        a, b = carry
        a, b = lax.cond(i % 2 == 0, lambda: (a * b, b), lambda: (a, jnp.exp(-a) + b))
        return a, b

    return lax.fori_loop(0, 4, body, (x, y))


def reverse_scan(xs):
    return lax.scan(lambda c, x: (c * 0.5 + x, c), 1.0, xs, reverse=True)


def pair_scan(xs, ys):
    def step(c, xy):
        x, y = xy
        return c + x * y, (x + c, y - c)

    return lax.scan(step, 0.0, (xs, ys))


def no_outputs(xs):
    return lax.scan(lambda c, x: (c * x, None), 1.0, xs)[0]


def triangle(x):
    # The inner loop's bound is the outer loop's index: known only at run time.
    return lax.fori_loop(0, 4, lambda i, c: lax.fori_loop(0, i, lambda j, e: e * x, c), x)


def halve_until_small(x):
    return lax.while_loop(lambda c: c[0] > 1.0, lambda c: (c[0] * 0.5, c[1] * c[0]), (x, x))


def scatter_add(x, idx, v):
    return x.at[idx].add(v)


def scatter_set(x, idx, v):
    return x.at[idx].set(v)


def scatter_others(x, idx, v):
    return x.at[idx].multiply(v), x.at[idx].min(v), x.at[idx].max(v)


def dynamic(x, i):
    return x[i], x.at[i].multiply(3.0), x.at[i, 1].add(10.0), x.at[i].max(2.5)

# eval: rnn(jnp.eye(3) * 0.5, jnp.arange(12.0).reshape(4, 3) / 10.0)
# eval: jax.grad(rnn, argnums=(0, 1))(jnp.eye(3) * 0.5, jnp.arange(12.0).reshape(4, 3) / 10.0)
# eval: running_sum(jnp.arange(5.0))
# eval: jax.grad(lambda x: jnp.sum(running_sum(x) ** 2))(jnp.arange(5.0))
# eval: jax.jacfwd(running_sum)(jnp.arange(4.0))
# eval: weighted_rows(jnp.arange(9.0).reshape(3, 3))
# eval: jax.grad(lambda m: jnp.sum(weighted_rows(m)))(jnp.arange(9.0).reshape(3, 3))
# eval: nested(0.7)
# eval: jax.grad(nested)(0.7)
# eval: jax.hessian(nested)(0.7)
# eval: jax.jvp(nested, (0.7,), (1.0,))
# eval: branchy(1.5, 0.5)
# eval: jax.grad(lambda x, y: branchy(x, y)[1], argnums=(0, 1))(1.5, 0.5)
# eval: jax.jacrev(lambda v: jnp.stack(branchy(v[0], v[1])))(jnp.array([1.5, 0.5]))
# eval: reverse_scan(jnp.array([1.0, 2.0, 3.0]))
# eval: jax.grad(lambda xs: reverse_scan(xs)[0] + jnp.sum(reverse_scan(xs)[1] ** 2))(jnp.array([1.0, 2.0, 3.0]))
# eval: pair_scan(jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, -1.0, 2.0]))
# eval: jax.grad(lambda xs, ys: pair_scan(xs, ys)[0], argnums=(0, 1))(jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, -1.0, 2.0]))
# eval: no_outputs(jnp.array([1.5, 2.0, -3.0]))
# eval: jax.grad(no_outputs)(jnp.array([1.5, 2.0, -3.0]))
# eval: lax.scan(lambda c, x: (c + 1, c), 0, None, length=3)
# eval: halve_until_small(10.0)
# eval: jax.jvp(halve_until_small, (10.0,), (1.0,))
# eval: jax.jacfwd(lambda x: halve_until_small(x)[1])(jnp.array(6.0))
# eval: scatter_add(jnp.zeros(4), jnp.array([0, 2, 2, -1, 7]), jnp.array([1.0, 2.0, 3.0, 4.0, 5.0]))
# eval: scatter_set(jnp.zeros((4, 2)), jnp.array([[0, 2], [3, 1]]), jnp.arange(8.0).reshape(2, 2, 2))
# eval: jax.grad(lambda x, v: jnp.sum(scatter_add(x, jnp.array([0, 2, 2]), v) ** 2), argnums=(0, 1))(jnp.ones(4), jnp.array([1.0, 2.0, 3.0]))
# eval: jax.grad(lambda x, v: jnp.sum(scatter_set(x, jnp.array([0, 2, 3]), v) ** 2), argnums=(0, 1))(jnp.ones(4), jnp.array([1.0, 2.0, 3.0]))
# eval: dynamic(jnp.arange(6.0).reshape(3, 2), jnp.array(-1))
# eval: dynamic(jnp.arange(6.0).reshape(3, 2), jnp.array(1))
# eval: dynamic(jnp.arange(6.0).reshape(3, 2), jnp.array(7))
# eval: jax.grad(lambda x: jnp.sum(dynamic(x, jnp.array(1))[1] ** 2))(jnp.arange(6.0).reshape(3, 2))
# eval: scatter_others(jnp.arange(1.0, 5.0), jnp.array([0, 2, 2, -1, 9]), jnp.array([2.0, 3.0, 0.5, 1.5, 7.0]))
# eval: scatter_others(jnp.arange(6.0).reshape(3, 2), jnp.array([[1], [1]]), 2.5)
# eval: triangle(1.1)
# eval: jax.jvp(triangle, (1.1,), (1.0,))
# eval: lax.fori_loop(jnp.array(2), jnp.array(5), lambda i, c: c + i, 0)
