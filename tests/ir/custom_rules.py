# compile: both x: f32[3]
import jax
import jax.numpy as jnp


@jax.custom_jvp
def my_func(x):
    return x**2 + 2 * x + 1


@my_func.defjvp
def my_func_jvp(primals, tangents):
    x, = primals
    t, = tangents
    return my_func(x), t * (2 * x + 2)


@jax.custom_vjp
def clip_gradient(x):
    return x


def clip_gradient_fwd(x):
    return x, None


def clip_gradient_bwd(res, g):
    return (jnp.clip(g, -1.0, 1.0),)


clip_gradient.defvjp(clip_gradient_fwd, clip_gradient_bwd)


def both(x):
    return jax.grad(lambda x: jnp.sum(clip_gradient(my_func(x)) * 5.0))(x)
