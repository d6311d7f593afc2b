//! A plugin's `/tmp`: a directory of its instance's own on the host, writable, in memory
//! where the machine has a tmpfs (`/dev/shm`), and emptied when each call ends (loading
//! the plugin included), so nothing a call leaves there outlives it.
//!
//! What a call puts there is bounded twice: by its own limit ([`Limits::tmp_bytes`]),
//! and together with every other call running by the server's
//! ([`SandboxConfig::max_tmp_bytes`](crate::SandboxConfig)). A write counts the pages of
//! [`PAGE`] bytes it may make the host hold (a tmpfs holds a file by whole pages, and
//! none for a hole), a file grown by `set-size` its growth, and every file, directory or
//! link created one page; nothing counts out before the call ends. Bytes overwritten or
//! a file deleted give nothing back: counting what a call writes needs no view of its
//! files, and bounds what it can hold. Past a bound, creating or growing a file and
//! writing fail with `ENOSPC` (a write through a file's stream once the pages that fit are
//! written: the runtime writes a file in pieces), and the plugin goes on; its log names
//! the bound once the call ends.
//!
//! The sandbox puts its own `write`, `set-size`, `write-via-stream`, `append-via-stream`,
//! `create-directory-at`, `symlink-at` and `link-at` in the linker, in front of
//! wasmtime-wasi's; `open-at` with `create` is counted where it is counted as an open file
//! (`files.rs`). A file's output stream is wrapped in a [`CountedStream`], so writes
//! through it (what the guest's `write()` uses) are counted too; and its input stream in
//! a [`TrackedInput`]: a file stream keeps its file even once the guest dropped the
//! descriptor, so an instance holding one when its call ends runs no other call.

mod root;
mod streams;

pub(crate) use root::ScratchRoot;

use crate::files::{FILESYSTEM_TYPES, answered};
use crate::host::HostState;
use sluice_plugin_api::{HostServices, LogLevel, size_text};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use streams::{CountedStream, TrackedInput};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{ErrorCode, HostDescriptor, PathFlags};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

/// Where the instance's directory appears inside the sandbox.
pub(crate) const GUEST_TMP_DIR: &str = "/tmp";

/// The unit a write is counted in: a page of the host's memory.
pub(crate) const PAGE: u64 = 4096;

/// What creating a file, a directory or a link counts: a page (a policy, above the
/// kernel's cost of an empty one).
pub(crate) const ENTRY_BYTES: u64 = PAGE;

/// The bytes of the pages a write of `len` bytes at `offset` touches.
fn pages_touched(offset: u64, len: u64) -> u64 {
    if len == 0 {
        return 0;
    }
    let Some(end) = offset.checked_add(len) else {
        return u64::MAX;
    };
    ((end - 1) / PAGE - offset / PAGE + 1).saturating_mul(PAGE)
}

/// Which bound refused a write, if one did this call.
const NOT_REFUSED: u8 = 0;
const REFUSED_BY_CALL: u8 = 1;
const REFUSED_BY_SERVER: u8 = 2;

/// What the current call has written in `/tmp`, shared with its counting streams.
#[derive(Debug)]
pub(crate) struct Written {
    bytes: AtomicU64,
    /// The call's limit.
    limit: AtomicU64,
    refused: AtomicU8,
    /// Whether anything was ever counted: only then may the directory hold anything.
    touched: AtomicBool,
    root: Arc<ScratchRoot>,
}

impl Written {
    /// Counts `bytes` more for the call, if both bounds allow them.
    fn take(&self, bytes: u64) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let within = |held: u64, limit: u64| held.checked_add(bytes).filter(|sum| *sum <= limit);
        if self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                within(held, limit)
            })
            .is_err()
        {
            self.refused.store(REFUSED_BY_CALL, Ordering::Relaxed);
            return false;
        }
        let root = &self.root;
        if root
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                within(held, root.limit)
            })
            .is_err()
        {
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.refused.store(REFUSED_BY_SERVER, Ordering::Relaxed);
            return false;
        }
        if bytes > 0 {
            self.touched.store(true, Ordering::Relaxed);
        }
        true
    }

    /// Counts out `bytes` taken for what did not happen after all.
    fn give_back(&self, bytes: u64) {
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.root.held.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Counts out everything: the directory is empty.
    fn clear(&self) {
        let bytes = self.bytes.swap(0, Ordering::Relaxed);
        self.root.held.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// One instance's `/tmp`: its directory on the host, removed when it drops.
#[derive(Debug)]
pub(crate) struct Scratch {
    path: PathBuf,
    /// Shared with the instance's file streams: while one lives, so may a file it has.
    written: Arc<Written>,
    /// Whether what the instance wrote may outlive its call (a file still open, or a
    /// directory that could not be emptied): then it stays counted until the instance
    /// drops, and the instance runs no other call.
    retired: bool,
}

impl Scratch {
    /// A new, empty directory in `root`.
    pub(crate) fn new(root: &Arc<ScratchRoot>) -> std::io::Result<Self> {
        let path = root.instance_dir()?;
        Ok(Self {
            path,
            written: Arc::new(Written {
                bytes: AtomicU64::new(0),
                limit: AtomicU64::new(0),
                refused: AtomicU8::new(NOT_REFUSED),
                touched: AtomicBool::new(false),
                root: Arc::clone(root),
            }),
            retired: false,
        })
    }

    /// The directory on the host.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A call that may write `limit` bytes starts.
    pub(crate) fn begin_call(&mut self, limit: u64) {
        self.written.limit.store(limit, Ordering::Relaxed);
        self.written.refused.store(NOT_REFUSED, Ordering::Relaxed);
    }

    /// Counts `bytes` more for the current call, if the bounds allow them.
    pub(crate) fn take(&self, bytes: u64) -> bool {
        self.written.take(bytes)
    }

    /// Counts out `bytes` taken for what did not happen after all.
    pub(crate) fn give_back(&self, bytes: u64) {
        self.written.give_back(bytes);
    }

    /// The call ends: empties the directory if it wrote anything, and tells `services`
    /// (the call's log) if a bound refused a write. Returns what it wrote. What it wrote
    /// counts out unless the instance holds files open (`files_open`, or a file's
    /// stream): the kernel keeps those, named or not.
    pub(crate) fn end_call(
        &mut self,
        services: Option<&Arc<dyn HostServices>>,
        files_open: bool,
    ) -> u64 {
        let written = self.written.bytes.load(Ordering::Relaxed);
        let refused = self.written.refused.load(Ordering::Relaxed);
        if let Some(services) = services.filter(|_| refused != NOT_REFUSED) {
            let limit = self.written.limit.load(Ordering::Relaxed);
            let message = if refused == REFUSED_BY_CALL {
                format!(
                    "/tmp is full: a call may write {} there (--max-tmp-bytes; each file \
                     created counts {}); what would pass it failed with ENOSPC",
                    size_text(limit),
                    size_text(ENTRY_BYTES)
                )
            } else {
                format!(
                    "/tmp is full: the server's plugins may hold {} there together; what \
                     would pass it failed with ENOSPC; try again later",
                    size_text(self.written.root.limit)
                )
            };
            services.log(LogLevel::Warn, &message);
        }
        if written == 0 {
            return 0;
        }
        if let Err(error) = root::drain(&self.path) {
            tracing::warn!(path = %self.path.display(), "cannot empty a plugin's /tmp: {error}");
            self.retired = true;
        }
        let streams_open = Arc::strong_count(&self.written) > 1;
        if files_open || streams_open {
            self.retired = true;
        }
        if !self.retired {
            self.written.clear();
        }
        written
    }

    /// Whether the instance must run no other call: what it wrote may outlive the call.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired
    }

    /// A file's output stream writing at `position` (`None`: appending), its writes
    /// counted.
    fn counted(&self, inner: DynOutputStream, position: Option<u64>) -> DynOutputStream {
        Box::new(CountedStream::new(
            inner,
            Arc::clone(&self.written),
            position,
        ))
    }

    /// A file's input stream, known to be alive.
    fn tracked(&self, inner: DynInputStream) -> DynInputStream {
        Box::new(TrackedInput::new(inner, Arc::clone(&self.written)))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // The instance's files are closed (its resource table dropped first): once the
        // directory is gone, nothing of what it wrote is held. A directory nothing was
        // ever counted for holds nothing, so removing it is one call. If it cannot be
        // removed, what it holds is counted out all the same (the bound is of what calls
        // write) and said; the server's directory goes with what is left when the
        // sandbox drops, or the next server started on it removes it.
        let touched = self.written.touched.load(Ordering::Relaxed);
        let removed = if touched {
            root::drain(&self.path).and_then(|()| std::fs::remove_dir(&self.path))
        } else {
            std::fs::remove_dir(&self.path)
                .or_else(|_| root::drain(&self.path).and_then(|()| std::fs::remove_dir(&self.path)))
        };
        if let Err(error) = removed {
            tracing::warn!(path = %self.path.display(), "cannot remove a plugin's /tmp: {error}");
        }
        self.written.clear();
    }
}

type Answer<T> = wasmtime::Result<(Result<T, ErrorCode>,)>;

/// What a counted operation answers: `insufficient-space` (`ENOSPC`) when a bound
/// refused its bytes, else its own result, its bytes given back if it failed.
fn answer_counted<T>(
    state: &mut HostState,
    bytes: u64,
    result: Option<wasmtime_wasi::p2::FsResult<T>>,
) -> Answer<T> {
    let Some(result) = result else {
        return Ok((Err(ErrorCode::InsufficientSpace),));
    };
    if result.is_err() {
        state.scratch.give_back(bytes);
    }
    Ok((answered(result)?,))
}

/// A stream the guest was given, replaced in the table by `wrap` of it.
fn wrapped<S: Send + 'static>(
    state: &mut HostState,
    opened: wasmtime_wasi::p2::FsResult<Resource<S>>,
    wrap: impl FnOnce(&Scratch, S) -> S,
) -> Answer<Resource<S>> {
    let stream = match answered(opened)? {
        Ok(stream) => stream,
        Err(code) => return Ok((Err(code),)),
    };
    let inner = state.table.delete(stream)?;
    let wrapped = wrap(&state.scratch, inner);
    Ok((Ok(state.table.push(wrapped)?),))
}

fn borrowed(fd: &Resource<Descriptor>) -> Resource<Descriptor> {
    Resource::new_borrow(fd.rep())
}

/// Puts the counted writes and creations in `linker`, in front of wasmtime-wasi's,
/// which must be in it already.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(FILESYSTEM_TYPES)?;
    types.func_wrap_async(
        "[method]descriptor.write",
        |mut store: StoreContextMut<'_, HostState>,
         (fd, buffer, offset): (Resource<Descriptor>, Vec<u8>, u64)| {
            Box::new(async move {
                let state = store.data_mut();
                let bytes = pages_touched(offset, buffer.len() as u64);
                let result = if state.scratch.take(bytes) {
                    Some(state.filesystem().write(fd, buffer, offset).await)
                } else {
                    None
                };
                answer_counted(state, bytes, result)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.set-size",
        |mut store: StoreContextMut<'_, HostState>, (fd, size): (Resource<Descriptor>, u64)| {
            Box::new(async move {
                let state = store.data_mut();
                let now = match state.filesystem().stat(borrowed(&fd)).await {
                    Ok(stat) => stat.size,
                    Err(error) => return Ok((answered(Err(error))?,)),
                };
                let bytes = size.saturating_sub(now);
                let result = if state.scratch.take(bytes) {
                    Some(state.filesystem().set_size(fd, size).await)
                } else {
                    None
                };
                answer_counted(state, bytes, result)
            })
        },
    )?;
    types.func_wrap(
        "[method]descriptor.write-via-stream",
        |mut store: StoreContextMut<'_, HostState>, (fd, offset): (Resource<Descriptor>, u64)| {
            let state = store.data_mut();
            let opened = state.filesystem().write_via_stream(fd, offset);
            wrapped(state, opened, |scratch, inner| {
                scratch.counted(inner, Some(offset))
            })
        },
    )?;
    types.func_wrap(
        "[method]descriptor.append-via-stream",
        |mut store: StoreContextMut<'_, HostState>, (fd,): (Resource<Descriptor>,)| {
            let state = store.data_mut();
            let opened = state.filesystem().append_via_stream(fd);
            wrapped(state, opened, |scratch, inner| scratch.counted(inner, None))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.read-via-stream",
        |mut store: StoreContextMut<'_, HostState>, (fd, offset): (Resource<Descriptor>, u64)| {
            let state = store.data_mut();
            let opened = state.filesystem().read_via_stream(fd, offset);
            wrapped(state, opened, Scratch::tracked)
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.create-directory-at",
        |mut store: StoreContextMut<'_, HostState>, (fd, path): (Resource<Descriptor>, String)| {
            Box::new(async move {
                let state = store.data_mut();
                let result = if state.scratch.take(ENTRY_BYTES) {
                    Some(state.filesystem().create_directory_at(fd, path).await)
                } else {
                    None
                };
                answer_counted(state, ENTRY_BYTES, result)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.symlink-at",
        |mut store: StoreContextMut<'_, HostState>,
         (fd, target, path): (Resource<Descriptor>, String, String)| {
            Box::new(async move {
                let state = store.data_mut();
                let result = if state.scratch.take(ENTRY_BYTES) {
                    Some(state.filesystem().symlink_at(fd, target, path).await)
                } else {
                    None
                };
                answer_counted(state, ENTRY_BYTES, result)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.link-at",
        |mut store: StoreContextMut<'_, HostState>, (fd, flags, old, new_fd, new): LinkAtParams| {
            Box::new(async move {
                let state = store.data_mut();
                let result = if state.scratch.take(ENTRY_BYTES) {
                    Some(
                        state
                            .filesystem()
                            .link_at(fd, flags, old, new_fd, new)
                            .await,
                    )
                } else {
                    None
                };
                answer_counted(state, ENTRY_BYTES, result)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

type LinkAtParams = (
    Resource<Descriptor>,
    PathFlags,
    String,
    Resource<Descriptor>,
    String,
);
