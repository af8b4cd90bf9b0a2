//! The disk cache of compiled functions: a second session with the same source and entry
//! loads the function instead of compiling it, and gets the same result; another entry or
//! other argument types compile anew.

use ferrax_compiler::cache::Cache;
use ferrax_compiler::session::{RunArg, Session};

const SOURCE: &str = "import jax
import jax.numpy as jnp


def f(x, y):
    return jnp.sin(x) * y, (jnp.sum(x), 3)
";

fn session(folder: &std::path::Path) -> Session {
    let mut session = Session::new("cached.py", SOURCE).expect("parses");
    session.cache = Some(Cache::new(folder.to_path_buf()));
    session
}

#[test]
fn a_second_run_loads_what_the_first_compiled() {
    let folder = std::env::temp_dir().join(format!("ferrax-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).expect("a folder");
    let expression = "f(jnp.arange(3.0), 2.0)";
    let mut first = session(&folder);
    let cold = first.eval(expression).expect("evaluates").repr();
    assert_eq!(first.cache.as_ref().map(Cache::hits), Some(0));
    let mut second = session(&folder);
    let warm = second.eval(expression).expect("evaluates").repr();
    assert_eq!(
        second.cache.as_ref().map(Cache::hits),
        Some(1),
        "loaded, not compiled"
    );
    assert_eq!(cold, warm);
    assert!(warm.contains("Array(3., dtype=float32), 3)"), "{warm}");
    // Another entry, and other argument types, are other functions.
    second.eval("f(jnp.arange(4.0), 2.0)").expect("evaluates");
    let run = |session: &mut Session, x: &str| {
        session
            .run(
                "f",
                vec![
                    RunArg::Literal(x.to_string()),
                    RunArg::Literal(String::from("1.5")),
                ],
            )
            .expect("runs")
            .repr()
    };
    run(&mut second, "[1.0, 2.0]");
    run(&mut second, "[1.0, 2.0, 3.0]");
    assert_eq!(second.cache.as_ref().map(Cache::hits), Some(1));
    let again = run(&mut second, "[1.0, 2.0]");
    assert_eq!(second.cache.as_ref().map(Cache::hits), Some(2));
    assert!(
        again.starts_with("(Array([1.2622064, 1.3639461], dtype=float32)"),
        "{again}"
    );
    let _ = std::fs::remove_dir_all(&folder);
}
