//! `jax.lax.cond`, `fori_loop`, `scan` and `while_loop`.
//!
//! With static sizes, `cond` on an array predicate computes both branches and selects (so both
//! must be free of side effects, which the language guarantees), `fori_loop` with static bounds
//! and `scan` are unrolled: derivatives then follow from the ops they emit. `while_loop` runs
//! a real loop (`scf.while`); like JAX, it cannot be differentiated in reverse mode.

use super::emit::DResult;
use super::interp::Interp;
use super::value::{ArrayType, DType, Traced, Value, shape_repr};
use crate::diagnostic::Diagnostic;
use crate::syntax::span::Span;
use std::rc::Rc;

/// The most iterations `fori_loop` and `scan` unroll.
const MAX_UNROLL: i64 = 4096;

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
            let lower = static_bound(&arg(0, "lower")?, "fori_loop", span)?;
            let upper = static_bound(&arg(1, "upper")?, "fori_loop", span)?;
            let body = arg(2, "body_fun")?;
            let mut value = arg(3, "init_val")?;
            check_unroll(upper - lower, span)?;
            for i in lower..upper {
                value = interp.call(&body, vec![Value::Int(i), value], vec![], span)?;
            }
            Ok(value)
        }
        "scan" => {
            let f = arg(0, "f")?;
            let mut carry = arg(1, "init")?;
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
            check_unroll(length, span)?;
            let mut ys = vec![];
            for i in 0..length {
                let x = slice_leading(interp, &xs, i, span)?;
                let result = interp.call(&f, vec![carry, x], vec![], span)?;
                let (Value::Tuple(pair) | Value::List(pair)) = &result else {
                    return Err(Diagnostic::new(
                        "ferrax::scan",
                        span,
                        "the scanned function must return a pair (carry, y)",
                    )
                    .label("here"));
                };
                if pair.len() != 2 {
                    return Err(Diagnostic::new(
                        "ferrax::scan",
                        span,
                        "the scanned function must return a pair (carry, y)",
                    )
                    .label("here"));
                }
                carry = pair[0].clone();
                ys.push(pair[1].clone());
            }
            let ys = stack_trees(interp, &ys, span)?;
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

fn static_bound(value: &Value, name: &str, span: Span) -> DResult<i64> {
    match value {
        Value::Int(i) => Ok(*i),
        Value::Array(_) => Err(Diagnostic::not_supported(
            span,
            format!("lax.{name} with bounds known only at run time"),
        )
        .help("use static bounds, or jax.lax.while_loop")),
        other => Err(Diagnostic::new(
            "ferrax::type::int",
            span,
            format!("lax.{name} bounds must be ints, found {}", other.describe()),
        )),
    }
}

fn check_unroll(count: i64, span: Span) -> DResult<()> {
    if count > MAX_UNROLL {
        return Err(Diagnostic::not_supported(
            span,
            format!("a loop of {count} iterations (loops up to {MAX_UNROLL} are unrolled)"),
        ));
    }
    Ok(())
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
    let yes = interp.call(on_true, operands.clone(), vec![], span)?;
    let no = interp.call(on_false, operands, vec![], span)?;
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
    select_trees(interp, &pred, &yes, &no, span)
}

fn select_trees(
    interp: &mut Interp,
    pred: &Traced,
    yes: &Value,
    no: &Value,
    span: Span,
) -> DResult<Value> {
    match (yes, no) {
        (Value::Tuple(a), Value::Tuple(b)) | (Value::List(a), Value::List(b))
            if a.len() == b.len() =>
        {
            let items = a
                .iter()
                .zip(b.iter())
                .map(|(x, y)| select_trees(interp, pred, x, y, span))
                .collect::<DResult<Vec<_>>>()?;
            Ok(if matches!(yes, Value::Tuple(_)) {
                Value::Tuple(Rc::new(items))
            } else {
                Value::List(Rc::new(items))
            })
        }
        (Value::Tuple(_) | Value::List(_), _) | (_, Value::Tuple(_) | Value::List(_)) => {
            Err(Diagnostic::new(
                "ferrax::cond",
                span,
                "the branches of lax.cond must return the same structure",
            )
            .label("here"))
        }
        _ => {
            let a = interp.emit.to_array(span, yes)?;
            let b = interp.emit.to_array(span, no)?;
            if a.ty.shape != b.ty.shape || a.ty.dtype != b.ty.dtype {
                return Err(Diagnostic::new(
                    "ferrax::cond",
                    span,
                    format!(
                        "the branches of lax.cond must return the same types, found {}{} and {}{}",
                        a.ty.dtype.name(),
                        shape_repr(&a.ty.shape),
                        b.ty.dtype.name(),
                        shape_repr(&b.ty.shape)
                    ),
                )
                .label("here"));
            }
            let mask = interp.emit.broadcast_in_dim(span, pred, &[], &a.ty.shape);
            Ok(Value::Array(interp.emit.select(span, &mask, &a, &b)))
        }
    }
}

fn leading_length(xs: &Value) -> Option<i64> {
    match xs {
        Value::Array(t) => t.ty.shape.first().copied(),
        Value::Tuple(items) | Value::List(items) => items.iter().find_map(leading_length),
        _ => None,
    }
}

fn slice_leading(interp: &mut Interp, xs: &Value, i: i64, span: Span) -> DResult<Value> {
    Ok(match xs {
        Value::Array(t) => super::builtins::index_array(interp, span, t, &Value::Int(i))?,
        Value::Tuple(items) => Value::Tuple(Rc::new(
            items
                .iter()
                .map(|v| slice_leading(interp, v, i, span))
                .collect::<DResult<_>>()?,
        )),
        Value::List(items) => Value::List(Rc::new(
            items
                .iter()
                .map(|v| slice_leading(interp, v, i, span))
                .collect::<DResult<_>>()?,
        )),
        other => other.clone(),
    })
}

/// Stacks a list of equally structured pytrees along a new leading axis.
fn stack_trees(interp: &mut Interp, trees: &[Value], span: Span) -> DResult<Value> {
    let Some(first) = trees.first() else {
        return Ok(Value::None);
    };
    match first {
        Value::Tuple(items) | Value::List(items) => {
            let mut stacked = vec![];
            for k in 0..items.len() {
                let column: Vec<Value> = trees
                    .iter()
                    .map(|t| match t {
                        Value::Tuple(xs) | Value::List(xs) if xs.len() == items.len() => {
                            Ok(xs[k].clone())
                        }
                        _ => Err(Diagnostic::new(
                            "ferrax::scan",
                            span,
                            "the scanned function's outputs must keep one structure",
                        )),
                    })
                    .collect::<DResult<_>>()?;
                stacked.push(stack_trees(interp, &column, span)?);
            }
            Ok(if matches!(first, Value::Tuple(_)) {
                Value::Tuple(Rc::new(stacked))
            } else {
                Value::List(Rc::new(stacked))
            })
        }
        Value::None => Ok(Value::None),
        _ => {
            let arrays: Vec<Traced> = trees
                .iter()
                .map(|t| interp.emit.to_array(span, t))
                .collect::<DResult<_>>()?;
            let mut shape = vec![arrays.len() as i64];
            shape.extend(arrays[0].ty.shape.iter().copied());
            let items: Vec<Value> = arrays.into_iter().map(Value::Array).collect();
            let stacked = interp.emit.stack_literal(span, &items)?;
            Ok(Value::Array(interp.emit.reshape(span, &stacked, &shape)))
        }
    }
}
