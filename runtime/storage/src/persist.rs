//! Snapshots: the buffer's rows written as Parquet files on the object store, and the
//! manifests that list them.
//!
//! A snapshot writes one Parquet file per table, then one manifest naming those files
//! and the last WAL file they cover. Only after the manifest is stored are the rows
//! dropped from memory and the covered WAL files removed, so a crash at any point
//! leaves every row in the WAL, in a listed Parquet file, or both (then start-up skips
//! the WAL files the manifest covers).
//!
//! Layout on the store, under the node's prefix:
//! `dbs/<database>/<table>/<wal sequence>.parquet` (`<wal sequence>-<n>.parquet` when
//! a table's rows span several hours and are cut into a file per hour) and
//! `snapshots/<wal sequence>-<time written>.json`,
//! where a database or table name is written as it is when it is plain (ASCII letters,
//! digits, `_`, `-` and `.`, not first, at most [`PLAIN_NAME_BYTES`]), and otherwise as
//! `=` and the hex of its UTF-8 (`température` is `=74656d70c3a9726174757265`), or, for
//! a name too long for that, `=h` and the hex of its SHA-256: any name the catalog takes
//! maps to one path part that every file system and object store keeps as it is. The
//! manifest records each file's database, table and path, so the path is never read
//! back into a name; files written with an earlier layout keep their listed paths.

mod blocks;

use crate::buffer::FrozenTable;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

/// The longest name written into a path as it is; also the longest whose hex is.
const PLAIN_NAME_BYTES: usize = 100;

/// The path part of database or table `name` (see the module's header).
fn path_part(name: &str) -> String {
    let plain = name.len() <= PLAIN_NAME_BYTES
        && name
            .bytes()
            .next()
            .is_some_and(|first| first.is_ascii_alphanumeric() || first == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain {
        name.to_string()
    } else if name.len() <= PLAIN_NAME_BYTES {
        format!("={}", hex::encode(name))
    } else {
        use sha2::Digest;
        format!("=h{}", hex::encode(sha2::Sha256::digest(name)))
    }
}

/// Version of the manifest format this build writes and reads.
const MANIFEST_FORMAT: u32 = 1;

/// One Parquet file of persisted rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParquetFile {
    /// Database name.
    pub database: String,
    /// Table name.
    pub table: String,
    /// Location on the object store.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Smallest `time`, nanoseconds since the epoch.
    pub min_time_ns: i64,
    /// Largest `time`.
    pub max_time_ns: i64,
    /// No two rows of the file are one point (files written before point identity
    /// may hold several rows of one, in the order they were written).
    #[serde(default)]
    pub unique_points: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    /// The last WAL file whose rows the files hold.
    wal_sequence: u64,
    files: Vec<ParquetFile>,
    /// Tables (database, table) the snapshot could not write: their rows are still
    /// only in the WAL files, which replay gives them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    uncovered: Vec<(String, String)>,
}

/// What a snapshot wrote.
#[derive(Debug, Default)]
pub struct Written {
    /// The files, listed in the manifest.
    pub files: Vec<ParquetFile>,
    /// The tables that could not be written (database, table, why): left out of the
    /// manifest, to be written by a later snapshot.
    pub failed: Vec<(String, String, String)>,
}

/// Which WAL files' rows are in Parquet: every table's up to [`Coverage::through`],
/// except the tables a snapshot could not write, each up to its own sequence.
#[derive(Debug, Default, Clone)]
pub struct Coverage {
    /// The last WAL file a snapshot covers.
    pub through: u64,
    /// Tables (database, table) covered only up to an earlier sequence.
    pub except: HashMap<(String, String), u64>,
}

impl Coverage {
    /// Whether the rows of `table` in WAL file `sequence` are in Parquet.
    pub fn covers(&self, database: &str, table: &str, sequence: u64) -> bool {
        let key = (database.to_string(), table.to_string());
        sequence <= self.except.get(&key).copied().unwrap_or(self.through)
    }
}

impl ParquetFile {
    /// The file's place on the store, as listed (never encoded again).
    ///
    /// # Errors
    ///
    /// The listed path is not a valid object store path (a manifest edited by hand).
    pub fn object_meta(&self) -> Result<ObjectMeta, String> {
        let location = Path::parse(&self.path).map_err(|e| format!("{}: {e}", self.path))?;
        Ok(ObjectMeta {
            location,
            last_modified: chrono::DateTime::UNIX_EPOCH,
            size: self.size_bytes,
            e_tag: None,
            version: None,
        })
    }
}

/// What the store held at start-up.
#[derive(Debug, Default)]
pub struct Persisted {
    /// Every listed file that exists, of the size listed.
    pub files: Vec<ParquetFile>,
    /// Listed files that are missing or of another size, with what is wrong.
    pub damaged: Vec<(ParquetFile, String)>,
    /// Parquet files on the store that no manifest lists.
    pub unlisted: Vec<String>,
    /// Manifests that cannot be read, with why: the files they list are among
    /// [`Self::unlisted`].
    pub damaged_manifests: Vec<(String, String)>,
    /// The last WAL file covered by a snapshot (0: none).
    pub wal_sequence: u64,
    /// Which WAL files' rows are in Parquet, table by table.
    pub coverage: Coverage,
}

/// The object store and the prefix of this node's files in it.
#[derive(Clone)]
pub struct Snapshots {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// For a store of local files: their directory, to sync what is written.
    local_root: Option<PathBuf>,
}

impl Snapshots {
    /// Snapshots of node `node_id` in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, node_id: &str) -> Self {
        Self {
            store,
            prefix: node_id.to_string(),
            local_root: None,
        }
    }

    /// Snapshots whose store keeps its objects as files under `root`: each file and
    /// manifest written is synced, with the directories above it, before the write
    /// counts as done, so that the WAL files a snapshot covers are removed only once
    /// its files would survive a power loss.
    #[must_use]
    pub fn with_local_root(mut self, root: Option<&std::path::Path>) -> Self {
        self.local_root = root.map(std::path::Path::to_path_buf);
        self
    }

    /// Puts `bytes` at `path`, durably.
    async fn put_durably(&self, path: &Path, bytes: PutPayload) -> Result<(), String> {
        self.store
            .put(path, bytes)
            .await
            .map_err(|e| format!("writing {path}: {e}"))?;
        let Some(root) = self.local_root.clone() else {
            // An object store's put is durable when it returns.
            return Ok(());
        };
        let relative = path.to_string();
        tokio::task::spawn_blocking(move || sync_with_parents(&root, &relative))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("syncing {path}: {e}"))
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn path<'a>(&'a self, parts: impl IntoIterator<Item = &'a str>) -> Path {
        Path::from_iter(std::iter::once(self.prefix.as_str()).chain(parts))
    }

    /// Writes `tables` as Parquet files and a manifest covering WAL files up to
    /// `wal_sequence`; a table that cannot be written is left out and named, and the
    /// others are written all the same.
    ///
    /// # Errors
    ///
    /// The manifest cannot be written; the files written for it are then deleted, since
    /// nothing lists them.
    pub async fn write(
        &self,
        wal_sequence: u64,
        tables: Vec<FrozenTable>,
    ) -> Result<Written, String> {
        let mut written = Written::default();
        for table in tables {
            let (database, table_name) = (table.database.clone(), table.table.clone());
            match self.write_table(wal_sequence, table).await {
                Ok(files) => written.files.extend(files),
                Err(why) => written.failed.push((database, table_name, why)),
            }
        }
        if written.files.is_empty() {
            return Ok(written);
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            wal_sequence,
            files: written.files,
            uncovered: written
                .failed
                .iter()
                .map(|(database, table, _)| (database.clone(), table.clone()))
                .collect(),
        };
        // Named by the time too: a snapshot of tables an earlier one left out may cover
        // the same WAL files, and must not replace its manifest.
        let written_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let name = format!("{wal_sequence:020}-{written_at:020}.json");
        let path = self.path(["snapshots", name.as_str()]);
        let body = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
        if let Err(e) = self.put_durably(&path, PutPayload::from(body)).await {
            let paths: Vec<String> = manifest.files.iter().map(|f| f.path.clone()).collect();
            self.delete(&paths).await;
            return Err(e);
        }
        written.files = manifest.files;
        Ok(written)
    }

    /// One table as Parquet files in its directory, one per hour its rows fall in
    /// ([`blocks`]): `<wal sequence>.parquet`, or `<wal sequence>-<n>.parquet` for the
    /// n-th of several. If one cannot be written, those written are deleted.
    async fn write_table(
        &self,
        wal_sequence: u64,
        table: FrozenTable,
    ) -> Result<Vec<ParquetFile>, String> {
        let directory = [path_part(&table.database), path_part(&table.table)];
        let blocks = tokio::task::spawn_blocking(move || blocks::cut_by_hour(table))
            .await
            .map_err(|e| e.to_string())??;
        let several = blocks.len() > 1;
        let mut files: Vec<ParquetFile> = Vec::with_capacity(blocks.len());
        for (index, block) in blocks.into_iter().enumerate() {
            let name = if several {
                format!("{wal_sequence:020}-{}.parquet", index + 1)
            } else {
                format!("{wal_sequence:020}.parquet")
            };
            let path = self.path(["dbs", &directory[0], &directory[1], &name]);
            match self.write_file(path, block).await {
                Ok(file) => files.push(file),
                Err(why) => {
                    let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
                    self.delete(&paths).await;
                    return Err(why);
                }
            }
        }
        Ok(files)
    }

    /// One table's rows as the Parquet file at `path`.
    async fn write_file(&self, path: Path, table: FrozenTable) -> Result<ParquetFile, String> {
        let described = path.to_string();
        let (bytes, mut file) = tokio::task::spawn_blocking(move || encode(table))
            .await
            .map_err(|e| format!("encoding {described}: {e}"))??;
        file.path = path.to_string();
        self.put_durably(&path, PutPayload::from(bytes)).await?;
        Ok(file)
    }

    /// Reads every manifest: the files they list, checked against what the store
    /// holds, the files nothing lists, and the last WAL file they cover.
    ///
    /// # Errors
    ///
    /// Object store errors, or a manifest that cannot be read (start-up must not go on
    /// without the rows it lists).
    pub async fn load(&self) -> Result<Persisted, String> {
        let mut existing: HashMap<String, u64> = self
            .store
            .list(Some(&self.path(["dbs"])))
            .map_ok(|meta| (meta.location.to_string(), meta.size))
            .try_collect()
            .await
            .map_err(|e| format!("listing Parquet files: {e}"))?;
        let mut persisted = Persisted::default();
        let (manifests, damaged) = self.manifests().await?;
        for (path, why) in damaged {
            // Its name still says which WAL files it covered: new files must not reuse
            // the names of the files it lists.
            persisted.wal_sequence = persisted.wal_sequence.max(sequence_of(&path));
            persisted.damaged_manifests.push((path.to_string(), why));
        }
        persisted.coverage = coverage(&manifests);
        for (path, manifest) in manifests {
            persisted.wal_sequence = persisted
                .wal_sequence
                .max(manifest.wal_sequence)
                .max(sequence_of(&path));
            for file in manifest.files {
                let why = match existing.remove(&file.path) {
                    Some(size) if size == file.size_bytes => match self.footer(&file).await {
                        Ok(()) => {
                            persisted.files.push(file);
                            continue;
                        }
                        Err(why) => why,
                    },
                    Some(size) => {
                        format!("{size} bytes where its manifest lists {}", file.size_bytes)
                    }
                    None => "missing".into(),
                };
                persisted.damaged.push((file, why));
            }
        }
        persisted.unlisted = existing.into_keys().collect();
        persisted.unlisted.sort();
        persisted.coverage.through = persisted.wal_sequence;
        Ok(persisted)
    }

    /// Checks that `file` ends as a Parquet file does: its footer's length, then `PAR1`.
    async fn footer(&self, file: &ParquetFile) -> Result<(), String> {
        let location = Path::parse(&file.path).map_err(|e| e.to_string())?;
        let size = file.size_bytes;
        if size < 12 {
            return Err(format!("{size} bytes: too short for a Parquet file"));
        }
        let tail = self
            .store
            .get_range(&location, size - 8..size)
            .await
            .map_err(|e| {
                tracing::warn!("reading the end of {location}: {e}");
                "its end cannot be read".to_string()
            })?;
        let footer = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
        if &tail[4..] != b"PAR1" || footer + 12 > size {
            return Err("its end is not a Parquet footer (damaged bytes)".into());
        }
        Ok(())
    }

    /// Every manifest that reads, with its path, oldest first; and those that do not,
    /// with why.
    async fn manifests(&self) -> Result<(Vec<(Path, Manifest)>, Vec<(Path, String)>), String> {
        let mut paths: Vec<Path> = self
            .store
            .list(Some(&self.path(["snapshots"])))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| format!("listing snapshots: {e}"))?;
        paths.sort();
        let mut manifests = Vec::with_capacity(paths.len());
        let mut damaged = Vec::new();
        for path in paths {
            let bytes = self
                .store
                .get(&path)
                .await
                .map_err(|e| format!("{path}: {e}"))?
                .bytes()
                .await
                .map_err(|e| format!("{path}: {e}"))?;
            let manifest: Manifest = match serde_json::from_slice(&bytes) {
                Ok(manifest) => manifest,
                Err(e) => {
                    damaged.push((path, format!("not a snapshot manifest: {e}")));
                    continue;
                }
            };
            if manifest.format != MANIFEST_FORMAT {
                // Written by a newer build: refused rather than read in part.
                return Err(format!(
                    "{path}: manifest format {} is not supported (this build reads {MANIFEST_FORMAT})",
                    manifest.format
                ));
            }
            manifests.push((path, manifest));
        }
        Ok((manifests, damaged))
    }

    /// Removes `files`, which hold nothing anyone may query again (a deleted database's):
    /// first from the manifests that list them, so that no manifest names a file that
    /// is gone, then from the store. Failures are logged, not returned: a file left
    /// behind is reported at the next start as unreferenced.
    pub async fn discard(&self, files: &[ParquetFile]) {
        if files.is_empty() {
            return;
        }
        let gone: HashSet<String> = files.iter().map(|file| file.path.clone()).collect();
        match self.manifests().await {
            Ok((manifests, _)) => {
                for (path, mut manifest) in manifests {
                    let listed = manifest.files.len();
                    manifest.files.retain(|file| !gone.contains(&file.path));
                    if manifest.files.len() == listed {
                        continue;
                    }
                    let body = serde_json::to_vec(&manifest).unwrap_or_default();
                    if let Err(e) = self.put_durably(&path, PutPayload::from(body)).await {
                        tracing::warn!("could not rewrite {e}; its files stay");
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!("could not read the manifests: {e}; the files stay");
                return;
            }
        }
        let paths: Vec<String> = files.iter().map(|file| file.path.clone()).collect();
        self.delete(&paths).await;
    }

    /// Deletes the objects at `paths`; returns those deleted (failures are logged).
    pub async fn delete(&self, paths: &[String]) -> Vec<String> {
        let mut deleted = Vec::with_capacity(paths.len());
        for text in paths {
            let Ok(path) = Path::parse(text) else {
                continue;
            };
            match self.store.delete(&path).await {
                Ok(()) => deleted.push(text.clone()),
                Err(e) => tracing::warn!("could not delete {path}: {e}"),
            }
        }
        deleted
    }
}

/// The tables some manifest could not write, each covered up to the last manifest that
/// did not leave it out (`through` is set by the caller).
fn coverage(manifests: &[(Path, Manifest)]) -> Coverage {
    let mut coverage = Coverage::default();
    for (_, manifest) in manifests {
        for table in &manifest.uncovered {
            coverage.except.entry(table.clone()).or_insert(0);
        }
    }
    for (table, covered) in &mut coverage.except {
        *covered = manifests
            .iter()
            .filter(|(_, manifest)| !manifest.uncovered.contains(table))
            .map(|(_, manifest)| manifest.wal_sequence)
            .max()
            .unwrap_or(0);
    }
    coverage
}

/// The WAL sequence in a manifest's name (`<sequence>-<time>.json`, or
/// `<sequence>.json` as earlier builds wrote it), 0 if it has none.
fn sequence_of(path: &Path) -> u64 {
    path.filename()
        .and_then(|name| name.strip_suffix(".json"))
        .and_then(|stem| stem.split('-').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0)
}

/// Syncs the file at `relative` under `root`, then each directory from its own up to
/// `root`: a file renamed into a new directory is durable only once every directory
/// entry on its way is.
fn sync_with_parents(root: &std::path::Path, relative: &str) -> std::io::Result<()> {
    let file = root.join(relative);
    std::fs::File::open(&file)?.sync_all()?;
    let mut dir = file.parent();
    while let Some(current) = dir {
        std::fs::File::open(current)?.sync_all()?;
        if current == root {
            break;
        }
        dir = current.parent();
    }
    Ok(())
}

/// One table as Parquet bytes, with the file's description (without its path). Rows
/// that may repeat a point are merged first, so that no file does.
fn encode(mut table: FrozenTable) -> Result<(Bytes, ParquetFile), String> {
    if !table.unique {
        // Within the buffer's bound: the rows it holds, and the merge's copy of them.
        let merged = crate::points::merge_points(&table.schema, &table.batches, &mut |_| Ok(()))
            .map_err(|e| format!("merging the rows of each point: {e}"))?;
        table.batches = vec![merged];
    }
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, table.schema.clone(), Some(properties))
        .map_err(|e| e.to_string())?;
    for batch in &table.batches {
        writer.write(batch).map_err(|e| e.to_string())?;
    }
    writer.close().map_err(|e| e.to_string())?;
    let (min_time_ns, max_time_ns) = time_range(&table.batches);
    let file = ParquetFile {
        database: table.database,
        table: table.table,
        path: String::new(),
        rows: table
            .batches
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>() as u64,
        size_bytes: bytes.len() as u64,
        min_time_ns,
        max_time_ns,
        unique_points: true,
    };
    Ok((Bytes::from(bytes), file))
}

/// The smallest and largest `time` in `batches` ((0, 0) when there is none).
fn time_range(batches: &[RecordBatch]) -> (i64, i64) {
    use arrow::array::AsArray;
    use arrow::datatypes::TimestampNanosecondType;
    let mut range: Option<(i64, i64)> = None;
    for batch in batches {
        let Some(column) = batch.column_by_name("time") else {
            continue;
        };
        let Some(times) = column.as_primitive_opt::<TimestampNanosecondType>() else {
            continue;
        };
        if let (Some(min), Some(max)) = (arrow::compute::min(times), arrow::compute::max(times)) {
            range = Some(range.map_or((min, max), |(lo, hi)| (lo.min(min), hi.max(max))));
        }
    }
    range.unwrap_or((0, 0))
}
