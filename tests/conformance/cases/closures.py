# Closures: differentiated functions that use their caller's arrays (closure conversion).
import jax
import jax.numpy as jnp

def dense_grad_w(x, w, b):
    return jax.grad(lambda w: jnp.sum(jnp.tanh(x @ w + b)))(w)

def nested(a):
    return jax.grad(lambda x: jax.grad(lambda y: x * y * a)(1.0))(2.0)

X = jnp.array([[1.0, 2.0], [3.0, 4.0]])
W = jnp.array([[0.1, -0.2], [0.3, 0.05]])
B = jnp.array([0.5, -0.5])
# eval: dense_grad_w(X, W, B)
# eval: nested(3.0)
# eval: jax.jvp(lambda v: v * X[0], (W[0],), (B,))
# eval: jax.jacrev(lambda v: jnp.tanh(v * X[1]))(B)
# eval: jax.hessian(lambda v: jnp.sum(jnp.sin(v * X[0])))(B)
