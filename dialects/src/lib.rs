//! The `fx` dialect: its IRDL definition, loaded into an MLIR context at start, and typed
//! builders for its ops.

pub mod ad;
pub mod fx;

use melior::{
    Context,
    dialect::DialectRegistry,
    ir::Module,
    utility::{load_irdl_dialects, register_all_dialects, register_all_llvm_translations},
};

/// The IRDL text of the dialect (`fx.irdl.mlir`).
pub const FX_IRDL: &str = include_str!("../fx.irdl.mlir");

/// The upstream dialects the compiler builds ops of, loaded up front; the others are
/// registered and load when a pass or the parser needs them. (Loading every registered
/// dialect took 6 of the 8 ms a context cost.)
const DIALECTS: &[&str] = &[
    "builtin",
    "func",
    "arith",
    "math",
    "tensor",
    "linalg",
    "scf",
    "memref",
    "bufferization",
    "vector",
    "llvm",
    "omp",
    "cf",
    "affine",
];

/// Creates a context with every upstream dialect registered (`DIALECTS` loaded), the LLVM
/// translations and `fx` loaded.
pub fn create_context() -> Context {
    let registry = DialectRegistry::new();
    register_all_dialects(&registry);
    let context = Context::new();
    context.append_dialect_registry(&registry);
    for name in DIALECTS {
        context.get_or_load_dialect(name);
    }
    register_all_llvm_translations(&context);
    // The `ad` requests are unregistered ops (see `ad`).
    context.set_allow_unregistered_dialects(true);
    load(&context);
    context
}

/// Loads the `fx` dialect into `context`.
pub fn load(context: &Context) {
    let module = Module::parse(context, FX_IRDL).expect("fx.irdl.mlir parses");
    assert!(load_irdl_dialects(&module), "fx.irdl.mlir loads");
    // The loaded dialect's verifiers are built from this module; keep it for the process.
    std::mem::forget(module);
}
