//! The conformance cases (`tests/conformance/cases`) with JAX-made expectations, run through
//! `Session::eval` and the JSON form, the path of `ferrax eval --format json`.
//! Expressions that use a transformation not compiled yet (`vmap`) are listed by name as pending.

use ferrax_compiler::session::{Error, Session};
use serde_json::Value as Json;
use std::path::Path;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conformance");
const PENDING: &[&str] = &["jax.vmap"];

fn sorted_files(dir: &str, extension: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(Path::new(ROOT).join(dir))
        .expect("the conformance folder exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.to_string_lossy().ends_with(extension))
        .collect();
    files.sort();
    files
}

/// `(shape, values)` of a JSON array or number, as check.py compares them.
fn flat(value: &Json) -> Option<(Vec<u64>, Vec<f64>)> {
    match value {
        Json::Bool(b) => Some((vec![], vec![f64::from(u8::from(*b))])),
        Json::Number(n) => Some((vec![], vec![n.as_f64()?])),
        Json::Object(map) => {
            let shape = map
                .get("shape")?
                .as_array()?
                .iter()
                .map(|d| d.as_u64())
                .collect::<Option<Vec<_>>>()?;
            let data = map
                .get("data")?
                .as_array()?
                .iter()
                .map(|v| {
                    v.as_f64()
                        .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
                })
                .collect::<Option<Vec<_>>>()?;
            Some((shape, data))
        }
        _ => None,
    }
}

fn close(a: f64, b: f64, rtol: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= 1e-6 + rtol * b.abs()
}

/// None when `got` matches `want`, else why not.
fn compare(got: &Json, want: &Json, rtol: f64) -> Option<String> {
    if let Some((want_shape, want_values)) = flat(want) {
        let Some((got_shape, got_values)) = flat(got) else {
            return Some(format!("expected an array, got {got}"));
        };
        if got_shape != want_shape {
            return Some(format!("shape {got_shape:?} != expected {want_shape:?}"));
        }
        if let (Json::Object(g), Json::Object(w)) = (got, want)
            && g.get("dtype") != w.get("dtype")
        {
            return Some(format!(
                "dtype {:?} != expected {:?}",
                g.get("dtype"),
                w.get("dtype")
            ));
        }
        return got_values
            .iter()
            .zip(&want_values)
            .position(|(a, b)| !close(*a, *b, rtol))
            .map(|i| {
                format!(
                    "element {i}: {} != expected {}",
                    got_values[i], want_values[i]
                )
            });
    }
    match (got, want) {
        (_, Json::Null) => (!got.is_null()).then(|| format!("expected None, got {got}")),
        (Json::Array(g), Json::Array(w)) if g.len() == w.len() => g
            .iter()
            .zip(w)
            .enumerate()
            .find_map(|(i, (a, b))| compare(a, b, rtol).map(|r| format!("[{i}] {r}"))),
        _ => Some(format!("expected {want}, got {got}")),
    }
}

/// Runs every case (compiled, or in the eager interpreter); returns how many passed and
/// the failures.
fn run_cases(eager: bool) -> (usize, Vec<String>) {
    let (mut passed, mut failures, mut pending) = (0, vec![], vec![]);
    let mut cases = sorted_files("cases", ".py");
    cases.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mlp.py"));
    for case in cases {
        let text = std::fs::read_to_string(&case).expect("readable case");
        let expect_path = case.with_extension("expect.json");
        let expectations: Vec<Json> = serde_json::from_str(
            &std::fs::read_to_string(&expect_path).expect("every case has expectations"),
        )
        .expect("valid JSON");
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for expectation in expectations {
            let expr = expectation["expr"]
                .as_str()
                .expect("each expectation names its expression");
            let Some(want) = expectation.get("value") else {
                continue;
            };
            if PENDING.iter().any(|p| expr.contains(p)) {
                pending.push(format!("{name}: {expr}"));
                continue;
            }
            let rtol = expectation
                .get("rtol")
                .and_then(Json::as_f64)
                .unwrap_or(2e-5);
            let mut session =
                Session::new(&name, &text).unwrap_or_else(|_| panic!("{name} parses"));
            session.eager = eager;
            match session.eval(expr) {
                Ok(value) => {
                    let got: Json =
                        serde_json::from_str(&value.to_json()).expect("the JSON form parses");
                    match compare(&got, want, rtol) {
                        None => passed += 1,
                        Some(reason) => failures.push(format!("{name}: {expr}: {reason}")),
                    }
                }
                Err(Error::User(diagnostics)) => failures.push(format!(
                    "{name}: {expr}: {}",
                    ferrax_compiler::diagnostic::render(&diagnostics, &session.sources)
                )),
                Err(Error::Internal(error)) => failures.push(format!("{name}: {expr}: {error}")),
            }
        }
    }
    println!("pending, not compiled yet ({}):", pending.len());
    for expr in &pending {
        println!("  {expr}");
    }
    println!("{passed} passed, {} failed", failures.len());
    (passed, failures)
}

#[test]
fn cases_match_jax() {
    let (passed, failures) = run_cases(false);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(passed >= 43, "only {passed} expressions ran");
}

/// The op-by-op interpreter (`bench --eager`) gives JAX's results too.
#[test]
fn the_eager_interpreter_matches_jax() {
    let (passed, failures) = run_cases(true);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(passed >= 43, "only {passed} expressions ran");
}

#[test]
fn error_cases_point_at_the_marked_line() {
    let files = sorted_files("errors", ".py");
    assert!(files.len() >= 7);
    for case in files {
        let text = std::fs::read_to_string(&case).expect("readable case");
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let marked = text
            .lines()
            .position(|l| l.trim_end().ends_with("# <- error"))
            .map(|i| i + 1);
        for expr in text.lines().filter_map(|l| l.strip_prefix("# error: ")) {
            let diagnostics = match Session::new(&name, &text) {
                Err((_, Error::User(diagnostics))) => diagnostics,
                Ok(mut session) => match session.eval(expr) {
                    Err(Error::User(diagnostics)) => {
                        if let Some(line) = marked {
                            let first = &diagnostics[0];
                            let (at, _) = session
                                .sources
                                .get(first.span.file)
                                .line_col(first.span.start);
                            assert_eq!(
                                (first.span.file.0, at),
                                (0, line),
                                "{name}: {expr}: {}",
                                first.message
                            );
                        }
                        diagnostics
                    }
                    Err(Error::Internal(error)) => panic!("{name}: {expr}: {error}"),
                    Ok(value) => panic!("{name}: {expr}: expected an error, got {}", value.repr()),
                },
                Err((_, Error::Internal(error))) => panic!("{name}: {error}"),
            };
            assert!(!diagnostics.is_empty(), "{name}: {expr}");
        }
    }
}
