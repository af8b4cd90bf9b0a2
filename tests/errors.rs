//! Every diagnostic of the error cases, rendered as the CLI prints it, snapshotted with its source.

use ferrax_compiler::diagnostic::render;
use ferrax_compiler::session::{Error, Session};

#[test]
fn diagnostics() {
    insta::glob!("conformance/errors/*.py", |path| {
        let text = std::fs::read_to_string(path).expect("readable case");
        let name = format!(
            "errors/{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut rendered = String::new();
        for expr in text.lines().filter_map(|l| l.strip_prefix("# error: ")) {
            let output = match Session::new(&name, &text) {
                Err((sources, Error::User(diagnostics))) => render(&diagnostics, &sources),
                Ok(mut session) => match session.eval(expr) {
                    Err(Error::User(diagnostics)) => render(&diagnostics, &session.sources),
                    Err(Error::Internal(error)) => format!("INTERNAL: {error}"),
                    Ok(value) => format!("NO ERROR: {}", value.repr()),
                },
                Err((_, Error::Internal(error))) => format!("INTERNAL: {error}"),
            };
            rendered.push_str(&format!("----- EXPRESSION\n{expr}\n----- ERROR\n{output}"));
        }
        insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(format!("----- SOURCE\n{text}\n{rendered}"));
        });
    });
}
