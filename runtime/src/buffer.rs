//! A byte buffer aligned to 64 bytes (a cache line, and the widest vector load).

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;

/// The alignment of every array's elements.
pub const ALIGNMENT: usize = 64;

/// Zero-initialised bytes at a 64-byte-aligned address.
pub struct Buffer {
    pointer: NonNull<u8>,
    len: usize,
}

// Safety: `Buffer` owns its allocation, like `Vec<u8>`.
unsafe impl Send for Buffer {}
unsafe impl Sync for Buffer {}

impl Buffer {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        if len == 0 {
            // An aligned, dangling pointer: nothing is read or written through it.
            let pointer = NonNull::new(ALIGNMENT as *mut u8).expect("non-null");
            return Self { pointer, len };
        }
        let layout = Self::layout(len);
        // Safety: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(pointer) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        Self { pointer, len }
    }

    /// A copy of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut buffer = Self::zeroed(bytes.len());
        buffer.copy_from_slice(bytes);
        buffer
    }

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len, ALIGNMENT).expect("array sizes fit in isize")
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if self.len > 0 {
            // Safety: allocated in `zeroed` with this layout.
            unsafe { dealloc(self.pointer.as_ptr(), Self::layout(self.len)) }
        }
    }
}

impl std::ops::Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // Safety: `len` initialised bytes (or an empty slice at an aligned dangling pointer).
        unsafe { std::slice::from_raw_parts(self.pointer.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // Safety: as in `deref`, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.pointer.as_ptr(), self.len) }
    }
}

impl Clone for Buffer {
    fn clone(&self) -> Self {
        Self::from_bytes(self)
    }
}

impl PartialEq for Buffer {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_zeroed() {
        for len in [0, 1, 3, 64, 1000] {
            let buffer = Buffer::zeroed(len);
            assert_eq!(buffer.as_ptr() as usize % ALIGNMENT, 0);
            assert!(buffer.iter().all(|b| *b == 0));
            assert_eq!(buffer.len(), len);
        }
        let copy = Buffer::from_bytes(&[1, 2, 3]).clone();
        assert_eq!(&*copy, &[1, 2, 3]);
    }
}
