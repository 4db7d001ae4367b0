//! Allocator settings for the daemon (glibc's `mallopt`).
//!
//! Every invocation moves its payload and its result through buffers the
//! size of the payload (the frame codec, the ring). glibc serves an
//! allocation above its mmap threshold (128 KiB at first, adjusted as it
//! goes) with a fresh `mmap`, and gives freed memory at the top of the heap
//! back to the kernel past its trim threshold: a 1 MiB payload then costs
//! hundreds of page faults and page frees per invocation, each way, and a
//! warm 1 MiB round trip three times what it costs when those buffers come
//! from a heap that keeps its pages.

/// Serve allocations up to `largest` bytes from the heap, and keep up to
/// four times that of freed memory instead of returning it to the kernel.
/// Returns false where the allocator ignores the settings (not glibc) or
/// refuses them.
pub fn keep_buffers_up_to(largest: usize) -> bool {
    // glibc caps the mmap threshold at half its largest heap (32 MiB).
    const MAX_MMAP_THRESHOLD: usize = 32 << 20;
    let threshold = largest.min(MAX_MMAP_THRESHOLD);
    let trim = threshold.saturating_mul(4);
    tune(threshold, trim)
}

#[cfg(target_env = "gnu")]
fn tune(mmap_threshold: usize, trim_threshold: usize) -> bool {
    set(libc::M_MMAP_THRESHOLD, mmap_threshold) && set(libc::M_TRIM_THRESHOLD, trim_threshold)
}

#[cfg(not(target_env = "gnu"))]
fn tune(_mmap_threshold: usize, _trim_threshold: usize) -> bool {
    false
}

#[cfg(target_env = "gnu")]
fn set(option: libc::c_int, value: usize) -> bool {
    let Ok(value) = libc::c_int::try_from(value) else {
        return false;
    };
    // SAFETY: mallopt only changes glibc's allocator parameters; it is
    // called with a valid option and a value in its range, and allocations
    // made before keep working.
    unsafe { libc::mallopt(option, value) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_env = "gnu")]
    fn glibc_takes_the_settings() {
        assert!(keep_buffers_up_to(8 << 20));
        // Larger than glibc allows is capped, not refused.
        assert!(keep_buffers_up_to(1 << 30));
    }
}
