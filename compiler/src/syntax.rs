//! Source text to syntax tree: spans, lexer, parser, AST.

pub mod ast;
pub mod lexer;
pub mod parser;
pub mod span;
