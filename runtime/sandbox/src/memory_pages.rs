//! An instance's memory pages, made ready before the runtime runs in it.
//!
//! An instance's linear memory starts as libpython's memory image, mapped copy-on-write
//! from the compiled runtime (its `.cwasm` file in the artifact cache, or a `memfd` without
//! one) into the instance's slot of wasmtime's pool. Right after it is instantiated, the
//! instance says where that memory lies (the runtime's `memory-span`, which runs none of
//! its code: [`MemorySpan`]), and before the runtime runs the sandbox makes it ready in
//! two ways.
//!
//! **Fault-around off.** When an instance first reads a page of its image, Linux also maps
//! the neighbouring pages it finds in the page cache ("fault-around", 64 KiB by default).
//! The image is all in the page cache, so a warm instance mapped 9.8 MiB of it where it
//! touched 1.8 MiB, and RSS counts every mapped page once per instance: 11 MiB per warm
//! instance, though the machine holds the image once (`BENCHMARKS.md`, "Where a warm
//! instance's memory is"). Linux has one switch for fault-around per mapping: a mapping
//! registered with a userfaultfd for write-protection gets none. The sandbox registers
//! each instance's memory so, and that is all it does with the descriptor: it never
//! write-protects a page and asks for no event, so no fault ever waits for a reader, and
//! nobody reads it. (The descriptor is made for asynchronous write-protection,
//! `UFFD_FEATURE_WP_ASYNC`, Linux 6.7, which also lets it register any kind of mapping,
//! and under which the kernel would resolve a write-protect fault by itself.) Registering
//! a range registered before changes nothing; a slot whose image wasmtime mapped afresh
//! (one another module's memory held) is registered again by its instance, before the
//! runtime runs. Where userfaultfd is refused (a kernel before 6.7, a seccomp
//! filter), images are mapped as before, and the server says so once; so they are when
//! [`SandboxConfig::image_fault_around`](crate::SandboxConfig::image_fault_around) is set.
//!
//! **The pages a call touches, mapped ahead.** A first call from nothing took about 560
//! page faults, most of its time (`BENCHMARKS.md`, "The pages a call touches, mapped
//! ahead"). The sandbox learns once which pages of the memory a call touches, and which
//! of them it writes, from instances of its own (the warm-up plugin of spares, loaded and
//! called: no tenant's code decides it), by reading `/proc/self/pagemap` over the
//! instance's memory ([`TouchedPages::of`]). Each later instance then has those pages
//! mapped in a few system calls before it runs (`MADV_POPULATE_WRITE` for the pages
//! written, `MADV_POPULATE_READ` for the others) instead of one fault each. That is what
//! the instance's own first touch of each page would do: a page read is mapped from the
//! image, which every instance shares, and a page written is the instance's own copy of
//! the image's page (or a page of zeroes past it). Only the instance's own memory is
//! touched, as wasmtime bounds it, and its slot is reset when it drops as any other.
//! Where Linux lacks `MADV_POPULATE_*` (before 5.14) or the page map cannot be read, the
//! pages fault in as before.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The size of a page of the host, which the page map and `madvise` count in.
const PAGE: usize = 4096;

/// Where an instance's linear memory lies in the host's address space: its first
/// `len` bytes (wasmtime never moves a memory of its pool).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MemorySpan {
    pub(crate) start: usize,
    pub(crate) len: usize,
}

/// A run of pages of a linear memory: `pages` pages from byte `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    offset: usize,
    pages: usize,
}

/// The pages of its memory an instance had touched: those it wrote (its own copies), and
/// those it only read (the image's, shared), each as runs of pages.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TouchedPages {
    written: Vec<Run>,
    read: Vec<Run>,
}

impl TouchedPages {
    /// The pages of `span` mapped now, read from the process's page map: a page of the
    /// process's own, mapped there only, was written; any other (the image's, or the
    /// kernel's page of zeroes, which a read of memory never written maps) only read.
    pub(crate) fn of(span: MemorySpan) -> std::io::Result<Self> {
        let pages = span.len / PAGE;
        let mut entries = vec![0_u8; pages * 8];
        let mut map = std::fs::File::open("/proc/self/pagemap")?;
        map.seek(SeekFrom::Start((span.start / PAGE * 8) as u64))?;
        map.read_exact(&mut entries)?;
        let mut touched = Self::default();
        for (page, entry) in entries.chunks_exact(8).enumerate() {
            let entry = u64::from_le_bytes(entry.try_into().unwrap_or_default());
            // Bit 63: present; bit 61: a page of a file (or shared); bit 56: mapped only
            // here (not set for the page of zeroes).
            if entry >> 63 & 1 == 0 {
                continue;
            }
            let own = entry >> 61 & 1 == 0 && entry >> 56 & 1 == 1;
            let runs = if own {
                &mut touched.written
            } else {
                &mut touched.read
            };
            match runs.last_mut() {
                Some(run) if run.offset + run.pages * PAGE == page * PAGE => run.pages += 1,
                _ => runs.push(Run {
                    offset: page * PAGE,
                    pages: 1,
                }),
            }
        }
        Ok(touched)
    }

    /// How many pages were written, and how many only read.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let count = |runs: &[Run]| runs.iter().map(|run| run.pages).sum();
        (count(&self.written), count(&self.read))
    }

    /// Maps the same pages of `span` as they were touched here, those past its end left
    /// out; nothing once Linux refused the advice (before 5.14).
    pub(crate) fn map_ahead(&self, span: MemorySpan) {
        for (runs, advice) in [
            (&self.written, populate::WRITE),
            (&self.read, populate::READ),
        ] {
            for run in runs {
                let len = (run.pages * PAGE).min(span.len.saturating_sub(run.offset));
                if len > 0 && !populate::advise(span.start + run.offset, len, advice) {
                    return;
                }
            }
        }
    }
}

/// The pages an instance will touch, learnt once per sandbox.
pub(crate) struct ImagePages {
    /// Keeps Linux's fault-around for the image.
    fault_around: bool,
    /// Maps pages ahead, once they are learnt.
    map_ahead: bool,
    touched: OnceLock<TouchedPages>,
    /// An instance is learning them now.
    learning: AtomicBool,
}

impl ImagePages {
    pub(crate) fn new(fault_around: bool, map_ahead: bool) -> Self {
        Self {
            fault_around,
            map_ahead,
            touched: OnceLock::new(),
            learning: AtomicBool::new(false),
        }
    }

    /// Makes the memory `span` of an instance just made ready for the runtime to run.
    pub(crate) fn prepare(&self, span: MemorySpan) {
        if !self.fault_around {
            uffd::register_without_fault_around(span.start, span.len);
        }
        if let Some(touched) = self.touched.get() {
            touched.map_ahead(span);
        }
    }

    /// The pages mapped ahead, once learnt.
    pub(crate) fn touched(&self) -> Option<&TouchedPages> {
        self.touched.get()
    }

    /// Learns the pages to map ahead with `learn`, unless they are known or another
    /// caller is learning them (nobody waits for it): `None` from it means not now, and a
    /// later caller tries again.
    pub(crate) async fn learn<F>(&self, learn: impl FnOnce() -> F)
    where
        F: Future<Output = Option<TouchedPages>>,
    {
        if !self.map_ahead
            || self.touched.get().is_some()
            || self.learning.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let _learning = Learning(&self.learning);
        if let Some(touched) = learn().await {
            // Only this caller sets it.
            let _ = self.touched.set(touched);
        }
    }
}

/// Marks the pages as learnt by nobody when dropped: however learning ended, cancelled
/// included.
struct Learning<'a>(&'a AtomicBool);

impl Drop for Learning<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
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
    /// Linux refused to register a range (said once in the log).
    static REGISTER_REFUSED: AtomicBool = AtomicBool::new(false);

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

    /// Registers the `len` bytes from `start` for write-protection, which turns
    /// fault-around off there. They are an instance's memory, which the pooling allocator
    /// keeps mapped while the instance lives; a range registered so by mistake would lose
    /// fault-around and transparent huge pages, never its contents.
    #[expect(
        unsafe_code,
        reason = "UFFDIO_REGISTER reads and writes a local struct of the kernel's layout; \
        it changes only the flags of the mappings in the range, not what they hold"
    )]
    pub(super) fn register_without_fault_around(start: usize, len: usize) {
        let Some(fd) = descriptor() else {
            return;
        };
        let mut register = Register {
            start: start as u64,
            len: len as u64,
            mode: MODE_WP,
            ioctls: 0,
        };
        // SAFETY: see the reason above. A range the kernel does not accept is refused
        // with an error, which leaves that range as it was.
        let done = unsafe { libc::ioctl(fd.as_raw_fd(), IOCTL_REGISTER as _, &raw mut register) };
        if done != 0 && !REGISTER_REFUSED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "userfaultfd refused an instance's memory: it maps the Python runtime's \
                 image 64 KiB at a time (said once)"
            );
        }
    }
}

/// `madvise(MADV_POPULATE_READ | MADV_POPULATE_WRITE)`: the pages of a range faulted in
/// at once, as reads or as writes.
#[cfg(target_os = "linux")]
mod populate {
    use std::sync::atomic::{AtomicBool, Ordering};

    pub(super) const READ: libc::c_int = libc::MADV_POPULATE_READ;
    pub(super) const WRITE: libc::c_int = libc::MADV_POPULATE_WRITE;

    /// Linux refused the advice: it has none such (before 5.14).
    static REFUSED: AtomicBool = AtomicBool::new(false);

    /// Faults in the `len` bytes from `start` as `advice` says; false once Linux refused
    /// the advice, after which the pages fault in when touched, as they would have.
    #[expect(
        unsafe_code,
        reason = "madvise with a populate advice only faults pages in, as an access would; \
        the range is an instance's own memory, mapped read-write while it lives"
    )]
    pub(super) fn advise(start: usize, len: usize, advice: libc::c_int) -> bool {
        if REFUSED.load(Ordering::Relaxed) {
            return false;
        }
        // SAFETY: see the reason above; nothing is read or written through the pointer.
        let done = unsafe { libc::madvise(start as *mut libc::c_void, len, advice) };
        if done != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            REFUSED.store(true, Ordering::Relaxed);
            tracing::info!(
                "madvise refused to populate pages (Linux before 5.14?): instances take a \
                 fault per page they first touch"
            );
            return false;
        }
        true
    }
}

#[cfg(not(target_os = "linux"))]
mod populate {
    pub(super) const READ: i32 = 0;
    pub(super) const WRITE: i32 = 1;
    pub(super) fn advise(_start: usize, _len: usize, _advice: i32) -> bool {
        false
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod uffd {
    pub(super) fn register_without_fault_around(_start: usize, _len: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An anonymous mapping of `pages` pages, unmapped when dropped.
    struct Mapping {
        start: usize,
        pages: usize,
    }

    impl Mapping {
        #[expect(unsafe_code, reason = "a private anonymous mapping of the test's own")]
        fn new(pages: usize) -> Self {
            // SAFETY: a fresh anonymous mapping, at an address the kernel picks.
            let start = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    pages * PAGE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(start, libc::MAP_FAILED);
            Self {
                start: start as usize,
                pages,
            }
        }

        fn span(&self) -> MemorySpan {
            MemorySpan {
                start: self.start,
                len: self.pages * PAGE,
            }
        }

        #[expect(unsafe_code, reason = "within the test's own mapping")]
        fn write(&self, page: usize) {
            assert!(page < self.pages);
            // SAFETY: the page is inside the mapping, which is read-write.
            unsafe { ((self.start + page * PAGE) as *mut u8).write_volatile(1) };
        }
    }

    impl Drop for Mapping {
        #[expect(unsafe_code, reason = "the test's own mapping, unmapped once")]
        fn drop(&mut self) {
            // SAFETY: the mapping made in `new`, no longer used.
            unsafe { libc::munmap(self.start as *mut libc::c_void, self.pages * PAGE) };
        }
    }

    #[test]
    fn the_pages_written_are_found_as_runs_and_mapped_ahead_elsewhere() {
        let first = Mapping::new(16);
        for page in [1, 2, 3, 7, 15] {
            first.write(page);
        }
        let touched = TouchedPages::of(first.span()).expect("the page map is readable");
        assert_eq!(
            touched.written,
            [(1, 3), (7, 1), (15, 1)].map(|(page, pages)| Run {
                offset: page * PAGE,
                pages
            })
        );
        assert_eq!(touched.counts(), (5, 0));

        // Mapped ahead in another memory: the same pages, none past its end.
        let second = Mapping::new(10);
        touched.map_ahead(second.span());
        let again = TouchedPages::of(second.span()).expect("the page map is readable");
        assert_eq!(again.counts(), (4, 0), "{again:?}");
        assert_eq!(again.written, touched.written[..2]);
    }
}
