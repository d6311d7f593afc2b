//! What a query may spend: memory from a pool the whole process shares, with a bound for
//! each query, and time.
//!
//! DataFusion asks a [`MemoryPool`] before its operators (sorts, joins, aggregations)
//! hold more memory. Each query gets its own [`QueryPool`], which grants a reservation
//! only if it fits both the query's bound and what is left of the server's pool; the
//! disk manager is off, so nothing spills to the host's disk instead. A refusal ends the
//! query with an error saying which bound it met.
//!
//! Time is bounded by the task each query runs in (see [`QueryStream`](crate::QueryStream)),
//! which a timer ends when the query's time is up, whether or not its rows are being
//! read: dropping the plan's stream stops every task DataFusion started for it.

use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The bounds of every query a [`QueryEngine`](crate::QueryEngine) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Memory all running queries may hold together, in bytes: the process's pool.
    /// Default [`Self::DEFAULT_SERVER_MEMORY_BYTES`].
    pub server_memory_bytes: usize,
    /// Memory one query may hold, in bytes. Default [`Self::DEFAULT_QUERY_MEMORY_BYTES`].
    pub query_memory_bytes: usize,
    /// How long one query may run, from planning to its last row. Default
    /// [`Self::DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// The server's resident memory past which queries stop producing rows (see
    /// [`watch`](crate::watch)). Default [`default_process_bound`](crate::watch::default_process_bound):
    /// four fifths of the machine's memory.
    pub process_memory_bytes: u64,
}

impl QueryLimits {
    /// 4 GiB.
    pub const DEFAULT_SERVER_MEMORY_BYTES: usize = 4 << 30;
    /// 1 GiB.
    pub const DEFAULT_QUERY_MEMORY_BYTES: usize = 1 << 30;
    /// 60 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            server_memory_bytes: Self::DEFAULT_SERVER_MEMORY_BYTES,
            query_memory_bytes: Self::DEFAULT_QUERY_MEMORY_BYTES,
            timeout: Self::DEFAULT_TIMEOUT,
            process_memory_bytes: crate::watch::default_process_bound(),
        }
    }
}

/// The pool every query's reservations come out of.
pub(crate) fn server_pool(limits: &QueryLimits) -> Arc<dyn MemoryPool> {
    Arc::new(GreedyMemoryPool::new(limits.server_memory_bytes))
}

/// Which bound refused a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The query's own bound.
    Query,
    /// The server's pool, held by other queries too.
    Server,
}

/// The memory of one query: its own bound, inside the server's pool.
#[derive(Debug)]
pub(crate) struct QueryPool {
    server: Arc<dyn MemoryPool>,
    limit: usize,
    used: AtomicUsize,
    /// The last refusal, and what it said: operators report running out of memory in
    /// their own words, which do not name the bound.
    refused: Mutex<Option<(Refusal, String)>>,
}

impl QueryPool {
    pub(crate) fn new(server: Arc<dyn MemoryPool>, limit: usize) -> Self {
        Self {
            server,
            limit,
            used: AtomicUsize::new(0),
            refused: Mutex::new(None),
        }
    }

    /// Which bound refused memory to this query last, and how it said so, if one did.
    pub(crate) fn refusal(&self) -> Option<(Refusal, String)> {
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn refuse(&self, refusal: Refusal, message: String) -> DataFusionError {
        *self.refused.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((refusal, message.clone()));
        DataFusionError::ResourcesExhausted(message)
    }
}

impl fmt::Display for QueryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "query pool (used: {} of {} bytes)",
            self.used.load(Ordering::Relaxed),
            self.limit
        )
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "query"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.server.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.server.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
        self.server.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::Relaxed);
        self.server.shrink(reservation, shrink);
    }

    fn try_grow(
        &self,
        reservation: &MemoryReservation,
        additional: usize,
    ) -> datafusion::error::Result<()> {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(additional)
                    .filter(|&total| total <= self.limit)
            })
            .map_err(|_| {
                self.refuse(
                    Refusal::Query,
                    format!("query memory limit of {} exceeded", mib(self.limit)),
                )
            })?;
        if self.server.try_grow(reservation, additional).is_err() {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            let limit = match self.server.memory_limit() {
                MemoryLimit::Finite(bytes) => mib(bytes),
                MemoryLimit::Infinite | MemoryLimit::Unknown => "its size".to_string(),
            };
            return Err(self.refuse(
                Refusal::Server,
                format!(
                    "the server's query memory ({limit}) is taken by running queries; \
                     try again later"
                ),
            ));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

pub(crate) fn mib(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// The time limit of a query, as its errors name it.
pub(crate) fn timed_out(timeout: Duration) -> String {
    format!(
        "query time limit of {} exceeded",
        humantime::format_duration(timeout)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reservation(pool: &Arc<dyn MemoryPool>) -> MemoryReservation {
        MemoryConsumer::new("test").register(pool)
    }

    #[test]
    fn a_query_gets_its_bound_and_no_more_than_the_server_has_left() {
        let server = server_pool(&QueryLimits {
            server_memory_bytes: 3 << 20,
            ..QueryLimits::default()
        });
        let first: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(Arc::clone(&server), 2 << 20));
        let a = reservation(&first);
        a.try_grow(2 << 20).expect("within the query's bound");
        let error = a.try_grow(1).expect_err("over the query's bound");
        assert!(
            error
                .to_string()
                .contains("query memory limit of 2 MiB exceeded"),
            "{error}"
        );

        let second = Arc::new(QueryPool::new(Arc::clone(&server), 2 << 20));
        let second_dyn: Arc<dyn MemoryPool> = Arc::clone(&second) as _;
        let b = reservation(&second_dyn);
        let error = b.try_grow(2 << 20).expect_err("the server has 1 MiB left");
        assert!(error.to_string().contains("try again later"), "{error}");
        assert_eq!(second.refusal().map(|(r, _)| r), Some(Refusal::Server));
        assert_eq!(second.reserved(), 0, "a refused reservation holds nothing");

        drop(a);
        assert_eq!(
            server.reserved(),
            0,
            "a query's memory goes back to the server"
        );
        b.try_grow(2 << 20).expect("free again");
    }
}
