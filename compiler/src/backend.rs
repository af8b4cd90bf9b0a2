//! Running compiled code: the JIT (`ExecutionEngine`) over a module at `llvm-mlir`.
//!
//! Calling convention: the entry takes one strided memref descriptor per array input, then
//! one per result (destination-passing style), through its `_mlir_ciface_` wrapper.

use ferrax_runtime::{Array, memref};
use melior::{
    StringRef,
    ir::{
        Module,
        operation::{OperationLike, WalkOrder, WalkResult},
    },
};
use mlir_sys::MlirExecutionEngine;

/// An MLIR execution engine (through the C API, so a module LLVM cannot translate is an error
/// rather than a null engine).
struct Engine(MlirExecutionEngine);

impl Engine {
    fn new(module: &Module) -> Result<Self, String> {
        configure_llvm();
        if calls_openmp(module) {
            load_openmp()?;
        }
        if calls_vector_math(module) {
            load_vector_math()?;
        }
        // Safety: the module is alive; a null result is checked.
        let raw = unsafe {
            mlir_sys::mlirExecutionEngineCreate(
                module.to_raw(),
                optimization_level(module) as i32,
                0,
                std::ptr::null(),
                false,
                false,
            )
        };
        if raw.ptr.is_null() {
            return Err(String::from(
                "LLVM could not translate or compile the module",
            ));
        }
        let engine = Engine(raw);
        // Safety: `memref_copy` has the C signature MLIR's lowering of `memref.copy` calls.
        unsafe {
            mlir_sys::mlirExecutionEngineRegisterSymbol(
                engine.0,
                StringRef::new("memrefCopy").to_raw(),
                memref_copy as *mut std::ffi::c_void,
            );
        }
        if calls_kernels(module) {
            for (name, address) in crate::kernels::symbols()? {
                // Safety: the kernels have the signature `matmul-kernel` declares, and live
                // as long as the process.
                unsafe {
                    mlir_sys::mlirExecutionEngineRegisterSymbol(
                        engine.0,
                        StringRef::new(name).to_raw(),
                        *address as *mut std::ffi::c_void,
                    );
                }
            }
        }
        Ok(engine)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Safety: the engine was created by `Engine::new` and is destroyed once.
        unsafe { mlir_sys::mlirExecutionEngineDestroy(self.0) }
    }
}

/// A JIT-compiled entry function, callable many times.
pub struct Compiled {
    // Declared before the engine: dropped first.
    callable: Callable,
    _engine: Engine,
}

/// A packed wrapper of a compiled function: one pointer (to a memref descriptor) per argument.
pub type Packed = unsafe extern "C" fn(*mut *mut std::ffi::c_void);

/// A compiled function called through its packed wrapper, with descriptors kept from call
/// to call.
pub struct Callable {
    frame: std::cell::RefCell<Frame>,
    packed: Packed,
}

/// The arguments of the last call: a memref descriptor per array (rebuilt only when the
/// shapes change, so a repeated call allocates nothing), the pointers to them, and the
/// packed argument list (pointers to those pointers).
#[derive(Default)]
struct Frame {
    shapes: Vec<Vec<usize>>,
    descriptors: Vec<Vec<i64>>,
    /// Not read, but `arguments` points into it.
    _pointers: Vec<*mut i64>,
    arguments: Vec<*mut std::ffi::c_void>,
}

impl Compiled {
    /// JIT-compiles `module` (at `llvm-mlir`) for calls of `function`.
    pub fn new(module: &Module, function: &str) -> Result<Self, String> {
        let engine = Engine::new(module)?;
        // The packed wrapper of the C-interface function: its arguments are pointers to
        // memref descriptors. Safety: the engine is alive; a null result is checked.
        let wrapper = format!("_mlir_ciface_{function}");
        let packed = unsafe {
            mlir_sys::mlirExecutionEngineLookupPacked(engine.0, StringRef::new(&wrapper).to_raw())
        };
        if packed.is_null() {
            return Err(format!("the compiled module has no function `{function}`"));
        }
        // Safety: MLIR's packed wrappers take the packed argument list.
        let packed = unsafe { std::mem::transmute::<*mut std::ffi::c_void, Packed>(packed) };
        Ok(Self {
            callable: Callable::new(packed),
            _engine: engine,
        })
    }

    /// Calls the function on `inputs`, writing into `outputs` (allocated by the caller, shaped
    /// like the results).
    pub fn call(&self, inputs: &[Array], outputs: &mut [Array]) -> Result<(), String> {
        self.callable.call(inputs, outputs)
    }
}

impl Callable {
    pub fn new(packed: Packed) -> Self {
        Self {
            frame: std::cell::RefCell::new(Frame::default()),
            packed,
        }
    }

    /// Calls the function on `inputs`, writing into `outputs` (allocated by the caller, shaped
    /// like the results).
    pub fn call(&self, inputs: &[Array], outputs: &mut [Array]) -> Result<(), String> {
        let mut frame = self.frame.borrow_mut();
        let count = inputs.len() + outputs.len();
        let same = frame.shapes.len() == count
            && inputs
                .iter()
                .map(|a| &a.shape)
                .chain(outputs.iter().map(|a| &a.shape))
                .zip(&frame.shapes)
                .all(|(a, b)| same_shape(a, b));
        if !same {
            let shapes: Vec<Vec<usize>> = inputs
                .iter()
                .map(|a| a.shape.clone())
                .chain(outputs.iter().map(|a| a.shape.clone()))
                .collect();
            let mut descriptors: Vec<Vec<i64>> = shapes
                .iter()
                .map(|s| memref::descriptor(std::ptr::null(), s))
                .collect();
            let mut pointers: Vec<*mut i64> =
                descriptors.iter_mut().map(|d| d.as_mut_ptr()).collect();
            let arguments = pointers
                .iter_mut()
                .map(|p| p as *mut *mut i64 as *mut std::ffi::c_void)
                .collect();
            *frame = Frame {
                shapes,
                descriptors,
                _pointers: pointers,
                arguments,
            };
        }
        let data = inputs
            .iter()
            .map(|a| a.data.as_ptr())
            .chain(outputs.iter_mut().map(|a| a.data.as_mut_ptr() as *const u8));
        for (descriptor, pointer) in frame.descriptors.iter_mut().zip(data) {
            memref::set_pointer(descriptor, pointer);
        }
        // Safety: each argument points at a descriptor of a live buffer of the entry's shape
        // (the descriptors and pointers live in `frame`, which is not moved during the call).
        unsafe { (self.packed)(frame.arguments.as_mut_ptr()) };
        Ok(())
    }
}

/// Element by element: comparing the slices calls glibc's memcmp, which took about 300 ns on
/// the empty shapes of scalars (measured on this machine).
fn same_shape(a: &[usize], b: &[usize]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// JIT-compiles `module` and calls `function` once on `inputs`, writing into `outputs`.
pub fn run_jit(
    module: &Module,
    function: &str,
    inputs: &[Array],
    mut outputs: Vec<Array>,
) -> Result<Vec<Array>, String> {
    Compiled::new(module, function)?.call(inputs, &mut outputs)?;
    Ok(outputs)
}

/// Sets LLVM's global options once, before the first compilation:
/// - no unrolling beyond what vectorising does (`-unroll-threshold=0`). Our loops are
///   vectorised and interleaved already; unrolling them again, and fully unrolling the small
///   ones, took a quarter of the MLP step's compile time (330 → 250 ms) and gained nothing
///   measurable at run time;
/// - no loop strength reduction (`-disable-lsr`): with its induction-variable analysis it was
///   a third of code generation's time (MLP step 185 → 155 ms), and no workload of `benches/`
///   ran slower, the matmul kernel included;
/// - no vectorised epilogue loops (`-enable-epilogue-vectorization=false`): the remainder of
///   a vectorised loop (under 64 iterations of 16 lanes interleaved 4 times) runs as a plain
///   loop. LLVM's time for the SELU module went from 18.3-19.3 to 16.1-17.0 ms (the least of
///   six compilations in one process, two processes each), the MLP step's from 124-125 to
///   122-123 ms; SELU on 1M ran as fast.
pub(crate) fn configure_llvm() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let arguments = [
            c"ferrax".as_ptr(),
            c"-unroll-threshold=0".as_ptr(),
            c"-disable-lsr".as_ptr(),
            c"-enable-epilogue-vectorization=false".as_ptr(),
        ];
        // Safety: NUL-terminated strings that live for the call; LLVM keeps copies.
        unsafe {
            inkwell::llvm_sys::support::LLVMParseCommandLineOptions(
                arguments.len() as i32,
                arguments.as_ptr(),
                std::ptr::null(),
            );
        }
    });
}

/// A library loaded into the process once, with its symbols global (where the JIT's linker
/// finds them), or why it could not be.
type GlobalLibrary = std::sync::OnceLock<Result<libloading::os::unix::Library, String>>;

/// Loads `library` (`what`, for the error) into `cell` unless it is loaded already.
fn load_global(cell: &GlobalLibrary, library: &str, what: &str) -> Result<(), String> {
    cell.get_or_init(|| {
        // Safety: loading the OpenMP runtime or libmvec runs their initialisers, which only
        // set up their own state.
        unsafe {
            libloading::os::unix::Library::open(
                Some(library),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
            )
        }
        .map_err(|e| format!("cannot load {what}: {e}"))
    })
    .as_ref()
    .map(|_| ())
    .map_err(Clone::clone)
}

/// Loads the OpenMP runtime into the process once, with its symbols global.
pub(crate) fn load_openmp() -> Result<(), String> {
    static RUNTIME: GlobalLibrary = std::sync::OnceLock::new();
    load_global(
        &RUNTIME,
        crate::pipeline::OPENMP_RUNTIME,
        "the OpenMP runtime",
    )
}

/// The vector math library whose functions `crate::vector_math` names (glibc's libmvec).
const VECTOR_MATH_LIBRARY: &str = "libmvec.so.1";

/// Loads the vector math library into the process once, with its symbols global.
fn load_vector_math() -> Result<(), String> {
    static LIBRARY: GlobalLibrary = std::sync::OnceLock::new();
    load_global(&LIBRARY, VECTOR_MATH_LIBRARY, "the vector math library")
}

/// Whether the module (at `llvm-mlir`) declares a function whose name starts with `prefix`.
fn declares(module: &Module, prefix: &str) -> bool {
    let mut found = false;
    module
        .as_operation()
        .walk(WalkOrder::PreOrder, |operation| {
            let is_function = operation.name().as_string_ref().as_str() == Ok("llvm.func");
            if is_function
                && operation
                    .attribute("sym_name")
                    .is_ok_and(|name| name.to_string().trim_matches('"').starts_with(prefix))
            {
                found = true;
            }
            WalkResult::Advance
        });
    found
}

/// Whether the module (at `llvm-mlir`) declares a vector variant of a libm function
/// (`crate::vector_math`), which libmvec provides.
pub fn calls_vector_math(module: &Module) -> bool {
    declares(module, crate::vector_math::VARIANT_PREFIX)
}

/// Whether the module (at `llvm-mlir`) declares a matmul kernel (`crate::kernels`).
pub fn calls_kernels(module: &Module) -> bool {
    declares(module, crate::kernel_text::KERNEL_PREFIX)
}

/// Whether the module (at `llvm-mlir`) has OpenMP ops, which LLVM translates into calls of
/// the OpenMP runtime.
pub fn calls_openmp(module: &Module) -> bool {
    let mut calls = false;
    module
        .as_operation()
        .walk(WalkOrder::PreOrder, |operation| {
            if operation
                .name()
                .as_string_ref()
                .as_str()
                .is_ok_and(|name| name.starts_with("omp."))
            {
                calls = true;
            }
            WalkResult::Advance
        });
    calls
}

/// Modules above this many LLVM-dialect ops are compiled without LLVM's optimisations: LLVM's
/// optimising code generation takes tens of seconds on one huge function (an unrolled training
/// loop), where its fast path takes a few.
const LARGE_MODULE_OPS: usize = 20_000;

/// The JIT's LLVM level: `-O1`, with MLIR's loop and SLP vectorisation. Our loops need
/// vectorising, not `-O2`'s other work: the MLP step compiled in 214 ms instead of 230, and
/// no workload of `benches/` ran slower (the matmul kernel is compiled with the compiler).
/// Cached libraries and compiled ones are built at `-O2` (`aot`).
const JIT_LEVEL: usize = 1;

fn optimization_level(module: &Module) -> usize {
    let mut count = 0;
    module.as_operation().walk(WalkOrder::PreOrder, |_| {
        count += 1;
        WalkResult::Advance
    });
    if count > LARGE_MODULE_OPS {
        0
    } else {
        JIT_LEVEL
    }
}

/// A memref of unknown rank, as MLIR passes it to runtime functions.
#[repr(C)]
struct UnrankedMemRef {
    rank: i64,
    descriptor: *const i64,
}

/// `memrefCopy(element_size, source, target)`: the copy MLIR's `finalize-memref-to-llvm`
/// calls for memrefs that are not contiguous (it is otherwise in MLIR's runner library).
unsafe extern "C" fn memref_copy(
    element_size: i64,
    source: *const UnrankedMemRef,
    target: *const UnrankedMemRef,
) {
    // Safety: MLIR passes two live descriptors of one shape.
    unsafe {
        let rank = (*source).rank as usize;
        let (s, t) = ((*source).descriptor, (*target).descriptor);
        let sizes: Vec<i64> = (0..rank).map(|d| *s.add(3 + d)).collect();
        let (s_base, t_base) = (*s.add(1) as *const u8, *t.add(1) as *mut u8);
        let (s_offset, t_offset) = (*s.add(2), *t.add(2));
        let count: i64 = sizes.iter().product();
        let mut index = vec![0i64; rank];
        for _ in 0..count {
            let mut from = s_offset;
            let mut to = t_offset;
            for (d, i) in index.iter().enumerate() {
                from += i * *s.add(3 + rank + d);
                to += i * *t.add(3 + rank + d);
            }
            std::ptr::copy_nonoverlapping(
                s_base.add((from * element_size) as usize),
                t_base.add((to * element_size) as usize),
                element_size as usize,
            );
            for d in (0..rank).rev() {
                index[d] += 1;
                if index[d] < sizes[d] {
                    break;
                }
                index[d] = 0;
            }
        }
    }
}
