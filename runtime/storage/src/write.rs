//! The write path: parse, validate against the catalog, log durably, then make the rows
//! queryable, and only then acknowledge; and the snapshots that move rows to Parquet.
//!
//! Writes gather in a pending batch. [`WriteBuffer::flush`] (run every
//! `--wal-flush-interval` by [`WriteBuffer::spawn_flusher`], and at once when the batch
//! reaches its line limit) writes the batch as one WAL file, syncs it, persists the
//! catalog if it changed, appends the rows to the buffer and wakes the writers that wait
//! for durability. A write with `no_sync` returns as soon as it is pending; it is still
//! logged by the next flush. The line limit is group commit: under load, writers wait
//! for the batch to fill rather than for the clock.
//!
//! When the buffer holds [`SnapshotPolicy::rows`] rows, or its oldest rows are
//! [`SnapshotPolicy::interval`] old, a flush starts a snapshot in the background (see
//! [`crate::persist`]); ingest goes on meanwhile.

use crate::buffer::{Buffer, TableData, arrow_schema};
use crate::metrics::StorageMetrics;
use crate::persist::{Coverage, ParquetFile, Persisted, Snapshots};
use crate::problems::{ProblemKind, StorageProblem};
use sluice_catalog::{
    Catalog, CatalogStore, ColumnType, Error as CatalogError, validate_database_name,
};
use sluice_lp::{Line, ParsedBody, Precision};
use sluice_wal::{Replay, WalDir, WalRecord};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

/// When the buffer is snapshotted to Parquet.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotPolicy {
    /// Snapshot once the buffer holds this many rows.
    pub rows: usize,
    /// Snapshot rows that have been in the buffer this long.
    pub interval: Duration,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self {
            rows: 1_000_000,
            interval: Duration::from_secs(600),
        }
    }
}

/// How much the rows in memory may take.
#[derive(Debug, Clone, Copy)]
pub struct BufferLimits {
    /// The memory of the rows not yet in Parquet, written and pending: past half of it
    /// a snapshot starts; a write that would pass it is refused with
    /// [`WriteError::Busy`] until snapshots have made room.
    pub memory_bytes: usize,
    /// The columns a table may have, `time` included.
    pub max_columns_per_table: usize,
}

impl Default for BufferLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 2 << 30,
            max_columns_per_table: sluice_catalog::DEFAULT_MAX_COLUMNS,
        }
    }
}

/// Where and how the database keeps its data.
#[derive(Clone)]
pub struct StorageConfig {
    /// Directory of the catalog and the WAL.
    pub data_dir: PathBuf,
    /// The object store the Parquet snapshots go to.
    pub snapshots: Snapshots,
    /// When to snapshot.
    pub policy: SnapshotPolicy,
    /// How much the rows in memory may take.
    pub limits: BufferLimits,
    /// The bytes of WAL files a snapshot covers that are kept because a WAL trigger has
    /// not processed them yet; past it the oldest go, and the triggers skip them.
    pub wal_retention_bytes: u64,
}

/// The default of [`StorageConfig::wal_retention_bytes`]: 1 GiB.
pub const DEFAULT_WAL_RETENTION_BYTES: u64 = 1 << 30;

impl StorageConfig {
    /// Everything under `data_dir`, Parquet files included, with the default policy.
    ///
    /// # Errors
    ///
    /// The directory cannot be created.
    pub fn local(data_dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let data_dir = data_dir.into();
        let config = crate::StoreConfig::File(data_dir.clone());
        let store = config.open().map_err(std::io::Error::other)?;
        Ok(Self {
            data_dir,
            snapshots: Snapshots::new(store, crate::DEFAULT_NODE_ID)
                .with_local_root(config.local_root()),
            policy: SnapshotPolicy::default(),
            limits: BufferLimits::default(),
            wal_retention_bytes: DEFAULT_WAL_RETENTION_BYTES,
        })
    }
}

/// Why a write was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The database name breaks the naming rules.
    #[error("{0}")]
    InvalidDatabaseName(String),
    /// Some line is invalid and partial writes were not accepted; nothing was written.
    #[error("line protocol parsing error")]
    Rejected(Vec<LineError>),
    /// No line was valid.
    #[error("incoming write was empty")]
    Empty(Vec<LineError>),
    /// The WAL could not be made durable; the write is not acknowledged.
    #[error("write could not be made durable: {0}")]
    Durability(String),
    /// The database does not exist and the write may not create it.
    #[error("database not found: {0}")]
    DatabaseNotFound(String),
    /// The rows in memory are at their bound: the write may succeed once snapshots
    /// have made room.
    #[error("{0}")]
    Busy(String),
    /// The write alone would take more memory than the rows in memory may.
    #[error("{0}")]
    TooLarge(String),
}

/// One refused line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the body.
    pub line_number: usize,
    /// The line as given.
    pub original_line: String,
    /// What is wrong.
    pub error_message: String,
}

/// What a write applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteOutcome {
    /// Lines accepted.
    pub lines_written: usize,
    /// Lines refused (only with partial writes accepted).
    pub errors: Vec<LineError>,
}

/// A write request.
#[derive(Debug, Clone)]
pub struct WriteRequest<'a> {
    /// Target database, created if missing.
    pub database: &'a str,
    /// Line protocol.
    pub body: &'a str,
    /// Unit of the timestamps in `body`.
    pub precision: Precision,
    /// Write the valid lines when some are invalid.
    pub accept_partial: bool,
    /// Return before the write is durable.
    pub no_sync: bool,
    /// Time given to lines without a timestamp, nanoseconds since the epoch.
    pub default_time_ns: i64,
    /// Create the database if it does not exist; otherwise the write fails with
    /// [`WriteError::DatabaseNotFound`] (a database deleted while the writer ran).
    pub create_database: bool,
}

#[derive(Default)]
struct Pending {
    records: Vec<(String, Vec<Line>)>,
    lines: usize,
    /// What the records will take in the buffer, estimated as [`Buffer::bytes`] does.
    bytes: usize,
    waiters: Vec<oneshot::Sender<Result<(), WriteError>>>,
}

/// The database's write path, its in-memory rows and its Parquet snapshots.
pub struct WriteBuffer {
    /// The catalog and its file.
    store: CatalogStore,
    buffer: Mutex<Buffer>,
    pending: Mutex<Pending>,
    wal: Mutex<WalDir>,
    /// Where the WAL files are: read back without the lock for WAL triggers.
    wal_dir: PathBuf,
    /// See [`StorageConfig::wal_retention_bytes`].
    wal_retention_bytes: u64,
    /// The data directory: the catalog, the WAL, records kept aside.
    data_dir: PathBuf,
    /// Held while the WAL, the catalog file and the buffer change together, so that a
    /// snapshot or a database drop sees them agree.
    log_lock: Mutex<()>,
    snapshots: Snapshots,
    policy: SnapshotPolicy,
    limits: BufferLimits,
    snapshot_running: AtomicBool,
    snapshot_id: AtomicU64,
    /// After a failed snapshot: when the next may start, and the delay that led there.
    snapshot_retry: Mutex<Option<(Instant, Duration)>>,
    last_snapshot: Mutex<Instant>,
    /// Pending lines that start a flush before the interval ends.
    flush_at_lines: AtomicUsize,
    /// Wakes the flusher early.
    flush_now: Notify,
    /// Told of each flush's rows.
    flush_observer: Mutex<Option<Arc<dyn FlushObserver>>>,
    /// What start-up found wrong, less what the admin has cleared since.
    problems: Mutex<Vec<StorageProblem>>,
    metrics: StorageMetrics,
}

/// Rows of one flush, by database, in write order.
pub type FlushedRows = Arc<Vec<(String, Vec<Line>)>>;

/// Learns of each flush's rows once they are durable and queryable: the processing
/// engine's WAL triggers.
pub trait FlushObserver: Send + Sync {
    /// The rows of the flush logged as WAL file `sequence`. Called on the flushing thread
    /// while the log is locked, in sequence order, so it must only hand the rows on,
    /// never wait.
    fn flushed(&self, sequence: u64, rows: FlushedRows);

    /// The first WAL sequence the observer has not finished with, if any: the files from
    /// it on are kept after their snapshot, within the WAL retention.
    fn oldest_needed(&self) -> Option<u64> {
        None
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl WriteBuffer {
    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        self.store.catalog()
    }

    /// The catalog's store: to change the catalog durably, and to learn of each change.
    pub fn catalog_store(&self) -> &CatalogStore {
        &self.store
    }

    /// Parses, validates and queues a write; unless `no_sync`, waits until it is durable
    /// and queryable.
    ///
    /// # Errors
    ///
    /// See [`WriteError`]; on any error nothing of the write was applied, except with
    /// `accept_partial`, where valid lines are written and the invalid ones reported in
    /// [`WriteOutcome::errors`].
    pub async fn write_lp(&self, request: WriteRequest<'_>) -> Result<WriteOutcome, WriteError> {
        // Before parsing: a body for a database that cannot exist is not worth reading.
        check_database_name(request.database)?;
        let parsed = cpu_bound(|| {
            sluice_lp::parse(request.body, request.precision, request.default_time_ns)
        });
        self.write_named(request, parsed).await
    }

    /// [`Self::write_lp`] of a body the writer has parsed (with the request's precision
    /// and default time): parsing needs no catalog, so a writer may do it ahead, while
    /// other work goes on.
    ///
    /// # Errors
    ///
    /// As [`Self::write_lp`].
    pub async fn write_parsed(
        &self,
        request: WriteRequest<'_>,
        parsed: ParsedBody,
    ) -> Result<WriteOutcome, WriteError> {
        check_database_name(request.database)?;
        self.write_named(request, parsed).await
    }

    /// [`Self::write_parsed`] once the database's name is known to be valid.
    async fn write_named(
        &self,
        request: WriteRequest<'_>,
        parsed: ParsedBody,
    ) -> Result<WriteOutcome, WriteError> {
        if self.held_bytes() > self.limits.memory_bytes {
            return Err(self.busy());
        }
        let (accepted, errors, cells) = cpu_bound(|| self.validate(&request, parsed))?;
        let lines_written = accepted.len();
        // As the buffer counts: 8 bytes a value, and the text (the body bounds it).
        let bytes = cells.saturating_mul(8).saturating_add(request.body.len());
        if bytes > self.limits.memory_bytes {
            return Err(WriteError::TooLarge(format!(
                "the write would take {} MiB in memory, more than the {} MiB the rows not \
                 yet in Parquet may take (--buffer-memory-mib): send it in parts",
                bytes >> 20,
                self.limits.memory_bytes >> 20
            )));
        }
        if self.held_bytes().saturating_add(bytes) > self.limits.memory_bytes {
            return Err(self.busy());
        }
        let waiter = {
            let mut pending = lock(&self.pending);
            pending.bytes += bytes;
            pending.lines += accepted.len();
            pending
                .records
                .push((request.database.to_string(), accepted));
            if pending.lines >= self.flush_at_lines.load(Ordering::Relaxed) {
                self.flush_now.notify_one();
            }
            (!request.no_sync).then(|| {
                let (sender, receiver) = oneshot::channel();
                pending.waiters.push(sender);
                receiver
            })
        };
        if let Some(receiver) = waiter {
            receiver
                .await
                .map_err(|_| WriteError::Durability("the server is shutting down".into()))??;
        }
        Ok(WriteOutcome {
            lines_written,
            errors,
        })
    }

    /// The memory of the rows in the buffer and of those pending.
    fn held_bytes(&self) -> usize {
        let pending = lock(&self.pending).bytes;
        lock(&self.buffer).bytes().saturating_add(pending)
    }

    /// The refusal of a write while the rows in memory are at their bound, which wakes
    /// the flusher so that a snapshot starts making room.
    fn busy(&self) -> WriteError {
        self.flush_now.notify_one();
        self.metrics.write_refused();
        WriteError::Busy(format!(
            "the rows not yet in Parquet take their whole {} MiB (--buffer-memory-mib); \
             a snapshot is making room: retry shortly",
            self.limits.memory_bytes >> 20
        ))
    }

    /// Checks the parsed body against the catalog: the lines to write, the errors to
    /// report, and the values the lines take in memory.
    fn validate(
        &self,
        request: &WriteRequest<'_>,
        mut parsed: ParsedBody,
    ) -> Result<(Vec<Line>, Vec<LineError>, usize), WriteError> {
        // The body's lines, split once for all the conflicts reported.
        let mut body_lines: Option<Vec<&str>> = None;
        let mut original = |line_number: usize| {
            body_lines
                .get_or_insert_with(|| request.body.split('\n').collect())
                .get(line_number - 1)
                .map(|line| line.trim_end_matches('\r').to_string())
                .unwrap_or_default()
        };
        let mut errors: Vec<LineError> = parsed
            .errors
            .iter()
            .map(|e| LineError {
                line_number: e.line_number,
                original_line: e.original_line.clone(),
                error_message: e.message.clone(),
            })
            .collect();
        // Lines the WAL could not give back as they are: refused, as bad lines are.
        if let Some(first) = parsed
            .lines
            .iter()
            .position(|line| sluice_lp::check_storable(line).is_err())
        {
            let lines = parsed.lines.split_off(first);
            let numbers = parsed.line_numbers.split_off(first);
            for (line, number) in lines.into_iter().zip(numbers) {
                match sluice_lp::check_storable(&line) {
                    Ok(()) => {
                        parsed.lines.push(line);
                        parsed.line_numbers.push(number);
                    }
                    Err(message) => errors.push(LineError {
                        line_number: number,
                        original_line: original(number),
                        error_message: message,
                    }),
                }
            }
            errors.sort_by_key(|e| e.line_number);
        }
        if !errors.is_empty() && !request.accept_partial {
            return Err(WriteError::Rejected(errors));
        }
        let validation = if request.create_database {
            self.catalog()
                .validate_write(request.database, &parsed.lines, request.accept_partial)
        } else {
            self.catalog().validate_write_existing(
                request.database,
                &parsed.lines,
                request.accept_partial,
            )
        }
        .map_err(|e| match e {
            CatalogError::DatabaseNotFound(name) => WriteError::DatabaseNotFound(name),
            other => WriteError::InvalidDatabaseName(other.to_string()),
        })?;
        for conflict in &validation.errors {
            let line_number = parsed
                .line_numbers
                .get(conflict.line_number - 1)
                .copied()
                .unwrap_or(conflict.line_number);
            errors.push(LineError {
                line_number,
                original_line: original(line_number),
                error_message: conflict.message.clone(),
            });
        }
        errors.sort_by_key(|e| e.line_number);
        if !errors.is_empty() && !request.accept_partial {
            return Err(WriteError::Rejected(errors));
        }
        if validation.accepted.is_empty() {
            return Err(WriteError::Empty(errors));
        }
        Ok((
            keep(parsed.lines, &validation.accepted),
            errors,
            validation.cells,
        ))
    }

    /// Makes everything pending durable and queryable, then wakes its writers.
    ///
    /// # Errors
    ///
    /// When the WAL cannot be written; the writers waiting get the error too.
    pub async fn flush(self: &Arc<Self>) -> Result<(), WriteError> {
        let pending = std::mem::take(&mut *lock(&self.pending));
        if pending.records.is_empty() {
            return Ok(());
        }
        let this = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || this.log(pending.records))
            .await
            .map_err(|e| WriteError::Durability(e.to_string()))
            .and_then(|r| r);
        for waiter in pending.waiters {
            let _ = waiter.send(result.clone());
        }
        if result.is_ok() {
            self.snapshot_if_due();
        }
        result
    }

    /// Starts a snapshot in the background if one is due.
    fn snapshot_if_due(self: &Arc<Self>) {
        if self.snapshot_due() {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                if let Err(e) = this.snapshot().await {
                    tracing::error!("snapshot failed, its rows stay in the WAL and memory: {e}");
                }
            });
        }
    }

    fn snapshot_due(&self) -> bool {
        if lock(&self.snapshot_retry).is_some_and(|(at, _)| Instant::now() < at) {
            return false;
        }
        let (rows, bytes) = {
            let buffer = lock(&self.buffer);
            (buffer.rows(), buffer.bytes())
        };
        rows > 0
            && (rows >= self.policy.rows
                || bytes >= self.limits.memory_bytes / 2
                || lock(&self.last_snapshot).elapsed() >= self.policy.interval)
    }

    /// Writes the buffer's rows to Parquet, then drops them from memory and removes the
    /// WAL files they came from; returns the number of files written (0 when another
    /// snapshot is running or there is nothing to write).
    ///
    /// # Errors
    ///
    /// Encoding or object store errors; the rows then stay in memory and in the WAL.
    pub async fn snapshot(self: &Arc<Self>) -> Result<usize, String> {
        if self.snapshot_running.swap(true, Ordering::AcqRel) {
            return Ok(0);
        }
        let id = self.snapshot_id.fetch_add(1, Ordering::Relaxed);
        let (wal_sequence, frozen) = {
            let _log = lock(&self.log_lock);
            let wal_sequence = lock(&self.wal).last_sequence();
            (wal_sequence, lock(&self.buffer).freeze(id))
        };
        *lock(&self.last_snapshot) = Instant::now();
        let outcome = if frozen.is_empty() {
            Ok(0)
        } else {
            self.persist(id, wal_sequence, frozen).await
        };
        self.snapshot_running.store(false, Ordering::Release);
        // A flush that found this one running started none: the rows it made due
        // start the next one now.
        if outcome.as_ref().is_ok_and(|files| *files > 0) {
            self.snapshot_if_due();
        }
        outcome
    }

    async fn persist(
        &self,
        id: u64,
        wal_sequence: u64,
        frozen: Vec<crate::buffer::FrozenTable>,
    ) -> Result<usize, String> {
        let rows: usize = frozen
            .iter()
            .flat_map(|t| &t.batches)
            .map(|b| b.num_rows())
            .sum();
        let written = match self.snapshots.write(wal_sequence, frozen).await {
            Ok(written) => written,
            Err(e) => {
                lock(&self.buffer).abandon(id);
                self.metrics.snapshot_failed();
                self.retry_later();
                return Err(e);
            }
        };
        let failed: Vec<(String, String)> = written
            .failed
            .iter()
            .map(|(database, table, why)| {
                tracing::error!(
                    database = %database,
                    table = %table,
                    "a table could not be snapshotted; its rows stay in memory and the WAL, \
                     and the next snapshot tries again: {why}"
                );
                (database.clone(), table.clone())
            })
            .collect();
        let files = written.files.len();
        self.metrics.snapshot(files, failed.len());
        let orphans = {
            let mut buffer = lock(&self.buffer);
            buffer.abandon_tables(id, &failed);
            // Files of tables deleted while the snapshot ran.
            buffer.persisted(id, written.files)
        };
        self.snapshots.discard(&orphans).await;
        if failed.is_empty() {
            *lock(&self.snapshot_retry) = None;
            self.trim_wal(wal_sequence).await;
        } else {
            // The WAL keeps the failed tables' rows; the manifest says which they are.
            self.retry_later();
        }
        tracing::info!(
            files,
            failed = failed.len(),
            rows,
            wal_sequence,
            "snapshot persisted"
        );
        Ok(files)
    }

    /// Puts the next snapshot off after a failure: 1 s, then twice as long each time it
    /// fails again, up to 5 minutes.
    fn retry_later(&self) {
        let mut retry = lock(&self.snapshot_retry);
        let delay = retry.map_or(Duration::from_secs(1), |(_, delay)| {
            (delay * 2).min(Duration::from_secs(300))
        });
        *retry = Some((Instant::now() + delay, delay));
    }

    /// Writes the WAL file and the catalog, then appends the rows to the buffer.
    fn log(&self, records: Vec<(String, Vec<Line>)>) -> Result<(), WriteError> {
        let _log = lock(&self.log_lock);
        // Rows of a database deleted since they were validated go nowhere.
        let records: Vec<(String, Vec<Line>)> = records
            .into_iter()
            .filter(|(database, _)| self.catalog().has_database(database))
            .collect();
        let mut by_database: Vec<WalRecord> = Vec::new();
        for (database, lines) in &records {
            let mut line_protocol = String::new();
            for line in lines {
                line.write_to(&mut line_protocol);
                line_protocol.push('\n');
            }
            match by_database.iter_mut().find(|r| &r.database == database) {
                Some(record) => record.line_protocol.push_str(&line_protocol),
                None => by_database.push(WalRecord {
                    database: database.clone(),
                    line_protocol,
                }),
            }
        }
        let sequence = lock(&self.wal)
            .write(&by_database)
            .map_err(|e| WriteError::Durability(e.to_string()))?;
        self.store
            .persist()
            .map_err(|e| WriteError::Durability(format!("catalog: {e}")))?;
        {
            let mut buffer = lock(&self.buffer);
            for (database, lines) in &records {
                buffer.append(database, lines);
            }
        }
        // The rows are durable and queryable: now the processing engine may see them.
        if let Some(observer) = lock(&self.flush_observer).as_ref() {
            observer.flushed(sequence, Arc::new(records));
        }
        Ok(())
    }

    /// Has `observer` told of each flush's rows, after they are durable and queryable.
    pub fn set_flush_observer(&self, observer: Arc<dyn FlushObserver>) {
        *lock(&self.flush_observer) = Some(observer);
    }

    /// Flushes every `interval`, and as soon as `max_pending_lines` lines are pending,
    /// until the returned task is aborted.
    pub fn spawn_flusher(
        self: &Arc<Self>,
        interval: Duration,
        max_pending_lines: usize,
    ) -> tokio::task::JoinHandle<()> {
        self.flush_at_lines
            .store(max_pending_lines.max(1), Ordering::Relaxed);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = this.flush_now.notified() => {}
                }
                if let Err(e) = this.flush().await {
                    tracing::error!("WAL flush failed: {e}");
                }
                // Due by age or memory with nothing written (writes refused while the
                // memory is full, a failed snapshot to retry): started here too.
                this.snapshot_if_due();
            }
        })
    }

    /// A table's schema, its rows in memory and its Parquet files, as one consistent
    /// view; `None` when the table does not exist.
    pub fn table_data(&self, database: &str, table: &str) -> Option<TableData> {
        let columns = self
            .catalog()
            .database(database)?
            .tables
            .get(table)?
            .columns
            .clone();
        Some(lock(&self.buffer).table_data(database, table, arrow_schema(&columns)))
    }

    /// The object store snapshots are written to.
    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    /// Creates a database and persists the catalog.
    ///
    /// # Errors
    ///
    /// The catalog's errors, or [`CatalogError::Io`] when it cannot be persisted.
    pub fn create_database(&self, name: &str) -> Result<(), CatalogError> {
        self.change_catalog(|catalog| catalog.create_database(name))
    }

    /// Creates a table with the given tags and fields and persists the catalog.
    ///
    /// # Errors
    ///
    /// The catalog's errors, or [`CatalogError::Io`] when it cannot be persisted.
    pub fn create_table(
        &self,
        database: &str,
        table: &str,
        tags: &[String],
        fields: &[(String, ColumnType)],
    ) -> Result<(), CatalogError> {
        self.change_catalog(|catalog| catalog.create_table(database, table, tags, fields))
    }

    /// Runs `change` on a copy of the catalog (databases, tables, tokens, triggers),
    /// persists the copy, and only then makes it the catalog: a change is never seen
    /// before it is durable, and one that cannot be persisted is not made.
    ///
    /// # Errors
    ///
    /// The error of `change`, or [`CatalogError::Io`] when the catalog cannot be
    /// persisted; the catalog is then unchanged.
    pub fn change_catalog<T>(
        &self,
        change: impl FnOnce(&Catalog) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        let _log = lock(&self.log_lock);
        self.store.change(change)
    }

    /// Deletes a database: its catalog entry, its rows in memory, its records in the WAL
    /// (so a restart does not bring it back) and its Parquet files.
    ///
    /// # Errors
    ///
    /// [`CatalogError::DatabaseNotFound`], or [`CatalogError::Io`].
    pub async fn delete_database(self: &Arc<Self>, name: &str) -> Result<(), CatalogError> {
        let this = Arc::clone(self);
        let database = name.to_string();
        let files = tokio::task::spawn_blocking(move || {
            let _log = lock(&this.log_lock);
            if !this.catalog().has_database(&database) {
                return Err(CatalogError::DatabaseNotFound(database));
            }
            // Its rows go first: a crash before the catalog change leaves the database
            // empty, never its rows in the WAL of a database the catalog has lost (a
            // replay would create it again). Rows written meanwhile are dropped by the
            // flush, which finds no database for them.
            lock(&this.pending)
                .records
                .retain(|(db, _)| db != &database);
            let files = lock(&this.buffer).drop_database(&database);
            let io = |e: std::io::Error| CatalogError::Io(e.to_string());
            lock(&this.wal).drop_database(&database).map_err(io)?;
            this.store
                .change(|catalog| catalog.delete_database(&database))?;
            Ok::<_, CatalogError>(files)
        })
        .await
        .map_err(|e| CatalogError::Io(e.to_string()))??;
        self.snapshots.discard(&files).await;
        Ok(())
    }
}

fn check_database_name(name: &str) -> Result<(), WriteError> {
    validate_database_name(name).map_err(|e| WriteError::InvalidDatabaseName(e.to_string()))
}

/// Runs `work`, which takes milliseconds of CPU for a large write, without stalling the
/// other tasks of this async worker thread (on a multi-threaded runtime).
fn cpu_bound<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// The lines at `indices` (ascending), moved out of `lines`.
fn keep(lines: Vec<Line>, indices: &[usize]) -> Vec<Line> {
    if indices.len() == lines.len() {
        return lines;
    }
    let mut wanted = indices.iter().peekable();
    lines
        .into_iter()
        .enumerate()
        .filter(|(index, _)| wanted.next_if_eq(&index).is_some())
        .map(|(_, line)| line)
        .collect()
}

mod recovery;
#[cfg(test)]
mod round_trip;
mod wal_readers;
pub use wal_readers::{LoggedFlush, RemovedRows};

pub use recovery::Recovery;

#[cfg(test)]
mod tests;
