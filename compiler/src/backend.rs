//! Running compiled code: the JIT (`ExecutionEngine`) over a module at `llvm-mlir`.
//!
//! Calling convention: the entry takes one strided memref descriptor per array input, then
//! one per result (destination-passing style), through its `_mlir_ciface_` wrapper.

use ferrax_runtime::Array;
use melior::{ExecutionEngine, ir::Module};

/// JIT-compiles `module` and calls `function` on `inputs`, writing into fresh arrays shaped
/// like `outputs`.
pub fn run_jit(
    module: &Module,
    function: &str,
    inputs: &[Array],
    outputs: Vec<Array>,
) -> Result<Vec<Array>, String> {
    let engine = ExecutionEngine::new(module, 2, &[], false, false);
    let mut outputs = outputs;
    let mut descriptors: Vec<Vec<i64>> = vec![];
    for input in inputs {
        descriptors.push(descriptor(input.data.as_ptr() as i64, &input.shape));
    }
    for output in outputs.iter_mut() {
        descriptors.push(descriptor(output.data.as_mut_ptr() as i64, &output.shape));
    }
    let mut pointers: Vec<*mut i64> = descriptors.iter_mut().map(|d| d.as_mut_ptr()).collect();
    let mut arguments: Vec<*mut ()> = pointers
        .iter_mut()
        .map(|p| p as *mut *mut i64 as *mut ())
        .collect();
    // The C API calls the `_mlir_ciface_` wrapper of `function`.
    // Safety: each argument points at a descriptor of a live buffer of the entry's shape.
    unsafe { engine.invoke_packed(function, &mut arguments) }
        .map_err(|e| format!("calling `{function}` failed: {e}"))?;
    Ok(outputs)
}

/// `{allocated, aligned, offset, sizes[rank], strides[rank]}` of a row-major buffer.
fn descriptor(pointer: i64, shape: &[usize]) -> Vec<i64> {
    let mut words = vec![pointer, pointer, 0];
    words.extend(shape.iter().map(|d| *d as i64));
    let mut strides = vec![1i64; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1] as i64;
    }
    words.extend(strides);
    words
}
