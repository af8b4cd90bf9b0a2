//! The specialiser (LANGUAGE.md §3): runs the module's Python statically, like `jax.jit`'s
//! trace, and emits fx for the array work.
//!
//! Static values (numbers, strings, tuples, functions) are computed here; arrays are traced:
//! each array operation appends an fx op with the source location of the expression that
//! made it. Calls between user functions are inlined. The result is one `func.func` whose
//! arguments are the traced inputs and whose results are the traced leaves of the output.

mod builtins;
pub mod emit;
mod interp;

/// The functions of `jax.nn` and `jax.scipy.special` written in the language itself.
pub const PRELUDE: &str = include_str!("specialise/prelude.py");
mod control;
mod transforms;
pub mod value;

use crate::diagnostic::Diagnostic;
use crate::syntax::ast;
use crate::syntax::span::{SourceMap, Span};
use emit::Emitter;
use interp::Interp;
use melior::{
    Context,
    ir::{BlockLike, Location, Module},
};
pub use value::{ArrayType, DType};
use value::{Scope, Value};

/// What to trace: an expression in the module's namespace, or a call of a function.
pub enum Entry {
    Expr(ast::Expr),
    Call {
        callee: Callee,
        span: Span,
        args: Vec<EntryArg>,
    },
}

/// The function an entry calls: one of the module's, or the value of an expression in the
/// module's namespace (`jax.grad(f)`).
pub enum Callee {
    Name(String),
    Expr(ast::Expr),
}

/// An argument of an entry call: a traced array input or a static value, optionally by name.
pub struct EntryArg {
    pub name: Option<String>,
    pub kind: EntryArgKind,
}

pub enum EntryArgKind {
    Array(ArrayType),
    /// A static Python value: an int, float, bool, string or None.
    Static(StaticValue),
}

#[derive(Clone, Debug, PartialEq)]
pub enum StaticValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// The structure of a traced result: array leaves refer to the function's results by index.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Array { index: usize, ty: ArrayType },
    Static(StaticValue),
    Tuple(Vec<Output>),
    List(Vec<Output>),
}

/// The traced function: a module holding one `func.func`, and how its results form the output.
pub struct Traced<'c> {
    pub module: Module<'c>,
    pub function: String,
    pub inputs: Vec<ArrayType>,
    pub output: Output,
    /// The positional arguments the callee donates (`jax.jit(f, donate_argnums=...)`).
    pub donated: Vec<usize>,
}

/// Traces `entry` against `module` (file `sources[module_file]`) into a `func.func` named
/// `function` in a new MLIR module.
pub fn trace<'c>(
    context: &'c Context,
    sources: &SourceMap,
    prelude: &ast::Module,
    module: &ast::Module,
    entry: &Entry,
    function: &str,
) -> Result<Traced<'c>, Diagnostic> {
    let file = sources
        .sources
        .first()
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let location = Location::new(context, &file, 1, 1);
    let inputs: Vec<ArrayType> = match entry {
        Entry::Expr(_) => vec![],
        Entry::Call { args, .. } => args
            .iter()
            .filter_map(|a| match &a.kind {
                EntryArgKind::Array(ty) => Some(ty.clone()),
                EntryArgKind::Static(_) => None,
            })
            .collect(),
    };
    let mut interp = Interp::new(Emitter::new(context, sources));
    let arguments = interp.emit.begin_function(&inputs, location);
    let prelude_scope = Scope::new(None);
    interp.exec_module(prelude, &prelude_scope)?;
    interp.prelude = Some(prelude_scope);
    let scope = Scope::new(None);
    scope.set("__name__", Value::Str("__ferrax__".into()));
    interp.exec_module(module, &scope)?;
    let bind_modules = || {
        for (name, module) in [("jax", "jax"), ("jnp", "jax.numpy"), ("lax", "jax.lax")] {
            if scope.lookup(name).is_none() {
                scope.set(name, Value::Module(module));
            }
        }
    };
    let mut donated = vec![];
    let (value, span) = match entry {
        Entry::Expr(expr) => {
            bind_modules();
            (interp.eval(expr, &scope)?, expr.span)
        }
        Entry::Call { callee, span, args } => {
            let callee = match callee {
                Callee::Name(function) => scope.lookup(function).ok_or_else(|| {
                    Diagnostic::new(
                        "ferrax::name::undefined",
                        *span,
                        format!("the module has no function `{function}`"),
                    )
                    .label("not defined in the module")
                })?,
                Callee::Expr(expr) => {
                    bind_modules();
                    interp.eval(expr, &scope)?
                }
            };
            if let Value::Jit { donate_argnums, .. } = &callee {
                for argnum in donate_argnums.iter() {
                    match usize::try_from(*argnum).ok().filter(|a| *a < args.len()) {
                        Some(a) => donated.push(a),
                        None => {
                            return Err(Diagnostic::new(
                                "ferrax::jit",
                                *span,
                                format!(
                                    "donate_argnums {argnum} is out of range for {} arguments",
                                    args.len()
                                ),
                            ));
                        }
                    }
                }
            }
            let mut positional = vec![];
            let mut keywords = vec![];
            let mut arrays = arguments.into_iter();
            for arg in args {
                let value = match &arg.kind {
                    EntryArgKind::Array(_) => {
                        Value::Array(arrays.next().expect("one block argument per array"))
                    }
                    EntryArgKind::Static(value) => static_to_value(value),
                };
                match &arg.name {
                    Some(name) => keywords.push((name.clone(), value)),
                    None => positional.push(value),
                }
            }
            (interp.call(&callee, positional, keywords, *span)?, *span)
        }
    };
    let mut leaves = vec![];
    let output = collect_output(&value, &mut leaves, span)?;
    interp.emit.end_function(function, &leaves, true, location);
    let mlir_module = Module::new(location);
    for operation in std::mem::take(&mut interp.emit.functions) {
        mlir_module.body().append_operation(operation);
    }
    Ok(Traced {
        module: mlir_module,
        function: function.to_string(),
        inputs,
        output,
        donated,
    })
}

fn static_to_value(value: &StaticValue) -> Value {
    match value {
        StaticValue::None => Value::None,
        StaticValue::Bool(b) => Value::Bool(*b),
        StaticValue::Int(i) => Value::Int(*i),
        StaticValue::Float(f) => Value::Float(*f),
        StaticValue::Str(s) => Value::Str(s.as_str().into()),
    }
}

pub(crate) fn collect_output(
    value: &Value,
    leaves: &mut Vec<value::Traced>,
    span: Span,
) -> Result<Output, Diagnostic> {
    Ok(match value {
        Value::Array(traced) => {
            leaves.push(traced.clone());
            Output::Array {
                index: leaves.len() - 1,
                ty: traced.ty.clone(),
            }
        }
        Value::None => Output::Static(StaticValue::None),
        Value::Bool(b) => Output::Static(StaticValue::Bool(*b)),
        Value::Int(i) => Output::Static(StaticValue::Int(*i)),
        Value::Float(f) => Output::Static(StaticValue::Float(*f)),
        Value::Str(s) => Output::Static(StaticValue::Str(s.to_string())),
        Value::Tuple(items) => Output::Tuple(
            items
                .iter()
                .map(|v| collect_output(v, leaves, span))
                .collect::<Result<_, _>>()?,
        ),
        Value::List(items) => Output::List(
            items
                .iter()
                .map(|v| collect_output(v, leaves, span))
                .collect::<Result<_, _>>()?,
        ),
        other => {
            return Err(Diagnostic::new(
                "ferrax::output",
                span,
                format!(
                    "the result is {}, which has no value to print",
                    other.describe()
                ),
            )
            .label("this is not an array, a number or a tuple")
            .help("call the function to get a value"));
        }
    })
}
