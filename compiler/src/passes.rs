//! The compiler's own passes, one file each. Upstream MLIR passes are named in `pipeline`.

pub mod fx_autodiff;
pub mod fx_dynamic_sizes;
pub mod fx_fold;
pub mod fx_to_linalg;
pub mod ir;
pub mod matmul_kernel;
pub mod parallel_loops_outside;
pub mod parallel_outer_loop;
pub mod result_buffers;
