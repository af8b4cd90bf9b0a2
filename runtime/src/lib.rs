//! The Ferrax runtime: arrays (dtype, shape, 64-byte-aligned bytes), their text forms (JAX's
//! repr and the conformance JSON), `.npy` files, the memref descriptors compiled code takes
//! (`memref`), and calling the entries of a compiled library (`library`, and the C API in
//! `capi`). It does not depend on MLIR.

mod buffer;
pub mod capi;
mod format;
pub mod library;
pub mod memref;
mod npy;

pub use buffer::{ALIGNMENT, Buffer};
pub use format::{json, json_float, repr};
pub use library::{Entry, Error, Library, Signature};
pub use npy::{read_npy, write_npy};

/// Element types of arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    Bool,
    I32,
    I64,
    F32,
    F64,
}

impl DType {
    /// The NumPy name (`float32`).
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    /// The short form signatures use (`f32`).
    pub fn short(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::F32 => "f32",
            DType::F64 => "f64",
        }
    }

    /// The dtype of a NumPy name.
    pub fn from_name(name: &str) -> Option<DType> {
        [DType::Bool, DType::I32, DType::I64, DType::F32, DType::F64]
            .into_iter()
            .find(|d| d.name() == name)
    }

    /// The dtype of a short form, a NumPy name, or MLIR's `i1` (bool).
    pub fn parse(text: &str) -> Option<DType> {
        Some(match text {
            "bool" | "bool_" | "i1" => DType::Bool,
            "i32" | "int32" => DType::I32,
            "i64" | "int64" => DType::I64,
            "f32" | "float32" => DType::F32,
            "f64" | "float64" => DType::F64,
            _ => return None,
        })
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    pub fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::I64)
    }

    /// Bytes per element (bool is one byte).
    pub fn size(self) -> usize {
        match self {
            DType::Bool => 1,
            DType::I32 | DType::F32 => 4,
            DType::I64 | DType::F64 => 8,
        }
    }
}

/// A dense row-major array with its elements as little-endian bytes, 64-byte aligned.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Buffer,
}

impl Array {
    /// An array of zeros.
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Self {
        let len = shape.iter().product::<usize>() * dtype.size();
        Self {
            dtype,
            shape,
            data: Buffer::zeroed(len),
        }
    }

    /// An array from `f64` values, converted to `dtype` as NumPy's `astype` does.
    pub fn from_f64(dtype: DType, shape: Vec<usize>, values: &[f64]) -> Self {
        let mut data = Vec::with_capacity(values.len() * dtype.size());
        for v in values {
            match dtype {
                DType::Bool => data.push(u8::from(*v != 0.0)),
                DType::I32 => data.extend_from_slice(&(*v as i32).to_le_bytes()),
                DType::I64 => data.extend_from_slice(&(*v as i64).to_le_bytes()),
                DType::F32 => data.extend_from_slice(&(*v as f32).to_le_bytes()),
                DType::F64 => data.extend_from_slice(&v.to_le_bytes()),
            }
        }
        Self {
            dtype,
            shape,
            data: Buffer::from_bytes(&data),
        }
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` (row-major) as `f64`.
    pub fn get(&self, i: usize) -> f64 {
        let size = self.dtype.size();
        let bytes = &self.data[i * size..(i + 1) * size];
        match self.dtype {
            DType::Bool => f64::from(bytes[0] != 0),
            DType::I32 => f64::from(i32::from_le_bytes(bytes.try_into().expect("4 bytes"))),
            DType::I64 => i64::from_le_bytes(bytes.try_into().expect("8 bytes")) as f64,
            DType::F32 => f64::from(f32::from_le_bytes(bytes.try_into().expect("4 bytes"))),
            DType::F64 => f64::from_le_bytes(bytes.try_into().expect("8 bytes")),
        }
    }
}
