//! `parallel-outer-loop`: keeps one parallel loop per loop nest, the outer one.
//!
//! Runs on: `builtin.module`, after `convert-linalg-to-parallel-loops`, before
//!          `convert-scf-to-openmp` (threaded modules only).
//! Input:   `scf.parallel` ops without reductions (others are kept).
//! Output:  an `scf.parallel` over several dimensions becomes an `scf.parallel` over its first
//!          dimension around `scf.for` loops over the others, in order; an `scf.parallel`
//!          inside another, or whose nest has constant bounds and fewer than `PARALLEL_NEST`
//!          iterations in all, becomes `scf.for` loops. Bodies are moved, not copied.
//!
//! OpenMP runs a parallel loop over several dimensions as one loop over their product,
//! which divides each index back into its dimensions and keeps LLVM from vectorising the
//! innermost one; a parallel loop inside another would start a parallel region per outer
//! step. One parallel outer loop splits the work between threads, and each thread runs plain
//! inner loops that vectorise. A small nest stays on one thread: a parallel region costs
//! microseconds to start, and each is a function for LLVM to compile.

use super::ir::{
    block_arguments, block_ops, enclosed_by, nest_iterations, operands, ops_named, region_block,
    results,
};
use melior::{
    ir::{
        Block, BlockLike, OperationRef, Region, RegionLike, Type, Value,
        attribute::DenseI32ArrayAttribute,
        operation::{OperationBuilder, OperationLike},
    },
    pass::{ExternalPass, Pass},
};
use mlir_sys::{MlirOperation, MlirValue};

static PASS_ID: super::PassId = super::PassId;

/// Loop nests with fewer iterations than this stay on one thread. A parallel region costs a
/// few microseconds, about what two threads save on 65,536 elementwise iterations, and LLVM
/// compiles each as a function of its own: at this size the MLP step compiled in about
/// 190 ms instead of 215-310, as fast per call. (A module still uses threads from
/// `pipeline::THREAD_THRESHOLD` on, for its matrix products.)
pub const PARALLEL_NEST: u64 = 1 << 18;

/// Creates the `parallel-outer-loop` pass.
pub fn create() -> Pass {
    super::module_pass(
        &PASS_ID,
        "parallel-outer-loop",
        "Keep one parallel loop per nest, the outer one, over one dimension",
        run,
    )
}

fn run(module: OperationRef<'_, '_>, _pass: ExternalPass<'_>) {
    let loops = ops_named(module.to_raw(), "scf.parallel");
    // Outer loops first: an inner loop is rewritten after the body that holds it has moved.
    for parallel in loops {
        if !results(parallel).is_empty() {
            continue;
        }
        let serial = enclosed_by(parallel, &["scf.parallel"])
            || nest_iterations(parallel).is_some_and(|n| n < PARALLEL_NEST);
        let dimensions = operands(parallel).len() / 3;
        if serial || dimensions > 1 {
            rewrite(parallel, if serial { 0 } else { 1 });
        }
    }
}

/// Rewrites `parallel` as an `scf.parallel` over its first `kept` dimensions (0 or 1) around
/// `scf.for` loops over the others.
fn rewrite(parallel: MlirOperation, kept: usize) {
    let op = unsafe { OperationRef::from_raw(parallel) };
    let location = op.location();
    let context = location.context();
    let context = unsafe { context.to_ref() };
    let index = Type::index(context);
    let bounds = operands(parallel);
    let dimensions = bounds.len() / 3;
    let value = |i: usize| unsafe { Value::from_raw(bounds[i]) };
    let (lower, upper, step) = (
        |d: usize| value(d),
        |d: usize| value(dimensions + d),
        |d: usize| value(2 * dimensions + d),
    );
    let body = region_block(parallel, 0);
    let old_indices = block_arguments(body);
    let mut new_indices: Vec<MlirValue> = vec![];

    // The loops, outer first, each inserted into the block of the one before; `parent` is
    // where the next loop goes (before `before`, or at the end).
    let parent = unsafe { mlir_sys::mlirOperationGetBlock(parallel) };
    let mut insert_into = parent;
    let mut insert_before = Some(parallel);
    for d in 0..dimensions {
        let block = Block::new(&[(index, location)]);
        let terminator = if d < kept { "scf.reduce" } else { "scf.yield" };
        block.append_operation(
            OperationBuilder::new(terminator, location)
                .build()
                .expect("internal error: loop terminator"),
        );
        let region = Region::new();
        region.append_block(block);
        let builder = if d < kept {
            OperationBuilder::new("scf.parallel", location)
                .add_operands(&[lower(d), upper(d), step(d)])
                .add_attributes(&[(
                    melior::ir::Identifier::new(context, "operandSegmentSizes"),
                    DenseI32ArrayAttribute::new(context, &[1, 1, 1, 0]).into(),
                )])
        } else {
            OperationBuilder::new("scf.for", location).add_operands(&[lower(d), upper(d), step(d)])
        };
        let new_loop = builder
            .add_regions([region])
            .build()
            .expect("internal error: loop");
        let new_loop = new_loop.into_raw();
        unsafe {
            match insert_before {
                Some(before) => {
                    mlir_sys::mlirBlockInsertOwnedOperationBefore(insert_into, before, new_loop)
                }
                None => {
                    let terminator = mlir_sys::mlirBlockGetTerminator(insert_into);
                    mlir_sys::mlirBlockInsertOwnedOperationBefore(insert_into, terminator, new_loop)
                }
            }
        }
        let inner = region_block(new_loop, 0);
        new_indices.push(block_arguments(inner)[0]);
        insert_into = inner;
        insert_before = None;
    }
    // Move the body's ops (all but its `scf.reduce`) before the innermost terminator.
    let innermost_terminator = unsafe { mlir_sys::mlirBlockGetTerminator(insert_into) };
    for operation in block_ops(body) {
        if unsafe {
            mlir_sys::mlirOperationEqual(operation, mlir_sys::mlirBlockGetTerminator(body))
        } {
            continue;
        }
        unsafe { mlir_sys::mlirOperationMoveBefore(operation, innermost_terminator) };
    }
    for (old, new) in old_indices.iter().zip(&new_indices) {
        unsafe { mlir_sys::mlirValueReplaceAllUsesOfWith(*old, *new) };
    }
    unsafe { mlir_sys::mlirOperationDestroy(parallel) };
}
