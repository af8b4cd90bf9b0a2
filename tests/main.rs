//! The integration tests: one binary (each links MLIR), one module per kind of check.

mod aot;
mod cache;
mod conformance;
mod errors;
mod gradients;
mod ir;
mod robustness;
