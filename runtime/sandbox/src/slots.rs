//! The sandbox's budget of live instances, shared by every trigger.
//!
//! The pooling allocator reserves room for a fixed number of instances
//! ([`SandboxConfig::max_instances`](crate::SandboxConfig::max_instances)); each live
//! instance holds one [`Slot`]. Warm instances are kept idle in one set across all the
//! triggers' pools, least recently used first, and give their slot up whenever a call
//! needs one: a call without a warm instance evicts the oldest idle one rather than fail.
//! Idle instances are also dropped once idle for longer than the idle time, and whenever
//! their linear memory together passes the memory budget. Only when every slot is running
//! a call does a call wait, for at most its bound; then it is refused with
//! [`InvocationError::Busy`], which the engine answers with 503 (request triggers) or a
//! retry (WAL and schedule triggers). The allocator itself is never asked for more than
//! it has, so its limit never shows up as a trap.

use crate::instance::PluginInstance;
use sluice_plugin_api::{InstanceStats, InvocationError, Limits};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Idle instances kept per pool; more concurrent calls instantiate more, and the extra
/// ones are dropped when they finish.
pub(crate) const MAX_IDLE_PER_POOL: usize = 4;

/// The right to keep one instance alive: held by the instance, given back when it drops.
pub(crate) type Slot = OwnedSemaphorePermit;

/// Which pool an idle instance belongs to.
pub(crate) type PoolId = u64;

/// The bounds on the sandbox's instances.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotBounds {
    /// Instances alive at once.
    pub instances: u32,
    /// Linear memory the idle instances may hold together, in bytes.
    pub idle_memory_bytes: u64,
    /// How long an instance may stay idle.
    pub idle_time: Duration,
    /// How long a call waits for a slot when every one is running a call.
    pub wait: Duration,
}

/// Every live instance's slot, and every idle instance.
pub(crate) struct Slots {
    bounds: SlotBounds,
    permits: Arc<Semaphore>,
    idle: Mutex<Idle>,
    /// Calls waiting for a slot: while there are any, an instance whose call ends is
    /// dropped rather than kept idle, so that its slot goes to them.
    waiting: AtomicU64,
    next_pool: AtomicU64,
    counts: Counts,
    /// Instances were dropped as idle since the memory they freed was last given back.
    trim_pending: AtomicBool,
    /// Spare instances: the runtime instantiated and warmed up, no plugin's yet.
    spares: Mutex<Vec<PluginInstance>>,
    /// Told when a spare was taken, for whoever makes them.
    spare_taken: Notify,
}

#[derive(Default)]
struct Counts {
    instantiated: AtomicU64,
    evicted: AtomicU64,
    expired: AtomicU64,
    waited: AtomicU64,
    refused: AtomicU64,
    spares_made: AtomicU64,
    spares_taken: AtomicU64,
}

#[derive(Default)]
struct Idle {
    /// Stamps of the idle instances, oldest use first, with their pools.
    order: BTreeMap<u64, PoolId>,
    pools: HashMap<PoolId, PoolIdle>,
    /// The linear memory of all idle instances.
    bytes: u64,
    next_stamp: u64,
}

/// One pool's idle instances, most recently used last.
#[derive(Default)]
struct PoolIdle {
    /// The plugin's modification time when these instances loaded it.
    loaded: Option<SystemTime>,
    parked: Vec<Parked>,
}

struct Parked {
    stamp: u64,
    since: Instant,
    bytes: u64,
    instance: PluginInstance,
}

impl Idle {
    /// Removes the least recently used idle instance.
    fn pop_oldest(&mut self) -> Option<PluginInstance> {
        let (_, pool) = self.order.pop_first()?;
        let idle = self.pools.get_mut(&pool)?;
        // A pool's instances are in the order of their use: its oldest is first.
        if idle.parked.is_empty() {
            return None;
        }
        let parked = idle.parked.remove(0);
        self.bytes -= parked.bytes;
        Some(parked.instance)
    }

    /// Removes every idle instance of `pool`.
    fn remove_pool(&mut self, pool: PoolId) -> Vec<PluginInstance> {
        let Some(idle) = self.pools.remove(&pool) else {
            return Vec::new();
        };
        idle.parked
            .into_iter()
            .map(|parked| {
                self.order.remove(&parked.stamp);
                self.bytes -= parked.bytes;
                parked.instance
            })
            .collect()
    }
}

impl Slots {
    pub(crate) fn new(bounds: SlotBounds) -> Arc<Self> {
        let permits = usize::try_from(bounds.instances)
            .unwrap_or(Semaphore::MAX_PERMITS)
            .min(Semaphore::MAX_PERMITS);
        Arc::new(Self {
            bounds,
            permits: Arc::new(Semaphore::new(permits)),
            idle: Mutex::default(),
            waiting: AtomicU64::new(0),
            next_pool: AtomicU64::new(0),
            counts: Counts::default(),
            trim_pending: AtomicBool::new(false),
            spares: Mutex::default(),
            spare_taken: Notify::new(),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spares(&self) -> std::sync::MutexGuard<'_, Vec<PluginInstance>> {
        self.spares.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An id for a new pool.
    pub(crate) fn new_pool(&self) -> PoolId {
        self.next_pool.fetch_add(1, Ordering::Relaxed)
    }

    /// A slot for a new instance: a free one, else the one of the least recently used
    /// idle instance (dropped), else the first to free within the wait.
    ///
    /// # Errors
    ///
    /// [`InvocationError::Busy`] when every slot ran a call for the whole wait.
    pub(crate) async fn acquire(&self) -> Result<Slot, InvocationError> {
        if let Some(slot) = self.free_slot() {
            self.counts.instantiated.fetch_add(1, Ordering::Relaxed);
            return Ok(slot);
        }
        // Counted as waiting before looking again: an instance parked meanwhile is
        // either found now or dropped by `park`, never kept idle while this call waits.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let waited = match self.free_slot() {
            Some(slot) => Ok(Ok(slot)),
            None => {
                self.counts.waited.fetch_add(1, Ordering::Relaxed);
                let wait = Arc::clone(&self.permits).acquire_owned();
                tokio::time::timeout(self.bounds.wait, wait).await
            }
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match waited {
            // The semaphore is never closed.
            Ok(Ok(slot)) => {
                self.counts.instantiated.fetch_add(1, Ordering::Relaxed);
                Ok(slot)
            }
            _ => {
                self.counts.refused.fetch_add(1, Ordering::Relaxed);
                Err(InvocationError::Busy(format!(
                    "every one of the server's {} plugin instances was running a call for \
                     {} (its --max-instances and --instance-wait); the call did not start",
                    self.bounds.instances,
                    humantime::format_duration(self.bounds.wait)
                )))
            }
        }
    }

    /// A free slot, or the slot of the least recently used idle instance, dropped.
    fn free_slot(&self) -> Option<Slot> {
        loop {
            if let Ok(slot) = Arc::clone(&self.permits).try_acquire_owned() {
                return Some(slot);
            }
            // Spares first: a call that gets here had none, or none that fit it.
            let spare = self.spares().pop();
            if let Some(spare) = spare {
                drop(spare);
                self.counts.evicted.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // Dropped outside the lock: its slot is free again.
            let oldest = self.idle().pop_oldest()?;
            drop(oldest);
            self.counts.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A slot for a spare instance: only a free one, and only while no call waits for
    /// one. Spares never take the place of another instance.
    pub(crate) fn slot_for_spare(&self) -> Option<Slot> {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }

    /// Keeps `spare` for the next call without a warm instance, unless a call waits
    /// for its slot.
    pub(crate) fn park_spare(&self, spare: PluginInstance) {
        self.counts.spares_made.fetch_add(1, Ordering::Relaxed);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            drop(spare);
            return;
        }
        self.spares().push(spare);
    }

    /// A spare instance for a plugin given `limits`. One too large for them is dropped,
    /// and its slot is free for the call's fresh instance.
    pub(crate) fn take_spare(&self, limits: &Limits) -> Option<PluginInstance> {
        let spare = self.spares().pop()?;
        self.spare_taken.notify_one();
        if !spare.fits(limits) {
            drop(spare);
            return None;
        }
        self.counts.spares_taken.fetch_add(1, Ordering::Relaxed);
        Some(spare)
    }

    /// How many spare instances are ready.
    pub(crate) fn spare_count(&self) -> usize {
        self.spares().len()
    }

    /// Resolves when a spare was taken since the last time it resolved.
    pub(crate) async fn spare_was_taken(&self) {
        self.spare_taken.notified().await;
    }

    /// The most recently used idle instance of `pool` that loaded the plugin as it was
    /// `modified`; its older ones, loaded before, are dropped.
    pub(crate) fn take(
        &self,
        pool: PoolId,
        modified: Option<SystemTime>,
    ) -> Option<PluginInstance> {
        let mut idle = self.idle();
        let stale = idle
            .pools
            .get(&pool)
            .is_some_and(|own| own.loaded != modified);
        if stale {
            let dropped = idle.remove_pool(pool);
            drop(idle);
            drop(dropped);
            return None;
        }
        let own = idle.pools.get_mut(&pool)?;
        let parked = own.parked.pop()?;
        idle.order.remove(&parked.stamp);
        idle.bytes -= parked.bytes;
        Some(parked.instance)
    }

    /// Keeps `instance` idle for `pool`, which loaded the plugin as it was `modified`,
    /// unless the pool has its share already or a call waits for a slot; then drops the
    /// least recently used idle instances (this one, maybe) until the memory budget holds
    /// them.
    pub(crate) fn park(
        &self,
        pool: PoolId,
        instance: PluginInstance,
        modified: Option<SystemTime>,
    ) {
        let bytes = instance.memory_bytes();
        let mut dropped = Vec::new();
        let mut idle = self.idle();
        let own = idle.pools.entry(pool).or_default();
        if own.parked.is_empty() {
            own.loaded = modified;
        }
        let wanted = self.waiting.load(Ordering::SeqCst) > 0;
        if wanted || own.loaded != modified || own.parked.len() >= MAX_IDLE_PER_POOL {
            drop(idle);
            drop(instance);
            if wanted {
                self.counts.evicted.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let stamp = idle.next_stamp;
        idle.next_stamp += 1;
        idle.order.insert(stamp, pool);
        idle.bytes += bytes;
        if let Some(own) = idle.pools.get_mut(&pool) {
            own.parked.push(Parked {
                stamp,
                since: Instant::now(),
                bytes,
                instance,
            });
        }
        while idle.bytes > self.bounds.idle_memory_bytes {
            match idle.pop_oldest() {
                Some(instance) => dropped.push(instance),
                None => break,
            }
        }
        drop(idle);
        self.counts
            .evicted
            .fetch_add(dropped.len() as u64, Ordering::Relaxed);
    }

    /// Drops the idle instances of `pool`, which is gone.
    pub(crate) fn forget(&self, pool: PoolId) {
        let dropped = self.idle().remove_pool(pool);
        drop(dropped);
    }

    /// Drops the instances idle for longer than the idle time.
    pub(crate) fn expire(&self) {
        let now = Instant::now();
        let mut dropped = Vec::new();
        {
            let mut idle = self.idle();
            while let Some((&stamp, &pool)) = idle.order.first_key_value() {
                let since = idle
                    .pools
                    .get(&pool)
                    .and_then(|own| own.parked.first())
                    .filter(|parked| parked.stamp == stamp)
                    .map(|parked| parked.since);
                match since {
                    Some(since) if now.duration_since(since) < self.bounds.idle_time => break,
                    _ => {}
                }
                match idle.pop_oldest() {
                    Some(instance) => dropped.push(instance),
                    None => break,
                }
            }
        }
        self.counts
            .expired
            .fetch_add(dropped.len() as u64, Ordering::Relaxed);
        if !dropped.is_empty() {
            drop(dropped);
            self.trim_pending.store(true, Ordering::Relaxed);
        }
        // Tried again at the next sweeps when a trim was too soon after the last one.
        if self.trim_pending.load(Ordering::Relaxed) && crate::trim::release_free_memory() {
            self.trim_pending.store(false, Ordering::Relaxed);
        }
    }

    /// How often [`Slots::expire`] should run: often enough that an instance outlives
    /// its idle time by little.
    pub(crate) fn expiry_tick(&self) -> Duration {
        (self.bounds.idle_time / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    pub(crate) fn stats(&self) -> InstanceStats {
        let (idle, idle_memory_bytes) = {
            let idle = self.idle();
            (idle.order.len() as u64, idle.bytes)
        };
        let capacity = u64::from(self.bounds.instances);
        let load = |count: &AtomicU64| count.load(Ordering::Relaxed);
        InstanceStats {
            spare: self.spare_count() as u64,
            spares_made: load(&self.counts.spares_made),
            spares_taken: load(&self.counts.spares_taken),
            capacity,
            live: capacity.saturating_sub(self.permits.available_permits() as u64),
            idle,
            idle_memory_bytes,
            instantiated: load(&self.counts.instantiated),
            evicted: load(&self.counts.evicted),
            expired: load(&self.counts.expired),
            waited: load(&self.counts.waited),
            refused: load(&self.counts.refused),
            ..InstanceStats::default()
        }
    }
}

/// Runs [`Slots::expire`] on a thread of its own until `slots` is dropped.
pub(crate) fn start_expiry(slots: &Arc<Slots>) -> std::io::Result<()> {
    let tick = slots.expiry_tick();
    let slots = Arc::downgrade(slots);
    std::thread::Builder::new()
        .name("sluice-instance-expiry".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                match slots.upgrade() {
                    Some(slots) => slots.expire(),
                    None => return,
                }
            }
        })
        .map(drop)
}
