//! Storage: the write path, the rows it makes queryable, and their Parquet snapshots.
//!
//! Data enters through [`WriteBuffer::write_lp`]: line protocol is parsed, validated
//! against the [`Catalog`](sluice_catalog::Catalog), gathered, and at each flush logged
//! durably to the WAL, appended to the in-memory Arrow [`Buffer`](buffer::Buffer), and
//! acknowledged. Snapshots move the buffer's rows to Parquet files on an object store
//! ([`persist`]) and remove the WAL files they cover. Start-up loads the catalog and
//! the snapshots, and replays the rest of the WAL. Data leaves through
//! [`WriteBuffer::table_data`]: a table's rows in memory and its Parquet files, each
//! row in exactly one of them.

pub mod buffer;
mod metrics;
pub mod persist;
pub mod points;
mod problems;
mod store;
mod write;

pub use buffer::TableData;
pub use persist::{Coverage, ParquetFile, Snapshots, Written};
pub use points::{PointSpan, is_point_key, merge_points};
pub use problems::{ProblemKind, StorageProblem};
pub use store::{S3Config, StoreConfig};
pub use write::{
    BufferLimits, DEFAULT_WAL_RETENTION_BYTES, FlushObserver, FlushedRows, LineError, LoggedFlush,
    Recovery, RemovedRows, SnapshotPolicy, StorageConfig, WriteBuffer, WriteError, WriteOutcome,
    WriteRequest,
};

/// The prefix of a node's files on the object store when none is given.
pub const DEFAULT_NODE_ID: &str = "sluice";
