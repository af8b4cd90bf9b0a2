//! `elementwise-runs`: makes each run of elementwise ops on tensors one `linalg.generic`.
//!
//! Runs on: `builtin.module`, after `fx-to-linalg`, before `convert-elementwise-to-linalg`.
//! Input:   `arith` and `math` ops on ranked tensors, among others.
//! Output:  the same, except that every run of two or more `arith` or `math` ops whose
//!          operands and result are tensors of one static shape, next to each other in a
//!          block (constants may sit between them), is one `linalg.generic` with identity
//!          maps that computes them element by element. A run ends with each op whose value
//!          is used outside it. The generic's inputs are the run's operands defined outside
//!          it, splat constants excepted (they become scalar constants in its body); its
//!          results are the run's values used after it, in the run's order: the last op's,
//!          and an earlier op's only where a later run uses it. Unused `arith` and `math`
//!          ops are removed first.
//!
//! `linalg-fuse-elementwise-ops` fuses a chain one producer at a time and copies the growing
//! body at each step, so a chain of n ops takes time in n² (a Python loop of 2,500
//! elementwise steps took 22 s). A run is built here in one sweep; the upstream pass then
//! fuses what is left (broadcasts, reductions, `exp`'s generics) into the runs.

use super::ir::{
    block_ops, erase_unused, nested_blocks, op_name, operands, results, splat_attribute,
    static_shape, value_type,
};
use melior::{
    Context,
    ir::{
        Attribute, Block, BlockLike, Identifier, OperationRef, Region, RegionLike, Type, Value,
        operation::{OperationBuilder, OperationLike},
        r#type::{RankedTensorType, ShapedTypeLike},
    },
    pass::{ExternalPass, Pass},
};
use mlir_sys::{MlirBlock, MlirOperation, MlirValue};
use std::collections::{HashMap, HashSet};

static PASS_ID: super::PassId = super::PassId;

/// Creates the `elementwise-runs` pass.
pub fn create() -> Pass {
    super::module_pass(
        &PASS_ID,
        "elementwise-runs",
        "Make each run of elementwise ops on tensors one linalg.generic",
        run,
    )
}

fn run(module: OperationRef<'_, '_>, _pass: ExternalPass<'_>) {
    let context_ref = module.context();
    // Safety: `context_ref` outlives every use of `context` in this function.
    let context = unsafe { context_ref.to_ref() };
    let blocks = nested_blocks(module);
    // Unused arith and math ops (fx-to-linalg leaves some; canonicalisation would remove
    // them later) must not keep a run's value alive as a result of its generic.
    erase_unused(&blocks, &["arith.", "math."]);
    for block in blocks {
        for members in runs(block) {
            // A run that cannot be built (an op the element types reject) stays as it is,
            // for the upstream passes.
            if let Ok(generic) = build(context, &members) {
                replace(block, &members, generic);
            }
        }
    }
}

/// The runs of two or more elementwise ops of one shape in `block`, in order.
fn runs(block: MlirBlock) -> Vec<Vec<MlirOperation>> {
    let mut runs = vec![];
    let mut current: Vec<MlirOperation> = vec![];
    let mut current_shape: Option<Vec<i64>> = None;
    for operation in block_ops(block) {
        if op_name(operation) == "arith.constant" {
            continue;
        }
        let shape = elementwise_shape(operation);
        if shape.is_none() || shape != current_shape {
            runs.push(std::mem::take(&mut current));
            current_shape = shape.clone();
        }
        if shape.is_some() {
            current.push(operation);
        }
    }
    runs.push(current);
    runs.into_iter().flat_map(split).collect()
}

/// `run` cut after each op whose value is used outside it, so that such a value ends a run
/// and is its generic's one result, as `linalg-fuse-elementwise-ops` would leave it (it fuses
/// producers of one use only); parts of fewer than two ops are left out.
fn split(run: Vec<MlirOperation>) -> Vec<Vec<MlirOperation>> {
    let in_run: HashSet<*mut std::ffi::c_void> = run.iter().map(|op| op.ptr).collect();
    let mut parts = vec![];
    let mut current = vec![];
    for operation in run {
        current.push(operation);
        let exposed = results(operation)
            .into_iter()
            .flat_map(super::ir::uses)
            .any(|user| !in_run.contains(&user.ptr));
        if exposed {
            parts.push(std::mem::take(&mut current));
        }
    }
    parts.push(current);
    parts.retain(|part| part.len() >= 2);
    parts
}

/// The shape of an `arith` or `math` op with one result whose operands and result are all
/// tensors of that static shape; `None` for any other op.
fn elementwise_shape(operation: MlirOperation) -> Option<Vec<i64>> {
    let name = op_name(operation);
    if !(name.starts_with("arith.") || name.starts_with("math.")) {
        return None;
    }
    let values = results(operation);
    if values.len() != 1 || operands(operation).is_empty() {
        return None;
    }
    let shape = static_shape(value_type(values[0]))?;
    operands(operation)
        .into_iter()
        .all(|operand| static_shape(value_type(operand)).as_ref() == Some(&shape))
        .then_some(shape)
}

/// The element of a splat `arith.constant` tensor, as an attribute.
fn splat_constant<'c>(value: MlirValue) -> Option<Attribute<'c>> {
    let attribute = splat_attribute(value, "arith.constant")?;
    // Safety: a live splat attribute.
    Some(unsafe { Attribute::from_raw(mlir_sys::mlirDenseElementsAttrGetSplatValue(attribute)) })
}

/// A run's `linalg.generic` (not yet in a block) and the run's values it replaces, one per
/// result.
struct Generic<'c> {
    init: Vec<melior::ir::Operation<'c>>,
    generic: melior::ir::Operation<'c>,
    replaced: Vec<MlirValue>,
}

fn build<'c>(context: &'c Context, members: &[MlirOperation]) -> Result<Generic<'c>, String> {
    let in_run: HashSet<*mut std::ffi::c_void> = members.iter().map(|op| op.ptr).collect();
    let location = unsafe { OperationRef::from_raw(members[0]) }.location();
    let mut inputs: Vec<MlirValue> = vec![];
    for member in members {
        for operand in operands(*member) {
            let inside = super::ir::defining_op(operand).is_some_and(|op| in_run.contains(&op.ptr));
            if !inside
                && splat_constant(operand).is_none()
                && !inputs.iter().any(|v| v.ptr == operand.ptr)
            {
                inputs.push(operand);
            }
        }
    }
    let replaced: Vec<MlirValue> = members
        .iter()
        .map(|member| results(*member)[0])
        .filter(|value| {
            super::ir::uses(*value)
                .iter()
                .any(|user| !in_run.contains(&user.ptr))
        })
        .collect();
    if replaced.is_empty() {
        return Err(String::from("nothing of the run is used"));
    }
    let element = |value: MlirValue| -> Result<Type<'c>, String> {
        Ok(RankedTensorType::try_from(value_type(value))
            .map_err(|e| e.to_string())?
            .element())
    };
    let mut arguments = vec![];
    for value in inputs.iter().chain(&replaced) {
        arguments.push((element(*value)?, location));
    }
    let body = Block::new(&arguments);
    let mut scalar: HashMap<*const std::ffi::c_void, Value<'c, '_>> = HashMap::new();
    for (index, value) in inputs.iter().enumerate() {
        let argument = body.argument(index).map_err(|e| e.to_string())?;
        scalar.insert(value.ptr, argument.into());
    }
    for member in members {
        let member_ref = unsafe { OperationRef::from_raw(*member) };
        // Splat constants become scalar constants in the body (the upstream pass would fold
        // them in one at a time, copying the body each time).
        for operand in operands(*member) {
            if let (Some(value), false) =
                (splat_constant(operand), scalar.contains_key(&operand.ptr))
            {
                let constant = body.append_operation(
                    OperationBuilder::new("arith.constant", location)
                        .add_attributes(&[(Identifier::new(context, "value"), value)])
                        .add_results(&[element(operand)?])
                        .build()
                        .map_err(|e| e.to_string())?,
                );
                let result = constant.result(0).map_err(|e| e.to_string())?;
                scalar.insert(operand.ptr, result.into());
            }
        }
        let mapped = scalars(&scalar, &operands(*member))?;
        let attributes: Vec<(Identifier<'c>, Attribute<'c>)> = member_ref.attributes().collect();
        let operation = OperationBuilder::new(&op_name(*member), member_ref.location())
            .add_operands(&mapped)
            .add_attributes(&attributes)
            .add_results(&[element(results(*member)[0])?])
            .build()
            .map_err(|e| e.to_string())?;
        let operation = body.append_operation(operation);
        let result = operation.result(0).map_err(|e| e.to_string())?;
        scalar.insert(results(*member)[0].ptr, result.into());
    }
    let yielded = scalars(&scalar, &replaced)?;
    body.append_operation(
        OperationBuilder::new("linalg.yield", location)
            .add_operands(&yielded)
            .build()
            .map_err(|e| e.to_string())?,
    );
    let region = Region::new();
    region.append_block(body);
    let mut init = vec![];
    for value in &replaced {
        init.push(
            OperationBuilder::new("tensor.empty", location)
                .add_results(&[value_type(*value)])
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    let rank = static_shape(value_type(replaced[0])).map_or(0, |s| s.len());
    let dims: Vec<String> = (0..rank).map(|d| format!("d{d}")).collect();
    let identity = format!("affine_map<({0}) -> ({0})>", dims.join(", "));
    let maps = vec![identity; inputs.len() + replaced.len()].join(", ");
    let parallel = vec!["#linalg.iterator_type<parallel>"; rank].join(", ");
    let parse = |text: &str| {
        Attribute::parse(context, text).ok_or_else(|| format!("cannot parse `{text}`"))
    };
    let mut generic_operands: Vec<Value<'c, '_>> = inputs
        .iter()
        .map(|value| unsafe { Value::from_raw(*value) })
        .collect();
    for operation in &init {
        generic_operands.push(operation.result(0).map_err(|e| e.to_string())?.into());
    }
    let result_types: Vec<Type<'c>> = replaced.iter().map(|value| value_type(*value)).collect();
    let generic = OperationBuilder::new("linalg.generic", location)
        .add_operands(&generic_operands)
        .add_results(&result_types)
        .add_attributes(&[
            (
                Identifier::new(context, "indexing_maps"),
                parse(&format!("[{maps}]"))?,
            ),
            (
                Identifier::new(context, "iterator_types"),
                parse(&format!("[{parallel}]"))?,
            ),
            (
                Identifier::new(context, "operandSegmentSizes"),
                parse(&format!("array<i32: {}, {}>", inputs.len(), replaced.len()))?,
            ),
        ])
        .add_regions([region])
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Generic {
        init,
        generic,
        replaced,
    })
}

/// The body's scalars for the run's tensor `values`.
fn scalars<'c, 'a>(
    scalar: &HashMap<*const std::ffi::c_void, Value<'c, 'a>>,
    values: &[MlirValue],
) -> Result<Vec<Value<'c, 'a>>, String> {
    values
        .iter()
        .map(|value| {
            scalar
                .get(&value.ptr)
                .copied()
                .ok_or_else(|| String::from("a value used before the run defines it"))
        })
        .collect()
}

/// Puts `generic` after the run's last op, gives its results to the run's uses, and removes
/// the run.
fn replace(block: MlirBlock, members: &[MlirOperation], generic: Generic<'_>) {
    let mut after = members[members.len() - 1];
    for operation in generic.init {
        let raw = operation.into_raw();
        unsafe { mlir_sys::mlirBlockInsertOwnedOperationAfter(block, after, raw) };
        after = raw;
    }
    let raw = generic.generic.into_raw();
    unsafe { mlir_sys::mlirBlockInsertOwnedOperationAfter(block, after, raw) };
    for (index, value) in generic.replaced.iter().enumerate() {
        // Safety: the generic has one result per replaced value, of its type.
        unsafe {
            mlir_sys::mlirValueReplaceAllUsesOfWith(
                *value,
                mlir_sys::mlirOperationGetResult(raw, index as isize),
            )
        };
    }
    // Last first: a member's remaining uses are later members.
    for member in members.iter().rev() {
        unsafe { mlir_sys::mlirOperationDestroy(*member) };
    }
}
