//! The disk cache of compiled code. `ferrax eval`, `run` and `bench` keep the native code of
//! each function they compile as a shared library (with the structure of its result beside
//! it), keyed by the compiler's identity (version, and the size and time of its executable),
//! the source file, the entry (an expression, or a function and its argument types) and the
//! function's name; a later run with the same key loads the library instead of compiling.
//!
//! A library exports `NAME__ferrax_memrefs(void **args)` (`aot::emit_native`); it is
//! linked with `ld -shared`, and resolves `malloc`, `free` and libm in the process that loads
//! it. Entries are written to a private folder, then renamed into place, so a reader never
//! sees half a file.

use crate::aot;
use crate::backend::{Callable, Packed};
use crate::specialise::{ArrayType, DType, Output, StaticValue};
use serde_json::{Value as Json, json};
use std::cell::Cell;
use std::path::PathBuf;

/// A folder of compiled functions.
pub struct Cache {
    dir: PathBuf,
    hits: Cell<usize>,
}

/// A function loaded from the cache.
pub struct Cached {
    // Declared before the library: dropped first.
    pub callable: Callable,
    pub output: Output,
    _library: libloading::Library,
}

impl Cache {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            hits: Cell::new(0),
        }
    }

    /// How many lookups found their function.
    pub fn hits(&self) -> usize {
        self.hits.get()
    }

    /// The key of `parts` for this compiler: 128 bits of two FNV-1a hashes, in hex.
    pub fn key(&self, parts: &[&str]) -> String {
        let identity = compiler_identity();
        let bytes = || {
            std::iter::once(identity.as_str())
                .chain(parts.iter().copied())
                .flat_map(|part| part.bytes().chain(std::iter::once(0)))
        };
        format!(
            "{:016x}{:016x}",
            fnv1a(0xcbf2_9ce4_8422_2325, bytes()),
            fnv1a(0x6c62_272e_07bb_0142, bytes())
        )
    }

    /// The function `function` stored under `key`, if there is one (counted as a hit).
    pub fn load(&self, key: &str, function: &str) -> Option<Cached> {
        let cached = self.open(key, function)?;
        self.hits.set(self.hits.get() + 1);
        Some(cached)
    }

    fn open(&self, key: &str, function: &str) -> Option<Cached> {
        let library_path = self.dir.join(format!("{key}.so"));
        let output = std::fs::read_to_string(self.dir.join(format!("{key}.json"))).ok()?;
        let output = output_from_json(&serde_json::from_str(&output).ok()?)?;
        // Safety: a library this cache wrote; it has no initialisers. Every symbol is bound
        // now, so a missing one is an error here, not a crash at the call.
        let open = || unsafe {
            libloading::os::unix::Library::open(
                Some(&library_path),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL,
            )
        };
        // A library that calls the matmul kernels loads once they are global symbols. Where
        // they cannot be (a CPU without AVX-512), it does not: a miss.
        let library: libloading::Library = match open() {
            Ok(library) => library,
            Err(_) => {
                crate::kernels::load_prebuilt().ok()?;
                open().ok()?
            }
        }
        .into();
        // Safety: the symbol has the type `aot::emit_native` gives it.
        let packed: Packed = unsafe {
            *library
                .get::<Packed>(format!("{function}{}\0", aot::MEMREF_WRAPPER).as_bytes())
                .ok()?
        };
        Some(Cached {
            callable: Callable::new(packed),
            output,
            _library: library,
        })
    }

    /// Links `native` (the JIT's code for `function`, `crate::backend::native`) into a
    /// library in the cache under `key`, and loads it.
    pub fn store(
        &self,
        key: &str,
        native: &aot::Native,
        function: &str,
        output: &Output,
    ) -> Result<Cached, String> {
        let work = self.dir.join(format!("tmp-{}-{key}", std::process::id()));
        std::fs::create_dir_all(&work)
            .map_err(|e| format!("cannot create {}: {e}", work.display()))?;
        let stored = (|| -> Result<(), String> {
            let object = work.join("code.o");
            std::fs::write(&object, &native.code).map_err(|e| e.to_string())?;
            let library = work.join("code.so");
            let mut command = std::process::Command::new("ld");
            command.arg("-shared").arg("-o").arg(&library).arg(&object);
            if native.calls_memref_copy {
                command.arg(aot::memref_copy_object(&work)?);
            }
            if native.calls_vector_math {
                command.arg("-lmvec");
            }
            if native.calls_openmp {
                let runtime = std::path::Path::new(crate::pipeline::OPENMP_RUNTIME);
                command.arg(runtime);
                if let Some(folder) = runtime.parent() {
                    command.arg("-rpath").arg(folder);
                }
            }
            let status = command
                .status()
                .map_err(|e| format!("cannot run ld: {e}"))?;
            if !status.success() {
                return Err(String::from("ld failed"));
            }
            let description = work.join("output.json");
            std::fs::write(&description, output_to_json(output).to_string())
                .map_err(|e| e.to_string())?;
            // The description last: `load` needs both.
            std::fs::rename(&library, self.dir.join(format!("{key}.so")))
                .map_err(|e| e.to_string())?;
            std::fs::rename(&description, self.dir.join(format!("{key}.json")))
                .map_err(|e| e.to_string())
        })();
        let _ = std::fs::remove_dir_all(&work);
        stored?;
        self.open(key, function)
            .ok_or_else(|| String::from("the stored library does not load"))
    }
}

/// The FNV-1a hash of `bytes`, from `seed`.
pub(crate) fn fnv1a(seed: u64, bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(seed, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The compiler's version and the size and time of its executable: a rebuilt compiler has
/// a new identity, so it never reuses code an older one made.
fn compiler_identity() -> String {
    let executable = std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| format!("{} {:?}", m.len(), m.modified().ok()))
        .unwrap_or_default();
    format!("ferrax {} {executable}", env!("CARGO_PKG_VERSION"))
}

fn output_to_json(output: &Output) -> Json {
    match output {
        Output::Array { index, ty } => json!({
            "array": index,
            "dtype": ty.dtype.name(),
            "shape": ty.shape,
            "weak": ty.weak,
        }),
        Output::Static(value) => json!({ "static": match value {
            StaticValue::None => Json::Null,
            StaticValue::Bool(b) => json!(b),
            StaticValue::Int(i) => json!({ "int": i }),
            StaticValue::Float(f) => json!({ "float_bits": f.to_bits() }),
            StaticValue::Str(s) => json!({ "str": s }),
        }}),
        Output::Tuple(items) => {
            json!({ "tuple": items.iter().map(output_to_json).collect::<Vec<_>>() })
        }
        Output::List(items) => {
            json!({ "list": items.iter().map(output_to_json).collect::<Vec<_>>() })
        }
    }
}

fn output_from_json(json: &Json) -> Option<Output> {
    if let Some(index) = json.get("array") {
        let shape = json["shape"]
            .as_array()?
            .iter()
            .map(Json::as_i64)
            .collect::<Option<Vec<_>>>()?;
        return Some(Output::Array {
            index: index.as_u64()? as usize,
            ty: ArrayType {
                dtype: DType::parse(json["dtype"].as_str()?)?,
                shape,
                weak: json["weak"].as_bool()?,
            },
        });
    }
    if let Some(value) = json.get("static") {
        return Some(Output::Static(match value {
            Json::Null => StaticValue::None,
            Json::Bool(b) => StaticValue::Bool(*b),
            Json::Object(map) => {
                if let Some(text) = map.get("str") {
                    StaticValue::Str(text.as_str()?.to_string())
                } else if let Some(int) = map.get("int") {
                    StaticValue::Int(int.as_i64()?)
                } else {
                    StaticValue::Float(f64::from_bits(map.get("float_bits")?.as_u64()?))
                }
            }
            _ => return None,
        }));
    }
    let items = |key: &str| -> Option<Vec<Output>> {
        json.get(key)?
            .as_array()?
            .iter()
            .map(output_from_json)
            .collect()
    };
    items("tuple")
        .map(Output::Tuple)
        .or_else(|| items("list").map(Output::List))
}
