//! Start-up: the catalog, the snapshots and the WAL read back, and what was found wrong
//! with them named, kept and, on the admin's word, cleared.

use super::*;

/// What start-up found on disk.
#[derive(Debug, Default)]
pub struct Recovery {
    /// WAL files replayed.
    pub files: usize,
    /// Rows replayed.
    pub rows: usize,
    /// What was wrong: damaged files, a catalog version lost, files nothing lists.
    pub problems: Vec<StorageProblem>,
    /// Parquet files loaded.
    pub parquet_files: usize,
    /// WAL files skipped because a snapshot holds their rows.
    pub covered_files: usize,
}

impl WriteBuffer {
    /// Opens the database: loads the catalog and the snapshots' Parquet files, and
    /// replays the WAL files no snapshot covers into the buffer. Nothing found on disk
    /// is deleted: what is damaged or unreferenced is left in place and reported
    /// ([`Recovery::problems`], [`Self::problems`]).
    ///
    /// # Errors
    ///
    /// I/O or object store errors, or no version of the catalog file, or a snapshot
    /// manifest, that can be read (damaged metadata is never silently replaced).
    pub async fn open(config: StorageConfig) -> std::io::Result<(Arc<Self>, Recovery)> {
        let StorageConfig {
            data_dir,
            snapshots,
            policy,
            limits,
            wal_retention_bytes,
        } = config;
        std::fs::create_dir_all(&data_dir)?;
        let opened = CatalogStore::open(&data_dir, limits.max_columns_per_table)?;
        let mut problems = Vec::new();
        if let Some(why) = opened.fell_back {
            tracing::warn!("catalog: {why}");
            problems.push(StorageProblem {
                database: None,
                table: None,
                object: data_dir.join("catalog").display().to_string(),
                kind: ProblemKind::Catalog,
                detail: why,
            });
        }
        let persisted = snapshots.load().await.map_err(std::io::Error::other)?;
        let wal_dir = data_dir.join("wal");
        let (mut wal, replay) = WalDir::open(&wal_dir)?;
        wal.skip_past(persisted.wal_sequence);
        let this = Self {
            store: opened.store,
            buffer: Mutex::new(Buffer::default()),
            pending: Mutex::default(),
            wal: Mutex::new(wal),
            wal_dir,
            wal_retention_bytes,
            data_dir: data_dir.clone(),
            log_lock: Mutex::default(),
            snapshots,
            policy,
            limits,
            snapshot_running: AtomicBool::new(false),
            snapshot_id: AtomicU64::new(0),
            snapshot_retry: Mutex::default(),
            last_snapshot: Mutex::new(Instant::now()),
            flush_at_lines: AtomicUsize::new(usize::MAX),
            flush_now: Notify::new(),
            flush_observer: Mutex::default(),
            problems: Mutex::default(),
            metrics: StorageMetrics::default(),
        };
        let mut recovery = this.replay(replay, &persisted.coverage)?;
        // After the replay, which may have brought back databases the catalog lost.
        let (live, found) = this.check_files(persisted);
        recovery.parquet_files = live.len();
        lock(&this.buffer).add_files(live);
        problems.append(&mut recovery.problems);
        problems.extend(found);
        recovery.problems.clone_from(&problems);
        *lock(&this.problems) = problems;
        Ok((Arc::new(this), recovery))
    }

    /// The listed files of databases the catalog knows that can be read, and what is
    /// wrong with the rest. A missing file of a database the catalog does not know was
    /// deleted with it.
    fn check_files(&self, persisted: Persisted) -> (Vec<ParquetFile>, Vec<StorageProblem>) {
        let mut problems = Vec::new();
        let mut live = Vec::new();
        for file in persisted.files {
            if self.catalog().has_database(&file.database) {
                live.push(file);
            } else {
                problems.push(StorageProblem {
                    detail: format!(
                        "a Parquet file of database {:?}, which the catalog does not know: \
                         kept, not queried",
                        file.database
                    ),
                    database: Some(file.database),
                    table: Some(file.table),
                    object: file.path,
                    kind: ProblemKind::Unreferenced,
                });
            }
        }
        for (file, why) in persisted.damaged {
            if self.catalog().has_database(&file.database) {
                problems.push(StorageProblem {
                    detail: format!(
                        "{why}: its {} rows ({} to {} ns) are left out of queries",
                        file.rows, file.min_time_ns, file.max_time_ns
                    ),
                    database: Some(file.database),
                    table: Some(file.table),
                    object: file.path,
                    kind: ProblemKind::Parquet,
                });
            }
        }
        for (path, why) in persisted.damaged_manifests {
            problems.push(StorageProblem {
                database: None,
                table: None,
                object: path,
                kind: ProblemKind::Manifest,
                detail: format!("{why}: the files it lists are kept as unreferenced, not queried"),
            });
        }
        for path in persisted.unlisted {
            problems.push(StorageProblem {
                database: None,
                table: None,
                object: path,
                kind: ProblemKind::Unreferenced,
                detail: "a file no snapshot manifest lists: kept, not queried".into(),
            });
        }
        for problem in &problems {
            tracing::warn!(
                kind = problem.kind.as_str(),
                "stored data: {}: {}",
                problem.object,
                problem.detail
            );
        }
        (live, problems)
    }

    /// Replays the WAL files no snapshot covers into the buffer, one file in memory at
    /// a time, logging progress every few seconds.
    ///
    /// # Errors
    ///
    /// A file cannot be read: start-up must not go on without its rows.
    fn replay(&self, replay: Replay, coverage: &Coverage) -> std::io::Result<Recovery> {
        // A covered file is read only when some table was left out of a snapshot.
        let (covered, files): (Vec<_>, Vec<_>) = replay
            .files
            .into_iter()
            .partition(|file| file.sequence <= coverage.through && coverage.except.is_empty());
        let mut recovery = Recovery {
            files: files.len(),
            covered_files: covered.len(),
            ..Recovery::default()
        };
        let mut progress = ReplayProgress::new(&files);
        for (done, file) in files.iter().enumerate() {
            let (records, damage) = file.read()?;
            for (index, record) in records.into_iter().enumerate() {
                let (rows, refused) = self.replay_record(&record, file.sequence, coverage);
                recovery.rows += rows;
                if !refused.is_empty() {
                    let place = format!("WAL file {}, record {}", file.sequence, index + 1);
                    recovery
                        .problems
                        .push(self.keep_aside(&place, &record, &refused));
                }
            }
            if let Some(damage) = damage {
                let detail = format!(
                    "{} (replayed the {} records before it)",
                    damage.reason, damage.valid_records
                );
                tracing::warn!("damaged WAL file: {}: {detail}", damage.file.display());
                recovery.problems.push(StorageProblem {
                    database: None,
                    table: None,
                    object: damage.file.display().to_string(),
                    kind: ProblemKind::Wal,
                    detail,
                });
            }
            progress.file_done(done + 1, file.size, recovery.rows);
        }
        Ok(recovery)
    }

    /// Appends the rows of one WAL record of file `sequence` that no snapshot holds to
    /// the buffer: how many, and why the others did not replay.
    fn replay_record(
        &self,
        record: &WalRecord,
        sequence: u64,
        coverage: &Coverage,
    ) -> (usize, Vec<String>) {
        let parsed = sluice_lp::parse(&record.line_protocol, Precision::Nanosecond, 0);
        let mut refused: Vec<String> = parsed
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.message, e.original_line))
            .collect();
        let mut lines = parsed.lines;
        lines.retain(|line| !coverage.covers(&record.database, &line.table, sequence));
        let accepted = match self
            .catalog()
            .validate_write(&record.database, &lines, true)
        {
            Ok(validation) => {
                refused.extend(validation.errors.iter().map(|e| e.message.clone()));
                keep(lines, &validation.accepted)
            }
            Err(e) => {
                refused.push(e.to_string());
                Vec::new()
            }
        };
        lock(&self.buffer).append(&record.database, &accepted);
        (accepted.len(), refused)
    }

    /// Keeps a WAL record whose lines did not all replay (`refused` says why) in
    /// `<data dir>/wal-unreplayed/`, and names it: never a silent drop.
    fn keep_aside(&self, place: &str, record: &WalRecord, refused: &[String]) -> StorageProblem {
        let dir = self.data_dir.join("wal-unreplayed");
        let name = format!("{}.lp", place.replace([' ', ','], "-"));
        let kept = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join(&name), &record.line_protocol));
        let detail = format!(
            "{} lines of database {:?} did not replay (the first: {}); the record {}",
            refused.len(),
            record.database,
            refused[0],
            // Named within the data directory: tenants see their database's problems.
            match kept {
                Ok(()) => format!("is kept in wal-unreplayed/{name} in the data directory"),
                Err(e) => {
                    tracing::warn!("keeping {place} in {}: {e}", dir.display());
                    "could not be kept (see the server log)".to_string()
                }
            }
        );
        tracing::warn!("{place}: {detail}");
        StorageProblem {
            database: Some(record.database.clone()),
            table: None,
            object: place.to_string(),
            kind: ProblemKind::Wal,
            detail,
        }
    }

    /// The storage's metrics in the OpenMetrics text format.
    pub fn metrics(&self) -> String {
        let (rows, bytes) = {
            let buffer = lock(&self.buffer);
            (buffer.rows(), buffer.bytes())
        };
        let problems = lock(&self.problems).len();
        self.metrics.encode(rows, bytes, problems)
    }

    /// What start-up found wrong with the stored data, less what has been cleared since.
    pub fn problems(&self) -> Vec<StorageProblem> {
        lock(&self.problems).clone()
    }

    /// Deletes the Parquet files start-up found unreferenced, unless one is referenced
    /// by now (a later snapshot wrote the same path); returns the deleted paths.
    ///
    /// # Errors
    ///
    /// A snapshot is running (the files it writes are not yet referenced); or start-up
    /// found a catalog version or a manifest damaged, when unreferenced files may hold
    /// the only copy of rows.
    pub async fn remove_unreferenced(&self) -> Result<Vec<String>, String> {
        if lock(&self.problems)
            .iter()
            .any(|problem| matches!(problem.kind, ProblemKind::Catalog | ProblemKind::Manifest))
        {
            return Err(
                "start-up found a damaged catalog or manifest: the unreferenced files \
                 may hold the only copy of their rows. Restore what is damaged and restart; \
                 until then they are kept"
                    .into(),
            );
        }
        if self.snapshot_running.swap(true, Ordering::AcqRel) {
            return Err("a snapshot is running; try again when it has finished".into());
        }
        // Snapshots resume however this ends, a dropped request included.
        let _running = ClearOnDrop(&self.snapshot_running);
        let referenced: HashSet<String> = lock(&self.buffer)
            .files()
            .map(|file| file.path.clone())
            .collect();
        let removable: Vec<String> = lock(&self.problems)
            .iter()
            .filter(|problem| problem.kind == ProblemKind::Unreferenced)
            .map(|problem| problem.object.clone())
            .filter(|path| !referenced.contains(path))
            .collect();
        let removed = self.snapshots.delete(&removable).await;
        lock(&self.problems).retain(|problem| {
            problem.kind != ProblemKind::Unreferenced || !removed.contains(&problem.object)
        });
        Ok(removed)
    }
}

/// Clears its flag when dropped.
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Says how a long replay goes: files, rows, bytes, and the time left at the pace so
/// far, every [`ReplayProgress::EVERY`].
struct ReplayProgress {
    files: usize,
    total_bytes: u64,
    done_bytes: u64,
    started: Instant,
    said: Instant,
}

impl ReplayProgress {
    const EVERY: Duration = Duration::from_secs(5);

    fn new(files: &[sluice_wal::WalFile]) -> Self {
        let total_bytes = files.iter().map(|file| file.size).sum();
        if !files.is_empty() {
            tracing::info!(
                files = files.len(),
                mib = total_bytes >> 20,
                "replaying the WAL files no snapshot covers"
            );
        }
        Self {
            files: files.len(),
            total_bytes,
            done_bytes: 0,
            started: Instant::now(),
            said: Instant::now(),
        }
    }

    fn file_done(&mut self, done: usize, size: u64, rows: usize) {
        self.done_bytes += size;
        if self.said.elapsed() < Self::EVERY || done == self.files {
            return;
        }
        self.said = Instant::now();
        let elapsed = self.started.elapsed();
        let left = self.total_bytes.saturating_sub(self.done_bytes);
        let pace = self.done_bytes.max(1) as f64 / elapsed.as_secs_f64().max(1e-3);
        let left_time = Duration::from_secs_f64(left as f64 / pace);
        tracing::info!(
            "replaying the WAL: {done} of {} files, {rows} rows, {} of {} MiB, {}s so far, \
             about {}s left",
            self.files,
            self.done_bytes >> 20,
            self.total_bytes >> 20,
            elapsed.as_secs(),
            left_time.as_secs()
        );
    }
}
