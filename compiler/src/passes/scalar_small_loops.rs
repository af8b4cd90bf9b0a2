//! `scalar-small-loops`: asks LLVM not to vectorise loop nests too small to gain from it.
//!
//! Runs on: `builtin.module`, after the `linalg` ops became `scf` loops, before
//!          `convert-scf-to-cf`.
//! Input:   `scf.for` loops.
//! Output:  the same; every `scf.for` of an outermost loop nest whose bounds are constants and
//!          whose iterations number fewer than `SMALL_NEST` carries
//!          `loop_annotation = #llvm.loop_annotation<vectorize = <disable = true>>`, which the
//!          lowering to the LLVM dialect keeps on the loop's back edge and the translation
//!          makes `llvm.loop.vectorize.enable` false.
//!
//! LLVM vectorises each loop with a vector body, a remainder loop and run-time checks; for a
//! nest of a few hundred iterations (the `128 x 10` logits of the MLP step, a bias of 512)
//! that costs more compile time than the vector code saves at run time.

use super::ir::{enclosed_by, nest_iterations, ops_named};
use melior::{
    ir::{Attribute, AttributeLike, OperationRef, operation::OperationLike},
    pass::{ExternalPass, Pass},
};

static PASS_ID: super::PassId = super::PassId;

/// Loop nests with fewer iterations than this stay scalar.
pub const SMALL_NEST: u64 = 2048;

/// Creates the `scalar-small-loops` pass.
pub fn create() -> Pass {
    super::module_pass(
        &PASS_ID,
        "scalar-small-loops",
        "Keep LLVM from vectorising small loop nests",
        run,
    )
}

fn run(module: OperationRef<'_, '_>, _pass: ExternalPass<'_>) {
    let context_ref = module.context();
    // Safety: `context_ref` outlives every use of `context` in this function.
    let context = unsafe { context_ref.to_ref() };
    let Some(scalar) = Attribute::parse(
        context,
        "#llvm.loop_annotation<vectorize = <disable = true>>",
    ) else {
        return;
    };
    for outer in ops_named(module.to_raw(), "scf.for") {
        if enclosed_by(outer, &["scf.for", "scf.parallel", "scf.while"])
            || nest_iterations(outer).is_none_or(|n| n >= SMALL_NEST)
        {
            continue;
        }
        for inner in ops_named(outer, "scf.for") {
            unsafe {
                mlir_sys::mlirOperationSetAttributeByName(
                    inner,
                    melior::StringRef::new("loop_annotation").to_raw(),
                    scalar.to_raw(),
                );
            }
        }
    }
}
