//! `.npy` files (format version 1.0): little-endian, C order.

use crate::{Array, DType};

const MAGIC: &[u8] = b"\x93NUMPY";

fn descr(dtype: DType) -> &'static str {
    match dtype {
        DType::Bool => "|b1",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
    }
}

/// The bytes of a `.npy` file holding `array`.
pub fn write_npy(array: &Array) -> Vec<u8> {
    let shape = match array.shape.as_slice() {
        [one] => format!("({one},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        descr(array.dtype)
    );
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&array.data);
    bytes
}

/// Reads a `.npy` file's bytes; errors name what is wrong.
pub fn read_npy(bytes: &[u8]) -> Result<Array, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(String::from("not a .npy file (bad magic)"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        version => return Err(format!("unsupported .npy version {version}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let field = |key: &str| -> Result<&str, String> {
        let at = header
            .find(&format!("'{key}'"))
            .ok_or(format!("the .npy header has no '{key}'"))?;
        Ok(header[at + key.len() + 2..].trim_start_matches([':', ' ']))
    };
    let descr_text = field("descr")?;
    let descr_text = descr_text.trim_start_matches('\'');
    let descr_text = &descr_text[..descr_text.find('\'').ok_or("bad descr")?];
    let dtype = match descr_text {
        "|b1" | "<b1" => DType::Bool,
        "<i4" => DType::I32,
        "<i8" => DType::I64,
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        other => return Err(format!("unsupported .npy dtype '{other}'")),
    };
    if field("fortran_order")?.starts_with("True") {
        return Err(String::from("Fortran-order .npy files are not supported"));
    }
    let shape_text = field("shape")?;
    let shape_text = &shape_text[1..shape_text.find(')').ok_or("bad shape")?];
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad dimension '{s}'"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let data = &bytes[start + header_len..];
    let expected = shape.iter().product::<usize>() * dtype.size();
    if data.len() != expected {
        return Err(format!(
            "the .npy data has {} bytes, the header says {expected}",
            data.len()
        ));
    }
    Ok(Array {
        dtype,
        shape,
        data: crate::Buffer::from_bytes(data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let array = Array::from_f64(DType::F32, vec![2, 2], &[1.0, 2.0, 3.0, 4.5]);
        let bytes = write_npy(&array);
        assert_eq!((bytes.len() - array.data.len()) % 64, 0);
        assert_eq!(read_npy(&bytes), Ok(array));
    }

    #[test]
    fn rejects_garbage() {
        assert!(read_npy(b"hello").is_err());
    }
}
