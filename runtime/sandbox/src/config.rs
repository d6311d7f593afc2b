//! All engine policy in one place.

use std::path::{Path, PathBuf};
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

mod memory;

pub use memory::machine_memory_bytes;

/// How the sandbox's wasmtime engine is set up. Every knob has a default that works on a
/// small machine; checking happens once, in [`Sandbox::new`](crate::Sandbox::new).
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where compiled artifacts are cached. Compiling the Python runtime takes seconds;
    /// loading a cached artifact takes milliseconds. Default: `$SLUICE_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/sluice`, else `$HOME/.cache/sluice`; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Component instances that may be alive at once, running a call or kept warm: the
    /// pooling allocator reserves address space for this many up front (no physical
    /// memory until touched). A Python instance holds about ten core instances. When
    /// every one is alive, a call needing a new one evicts the least recently used idle
    /// instance, or waits [`Self::instance_wait`] for a running one to end. Default
    /// [`SandboxConfig::default_max_instances`], from the machine's memory.
    pub max_instances: u32,
    /// Linear memory the idle (warm) instances may hold together, in bytes; past it the
    /// least recently used are dropped. Default a quarter of the machine's memory.
    pub idle_memory_bytes: u64,
    /// How long an instance is kept warm without a call; then it is dropped, so an idle
    /// trigger holds no instance. Default 60 s.
    pub idle_time: Duration,
    /// How long a call waits for an instance when every one is running a call; then it
    /// is refused ([`InvocationError::Busy`]). Default 10 s.
    ///
    /// [`InvocationError::Busy`]: sluice_plugin_api::InvocationError::Busy
    pub instance_wait: Duration,
    /// The largest linear memory any instance may have, in bytes: the size of each slot
    /// in the pool. Per-call limits ([`Limits::memory_bytes`]) must not exceed it.
    /// Default 1 GiB.
    ///
    /// [`Limits::memory_bytes`]: sluice_plugin_api::Limits::memory_bytes
    pub max_memory_bytes: u64,
    /// Files and directories all instances together may hold open: each is a
    /// descriptor of the server's process. Default: half of the process's limit on open
    /// descriptors (`RLIMIT_NOFILE`), so the server keeps the other half.
    pub max_open_files: u64,
    /// Where each instance gets its `/tmp`: a directory is made in it for the server's
    /// plugins, removed when the sandbox drops, or else by the next sandbox made in the
    /// same place. Default `/dev/shm` (memory) where the machine has it and it may be
    /// written, else the system's temporary directory.
    pub tmp_dir: PathBuf,
    /// Bytes the running calls together may write in their `/tmp`: each call also has
    /// its own limit ([`Limits::tmp_bytes`]), and what it wrote is removed when it ends.
    /// `None` (the default): [`SandboxConfig::default_tmp_budget`] of `tmp_dir`, read
    /// when the sandbox starts.
    ///
    /// [`Limits::tmp_bytes`]: sluice_plugin_api::Limits::tmp_bytes
    pub max_tmp_bytes: Option<u64>,
    /// How often the epoch advances. Running plugins yield to other tasks and check
    /// their wall-time deadline at each tick, so this bounds both the latency of a
    /// time-out and how long one plugin can hold a thread. Default 10 ms.
    pub epoch_tick: Duration,
    /// Let Linux map the runtime's memory image 64 KiB at a time ("fault-around"), as it
    /// does for file mappings unless told otherwise: each warm instance then maps about
    /// 8 MiB more of the image, pages the machine holds once but RSS counts per instance.
    /// Default: off (each instance maps only the pages it touches, see
    /// `memory_pages.rs`), unless `$SLUICE_IMAGE_FAULT_AROUND` is set to a true value.
    pub image_fault_around: bool,
    /// Map ahead, in each fresh instance, the pages of its memory a call touches, learnt
    /// once from the sandbox's own warm-up plugin (`memory_pages.rs`), instead of a fault
    /// for each as the instance touches it. Default: on, unless `$SLUICE_NO_MAP_AHEAD`
    /// is set to a true value.
    pub map_ahead: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            cache_dir: default_cache_dir(),
            max_instances: Self::default_max_instances(),
            idle_memory_bytes: machine_memory_bytes() / 4,
            idle_time: Duration::from_secs(60),
            instance_wait: Duration::from_secs(10),
            max_memory_bytes: 1 << 30,
            max_open_files: crate::files::default_server_limit(),
            tmp_dir: default_tmp_dir(),
            max_tmp_bytes: None,
            epoch_tick: Duration::from_millis(10),
            image_fault_around: env_flag("SLUICE_IMAGE_FAULT_AROUND"),
            map_ahead: !env_flag("SLUICE_NO_MAP_AHEAD"),
        }
    }
}

/// Whether the environment variable `name` is set to anything but a false value (`0`,
/// `false`, `no`, `off`, `n`, `f`, or nothing), as `sluice serve --image-fault-around`
/// and `--no-map-ahead` read theirs.
fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|value| {
        !matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no" | "off" | "n" | "f"
        )
    })
}

/// The bytes `dir`'s file system has free for the server's user, if it says.
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// `/dev/shm` where it is a directory the server may write in (Linux: memory), else
/// the system's temporary directory.
fn default_tmp_dir() -> PathBuf {
    let shared_memory = PathBuf::from("/dev/shm");
    let writable = rustix::fs::access(
        &shared_memory,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    );
    if shared_memory.is_dir() && writable.is_ok() {
        shared_memory
    } else {
        std::env::temp_dir()
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SLUICE_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("sluice"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/sluice"))
}

impl SandboxConfig {
    /// Memory the machine is taken to give each live instance when sizing the pool.
    const MEMORY_PER_INSTANCE: u64 = 64 << 20;
    /// The most instances sized by default.
    const MAX_DEFAULT_INSTANCES: u32 = 1_000;
    /// The largest `max_instances` accepted: the pool reserves address space for each.
    pub const MAX_INSTANCES: u32 = 10_000;

    /// What the running calls may write in `/tmp` in `dir` together, by default: a
    /// sixteenth of the machine's memory, and no more than half of what `dir` has free
    /// (a container's `/dev/shm` is often small).
    pub fn default_tmp_budget(dir: &Path) -> u64 {
        let memory = machine_memory_bytes() / 16;
        free_bytes(dir).map_or(memory, |free| memory.min(free / 2))
    }

    /// One instance per 64 MiB of the machine's memory, from 16 to 1,000.
    pub fn default_max_instances() -> u32 {
        let fit = machine_memory_bytes() / Self::MEMORY_PER_INSTANCE;
        u32::try_from(fit)
            .unwrap_or(u32::MAX)
            .clamp(16, Self::MAX_DEFAULT_INSTANCES)
    }

    /// Builds the engine: component model, async host calls, epoch interruption (the
    /// wall-time and CPU-time limits, checked at each tick, and fair yielding),
    /// copy-on-write memory images and the pooling allocator (fast instantiation, bounded
    /// density). No fuel: metering every block cost CPU-bound Python 13–20% of its
    /// speed, and the CPU-time limit bounds the same thing (`BENCHMARKS.md`).
    pub(crate) fn engine(&self) -> wasmtime::Result<Engine> {
        let mut pool = PoolingAllocationConfig::new();
        let instances = self.max_instances.max(1);
        pool.total_component_instances(instances)
            .total_core_instances(instances * 16)
            .total_memories(instances * 4)
            .total_tables(instances * 16)
            .total_stacks(instances)
            .max_memory_size(usize::try_from(self.max_memory_bytes)?)
            .max_core_instances_per_component(32)
            .max_memories_per_component(8)
            .max_tables_per_component(32)
            .total_gc_heaps(instances)
            // The runtime's module context holds a reference per function: about 1.5 MiB.
            .max_component_instance_size(2 << 20)
            .max_core_instance_size(2 << 20)
            .table_elements(100_000)
            // A memory slot goes to the module whose memory it held last, when one is
            // free: the runtime's image stays mapped there, where a slot another module's
            // memory held gets it mapped afresh (and registered afresh, `memory_pages.rs`).
            .max_unused_warm_slots(0);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            // CPython's C++ extensions (pandas, scipy) throw WebAssembly exceptions.
            .wasm_exceptions(true)
            .wasm_gc(true)
            .wasm_function_references(true)
            .epoch_interruption(true)
            .memory_init_cow(true)
            // The runtime's memory is a snapshot whose heap is sparse (mimalloc's
            // segments lie past the C library's heap, `python/allocator.rs`): past
            // wasmtime's default of 16 MiB, a sparse image is copied into each new
            // instance instead of mapped copy-on-write. Any image up to the largest
            // memory is mapped.
            .memory_guaranteed_dense_image_size(self.max_memory_bytes)
            .max_wasm_stack(1 << 20)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        Engine::new(&config)
    }
}
