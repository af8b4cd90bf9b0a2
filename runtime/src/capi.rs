//! The C API of the runtime (`runtime/include/ferrax_runtime.h`): arrays, `.npy` files, and
//! calling the entries of a compiled library by name with checked dtypes and shapes.
//!
//! Errors are values: a function that can fail returns NULL or a non-zero code and, when
//! `error` is not NULL, stores a message in `*error` that the caller frees with
//! `ferrax_string_free`.

use crate::{Array, DType, Library};
use std::ffi::{CStr, CString, c_char, c_int, c_void};

/// An array owned by the caller of the C API.
pub struct FerraxArray(Array);

/// A loaded library owned by the caller of the C API.
pub struct FerraxLibrary(Library);

const DTYPES: [DType; 5] = [DType::Bool, DType::I32, DType::I64, DType::F32, DType::F64];

fn dtype_code(dtype: DType) -> c_int {
    DTYPES.iter().position(|d| *d == dtype).unwrap_or(0) as c_int
}

/// Stores `message` in `*error` when `error` is not NULL.
///
/// # Safety
/// `error` is NULL or valid for a write.
unsafe fn set_error(error: *mut *mut c_char, message: &str) {
    if !error.is_null() {
        let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
        // Safety: checked non-null; valid for a write by the caller's contract.
        unsafe { *error = text.into_raw() };
    }
}

/// # Safety
/// `text` is NULL or a NUL-terminated string.
unsafe fn string<'a>(text: *const c_char) -> Option<&'a str> {
    if text.is_null() {
        return None;
    }
    // Safety: non-null and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(text) }.to_str().ok()
}

/// A new zero-filled array of `dtype` (0 bool, 1 int32, 2 int64, 3 float32, 4 float64) and
/// `shape` (`rank` sizes); NULL for an unknown dtype.
///
/// # Safety
/// `shape` points at `rank` sizes (or is anything when `rank` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferrax_array_new(
    dtype: c_int,
    rank: usize,
    shape: *const usize,
) -> *mut FerraxArray {
    let Some(dtype) = usize::try_from(dtype).ok().and_then(|d| DTYPES.get(d)) else {
        return std::ptr::null_mut();
    };
    let shape = if rank == 0 || shape.is_null() {
        vec![]
    } else {
        // Safety: `rank` sizes by the caller's contract.
        unsafe { std::slice::from_raw_parts(shape, rank) }.to_vec()
    };
    Box::into_raw(Box::new(FerraxArray(Array::zeros(*dtype, shape))))
}

/// Frees an array (NULL is ignored).
///
/// # Safety
/// `array` is NULL or came from this API and is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferrax_array_free(array: *mut FerraxArray) {
    if !array.is_null() {
        // Safety: made by `Box::into_raw` in this API.
        drop(unsafe { Box::from_raw(array) });
    }
}

/// The array's elements: row-major, 64-byte aligned.
///
/// # Safety
/// `array` is a live array of this API.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferrax_array_data(array: *mut FerraxArray) -> *mut c_void {
    // Safety: a live array by the caller's contract.
    unsafe { (*array).0.data.as_mut_ptr() as *mut c_void }
}

/// The array's dtype code (see `ferrax_array_new`).
///
/// # Safety
/// `array` is a live array of this API.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferrax_array_dtype(array: *const FerraxArray) -> c_int {
    // Safety: a live array by the caller's contract.
    dtype_code(unsafe { (*array).0.dtype })
}

/// The array's number of dimensions.
///
/// # Safety
/// `array` is a live array of this API.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferrax_array_rank(array: *const FerraxArray) -> usize {
    // Safety: a live array by the caller's contract.
    unsafe { (*array).0.shape.len() }
}

/// The array's sizes (`rank` of them), valid while the array lives.
///
/// # Safety
/// `array` is a live array of this API.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferrax_array_shape(array: *const FerraxArray) -> *const usize {
    // Safety: a live array by the caller's contract.
    unsafe { (*array).0.shape.as_ptr() }
}

/// Reads a `.npy` file; NULL on error.
///
/// # Safety
/// `path` is a NUL-terminated string; `error` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferrax_array_read_npy(
    path: *const c_char,
    error: *mut *mut c_char,
) -> *mut FerraxArray {
    // Safety: by the caller's contract.
    let Some(path) = (unsafe { string(path) }) else {
        unsafe { set_error(error, "the path is NULL or not UTF-8") };
        return std::ptr::null_mut();
    };
    let result = std::fs::read(path)
        .map_err(|e| format!("cannot read {path}: {e}"))
        .and_then(|bytes| crate::read_npy(&bytes));
    match result {
        Ok(array) => Box::into_raw(Box::new(FerraxArray(array))),
        Err(message) => {
            // Safety: by the caller's contract.
            unsafe { set_error(error, &message) };
            std::ptr::null_mut()
        }
    }
}

/// Writes a `.npy` file; 0 on success.
///
/// # Safety
/// `array` is a live array of this API; `path` a NUL-terminated string; `error` NULL or
/// valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferrax_array_write_npy(
    array: *const FerraxArray,
    path: *const c_char,
    error: *mut *mut c_char,
) -> c_int {
    // Safety: by the caller's contract.
    let Some(path) = (unsafe { string(path) }) else {
        unsafe { set_error(error, "the path is NULL or not UTF-8") };
        return 1;
    };
    // Safety: a live array by the caller's contract.
    let bytes = crate::write_npy(unsafe { &(*array).0 });
    match std::fs::write(path, bytes) {
        Ok(()) => 0,
        Err(e) => {
            // Safety: by the caller's contract.
            unsafe { set_error(error, &format!("cannot write {path}: {e}")) };
            1
        }
    }
}

/// Loads a library made by `ferrax compile --emit lib`; NULL on error.
///
/// # Safety
/// `path` is a NUL-terminated string; `error` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferrax_library_open(
    path: *const c_char,
    error: *mut *mut c_char,
) -> *mut FerraxLibrary {
    // Safety: by the caller's contract.
    let Some(path) = (unsafe { string(path) }) else {
        unsafe { set_error(error, "the path is NULL or not UTF-8") };
        return std::ptr::null_mut();
    };
    match Library::open(path) {
        Ok(library) => Box::into_raw(Box::new(FerraxLibrary(library))),
        Err(e) => {
            // Safety: by the caller's contract.
            unsafe { set_error(error, &e.to_string()) };
            std::ptr::null_mut()
        }
    }
}

/// Unloads a library (NULL is ignored).
///
/// # Safety
/// `library` is NULL or came from this API and is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferrax_library_close(library: *mut FerraxLibrary) {
    if !library.is_null() {
        // Safety: made by `Box::into_raw` in this API.
        drop(unsafe { Box::from_raw(library) });
    }
}

/// Calls the entry `name` on `inputs` after checking their dtypes and shapes; stores
/// `n_outputs` new arrays in `outputs` (the caller frees them). 0 on success.
///
/// # Safety
/// `library` is a live library of this API; `name` a NUL-terminated string; `inputs` points
/// at `n_inputs` live arrays; `outputs` at `n_outputs` writable slots; `error` is NULL or
/// valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferrax_library_call(
    library: *const FerraxLibrary,
    name: *const c_char,
    inputs: *const *const FerraxArray,
    n_inputs: usize,
    outputs: *mut *mut FerraxArray,
    n_outputs: usize,
    error: *mut *mut c_char,
) -> c_int {
    // Safety: by the caller's contract.
    let Some(name) = (unsafe { string(name) }) else {
        unsafe { set_error(error, "the entry name is NULL or not UTF-8") };
        return 1;
    };
    if library.is_null()
        || (n_inputs > 0 && inputs.is_null())
        || (n_outputs > 0 && outputs.is_null())
    {
        // Safety: by the caller's contract.
        unsafe { set_error(error, "a NULL library, inputs or outputs") };
        return 1;
    }
    // Safety: `n_inputs` live arrays by the caller's contract.
    let arrays: Vec<&Array> = (0..n_inputs)
        .map(|i| unsafe { &(**inputs.add(i)).0 })
        .collect();
    // Safety: a live library by the caller's contract.
    let result = unsafe { &(*library).0 }.entry(name).and_then(|entry| {
        if entry.signature.outputs.len() != n_outputs {
            return Err(crate::Error::OutputCount {
                entry: name.to_string(),
                expected: entry.signature.outputs.len(),
                got: n_outputs,
            });
        }
        entry.call(&arrays)
    });
    match result {
        Ok(results) => {
            for (i, array) in results.into_iter().enumerate() {
                // Safety: `n_outputs` writable slots by the caller's contract.
                unsafe { *outputs.add(i) = Box::into_raw(Box::new(FerraxArray(array))) };
            }
            0
        }
        Err(e) => {
            // Safety: by the caller's contract.
            unsafe { set_error(error, &e.to_string()) };
            1
        }
    }
}

/// Frees a message stored by this API (NULL is ignored).
///
/// # Safety
/// `text` is NULL or a message from this API, not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferrax_string_free(text: *mut c_char) {
    if !text.is_null() {
        // Safety: made by `CString::into_raw` in `set_error`.
        drop(unsafe { CString::from_raw(text) });
    }
}
