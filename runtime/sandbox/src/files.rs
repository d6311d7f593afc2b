//! Open files of plugins: each is a descriptor of the host process, so they are counted
//! and bounded, per instance ([`Limits::open_files`]) and for the whole server
//! ([`SandboxConfig::max_open_files`](crate::SandboxConfig)).
//!
//! WASI gives a plugin descriptors through `open-at` (a file or a directory) and
//! `read-directory` (a listing, which holds its directory open until dropped). The sandbox
//! puts its own versions of these in the linker, in front of wasmtime-wasi's: past a bound
//! they fail with the `quota` error code (`EDQUOT` in the guest: WASI has no `EMFILE`) and
//! the trigger's log names the bound; the plugin goes on. The destructors of both
//! resources are the sandbox's too, so a closed file is counted out at once, and an
//! instance dropped with files open gives its count back ([`OpenFiles`]'s `Drop`).
//!
//! Every other handle a plugin holds (streams, timers) is bounded by the capacity of its
//! resource table ([`Limits::handles`]); passing it stops the call.

use crate::host::HostState;
use sluice_plugin_api::{Limits, LogLevel};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::ReaddirIterator;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, ErrorCode, HostDescriptor, OpenFlags, PathFlags,
};

/// The WIT interface whose functions are replaced; the version is wasmtime-wasi's own,
/// which components importing any 0.2 version are linked to.
pub(crate) const FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// The descriptors every instance of the server holds, and their bound.
#[derive(Debug)]
pub(crate) struct ServerFiles {
    held: AtomicU64,
    limit: u64,
}

impl ServerFiles {
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicU64::new(0),
            limit,
        })
    }
}

/// The descriptors one instance holds: the handles of the ones it opened, so that only
/// those are counted out when dropped (not the mounted directories, never counted in).
#[derive(Debug)]
pub(crate) struct OpenFiles {
    held: HashSet<u32>,
    server: Arc<ServerFiles>,
    /// Whether the current call's log was told of a refusal already.
    told: bool,
}

/// Which bound refused a descriptor.
enum Refusal {
    Instance(u64),
    Server(u64),
}

impl OpenFiles {
    pub(crate) fn new(server: Arc<ServerFiles>) -> Self {
        Self {
            held: HashSet::new(),
            server,
            told: false,
        }
    }

    /// Whether the instance holds files open: between calls, only a plugin keeping them
    /// in its module state does.
    pub(crate) fn any(&self) -> bool {
        !self.held.is_empty()
    }

    /// A new call starts: its log has not been told of a refusal.
    pub(crate) fn begin_call(&mut self) {
        self.told = false;
    }

    /// Takes one more descriptor from the server's count, if the bounds allow it;
    /// [`Self::opened`] or [`Self::not_opened`] must follow.
    fn take(&mut self, limit: u64) -> Result<(), Refusal> {
        if self.held.len() as u64 >= limit {
            return Err(Refusal::Instance(limit));
        }
        let server = &self.server;
        server
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held < server.limit).then_some(held + 1)
            })
            .map_err(|_| Refusal::Server(server.limit))?;
        Ok(())
    }

    /// The descriptor taken is the handle `rep`.
    fn opened(&mut self, rep: u32) {
        self.held.insert(rep);
    }

    /// The descriptor taken was not opened after all.
    fn not_opened(&mut self) {
        self.server.held.fetch_sub(1, Ordering::Relaxed);
    }

    /// The handle `rep` was dropped: counted out if it was counted in.
    fn dropped(&mut self, rep: u32) {
        if self.held.remove(&rep) {
            self.server.held.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for OpenFiles {
    fn drop(&mut self) {
        // The store's resource table closes the files themselves.
        self.server
            .held
            .fetch_sub(self.held.len() as u64, Ordering::Relaxed);
    }
}

/// Takes a descriptor for the current call of `state`, or says why not (once per call,
/// in the trigger's log) and answers the guest with `quota`.
fn take(state: &mut HostState) -> Result<(), ErrorCode> {
    let limit = state.call.limits.open_files;
    let Err(refusal) = state.files.take(limit) else {
        return Ok(());
    };
    if !state.files.told {
        state.files.told = true;
        let message = match refusal {
            Refusal::Instance(limit) => format!(
                "open files limit of {limit} reached: opening another file or listing a \
                 directory fails with EDQUOT until one is closed"
            ),
            Refusal::Server(limit) => format!(
                "the server's limit of {limit} files open by plugins is reached: opening \
                 a file fails with EDQUOT; try again later"
            ),
        };
        if let Some(services) = &state.call.services {
            services.log(LogLevel::Warn, &message);
        }
    }
    Err(ErrorCode::Quota)
}

/// The guest's view of a host result: an error code, or a trap for anything else.
pub(crate) fn answered<T>(
    result: wasmtime_wasi::p2::FsResult<T>,
) -> wasmtime::Result<Result<T, ErrorCode>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(error) => error.downcast().map(Err),
    }
}

type OpenAtParams = (
    Resource<Descriptor>,
    PathFlags,
    String,
    OpenFlags,
    DescriptorFlags,
);

/// Puts the counted `open-at`, `read-directory` and destructors in `linker`, in front of
/// wasmtime-wasi's, which must be in it already.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(FILESYSTEM_TYPES)?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store: StoreContextMut<'_, HostState>,
         (fd, path_flags, path, open_flags, flags): OpenAtParams| {
            Box::new(async move {
                let state = store.data_mut();
                if let Err(code) = take(state) {
                    return Ok((Err(code),));
                }
                // A file created counts against the call's `/tmp` (`scratch.rs`).
                let created = if open_flags.contains(OpenFlags::CREATE) {
                    crate::scratch::ENTRY_BYTES
                } else {
                    0
                };
                if created > 0 && !state.scratch.take(created) {
                    state.files.not_opened();
                    return Ok((Err(ErrorCode::InsufficientSpace),));
                }
                let opened = state
                    .filesystem()
                    .open_at(fd, path_flags, path, open_flags, flags)
                    .await;
                match &opened {
                    Ok(descriptor) => state.files.opened(descriptor.rep()),
                    Err(_) => {
                        state.files.not_opened();
                        state.scratch.give_back(created);
                    }
                }
                Ok((answered(opened)?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.read-directory",
        |mut store: StoreContextMut<'_, HostState>, (fd,): (Resource<Descriptor>,)| {
            Box::new(async move {
                let state = store.data_mut();
                if let Err(code) = take(state) {
                    return Ok((Err(code),));
                }
                let listing = state.filesystem().read_directory(fd).await;
                match &listing {
                    Ok(stream) => state.files.opened(stream.rep()),
                    Err(_) => state.files.not_opened(),
                }
                Ok((answered(listing)?,))
            })
        },
    )?;
    types.resource(
        "descriptor",
        ResourceType::host::<Descriptor>(),
        counted_drop::<Descriptor>,
    )?;
    types.resource(
        "directory-entry-stream",
        ResourceType::host::<ReaddirIterator>(),
        counted_drop::<ReaddirIterator>,
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The destructor of a descriptor or a listing, as wasmtime-wasi's (which removes it from
/// the table, closing what it holds), and counted out.
fn counted_drop<R: Send + 'static>(
    mut store: StoreContextMut<'_, HostState>,
    rep: u32,
) -> wasmtime::Result<()> {
    let state = store.data_mut();
    state.table.delete(Resource::<R>::new_own(rep))?;
    state.files.dropped(rep);
    Ok(())
}

/// Whether `error` is a call's resource table refusing one more handle.
pub(crate) fn is_out_of_handles(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<wasmtime_wasi::ResourceTableError>(),
            Some(wasmtime_wasi::ResourceTableError::Full)
        )
    })
}

/// The capacity of an instance's resource table under `limits`.
pub(crate) fn handles(limits: &Limits) -> usize {
    usize::try_from(limits.handles()).unwrap_or(usize::MAX)
}

/// Raises the process's limit on open descriptors to the most it may have (the soft
/// limit is often far below the hard one): the server's connections and files, and its
/// plugins' share ([`SandboxConfig::max_open_files`](crate::SandboxConfig)), come out of
/// it. Returns the limit now.
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("cannot raise the limit on open files: {error}");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// The default bound of the server's plugin descriptors: half of what the process may
/// open, so that the server always has the other half for its own files and sockets.
pub(crate) fn default_server_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(1 << 16, |nofile| nofile / 2)
}
