//! `fx-fold`: folds constants, simplifies algebra, and removes repeated and dead fx ops.
//!
//! Runs on: `builtin.module`, after `fx-autodiff`.
//! Input:   fx (with `scf` regions).
//! Output:  the same program, smaller:
//!          - an op whose operands are splat constants becomes a splat constant (elementwise
//!            arithmetic, comparisons, `select`, `convert`, `broadcast_in_dim`, `reshape`),
//!            computed as the lowered op would (float32 results rounded from float64,
//!            which is exact for `+ - * /`; integers wrap as int32/int64);
//!          - identities that hold for every value, including NaN and signed zeros:
//!            `x * 1`, `1 * x`, `x / 1`, `x - 0`, `x + -0.0` (and `x + 0` on integers),
//!            `neg(neg(x))`, `select` on a constant predicate, `integer_pow(x, 1)`,
//!            `integer_pow(x, 2)` → `x * x`, `pow(x, 1.0)`;
//!          - `transpose(a @ b)` of matrices → `b @ a`, when the product has no other use;
//!          - a product of a transpose → a product of its input, dimensions renumbered;
//!          - an op equal to an earlier one of the same block (name, operands, attributes
//!            and types) is replaced by it;
//!          - an fx op whose results are unused is erased.
//! Keeps:   locations; no op moves across a region boundary.

use super::ir::{
    block_ops, defining_op, erase_unused, i64_array, nested_blocks, op_name, operands, results,
    splat_of, value_type,
};
use melior::{
    Context, IrRewriter,
    ir::{
        Attribute, Identifier, OperationRef, Type, TypeLike, Value, ValueLike,
        operation::{OperationBuilder, OperationLike},
        r#type::{DimSize, RankedTensorType, ShapedTypeLike},
    },
    pass::{ExternalPass, Pass},
};
use mlir_sys::{MlirBlock, MlirOperation, MlirValue};
use std::collections::HashMap;

static PASS_ID: super::PassId = super::PassId;

/// Creates the `fx-fold` pass.
pub fn create() -> Pass {
    super::module_pass(
        &PASS_ID,
        "fx-fold",
        "Fold constants, simplify algebra, remove repeated and dead fx ops",
        run,
    )
}

fn run(module: OperationRef<'_, '_>, _pass: ExternalPass<'_>) {
    let context_ref = module.context();
    // Safety: `context_ref` outlives every use of `context` in this function.
    let context = unsafe { context_ref.to_ref() };
    let blocks = nested_blocks(module);
    for block in &blocks {
        fold_block(context, *block);
    }
    erase_unused(&blocks, &["fx."]);
}

/// Folds and merges the fx ops of one block, in order.
fn fold_block(context: &Context, block: MlirBlock) {
    let rewriter = IrRewriter::new(context);
    let base = rewriter.as_rewriter_base();
    let mut seen: HashMap<String, MlirValue> = HashMap::new();
    for operation in block_ops(block) {
        let name = op_name(operation);
        if !name.starts_with("fx.") || results(operation).len() != 1 {
            continue;
        }
        let result = results(operation)[0];
        base.set_insertion_point_before(unsafe { OperationRef::from_raw(operation) });
        let folder = Folder {
            context,
            base: &base,
            operation,
        };
        let replacement = folder.simplify(&name).map(|value| {
            // A new op (a folded constant, `x * x`) may equal an earlier one too.
            match defining_op(value).filter(|op| !is_before(*op, operation)) {
                Some(created) => {
                    let created_folder = Folder {
                        context,
                        base: &base,
                        operation: created,
                    };
                    let key = created_folder.key(&op_name(created));
                    match seen.get(&key) {
                        Some(earlier) if earlier.ptr != value.ptr => {
                            unsafe { mlir_sys::mlirOperationDestroy(created) };
                            *earlier
                        }
                        Some(_) => value,
                        None => {
                            seen.insert(key, value);
                            value
                        }
                    }
                }
                None => value,
            }
        });
        let replacement = replacement.or_else(|| {
            let key = folder.key(&name);
            match seen.get(&key) {
                Some(earlier) => Some(*earlier),
                None => {
                    seen.insert(key, result);
                    None
                }
            }
        });
        if let Some(value) = replacement {
            unsafe {
                mlir_sys::mlirValueReplaceAllUsesOfWith(result, value);
                mlir_sys::mlirOperationDestroy(operation);
            }
        }
    }
}

/// Whether `a` is an op of the block before `b` was reached (not created for `b`): the ops
/// created for `b` are inserted just before it.
fn is_before(a: MlirOperation, b: MlirOperation) -> bool {
    let created = unsafe { mlir_sys::mlirOperationGetNextInBlock(a) };
    created.ptr != b.ptr
}

struct Folder<'c, 'a, 'b> {
    context: &'c Context,
    base: &'b melior::RewriterBase<'c, 'a>,
    operation: MlirOperation,
}

impl Folder<'_, '_, '_> {
    /// The name, operands, attributes and result types: equal for ops that compute the same.
    fn key(&self, name: &str) -> String {
        let op = unsafe { OperationRef::from_raw(self.operation) };
        let mut key = name.to_string();
        for operand in op.operands() {
            key.push_str(&format!(" {:x}", operand.to_raw().ptr as usize));
        }
        for (name, attribute) in op.attributes() {
            let name = name.as_string_ref().as_str().unwrap_or("").to_string();
            key.push_str(&format!(" {name}={attribute}"));
        }
        for result in op.results() {
            key.push_str(&format!(" -> {}", result.r#type()));
        }
        key
    }

    /// A value that computes the same as the op, if one is simpler.
    fn simplify(&self, name: &str) -> Option<MlirValue> {
        let args = operands(self.operation);
        let result = results(self.operation)[0];
        let ty = value_type(result);
        let splats: Vec<Option<f64>> = args.iter().map(|v| splat_of(*v)).collect();
        let float = is_float(ty);
        let is = |i: usize, value: f64| splats.get(i).copied().flatten() == Some(value);
        let negative_zero = |i: usize| {
            splats
                .get(i)
                .copied()
                .flatten()
                .is_some_and(|s| s == 0.0 && s.is_sign_negative())
        };
        let same_type = |i: usize| value_type(args[i]) == ty;
        // Identities.
        match name {
            "fx.mul" if is(1, 1.0) && same_type(0) => return Some(args[0]),
            "fx.mul" if is(0, 1.0) && same_type(1) => return Some(args[1]),
            "fx.div" if is(1, 1.0) && same_type(0) => return Some(args[0]),
            "fx.sub" if is(1, 0.0) && !negative_zero(1) && same_type(0) => return Some(args[0]),
            "fx.add" if (negative_zero(1) || (!float && is(1, 0.0))) && same_type(0) => {
                return Some(args[0]);
            }
            "fx.add" if (negative_zero(0) || (!float && is(0, 0.0))) && same_type(1) => {
                return Some(args[1]);
            }
            "fx.neg" => {
                let inner = defining_op(args[0])?;
                if op_name(inner) == "fx.neg" {
                    return Some(operands(inner)[0]);
                }
            }
            "fx.select" => {
                if let Some(p) = splats[0] {
                    return Some(if p != 0.0 { args[1] } else { args[2] });
                }
            }
            "fx.integer_pow" => match self.int_attribute("exponent") {
                Some(1) => return Some(args[0]),
                Some(2) => return self.build("fx.mul", &[args[0], args[0]], ty, &[]).ok(),
                _ => {}
            },
            "fx.pow" if is(1, 1.0) && same_type(0) => return Some(args[0]),
            "fx.transpose" => return self.transposed_product(args[0], ty),
            "fx.dot_general" => return self.product_of_transposes(&args, ty),
            _ => {}
        }
        // Constants.
        if splats.is_empty() || splats.iter().any(Option::is_none) {
            return None;
        }
        let v: Vec<f64> = splats.iter().map(|s| s.unwrap_or(0.0)).collect();
        let folded = match name {
            "fx.add" => v[0] + v[1],
            "fx.sub" => v[0] - v[1],
            "fx.mul" => v[0] * v[1],
            "fx.div" if float => v[0] / v[1],
            "fx.neg" => -v[0],
            "fx.abs" => v[0].abs(),
            "fx.max" if float && (v[0].is_nan() || v[1].is_nan()) => f64::NAN,
            "fx.max" => v[0].max(v[1]),
            "fx.min" if float && (v[0].is_nan() || v[1].is_nan()) => f64::NAN,
            "fx.min" => v[0].min(v[1]),
            "fx.compare" => {
                let predicate = self.string_attribute("predicate")?;
                let holds = match predicate.as_str() {
                    "eq" => v[0] == v[1],
                    "ne" => v[0] != v[1],
                    "lt" => v[0] < v[1],
                    "le" => v[0] <= v[1],
                    "gt" => v[0] > v[1],
                    "ge" => v[0] >= v[1],
                    _ => return None,
                };
                f64::from(u8::from(holds))
            }
            "fx.broadcast_in_dim" | "fx.reshape" | "fx.convert" => v[0],
            _ => return None,
        };
        self.splat(ty, folded).ok()
    }

    /// `transpose(a @ b)` of matrices as `b @ a` with the contractions swapped (reverse mode
    /// makes it for a weight's gradient), when the product has no other use: no copy.
    fn transposed_product(&self, x: MlirValue, ty: Type) -> Option<MlirValue> {
        let op = unsafe { OperationRef::from_raw(self.operation) };
        let permutation = op.attribute("permutation").ok()?.to_string();
        let product = defining_op(x).filter(|p| op_name(*p) == "fx.dot_general")?;
        let product = unsafe { OperationRef::from_raw(product) };
        let single_use = unsafe {
            let first = mlir_sys::mlirValueGetFirstUse(x);
            !first.ptr.is_null() && mlir_sys::mlirOpOperandGetNextUse(first).ptr.is_null()
        };
        let attribute = |name: &str| product.attribute(name).ok();
        let no_batch = ["lhs_batching_dimensions", "rhs_batching_dimensions"]
            .iter()
            .all(|name| attribute(name).is_some_and(|a| a.to_string() == "array<i64>"));
        let [lhs, rhs] = operands(product.to_raw())[..] else {
            return None;
        };
        // One free dimension on each side: the swapped product is the transpose.
        let one_free = |operand: MlirValue, contracting: &str| {
            let rank = RankedTensorType::try_from(value_type(operand)).map_or(0, |t| t.rank());
            let contracted = attribute(contracting)
                .and_then(|a| i64_array(a).ok())
                .map_or(usize::MAX, |dims| dims.len());
            rank == contracted + 1
        };
        let matrices = one_free(lhs, "lhs_contracting_dimensions")
            && one_free(rhs, "rhs_contracting_dimensions");
        if permutation != "array<i64: 1, 0>" || !single_use || !no_batch || !matrices {
            return None;
        }
        let swapped = |name: &str, from: &str| {
            attribute(from).map(|a| (Identifier::new(self.context, name), a))
        };
        let attributes = [
            swapped("lhs_batching_dimensions", "rhs_batching_dimensions")?,
            swapped("rhs_batching_dimensions", "lhs_batching_dimensions")?,
            swapped("lhs_contracting_dimensions", "rhs_contracting_dimensions")?,
            swapped("rhs_contracting_dimensions", "lhs_contracting_dimensions")?,
        ];
        self.build("fx.dot_general", &[rhs, lhs], ty, &attributes)
            .ok()
    }

    /// A product whose operand is a transpose, as a product of the transpose's input with
    /// the dimension numbers mapped through the permutation (`x @ w.T` reads `w` as it is
    /// stored), when the operand's free dimensions keep their order (they order the
    /// result's).
    fn product_of_transposes(&self, args: &[MlirValue], ty: Type) -> Option<MlirValue> {
        let op = unsafe { OperationRef::from_raw(self.operation) };
        let array = |op: OperationRef, name: &str| -> Option<Vec<i64>> {
            i64_array(op.attribute(name).ok()?).ok()
        };
        let mut inputs = args.to_vec();
        let mut attributes = vec![];
        let mut changed = false;
        for (side, operand) in ["lhs", "rhs"].iter().zip(inputs.iter_mut()) {
            let batching = array(op, &format!("{side}_batching_dimensions"))?;
            let contracting = array(op, &format!("{side}_contracting_dimensions"))?;
            let transpose = defining_op(*operand).filter(|t| op_name(*t) == "fx.transpose");
            let permutation =
                transpose.and_then(|t| array(unsafe { OperationRef::from_raw(t) }, "permutation"));
            let mapped = |dims: &[i64], permutation: &[i64]| -> Vec<i64> {
                dims.iter().map(|d| permutation[*d as usize]).collect()
            };
            let (batching, contracting) = match (transpose, permutation) {
                (Some(transpose), Some(permutation)) => {
                    let free: Vec<i64> = (0..permutation.len() as i64)
                        .filter(|d| !batching.contains(d) && !contracting.contains(d))
                        .map(|d| permutation[d as usize])
                        .collect();
                    if free.windows(2).all(|w| w[0] < w[1]) {
                        *operand = operands(transpose)[0];
                        changed = true;
                        (
                            mapped(&batching, &permutation),
                            mapped(&contracting, &permutation),
                        )
                    } else {
                        (batching, contracting)
                    }
                }
                _ => (batching, contracting),
            };
            for (name, dims) in [("batching", batching), ("contracting", contracting)] {
                let attribute =
                    melior::ir::attribute::DenseI64ArrayAttribute::new(self.context, &dims);
                attributes.push((
                    Identifier::new(self.context, &format!("{side}_{name}_dimensions")),
                    attribute.into(),
                ));
            }
        }
        if !changed {
            return None;
        }
        self.build("fx.dot_general", &inputs, ty, &attributes).ok()
    }

    fn int_attribute(&self, name: &str) -> Option<i64> {
        let op = unsafe { OperationRef::from_raw(self.operation) };
        melior::ir::attribute::IntegerAttribute::try_from(op.attribute(name).ok()?)
            .ok()
            .map(|a| a.value())
    }

    fn string_attribute(&self, name: &str) -> Option<String> {
        let op = unsafe { OperationRef::from_raw(self.operation) };
        melior::ir::attribute::StringAttribute::try_from(op.attribute(name).ok()?)
            .ok()
            .map(|a| a.value().to_string())
    }

    /// An op of one result, with the folded op's location, inserted before it.
    fn build<'c>(
        &self,
        name: &str,
        operands: &[MlirValue],
        ty: Type<'c>,
        attributes: &[(Identifier<'c>, Attribute<'c>)],
    ) -> Result<MlirValue, String> {
        let location = unsafe { OperationRef::from_raw(self.operation) }.location();
        let operands: Vec<Value> = operands
            .iter()
            .map(|v| unsafe { Value::from_raw(*v) })
            .collect();
        let operation = OperationBuilder::new(name, location)
            .add_operands(&operands)
            .add_attributes(attributes)
            .add_results(&[ty])
            .build()
            .map_err(|e| e.to_string())?;
        Ok(self
            .base
            .insert(operation)
            .result(0)
            .map_err(|e| e.to_string())?
            .to_raw())
    }

    /// A splat `fx.constant` of `ty` holding `value` as the element type holds it.
    fn splat(&self, ty: Type, value: f64) -> Result<MlirValue, String> {
        let tensor = RankedTensorType::try_from(ty).map_err(|e| e.to_string())?;
        if (0..tensor.rank()).any(|d| matches!(tensor.dim_size(d), Ok(DimSize::Dynamic))) {
            return Err(String::from("a dynamic shape"));
        }
        let element = tensor.element();
        let text = if element.is_f32() {
            literal(f64::from(value as f32))
        } else if element.is_f64() {
            literal(value)
        } else if element.is_integer()
            && melior::ir::r#type::IntegerType::try_from(element).is_ok_and(|i| i.width() == 1)
        {
            String::from(if value != 0.0 { "true" } else { "false" })
        } else if element.is_integer() {
            if !value.is_finite() {
                return Err(String::from("not an integer"));
            }
            let width =
                melior::ir::r#type::IntegerType::try_from(element).map_or(64, |i| i.width());
            let wrapped = if width == 32 {
                i64::from(value as i64 as i32)
            } else {
                value as i64
            };
            wrapped.to_string()
        } else {
            return Err(String::from("an unsupported element type"));
        };
        let attribute = Attribute::parse(self.context, &format!("dense<{text}> : {ty}"))
            .ok_or("cannot build the constant")?;
        self.build(
            "fx.constant",
            &[],
            ty,
            &[(Identifier::new(self.context, "value"), attribute)],
        )
    }
}

/// A float as MLIR reads it back exactly (hexadecimal bits for infinities and NaN).
fn literal(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.17e}")
    } else {
        format!("0x{:016X}", value.to_bits())
    }
}

fn is_float(ty: Type) -> bool {
    RankedTensorType::try_from(ty).is_ok_and(|t| t.element().is_float())
}
