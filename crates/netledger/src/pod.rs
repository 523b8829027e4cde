//! Plain-old-data values and their bytes: what map keys and values are.

use std::mem::size_of;

/// A type whose values may be copied to and from kernel bytes.
///
/// # Safety
/// Every bit pattern of `size_of::<Self>()` bytes must be a valid value (no
/// references, bools, or enums with holes), and the type must have no
/// padding bytes whose contents matter.
pub unsafe trait Pod: Copy + Default + 'static {}

// SAFETY: integers: every bit pattern is a value.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}
// SAFETY: arrays of integers.
unsafe impl<const N: usize> Pod for [u8; N] where [u8; N]: Default {}

/// The bytes of a value.
pub fn bytes_of<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: T is Pod: all of its size_of::<T>() bytes are initialised and
    // may be viewed as bytes for as long as the borrow of `v` lasts.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

/// The bytes of a slice of values.
pub fn bytes_of_slice<T: Pod>(v: &[T]) -> &[u8] {
    // SAFETY: as for bytes_of, over the whole slice.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// A value read from the first `size_of::<T>()` bytes of `bytes`.
///
/// # Panics
/// If `bytes` is shorter than a `T`: a map handed back fewer bytes than its
/// declared value size, which the kernel never does.
pub fn from_bytes<T: Pod>(bytes: &[u8]) -> T {
    assert!(
        bytes.len() >= size_of::<T>(),
        "{} bytes for a {}-byte value",
        bytes.len(),
        size_of::<T>()
    );
    // SAFETY: bytes holds at least size_of::<T>() bytes (checked above), any
    // bit pattern is a valid T (Pod), and read_unaligned copes with the
    // alignment of a byte buffer.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}
