//! The library the language provides: modules and their functions (`jax`, `jax.numpy`,
//! `jax.lax`, `functools`, `math`, Python builtins), array attributes, methods and indexing.

use super::emit::{Binary, DResult, Unary};
use super::interp::{Interp, number};
use super::value::{ArrayType, CustomKind, DType, Traced, Transform, Value, shape_repr};
use crate::diagnostic::Diagnostic;
use crate::syntax::ast::BinOp;
use crate::syntax::span::Span;
use ferrax_dialects::fx::{self, Predicate, ReduceKind};
use std::rc::Rc;

const MODULES: &[&str] = &[
    "jax",
    "jax.numpy",
    "jax.lax",
    "jax.nn",
    "jax.scipy",
    "jax.scipy.special",
    "functools",
    "math",
];

/// Every library function, by qualified name.
const FUNCTIONS: &[&str] = &[
    "jax.jit",
    "jax.grad",
    "jax.value_and_grad",
    "jax.vjp",
    "jax.jvp",
    "jax.jacfwd",
    "jax.jacrev",
    "jax.hessian",
    "jax.vmap",
    "jax.custom_jvp",
    "jax.custom_vjp",
    "jax.checkpoint",
    "jax.remat",
    "jax.numpy.array",
    "jax.numpy.asarray",
    "jax.numpy.zeros",
    "jax.numpy.ones",
    "jax.numpy.full",
    "jax.numpy.zeros_like",
    "jax.numpy.eye",
    "jax.numpy.identity",
    "jax.numpy.ones_like",
    "jax.numpy.full_like",
    "jax.numpy.arange",
    "jax.numpy.linspace",
    "jax.numpy.exp",
    "jax.numpy.log",
    "jax.numpy.log1p",
    "jax.numpy.expm1",
    "jax.numpy.sin",
    "jax.numpy.cos",
    "jax.numpy.tanh",
    "jax.numpy.sqrt",
    "jax.numpy.abs",
    "jax.numpy.absolute",
    "jax.numpy.sign",
    "jax.numpy.floor",
    "jax.numpy.square",
    "jax.numpy.reciprocal",
    "jax.numpy.negative",
    "jax.numpy.add",
    "jax.numpy.subtract",
    "jax.numpy.multiply",
    "jax.numpy.divide",
    "jax.numpy.true_divide",
    "jax.numpy.power",
    "jax.numpy.maximum",
    "jax.numpy.minimum",
    "jax.numpy.clip",
    "jax.numpy.where",
    "jax.numpy.sum",
    "jax.numpy.max",
    "jax.numpy.min",
    "jax.numpy.mean",
    "jax.numpy.dot",
    "jax.numpy.vdot",
    "jax.numpy.inner",
    "jax.numpy.outer",
    "jax.numpy.tensordot",
    "jax.numpy.einsum",
    "jax.numpy.transpose",
    "jax.numpy.swapaxes",
    "jax.numpy.matmul",
    "jax.numpy.reshape",
    "jax.numpy.ravel",
    "jax.numpy.prod",
    "jax.numpy.round",
    "jax.numpy.arcsin",
    "jax.numpy.arccos",
    "jax.numpy.arctan",
    "jax.numpy.arctan2",
    "jax.scipy.special.erf",
    "jax.lax.erf",
    "jax.lax.atan2",
    "jax.numpy.flip",
    "jax.numpy.concatenate",
    "jax.numpy.stack",
    "jax.numpy.hstack",
    "jax.numpy.vstack",
    "jax.numpy.split",
    "jax.numpy.tile",
    "jax.numpy.repeat",
    "jax.numpy.pad",
    "jax.numpy.cumsum",
    "jax.numpy.broadcast_to",
    "jax.numpy.expand_dims",
    "jax.numpy.squeeze",
    "jax.numpy.isfinite",
    "jax.numpy.isnan",
    "jax.numpy.all",
    "jax.numpy.any",
    "jax.numpy.argmax",
    "jax.numpy.argmin",
    "jax.numpy.var",
    "jax.numpy.std",
    "jax.numpy.ceil",
    "jax.numpy.exp2",
    "jax.numpy.log2",
    "jax.numpy.log10",
    "jax.numpy.sinh",
    "jax.numpy.cosh",
    "jax.numpy.tan",
    "jax.numpy.cbrt",
    "jax.numpy.logical_xor",
    "jax.numpy.arcsinh",
    "jax.numpy.arccosh",
    "jax.numpy.arctanh",
    "jax.numpy.logical_not",
    "jax.numpy.logical_and",
    "jax.numpy.logical_or",
    "jax.numpy.float32",
    "jax.numpy.float64",
    "jax.numpy.int32",
    "jax.numpy.int64",
    "jax.numpy.bool_",
    "jax.lax.exp",
    "jax.lax.log",
    "jax.lax.log1p",
    "jax.lax.expm1",
    "jax.lax.sin",
    "jax.lax.cos",
    "jax.lax.tanh",
    "jax.lax.sqrt",
    "jax.lax.abs",
    "jax.lax.sign",
    "jax.lax.floor",
    "jax.lax.neg",
    "jax.lax.add",
    "jax.lax.sub",
    "jax.lax.mul",
    "jax.lax.div",
    "jax.lax.max",
    "jax.lax.min",
    "jax.lax.pow",
    "jax.lax.integer_pow",
    "jax.lax.select",
    "jax.lax.stop_gradient",
    "jax.lax.cond",
    "jax.lax.fori_loop",
    "jax.lax.scan",
    "jax.lax.while_loop",
    "functools.partial",
    "math.sqrt",
    "math.exp",
    "math.log",
    "math.floor",
    "math.ceil",
    "math.sin",
    "math.cos",
    "builtins.abs",
    "builtins.min",
    "builtins.max",
    "builtins.sum",
    "builtins.len",
    "builtins.range",
    "builtins.float",
    "builtins.int",
    "builtins.bool",
    "builtins.tuple",
    "builtins.list",
    "builtins.zip",
    "builtins.enumerate",
    "builtins.print",
    "builtins.isinstance",
];

/// The canonical name of an importable module (`numpy` is `jax.numpy`).
pub fn module(name: &str) -> Option<&'static str> {
    if name == "numpy" {
        return Some("jax.numpy");
    }
    MODULES.iter().find(|m| **m == name).copied()
}

fn function(qualified: &str) -> Option<&'static str> {
    FUNCTIONS.iter().find(|f| **f == qualified).copied()
}

/// `module.name`: a submodule, a constant, a dtype or a function.
pub fn module_attribute(module_name: &str, name: &str) -> Option<Value> {
    let qualified = format!("{module_name}.{name}");
    if let Some(m) = module(&qualified) {
        return Some(Value::Module(m));
    }
    if matches!(module_name, "math" | "jax.numpy") {
        match name {
            "pi" => return Some(Value::Float(std::f64::consts::PI)),
            "e" => return Some(Value::Float(std::f64::consts::E)),
            "inf" => return Some(Value::Float(f64::INFINITY)),
            "nan" => return Some(Value::Float(f64::NAN)),
            _ => {}
        }
    }
    if module_name == "jax.numpy"
        && let Some(dtype) = DType::parse(name)
    {
        return Some(Value::DType(dtype));
    }
    function(&qualified).map(Value::Builtin)
}

/// Names the prelude defines, by module.
const PRELUDE_NAMES: &[(&str, &[&str])] = &[
    (
        "jax.nn",
        &[
            "relu",
            "sigmoid",
            "softplus",
            "silu",
            "swish",
            "gelu",
            "elu",
            "selu",
            "leaky_relu",
            "one_hot",
            "logsumexp",
            "softmax",
            "log_softmax",
        ],
    ),
    ("jax.scipy.special", &["logsumexp"]),
];

/// `module.name`, including the functions the prelude defines.
pub fn module_member(interp: &Interp, module_name: &str, name: &str) -> Option<Value> {
    let in_prelude = PRELUDE_NAMES
        .iter()
        .any(|(module, names)| *module == module_name && names.contains(&name));
    if in_prelude && let Some(prelude) = &interp.prelude {
        return prelude.lookup(name);
    }
    module_attribute(module_name, name)
}

pub fn python_builtin(name: &str) -> Option<Value> {
    function(&format!("builtins.{name}")).map(Value::Builtin)
}

/// `value.name`.
pub fn attribute(interp: &mut Interp, value: &Value, name: &str, span: Span) -> DResult<Value> {
    match value {
        Value::Module(module_name) => module_member(interp, module_name, name).ok_or_else(|| {
            Diagnostic::new(
                "ferrax::unsupported",
                span,
                format!("`{module_name}.{name}` is not available"),
            )
            .label("not supported yet")
            .help("LANGUAGE.md §5 lists the functions of the language")
        }),
        Value::Array(traced) => match name {
            "shape" => Ok(Value::Tuple(Rc::new(
                traced.ty.shape.iter().map(|d| Value::Int(*d)).collect(),
            ))),
            "ndim" => Ok(Value::Int(traced.ty.shape.len() as i64)),
            "size" => Ok(Value::Int(traced.ty.size())),
            "dtype" => Ok(Value::DType(traced.ty.dtype)),
            "T" => {
                let permutation: Vec<i64> = (0..traced.ty.shape.len() as i64).rev().collect();
                Ok(Value::Array(interp.emit.transpose(
                    span,
                    traced,
                    &permutation,
                )))
            }
            "sum" | "mean" | "max" | "min" | "reshape" | "astype" | "ravel" | "transpose"
            | "dot" | "at" => Ok(Value::Method {
                receiver: Rc::new(value.clone()),
                name: name.into(),
            }),
            _ => Err(Diagnostic::not_supported(
                span,
                format!("the array attribute `{name}`"),
            )),
        },
        Value::Method {
            receiver,
            name: method,
        } if method.as_ref() == "at[]" => match name {
            "set" | "add" | "multiply" | "mul" | "min" | "max" | "get" => Ok(Value::Method {
                receiver: receiver.clone(),
                name: format!("at.{name}").into(),
            }),
            _ => Err(Diagnostic::not_supported(
                span,
                format!("`.at[...].{name}`"),
            )),
        },
        Value::Custom(rule) => {
            let expected = match rule.borrow().kind {
                CustomKind::Jvp => "defjvp",
                CustomKind::Vjp => "defvjp",
            };
            if name == expected {
                Ok(Value::Method {
                    receiver: Rc::new(value.clone()),
                    name: name.into(),
                })
            } else {
                Err(Diagnostic::new(
                    "ferrax::name::attribute",
                    span,
                    format!("a custom-rule function has no attribute `{name}`"),
                )
                .help(format!("register its rule with `.{expected}`")))
            }
        }
        _ => Err(Diagnostic::new(
            "ferrax::name::attribute",
            span,
            format!("{} has no attribute `{name}`", value.describe()),
        )
        .label("here")),
    }
}

/// Positional-or-keyword arguments of a library call.
struct Args {
    function: &'static str,
    positional: Vec<Value>,
    keywords: Vec<(String, Value)>,
    span: Span,
}

impl Args {
    fn get(&mut self, index: usize, key: &str) -> Option<Value> {
        if let Some(at) = self.keywords.iter().position(|(k, _)| k == key) {
            return Some(self.keywords.remove(at).1);
        }
        self.positional
            .get_mut(index)
            .map(|slot| std::mem::replace(slot, Value::None))
            .filter(|v| !matches!(v, Value::None))
    }

    fn required(&mut self, index: usize, key: &str) -> DResult<Value> {
        self.get(index, key).ok_or_else(|| {
            Diagnostic::new(
                "ferrax::call::arity",
                self.span,
                format!(
                    "{}() missing required argument '{key}'",
                    short_name(self.function)
                ),
            )
            .label("called here")
        })
    }

    fn array(&mut self, interp: &mut Interp, index: usize, key: &str) -> DResult<Traced> {
        let value = self.required(index, key)?;
        interp.emit.to_array(self.span, &value)
    }
}

fn short_name(name: &str) -> &str {
    name.strip_prefix("builtins.").unwrap_or(name)
}

/// Calls the library function `name`.
pub fn call(
    interp: &mut Interp,
    name: &'static str,
    positional: Vec<Value>,
    keywords: Vec<(String, Value)>,
    span: Span,
) -> DResult<Value> {
    let mut args = Args {
        function: name,
        positional,
        keywords,
        span,
    };
    let short = name.rsplit('.').next().unwrap_or(name);
    let module_name = &name[..name.len() - short.len()].trim_end_matches('.');
    match *module_name {
        "builtins" => return python_call(interp, &mut args, short),
        "math" => {
            let x = static_float(&args.required(0, "x")?, span)?;
            let result = match short {
                "sqrt" => x.sqrt(),
                "exp" => x.exp(),
                "log" => x.ln(),
                "sin" => x.sin(),
                "cos" => x.cos(),
                "floor" => return Ok(Value::Int(x.floor() as i64)),
                _ => return Ok(Value::Int(x.ceil() as i64)),
            };
            return Ok(Value::Float(result));
        }
        "functools" => {
            let func = args.required(0, "func")?;
            let bound = args.positional.split_off(1.min(args.positional.len()));
            return Ok(Value::Partial {
                func: Rc::new(func),
                args: Rc::new(bound),
                keywords: Rc::new(args.keywords),
            });
        }
        "jax" => return jax_call(interp, &mut args, short),
        _ => {}
    }
    if let Some(op) = unary_op(short) {
        let x = args.array(interp, 0, "x")?;
        return Ok(Value::Array(interp.emit.unary(span, op, &x)));
    }
    let binop = match short {
        "add" => Some(BinOp::Add),
        "subtract" | "sub" => Some(BinOp::Sub),
        "multiply" | "mul" => Some(BinOp::Mul),
        "divide" | "true_divide" | "div" => Some(BinOp::Div),
        "power" | "pow" => Some(BinOp::Pow),
        _ => None,
    };
    if let Some(op) = binop {
        let x = args.required(0, "x1")?;
        let y = args.required(1, "x2")?;
        if short == "div" && *module_name == "jax.lax" {
            let (a, b) = (
                interp.emit.to_array(span, &x)?,
                interp.emit.to_array(span, &y)?,
            );
            let (a, b) = interp.emit.unify(span, &a, &b)?;
            return Ok(Value::Array(interp.emit.binary(span, Binary::Div, &a, &b)));
        }
        return interp.binop(op, x, y, span);
    }
    match short {
        "array" | "asarray" => {
            let value = args.required(0, "object")?;
            let mut array = interp.emit.to_array(span, &value)?;
            array.ty.weak = false;
            match args.get(1, "dtype") {
                Some(dtype) => Ok(Value::Array(convert_to(interp, &array, &dtype, span)?)),
                None => Ok(Value::Array(array)),
            }
        }
        "float32" | "float64" | "int32" | "int64" | "bool_" => {
            let array = args.array(interp, 0, "x")?;
            let dtype = DType::parse(short).unwrap_or(DType::F32);
            let mut converted = interp.emit.convert(span, &array, dtype);
            converted.ty.weak = false;
            Ok(Value::Array(converted))
        }
        "zeros" | "ones" | "full" => {
            let shape = static_shape(&args.required(0, "shape")?, span)?;
            let (fill, dtype_index) = match short {
                "zeros" => (Value::Float(0.0), 1),
                "ones" => (Value::Float(1.0), 1),
                _ => (args.required(1, "fill_value")?, 2),
            };
            let dtype = match args.get(dtype_index, "dtype") {
                Some(d) => dtype_of(&d, span)?,
                None => default_dtype(&fill),
            };
            filled(interp, &fill, ArrayType::new(dtype, shape), span)
        }
        "eye" | "identity" => {
            let n = static_int(&args.required(0, "N")?, span)?;
            let (m, k, dtype_index) = if short == "eye" {
                let m = match args.get(1, "M") {
                    Some(Value::None) | None => n,
                    Some(m) => static_int(&m, span)?,
                };
                let k = match args.get(2, "k") {
                    Some(k) => static_int(&k, span)?,
                    None => 0,
                };
                (m, k, 3)
            } else {
                (n, 0, 1)
            };
            if n < 0 || m < 0 {
                return Err(Diagnostic::new(
                    "ferrax::shape::negative",
                    span,
                    format!("negative dimensions are not allowed, found {n} and {m}"),
                ));
            }
            let dtype = match args.get(dtype_index, "dtype") {
                Some(Value::None) | None => DType::F32,
                Some(d) => dtype_of(&d, span)?,
            };
            let values: Vec<f64> = (0..n)
                .flat_map(|i| (0..m).map(move |j| f64::from(u8::from(j - i == k))))
                .collect();
            let mut ty = ArrayType::new(dtype, vec![n, m]);
            ty.weak = false;
            Ok(Value::Array(interp.emit.constant(span, &values, ty)))
        }
        "zeros_like" | "ones_like" | "full_like" => {
            let like = args.array(interp, 0, "a")?;
            let fill = match short {
                "zeros_like" => Value::Float(0.0),
                "ones_like" => Value::Float(1.0),
                _ => args.required(1, "fill_value")?,
            };
            filled(
                interp,
                &fill,
                ArrayType::new(like.ty.dtype, like.ty.shape.clone()),
                span,
            )
        }
        "arange" => {
            let first = args.required(0, "start")?;
            let second = args.get(1, "stop");
            let step = args.get(2, "step").unwrap_or(Value::Int(1));
            let (start, stop) = match second {
                Some(stop) => (first, stop),
                None => (Value::Int(0), first),
            };
            let is_int = [&start, &stop, &step]
                .iter()
                .all(|v| matches!(v, Value::Int(_) | Value::Bool(_)));
            let (a, b, s) = (
                static_float(&start, span)?,
                static_float(&stop, span)?,
                static_float(&step, span)?,
            );
            if s == 0.0 {
                return Err(Diagnostic::new(
                    "ferrax::static::zero_division",
                    span,
                    "arange step must not be zero",
                ));
            }
            let n = ((b - a) / s).ceil().max(0.0) as usize;
            if n > 1 << 28 {
                return Err(Diagnostic::new(
                    "ferrax::shape::too_large",
                    span,
                    format!("arange of {n} elements is too large"),
                ));
            }
            let values: Vec<f64> = (0..n).map(|i| a + s * i as f64).collect();
            let dtype = match args.get(3, "dtype") {
                Some(d) => dtype_of(&d, span)?,
                None if is_int => DType::I32,
                None => DType::F32,
            };
            Ok(Value::Array(interp.emit.constant(
                span,
                &values,
                ArrayType::new(dtype, vec![n as i64]),
            )))
        }
        "linspace" => {
            let start = static_float(&args.required(0, "start")?, span)?;
            let stop = static_float(&args.required(1, "stop")?, span)?;
            let num = match args.get(2, "num") {
                Some(n) => static_int(&n, span)?,
                None => 50,
            };
            let endpoint = match args.get(3, "endpoint") {
                Some(e) => interp.truthy(&e, span)?,
                None => true,
            };
            if !(0..=1 << 28).contains(&num) {
                return Err(Diagnostic::new(
                    "ferrax::shape::too_large",
                    span,
                    format!("linspace of {num} elements is not allowed"),
                ));
            }
            let divisor = if endpoint {
                (num - 1).max(1)
            } else {
                num.max(1)
            } as f64;
            let step = (stop - start) / divisor;
            let values: Vec<f64> = (0..num)
                .map(|i| {
                    if endpoint && i == num - 1 && num > 1 {
                        stop
                    } else {
                        start + step * i as f64
                    }
                })
                .collect();
            Ok(Value::Array(interp.emit.constant(
                span,
                &values,
                ArrayType::new(DType::F32, vec![num]),
            )))
        }
        "square" => {
            let x = args.array(interp, 0, "x")?;
            Ok(Value::Array(interp.emit.integer_pow(span, &x, 2)))
        }
        "reciprocal" => {
            let x = args.required(0, "x")?;
            interp.binop(BinOp::Div, Value::Float(1.0), x, span)
        }
        "integer_pow" => {
            let x = args.array(interp, 0, "x")?;
            let y = static_int(&args.required(1, "y")?, span)?;
            Ok(Value::Array(interp.emit.integer_pow(span, &x, y)))
        }
        "maximum" | "minimum" | "max" | "min" if *module_name == "jax.lax" || short.len() > 3 => {
            let a = args.array(interp, 0, "x1")?;
            let b = args.array(interp, 1, "x2")?;
            let (a, b) = interp.emit.unify(span, &a, &b)?;
            let op = if short.starts_with("max") {
                Binary::Max
            } else {
                Binary::Min
            };
            Ok(Value::Array(interp.emit.binary(span, op, &a, &b)))
        }
        "clip" => {
            let x = args.array(interp, 0, "a")?;
            let low = args.get(1, "a_min").or_else(|| args.get(99, "min"));
            let high = args.get(2, "a_max").or_else(|| args.get(99, "max"));
            let mut result = x;
            if let Some(low) = low {
                let low = interp.emit.to_array(span, &low)?;
                let (a, b) = interp.emit.unify(span, &result, &low)?;
                result = interp.emit.binary(span, Binary::Max, &a, &b);
            }
            if let Some(high) = high {
                let high = interp.emit.to_array(span, &high)?;
                let (a, b) = interp.emit.unify(span, &result, &high)?;
                result = interp.emit.binary(span, Binary::Min, &a, &b);
            }
            Ok(Value::Array(result))
        }
        "where" | "select" => {
            let condition = args.array(interp, 0, "condition")?;
            let x = args.array(interp, 1, "x")?;
            let y = args.array(interp, 2, "y")?;
            Ok(Value::Array(where_(interp, &condition, &x, &y, span)?))
        }
        "sum" | "max" | "min" | "mean" | "prod" => {
            let x = args.array(interp, 0, "a")?;
            let axis = args.get(1, "axis");
            let keepdims = match args.get(99, "keepdims") {
                Some(k) => interp.truthy(&k, span)?,
                None => false,
            };
            reduction(interp, short, &x, axis.as_ref(), keepdims, span).map(Value::Array)
        }
        "dot" | "matmul" | "inner" | "vdot" | "outer" => {
            let a = args.array(interp, 0, "a")?;
            let b = args.array(interp, 1, "b")?;
            match short {
                "dot" => dot(interp, &a, &b, span).map(Value::Array),
                "matmul" => matmul(interp, &a, &b, span).map(Value::Array),
                "inner" if a.ty.shape.is_empty() || b.ty.shape.is_empty() => {
                    dot(interp, &a, &b, span).map(Value::Array)
                }
                "inner" => {
                    let dims = fx::DotDimensions {
                        lhs_contracting: vec![a.ty.shape.len() as i64 - 1],
                        rhs_contracting: vec![b.ty.shape.len() as i64 - 1],
                        ..Default::default()
                    };
                    contract(interp, &a, &b, dims, "inner", span).map(Value::Array)
                }
                _ => {
                    let (na, nb) = (a.ty.size(), b.ty.size());
                    let a = interp.emit.reshape(span, &a, &[na]);
                    let b = interp.emit.reshape(span, &b, &[nb]);
                    if short == "vdot" {
                        let dims = fx::DotDimensions {
                            lhs_contracting: vec![0],
                            rhs_contracting: vec![0],
                            ..Default::default()
                        };
                        return contract(interp, &a, &b, dims, "vdot", span).map(Value::Array);
                    }
                    let (a, b) = promote_pair(interp, &a, &b, span);
                    let a = interp.emit.broadcast_in_dim(span, &a, &[0], &[na, nb]);
                    let b = interp.emit.broadcast_in_dim(span, &b, &[1], &[na, nb]);
                    Ok(Value::Array(interp.emit.binary(span, Binary::Mul, &a, &b)))
                }
            }
        }
        "tensordot" => {
            let a = args.array(interp, 0, "a")?;
            let b = args.array(interp, 1, "b")?;
            let (lhs, rhs): (Vec<i64>, Vec<i64>) =
                match args.get(2, "axes").unwrap_or(Value::Int(2)) {
                    Value::Int(n) => {
                        if n < 0 || n as usize > a.ty.shape.len() || n as usize > b.ty.shape.len() {
                            return Err(Diagnostic::new(
                                "ferrax::shape::axis",
                                span,
                                format!("tensordot axes={n} is larger than an operand's rank"),
                            ));
                        }
                        (
                            (a.ty.shape.len() as i64 - n..a.ty.shape.len() as i64).collect(),
                            (0..n).collect(),
                        )
                    }
                    Value::Tuple(pair) | Value::List(pair) if pair.len() == 2 => {
                        let lhs: Vec<i64> = int_list(&pair[0], span)?
                            .into_iter()
                            .map(|x| axis_index(x, a.ty.shape.len(), span))
                            .collect::<DResult<_>>()?;
                        let rhs: Vec<i64> = int_list(&pair[1], span)?
                            .into_iter()
                            .map(|x| axis_index(x, b.ty.shape.len(), span))
                            .collect::<DResult<_>>()?;
                        (lhs, rhs)
                    }
                    other => {
                        return Err(Diagnostic::new(
                            "ferrax::tensordot",
                            span,
                            format!(
                                "tensordot axes must be an int or a pair of axis lists, found {}",
                                other.describe()
                            ),
                        ));
                    }
                };
            if lhs.len() != rhs.len() {
                return Err(Diagnostic::new(
                    "ferrax::tensordot",
                    span,
                    "tensordot needs as many axes on each side",
                ));
            }
            let dims = fx::DotDimensions {
                lhs_contracting: lhs,
                rhs_contracting: rhs,
                ..Default::default()
            };
            contract(interp, &a, &b, dims, "tensordot", span).map(Value::Array)
        }
        "einsum" => {
            let Some(Value::Str(subscripts)) = args.positional.first().cloned() else {
                return Err(Diagnostic::new(
                    "ferrax::einsum",
                    span,
                    "einsum takes a subscript string first",
                ));
            };
            let operands: Vec<Traced> = args.positional[1..]
                .iter()
                .map(|v| interp.emit.to_array(span, v))
                .collect::<DResult<_>>()?;
            einsum(interp, &subscripts, &operands, span).map(Value::Array)
        }
        "transpose" => {
            let a = args.array(interp, 0, "a")?;
            let rank = a.ty.shape.len();
            let permutation: Vec<i64> = match args.get(1, "axes") {
                None => (0..rank as i64).rev().collect(),
                Some(axes) => int_list(&axes, span)?
                    .into_iter()
                    .map(|x| axis_index(x, rank, span))
                    .collect::<DResult<_>>()?,
            };
            let mut sorted = permutation.clone();
            sorted.sort_unstable();
            if sorted != (0..rank as i64).collect::<Vec<_>>() {
                return Err(Diagnostic::new(
                    "ferrax::shape::axis",
                    span,
                    format!("axes {permutation:?} are not a permutation of the {rank} dimensions"),
                ));
            }
            Ok(Value::Array(interp.emit.transpose(span, &a, &permutation)))
        }
        "swapaxes" => {
            let a = args.array(interp, 0, "a")?;
            let rank = a.ty.shape.len();
            let i = axis_index(static_int(&args.required(1, "axis1")?, span)?, rank, span)?;
            let j = axis_index(static_int(&args.required(2, "axis2")?, span)?, rank, span)?;
            let mut permutation: Vec<i64> = (0..rank as i64).collect();
            permutation.swap(i as usize, j as usize);
            Ok(Value::Array(interp.emit.transpose(span, &a, &permutation)))
        }
        "reshape" => {
            let x = args.array(interp, 0, "a")?;
            let shape = args.required(1, "newshape")?;
            reshape(interp, &x, &shape, span).map(Value::Array)
        }
        "expand_dims" => {
            let x = args.array(interp, 0, "a")?;
            let axes = int_list(&args.required(1, "axis")?, span)?;
            let rank = x.ty.shape.len() + axes.len();
            let mut axes: Vec<i64> = axes
                .into_iter()
                .map(|a| axis_index(a, rank, span))
                .collect::<DResult<_>>()?;
            axes.sort_unstable();
            let mut shape = x.ty.shape.clone();
            for axis in axes {
                shape.insert(axis as usize, 1);
            }
            Ok(Value::Array(interp.emit.reshape(span, &x, &shape)))
        }
        "squeeze" => {
            let x = args.array(interp, 0, "a")?;
            let rank = x.ty.shape.len();
            let axes: Vec<i64> = match args.get(1, "axis") {
                None | Some(Value::None) => (0..rank as i64)
                    .filter(|d| x.ty.shape[*d as usize] == 1)
                    .collect(),
                Some(axis) => int_list(&axis, span)?
                    .into_iter()
                    .map(|a| axis_index(a, rank, span))
                    .collect::<DResult<_>>()?,
            };
            if let Some(axis) = axes.iter().find(|a| x.ty.shape[**a as usize] != 1) {
                return Err(Diagnostic::new(
                    "ferrax::shape::squeeze",
                    span,
                    format!(
                        "cannot squeeze axis {axis} of size {} (only size 1)",
                        x.ty.shape[*axis as usize]
                    ),
                ));
            }
            let shape: Vec<i64> = (0..rank as i64)
                .filter(|d| !axes.contains(d))
                .map(|d| x.ty.shape[d as usize])
                .collect();
            Ok(Value::Array(interp.emit.reshape(span, &x, &shape)))
        }
        "isfinite" | "isnan" => {
            let x = args.array(interp, 0, "x")?;
            if !x.ty.dtype.is_float() {
                let value = if short == "isfinite" { 1.0 } else { 0.0 };
                return Ok(Value::Array(interp.emit.constant(
                    span,
                    &[value],
                    ArrayType::new(DType::Bool, x.ty.shape.clone()),
                )));
            }
            if short == "isnan" {
                return Ok(Value::Array(interp.emit.compare(
                    span,
                    Predicate::Ne,
                    &x,
                    &x,
                )));
            }
            let magnitude = interp.emit.unary(span, Unary::Abs, &x);
            let infinity = interp.emit.constant(
                span,
                &[f64::INFINITY],
                ArrayType::new(x.ty.dtype, x.ty.shape.clone()),
            );
            Ok(Value::Array(interp.emit.compare(
                span,
                Predicate::Lt,
                &magnitude,
                &infinity,
            )))
        }
        "all" | "any" | "argmax" | "argmin" | "var" | "std" => {
            let x = args.array(interp, 0, "a")?;
            let axis = args.get(1, "axis");
            let keepdims = match args.get(99, "keepdims") {
                Some(k) => interp.truthy(&k, span)?,
                None => false,
            };
            let ddof = match args.get(99, "ddof") {
                Some(d) => static_float(&d, span)?,
                None => 0.0,
            };
            extra_reduction(interp, short, &x, axis.as_ref(), keepdims, ddof, span)
                .map(Value::Array)
        }
        "ceil" | "exp2" | "log2" | "log10" | "sinh" | "cosh" | "tan" | "cbrt" | "arcsinh"
        | "arccosh" | "arctanh" => {
            let x = args.required(0, "x")?;
            composite_elementwise(interp, short, x, span)
        }
        "logical_xor" => {
            let a = args.array(interp, 0, "x1")?;
            let b = args.array(interp, 1, "x2")?;
            let (a, b) = (to_bool(interp, &a, span), to_bool(interp, &b, span));
            let (a, b) = interp.emit.unify(span, &a, &b)?;
            Ok(Value::Array(interp.emit.compare(
                span,
                Predicate::Ne,
                &a,
                &b,
            )))
        }
        "flip" => {
            let x = args.array(interp, 0, "m")?;
            let rank = x.ty.shape.len();
            let axes: Vec<i64> = match args.get(1, "axis") {
                None | Some(Value::None) => (0..rank as i64).collect(),
                Some(axis) => int_list(&axis, span)?
                    .into_iter()
                    .map(|a| axis_index(a, rank, span))
                    .collect::<DResult<_>>()?,
            };
            Ok(Value::Array(interp.emit.reverse(span, &x, &axes)))
        }
        "broadcast_to" => {
            let x = args.array(interp, 0, "array")?;
            let shape = static_shape(&args.required(1, "shape")?, span)?;
            Ok(Value::Array(interp.emit.broadcast_to(span, &x, &shape)?))
        }
        "concatenate" | "stack" | "hstack" | "vstack" => {
            let items = match args.required(0, "arrays")? {
                Value::Tuple(items) | Value::List(items) => items,
                other => {
                    return Err(Diagnostic::new(
                        "ferrax::type::sequence",
                        span,
                        format!(
                            "{short}() takes a tuple or list of arrays, found {}",
                            other.describe()
                        ),
                    ));
                }
            };
            let mut arrays: Vec<Traced> = items
                .iter()
                .map(|v| interp.emit.to_array(span, v))
                .collect::<DResult<_>>()?;
            if arrays.is_empty() {
                return Err(Diagnostic::new(
                    "ferrax::shape::concatenate",
                    span,
                    "need at least one array to concatenate",
                ));
            }
            let axis = match short {
                "hstack" => i64::from(arrays[0].ty.shape.len() > 1),
                "vstack" => 0,
                _ => match args.get(1, "axis") {
                    Some(axis) => static_int(&axis, span)?,
                    None => 0,
                },
            };
            if short == "stack" {
                let rank = arrays[0].ty.shape.len() + 1;
                let axis = axis_index(axis, rank, span)?;
                for array in arrays.iter_mut() {
                    let mut shape = array.ty.shape.clone();
                    shape.insert(axis as usize, 1);
                    *array = interp.emit.reshape(span, array, &shape);
                }
            }
            if short == "vstack" {
                for array in arrays.iter_mut() {
                    if array.ty.shape.len() < 2 {
                        let n = array.ty.size();
                        *array = interp.emit.reshape(span, array, &[1, n]);
                    }
                }
            }
            concatenate(interp, &arrays, axis, span).map(Value::Array)
        }
        "split" => {
            let x = args.array(interp, 0, "ary")?;
            let axis = match args.get(2, "axis") {
                Some(axis) => static_int(&axis, span)?,
                None => 0,
            };
            let axis = axis_index(axis, x.ty.shape.len(), span)? as usize;
            let n = x.ty.shape[axis];
            let bounds: Vec<i64> = match args.required(1, "indices_or_sections")? {
                Value::Int(sections) => {
                    if sections <= 0 || n % sections != 0 {
                        return Err(Diagnostic::new(
                            "ferrax::shape::split",
                            span,
                            format!(
                                "array split does not result in an equal division: {n} into {sections}"
                            ),
                        ));
                    }
                    (0..=sections).map(|k| k * n / sections).collect()
                }
                indices => {
                    let mut bounds = vec![0];
                    bounds.extend(
                        int_list(&indices, span)?
                            .into_iter()
                            .map(|i| (if i < 0 { i + n } else { i }).clamp(0, n)),
                    );
                    bounds.push(n);
                    bounds
                }
            };
            let mut parts = vec![];
            for window in bounds.windows(2) {
                let (lo, hi) = (window[0], window[1].max(window[0]));
                let mut start = vec![0; x.ty.shape.len()];
                let mut limit = x.ty.shape.clone();
                start[axis] = lo;
                limit[axis] = hi;
                let strides = vec![1; x.ty.shape.len()];
                parts.push(Value::Array(
                    interp.emit.slice(span, &x, &start, &limit, &strides),
                ));
            }
            Ok(Value::List(Rc::new(parts)))
        }
        "tile" => {
            let x = args.array(interp, 0, "A")?;
            let mut reps = int_list(&args.required(1, "reps")?, span)?;
            let rank = reps.len().max(x.ty.shape.len());
            let mut shape = x.ty.shape.clone();
            while shape.len() < rank {
                shape.insert(0, 1);
            }
            while reps.len() < rank {
                reps.insert(0, 1);
            }
            if reps.iter().any(|r| *r < 0) {
                return Err(Diagnostic::new(
                    "ferrax::shape::tile",
                    span,
                    "tile repetitions must not be negative",
                ));
            }
            let x = interp.emit.reshape(span, &x, &shape);
            let interleaved: Vec<i64> = (0..rank).flat_map(|d| [reps[d], shape[d]]).collect();
            let dims: Vec<i64> = (0..rank as i64).map(|d| 2 * d + 1).collect();
            let spread = interp.emit.broadcast_in_dim(span, &x, &dims, &interleaved);
            let result: Vec<i64> = (0..rank).map(|d| reps[d] * shape[d]).collect();
            Ok(Value::Array(interp.emit.reshape(span, &spread, &result)))
        }
        "repeat" => {
            let x = args.array(interp, 0, "a")?;
            let repeats = match args.required(1, "repeats")? {
                Value::Int(r) if r >= 0 => r,
                other => {
                    return Err(Diagnostic::not_supported(
                        span,
                        format!("repeat with repeats={}", other.describe()),
                    ));
                }
            };
            let (x, axis) = match args.get(2, "axis") {
                None | Some(Value::None) => {
                    let n = x.ty.size();
                    (interp.emit.reshape(span, &x, &[n]), 0usize)
                }
                Some(axis) => {
                    let axis =
                        axis_index(static_int(&axis, span)?, x.ty.shape.len(), span)? as usize;
                    (x, axis)
                }
            };
            let mut expanded = x.ty.shape.clone();
            expanded.insert(axis + 1, repeats);
            let dims: Vec<i64> = (0..x.ty.shape.len() as i64)
                .map(|d| if d as usize > axis { d + 1 } else { d })
                .collect();
            let spread = interp.emit.broadcast_in_dim(span, &x, &dims, &expanded);
            let mut result = x.ty.shape.clone();
            result[axis] *= repeats;
            Ok(Value::Array(interp.emit.reshape(span, &spread, &result)))
        }
        "pad" => {
            let x = args.array(interp, 0, "array")?;
            let rank = x.ty.shape.len();
            let widths: Vec<(i64, i64)> = match args.required(1, "pad_width")? {
                Value::Int(w) => vec![(w, w); rank],
                Value::Tuple(items) | Value::List(items)
                    if items.iter().all(|v| matches!(v, Value::Int(_))) =>
                {
                    let w = int_list(&Value::Tuple(items.clone()), span)?;
                    match w.as_slice() {
                        [one] => vec![(*one, *one); rank],
                        [before, after] => vec![(*before, *after); rank],
                        _ => {
                            return Err(Diagnostic::new(
                                "ferrax::shape::pad",
                                span,
                                "pad_width must be an int, a pair, or one pair per axis",
                            ));
                        }
                    }
                }
                Value::Tuple(items) | Value::List(items) => items
                    .iter()
                    .map(|pair| match int_list(pair, span)?.as_slice() {
                        [one] => Ok((*one, *one)),
                        [before, after] => Ok((*before, *after)),
                        _ => Err(Diagnostic::new(
                            "ferrax::shape::pad",
                            span,
                            "each pad_width entry is a pair (before, after)",
                        )),
                    })
                    .collect::<DResult<_>>()?,
                other => {
                    return Err(Diagnostic::new(
                        "ferrax::shape::pad",
                        span,
                        format!(
                            "pad_width must be an int or pairs, found {}",
                            other.describe()
                        ),
                    ));
                }
            };
            if widths.len() != rank || widths.iter().any(|(a, b)| *a < 0 || *b < 0) {
                return Err(Diagnostic::new(
                    "ferrax::shape::pad",
                    span,
                    format!("pad_width needs {rank} non-negative pairs"),
                ));
            }
            if let Some(mode) = args.get(2, "mode")
                && !matches!(&mode, Value::Str(m) if m.as_ref() == "constant")
            {
                return Err(Diagnostic::not_supported(
                    span,
                    format!("jnp.pad mode {}", mode.describe()),
                ));
            }
            let value = match args.get(99, "constant_values") {
                Some(v) => static_float(&v, span)?,
                None => 0.0,
            };
            let low: Vec<i64> = widths.iter().map(|(a, _)| *a).collect();
            let high: Vec<i64> = widths.iter().map(|(_, b)| *b).collect();
            Ok(Value::Array(interp.emit.pad(
                span,
                &x,
                value,
                &low,
                &high,
                &vec![0; rank],
            )))
        }
        "cumsum" => {
            let x = args.array(interp, 0, "a")?;
            let (x, axis) = match args.get(1, "axis") {
                None | Some(Value::None) => {
                    let n = x.ty.size();
                    (interp.emit.reshape(span, &x, &[n]), 0usize)
                }
                Some(axis) => {
                    let axis =
                        axis_index(static_int(&axis, span)?, x.ty.shape.len(), span)? as usize;
                    (x, axis)
                }
            };
            let x = if x.ty.dtype == DType::Bool {
                interp.emit.convert(span, &x, DType::I32)
            } else {
                x
            };
            let n = x.ty.shape[axis];
            // A running sum as a product with an upper-triangular matrix of ones.
            let triangle: Vec<f64> = (0..n * n)
                .map(|k| f64::from(u8::from(k / n <= k % n)))
                .collect();
            let triangle =
                interp
                    .emit
                    .constant(span, &triangle, ArrayType::new(x.ty.dtype, vec![n, n]));
            let dims = fx::DotDimensions {
                lhs_contracting: vec![axis as i64],
                rhs_contracting: vec![0],
                ..Default::default()
            };
            let summed = interp.emit.dot_general(span, &x, &triangle, &dims);
            let rank = x.ty.shape.len() as i64;
            let permutation: Vec<i64> = (0..rank)
                .map(|d| {
                    if d < axis as i64 {
                        d
                    } else if d == axis as i64 {
                        rank - 1
                    } else {
                        d - 1
                    }
                })
                .collect();
            Ok(Value::Array(interp.emit.transpose(
                span,
                &summed,
                &permutation,
            )))
        }
        "round" => {
            let x = args.array(interp, 0, "a")?;
            let decimals = match args.get(1, "decimals") {
                Some(d) => static_int(&d, span)?,
                None => 0,
            };
            if decimals == 0 || !x.ty.dtype.is_float() {
                return Ok(Value::Array(interp.emit.unary(span, Unary::Round, &x)));
            }
            let scale = interp.emit.constant(
                span,
                &[10f64.powi(decimals as i32)],
                ArrayType::new(x.ty.dtype, x.ty.shape.clone()),
            );
            let scaled = interp.emit.binary(span, Binary::Mul, &x, &scale);
            let rounded = interp.emit.unary(span, Unary::Round, &scaled);
            Ok(Value::Array(interp.emit.binary(
                span,
                Binary::Div,
                &rounded,
                &scale,
            )))
        }
        "arctan2" | "atan2" => {
            let y = args.array(interp, 0, "x1")?;
            let x = args.array(interp, 1, "x2")?;
            let (y, x) = interp.emit.unify(span, &y, &x)?;
            let (y, x) = if y.ty.dtype.is_float() {
                (y, x)
            } else {
                (
                    interp.emit.convert(span, &y, DType::F32),
                    interp.emit.convert(span, &x, DType::F32),
                )
            };
            Ok(Value::Array(interp.emit.binary(
                span,
                Binary::Atan2,
                &y,
                &x,
            )))
        }
        "ravel" => {
            let x = args.array(interp, 0, "a")?;
            let n = x.ty.size();
            Ok(Value::Array(interp.emit.reshape(span, &x, &[n])))
        }
        "logical_not" => {
            let x = args.array(interp, 0, "x")?;
            let x = to_bool(interp, &x, span);
            Ok(Value::Array(interp.emit.unary(span, Unary::Not, &x)))
        }
        "logical_and" | "logical_or" => {
            let a = args.array(interp, 0, "x1")?;
            let b = args.array(interp, 1, "x2")?;
            let (a, b) = (to_bool(interp, &a, span), to_bool(interp, &b, span));
            let (a, b) = interp.emit.unify(span, &a, &b)?;
            let op = if short == "logical_and" {
                Binary::And
            } else {
                Binary::Or
            };
            Ok(Value::Array(interp.emit.binary(span, op, &a, &b)))
        }
        "cond" | "fori_loop" | "scan" | "while_loop" => {
            let positional = std::mem::take(&mut args.positional);
            let keywords = std::mem::take(&mut args.keywords);
            super::control::call(interp, short, positional, keywords, span)
        }
        "stop_gradient" => {
            let x = args.array(interp, 0, "x")?;
            Ok(Value::Array(interp.emit.stop_gradient(span, &x)))
        }
        _ => Err(Diagnostic::not_supported(span, format!("`{name}`"))),
    }
}

fn unary_op(short: &str) -> Option<Unary> {
    Some(match short {
        "exp" => Unary::Exp,
        "log" => Unary::Log,
        "log1p" => Unary::Log1p,
        "expm1" => Unary::Expm1,
        "sin" => Unary::Sin,
        "cos" => Unary::Cos,
        "tanh" => Unary::Tanh,
        "sqrt" => Unary::Sqrt,
        "abs" | "absolute" => Unary::Abs,
        "sign" => Unary::Sign,
        "floor" => Unary::Floor,
        "negative" | "neg" => Unary::Neg,
        "arcsin" | "asin" => Unary::Asin,
        "arccos" | "acos" => Unary::Acos,
        "arctan" | "atan" => Unary::Atan,
        "erf" => Unary::Erf,
        _ => return None,
    })
}

fn python_call(interp: &mut Interp, args: &mut Args, short: &str) -> DResult<Value> {
    let span = args.span;
    match short {
        "range" => {
            let values: Vec<i64> = args
                .positional
                .iter()
                .map(|v| static_int(v, span))
                .collect::<DResult<_>>()?;
            let (start, stop, step) = match values.as_slice() {
                [stop] => (0, *stop, 1),
                [start, stop] => (*start, *stop, 1),
                [start, stop, step] if *step != 0 => (*start, *stop, *step),
                _ => {
                    return Err(Diagnostic::new(
                        "ferrax::call::arity",
                        span,
                        "range() takes 1 to 3 integers, the step not zero",
                    ));
                }
            };
            let count = if step > 0 {
                (stop - start + step - 1) / step
            } else {
                (start - stop - step - 1) / -step
            };
            if count > 1 << 20 {
                return Err(Diagnostic::new(
                    "ferrax::trace::loop",
                    span,
                    format!("a loop of {count} iterations is unrolled, which is too many"),
                )
                .help("use `jax.lax.fori_loop` for long loops"));
            }
            Ok(Value::Tuple(Rc::new(
                (0..count.max(0))
                    .map(|i| Value::Int(start + i * step))
                    .collect(),
            )))
        }
        "len" => match args.required(0, "obj")? {
            Value::Tuple(items) | Value::List(items) => Ok(Value::Int(items.len() as i64)),
            Value::Str(s) => Ok(Value::Int(s.chars().count() as i64)),
            Value::Array(t) if !t.ty.shape.is_empty() => Ok(Value::Int(t.ty.shape[0])),
            other => Err(Diagnostic::new(
                "ferrax::type::len",
                span,
                format!("{} has no len()", other.describe()),
            )),
        },
        "float" | "int" | "bool" => {
            let value = args.get(0, "x").unwrap_or(Value::Int(0));
            match (short, number(&value)) {
                ("float", Some(n)) => Ok(Value::Float(n.as_f64())),
                ("int", Some(n)) => Ok(Value::Int(n.as_f64().trunc() as i64)),
                ("bool", _) => Ok(Value::Bool(interp.truthy(&value, span)?)),
                (_, None) if matches!(value, Value::Array(_)) => Err(Diagnostic::new(
                    "ferrax::trace::concrete",
                    span,
                    format!("{short}() needs a static value, and this is an array known only when the program runs"),
                )
                .help("keep it an array, or use `x.astype(...)`")),
                _ => Err(Diagnostic::new("ferrax::type::convert", span, format!("{short}() cannot convert {}", value.describe()))),
            }
        }
        "tuple" | "list" => {
            let items = match args.get(0, "iterable") {
                Some(Value::Tuple(items) | Value::List(items)) => items.as_ref().clone(),
                None => vec![],
                Some(other) => {
                    return Err(Diagnostic::new(
                        "ferrax::type::iterate",
                        span,
                        format!("cannot make a {short} of {}", other.describe()),
                    ));
                }
            };
            Ok(if short == "tuple" {
                Value::Tuple(Rc::new(items))
            } else {
                Value::List(Rc::new(items))
            })
        }
        "zip" => {
            let mut sequences = vec![];
            for value in &args.positional {
                match value {
                    Value::Tuple(items) | Value::List(items) => sequences.push(items.clone()),
                    other => {
                        return Err(Diagnostic::new(
                            "ferrax::type::iterate",
                            span,
                            format!("zip() needs tuples or lists, found {}", other.describe()),
                        ));
                    }
                }
            }
            let n = sequences.iter().map(|s| s.len()).min().unwrap_or(0);
            Ok(Value::Tuple(Rc::new(
                (0..n)
                    .map(|i| {
                        Value::Tuple(Rc::new(sequences.iter().map(|s| s[i].clone()).collect()))
                    })
                    .collect(),
            )))
        }
        "enumerate" => match args.required(0, "iterable")? {
            Value::Tuple(items) | Value::List(items) => Ok(Value::Tuple(Rc::new(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Value::Tuple(Rc::new(vec![Value::Int(i as i64), v.clone()])))
                    .collect(),
            ))),
            other => Err(Diagnostic::new(
                "ferrax::type::iterate",
                span,
                format!(
                    "enumerate() needs a tuple or list, found {}",
                    other.describe()
                ),
            )),
        },
        "abs" => {
            let value = args.required(0, "x")?;
            match value {
                Value::Int(i) => Ok(Value::Int(i.abs())),
                Value::Float(f) => Ok(Value::Float(f.abs())),
                other => {
                    let x = interp.emit.to_array(span, &other)?;
                    Ok(Value::Array(interp.emit.unary(span, Unary::Abs, &x)))
                }
            }
        }
        "min" | "max" | "sum" => {
            let items = match args.positional.as_slice() {
                [Value::Tuple(items) | Value::List(items)] => items.as_ref().clone(),
                [Value::Array(_)] => {
                    return call(
                        interp,
                        if short == "sum" {
                            "jax.numpy.sum"
                        } else if short == "min" {
                            "jax.numpy.min"
                        } else {
                            "jax.numpy.max"
                        },
                        args.positional.clone(),
                        vec![],
                        span,
                    );
                }
                items => items.to_vec(),
            };
            let mut iter = items.into_iter();
            let Some(mut acc) = (if short == "sum" {
                Some(Value::Int(0))
            } else {
                iter.next()
            }) else {
                return Err(Diagnostic::new(
                    "ferrax::call::arity",
                    span,
                    format!("{short}() of an empty sequence"),
                ));
            };
            for item in iter {
                acc = match short {
                    "sum" => interp.binop(BinOp::Add, acc, item, span)?,
                    _ => {
                        let op = if short == "min" {
                            crate::syntax::ast::CmpOp::Lt
                        } else {
                            crate::syntax::ast::CmpOp::Gt
                        };
                        let better = interp.compare(op, &item, &acc, span)?;
                        if interp.truthy(&better, span)? {
                            item
                        } else {
                            acc
                        }
                    }
                };
            }
            Ok(acc)
        }
        "isinstance" => Err(Diagnostic::not_supported(span, "`isinstance`")),
        _ => Err(Diagnostic::new(
            "ferrax::syntax::unsupported",
            span,
            "`print` is not part of the language",
        )
        .label("not supported")
        .help("use `jax.debug.print` to print values at run time")),
    }
}

fn jax_call(interp: &mut Interp, args: &mut Args, short: &'static str) -> DResult<Value> {
    let span = args.span;
    match short {
        "jit" => {
            let func = args.get(0, "fun");
            let static_argnums = match args.get(1, "static_argnums") {
                Some(v) => int_list(&v, span)?,
                None => vec![],
            };
            let static_argnames = match args.get(99, "static_argnames") {
                Some(Value::Str(s)) => vec![s.to_string()],
                Some(Value::Tuple(items) | Value::List(items)) => items
                    .iter()
                    .map(|v| {
                        if let Value::Str(s) = v {
                            Ok(s.to_string())
                        } else {
                            Err(Diagnostic::new(
                                "ferrax::jit",
                                span,
                                "static_argnames must be strings",
                            ))
                        }
                    })
                    .collect::<DResult<_>>()?,
                Some(other) => {
                    return Err(Diagnostic::new(
                        "ferrax::jit",
                        span,
                        format!(
                            "static_argnames must be strings, found {}",
                            other.describe()
                        ),
                    ));
                }
                None => vec![],
            };
            let donate_argnums = match args.get(99, "donate_argnums") {
                Some(v) => int_list(&v, span)?,
                None => vec![],
            };
            for (key, value) in &args.keywords {
                match key.as_str() {
                    "donate_argnums" | "keep_unused" | "device" | "inline" => {}
                    "backend" => match value {
                        Value::Str(s) if matches!(s.as_ref(), "cpu" | "gpu" | "cuda") => {}
                        _ => {
                            return Err(Diagnostic::new(
                                "ferrax::jit",
                                span,
                                "backend must be 'cpu', 'gpu' or 'cuda'",
                            ));
                        }
                    },
                    other => {
                        return Err(Diagnostic::new(
                            "ferrax::jit",
                            span,
                            format!("jit() got an unexpected keyword argument '{other}'"),
                        ));
                    }
                }
            }
            let Some(func) = func else {
                return Ok(Value::Partial {
                    func: Rc::new(Value::Builtin("jax.jit")),
                    args: Rc::new(vec![]),
                    keywords: Rc::new(vec![
                        (
                            "static_argnums".into(),
                            Value::Tuple(Rc::new(
                                static_argnums.into_iter().map(Value::Int).collect(),
                            )),
                        ),
                        (
                            "static_argnames".into(),
                            Value::Tuple(Rc::new(
                                static_argnames
                                    .into_iter()
                                    .map(|s| Value::Str(s.into()))
                                    .collect(),
                            )),
                        ),
                        (
                            "donate_argnums".into(),
                            Value::Tuple(Rc::new(
                                donate_argnums.into_iter().map(Value::Int).collect(),
                            )),
                        ),
                    ]),
                });
            };
            check_callable(&func, span)?;
            Ok(Value::Jit {
                func: Rc::new(func),
                static_argnums: Rc::new(static_argnums),
                static_argnames: Rc::new(static_argnames),
                donate_argnums: Rc::new(donate_argnums),
            })
        }
        "custom_jvp" | "custom_vjp" => {
            let func = args.required(0, "fun")?;
            let kind = if short == "custom_jvp" {
                CustomKind::Jvp
            } else {
                CustomKind::Vjp
            };
            super::transforms::custom(func, kind, span)
        }
        "grad" | "value_and_grad" | "jacfwd" | "jacrev" | "hessian" => {
            let func = args.required(0, "fun")?;
            check_callable(&func, span)?;
            let argnums = args.get(1, "argnums");
            let has_aux = match args.get(2, "has_aux") {
                Some(v) => interp.truthy(&v, span)?,
                None => false,
            };
            Ok(Value::Transform(Rc::new(Transform {
                name: short,
                func,
                argnums,
                has_aux,
            })))
        }
        "vjp" => {
            let func = args.required(0, "fun")?;
            check_callable(&func, span)?;
            let primals = args.positional.split_off(1.min(args.positional.len()));
            super::transforms::vjp(interp, &func, primals, span)
        }
        "jvp" => {
            let func = args.required(0, "fun")?;
            check_callable(&func, span)?;
            let primals = args.required(1, "primals")?;
            let tangents = args.required(2, "tangents")?;
            super::transforms::jvp(interp, &func, &primals, &tangents, span)
        }
        _ => Err(Diagnostic::not_supported(span, format!("`jax.{short}`"))),
    }
}

pub fn check_callable(func: &Value, span: Span) -> DResult<()> {
    if func.is_callable() {
        Ok(())
    } else {
        Err(Diagnostic::new(
            "ferrax::type::not_callable",
            span,
            format!("expected a function, found {}", func.describe()),
        )
        .label("not a function"))
    }
}

/// `receiver.name(args)`.
pub fn call_method(
    interp: &mut Interp,
    receiver: &Value,
    name: &str,
    args: Vec<Value>,
    kwargs: Vec<(String, Value)>,
    span: Span,
) -> DResult<Value> {
    match (receiver, name) {
        (Value::Custom(_), "defjvp") => {
            let rule = args.into_iter().next().ok_or_else(|| {
                Diagnostic::new(
                    "ferrax::call::arity",
                    span,
                    "defjvp() needs the rule function",
                )
            })?;
            check_callable(&rule, span)?;
            interp.register_rule(receiver, CustomKind::Jvp, vec![rule.clone()], span)?;
            Ok(rule)
        }
        (Value::Custom(_), "defvjp") => {
            if args.len() != 2 {
                return Err(Diagnostic::new(
                    "ferrax::call::arity",
                    span,
                    "defvjp() takes the forward and the backward function",
                ));
            }
            for rule in &args {
                check_callable(rule, span)?;
            }
            interp.register_rule(receiver, CustomKind::Vjp, args, span)?;
            Ok(Value::None)
        }
        (Value::Array(_), "astype") => {
            let dtype = args.first().ok_or_else(|| {
                Diagnostic::new("ferrax::call::arity", span, "astype() needs a dtype")
            })?;
            let Value::Array(x) = receiver else {
                unreachable!("matched an array")
            };
            convert_to(interp, x, dtype, span).map(Value::Array)
        }
        (Value::Array(_), "reshape") => {
            let shape = match args.as_slice() {
                [one] => one.clone(),
                many => Value::Tuple(Rc::new(many.to_vec())),
            };
            let Value::Array(x) = receiver else {
                unreachable!("matched an array")
            };
            reshape(interp, x, &shape, span).map(Value::Array)
        }
        (Value::Tuple(pair), how) if how.starts_with("at.") && pair.len() == 2 => {
            let Value::Array(x) = &pair[0] else {
                unreachable!("`.at` is an array attribute")
            };
            let how = &how[3..];
            let value = args
                .first()
                .or_else(|| kwargs.iter().find(|(k, _)| k == "values").map(|(_, v)| v));
            at_update(interp, x, &pair[1], how, value, span)
        }
        (Value::Array(x), "transpose") if args.len() > 1 => {
            let axes = Value::Tuple(Rc::new(args));
            call(
                interp,
                "jax.numpy.transpose",
                vec![Value::Array(x.clone()), axes],
                kwargs,
                span,
            )
        }
        (Value::Array(_), "sum" | "mean" | "max" | "min" | "ravel" | "transpose" | "dot") => {
            let mut all = vec![receiver.clone()];
            all.extend(args);
            let qualified = function(&format!("jax.numpy.{name}")).unwrap_or("jax.numpy.sum");
            call(interp, qualified, all, kwargs, span)
        }
        _ => Err(Diagnostic::not_supported(
            span,
            format!("`.{name}()` on {}", receiver.describe()),
        )),
    }
}

/// `value[index]` for tuples, lists and arrays.
pub fn subscript(interp: &mut Interp, value: &Value, index: &Value, span: Span) -> DResult<Value> {
    match value {
        Value::Tuple(items) | Value::List(items) => match index {
            Value::Int(_) | Value::Bool(_) => {
                let n = items.len() as i64;
                let i = static_int(index, span)?;
                let at = if i < 0 { i + n } else { i };
                if !(0..n).contains(&at) {
                    return Err(Diagnostic::new(
                        "ferrax::index::range",
                        span,
                        format!("index {i} is out of range for a tuple of {n}"),
                    )
                    .label("out of range"));
                }
                Ok(items[at as usize].clone())
            }
            Value::Method { receiver, name } if name.as_ref() == "slice" => {
                let (start, stop, step) = slice_bounds(receiver, items.len() as i64, span)?;
                let picked: Vec<Value> = slice_positions(start, stop, step)
                    .map(|i| items[i as usize].clone())
                    .collect();
                Ok(if matches!(value, Value::Tuple(_)) {
                    Value::Tuple(Rc::new(picked))
                } else {
                    Value::List(Rc::new(picked))
                })
            }
            other => Err(Diagnostic::new(
                "ferrax::index::type",
                span,
                format!(
                    "a tuple index must be a static int or slice, found {}",
                    other.describe()
                ),
            )),
        },
        Value::Array(traced) => index_array(interp, span, traced, index),
        Value::Method { receiver, name } if name.as_ref() == "at" => Ok(Value::Method {
            receiver: Rc::new(Value::Tuple(Rc::new(vec![
                (**receiver).clone(),
                index.clone(),
            ]))),
            name: "at[]".into(),
        }),
        other => Err(Diagnostic::new(
            "ferrax::index::type",
            span,
            format!("{} cannot be indexed", other.describe()),
        )
        .label("here")),
    }
}

fn slice_positions(start: i64, stop: i64, step: i64) -> impl Iterator<Item = i64> {
    let count = if step > 0 {
        (stop - start + step - 1) / step
    } else {
        (start - stop - step - 1) / -step
    };
    (0..count.max(0)).map(move |k| start + k * step)
}

/// Python's `slice.indices(n)`.
fn slice_bounds(parts: &Value, n: i64, span: Span) -> DResult<(i64, i64, i64)> {
    let Value::Tuple(parts) = parts else {
        unreachable!("slices are tuples of three")
    };
    let get = |v: &Value| -> DResult<Option<i64>> {
        match v {
            Value::None => Ok(None),
            other => static_int(other, span).map(Some),
        }
    };
    let step = get(&parts[2])?.unwrap_or(1);
    if step == 0 {
        return Err(Diagnostic::new(
            "ferrax::index::slice",
            span,
            "slice step cannot be zero",
        ));
    }
    let clamp = |v: Option<i64>, default: i64| -> i64 {
        match v {
            None => default,
            Some(v) => {
                let v = if v < 0 { v + n } else { v };
                if step > 0 {
                    v.clamp(0, n)
                } else {
                    v.clamp(-1, n - 1)
                }
            }
        }
    };
    let (default_start, default_stop) = if step > 0 { (0, n) } else { (n - 1, -1) };
    Ok((
        clamp(get(&parts[0])?, default_start),
        clamp(get(&parts[1])?, default_stop),
        step,
    ))
}

/// The elements a basic index (static ints, slices, `None`, `...`, and rank-0 integer
/// arrays) selects: reverse `reversed` dimensions, slice, take the one element at each
/// `dynamic` index of its dimension (kept whole by the slice), then reshape to `shape`.
struct Region {
    /// Dimensions indexed by a run-time integer, with that integer.
    dynamic: Vec<(usize, Traced)>,
    reversed: Vec<i64>,
    start: Vec<i64>,
    limit: Vec<i64>,
    strides: Vec<i64>,
    /// The sliced shape (before ints drop and `None`s add dimensions).
    sliced: Vec<i64>,
    shape: Vec<i64>,
}

fn basic_region(shape: &[i64], index: &Value, span: Span) -> DResult<Region> {
    region_of(
        shape,
        &expand_index(&index_items(index), shape.len(), span)?,
        span,
    )
}

/// The items of an index: a tuple's elements, or the index itself.
fn index_items(index: &Value) -> Vec<Value> {
    match index {
        Value::Tuple(items) => items.as_ref().clone(),
        other => vec![other.clone()],
    }
}

/// The items with one per dimension: `...` replaced by as many full slices as the dimensions
/// the other items leave (`None` consumes none), and full slices for the dimensions after the
/// last item; an error for more items than dimensions or two `...`.
fn expand_index(items: &[Value], rank: usize, span: Span) -> DResult<Vec<Value>> {
    let consuming = items
        .iter()
        .filter(|v| !matches!(v, Value::None) && !is_ellipsis(v))
        .count();
    if consuming > rank {
        return Err(Diagnostic::new(
            "ferrax::index::rank",
            span,
            format!(
                "too many indices: the array has {rank} dimensions but {consuming} were indexed"
            ),
        )
        .label("here"));
    }
    let mut expanded = vec![];
    let mut seen_ellipsis = false;
    for item in items.iter().cloned() {
        if is_ellipsis(&item) {
            if seen_ellipsis {
                return Err(Diagnostic::new(
                    "ferrax::index::ellipsis",
                    span,
                    "an index can only have a single ellipsis ('...')",
                ));
            }
            seen_ellipsis = true;
            expanded.extend(std::iter::repeat_n(full_slice(), rank - consuming));
        } else {
            expanded.push(item);
        }
    }
    let used = expanded
        .iter()
        .filter(|v| !matches!(v, Value::None))
        .count();
    expanded.extend(std::iter::repeat_n(full_slice(), rank - used));
    Ok(expanded)
}

/// The position `i` names along a dimension of size `n` (negative counts from the end); an
/// error when it is out of bounds.
fn static_index(i: i64, n: i64, axis: usize, span: Span) -> DResult<i64> {
    let at = if i < 0 { i + n } else { i };
    if !(0..n).contains(&at) {
        return Err(Diagnostic::new(
            "ferrax::index::range",
            span,
            format!("index {i} is out of bounds for axis {axis} with size {n}"),
        )
        .label("out of bounds"));
    }
    Ok(at)
}

/// Whether an index's items include an integer array (not a run-time scalar).
fn has_array_index(items: &[Value]) -> bool {
    items
        .iter()
        .any(|item| matches!(item, Value::Array(t) if !is_scalar_int(t)))
}

/// The shape the integer arrays of one index broadcast to; an error naming their shapes
/// when they do not.
fn broadcast_indices<'t>(
    indices: impl Iterator<Item = &'t Traced> + Clone,
    span: Span,
) -> DResult<Vec<i64>> {
    let mut batch: Vec<i64> = vec![];
    for index in indices.clone() {
        batch = super::emit::broadcast_shapes(&batch, &index.ty.shape).ok_or_else(|| {
            Diagnostic::new(
                "ferrax::index::shape",
                span,
                format!(
                    "array indices of shapes {} cannot be broadcast together",
                    indices
                        .clone()
                        .map(|t| shape_repr(&t.ty.shape))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
    }
    Ok(batch)
}

/// The region of `shape` that `expanded` (one item per dimension, or `None`) selects.
fn region_of(shape: &[i64], expanded: &[Value], span: Span) -> DResult<Region> {
    let mut region = Region {
        dynamic: vec![],
        reversed: vec![],
        start: vec![],
        limit: vec![],
        strides: vec![],
        sliced: vec![],
        shape: vec![],
    };
    let mut dim = 0;
    for item in expanded {
        match item {
            Value::None => region.shape.push(1),
            Value::Int(_) | Value::Bool(_) => {
                let at = static_index(static_int(item, span)?, shape[dim], dim, span)?;
                region.start.push(at);
                region.limit.push(at + 1);
                region.strides.push(1);
                region.sliced.push(1);
                dim += 1;
            }
            Value::Method { receiver, name } if name.as_ref() == "slice" => {
                let n = shape[dim];
                let (s, e, step) = slice_bounds(receiver, n, span)?;
                let count = slice_positions(s, e, step).count() as i64;
                // A negative step is a positive one on the reversed dimension.
                let first = if step > 0 { s } else { n - 1 - s };
                if step < 0 {
                    region.reversed.push(dim as i64);
                }
                region.start.push(if count > 0 { first } else { 0 });
                region.limit.push(if count > 0 {
                    first + (count - 1) * step.abs() + 1
                } else {
                    0
                });
                region.strides.push(step.abs());
                region.sliced.push(count);
                region.shape.push(count);
                dim += 1;
            }
            Value::Array(t) if t.ty.shape.is_empty() && t.ty.dtype.is_int() => {
                region.dynamic.push((dim, t.clone()));
                region.start.push(0);
                region.limit.push(shape[dim]);
                region.strides.push(1);
                region.sliced.push(shape[dim]);
                dim += 1;
            }
            other => {
                return Err(Diagnostic::new(
                    "ferrax::index::type",
                    span,
                    format!(
                        "an index must be a static int, slice, None, ... or an int array, found {}",
                        other.describe()
                    ),
                ));
            }
        }
    }
    Ok(region)
}

/// Indexing of an array: basic indices, or one integer array along the first axis (a gather).
pub fn index_array(
    interp: &mut Interp,
    span: Span,
    traced: &Traced,
    index: &Value,
) -> DResult<Value> {
    if let Value::Array(indices) = index
        && !is_scalar_int(indices)
    {
        return gather(interp, span, traced, indices).map(Value::Array);
    }
    let items = index_items(index);
    if has_array_index(&items) {
        return advanced_index(interp, span, traced, &items).map(Value::Array);
    }
    let region = basic_region(&traced.ty.shape, index, span)?;
    select_region(interp, span, traced, &region).map(Value::Array)
}

/// `x[items]` where integer arrays are among other items: NumPy's advanced indexing, as JAX
/// does it. The arrays and any integers (which then index the same way) broadcast to one
/// shape `B`; the slices and `None`s select as basic indices do. The result has `B` where
/// the first array or integer stood when they all stand together, else `B` first. Each
/// array-indexed dimension is gathered by a one-hot product, as `x[indices]` is: a product
/// of one one-hot per index contracts all of them at once.
fn advanced_index(interp: &mut Interp, span: Span, x: &Traced, items: &[Value]) -> DResult<Traced> {
    let shape = &x.ty.shape;
    let expanded = expand_index(items, shape.len(), span)?;
    // Each expanded item makes one dimension of `y` below: `None` a new one, a slice its
    // own, an array or integer its whole dimension (gathered afterwards).
    let mut basic = vec![];
    let mut advanced = vec![];
    let mut axis = 0;
    for (position, item) in expanded.iter().enumerate() {
        match item {
            Value::None => basic.push(Value::None),
            Value::Array(t) => {
                advanced.push((position, axis, t.clone()));
                basic.push(full_slice());
            }
            Value::Int(i) => {
                let at = static_index(*i, shape[axis], axis, span)?;
                advanced.push((position, axis, int32(interp, span, at)));
                basic.push(full_slice());
            }
            Value::Bool(_) => {
                return Err(Diagnostic::not_supported(
                    span,
                    "a bool index combined with array indices",
                ));
            }
            other => basic.push(other.clone()),
        }
        if !matches!(item, Value::None) {
            axis += 1;
        }
    }
    let region = region_of(shape, &basic, span)?;
    let y = select_region(interp, span, x, &region)?;
    let mut dtype = x.ty.dtype;
    for (_, _, indices) in &advanced {
        dtype = indexed_rows(x, indices, span)?.1;
    }
    let batch = broadcast_indices(advanced.iter().map(|(_, _, t)| t), span)?;
    // hit[b..., p1, ..., pk]: whether every index picks those positions.
    let rank_b = batch.len();
    let mut full = batch.clone();
    full.extend(advanced.iter().map(|(_, axis, _)| shape[*axis]));
    let mut hit: Option<Traced> = None;
    for (j, (_, axis, indices)) in advanced.iter().enumerate() {
        let n = shape[*axis];
        let wrapped = clamp_indices(interp, span, indices, n);
        let wrapped = interp.emit.broadcast_to(span, &wrapped, &batch)?;
        let one_hot = one_hot_rows(interp, span, &wrapped, n);
        let one_hot = interp.emit.convert(span, &one_hot, dtype);
        let mut dims: Vec<i64> = (0..rank_b as i64).collect();
        dims.push((rank_b + j) as i64);
        let one_hot = interp.emit.broadcast_in_dim(span, &one_hot, &dims, &full);
        hit = Some(match hit {
            None => one_hot,
            Some(h) => interp.emit.binary(span, Binary::Mul, &h, &one_hot),
        });
    }
    let hit = hit.expect("an advanced index has an array");
    let y = interp.emit.convert(span, &y, dtype);
    let positions: Vec<i64> = advanced.iter().map(|(p, _, _)| *p as i64).collect();
    let dims = fx::DotDimensions {
        lhs_contracting: (rank_b as i64..(rank_b + advanced.len()) as i64).collect(),
        rhs_contracting: positions.clone(),
        ..Default::default()
    };
    // B, then y's other dimensions in order.
    let mut result = interp.emit.dot_general(span, &hit, &y, &dims);
    let together = positions.windows(2).all(|w| w[1] == w[0] + 1);
    let first = positions[0];
    if together && first > 0 {
        let rest = result.ty.shape.len() as i64 - rank_b as i64;
        let b = rank_b as i64;
        let permutation: Vec<i64> = (b..b + first)
            .chain(0..b)
            .chain(b + first..b + rest)
            .collect();
        result = interp.emit.transpose(span, &result, &permutation);
    }
    Ok(if result.ty.dtype == x.ty.dtype {
        result
    } else {
        interp.emit.convert(span, &result, x.ty.dtype)
    })
}

fn is_scalar_int(t: &Traced) -> bool {
    t.ty.shape.is_empty() && t.ty.dtype.is_int()
}

/// The elements of `x` that `region` selects. A run-time index counts from the end when
/// negative and is clamped into range, as in JAX.
fn select_region(interp: &mut Interp, span: Span, x: &Traced, region: &Region) -> DResult<Traced> {
    let reversed = interp.emit.reverse(span, x, &region.reversed);
    let sliced = interp.emit.slice(
        span,
        &reversed,
        &region.start,
        &region.limit,
        &region.strides,
    );
    let sliced = if region.dynamic.is_empty() {
        sliced
    } else {
        let mut indices = vec![];
        let mut sizes = region.sliced.clone();
        for (d, size) in sizes.iter_mut().enumerate() {
            indices.push(match region.dynamic.iter().find(|(dim, _)| *dim == d) {
                Some((_, index)) => {
                    *size = 1;
                    wrap_index(interp, span, index, x.ty.shape[d])
                }
                None => int32(interp, span, 0),
            });
        }
        interp.emit.dynamic_slice(span, &sliced, &indices, &sizes)
    };
    Ok(interp.emit.reshape(span, &sliced, &region.shape))
}

fn int32(interp: &mut Interp, span: Span, value: i64) -> Traced {
    interp
        .emit
        .constant(span, &[value as f64], ArrayType::new(DType::I32, vec![]))
}

/// Run-time indices into a dimension of size `n`, as int32, plus `n` where negative.
fn wrap_index(interp: &mut Interp, span: Span, index: &Traced, n: i64) -> Traced {
    let mut index = interp.emit.convert(span, index, DType::I32);
    index.ty.weak = false;
    let like = ArrayType::new(DType::I32, index.ty.shape.clone());
    let zero = interp.emit.constant(span, &[0.0], like.clone());
    let size = interp.emit.constant(span, &[n as f64], like);
    let negative = interp.emit.compare(span, Predicate::Lt, &index, &zero);
    let shifted = interp.emit.binary(span, Binary::Add, &index, &size);
    interp.emit.select(span, &negative, &shifted, &index)
}

/// The rows an integer array of indices can select in `x` and the dtype a one-hot product
/// with them computes in (int32 for bool arrays); an error for float indices or a 0-d `x`.
fn indexed_rows(x: &Traced, indices: &Traced, span: Span) -> DResult<(i64, DType)> {
    if !indices.ty.dtype.is_int() {
        return Err(Diagnostic::new(
            "ferrax::index::type",
            span,
            format!(
                "array indices must be integers, found {}",
                indices.ty.dtype.name()
            ),
        ));
    }
    let Some(&n) = x.ty.shape.first() else {
        return Err(Diagnostic::new(
            "ferrax::index::rank",
            span,
            "a 0-d array cannot be indexed",
        ));
    };
    let dtype = if x.ty.dtype == DType::Bool {
        DType::I32
    } else {
        x.ty.dtype
    };
    Ok((n, dtype))
}

/// `hit[..., p]`: whether each (wrapped) index is row `p` of `n`, with the indices' shape
/// then `n`.
fn one_hot_rows(interp: &mut Interp, span: Span, indices: &Traced, n: i64) -> Traced {
    let positions: Vec<f64> = (0..n).map(|p| p as f64).collect();
    let mut shape = indices.ty.shape.clone();
    shape.push(n);
    let positions =
        interp
            .emit
            .constant(span, &positions, ArrayType::new(indices.ty.dtype, vec![n]));
    let positions =
        interp
            .emit
            .broadcast_in_dim(span, &positions, &[shape.len() as i64 - 1], &shape);
    let dims: Vec<i64> = (0..indices.ty.shape.len() as i64).collect();
    let expanded = interp.emit.broadcast_in_dim(span, indices, &dims, &shape);
    interp
        .emit
        .compare(span, Predicate::Eq, &expanded, &positions)
}

/// Integer indices into a dimension of size `n`: negative ones count from the end, as in
/// Python, and out-of-range ones are clamped, as JAX's gather does.
fn clamp_indices(interp: &mut Interp, span: Span, indices: &Traced, n: i64) -> Traced {
    let zero = interp.emit.constant(
        span,
        &[0.0],
        ArrayType::new(indices.ty.dtype, indices.ty.shape.clone()),
    );
    let size = interp.emit.constant(
        span,
        &[n as f64],
        ArrayType::new(indices.ty.dtype, indices.ty.shape.clone()),
    );
    let negative = interp.emit.compare(span, Predicate::Lt, indices, &zero);
    let shifted = interp.emit.binary(span, Binary::Add, indices, &size);
    let wrapped = interp.emit.select(span, &negative, &shifted, indices);
    // Out-of-range indices are clamped, as JAX's gather does.
    let last = interp.emit.constant(
        span,
        &[(n - 1).max(0) as f64],
        ArrayType::new(indices.ty.dtype, indices.ty.shape.clone()),
    );
    let low = interp.emit.binary(span, Binary::Max, &wrapped, &zero);
    interp.emit.binary(span, Binary::Min, &low, &last)
}

/// `x[indices]` for an integer array: a one-hot product along the first axis; negative
/// indices count from the end and out-of-range ones are clamped, as in JAX.
fn gather(interp: &mut Interp, span: Span, x: &Traced, indices: &Traced) -> DResult<Traced> {
    let (n, dtype) = indexed_rows(x, indices, span)?;
    let wrapped = clamp_indices(interp, span, indices, n);
    let hit = one_hot_rows(interp, span, &wrapped, n);
    let one_hot = interp.emit.convert(span, &hit, dtype);
    let x = interp.emit.convert(span, x, dtype);
    let dims = fx::DotDimensions {
        lhs_contracting: vec![indices.ty.shape.len() as i64],
        rhs_contracting: vec![0],
        ..Default::default()
    };
    let result = interp.emit.dot_general(span, &one_hot, &x, &dims);
    Ok(if result.ty.dtype == x.ty.dtype {
        result
    } else {
        interp.emit.convert(span, &result, x.ty.dtype)
    })
}

/// `x.at[index].set(v)` / `.add(v)` / `.multiply(v)` / `.min(v)` / `.max(v)` / `.get()`: a
/// scatter for integer-array indices, else a masked combination (`update_basic_region`).
pub fn at_update(
    interp: &mut Interp,
    x: &Traced,
    index: &Value,
    how: &str,
    value: Option<&Value>,
    span: Span,
) -> DResult<Value> {
    if how == "get" {
        return index_array(interp, span, x, index);
    }
    let Some(value) = value else {
        return Err(Diagnostic::new(
            "ferrax::call::arity",
            span,
            format!("`.at[...].{how}` needs a value"),
        ));
    };
    let update = interp.emit.to_array(span, value)?;
    let mut update = interp.emit.convert(span, &update, x.ty.dtype);
    update.ty.weak = false;
    if let Value::Array(indices) = index
        && !is_scalar_int(indices)
    {
        return scatter(interp, x, indices, how, &update, span).map(Value::Array);
    }
    let items = index_items(index);
    if has_array_index(&items) {
        return advanced_update(interp, x, &items, how, &update, span).map(Value::Array);
    }
    update_basic_region(interp, x, index, how, &update, span).map(Value::Array)
}

/// `x.at[index].how(update)` for a basic index (ints, slices, `None`, `...`, run-time
/// integers): the update is padded into `x`'s shape and combined where the mask is set.
fn update_basic_region(
    interp: &mut Interp,
    x: &Traced,
    index: &Value,
    how: &str,
    update: &Traced,
    span: Span,
) -> DResult<Traced> {
    let region = basic_region(&x.ty.shape, index, span)?;
    let update = interp.emit.broadcast_to(span, update, &region.shape)?;
    if !region.dynamic.is_empty() {
        return update_dynamic_region(interp, x, &region, how, &update, span);
    }
    let update = interp.emit.reshape(span, &update, &region.sliced);
    let rank = x.ty.shape.len();
    let high: Vec<i64> = (0..rank)
        .map(|d| {
            x.ty.shape[d]
                - if region.sliced[d] == 0 {
                    region.start[d]
                } else {
                    region.limit[d]
                }
        })
        .collect();
    let interior: Vec<i64> = region.strides.iter().map(|s| s - 1).collect();
    let padding = if how == "multiply" { 1.0 } else { 0.0 };
    let padded = interp
        .emit
        .pad(span, &update, padding, &region.start, &high, &interior);
    let padded = interp.emit.reverse(span, &padded, &region.reversed);
    let ones = interp.emit.constant(
        span,
        &[1.0],
        ArrayType::new(DType::Bool, region.sliced.clone()),
    );
    let mask = interp
        .emit
        .pad(span, &ones, 0.0, &region.start, &high, &interior);
    let mask = interp.emit.reverse(span, &mask, &region.reversed);
    let x = x.clone();
    Ok(match how {
        "set" => interp.emit.select(span, &mask, &padded, &x),
        "add" => array_binop(interp, BinOp::Add, &x, &padded, span)?,
        "multiply" | "mul" => array_binop(interp, BinOp::Mul, &x, &padded, span)?,
        "min" | "max" => {
            let op = if how == "min" {
                Binary::Min
            } else {
                Binary::Max
            };
            let combined = interp.emit.binary(span, op, &x, &padded);
            interp.emit.select(span, &mask, &combined, &x)
        }
        other => {
            return Err(Diagnostic::not_supported(
                span,
                format!("`.at[...].{other}`"),
            ));
        }
    })
}

/// `.at[index].how(update)` where the index has run-time integers: read the block,
/// combine, and write it back with `fx.dynamic_update_slice`. As in JAX, an update at an
/// out-of-range run-time index is dropped.
fn update_dynamic_region(
    interp: &mut Interp,
    x: &Traced,
    region: &Region,
    how: &str,
    update: &Traced,
    span: Span,
) -> DResult<Traced> {
    if !region.reversed.is_empty() || region.strides.iter().any(|s| *s != 1) {
        return Err(Diagnostic::not_supported(
            span,
            "`.at[]` with a run-time index and a strided or reversed slice",
        ));
    }
    let old = select_region(interp, span, x, region)?;
    let new = combine(interp, how, &old, update, span)?;
    let mut block = region.sliced.clone();
    let mut starts = vec![];
    let mut in_range: Option<Traced> = None;
    for (d, size) in block.iter_mut().enumerate() {
        match region.dynamic.iter().find(|(dim, _)| *dim == d) {
            Some((_, index)) => {
                *size = 1;
                let n = x.ty.shape[d];
                starts.push(wrap_index(interp, span, index, n));
                let index = interp.emit.convert(span, index, DType::I32);
                let low = int32(interp, span, -n);
                let high = int32(interp, span, n);
                let above = interp.emit.compare(span, Predicate::Ge, &index, &low);
                let below = interp.emit.compare(span, Predicate::Lt, &index, &high);
                let inside = interp.emit.binary(span, Binary::And, &above, &below);
                in_range = Some(match in_range {
                    Some(all) => interp.emit.binary(span, Binary::And, &all, &inside),
                    None => inside,
                });
            }
            None => starts.push(int32(interp, span, region.start[d])),
        }
    }
    let new = interp.emit.reshape(span, &new, &block);
    let updated = interp.emit.dynamic_update_slice(span, x, &new, &starts);
    let in_range = in_range.expect("a dynamic region has a run-time index");
    let mask = interp
        .emit
        .broadcast_in_dim(span, &in_range, &[], &x.ty.shape);
    Ok(interp.emit.select(span, &mask, &updated, x))
}

/// `old` combined with `update` as `.at[].how` does.
fn combine(
    interp: &mut Interp,
    how: &str,
    old: &Traced,
    update: &Traced,
    span: Span,
) -> DResult<Traced> {
    Ok(match how {
        "set" => update.clone(),
        "add" => interp.emit.binary(span, Binary::Add, old, update),
        "multiply" | "mul" => interp.emit.binary(span, Binary::Mul, old, update),
        "min" => interp.emit.binary(span, Binary::Min, old, update),
        "max" => interp.emit.binary(span, Binary::Max, old, update),
        other => {
            return Err(Diagnostic::not_supported(
                span,
                format!("`.at[...].{other}`"),
            ));
        }
    })
}

/// `x.at[indices].set(update)` / `.add(update)` for an integer array of indices into the
/// first axis (a scatter): a one-hot matrix of the indices times the updates (the other
/// updates go through `scatter_loop`). Negative
/// indices count from the end; out-of-range ones are dropped, as in JAX. `add` sums the
/// updates of repeated indices; `set` keeps the last.
fn scatter(
    interp: &mut Interp,
    x: &Traced,
    indices: &Traced,
    how: &str,
    update: &Traced,
    span: Span,
) -> DResult<Traced> {
    let (n, dtype) = indexed_rows(x, indices, span)?;
    if !matches!(how, "set" | "add") {
        return scatter_loop(interp, x, indices, how, update, span);
    }
    let (count, flat, update) = scatter_rows(interp, x, indices, update, span)?;
    let flat = wrap_index(interp, span, &flat, n);
    let update = interp.emit.convert(span, &update, dtype);
    // hit[k, p]: update k goes to row p.
    let mut hit = one_hot_rows(interp, span, &flat, n);
    if how == "set" {
        // Keep update k only if no later update goes to the same row.
        let later: Vec<f64> = (0..count)
            .flat_map(|k| (0..count).map(move |j| f64::from(u8::from(j > k))))
            .collect();
        let later = interp.emit.constant(
            span,
            &later,
            ArrayType::new(DType::Bool, vec![count, count]),
        );
        let rows = interp
            .emit
            .broadcast_in_dim(span, &flat, &[0], &[count, count]);
        let columns = interp
            .emit
            .broadcast_in_dim(span, &flat, &[1], &[count, count]);
        let same = interp.emit.compare(span, Predicate::Eq, &rows, &columns);
        let overwritten = interp.emit.binary(span, Binary::And, &same, &later);
        let overwritten = interp
            .emit
            .reduce(span, ReduceKind::Max, &overwritten, &[1]);
        let kept = interp.emit.unary(span, Unary::Not, &overwritten);
        let kept = interp.emit.broadcast_in_dim(span, &kept, &[0], &[count, n]);
        hit = interp.emit.binary(span, Binary::And, &hit, &kept);
    }
    let one_hot = interp.emit.convert(span, &hit, dtype);
    let dims = fx::DotDimensions {
        lhs_contracting: vec![0],
        rhs_contracting: vec![0],
        ..Default::default()
    };
    let scattered = interp.emit.dot_general(span, &one_hot, &update, &dims);
    let scattered = interp.emit.convert(span, &scattered, x.ty.dtype);
    Ok(if how == "add" {
        let mut sum = interp.emit.binary(span, Binary::Add, x, &scattered);
        sum.ty.weak = x.ty.weak;
        sum
    } else {
        let touched = interp.emit.reduce(span, ReduceKind::Max, &hit, &[0]);
        let mask = interp
            .emit
            .broadcast_in_dim(span, &touched, &[0], &x.ty.shape);
        interp.emit.select(span, &mask, &scattered, x)
    })
}

/// `x.at[items].set/add/...(update)` with integer arrays among slices, ints and `...`: the
/// indexed dimensions move to the front and merge into one, whose index is the row-major
/// position of each combination of indices (out of range when any of them is, so that the
/// update is dropped), and the scatter of `x.at[indices]` does the rest. Partial slices
/// update the region they select.
fn advanced_update(
    interp: &mut Interp,
    x: &Traced,
    items: &[Value],
    how: &str,
    update: &Traced,
    span: Span,
) -> DResult<Traced> {
    let shape = x.ty.shape.clone();
    let expanded = expand_index(items, shape.len(), span)?;
    if expanded
        .iter()
        .any(|item| matches!(item, Value::None | Value::Bool(_)))
    {
        return Err(Diagnostic::not_supported(
            span,
            "an `.at[...]` update mixing array indices with `None` or a bool",
        ));
    }
    // Partial slices: update the region they select (whole along the indexed dimensions)
    // with `:` in their place, and write the region back.
    let is_full = |axis: usize, item: &Value| -> DResult<bool> {
        Ok(match item {
            Value::Method { receiver, name } if name.as_ref() == "slice" => {
                slice_bounds(receiver, shape[axis], span)? == (0, shape[axis], 1)
            }
            _ => true,
        })
    };
    let mut partial = false;
    for (axis, item) in expanded.iter().enumerate() {
        partial |= !is_full(axis, item)?;
    }
    if partial {
        let outer: Vec<Value> = expanded
            .iter()
            .map(|item| match item {
                Value::Method { .. } => item.clone(),
                _ => full_slice(),
            })
            .collect();
        let inner: Vec<Value> = expanded
            .iter()
            .map(|item| match item {
                Value::Method { .. } => full_slice(),
                _ => item.clone(),
            })
            .collect();
        let region = select_region(interp, span, x, &region_of(&shape, &outer, span)?)?;
        let updated = advanced_update(interp, &region, &inner, how, update, span)?;
        let outer = Value::Tuple(Rc::new(outer));
        return update_basic_region(interp, x, &outer, "set", &updated, span);
    }
    let mut advanced = vec![];
    let mut basic = vec![];
    for (axis, item) in expanded.iter().enumerate() {
        match item {
            Value::Array(t) => {
                indexed_rows(x, t, span)?;
                advanced.push((axis, t.clone()));
            }
            Value::Int(i) => advanced.push((axis, int32(interp, span, *i))),
            _ => basic.push(axis),
        }
    }
    let batch = broadcast_indices(advanced.iter().map(|(_, t)| t), span)?;
    // The row-major position of each combination, or `total` where an index is out of range.
    let total: i64 = advanced.iter().map(|(axis, _)| shape[*axis]).product();
    let like = |dtype| ArrayType::new(dtype, batch.clone());
    let mut flat = interp.emit.constant(span, &[0.0], like(DType::I32));
    let mut valid = interp.emit.constant(span, &[1.0], like(DType::Bool));
    for (axis, indices) in &advanced {
        let n = shape[*axis];
        let index = wrap_index(interp, span, indices, n);
        let index = interp.emit.broadcast_to(span, &index, &batch)?;
        let zero = interp.emit.constant(span, &[0.0], like(DType::I32));
        let size = interp.emit.constant(span, &[n as f64], like(DType::I32));
        let low = interp.emit.compare(span, Predicate::Ge, &index, &zero);
        let high = interp.emit.compare(span, Predicate::Lt, &index, &size);
        let inside = interp.emit.binary(span, Binary::And, &low, &high);
        valid = interp.emit.binary(span, Binary::And, &valid, &inside);
        let scaled = interp.emit.binary(span, Binary::Mul, &flat, &size);
        flat = interp.emit.binary(span, Binary::Add, &scaled, &index);
    }
    let outside = interp
        .emit
        .constant(span, &[total as f64], like(DType::I32));
    let flat = interp.emit.select(span, &valid, &flat, &outside);
    // x with the indexed dimensions first, merged.
    let permutation: Vec<i64> = advanced
        .iter()
        .map(|(axis, _)| *axis as i64)
        .chain(basic.iter().map(|axis| *axis as i64))
        .collect();
    let moved = interp.emit.transpose(span, x, &permutation);
    let rest: Vec<i64> = basic.iter().map(|axis| shape[*axis]).collect();
    let merged = interp
        .emit
        .reshape(span, &moved, &[vec![total], rest.clone()].concat());
    // The update, shaped like x[items] (the batch where the indices stand when together, else
    // first), then with the batch first.
    let positions: Vec<usize> = advanced.iter().map(|(axis, _)| *axis).collect();
    let together = positions.windows(2).all(|w| w[1] == w[0] + 1);
    let before = if together {
        basic.iter().filter(|axis| **axis < positions[0]).count()
    } else {
        0
    };
    let b = batch.len() as i64;
    let indexed_shape = [&rest[..before], &batch[..], &rest[before..]].concat();
    let update = interp.emit.broadcast_to(span, update, &indexed_shape)?;
    let to_front: Vec<i64> = (before as i64..before as i64 + b)
        .chain(0..before as i64)
        .chain(before as i64 + b..indexed_shape.len() as i64)
        .collect();
    let update = interp.emit.transpose(span, &update, &to_front);
    let scattered = scatter(interp, &merged, &flat, how, &update, span)?;
    let unmerged_shape: Vec<i64> = permutation
        .iter()
        .map(|axis| shape[*axis as usize])
        .collect();
    let unmerged = interp.emit.reshape(span, &scattered, &unmerged_shape);
    let mut inverse = vec![0; permutation.len()];
    for (position, axis) in permutation.iter().enumerate() {
        inverse[*axis as usize] = position as i64;
    }
    Ok(interp.emit.transpose(span, &unmerged, &inverse))
}

/// The `count` indices of a scatter as one list, and its updates as one row of `x` per index
/// (broadcast to the indices' shape followed by a row's).
fn scatter_rows(
    interp: &mut Interp,
    x: &Traced,
    indices: &Traced,
    update: &Traced,
    span: Span,
) -> DResult<(i64, Traced, Traced)> {
    let count: i64 = indices.ty.shape.iter().product();
    let flat = interp.emit.reshape(span, indices, &[count]);
    let rest = &x.ty.shape[1..];
    let rows = interp.emit.broadcast_to(
        span,
        update,
        &[indices.ty.shape.clone(), rest.to_vec()].concat(),
    )?;
    let rows = interp
        .emit
        .reshape(span, &rows, &[vec![count], rest.to_vec()].concat());
    Ok((count, flat, rows))
}

/// `x.at[indices].multiply/min/max(update)`: a loop over the indices that updates one row at
/// a time (so repeated indices combine in order; out-of-range ones are dropped).
fn scatter_loop(
    interp: &mut Interp,
    x: &Traced,
    indices: &Traced,
    how: &str,
    update: &Traced,
    span: Span,
) -> DResult<Traced> {
    let (count, flat, rows) = scatter_rows(interp, x, indices, update, span)?;
    let mut body = |interp: &mut Interp, k: Traced, carry: Value| -> DResult<(Value, Value)> {
        let Value::Array(current) = carry else {
            return Err(Diagnostic::new(
                "ferrax::index",
                span,
                "a scatter without its array",
            ));
        };
        let index = index_array(interp, span, &flat, &Value::Array(k.clone()))?;
        let row = index_array(interp, span, &rows, &Value::Array(k))?;
        let Value::Array(row) = row else {
            return Err(Diagnostic::new(
                "ferrax::index",
                span,
                "a scatter without its row",
            ));
        };
        let updated = at_update(
            interp,
            &current,
            &index,
            how,
            Some(&Value::Array(row)),
            span,
        )?;
        Ok((updated, Value::None))
    };
    let (result, _) = super::control::for_loop(
        interp,
        (count, super::control::Order::Forward),
        &Value::Array(x.clone()),
        span,
        &mut body,
    )?;
    match result {
        Value::Array(result) => Ok(result),
        _ => Err(Diagnostic::new(
            "ferrax::index",
            span,
            "a scatter without its array",
        )),
    }
}

fn full_slice() -> Value {
    Value::Method {
        receiver: Rc::new(Value::Tuple(Rc::new(vec![
            Value::None,
            Value::None,
            Value::None,
        ]))),
        name: "slice".into(),
    }
}

fn is_ellipsis(value: &Value) -> bool {
    matches!(value, Value::Method { name, .. } if name.as_ref() == "...")
}

/// An arithmetic operator on two arrays, with JAX's semantics.
pub fn array_binop(
    interp: &mut Interp,
    op: BinOp,
    a: &Traced,
    b: &Traced,
    span: Span,
) -> DResult<Traced> {
    let (a, b) = interp.emit.unify(span, a, b)?;
    let dtype = a.ty.dtype;
    let binary =
        |interp: &mut Interp, op, a: &Traced, b: &Traced| interp.emit.binary(span, op, a, b);
    Ok(match op {
        BinOp::Add if dtype == DType::Bool => binary(interp, Binary::Or, &a, &b),
        BinOp::Mul if dtype == DType::Bool => binary(interp, Binary::And, &a, &b),
        BinOp::Add => binary(interp, Binary::Add, &a, &b),
        BinOp::Sub if dtype == DType::Bool => {
            return Err(Diagnostic::new(
                "ferrax::type::operator",
                span,
                "subtraction of bool arrays is not allowed",
            )
            .help("use `^` or `jnp.logical_xor`"));
        }
        BinOp::Sub => binary(interp, Binary::Sub, &a, &b),
        BinOp::Mul => binary(interp, Binary::Mul, &a, &b),
        BinOp::Div => {
            let (a, b) = if dtype.is_float() {
                (a, b)
            } else {
                let weak = a.ty.weak;
                let mut x = interp.emit.convert(span, &a, DType::F32);
                let mut y = interp.emit.convert(span, &b, DType::F32);
                x.ty.weak = weak;
                y.ty.weak = weak;
                (x, y)
            };
            binary(interp, Binary::Div, &a, &b)
        }
        BinOp::FloorDiv if dtype.is_float() => {
            let q = binary(interp, Binary::Div, &a, &b);
            interp.emit.unary(span, Unary::Floor, &q)
        }
        BinOp::FloorDiv | BinOp::Mod => {
            // JAX's remainder: the truncated remainder, moved into the divisor's sign.
            let rem = binary(interp, Binary::Rem, &a, &b);
            let zero = interp
                .emit
                .constant(span, &[0.0], ArrayType::new(dtype, vec![]));
            let zero = interp.emit.broadcast_to(span, &zero, &a.ty.shape)?;
            let rem_nonzero = interp.emit.compare(span, Predicate::Ne, &rem, &zero);
            let rem_negative = interp.emit.compare(span, Predicate::Lt, &rem, &zero);
            let b_negative = interp.emit.compare(span, Predicate::Lt, &b, &zero);
            let signs_differ = interp
                .emit
                .compare(span, Predicate::Ne, &rem_negative, &b_negative);
            let adjust = interp
                .emit
                .binary(span, Binary::And, &rem_nonzero, &signs_differ);
            if op == BinOp::Mod {
                let moved = binary(interp, Binary::Add, &rem, &b);
                interp.emit.select(span, &adjust, &moved, &rem)
            } else {
                let q = binary(interp, Binary::Div, &a, &b);
                let one = interp
                    .emit
                    .constant(span, &[1.0], ArrayType::new(dtype, vec![]));
                let one = interp.emit.broadcast_to(span, &one, &a.ty.shape)?;
                let lower = binary(interp, Binary::Sub, &q, &one);
                interp.emit.select(span, &adjust, &lower, &q)
            }
        }
        BinOp::Pow if dtype.is_float() => binary(interp, Binary::Pow, &a, &b),
        BinOp::BitAnd if dtype == DType::Bool => binary(interp, Binary::And, &a, &b),
        BinOp::BitOr if dtype == DType::Bool => binary(interp, Binary::Or, &a, &b),
        BinOp::BitXor if dtype == DType::Bool => interp.emit.compare(span, Predicate::Ne, &a, &b),
        _ => {
            return Err(Diagnostic::not_supported(
                span,
                format!("`{}` on {} arrays", op.symbol(), dtype.name()),
            ));
        }
    })
}

fn where_(
    interp: &mut Interp,
    condition: &Traced,
    x: &Traced,
    y: &Traced,
    span: Span,
) -> DResult<Traced> {
    let condition = to_bool(interp, condition, span);
    let (x, y) = interp.emit.unify(span, x, y)?;
    let shape =
        super::emit::broadcast_shapes(&condition.ty.shape, &x.ty.shape).ok_or_else(|| {
            Diagnostic::new(
                "ferrax::shape::broadcast",
                span,
                format!(
                    "shapes {} and {} cannot be broadcast together",
                    shape_repr(&condition.ty.shape),
                    shape_repr(&x.ty.shape)
                ),
            )
        })?;
    let condition = interp.emit.broadcast_to(span, &condition, &shape)?;
    let x = interp.emit.broadcast_to(span, &x, &shape)?;
    let y = interp.emit.broadcast_to(span, &y, &shape)?;
    Ok(interp.emit.select(span, &condition, &x, &y))
}

fn to_bool(interp: &mut Interp, x: &Traced, span: Span) -> Traced {
    if x.ty.dtype == DType::Bool {
        return x.clone();
    }
    let zero = interp
        .emit
        .constant(span, &[0.0], ArrayType::new(x.ty.dtype, vec![]));
    let dims: Vec<i64> = vec![];
    let zero = interp
        .emit
        .broadcast_in_dim(span, &zero, &dims, &x.ty.shape);
    interp.emit.compare(span, Predicate::Ne, x, &zero)
}

fn reduction(
    interp: &mut Interp,
    kind: &str,
    x: &Traced,
    axis: Option<&Value>,
    keepdims: bool,
    span: Span,
) -> DResult<Traced> {
    let rank = x.ty.shape.len() as i64;
    let mut axes: Vec<i64> = match axis {
        None | Some(Value::None) => (0..rank).collect(),
        Some(value) => int_list(value, span)?,
    };
    for axis in axes.iter_mut() {
        if *axis < -rank || *axis >= rank.max(1) || (rank == 0) {
            return Err(Diagnostic::new(
                "ferrax::shape::axis",
                span,
                format!("axis {axis} is out of bounds for an array of dimension {rank}"),
            )
            .label("here"));
        }
        if *axis < 0 {
            *axis += rank;
        }
    }
    axes.sort_unstable();
    axes.dedup();
    let mut x = x.clone();
    if x.ty.dtype == DType::Bool && matches!(kind, "sum" | "mean" | "prod") {
        x = interp.emit.convert(span, &x, DType::I32);
    }
    if kind == "mean" && !x.ty.dtype.is_float() {
        x = interp.emit.convert(span, &x, DType::F32);
    }
    if matches!(kind, "max" | "min") && axes.iter().any(|a| x.ty.shape[*a as usize] == 0) {
        return Err(Diagnostic::new(
            "ferrax::shape::empty",
            span,
            format!("zero-size array to reduction operation {kind} which has no identity"),
        ));
    }
    let reduce_kind = match kind {
        "max" => ReduceKind::Max,
        "min" => ReduceKind::Min,
        "prod" => ReduceKind::Prod,
        _ => ReduceKind::Sum,
    };
    let mut result = interp.emit.reduce(span, reduce_kind, &x, &axes);
    if kind == "mean" {
        let count: i64 = axes.iter().map(|a| x.ty.shape[*a as usize]).product();
        let divisor = interp.emit.constant(
            span,
            &[count as f64],
            ArrayType::new(result.ty.dtype, vec![]),
        );
        let divisor = interp.emit.broadcast_to(span, &divisor, &result.ty.shape)?;
        result = interp.emit.binary(span, Binary::Div, &result, &divisor);
    }
    if keepdims {
        let shape: Vec<i64> =
            x.ty.shape
                .iter()
                .enumerate()
                .map(|(i, d)| if axes.contains(&(i as i64)) { 1 } else { *d })
                .collect();
        result = interp.emit.reshape(span, &result, &shape);
    }
    Ok(result)
}

/// Promotes two arrays to a common dtype (no broadcasting).
fn promote_pair(interp: &mut Interp, a: &Traced, b: &Traced, span: Span) -> (Traced, Traced) {
    let (dtype, weak) = super::value::promote((a.ty.dtype, a.ty.weak), (b.ty.dtype, b.ty.weak));
    let mut a = interp.emit.convert(span, a, dtype);
    let mut b = interp.emit.convert(span, b, dtype);
    a.ty.weak = weak;
    b.ty.weak = weak;
    (a, b)
}

fn contraction_error(
    span: Span,
    a: &[i64],
    b: &[i64],
    what: &str,
    dims: Option<(i64, i64)>,
) -> Diagnostic {
    let detail = match dims {
        Some((x, y)) => format!(
            "dimension {x} of the first ({}) != dimension {y} of the second ({})",
            a[x as usize], b[y as usize]
        ),
        None => String::from("the batch dimensions do not broadcast"),
    };
    Diagnostic::new(
        "ferrax::shape::dot",
        span,
        format!(
            "shapes {} and {} are not aligned for {what}: {detail}",
            shape_repr(a),
            shape_repr(b)
        ),
    )
    .label(format!("{} · {}", shape_repr(a), shape_repr(b)))
    .help("the contracted dimensions must be equal; transpose one operand if needed")
}

/// `fx.dot_general` after checking that contracted and batch sizes agree.
fn contract(
    interp: &mut Interp,
    a: &Traced,
    b: &Traced,
    dims: fx::DotDimensions,
    what: &str,
    span: Span,
) -> DResult<Traced> {
    let (a, b) = promote_pair(interp, a, b, span);
    for (x, y) in dims
        .lhs_contracting
        .iter()
        .zip(&dims.rhs_contracting)
        .chain(dims.lhs_batch.iter().zip(&dims.rhs_batch))
    {
        if a.ty.shape[*x as usize] != b.ty.shape[*y as usize] {
            return Err(contraction_error(
                span,
                &a.ty.shape,
                &b.ty.shape,
                what,
                Some((*x, *y)),
            ));
        }
    }
    if a.ty.dtype == DType::Bool {
        // A bool contraction is true where any product is, as in JAX.
        let a = interp.emit.convert(span, &a, DType::I32);
        let b = interp.emit.convert(span, &b, DType::I32);
        let count = interp.emit.dot_general(span, &a, &b, &dims);
        return Ok(interp.emit.convert(span, &count, DType::Bool));
    }
    Ok(interp.emit.dot_general(span, &a, &b, &dims))
}

/// Joins arrays along `axis`: each is padded to the full size and picked where its mask is set.
fn concatenate(interp: &mut Interp, arrays: &[Traced], axis: i64, span: Span) -> DResult<Traced> {
    let rank = arrays[0].ty.shape.len();
    if rank == 0 {
        return Err(Diagnostic::new(
            "ferrax::shape::concatenate",
            span,
            "zero-dimensional arrays cannot be concatenated",
        ));
    }
    let axis = axis_index(axis, rank, span)? as usize;
    let mut dtype = (arrays[0].ty.dtype, arrays[0].ty.weak);
    for array in arrays {
        let same = array.ty.shape.len() == rank
            && (0..rank).all(|d| d == axis || array.ty.shape[d] == arrays[0].ty.shape[d]);
        if !same {
            return Err(Diagnostic::new(
                "ferrax::shape::concatenate",
                span,
                format!(
                    "arrays of shapes {} and {} cannot be joined along axis {axis}",
                    shape_repr(&arrays[0].ty.shape),
                    shape_repr(&array.ty.shape)
                ),
            )
            .label("here"));
        }
        dtype = super::value::promote(dtype, (array.ty.dtype, array.ty.weak));
    }
    let total: i64 = arrays.iter().map(|a| a.ty.shape[axis]).sum();
    let mut offset = 0;
    let mut result: Option<Traced> = None;
    for array in arrays {
        let array = interp.emit.convert(span, array, dtype.0);
        let length = array.ty.shape[axis];
        let mut low = vec![0; rank];
        let mut high = vec![0; rank];
        low[axis] = offset;
        high[axis] = total - offset - length;
        let padded = interp
            .emit
            .pad(span, &array, 0.0, &low, &high, &vec![0; rank]);
        result = Some(match result {
            None => padded,
            Some(acc) => {
                let ones = interp.emit.constant(
                    span,
                    &[1.0],
                    ArrayType::new(DType::Bool, array.ty.shape.clone()),
                );
                let mask = interp
                    .emit
                    .pad(span, &ones, 0.0, &low, &high, &vec![0; rank]);
                interp.emit.select(span, &mask, &padded, &acc)
            }
        });
        offset += length;
    }
    let mut result = result.expect("at least one array");
    result.ty.weak = dtype.1;
    Ok(result)
}

/// Elementwise functions written with the primitives (as JAX's `jnp` does).
fn composite_elementwise(interp: &mut Interp, name: &str, x: Value, span: Span) -> DResult<Value> {
    use std::f64::consts::{LN_2, LN_10};
    let x = interp.emit.to_array(span, &x)?;
    let x = if x.ty.dtype.is_float() {
        x
    } else {
        let weak = x.ty.weak;
        let mut converted = interp.emit.convert(span, &x, DType::F32);
        converted.ty.weak = weak;
        converted
    };
    let scalar = |interp: &mut Interp, value: f64| {
        interp.emit.constant(
            span,
            &[value],
            ArrayType {
                dtype: x.ty.dtype,
                shape: x.ty.shape.clone(),
                weak: false,
            },
        )
    };
    let mul =
        |interp: &mut Interp, a: &Traced, b: &Traced| interp.emit.binary(span, Binary::Mul, a, b);
    Ok(Value::Array(match name {
        "ceil" => {
            let negated = interp.emit.unary(span, Unary::Neg, &x);
            let floor = interp.emit.unary(span, Unary::Floor, &negated);
            interp.emit.unary(span, Unary::Neg, &floor)
        }
        "exp2" => {
            let ln2 = scalar(interp, LN_2);
            let scaled = mul(interp, &x, &ln2);
            interp.emit.unary(span, Unary::Exp, &scaled)
        }
        "log2" | "log10" => {
            let log = interp.emit.unary(span, Unary::Log, &x);
            let divisor = scalar(interp, if name == "log2" { LN_2 } else { LN_10 });
            interp.emit.binary(span, Binary::Div, &log, &divisor)
        }
        "sinh" | "cosh" => {
            // (expm1(x) ∓ expm1(-x)) / 2 keeps sinh accurate near zero.
            let negated = interp.emit.unary(span, Unary::Neg, &x);
            let up = interp.emit.unary(span, Unary::Expm1, &x);
            let down = interp.emit.unary(span, Unary::Expm1, &negated);
            let half = scalar(interp, 0.5);
            if name == "sinh" {
                let difference = interp.emit.binary(span, Binary::Sub, &up, &down);
                mul(interp, &difference, &half)
            } else {
                let sum = interp.emit.binary(span, Binary::Add, &up, &down);
                let two = scalar(interp, 2.0);
                let sum = interp.emit.binary(span, Binary::Add, &sum, &two);
                mul(interp, &sum, &half)
            }
        }
        "tan" => {
            let sin = interp.emit.unary(span, Unary::Sin, &x);
            let cos = interp.emit.unary(span, Unary::Cos, &x);
            interp.emit.binary(span, Binary::Div, &sin, &cos)
        }
        "cbrt" => {
            let magnitude = interp.emit.unary(span, Unary::Abs, &x);
            let third = scalar(interp, 1.0 / 3.0);
            let root = interp.emit.binary(span, Binary::Pow, &magnitude, &third);
            let sign = interp.emit.unary(span, Unary::Sign, &x);
            mul(interp, &sign, &root)
        }
        "arcsinh" | "arccosh" => {
            // log(x + sqrt(x² ± 1))
            let square = interp.emit.integer_pow(span, &x, 2);
            let one = scalar(interp, 1.0);
            let inner = if name == "arcsinh" {
                interp.emit.binary(span, Binary::Add, &square, &one)
            } else {
                interp.emit.binary(span, Binary::Sub, &square, &one)
            };
            let root = interp.emit.unary(span, Unary::Sqrt, &inner);
            let sum = interp.emit.binary(span, Binary::Add, &x, &root);
            interp.emit.unary(span, Unary::Log, &sum)
        }
        _ => {
            // arctanh(x) = log1p(2x / (1 - x)) / 2
            let one = scalar(interp, 1.0);
            let two = scalar(interp, 2.0);
            let half = scalar(interp, 0.5);
            let numerator = mul(interp, &two, &x);
            let denominator = interp.emit.binary(span, Binary::Sub, &one, &x);
            let ratio = interp
                .emit
                .binary(span, Binary::Div, &numerator, &denominator);
            let log = interp.emit.unary(span, Unary::Log1p, &ratio);
            mul(interp, &log, &half)
        }
    }))
}

/// `all`, `any`, `argmax`, `argmin`, `var`, `std` along `axis`.
fn extra_reduction(
    interp: &mut Interp,
    kind: &str,
    x: &Traced,
    axis: Option<&Value>,
    keepdims: bool,
    ddof: f64,
    span: Span,
) -> DResult<Traced> {
    match kind {
        "all" | "any" => {
            let b = to_bool(interp, x, span);
            let reduced = reduction(
                interp,
                if kind == "all" { "min" } else { "max" },
                &b,
                axis,
                keepdims,
                span,
            );
            match reduced {
                Err(_) if b.ty.size() == 0 => {
                    let value = if kind == "all" { 1.0 } else { 0.0 };
                    Ok(interp
                        .emit
                        .constant(span, &[value], ArrayType::new(DType::Bool, vec![])))
                }
                other => other,
            }
        }
        "var" | "std" => {
            let x = if x.ty.dtype.is_float() {
                x.clone()
            } else {
                interp.emit.convert(span, x, DType::F32)
            };
            let mean = reduction(interp, "mean", &x, axis, true, span)?;
            let mean = interp.emit.broadcast_to(span, &mean, &x.ty.shape)?;
            let centred = interp.emit.binary(span, Binary::Sub, &x, &mean);
            let squared = interp.emit.integer_pow(span, &centred, 2);
            let total = reduction(interp, "sum", &squared, axis, keepdims, span)?;
            let count = (x.ty.size() / total.ty.size().max(1)) as f64;
            let divisor = interp.emit.constant(
                span,
                &[(count - ddof).max(0.0)],
                ArrayType::new(total.ty.dtype, total.ty.shape.clone()),
            );
            let variance = interp.emit.binary(span, Binary::Div, &total, &divisor);
            Ok(if kind == "std" {
                interp.emit.unary(span, Unary::Sqrt, &variance)
            } else {
                variance
            })
        }
        _ => {
            // The first index of the extreme value: min over where(x == extreme, index, size).
            let (x, axis) = match axis {
                None | Some(Value::None) => {
                    let n = x.ty.size();
                    (interp.emit.reshape(span, x, &[n]), 0)
                }
                Some(value) => (
                    x.clone(),
                    axis_index(static_int(value, span)?, x.ty.shape.len(), span)?,
                ),
            };
            let size = *x.ty.shape.get(axis as usize).unwrap_or(&0);
            if size == 0 {
                return Err(Diagnostic::new(
                    "ferrax::shape::empty",
                    span,
                    format!("attempt to get {kind} of an empty sequence"),
                ));
            }
            let axis_value = Value::Int(axis);
            let extreme = reduction(
                interp,
                if kind == "argmax" { "max" } else { "min" },
                &x,
                Some(&axis_value),
                true,
                span,
            )?;
            let extreme = interp.emit.broadcast_to(span, &extreme, &x.ty.shape)?;
            let hit = interp.emit.compare(span, Predicate::Eq, &x, &extreme);
            let indices: Vec<f64> = (0..size).map(|i| i as f64).collect();
            let index =
                interp
                    .emit
                    .constant(span, &indices, ArrayType::new(DType::I32, vec![size]));
            let index = interp
                .emit
                .broadcast_in_dim(span, &index, &[axis], &x.ty.shape);
            let miss = interp.emit.constant(
                span,
                &[size as f64],
                ArrayType::new(DType::I32, x.ty.shape.clone()),
            );
            let candidates = interp.emit.select(span, &hit, &index, &miss);
            reduction(
                interp,
                "min",
                &candidates,
                Some(&axis_value),
                keepdims,
                span,
            )
        }
    }
}

/// `jnp.dot`: the last axis of `a` with the only or second-to-last axis of `b`.
fn dot(interp: &mut Interp, a: &Traced, b: &Traced, span: Span) -> DResult<Traced> {
    if a.ty.shape.is_empty() || b.ty.shape.is_empty() {
        let (a, b) = interp.emit.unify(span, a, b)?;
        return Ok(interp.emit.binary(span, Binary::Mul, &a, &b));
    }
    let lhs = a.ty.shape.len() as i64 - 1;
    let rhs = if b.ty.shape.len() == 1 {
        0
    } else {
        b.ty.shape.len() as i64 - 2
    };
    let dims = fx::DotDimensions {
        lhs_contracting: vec![lhs],
        rhs_contracting: vec![rhs],
        ..Default::default()
    };
    contract(interp, a, b, dims, "dot", span)
}

/// `jnp.matmul` / `@`: batched over leading dimensions (broadcast), vectors promoted.
fn matmul(interp: &mut Interp, a: &Traced, b: &Traced, span: Span) -> DResult<Traced> {
    if a.ty.shape.is_empty() || b.ty.shape.is_empty() {
        return Err(Diagnostic::new(
            "ferrax::shape::matmul",
            span,
            "matmul operands must not be scalars",
        )
        .help("use `*` to multiply by a scalar"));
    }
    let a_vector = a.ty.shape.len() == 1;
    let b_vector = b.ty.shape.len() == 1;
    let a = if a_vector {
        interp.emit.reshape(span, a, &[1, a.ty.shape[0]])
    } else {
        a.clone()
    };
    let b = if b_vector {
        interp.emit.reshape(span, b, &[b.ty.shape[0], 1])
    } else {
        b.clone()
    };
    let (ra, rb) = (a.ty.shape.len(), b.ty.shape.len());
    let batch = super::emit::broadcast_shapes(&a.ty.shape[..ra - 2], &b.ty.shape[..rb - 2])
        .ok_or_else(|| contraction_error(span, &a.ty.shape, &b.ty.shape, "matmul", None))?;
    let with_batch = |t: &Traced| -> Vec<i64> {
        let mut shape = batch.clone();
        shape.extend_from_slice(&t.ty.shape[t.ty.shape.len() - 2..]);
        shape
    };
    let a = interp.emit.broadcast_to(span, &a, &with_batch(&a))?;
    let b = interp.emit.broadcast_to(span, &b, &with_batch(&b))?;
    let nb = batch.len() as i64;
    let dims = fx::DotDimensions {
        lhs_batch: (0..nb).collect(),
        rhs_batch: (0..nb).collect(),
        lhs_contracting: vec![nb + 1],
        rhs_contracting: vec![nb],
    };
    let result = contract(interp, &a, &b, dims, "matmul", span)?;
    let mut shape = result.ty.shape.clone();
    if b_vector {
        shape.pop();
    }
    if a_vector {
        shape.remove(shape.len() - if b_vector { 1 } else { 2 });
    }
    Ok(interp.emit.reshape(span, &result, &shape))
}

/// `jnp.einsum` with one or two operands and explicit or implicit output.
fn einsum(
    interp: &mut Interp,
    subscripts: &str,
    operands: &[Traced],
    span: Span,
) -> DResult<Traced> {
    let bad = |message: &str| {
        Diagnostic::new("ferrax::einsum", span, format!("einsum: {message}")).label("here")
    };
    let spec: String = subscripts.chars().filter(|c| !c.is_whitespace()).collect();
    let (inputs, output) = match spec.split_once("->") {
        Some((inputs, output)) => (inputs.to_string(), Some(output.to_string())),
        None => (spec.clone(), None),
    };
    let inputs: Vec<Vec<char>> = inputs.split(',').map(|s| s.chars().collect()).collect();
    if inputs.len() != operands.len() || operands.is_empty() || operands.len() > 2 {
        return Err(bad(
            "one or two operands, one subscript string each, are supported",
        ));
    }
    if spec.contains('.') {
        return Err(Diagnostic::not_supported(
            span,
            "`...` in einsum subscripts",
        ));
    }
    for (letters, operand) in inputs.iter().zip(operands) {
        if letters.len() != operand.ty.shape.len() {
            return Err(bad(&format!(
                "subscripts '{}' do not match an operand of rank {}",
                letters.iter().collect::<String>(),
                operand.ty.shape.len()
            )));
        }
        let mut seen = letters.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != letters.len() {
            return Err(Diagnostic::not_supported(
                span,
                "a repeated index within one einsum operand",
            ));
        }
    }
    let count = |c: char| {
        inputs
            .iter()
            .map(|l| l.iter().filter(|x| **x == c).count())
            .sum::<usize>()
    };
    let output: Vec<char> = match output {
        Some(output) => output.chars().collect(),
        None => {
            let mut letters: Vec<char> = inputs
                .iter()
                .flatten()
                .copied()
                .filter(|c| count(*c) == 1)
                .collect();
            letters.sort_unstable();
            letters
        }
    };
    // Sum out letters that appear in one operand only and not in the output.
    let mut reduced = vec![];
    let mut letters = vec![];
    for (operand, subscript) in operands.iter().zip(&inputs) {
        let axes: Vec<i64> = subscript
            .iter()
            .enumerate()
            .filter(|(_, c)| count(**c) == 1 && !output.contains(c))
            .map(|(i, _)| i as i64)
            .collect();
        reduced.push(interp.emit.reduce(span, ReduceKind::Sum, operand, &axes));
        letters.push(
            subscript
                .iter()
                .copied()
                .filter(|c| count(*c) != 1 || output.contains(c))
                .collect::<Vec<char>>(),
        );
    }
    let (result, result_letters) = if operands.len() == 1 {
        (reduced[0].clone(), letters[0].clone())
    } else {
        let (a, b) = (&letters[0], &letters[1]);
        let batch: Vec<char> = a
            .iter()
            .copied()
            .filter(|c| b.contains(c) && output.contains(c))
            .collect();
        let contracted: Vec<char> = a
            .iter()
            .copied()
            .filter(|c| b.contains(c) && !output.contains(c))
            .collect();
        let position = |letters: &[char], c: char| {
            letters
                .iter()
                .position(|x| *x == c)
                .map(|p| p as i64)
                .unwrap_or(0)
        };
        let dims = fx::DotDimensions {
            lhs_batch: batch.iter().map(|c| position(a, *c)).collect(),
            rhs_batch: batch.iter().map(|c| position(b, *c)).collect(),
            lhs_contracting: contracted.iter().map(|c| position(a, *c)).collect(),
            rhs_contracting: contracted.iter().map(|c| position(b, *c)).collect(),
        };
        let mut result_letters = batch.clone();
        result_letters.extend(
            a.iter()
                .copied()
                .filter(|c| !batch.contains(c) && !contracted.contains(c)),
        );
        result_letters.extend(
            b.iter()
                .copied()
                .filter(|c| !batch.contains(c) && !contracted.contains(c)),
        );
        (
            contract(interp, &reduced[0], &reduced[1], dims, "einsum", span)?,
            result_letters,
        )
    };
    if output.len() != result_letters.len() || output.iter().any(|c| !result_letters.contains(c)) {
        return Err(bad(
            "the output subscripts must name indices of the operands",
        ));
    }
    let permutation: Vec<i64> = output
        .iter()
        .map(|c| result_letters.iter().position(|x| x == c).unwrap_or(0) as i64)
        .collect();
    Ok(interp.emit.transpose(span, &result, &permutation))
}

fn axis_index(axis: i64, rank: usize, span: Span) -> DResult<i64> {
    let rank = rank as i64;
    if axis < -rank || axis >= rank {
        return Err(Diagnostic::new(
            "ferrax::shape::axis",
            span,
            format!("axis {axis} is out of bounds for an array of dimension {rank}"),
        )
        .label("here"));
    }
    Ok(if axis < 0 { axis + rank } else { axis })
}

fn reshape(interp: &mut Interp, x: &Traced, shape: &Value, span: Span) -> DResult<Traced> {
    let mut dims = int_list(shape, span)?;
    let known: i64 = dims.iter().filter(|d| **d != -1).product();
    let unknown = dims.iter().filter(|d| **d == -1).count();
    let size = x.ty.size();
    if unknown > 1 || dims.iter().any(|d| *d < -1) {
        return Err(Diagnostic::new(
            "ferrax::shape::reshape",
            span,
            "a shape can have one -1 and no other negative sizes",
        ));
    }
    if unknown == 1 && known != 0 && size % known == 0 {
        for d in dims.iter_mut() {
            if *d == -1 {
                *d = size / known;
            }
        }
    }
    if dims.iter().product::<i64>() != size || dims.contains(&-1) {
        return Err(Diagnostic::new(
            "ferrax::shape::reshape",
            span,
            format!(
                "cannot reshape an array of shape {} (size {size}) into shape {}",
                shape_repr(&x.ty.shape),
                shape_repr(&dims)
            ),
        )
        .label("sizes differ"));
    }
    Ok(interp.emit.reshape(span, x, &dims))
}

fn convert_to(interp: &mut Interp, x: &Traced, dtype: &Value, span: Span) -> DResult<Traced> {
    let dtype = dtype_of(dtype, span)?;
    let mut converted = interp.emit.convert(span, x, dtype);
    converted.ty.weak = false;
    Ok(converted)
}

fn dtype_of(value: &Value, span: Span) -> DResult<DType> {
    match value {
        Value::DType(d) => Ok(*d),
        Value::Str(s) => DType::parse(s).ok_or_else(|| {
            Diagnostic::new(
                "ferrax::dtype::unknown",
                span,
                format!("unknown dtype '{s}'"),
            )
        }),
        Value::Builtin("builtins.float") => Ok(DType::F32),
        Value::Builtin("builtins.int") => Ok(DType::I32),
        Value::Builtin("builtins.bool") => Ok(DType::Bool),
        other => Err(Diagnostic::new(
            "ferrax::dtype::unknown",
            span,
            format!("expected a dtype, found {}", other.describe()),
        )),
    }
}

fn default_dtype(fill: &Value) -> DType {
    match fill {
        Value::Bool(_) => DType::Bool,
        Value::Int(_) => DType::I32,
        Value::Array(t) => t.ty.dtype,
        _ => DType::F32,
    }
}

fn filled(interp: &mut Interp, fill: &Value, ty: ArrayType, span: Span) -> DResult<Value> {
    if ty.size() > 1 << 28 {
        return Err(Diagnostic::new(
            "ferrax::shape::too_large",
            span,
            format!("an array of {} elements is too large", ty.size()),
        ));
    }
    match number(fill) {
        Some(n) => Ok(Value::Array(interp.emit.constant(span, &[n.as_f64()], ty))),
        None => {
            let value = interp.emit.to_array(span, fill)?;
            let value = interp.emit.convert(span, &value, ty.dtype);
            interp
                .emit
                .broadcast_to(span, &value, &ty.shape)
                .map(Value::Array)
        }
    }
}

fn static_shape(value: &Value, span: Span) -> DResult<Vec<i64>> {
    let dims = int_list(value, span)?;
    if dims.iter().any(|d| *d < 0) {
        return Err(Diagnostic::new(
            "ferrax::shape::negative",
            span,
            format!("negative dimensions are not allowed: {}", shape_repr(&dims)),
        ));
    }
    Ok(dims)
}

pub fn int_list(value: &Value, span: Span) -> DResult<Vec<i64>> {
    match value {
        Value::Tuple(items) | Value::List(items) => {
            items.iter().map(|v| static_int(v, span)).collect()
        }
        other => Ok(vec![static_int(other, span)?]),
    }
}

fn static_int(value: &Value, span: Span) -> DResult<i64> {
    match value {
        Value::Int(i) => Ok(*i),
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Array(_) => Err(Diagnostic::new(
            "ferrax::trace::concrete",
            span,
            "this must be a static integer, and it is an array known only when the program runs",
        )
        .help("mark the argument static (`static_argnums`) or compute it from shapes")),
        other => Err(Diagnostic::new(
            "ferrax::type::int",
            span,
            format!("expected a static integer, found {}", other.describe()),
        )),
    }
}

fn static_float(value: &Value, span: Span) -> DResult<f64> {
    match number(value) {
        Some(n) => Ok(n.as_f64()),
        None => Err(Diagnostic::new(
            "ferrax::type::number",
            span,
            format!("expected a static number, found {}", value.describe()),
        )),
    }
}
