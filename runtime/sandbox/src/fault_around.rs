//! Mapping the memory image a page at a time.
//!
//! An instance's linear memory starts as libpython's memory image, mapped copy-on-write
//! from the compiled runtime (its `.cwasm` file in the artifact cache, or a `memfd` without
//! one). When an instance first reads a page of it, Linux also maps the neighbouring pages
//! it finds in the page cache ("fault-around", 64 KiB by default). The image is all in the
//! page cache, so a warm instance mapped 9.8 MiB of it where it touched 1.8 MiB, and RSS
//! counts every mapped page once per instance: 11 MiB per warm instance, though the
//! machine holds the image once (`BENCHMARKS.md`, "Where a warm instance's memory is").
//!
//! Linux has one switch for fault-around per mapping: a mapping registered with a
//! userfaultfd for write-protection gets none. The sandbox registers each image mapping so,
//! and that is all it does with the descriptor: it never write-protects a page and asks
//! for no event, so no fault ever waits for a reader, and nobody reads it. (The
//! descriptor is also made for asynchronous write-protection, `UFFD_FEATURE_WP_ASYNC`,
//! Linux 6.7, under which the kernel would resolve a write-protect fault by itself.)
//!
//! The pooling allocator maps the image into a slot the first time the slot is used and
//! keeps it there for the slot's later instances. So the instance that takes a slot never
//! used before registers the slot's image right after it is instantiated, before its plugin
//! loads: it reads `/proc/self/maps` (about a microsecond per line, a line or four per
//! slot used) and registers the images it finds. An instance knows it may have taken a
//! new slot when the pool's count of slots used grew while it was made; it then reads the
//! mappings after its own was made, so another instance's registration, which may have
//! read them just before, cannot leave its slot out. That happens a few times per slot in
//! the server's life, on the call's own thread; the sandbox's expiry thread sweeps once
//! more within a second, should the pool's counts have been read mid-change.
//! Where userfaultfd is refused (a kernel before 6.7, a seccomp filter), images are mapped
//! as before, and the server says so once; so they are when
//! [`SandboxConfig::image_fault_around`](crate::SandboxConfig::image_fault_around) is set.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// The least time between two sweeps of the expiry thread.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A slot was used for the first time since the last sweep.
static NEW_SLOT: AtomicBool = AtomicBool::new(false);

/// When the last sweep ran.
static LAST_SWEEP: Mutex<Option<Instant>> = Mutex::new(None);

/// Registers the image of each slot of one engine's pool as the slot is first used.
pub(crate) struct ImagePages;

impl ImagePages {
    /// The memory slots of `engine`'s pool used so far: those in use, and those used
    /// before and free now (warm ones never turn cold), so a number that only grows.
    pub(crate) fn slots_used(engine: &Engine) -> usize {
        engine.pooling_allocator_metrics().map_or(0, |pool| {
            pool.memories() + pool.unused_warm_memories() as usize
        })
    }

    /// Called once an instance of `engine` was made, with [`ImagePages::slots_used`]
    /// from before it was: if a slot was first used meanwhile, maybe its own, registers
    /// every image mapped by now, its own among them. (A count kept from one instance to
    /// the next would miss a slot that another instance took while the last registration
    /// read the mappings: its instance would then run with fault-around.)
    pub(crate) fn instantiated(&self, engine: &Engine, slots_used_before: usize) {
        if Self::slots_used(engine) > slots_used_before {
            register_images();
            NEW_SLOT.store(true, Ordering::Relaxed);
        }
    }
}

/// Registers the image mappings again if a slot was first used since the last sweep,
/// at most once a second: whichever another instance mapped while one registered.
pub(crate) fn sweep() {
    if !NEW_SLOT.load(Ordering::Relaxed) {
        return;
    }
    let mut last = LAST_SWEEP
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.is_some_and(|last| last.elapsed() < MIN_INTERVAL) {
        return;
    }
    *last = Some(Instant::now());
    NEW_SLOT.store(false, Ordering::Relaxed);
    drop(last);
    register_images();
}

/// Registers every image mapping of the process now (those registered before again,
/// which the kernel passes over).
fn register_images() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for (start, end) in image_mappings(&maps) {
        uffd::register_without_fault_around(start, end);
    }
}

/// The address ranges of the memory images in `maps` (the text of `/proc/self/maps`):
/// private, writable mappings of a compiled artifact or of wasmtime's image `memfd`.
fn image_mappings(maps: &str) -> impl Iterator<Item = (u64, u64)> + '_ {
    maps.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        if fields.next()? != "rw-p" {
            return None;
        }
        // The path is the rest of the line, spaces and all.
        let line = line.strip_suffix(" (deleted)").unwrap_or(line);
        if !(line.ends_with(".cwasm") || line.ends_with(" /memfd:wasm-memory-image")) {
            return None;
        }
        let start = u64::from_str_radix(start, 16).ok()?;
        let end = u64::from_str_radix(end, 16).ok()?;
        Some((start, end))
    })
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod uffd {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// `UFFD_API`, the only version of the interface.
    const API: u64 = 0xAA;
    /// `UFFD_FEATURE_WP_HUGETLBFS_SHMEM`: write-protection of `memfd` mappings too.
    const FEATURE_WP_SHMEM: u64 = 1 << 12;
    /// `UFFD_FEATURE_WP_ASYNC`: write-protect faults resolved by the kernel itself.
    const FEATURE_WP_ASYNC: u64 = 1 << 15;
    /// `UFFD_USER_MODE_ONLY`: allowed without privileges.
    const USER_MODE_ONLY: libc::c_int = 1;
    /// `UFFDIO_REGISTER_MODE_WP`.
    const MODE_WP: u64 = 1 << 1;
    /// `_IOWR(0xAA, 0x3F, struct uffdio_api)`, the same on x86-64 and AArch64.
    const IOCTL_API: u64 = 0xC018_AA3F;
    /// `_IOWR(0xAA, 0x00, struct uffdio_register)`.
    const IOCTL_REGISTER: u64 = 0xC020_AA00;

    /// `struct uffdio_api`.
    #[repr(C)]
    struct Api {
        api: u64,
        features: u64,
        ioctls: u64,
    }

    /// `struct uffdio_register`.
    #[repr(C)]
    struct Register {
        start: u64,
        len: u64,
        mode: u64,
        ioctls: u64,
    }

    /// The process's descriptor. It stays open for the process's life: closing it would
    /// unregister every mapping.
    static DESCRIPTOR: OnceLock<OwnedFd> = OnceLock::new();
    /// Linux refused a descriptor for good (said once in the log).
    static REFUSED: AtomicBool = AtomicBool::new(false);

    /// The process's descriptor, made at the first need; `None` where Linux refuses one.
    /// A refusal that may pass (no descriptor or memory left) is tried again next time.
    fn descriptor() -> Option<&'static OwnedFd> {
        if let Some(fd) = DESCRIPTOR.get() {
            return Some(fd);
        }
        if REFUSED.load(Ordering::Relaxed) {
            return None;
        }
        match open() {
            // Another thread may have made one meanwhile; this one is then closed.
            Ok(fd) => Some(DESCRIPTOR.get_or_init(|| fd)),
            Err(e) => {
                let passing = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
                );
                if passing {
                    tracing::debug!(error = %e, "no userfaultfd for now");
                } else if !REFUSED.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        error = %e,
                        "userfaultfd refused: instances map the Python runtime's memory \
                         image 64 KiB at a time, and RSS counts about 10 MiB per warm \
                         instance where it would count 2.6"
                    );
                }
                None
            }
        }
    }

    #[expect(
        unsafe_code,
        reason = "userfaultfd(2) and its UFFDIO_API ioctl take no pointer but to a local \
        struct of the kernel's layout, and the descriptor is owned from its creation"
    )]
    fn open() -> std::io::Result<OwnedFd> {
        let flags = libc::O_CLOEXEC | libc::O_NONBLOCK | USER_MODE_ONLY;
        // SAFETY: a plain system call; it returns a new descriptor or -1.
        let raw = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let raw = i32::try_from(raw).map_err(std::io::Error::other)?;
        // SAFETY: `raw` is a descriptor just made, owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // No event feature (fork, remap, remove, unmap) may ever be added: each would make
        // the process wait for a reader at every such event, and there is none.
        let mut api = Api {
            api: API,
            features: FEATURE_WP_ASYNC | FEATURE_WP_SHMEM,
            ioctls: 0,
        };
        // SAFETY: `api` is a live `struct uffdio_api` the kernel reads and writes.
        if unsafe { libc::ioctl(fd.as_raw_fd(), IOCTL_API as _, &raw mut api) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }

    /// Registers `[start, end)` for write-protection, which turns fault-around off there.
    /// Whatever is mapped there by now is registered: between the read of
    /// `/proc/self/maps` and this call, only the pooling allocator maps these addresses
    /// (its reservation holds them while the engine lives), and a mapping registered so
    /// by mistake loses fault-around and transparent huge pages, never its contents.
    #[expect(
        unsafe_code,
        reason = "UFFDIO_REGISTER reads and writes a local struct of the kernel's layout; \
        it changes only the flags of the mappings in the range, not what they hold"
    )]
    pub(super) fn register_without_fault_around(start: u64, end: u64) {
        let Some(fd) = descriptor() else {
            return;
        };
        let mut register = Register {
            start,
            len: end.saturating_sub(start),
            mode: MODE_WP,
            ioctls: 0,
        };
        // SAFETY: see the reason above. A range the kernel does not accept any more is
        // refused with an error, which leaves that range as it was.
        unsafe {
            libc::ioctl(fd.as_raw_fd(), IOCTL_REGISTER as _, &raw mut register);
        }
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod uffd {
    pub(super) fn register_without_fault_around(_start: u64, _end: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_mappings_are_the_private_writable_mappings_of_an_artifact_or_the_image_memfd() {
        let maps = "\
7f0000000000-7f0000100000 rw-p 00001000 fd:01 1234                       /data/cache/abc.cwasm
7f0000100000-7f0000200000 r-xp 00000000 fd:01 1234                       /data/cache/abc.cwasm
7f0000200000-7f0000300000 rw-s 00000000 fd:01 1234                       /data/cache/abc.cwasm
7f0000300000-7f0000400000 rw-p 00000000 00:01 77                         /memfd:wasm-memory-image (deleted)
7f0000400000-7f0000500000 rw-p 00000000 00:00 0 
7f0000500000-7f0000600000 rw-p 00000000 00:01 78                         /memfd:other (deleted)
7f0000600000-7f0000700000 rw-p 00000000 fd:01 99                         /data/cache/old.cwasm (deleted)
7f0000700000-7f0000800000 rw-p 00000000 fd:01 98                         /home/a b/.cache/sluice/c.cwasm
7f0000800000-7f0000900000 rw-p 00000000 fd:01 97                         /data/notes.cwasm.txt
garbage line
";
        let found: Vec<_> = image_mappings(maps).collect();
        assert_eq!(
            found,
            vec![
                (0x7f00_0000_0000, 0x7f00_0010_0000),
                (0x7f00_0030_0000, 0x7f00_0040_0000),
                (0x7f00_0060_0000, 0x7f00_0070_0000),
                (0x7f00_0070_0000, 0x7f00_0080_0000),
            ]
        );
    }
}
