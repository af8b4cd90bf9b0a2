//! `parallel-loops-outside`: orders each `linalg.generic`'s loops parallel first, reductions
//! last, before the threaded lowering.
//!
//! Runs on: `builtin.module`, on memrefs, before `convert-linalg-to-parallel-loops` (threaded
//!          modules only).
//! Input:   `linalg.generic` ops.
//! Output:  the same ops; in one whose loops mix parallel and reduction iterators with a
//!          reduction before a parallel loop (a sum over the leading axis, a contraction left
//!          as loops), the loop dimensions are renumbered so that the parallel ones come
//!          first, in their order, then the reductions, in theirs: the indexing maps and the
//!          iterator list are permuted alike, so every op computes what it did.
//! Keeps:   ops whose body reads loop indices (`linalg.index`), which name dimensions.
//!
//! `convert-linalg-to-parallel-loops` makes one `scf.parallel` per run of parallel loops, in
//! loop order. A reduction before a parallel loop would put that `scf.parallel` inside an
//! `scf.for`: one OpenMP parallel region per step of the reduction. Parallel first, it is one
//! region around the whole op.

use super::ir::{block_ops, op_name, ops_named, region_block};
use melior::{
    ir::{OperationRef, operation::OperationLike},
    pass::{ExternalPass, Pass},
};
use mlir_sys::{MlirAttribute, MlirOperation};

static PASS_ID: super::PassId = super::PassId;

/// Creates the `parallel-loops-outside` pass.
pub fn create() -> Pass {
    super::module_pass(
        &PASS_ID,
        "parallel-loops-outside",
        "Order linalg.generic loops parallel first, reductions last",
        run,
    )
}

fn run(module: OperationRef<'_, '_>, _pass: ExternalPass<'_>) {
    for generic in ops_named(module.to_raw(), "linalg.generic") {
        reorder(generic);
    }
}

/// Renumbers the loops of `generic` parallel first, if a reduction comes before a parallel
/// loop and the body reads no loop index.
fn reorder(generic: MlirOperation) {
    let reads_index = block_ops(region_block(generic, 0))
        .iter()
        .any(|op| op_name(*op) == "linalg.index");
    let Some(iterators) = attribute(generic, "iterator_types") else {
        return;
    };
    let Some(maps) = attribute(generic, "indexing_maps") else {
        return;
    };
    let count = unsafe { mlir_sys::mlirArrayAttrGetNumElements(iterators) };
    let kinds: Vec<MlirAttribute> = (0..count)
        .map(|i| unsafe { mlir_sys::mlirArrayAttrGetElement(iterators, i) })
        .collect();
    let is_reduction: Vec<bool> = kinds
        .iter()
        .map(|kind| text(*kind).contains("reduction"))
        .collect();
    let first_reduction = is_reduction.iter().position(|r| *r);
    let last_parallel = is_reduction.iter().rposition(|r| !*r);
    let ordered = match (first_reduction, last_parallel) {
        (Some(reduction), Some(parallel)) => reduction > parallel,
        _ => true,
    };
    if ordered || reads_index {
        return;
    }
    // The new position of each loop: parallel loops first, then reductions, each in order.
    let order: Vec<usize> = (0..is_reduction.len())
        .filter(|d| !is_reduction[*d])
        .chain((0..is_reduction.len()).filter(|d| is_reduction[*d]))
        .collect();
    let mut position = vec![0u32; order.len()];
    for (new, old) in order.iter().enumerate() {
        position[*old] = new as u32;
    }
    unsafe {
        let context = mlir_sys::mlirOperationGetContext(generic);
        // Substitutes loop `d` by loop `position[d]` in a map's results.
        let rename = mlir_sys::mlirAffineMapPermutationGet(
            context,
            position.len() as isize,
            position.as_mut_ptr(),
        );
        let new_maps: Vec<MlirAttribute> = (0..mlir_sys::mlirArrayAttrGetNumElements(maps))
            .map(|i| {
                let map =
                    mlir_sys::mlirAffineMapAttrGetValue(mlir_sys::mlirArrayAttrGetElement(maps, i));
                let mut results: Vec<mlir_sys::MlirAffineExpr> = (0
                    ..mlir_sys::mlirAffineMapGetNumResults(map))
                    .map(|r| {
                        mlir_sys::mlirAffineExprCompose(
                            mlir_sys::mlirAffineMapGetResult(map, r),
                            rename,
                        )
                    })
                    .collect();
                mlir_sys::mlirAffineMapAttrGet(mlir_sys::mlirAffineMapGet(
                    context,
                    mlir_sys::mlirAffineMapGetNumDims(map),
                    mlir_sys::mlirAffineMapGetNumSymbols(map),
                    results.len() as isize,
                    results.as_mut_ptr(),
                ))
            })
            .collect();
        let new_kinds: Vec<MlirAttribute> = order.iter().map(|old| kinds[*old]).collect();
        set_attribute(generic, "indexing_maps", array(context, new_maps));
        set_attribute(generic, "iterator_types", array(context, new_kinds));
    }
}

fn attribute(operation: MlirOperation, name: &str) -> Option<MlirAttribute> {
    unsafe { OperationRef::from_raw(operation) }
        .attribute(name)
        .ok()
        .map(|a| melior::ir::AttributeLike::to_raw(&a))
}

fn set_attribute(operation: MlirOperation, name: &str, value: MlirAttribute) {
    unsafe {
        mlir_sys::mlirOperationSetAttributeByName(
            operation,
            melior::StringRef::new(name).to_raw(),
            value,
        );
    }
}

fn array(context: mlir_sys::MlirContext, mut elements: Vec<MlirAttribute>) -> MlirAttribute {
    unsafe { mlir_sys::mlirArrayAttrGet(context, elements.len() as isize, elements.as_mut_ptr()) }
}

fn text(attribute: MlirAttribute) -> String {
    unsafe { melior::ir::Attribute::from_raw(attribute) }.to_string()
}
