//! Derivatives checked by central finite differences in float64, like
//! `jax.test_util.check_grads`: for every fx op and every differentiable region op
//! (`scf.for` from `fori_loop` and `scan`, `scf.if` from `cond`), first order in reverse
//! and forward mode, and
//! second order reverse-over-reverse, forward-over-reverse and forward-over-forward.
//!
//! Each case is `g(x) = sum(sin(1.3 * EXPR))` at a fixed point `X` along a direction `V`, with
//! every quantity computed in one `eval` of a tuple.

use ferrax_compiler::session::{Session, Value};

/// (name, expression in `x`): each exercises one op (the name) in both modes.
const CASES: &[(&str, &str)] = &[
    ("add", "x + jnp.sin(x)"),
    ("sub", "x - jnp.cos(x)"),
    ("mul", "x * x"),
    ("div", "x / (2.0 + x)"),
    ("rem", "x % 0.7 + x * 0.1"),
    ("pow", "jnp.power(x, 1.5 + x)"),
    ("max", "jnp.maximum(x, 1.0 - x)"),
    ("min", "jnp.minimum(x, 1.0 - x)"),
    ("neg", "-x * x"),
    ("exp", "jnp.exp(x)"),
    ("log", "jnp.log(x)"),
    ("log1p", "jnp.log1p(x)"),
    ("expm1", "jnp.expm1(x)"),
    ("sin", "jnp.sin(x)"),
    ("cos", "jnp.cos(x)"),
    ("tanh", "jnp.tanh(x)"),
    ("sqrt", "jnp.sqrt(x)"),
    ("abs", "jnp.abs(x - 0.5)"),
    ("sign", "jnp.sign(x - 0.5) * x"),
    ("floor", "jnp.floor(x * 3.0) + x * x"),
    ("integer_pow", "x ** 3 + x ** -2 + x ** 0"),
    ("compare_select", "jnp.where(x > 0.5, x * x, jnp.sin(x))"),
    (
        "convert",
        "x.astype(jnp.float32).astype(jnp.float64) * 0.0 + x.astype(jnp.float64) * x",
    ),
    (
        "broadcast_in_dim",
        "jnp.ones((2, 3), dtype=jnp.float64) * x + jnp.sum(x)",
    ),
    ("reshape", "x.reshape(3, 1) * x"),
    ("reduce_sum", "jnp.sum(x * x) * x"),
    ("reduce_max", "jnp.max(x) * x"),
    ("reduce_min", "jnp.min(x) * x"),
    ("mean", "x.mean(axis=0, keepdims=True) * x"),
    ("slice", "x[1:] * x[:-1] + x[::2].sum()"),
    ("index", "x[0] * x[2] + x[1]"),
    (
        "dot",
        "jnp.dot(x.reshape(1, 3), x.reshape(3, 1)) + jnp.dot(x, x)",
    ),
    (
        "lax_ops",
        "jax.lax.integer_pow(x, 2) + jax.lax.exp(x) + jax.lax.div(x, 3.0)",
    ),
    ("asin", "jnp.arcsin(x * 0.9)"),
    ("acos", "jnp.arccos(x * 0.9)"),
    ("atan", "jnp.arctan(x)"),
    ("erf", "jax.scipy.special.erf(x)"),
    ("atan2", "jnp.arctan2(x, 1.0 - x)"),
    ("round", "jnp.round(x * 3.0) + x * x"),
    ("transpose", "jnp.outer(x, x * x).T * x"),
    ("pad", "jnp.pad(x, (1, 2)) * jnp.pad(x * x, (2, 1))"),
    ("reverse", "x[::-1] * x"),
    ("reduce_prod", "jnp.prod(x) * x"),
    ("dynamic_slice", "x[jnp.array(2)] * x + x[jnp.array(-3)]"),
    (
        "dynamic_update_slice",
        "x.at[jnp.array(1)].set(x[0] * x[2]) * x",
    ),
    (
        "scatter",
        "x.at[jnp.array([0, 2, 0])].add(x * x) + x.at[jnp.array([2, 1])].set(x[:2] ** 3)",
    ),
    (
        "scatter_multiply_max",
        "x.at[jnp.array([0, 2, 0])].multiply(x + 1.0) + x.at[jnp.array([1])].max(x[:1] * 2.0)",
    ),
    (
        "fori_loop",
        "jax.lax.fori_loop(0, 3, lambda i, c: jnp.sin(c) * x + c * 0.5, x)",
    ),
    (
        "scan",
        "jax.lax.scan(lambda c, xi: (c * xi + jnp.cos(c), c * xi), x, jnp.stack([x, x * x]))[1].sum(axis=0)",
    ),
    (
        "matmul_kernel",
        "(jnp.sin(jnp.outer(jnp.arange(64.0), x)) @ jnp.cos(jnp.outer(x, jnp.arange(200.0) * 0.01))).sum() * 1e-3 * x",
    ),
    (
        "cond",
        "jax.lax.cond(jnp.sum(x) > 1.0, lambda: x * jnp.exp(x), lambda: x)",
    ),
    (
        "cond_false_branch",
        "jax.lax.cond(jnp.sum(x) > 10.0, lambda: x, lambda: jnp.sin(x) * x)",
    ),
];

const SOURCE: &str = "import jax
import jax.numpy as jnp

X = jnp.array([0.3, 0.55, 0.8], dtype=jnp.float64)
V = jnp.array([0.7, -0.4, 0.25], dtype=jnp.float64)
H = 1e-5


def g(x):
    return jnp.sum(jnp.sin(1.3 * (EXPR)))


def dg(x):
    return jnp.sum(jax.grad(g)(x) * V)


def fg(x):
    return jax.jvp(g, (x,), (V,))[1]
";

const QUANTITIES: &str = "(g(X + H * V), g(X - H * V), g(X), jax.grad(g)(X), fg(X), jax.grad(dg)(X), \
jax.jvp(jax.grad(g), (X,), (V,))[1], jax.grad(g)(X + H * V), jax.grad(g)(X - H * V), jax.jvp(fg, (X,), (V,))[1])";

const X: [f64; 3] = [0.3, 0.55, 0.8];
const V: [f64; 3] = [0.7, -0.4, 0.25];
const H: f64 = 1e-5;

fn values(value: &Value) -> Vec<f64> {
    match value {
        Value::Array { array, .. } => {
            assert_eq!(
                array.dtype,
                ferrax_runtime::DType::F64,
                "derivatives keep float64"
            );
            (0..array.len()).map(|i| array.get(i)).collect()
        }
        other => panic!("expected an array, got {}", other.repr()),
    }
}

fn close(name: &str, what: &str, got: &[f64], want: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: {what}: lengths differ");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= rtol * w.abs().max(1.0),
            "{name}: {what}: {got:?} != finite differences {want:?}"
        );
    }
}

#[test]
fn every_op_matches_finite_differences() {
    for (name, expr) in CASES {
        let source = SOURCE.replace("EXPR", expr);
        let mut session = Session::new(&format!("{name}.py"), &source)
            .unwrap_or_else(|_| panic!("{name} parses"));
        let result = session
            .eval(QUANTITIES)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let Value::Tuple(items) = result else {
            panic!("{name}: not a tuple")
        };
        let v: Vec<Vec<f64>> = items.iter().map(values).collect();
        let (plus, minus, centre) = (v[0][0], v[1][0], v[2][0]);
        let fd1 = (plus - minus) / (2.0 * H);
        let grad_dot_v: f64 = v[3].iter().zip(V).map(|(a, b)| a * b).sum();
        close(name, "reverse mode", &[grad_dot_v], &[fd1], 1e-6);
        close(name, "forward mode", &v[4], &[fd1], 1e-6);
        let fd_hessian: Vec<f64> = v[7]
            .iter()
            .zip(&v[8])
            .map(|(p, m)| (p - m) / (2.0 * H))
            .collect();
        close(name, "reverse over reverse", &v[5], &fd_hessian, 1e-5);
        close(name, "forward over reverse", &v[6], &fd_hessian, 1e-5);
        let fd2 = (plus - 2.0 * centre + minus) / (H * H);
        close(name, "forward over forward", &v[9], &[fd2], 1e-3);
    }
}

#[test]
fn stop_gradient_has_a_zero_derivative() {
    let source = SOURCE.replace("EXPR", "x");
    let mut session = Session::new("stop.py", &source).expect("parses");
    let cases = [
        (
            "jax.grad(lambda x: jnp.sum(jax.lax.stop_gradient(x) * x))(X)",
            X,
        ),
        (
            "jax.grad(lambda x: jnp.sum(jax.lax.stop_gradient(x * x)))(X)",
            [0.0; 3],
        ),
        (
            "jax.jvp(lambda x: jax.lax.stop_gradient(x) * x, (X,), (V,))[1]",
            [0.3 * 0.7, 0.55 * -0.4, 0.8 * 0.25],
        ),
    ];
    for (expr, want) in cases {
        let got = values(
            &session
                .eval(expr)
                .unwrap_or_else(|e| panic!("{expr}: {e:?}")),
        );
        close(expr, "stop_gradient", &got, &want, 1e-12);
    }
}
