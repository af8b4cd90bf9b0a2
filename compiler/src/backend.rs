//! Running compiled code: the JIT, which links the native code of a module at `llvm-mlir`
//! (`native`: `aot::emit_native` with the JIT's optimisation) into this process with LLVM's
//! ORC. The cache keeps the same code as a shared library (`crate::cache`).
//!
//! Calling convention: the entry takes one strided memref descriptor per array input, then
//! one per result (destination-passing style), through its C-interface wrapper
//! `_mlir_ciface_NAME`, which `NAME__ferrax_memrefs(void **args)` calls as MLIR's packed
//! wrappers do.

use crate::aot::{self, NativeKind, Optimisation};
use ferrax_runtime::{Array, memref};
use inkwell::llvm_sys::{
    error::{LLVMDisposeErrorMessage, LLVMErrorRef, LLVMGetErrorMessage},
    orc2::{
        LLVMJITEvaluatedSymbol, LLVMJITSymbolFlags, LLVMJITSymbolGenericFlags,
        LLVMOrcAbsoluteSymbols, LLVMOrcCSymbolMapPair,
        LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess, LLVMOrcJITDylibAddGenerator,
        LLVMOrcJITDylibDefine,
        lljit::{
            LLVMOrcCreateLLJIT, LLVMOrcDisposeLLJIT, LLVMOrcLLJITAddObjectFile,
            LLVMOrcLLJITGetGlobalPrefix, LLVMOrcLLJITGetMainJITDylib, LLVMOrcLLJITLookup,
            LLVMOrcLLJITMangleAndIntern, LLVMOrcLLJITRef,
        },
    },
};
use melior::ir::{
    Module,
    operation::{OperationLike, WalkOrder, WalkResult},
};

/// An ORC JIT holding one module's native code, linked against this process's symbols.
struct Engine(LLVMOrcLLJITRef);

impl Engine {
    /// Links `native` into this process; returns the engine and the address of `function`'s
    /// packed wrapper.
    fn new(native: &aot::Native, function: &str) -> Result<(Self, usize), String> {
        if native.calls_openmp {
            load_openmp()?;
        }
        if native.calls_vector_math {
            load_vector_math()?;
        }
        let mut symbols = vec![(
            String::from("memrefCopy"),
            memref_copy as *const () as usize,
        )];
        if native.calls_kernels {
            symbols.extend(crate::kernels::symbols()?.iter().cloned());
        }
        let mut jit = std::ptr::null_mut();
        // Safety: a null builder asks for the default JIT for this host; the result is
        // written on success.
        check(unsafe { LLVMOrcCreateLLJIT(&mut jit, std::ptr::null_mut()) })?;
        let engine = Engine(jit);
        // Safety: the JIT is alive; each call's arguments are valid for it (the object buffer
        // is copied, the symbol map pairs are read during the call).
        unsafe {
            let library = LLVMOrcLLJITGetMainJITDylib(jit);
            let mut process = std::ptr::null_mut();
            check(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
                &mut process,
                LLVMOrcLLJITGetGlobalPrefix(jit),
                None,
                std::ptr::null_mut(),
            ))?;
            LLVMOrcJITDylibAddGenerator(library, process);
            let mut pairs: Vec<LLVMOrcCSymbolMapPair> = vec![];
            for (name, address) in &symbols {
                let name = std::ffi::CString::new(name.as_str()).map_err(|e| e.to_string())?;
                pairs.push(LLVMOrcCSymbolMapPair {
                    Name: LLVMOrcLLJITMangleAndIntern(jit, name.as_ptr()),
                    Sym: LLVMJITEvaluatedSymbol {
                        Address: *address as u64,
                        Flags: LLVMJITSymbolFlags {
                            GenericFlags:
                                LLVMJITSymbolGenericFlags::LLVMJITSymbolGenericFlagsExported as u8
                                    | LLVMJITSymbolGenericFlags::LLVMJITSymbolGenericFlagsCallable
                                        as u8,
                            TargetFlags: 0,
                        },
                    },
                });
            }
            check(LLVMOrcJITDylibDefine(
                library,
                LLVMOrcAbsoluteSymbols(pairs.as_mut_ptr(), pairs.len()),
            ))?;
            let buffer = inkwell::llvm_sys::core::LLVMCreateMemoryBufferWithMemoryRangeCopy(
                native.code.as_ptr() as *const std::ffi::c_char,
                native.code.len(),
                c"ferrax".as_ptr(),
            );
            check(LLVMOrcLLJITAddObjectFile(jit, library, buffer))?;
        }
        let wrapper = std::ffi::CString::new(format!("{function}{}", aot::MEMREF_WRAPPER))
            .map_err(|e| e.to_string())?;
        let mut address = 0;
        // Safety: the JIT is alive; linking happens here, and errors are returned.
        check(unsafe { LLVMOrcLLJITLookup(jit, &mut address, wrapper.as_ptr()) })
            .map_err(|e| format!("the compiled module has no function `{function}`: {e}"))?;
        Ok((engine, address as usize))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Safety: the JIT was created by `Engine::new` and is disposed of once; an error
        // while tearing down has nobody to go to.
        unsafe { consume(LLVMOrcDisposeLLJIT(self.0)) };
    }
}

/// The message of an LLVM error, if any (consuming it).
fn check(error: LLVMErrorRef) -> Result<(), String> {
    // Safety: a non-null error is consumed once.
    match unsafe { consume(error) } {
        Some(message) => Err(message),
        None => Ok(()),
    }
}

/// Consumes an LLVM error; its message if it was one.
unsafe fn consume(error: LLVMErrorRef) -> Option<String> {
    if error.is_null() {
        return None;
    }
    // Safety: the caller passes an unconsumed error; its message is freed after copying.
    unsafe {
        let raw = LLVMGetErrorMessage(error);
        let message = std::ffi::CStr::from_ptr(raw).to_string_lossy().into_owned();
        LLVMDisposeErrorMessage(raw);
        Some(message)
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

/// The JIT's native code for calls of `function` of `module` (at `llvm-mlir`).
pub fn native(module: &Module, function: &str) -> Result<aot::Native, String> {
    aot::emit_native(
        &[module],
        &[function],
        None,
        NativeKind::Object,
        optimisation(module),
    )
}

impl Compiled {
    /// Links `native` (from `native`, for `function`) into this process.
    pub fn link(native: &aot::Native, function: &str) -> Result<Self, String> {
        let (engine, address) = Engine::new(native, function)?;
        if address == 0 {
            return Err(format!("the compiled module has no function `{function}`"));
        }
        // Safety: the wrapper `aot::emit_native` adds takes the packed argument list.
        let packed = unsafe { std::mem::transmute::<usize, Packed>(address) };
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

/// Modules above this many LLVM-dialect ops are compiled without LLVM's optimisations: LLVM's
/// optimising code generation takes tens of seconds on one huge function (an unrolled training
/// loop), where its fast path takes a few.
const LARGE_MODULE_OPS: usize = 20_000;

/// The JIT's optimisation of `module` (the cache keeps the same code): `Optimisation::Jit`,
/// or `Minimal` for huge modules. Libraries are built with `Optimisation::Full` (`-O2`).
fn optimisation(module: &Module) -> Optimisation {
    let mut count = 0;
    module.as_operation().walk(WalkOrder::PreOrder, |_| {
        count += 1;
        WalkResult::Advance
    });
    if count > LARGE_MODULE_OPS {
        Optimisation::Minimal
    } else {
        Optimisation::Jit
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
