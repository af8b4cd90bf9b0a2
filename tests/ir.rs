//! The module after each stage for the programs in `tests/ir/`. Each program's first line is
//! `# compile: FUNCTION SIGNATURE`. Snapshots are printed without locations; one test checks
//! that every fx op carries the location of the source that made it.

use ferrax_compiler::pipeline::EMIT_STAGES;
use ferrax_compiler::session::Session;

fn header(text: &str) -> (String, String) {
    let line = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# compile: "))
        .expect("first line is `# compile: FUNCTION SIGNATURE`");
    let (function, signature) = line.split_once(' ').expect("a function and a signature");
    (function.to_string(), signature.to_string())
}

#[test]
fn stages() {
    insta::glob!("ir/*.py", |path| {
        let text = std::fs::read_to_string(path).expect("readable program");
        let (function, signature) = header(&text);
        let program = path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for stage in EMIT_STAGES.iter().filter(|s| **s != "llvm-ir") {
            let mut session = Session::new(&format!("ir/{program}.py"), &text)
                .unwrap_or_else(|_| panic!("{program} parses"));
            let ir = session
                .compile(&function, &signature, stage, false)
                .unwrap_or_else(|e| panic!("{program} at {stage}: {e:?}"));
            insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true, snapshot_suffix => format!("{program}.{stage}") }, {
                insta::assert_snapshot!(ir);
            });
        }
    });
}

#[test]
fn every_fx_op_carries_a_source_location() {
    for entry in
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/ir")).expect("tests/ir exists")
    {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|e| e != "py") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable program");
        let (function, signature) = header(&text);
        let mut session = Session::new("prog.py", &text).expect("parses");
        let ir = session
            .compile(&function, &signature, "fx", true)
            .expect("compiles");
        let ops: Vec<&str> = ir
            .lines()
            .filter(|l| l.trim_start().starts_with('%') && l.contains("\"fx."))
            .collect();
        assert!(!ops.is_empty(), "{}", path.display());
        for op in ops {
            assert!(
                op.contains("loc(\"prog.py\":"),
                "{}: no source location on `{op}`",
                path.display()
            );
        }
    }
}

#[test]
fn reverse_mode_reuses_the_forward_exp() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ir/selu_grad.py"))
        .expect("readable program");
    let (function, signature) = header(&text);
    let mut session = Session::new("selu_grad.py", &text).expect("parses");
    let ir = session
        .compile(&function, &signature, "fx", false)
        .expect("compiles");
    assert_eq!(ir.matches("\"fx.exp\"").count(), 1, "{ir}");
    assert!(
        !ir.contains("\"ad."),
        "a differentiation request is left: {ir}"
    );
    assert_eq!(
        ir.matches("func.func").count(),
        1,
        "only the entry function remains: {ir}"
    );
}
