//! Storage: the write path and the rows it makes queryable.
//!
//! Data enters through [`WriteBuffer::write_lp`]: line protocol is parsed, validated
//! against the [`Catalog`](sluice_catalog::Catalog), gathered, and at each flush logged
//! durably to the WAL, appended to the in-memory Arrow [`Buffer`](buffer::Buffer), and
//! acknowledged. Start-up loads the catalog and replays the WAL. Data leaves through
//! [`WriteBuffer::table_batches`], which the query engine reads.
//!
//! Parquet snapshots on object storage come next; until then the WAL is the only
//! durable copy of the rows.

pub mod buffer;
mod write;

pub use write::{LineError, Recovery, WriteBuffer, WriteError, WriteOutcome, WriteRequest};
