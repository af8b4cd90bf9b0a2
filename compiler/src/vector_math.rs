//! Vector math: lets LLVM's loop vectoriser call glibc's vector math library (libmvec)
//! where a vectorised loop calls a libm function, 16 float32 or 8 float64 lanes a call on
//! AVX-512 hosts, 8 or 4 on AVX2 hosts (tanh on 1M float32: 8.1 → 0.25 ms on two threads).
//!
//! Applies to: a module at the LLVM dialect (`llvm-mlir`) compiled for this host, by the JIT
//!          or into the cache (`Session::prepare`); not libraries built for a target CPU,
//!          whose callers link libm only.
//! Input:   `llvm.func` declarations of libm functions (from `convert-math-to-libm`).
//! Output:  the same; each declaration of a function that libmvec has carries LLVM's
//!          `vector-function-abi-variant` attribute, which names the function's vector
//!          variants; the variants are declared, and kept in `llvm.compiler.used` (LLVM
//!          drops unused declarations before the vectoriser runs, and the vectoriser calls
//!          only declared variants). The vectoriser calls a variant where it vectorises a
//!          loop that calls the function; the scalar function stays for the remainder and
//!          for loops it does not vectorise. The JIT loads libmvec
//!          (`backend::load_vector_math`); the cache links it.
//! Keeps:   every other op.
//!
//! libmvec's functions are within 4 ulp (glibc's manual); measured here on 400,000 points
//! each: log 0.7, log1p 1.4, expm1 1.9, tanh 1.3, atan 1.0, asin 3.0, erf 4.0, with NaN and
//! infinities as libm's.

use crate::passes::ir::{block_ops, op_name};
use melior::ir::{
    Attribute, BlockLike, BlockRef, Module, RegionLike,
    attribute::StringAttribute,
    operation::{OperationLike, OperationMutLike, OperationRefMut},
};

/// The prefix of every vector variant's name (the vector function ABI's mangling).
pub const VARIANT_PREFIX: &str = "_ZGV";

/// libm's functions of one argument whose libmvec variants are used (glibc 2.35 and later has
/// them in every width), by their float64 names (float32 adds `f`). Not sin, cos and tan:
/// libmvec's sinf returned 1.0000001 for an argument near 1000 (and its results differ from
/// libm's, which are correctly rounded, in the last bit often enough to move an `argmax`),
/// where libm's scalar calls already beat JAX's `sin` (3.4 against 4.1 ms on 1M float32) and
/// give its bits (`sin` and `cos` of 700,000 arguments up to 100,000 matched JAX's exactly).
const UNARY: &[&str] = &[
    "acos", "acosh", "asin", "asinh", "atan", "atanh", "cbrt", "cosh", "erf", "erfc", "exp",
    "exp10", "exp2", "expm1", "log", "log10", "log1p", "log2", "sinh", "tanh",
];

/// libm's functions of two arguments that libmvec has.
const BINARY: &[&str] = &["atan2", "hypot", "pow"];

/// The vector widths of this host, widest first: the vector function ABI's letter for the
/// instruction set, and the bits of a vector.
pub fn host_widths() -> Vec<(char, u32)> {
    let mut widths = vec![];
    if std::arch::is_x86_feature_detected!("avx512f") {
        widths.push(('e', 512));
    }
    if std::arch::is_x86_feature_detected!("avx2") {
        widths.push(('d', 256));
    }
    widths
}

/// The arity and element type of libm's `name`, when libmvec has variants of it.
fn signature(name: &str) -> Option<(usize, &'static str)> {
    let known = |base: &str| {
        if UNARY.contains(&base) {
            Some(1)
        } else if BINARY.contains(&base) {
            Some(2)
        } else {
            None
        }
    };
    if let Some(arity) = known(name) {
        return Some((arity, "f64"));
    }
    let base = name.strip_suffix('f')?;
    known(base).map(|arity| (arity, "f32"))
}

/// Names the vector variants, in the `widths` given, of the libm functions `module` declares.
pub fn add_variants(module: &Module, widths: &[(char, u32)]) -> Result<(), String> {
    if widths.is_empty() {
        return Ok(());
    }
    let context_ref = module.context();
    // Safety: `context_ref` outlives every use of `context` in this function.
    let context = unsafe { context_ref.to_ref() };
    let body = module.body().to_raw();
    // The variants' declarations, and every variant's name.
    let mut declarations = String::new();
    let mut variants = vec![];
    for raw in block_ops(body) {
        if op_name(raw) != "llvm.func" {
            continue;
        }
        // Safety: `raw` is an op of the module's body, alive while the module is.
        let mut function = unsafe { OperationRefMut::from_raw(raw) };
        let is_declaration = function.region(0).is_ok_and(|r| r.first_block().is_none());
        let name = function
            .attribute("sym_name")
            .ok()
            .and_then(|a| StringAttribute::try_from(a).ok())
            .map(|a| a.value().to_string())
            .unwrap_or_default();
        let Some((arity, element)) = signature(&name).filter(|_| is_declaration) else {
            continue;
        };
        let mut mappings = vec![];
        for &(isa, bits) in widths {
            let lanes = bits / if element == "f32" { 32 } else { 64 };
            let variant = format!("{VARIANT_PREFIX}{isa}N{lanes}{}_{name}", "v".repeat(arity));
            mappings.push(format!("{variant}({variant})"));
            let vector = format!("vector<{lanes}x{element}>");
            let arguments = vec![vector.as_str(); arity].join(", ");
            declarations.push_str(&format!(
                "llvm.func @{variant}({arguments}) -> {vector} attributes {{memory_effects = \
                 #llvm.memory_effects<other = none, argMem = none, inaccessibleMem = none, \
                 errnoMem = none, targetMem0 = none, targetMem1 = none>, \
                 sym_visibility = \"private\"}}\n"
            ));
            variants.push(variant);
        }
        let passthrough = format!(
            "[[\"vector-function-abi-variant\", \"{}\"]]",
            mappings.join(",")
        );
        let attribute = Attribute::parse(context, &passthrough)
            .ok_or_else(|| format!("cannot name the vector variants of `{name}`"))?;
        function.set_attribute("passthrough", attribute);
    }
    if variants.is_empty() {
        return Ok(());
    }
    // LLVM drops declarations nothing calls before the vectoriser runs, and the vectoriser
    // calls only variants the module declares: `llvm.compiler.used` keeps them.
    let array = format!("!llvm.array<{} x ptr>", variants.len());
    let mut used = format!(
        "llvm.mlir.global appending @llvm.compiler.used() {{section = \"llvm.metadata\"}} \
         : {array} {{\n  %array = llvm.mlir.undef : {array}\n"
    );
    for (i, variant) in variants.iter().enumerate() {
        used.push_str(&format!(
            "  %p{i} = llvm.mlir.addressof @{variant} : !llvm.ptr\n  %a{i} = llvm.insertvalue \
             %p{i}, %{} [{i}] : {array}\n",
            if i == 0 {
                String::from("array")
            } else {
                format!("a{}", i - 1)
            }
        ));
    }
    used.push_str(&format!(
        "  llvm.return %a{} : {array}\n}}\n",
        variants.len() - 1
    ));
    let parsed = Module::parse(context, &format!("{declarations}{used}"))
        .ok_or("cannot declare the vector variants")?;
    // Safety: the module's body, alive while the module is.
    let block = unsafe { BlockRef::from_raw(body) };
    for operation in block_ops(parsed.body().to_raw()) {
        // Safety: the parsed module owns the op; its copy belongs to `block` from here.
        block.append_operation(unsafe {
            melior::ir::Operation::from_raw(mlir_sys::mlirOperationClone(operation))
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libm_declarations_name_their_variants_and_others_do_not() {
        let context = ferrax_dialects::create_context();
        let module = Module::parse(
            &context,
            "module {
               llvm.func @logf(f32) -> f32
               llvm.func @pow(f64, f64) -> f64
               llvm.func @sinf(f32) -> f32
               llvm.func @frexpf(f32) -> f32
               llvm.func @tanhf(%x: f32) -> f32 {
                 llvm.return %x : f32
               }
             }",
        )
        .expect("parses");
        add_variants(&module, &[('e', 512), ('d', 256)]).expect("adds");
        assert!(module.as_operation().verify());
        let text = module.as_operation().to_string();
        for expected in [
            "\"_ZGVeN16v_logf(_ZGVeN16v_logf),_ZGVdN8v_logf(_ZGVdN8v_logf)\"",
            "\"_ZGVeN8vv_pow(_ZGVeN8vv_pow),_ZGVdN4vv_pow(_ZGVdN4vv_pow)\"",
            "llvm.func @_ZGVeN16v_logf(vector<16xf32>) -> vector<16xf32>",
            "llvm.func @_ZGVdN4vv_pow(vector<4xf64>, vector<4xf64>) -> vector<4xf64>",
            "@llvm.compiler.used() {addr_space = 0 : i32, section = \"llvm.metadata\"} : !llvm.array<4 x ptr>",
        ] {
            assert!(text.contains(expected), "no {expected} in\n{text}");
        }
        // sinf's variant is not used, frexpf has none, and tanhf is defined here, not libm's.
        for absent in ["_sinf", "_frexpf", "_tanhf"] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
        assert_eq!(text.matches("passthrough").count(), 2, "{text}");
    }

    #[test]
    fn nothing_changes_without_vector_widths_or_libm_calls() {
        let context = ferrax_dialects::create_context();
        let source = "module {\n  llvm.func @logf(f32) -> f32\n}\n";
        let module = Module::parse(&context, source).expect("parses");
        let before = module.as_operation().to_string();
        add_variants(&module, &[]).expect("adds");
        assert_eq!(module.as_operation().to_string(), before);
        let module =
            Module::parse(&context, "module {\n  llvm.func @f(f32) -> f32\n}\n").expect("parses");
        let before = module.as_operation().to_string();
        add_variants(&module, &[('e', 512)]).expect("adds");
        assert_eq!(module.as_operation().to_string(), before);
    }
}
