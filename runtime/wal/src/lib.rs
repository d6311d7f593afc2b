//! The write-ahead log: each flush becomes one durable file of validated writes.
//!
//! A WAL file is the 8-byte magic `SLUICEWL`, a little-endian u32 format version, then
//! records. A record is a little-endian u32 payload length, a u32 CRC-32 of the payload,
//! and the payload: the database name (u32 length + bytes) and the line protocol (the
//! rest), every line with an explicit nanosecond timestamp. Files are named by a
//! zero-padded sequence number, so directory order is write order.
//!
//! [`WalDir::write`] writes a file and makes it durable (the file and the directory are
//! synced) before it returns. [`WalDir::trim`] removes the files a snapshot covers,
//! keeping those a reader still needs within a retention; a file it removes that a
//! reader still needed leaves a note in its place (`<sequence>.skipped`), whatever its
//! remover wants readers to learn of it. [`WalDir::open`] lists what is on disk, and each
//! [`WalFile`] is read when its turn comes, so that replaying holds one file at a time: a
//! file cut short by a crash, or damaged, yields its valid prefix and a [`Damage`];
//! nothing after the damage in that file is trusted.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use sluice_wal::{WalDir, WalRecord};
//! let dir = tempfile::tempdir()?;
//! let (mut wal, replay) = WalDir::open(dir.path())?;
//! assert!(replay.files.is_empty());
//! let record = WalRecord { database: "db".into(), line_protocol: "cpu usage=1i 10".into() };
//! let sequence = wal.write(&[record.clone()])?;
//! let (_, replay) = WalDir::open(dir.path())?;
//! assert_eq!(replay.files[0].sequence, sequence);
//! assert_eq!(replay.files[0].read()?, (vec![record], None));
//! # Ok(()) }
//! ```

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SLUICEWL";
const VERSION: u32 = 1;
const FILE_HEADER: usize = 12;
const RECORD_HEADER: usize = 8;
const EXTENSION: &str = "wal";
/// The note a file removed before its readers came to it leaves.
const SKIPPED_EXTENSION: &str = "skipped";

/// One database's share of a flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    /// The database written to.
    pub database: String,
    /// Validated line protocol, one line per row, nanosecond timestamps on every line.
    pub line_protocol: String,
}

/// A WAL file whose end could not be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The file.
    pub file: PathBuf,
    /// How many records before the damage were replayed.
    pub valid_records: usize,
    /// What was wrong.
    pub reason: String,
}

/// What [`WalDir::open`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replay {
    /// The files, in write order.
    pub files: Vec<WalFile>,
}

/// One WAL file on disk, not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalFile {
    /// Its sequence number.
    pub sequence: u64,
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

impl WalFile {
    /// The file's records, up to any damage, and the damage.
    ///
    /// # Errors
    ///
    /// The file cannot be read (damaged contents are not errors).
    pub fn read(&self) -> io::Result<(Vec<WalRecord>, Option<Damage>)> {
        let bytes = fs::read(&self.path)?;
        let (records, problem) = decode(&bytes);
        let damage = problem.map(|reason| Damage {
            file: self.path.clone(),
            valid_records: records.len(),
            reason,
        });
        Ok((records, damage))
    }
}

/// A directory of WAL files.
#[derive(Debug)]
pub struct WalDir {
    dir: PathBuf,
    next_sequence: u64,
}

impl WalDir {
    /// Opens (creating if needed) `dir` and lists the files in it, to replay.
    ///
    /// # Errors
    ///
    /// I/O errors reading the directory.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<(Self, Replay)> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let mut this = Self {
            dir,
            next_sequence: 1,
        };
        let sequences = this.sequences()?;
        let mut replay = Replay::default();
        for &sequence in &sequences {
            let path = file_path(&this.dir, sequence);
            let size = fs::metadata(&path)?.len();
            replay.files.push(WalFile {
                sequence,
                path,
                size,
            });
        }
        this.next_sequence = sequences.last().map_or(1, |last| last + 1);
        Ok((this, replay))
    }

    /// Writes `records` as the next file and makes it durable; returns its sequence.
    ///
    /// # Errors
    ///
    /// I/O errors; the write is then not durable and must not be acknowledged.
    pub fn write(&mut self, records: &[WalRecord]) -> io::Result<u64> {
        let sequence = self.next_sequence;
        let mut file = File::create(file_path(&self.dir, sequence))?;
        file.write_all(&encode(records))?;
        file.sync_all()?;
        File::open(&self.dir)?.sync_all()?;
        self.next_sequence += 1;
        Ok(sequence)
    }

    /// The sequence of the last file written (0 when none).
    pub fn last_sequence(&self) -> u64 {
        self.next_sequence - 1
    }

    /// Makes the next file's sequence greater than `sequence`: sequences covered by a
    /// snapshot are never reused, even when their files are gone.
    pub fn skip_past(&mut self, sequence: u64) {
        self.next_sequence = self.next_sequence.max(sequence + 1);
    }

    /// Rewrites every file that holds records of `database` without them, so a dropped
    /// database does not come back at the next replay.
    ///
    /// # Errors
    ///
    /// I/O errors; a file is replaced atomically, so each is either old or new.
    pub fn drop_database(&mut self, database: &str) -> io::Result<()> {
        for sequence in self.sequences()? {
            let path = file_path(&self.dir, sequence);
            let (records, _) = decode(&fs::read(&path)?);
            if records.iter().all(|r| r.database != database) {
                continue;
            }
            let kept: Vec<WalRecord> = records
                .into_iter()
                .filter(|r| r.database != database)
                .collect();
            let temporary = path.with_extension("tmp");
            let mut file = File::create(&temporary)?;
            file.write_all(&encode(&kept))?;
            file.sync_all()?;
            fs::rename(&temporary, &path)?;
        }
        File::open(&self.dir)?.sync_all()
    }

    /// Sequences of the files in the directory, in order.
    fn sequences(&self) -> io::Result<Vec<u64>> {
        listed(&self.dir, EXTENSION)
    }

    /// Removes every file up to and including `sequence` (their contents are persisted
    /// elsewhere), and the notes of removed files.
    ///
    /// # Errors
    ///
    /// I/O errors removing a file.
    pub fn remove_through(&mut self, sequence: u64) -> io::Result<()> {
        trim(&self.dir, sequence, u64::MAX, 0, |_| Vec::new()).map(drop)
    }
}

/// The sequence of the oldest WAL file in `dir`, if any: the directory is only listed,
/// so it needs no [`WalDir`].
///
/// # Errors
///
/// I/O errors reading the directory.
pub fn first_sequence(dir: &Path) -> io::Result<Option<u64>> {
    Ok(listed(dir, EXTENSION)?.first().copied())
}

/// The notes kept at most; past it, the oldest go (their readers then learn only that
/// the flush is missing).
const MAX_NOTES: usize = 100_000;

/// What [`trim`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// The sequences removed for want of room.
    pub evicted: Vec<u64>,
    /// Of those, the ones whose note could not be written.
    pub unnoted: Vec<u64>,
}

/// Removes, in the WAL directory `dir`, the files up to and including `through` (their
/// contents are persisted elsewhere) that come before `kept_from`, the first one a reader
/// still needs, and the notes before it; of the files it still needs, removes the oldest
/// while they take more than `retention_bytes`, each replaced by a note holding what
/// `note` makes of its records (a file is removed even if its note cannot be written, so
/// that a full disk never keeps files past the retention). Keeps at most [`MAX_NOTES`].
/// Touches only files a snapshot covers, so it may run beside [`WalDir::write`].
///
/// # Errors
///
/// I/O errors listing the directory or removing a file.
pub fn trim(
    dir: &Path,
    through: u64,
    kept_from: u64,
    retention_bytes: u64,
    mut note: impl FnMut(&[WalRecord]) -> Vec<u8>,
) -> io::Result<Trimmed> {
    let mut kept = Vec::new();
    for covered in listed(dir, EXTENSION)?
        .into_iter()
        .take_while(|&s| s <= through)
    {
        let path = file_path(dir, covered);
        if covered < kept_from {
            fs::remove_file(&path)?;
        } else {
            kept.push((covered, fs::metadata(&path)?.len()));
        }
    }
    let mut held: u64 = kept.iter().map(|(_, size)| size).sum();
    let mut trimmed = Trimmed::default();
    for (sequence, size) in kept {
        if held <= retention_bytes {
            break;
        }
        let path = file_path(dir, sequence);
        let noted = fs::read(&path).and_then(|bytes| {
            let (records, _) = decode(&bytes);
            write_note(dir, sequence, &note(&records))
        });
        if noted.is_err() {
            trimmed.unnoted.push(sequence);
        }
        fs::remove_file(&path)?;
        held -= size;
        trimmed.evicted.push(sequence);
    }
    let notes = listed(dir, SKIPPED_EXTENSION)?;
    let too_many = notes.len().saturating_sub(MAX_NOTES);
    for (index, noted) in notes.into_iter().enumerate() {
        if index < too_many || noted < kept_from.min(through.saturating_add(1)) {
            fs::remove_file(note_path(dir, noted))?;
        }
    }
    File::open(dir)?.sync_all()?;
    Ok(trimmed)
}

/// Writes the note of removed file `sequence`, durably, by rename.
fn write_note(dir: &Path, sequence: u64, note: &[u8]) -> io::Result<()> {
    let noted = note_path(dir, sequence);
    let temporary = noted.with_extension("tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(note)?;
    file.sync_all()?;
    fs::rename(&temporary, &noted)
}

/// Sequences of the files named `<sequence>.<extension>` in `dir`, in order.
fn listed(dir: &Path, extension: &str) -> io::Result<Vec<u64>> {
    let mut sequences = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(extension) {
            continue;
        }
        if let Some(sequence) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok())
        {
            sequences.push(sequence);
        }
    }
    sequences.sort_unstable();
    Ok(sequences)
}

/// What the WAL directory holds of one sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logged {
    /// Its file: the records up to any damage, and the damage.
    Records(Vec<WalRecord>, Option<Damage>),
    /// The note its file left when [`WalDir::trim`] removed it for want of room.
    Removed(Vec<u8>),
    /// Nothing: removed when no reader needed it, or never written.
    Missing,
}

/// What the WAL directory `dir` holds of `sequence`.
///
/// # Errors
///
/// A file exists but cannot be read.
pub fn read_sequence(dir: &Path, sequence: u64) -> io::Result<Logged> {
    let file = WalFile {
        sequence,
        path: file_path(dir, sequence),
        size: 0,
    };
    match file.read() {
        Ok((records, damage)) => return Ok(Logged::Records(records, damage)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match fs::read(note_path(dir, sequence)) {
        Ok(note) => Ok(Logged::Removed(note)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Logged::Missing),
        Err(e) => Err(e),
    }
}

fn file_path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(format!("{sequence:020}.{EXTENSION}"))
}

fn note_path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(format!("{sequence:020}.{SKIPPED_EXTENSION}"))
}

/// The bytes of a WAL file holding `records`.
pub fn encode(records: &[WalRecord]) -> Vec<u8> {
    let size: usize = records
        .iter()
        .map(|r| RECORD_HEADER + 4 + r.database.len() + r.line_protocol.len())
        .sum();
    let mut bytes = Vec::with_capacity(FILE_HEADER + size);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    for record in records {
        let mut payload =
            Vec::with_capacity(4 + record.database.len() + record.line_protocol.len());
        payload.extend_from_slice(&len32(record.database.len()).to_le_bytes());
        payload.extend_from_slice(record.database.as_bytes());
        payload.extend_from_slice(record.line_protocol.as_bytes());
        bytes.extend_from_slice(&len32(payload.len()).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
    }
    bytes
}

fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// The records of a WAL file, and what stopped the reading early, if anything.
pub fn decode(bytes: &[u8]) -> (Vec<WalRecord>, Option<String>) {
    if bytes.len() < FILE_HEADER || &bytes[..8] != MAGIC {
        return (
            Vec::new(),
            Some("not a WAL file (bad magic or truncated header)".into()),
        );
    }
    let version = u32_at(bytes, 8);
    if version != VERSION {
        return (
            Vec::new(),
            Some(format!("unsupported WAL version {version}")),
        );
    }
    let mut records = Vec::new();
    let mut at = FILE_HEADER;
    while at < bytes.len() {
        let number = records.len() + 1;
        if bytes.len() - at < RECORD_HEADER {
            return (records, Some(format!("record {number} is truncated")));
        }
        let length = u32_at(bytes, at) as usize;
        let checksum = u32_at(bytes, at + 4);
        let start = at + RECORD_HEADER;
        let Some(payload) = start
            .checked_add(length)
            .and_then(|end| bytes.get(start..end))
        else {
            return (records, Some(format!("record {number} is truncated")));
        };
        if crc32fast::hash(payload) != checksum {
            return (records, Some(format!("record {number} fails its checksum")));
        }
        match record(payload) {
            Some(record) => records.push(record),
            None => return (records, Some(format!("record {number} is malformed"))),
        }
        at = start + length;
    }
    (records, None)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn record(payload: &[u8]) -> Option<WalRecord> {
    let db_len = u32_at(payload.get(..4)?, 0) as usize;
    let database = std::str::from_utf8(payload.get(4..4 + db_len)?).ok()?;
    let line_protocol = std::str::from_utf8(payload.get(4 + db_len..)?).ok()?;
    Some(WalRecord {
        database: database.to_string(),
        line_protocol: line_protocol.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<WalRecord> {
        vec![
            WalRecord {
                database: "a".into(),
                line_protocol: "cpu,host=x usage=1i 1\ncpu usage=2i 2".into(),
            },
            WalRecord {
                database: "b".into(),
                line_protocol: "mem free=3u 3".into(),
            },
        ]
    }

    #[test]
    fn every_prefix_of_a_file_replays_its_whole_records() {
        let bytes = encode(&records());
        assert_eq!(decode(&bytes), (records(), None));
        let first_record_end =
            FILE_HEADER + RECORD_HEADER + 4 + 1 + records()[0].line_protocol.len();
        for cut in 0..bytes.len() {
            let (replayed, problem) = decode(&bytes[..cut]);
            let at_boundary = cut == FILE_HEADER || cut == first_record_end;
            assert_eq!(problem.is_none(), at_boundary, "cut at {cut}");
            let expected = if cut >= first_record_end { 1 } else { 0 };
            assert_eq!(replayed.len(), expected, "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_stops_replay_at_the_damaged_record() {
        let mut bytes = encode(&records());
        let last = bytes.len() - 1;
        bytes[last] ^= 0x20;
        let (replayed, problem) = decode(&bytes);
        assert_eq!(replayed, records()[..1]);
        assert_eq!(problem.as_deref(), Some("record 2 fails its checksum"));
    }

    #[test]
    fn files_replay_in_order_report_damage_and_can_be_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = WalDir::open(dir.path()).expect("opens");
        let first = wal.write(&records()[..1]).expect("writes");
        let second = wal.write(&records()[1..]).expect("writes");
        let third = wal.write(&records()).expect("writes");
        let third_path = file_path(dir.path(), third);
        let length = fs::metadata(&third_path).expect("exists").len();
        File::options()
            .write(true)
            .open(&third_path)
            .expect("opens")
            .set_len(length - 3)
            .expect("truncates");

        let (mut wal, replay) = WalDir::open(dir.path()).expect("reopens");
        let sequences: Vec<u64> = replay.files.iter().map(|f| f.sequence).collect();
        assert_eq!(sequences, [first, second, third]);
        assert_eq!(
            replay.files[2].read().expect("reads"),
            (
                records()[..1].to_vec(),
                Some(Damage {
                    file: third_path,
                    valid_records: 1,
                    reason: "record 2 is truncated".into()
                })
            )
        );

        assert_eq!(
            wal.write(&records()).expect("writes"),
            third + 1,
            "sequence numbers continue"
        );
        wal.remove_through(second).expect("removes");
        let (_, replay) = WalDir::open(dir.path()).expect("reopens");
        let sequences: Vec<u64> = replay.files.iter().map(|f| f.sequence).collect();
        assert_eq!(sequences, [third, third + 1]);
    }

    #[test]
    fn trimming_keeps_what_readers_need_within_the_retention() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = WalDir::open(dir.path()).expect("opens");
        let size = encode(&records()).len() as u64;
        for _ in 0..6 {
            wal.write(&records()).expect("writes");
        }
        let present = |wal: &WalDir| -> Vec<u64> { wal.sequences().expect("lists") };

        let count = |records: &[WalRecord]| records.len().to_string().into_bytes();

        // Covered through 5; a reader needs 2 on; room for two files.
        let evicted = trim(dir.path(), 5, 2, 2 * size, count).expect("trims");
        assert_eq!(
            evicted,
            Trimmed {
                evicted: vec![2, 3],
                unnoted: vec![]
            }
        );
        assert_eq!(
            present(&wal),
            [4, 5, 6],
            "1 not needed, 2 and 3 beyond the room"
        );
        assert_eq!(
            read_sequence(dir.path(), 1).expect("reads"),
            Logged::Missing
        );
        assert_eq!(
            read_sequence(dir.path(), 3).expect("reads"),
            Logged::Removed(b"2".to_vec()),
            "a note of what was removed"
        );
        assert_eq!(
            read_sequence(dir.path(), 4).expect("reads"),
            Logged::Records(records(), None)
        );

        // Within the room: nothing more goes, and notes stay while needed; then no
        // reader: every covered file, and every note, goes.
        let evicted = trim(dir.path(), 5, 3, 2 * size, count).expect("trims");
        assert!(evicted.evicted.is_empty());
        assert_eq!(present(&wal), [4, 5, 6]);
        assert_eq!(listed(dir.path(), SKIPPED_EXTENSION).expect("lists"), [3]);
        wal.remove_through(5).expect("removes");
        assert_eq!(present(&wal), [6], "the file no snapshot covers stays");
        assert!(
            listed(dir.path(), SKIPPED_EXTENSION)
                .expect("lists")
                .is_empty()
        );
    }

    #[test]
    fn a_dropped_database_leaves_no_record_and_sequences_skip_past_snapshots() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = WalDir::open(dir.path()).expect("opens");
        wal.write(&records()).expect("writes");
        wal.write(&records()[1..]).expect("writes");
        wal.drop_database("b").expect("drops");
        let (mut wal, replay) = WalDir::open(dir.path()).expect("reopens");
        let read: Vec<_> = replay
            .files
            .iter()
            .map(|f| f.read().expect("reads"))
            .collect();
        assert_eq!(read, vec![(records()[..1].to_vec(), None), (vec![], None)]);

        wal.remove_through(wal.last_sequence()).expect("removes");
        wal.skip_past(41);
        assert_eq!(wal.write(&records()).expect("writes"), 42);
        let (reopened, _) = WalDir::open(dir.path()).expect("reopens");
        assert_eq!(reopened.last_sequence(), 42);
    }
}
