//! The static interpreter: statements and expressions of the module, evaluated with static
//! values computed here and array work handed to the emitter.

use super::builtins;
use super::emit::{DResult, Emitter, Unary};
use super::value::{Closure, CustomKind, FunctionBody, Scope, Value};
use crate::diagnostic::Diagnostic;
use crate::syntax::ast::{self, BinOp, BoolOp, CmpOp, Expr, ExprKind, Stmt, StmtKind, UnaryOp};
use crate::syntax::span::Span;
use ferrax_dialects::fx::Predicate;
use std::rc::Rc;

/// The deepest chain of nested calls the trace follows.
const MAX_CALL_DEPTH: usize = 64;

enum Flow {
    Normal,
    Return(Value),
}

pub struct Interp<'c, 'a> {
    pub emit: Emitter<'c, 'a>,
    /// Functions being called, innermost last: recursion is an error.
    calls: Vec<*const Closure>,
    /// Functions traced so far, for unique names.
    functions: usize,
    /// Custom-rule functions whose rules are being traced: inside its own rule, a custom
    /// function is its primal.
    pub custom_rules: Vec<*const std::cell::RefCell<super::value::CustomRule>>,
    /// The prelude's names (`jax.nn` and `jax.scipy.special` functions written in the language).
    pub prelude: Option<Rc<Scope>>,
    /// How many functions differentiated in reverse mode (`grad`, `vjp`, ...) are being traced
    /// around this point.
    pub reverse_depth: usize,
}

impl<'c, 'a> Interp<'c, 'a> {
    pub fn new(emit: Emitter<'c, 'a>) -> Self {
        Self {
            emit,
            calls: vec![],
            functions: 0,
            custom_rules: vec![],
            prelude: None,
            reverse_depth: 0,
        }
    }

    pub fn exec_module(&mut self, module: &ast::Module, scope: &Rc<Scope>) -> DResult<()> {
        for stmt in &module.body {
            if let Flow::Return(_) = self.exec(stmt, scope)? {
                return Err(Diagnostic::new(
                    "ferrax::syntax",
                    stmt.span,
                    "`return` outside a function",
                ));
            }
        }
        Ok(())
    }

    fn exec_block(&mut self, body: &[Stmt], scope: &Rc<Scope>) -> DResult<Flow> {
        for stmt in body {
            if let Flow::Return(value) = self.exec(stmt, scope)? {
                return Ok(Flow::Return(value));
            }
        }
        Ok(Flow::Normal)
    }

    fn exec(&mut self, stmt: &Stmt, scope: &Rc<Scope>) -> DResult<Flow> {
        match &stmt.kind {
            StmtKind::Import { module, alias } => {
                let path: Vec<&str> = module.iter().map(|n| n.text.as_str()).collect();
                let full = path.join(".");
                let span = module[0].span.to(module[module.len() - 1].span);
                let resolved =
                    builtins::module(&full).ok_or_else(|| unknown_module(span, &full))?;
                match alias {
                    Some(alias) => scope.set(&alias.text, Value::Module(resolved)),
                    None => {
                        let top = builtins::module(path[0])
                            .ok_or_else(|| unknown_module(span, path[0]))?;
                        scope.set(path[0], Value::Module(top));
                    }
                }
            }
            StmtKind::ImportFrom { module, names } => {
                let full = module
                    .iter()
                    .map(|n| n.text.as_str())
                    .collect::<Vec<_>>()
                    .join(".");
                let span = module[0].span.to(module[module.len() - 1].span);
                if full == "__future__" {
                    return Ok(Flow::Normal);
                }
                let resolved =
                    builtins::module(&full).ok_or_else(|| unknown_module(span, &full))?;
                for (name, alias) in names {
                    let value =
                        builtins::module_member(self, resolved, &name.text).ok_or_else(|| {
                            Diagnostic::new(
                                "ferrax::name::import",
                                name.span,
                                format!("cannot import `{}` from `{full}`", name.text),
                            )
                            .label("not available")
                        })?;
                    scope.set(&alias.as_ref().unwrap_or(name).text, value);
                }
            }
            StmtKind::FunctionDef(def) => {
                let mut value = self.make_function(
                    &def.name.text,
                    &def.params,
                    FunctionBody::Def(Rc::new(def.clone())),
                    scope,
                    def.name.span,
                )?;
                for decorator in def.decorators.iter().rev() {
                    let callee = self.eval(decorator, scope)?;
                    value = self.call(&callee, vec![value], vec![], decorator.span)?;
                }
                scope.set(&def.name.text, value);
            }
            StmtKind::Assign { targets, value } => {
                let value = self.eval(value, scope)?;
                for target in targets {
                    self.assign(target, value.clone(), scope)?;
                }
            }
            StmtKind::AnnAssign { target, value, .. } => {
                if let Some(value) = value {
                    let value = self.eval(value, scope)?;
                    self.assign(target, value, scope)?;
                }
            }
            StmtKind::AugAssign { target, op, value } => {
                let current = self.eval(target, scope)?;
                let right = self.eval(value, scope)?;
                let result = self.binop(*op, current, right, stmt.span)?;
                self.assign(target, result, scope)?;
            }
            StmtKind::Return(value) => {
                let value = match value {
                    Some(expr) => self.eval(expr, scope)?,
                    None => Value::None,
                };
                return Ok(Flow::Return(value));
            }
            StmtKind::If { test, body, orelse } => {
                let condition = self.eval(test, scope)?;
                let branch = if self.truthy(&condition, test.span)? {
                    body
                } else {
                    orelse
                };
                return self.exec_block(branch, scope);
            }
            StmtKind::For { target, iter, body } => {
                let iterable = self.eval(iter, scope)?;
                for item in self.iterate(&iterable, iter.span)? {
                    self.assign(target, item, scope)?;
                    if let Flow::Return(value) = self.exec_block(body, scope)? {
                        return Ok(Flow::Return(value));
                    }
                }
            }
            StmtKind::Assert { test, message } => {
                let condition = self.eval(test, scope)?;
                if !self.truthy(&condition, test.span)? {
                    let text = match message {
                        Some(m) => match self.eval(m, scope)? {
                            Value::Str(s) => format!("assertion failed: {s}"),
                            _ => String::from("assertion failed"),
                        },
                        None => String::from("assertion failed"),
                    };
                    return Err(
                        Diagnostic::new("ferrax::assert", test.span, text).label("this is false")
                    );
                }
            }
            StmtKind::Expr(expr) => {
                self.eval(expr, scope)?;
            }
            StmtKind::Pass => {}
            StmtKind::Unsupported(keyword) => {
                let help = match *keyword {
                    "while" => "use `jax.lax.while_loop` or a `for` loop over `range`",
                    "class" => "use functions and tuples",
                    "try" => "errors are reported when the program is compiled; remove the `try`",
                    _ => "see LANGUAGE.md §4 for the statements of the language",
                };
                return Err(Diagnostic::new(
                    "ferrax::syntax::unsupported",
                    stmt.span,
                    format!("`{keyword}` is not part of the language"),
                )
                .label("not supported")
                .help(help));
            }
        }
        Ok(Flow::Normal)
    }

    fn make_function(
        &mut self,
        name: &str,
        params: &[ast::Param],
        body: FunctionBody,
        scope: &Rc<Scope>,
        span: Span,
    ) -> DResult<Value> {
        let mut defaults = vec![];
        for param in params {
            defaults.push(match &param.default {
                Some(expr) => Some(self.eval(expr, scope)?),
                None => None,
            });
        }
        Ok(Value::Function(Rc::new(Closure {
            name: name.to_string(),
            params: params.to_vec(),
            defaults,
            body,
            scope: scope.clone(),
            span,
        })))
    }

    fn assign(&mut self, target: &Expr, value: Value, scope: &Rc<Scope>) -> DResult<()> {
        match &target.kind {
            ExprKind::Name(name) => {
                scope.set(name, value);
                Ok(())
            }
            ExprKind::Tuple(targets) | ExprKind::List(targets) => {
                let items = match &value {
                    Value::Tuple(items) | Value::List(items) => items.as_ref().clone(),
                    Value::Array(traced) if !traced.ty.shape.is_empty() => {
                        let n = traced.ty.shape[0];
                        (0..n)
                            .map(|i| {
                                builtins::index_array(self, target.span, traced, &Value::Int(i))
                            })
                            .collect::<DResult<Vec<_>>>()?
                    }
                    other => {
                        return Err(Diagnostic::new(
                            "ferrax::type::unpack",
                            target.span,
                            format!("cannot unpack {}", other.describe()),
                        )
                        .label("needs a tuple"));
                    }
                };
                if items.len() != targets.len() {
                    return Err(Diagnostic::new(
                        "ferrax::type::unpack",
                        target.span,
                        format!(
                            "expected {} values to unpack, found {}",
                            targets.len(),
                            items.len()
                        ),
                    )
                    .label(format!("{} names here", targets.len())));
                }
                for (target, item) in targets.iter().zip(items) {
                    self.assign(target, item, scope)?;
                }
                Ok(())
            }
            ExprKind::Subscript { .. } => Err(Diagnostic::new(
                "ferrax::mutation",
                target.span,
                "arrays cannot be changed in place",
            )
            .label("assignment to an element")
            .help("use `x = x.at[i].set(v)`")),
            _ => Err(Diagnostic::not_supported(
                target.span,
                "this assignment target",
            )),
        }
    }

    fn iterate(&mut self, value: &Value, span: Span) -> DResult<Vec<Value>> {
        match value {
            Value::Tuple(items) | Value::List(items) => Ok(items.as_ref().clone()),
            Value::Array(traced) if !traced.ty.shape.is_empty() => (0..traced.ty.shape[0])
                .map(|i| builtins::index_array(self, span, traced, &Value::Int(i)))
                .collect(),
            other => Err(Diagnostic::new(
                "ferrax::type::iterate",
                span,
                format!("cannot iterate over {}", other.describe()),
            )
            .label("not a static sequence")
            .help("loops run over `range(N)` with a static N, tuples, lists or `zip` of them")),
        }
    }

    /// Python truthiness of a static value; an array condition is an error (it is not known
    /// until run time).
    pub fn truthy(&mut self, value: &Value, span: Span) -> DResult<bool> {
        Ok(match value {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Tuple(items) | Value::List(items) => !items.is_empty(),
            Value::Array(_) => {
                return Err(Diagnostic::new(
                    "ferrax::trace::array_condition",
                    span,
                    "this condition depends on an array value, which is not known until the program runs",
                )
                .label("an array, not a static bool")
                .help("use `jnp.where(cond, a, b)` to choose elementwise, or `jax.lax.cond` to choose a branch"));
            }
            _ => true,
        })
    }

    pub fn eval(&mut self, expr: &Expr, scope: &Rc<Scope>) -> DResult<Value> {
        let span = expr.span;
        match &expr.kind {
            ExprKind::Name(name) => scope
                .lookup(name)
                .or_else(|| builtins::python_builtin(name))
                .ok_or_else(|| {
                    Diagnostic::new(
                        "ferrax::name::undefined",
                        span,
                        format!("name `{name}` is not defined"),
                    )
                    .label("not defined")
                }),
            ExprKind::Int(i) => Ok(Value::Int(*i)),
            ExprKind::Float(f) => Ok(Value::Float(*f)),
            ExprKind::Str(s) => Ok(Value::Str(s.as_str().into())),
            ExprKind::Bool(b) => Ok(Value::Bool(*b)),
            ExprKind::None => Ok(Value::None),
            ExprKind::Ellipsis => Err(Diagnostic::not_supported(span, "`...` outside an index")),
            ExprKind::Tuple(items) => Ok(Value::Tuple(Rc::new(self.eval_items(items, scope)?))),
            ExprKind::List(items) => Ok(Value::List(Rc::new(self.eval_items(items, scope)?))),
            ExprKind::Attribute { value, attr } => {
                let value = self.eval(value, scope)?;
                builtins::attribute(self, &value, &attr.text, attr.span)
            }
            ExprKind::Call {
                func,
                args,
                keywords,
            } => {
                let callee = self.eval(func, scope)?;
                let args = self.eval_items(args, scope)?;
                let mut kwargs = vec![];
                for keyword in keywords {
                    kwargs.push((keyword.name.text.clone(), self.eval(&keyword.value, scope)?));
                }
                self.call(&callee, args, kwargs, span)
            }
            ExprKind::Subscript { value, index } => {
                let value = self.eval(value, scope)?;
                let index = self.eval_index(index, scope)?;
                builtins::subscript(self, &value, &index, span)
            }
            ExprKind::Slice { .. } => Err(Diagnostic::new(
                "ferrax::syntax",
                span,
                "a slice is only allowed inside `[]`",
            )),
            ExprKind::BinOp { op, left, right } => {
                let l = self.eval(left, scope)?;
                let r = self.eval(right, scope)?;
                self.binop(*op, l, r, span)
            }
            ExprKind::UnaryOp { op, operand } => {
                let value = self.eval(operand, scope)?;
                self.unaryop(*op, value, span)
            }
            ExprKind::Compare { left, rest } => {
                let mut l = self.eval(left, scope)?;
                let mut result: Option<Value> = None;
                for (op, right) in rest {
                    let r = self.eval(right, scope)?;
                    let this = self.compare(*op, &l, &r, span)?;
                    result = Some(match result {
                        None => this,
                        Some(previous) => {
                            if !self.truthy(&previous, span)? {
                                return Ok(previous);
                            }
                            this
                        }
                    });
                    l = r;
                }
                Ok(result.unwrap_or(Value::Bool(true)))
            }
            ExprKind::BoolOp { op, values } => {
                let mut last = Value::None;
                for value in values {
                    last = self.eval(value, scope)?;
                    let truth = self.truthy(&last, value.span)?;
                    match op {
                        BoolOp::And if !truth => return Ok(last),
                        BoolOp::Or if truth => return Ok(last),
                        _ => {}
                    }
                }
                Ok(last)
            }
            ExprKind::IfExp { test, body, orelse } => {
                let condition = self.eval(test, scope)?;
                if self.truthy(&condition, test.span)? {
                    self.eval(body, scope)
                } else {
                    self.eval(orelse, scope)
                }
            }
            ExprKind::Lambda { params, body } => self.make_function(
                "<lambda>",
                params,
                FunctionBody::Lambda(Rc::new((**body).clone())),
                scope,
                span,
            ),
            ExprKind::Starred(_) => Err(Diagnostic::new(
                "ferrax::syntax",
                span,
                "`*` is only allowed in a call or a tuple",
            )),
        }
    }

    fn eval_items(&mut self, items: &[Expr], scope: &Rc<Scope>) -> DResult<Vec<Value>> {
        let mut values = vec![];
        for item in items {
            if let ExprKind::Starred(inner) = &item.kind {
                let value = self.eval(inner, scope)?;
                values.extend(self.iterate(&value, inner.span)?);
            } else {
                values.push(self.eval(item, scope)?);
            }
        }
        Ok(values)
    }

    /// An index expression: slices become `builtins::Index` values.
    fn eval_index(&mut self, index: &Expr, scope: &Rc<Scope>) -> DResult<Value> {
        match &index.kind {
            ExprKind::Tuple(items) => {
                let mut values = vec![];
                for item in items {
                    values.push(self.eval_index(item, scope)?);
                }
                Ok(Value::Tuple(Rc::new(values)))
            }
            ExprKind::Slice { lower, upper, step } => {
                let mut part = |e: &Option<Box<Expr>>| -> DResult<Value> {
                    match e {
                        Some(e) => self.eval(e, scope),
                        None => Ok(Value::None),
                    }
                };
                let parts = vec![part(lower)?, part(upper)?, part(step)?];
                Ok(Value::Method {
                    receiver: Rc::new(Value::Tuple(Rc::new(parts))),
                    name: "slice".into(),
                })
            }
            ExprKind::Ellipsis => Ok(Value::Method {
                receiver: Rc::new(Value::None),
                name: "...".into(),
            }),
            _ => self.eval(index, scope),
        }
    }

    pub fn call(
        &mut self,
        callee: &Value,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        span: Span,
    ) -> DResult<Value> {
        match callee {
            Value::Function(closure) => self.call_closure(closure, args, kwargs, span),
            Value::Builtin(name) => builtins::call(self, name, args, kwargs, span),
            Value::Partial {
                func,
                args: bound,
                keywords,
            } => {
                let mut all_args = bound.as_ref().clone();
                all_args.extend(args);
                let mut all_kwargs = keywords.as_ref().clone();
                all_kwargs.extend(kwargs);
                self.call(func, all_args, all_kwargs, span)
            }
            Value::Jit { func, .. } => self.call(func, args, kwargs, span),
            Value::Custom(rule) => super::transforms::call_custom(self, rule, args, kwargs, span),
            Value::Transform(transform) => {
                super::transforms::apply(self, transform, args, kwargs, span)
            }
            Value::Pullback(pullback) => {
                super::transforms::call_pullback(self, pullback, args, span)
            }
            Value::Method { receiver, name } => {
                builtins::call_method(self, receiver, name, args, kwargs, span)
            }
            Value::DType(dtype) => {
                builtins::call(self, dtype_constructor(*dtype), args, kwargs, span)
            }
            other => Err(Diagnostic::new(
                "ferrax::type::not_callable",
                span,
                format!("{} is not callable", other.describe()),
            )
            .label("called here")),
        }
    }

    fn call_closure(
        &mut self,
        closure: &Rc<Closure>,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        span: Span,
    ) -> DResult<Value> {
        let name = &closure.name;
        if closure.params.iter().any(|p| p.star) {
            return Err(Diagnostic::new(
                "ferrax::syntax::unsupported",
                closure.span,
                format!("`{name}` has `*args` or `**kwargs`"),
            )
            .label("defined here")
            .help("name each parameter; calls may still splat a static tuple with `f(*xs)`"));
        }
        if self.calls.contains(&Rc::as_ptr(closure)) {
            return Err(Diagnostic::new("ferrax::trace::recursion", span, format!("`{name}` calls itself"))
                .label("recursive call")
                .help("calls are inlined when the program is compiled, so recursion is not allowed; use a loop"));
        }
        if self.calls.len() >= MAX_CALL_DEPTH {
            return Err(Diagnostic::new(
                "ferrax::trace::depth",
                span,
                "calls are nested too deeply",
            )
            .label("here"));
        }
        let params = &closure.params;
        let mut bound: Vec<Option<Value>> = vec![None; params.len()];
        if args.len() > params.len() {
            return Err(Diagnostic::new(
                "ferrax::call::arity",
                span,
                format!(
                    "{name}() takes {} positional arguments but {} were given",
                    params.len(),
                    args.len()
                ),
            )
            .label("called here")
            .help(signature_help(closure)));
        }
        for (slot, arg) in bound.iter_mut().zip(args) {
            *slot = Some(arg);
        }
        for (key, value) in kwargs {
            let Some(index) = params.iter().position(|p| p.name.text == key) else {
                return Err(Diagnostic::new(
                    "ferrax::call::keyword",
                    span,
                    format!("{name}() got an unexpected keyword argument '{key}'"),
                )
                .label("called here")
                .help(signature_help(closure)));
            };
            if bound[index].is_some() {
                return Err(Diagnostic::new(
                    "ferrax::call::keyword",
                    span,
                    format!("{name}() got multiple values for argument '{key}'"),
                )
                .label("called here"));
            }
            bound[index] = Some(value);
        }
        let local = Scope::new(Some(closure.scope.clone()));
        let mut missing = vec![];
        for ((param, slot), default) in params.iter().zip(bound).zip(&closure.defaults) {
            match slot.or_else(|| default.clone()) {
                Some(value) => local.set(&param.name.text, value),
                None => missing.push(format!("'{}'", param.name.text)),
            }
        }
        if !missing.is_empty() {
            let plural = if missing.len() == 1 { "" } else { "s" };
            return Err(Diagnostic::new(
                "ferrax::call::arity",
                span,
                format!(
                    "{name}() missing {} required positional argument{plural}: {}",
                    missing.len(),
                    missing.join(" and ")
                ),
            )
            .label("called here")
            .help(signature_help(closure)));
        }
        let mut sizes = std::collections::HashMap::new();
        for param in params {
            if let (Some(annotation), Some(value)) = (
                &param.annotation,
                local.names.borrow().get(&param.name.text),
            ) {
                check_annotation(
                    annotation,
                    value,
                    &format!("argument `{}`", param.name.text),
                    &mut sizes,
                )?;
            }
        }
        self.calls.push(Rc::as_ptr(closure));
        let result = match &closure.body {
            FunctionBody::Def(def) => self.exec_block(&def.body, &local).map(|flow| match flow {
                Flow::Return(value) => value,
                Flow::Normal => Value::None,
            }),
            FunctionBody::Lambda(body) => self.eval(body, &local),
        };
        self.calls.pop();
        if let (Ok(value), FunctionBody::Def(def)) = (&result, &closure.body)
            && let Some(annotation) = &def.returns
        {
            check_annotation(
                annotation,
                value,
                &format!("the result of `{name}`"),
                &mut sizes,
            )?;
        }
        result
    }

    pub fn binop(&mut self, op: BinOp, l: Value, r: Value, span: Span) -> DResult<Value> {
        if let (Some(a), Some(b)) = (number(&l), number(&r)) {
            return static_binop(op, a, b, span);
        }
        match (op, &l, &r) {
            (BinOp::Add, Value::Tuple(a), Value::Tuple(b)) => {
                return Ok(Value::Tuple(Rc::new([a.as_slice(), b.as_slice()].concat())));
            }
            (BinOp::Add, Value::List(a), Value::List(b)) => {
                return Ok(Value::List(Rc::new([a.as_slice(), b.as_slice()].concat())));
            }
            (BinOp::Add, Value::Str(a), Value::Str(b)) => {
                return Ok(Value::Str(format!("{a}{b}").into()));
            }
            (BinOp::Mul, Value::Tuple(a), Value::Int(n)) => {
                return Ok(Value::Tuple(Rc::new(
                    a.iter()
                        .cloned()
                        .cycle()
                        .take(a.len() * (*n).max(0) as usize)
                        .collect(),
                )));
            }
            _ => {}
        }
        if !matches!(l, Value::Array(_)) && !matches!(r, Value::Array(_)) {
            return Err(Diagnostic::new(
                "ferrax::type::operator",
                span,
                format!(
                    "unsupported operand types for {}: {} and {}",
                    op.symbol(),
                    l.describe(),
                    r.describe()
                ),
            )
            .label("here"));
        }
        if op == BinOp::Pow
            && let (Value::Array(a), Value::Int(k)) = (&l, &r)
        {
            let a = if a.ty.dtype.is_float() || *k >= 0 {
                a.clone()
            } else {
                self.emit.convert(span, a, super::value::DType::F32)
            };
            return Ok(Value::Array(self.emit.integer_pow(span, &a, *k)));
        }
        if op == BinOp::MatMul {
            return builtins::call(self, "jax.numpy.matmul", vec![l, r], vec![], span);
        }
        let a = self.emit.to_array(span, &l)?;
        let b = self.emit.to_array(span, &r)?;
        builtins::array_binop(self, op, &a, &b, span).map(Value::Array)
    }

    fn unaryop(&mut self, op: UnaryOp, value: Value, span: Span) -> DResult<Value> {
        match (op, &value) {
            (UnaryOp::Not, _) if !matches!(value, Value::Array(_)) => {
                Ok(Value::Bool(!self.truthy(&value, span)?))
            }
            (UnaryOp::Not, Value::Array(_)) => Err(Diagnostic::new(
                "ferrax::trace::array_condition",
                span,
                "`not` needs a static bool, and this is an array",
            )
            .help("use `jnp.logical_not(x)` or `~x`")),
            (UnaryOp::Pos, _) => Ok(value),
            (UnaryOp::Neg, Value::Int(i)) => {
                Ok(Value::Int(i.checked_neg().ok_or_else(|| overflow(span))?))
            }
            (UnaryOp::Neg, Value::Float(f)) => Ok(Value::Float(-f)),
            (UnaryOp::Neg, Value::Bool(b)) => Ok(Value::Int(-i64::from(*b))),
            (UnaryOp::Neg, Value::Array(a)) => {
                Ok(Value::Array(self.emit.unary(span, Unary::Neg, a)))
            }
            (UnaryOp::Invert, Value::Int(i)) => Ok(Value::Int(!i)),
            (UnaryOp::Invert, Value::Array(a)) if a.ty.dtype == super::value::DType::Bool => {
                Ok(Value::Array(self.emit.unary(span, Unary::Not, a)))
            }
            _ => Err(Diagnostic::new(
                "ferrax::type::operator",
                span,
                format!("bad operand type for unary operator: {}", value.describe()),
            )),
        }
    }

    pub fn compare(&mut self, op: CmpOp, l: &Value, r: &Value, span: Span) -> DResult<Value> {
        if let (Some(a), Some(b)) = (number(l), number(r)) {
            let (x, y) = (a.as_f64(), b.as_f64());
            return Ok(Value::Bool(match op {
                CmpOp::Lt => x < y,
                CmpOp::Le => x <= y,
                CmpOp::Gt => x > y,
                CmpOp::Ge => x >= y,
                CmpOp::Eq | CmpOp::Is => x == y,
                CmpOp::Ne | CmpOp::IsNot => x != y,
                CmpOp::In | CmpOp::NotIn => {
                    return Err(Diagnostic::new(
                        "ferrax::type::operator",
                        span,
                        "`in` needs a sequence",
                    ));
                }
            }));
        }
        if matches!(l, Value::Array(_)) || matches!(r, Value::Array(_)) {
            let predicate = match op {
                CmpOp::Lt => Predicate::Lt,
                CmpOp::Le => Predicate::Le,
                CmpOp::Gt => Predicate::Gt,
                CmpOp::Ge => Predicate::Ge,
                CmpOp::Eq => Predicate::Eq,
                CmpOp::Ne => Predicate::Ne,
                _ => return Err(Diagnostic::not_supported(span, "`is` or `in` on an array")),
            };
            let a = self.emit.to_array(span, l)?;
            let b = self.emit.to_array(span, r)?;
            let (a, b) = self.emit.unify(span, &a, &b)?;
            return Ok(Value::Array(self.emit.compare(span, predicate, &a, &b)));
        }
        match op {
            CmpOp::Is | CmpOp::Eq => Ok(Value::Bool(static_equal(l, r))),
            CmpOp::IsNot | CmpOp::Ne => Ok(Value::Bool(!static_equal(l, r))),
            CmpOp::In | CmpOp::NotIn => match r {
                Value::Tuple(items) | Value::List(items) => {
                    let found = items.iter().any(|item| static_equal(l, item));
                    Ok(Value::Bool(found == (op == CmpOp::In)))
                }
                _ => Err(Diagnostic::new(
                    "ferrax::type::operator",
                    span,
                    format!("`in` needs a tuple or list, found {}", r.describe()),
                )),
            },
            _ => Err(Diagnostic::new(
                "ferrax::type::operator",
                span,
                format!("cannot order {} and {}", l.describe(), r.describe()),
            )),
        }
    }

    /// `lax.while_loop` as an `scf.while` whose regions hold the traced condition and body.
    pub fn while_loop(
        &mut self,
        cond_fun: &Value,
        body_fun: &Value,
        init: Value,
        span: Span,
    ) -> DResult<Value> {
        use super::value::ArrayType;
        if self.reverse_depth > 0 {
            return Err(Diagnostic::new(
                "ferrax::autodiff::while_loop",
                span,
                "Reverse-mode differentiation does not work for lax.while_loop or lax.fori_loop with dynamic start/stop values.",
            )
            .label("inside a function differentiated in reverse mode")
            .help("use lax.scan, or lax.fori_loop with static bounds; forward mode (jax.jvp, jax.jacfwd) works"));
        }
        let mut leaves = vec![];
        let template = flatten_carry(self, &init, &mut leaves, span)?;
        let types: Vec<ArrayType> = leaves
            .iter()
            .map(|t| ArrayType {
                weak: false,
                ..t.ty.clone()
            })
            .collect();
        let location = self.emit.location(span);
        // before: the condition.
        let arguments = self.emit.begin_region(&types, location);
        let carry = rebuild_carry(&template, &mut arguments.iter().cloned());
        let flag = match self
            .call(cond_fun, vec![carry], vec![], span)
            .and_then(|v| self.emit.to_array(span, &v))
        {
            Ok(flag) if flag.ty.shape.is_empty() && flag.ty.dtype == super::value::DType::Bool => {
                flag
            }
            Ok(flag) => {
                self.emit.end_region("scf.condition", None, &[], location);
                return Err(Diagnostic::new(
                    "ferrax::while_loop",
                    span,
                    format!(
                        "the condition of lax.while_loop must return a scalar bool, found {}",
                        super::value::shape_repr(&flag.ty.shape)
                    ),
                ));
            }
            Err(error) => {
                self.emit.end_region("scf.condition", None, &[], location);
                return Err(error);
            }
        };
        let flag = self.emit.extract_scalar(&flag, location);
        let before = self
            .emit
            .end_region("scf.condition", Some(flag), &arguments, location);
        // after: the body.
        let arguments = self.emit.begin_region(&types, location);
        let carry = rebuild_carry(&template, &mut arguments.iter().cloned());
        let next = self.call(body_fun, vec![carry], vec![], span).and_then(|next| {
            let mut next_leaves = vec![];
            flatten_carry(self, &next, &mut next_leaves, span)?;
            if next_leaves.len() != types.len() || next_leaves.iter().zip(&types).any(|(n, t)| n.ty.shape != t.shape) {
                return Err(Diagnostic::new("ferrax::while_loop", span, "the body of lax.while_loop must return a carry of the same structure and shapes"));
            }
            Ok(next_leaves.iter().zip(&types).map(|(n, t)| self.emit.convert(span, n, t.dtype)).collect::<Vec<_>>())
        });
        let next = match next {
            Ok(next) => next,
            Err(error) => {
                self.emit.end_region("scf.yield", None, &[], location);
                return Err(error);
            }
        };
        let after = self.emit.end_region("scf.yield", None, &next, location);
        let results = self.emit.push_with_regions(
            "scf.while",
            &[],
            &leaves,
            vec![before, after],
            types,
            location,
        );
        Ok(rebuild_carry(&template, &mut results.into_iter()))
    }

    /// A new function name made from `base` (letters, digits and `_` only).
    pub fn fresh_name(&mut self, base: &str) -> String {
        self.functions += 1;
        let base: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}_{}", base.trim_matches('_'), self.functions)
    }

    /// The custom rules registered on a `custom_jvp`/`custom_vjp` function.
    pub fn register_rule(
        &mut self,
        receiver: &Value,
        kind: CustomKind,
        rules: Vec<Value>,
        span: Span,
    ) -> DResult<()> {
        match receiver {
            Value::Custom(rule) if rule.borrow().kind == kind => {
                rule.borrow_mut().rules = rules;
                Ok(())
            }
            _ => Err(Diagnostic::new(
                "ferrax::custom_rule",
                span,
                "this function was not made by the matching `jax.custom_jvp`/`jax.custom_vjp`",
            )),
        }
    }
}

/// A static Python number.
#[derive(Clone, Copy)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

pub fn number(value: &Value) -> Option<Number> {
    match value {
        Value::Bool(b) => Some(Number::Int(i64::from(*b))),
        Value::Int(i) => Some(Number::Int(*i)),
        Value::Float(f) => Some(Number::Float(*f)),
        _ => None,
    }
}

fn overflow(span: Span) -> Diagnostic {
    Diagnostic::new(
        "ferrax::static::overflow",
        span,
        "integer overflow in a static computation",
    )
    .label("here")
}

fn static_binop(op: BinOp, a: Number, b: Number, span: Span) -> DResult<Value> {
    let zero = || {
        Diagnostic::new("ferrax::static::zero_division", span, "division by zero")
            .label("the divisor is zero")
    };
    if let (Number::Int(x), Number::Int(y)) = (a, b) {
        let checked = |v: Option<i64>| v.map(Value::Int).ok_or_else(|| overflow(span));
        return match op {
            BinOp::Add => checked(x.checked_add(y)),
            BinOp::Sub => checked(x.checked_sub(y)),
            BinOp::Mul => checked(x.checked_mul(y)),
            BinOp::Div if y == 0 => Err(zero()),
            BinOp::Div => Ok(Value::Float(x as f64 / y as f64)),
            BinOp::FloorDiv | BinOp::Mod if y == 0 => Err(zero()),
            BinOp::FloorDiv => checked(x.checked_div_euclid(y).map(|q| {
                if y < 0 && x.rem_euclid(y) != 0 {
                    q + 1
                } else {
                    q
                }
            })),
            BinOp::Mod => Ok(Value::Int(((x % y) + y) % y)),
            BinOp::Pow if y >= 0 => checked(u32::try_from(y).ok().and_then(|y| x.checked_pow(y))),
            BinOp::Pow => Ok(Value::Float((x as f64).powf(y as f64))),
            BinOp::BitAnd => Ok(Value::Int(x & y)),
            BinOp::BitOr => Ok(Value::Int(x | y)),
            BinOp::BitXor => Ok(Value::Int(x ^ y)),
            BinOp::LShift => checked(u32::try_from(y).ok().and_then(|y| x.checked_shl(y))),
            BinOp::RShift => Ok(Value::Int(x >> y.clamp(0, 63))),
            BinOp::MatMul => Err(Diagnostic::new(
                "ferrax::type::operator",
                span,
                "`@` needs arrays",
            )),
        };
    }
    let (x, y) = (a.as_f64(), b.as_f64());
    Ok(Value::Float(match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div if y == 0.0 => return Err(zero()),
        BinOp::Div => x / y,
        BinOp::FloorDiv if y == 0.0 => return Err(zero()),
        BinOp::FloorDiv => (x / y).floor(),
        BinOp::Mod if y == 0.0 => return Err(zero()),
        BinOp::Mod => x - y * (x / y).floor(),
        BinOp::Pow => x.powf(y),
        _ => {
            return Err(Diagnostic::new(
                "ferrax::type::operator",
                span,
                format!("`{}` needs integers", op.symbol()),
            ));
        }
    }))
}

fn static_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::None, Value::None) => true,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Tuple(x), Value::Tuple(y)) | (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| static_equal(p, q))
        }
        (Value::DType(x), Value::DType(y)) => x == y,
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => x.as_f64() == y.as_f64(),
            _ => false,
        },
    }
}

fn signature_help(closure: &Closure) -> String {
    let names: Vec<String> = closure
        .params
        .iter()
        .zip(&closure.defaults)
        .map(|(p, d)| {
            if d.is_some() {
                format!("{}=...", p.name.text)
            } else {
                p.name.text.clone()
            }
        })
        .collect();
    format!("the signature is {}({})", closure.name, names.join(", "))
}

fn unknown_module(span: Span, name: &str) -> Diagnostic {
    Diagnostic::new("ferrax::name::module", span, format!("module `{name}` is not available"))
        .label("unknown module")
        .help("the language can import jax, jax.numpy, jax.lax, jax.nn, jax.scipy.special, functools, math, numpy")
}

fn dtype_constructor(dtype: super::value::DType) -> &'static str {
    use super::value::DType;
    match dtype {
        DType::Bool => "jax.numpy.bool_",
        DType::I32 => "jax.numpy.int32",
        DType::I64 => "jax.numpy.int64",
        DType::F32 => "jax.numpy.float32",
        DType::F64 => "jax.numpy.float64",
    }
}

/// The array leaves of a loop carry (numbers become arrays); returns the carry's structure.
pub(super) fn flatten_carry(
    interp: &mut Interp,
    value: &Value,
    leaves: &mut Vec<super::value::Traced>,
    span: Span,
) -> DResult<Value> {
    flatten_tree(interp, value, leaves, false, span)
}

/// The structure of a pytree with its leaves made arrays and pushed onto `leaves`; with
/// `keep_none`, a `None` leaf stays `None` (a scan without outputs) instead.
pub(super) fn flatten_tree(
    interp: &mut Interp,
    value: &Value,
    leaves: &mut Vec<super::value::Traced>,
    keep_none: bool,
    span: Span,
) -> DResult<Value> {
    Ok(match value {
        Value::None if keep_none => Value::None,
        Value::Tuple(items) => Value::Tuple(Rc::new(
            items
                .iter()
                .map(|v| flatten_tree(interp, v, leaves, keep_none, span))
                .collect::<DResult<_>>()?,
        )),
        Value::List(items) => Value::List(Rc::new(
            items
                .iter()
                .map(|v| flatten_tree(interp, v, leaves, keep_none, span))
                .collect::<DResult<_>>()?,
        )),
        other => {
            let traced = interp.emit.to_array(span, other)?;
            leaves.push(traced.clone());
            Value::Array(traced)
        }
    })
}

/// The carry's structure with its leaves replaced, in order.
pub(super) fn rebuild_carry(
    template: &Value,
    leaves: &mut dyn Iterator<Item = super::value::Traced>,
) -> Value {
    match template {
        Value::Tuple(items) => Value::Tuple(Rc::new(
            items.iter().map(|v| rebuild_carry(v, leaves)).collect(),
        )),
        Value::List(items) => Value::List(Rc::new(
            items.iter().map(|v| rebuild_carry(v, leaves)).collect(),
        )),
        _ => leaves.next().map_or(Value::None, Value::Array),
    }
}

/// Checks a value against an array annotation such as `f32[n, 3]` (shape names unify across
/// one call through `sizes`). Other annotations (`int`, `jax.Array`, ...) are not checked.
fn check_annotation(
    annotation: &Expr,
    value: &Value,
    what: &str,
    sizes: &mut std::collections::HashMap<String, i64>,
) -> DResult<()> {
    use super::value::{DType, shape_repr};
    let ExprKind::Subscript {
        value: dtype,
        index,
    } = &annotation.kind
    else {
        return Ok(());
    };
    let ExprKind::Name(dtype_name) = &dtype.kind else {
        return Ok(());
    };
    let Some(dtype) = DType::parse(dtype_name) else {
        return Ok(());
    };
    let dims: Vec<&Expr> = match &index.kind {
        ExprKind::Tuple(items) => items.iter().collect(),
        _ => vec![index.as_ref()],
    };
    let (got_dtype, shape) = match value {
        Value::Array(traced) => (traced.ty.dtype, traced.ty.shape.clone()),
        Value::Float(_) => (DType::F32, vec![]),
        Value::Int(_) => (DType::I32, vec![]),
        Value::Bool(_) => (DType::Bool, vec![]),
        other => {
            return Err(Diagnostic::new(
                "ferrax::annotation",
                annotation.span,
                format!("{what} is {}, not an array", other.describe()),
            )
            .label("annotated as an array"));
        }
    };
    let weak = matches!(value, Value::Float(_) | Value::Int(_))
        || matches!(value, Value::Array(t) if t.ty.weak);
    let dtype_ok = got_dtype == dtype
        || (weak && (dtype.is_float() || (dtype.is_int() && got_dtype.is_int())));
    let mismatch = |detail: String| {
        Diagnostic::new(
            "ferrax::annotation",
            annotation.span,
            format!("{what} does not match its annotation: {detail}"),
        )
        .label(format!("got {}{}", got_dtype.name(), shape_repr(&shape)))
    };
    if !dtype_ok {
        return Err(mismatch(format!(
            "the dtype is {}, the annotation says {}",
            got_dtype.name(),
            dtype.name()
        )));
    }
    // `f32[]` is a scalar; `f32[()]` too.
    let dims: Vec<&Expr> = dims
        .into_iter()
        .filter(|d| !matches!(&d.kind, ExprKind::Tuple(items) if items.is_empty()))
        .collect();
    if dims.len() != shape.len() {
        return Err(mismatch(format!(
            "the rank is {}, the annotation has {}",
            shape.len(),
            dims.len()
        )));
    }
    for (dim, size) in dims.iter().zip(&shape) {
        match &dim.kind {
            ExprKind::Int(expected) if expected != size => {
                return Err(mismatch(format!(
                    "a dimension is {size} where the annotation says {expected}"
                )));
            }
            ExprKind::Name(name) => match sizes.get(name) {
                Some(bound) if bound != size => {
                    return Err(mismatch(format!(
                        "`{name}` is {bound} elsewhere in this call but {size} here"
                    )));
                }
                _ => {
                    sizes.insert(name.clone(), *size);
                }
            },
            _ => {}
        }
    }
    Ok(())
}
