//! Ahead-of-time output: native code through LLVM (inkwell), and the C side of a library.
//!
//! A library entry `NAME` is the traced function `ferrax_impl_NAME` (its symbols are hidden)
//! and, in a generated C file, `int NAME(int64_t size..., const T *input..., T *output...)`
//! with its shapes in the header, `NAME__ferrax_packed(void **, const int64_t *)` and
//! `NAME__ferrax_signature()` for the runtime (see `ferrax_runtime::library`). The C file and the linking go through the system's C
//! compiler (`cc`).

use crate::specialise::{ArrayType, DType};
use inkwell::{
    OptimizationLevel,
    context::Context,
    module::Module as LlvmModule,
    passes::PassBuilderOptions,
    targets::{CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetMachine},
    values::GlobalValue,
};
use melior::ir::Module;
use std::fmt::Write as _;
use std::path::Path;

/// Native code to emit.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum NativeKind {
    Assembly,
    Object,
}

/// How much LLVM optimises native code.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Optimisation {
    /// `-O2`: libraries, whose code is compiled once and run many times.
    Full,
    /// The JIT's: the passes our loops need (`JIT_PASSES`) and code generation at `-O1`.
    Jit,
    /// No optimisation, fast code generation: huge modules (an unrolled training loop), on
    /// which optimising code generation takes tens of seconds.
    Minimal,
}

/// The JIT's LLVM passes. The loops that reach LLVM are fused and bufferised already: they
/// need cleaning up (`sroa` to `instcombine`), rotating into the form the loop vectoriser
/// reads, invariants hoisted, then vectorising. `default<O1>` spends most of its time on
/// inlining and interprocedural passes that find nothing to do in our modules.
const JIT_PASSES: &str = "function(sroa,early-cse,instcombine<max-iterations=1;no-verify-fixpoint>,simplifycfg,\
loop-mssa(licm<allowspeculation>,loop-rotate,licm<allowspeculation>),simplifycfg,\
instcombine<max-iterations=1;no-verify-fixpoint>,loop(indvars),loop-vectorize,\
instcombine<max-iterations=1;no-verify-fixpoint>,simplifycfg)";

/// An array parameter of a library entry. A negative dimension is a size known only at run
/// time (see `size_dim`).
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub ty: ArrayType,
}

/// A library entry: the C name, the sizes its caller gives (`n` of `f32[n]`), its inputs
/// and outputs, and the inputs whose buffers may be an output's (`donate_argnums`).
#[derive(Clone, Debug)]
pub struct EntryInfo {
    pub name: String,
    pub sizes: Vec<String>,
    pub inputs: Vec<Param>,
    pub outputs: Vec<Param>,
    pub donated: Vec<usize>,
}

/// The dimension that stands for size `k` of an entry.
pub fn size_dim(k: usize) -> i64 {
    -1 - k as i64
}

/// Which size a dimension stands for, if it is not a number.
pub fn dim_size(dim: i64) -> Option<usize> {
    (dim < 0).then(|| (-1 - dim) as usize)
}

/// A dimension as C or a signature writes it: the number, or the size's name.
fn dim_text(dim: i64, sizes: &[String]) -> String {
    match dim_size(dim) {
        Some(k) => sizes[k].clone(),
        None => dim.to_string(),
    }
}

/// The symbol of the compiled function behind entry `name`.
pub fn implementation_name(name: &str) -> String {
    format!("ferrax_impl_{name}")
}

/// The CPUs `--target-cpu` accepts: LLVM 22's x86 CPUs that can run 64-bit code (LLVM aborts
/// on the others, and warns and ignores an unknown name); `llc -mcpu=help` lists them.
pub const TARGET_CPUS: &[&str] = &[
    "alderlake",
    "amdfam10",
    "arrowlake",
    "arrowlake-s",
    "arrowlake_s",
    "athlon-fx",
    "athlon64",
    "athlon64-sse3",
    "atom",
    "atom_sse4_2",
    "atom_sse4_2_movbe",
    "barcelona",
    "bdver1",
    "bdver2",
    "bdver3",
    "bdver4",
    "bonnell",
    "broadwell",
    "btver1",
    "btver2",
    "cannonlake",
    "cascadelake",
    "clearwaterforest",
    "cooperlake",
    "core-avx-i",
    "core-avx2",
    "core2",
    "core_2_duo_sse4_1",
    "core_2_duo_ssse3",
    "core_2nd_gen_avx",
    "core_3rd_gen_avx",
    "core_4th_gen_avx",
    "core_4th_gen_avx_tsx",
    "core_5th_gen_avx",
    "core_5th_gen_avx_tsx",
    "core_aes_pclmulqdq",
    "core_i7_sse4_2",
    "corei7",
    "corei7-avx",
    "diamondrapids",
    "emeraldrapids",
    "generic",
    "goldmont",
    "goldmont-plus",
    "goldmont_plus",
    "gracemont",
    "grandridge",
    "graniterapids",
    "graniterapids-d",
    "graniterapids_d",
    "haswell",
    "icelake-client",
    "icelake-server",
    "icelake_client",
    "icelake_server",
    "ivybridge",
    "k8",
    "k8-sse3",
    "knl",
    "knm",
    "lunarlake",
    "meteorlake",
    "mic_avx512",
    "nehalem",
    "nocona",
    "novalake",
    "opteron",
    "opteron-sse3",
    "pantherlake",
    "penryn",
    "raptorlake",
    "rocketlake",
    "sandybridge",
    "sapphirerapids",
    "sierraforest",
    "silvermont",
    "skx",
    "skylake",
    "skylake-avx512",
    "skylake_avx512",
    "slm",
    "tigerlake",
    "tremont",
    "westmere",
    "wildcatlake",
    "x86-64",
    "x86-64-v2",
    "x86-64-v3",
    "x86-64-v4",
    "znver1",
    "znver2",
    "znver3",
    "znver4",
    "znver5",
];

/// Native code, and what it calls that the code linking it must provide.
pub struct Native {
    pub code: Vec<u8>,
    /// `memrefCopy` (see `crate::backend`).
    pub calls_memref_copy: bool,
    /// The OpenMP runtime.
    pub calls_openmp: bool,
    /// libmvec's vector variants of libm functions (`crate::vector_math`).
    pub calls_vector_math: bool,
    /// The prebuilt matmul kernels (`crate::kernels`).
    pub calls_kernels: bool,
}

/// Whether `module` declares (without defining) a function whose name starts with `prefix`.
fn declares(module: &LlvmModule, prefix: &str) -> bool {
    let mut function = module.get_first_function();
    while let Some(f) = function {
        if f.count_basic_blocks() == 0 && f.get_name().to_bytes().starts_with(prefix.as_bytes()) {
            return true;
        }
        function = f.get_next_function();
    }
    false
}

/// Translates the modules (each at `llvm-mlir`) to one LLVM module, hides every symbol
/// they define, adds an exported `NAME__ferrax_memrefs(void **args)` for each of `packed`
/// (the compiled function `NAME`'s C interface, called as MLIR's packed wrappers are),
/// optimises for `cpu` (the host when `None`) and emits position-independent code.
pub fn emit_native(
    modules: &[&Module],
    packed: &[&str],
    cpu: Option<&str>,
    kind: NativeKind,
    optimisation: Optimisation,
) -> Result<Native, String> {
    crate::backend::configure_llvm();
    Target::initialize_x86(&InitializationConfig::default());
    let context = Context::create();
    let mut linked: Option<LlvmModule> = None;
    for module in modules {
        // Safety: the module is alive and at the LLVM dialect; the LLVM context outlives the
        // translated module, which inkwell owns from here.
        let translated = unsafe {
            let raw = mlir_sys::mlirTranslateModuleToLLVMIR(
                module.as_operation().to_raw(),
                context.raw() as mlir_sys::LLVMContextRef,
            );
            if raw.is_null() {
                return Err(String::from("LLVM could not translate the module"));
            }
            LlvmModule::new(raw as inkwell::llvm_sys::prelude::LLVMModuleRef)
        };
        match &linked {
            None => linked = Some(translated),
            Some(first) => first
                .link_in_module(translated)
                .map_err(|e| e.to_string())?,
        }
    }
    let module = linked.ok_or("no entry to compile")?;
    let mut function = module.get_first_function();
    while let Some(f) = function {
        if f.count_basic_blocks() > 0 {
            f.as_global_value()
                .set_visibility(inkwell::GlobalVisibility::Hidden);
        }
        function = f.get_next_function();
    }
    let mut global = module.get_first_global();
    while let Some(g) = global {
        hide(g);
        global = g.get_next_global();
    }
    for name in packed {
        packed_wrapper(&context, &module, name)?;
    }
    let calls_memref_copy = declares(&module, "memrefCopy");
    let calls_openmp = declares(&module, "__kmpc_") || declares(&module, "omp_");
    let calls_vector_math = declares(&module, crate::vector_math::VARIANT_PREFIX);
    let calls_kernels = declares(&module, crate::kernel_text::KERNEL_PREFIX);
    let triple = TargetMachine::get_default_triple();
    let target = Target::from_triple(&triple).map_err(|e| e.to_string())?;
    let (cpu, features) = match cpu {
        Some(cpu) if !TARGET_CPUS.contains(&cpu) => {
            return Err(format!("`{cpu}` is not a 64-bit x86 CPU that LLVM knows"));
        }
        Some(cpu) => (cpu.to_string(), String::new()),
        None => (
            TargetMachine::get_host_cpu_name().to_string(),
            TargetMachine::get_host_cpu_features().to_string(),
        ),
    };
    let (passes, level) = match optimisation {
        Optimisation::Full => ("default<O2>", OptimizationLevel::Default),
        Optimisation::Jit => (JIT_PASSES, OptimizationLevel::Less),
        Optimisation::Minimal => ("default<O0>", OptimizationLevel::None),
    };
    let machine = target
        .create_target_machine(
            &triple,
            &cpu,
            &features,
            level,
            RelocMode::PIC,
            CodeModel::Default,
        )
        .ok_or_else(|| format!("LLVM has no target machine for CPU `{cpu}`"))?;
    module.set_triple(&triple);
    module.set_data_layout(&machine.get_target_data().get_data_layout());
    module
        .run_passes(passes, &machine, PassBuilderOptions::create())
        .map_err(|e| e.to_string())?;
    let file_type = match kind {
        NativeKind::Assembly => FileType::Assembly,
        NativeKind::Object => FileType::Object,
    };
    let buffer = machine
        .write_to_memory_buffer(&module, file_type)
        .map_err(|e| e.to_string())?;
    Ok(Native {
        code: buffer.as_slice().to_vec(),
        calls_memref_copy,
        calls_openmp,
        calls_vector_math,
        calls_kernels,
    })
}

/// The suffix of the wrappers `emit_native` adds: unlike a library's `NAME__ferrax_packed`
/// (plain data pointers and sizes), they take memref descriptors.
pub const MEMREF_WRAPPER: &str = "__ferrax_memrefs";

/// `NAME__ferrax_memrefs(void **args)`: calls `_mlir_ciface_NAME(*args[0], *args[1], ...)`;
/// like MLIR's packed wrappers, `args[i]` points at the argument (a descriptor's address).
fn packed_wrapper<'c>(
    context: &'c Context,
    module: &LlvmModule<'c>,
    name: &str,
) -> Result<(), String> {
    let target = module
        .get_function(&format!("_mlir_ciface_{name}"))
        .ok_or_else(|| format!("no compiled function `{name}`"))?;
    let pointer = context.ptr_type(inkwell::AddressSpace::default());
    let wrapper = module.add_function(
        &format!("{name}{MEMREF_WRAPPER}"),
        context.void_type().fn_type(&[pointer.into()], false),
        None,
    );
    let builder = context.create_builder();
    builder.position_at_end(context.append_basic_block(wrapper, "entry"));
    let list = wrapper
        .get_nth_param(0)
        .ok_or("a wrapper without its parameter")?
        .into_pointer_value();
    let mut arguments = vec![];
    for index in 0..target.count_params() {
        let offset = context.i64_type().const_int(u64::from(index), false);
        // Safety: the caller passes one pointer per parameter.
        let slot = unsafe { builder.build_gep(pointer, list, &[offset], "slot") }
            .map_err(|e| e.to_string())?;
        let address = builder
            .build_load(pointer, slot, "address")
            .map_err(|e| e.to_string())?
            .into_pointer_value();
        let argument = builder
            .build_load(pointer, address, "argument")
            .map_err(|e| e.to_string())?;
        arguments.push(argument.into());
    }
    builder
        .build_call(target, &arguments, "")
        .map_err(|e| e.to_string())?;
    builder.build_return(None).map_err(|e| e.to_string())?;
    Ok(())
}

fn hide(global: GlobalValue) {
    if global.get_initializer().is_some() {
        global.set_visibility(inkwell::GlobalVisibility::Hidden);
    }
}

fn c_type(dtype: DType) -> &'static str {
    match dtype {
        DType::Bool => "bool",
        DType::I32 => "int32_t",
        DType::I64 => "int64_t",
        DType::F32 => "float",
        DType::F64 => "double",
    }
}

/// `f32[2, n]`.
fn describe(ty: &ArrayType, sizes: &[String]) -> String {
    let dims: Vec<String> = ty.shape.iter().map(|d| dim_text(*d, sizes)).collect();
    format!("{}[{}]", ty.dtype.short(), dims.join(", "))
}

/// `name(x: f32[n]) -> (f32[n], f32[])`.
fn comment(entry: &EntryInfo) -> String {
    let inputs: Vec<String> = entry
        .inputs
        .iter()
        .map(|p| format!("{}: {}", p.name, describe(&p.ty, &entry.sizes)))
        .collect();
    let outputs: Vec<String> = entry
        .outputs
        .iter()
        .map(|p| describe(&p.ty, &entry.sizes))
        .collect();
    let outputs = if outputs.len() == 1 {
        outputs[0].clone()
    } else {
        format!("({})", outputs.join(", "))
    };
    format!("{}({}) -> {outputs}", entry.name, inputs.join(", "))
}

fn prototype(entry: &EntryInfo) -> String {
    let mut params: Vec<String> = entry
        .sizes
        .iter()
        .map(|size| format!("int64_t {size}"))
        .collect();
    params.extend(
        entry
            .inputs
            .iter()
            .map(|p| format!("const {} *{}", c_type(p.ty.dtype), p.name)),
    );
    params.extend(
        entry
            .outputs
            .iter()
            .map(|p| format!("{} *{}", c_type(p.ty.dtype), p.name)),
    );
    let params = if params.is_empty() {
        String::from("void")
    } else {
        params.join(", ")
    };
    format!("int {}({params})", entry.name)
}

/// The C header declaring one function per entry.
pub fn header(library: &str, entries: &[EntryInfo]) -> String {
    let guard: String = library
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut text = format!(
        "/* {library}: compiled by Ferrax.\n * Each function takes the sizes named in its \
         shapes, then reads its inputs and writes its\n * outputs through pointers to \
         row-major arrays of the shapes below. It returns 0, or 1\n * (and does nothing) \
         when a pointer is NULL, a size is negative, or an input\n * overlaps an output \
         (only a donated input may) or two outputs overlap. */\n#ifndef FERRAX_{guard}_H\n#define FERRAX_{guard}_H\n\n\
         #include <stdbool.h>\n#include <stdint.h>\n\n#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n"
    );
    for entry in entries {
        let donated: String = entry
            .donated
            .iter()
            .map(|i| {
                format!(
                    "\n * {} is donated: it may be the buffer of an output.",
                    entry.inputs[*i].name
                )
            })
            .collect();
        let _ = writeln!(
            text,
            "/* {}{donated} */\n{};\n",
            comment(entry),
            prototype(entry)
        );
    }
    text.push_str("#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
    text
}

fn json_params(params: &[Param], sizes: &[String]) -> String {
    let items: Vec<String> = params
        .iter()
        .map(|p| {
            let dims: Vec<String> =
                p.ty.shape
                    .iter()
                    .map(|d| match dim_size(*d) {
                        Some(k) => format!("\\\"{}\\\"", sizes[k]),
                        None => d.to_string(),
                    })
                    .collect();
            format!(
                "{{\\\"name\\\": \\\"{}\\\", \\\"dtype\\\": \\\"{}\\\", \\\"shape\\\": [{}]}}",
                p.name,
                p.ty.dtype.name(),
                dims.join(", ")
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// The C wrappers of the entries (see the module documentation) and `memrefCopy`.
pub fn wrappers(entries: &[EntryInfo]) -> String {
    let mut text = String::from(
        "#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <stdlib.h>\n#include <string.h>\n\n\
         #define HIDDEN __attribute__((visibility(\"hidden\")))\n\n\
         typedef struct { void *allocated; void *aligned; int64_t offset; } memref_0;\n",
    );
    let mut ranks: Vec<usize> = entries
        .iter()
        .flat_map(|e| e.inputs.iter().chain(&e.outputs))
        .map(|p| p.ty.shape.len())
        .filter(|r| *r > 0)
        .collect();
    ranks.sort_unstable();
    ranks.dedup();
    for rank in ranks {
        let _ = writeln!(
            text,
            "typedef struct {{ void *allocated; void *aligned; int64_t offset; int64_t sizes[{rank}]; \
             int64_t strides[{rank}]; }} memref_{rank};"
        );
    }
    text.push_str(MEMREF_COPY);
    for entry in entries {
        let params: Vec<&Param> = entry.inputs.iter().chain(&entry.outputs).collect();
        let arguments: Vec<String> = params
            .iter()
            .map(|p| format!("memref_{} *", p.ty.shape.len()))
            .collect();
        let implementation = implementation_name(&entry.name);
        let _ = writeln!(
            text,
            "\nextern void _mlir_ciface_{implementation}({});\n\n{} {{",
            if arguments.is_empty() {
                String::from("void")
            } else {
                arguments.join(", ")
            },
            prototype(entry)
        );
        let checks: Vec<String> = params
            .iter()
            .map(|p| format!("{} == NULL", p.name))
            .chain(entry.sizes.iter().map(|size| format!("{size} < 0")))
            .collect();
        if !checks.is_empty() {
            let _ = writeln!(text, "    if ({}) return 1;", checks.join(" || "));
        }
        text.push_str(&aliasing(entry));
        for p in &params {
            let rank = p.ty.shape.len();
            let mut fields = format!("(void *){0}, (void *){0}, 0", p.name);
            if rank > 0 {
                let dims: Vec<String> =
                    p.ty.shape
                        .iter()
                        .map(|d| dim_text(*d, &entry.sizes))
                        .collect();
                let strides: Vec<String> = (0..rank)
                    .map(|d| {
                        let later = &dims[d + 1..];
                        if later.is_empty() {
                            String::from("1")
                        } else {
                            later.join(" * ")
                        }
                    })
                    .collect();
                let _ = write!(
                    fields,
                    ", {{{}}}, {{{}}}",
                    dims.join(", "),
                    strides.join(", ")
                );
            }
            let _ = writeln!(text, "    memref_{rank} d_{} = {{{fields}}};", p.name);
        }
        let pointers: Vec<String> = params.iter().map(|p| format!("&d_{}", p.name)).collect();
        let _ = writeln!(
            text,
            "    _mlir_ciface_{implementation}({});",
            pointers.join(", ")
        );
        for index in &entry.donated {
            let _ = writeln!(text, "    free({}_copy);", entry.inputs[*index].name);
        }
        text.push_str("    return 0;\n}\n");
        let unpacked: Vec<String> = (0..entry.sizes.len())
            .map(|i| format!("sizes[{i}]"))
            .chain((0..params.len()).map(|i| format!("pointers[{i}]")))
            .collect();
        let _ = writeln!(
            text,
            "\nint {0}__ferrax_packed(void **pointers, const int64_t *sizes) {{\n    \
             (void)pointers;\n    (void)sizes;\n    return {0}({1});\n}}",
            entry.name,
            unpacked.join(", ")
        );
        let names: Vec<String> = entry
            .sizes
            .iter()
            .map(|size| format!("\\\"{size}\\\""))
            .collect();
        let _ = writeln!(
            text,
            "\nconst char *{}__ferrax_signature(void) {{\n    return \"{{\\\"sizes\\\": [{}], \\\"inputs\\\": {}, \\\"outputs\\\": {}}}\";\n}}",
            entry.name,
            names.join(", "),
            json_params(&entry.inputs, &entry.sizes),
            json_params(&entry.outputs, &entry.sizes)
        );
    }
    text
}

/// The wrapper's checks that no input overlaps an output and no two outputs overlap, except
/// that a donated input may be an output's buffer: it is then copied first, so the compiled
/// code reads the copy.
fn aliasing(entry: &EntryInfo) -> String {
    if entry.outputs.is_empty() {
        return String::new();
    }
    let mut text = String::new();
    let bytes = |p: &Param| -> String {
        let dims: Vec<String> =
            p.ty.shape
                .iter()
                .map(|d| format!("(size_t){}", dim_text(*d, &entry.sizes)))
                .collect();
        let mut factors = dims;
        factors.push(format!("sizeof(*{})", p.name));
        factors.join(" * ")
    };
    for p in entry.inputs.iter().chain(&entry.outputs) {
        let _ = writeln!(text, "    size_t {}_bytes = {};", p.name, bytes(p));
    }
    for (index, output) in entry.outputs.iter().enumerate() {
        for other in &entry.outputs[index + 1..] {
            let _ = writeln!(
                text,
                "    if (overlap({0}, {0}_bytes, {1}, {1}_bytes)) return 1;",
                output.name, other.name
            );
        }
    }
    for (index, input) in entry.inputs.iter().enumerate() {
        let overlaps: Vec<String> = entry
            .outputs
            .iter()
            .map(|o| {
                format!(
                    "overlap({0}, {0}_bytes, {1}, {1}_bytes)",
                    input.name, o.name
                )
            })
            .collect();
        if entry.donated.contains(&index) {
            let _ = writeln!(
                text,
                "    void *{0}_copy = NULL;\n    if ({1}) {{\n        {0}_copy = malloc({0}_bytes);\n        \
                 if ({0}_copy == NULL) return 1;\n        memcpy({0}_copy, {0}, {0}_bytes);\n        \
                 {0} = {0}_copy;\n    }}",
                input.name,
                overlaps.join(" || ")
            );
        } else {
            let _ = writeln!(text, "    if ({}) return 1;", overlaps.join(" || "));
        }
    }
    text
}

/// MLIR's lowering of `memref.copy` for non-contiguous memrefs calls `memrefCopy`.
const MEMREF_COPY: &str = r#"
static int overlap(const void *a, size_t a_bytes, const void *b, size_t b_bytes) {
    const char *p = a, *q = b;
    return a_bytes > 0 && b_bytes > 0 && p < q + b_bytes && q < p + a_bytes;
}

typedef struct { int64_t rank; int64_t *descriptor; } unranked_memref;

HIDDEN void memrefCopy(int64_t element_size, unranked_memref *source, unranked_memref *target) {
    int64_t rank = source->rank;
    int64_t *s = source->descriptor, *t = target->descriptor;
    char *s_base = (char *)s[1], *t_base = (char *)t[1];
    int64_t count = 1;
    for (int64_t d = 0; d < rank; d++) count *= s[3 + d];
    int64_t index[16] = {0};
    if (rank > 16) return;
    for (int64_t n = 0; n < count; n++) {
        int64_t from = s[2], to = t[2];
        for (int64_t d = 0; d < rank; d++) {
            from += index[d] * s[3 + rank + d];
            to += index[d] * t[3 + rank + d];
        }
        memcpy(t_base + to * element_size, s_base + from * element_size, (size_t)element_size);
        for (int64_t d = rank - 1; d >= 0; d--) {
            if (++index[d] < s[3 + d]) break;
            index[d] = 0;
        }
    }
}
"#;

/// Compiles `memrefCopy` alone into `folder/memref_copy.o`; returns its path.
pub fn memref_copy_object(folder: &Path) -> Result<String, String> {
    let source = folder.join("memref_copy.c");
    let text = format!(
        "#include <stdint.h>\n#include <string.h>\n#define HIDDEN __attribute__((visibility(\"hidden\")))\n{MEMREF_COPY}"
    );
    std::fs::write(&source, text).map_err(|e| format!("cannot write {}: {e}", source.display()))?;
    let object = folder.join("memref_copy.o").display().to_string();
    cc(&[
        "-c",
        "-fPIC",
        "-O2",
        "-o",
        &object,
        &source.display().to_string(),
    ])?;
    Ok(object)
}

/// Runs the C compiler (`$CC`, or `cc`) with `args`.
pub fn cc(args: &[&str]) -> Result<(), String> {
    let compiler = std::env::var("CC").unwrap_or_else(|_| String::from("cc"));
    let output = std::process::Command::new(&compiler)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run the C compiler `{compiler}`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{compiler} {}` failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// Writes a library of `entries` (their native code is `object`) to `output`: a shared
/// library, or (`shared` false) an archive; and its C header beside it, named after
/// `output`'s stem (`libselu.so` → `libselu.h`). Returns the header's path.
pub fn write_library(
    output: &Path,
    shared: bool,
    object: &[u8],
    entries: &[EntryInfo],
) -> Result<std::path::PathBuf, String> {
    static FOLDERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let folder = std::env::temp_dir().join(format!(
        "ferrax-{}-{}",
        std::process::id(),
        FOLDERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&folder)
        .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    let linked = objects(&folder, object, entries).and_then(|[code, wrappers]| {
        let out = output.display().to_string();
        if shared {
            return cc(&["-shared", "-o", &out, &code, &wrappers, "-lm"]);
        }
        let _ = std::fs::remove_file(output);
        let status = std::process::Command::new("ar")
            .args(["rcs", &out, &code, &wrappers])
            .status()
            .map_err(|e| format!("cannot run ar: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("ar failed to write {out}"))
        }
    });
    let _ = std::fs::remove_dir_all(&folder);
    linked?;
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| String::from("ferrax"));
    let header = output.with_file_name(format!("{stem}.h"));
    std::fs::write(&header, self::header(&stem, entries))
        .map_err(|e| format!("cannot write {}: {e}", header.display()))?;
    Ok(header)
}

/// Writes `object` and the wrappers into `folder` and compiles the wrappers; returns the
/// paths of the two objects.
pub fn objects(folder: &Path, object: &[u8], entries: &[EntryInfo]) -> Result<[String; 2], String> {
    let write = |name: &str, bytes: &[u8]| -> Result<String, String> {
        let path = folder.join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path.display().to_string())
    };
    let code = write("entries.o", object)?;
    let source = write("wrappers.c", wrappers(entries).as_bytes())?;
    let wrapper = folder.join("wrappers.o").display().to_string();
    cc(&["-c", "-fPIC", "-O2", "-o", &wrapper, &source])?;
    Ok([code, wrapper])
}
