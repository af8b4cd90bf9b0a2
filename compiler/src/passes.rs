//! The compiler's own passes, one file each. Upstream MLIR passes are named in `pipeline`.

pub mod elementwise_runs;
pub mod fresh_empty_tensors;
pub mod fx_autodiff;
pub mod fx_dynamic_sizes;
pub mod fx_fold;
pub mod fx_to_linalg;
pub mod ir;
pub mod matmul_kernel;
pub mod parallel_outer_loop;
pub mod result_buffers;
pub mod scalar_small_loops;

/// The identity of one external pass: each pass has a `static` of its own.
#[repr(align(8))]
pub struct PassId;

/// An external pass on `builtin.module` that calls `run`, named `name` (also its pipeline
/// argument).
pub fn module_pass(
    id: &'static PassId,
    name: &str,
    description: &str,
    run: fn(melior::ir::OperationRef<'_, '_>, melior::pass::ExternalPass<'_>),
) -> melior::pass::Pass {
    melior::pass::create_external(
        run,
        melior::ir::r#type::TypeId::create(id),
        name,
        name,
        description,
        "builtin.module",
        &[],
    )
}
