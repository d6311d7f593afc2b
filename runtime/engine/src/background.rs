//! Threads of lower CPU priority for the plugin calls nobody waits for.
//!
//! A WAL trigger's plugin runs on rows already acknowledged, a scheduled one on its
//! clock: no client waits for either. On the server's own threads they take the CPU from
//! what clients do wait for: on two cores, a transform plugin running through a write
//! burst made acknowledging the burst 1.1–1.4 times slower. So WAL and schedule triggers
//! run on an async runtime of their own whose threads have a higher nice value, as
//! databases run their compaction threads: on a busy machine, ingest, queries and
//! request triggers go first and the background calls get a share by their weight (at
//! nice 10, about a tenth of a core against each busy thread of the server); on an idle
//! one, they take all of it. What the calls start on the runtime (their queries' tasks,
//! their blocking work) runs there too, at the same priority.
//!
//! Every thread of the runtime is set to one nice value as it starts, whichever thread
//! started it: lowering a thread's priority is always allowed, raising it again is not
//! (without a privilege), so no thread ever goes back and forth. On Linux the nice value
//! is a thread's own; elsewhere, where it is the process's, the runtime is built without
//! lowering anything.

use std::io;
use tokio::runtime::{Builder, Runtime};

/// How much nicer than the server the background threads are, by default.
pub const DEFAULT_NICENESS: u8 = 10;

/// The highest nice value there is.
const LOWEST_PRIORITY: i32 = 19;

/// An async runtime of `workers` threads, of `stack_bytes` of stack each, for the calls
/// nobody waits for: its threads are `niceness` nicer than the calling thread is now (0:
/// as nice as the server), up to the lowest priority there is.
///
/// # Errors
///
/// When the runtime's threads cannot be started, or the calling thread's priority read.
pub fn runtime(niceness: u8, workers: usize, stack_bytes: usize) -> io::Result<Runtime> {
    let mut builder = Builder::new_multi_thread();
    builder
        .enable_all()
        .worker_threads(workers.max(1))
        .thread_stack_size(stack_bytes)
        .thread_name("sluice-background");
    if cfg!(target_os = "linux") && niceness > 0 {
        let own = rustix::process::getpriority_process(None)?;
        let nice = own.saturating_add(i32::from(niceness)).min(LOWEST_PRIORITY);
        builder.on_thread_start(move || {
            // `None`: the calling thread, on Linux.
            if let Err(error) = rustix::process::setpriority_process(None, nice) {
                tracing::warn!("a background thread runs at the server's priority: {error}");
            }
        });
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_nice() -> i32 {
        rustix::process::getpriority_process(None).expect("priority")
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn its_threads_and_their_blocking_threads_are_nicer_and_the_caller_is_not() {
        let before = own_nice();
        let background = runtime(3, 1, 2 << 20).expect("runtime");
        let (worker, blocking) = background
            .block_on(async {
                tokio::spawn(async {
                    let blocking = tokio::task::spawn_blocking(own_nice).await.expect("runs");
                    (own_nice(), blocking)
                })
                .await
            })
            .expect("runs");
        let expected = (before + 3).min(LOWEST_PRIORITY);
        assert_eq!(
            (worker, blocking),
            (expected, expected),
            "a worker, and a blocking thread started by it"
        );
        assert_eq!(own_nice(), before, "the thread that built it keeps its own");
    }

    #[test]
    fn niceness_zero_leaves_the_priority_alone() {
        let before = own_nice();
        let background = runtime(0, 1, 2 << 20).expect("runtime");
        let spawned = background
            .block_on(async { tokio::spawn(async { own_nice() }).await })
            .expect("runs");
        assert_eq!(spawned, before);
    }
}
