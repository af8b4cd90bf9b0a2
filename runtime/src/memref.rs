//! MLIR's memref descriptor, the calling convention of compiled code: for an array of rank
//! `r`, the words `{allocated, aligned, offset, sizes[r], strides[r]}` (pointers and `i64`s).
//! A compiled function takes a pointer to one descriptor per argument.

/// The descriptor of a dense row-major buffer at `pointer` of `shape`, as 64-bit words.
pub fn descriptor(pointer: *const u8, shape: &[usize]) -> Vec<i64> {
    let address = pointer as i64;
    let mut words = vec![address, address, 0];
    words.extend(shape.iter().map(|d| *d as i64));
    let mut strides = vec![1i64; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1] as i64;
    }
    words.extend(strides);
    words
}

/// Points an existing descriptor at another buffer of the same shape.
pub fn set_pointer(descriptor: &mut [i64], pointer: *const u8) {
    descriptor[0] = pointer as i64;
    descriptor[1] = pointer as i64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_major_strides() {
        let words = descriptor(std::ptr::null(), &[2, 3, 4]);
        assert_eq!(&words[2..], &[0, 2, 3, 4, 12, 4, 1]);
        assert_eq!(descriptor(std::ptr::null(), &[]).len(), 3);
    }
}
