//! Hints that ask the CPU to start loading memory into its cache before
//! it is read: the correlation stage asks for every group an event is
//! counted in (and for the key's row of group slots) before counting it in
//! any, so that their cache misses overlap. A hint neither reads the
//! memory nor faults, whatever the address; on targets other than x86_64
//! it does nothing.

/// Asks the CPU to load the cache lines of `*value` (a hint: it neither
/// reads nor faults).
#[inline(always)]
pub fn value<T>(value: &T) {
    bytes((value as *const T).cast(), std::mem::size_of::<T>());
}

/// Asks the CPU to load the cache lines of `values`.
pub fn slice<T>(values: &[T]) {
    bytes(values.as_ptr().cast(), std::mem::size_of_val(values));
}

/// Asks the CPU to load the cache lines of the `size` bytes at `start`
/// (at most eight).
#[inline(always)]
fn bytes(start: *const u8, size: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        const LINE: usize = 64;
        // One address in each line the bytes touch (the first eight: a
        // hint for more would cost more than the misses it saves).
        let lines = (start as usize % LINE)
            .saturating_add(size.max(1))
            .div_ceil(LINE)
            .min(8);
        for k in 0..lines {
            // SAFETY: a prefetch is only a hint: it does not read the
            // memory into any value, and never faults, whatever the
            // address. The `sse` feature it needs is part of every x86_64
            // target.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(k * LINE).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, size);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetches_are_hints_at_any_address() {
        // No address or size panics (the arithmetic wraps) or faults.
        for start in [0usize, 1, 63, 64, 4095, usize::MAX - 3, usize::MAX] {
            for size in [0, 1, 64, 65, 1 << 20, usize::MAX] {
                bytes(start as *const u8, size);
            }
        }
        slice::<u32>(&[]);
        slice(&[0u32; 100]);
    }
}
