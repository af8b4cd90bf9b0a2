//! The values of the trace: static Python values, traced arrays, functions; dtypes and JAX's
//! type promotion.

use crate::syntax::ast::{Expr, FunctionDef, Param};
use crate::syntax::span::Span;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

pub use ferrax_runtime::DType;

/// The MLIR element type of a dtype (`f32`, `i1`).
pub fn mlir_element(dtype: DType) -> &'static str {
    match dtype {
        DType::Bool => "i1",
        DType::I32 => "i32",
        DType::I64 => "i64",
        DType::F32 => "f32",
        DType::F64 => "f64",
    }
}

/// bool < int < float, for promotion.
fn category(dtype: DType) -> u8 {
    match dtype {
        DType::Bool => 0,
        DType::I32 | DType::I64 => 1,
        DType::F32 | DType::F64 => 2,
    }
}

/// The abstract value of a traced array: dtype, static shape, and JAX's weak-type flag
/// (set for values that come from Python scalars).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ArrayType {
    pub dtype: DType,
    pub shape: Vec<i64>,
    pub weak: bool,
}

impl ArrayType {
    pub fn new(dtype: DType, shape: Vec<i64>) -> Self {
        Self {
            dtype,
            shape,
            weak: false,
        }
    }

    pub fn size(&self) -> i64 {
        self.shape.iter().product()
    }

    /// `tensor<2x3xf32>`.
    pub fn mlir(&self) -> String {
        let mut text = String::from("tensor<");
        for dim in &self.shape {
            text.push_str(&format!("{dim}x"));
        }
        text.push_str(mlir_element(self.dtype));
        text.push('>');
        text
    }

    /// `f32[2,3]`, as signatures write it.
    pub fn signature(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        format!("{}[{}]", self.dtype.short(), dims.join(","))
    }
}

/// NumPy's shape repr: `(3,)`, `(2, 3)`, `()`.
pub fn shape_repr(shape: &[i64]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// JAX's promotion of two (dtype, weak) pairs, with 64-bit types only where both sides ask.
pub fn promote(a: (DType, bool), b: (DType, bool)) -> (DType, bool) {
    let ((da, wa), (db, wb)) = (a, b);
    match (wa, wb) {
        (false, false) | (true, true) => {
            let dtype = if category(da) != category(db) {
                if category(da) > category(db) { da } else { db }
            } else if da.size() >= db.size() {
                da
            } else {
                db
            };
            (dtype, wa && wb)
        }
        (true, false) => promote_weak(da, db),
        (false, true) => promote_weak(db, da),
    }
}

fn promote_weak(weak: DType, strong: DType) -> (DType, bool) {
    if category(weak) <= category(strong) {
        (strong, false)
    } else {
        (weak, true)
    }
}

/// A user function: a `def` or a `lambda`, with the scope it closes over and its defaults
/// (evaluated where it was defined, as Python does).
pub struct Closure {
    pub name: String,
    pub params: Vec<Param>,
    pub defaults: Vec<Option<Value>>,
    pub body: FunctionBody,
    pub scope: Rc<Scope>,
    pub span: Span,
}

pub enum FunctionBody {
    Def(Rc<FunctionDef>),
    Lambda(Rc<Expr>),
}

/// A function wrapped by `jax.custom_jvp` or `jax.custom_vjp`, with the rules registered on it.
pub struct CustomRule {
    pub kind: CustomKind,
    pub primal: Value,
    pub rules: Vec<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustomKind {
    Jvp,
    Vjp,
}

/// A differentiation transform (`jax.grad(f, argnums=...)` and friends) not applied yet.
#[derive(Clone)]
pub struct Transform {
    pub name: &'static str,
    pub func: Value,
    pub argnums: Option<Value>,
    pub has_aux: bool,
}

/// A value during the trace.
#[derive(Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<Vec<Value>>),
    /// A traced array: index into the emitter's values, and its abstract type.
    Array(Traced),
    Function(Rc<Closure>),
    /// A library function by qualified name (`jax.numpy.exp`, `builtins.range`).
    Builtin(&'static str),
    /// An imported module by name (`jax.numpy`).
    Module(&'static str),
    Partial {
        func: Rc<Value>,
        args: Rc<Vec<Value>>,
        keywords: Rc<Vec<(String, Value)>>,
    },
    /// `jax.jit(f, ...)`: `f` with the names and positions of its static arguments, and the
    /// positions of the arguments whose buffers a compiled entry may reuse for its outputs.
    Jit {
        func: Rc<Value>,
        static_argnums: Rc<Vec<i64>>,
        static_argnames: Rc<Vec<String>>,
        donate_argnums: Rc<Vec<i64>>,
    },
    Custom(Rc<RefCell<CustomRule>>),
    Transform(Rc<Transform>),
    /// The pullback returned by `jax.vjp`.
    Pullback(Rc<super::transforms::Pullback>),
    /// An attribute of a value that is called later (`x.sum`, `f.defvjp`).
    Method {
        receiver: Rc<Value>,
        name: Rc<str>,
    },
    DType(DType),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Traced {
    pub id: usize,
    pub ty: ArrayType,
}

impl Value {
    /// What the value is, for messages (`a function`, `float32[3]`).
    pub fn describe(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "a bool".into(),
            Value::Int(_) => "an int".into(),
            Value::Float(_) => "a float".into(),
            Value::Str(_) => "a string".into(),
            Value::Tuple(_) => "a tuple".into(),
            Value::List(_) => "a list".into(),
            Value::Array(t) => format!("an array {}{}", t.ty.dtype.name(), shape_repr(&t.ty.shape)),
            Value::Module(name) => format!("the module `{name}`"),
            Value::DType(d) => format!("the dtype {}", d.name()),
            _ => "a function".into(),
        }
    }

    pub fn is_callable(&self) -> bool {
        matches!(
            self,
            Value::Function(_)
                | Value::Builtin(_)
                | Value::Partial { .. }
                | Value::Jit { .. }
                | Value::Custom(_)
                | Value::Transform(_)
                | Value::Pullback(_)
                | Value::Method { .. }
                | Value::DType(_)
        )
    }
}

/// A Python scope: its names, and the scope it is nested in.
pub struct Scope {
    pub names: RefCell<HashMap<String, Value>>,
    pub parent: Option<Rc<Scope>>,
}

impl Scope {
    pub fn new(parent: Option<Rc<Scope>>) -> Rc<Scope> {
        Rc::new(Scope {
            names: RefCell::new(HashMap::new()),
            parent,
        })
    }

    pub fn lookup(&self, name: &str) -> Option<Value> {
        if let Some(value) = self.names.borrow().get(name) {
            return Some(value.clone());
        }
        self.parent.as_ref().and_then(|p| p.lookup(name))
    }

    pub fn set(&self, name: &str, value: Value) {
        self.names.borrow_mut().insert(name.to_string(), value);
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_scalars_take_the_array_dtype() {
        assert_eq!(
            promote((DType::F32, false), (DType::F32, true)),
            (DType::F32, false)
        );
        assert_eq!(
            promote((DType::I32, false), (DType::F32, true)),
            (DType::F32, true)
        );
        assert_eq!(
            promote((DType::Bool, false), (DType::I32, true)),
            (DType::I32, true)
        );
        assert_eq!(
            promote((DType::I32, false), (DType::F32, false)),
            (DType::F32, false)
        );
        assert_eq!(
            promote((DType::F32, true), (DType::I32, true)),
            (DType::F32, true)
        );
        assert_eq!(
            promote((DType::F64, false), (DType::F32, false)),
            (DType::F64, false)
        );
    }
}
