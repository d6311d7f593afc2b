//! The write path: parse, validate against the catalog, log durably, then make the rows
//! queryable, and only then acknowledge.
//!
//! Writes gather in a pending batch. [`WriteBuffer::flush`] (run every
//! `--wal-flush-interval` by [`WriteBuffer::spawn_flusher`]) writes the batch as one WAL
//! file, syncs it, persists the catalog if it changed, appends the rows to the buffer and
//! wakes the writers that wait for durability. A write with `no_sync` returns as soon as
//! it is pending; it is still logged by the next flush.

use crate::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use sluice_catalog::{Catalog, validate_database_name};
use sluice_lp::{Line, Precision};
use sluice_wal::{Replay, WalDir, WalRecord};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;

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
}

#[derive(Default)]
struct Pending {
    records: Vec<(String, Vec<Line>)>,
    waiters: Vec<oneshot::Sender<Result<(), WriteError>>>,
}

/// The database's write path and its in-memory rows.
pub struct WriteBuffer {
    catalog: Arc<Catalog>,
    buffer: Mutex<Buffer>,
    pending: Mutex<Pending>,
    wal: Mutex<WalDir>,
    catalog_file: PathBuf,
    persisted_catalog: Mutex<Vec<u8>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What start-up found on disk.
#[derive(Debug, Default)]
pub struct Recovery {
    /// WAL files replayed.
    pub files: usize,
    /// Rows replayed.
    pub rows: usize,
    /// Damaged files, with what was wrong.
    pub damage: Vec<String>,
}

impl WriteBuffer {
    /// Opens the data directory: loads the catalog, replays the WAL into the buffer.
    ///
    /// # Errors
    ///
    /// I/O errors, or a catalog file that cannot be read (a damaged catalog is never
    /// silently replaced).
    pub fn open(data_dir: impl Into<PathBuf>) -> std::io::Result<(Arc<Self>, Recovery)> {
        let data_dir = data_dir.into();
        std::fs::create_dir_all(&data_dir)?;
        let catalog_file = data_dir.join("catalog");
        let catalog = match std::fs::read(&catalog_file) {
            Ok(bytes) => Catalog::from_bytes(&bytes).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", catalog_file.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Catalog::default(),
            Err(e) => return Err(e),
        };
        let (wal, replay) = WalDir::open(data_dir.join("wal"))?;
        let persisted = catalog.to_bytes();
        let this = Self {
            catalog: Arc::new(catalog),
            buffer: Mutex::default(),
            pending: Mutex::default(),
            wal: Mutex::new(wal),
            catalog_file,
            persisted_catalog: Mutex::new(persisted),
        };
        let recovery = this.replay(replay);
        Ok((Arc::new(this), recovery))
    }

    fn replay(&self, replay: Replay) -> Recovery {
        let mut recovery = Recovery { files: replay.files.len(), ..Recovery::default() };
        let mut buffer = lock(&self.buffer);
        for (_, records) in replay.files {
            for record in records {
                let lines = sluice_lp::parse(&record.line_protocol, Precision::Nanosecond, 0).lines;
                let Ok(validation) = self.catalog.validate_write(&record.database, &lines) else {
                    continue;
                };
                let accepted: Vec<Line> = validation.accepted.iter().map(|&i| lines[i].clone()).collect();
                recovery.rows += accepted.len();
                buffer.append(&record.database, &accepted);
            }
        }
        for damage in replay.damage {
            let message = format!(
                "{}: {} (replayed the {} records before it)",
                damage.file.display(),
                damage.reason,
                damage.valid_records
            );
            tracing::warn!("damaged WAL file: {message}");
            recovery.damage.push(message);
        }
        recovery
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
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
        validate_database_name(request.database).map_err(|e| WriteError::InvalidDatabaseName(e.to_string()))?;
        let parsed = sluice_lp::parse(request.body, request.precision, request.default_time_ns);
        let original = |line_number: usize| {
            request.body.split('\n').nth(line_number - 1).unwrap_or_default().trim_end_matches('\r').to_string()
        };
        let mut errors: Vec<LineError> = parsed
            .errors
            .iter()
            .map(|e| LineError { line_number: e.line_number, original_line: e.original_line.clone(), error_message: e.message.clone() })
            .collect();
        if !errors.is_empty() && !request.accept_partial {
            return Err(WriteError::Rejected(errors));
        }
        // Line numbers of the parsed lines, to report catalog conflicts against the body.
        let numbers = line_numbers(request.body, parsed.lines.len(), &parsed.errors);
        let validation = self
            .catalog
            .validate_write(request.database, &parsed.lines)
            .map_err(|e| WriteError::InvalidDatabaseName(e.to_string()))?;
        for conflict in &validation.errors {
            let line_number = numbers.get(conflict.line_number - 1).copied().unwrap_or(conflict.line_number);
            errors.push(LineError { line_number, original_line: original(line_number), error_message: conflict.message.clone() });
        }
        errors.sort_by_key(|e| e.line_number);
        if !errors.is_empty() && !request.accept_partial {
            return Err(WriteError::Rejected(errors));
        }
        if validation.accepted.is_empty() {
            return Err(WriteError::Empty(errors));
        }
        let accepted: Vec<Line> = validation.accepted.iter().map(|&i| parsed.lines[i].clone()).collect();
        let lines_written = accepted.len();
        let waiter = {
            let mut pending = lock(&self.pending);
            pending.records.push((request.database.to_string(), accepted));
            (!request.no_sync).then(|| {
                let (sender, receiver) = oneshot::channel();
                pending.waiters.push(sender);
                receiver
            })
        };
        if let Some(receiver) = waiter {
            receiver.await.map_err(|_| WriteError::Durability("the server is shutting down".into()))??;
        }
        Ok(WriteOutcome { lines_written, errors })
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
        result
    }

    /// Writes the WAL file and the catalog, then appends the rows to the buffer.
    fn log(&self, records: Vec<(String, Vec<Line>)>) -> Result<(), WriteError> {
        let mut by_database: Vec<WalRecord> = Vec::new();
        for (database, lines) in &records {
            let mut line_protocol = String::new();
            for line in lines {
                line.write_to(&mut line_protocol);
                line_protocol.push('\n');
            }
            match by_database.iter_mut().find(|r| &r.database == database) {
                Some(record) => record.line_protocol.push_str(&line_protocol),
                None => by_database.push(WalRecord { database: database.clone(), line_protocol }),
            }
        }
        lock(&self.wal).write(&by_database).map_err(|e| WriteError::Durability(e.to_string()))?;
        self.persist_catalog().map_err(|e| WriteError::Durability(format!("catalog: {e}")))?;
        let mut buffer = lock(&self.buffer);
        for (database, lines) in &records {
            buffer.append(database, lines);
        }
        Ok(())
    }

    fn persist_catalog(&self) -> std::io::Result<()> {
        let bytes = self.catalog.to_bytes();
        let mut persisted = lock(&self.persisted_catalog);
        if *persisted == bytes {
            return Ok(());
        }
        let temporary = self.catalog_file.with_extension("tmp");
        let mut file = std::fs::File::create(&temporary)?;
        std::io::Write::write_all(&mut file, &bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &self.catalog_file)?;
        *persisted = bytes;
        Ok(())
    }

    /// Flushes every `interval` until the returned task is aborted.
    pub fn spawn_flusher(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticker.tick().await;
                if let Err(e) = this.flush().await {
                    tracing::error!("WAL flush failed: {e}");
                }
            }
        })
    }

    /// The schema and rows of a table in the buffer.
    pub fn table_batches(&self, database: &str, table: &str) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        lock(&self.buffer).table_batches(database, table)
    }
}

/// The 1-based body line number of each parsed line, skipping blank, comment and
/// invalid lines the way the parser does.
fn line_numbers(body: &str, parsed: usize, errors: &[sluice_lp::LineError]) -> Vec<usize> {
    let mut numbers = Vec::with_capacity(parsed);
    for (index, raw) in body.split('\n').enumerate() {
        let text = raw.trim_end_matches('\r');
        let number = index + 1;
        let skipped = text.trim().is_empty() || text.trim_start().starts_with('#');
        if !skipped && !errors.iter().any(|e| e.line_number == number) {
            numbers.push(number);
        }
    }
    numbers
}

#[cfg(test)]
mod tests;
