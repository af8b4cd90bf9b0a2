//! The Ferrax compiler: Python + JAX source to fx, through linalg to native code.
//!
//! ## Source code layout
//!
//! - `syntax`: spans, lexer (Python indentation), parser, AST.
//! - `specialise`: the trace: runs the module's Python statically, emits fx for array work.
//! - `passes`: one file per pass (`fx_to_linalg`).
//! - `pipeline`: the stages as data (`STAGES`) and the pass pipelines between them.
//! - `backend`: LLVM translation and the JIT.
//! - `aot`: native code through LLVM, and the C side of compiled libraries.
//! - `cache`: compiled functions kept on disk between runs.
//! - `kernel_text`: the matmul kernel as MLIR; `kernels`: the kernel built with the compiler,
//!   which JIT-compiled code calls.
//! - `eager`: an op-by-op interpreter of fx (`ferrax bench --eager`).
//! - `diagnostic`: user errors with spans.

pub mod aot;
pub mod backend;
pub mod cache;
pub mod diagnostic;
pub mod eager;
pub mod kernel_text;
pub mod kernels;
pub mod passes;
pub mod pipeline;
pub mod session;
pub mod specialise;
pub mod syntax;
pub mod vector_math;
