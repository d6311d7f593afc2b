//! WAL and schedule triggers: one task per enabled trigger, started and stopped to match
//! the catalog. The manager follows the catalog store's published versions and
//! reconciles with each (`reconcile`): whoever changes the catalog has nothing to
//! remember, and may wait until the change is in effect ([`TriggerManager::settled`]).
//! Everything it keeps per trigger or database (tasks, queues, warm instances, caches,
//! records) is keyed by id, so a database or trigger deleted and created again under its
//! name starts afresh without being told apart by anything else.
//!
//! Each WAL trigger reads the flushes after its cursor (`cursors.rs`) from the flush log
//! (`flush_log.rs`) at its own pace, several at once when it is behind, and moves its
//! cursor once its plugin has finished with them (`manager/wal.rs`). The flushing thread
//! only records each flush ([`TriggerManager::flushed`]): a slow trigger never stalls
//! ingest or another trigger, and loses no flush while the WAL retention keeps the files
//! it needs.

mod wal;

pub use wal::{DEFAULT_ROWS_PER_CALL, WalFeed};

use crate::cursors::{Cursor, Cursors};
use crate::flush_log::FlushLog;
#[cfg(test)]
use crate::flush_log::{Flush, Found, RECENT_LINES, WalLog};
use crate::invoke::{Admission, CallError, Invoker, arguments};
use crate::schedule::Schedule;
use chrono::Utc;
use sluice_catalog::{
    Catalog, DatabaseRef, DbId, ErrorBehavior, PluginType, Trigger, TriggerId, WalStart,
};
use sluice_plugin_api::PluginCall;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Runs after the first failure, for `error_behavior` retry.
const RETRIES: u32 = 3;
/// The wait before the first retry; doubled for each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait before trying again a call that could not start for want of an
/// instance.
const MAX_BUSY_BACKOFF: Duration = Duration::from_secs(5);

/// Disables a trigger (its database's name, its id) in the catalog, durably.
pub type DisableTrigger = Box<dyn Fn(&str, TriggerId) -> Result<(), String> + Send + Sync>;

/// A running trigger: its database, its definition when started, its task, and whether
/// it is a WAL trigger.
struct Running {
    database: DatabaseRef,
    definition: Trigger,
    task: JoinHandle<()>,
    reads_wal: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The WAL and schedule triggers of a server.
pub struct TriggerManager {
    catalog: Arc<Catalog>,
    invoker: Arc<Invoker>,
    running: Mutex<HashMap<TriggerId, Running>>,
    /// The generation of the newest catalog the store has published.
    published: watch::Receiver<u64>,
    /// The generation of the catalog last reconciled with.
    reconciled: watch::Sender<u64>,
    /// The databases there were when last reconciled (`None` before the first time):
    /// what is kept for databases is swept only when one has gone.
    databases: Mutex<Option<HashSet<DbId>>>,
    log: FlushLog,
    cursors: Arc<Cursors>,
    rows_per_call: usize,
    disable: DisableTrigger,
}

impl TriggerManager {
    /// Starts every enabled trigger of `catalog`, WAL triggers reading `feed`, and
    /// reconciles with each version of it published on `versions` (by the catalog store).
    /// `disable` disables a trigger in the catalog, durably (for `error_behavior`
    /// disable). Needs a Tokio runtime.
    pub fn start(
        catalog: Arc<Catalog>,
        mut versions: watch::Receiver<u64>,
        invoker: Arc<Invoker>,
        disable: impl Fn(&str, TriggerId) -> Result<(), String> + Send + Sync + 'static,
        feed: WalFeed,
    ) -> Arc<Self> {
        let manager = Arc::new(Self {
            catalog,
            invoker,
            running: Mutex::default(),
            published: versions.clone(),
            reconciled: watch::Sender::new(0),
            databases: Mutex::default(),
            log: FlushLog::new(feed.wal),
            cursors: feed.cursors,
            rows_per_call: feed.rows_per_call.max(1),
            disable: Box::new(disable),
        });
        let version = *versions.borrow_and_update();
        manager.reconcile();
        manager.reconciled.send_replace(version);
        tokio::spawn(follow(Arc::downgrade(&manager), versions));
        manager
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<TriggerId, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once the manager has reconciled with the newest catalog published when
    /// called: a trigger created, changed, disabled or deleted before is then running,
    /// restarted or stopped.
    pub async fn settled(&self) {
        let target = *self.published.borrow();
        let mut reconciled = self.reconciled.subscribe();
        // The sender lives as long as `self`: waiting cannot fail.
        let _ = reconciled.wait_for(|done| *done >= target).await;
    }

    /// Starts the enabled WAL and schedule triggers that are not running, and stops the
    /// ones that are gone, disabled or changed (dropping their caches); forgets what is
    /// kept for deleted databases (their shared caches, their records), and counts the
    /// usage of deleted triggers with their database's.
    pub(crate) fn reconcile(self: &Arc<Self>) {
        let all_triggers: HashSet<TriggerId> = self
            .catalog
            .database_refs()
            .into_iter()
            .flat_map(|database| self.catalog.triggers(&database.name).unwrap_or_default())
            .map(|trigger| trigger.id)
            .collect();
        let existing: HashMap<DbId, (String, HashSet<String>)> = self
            .catalog
            .database_refs()
            .into_iter()
            .map(|database| {
                let triggers = self.catalog.triggers(&database.name).unwrap_or_default();
                let names = triggers.into_iter().map(|t| t.trigger_name).collect();
                (database.id, (database.name, names))
            })
            .collect();
        self.invoker.records().fold_deleted_triggers(&existing);
        let databases: HashSet<DbId> = existing.keys().copied().collect();
        let enabled: HashMap<TriggerId, (DatabaseRef, Trigger)> = self
            .catalog
            .enabled_triggers()
            .into_iter()
            .map(|(database, trigger)| (trigger.id, (database, trigger)))
            .collect();
        self.invoker
            .retain_pools(|trigger| enabled.contains_key(&trigger));
        self.invoker
            .retain_trigger_turns(|trigger| enabled.contains_key(&trigger));
        let before = self
            .databases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(databases.clone());
        // At start, what was left of databases deleted while the server was down.
        let some_gone = before.is_none_or(|before| before.iter().any(|db| !databases.contains(db)));
        if some_gone {
            self.invoker
                .plugins()
                .remove_areas(|database| self.catalog.database_was_deleted(database));
            let gone = |database: DbId| !databases.contains(&database);
            self.invoker.cache().end_databases(gone);
            self.invoker.records().forget_databases(gone);
            self.invoker.forget_turns(gone);
        }
        let mut wanted: HashMap<TriggerId, (DatabaseRef, Trigger)> = enabled
            .iter()
            .filter(|(_, (_, t))| t.trigger.plugin_type() != PluginType::Request)
            .map(|(id, entry)| (*id, entry.clone()))
            .collect();
        let mut running = self.running();
        // Enabled, but changed or stopped by itself: to start anew.
        let mut restarting: HashSet<TriggerId> = HashSet::new();
        running.retain(|id, run| {
            let keep = wanted.get(id).map(|(_, t)| t) == Some(&run.definition)
                && !run.task.is_finished();
            if !keep {
                if wanted.contains_key(id) {
                    restarting.insert(*id);
                }
                tracing::info!(database = %run.database.name, trigger = %run.definition.trigger_name, "trigger stopped");
            }
            keep
        });
        // A new run for every trigger that stopped (of any kind) or starts anew, with a
        // cache of its own.
        self.invoker.cache().end_triggers(|trigger| {
            !enabled.contains_key(&trigger) || restarting.contains(&trigger)
        });
        // A trigger keeps its place in the WAL while enabled, or while disabled on a
        // failed flush by its `error_behavior`; disabled otherwise, it starts again at the
        // WAL's head.
        self.cursors.retain(|id, cursor| {
            enabled.contains_key(&id) || (cursor.held && all_triggers.contains(&id))
        });
        wanted.retain(|id, _| !running.contains_key(id));
        // WAL triggers without a cursor yet, whose first one is saved at once.
        let first_cursors = wanted.values().any(|(_, trigger)| {
            Schedule::of(&trigger.trigger).is_none() && self.cursors.get(trigger.id).is_none()
        });
        for (id, (database, trigger)) in wanted {
            tracing::info!(database = %database.name, trigger = %trigger.trigger_name, spec = %trigger.trigger, "trigger started");
            running.insert(id, self.launch(database, trigger));
        }
        drop(running);
        if first_cursors {
            self.cursors.save_now();
        }
    }

    fn launch(self: &Arc<Self>, database: DatabaseRef, trigger: Trigger) -> Running {
        let weak = Arc::downgrade(self);
        let (task, reads_wal) = match Schedule::of(&trigger.trigger) {
            Some(schedule) => {
                let task = self.invoker.spawn_background(scheduled(
                    weak,
                    database.clone(),
                    trigger.clone(),
                    schedule,
                ));
                (task, false)
            }
            None => {
                // Where it was (a cursor held on a failed flush is let go now), or, new or
                // enabled again, where its settings say.
                let sequence = match (
                    self.cursors.get(trigger.id),
                    trigger.trigger_settings.wal_start,
                ) {
                    (Some(cursor), _) => cursor.sequence,
                    (None, WalStart::Head) => self.log.head(),
                    (None, WalStart::Earliest) => self.log.oldest().saturating_sub(1),
                };
                self.cursors.set(
                    trigger.id,
                    Cursor {
                        sequence,
                        held: false,
                    },
                );
                let task = self.invoker.spawn_background(wal::run(
                    weak,
                    database.clone(),
                    trigger.clone(),
                    sequence,
                ));
                (task, true)
            }
        };
        Running {
            database,
            definition: trigger,
            task,
            reads_wal,
        }
    }

    /// Runs `call` within its database's quota of invocations at once, waiting for a
    /// turn (nothing is lost): in this task, or with `run_async` in a task of its own,
    /// which the turn is taken for first, so that a trigger firing faster than its calls
    /// end holds no more tasks than its database may run. What the returned receiver gets
    /// once the call is over says whether the trigger goes on (see [`Self::run`]); it
    /// gets nothing if the call never ran (its trigger or database gone).
    async fn start_call(
        self: &Arc<Self>,
        database: &DatabaseRef,
        trigger: &Trigger,
        call: PluginCall,
        kind: &'static str,
    ) -> oneshot::Receiver<bool> {
        let (over, receiver) = oneshot::channel();
        let admitted = self.invoker.admit(database, Some(trigger), Admission::Wait);
        let Ok(turn) = admitted.await else {
            return receiver;
        };
        if trigger.trigger_settings.run_async {
            let (manager, database, trigger) =
                (Arc::clone(self), database.clone(), trigger.clone());
            tokio::spawn(async move {
                let _turn = turn;
                let _ = over.send(manager.run(&database, &trigger, call, kind).await);
            });
        } else {
            let _turn = turn;
            let _ = over.send(self.run(database, trigger, call, kind).await);
        }
        receiver
    }

    /// Runs `call`, applying the trigger's `error_behavior` on failure. A call that could
    /// not start for want of an instance is tried again, with a growing wait, until it
    /// runs (or the trigger is stopped): it is not the plugin's failure, and nothing of it
    /// is lost. Returns whether the trigger goes on past the call: not when the call
    /// failed and disabled it, which holds a WAL trigger's cursor before the call's
    /// flushes, for enabling it to deliver them again.
    async fn run(
        self: &Arc<Self>,
        database: &DatabaseRef,
        trigger: &Trigger,
        call: PluginCall,
        kind: &str,
    ) -> bool {
        let attempts = match trigger.trigger_settings.error_behavior {
            ErrorBehavior::Retry => 1 + RETRIES,
            _ => 1,
        };
        let name = &trigger.trigger_name;
        let mut busy = 0_u32;
        for attempt in 1..=attempts {
            let error = loop {
                match self.invoker.invoke(database, trigger, call.clone()).await {
                    Ok(_) => return true,
                    Err(CallError::Failed(error)) => break error,
                    Err(CallError::Busy(why)) => {
                        if busy == 0 {
                            tracing::warn!(database = %database.name, trigger = %name, "{kind} not run yet: {why}; trying again");
                            let text = format!("{kind} not run yet: {why}; trying again");
                            self.invoker.log_error(database, name, text);
                        }
                        let wait = FIRST_BACKOFF.saturating_mul(2_u32.saturating_pow(busy.min(16)));
                        tokio::time::sleep(wait.min(MAX_BUSY_BACKOFF)).await;
                        busy += 1;
                    }
                }
            };
            if attempt < attempts {
                tracing::info!(database = %database.name, trigger = %name, "error executing {kind}: {error}, will retry");
                tokio::time::sleep(FIRST_BACKOFF * 2_u32.pow(attempt - 1)).await;
                continue;
            }
            tracing::error!(database = %database.name, trigger = %name, "error executing {kind}: {error}");
            self.invoker
                .log_error(database, name, format!("error executing {kind}: {error}"));
            if trigger.trigger_settings.error_behavior == ErrorBehavior::Disable {
                // Held first: disabling stops the trigger, and a cursor not held goes.
                self.cursors.hold(trigger.id);
                // The catalog store publishes the change, and the trigger stops.
                match (self.disable)(&database.name, trigger.id) {
                    Ok(()) => {
                        tracing::warn!(database = %database.name, trigger = %name, "trigger disabled after an error (error_behavior disable)")
                    }
                    Err(e) => {
                        tracing::error!(database = %database.name, trigger = %name, "cannot disable the trigger: {e}")
                    }
                }
                return false;
            }
        }
        true
    }
}

/// Reconciles `manager` with each catalog published on `versions` from now on, until
/// either ends.
async fn follow(manager: Weak<TriggerManager>, mut versions: watch::Receiver<u64>) {
    while versions.changed().await.is_ok() {
        let version = *versions.borrow_and_update();
        let Some(manager) = manager.upgrade() else {
            return;
        };
        manager.reconcile();
        manager.reconciled.send_replace(version);
    }
}

/// A schedule trigger: sleeps until each planned instant and runs its plugin with it.
async fn scheduled(
    manager: Weak<TriggerManager>,
    database: DatabaseRef,
    trigger: Trigger,
    schedule: Schedule,
) {
    let Some(mut planned) = schedule.next_after(Utc::now()) else {
        return;
    };
    loop {
        let wait = (planned - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let Some(manager) = manager.upgrade() else {
            return;
        };
        let call_time_ns = planned.timestamp_nanos_opt().unwrap_or_default();
        let call = PluginCall::Schedule {
            call_time_ns,
            args: arguments(&trigger),
        };
        manager
            .start_call(&database, &trigger, call, "schedule plugin")
            .await;
        let Some((next, skipped)) = schedule.following(planned, Utc::now()) else {
            return;
        };
        if skipped > 0 {
            tracing::warn!(database = %database.name, trigger = %trigger.trigger_name, skipped, "the plugin ran late: skipped missed schedule instants");
        }
        planned = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheStore;
    use crate::host::Database;
    use sluice_catalog::{CatalogStore, TriggerSettings, TriggerSpec};
    use sluice_plugin_api::{
        BoxFuture, CallUsage, HostServices, Invocation, InvocationError, Limits, PluginExecutor,
        PluginRef, QueryResult,
    };
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use tokio::sync::Semaphore;

    /// Runs nothing: each call takes a permit, so calls wait until the test adds some;
    /// counts the calls and the rows they got.
    struct StuckExecutor {
        permits: Semaphore,
        calls: AtomicUsize,
        rows: AtomicUsize,
    }

    impl StuckExecutor {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                permits: Semaphore::new(0),
                calls: AtomicUsize::new(0),
                rows: AtomicUsize::new(0),
            })
        }
    }

    impl PluginExecutor for StuckExecutor {
        fn run<'a>(
            &'a self,
            _: &'a PluginRef,
            call: PluginCall,
            _: &'a Limits,
            services: Arc<dyn HostServices>,
        ) -> BoxFuture<'a, Result<Invocation, InvocationError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                if let PluginCall::Writes { batches, .. } = &call {
                    let rows: u32 = batches.iter().map(|b| b.row_count).sum();
                    self.rows.fetch_add(rows as usize, Ordering::SeqCst);
                }
                self.permits
                    .acquire()
                    .await
                    .map_err(|e| InvocationError::Internal(e.to_string()))?
                    .forget();
                services.finish(true, CallUsage::default());
                Ok(Invocation::default())
            })
        }
    }

    struct NoDatabase;

    impl Database for NoDatabase {
        fn database_id(&self, _: &str) -> Option<DbId> {
            Some(db().id)
        }

        fn query<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a [(String, String)],
            _: u64,
        ) -> BoxFuture<'a, Result<QueryResult, String>> {
            Box::pin(async { Ok(QueryResult::default()) })
        }

        fn write<'a>(
            &'a self,
            _: &'a str,
            _: String,
            _: bool,
            _: bool,
        ) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }

        fn write_parsed<'a>(
            &'a self,
            _: &'a str,
            _: String,
            _: sluice_lp::ParsedBody,
            _: bool,
        ) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn flush() -> Flush {
        Arc::new(vec![(
            "db".to_string(),
            sluice_lp::parse("cpu usage=1i 1", sluice_lp::Precision::Nanosecond, 0).lines,
        )])
    }

    /// A WAL in memory: every flush recorded through [`MemoryWal::flush`], less those
    /// [`MemoryWal::remove`] took away.
    #[derive(Default)]
    struct MemoryWal {
        flushes: Mutex<HashMap<u64, Flush>>,
        head: AtomicU64,
    }

    impl WalLog for MemoryWal {
        fn head(&self) -> u64 {
            self.head.load(Ordering::SeqCst)
        }

        fn oldest(&self) -> u64 {
            let flushes = self.flushes.lock().unwrap_or_else(PoisonError::into_inner);
            flushes.keys().min().copied().unwrap_or(self.head() + 1)
        }

        fn read(&self, sequence: u64, _: &str) -> Found {
            let flushes = self.flushes.lock().unwrap_or_else(PoisonError::into_inner);
            match flushes.get(&sequence) {
                Some(flush) => Found::Rows(Arc::clone(flush), None),
                None => Found::Missing,
            }
        }
    }

    impl MemoryWal {
        /// Logs `rows` as the next flush and tells `manager`.
        fn flush(&self, manager: &TriggerManager, rows: Flush) -> u64 {
            let sequence = self.head.fetch_add(1, Ordering::SeqCst) + 1;
            self.flushes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(sequence, Arc::clone(&rows));
            manager.flushed(sequence, rows);
            sequence
        }

        fn remove(&self, sequence: u64) {
            let mut flushes = self.flushes.lock().unwrap_or_else(PoisonError::into_inner);
            flushes.remove(&sequence);
        }
    }

    fn feed(wal: &Arc<MemoryWal>) -> WalFeed {
        WalFeed {
            wal: Arc::clone(wal) as Arc<dyn WalLog>,
            cursors: Cursors::in_memory(),
            rows_per_call: DEFAULT_ROWS_PER_CALL,
        }
    }

    fn wal_trigger(name: &str) -> Trigger {
        Trigger {
            id: TriggerId::default(),
            trigger_name: name.into(),
            plugin_filename: "p.py".into(),
            plugin_area: Default::default(),
            trigger: TriggerSpec::AllTablesWalWrite,
            trigger_settings: TriggerSettings::default(),
            trigger_arguments: None,
            disabled: false,
            granted_databases: Vec::new(),
            allowed_hosts: Vec::new(),
            reach: Default::default(),
            public: false,
            limits: Default::default(),
            runtime: Default::default(),
        }
    }

    fn invoker(executor: Arc<dyn PluginExecutor>) -> Arc<Invoker> {
        Arc::new(Invoker::new(
            executor,
            Arc::new(NoDatabase),
            Arc::new(CacheStore::default()),
            Arc::new(crate::plugin_dir::PluginAreas::new(
                "plugins".into(),
                "plugin-areas".into(),
                "plugin-environments".into(),
            )),
            Limits::default(),
            true,
        ))
    }

    /// Starts a manager of `catalog`, which nothing publishes (tests reconcile by hand),
    /// reading `wal`.
    fn start(
        catalog: Arc<Catalog>,
        invoker: Arc<Invoker>,
        disable: impl Fn(&str, TriggerId) -> Result<(), String> + Send + Sync + 'static,
        wal: &Arc<MemoryWal>,
    ) -> Arc<TriggerManager> {
        let versions = watch::Sender::new(catalog.generation()).subscribe();
        TriggerManager::start(catalog, versions, invoker, disable, feed(wal))
    }

    fn db() -> DatabaseRef {
        DatabaseRef {
            id: DbId::new(1),
            name: "db".into(),
        }
    }

    #[tokio::test]
    async fn a_limit_the_sandbox_cannot_honour_fails_the_call_and_is_recorded() {
        // A catalog may hold an override that an executor with smaller instances cannot
        // give, e.g. one written by a server configured otherwise.
        struct SmallInstances;
        impl PluginExecutor for SmallInstances {
            fn run<'a>(
                &'a self,
                _: &'a PluginRef,
                _: PluginCall,
                _: &'a Limits,
                _: Arc<dyn HostServices>,
            ) -> BoxFuture<'a, Result<Invocation, InvocationError>> {
                Box::pin(async { Ok(Invocation::default()) })
            }
            fn max_memory_bytes(&self) -> u64 {
                64 << 20
            }
        }
        let invoker = invoker(Arc::new(SmallInstances));
        let mut trigger = wal_trigger("big");
        trigger.limits.memory_bytes = Some(128 << 20);
        let call = || PluginCall::Schedule {
            call_time_ns: 0,
            args: None,
        };
        let error = invoker
            .invoke(&db(), &trigger, call())
            .await
            .expect_err("over the largest memory")
            .to_string();
        assert!(
            error.contains("over the sandbox's largest memory of 64 MiB"),
            "{error}"
        );
        let records = invoker.records().invocations(db().id);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].trigger, "big");
        assert_eq!(records[0].error.as_deref(), Some(error.as_str()));

        trigger.limits.memory_bytes = Some((64 << 20) + 1);
        let error = invoker
            .invoke(&db(), &trigger, call())
            .await
            .expect_err("one byte over")
            .to_string();
        assert!(
            error.contains("a memory limit of 67108865 bytes is over"),
            "{error}"
        );
        trigger.limits.memory_bytes = Some(64 << 20);
        assert!(invoker.invoke(&db(), &trigger, call()).await.is_ok());
    }

    /// A catalog with database `db` and its WAL trigger `trigger`, and an executor whose
    /// calls wait.
    fn stuck_trigger(trigger: &str) -> (Arc<Catalog>, Arc<StuckExecutor>) {
        let catalog = Arc::new(Catalog::default());
        catalog.create_database("db").expect("created");
        catalog
            .create_trigger("db", wal_trigger(trigger))
            .expect("created");
        (catalog, StuckExecutor::new())
    }

    #[tokio::test]
    async fn each_published_catalog_is_reconciled_and_ids_tell_a_database_created_again_apart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = CatalogStore::open(dir.path(), 500).expect("opens").store;
        let invoker = invoker(StuckExecutor::new());
        let cache = Arc::clone(invoker.cache());
        let manager = TriggerManager::start(
            Arc::clone(store.catalog()),
            store.subscribe(),
            invoker,
            |_, _| Ok(()),
            feed(&Arc::default()),
        );
        let create = |catalog: &Catalog| {
            catalog.create_database("db")?;
            catalog.create_trigger("db", wal_trigger("t"))
        };
        store.change(create).expect("created");
        manager.settled().await;
        let ids = || {
            let (database, trigger) = store.catalog().enabled_triggers().remove(0);
            (database.id, trigger.id)
        };
        let running = |manager: &TriggerManager| -> Vec<TriggerId> {
            manager.running().keys().copied().collect()
        };
        let (first_db, first_trigger) = ids();
        assert_eq!(
            running(&manager),
            [first_trigger],
            "started by the change alone"
        );
        let put = |namespace, value: &[u8]| {
            cache
                .put(&namespace, "k", value.to_vec(), None, u64::MAX, u64::MAX)
                .expect("fits");
        };
        put(cache.database_namespace(first_db), b"shared");
        put(cache.trigger_namespace(first_db, first_trigger), b"own");

        // Deleted and created again, with the same trigger, in one change.
        store
            .change(|catalog| {
                catalog.delete_database("db")?;
                create(catalog)
            })
            .expect("created again");
        manager.settled().await;
        let (second_db, second_trigger) = ids();
        assert_ne!((second_db, second_trigger), (first_db, first_trigger));
        assert_eq!(running(&manager), [second_trigger], "the new trigger runs");
        assert_eq!(cache.get(&cache.database_namespace(first_db), "k"), None);
        assert_eq!(
            cache.get(&cache.trigger_namespace(first_db, first_trigger), "k"),
            None
        );
        assert_eq!(cache.get(&cache.database_namespace(second_db), "k"), None);

        store
            .change(|catalog| catalog.delete_database("db"))
            .expect("deleted");
        manager.settled().await;
        assert!(running(&manager).is_empty(), "stopped by the change alone");
    }

    async fn until(what: impl Fn() -> bool) {
        for _ in 0..1000 {
            if what() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_trigger_whose_rows_are_few_among_other_tables_holds_a_bounded_call() {
        // Another tenant of the database fills each flush with its own table: a trigger
        // of `src` that is behind must not hold flush after flush of them while it looks
        // for rows_per_call rows of its own.
        let wal = Arc::new(MemoryWal::default());
        let manager = start(
            Arc::new(Catalog::default()),
            invoker(StuckExecutor::new()),
            |_, _| Ok(()),
            &wal,
        );
        let lines: Vec<String> = (0..RECENT_LINES / 2)
            .map(|i| format!("other v=1i {i}"))
            .chain(["src v=1i 1".to_string()])
            .collect();
        let lines = sluice_lp::parse(&lines.join("\n"), sluice_lp::Precision::Nanosecond, 0);
        let crowded: Flush = Arc::new(vec![("db".to_string(), lines.lines)]);
        for _ in 0..4 {
            wal.flush(&manager, Arc::clone(&crowded));
        }
        let mut trigger = wal_trigger("sparse");
        trigger.trigger = TriggerSpec::SingleTableWalWrite {
            table_name: "src".into(),
        };

        let (end, flushes) = manager.gather(&db(), &trigger, 0, 4).await;
        assert_eq!(
            (end, flushes.len()),
            (2, 2),
            "two flushes hold the bound's lines"
        );
        let (end, flushes) = manager.gather(&db(), &trigger, end, 4).await;
        assert_eq!((end, flushes.len()), (4, 2), "the next call takes the rest");
    }

    #[tokio::test]
    async fn a_stuck_wal_trigger_never_blocks_the_flush_and_catches_up_on_every_row() {
        let (catalog, executor) = stuck_trigger("stuck");
        let invoker = invoker(executor.clone());
        let wal = Arc::new(MemoryWal::default());
        let manager = start(catalog, invoker, |_, _| Ok(()), &wal);

        // One call starts and is stuck; the flushes after it only wait.
        const FLUSHES: usize = 500;
        for _ in 0..FLUSHES {
            wal.flush(&manager, flush());
            tokio::task::yield_now().await;
        }
        until(|| executor.calls.load(Ordering::SeqCst) == 1).await;
        assert_eq!(executor.calls.load(Ordering::SeqCst), 1);
        // A flush larger than the log keeps in memory: the ones before are read back from
        // the WAL, where two of them are gone (skipped, and said so).
        let big: Vec<String> = (0..=RECENT_LINES)
            .map(|i| format!("cpu usage=1i {i}"))
            .collect();
        let big = sluice_lp::parse(&big.join("\n"), sluice_lp::Precision::Nanosecond, 0).lines;
        wal.flush(&manager, Arc::new(vec![("db".to_string(), big)]));
        for sequence in 2..=3 {
            wal.remove(sequence);
        }

        // Once unstuck, the trigger works through every flush that is still there, the
        // small ones merged into one call, the big one whole.
        executor.permits.add_permits(10_000);
        let expected = FLUSHES - 2 + RECENT_LINES + 1;
        until(|| executor.rows.load(Ordering::SeqCst) == expected).await;
        assert_eq!(
            executor.rows.load(Ordering::SeqCst),
            expected,
            "every row once"
        );
        let calls = executor.calls.load(Ordering::SeqCst);
        assert_eq!(calls, 3, "the first, the small ones merged, the big one");
        let last = FLUSHES as u64 + 1;
        until(|| manager.cursors.get(stuck_id(&manager)).map(|c| c.sequence) == Some(last)).await;
        assert_eq!(
            manager.cursors.get(stuck_id(&manager)).map(|c| c.sequence),
            Some(last)
        );
        let skipped: Vec<String> = manager
            .invoker
            .records()
            .logs(db().id)
            .into_iter()
            .map(|line| line.text)
            .filter(|text| text.contains("skipped"))
            .collect();
        assert_eq!(skipped.len(), 1, "one text for both: {skipped:?}");
        assert!(
            skipped[0].starts_with("flushes 2 to 3 were skipped: not in the WAL"),
            "{skipped:?}"
        );
        let outcomes: Vec<&str> = manager
            .invoker
            .records()
            .invocations(db().id)
            .iter()
            .map(|call| call.outcome.as_str())
            .filter(|outcome| *outcome != "success")
            .collect();
        assert_eq!(outcomes, ["skipped"]);
        let metrics = manager.invoker.records().metrics().encode();
        assert!(
            metrics.contains(
                r#"sluice_plugin_skipped_flushes_total{database="db",trigger="stuck"} 2"#
            ),
            "{metrics}"
        );
    }

    fn stuck_id(manager: &TriggerManager) -> TriggerId {
        manager.running().keys().copied().next().expect("running")
    }

    /// Fails every call, remembering when each plugin was called.
    #[derive(Default)]
    struct FailingExecutor {
        calls: Mutex<Vec<(String, std::time::Instant)>>,
    }

    impl FailingExecutor {
        fn calls_of(&self, plugin: &str) -> Vec<std::time::Instant> {
            let calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
            calls
                .iter()
                .filter(|(name, _)| name == plugin)
                .map(|(_, at)| *at)
                .collect()
        }
    }

    impl PluginExecutor for FailingExecutor {
        fn run<'a>(
            &'a self,
            plugin: &'a PluginRef,
            _: PluginCall,
            _: &'a Limits,
            services: Arc<dyn HostServices>,
        ) -> BoxFuture<'a, Result<Invocation, InvocationError>> {
            Box::pin(async move {
                let now = std::time::Instant::now();
                let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
                calls.push((plugin.name.clone(), now));
                services.finish(false, CallUsage::default());
                Err(InvocationError::Plugin("failed on purpose".into()))
            })
        }
    }

    #[tokio::test]
    async fn a_failed_call_is_logged_retried_with_growing_waits_or_disables_its_trigger() {
        let catalog = Arc::new(Catalog::default());
        catalog.create_database("db").expect("created");
        for (name, behavior) in [
            ("logs", ErrorBehavior::Log),
            ("retries", ErrorBehavior::Retry),
            ("disables", ErrorBehavior::Disable),
        ] {
            let mut trigger = wal_trigger(name);
            trigger.plugin_filename = format!("{name}.py");
            trigger.trigger_settings.error_behavior = behavior;
            catalog.create_trigger("db", trigger).expect("created");
        }
        let executor = Arc::new(FailingExecutor::default());
        let id_of = |name: &str| {
            let triggers = catalog.triggers("db").expect("exists");
            triggers
                .into_iter()
                .find(|t| t.trigger_name == name)
                .map(|t| t.id)
        };
        let disables = id_of("disables");
        let disabled = Arc::new(Mutex::new(Vec::new()));
        let disabled_by_manager = Arc::clone(&disabled);
        let wal = Arc::new(MemoryWal::default());
        let disabling = move |_: &str, id| {
            disabled_by_manager
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(id);
            Ok(())
        };
        let manager = start(
            Arc::clone(&catalog),
            invoker(executor.clone()),
            disabling,
            &wal,
        );

        wal.flush(&manager, flush());
        let attempts = 1 + RETRIES as usize;
        for _ in 0..1000 {
            if executor.calls_of("retries.py").len() == attempts {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Long enough for one more retry, had there been one.
        tokio::time::sleep(FIRST_BACKOFF * 2_u32.pow(RETRIES)).await;

        let retried = executor.calls_of("retries.py");
        assert_eq!(
            retried.len(),
            attempts,
            "the first call and {RETRIES} retries"
        );
        for (i, pair) in retried.windows(2).enumerate() {
            let wait = FIRST_BACKOFF * 2_u32.pow(i as u32);
            assert!(
                pair[1] - pair[0] >= wait,
                "retry {} came before its wait of {wait:?}",
                i + 1
            );
        }
        assert_eq!(executor.calls_of("logs.py").len(), 1, "logged, not retried");
        assert_eq!(executor.calls_of("disables.py").len(), 1, "not retried");
        let disabled: Vec<_> = disabled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|id| Some(*id))
            .collect();
        assert_eq!(disabled, [disables]);
        // Past the flush when logged or retried; held before it when disabled.
        let cursor = |name: &str| manager.cursors.get(id_of(name).expect("exists"));
        let moved = Cursor {
            sequence: 1,
            held: false,
        };
        until(|| cursor("logs") == Some(moved) && cursor("retries") == Some(moved)).await;
        assert_eq!(cursor("logs"), Some(moved));
        assert_eq!(cursor("retries"), Some(moved));
        assert_eq!(
            cursor("disables"),
            Some(Cursor {
                sequence: 0,
                held: true
            })
        );
    }
}
