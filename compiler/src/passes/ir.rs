//! Small readers of MLIR's IR through the C API, shared by the passes and the interpreter:
//! an op's name, operands, results and users, and the ops and arguments of a block.

use melior::ir::{OperationRef, ValueLike, operation::OperationLike};
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
    let mut users = vec![];
    let mut used = unsafe { mlir_sys::mlirValueGetFirstUse(value) };
    while !used.ptr.is_null() {
        users.push(unsafe { mlir_sys::mlirOpOperandGetOwner(used) });
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
