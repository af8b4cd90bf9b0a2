//! The integration tests: one binary (each links MLIR), one module per kind of check.

mod conformance;
mod errors;
mod ir;
mod robustness;
