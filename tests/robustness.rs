//! No input makes the compiler panic: bad files end in diagnostics.

use ferrax_compiler::session::{Error, Session};

fn expect_user_error(text: &str, expr: &str) {
    let result = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn({
            let (text, expr) = (text.to_string(), expr.to_string());
            move || match Session::new("input.py", &text) {
                Err((_, Error::User(diagnostics))) => !diagnostics.is_empty(),
                Err((_, Error::Internal(_))) => false,
                Ok(mut session) => {
                    matches!(session.eval(&expr), Err(Error::User(d)) if !d.is_empty())
                }
            }
        })
        .expect("thread starts")
        .join();
    assert_eq!(
        result.ok(),
        Some(true),
        "no user error for {:?}",
        &text[..text.len().min(60)]
    );
}

#[test]
fn truncated_file() {
    expect_user_error(
        "import jax.numpy as jnp\n\ndef selu(x, alpha=1.67):\n    return jnp.where(x > 0, x, alpha * (jnp.exp(x",
        "selu(1.0)",
    );
}

#[test]
fn garbage_and_empty_files() {
    let garbage: String = (0..2000u32)
        .map(|i| char::from_u32((i * 7919) % 0x2FF + 1).unwrap_or('?'))
        .collect();
    expect_user_error(&garbage, "f(1.0)");
    expect_user_error("", "f(1.0)");
    expect_user_error("def f(x):\n    return x\n", "f(1.0) +");
}

#[test]
fn deep_nesting() {
    let deep = format!(
        "def f(x):\n    return {}x{}\n",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    expect_user_error(&deep, "f(1.0)");
    let unary = format!("def f(x):\n    return {}x\n", "-".repeat(10_000));
    expect_user_error(&unary, "f(1.0)");
    expect_user_error(
        "def f(x):\n    return x\n",
        &format!("{}1.0{}", "f(".repeat(10_000), ")".repeat(10_000)),
    );
}

#[test]
fn unsupported_constructs_are_reported() {
    expect_user_error(
        "def f(x):\n    while x:\n        pass\n    return x\n",
        "f(1.0)",
    );
    expect_user_error("def f(x):\n    return f(x)\n", "f(1.0)");
    expect_user_error("import os\n", "1");
}
