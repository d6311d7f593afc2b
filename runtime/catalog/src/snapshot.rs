//! The catalog on disk: a versioned, checksummed snapshot.
//!
//! Layout: the 8-byte magic `SLUICECT`, a little-endian u32 format version, a
//! little-endian u32 CRC-32 of the body, then the body (JSON). A file from a future
//! version, a torn write or a flipped bit is refused, never half-loaded.
//!
//! Version 1 held only the databases; version 2 added the tokens; version 3 the ids of
//! databases, tables and triggers, and the counters they are taken from. All are read:
//! what an older version lacks is given ids on load ([`NextIds::assign_missing`]).

use crate::ids::NextIds;
use crate::{Catalog, Database, Tokens};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const MAGIC: &[u8; 8] = b"SLUICECT";
const VERSION: u32 = 3;
const HEADER: usize = 16;

#[derive(Serialize, Deserialize)]
struct Body {
    databases: BTreeMap<String, Database>,
    tokens: Tokens,
    #[serde(default)]
    next_ids: NextIds,
}

/// Why a snapshot could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not a catalog snapshot, or cut short.
    #[error("not a catalog snapshot (bad magic or truncated header)")]
    NotASnapshot,
    /// Written by a newer version.
    #[error("catalog snapshot version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u32),
    /// The body does not match its checksum.
    #[error("catalog snapshot is corrupt (checksum mismatch)")]
    Corrupt,
    /// The body is not a valid catalog.
    #[error("catalog snapshot body is invalid: {0}")]
    Invalid(String),
}

impl Catalog {
    /// The catalog as snapshot bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = Body {
            databases: self.read().clone(),
            tokens: self
                .tokens
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            next_ids: *self.ids(),
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut bytes = Vec::with_capacity(HEADER + body.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        bytes
    }

    /// Reads a snapshot written by [`Catalog::to_bytes`].
    ///
    /// # Errors
    ///
    /// A [`SnapshotError`] naming what is wrong with the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let version = word(8);
        if !(1..=VERSION).contains(&version) {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let body = &bytes[HEADER..];
        if crc32fast::hash(body) != word(12) {
            return Err(SnapshotError::Corrupt);
        }
        let invalid = |e: serde_json::Error| SnapshotError::Invalid(e.to_string());
        let mut body = match version {
            1 => Body {
                databases: serde_json::from_slice(body).map_err(invalid)?,
                tokens: Tokens::default(),
                next_ids: NextIds::default(),
            },
            _ => serde_json::from_slice(body).map_err(invalid)?,
        };
        body.next_ids.assign_missing(&mut body.databases);
        Ok(Self {
            databases: body.databases.into(),
            tokens: body.tokens.into(),
            next_ids: body.next_ids.into(),
            ..Self::default()
        })
    }
}
