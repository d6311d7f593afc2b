//! Giving memory freed by dropped instances back to the system.
//!
//! An instance's store, WASI context and host state live on the C heap. glibc's
//! allocator keeps memory freed in the middle of its heaps for later allocations, so
//! after a burst of instances is dropped as idle, the server stays as large as it was
//! at the burst's peak: about 100 KiB per trigger that ran once (`BENCHMARKS.md`, "Many
//! triggers on one server"). A trim after an expiry sweep hands those pages back.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The least time between two trims: each walks the allocator's free lists under each
/// arena's lock, which calls allocating meanwhile wait for.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// When the process last trimmed.
static LAST_TRIM: Mutex<Option<Instant>> = Mutex::new(None);

/// Returns the allocator's free pages to the system, at most once a second: false when
/// it did not, having trimmed less than a second ago. Called only after idle instances
/// were dropped, off the call path.
pub(crate) fn release_free_memory() -> bool {
    let mut last = LAST_TRIM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.is_some_and(|last| last.elapsed() < MIN_INTERVAL) {
        return false;
    }
    *last = Some(Instant::now());
    trim();
    true
}

/// Nothing where the allocator is not glibc's.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(
    unsafe_code,
    reason = "malloc_trim is a plain glibc call with no preconditions; it only releases \
    free memory"
)]
fn trim() {
    // SAFETY: see the reason above; 0 keeps no padding at the top of the main heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
