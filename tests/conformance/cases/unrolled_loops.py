# Python loops unrolled into long chains of array ops: elementwise steps (one long run of
# elementwise ops, its constants inside), steps through `exp` (its polynomial joins the
# run), steps with a reduction each (one `tensor.empty` shared by hundreds of generics), and
# their gradients.
import jax
import jax.numpy as jnp

X = jnp.linspace(-2.0, 2.0, 5)


def steps(x):
    for i in range(300):
        x = jnp.sin(x) * 0.5 + x * 0.25 + 0.01 * i
    return x


def exp_steps(x):
    for _ in range(200):
        x = jnp.exp(x * 0.001) * 0.5 + x * 0.25
    return x


def normalised_steps(x):
    for _ in range(120):
        x = x * 0.999 + jnp.sum(x) * 0.0001 + 0.01
    return x


def loss(x):
    return jnp.sum(steps(x) ** 2) + jnp.sum(normalised_steps(x)) + jnp.sum(exp_steps(x))

# eval[rtol=1e-4]: steps(X)
# eval[rtol=1e-4]: normalised_steps(X)
# eval[rtol=1e-5]: exp_steps(X)
# eval[rtol=1e-3]: jax.grad(loss)(X)
