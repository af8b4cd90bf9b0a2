//! User-facing errors: one `Diagnostic` type with a code, a labelled span and an optional help
//! line, rendered by miette against the source it points into.

use crate::syntax::span::{SourceMap, Span};
use miette::{LabeledSpan, NamedSource, SourceSpan};
use std::fmt;

/// A user error at a place in the user's source.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Path-form code, e.g. `ferrax::shape::broadcast`.
    pub code: &'static str,
    pub message: String,
    pub span: Span,
    pub label: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            code,
            label: String::from("here"),
            message,
            span,
            help: None,
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// A construct the language has but this compiler does not handle yet.
    pub fn not_supported(span: Span, what: impl fmt::Display) -> Self {
        Self::new(
            "ferrax::unsupported",
            span,
            format!("{what} is not supported yet"),
        )
        .label("not supported yet")
    }
}

/// A diagnostic together with its source, ready for miette to render.
#[derive(Debug)]
pub struct Report {
    diagnostic: Diagnostic,
    source: NamedSource<String>,
    offset: SourceSpan,
}

impl Report {
    pub fn new(diagnostic: Diagnostic, sources: &SourceMap) -> Self {
        let source = sources.get(diagnostic.span.file);
        let offset = SourceSpan::new(
            (diagnostic.span.start as usize).into(),
            diagnostic.span.len(),
        );
        Self {
            source: NamedSource::new(&source.name, source.text.to_string()).with_language("python"),
            offset,
            diagnostic,
        }
    }

    /// `file:line:col` of the diagnostic.
    pub fn position(diagnostic: &Diagnostic, sources: &SourceMap) -> String {
        let source = sources.get(diagnostic.span.file);
        let (line, col) = source.line_col(diagnostic.span.start);
        format!("{}:{line}:{col}", source.name)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.diagnostic.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diagnostic
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(self.diagnostic.label.clone()),
            self.offset,
        ))))
    }
}

/// Renders diagnostics as text, each headed by `error at file:line:col` (at most 20).
pub fn render(diagnostics: &[Diagnostic], sources: &SourceMap) -> String {
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(100);
    let mut text = String::new();
    for diagnostic in diagnostics.iter().take(20) {
        let position = Report::position(diagnostic, sources);
        let report = Report::new(diagnostic.clone(), sources);
        let mut rendered = String::new();
        if handler.render_report(&mut rendered, &report).is_err() {
            rendered = report.to_string();
        }
        text.push_str(&format!("error at {position}\n{rendered}\n"));
    }
    text
}
