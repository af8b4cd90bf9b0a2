//! Small readers of MLIR's IR through the C API, shared by the passes and the interpreter:
//! an op's name, operands, results and users, and the ops and arguments of a block.

use melior::ir::{
    AttributeLike, OperationRef, TypeLike, ValueLike, operation::OperationLike,
    r#type::ShapedTypeLike,
};
use mlir_sys::{MlirBlock, MlirOperation, MlirValue};

pub fn op_name(operation: MlirOperation) -> String {
    let operation = unsafe { OperationRef::from_raw(operation) };
    operation
        .name()
        .as_string_ref()
        .as_str()
        .unwrap_or("")
        .to_string()
}

pub fn operands(operation: MlirOperation) -> Vec<MlirValue> {
    let operation = unsafe { OperationRef::from_raw(operation) };
    operation.operands().map(|v| v.to_raw()).collect()
}

pub fn results(operation: MlirOperation) -> Vec<MlirValue> {
    let operation = unsafe { OperationRef::from_raw(operation) };
    operation.results().map(|v| v.to_raw()).collect()
}

/// The first block of region `index` of `operation`.
pub fn region_block(operation: MlirOperation, index: isize) -> MlirBlock {
    unsafe { mlir_sys::mlirRegionGetFirstBlock(mlir_sys::mlirOperationGetRegion(operation, index)) }
}

/// The ops of a block (terminator last).
pub fn block_ops(block: MlirBlock) -> Vec<MlirOperation> {
    let mut ops = vec![];
    unsafe {
        let mut operation = mlir_sys::mlirBlockGetFirstOperation(block);
        while !operation.ptr.is_null() {
            ops.push(operation);
            operation = mlir_sys::mlirOperationGetNextInBlock(operation);
        }
    }
    ops
}

pub fn block_arguments(block: MlirBlock) -> Vec<MlirValue> {
    unsafe {
        (0..mlir_sys::mlirBlockGetNumArguments(block))
            .map(|i| mlir_sys::mlirBlockGetArgument(block, i))
            .collect()
    }
}

/// The ops that use `value`, one entry per use.
pub fn uses(value: MlirValue) -> Vec<MlirOperation> {
    operand_uses(value)
        .into_iter()
        .map(|(user, _)| user)
        .collect()
}

/// Every block of every region in `root` (its own included), outer blocks first.
pub fn nested_blocks(root: OperationRef<'_, '_>) -> Vec<MlirBlock> {
    let mut blocks = vec![];
    root.walk(melior::ir::operation::WalkOrder::PreOrder, |operation| {
        for index in 0..unsafe { mlir_sys::mlirOperationGetNumRegions(operation.to_raw()) } {
            let region = unsafe { mlir_sys::mlirOperationGetRegion(operation.to_raw(), index) };
            let mut block = unsafe { mlir_sys::mlirRegionGetFirstBlock(region) };
            while !block.ptr.is_null() {
                blocks.push(block);
                block = unsafe { mlir_sys::mlirBlockGetNextInRegion(block) };
            }
        }
        melior::ir::operation::WalkResult::Advance
    });
    blocks
}

/// Destroys the ops of `blocks` none of whose results is used and whose names start with
/// one of `prefixes` (pure ops only), last first, so that an op's operands die after it.
pub fn erase_unused(blocks: &[MlirBlock], prefixes: &[&str]) {
    for block in blocks.iter().rev() {
        for operation in block_ops(*block).into_iter().rev() {
            let name = op_name(operation);
            let unused = results(operation)
                .iter()
                .all(|r| unsafe { mlir_sys::mlirValueGetFirstUse(*r) }.ptr.is_null());
            if unused && prefixes.iter().any(|prefix| name.starts_with(prefix)) {
                unsafe { mlir_sys::mlirOperationDestroy(operation) };
            }
        }
    }
}

/// The uses of `value`: each user with the position of `value` among its operands.
pub fn operand_uses(value: MlirValue) -> Vec<(MlirOperation, usize)> {
    let mut users = vec![];
    let mut used = unsafe { mlir_sys::mlirValueGetFirstUse(value) };
    while !used.ptr.is_null() {
        users.push(unsafe {
            (
                mlir_sys::mlirOpOperandGetOwner(used),
                mlir_sys::mlirOpOperandGetOperandNumber(used) as usize,
            )
        });
        used = unsafe { mlir_sys::mlirOpOperandGetNextUse(used) };
    }
    users
}

/// The ops named `name` in `root` (itself included), outer ops first.
pub fn ops_named(root: MlirOperation, name: &str) -> Vec<MlirOperation> {
    let mut found = vec![];
    unsafe { OperationRef::from_raw(root) }.walk(
        melior::ir::operation::WalkOrder::PreOrder,
        |operation| {
            if op_name(operation.to_raw()) == name {
                found.push(operation.to_raw());
            }
            melior::ir::operation::WalkResult::Advance
        },
    );
    found
}

/// The iterations of the loop nest `root` (an `scf.for` or `scf.parallel`) when its bounds
/// are all constants: the product of the trip counts of `root` and of every `scf.for` inside
/// it.
pub fn nest_iterations(root: MlirOperation) -> Option<u64> {
    let mut total = trip_count(root)?;
    let mut known = true;
    unsafe { OperationRef::from_raw(root) }.walk(
        melior::ir::operation::WalkOrder::PreOrder,
        |operation| {
            if operation.to_raw().ptr != root.ptr && op_name(operation.to_raw()) == "scf.for" {
                match trip_count(operation.to_raw()) {
                    Some(count) => total = total.saturating_mul(count),
                    None => known = false,
                }
            }
            melior::ir::operation::WalkResult::Advance
        },
    );
    known.then_some(total)
}

/// The trip count of an `scf.for` or `scf.parallel` whose bounds and steps are constants.
pub fn trip_count(operation: MlirOperation) -> Option<u64> {
    let bounds = operands(operation);
    let dimensions = if op_name(operation) == "scf.for" {
        1
    } else {
        bounds.len() / 3
    };
    let constant = |value: MlirValue| -> Option<i64> {
        let owner = defining_op(value).filter(|op| op_name(*op) == "arith.constant")?;
        let attribute = unsafe { OperationRef::from_raw(owner) }
            .attribute("value")
            .ok()?;
        melior::ir::attribute::IntegerAttribute::try_from(attribute)
            .ok()
            .map(|a| a.value())
    };
    (0..dimensions).try_fold(1u64, |total, d| {
        let lower = constant(bounds[d])?;
        let upper = constant(bounds[dimensions + d])?;
        let step = constant(bounds[2 * dimensions + d])?;
        let count = if upper > lower && step > 0 {
            (upper - lower + step - 1) / step
        } else {
            0
        };
        Some(total.saturating_mul(count as u64))
    })
}

/// Whether an op enclosing `operation` (at any depth) is named one of `names`.
pub fn enclosed_by(operation: MlirOperation, names: &[&str]) -> bool {
    let mut current = operation;
    loop {
        current = unsafe { mlir_sys::mlirOperationGetParentOperation(current) };
        if current.ptr.is_null() {
            return false;
        }
        if names.contains(&op_name(current).as_str()) {
            return true;
        }
    }
}

/// The elements of a `DenseI64ArrayAttribute`.
pub fn i64_array(attribute: melior::ir::Attribute<'_>) -> Result<Vec<i64>, String> {
    let array = melior::ir::attribute::DenseI64ArrayAttribute::try_from(attribute)
        .map_err(|e| e.to_string())?;
    (0..array.len())
        .map(|i| array.element(i).map_err(|e| e.to_string()))
        .collect()
}

pub fn value_type<'c>(value: MlirValue) -> melior::ir::Type<'c> {
    unsafe { melior::ir::Type::from_raw(mlir_sys::mlirValueGetType(value)) }
}

/// The dimensions of a ranked tensor type of static shape (`None` for any other type).
pub fn static_shape(ty: melior::ir::Type<'_>) -> Option<Vec<i64>> {
    let tensor = melior::ir::r#type::RankedTensorType::try_from(ty).ok()?;
    (0..tensor.rank())
        .map(|d| match tensor.dim_size(d).ok()? {
            melior::ir::r#type::DimSize::Static(size) => Some(size as i64),
            melior::ir::r#type::DimSize::Dynamic => None,
        })
        .collect()
}

/// The op whose result `value` is (none for a block argument or a null value).
pub fn defining_op(value: MlirValue) -> Option<MlirOperation> {
    if value.ptr.is_null() || !unsafe { mlir_sys::mlirValueIsAOpResult(value) } {
        return None;
    }
    Some(unsafe { mlir_sys::mlirOpResultGetOwner(value) })
}

/// The dense splat `value` attribute of the op named `constant` (`fx.constant`,
/// `arith.constant`) that defines `value`, if it is one.
pub fn splat_attribute(value: MlirValue, constant: &str) -> Option<mlir_sys::MlirAttribute> {
    let operation = defining_op(value)?;
    if op_name(operation) != constant {
        return None;
    }
    let attribute = unsafe { OperationRef::from_raw(operation) }
        .attribute("value")
        .ok()?
        .to_raw();
    // Safety: a live attribute, only inspected.
    let splat = unsafe {
        mlir_sys::mlirAttributeIsADenseElements(attribute)
            && mlir_sys::mlirDenseElementsAttrIsSplat(attribute)
    };
    splat.then_some(attribute)
}

/// The element of a splat `fx.constant`, as f64 (bools are 0 and 1), if `value` is one.
pub fn splat_of(value: MlirValue) -> Option<f64> {
    let attribute = splat_attribute(value, "fx.constant")?;
    let element = melior::ir::r#type::RankedTensorType::try_from(value_type(value))
        .ok()?
        .element();
    let width = melior::ir::r#type::IntegerType::try_from(element).map_or(0, |i| i.width());
    Some(unsafe {
        if element.is_f32() {
            f64::from(mlir_sys::mlirDenseElementsAttrGetFloatSplatValue(attribute))
        } else if element.is_f64() {
            mlir_sys::mlirDenseElementsAttrGetDoubleSplatValue(attribute)
        } else if width == 1 {
            f64::from(mlir_sys::mlirDenseElementsAttrGetBoolSplatValue(attribute))
        } else if width == 32 {
            f64::from(mlir_sys::mlirDenseElementsAttrGetInt32SplatValue(attribute))
        } else if width == 64 {
            mlir_sys::mlirDenseElementsAttrGetInt64SplatValue(attribute) as f64
        } else {
            return None;
        }
    })
}
