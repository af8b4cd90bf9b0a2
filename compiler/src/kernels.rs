//! The matmul kernels that JIT-compiled code and cached libraries call (the modules declare
//! them; `matmul-kernel`). On a CPU with AVX-512 they are the ones `build.rs` compiled with
//! the compiler, embedded, written once to the temporary folder and loaded into the process's
//! global symbols; elsewhere (or where that library does not load), the same kernels
//! compiled for this CPU by MLIR's JIT, once per process.

use crate::kernel_text::{kernel_name, kernels_module};
use melior::{ir::Module, pass::PassManager, utility::parse_pass_pipeline};
use std::sync::OnceLock;

/// The shared library `build.rs` made: the four kernels, for x86-64-v4.
const PREBUILT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libferrax_kernels.so"));

/// The kernels' symbol names and their addresses in this process.
pub fn symbols() -> Result<&'static [(String, usize)], String> {
    static SYMBOLS: OnceLock<Result<Vec<(String, usize)>, String>> = OnceLock::new();
    SYMBOLS
        .get_or_init(|| {
            // The prebuilt library may also fail to load (a temporary folder mounted
            // `noexec`): then compile the kernels here too.
            if has_avx512()
                && let Ok(symbols) = prebuilt_symbols()
            {
                return Ok(symbols);
            }
            compiled_here()
        })
        .as_ref()
        .map(Vec::as_slice)
        .map_err(Clone::clone)
}

/// Loads the prebuilt kernels into the process's global symbols, so that a cached library
/// that calls them loads; an error on a CPU without AVX-512.
pub fn load_prebuilt() -> Result<&'static libloading::os::unix::Library, String> {
    static LIBRARY: OnceLock<Result<libloading::os::unix::Library, String>> = OnceLock::new();
    LIBRARY
        .get_or_init(|| {
            if !has_avx512() {
                return Err(String::from("the prebuilt kernels need AVX-512"));
            }
            crate::backend::load_openmp()?;
            let path = std::env::temp_dir().join(format!(
                "ferrax-kernels-{:016x}.so",
                crate::cache::fnv1a(0xcbf2_9ce4_8422_2325, PREBUILT.iter().copied())
            ));
            if !path.exists() {
                let partial = path.with_extension(format!("{}.tmp", std::process::id()));
                std::fs::write(&partial, PREBUILT)
                    .and_then(|()| std::fs::rename(&partial, &path))
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            // Safety: the library `build.rs` made; it has no initialisers.
            unsafe {
                libloading::os::unix::Library::open(
                    Some(&path),
                    libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
                )
            }
            .map_err(|e| format!("cannot load the matmul kernels: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn names() -> Vec<String> {
    [false, true]
        .iter()
        .flat_map(|threaded| ["f32", "f64"].map(|element| kernel_name(element, *threaded)))
        .collect()
}

fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
}

fn prebuilt_symbols() -> Result<Vec<(String, usize)>, String> {
    let library = load_prebuilt()?;
    names()
        .into_iter()
        .map(|name| {
            // Safety: only the address is read.
            let symbol = unsafe { library.get::<*const ()>(name.as_bytes()) }
                .map_err(|e| format!("the prebuilt kernels lack `{name}`: {e}"))?;
            Ok((name, *symbol as usize))
        })
        .collect()
}

/// The kernels compiled for this CPU by MLIR's JIT. The engines, their modules and their
/// context live as long as the process.
pub fn compiled_here() -> Result<Vec<(String, usize)>, String> {
    crate::pipeline::register_passes();
    let context: &'static melior::Context = Box::leak(Box::new(ferrax_dialects::create_context()));
    let mut symbols = vec![];
    for threaded in [false, true] {
        let (text, pipeline) = kernels_module(threaded);
        let mut module = Module::parse(context, &text)
            .ok_or("internal error: the matmul kernel does not parse")?;
        let manager = PassManager::new(context);
        parse_pass_pipeline(manager.as_operation_pass_manager(), pipeline)
            .map_err(|e| format!("internal error: {e}"))?;
        manager
            .run(&mut module)
            .map_err(|e| format!("internal error: lowering the matmul kernel: {e}"))?;
        if threaded {
            crate::backend::load_openmp()?;
        }
        // Safety: the module is alive (and leaked below); a null engine is checked.
        let engine = unsafe {
            mlir_sys::mlirExecutionEngineCreate(
                module.to_raw(),
                2,
                0,
                std::ptr::null(),
                false,
                false,
            )
        };
        if engine.ptr.is_null() {
            return Err(String::from("LLVM could not compile the matmul kernel"));
        }
        for name in ["f32", "f64"].map(|element| kernel_name(element, threaded)) {
            // Safety: the engine is alive for the rest of the process.
            let address = unsafe {
                mlir_sys::mlirExecutionEngineLookup(engine, melior::StringRef::new(&name).to_raw())
            };
            if address.is_null() {
                return Err(format!("internal error: the JIT has no `{name}`"));
            }
            symbols.push((name, address as usize));
        }
        std::mem::forget(module);
    }
    Ok(symbols)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequential float32 kernel's C ABI: three memref descriptors (allocated and aligned
    /// pointers, offset, sizes, strides), then `accumulate`.
    type Kernel = unsafe extern "C" fn(
        *const f32,
        *const f32,
        i64,
        i64,
        i64,
        i64,
        i64,
        *const f32,
        *const f32,
        i64,
        i64,
        i64,
        i64,
        i64,
        *mut f32,
        *mut f32,
        i64,
        i64,
        i64,
        i64,
        i64,
        bool,
    );

    /// `C = A @ B` for A `m x k` and B `k x n` (stored transposed or as is), through the
    /// kernel at `address`, against a plain loop; then `C += A @ B`.
    fn check(address: usize, (m, k, n): (usize, usize, usize), transposed: bool) {
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        // B[p][j] is b[p * n + j] as is, b[j * k + p] transposed.
        let (b_rows, b_columns) = if transposed { (1, k) } else { (n, 1) };
        let b_at = |p: usize, j: usize| b[p * b_rows + j * b_columns];
        let mut c = vec![1.0f32; m * n];
        // Safety: the address is the kernel `check` is given; the descriptors fit the buffers.
        let kernel: Kernel = unsafe { std::mem::transmute(address) };
        let call = |c: &mut [f32], accumulate: bool| unsafe {
            kernel(
                a.as_ptr(),
                a.as_ptr(),
                0,
                m as i64,
                k as i64,
                k as i64,
                1,
                b.as_ptr(),
                b.as_ptr(),
                0,
                k as i64,
                n as i64,
                b_rows as i64,
                b_columns as i64,
                c.as_mut_ptr(),
                c.as_mut_ptr(),
                0,
                m as i64,
                n as i64,
                n as i64,
                1,
                accumulate,
            )
        };
        call(&mut c, false);
        for (round, scale) in [(0, 1.0f32), (1, 2.0)] {
            if round == 1 {
                call(&mut c, true);
            }
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|p| a[i * k + p] * b_at(p, j)).sum::<f32>() * scale;
                    let got = c[i * n + j];
                    assert!(
                        (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "{m}x{k}x{n}, {i},{j}: {got} != {want}"
                    );
                }
            }
        }
    }

    /// Shapes that split the work by column panels (B at least as wide as A is tall) and by
    /// rows, with edge tiles both ways and more than one block of contracted indices.
    const SHAPES: [(usize, usize, usize); 4] =
        [(20, 30, 40), (70, 300, 33), (9, 260, 130), (130, 64, 70)];

    /// Both float32 kernels, sequential and threaded, on every shape with B both ways; the
    /// threaded one also with more threads than some shapes have work for.
    fn check_all(symbols: &[(String, usize)]) {
        for (threaded, threads) in [(false, None), (true, None), (true, Some(7))] {
            if let Some(threads) = threads {
                set_threads(threads);
            }
            let address = symbols
                .iter()
                .find(|(name, _)| *name == kernel_name("f32", threaded))
                .map(|(_, address)| *address)
                .expect("the float32 kernel");
            for shape in SHAPES {
                for transposed in [true, false] {
                    check(address, shape, transposed);
                }
            }
        }
    }

    /// Sets the number of OpenMP threads of this test's thread (libomp is loaded by then).
    fn set_threads(threads: i32) {
        let process = libloading::os::unix::Library::this();
        // Safety: `omp_set_num_threads` has this C signature.
        unsafe {
            let set = process
                .get::<unsafe extern "C" fn(i32)>(b"omp_set_num_threads")
                .expect("libomp is loaded");
            set(threads);
        }
    }

    #[test]
    fn the_kernels_in_use_multiply() {
        check_all(symbols().expect("the kernels load"));
    }

    #[test]
    fn kernels_compiled_for_this_cpu_multiply() {
        check_all(&compiled_here().expect("the kernels compile"));
    }
}
