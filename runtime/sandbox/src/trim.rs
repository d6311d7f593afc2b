//! Giving memory freed by dropped instances back to the system.
//!
//! An instance's store, WASI context and host state live on the C heap. glibc's
//! allocator keeps memory freed in the middle of its heaps for later allocations, so
//! after a burst of instances is dropped as idle, the server stays as large as it was
//! at the burst's peak: about 100 KiB per trigger that ran once (`BENCHMARKS.md`, "Many
//! triggers on one server"). A trim after an expiry sweep hands those pages back.

/// Returns the allocator's free pages to the system; nothing where the allocator is
/// not glibc's. Costs a walk over the allocator's free lists, under each arena's lock:
/// called only after idle instances were dropped, off the call path.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(
    unsafe_code,
    reason = "malloc_trim is a plain glibc call with no preconditions; it only releases \
    free memory"
)]
pub(crate) fn release_free_memory() {
    // SAFETY: see the reason above; 0 keeps no padding at the top of the main heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory() {}
