//! `eager`: runs a function of the `fx` stage op by op on arrays, compiling nothing: the
//! "without jit" baseline of `ferrax bench --eager`.
//!
//! Every element is held as an `f64` and rounded to its dtype after each op (float32 through
//! `f32`, integers wrapping at their width), so float32 results are those of float32 ops
//! evaluated in float64 and rounded once; int64 values beyond 2^53 lose precision.
//! Control flow (`scf.for`, `scf.if`, `scf.while`) runs its regions.

use crate::passes::ir::region_block;
use crate::specialise::DType;
use melior::ir::{
    BlockLike, Module, OperationRef, TypeLike, ValueLike,
    attribute::{DenseI64ArrayAttribute, IntegerAttribute, StringAttribute},
    operation::OperationLike,
    r#type::{DimSize, IntegerType, RankedTensorType, ShapedTypeLike},
};
use mlir_sys::{MlirBlock, MlirOperation, MlirValue};
use std::collections::HashMap;
use std::rc::Rc;

/// An array during evaluation (an `index` is a rank-0 int64).
#[derive(Clone, Debug)]
struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: Vec<f64>,
}

type EResult<T> = Result<T, String>;

unsafe extern "C" {
    fn erf(x: f64) -> f64;
}

/// Runs `function` of `module` (at the `fx` stage) on `inputs`; returns its results.
pub fn run(
    module: &Module,
    function: &str,
    inputs: &[ferrax_runtime::Array],
) -> EResult<Vec<ferrax_runtime::Array>> {
    let mut found = None;
    let body = module.body();
    let mut operation = body.first_operation();
    while let Some(op) = operation {
        let name = op
            .attribute("sym_name")
            .ok()
            .and_then(|a| StringAttribute::try_from(a).ok())
            .map(|a| a.value().to_string());
        if name.as_deref() == Some(function) {
            found = Some(op.to_raw());
        }
        operation = op.next_in_block();
    }
    let function = found.ok_or_else(|| format!("no function `{function}`"))?;
    let entry =
        unsafe { mlir_sys::mlirRegionGetFirstBlock(mlir_sys::mlirOperationGetRegion(function, 0)) };
    let arguments: Vec<Rc<Tensor>> = inputs
        .iter()
        .map(|a| from_array(a).map(Rc::new))
        .collect::<EResult<_>>()?;
    let mut values = HashMap::new();
    let results = run_block(entry, &arguments, &mut values)?;
    Ok(results.iter().map(|t| to_array(t)).collect())
}

fn from_array(array: &ferrax_runtime::Array) -> EResult<Tensor> {
    Ok(Tensor {
        dtype: array.dtype,
        shape: array.shape.clone(),
        data: (0..array.len()).map(|i| array.get(i)).collect(),
    })
}

fn to_array(tensor: &Tensor) -> ferrax_runtime::Array {
    ferrax_runtime::Array::from_f64(tensor.dtype, tensor.shape.clone(), &tensor.data)
}

fn key(value: MlirValue) -> usize {
    value.ptr as usize
}

/// Runs the ops of `block` with its arguments bound to `arguments`; returns the operands of
/// its terminator.
fn run_block(
    block: MlirBlock,
    arguments: &[Rc<Tensor>],
    values: &mut HashMap<usize, Rc<Tensor>>,
) -> EResult<Vec<Rc<Tensor>>> {
    for (i, argument) in arguments.iter().enumerate() {
        let value = unsafe { mlir_sys::mlirBlockGetArgument(block, i as isize) };
        values.insert(key(value), argument.clone());
    }
    let mut operation = unsafe { mlir_sys::mlirBlockGetFirstOperation(block) };
    while !operation.ptr.is_null() {
        let op = unsafe { OperationRef::from_raw(operation) };
        let name = op.name().as_string_ref().as_str().unwrap_or("").to_string();
        let operands: Vec<Rc<Tensor>> = op
            .operands()
            .map(|v| {
                values
                    .get(&key(v.to_raw()))
                    .cloned()
                    .ok_or_else(|| format!("`{name}` reads a value not computed"))
            })
            .collect::<EResult<_>>()?;
        if matches!(name.as_str(), "func.return" | "scf.yield" | "scf.condition") {
            return Ok(operands);
        }
        let results = evaluate(operation, &name, &operands, values)?;
        for (result, tensor) in op.results().zip(results) {
            values.insert(key(result.to_raw()), Rc::new(tensor));
        }
        operation = unsafe { mlir_sys::mlirOperationGetNextInBlock(operation) };
    }
    Err(String::from("a block without a terminator"))
}

/// The results of one op.
fn evaluate(
    operation: MlirOperation,
    name: &str,
    args: &[Rc<Tensor>],
    values: &mut HashMap<usize, Rc<Tensor>>,
) -> EResult<Vec<Tensor>> {
    let op = unsafe { OperationRef::from_raw(operation) };
    let result_type = op.result(0).map(|r| r.r#type()).ok();
    let (dtype, shape) = match result_type {
        Some(ty) => type_of(ty)?,
        None => (DType::I64, vec![]),
    };
    let ints = |name: &str| -> EResult<Vec<i64>> {
        let attribute = op.attribute(name).map_err(|e| e.to_string())?;
        let array = DenseI64ArrayAttribute::try_from(attribute).map_err(|e| e.to_string())?;
        (0..array.len())
            .map(|i| array.element(i).map_err(|e| e.to_string()))
            .collect()
    };
    let scalar = |tensor: &Rc<Tensor>| tensor.data.first().copied().unwrap_or(0.0);
    let one = |data: Vec<f64>| -> EResult<Vec<Tensor>> {
        Ok(vec![Tensor {
            dtype,
            shape: shape.clone(),
            data: data.iter().map(|v| round(*v, dtype)).collect(),
        }])
    };
    let mnemonic = name.trim_start_matches("fx.");
    match name {
        "fx.constant" => one(constant(op)?),
        "arith.constant" => {
            let attribute = op.attribute("value").map_err(|e| e.to_string())?;
            let value = IntegerAttribute::try_from(attribute)
                .map_err(|_| String::from("a non-integer arith.constant"))?
                .value();
            Ok(vec![index(value as f64)])
        }
        "arith.index_cast" | "tensor.extract" => Ok(vec![index(scalar(&args[0]))]),
        "arith.addi" => Ok(vec![index(scalar(&args[0]) + scalar(&args[1]))]),
        "arith.subi" => Ok(vec![index(scalar(&args[0]) - scalar(&args[1]))]),
        "arith.muli" => Ok(vec![index(scalar(&args[0]) * scalar(&args[1]))]),
        "tensor.from_elements" => one(vec![scalar(&args[0])]),
        "fx.add" | "fx.sub" | "fx.mul" | "fx.div" | "fx.rem" | "fx.pow" | "fx.max" | "fx.min"
        | "fx.and" | "fx.or" | "fx.atan2" => {
            let float = args[0].dtype.is_float();
            let f = |a: f64, b: f64| -> f64 {
                match mnemonic {
                    "add" => a + b,
                    "sub" => a - b,
                    "mul" => a * b,
                    "div" if float => a / b,
                    "div" => {
                        if b == 0.0 {
                            0.0
                        } else {
                            (a / b).trunc()
                        }
                    }
                    "rem" if float => a % b,
                    "rem" => {
                        if b == 0.0 {
                            0.0
                        } else {
                            a % b
                        }
                    }
                    "pow" => a.powf(b),
                    "max" if a.is_nan() || b.is_nan() => f64::NAN,
                    "max" => a.max(b),
                    "min" if a.is_nan() || b.is_nan() => f64::NAN,
                    "min" => a.min(b),
                    "and" => ((a as i64) & (b as i64)) as f64,
                    "or" => ((a as i64) | (b as i64)) as f64,
                    _ => a.atan2(b),
                }
            };
            one(args[0]
                .data
                .iter()
                .zip(&args[1].data)
                .map(|(a, b)| f(*a, *b))
                .collect())
        }
        "fx.neg" | "fx.exp" | "fx.log" | "fx.log1p" | "fx.expm1" | "fx.sin" | "fx.cos"
        | "fx.tanh" | "fx.sqrt" | "fx.abs" | "fx.sign" | "fx.floor" | "fx.not" | "fx.round"
        | "fx.asin" | "fx.acos" | "fx.atan" | "fx.erf" | "fx.stop_gradient" => {
            let is_bool = args[0].dtype == DType::Bool;
            let f = |x: f64| -> f64 {
                match mnemonic {
                    "neg" => -x,
                    "exp" => x.exp(),
                    "log" => x.ln(),
                    "log1p" => x.ln_1p(),
                    "expm1" => x.exp_m1(),
                    "sin" => x.sin(),
                    "cos" => x.cos(),
                    "tanh" => x.tanh(),
                    "sqrt" => x.sqrt(),
                    "abs" => x.abs(),
                    "sign" if x > 0.0 => 1.0,
                    "sign" if x < 0.0 => -1.0,
                    "sign" => x,
                    "floor" => x.floor(),
                    "not" if is_bool => f64::from(u8::from(x == 0.0)),
                    "not" => !(x as i64) as f64,
                    "round" => x.round_ties_even(),
                    "asin" => x.asin(),
                    "acos" => x.acos(),
                    "atan" => x.atan(),
                    // Safety: libm's erf.
                    "erf" => unsafe { erf(x) },
                    _ => x,
                }
            };
            one(args[0].data.iter().map(|x| f(*x)).collect())
        }
        "fx.integer_pow" => {
            let attribute = op.attribute("exponent").map_err(|e| e.to_string())?;
            let exponent = IntegerAttribute::try_from(attribute)
                .map_err(|e| e.to_string())?
                .value();
            one(args[0]
                .data
                .iter()
                .map(|x| x.powi(exponent as i32))
                .collect())
        }
        "fx.compare" => {
            let attribute = op.attribute("predicate").map_err(|e| e.to_string())?;
            let predicate = StringAttribute::try_from(attribute)
                .map_err(|e| e.to_string())?
                .value()
                .to_string();
            one(args[0]
                .data
                .iter()
                .zip(&args[1].data)
                .map(|(a, b)| {
                    let holds = match predicate.as_str() {
                        "eq" => a == b,
                        "ne" => a != b,
                        "lt" => a < b,
                        "le" => a <= b,
                        "gt" => a > b,
                        _ => a >= b,
                    };
                    f64::from(u8::from(holds))
                })
                .collect())
        }
        "fx.select" => one(args[0]
            .data
            .iter()
            .zip(args[1].data.iter().zip(&args[2].data))
            .map(|(p, (a, b))| if *p != 0.0 { *a } else { *b })
            .collect()),
        "fx.convert" => one(args[0]
            .data
            .iter()
            .map(|x| {
                if dtype.is_float() || !x.is_finite() {
                    *x
                } else {
                    x.trunc()
                }
            })
            .collect()),
        "fx.reshape" => one(args[0].data.clone()),
        "fx.broadcast_in_dim" => {
            let dims = ints("broadcast_dimensions")?;
            let input = &args[0];
            one(map_indices(&shape, |index| {
                let source: Vec<usize> = dims
                    .iter()
                    .enumerate()
                    .map(|(k, d)| {
                        if input.shape[k] == 1 {
                            0
                        } else {
                            index[*d as usize]
                        }
                    })
                    .collect();
                input.data[flat(&input.shape, &source)]
            }))
        }
        "fx.transpose" => {
            let permutation = ints("permutation")?;
            let input = &args[0];
            one(map_indices(&shape, |index| {
                let mut source = vec![0; input.shape.len()];
                for (i, p) in permutation.iter().enumerate() {
                    source[*p as usize] = index[i];
                }
                input.data[flat(&input.shape, &source)]
            }))
        }
        "fx.reverse" => {
            let dimensions = ints("dimensions")?;
            let input = &args[0];
            one(map_indices(&shape, |index| {
                let source: Vec<usize> = index
                    .iter()
                    .enumerate()
                    .map(|(d, i)| {
                        if dimensions.contains(&(d as i64)) {
                            input.shape[d] - 1 - i
                        } else {
                            *i
                        }
                    })
                    .collect();
                input.data[flat(&input.shape, &source)]
            }))
        }
        "fx.slice" => {
            let (start, strides) = (ints("start_indices")?, ints("strides")?);
            let input = &args[0];
            one(map_indices(&shape, |index| {
                let source: Vec<usize> = index
                    .iter()
                    .enumerate()
                    .map(|(d, i)| (start[d] + *i as i64 * strides[d]) as usize)
                    .collect();
                input.data[flat(&input.shape, &source)]
            }))
        }
        "fx.pad" => {
            let (low, interior) = (ints("edge_padding_low")?, ints("interior_padding")?);
            let (input, padding) = (&args[0], scalar(&args[1]));
            one(map_indices(&shape, |index| {
                let mut source = vec![];
                for (d, i) in index.iter().enumerate() {
                    let offset = *i as i64 - low[d];
                    let step = interior[d] + 1;
                    if offset < 0 || offset % step != 0 || offset / step >= input.shape[d] as i64 {
                        return padding;
                    }
                    source.push((offset / step) as usize);
                }
                input.data[flat(&input.shape, &source)]
            }))
        }
        "fx.reduce" => {
            let axes = ints("axes")?;
            let attribute = op.attribute("kind").map_err(|e| e.to_string())?;
            let kind = StringAttribute::try_from(attribute)
                .map_err(|e| e.to_string())?
                .value()
                .to_string();
            let input = &args[0];
            let float = input.dtype.is_float();
            let (start, combine): (f64, fn(f64, f64) -> f64) = match kind.as_str() {
                "sum" => (0.0, |a, b| a + b),
                "prod" => (1.0, |a, b| a * b),
                "max" => (f64::NEG_INFINITY, |a, b| {
                    if a.is_nan() || b.is_nan() {
                        f64::NAN
                    } else {
                        a.max(b)
                    }
                }),
                _ => (f64::INFINITY, |a, b| {
                    if a.is_nan() || b.is_nan() {
                        f64::NAN
                    } else {
                        a.min(b)
                    }
                }),
            };
            let start = match (kind.as_str(), float) {
                ("max", false) => i64::MIN as f64,
                ("min", false) => i64::MAX as f64,
                _ => start,
            };
            let mut out = vec![start; shape.iter().product()];
            for_each_index(&input.shape, |index, position| {
                let kept: Vec<usize> = index
                    .iter()
                    .enumerate()
                    .filter(|(d, _)| !axes.contains(&(*d as i64)))
                    .map(|(_, i)| *i)
                    .collect();
                let target = flat(&shape, &kept);
                out[target] = combine(out[target], input.data[position]);
            });
            // Accumulated in float64 and rounded once: close to the pairwise sums of JAX, where
            // rounding after each element of a long float32 sum drifts.
            one(out.into_iter().map(|v| round(v, dtype)).collect())
        }
        "fx.dot_general" => {
            let (lb, rb) = (
                ints("lhs_batching_dimensions")?,
                ints("rhs_batching_dimensions")?,
            );
            let (lc, rc) = (
                ints("lhs_contracting_dimensions")?,
                ints("rhs_contracting_dimensions")?,
            );
            let (lhs, rhs) = (&args[0], &args[1]);
            let free = |rank: usize, batch: &[i64], contracting: &[i64]| -> Vec<usize> {
                (0..rank)
                    .filter(|d| {
                        !batch.contains(&(*d as i64)) && !contracting.contains(&(*d as i64))
                    })
                    .collect()
            };
            let (lf, rf) = (
                free(lhs.shape.len(), &lb, &lc),
                free(rhs.shape.len(), &rb, &rc),
            );
            let contracted: Vec<usize> = lc.iter().map(|d| lhs.shape[*d as usize]).collect();
            one(map_indices(&shape, |index| {
                let (batch, rest) = index.split_at(lb.len());
                let (lhs_free, rhs_free) = rest.split_at(lf.len());
                let mut total = 0.0;
                for_each_index(&contracted, |k, _| {
                    let mut l = vec![0; lhs.shape.len()];
                    let mut r = vec![0; rhs.shape.len()];
                    for (i, d) in lb.iter().enumerate() {
                        l[*d as usize] = batch[i];
                    }
                    for (i, d) in rb.iter().enumerate() {
                        r[*d as usize] = batch[i];
                    }
                    for (i, d) in lf.iter().enumerate() {
                        l[*d] = lhs_free[i];
                    }
                    for (i, d) in rf.iter().enumerate() {
                        r[*d] = rhs_free[i];
                    }
                    for (i, (a, b)) in lc.iter().zip(&rc).enumerate() {
                        l[*a as usize] = k[i];
                        r[*b as usize] = k[i];
                    }
                    total += lhs.data[flat(&lhs.shape, &l)] * rhs.data[flat(&rhs.shape, &r)];
                });
                total
            }))
        }
        "fx.dynamic_slice" => {
            let input = &args[0];
            let starts = clamped_starts(&args[1..], &input.shape, &shape);
            one(map_indices(&shape, |index| {
                let source: Vec<usize> = index.iter().zip(&starts).map(|(i, s)| i + s).collect();
                input.data[flat(&input.shape, &source)]
            }))
        }
        "fx.dynamic_update_slice" => {
            let (input, update) = (&args[0], &args[1]);
            let starts = clamped_starts(&args[2..], &input.shape, &update.shape);
            let mut out = input.data.clone();
            for_each_index(&update.shape, |index, position| {
                let target: Vec<usize> = index.iter().zip(&starts).map(|(i, s)| i + s).collect();
                out[flat(&input.shape, &target)] = update.data[position];
            });
            one(out)
        }
        "scf.for" => {
            let (lower, upper, step) = (scalar(&args[0]), scalar(&args[1]), scalar(&args[2]));
            let body = region_block(operation, 0);
            let mut carries = args[3..].to_vec();
            let mut i = lower;
            while i < upper {
                let mut arguments = vec![Rc::new(index(i))];
                arguments.extend(carries);
                carries = run_block(body, &arguments, values)?;
                i += step;
            }
            Ok(unwrap(carries))
        }
        "scf.if" => {
            let branch = if scalar(&args[0]) != 0.0 { 0 } else { 1 };
            Ok(unwrap(run_block(
                region_block(operation, branch),
                &[],
                values,
            )?))
        }
        "scf.while" => {
            let (before, after) = (region_block(operation, 0), region_block(operation, 1));
            let mut carries = args.to_vec();
            loop {
                let condition = run_block(before, &carries, values)?;
                let (flag, forwarded) = condition.split_first().ok_or("an empty scf.condition")?;
                if scalar(flag) == 0.0 {
                    return Ok(unwrap(forwarded.to_vec()));
                }
                carries = run_block(after, forwarded, values)?;
            }
        }
        other => Err(format!("the eager interpreter has no rule for `{other}`")),
    }
}

/// The start of a dynamic slice: each index clamped so the block fits.
fn clamped_starts(indices: &[Rc<Tensor>], shape: &[usize], sizes: &[usize]) -> Vec<usize> {
    indices
        .iter()
        .zip(shape.iter().zip(sizes))
        .map(|(i, (n, s))| {
            let start = i.data.first().copied().unwrap_or(0.0) as i64;
            start.clamp(0, (*n as i64 - *s as i64).max(0)) as usize
        })
        .collect()
}

/// The tensors of `values`, copied only where shared.
fn unwrap(values: Vec<Rc<Tensor>>) -> Vec<Tensor> {
    values
        .into_iter()
        .map(|v| Rc::try_unwrap(v).unwrap_or_else(|shared| (*shared).clone()))
        .collect()
}

fn index(value: f64) -> Tensor {
    Tensor {
        dtype: DType::I64,
        shape: vec![],
        data: vec![value],
    }
}

/// `value` as `dtype` holds it.
fn round(value: f64, dtype: DType) -> f64 {
    match dtype {
        DType::F64 => value,
        DType::F32 => f64::from(value as f32),
        DType::Bool => f64::from(u8::from(value != 0.0)),
        DType::I32 => f64::from(value as i64 as i32),
        DType::I64 => value as i64 as f64,
    }
}

fn type_of(ty: melior::ir::Type) -> EResult<(DType, Vec<usize>)> {
    let Ok(tensor) = RankedTensorType::try_from(ty) else {
        return Ok((DType::I64, vec![]));
    };
    let element = tensor.element();
    let width = IntegerType::try_from(element).map_or(0, |i| i.width());
    let dtype = if element.is_f32() {
        DType::F32
    } else if element.is_f64() {
        DType::F64
    } else if width == 1 {
        DType::Bool
    } else if width == 32 {
        DType::I32
    } else {
        DType::I64
    };
    let shape = (0..tensor.rank())
        .map(|d| match tensor.dim_size(d) {
            Ok(DimSize::Static(size)) => Ok(size as usize),
            _ => Err(String::from("a dynamic dimension")),
        })
        .collect::<EResult<_>>()?;
    Ok((dtype, shape))
}

/// The elements of an `fx.constant`, row-major.
fn constant(op: OperationRef) -> EResult<Vec<f64>> {
    let attribute = op.attribute("value").map_err(|e| e.to_string())?;
    let raw = melior::ir::AttributeLike::to_raw(&attribute);
    let ty = op.result(0).map_err(|e| e.to_string())?.r#type();
    let (dtype, shape) = type_of(ty)?;
    let count: usize = shape.iter().product();
    unsafe {
        if !mlir_sys::mlirAttributeIsADenseElements(raw) {
            return Err(String::from("a constant that is not dense"));
        }
        let splat = mlir_sys::mlirDenseElementsAttrIsSplat(raw);
        (0..count)
            .map(|i| {
                let position = if splat { 0 } else { i as isize };
                Ok(match dtype {
                    DType::F32 => {
                        f64::from(mlir_sys::mlirDenseElementsAttrGetFloatValue(raw, position))
                    }
                    DType::F64 => mlir_sys::mlirDenseElementsAttrGetDoubleValue(raw, position),
                    DType::Bool => f64::from(u8::from(
                        mlir_sys::mlirDenseElementsAttrGetBoolValue(raw, position),
                    )),
                    DType::I32 => {
                        f64::from(mlir_sys::mlirDenseElementsAttrGetInt32Value(raw, position))
                    }
                    DType::I64 => {
                        mlir_sys::mlirDenseElementsAttrGetInt64Value(raw, position) as f64
                    }
                })
            })
            .collect()
    }
}

/// The row-major position of `index` in `shape`.
fn flat(shape: &[usize], index: &[usize]) -> usize {
    index
        .iter()
        .zip(shape)
        .fold(0, |position, (i, n)| position * n + i)
}

/// Calls `visit(index, position)` for every index of `shape`, in row-major order.
fn for_each_index(shape: &[usize], mut visit: impl FnMut(&[usize], usize)) {
    let count: usize = shape.iter().product();
    let mut index = vec![0; shape.len()];
    for position in 0..count {
        visit(&index, position);
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

/// The elements of `shape`, each `element(index)`.
fn map_indices(shape: &[usize], mut element: impl FnMut(&[usize]) -> f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(shape.iter().product());
    for_each_index(shape, |index, _| out.push(element(index)));
    out
}
