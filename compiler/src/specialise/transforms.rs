//! Differentiation in the trace: `jax.grad`, `value_and_grad`, `vjp`, `jvp`, `jacfwd`,
//! `jacrev`, `hessian` and custom rules. Each traces the function it transforms into its own
//! private `func.func` (its array arguments become parameters) and emits an `fx.grad`,
//! `fx.vjp`, `fx.jvp`, `fx.custom_jvp_call` or `fx.custom_vjp_call` that refers to it; the
//! `fx-autodiff` pass computes the derivatives. JAX's checks happen here, at the user's source.

use super::builtins::{check_callable, int_list};
use super::emit::DResult;
use super::interp::{Interp, number};
use super::value::{
    ArrayType, CustomKind, CustomRule, DType, Traced, Transform, Value, shape_repr,
};
use super::{Output, collect_output};
use crate::diagnostic::Diagnostic;
use crate::syntax::span::Span;
use ferrax_dialects::ad;
use std::cell::RefCell;
use std::rc::Rc;

/// A function traced into its own `func.func`.
pub struct Lifted {
    pub name: String,
    /// The caller's values passed as the function's parameters.
    pub operands: Vec<Traced>,
    /// For each positional argument, the parameter indices of its array leaves (a tuple or
    /// list argument is a pytree of several).
    pub param_of: Vec<Vec<usize>>,
    /// The positional arguments with numbers made arrays where asked (their structure).
    pub args: Vec<Value>,
    pub output: Output,
    pub leaves: Vec<ArrayType>,
}

/// The pullback of `jax.vjp`: the traced function and the primals it was taken at.
pub struct Pullback {
    lifted: Lifted,
}

/// Traces `func(*args, **kwargs)` into a private function. Array arguments become parameters;
/// numbers at positions where `as_array` holds become weakly typed arrays first. `reverse`
/// says the function will be differentiated in reverse mode.
fn lift(
    interp: &mut Interp,
    func: &Value,
    args: &[Value],
    kwargs: &[(String, Value)],
    as_array: &dyn Fn(usize) -> bool,
    reverse: bool,
    span: Span,
) -> DResult<Lifted> {
    let mut operands = vec![];
    let mut param_of: Vec<Vec<usize>> = vec![];
    let mut converted = vec![];
    for (i, arg) in args.iter().enumerate() {
        let mut leaves = vec![];
        let value = flatten_arg(interp, arg, as_array(i), &mut leaves, span)?;
        param_of.push((operands.len()..operands.len() + leaves.len()).collect());
        operands.extend(leaves);
        converted.push(value);
    }
    let mut keyword_params = vec![];
    for (key, value) in kwargs {
        if let Value::Array(traced) = value {
            keyword_params.push((key.clone(), operands.len()));
            operands.push(traced.clone());
        }
    }
    let name = interp.fresh_name(&function_name(func));
    let location = interp.emit.location(span);
    let types: Vec<ArrayType> = operands.iter().map(|t| t.ty.clone()).collect();
    let params = interp.emit.begin_function(&types, location);
    let inner_args: Vec<Value> = converted
        .iter()
        .zip(&param_of)
        .map(|(value, leaves)| with_leaves(value, &mut leaves.iter().map(|p| params[*p].clone())))
        .collect();
    let inner_kwargs: Vec<(String, Value)> = kwargs
        .iter()
        .map(
            |(key, value)| match keyword_params.iter().find(|(k, _)| k == key) {
                Some((_, index)) => (key.clone(), Value::Array(params[*index].clone())),
                None => (key.clone(), value.clone()),
            },
        )
        .collect();
    interp.reverse_depth += usize::from(reverse);
    let result = interp.call(func, inner_args, inner_kwargs, span);
    interp.reverse_depth -= usize::from(reverse);
    let result = match result {
        Ok(value) => arrays_only(interp, &value, span),
        Err(error) => Err(error),
    };
    let (output, leaves) = match result {
        Ok(result) => result,
        Err(error) => {
            interp.emit.end_function(&name, &[], false, location);
            interp.emit.functions.pop();
            return Err(error);
        }
    };
    let captured = interp.emit.end_function(&name, &leaves, false, location);
    operands.extend(captured);
    if interp.emit.take_escaped() {
        return Err(Diagnostic::not_supported(
            span,
            "differentiating a function that uses an array computed outside it",
        )
        .label("the transformed function closes over a traced array")
        .help("pass the array as an argument of the function"));
    }
    Ok(Lifted {
        name,
        operands,
        param_of,
        args: converted,
        output,
        leaves: leaves.into_iter().map(|t| t.ty).collect(),
    })
}

/// Collects the array leaves of an argument (numbers become arrays when `as_array`); returns
/// the argument with those conversions.
fn flatten_arg(
    interp: &mut Interp,
    value: &Value,
    as_array: bool,
    leaves: &mut Vec<Traced>,
    span: Span,
) -> DResult<Value> {
    Ok(match value {
        Value::Array(traced) => {
            leaves.push(traced.clone());
            value.clone()
        }
        _ if as_array && number(value).is_some() => {
            let traced = interp.emit.to_array(span, value)?;
            leaves.push(traced.clone());
            Value::Array(traced)
        }
        Value::Tuple(items) => Value::Tuple(Rc::new(
            items
                .iter()
                .map(|v| flatten_arg(interp, v, as_array, leaves, span))
                .collect::<DResult<_>>()?,
        )),
        Value::List(items) => Value::List(Rc::new(
            items
                .iter()
                .map(|v| flatten_arg(interp, v, as_array, leaves, span))
                .collect::<DResult<_>>()?,
        )),
        other => other.clone(),
    })
}

/// `value` with its array leaves replaced, in order, by `leaves`.
fn with_leaves(value: &Value, leaves: &mut dyn Iterator<Item = Traced>) -> Value {
    match value {
        Value::Array(_) => leaves.next().map_or(Value::None, Value::Array),
        Value::Tuple(items) => Value::Tuple(Rc::new(
            items.iter().map(|v| with_leaves(v, leaves)).collect(),
        )),
        Value::List(items) => Value::List(Rc::new(
            items.iter().map(|v| with_leaves(v, leaves)).collect(),
        )),
        other => other.clone(),
    }
}

/// The output of a traced function with every number made an array; its structure and leaves.
fn arrays_only(interp: &mut Interp, value: &Value, span: Span) -> DResult<(Output, Vec<Traced>)> {
    let value = numbers_to_arrays(interp, value, span)?;
    let mut leaves = vec![];
    let output = collect_output(&value, &mut leaves, span)?;
    if contains_static(&output) {
        return Err(Diagnostic::new(
            "ferrax::autodiff::output",
            span,
            "a differentiated function must return arrays or tuples of them",
        )
        .label("differentiated here"));
    }
    Ok((output, leaves))
}

fn numbers_to_arrays(interp: &mut Interp, value: &Value, span: Span) -> DResult<Value> {
    Ok(match value {
        Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
            Value::Array(interp.emit.to_array(span, value)?)
        }
        Value::Tuple(items) => Value::Tuple(Rc::new(
            items
                .iter()
                .map(|v| numbers_to_arrays(interp, v, span))
                .collect::<DResult<_>>()?,
        )),
        Value::List(items) => Value::List(Rc::new(
            items
                .iter()
                .map(|v| numbers_to_arrays(interp, v, span))
                .collect::<DResult<_>>()?,
        )),
        other => other.clone(),
    })
}

fn contains_static(output: &Output) -> bool {
    match output {
        Output::Array { .. } => false,
        Output::Static(_) => true,
        Output::Tuple(items) | Output::List(items) => items.iter().any(contains_static),
    }
}

/// The output structure filled with `leaves`.
fn rebuild(output: &Output, leaves: &[Traced]) -> Value {
    match output {
        Output::Array { index, .. } => Value::Array(leaves[*index].clone()),
        Output::Static(_) => Value::None,
        Output::Tuple(items) => {
            Value::Tuple(Rc::new(items.iter().map(|o| rebuild(o, leaves)).collect()))
        }
        Output::List(items) => {
            Value::List(Rc::new(items.iter().map(|o| rebuild(o, leaves)).collect()))
        }
    }
}

fn function_name(func: &Value) -> String {
    match func {
        Value::Function(closure) => closure.name.clone(),
        Value::Jit { func, .. } => function_name(func),
        Value::Custom(rule) => function_name(&rule.borrow().primal),
        Value::Transform(transform) => {
            format!("{}_{}", transform.name, function_name(&transform.func))
        }
        Value::Builtin(name) => name.rsplit('.').next().unwrap_or("builtin").to_string(),
        _ => String::from("fn"),
    }
}

/// `argnums` as a list, and whether it was a tuple (so the result is a tuple).
fn argnums_of(transform: &Transform, span: Span) -> DResult<(Vec<i64>, bool)> {
    match &transform.argnums {
        None => Ok((vec![0], false)),
        Some(value @ (Value::Tuple(_) | Value::List(_))) => Ok((int_list(value, span)?, true)),
        Some(value) => Ok((int_list(value, span)?, false)),
    }
}

/// Checks each argnum is in range and names a float argument, as JAX does.
fn check_argnums(name: &str, argnums: &[i64], args: &[Value], span: Span) -> DResult<()> {
    for argnum in argnums {
        if *argnum < 0 || *argnum as usize >= args.len() {
            return Err(Diagnostic::new(
                "ferrax::autodiff::argnums",
                span,
                format!(
                    "argnums {argnum} is out of range for a call with {} positional arguments",
                    args.len()
                ),
            )
            .label("called here"));
        }
        if let Some(dtype) = non_float_leaf(&args[*argnum as usize], span)? {
            return Err(Diagnostic::new(
                "ferrax::autodiff::integer_input",
                span,
                format!("{name} requires real-valued inputs (a float dtype), but argument {argnum} is {}", dtype.name()),
            )
            .label("differentiated here")
            .help("pass a float, e.g. `1.0` instead of `1`"));
        }
    }
    Ok(())
}

/// The dtype of the first leaf of a differentiated argument that is not a float, if any.
fn non_float_leaf(value: &Value, span: Span) -> DResult<Option<DType>> {
    Ok(match value {
        Value::Float(_) => None,
        Value::Array(t) if t.ty.dtype.is_float() => None,
        Value::Array(t) => Some(t.ty.dtype),
        Value::Int(_) | Value::Bool(_) => Some(DType::I32),
        Value::Tuple(items) | Value::List(items) => {
            for item in items.iter() {
                if let Some(dtype) = non_float_leaf(item, span)? {
                    return Ok(Some(dtype));
                }
            }
            None
        }
        other => {
            return Err(Diagnostic::not_supported(
                span,
                format!("differentiating with respect to {}", other.describe()),
            )
            .help("differentiate with respect to arrays, numbers, or tuples and lists of them"));
        }
    })
}

/// Applies `grad`, `value_and_grad`, `jacfwd`, `jacrev` or `hessian` to arguments.
pub fn apply(
    interp: &mut Interp,
    transform: &Transform,
    args: Vec<Value>,
    kwargs: Vec<(String, Value)>,
    span: Span,
) -> DResult<Value> {
    let (argnums, is_tuple) = argnums_of(transform, span)?;
    check_argnums(transform.name, &argnums, &args, span)?;
    match transform.name {
        "grad" | "value_and_grad" => {
            grad(interp, transform, &argnums, is_tuple, args, kwargs, span)
        }
        "hessian" => {
            let inner = Value::Transform(Rc::new(Transform {
                name: "jacrev",
                ..transform.clone()
            }));
            let outer = Transform {
                name: "jacfwd",
                func: inner,
                argnums: transform.argnums.clone(),
                has_aux: false,
            };
            apply(interp, &outer, args, kwargs, span)
        }
        _ => {
            if is_tuple || transform.has_aux {
                return Err(Diagnostic::not_supported(
                    span,
                    format!("`{}` with a tuple of argnums or has_aux", transform.name),
                ));
            }
            jacobian(interp, transform, argnums[0] as usize, args, kwargs, span)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn grad(
    interp: &mut Interp,
    transform: &Transform,
    argnums: &[i64],
    is_tuple: bool,
    args: Vec<Value>,
    kwargs: Vec<(String, Value)>,
    span: Span,
) -> DResult<Value> {
    let lifted = lift(
        interp,
        &transform.func,
        &args,
        &kwargs,
        &|i| argnums.contains(&(i as i64)),
        true,
        span,
    )?;
    let (value_output, aux_output) = match (&lifted.output, transform.has_aux) {
        (Output::Tuple(items), true) if items.len() == 2 => {
            (items[0].clone(), Some(items[1].clone()))
        }
        (_, true) => {
            return Err(Diagnostic::new(
                "ferrax::autodiff::aux",
                span,
                "with has_aux=True the function must return a pair (output, aux)",
            )
            .label("differentiated here"));
        }
        (output, false) => (output.clone(), None),
    };
    let ty = match &value_output {
        Output::Array { ty, index: 0 } => ty.clone(),
        _ => {
            return Err(Diagnostic::new(
                "ferrax::autodiff::output",
                span,
                format!(
                    "{} needs a function that returns one scalar array",
                    transform.name
                ),
            )
            .label("differentiated here"));
        }
    };
    if !ty.shape.is_empty() {
        return Err(Diagnostic::new(
            "ferrax::autodiff::nonscalar",
            span,
            format!("gradient only defined for scalar-output functions; the output had shape {}", shape_repr(&ty.shape)),
        )
        .label("differentiated here")
        .help("reduce the output to a scalar (e.g. `jnp.sum`), or use `jax.jacrev` / `jax.vjp` for vector outputs"));
    }
    if !ty.dtype.is_float() {
        return Err(Diagnostic::new(
            "ferrax::autodiff::output",
            span,
            format!(
                "{} requires a real-valued (float) output, found {}",
                transform.name,
                ty.dtype.name()
            ),
        )
        .label("differentiated here"));
    }
    let params: Vec<i64> = argnums
        .iter()
        .flat_map(|a| lifted.param_of[*a as usize].iter().map(|p| *p as i64))
        .collect();
    let mut types = lifted.leaves.clone();
    types.extend(
        params
            .iter()
            .map(|p| lifted.operands[*p as usize].ty.clone()),
    );
    let location = interp.emit.location(span);
    let operands: Vec<_> = lifted
        .operands
        .iter()
        .map(|t| interp.emit.value(t))
        .collect();
    let result_types: Vec<_> = types.iter().map(|t| interp.emit.tensor_type(t)).collect();
    let operation = ad::grad(
        interp.emit.context,
        location,
        &lifted.name,
        &operands,
        &params,
        transform.has_aux,
        &result_types,
    );
    let results = interp.emit.push_many(operation, types);
    let mut grad_leaves = results[lifted.leaves.len()..].iter().cloned();
    let grads: Vec<Value> = argnums
        .iter()
        .map(|a| with_leaves(&lifted.args[*a as usize], &mut grad_leaves))
        .collect();
    let grads = if is_tuple {
        Value::Tuple(Rc::new(grads))
    } else {
        grads.into_iter().next().unwrap_or(Value::None)
    };
    let value = rebuild(&lifted.output, &results);
    Ok(match (transform.name, aux_output) {
        ("grad", None) => grads,
        ("grad", Some(aux)) => Value::Tuple(Rc::new(vec![grads, rebuild(&aux, &results)])),
        _ => Value::Tuple(Rc::new(vec![value, grads])),
    })
}

/// `jacfwd` (a JVP per input basis vector) or `jacrev` (a VJP per output basis vector),
/// unrolled for the static sizes and assembled into an array of shape `out + in`.
fn jacobian(
    interp: &mut Interp,
    transform: &Transform,
    argnum: usize,
    args: Vec<Value>,
    kwargs: Vec<(String, Value)>,
    span: Span,
) -> DResult<Value> {
    let lifted = lift(
        interp,
        &transform.func,
        &args,
        &kwargs,
        &|i| i == argnum,
        transform.name != "jacfwd",
        span,
    )?;
    let out_ty = match &lifted.output {
        Output::Array { ty, .. } if ty.dtype.is_float() => ty.clone(),
        _ => {
            return Err(Diagnostic::not_supported(
                span,
                format!(
                    "`{}` of a function that does not return one float array",
                    transform.name
                ),
            ));
        }
    };
    let [param] = lifted.param_of[argnum].as_slice() else {
        return Err(Diagnostic::not_supported(
            span,
            format!("`{}` with respect to a tuple or list", transform.name),
        ));
    };
    let param = *param;
    let in_ty = lifted.operands[param].ty.clone();
    let mut shape = out_ty.shape.clone();
    shape.extend(in_ty.shape.iter().copied());
    let full = ArrayType::new(out_ty.dtype, shape.clone());
    let out_dims: Vec<i64> = (0..out_ty.shape.len() as i64).collect();
    let in_dims: Vec<i64> = (out_ty.shape.len() as i64..shape.len() as i64).collect();
    let location = interp.emit.location(span);
    let operands: Vec<_> = lifted
        .operands
        .iter()
        .map(|t| interp.emit.value(t))
        .collect();
    let mut total: Option<Traced> = None;
    let count = if transform.name == "jacfwd" {
        in_ty.size()
    } else {
        out_ty.size()
    };
    for index in 0..count as usize {
        let (column, basis, column_dims, basis_dims) = if transform.name == "jacfwd" {
            let mut tangents = vec![];
            for (p, operand) in lifted.operands.iter().enumerate() {
                let ty = ArrayType::new(operand.ty.dtype, operand.ty.shape.clone());
                tangents.push(if p == param {
                    interp.emit.basis(span, &ty, index)
                } else {
                    zeros(interp, span, &ty)
                });
            }
            let tangent_values: Vec<_> = tangents.iter().map(|t| interp.emit.value(t)).collect();
            let mut types = lifted.leaves.clone();
            types.extend(lifted.leaves.iter().cloned());
            let result_types: Vec<_> = types.iter().map(|t| interp.emit.tensor_type(t)).collect();
            let operation = ad::jvp(
                interp.emit.context,
                location,
                &lifted.name,
                &operands,
                &tangent_values,
                &result_types,
            );
            let results = interp.emit.push_many(operation, types);
            let basis = interp.emit.basis(
                span,
                &ArrayType::new(out_ty.dtype, in_ty.shape.clone()),
                index,
            );
            (results[1].clone(), basis, &out_dims, &in_dims)
        } else {
            let cotangent = interp.emit.basis(
                span,
                &ArrayType::new(out_ty.dtype, out_ty.shape.clone()),
                index,
            );
            let mut types = lifted.leaves.clone();
            types.push(in_ty.clone());
            let result_types: Vec<_> = types.iter().map(|t| interp.emit.tensor_type(t)).collect();
            let ct_value = interp.emit.value(&cotangent);
            let operation = ad::vjp(
                interp.emit.context,
                location,
                &lifted.name,
                &operands,
                &[ct_value],
                &[param as i64],
                &result_types,
            );
            let results = interp.emit.push_many(operation, types);
            (results[1].clone(), cotangent, &in_dims, &out_dims)
        };
        let column = interp.emit.convert(span, &column, out_ty.dtype);
        let column = interp
            .emit
            .broadcast_in_dim(span, &column, column_dims, &shape);
        let basis = interp
            .emit
            .broadcast_in_dim(span, &basis, basis_dims, &shape);
        let term = interp
            .emit
            .binary(span, super::emit::Binary::Mul, &column, &basis);
        total = Some(match total {
            None => term,
            Some(acc) => interp
                .emit
                .binary(span, super::emit::Binary::Add, &acc, &term),
        });
    }
    Ok(Value::Array(
        total.unwrap_or_else(|| zeros(interp, span, &full)),
    ))
}

fn zeros(interp: &mut Interp, span: Span, ty: &ArrayType) -> Traced {
    interp
        .emit
        .constant(span, &[0.0], ArrayType::new(ty.dtype, ty.shape.clone()))
}

/// `jax.vjp(f, *primals)`: `(f(*primals), pullback)`.
pub fn vjp(interp: &mut Interp, func: &Value, primals: Vec<Value>, span: Span) -> DResult<Value> {
    check_argnums(
        "vjp",
        &(0..primals.len() as i64).collect::<Vec<_>>(),
        &primals,
        span,
    )?;
    let lifted = lift(interp, func, &primals, &[], &|_| true, true, span)?;
    let out = interp.call(func, primals, vec![], span)?;
    Ok(Value::Tuple(Rc::new(vec![
        out,
        Value::Pullback(Rc::new(Pullback { lifted })),
    ])))
}

/// Flattens `value` against the leaves of `output`, converting each to the leaf's dtype.
fn flatten_like(
    interp: &mut Interp,
    output: &Output,
    value: &Value,
    leaves: &[ArrayType],
    what: &str,
    span: Span,
) -> DResult<Vec<Traced>> {
    let mut flat = vec![];
    fn walk(
        interp: &mut Interp,
        output: &Output,
        value: &Value,
        leaves: &[ArrayType],
        flat: &mut Vec<Traced>,
        what: &str,
        span: Span,
    ) -> DResult<()> {
        match (output, value) {
            (Output::Array { index, .. }, value) => {
                let ty = &leaves[*index];
                let traced = interp.emit.to_array(span, value)?;
                if traced.ty.shape != ty.shape {
                    return Err(Diagnostic::new(
                        "ferrax::autodiff::structure",
                        span,
                        format!(
                            "the {what} has shape {} where the function's output has shape {}",
                            shape_repr(&traced.ty.shape),
                            shape_repr(&ty.shape)
                        ),
                    )
                    .label("here"));
                }
                let mut converted = interp.emit.convert(span, &traced, ty.dtype);
                converted.ty.weak = ty.weak;
                flat.push(converted);
                Ok(())
            }
            (
                Output::Tuple(outs) | Output::List(outs),
                Value::Tuple(items) | Value::List(items),
            ) if outs.len() == items.len() => {
                for (o, v) in outs.iter().zip(items.iter()) {
                    walk(interp, o, v, leaves, flat, what, span)?;
                }
                Ok(())
            }
            _ => Err(Diagnostic::new(
                "ferrax::autodiff::structure",
                span,
                format!("the {what} does not have the structure of the function's output"),
            )
            .label("here")),
        }
    }
    walk(interp, output, value, leaves, &mut flat, what, span)?;
    Ok(flat)
}

/// Calls a pullback on a cotangent: a tuple with one cotangent per primal.
pub fn call_pullback(
    interp: &mut Interp,
    pullback: &Pullback,
    args: Vec<Value>,
    span: Span,
) -> DResult<Value> {
    let lifted = &pullback.lifted;
    let [cotangent] = args.as_slice() else {
        return Err(Diagnostic::new(
            "ferrax::call::arity",
            span,
            format!(
                "the pullback takes one cotangent, {} were given",
                args.len()
            ),
        )
        .label("called here"));
    };
    let cotangents = flatten_like(
        interp,
        &lifted.output,
        cotangent,
        &lifted.leaves,
        "cotangent",
        span,
    )?;
    let argnums: Vec<i64> = (0..lifted.operands.len() as i64).collect();
    let mut types = lifted.leaves.clone();
    types.extend(lifted.operands.iter().map(|t| t.ty.clone()));
    let location = interp.emit.location(span);
    let operands: Vec<_> = lifted
        .operands
        .iter()
        .map(|t| interp.emit.value(t))
        .collect();
    let ct_values: Vec<_> = cotangents.iter().map(|t| interp.emit.value(t)).collect();
    let result_types: Vec<_> = types.iter().map(|t| interp.emit.tensor_type(t)).collect();
    let operation = ad::vjp(
        interp.emit.context,
        location,
        &lifted.name,
        &operands,
        &ct_values,
        &argnums,
        &result_types,
    );
    let results = interp.emit.push_many(operation, types);
    let cts = &results[lifted.leaves.len()..];
    let mut leaves = cts.iter().cloned();
    Ok(Value::Tuple(Rc::new(
        lifted
            .args
            .iter()
            .map(|arg| with_leaves(arg, &mut leaves))
            .collect(),
    )))
}

/// `jax.jvp(f, primals, tangents)`: `(f(*primals), tangent of the output)`.
pub fn jvp(
    interp: &mut Interp,
    func: &Value,
    primals: &Value,
    tangents: &Value,
    span: Span,
) -> DResult<Value> {
    let (Value::Tuple(primals) | Value::List(primals)) = primals else {
        return Err(Diagnostic::new(
            "ferrax::autodiff::structure",
            span,
            "jax.jvp takes the primals as a tuple",
        )
        .label("here"));
    };
    let (Value::Tuple(tangents) | Value::List(tangents)) = tangents else {
        return Err(Diagnostic::new(
            "ferrax::autodiff::structure",
            span,
            "jax.jvp takes the tangents as a tuple",
        )
        .label("here"));
    };
    if primals.len() != tangents.len() {
        return Err(Diagnostic::new(
            "ferrax::autodiff::structure",
            span,
            format!(
                "jax.jvp got {} primals and {} tangents; they must match",
                primals.len(),
                tangents.len()
            ),
        )
        .label("here"));
    }
    check_argnums(
        "jvp",
        &(0..primals.len() as i64).collect::<Vec<_>>(),
        primals,
        span,
    )?;
    let lifted = lift(interp, func, primals, &[], &|_| true, false, span)?;
    let mut tangent_values = vec![];
    for (operand, tangent) in lifted.operands.iter().zip(tangents.iter()) {
        let traced = interp.emit.to_array(span, tangent)?;
        if traced.ty.shape != operand.ty.shape {
            return Err(Diagnostic::new(
                "ferrax::autodiff::structure",
                span,
                format!(
                    "a tangent has shape {} where its primal has shape {}",
                    shape_repr(&traced.ty.shape),
                    shape_repr(&operand.ty.shape)
                ),
            )
            .label("here"));
        }
        tangent_values.push(interp.emit.convert(span, &traced, operand.ty.dtype));
    }
    // Captured values (closures) are constants of the derivative.
    for operand in &lifted.operands[tangent_values.len()..] {
        tangent_values.push(zeros(interp, span, &operand.ty));
    }
    let mut types = lifted.leaves.clone();
    types.extend(lifted.leaves.iter().cloned());
    let location = interp.emit.location(span);
    let operands: Vec<_> = lifted
        .operands
        .iter()
        .map(|t| interp.emit.value(t))
        .collect();
    let tangent_mlir: Vec<_> = tangent_values
        .iter()
        .map(|t| interp.emit.value(t))
        .collect();
    let result_types: Vec<_> = types.iter().map(|t| interp.emit.tensor_type(t)).collect();
    let operation = ad::jvp(
        interp.emit.context,
        location,
        &lifted.name,
        &operands,
        &tangent_mlir,
        &result_types,
    );
    let results = interp.emit.push_many(operation, types);
    let n = lifted.leaves.len();
    Ok(Value::Tuple(Rc::new(vec![
        rebuild(&lifted.output, &results[..n]),
        rebuild(&lifted.output, &results[n..]),
    ])))
}

/// Calls a `custom_jvp`/`custom_vjp` function: the primal, with its rules traced beside it.
pub fn call_custom(
    interp: &mut Interp,
    rule: &Rc<RefCell<CustomRule>>,
    args: Vec<Value>,
    kwargs: Vec<(String, Value)>,
    span: Span,
) -> DResult<Value> {
    let (kind, primal, rules) = {
        let rule = rule.borrow();
        (rule.kind, rule.primal.clone(), rule.rules.clone())
    };
    if rules.is_empty() || interp.custom_rules.contains(&Rc::as_ptr(rule)) {
        return interp.call(&primal, args, kwargs, span);
    }
    if !kwargs.is_empty() {
        return Err(Diagnostic::not_supported(
            span,
            "keyword arguments to a function with a custom rule",
        ));
    }
    for arg in &args {
        if !matches!(arg, Value::Array(_)) && number(arg).is_none() {
            return Err(Diagnostic::not_supported(
                span,
                format!(
                    "passing {} to a function with a custom rule",
                    arg.describe()
                ),
            ));
        }
    }
    let lifted = lift(interp, &primal, &args, &[], &|_| true, false, span)?;
    if lifted.operands.len() != lifted.param_of.iter().map(Vec::len).sum::<usize>() {
        return Err(Diagnostic::not_supported(
            span,
            "a function with a custom rule that uses an array computed outside it",
        )
        .label("called here"));
    }
    let operands: Vec<Traced> = lifted.operands.clone();
    let n_args = operands.len();
    let location = interp.emit.location(span);
    let types: Vec<ArrayType> = operands.iter().map(|t| t.ty.clone()).collect();
    let primal_names = lifted.name.clone();
    interp.custom_rules.push(Rc::as_ptr(rule));
    let (rule_names, wrong) = match kind {
        CustomKind::Jvp => {
            // The rule's function: (primals..., tangents...) -> (outputs..., output tangents...).
            let name = interp.fresh_name(&format!("{}_jvp", lifted.name));
            let mut param_types = types.clone();
            param_types.extend(types.iter().cloned());
            let params = interp.emit.begin_function(&param_types, location);
            let primals = Value::Tuple(Rc::new(
                params[..n_args].iter().cloned().map(Value::Array).collect(),
            ));
            let tangents = Value::Tuple(Rc::new(
                params[n_args..].iter().cloned().map(Value::Array).collect(),
            ));
            let result = interp
                .call(&rules[0], vec![primals, tangents], vec![], span)
                .and_then(|value| {
                    let Value::Tuple(pair) = &value else {
                        return Err(rule_structure(
                            span,
                            "a custom_jvp rule must return a pair (primal_out, tangent_out)",
                        ));
                    };
                    if pair.len() != 2 {
                        return Err(rule_structure(
                            span,
                            "a custom_jvp rule must return a pair (primal_out, tangent_out)",
                        ));
                    }
                    let mut leaves = flatten_like(
                        interp,
                        &lifted.output,
                        &pair[0],
                        &lifted.leaves,
                        "rule's primal output",
                        span,
                    )?;
                    leaves.extend(flatten_like(
                        interp,
                        &lifted.output,
                        &pair[1],
                        &lifted.leaves,
                        "rule's tangent output",
                        span,
                    )?);
                    Ok(leaves)
                });
            let leaves = result.clone().unwrap_or_default();
            let captured = interp.emit.end_function(&name, &leaves, false, location);
            (
                vec![name],
                result.err().or_else(|| captured_error(&captured, span)),
            )
        }
        CustomKind::Vjp => {
            // fwd: args -> (outputs..., residuals...); bwd: (residuals..., cotangents...) -> cotangents.
            let fwd_name = interp.fresh_name(&format!("{}_fwd", lifted.name));
            let params = interp.emit.begin_function(&types, location);
            let fwd_args: Vec<Value> = params.iter().cloned().map(Value::Array).collect();
            let fwd = interp
                .call(&rules[0], fwd_args, vec![], span)
                .and_then(|value| {
                    let Value::Tuple(pair) = &value else {
                        return Err(rule_structure(
                            span,
                            "a custom_vjp forward function must return a pair (output, residuals)",
                        ));
                    };
                    if pair.len() != 2 {
                        return Err(rule_structure(
                            span,
                            "a custom_vjp forward function must return a pair (output, residuals)",
                        ));
                    }
                    let mut leaves = flatten_like(
                        interp,
                        &lifted.output,
                        &pair[0],
                        &lifted.leaves,
                        "forward function's output",
                        span,
                    )?;
                    let residuals = numbers_to_arrays(interp, &pair[1], span)?;
                    let mut residual_leaves = vec![];
                    let residual_tree = collect_output(&residuals, &mut residual_leaves, span)?;
                    leaves.extend(residual_leaves.iter().cloned());
                    Ok((leaves, residual_tree, residual_leaves))
                });
            let fwd_leaves = fwd.as_ref().map(|(l, _, _)| l.clone()).unwrap_or_default();
            let captured = interp
                .emit
                .end_function(&fwd_name, &fwd_leaves, false, location);
            let fwd = match captured_error(&captured, span) {
                Some(error) => Err(error),
                None => fwd,
            };
            let (residual_tree, residual_leaves) = match fwd {
                Ok((_, tree, leaves)) => (tree, leaves),
                Err(error) => {
                    interp.custom_rules.pop();
                    return Err(error);
                }
            };
            let bwd_name = interp.fresh_name(&format!("{}_bwd", lifted.name));
            let mut bwd_types: Vec<ArrayType> =
                residual_leaves.iter().map(|t| t.ty.clone()).collect();
            bwd_types.extend(lifted.leaves.iter().cloned());
            let params = interp.emit.begin_function(&bwd_types, location);
            let residuals = rebuild(&residual_tree, &params[..residual_leaves.len()]);
            let cotangents = rebuild(&lifted.output, &params[residual_leaves.len()..]);
            let bwd = interp.call(&rules[1], vec![residuals, cotangents], vec![], span).and_then(|value| {
                let (Value::Tuple(items) | Value::List(items)) = &value else {
                    return Err(rule_structure(span, "a custom_vjp backward function must return a tuple with one cotangent per argument"));
                };
                if items.len() != n_args {
                    return Err(rule_structure(
                        span,
                        &format!("the custom_vjp backward function returned {} cotangents for {n_args} arguments", items.len()),
                    ));
                }
                let mut leaves = vec![];
                for (item, ty) in items.iter().zip(&types) {
                    let ct = match item {
                        Value::None => zeros(interp, span, ty),
                        other => interp.emit.to_array(span, other)?,
                    };
                    if ct.ty.shape != ty.shape {
                        return Err(rule_structure(
                            span,
                            &format!("the custom_vjp backward function returned a cotangent of shape {} for an argument of shape {}", shape_repr(&ct.ty.shape), shape_repr(&ty.shape)),
                        ));
                    }
                    leaves.push(interp.emit.convert(span, &ct, ty.dtype));
                }
                Ok(leaves)
            });
            let bwd_leaves = bwd.clone().unwrap_or_default();
            let captured = interp
                .emit
                .end_function(&bwd_name, &bwd_leaves, false, location);
            (
                vec![fwd_name, bwd_name],
                bwd.err().or_else(|| captured_error(&captured, span)),
            )
        }
    };
    interp.custom_rules.pop();
    if let Some(error) = wrong {
        return Err(error);
    }
    if interp.emit.take_escaped() {
        return Err(Diagnostic::not_supported(
            span,
            "a custom rule that uses an array computed outside it",
        )
        .label("called here"));
    }
    let values: Vec<_> = operands.iter().map(|t| interp.emit.value(t)).collect();
    let result_types: Vec<_> = lifted
        .leaves
        .iter()
        .map(|t| interp.emit.tensor_type(t))
        .collect();
    let operation = match kind {
        CustomKind::Jvp => ad::custom_jvp_call(
            interp.emit.context,
            location,
            &primal_names,
            &rule_names[0],
            &values,
            &result_types,
        ),
        CustomKind::Vjp => ad::custom_vjp_call(
            interp.emit.context,
            location,
            &primal_names,
            &rule_names[0],
            &rule_names[1],
            &values,
            &result_types,
        ),
    };
    let results = interp.emit.push_many(operation, lifted.leaves.clone());
    Ok(rebuild(&lifted.output, &results))
}

/// Custom rules are traced without the caller's arrays: one that uses them is not supported.
fn captured_error(captured: &[Traced], span: Span) -> Option<Diagnostic> {
    (!captured.is_empty()).then(|| {
        Diagnostic::not_supported(span, "a custom rule that uses an array computed outside it")
            .label("called here")
    })
}

fn rule_structure(span: Span, message: &str) -> Diagnostic {
    Diagnostic::new("ferrax::autodiff::custom_rule", span, message.to_string())
        .label("the rule is used here")
}

/// `jax.custom_jvp(f)` / `jax.custom_vjp(f)`.
pub fn custom(func: Value, kind: CustomKind, span: Span) -> DResult<Value> {
    check_callable(&func, span)?;
    Ok(Value::Custom(Rc::new(RefCell::new(CustomRule {
        kind,
        primal: func,
        rules: vec![],
    }))))
}
