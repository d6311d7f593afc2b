//! The WAL side of the manager: each WAL trigger's task, reading the flushes after its
//! cursor and handing them to its plugin, several at once when it is behind; and what
//! the storage and the system tables learn of the triggers' places in the WAL.

use super::TriggerManager;
use crate::batches::table_batches;
use crate::cursors::Cursors;
use crate::flush_log::{Flush, Found, RECENT_LINES, WalLog, lines};
use crate::invoke::arguments;
use crate::lag::WalPosition;
use crate::records::InvocationRecord;
use crate::skips::{Skip, describe};
use sluice_catalog::{DatabaseRef, DbId, Trigger, TriggerSpec};
use sluice_plugin_api::PluginCall;
use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::oneshot;

/// The rows a WAL trigger's call gets at most when flushes are merged for it (a single
/// flush may hold more, and is delivered whole): as many as a flush holds under load
/// with the default `--wal-max-pending-lines`.
pub const DEFAULT_ROWS_PER_CALL: usize = 10_000;

/// Reads of a flush that failed before it is skipped, and the wait between them.
const READ_RETRIES: u32 = 3;
const READ_RETRY_WAIT: Duration = Duration::from_secs(1);

/// What WAL triggers read, and where they keep their place in it.
pub struct WalFeed {
    /// The write-ahead log.
    pub wal: Arc<dyn WalLog>,
    /// The triggers' cursors.
    pub cursors: Arc<Cursors>,
    /// The rows a call gets at most when flushes are merged ([`DEFAULT_ROWS_PER_CALL`]).
    pub rows_per_call: usize,
}

impl TriggerManager {
    /// Records the flush logged as WAL file `sequence`, without waiting: called on the
    /// flushing thread, in sequence order.
    pub fn flushed(&self, sequence: u64, rows: Flush) {
        let has_wal_triggers = self.running().values().any(|r| r.reads_wal);
        self.log.flushed(sequence, rows, has_wal_triggers);
    }

    /// Where each running WAL trigger (of `database` only, if given) is in the WAL.
    pub fn wal_positions(&self, database: Option<DbId>) -> Vec<WalPosition> {
        let head = self.log.head();
        let running: Vec<(DatabaseRef, Trigger)> = self
            .running()
            .values()
            .filter(|run| run.reads_wal && database.is_none_or(|id| run.database.id == id))
            .map(|run| (run.database.clone(), run.definition.clone()))
            .collect();
        running
            .into_iter()
            .filter_map(|(database, trigger)| {
                let cursor = self.cursors.get(trigger.id)?.sequence;
                let lag = self
                    .log
                    .lag(cursor, &database.name, |table| wants_table(&trigger, table));
                Some(WalPosition {
                    database: database.name,
                    trigger: trigger.trigger_name,
                    cursor,
                    head,
                    lag,
                })
            })
            .collect()
    }

    /// The first WAL sequence some WAL trigger has not finished with: its file must stay.
    pub fn oldest_needed(&self) -> Option<u64> {
        self.cursors.oldest_needed()
    }

    /// The flushes after `after`, through `head` at most, that make one call of
    /// `trigger` of `database`: the last sequence they reach, and their rows for it
    /// (none when they hold nothing for it). Flushes that cannot be had are named in the
    /// trigger's log and counted.
    pub(super) async fn gather(
        &self,
        database: &DatabaseRef,
        trigger: &Trigger,
        after: u64,
        head: u64,
    ) -> (u64, Vec<Flush>) {
        let mut flushes = Vec::new();
        let mut skips = Vec::new();
        let mut rows = 0;
        // The lines of the flushes kept, the trigger's or not: what the call holds.
        let mut held_lines = 0;
        let mut read_failures = 0;
        let mut end = after;
        while end < head {
            let sequence = end + 1;
            let (found, read_cpu) = self.log.get(sequence, &database.name).await;
            if !read_cpu.is_zero() {
                // Charged read by read: a trigger stopped halfway has paid for its reads.
                let records = self.invoker.records();
                records.wal_read(database, &trigger.trigger_name, read_cpu);
            }
            let (flush, damage) = match found {
                Found::Rows(flush, damage) => (flush, damage),
                Found::Removed(held) => {
                    // What it held for this trigger: nothing lost if none.
                    let held = held.map(|mut tables| {
                        tables.retain(|held| wants_table(trigger, &held.table));
                        tables
                    });
                    if held.as_ref().is_none_or(|tables| !tables.is_empty()) {
                        skips.push((sequence, Skip::Removed(held)));
                    }
                    end = sequence;
                    continue;
                }
                Found::Missing => {
                    skips.push((sequence, Skip::Missing));
                    end = sequence;
                    continue;
                }
                Found::Unreadable(why) if read_failures < READ_RETRIES => {
                    // Maybe passing (descriptors, a busy disk): tried again before the
                    // flush is given up.
                    tracing::warn!(database = %database.name, trigger = %trigger.trigger_name, "flush {sequence} cannot be read ({why}); trying again");
                    read_failures += 1;
                    tokio::time::sleep(READ_RETRY_WAIT).await;
                    continue;
                }
                Found::Unreadable(why) => {
                    skips.push((sequence, Skip::Unreadable(why)));
                    read_failures = 0;
                    end = sequence;
                    continue;
                }
            };
            read_failures = 0;
            let wanted = wanted_lines(&flush, &database.name, trigger).count();
            if wanted > 0 && rows > 0 && rows + wanted > self.rows_per_call {
                break;
            }
            end = sequence;
            if let Some(why) = damage {
                let text = format!(
                    "flush {sequence} was skipped in part: its WAL file is damaged ({why}); \
                     the rows before the damage are delivered"
                );
                self.skipped(database, trigger, text, 1);
            }
            if wanted > 0 {
                rows += wanted;
                held_lines += lines(&flush);
                flushes.push(flush);
                // Few rows of its own among many of other tables: the flushes kept for
                // them are bounded too.
                if rows >= self.rows_per_call || held_lines >= RECENT_LINES {
                    break;
                }
            }
        }
        for text in describe(&skips) {
            self.skipped(database, trigger, text, 0);
        }
        if !skips.is_empty() {
            self.invoker.records().metrics().skipped_flushes(
                &database.name,
                &trigger.trigger_name,
                skips.len() as u64,
            );
        }
        (end, flushes)
    }

    /// Names what `trigger` of `database` skipped: an ERROR line in its log, and an
    /// invocation that ended `skipped`; `flushes` more are counted.
    fn skipped(&self, database: &DatabaseRef, trigger: &Trigger, text: String, flushes: u64) {
        let name = &trigger.trigger_name;
        tracing::error!(database = %database.name, trigger = %name, "{text}");
        self.invoker.log_error(database, name, text.clone());
        self.invoker
            .records()
            .invocation(InvocationRecord::skipped(database, name, text));
        if flushes > 0 {
            self.invoker
                .records()
                .metrics()
                .skipped_flushes(&database.name, name, flushes);
        }
    }
}

/// The lines of `flush` that `trigger` of `database` wants.
fn wanted_lines<'a>(
    flush: &'a Flush,
    database: &'a str,
    trigger: &'a Trigger,
) -> impl Iterator<Item = &'a sluice_lp::Line> + 'a {
    flush
        .iter()
        .filter(move |(name, _)| name == database)
        .flat_map(|(_, lines)| lines)
        .filter(move |line| wants_table(trigger, &line.table))
}

/// Whether `trigger`, a WAL trigger, wants the rows of `table`.
fn wants_table(trigger: &Trigger, table: &str) -> bool {
    match &trigger.trigger {
        TriggerSpec::SingleTableWalWrite { table_name } => table_name == table,
        _ => true,
    }
}

/// A WAL trigger: runs its plugin on the flushes after `cursor`, in order (or
/// concurrently with `run_async`), and moves its cursor past each call's flushes once the
/// call and those before it are over.
pub(super) async fn run(
    manager: Weak<TriggerManager>,
    database: DatabaseRef,
    trigger: Trigger,
    mut cursor: u64,
) {
    let Some(mut head) = manager.upgrade().map(|m| m.log.subscribe()) else {
        return;
    };
    // The last sequence handed to a call; calls not over yet, with the last sequence of
    // each, in order.
    let mut dispatched = cursor;
    let mut calls: VecDeque<(u64, oneshot::Receiver<bool>)> = VecDeque::new();
    loop {
        let newest = *head.borrow_and_update();
        if newest <= dispatched {
            let over = tokio::select! {
                changed = head.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
                over = async {
                    match calls.front_mut() {
                        Some((_, over)) => over.await,
                        None => std::future::pending().await,
                    }
                } => over,
            };
            let Some((end, _)) = calls.pop_front() else {
                continue;
            };
            match over {
                Ok(true) => cursor = end,
                // Disabled on a failed flush (its cursor held), or stopped.
                Ok(false) | Err(_) => return,
            }
        } else {
            let Some(manager) = manager.upgrade() else {
                return;
            };
            let (end, flushes) = manager
                .gather(&database, &trigger, dispatched, newest)
                .await;
            dispatched = end;
            if flushes.is_empty() {
                // Nothing for it: the cursor moves once the calls before are over.
                let (over, receiver) = oneshot::channel();
                let _ = over.send(true);
                calls.push_back((end, receiver));
            } else {
                let lines = flushes
                    .iter()
                    .flat_map(|flush| wanted_lines(flush, &database.name, &trigger));
                let batches = table_batches(lines).batches;
                let call = PluginCall::Writes {
                    batches: batches.into(),
                    args: arguments(&trigger),
                };
                drop(flushes);
                let over = manager
                    .start_call(&database, &trigger, call, "wal plugin")
                    .await;
                calls.push_back((end, over));
            }
        }
        // The calls over, in order: the cursor moves past them.
        while let Some((end, over)) = calls.front_mut() {
            match over.try_recv() {
                Ok(true) => {
                    cursor = *end;
                    calls.pop_front();
                }
                Err(oneshot::error::TryRecvError::Empty) => break,
                Ok(false) | Err(oneshot::error::TryRecvError::Closed) => return,
            }
        }
        if let Some(manager) = manager.upgrade() {
            manager.cursors.advance(trigger.id, cursor);
        }
    }
}
