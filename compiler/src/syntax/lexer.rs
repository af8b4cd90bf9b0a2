//! Tokens of Python source with Python's indentation rules: `INDENT`/`DEDENT` from leading
//! whitespace, implicit line joining inside brackets, explicit joining with `\`, comments.
//!
//! The lexer never fails: it returns every token it could read and a list of diagnostics.

use super::span::{FileId, Span};
use crate::diagnostic::Diagnostic;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Name(String),
    Int(i64),
    Float(f64),
    Str(String),
    /// An operator or delimiter, e.g. `**=` or `(`.
    Op(&'static str),
    Newline,
    Indent,
    Dedent,
    Eof,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

const OPS: &[&str] = &[
    "**=", "//=", ">>=", "<<=", "...", "->", "**", "//", "<<", ">>", "<=", ">=", "==", "!=", "+=",
    "-=", "*=", "/=", "%=", "@=", "&=", "|=", "^=", ":=", "+", "-", "*", "/", "%", "@", "&", "|",
    "^", "~", "<", ">", "(", ")", "[", "]", "{", "}", ",", ":", ".", ";", "=",
];

/// Splits `text` into tokens.
pub fn lex(file: FileId, text: &str) -> (Vec<Token>, Vec<Diagnostic>) {
    let mut lexer = Lexer {
        file,
        text,
        pos: 0,
        tokens: vec![],
        errors: vec![],
        brackets: vec![],
        indents: vec![0],
    };
    lexer.run();
    (lexer.tokens, lexer.errors)
}

struct Lexer<'s> {
    file: FileId,
    text: &'s str,
    pos: usize,
    tokens: Vec<Token>,
    errors: Vec<Diagnostic>,
    /// Open brackets with their offsets, for implicit line joining and "never closed".
    brackets: Vec<(char, usize)>,
    indents: Vec<usize>,
}

impl Lexer<'_> {
    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.file, start, end)
    }

    fn push(&mut self, tok: Tok, start: usize) {
        let span = self.span(start, self.pos);
        self.tokens.push(Token { tok, span });
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.text[self.pos..].chars().nth(n)
    }

    fn error(&mut self, start: usize, end: usize, message: &str) {
        let span = self.span(start, end);
        self.errors
            .push(Diagnostic::new("ferrax::syntax", span, message).label("here"));
    }

    fn run(&mut self) {
        let mut at_line_start = true;
        while self.pos < self.text.len() {
            if at_line_start && self.brackets.is_empty() {
                // A blank or comment-only line leaves us at the start of the next line.
                at_line_start = self.indentation();
                if at_line_start {
                    continue;
                }
            }
            let Some(c) = self.peek() else { break };
            let start = self.pos;
            match c {
                ' ' | '\t' | '\x0c' | '\r' => self.pos += 1,
                '#' => self.skip_comment(),
                '\\' if matches!(self.peek_at(1), Some('\n')) => self.pos += 2,
                '\\' if self.text[self.pos + 1..].starts_with("\r\n") => self.pos += 3,
                '\n' => {
                    self.pos += 1;
                    if self.brackets.is_empty() {
                        if !matches!(
                            self.tokens.last().map(|t| &t.tok),
                            None | Some(Tok::Newline)
                        ) {
                            self.push(Tok::Newline, start);
                        }
                        at_line_start = true;
                    }
                }
                c if c.is_ascii_digit()
                    || (c == '.' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit())) =>
                {
                    self.number()
                }
                c if c == '_' || c.is_alphabetic() => {
                    let name = self.word();
                    let lower = name.to_ascii_lowercase();
                    let is_prefix = matches!(
                        lower.as_str(),
                        "r" | "b" | "u" | "f" | "rb" | "br" | "fr" | "rf"
                    );
                    if is_prefix && matches!(self.peek(), Some('"' | '\'')) {
                        if lower.contains('f') || lower.contains('b') {
                            self.string(start, lower.contains('r'));
                            self.error(
                                start,
                                self.pos,
                                "f-strings and byte strings are not part of the language",
                            );
                        } else {
                            self.string(start, lower.contains('r'));
                        }
                    } else {
                        self.push(Tok::Name(name), start);
                    }
                }
                '"' | '\'' => self.string(start, false),
                _ => self.operator(c, start),
            }
        }
        let end = self.text.len();
        if let Some(&(open, at)) = self.brackets.first() {
            self.error(at, at + 1, &format!("'{open}' was never closed"));
        }
        if !matches!(
            self.tokens.last().map(|t| &t.tok),
            None | Some(Tok::Newline)
        ) {
            self.tokens.push(Token {
                tok: Tok::Newline,
                span: self.span(end, end),
            });
        }
        while self.indents.len() > 1 {
            self.indents.pop();
            self.tokens.push(Token {
                tok: Tok::Dedent,
                span: self.span(end, end),
            });
        }
        self.tokens.push(Token {
            tok: Tok::Eof,
            span: self.span(end, end),
        });
    }

    /// Reads leading whitespace of a logical line; emits INDENT/DEDENT. Returns true when the
    /// line is blank or a comment (nothing to emit).
    fn indentation(&mut self) -> bool {
        let start = self.pos;
        let mut width = 0;
        while let Some(c) = self.peek() {
            match c {
                ' ' => width += 1,
                '\t' => width = (width / 8 + 1) * 8,
                '\x0c' => width = 0,
                _ => break,
            }
            self.pos += 1;
        }
        match self.peek() {
            None => return true,
            Some('\n') => {
                self.pos += 1;
                return true;
            }
            Some('\r') if self.peek_at(1) == Some('\n') => {
                self.pos += 2;
                return true;
            }
            Some('#') => {
                self.skip_comment();
                return true;
            }
            _ => {}
        }
        let current = *self.indents.last().unwrap_or(&0);
        if width > current {
            self.indents.push(width);
            self.tokens.push(Token {
                tok: Tok::Indent,
                span: self.span(start, self.pos),
            });
        } else {
            while width < *self.indents.last().unwrap_or(&0) {
                self.indents.pop();
                self.tokens.push(Token {
                    tok: Tok::Dedent,
                    span: self.span(self.pos, self.pos),
                });
            }
            if width != *self.indents.last().unwrap_or(&0) {
                self.error(
                    start,
                    self.pos,
                    "unindent does not match any outer indentation level",
                );
            }
        }
        false
    }

    fn skip_comment(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    fn word(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == '_' || c.is_alphanumeric() {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
        self.text[start..self.pos].to_string()
    }

    fn number(&mut self) {
        let start = self.pos;
        let rest = &self.text[self.pos..];
        if rest.len() > 1
            && rest.starts_with('0')
            && matches!(rest.as_bytes()[1], b'x' | b'X' | b'o' | b'O' | b'b' | b'B')
        {
            let radix = match rest.as_bytes()[1] {
                b'x' | b'X' => 16,
                b'o' | b'O' => 8,
                _ => 2,
            };
            self.pos += 2;
            let digits_start = self.pos;
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                self.pos += 1;
            }
            let digits = self.text[digits_start..self.pos].replace('_', "");
            match i64::from_str_radix(&digits, radix) {
                Ok(v) => self.push(Tok::Int(v), start),
                Err(_) => self.error(start, self.pos, "invalid integer literal"),
            }
            return;
        }
        let mut is_float = false;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() || c == '_' {
                self.pos += 1;
            } else if c == '.' && !is_float {
                is_float = true;
                self.pos += 1;
            } else if (c == 'e' || c == 'E')
                && (self.peek_at(1).is_some_and(|d| d.is_ascii_digit())
                    || (matches!(self.peek_at(1), Some('+' | '-'))
                        && self.peek_at(2).is_some_and(|d| d.is_ascii_digit())))
            {
                is_float = true;
                self.pos += 2;
            } else {
                break;
            }
        }
        if self.peek().is_some_and(|c| c == 'j' || c == 'J') {
            self.pos += 1;
            self.error(
                start,
                self.pos,
                "complex numbers are not part of the language",
            );
            return;
        }
        let literal = self.text[start..self.pos].replace('_', "");
        if is_float {
            match literal.parse::<f64>() {
                Ok(v) => self.push(Tok::Float(v), start),
                Err(_) => self.error(start, self.pos, "invalid float literal"),
            }
        } else {
            match literal.parse::<i64>() {
                Ok(v) => self.push(Tok::Int(v), start),
                Err(_) => self.error(
                    start,
                    self.pos,
                    "integer literal too large (the limit is 64 bits)",
                ),
            }
        }
    }

    /// A string literal starting at the quote under the cursor; `start` includes any prefix.
    fn string(&mut self, start: usize, raw: bool) {
        let quote = self.peek().unwrap_or('"');
        let triple = self.text[self.pos..].starts_with(&format!("{quote}{quote}{quote}"));
        let delimiter_len = if triple { 3 } else { 1 };
        self.pos += delimiter_len;
        let mut value = String::new();
        loop {
            let Some(c) = self.peek() else {
                self.error(start, self.pos, "unterminated string literal");
                return;
            };
            if triple && self.text[self.pos..].starts_with(&format!("{quote}{quote}{quote}")) {
                self.pos += 3;
                break;
            }
            if !triple && c == quote {
                self.pos += 1;
                break;
            }
            if !triple && c == '\n' {
                self.error(start, self.pos, "unterminated string literal");
                return;
            }
            self.pos += c.len_utf8();
            if c == '\\' && !raw {
                let Some(next) = self.peek() else { continue };
                self.pos += next.len_utf8();
                match next {
                    'n' => value.push('\n'),
                    't' => value.push('\t'),
                    '\\' => value.push('\\'),
                    '\'' => value.push('\''),
                    '"' => value.push('"'),
                    '\n' => {}
                    other => {
                        value.push('\\');
                        value.push(other);
                    }
                }
            } else {
                value.push(c);
            }
        }
        self.push(Tok::Str(value), start);
    }

    fn operator(&mut self, c: char, start: usize) {
        let rest = &self.text[self.pos..];
        let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) else {
            self.pos += c.len_utf8();
            self.error(start, self.pos, &format!("unexpected character {c:?}"));
            return;
        };
        self.pos += op.len();
        match *op {
            "(" | "[" | "{" => self.brackets.push((c, start)),
            ")" | "]" | "}" => {
                let expected = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match self.brackets.pop() {
                    Some((open, _)) if open == expected => {}
                    Some((open, at)) => {
                        self.error(
                            start,
                            self.pos,
                            &format!("closing '{c}' does not match '{open}'"),
                        );
                        self.brackets.push((open, at));
                    }
                    None => self.error(start, self.pos, &format!("unmatched '{c}'")),
                }
            }
            _ => {}
        }
        self.push(Tok::Op(op), start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Tok> {
        let (tokens, errors) = lex(FileId(0), text);
        assert!(errors.is_empty(), "{errors:?}");
        tokens.into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn indentation_makes_indent_and_dedent() {
        let toks = kinds("def f(x):\n    return x\ny = 1\n");
        assert!(toks.contains(&Tok::Indent));
        assert_eq!(toks.iter().filter(|t| **t == Tok::Dedent).count(), 1);
        assert_eq!(toks.last(), Some(&Tok::Eof));
    }

    #[test]
    fn brackets_join_lines_and_comments_vanish() {
        let toks = kinds("x = (1 +  # comment\n  2)\n");
        assert_eq!(toks.iter().filter(|t| **t == Tok::Newline).count(), 1);
    }

    #[test]
    fn numbers_and_strings() {
        assert_eq!(
            kinds("1.5e3 7 0x10 '''doc'''")[..4],
            [
                Tok::Float(1500.0),
                Tok::Int(7),
                Tok::Int(16),
                Tok::Str("doc".into())
            ]
        );
        assert_eq!(kinds("1.")[0], Tok::Float(1.0));
    }

    #[test]
    fn unclosed_bracket_points_at_the_bracket() {
        let (_, errors) = lex(FileId(0), "def f(x):\n    return x * (2.0 +\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].message, "'(' was never closed");
        assert_eq!(errors[0].span.start, 25);
    }

    #[test]
    fn one_blank_line_still_ends_a_block() {
        let toks = kinds("def f(x):\n    return x\n\ndef g(y):\n    return y\n");
        assert_eq!(toks.iter().filter(|t| **t == Tok::Indent).count(), 2);
        assert_eq!(toks.iter().filter(|t| **t == Tok::Dedent).count(), 2);
    }

    #[test]
    fn bad_dedent_is_an_error() {
        let (_, errors) = lex(FileId(0), "if x:\n    y\n  z\n");
        assert_eq!(errors.len(), 1);
    }
}
