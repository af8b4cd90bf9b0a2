//! The stages of compilation as data: each stage is a list of passes, and `--emit STAGE`
//! prints the module after that stage. The CLI, the tests and the docs read `STAGES`.

use crate::passes;
use melior::{
    Context,
    ir::{Module, operation::OperationLike},
    pass::{PassIrPrintingOptions, PassManager},
    utility::parse_pass_pipeline,
};
use std::fmt;

/// One stage: the passes it runs, in order, and, for a module with large loops when threads
/// are allowed, the passes it runs instead (`threaded_steps`, when not empty).
pub struct Stage {
    pub name: &'static str,
    pub steps: &'static [Step],
    pub threaded_steps: &'static [Step],
}

/// One step of a stage: one of the compiler's own passes, or an upstream pass pipeline.
pub enum Step {
    Pass(fn() -> melior::pass::Pass),
    Pipeline(&'static str),
    /// `matmul-kernel`, with the kernel in the module or declared, threaded or not, as the
    /// run's options and the module's size say.
    MatmulKernel,
}

/// Loops over at least this many elements run on all cores (OpenMP); smaller modules stay
/// on one thread, where starting threads would cost more than it saves.
pub const THREAD_THRESHOLD: u64 = 1 << 16;

/// The OpenMP runtime threaded code calls (libomp-22-dev).
pub const OPENMP_RUNTIME: &str = "/usr/lib/llvm-22/lib/libomp.so";

/// The CPU pipeline, in order. `traced` is the specialiser's output (with differentiation
/// requests), `fx` the differentiated program; `llvm-ir` is a translation of `llvm-mlir`.
pub const STAGES: &[Stage] = &[
    Stage {
        name: "traced",
        steps: &[],
        threaded_steps: &[],
    },
    Stage {
        name: "fx",
        steps: &[
            Step::Pass(passes::fx_autodiff::create),
            Step::Pass(passes::fx_fold::create),
        ],
        threaded_steps: &[],
    },
    Stage {
        name: "linalg",
        steps: &[
            Step::Pass(passes::fx_to_linalg::create),
            Step::Pass(passes::elementwise_runs::create),
            Step::Pipeline(
                "builtin.module(func.func(convert-elementwise-to-linalg),linalg-fuse-elementwise-ops,canonicalize,cse)",
            ),
        ],
        threaded_steps: &[],
    },
    Stage {
        name: "bufferized",
        steps: &[
            Step::Pass(passes::fresh_empty_tensors::create),
            Step::Pipeline(
                "builtin.module(one-shot-bufferize{bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map allow-return-allocs-from-loops},\
             buffer-results-to-out-params{modify-public-functions},ownership-based-buffer-deallocation,canonicalize,buffer-deallocation-simplification,bufferization-lower-deallocations,canonicalize)",
            ),
        ],
        threaded_steps: &[],
    },
    Stage {
        name: "llvm-mlir",
        steps: &[
            Step::Pass(passes::result_buffers::create),
            Step::MatmulKernel,
            Step::Pipeline("builtin.module(convert-linalg-to-loops)"),
            Step::Pass(passes::scalar_small_loops::create),
            Step::Pipeline(
                "builtin.module(expand-strided-metadata,lower-affine,convert-scf-to-cf,convert-vector-to-llvm,convert-math-to-libm,\
                 convert-math-to-llvm,finalize-memref-to-llvm,convert-arith-to-llvm,convert-cf-to-llvm,convert-func-to-llvm,reconcile-unrealized-casts)",
            ),
        ],
        threaded_steps: &[
            Step::Pass(passes::result_buffers::create),
            Step::MatmulKernel,
            Step::Pipeline("builtin.module(convert-linalg-to-parallel-loops)"),
            Step::Pass(passes::parallel_outer_loop::create),
            Step::Pass(passes::scalar_small_loops::create),
            Step::Pipeline(
                "builtin.module(convert-scf-to-openmp,canonicalize,expand-strided-metadata,\
                 lower-affine,convert-scf-to-cf,convert-vector-to-llvm,convert-math-to-libm,convert-math-to-llvm,convert-openmp-to-llvm,\
                 finalize-memref-to-llvm,convert-arith-to-llvm,convert-cf-to-llvm,convert-func-to-llvm,reconcile-unrealized-casts)",
            ),
        ],
    },
];

/// Names accepted by `--emit`, in pipeline order.
pub const EMIT_STAGES: &[&str] = &[
    "traced",
    "fx",
    "linalg",
    "bufferized",
    "llvm-mlir",
    "llvm-ir",
];

/// A failure inside the compiler: a pass failed or the IR did not verify.
#[derive(Debug)]
pub struct InternalError {
    pub stage: &'static str,
    pub messages: Vec<String>,
    pub ir: String,
}

impl fmt::Display for InternalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "internal error: stage `{}` failed", self.stage)?;
        for message in &self.messages {
            writeln!(f, "{message}")?;
        }
        write!(f, "IR that failed:\n{}", self.ir)
    }
}

impl std::error::Error for InternalError {}

/// Options of a pipeline run.
#[derive(Clone, Copy, Default)]
pub struct RunOptions {
    /// Print the module after every pass, to stderr (like `mlir-opt --mlir-print-ir-after-all`).
    pub print_ir_after_all: bool,
    /// Keep every loop on one thread (libraries: their callers choose the threads).
    pub sequential: bool,
    /// Compile the matmul kernel into the module (libraries, for their target CPU) instead of
    /// calling the one built with the compiler (`crate::kernels`, which the JIT provides).
    pub kernel_in_module: bool,
}

/// Runs the stages after `traced` up to and including `last`, verifying after each.
pub fn run_until(
    context: &Context,
    module: &mut Module,
    last: &str,
    options: RunOptions,
) -> Result<(), InternalError> {
    verify(context, module, "traced")?;
    run_between(context, module, "traced", last, options)
}

/// Runs the stages after `after` (where the module is) up to and including `last`,
/// verifying after each.
pub fn run_between(
    context: &Context,
    module: &mut Module,
    after: &str,
    last: &str,
    options: RunOptions,
) -> Result<(), InternalError> {
    register_passes();
    if options.print_ir_after_all {
        // MLIR prints after each pass only when passes run on one thread.
        context.enable_multi_threading(false);
    }
    if last == after {
        return Ok(());
    }
    let first = STAGES
        .iter()
        .position(|stage| stage.name == after)
        .map_or(STAGES.len(), |i| i + 1);
    for stage in &STAGES[first..] {
        let messages = std::rc::Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
        let sink = messages.clone();
        let handler = context.attach_diagnostic_handler(move |diagnostic| {
            sink.borrow_mut()
                .push(format!("{}: {}", diagnostic.location(), diagnostic));
            true
        });
        // A copy, printed only if the stage fails (printing every time took 2 ms of the MLP
        // step's compile).
        // Safety: the clone is a new, owned op, destroyed when `before` drops.
        let before = unsafe {
            melior::ir::Operation::from_raw(mlir_sys::mlirOperationClone(
                module.as_operation().to_raw(),
            ))
        };
        let result = run_stage(context, module, stage, options);
        context.detach_diagnostic_handler(handler);
        if result.is_err() {
            let mut messages = messages.borrow().clone();
            if let Err(text) = result {
                messages.push(text);
            }
            return Err(InternalError {
                stage: stage.name,
                messages,
                ir: before.to_string(),
            });
        }
        verify(context, module, stage.name)?;
        if stage.name == last {
            break;
        }
    }
    Ok(())
}

/// Registers the upstream passes that `STAGES` and the kernels' pipelines
/// (`crate::kernel_text`) name, once per process. Registering every MLIR pass took 1.1 ms of
/// each compilation.
pub fn register_passes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // Safety: each call adds a pass to MLIR's registry, once.
    ONCE.call_once(|| unsafe {
        use mlir_sys::*;
        mlirRegisterTransformsCanonicalizer();
        mlirRegisterTransformsCSE();
        mlirRegisterLinalgConvertElementwiseToLinalgPass();
        mlirRegisterLinalgLinalgElementwiseOpFusionPass();
        mlirRegisterLinalgConvertLinalgToLoopsPass();
        mlirRegisterLinalgConvertLinalgToParallelLoopsPass();
        mlirRegisterBufferizationOneShotBufferizePass();
        mlirRegisterBufferizationBufferResultsToOutParamsPass();
        mlirRegisterBufferizationOwnershipBasedBufferDeallocationPass();
        mlirRegisterBufferizationBufferDeallocationSimplificationPass();
        mlirRegisterBufferizationLowerDeallocationsPass();
        mlirRegisterMemRefExpandStridedMetadataPass();
        mlirRegisterConversionConvertSCFToOpenMPPass();
        mlirRegisterConversionLowerAffinePass();
        mlirRegisterConversionSCFToControlFlowPass();
        mlirRegisterConversionConvertVectorToLLVMPass();
        mlirRegisterConversionConvertMathToLibmPass();
        mlirRegisterConversionConvertMathToLLVMPass();
        mlirRegisterConversionConvertOpenMPToLLVMPass();
        mlirRegisterConversionFinalizeMemRefToLLVMConversionPass();
        mlirRegisterConversionArithToLLVMConversionPass();
        mlirRegisterConversionConvertControlFlowToLLVMPass();
        mlirRegisterConversionConvertFuncToLLVMPass();
        mlirRegisterConversionReconcileUnrealizedCastsPass();
    });
}

fn run_stage(
    context: &Context,
    module: &mut Module,
    stage: &Stage,
    options: RunOptions,
) -> Result<(), String> {
    let printing = PassIrPrintingOptions {
        before_all: false,
        after_all: true,
        module_scope: true,
        on_change: false,
        on_failure: false,
        flags: melior::ir::operation::OperationPrintingFlags::new(),
        tree_printing_path: std::path::PathBuf::new(),
    };
    let threaded = !stage.threaded_steps.is_empty()
        && !options.sequential
        && has_large_loops(module)
        && std::path::Path::new(OPENMP_RUNTIME).exists();
    let steps = if threaded {
        stage.threaded_steps
    } else {
        stage.steps
    };
    for step in steps {
        let manager = PassManager::new(context);
        // The module is verified after each stage (`run_between`); verifying after every
        // pass as well took half the MLIR time of the MLP step (the kernel is large).
        manager.enable_verifier(false);
        match step {
            Step::Pass(create) => manager.add_pass(create()),
            Step::MatmulKernel => {
                use passes::matmul_kernel::{Kernel, create};
                manager.add_pass(create(match (options.kernel_in_module, threaded) {
                    (true, _) => Kernel::InModule,
                    (false, false) => Kernel::Prebuilt,
                    (false, true) => Kernel::PrebuiltThreaded,
                }))
            }
            Step::Pipeline(pipeline) => {
                parse_pass_pipeline(manager.as_operation_pass_manager(), pipeline)
                    .map_err(|e| e.to_string())?
            }
        }
        if options.print_ir_after_all {
            manager.enable_ir_printing(&printing);
        }
        manager.run(module).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Whether the module's loops should run on all cores: a `linalg` op works on a buffer of
/// `THREAD_THRESHOLD` elements or more (static shapes only).
fn has_large_loops(module: &Module) -> bool {
    let mut large = false;
    module
        .as_operation()
        .walk(melior::ir::operation::WalkOrder::PreOrder, |operation| {
            let is_linalg = operation
                .name()
                .as_string_ref()
                .as_str()
                .is_ok_and(|name| name.starts_with("linalg."));
            if is_linalg {
                for operand in operation.operands() {
                    if let Ok(memref) = melior::ir::r#type::MemRefType::try_from(
                        melior::ir::ValueLike::r#type(&operand),
                    ) {
                        let elements = (0..melior::ir::r#type::ShapedTypeLike::rank(&memref))
                            .map(|d| {
                                match melior::ir::r#type::ShapedTypeLike::dim_size(&memref, d) {
                                    Ok(melior::ir::r#type::DimSize::Static(size)) => size,
                                    _ => 0,
                                }
                            })
                            .product::<u64>();
                        large |= elements >= THREAD_THRESHOLD;
                    }
                }
            }
            melior::ir::operation::WalkResult::Advance
        });
    large
}

pub fn verify(
    context: &Context,
    module: &Module,
    stage: &'static str,
) -> Result<(), InternalError> {
    let messages = std::rc::Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
    let sink = messages.clone();
    let handler = context.attach_diagnostic_handler(move |diagnostic| {
        sink.borrow_mut()
            .push(format!("{}: {}", diagnostic.location(), diagnostic));
        true
    });
    let ok = module.as_operation().verify();
    context.detach_diagnostic_handler(handler);
    if ok {
        Ok(())
    } else {
        Err(InternalError {
            stage,
            messages: messages.borrow().clone(),
            ir: module.as_operation().to_string(),
        })
    }
}

/// The module translated to LLVM IR text (the module must be at `llvm-mlir`).
pub fn translate_to_llvm_ir(module: &Module) -> String {
    unsafe extern "C" {
        fn free(pointer: *mut std::ffi::c_void);
    }
    unsafe {
        let text = mlir_sys::mlirTranslateModuleToLLVMIRToString(module.as_operation().to_raw());
        if text.is_null() {
            return String::new();
        }
        let result = std::ffi::CStr::from_ptr(text)
            .to_string_lossy()
            .into_owned();
        free(text as *mut std::ffi::c_void);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_stage_reports_the_ir_it_started_from() {
        let context = ferrax_dialects::create_context();
        // One-shot bufferization cannot bufferize an unknown op on tensors.
        let mut module = Module::parse(
            &context,
            r#"func.func @f(%a: tensor<4xf32>) -> tensor<4xf32> {
                 %b = "test.opaque"(%a) : (tensor<4xf32>) -> tensor<4xf32>
                 return %b : tensor<4xf32>
               }"#,
        )
        .expect("the module parses");
        let error = run_between(
            &context,
            &mut module,
            "linalg",
            "bufferized",
            RunOptions::default(),
        )
        .expect_err("bufferization fails");
        assert_eq!(error.stage, "bufferized");
        assert!(error.ir.contains("\"test.opaque\"(%arg0)"), "{}", error.ir);
        assert!(error.ir.contains("tensor<4xf32>"), "{}", error.ir);
    }
}
