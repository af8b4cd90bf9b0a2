//! A recursive-descent parser for the statements and expressions of LANGUAGE.md §1, §4, §5.
//!
//! The parser never fails: it returns a module and a list of diagnostics. After an error in a
//! statement it skips to the end of that logical line and goes on. Nesting deeper than
//! `MAX_DEPTH` is an error rather than a stack overflow.

use super::ast::*;
use super::lexer::{Tok, Token, lex};
use super::span::{FileId, Span};
use crate::diagnostic::Diagnostic;

const MAX_DEPTH: usize = 100;

/// Parses a whole module.
pub fn parse_module(file: FileId, text: &str) -> (Module, Vec<Diagnostic>) {
    let (tokens, mut errors) = lex(file, text);
    let mut parser = Parser {
        tokens,
        pos: 0,
        errors: vec![],
        depth: 0,
    };
    let body = parser.statements_until_eof();
    // An unclosed bracket already explains an error at the end of the file.
    let end = text.len() as u32;
    if errors
        .iter()
        .any(|e| e.message.ends_with("was never closed"))
    {
        parser.errors.retain(|e| e.span.start < end);
    }
    errors.append(&mut parser.errors);
    errors.sort_by_key(|e| e.span.start);
    (Module { body }, errors)
}

/// Parses one expression (a command-line expression or an annotation).
pub fn parse_expression(file: FileId, text: &str) -> (Option<Expr>, Vec<Diagnostic>) {
    let (tokens, mut errors) = lex(file, text);
    let mut parser = Parser {
        tokens,
        pos: 0,
        errors: vec![],
        depth: 0,
    };
    let expr = parser.expression_list();
    let expr = match expr {
        Ok(expr) => {
            while parser.at(&Tok::Newline) {
                parser.pos += 1;
            }
            if !parser.at(&Tok::Eof) {
                let span = parser.span();
                parser.errors.push(Diagnostic::new(
                    "ferrax::syntax",
                    span,
                    "unexpected text after the expression",
                ));
            }
            Some(expr)
        }
        Err(error) => {
            parser.errors.push(error);
            None
        }
    };
    errors.append(&mut parser.errors);
    (expr, errors)
}

type PResult<T> = Result<T, Diagnostic>;

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    errors: Vec<Diagnostic>,
    depth: usize,
}

impl Parser {
    fn tok(&self) -> &Tok {
        self.tokens.get(self.pos).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn span(&self) -> Span {
        self.tokens
            .get(self.pos)
            .or(self.tokens.last())
            .map(|t| t.span)
            .unwrap_or_default()
    }

    fn prev_span(&self) -> Span {
        self.tokens
            .get(self.pos.saturating_sub(1))
            .map(|t| t.span)
            .unwrap_or_default()
    }

    fn at(&self, tok: &Tok) -> bool {
        self.tok() == tok
    }

    fn at_op(&self, op: &str) -> bool {
        matches!(self.tok(), Tok::Op(o) if *o == op)
    }

    fn at_keyword(&self, keyword: &str) -> bool {
        matches!(self.tok(), Tok::Name(n) if n == keyword)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let found = self.at_op(op);
        if found {
            self.pos += 1;
        }
        found
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.at_keyword(keyword);
        if found {
            self.pos += 1;
        }
        found
    }

    fn error(&self, message: impl Into<String>) -> Diagnostic {
        let found = match self.tok() {
            Tok::Newline => String::from("end of line"),
            Tok::Eof => String::from("end of file"),
            Tok::Indent => String::from("indent"),
            Tok::Dedent => String::from("dedent"),
            Tok::Op(op) => format!("'{op}'"),
            Tok::Name(n) => format!("'{n}'"),
            Tok::Int(_) | Tok::Float(_) => String::from("a number"),
            Tok::Str(_) => String::from("a string"),
        };
        Diagnostic::new(
            "ferrax::syntax",
            self.span(),
            format!("{}, found {found}", message.into()),
        )
    }

    fn expect_op(&mut self, op: &str) -> PResult<Span> {
        if self.at_op(op) {
            self.pos += 1;
            Ok(self.prev_span())
        } else {
            Err(self.error(format!("expected '{op}'")))
        }
    }

    fn name(&mut self) -> PResult<Name> {
        match self.tok().clone() {
            Tok::Name(text) if !is_keyword(&text) => {
                self.pos += 1;
                Ok(Name {
                    text,
                    span: self.prev_span(),
                })
            }
            _ => Err(self.error("expected a name")),
        }
    }

    fn deeper(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Diagnostic::new(
                "ferrax::syntax::too_deep",
                self.span(),
                "the program is nested too deeply",
            )
            .label("nesting limit reached here")
            .help(format!(
                "split the expression into smaller parts; the limit is {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    fn statements_until_eof(&mut self) -> Vec<Stmt> {
        let mut body = vec![];
        while !self.at(&Tok::Eof) {
            if matches!(self.tok(), Tok::Newline | Tok::Indent | Tok::Dedent) {
                if self.at(&Tok::Indent) {
                    self.errors.push(Diagnostic::new(
                        "ferrax::syntax",
                        self.span(),
                        "unexpected indent",
                    ));
                    self.skip_block();
                    continue;
                }
                self.pos += 1;
                continue;
            }
            self.statement_into(&mut body);
        }
        body
    }

    /// Skips an indented block that cannot be parsed.
    fn skip_block(&mut self) {
        let mut level = 0usize;
        loop {
            match self.tok() {
                Tok::Eof => return,
                Tok::Indent => level += 1,
                Tok::Dedent => {
                    level = level.saturating_sub(1);
                    if level == 0 {
                        self.pos += 1;
                        return;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
    }

    /// Parses one statement (or a line of `;`-separated ones); on error records it and
    /// skips to the end of the logical line.
    fn statement_into(&mut self, body: &mut Vec<Stmt>) {
        let depth = self.depth;
        match self.statement(body) {
            Ok(()) => {}
            Err(error) => {
                self.depth = depth;
                self.errors.push(error);
                while !matches!(self.tok(), Tok::Newline | Tok::Eof) {
                    self.pos += 1;
                }
                if self.at(&Tok::Newline) {
                    self.pos += 1;
                }
                if self.at(&Tok::Indent) {
                    self.skip_block();
                }
            }
        }
    }

    fn statement(&mut self, body: &mut Vec<Stmt>) -> PResult<()> {
        let start = self.span();
        let keyword = match self.tok() {
            Tok::Name(n) => n.clone(),
            _ => String::new(),
        };
        match keyword.as_str() {
            "def" => {
                let def = self.function_def(vec![])?;
                body.push(Stmt {
                    span: start.to(self.prev_span()),
                    kind: StmtKind::FunctionDef(def),
                });
                return Ok(());
            }
            "if" => {
                let stmt = self.if_statement()?;
                body.push(stmt);
                return Ok(());
            }
            "for" => {
                self.pos += 1;
                let target = self.target_list()?;
                if !self.eat_keyword("in") {
                    return Err(self.error("expected 'in'"));
                }
                let iter = self.expression_list()?;
                let block = self.block()?;
                body.push(Stmt {
                    span: start.to(self.prev_span()),
                    kind: StmtKind::For {
                        target,
                        iter,
                        body: block,
                    },
                });
                return Ok(());
            }
            "while" | "class" | "try" | "with" | "async" | "match" => {
                let keyword: &'static str = match keyword.as_str() {
                    "while" => "while",
                    "class" => "class",
                    "try" => "try",
                    "with" => "with",
                    "async" => "async",
                    _ => "match",
                };
                self.pos += 1;
                while !matches!(self.tok(), Tok::Newline | Tok::Eof) {
                    self.pos += 1;
                }
                let span = start;
                if self.at(&Tok::Newline) {
                    self.pos += 1;
                }
                if self.at(&Tok::Indent) {
                    self.skip_block();
                }
                body.push(Stmt {
                    span,
                    kind: StmtKind::Unsupported(keyword),
                });
                return Ok(());
            }
            _ => {}
        }
        if self.at_op("@") {
            let mut decorators = vec![];
            while self.eat_op("@") {
                decorators.push(self.expression()?);
                self.expect_newline()?;
            }
            if !self.at_keyword("def") {
                return Err(self.error("expected 'def' after decorators"));
            }
            let def = self.function_def(decorators)?;
            body.push(Stmt {
                span: start.to(self.prev_span()),
                kind: StmtKind::FunctionDef(def),
            });
            return Ok(());
        }
        loop {
            let stmt = self.simple_statement()?;
            body.push(stmt);
            if !self.eat_op(";") || matches!(self.tok(), Tok::Newline | Tok::Eof) {
                break;
            }
        }
        self.expect_newline()
    }

    fn expect_newline(&mut self) -> PResult<()> {
        match self.tok() {
            Tok::Newline => {
                self.pos += 1;
                Ok(())
            }
            Tok::Eof | Tok::Dedent => Ok(()),
            _ => Err(self.error("expected the end of the line")),
        }
    }

    fn simple_statement(&mut self) -> PResult<Stmt> {
        let start = self.span();
        let keyword = match self.tok() {
            Tok::Name(n) => n.clone(),
            _ => String::new(),
        };
        let kind = match keyword.as_str() {
            "return" => {
                self.pos += 1;
                let value = if matches!(self.tok(), Tok::Newline | Tok::Eof | Tok::Dedent)
                    || self.at_op(";")
                {
                    None
                } else {
                    Some(self.expression_list()?)
                };
                StmtKind::Return(value)
            }
            "pass" => {
                self.pos += 1;
                StmtKind::Pass
            }
            "import" => {
                self.pos += 1;
                let module = self.dotted_name()?;
                let alias = if self.eat_keyword("as") {
                    Some(self.name()?)
                } else {
                    None
                };
                if self.at_op(",") {
                    return Err(self.error("import one module per line"));
                }
                StmtKind::Import { module, alias }
            }
            "from" => {
                self.pos += 1;
                let module = self.dotted_name()?;
                if !self.eat_keyword("import") {
                    return Err(self.error("expected 'import'"));
                }
                let parenthesised = self.eat_op("(");
                let mut names = vec![];
                loop {
                    if self.at_op("*") {
                        return Err(Diagnostic::new(
                            "ferrax::syntax",
                            self.span(),
                            "`import *` is not part of the language",
                        )
                        .help("import the names you use"));
                    }
                    let name = self.name()?;
                    let alias = if self.eat_keyword("as") {
                        Some(self.name()?)
                    } else {
                        None
                    };
                    names.push((name, alias));
                    if !self.eat_op(",") || (parenthesised && self.at_op(")")) {
                        break;
                    }
                }
                if parenthesised {
                    self.expect_op(")")?;
                }
                StmtKind::ImportFrom { module, names }
            }
            "assert" => {
                self.pos += 1;
                let test = self.expression()?;
                let message = if self.eat_op(",") {
                    Some(self.expression()?)
                } else {
                    None
                };
                StmtKind::Assert { test, message }
            }
            "global" | "nonlocal" | "yield" | "del" | "raise" | "break" | "continue" | "lambda"
                if keyword != "lambda" =>
            {
                let keyword: &'static str = match keyword.as_str() {
                    "global" => "global",
                    "nonlocal" => "nonlocal",
                    "yield" => "yield",
                    "del" => "del",
                    "raise" => "raise",
                    "break" => "break",
                    _ => "continue",
                };
                self.pos += 1;
                while !matches!(self.tok(), Tok::Newline | Tok::Eof) {
                    self.pos += 1;
                }
                return Ok(Stmt {
                    span: start,
                    kind: StmtKind::Unsupported(keyword),
                });
            }
            _ => {
                let first = self.expression_list()?;
                if self.eat_op("=") {
                    let mut targets = vec![first];
                    let mut value = self.expression_list()?;
                    while self.eat_op("=") {
                        targets.push(value);
                        value = self.expression_list()?;
                    }
                    StmtKind::Assign { targets, value }
                } else if self.eat_op(":") {
                    let annotation = self.expression()?;
                    let value = if self.eat_op("=") {
                        Some(self.expression_list()?)
                    } else {
                        None
                    };
                    StmtKind::AnnAssign {
                        target: first,
                        annotation,
                        value,
                    }
                } else if let Some(op) = self.augmented_operator() {
                    let value = self.expression_list()?;
                    StmtKind::AugAssign {
                        target: first,
                        op,
                        value,
                    }
                } else {
                    StmtKind::Expr(first)
                }
            }
        };
        Ok(Stmt {
            span: start.to(self.prev_span()),
            kind,
        })
    }

    fn augmented_operator(&mut self) -> Option<BinOp> {
        let op = match self.tok() {
            Tok::Op("+=") => BinOp::Add,
            Tok::Op("-=") => BinOp::Sub,
            Tok::Op("*=") => BinOp::Mul,
            Tok::Op("/=") => BinOp::Div,
            Tok::Op("//=") => BinOp::FloorDiv,
            Tok::Op("%=") => BinOp::Mod,
            Tok::Op("**=") => BinOp::Pow,
            Tok::Op("@=") => BinOp::MatMul,
            Tok::Op("&=") => BinOp::BitAnd,
            Tok::Op("|=") => BinOp::BitOr,
            Tok::Op("^=") => BinOp::BitXor,
            _ => return None,
        };
        self.pos += 1;
        Some(op)
    }

    fn dotted_name(&mut self) -> PResult<Vec<Name>> {
        let mut parts = vec![self.name()?];
        while self.eat_op(".") {
            parts.push(self.name()?);
        }
        Ok(parts)
    }

    fn function_def(&mut self, decorators: Vec<Expr>) -> PResult<FunctionDef> {
        self.pos += 1; // def
        let name = self.name()?;
        self.expect_op("(")?;
        let params = self.parameters(")")?;
        self.expect_op(")")?;
        let returns = if self.eat_op("->") {
            Some(self.expression()?)
        } else {
            None
        };
        let body = self.block()?;
        Ok(FunctionDef {
            name,
            params,
            returns,
            body,
            decorators,
        })
    }

    fn parameters(&mut self, close: &str) -> PResult<Vec<Param>> {
        let mut params = vec![];
        while !self.at_op(close) {
            let star = self.eat_op("*") || self.eat_op("**");
            if star && self.at_op(",") {
                // A bare `*` (keyword-only marker): keep going.
                self.pos += 1;
                continue;
            }
            if self.eat_op("/") {
                if !self.eat_op(",") {
                    break;
                }
                continue;
            }
            let name = self.name()?;
            let annotation = if close == ")" && self.eat_op(":") {
                Some(self.expression()?)
            } else {
                None
            };
            let default = if self.eat_op("=") {
                Some(self.expression()?)
            } else {
                None
            };
            params.push(Param {
                name,
                annotation,
                default,
                star,
            });
            if !self.eat_op(",") {
                break;
            }
        }
        Ok(params)
    }

    /// `:` NEWLINE INDENT statements DEDENT, or `:` simple statements on the same line.
    fn block(&mut self) -> PResult<Vec<Stmt>> {
        self.expect_op(":")?;
        let mut body = vec![];
        if !self.at(&Tok::Newline) {
            loop {
                body.push(self.simple_statement()?);
                if !self.eat_op(";") || matches!(self.tok(), Tok::Newline | Tok::Eof) {
                    break;
                }
            }
            self.expect_newline()?;
            return Ok(body);
        }
        self.pos += 1;
        if !self.at(&Tok::Indent) {
            return Err(self.error("expected an indented block"));
        }
        self.pos += 1;
        self.deeper()?;
        while !matches!(self.tok(), Tok::Dedent | Tok::Eof) {
            if self.at(&Tok::Newline) {
                self.pos += 1;
                continue;
            }
            if self.at(&Tok::Indent) {
                self.errors.push(Diagnostic::new(
                    "ferrax::syntax",
                    self.span(),
                    "unexpected indent",
                ));
                self.skip_block();
                continue;
            }
            self.statement_into(&mut body);
        }
        self.depth -= 1;
        if self.at(&Tok::Dedent) {
            self.pos += 1;
        }
        Ok(body)
    }

    fn if_statement(&mut self) -> PResult<Stmt> {
        let start = self.span();
        self.pos += 1; // if / elif
        let test = self.expression()?;
        let body = self.block()?;
        let orelse = if self.at_keyword("elif") {
            vec![self.if_statement()?]
        } else if self.eat_keyword("else") {
            self.block()?
        } else {
            vec![]
        };
        Ok(Stmt {
            span: start.to(self.prev_span()),
            kind: StmtKind::If { test, body, orelse },
        })
    }

    /// Targets of `for`: names and tuples of them, without the `in` comparison.
    fn target_list(&mut self) -> PResult<Expr> {
        let start = self.span();
        let mut items = vec![self.bitwise_or()?];
        let mut trailing = false;
        while self.eat_op(",") {
            trailing = true;
            if self.at_keyword("in") {
                break;
            }
            items.push(self.bitwise_or()?);
            trailing = false;
        }
        if items.len() == 1 && !trailing {
            return Ok(items.remove(0));
        }
        Ok(Expr {
            span: start.to(self.prev_span()),
            kind: ExprKind::Tuple(items),
        })
    }

    /// A comma-separated list, which is a tuple when it has a comma.
    fn expression_list(&mut self) -> PResult<Expr> {
        let start = self.span();
        let first = self.star_or_expression()?;
        if !self.at_op(",") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_op(",") {
            if !self.starts_expression() {
                break;
            }
            items.push(self.star_or_expression()?);
        }
        Ok(Expr {
            span: start.to(self.prev_span()),
            kind: ExprKind::Tuple(items),
        })
    }

    fn starts_expression(&self) -> bool {
        match self.tok() {
            Tok::Name(n) => {
                !is_keyword(n) || matches!(n.as_str(), "not" | "lambda" | "None" | "True" | "False")
            }
            Tok::Int(_) | Tok::Float(_) | Tok::Str(_) => true,
            Tok::Op(op) => matches!(*op, "(" | "[" | "{" | "-" | "+" | "~" | "*" | "..."),
            _ => false,
        }
    }

    fn star_or_expression(&mut self) -> PResult<Expr> {
        if self.at_op("*") {
            let start = self.span();
            self.pos += 1;
            let inner = self.bitwise_or()?;
            return Ok(Expr {
                span: start.to(inner.span),
                kind: ExprKind::Starred(Box::new(inner)),
            });
        }
        self.expression()
    }

    fn expression(&mut self) -> PResult<Expr> {
        self.deeper()?;
        let result = self.expression_inner();
        self.depth -= 1;
        result
    }

    fn expression_inner(&mut self) -> PResult<Expr> {
        if self.at_keyword("lambda") {
            let start = self.span();
            self.pos += 1;
            let params = self.parameters(":")?;
            self.expect_op(":")?;
            let body = self.expression()?;
            return Ok(Expr {
                span: start.to(body.span),
                kind: ExprKind::Lambda {
                    params,
                    body: Box::new(body),
                },
            });
        }
        let body = self.or_test()?;
        if self.eat_keyword("if") {
            let test = self.or_test()?;
            if !self.eat_keyword("else") {
                return Err(self.error("expected 'else'"));
            }
            let orelse = self.expression()?;
            return Ok(Expr {
                span: body.span.to(orelse.span),
                kind: ExprKind::IfExp {
                    test: Box::new(test),
                    body: Box::new(body),
                    orelse: Box::new(orelse),
                },
            });
        }
        if self.at_op(":=") {
            return Err(Diagnostic::not_supported(
                self.span(),
                "the walrus operator `:=`",
            ));
        }
        Ok(body)
    }

    fn bool_op(
        &mut self,
        keyword: &str,
        op: BoolOp,
        next: fn(&mut Self) -> PResult<Expr>,
    ) -> PResult<Expr> {
        let first = next(self)?;
        if !self.at_keyword(keyword) {
            return Ok(first);
        }
        let mut values = vec![first];
        while self.eat_keyword(keyword) {
            values.push(next(self)?);
        }
        let span = values[0].span.to(values[values.len() - 1].span);
        Ok(Expr {
            span,
            kind: ExprKind::BoolOp { op, values },
        })
    }

    fn or_test(&mut self) -> PResult<Expr> {
        self.bool_op("or", BoolOp::Or, Self::and_test)
    }

    fn and_test(&mut self) -> PResult<Expr> {
        self.bool_op("and", BoolOp::And, Self::not_test)
    }

    fn not_test(&mut self) -> PResult<Expr> {
        if self.at_keyword("not") {
            let start = self.span();
            self.pos += 1;
            self.deeper()?;
            let operand = self.not_test();
            self.depth -= 1;
            let operand = operand?;
            return Ok(Expr {
                span: start.to(operand.span),
                kind: ExprKind::UnaryOp {
                    op: UnaryOp::Not,
                    operand: Box::new(operand),
                },
            });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> PResult<Expr> {
        let left = self.bitwise_or()?;
        let mut rest = vec![];
        loop {
            let op = match self.tok() {
                Tok::Op("<") => CmpOp::Lt,
                Tok::Op("<=") => CmpOp::Le,
                Tok::Op(">") => CmpOp::Gt,
                Tok::Op(">=") => CmpOp::Ge,
                Tok::Op("==") => CmpOp::Eq,
                Tok::Op("!=") => CmpOp::Ne,
                Tok::Name(n) if n == "in" => CmpOp::In,
                Tok::Name(n) if n == "is" => {
                    self.pos += 1;
                    let op = if self.eat_keyword("not") {
                        CmpOp::IsNot
                    } else {
                        CmpOp::Is
                    };
                    rest.push((op, self.bitwise_or()?));
                    continue;
                }
                Tok::Name(n)
                    if n == "not"
                        && matches!(self.tokens.get(self.pos + 1).map(|t| &t.tok), Some(Tok::Name(m)) if m == "in") =>
                {
                    self.pos += 2;
                    rest.push((CmpOp::NotIn, self.bitwise_or()?));
                    continue;
                }
                _ => break,
            };
            self.pos += 1;
            rest.push((op, self.bitwise_or()?));
        }
        if rest.is_empty() {
            return Ok(left);
        }
        let span = left.span.to(rest[rest.len() - 1].1.span);
        Ok(Expr {
            span,
            kind: ExprKind::Compare {
                left: Box::new(left),
                rest,
            },
        })
    }

    /// Left-associative binary operators at one precedence level.
    fn binary_level(
        &mut self,
        ops: &[(&str, BinOp)],
        next: fn(&mut Self) -> PResult<Expr>,
    ) -> PResult<Expr> {
        let mut left = next(self)?;
        loop {
            let Some(op) = ops
                .iter()
                .find(|(symbol, _)| self.at_op(symbol))
                .map(|(_, op)| *op)
            else {
                return Ok(left);
            };
            self.pos += 1;
            let right = next(self)?;
            left = Expr {
                span: left.span.to(right.span),
                kind: ExprKind::BinOp {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                },
            };
        }
    }

    fn bitwise_or(&mut self) -> PResult<Expr> {
        self.binary_level(&[("|", BinOp::BitOr)], Self::bitwise_xor)
    }

    fn bitwise_xor(&mut self) -> PResult<Expr> {
        self.binary_level(&[("^", BinOp::BitXor)], Self::bitwise_and)
    }

    fn bitwise_and(&mut self) -> PResult<Expr> {
        self.binary_level(&[("&", BinOp::BitAnd)], Self::shift)
    }

    fn shift(&mut self) -> PResult<Expr> {
        self.binary_level(&[("<<", BinOp::LShift), (">>", BinOp::RShift)], Self::arith)
    }

    fn arith(&mut self) -> PResult<Expr> {
        self.binary_level(&[("+", BinOp::Add), ("-", BinOp::Sub)], Self::term)
    }

    fn term(&mut self) -> PResult<Expr> {
        self.binary_level(
            &[
                ("*", BinOp::Mul),
                ("/", BinOp::Div),
                ("//", BinOp::FloorDiv),
                ("%", BinOp::Mod),
                ("@", BinOp::MatMul),
            ],
            Self::factor,
        )
    }

    fn factor(&mut self) -> PResult<Expr> {
        let op = match self.tok() {
            Tok::Op("-") => UnaryOp::Neg,
            Tok::Op("+") => UnaryOp::Pos,
            Tok::Op("~") => UnaryOp::Invert,
            _ => return self.power(),
        };
        let start = self.span();
        self.pos += 1;
        self.deeper()?;
        let operand = self.factor();
        self.depth -= 1;
        let operand = operand?;
        Ok(Expr {
            span: start.to(operand.span),
            kind: ExprKind::UnaryOp {
                op,
                operand: Box::new(operand),
            },
        })
    }

    fn power(&mut self) -> PResult<Expr> {
        let base = self.primary()?;
        if self.eat_op("**") {
            self.deeper()?;
            let exponent = self.factor();
            self.depth -= 1;
            let exponent = exponent?;
            return Ok(Expr {
                span: base.span.to(exponent.span),
                kind: ExprKind::BinOp {
                    op: BinOp::Pow,
                    left: Box::new(base),
                    right: Box::new(exponent),
                },
            });
        }
        Ok(base)
    }

    fn primary(&mut self) -> PResult<Expr> {
        let mut expr = self.atom()?;
        loop {
            if self.eat_op(".") {
                let attr = self.name()?;
                expr = Expr {
                    span: expr.span.to(attr.span),
                    kind: ExprKind::Attribute {
                        value: Box::new(expr),
                        attr,
                    },
                };
            } else if self.eat_op("(") {
                let (args, keywords) = self.call_arguments()?;
                let end = self.expect_op(")")?;
                expr = Expr {
                    span: expr.span.to(end),
                    kind: ExprKind::Call {
                        func: Box::new(expr),
                        args,
                        keywords,
                    },
                };
            } else if self.eat_op("[") {
                let index = self.subscript()?;
                let end = self.expect_op("]")?;
                expr = Expr {
                    span: expr.span.to(end),
                    kind: ExprKind::Subscript {
                        value: Box::new(expr),
                        index: Box::new(index),
                    },
                };
            } else {
                return Ok(expr);
            }
        }
    }

    fn call_arguments(&mut self) -> PResult<(Vec<Expr>, Vec<Keyword>)> {
        let mut args = vec![];
        let mut keywords: Vec<Keyword> = vec![];
        while !self.at_op(")") {
            if self.at_op("**") {
                return Err(Diagnostic::not_supported(self.span(), "`**` in a call"));
            }
            let is_keyword = matches!(self.tok(), Tok::Name(_))
                && matches!(
                    self.tokens.get(self.pos + 1).map(|t| &t.tok),
                    Some(Tok::Op("="))
                );
            if is_keyword {
                let name = self.name()?;
                self.pos += 1;
                let value = self.expression()?;
                keywords.push(Keyword { name, value });
            } else {
                let arg = self.star_or_expression()?;
                if let Some(keyword) = keywords.first() {
                    return Err(Diagnostic::new(
                        "ferrax::syntax",
                        arg.span,
                        "positional argument follows keyword argument",
                    )
                    .help(format!("move it before `{}=`", keyword.name.text)));
                }
                if self.at_keyword("for") {
                    return Err(Diagnostic::not_supported(
                        self.span(),
                        "a generator expression",
                    ));
                }
                args.push(arg);
            }
            if !self.eat_op(",") {
                break;
            }
        }
        Ok((args, keywords))
    }

    /// The inside of `[...]`: one index, a slice, or a tuple of them.
    fn subscript(&mut self) -> PResult<Expr> {
        let start = self.span();
        // `f32[]` (a scalar in a shape annotation) is an empty index, as `x[()]`.
        if self.at_op("]") {
            return Ok(Expr {
                span: start,
                kind: ExprKind::Tuple(vec![]),
            });
        }
        let first = self.slice_item()?;
        if !self.at_op(",") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_op(",") {
            if self.at_op("]") {
                break;
            }
            items.push(self.slice_item()?);
        }
        Ok(Expr {
            span: start.to(self.prev_span()),
            kind: ExprKind::Tuple(items),
        })
    }

    fn slice_item(&mut self) -> PResult<Expr> {
        let start = self.span();
        let lower = if self.at_op(":") {
            None
        } else {
            Some(Box::new(self.expression()?))
        };
        if !self.eat_op(":") {
            return lower
                .map(|b| *b)
                .ok_or_else(|| self.error("expected an index"));
        }
        let bound = |p: &mut Self| -> PResult<Option<Box<Expr>>> {
            if p.at_op(":") || p.at_op(",") || p.at_op("]") {
                Ok(None)
            } else {
                Ok(Some(Box::new(p.expression()?)))
            }
        };
        let upper = bound(self)?;
        let step = if self.eat_op(":") { bound(self)? } else { None };
        Ok(Expr {
            span: start.to(self.prev_span()),
            kind: ExprKind::Slice { lower, upper, step },
        })
    }

    fn atom(&mut self) -> PResult<Expr> {
        let span = self.span();
        let kind = match self.tok().clone() {
            Tok::Int(v) => ExprKind::Int(v),
            Tok::Float(v) => ExprKind::Float(v),
            Tok::Str(s) => {
                let mut text = s;
                self.pos += 1;
                while let Tok::Str(more) = self.tok().clone() {
                    text.push_str(&more);
                    self.pos += 1;
                }
                return Ok(Expr {
                    span: span.to(self.prev_span()),
                    kind: ExprKind::Str(text),
                });
            }
            Tok::Name(n) => match n.as_str() {
                "None" => ExprKind::None,
                "True" => ExprKind::Bool(true),
                "False" => ExprKind::Bool(false),
                "await" | "yield" => return Err(Diagnostic::not_supported(span, format!("`{n}`"))),
                _ if is_keyword(&n) => return Err(self.error("expected an expression")),
                _ => ExprKind::Name(n),
            },
            Tok::Op("...") => ExprKind::Ellipsis,
            Tok::Op("(") => {
                self.pos += 1;
                self.deeper()?;
                let result = self.parenthesised(span);
                self.depth -= 1;
                return result;
            }
            Tok::Op("[") => {
                self.pos += 1;
                self.deeper()?;
                let mut items = vec![];
                while !self.at_op("]") {
                    items.push(self.star_or_expression()?);
                    if self.at_keyword("for") {
                        return Err(Diagnostic::not_supported(
                            self.span(),
                            "a list comprehension",
                        ));
                    }
                    if !self.eat_op(",") {
                        break;
                    }
                }
                self.depth -= 1;
                let end = self.expect_op("]")?;
                return Ok(Expr {
                    span: span.to(end),
                    kind: ExprKind::List(items),
                });
            }
            Tok::Op("{") => return Err(Diagnostic::not_supported(span, "a dict or set display")),
            _ => return Err(self.error("expected an expression")),
        };
        self.pos += 1;
        Ok(Expr { span, kind })
    }

    fn parenthesised(&mut self, start: Span) -> PResult<Expr> {
        if self.at_op(")") {
            self.pos += 1;
            return Ok(Expr {
                span: start.to(self.prev_span()),
                kind: ExprKind::Tuple(vec![]),
            });
        }
        let first = self.star_or_expression()?;
        if self.at_keyword("for") {
            return Err(Diagnostic::not_supported(
                self.span(),
                "a generator expression",
            ));
        }
        if self.eat_op(")") {
            let mut inner = first;
            if !matches!(inner.kind, ExprKind::Tuple(_)) {
                inner.span = start.to(self.prev_span());
            }
            return Ok(inner);
        }
        let mut items = vec![first];
        while self.eat_op(",") {
            if self.at_op(")") {
                break;
            }
            items.push(self.star_or_expression()?);
        }
        let end = self.expect_op(")")?;
        Ok(Expr {
            span: start.to(end),
            kind: ExprKind::Tuple(items),
        })
    }
}

fn is_keyword(name: &str) -> bool {
    matches!(
        name,
        "False"
            | "None"
            | "True"
            | "and"
            | "as"
            | "assert"
            | "async"
            | "await"
            | "break"
            | "class"
            | "continue"
            | "def"
            | "del"
            | "elif"
            | "else"
            | "except"
            | "finally"
            | "for"
            | "from"
            | "global"
            | "if"
            | "import"
            | "in"
            | "is"
            | "lambda"
            | "nonlocal"
            | "not"
            | "or"
            | "pass"
            | "raise"
            | "return"
            | "try"
            | "while"
            | "with"
            | "yield"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Module {
        let (module, errors) = parse_module(FileId(0), text);
        assert!(errors.is_empty(), "{errors:?}");
        module
    }

    fn expr(text: &str) -> ExprKind {
        let (expr, errors) = parse_expression(FileId(0), text);
        assert!(errors.is_empty(), "{errors:?}");
        expr.map(|e| e.kind).unwrap_or(ExprKind::None)
    }

    #[test]
    fn function_with_defaults_and_decorators() {
        let module = parse_ok(
            "@jax.jit\ndef selu(x, alpha=1.67, scale=1.05):\n    \"\"\"doc\"\"\"\n    return scale * x\n",
        );
        let StmtKind::FunctionDef(def) = &module.body[0].kind else {
            panic!("not a def")
        };
        assert_eq!(def.params.len(), 3);
        assert_eq!(def.decorators.len(), 1);
        assert_eq!(def.body.len(), 2);
    }

    #[test]
    fn precedence_power_binds_tighter_than_unary_minus() {
        let ExprKind::UnaryOp {
            op: UnaryOp::Neg,
            operand,
        } = expr("-x ** 2")
        else {
            panic!("not a negation")
        };
        assert!(matches!(
            operand.kind,
            ExprKind::BinOp { op: BinOp::Pow, .. }
        ));
    }

    #[test]
    fn comparisons_chain_and_calls_take_keywords() {
        assert!(matches!(expr("a < b <= c"), ExprKind::Compare { rest, .. } if rest.len() == 2));
        assert!(
            matches!(expr("f(x, y=2)"), ExprKind::Call { args, keywords, .. } if args.len() == 1 && keywords.len() == 1)
        );
    }

    #[test]
    fn subscripts_slices_and_ellipsis() {
        let ExprKind::Subscript { index, .. } = expr("x[..., ::2, None]") else {
            panic!("not a subscript")
        };
        assert!(matches!(&index.kind, ExprKind::Tuple(items) if items.len() == 3));
    }

    #[test]
    fn empty_subscripts_are_scalar_annotations() {
        assert!(
            matches!(expr("f32[]"), ExprKind::Subscript { index, .. } if index.kind == ExprKind::Tuple(vec![]))
        );
    }

    #[test]
    fn tuples_lambdas_and_conditionals() {
        assert!(matches!(expr("(1,)"), ExprKind::Tuple(items) if items.len() == 1));
        assert!(
            matches!(expr("lambda x, y=1: x + y"), ExprKind::Lambda { params, .. } if params.len() == 2)
        );
        assert!(matches!(expr("a if c else b"), ExprKind::IfExp { .. }));
    }

    #[test]
    fn statements_of_the_language() {
        let module = parse_ok(
            "from functools import partial\nimport jax.numpy as jnp\nx, = t\ny += 1\nfor i in range(3):\n    pass\nif a:\n    b = 1\nelif c:\n    b = 2\nelse:\n    b = 3\nassert n > 0, 'n'\n",
        );
        assert_eq!(module.body.len(), 7);
    }

    #[test]
    fn errors_recover_at_the_next_line() {
        let (_, errors) = parse_module(FileId(0), "x = (1 +\ny = 2\n");
        assert!(!errors.is_empty());
        let (module, errors) = parse_module(FileId(0), "x = = 1\ny = 2\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(module.body.len(), 1);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        let (_, errors) = parse_expression(FileId(0), &text);
        assert!(errors.iter().any(|e| e.code == "ferrax::syntax::too_deep"));
        let text = format!("{}1", "-".repeat(10_000));
        let (_, errors) = parse_expression(FileId(0), &text);
        assert!(errors.iter().any(|e| e.code == "ferrax::syntax::too_deep"));
    }

    #[test]
    fn unsupported_statements_are_kept() {
        let module = parse_ok("while x:\n    pass\n");
        assert_eq!(module.body[0].kind, StmtKind::Unsupported("while"));
    }
}
