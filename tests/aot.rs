//! Compiled libraries (`ferrax compile --emit lib`): their results equal the JIT's, the
//! header compiles with warnings as errors, and the C and Rust examples link, run and print
//! the JIT's numbers; the C example runs under valgrind with no error.

use ferrax_compiler::aot::{self, NativeKind};
use ferrax_compiler::session::{LibraryEntry, RunArg, Session, Value};
use ferrax_runtime::{Array, DType, Library};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A fresh folder for one test's files, removed when dropped.
struct Folder(PathBuf);

impl std::ops::Deref for Folder {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn folder(name: &str) -> Folder {
    let path = std::env::temp_dir().join(format!("ferrax-aot-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).expect("a temporary folder");
    Folder(path)
}

/// Compiles `entries` of `source` for `sig` into `folder/lib{stem}.so` and its header, for
/// this machine's CPU or `cpu`.
fn library(
    folder: &Path,
    stem: &str,
    source: &str,
    entries: &[(&str, &str)],
    (sig, cpu): (&str, Option<&str>),
) -> PathBuf {
    let mut session = Session::new(&format!("{stem}.py"), source).expect("parses");
    let entries: Vec<LibraryEntry> = entries
        .iter()
        .map(|(name, function)| LibraryEntry {
            name: name.to_string(),
            function: function.to_string(),
            is_expression: name != function,
        })
        .collect();
    let (code, infos) = session
        .compile_native(&entries, sig, cpu, NativeKind::Object)
        .unwrap_or_else(|e| panic!("{stem} compiles: {e:?}"));
    let path = folder.join(format!("lib{stem}.so"));
    aot::write_library(&path, true, &code, &infos).expect("links");
    // The wrappers' source, for the test that compiles it with warnings as errors.
    std::fs::write(folder.join("wrappers.c"), aot::wrappers(&infos)).expect("writes");
    path
}

fn arrays(value: &Value) -> Vec<Array> {
    match value {
        Value::Array { array, .. } => vec![array.clone()],
        Value::Tuple(items) | Value::List(items) => items.iter().flat_map(arrays).collect(),
        other => panic!("expected arrays, got {}", other.repr()),
    }
}

fn assert_close(what: &str, got: &Array, want: &Array) {
    assert_eq!((got.dtype, &got.shape), (want.dtype, &want.shape), "{what}");
    for i in 0..want.len() {
        let (g, w) = (got.get(i), want.get(i));
        assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            "{what}: element {i}: {g} != {w}"
        );
    }
}

const FUNCTIONS: &str = "import jax
import jax.numpy as jnp
from jax import lax


def selu(x, alpha=1.6732632423543772, scale=1.0507009873554805):
    return scale * jnp.where(x > 0, x, alpha * jnp.exp(x) - alpha)


def layer(x, w):
    return jnp.tanh(x @ w), jnp.sum(x, axis=0) > 1.0


def loop(x, w):
    return lax.fori_loop(0, 5, lambda i, c: jnp.sin(c @ w) + i, x)


def counts(x, w):
    return jnp.argmax(x, axis=1), jnp.sum(w)
";

#[test]
fn compiled_library_matches_the_jit() {
    let dir = folder("match");
    let sig = "x: f32[4, 3], w: f32[3, 3]";
    let entries = [
        ("layer", "layer"),
        ("loop", "loop"),
        ("counts", "counts"),
        (
            "dloop",
            "jax.grad(lambda x, w: jnp.sum(loop(x, w)), argnums=(0, 1))",
        ),
    ];
    let path = library(&dir, "functions", FUNCTIONS, &entries, (sig, None));
    let library = Library::open(&path).expect("loads");
    let x: Vec<f64> = (0..12).map(|i| (f64::from(i) * 0.37).sin()).collect();
    let w: Vec<f64> = (0..9).map(|i| (f64::from(i) * 0.71).cos() * 0.5).collect();
    let x = Array::from_f64(DType::F32, vec![4, 3], &x);
    let w = Array::from_f64(DType::F32, vec![3, 3], &w);
    let mut session = Session::new("functions.py", FUNCTIONS).expect("parses");
    for (name, function) in entries {
        let entry = library.entry(name).expect("the entry exists");
        let got = entry.call(&[&x, &w]).expect("the call succeeds");
        let want = if name == function {
            session.run(
                function,
                vec![RunArg::Array(x.clone()), RunArg::Array(w.clone())],
            )
        } else {
            session.eval(&format!(
                "{function}(jnp.array({}), jnp.array({}))",
                nested(&x),
                nested(&w)
            ))
        }
        .unwrap_or_else(|e| panic!("{name} runs in the JIT: {e:?}"));
        let want = arrays(&want);
        assert_eq!(got.len(), want.len(), "{name}: outputs");
        for (index, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(&format!("{name} output {index}"), g, w);
        }
    }
    let wrong = Array::zeros(DType::F32, vec![3, 4]);
    let error = library
        .entry("layer")
        .expect("the entry exists")
        .call(&[&wrong, &w])
        .expect_err("a wrong shape is an error");
    assert!(
        error
            .to_string()
            .contains("should be f32[4, 3], got f32[3, 4]"),
        "{error}"
    );
    assert!(library.entry("missing").is_err());
}

#[test]
fn one_library_serves_every_length() {
    let dir = folder("lengths");
    let path = selu_library(&dir, None);
    let library = Library::open(&path).expect("loads");
    let source = std::fs::read_to_string(format!("{ROOT}/../examples/selu.py")).expect("selu.py");
    let mut session = Session::new("selu.py", &source).expect("parses");
    for n in [0usize, 1, 7, 1000] {
        let values: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 3.0).collect();
        let x = Array::from_f64(DType::F32, vec![n], &values);
        for (name, expr) in [
            ("selu", "selu"),
            ("dselu", "jax.grad(lambda x: jnp.sum(selu(x)))"),
        ] {
            let got = library
                .entry(name)
                .expect("the entry exists")
                .call(&[&x])
                .expect("the call succeeds");
            let items: Vec<String> = (0..n).map(|i| format!("{:?}", x.get(i))).collect();
            let want = session
                .eval(&format!(
                    "{expr}(jnp.array([{}], dtype=jnp.float32).reshape({n}))",
                    items.join(", ")
                ))
                .unwrap_or_else(|e| panic!("{name} runs in the JIT: {e:?}"));
            assert_close(
                &format!("{name} on {n} elements"),
                &got[0],
                &arrays(&want)[0],
            );
        }
    }
}

#[test]
fn sizes_known_at_run_time_need_size_independent_code() {
    let source = "import jax.numpy as jnp\n\n\ndef centre(x):\n    return x - jnp.mean(x)\n\n\ndef layer(x, w):\n    return x @ w\n";
    let mut session = Session::new("sizes.py", source).expect("parses");
    let compile = |session: &mut Session, name: &str, sig: &str| {
        let entry = LibraryEntry {
            name: name.to_string(),
            function: name.to_string(),
            is_expression: false,
        };
        match session.compile_native(&[entry], sig, None, NativeKind::Object) {
            Err(ferrax_compiler::session::Error::User(diagnostics)) => {
                diagnostics[0].message.clone()
            }
            Err(other) => panic!("{name}: not a user error: {other:?}"),
            Ok(_) => panic!("{name} compiled"),
        }
    };
    let message = compile(&mut session, "centre", "x: f32[?]");
    assert!(
        message.contains("depends on the value of a size"),
        "{message}"
    );
    let message = compile(&mut session, "layer", "x: f32[n, 3], w: f32[3, 3]");
    assert!(message.contains("`fx.dot_general`"), "{message}");
    assert!(message.contains("needs static sizes"), "{message}");
}

#[test]
fn donated_inputs_may_be_outputs_and_others_may_not() {
    let dir = folder("donate");
    let source = "from functools import partial\nimport jax\nimport jax.numpy as jnp\n\n\n\
                  @partial(jax.jit, donate_argnums=0)\ndef flip(x, y):\n    return x[::-1] * 2.0 + y\n";
    library(
        &dir,
        "flip",
        source,
        &[("flip", "flip")],
        ("x: f32[4], y: f32[4]", None),
    );
    let header = std::fs::read_to_string(dir.join("libflip.h")).expect("a header");
    assert!(header.contains("x is donated: it may be the buffer of an output."));
    let program = dir.join("donate.c");
    std::fs::write(
        &program,
        "#include <stdio.h>\n#include \"libflip.h\"\nint main(void) {\n\
         float x[4] = {1, 2, 3, 4}, y[4] = {10, 20, 30, 40};\n\
         int status = flip(x, y, x);\n\
         printf(\"%d %g %g %g %g\\n\", status, x[0], x[1], x[2], x[3]);\n\
         printf(\"%d\\n\", flip(x, y, y));\n\
         printf(\"%d\\n\", flip(x, y, y + 1));\n\
         return 0;\n}\n",
    )
    .expect("writes");
    let binary = dir.join("donate");
    let status = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(&*dir)
        .arg(&program)
        .arg("-o")
        .arg(&binary)
        .arg(dir.join("libflip.so"))
        .status()
        .expect("cc runs");
    assert!(status.success());
    let output = Command::new(&binary).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // out = x[::-1] * 2 + y, written over x; y is not donated, so it may not be an output.
    assert_eq!(stdout, "0 18 26 34 42\n1\n1\n");
}

#[test]
fn a_static_library_links_into_a_c_program() {
    let dir = folder("static");
    let source = std::fs::read_to_string(format!("{ROOT}/../examples/selu.py")).expect("selu.py");
    let mut session = Session::new("selu.py", &source).expect("parses");
    let entry = LibraryEntry {
        name: String::from("selu"),
        function: String::from("selu"),
        is_expression: false,
    };
    let (code, infos) = session
        .compile_native(&[entry], "x: f32[?]", None, NativeKind::Object)
        .expect("compiles");
    let archive = dir.join("libselu.a");
    let header = aot::write_library(&archive, false, &code, &infos).expect("archives");
    assert_eq!(header, dir.join("libselu.h"));
    let program = dir.join("main.c");
    std::fs::write(
        &program,
        "#include <stdio.h>\n#include \"libselu.h\"\nint main(void) {\n\
         float x[3] = {-1, 0, 1}, y[3];\n\
         if (selu(3, x, y) != 0) return 1;\n\
         printf(\"%.9g %.9g %.9g\\n\", y[0], y[1], y[2]);\n\
         return selu(-1, x, y) == 1 ? 0 : 1;\n}\n",
    )
    .expect("writes");
    let binary = dir.join("main");
    let status = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(&*dir)
        .arg(&program)
        .arg(&archive)
        .arg("-lm")
        .arg("-o")
        .arg(&binary)
        .status()
        .expect("cc runs");
    assert!(status.success(), "links against the archive");
    let output = Command::new(&binary).output().expect("runs");
    assert!(output.status.success(), "a negative size is refused");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "-1.11133075 0 1.05070102\n"
    );
}

/// Functions and transformed functions of the conformance cases, with the signatures they
/// are compiled for: (case file, entry name, function or expression, signature).
const CONFORMANCE_ENTRIES: &[(&str, &str, &str, &str)] = &[
    ("seed_autodiff", "f", "f", "x1: f32[], x2: f32[]"),
    (
        "seed_autodiff",
        "df",
        "jax.grad(f, argnums=(0, 1))",
        "x1: f32[], x2: f32[]",
    ),
    ("seed_custom_rules", "my_func", "my_func", "x: f32[?]"),
    (
        "seed_custom_rules",
        "dmy_func",
        "jax.grad(lambda x: jnp.sum(my_func(x)))",
        "x: f32[?]",
    ),
    (
        "seed_custom_rules",
        "dclip",
        "jax.grad(lambda x: jnp.sum(clip_gradient(x)))",
        "x: f32[5]",
    ),
    (
        "seed_momentum",
        "momentum_change",
        "momentum_change",
        "m: f32[], v0: f32[], v1: f32[]",
    ),
    ("seed_selu", "compiled_selu", "compiled_selu", "x: f32[6]"),
    (
        "seed_static_args",
        "dist_named",
        "dist_named",
        "x: f32[5], y: f32[5]",
    ),
    (
        "seed_static_args",
        "dist3",
        "lambda x, y: dist(3, x, y)",
        "x: f32[5], y: f32[5]",
    ),
    ("loops", "rnn", "rnn", "w: f32[3, 3], xs: f32[4, 3]"),
    (
        "loops",
        "drnn",
        "jax.grad(rnn, argnums=(0, 1))",
        "w: f32[3, 3], xs: f32[4, 3]",
    ),
    ("loops", "branchy", "branchy", "x: f32[], y: f32[]"),
    (
        "matmul_kernel",
        "dlayer",
        "jax.grad(lambda x, w: jnp.sum(jnp.tanh(x @ w)), argnums=(0, 1))",
        "x: f32[37, 53], w: f32[53, 41]",
    ),
];

/// An array as a Python expression with every digit of each element.
fn literal(array: &Array) -> String {
    let items: Vec<String> = (0..array.len())
        .map(|i| format!("{:?}", array.get(i)))
        .collect();
    let shape: Vec<String> = array.shape.iter().map(usize::to_string).collect();
    format!(
        "jnp.array([{}], dtype=jnp.float32).reshape(({},))",
        items.join(", "),
        shape.join(", ")
    )
    .replace("reshape((,))", "reshape(())")
}

#[test]
fn conformance_functions_compile_to_the_jit_results() {
    let dir = folder("conformance");
    for (index, (case, name, function, sig)) in CONFORMANCE_ENTRIES.iter().enumerate() {
        let source = std::fs::read_to_string(format!("{ROOT}/conformance/cases/{case}.py"))
            .expect("the case exists");
        let stem = format!("case{index}");
        let path = library(&dir, &stem, &source, &[(name, function)], (sig, None));
        let library = Library::open(&path).expect("loads");
        let entry = library.entry(name).expect("the entry exists");
        // Every open size is 4 here.
        let inputs: Vec<Array> = entry
            .signature
            .inputs
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let shape: Vec<usize> = p
                    .shape
                    .iter()
                    .map(|d| match d {
                        ferrax_runtime::library::Dim::Static(size) => *size,
                        ferrax_runtime::library::Dim::Size(_) => 4,
                    })
                    .collect();
                let count: usize = shape.iter().product();
                let values: Vec<f64> = (0..count)
                    .map(|i| ((i as f64) * 0.37 + k as f64).sin() * 1.5)
                    .collect();
                Array::from_f64(DType::F32, shape, &values)
            })
            .collect();
        let got = entry
            .call(&inputs.iter().collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("{case}: {name}: {e}"));
        let arguments: Vec<String> = inputs.iter().map(literal).collect();
        let mut session = Session::new(&format!("{case}.py"), &source).expect("parses");
        let want = session
            .eval(&format!("({function})({})", arguments.join(", ")))
            .unwrap_or_else(|e| panic!("{case}: {name} runs in the JIT: {e:?}"));
        let want = arrays(&want);
        assert_eq!(got.len(), want.len(), "{case}: {name}: outputs");
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(&format!("{case}: {name} output {k}"), g, w);
        }
    }
}

/// A float32 matrix as a Python literal with every digit of each element.
fn nested(array: &Array) -> String {
    let columns = array.shape[1];
    let rows: Vec<String> = (0..array.shape[0])
        .map(|r| {
            let items: Vec<String> = (0..columns)
                .map(|c| format!("{:?}", array.get(r * columns + c)))
                .collect();
            format!("[{}]", items.join(", "))
        })
        .collect();
    format!("[{}], dtype=jnp.float32", rows.join(", "))
}

#[test]
fn headers_and_wrappers_compile_with_warnings_as_errors() {
    let dir = folder("header");
    library(
        &dir,
        "functions",
        FUNCTIONS,
        &[("layer", "layer"), ("counts", "counts")],
        ("x: f32[4, 3], w: f32[3, 3]", None),
    );
    let user = dir.join("user.c");
    std::fs::write(
        &user,
        "#include \"libfunctions.h\"\nint main(void) { return 0; }\n",
    )
    .expect("writes");
    for file in [user, dir.join("wrappers.c")] {
        let status = Command::new("cc")
            .args([
                "-std=c11",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-fsyntax-only",
            ])
            .arg("-I")
            .arg(&*dir)
            .arg(&file)
            .status()
            .expect("cc runs");
        assert!(status.success(), "{} compiles cleanly", file.display());
    }
    let header = std::fs::read_to_string(dir.join("libfunctions.h")).expect("a header");
    assert!(header.contains("/* counts(x: f32[4, 3], w: f32[3, 3]) -> (i32[4], f32[]) */"));
    assert!(
        header.contains("int counts(const float *x, const float *w, int32_t *out0, float *out1);")
    );
}

/// The numbers a line `name: v v v` prints.
fn printed(output: &str, name: &str) -> Vec<f32> {
    let line = output
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no `{name}` line in:\n{output}"));
    line[name.len() + 1..]
        .split_whitespace()
        .map(|v| v.parse().expect("a number"))
        .collect()
}

/// `selu` and its gradient at the examples' points, from the JIT.
fn expected_selu() -> (Vec<f32>, Vec<f32>) {
    let source = std::fs::read_to_string(format!("{ROOT}/../examples/selu.py")).expect("selu.py");
    let mut session = Session::new("selu.py", &source).expect("parses");
    let x = "jnp.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0])";
    let mut values = |expr: String| -> Vec<f32> {
        let value = session.eval(&expr).expect("evaluates");
        let array = &arrays(&value)[0];
        (0..array.len()).map(|i| array.get(i) as f32).collect()
    };
    (
        values(format!("selu({x})")),
        values(format!("jax.grad(lambda x: jnp.sum(selu(x)))({x})")),
    )
}

fn selu_library(dir: &Path, cpu: Option<&str>) -> PathBuf {
    let source = std::fs::read_to_string(format!("{ROOT}/../examples/selu.py")).expect("selu.py");
    library(
        dir,
        "selu",
        &source,
        &[
            ("selu", "selu"),
            ("dselu", "jax.grad(lambda x: jnp.sum(selu(x)))"),
        ],
        ("x: f32[?]", cpu),
    )
}

#[test]
fn c_example_prints_the_jit_numbers_under_valgrind() {
    let dir = folder("c");
    // Valgrind 3.19 does not decode AVX-512: compile for AVX2 CPUs.
    let lib = selu_library(&dir, Some("x86-64-v3"));
    // The runtime's shared library is built beside this test binary.
    let deps = std::env::current_exe()
        .expect("the test binary")
        .parent()
        .expect("its folder")
        .to_path_buf();
    assert!(
        deps.join("libferrax_runtime.so").exists(),
        "libferrax_runtime.so is built beside the tests"
    );
    let program = dir.join("selu_c");
    let status = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"])
        .arg("-I")
        .arg(&*dir)
        .arg(format!("-I{ROOT}/../runtime/include"))
        .arg(format!("{ROOT}/../examples/c/main.c"))
        .arg("-o")
        .arg(&program)
        .arg(format!("-L{}", dir.display()))
        .arg("-lselu")
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        // By path: `cargo test` puts target/debug, which may hold an older build, first on
        // LD_LIBRARY_PATH, before any rpath.
        .arg(deps.join("libferrax_runtime.so"))
        .status()
        .expect("cc runs");
    assert!(status.success(), "the C example builds");
    let output = Command::new("valgrind")
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
        ])
        .arg(&program)
        .arg(&lib)
        .output()
        .expect("valgrind runs (scripts/install-deps.sh installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "valgrind finds no error:\n{stdout}\n{stderr}"
    );
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
    let (selu, dselu) = expected_selu();
    assert_eq!(printed(&stdout, "selu"), selu);
    assert_eq!(printed(&stdout, "dselu"), dselu);
    assert!(stdout.contains(
        "wrong shape: status 1: `selu`: input 0 (x) should be f32[x_size0], got f32[2, 4]"
    ));
}

#[test]
fn rust_example_prints_the_jit_numbers() {
    let dir = folder("rust");
    let lib = selu_library(&dir, None);
    let output = Command::new(env!("CARGO_BIN_EXE_ferrax-rust-example"))
        .arg(&lib)
        .output()
        .expect("the Rust example runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let (selu, dselu) = expected_selu();
    assert_eq!(printed(&stdout, "selu"), selu);
    assert_eq!(printed(&stdout, "dselu"), dselu);
    assert!(
        stdout.contains("wrong shape: `selu`: input 0 (x) should be f32[x_size0], got f32[2, 4]")
    );
}
