//! `jax.lax.cond`, `fori_loop`, `scan` and `while_loop` as `scf` region ops on tensors.
//!
//! `fori_loop` (static bounds) and `scan` become `scf.for %k = 0 to n`, whose carries are the
//! leaves of the loop's pytree; `scan` slices `xs` with `fx.dynamic_slice` and writes each `y`
//! into an extra carry with `fx.dynamic_update_slice`. `cond` on an array predicate becomes
//! `scf.if` (a static predicate picks its branch). `while_loop` becomes `scf.while`; like JAX,
//! it cannot be differentiated in reverse mode. `fx-autodiff` differentiates the loops.

use super::emit::{Binary, DResult};
use super::interp::{Interp, flatten_carry, flatten_tree, rebuild_carry};
use super::value::{ArrayType, DType, Traced, Value, shape_repr};
use crate::diagnostic::Diagnostic;
use crate::syntax::span::Span;
use std::rc::Rc;

pub fn call(
    interp: &mut Interp,
    name: &str,
    args: Vec<Value>,
    kwargs: Vec<(String, Value)>,
    span: Span,
) -> DResult<Value> {
    let arg = |i: usize, key: &str| -> DResult<Value> {
        kwargs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .or_else(|| args.get(i).cloned())
            .ok_or_else(|| {
                Diagnostic::new(
                    "ferrax::call::arity",
                    span,
                    format!("lax.{name}() missing required argument '{key}'"),
                )
                .label("called here")
            })
    };
    match name {
        "cond" => {
            let pred = arg(0, "pred")?;
            let (on_true, on_false) = (arg(1, "true_fun")?, arg(2, "false_fun")?);
            let operands: Vec<Value> = args.iter().skip(3).cloned().collect();
            cond(interp, &pred, &on_true, &on_false, operands, span)
        }
        "fori_loop" => {
            let (lower, upper) = (arg(0, "lower")?, arg(1, "upper")?);
            let body = arg(2, "body_fun")?;
            let init = arg(3, "init_val")?;
            if matches!(lower, Value::Array(_)) || matches!(upper, Value::Array(_)) {
                return dynamic_fori_loop(interp, (&lower, &upper), &body, &init, span);
            }
            let lower = static_bound(&lower, "fori_loop", span)?;
            let upper = static_bound(&upper, "fori_loop", span)?;
            let (carry, _) = for_loop(
                interp,
                ((upper - lower).max(0), Order::Forward),
                &init,
                span,
                &mut |interp, k, carry| {
                    let i = if lower == 0 {
                        k
                    } else {
                        let offset = interp.emit.constant(span, &[lower as f64], k.ty.clone());
                        interp.emit.binary(span, Binary::Add, &k, &offset)
                    };
                    let next = interp.call(&body, vec![Value::Array(i), carry], vec![], span)?;
                    Ok((next, Value::None))
                },
            )?;
            Ok(carry)
        }
        "scan" => {
            let f = arg(0, "f")?;
            let init = arg(1, "init")?;
            let xs = kwargs
                .iter()
                .find(|(k, _)| k == "xs")
                .map(|(_, v)| v.clone())
                .or_else(|| args.get(2).cloned())
                .unwrap_or(Value::None);
            let length = match kwargs
                .iter()
                .find(|(k, _)| k == "length")
                .map(|(_, v)| v.clone())
                .or_else(|| args.get(3).cloned())
            {
                Some(Value::Int(n)) => Some(n),
                Some(Value::None) | None => None,
                Some(other) => {
                    return Err(Diagnostic::new(
                        "ferrax::scan",
                        span,
                        format!(
                            "scan length must be a static int, found {}",
                            other.describe()
                        ),
                    ));
                }
            };
            let length = match (length, leading_length(&xs)) {
                (Some(n), Some(m)) if n != m => {
                    return Err(Diagnostic::new(
                        "ferrax::scan",
                        span,
                        format!("scan got length={n} but xs has leading size {m}"),
                    ));
                }
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => {
                    return Err(Diagnostic::new(
                        "ferrax::scan",
                        span,
                        "scan needs xs or a static length",
                    )
                    .label("here"));
                }
            };
            let reverse = match kwargs.iter().find(|(k, _)| k == "reverse") {
                Some((_, value)) => interp.truthy(value, span)?,
                None => false,
            };
            let order = if reverse {
                Order::Backward
            } else {
                Order::Forward
            };
            let (carry, ys) = for_loop(
                interp,
                (length, order),
                &init,
                span,
                &mut |interp, index, carry| {
                    let x = slice_tree(interp, &xs, &index, span)?;
                    let result = interp.call(&f, vec![carry, x], vec![], span)?;
                    match &result {
                        Value::Tuple(pair) | Value::List(pair) if pair.len() == 2 => {
                            Ok((pair[0].clone(), pair[1].clone()))
                        }
                        _ => Err(Diagnostic::new(
                            "ferrax::scan",
                            span,
                            "the scanned function must return a pair (carry, y)",
                        )
                        .label("here")),
                    }
                },
            )?;
            Ok(Value::Tuple(Rc::new(vec![carry, ys])))
        }
        _ => {
            let (cond_fun, body_fun, init) = (
                arg(0, "cond_fun")?,
                arg(1, "body_fun")?,
                arg(2, "init_val")?,
            );
            interp.while_loop(&cond_fun, &body_fun, init, span)
        }
    }
}

/// `fori_loop` with a bound known only at run time: `scf.for` from `lower` to `upper`. As
/// in JAX (which makes it a `while_loop`), it differentiates in forward mode only.
fn dynamic_fori_loop(
    interp: &mut Interp,
    (lower, upper): (&Value, &Value),
    body: &Value,
    init: &Value,
    span: Span,
) -> DResult<Value> {
    if interp.reverse_depth > 0 {
        return Err(Diagnostic::new(
            "ferrax::autodiff::while_loop",
            span,
            "Reverse-mode differentiation does not work for lax.while_loop or lax.fori_loop with dynamic start/stop values.",
        )
        .label("inside a function differentiated in reverse mode")
        .help("give fori_loop static bounds, or use lax.scan; forward mode (jax.jvp, jax.jacfwd) works"));
    }
    let location = interp.emit.location(span);
    let mut bounds = vec![];
    for bound in [lower, upper] {
        let traced = interp.emit.to_array(span, bound)?;
        if !traced.ty.shape.is_empty() || !traced.ty.dtype.is_int() {
            return Err(Diagnostic::new(
                "ferrax::type::int",
                span,
                format!(
                    "lax.fori_loop bounds must be integer scalars, found {}{}",
                    traced.ty.dtype.name(),
                    shape_repr(&traced.ty.shape)
                ),
            ));
        }
        bounds.push(interp.emit.array_to_index(span, &traced, location));
    }
    let (carry, _) = for_loop_between(
        interp,
        (bounds[0], bounds[1]),
        init,
        span,
        &mut |interp, i, carry| {
            let next = interp.call(body, vec![Value::Array(i), carry], vec![], span)?;
            Ok((next, Value::None))
        },
    )?;
    Ok(carry)
}

fn static_bound(value: &Value, name: &str, span: Span) -> DResult<i64> {
    match value {
        Value::Int(i) => Ok(*i),
        other => Err(Diagnostic::new(
            "ferrax::type::int",
            span,
            format!("lax.{name} bounds must be ints, found {}", other.describe()),
        )),
    }
}

/// `lax.cond`: a static predicate picks a branch; an array predicate computes both and selects.
fn cond(
    interp: &mut Interp,
    pred: &Value,
    on_true: &Value,
    on_false: &Value,
    operands: Vec<Value>,
    span: Span,
) -> DResult<Value> {
    let pred = match pred {
        Value::Array(traced) => traced.clone(),
        other => {
            let branch = if interp.truthy(other, span)? {
                on_true
            } else {
                on_false
            };
            return interp.call(branch, operands, vec![], span);
        }
    };
    if !pred.ty.shape.is_empty() {
        return Err(Diagnostic::new(
            "ferrax::cond",
            span,
            format!(
                "lax.cond's predicate must be a scalar, found shape {}",
                shape_repr(&pred.ty.shape)
            ),
        )
        .label("here"));
    }
    let pred = if pred.ty.dtype == DType::Bool {
        pred
    } else {
        let zero = interp
            .emit
            .constant(span, &[0.0], ArrayType::new(pred.ty.dtype, vec![]));
        interp
            .emit
            .compare(span, ferrax_dialects::fx::Predicate::Ne, &pred, &zero)
    };
    let location = interp.emit.location(span);
    let flag = interp.emit.extract_scalar(&pred, location);
    interp.emit.begin_region(&[], location);
    let yes = match branch(interp, on_true, &operands, span) {
        Ok(yes) => yes,
        Err(error) => {
            interp.emit.end_region("scf.yield", None, &[], location);
            return Err(error);
        }
    };
    let on_true_region = interp.emit.suspend_region();
    interp.emit.begin_region(&[], location);
    let outcome = branch(interp, on_false, &operands, span).and_then(|no| {
        let types = branch_types(&yes, &no, span)?;
        Ok((no, types))
    });
    let (no, types) = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            interp.emit.end_region("scf.yield", None, &[], location);
            interp.emit.resume_region(on_true_region);
            interp.emit.end_region("scf.yield", None, &[], location);
            return Err(error);
        }
    };
    let no_leaves = converted(interp, &no.1, &types, span);
    let on_false_block = interp
        .emit
        .end_region("scf.yield", None, &no_leaves, location);
    interp.emit.resume_region(on_true_region);
    let yes_leaves = converted(interp, &yes.1, &types, span);
    let on_true_block = interp
        .emit
        .end_region("scf.yield", None, &yes_leaves, location);
    let results = interp.emit.push_with_regions(
        "scf.if",
        &[flag],
        &[],
        vec![on_true_block, on_false_block],
        types,
        location,
    );
    Ok(rebuild_carry(&yes.0, &mut results.into_iter()))
}

/// Calls one branch of `cond`; returns its result's structure and array leaves.
fn branch(
    interp: &mut Interp,
    function: &Value,
    operands: &[Value],
    span: Span,
) -> DResult<(Value, Vec<Traced>)> {
    let result = interp.call(function, operands.to_vec(), vec![], span)?;
    let mut leaves = vec![];
    let template = flatten_carry(interp, &result, &mut leaves, span)?;
    Ok((template, leaves))
}

/// The result types of `cond`: both branches must return one structure of arrays of the
/// same shapes; a weakly typed leaf takes the other branch's dtype.
fn branch_types(
    yes: &(Value, Vec<Traced>),
    no: &(Value, Vec<Traced>),
    span: Span,
) -> DResult<Vec<ArrayType>> {
    if !same_structure(&yes.0, &no.0) {
        return Err(Diagnostic::new(
            "ferrax::cond",
            span,
            "the branches of lax.cond must return the same structure",
        )
        .label("here"));
    }
    yes.1
        .iter()
        .zip(&no.1)
        .map(|(a, b)| {
            let (a, b) = (&a.ty, &b.ty);
            let dtype = match (a.dtype == b.dtype, a.weak, b.weak) {
                _ if a.shape != b.shape => None,
                (true, _, _) | (false, false, true) => Some(a.dtype),
                (false, true, false) => Some(b.dtype),
                _ => None,
            };
            let Some(dtype) = dtype else {
                return Err(Diagnostic::new(
                    "ferrax::cond",
                    span,
                    format!(
                        "the branches of lax.cond must return the same types, found {}{} and {}{}",
                        a.dtype.name(),
                        shape_repr(&a.shape),
                        b.dtype.name(),
                        shape_repr(&b.shape)
                    ),
                )
                .label("here"));
            };
            Ok(ArrayType {
                dtype,
                shape: a.shape.clone(),
                weak: a.weak && b.weak,
            })
        })
        .collect()
}

fn same_structure(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Tuple(x), Value::Tuple(y)) | (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(x, y)| same_structure(x, y))
        }
        (Value::Tuple(_) | Value::List(_), _) | (_, Value::Tuple(_) | Value::List(_)) => false,
        _ => true,
    }
}

/// `leaves` converted to the dtypes of `types` (shapes already agree).
fn converted(
    interp: &mut Interp,
    leaves: &[Traced],
    types: &[ArrayType],
    span: Span,
) -> Vec<Traced> {
    leaves
        .iter()
        .zip(types)
        .map(|(leaf, ty)| {
            let mut leaf = interp.emit.convert(span, leaf, ty.dtype);
            leaf.ty.weak = ty.weak;
            leaf
        })
        .collect()
}

/// The body of a counted loop: from the iteration's index (a rank-0 int32 array) and the
/// carry, the next carry and this iteration's output (`Value::None` for none).
pub(super) type LoopBody<'b> =
    dyn FnMut(&mut Interp, Traced, Value) -> DResult<(Value, Value)> + 'b;

/// Whether a loop of `n` iterations visits the indices `0..n` or `n-1` down to `0`.
#[derive(Clone, Copy)]
pub(super) enum Order {
    Forward,
    Backward,
}

/// Emits `scf.for %k = 0 to count` over the carry `init`. Returns the final carry and the
/// outputs of the iterations stacked along a new leading axis, each at its index.
pub(super) fn for_loop(
    interp: &mut Interp,
    (count, order): (i64, Order),
    init: &Value,
    span: Span,
    body: &mut LoopBody,
) -> DResult<(Value, Value)> {
    counted_loop(interp, (count, order), None, init, span, body)
}

/// A loop from the run-time `index` values `lower` to `upper`; the body gets the index (not
/// an iteration number from 0) and has no outputs.
fn for_loop_between(
    interp: &mut Interp,
    (lower, upper): (mlir_sys::MlirValue, mlir_sys::MlirValue),
    init: &Value,
    span: Span,
    body: &mut LoopBody,
) -> DResult<(Value, Value)> {
    counted_loop(
        interp,
        (0, Order::Forward),
        Some((lower, upper)),
        init,
        span,
        body,
    )
}

fn counted_loop(
    interp: &mut Interp,
    (count, order): (i64, Order),
    range: Option<(mlir_sys::MlirValue, mlir_sys::MlirValue)>,
    init: &Value,
    span: Span,
    body: &mut LoopBody,
) -> DResult<(Value, Value)> {
    let mut leaves = vec![];
    let template = flatten_carry(interp, init, &mut leaves, span)?;
    let types: Vec<ArrayType> = leaves
        .iter()
        .map(|t| ArrayType {
            weak: false,
            ..t.ty.clone()
        })
        .collect();
    let location = interp.emit.location(span);
    let bounds = match range {
        Some((lower, upper)) => [lower, upper, interp.emit.index_constant(1, location)],
        None => [
            interp.emit.index_constant(0, location),
            interp.emit.index_constant(count, location),
            interp.emit.index_constant(1, location),
        ],
    };
    let (iv, arguments) = interp.emit.begin_loop_region(&types, location);
    let traced = loop_body(
        interp,
        iv,
        (&template, &arguments),
        &types,
        (count, order),
        span,
        body,
    );
    let (next, ys_template, ys_types) = match traced {
        Ok(traced) => traced,
        Err(error) => {
            interp.emit.end_region("scf.yield", None, &[], location);
            return Err(error);
        }
    };
    let block = interp.emit.end_region("scf.yield", None, &next, location);
    let mut inits = leaves;
    for ty in &ys_types {
        inits.push(interp.emit.constant(span, &[0.0], ty.clone()));
    }
    let results = interp.emit.push_with_regions(
        "scf.for",
        &bounds,
        &inits,
        vec![block],
        [types.clone(), ys_types].concat(),
        location,
    );
    let mut results = results.into_iter();
    let carry = rebuild_carry(&template, &mut results.by_ref().take(types.len()));
    let ys = rebuild_carry(&ys_template, &mut results);
    Ok((carry, ys))
}

/// Traces one iteration into the open loop body, whose arguments are `carry` (the carry's
/// structure and its leaves). Returns the values it yields (the next carry, then the
/// stacked outputs, whose accumulators it adds as block arguments), the outputs' structure
/// and the accumulators' types.
fn loop_body(
    interp: &mut Interp,
    iv: mlir_sys::MlirValue,
    carry: (&Value, &[Traced]),
    types: &[ArrayType],
    (count, order): (i64, Order),
    span: Span,
    body: &mut LoopBody,
) -> DResult<(Vec<Traced>, Value, Vec<ArrayType>)> {
    let (template, arguments) = carry;
    let location = interp.emit.location(span);
    let k = interp.emit.index_to_array(iv, location);
    let k = match order {
        Order::Forward => k,
        Order::Backward => {
            let last = interp
                .emit
                .constant(span, &[(count - 1) as f64], k.ty.clone());
            interp.emit.binary(span, Binary::Sub, &last, &k)
        }
    };
    let carry = rebuild_carry(template, &mut arguments.iter().cloned());
    let (next, y) = body(interp, k.clone(), carry)?;
    let mut next_leaves = vec![];
    let next_template = flatten_carry(interp, &next, &mut next_leaves, span)?;
    if !same_structure(template, &next_template)
        || next_leaves.len() != types.len()
        || next_leaves
            .iter()
            .zip(types)
            .any(|(n, t)| n.ty.shape != t.shape)
    {
        return Err(Diagnostic::new(
            "ferrax::loop::carry",
            span,
            "the loop body must return a carry of the same structure and shapes as its input",
        )
        .label("here"));
    }
    let mut yielded: Vec<Traced> = next_leaves
        .iter()
        .zip(types)
        .map(|(n, t)| {
            let mut n = interp.emit.convert(span, n, t.dtype);
            n.ty.weak = false;
            n
        })
        .collect();
    let mut y_leaves = vec![];
    let ys_template = flatten_tree(interp, &y, &mut y_leaves, true, span)?;
    let mut ys_types = vec![];
    for leaf in y_leaves {
        let mut shape = vec![count];
        shape.extend(&leaf.ty.shape);
        let ty = ArrayType {
            dtype: leaf.ty.dtype,
            shape,
            weak: false,
        };
        let accumulator = interp.emit.add_region_argument(&ty, location);
        let mut row_shape = vec![1];
        row_shape.extend(&leaf.ty.shape);
        let row = interp.emit.reshape(span, &leaf, &row_shape);
        let mut indices = vec![k.clone()];
        for _ in &leaf.ty.shape {
            indices.push(interp.emit.constant(span, &[0.0], k.ty.clone()));
        }
        yielded.push(
            interp
                .emit
                .dynamic_update_slice(span, &accumulator, &row, &indices),
        );
        ys_types.push(ty);
    }
    Ok((yielded, ys_template, ys_types))
}

fn leading_length(xs: &Value) -> Option<i64> {
    match xs {
        Value::Array(t) => t.ty.shape.first().copied(),
        Value::Tuple(items) | Value::List(items) => items.iter().find_map(leading_length),
        _ => None,
    }
}

/// Row `index` (a rank-0 int32 array) of every array leaf of `xs`.
fn slice_tree(interp: &mut Interp, xs: &Value, index: &Traced, span: Span) -> DResult<Value> {
    Ok(match xs {
        Value::Array(t) if !t.ty.shape.is_empty() => {
            let mut indices = vec![index.clone()];
            let mut sizes = vec![1];
            for &d in &t.ty.shape[1..] {
                indices.push(interp.emit.constant(span, &[0.0], index.ty.clone()));
                sizes.push(d);
            }
            let row = interp.emit.dynamic_slice(span, t, &indices, &sizes);
            Value::Array(interp.emit.reshape(span, &row, &t.ty.shape[1..]))
        }
        Value::Tuple(items) => Value::Tuple(Rc::new(
            items
                .iter()
                .map(|v| slice_tree(interp, v, index, span))
                .collect::<DResult<_>>()?,
        )),
        Value::List(items) => Value::List(Rc::new(
            items
                .iter()
                .map(|v| slice_tree(interp, v, index, span))
                .collect::<DResult<_>>()?,
        )),
        other => other.clone(),
    })
}
