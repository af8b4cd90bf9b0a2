//! Calling the entries of a library made by `ferrax compile --emit lib`.
//!
//! Each entry `NAME` of such a library exports three C symbols:
//! - `int NAME(int64_t size..., const T *input..., T *output...)`: the function, for C
//!   callers; the sizes are those its shapes leave open (`n` in `f32[n]`);
//! - `int NAME__ferrax_packed(void **pointers, const int64_t *sizes)`: the same with its
//!   pointers and sizes in arrays;
//! - `const char *NAME__ferrax_signature(void)`: its signature as JSON, `{"sizes": ["n"],
//!   "inputs": [{"name": "x", "dtype": "float32", "shape": ["n", 3]}], "outputs": [...]}`.
//!
//! [`Library::entry`] reads the signature, and [`Entry::call`] checks every input's dtype and
//! shape against it (binding the open sizes) before calling, so a mismatch is an error
//! value, never a bad call.

use crate::{Array, DType};
use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::Path;

/// What can go wrong when loading a library or calling an entry.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("cannot load `{path}`: {message}")]
    Open { path: String, message: String },
    #[error("the library has no Ferrax entry `{0}`")]
    NoEntry(String),
    #[error("the signature of `{entry}` is unreadable: {message}")]
    Signature { entry: String, message: String },
    #[error("`{entry}` takes {expected} inputs, got {got}")]
    InputCount {
        entry: String,
        expected: usize,
        got: usize,
    },
    #[error("`{entry}` takes {expected} outputs, got {got}")]
    OutputCount {
        entry: String,
        expected: usize,
        got: usize,
    },
    #[error("`{entry}`: {what} should be {expected}, got {got}")]
    Mismatch {
        entry: String,
        what: String,
        expected: String,
        got: String,
    },
    #[error("`{entry}` returned error code {code}")]
    Failed { entry: String, code: i32 },
}

/// A dimension of a parameter: a number, or size `k` of the entry's open sizes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dim {
    Static(usize),
    Size(usize),
}

/// An array's dtype and shape as an entry declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<Dim>,
}

fn describe(dtype: DType, shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("{}[{}]", dtype.short(), dims.join(", "))
}

/// The open sizes, inputs and outputs of an entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    pub sizes: Vec<String>,
    pub inputs: Vec<Param>,
    pub outputs: Vec<Param>,
}

impl Signature {
    /// Reads the JSON form (see the module documentation).
    pub fn parse(text: &str) -> Result<Signature, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let sizes: Vec<String> = match value.get("sizes") {
            None => vec![],
            Some(list) => list
                .as_array()
                .ok_or("`sizes` is not a list")?
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_string)
                        .ok_or("a size without a name")
                })
                .collect::<Result<_, _>>()?,
        };
        let params = |key: &str| -> Result<Vec<Param>, String> {
            let list = value[key]
                .as_array()
                .ok_or_else(|| format!("no `{key}` list"))?;
            list.iter()
                .map(|item| {
                    let dtype = item["dtype"]
                        .as_str()
                        .and_then(DType::from_name)
                        .ok_or("a parameter without a known dtype")?;
                    let shape = item["shape"]
                        .as_array()
                        .ok_or("a parameter without a shape")?
                        .iter()
                        .map(|d| match (d.as_u64(), d.as_str()) {
                            (Some(size), _) => Ok(Dim::Static(size as usize)),
                            (_, Some(name)) => sizes
                                .iter()
                                .position(|s| s == name)
                                .map(Dim::Size)
                                .ok_or("a dimension names an unknown size"),
                            _ => Err("a bad dimension"),
                        })
                        .collect::<Result<_, _>>()?;
                    let name = item["name"].as_str().unwrap_or("").to_string();
                    Ok(Param { name, dtype, shape })
                })
                .collect()
        };
        Ok(Signature {
            inputs: params("inputs")?,
            outputs: params("outputs")?,
            sizes,
        })
    }

    /// `f32[n, 3]`.
    pub fn describe(&self, param: &Param) -> String {
        let dims: Vec<String> = param
            .shape
            .iter()
            .map(|d| match d {
                Dim::Static(size) => size.to_string(),
                Dim::Size(k) => self.sizes[*k].clone(),
            })
            .collect();
        format!("{}[{}]", param.dtype.short(), dims.join(", "))
    }
}

/// The most open sizes and arrays a call handles without allocating.
const ON_STACK: usize = 16;

type Packed = unsafe extern "C" fn(*mut *mut c_void, *const i64) -> c_int;
type SignatureFn = unsafe extern "C" fn() -> *const c_char;

/// A loaded library of compiled entries.
pub struct Library {
    library: libloading::Library,
}

impl Library {
    /// Loads the shared library at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Library, Error> {
        let path = path.as_ref();
        // Safety: loading runs the library's initialisers; a Ferrax library has none beyond
        // the C runtime's.
        let library = unsafe { libloading::Library::new(path) }.map_err(|e| Error::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Library { library })
    }

    /// The entry `name`, with its signature.
    pub fn entry(&self, name: &str) -> Result<Entry<'_>, Error> {
        let no_entry = |_| Error::NoEntry(name.to_string());
        // Safety: the symbols have the types the library's generator gives them.
        let (packed, signature) = unsafe {
            let packed: libloading::Symbol<'_, Packed> = self
                .library
                .get(format!("{name}__ferrax_packed\0").as_bytes())
                .map_err(no_entry)?;
            let signature: libloading::Symbol<'_, SignatureFn> = self
                .library
                .get(format!("{name}__ferrax_signature\0").as_bytes())
                .map_err(no_entry)?;
            (*packed, CStr::from_ptr(signature()))
        };
        let signature =
            Signature::parse(&signature.to_string_lossy()).map_err(|message| Error::Signature {
                entry: name.to_string(),
                message,
            })?;
        Ok(Entry {
            name: name.to_string(),
            packed,
            signature,
            _library: std::marker::PhantomData,
        })
    }
}

/// One entry of a loaded library.
pub struct Entry<'l> {
    name: String,
    packed: Packed,
    pub signature: Signature,
    _library: std::marker::PhantomData<&'l Library>,
}

impl Entry<'_> {
    /// Calls the entry on `inputs`; returns new output arrays.
    pub fn call(&self, inputs: &[&Array]) -> Result<Vec<Array>, Error> {
        let sizes = self.bind(inputs)?;
        let mut outputs: Vec<Array> = self
            .signature
            .outputs
            .iter()
            .map(|p| Array::zeros(p.dtype, shape_of(p, &sizes)))
            .collect();
        self.call_into(inputs, &mut outputs)?;
        Ok(outputs)
    }

    /// Calls the entry on `inputs`, writing into `outputs` (allocated by the caller with the
    /// declared dtypes and shapes). Allocates nothing for up to 16 arrays and sizes.
    pub fn call_into(&self, inputs: &[&Array], outputs: &mut [Array]) -> Result<(), Error> {
        let signature = &self.signature;
        let sizes = self.bind(inputs)?;
        if outputs.len() != signature.outputs.len() {
            return Err(Error::OutputCount {
                entry: self.name.clone(),
                expected: signature.outputs.len(),
                got: outputs.len(),
            });
        }
        for (index, (array, param)) in outputs.iter().zip(&signature.outputs).enumerate() {
            let fits = array.dtype == param.dtype
                && array.shape.len() == param.shape.len()
                && array
                    .shape
                    .iter()
                    .zip(&param.shape)
                    .all(|(size, dim)| *size == dim_value(*dim, &sizes));
            if !fits {
                return Err(Error::Mismatch {
                    entry: self.name.clone(),
                    what: format!("output {index}"),
                    expected: describe(param.dtype, &shape_of(param, &sizes)),
                    got: describe(array.dtype, &array.shape),
                });
            }
        }
        let count = inputs.len() + outputs.len();
        let mut on_stack = [std::ptr::null_mut::<c_void>(); ON_STACK];
        let mut on_heap = vec![];
        let pointers: &mut [*mut c_void] = if count <= ON_STACK {
            &mut on_stack[..count]
        } else {
            on_heap.resize(count, std::ptr::null_mut());
            &mut on_heap
        };
        for (slot, array) in pointers.iter_mut().zip(inputs) {
            *slot = array.data.as_ptr() as *mut c_void;
        }
        for (slot, array) in pointers[inputs.len()..].iter_mut().zip(outputs.iter_mut()) {
            *slot = array.data.as_mut_ptr() as *mut c_void;
        }
        // Safety: every pointer is a live buffer of the dtype and shape the entry declares
        // for these sizes.
        let code = unsafe { (self.packed)(pointers.as_mut_ptr(), sizes.values.as_ptr()) };
        if code != 0 {
            return Err(Error::Failed {
                entry: self.name.clone(),
                code,
            });
        }
        Ok(())
    }

    /// Checks the inputs against the signature; returns the open sizes they give.
    fn bind(&self, inputs: &[&Array]) -> Result<Bound, Error> {
        let signature = &self.signature;
        if inputs.len() != signature.inputs.len() {
            return Err(Error::InputCount {
                entry: self.name.clone(),
                expected: signature.inputs.len(),
                got: inputs.len(),
            });
        }
        if signature.sizes.len() > ON_STACK {
            return Err(Error::Signature {
                entry: self.name.clone(),
                message: format!("more than {ON_STACK} open sizes"),
            });
        }
        let mut sizes = Bound {
            values: [-1; ON_STACK],
        };
        for (index, (array, param)) in inputs.iter().zip(&signature.inputs).enumerate() {
            // Element by element: comparing slices called glibc's memcmp, which took about
            // 300 ns per call on the empty shapes of scalars (measured on this machine).
            let mut fits = array.dtype == param.dtype && array.shape.len() == param.shape.len();
            for (size, dim) in array.shape.iter().zip(&param.shape) {
                match *dim {
                    Dim::Static(expected) => fits &= *size == expected,
                    Dim::Size(k) => {
                        if sizes.values[k] < 0 {
                            sizes.values[k] = *size as i64;
                        }
                        fits &= sizes.values[k] == *size as i64;
                    }
                }
            }
            if !fits {
                return Err(Error::Mismatch {
                    entry: self.name.clone(),
                    what: format!("input {index} ({})", param.name),
                    expected: signature.describe(param),
                    got: describe(array.dtype, &array.shape),
                });
            }
        }
        Ok(sizes)
    }
}

/// The open sizes of one call, as the inputs give them.
struct Bound {
    values: [i64; ON_STACK],
}

fn dim_value(dim: Dim, sizes: &Bound) -> usize {
    match dim {
        Dim::Static(size) => size,
        Dim::Size(k) => sizes.values[k].max(0) as usize,
    }
}

fn shape_of(param: &Param, sizes: &Bound) -> Vec<usize> {
    param.shape.iter().map(|d| dim_value(*d, sizes)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_parse() {
        let text = r#"{"inputs": [{"name": "x", "dtype": "float32", "shape": [2, 3]}],
                       "outputs": [{"name": "", "dtype": "bool", "shape": []}]}"#;
        let signature = Signature::parse(text).expect("parses");
        assert_eq!(signature.describe(&signature.inputs[0]), "f32[2, 3]");
        assert_eq!(signature.describe(&signature.outputs[0]), "bool[]");
        let text = r#"{"sizes": ["n"], "inputs": [{"name": "x", "dtype": "int64", "shape": ["n", 2]}],
                       "outputs": []}"#;
        let signature = Signature::parse(text).expect("parses");
        assert_eq!(signature.describe(&signature.inputs[0]), "i64[n, 2]");
        assert!(
            Signature::parse(r#"{"inputs": [{"dtype": "bool", "shape": ["m"]}], "outputs": []}"#)
                .is_err()
        );
        assert!(Signature::parse(r#"{"inputs": [{"dtype": "float16", "shape": []}]}"#).is_err());
    }

    #[test]
    fn a_missing_library_is_an_error() {
        let error = Library::open("/nonexistent/libnothing.so")
            .err()
            .expect("an error");
        assert!(matches!(error, Error::Open { .. }));
    }
}
