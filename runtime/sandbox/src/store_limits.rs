//! Memory accounting for one instance.

use sluice_plugin_api::LimitKind;
use wasmtime::ResourceLimiter;

/// Caps the total linear memory of an instance and remembers the peak.
///
/// It covers memories and tables only; CPU is bounded at the epoch ticks. A denied
/// growth traps, so the plugin stops with an error naming the limit instead of
/// limping on after a failed allocation.
pub(crate) struct MemoryLimiter {
    pub(crate) limit_bytes: u64,
    /// Sum of the current sizes of all the instance's memories.
    pub(crate) total_bytes: u64,
    pub(crate) peak_bytes: u64,
    /// Set when a growth was denied.
    pub(crate) hit: Option<LimitKind>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit_bytes: u64) -> Self {
        Self {
            limit_bytes,
            total_bytes: 0,
            peak_bytes: 0,
            hit: None,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = (desired as u64).saturating_sub(current as u64);
        let total = self.total_bytes.saturating_add(growth);
        if total > self.limit_bytes {
            self.hit = Some(LimitKind::Memory);
            wasmtime::bail!("memory limit exceeded");
        }
        self.total_bytes = total;
        self.peak_bytes = self.peak_bytes.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
