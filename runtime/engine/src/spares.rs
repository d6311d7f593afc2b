//! The server's own turns on the CPU, for making spare instances
//! ([`PluginExecutor::keep_spares`](sluice_plugin_api::PluginExecutor::keep_spares)).
//!
//! A spare is made for no database: whichever call takes it, the server made it. So
//! spares are made from idle CPU: making one takes a turn on the CPU only while no call
//! waits for one and another turn stays free for the next call that comes
//! ([`FairTurns::take_if_idle`]), and gives it up at the next epoch tick at which that no
//! longer holds. A tenant whose
//! calls use up spares (every call of a plugin that runs into its wall time needs a new
//! instance) never gets the server to spend CPU another tenant's call waits for; under
//! load, calls without a warm instance simply find no spare and start a fresh one in
//! their own turn.

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

/// How often making a spare looks again whether the CPU is idle enough.
const IDLE_POLL: Duration = Duration::from_millis(5);

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
        if let Some(turn) = &self.cpu {
            turn.release();
        }
    }

    /// Gives the turn up, and takes one again once the CPU is idle enough.
    fn pause(&self) -> Option<BoxFuture<'static, ()>> {
        let turn = self.cpu.clone()?;
        Some(Box::pin(async move {
            turn.release();
            while !turn.take_if_idle() {
                tokio::time::sleep(IDLE_POLL).await;
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pause` is still waiting after a moment.
    async fn still_waits(pause: &mut BoxFuture<'static, ()>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), pause)
            .await
            .is_err()
    }

    /// Waits for `pause` to end: a turn, once the CPU is idle enough.
    async fn ends(pause: BoxFuture<'static, ()>) {
        tokio::time::timeout(Duration::from_secs(10), pause)
            .await
            .expect("a turn once the CPU is idle");
    }

    #[tokio::test]
    async fn making_a_spare_leaves_a_turn_free_and_yields_to_calls() {
        let turns = FairTurns::cpu(2, Duration::from_secs(10));
        let maker = SpareMaker::new(Some(&turns));
        let call = turns.take(DbId::new(1)).await.expect("free");
        // One turn is free, but taking it would leave none for the next call.
        let mut pause = maker.pause().expect("the CPU is shared out");
        assert!(still_waits(&mut pause).await);
        drop(call);
        ends(pause).await;
        // A call that comes while a spare is made finds a turn at once.
        let call = tokio::time::timeout(Duration::from_secs(1), turns.take(DbId::new(2)))
            .await
            .expect("at once")
            .expect("a turn");
        // At the maker's next tick, its turn goes until the call ends.
        let mut pause = maker.pause().expect("the CPU is shared out");
        assert!(still_waits(&mut pause).await);
        drop(call);
        ends(pause).await;
        maker.finish(true, CallUsage::default());
        assert!(
            turns.take_if_idle(DbId::new(3)).is_some(),
            "the turn went back"
        );
    }
}
