//! The server's own turns on the CPU, for making spare instances
//! ([`PluginExecutor::keep_spares`](sluice_plugin_api::PluginExecutor::keep_spares)).
//!
//! A spare is made for no database: whichever call takes it, the server made it. So
//! making spares takes turns on the CPU as a database of its own, [`SERVER`], in the same
//! round-robin as every database's calls: a tenant whose calls use up spares cannot make
//! the server spend more than one database's share of the CPU replacing them.

use crate::fair::{FairTurns, HeldTurn};
use sluice_catalog::DbId;
use sluice_plugin_api::{BoxFuture, CallUsage, HostServices, LogLevel, QueryResult};
use std::sync::Arc;
use std::time::Duration;

/// The id the server's own work takes turns under; never a database's (the catalog
/// counts ids up from 1).
pub const SERVER: DbId = DbId::new(u32::MAX);

/// What making a spare instance is served by: its turns, and nothing else.
pub struct SpareMaker {
    cpu: Option<HeldTurn>,
}

impl SpareMaker {
    /// Spares made in turns of `turns`, if the CPU is shared out.
    pub fn new(turns: Option<&Arc<FairTurns>>) -> Self {
        Self {
            cpu: turns.map(|turns| HeldTurn::waiting(turns, SERVER)),
        }
    }
}

/// Said to the warm-up plugin, which never asks.
const NO_HOST: &str = "a spare instance has no database";

impl HostServices for SpareMaker {
    fn log(&self, level: LogLevel, message: &str) {
        tracing::debug!(level = level.as_str(), message, "spare instance");
    }

    fn query<'a>(
        &'a self,
        _sql: &'a str,
        _params: &'a [(String, String)],
        _database: Option<&'a str>,
    ) -> BoxFuture<'a, Result<QueryResult, String>> {
        Box::pin(async { Err(NO_HOST.to_string()) })
    }

    fn write(&self, _database: Option<&str>, _line_protocol: String) -> Result<(), String> {
        Err(NO_HOST.to_string())
    }

    fn write_sync<'a>(
        &'a self,
        _database: Option<&'a str>,
        _line_protocol: String,
        _no_sync: bool,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Err(NO_HOST.to_string()) })
    }

    fn cache_get(&self, _key: &str, _global: bool) -> Option<Vec<u8>> {
        None
    }

    fn cache_put(
        &self,
        _key: &str,
        _value: Vec<u8>,
        _ttl: Option<Duration>,
        _global: bool,
    ) -> Result<(), String> {
        Err(NO_HOST.to_string())
    }

    fn cache_delete(&self, _key: &str, _global: bool) -> bool {
        false
    }

    /// A spare is made: the turn goes back.
    fn finish(&self, _succeeded: bool, _usage: CallUsage) {
        if let Some(cpu) = &self.cpu {
            cpu.release();
        }
    }

    fn pause(&self) -> Option<BoxFuture<'static, ()>> {
        self.cpu.as_ref().map(HeldTurn::pause)
    }
}
