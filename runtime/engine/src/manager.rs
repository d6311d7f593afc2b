//! WAL and schedule triggers: one task per enabled trigger, started and stopped to match
//! the catalog. The manager follows the catalog store's published versions and
//! reconciles with each (`reconcile`): whoever changes the catalog has nothing to
//! remember, and may wait until the change is in effect ([`TriggerManager::settled`]).
//! Everything it keeps per trigger or database (tasks, queues, warm instances, caches,
//! records) is keyed by id, so a database or trigger deleted and created again under its
//! name starts afresh without being told apart by anything else.
//!
//! A flush's rows reach WAL triggers through two bounded queues: the flushing thread
//! hands the rows to the dispatcher without waiting ([`TriggerManager::flushed`]), and
//! the dispatcher hands each trigger its tables without waiting. A trigger that falls
//! behind loses flushes, counted and logged, but never stalls ingest or another trigger.

use crate::batches::table_batches;
use crate::invoke::{Admission, CallError, Invoker, arguments};
use crate::schedule::Schedule;
use chrono::Utc;
use sluice_catalog::{
    Catalog, DatabaseRef, DbId, ErrorBehavior, PluginType, Trigger, TriggerId, TriggerSpec,
};
use sluice_lp::Line;
use sluice_plugin_api::{PluginCall, TableBatch};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Flushes waiting for the dispatcher.
const DISPATCH_QUEUE: usize = 64;
/// Flushes waiting for one WAL trigger.
const TRIGGER_QUEUE: usize = 16;
/// Runs after the first failure, for `error_behavior` retry.
const RETRIES: u32 = 3;
/// The wait before the first retry; doubled for each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait before trying again a call that could not start for want of an
/// instance.
const MAX_BUSY_BACKOFF: Duration = Duration::from_secs(5);

/// Rows of one flush, by database.
pub type Flush = Arc<Vec<(String, Vec<Line>)>>;

/// Disables a trigger (its database's name, its id) in the catalog, durably.
pub type DisableTrigger = Box<dyn Fn(&str, TriggerId) -> Result<(), String> + Send + Sync>;

/// Where a WAL trigger's flushes are queued.
type WalQueue = mpsc::Sender<Arc<[TableBatch]>>;

/// A running trigger: its database, its definition when started, its task and (WAL) its
/// queue.
struct Running {
    database: DatabaseRef,
    definition: Trigger,
    task: JoinHandle<()>,
    queue: Option<WalQueue>,
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
    flushes: mpsc::Sender<Flush>,
    dropped_flushes: AtomicU64,
    disable: DisableTrigger,
}

impl TriggerManager {
    /// Starts the dispatcher and every enabled trigger of `catalog`, and reconciles with
    /// each version of it published on `versions` (by the catalog store). `disable`
    /// disables a trigger in the catalog, durably (for `error_behavior` disable). Needs a
    /// Tokio runtime.
    pub fn start(
        catalog: Arc<Catalog>,
        mut versions: watch::Receiver<u64>,
        invoker: Arc<Invoker>,
        disable: impl Fn(&str, TriggerId) -> Result<(), String> + Send + Sync + 'static,
    ) -> Arc<Self> {
        let (flushes, receiver) = mpsc::channel(DISPATCH_QUEUE);
        let manager = Arc::new(Self {
            catalog,
            invoker,
            running: Mutex::default(),
            published: versions.clone(),
            reconciled: watch::Sender::new(0),
            databases: Mutex::default(),
            flushes,
            dropped_flushes: AtomicU64::new(0),
            disable: Box::new(disable),
        });
        tokio::spawn(dispatch(Arc::downgrade(&manager), receiver));
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
        wanted.retain(|id, _| !running.contains_key(id));
        for (id, (database, trigger)) in wanted {
            tracing::info!(database = %database.name, trigger = %trigger.trigger_name, spec = %trigger.trigger, "trigger started");
            running.insert(id, self.launch(database, trigger));
        }
    }

    fn launch(self: &Arc<Self>, database: DatabaseRef, trigger: Trigger) -> Running {
        let weak = Arc::downgrade(self);
        let (task, queue) = match Schedule::of(&trigger.trigger) {
            Some(schedule) => {
                let task =
                    tokio::spawn(scheduled(weak, database.clone(), trigger.clone(), schedule));
                (task, None)
            }
            None => {
                let (queue, receiver) = mpsc::channel(TRIGGER_QUEUE);
                let task = tokio::spawn(wal(weak, database.clone(), trigger.clone(), receiver));
                (task, Some(queue))
            }
        };
        Running {
            database,
            definition: trigger,
            task,
            queue,
        }
    }

    /// Hands a flush's rows to the WAL triggers, without waiting: called on the flushing
    /// thread.
    pub fn flushed(&self, rows: Flush) {
        let has_wal_triggers = self.running().values().any(|r| r.queue.is_some());
        if has_wal_triggers && self.flushes.try_send(rows).is_err() {
            let dropped = self.dropped_flushes.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                dropped_total = dropped,
                "WAL triggers are behind: a flush was not delivered to them"
            );
        }
    }

    /// Flushes not delivered to WAL triggers because they were behind.
    pub fn dropped_flushes(&self) -> u64 {
        self.dropped_flushes.load(Ordering::Relaxed)
    }

    /// Runs `call` within its database's quota of invocations at once, waiting for a
    /// turn (nothing is lost): in this task, or with `run_async` in a task of its own,
    /// which the turn is taken for first, so that a trigger firing faster than its calls
    /// end holds no more tasks than its database may run.
    async fn start_call(
        self: &Arc<Self>,
        database: &DatabaseRef,
        trigger: &Trigger,
        call: PluginCall,
        kind: &'static str,
    ) {
        let admitted = self.invoker.admit(database, Some(trigger), Admission::Wait);
        let Ok(turn) = admitted.await else {
            return;
        };
        if trigger.trigger_settings.run_async {
            let (manager, database, trigger) =
                (Arc::clone(self), database.clone(), trigger.clone());
            tokio::spawn(async move {
                let _turn = turn;
                manager.run(&database, &trigger, call, kind).await;
            });
        } else {
            let _turn = turn;
            self.run(database, trigger, call, kind).await;
        }
    }

    /// Runs `call`, applying the trigger's `error_behavior` on failure. A call that could
    /// not start for want of an instance is tried again, with a growing wait, until it
    /// runs (or the trigger is stopped): it is not the plugin's failure, and nothing of it
    /// is lost.
    async fn run(
        self: &Arc<Self>,
        database: &DatabaseRef,
        trigger: &Trigger,
        call: PluginCall,
        kind: &str,
    ) {
        let attempts = match trigger.trigger_settings.error_behavior {
            ErrorBehavior::Retry => 1 + RETRIES,
            _ => 1,
        };
        let name = &trigger.trigger_name;
        let mut busy = 0_u32;
        for attempt in 1..=attempts {
            let error = loop {
                match self.invoker.invoke(database, trigger, call.clone()).await {
                    Ok(_) => return,
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
                // The catalog store publishes the change, and the trigger stops.
                match (self.disable)(&database.name, trigger.id) {
                    Ok(()) => {
                        tracing::warn!(database = %database.name, trigger = %name, "trigger disabled after an error (error_behavior disable)")
                    }
                    Err(e) => {
                        tracing::error!(database = %database.name, trigger = %name, "cannot disable the trigger: {e}")
                    }
                }
            }
        }
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

/// Builds each flush's table batches once per database and queues them for the WAL
/// triggers of that database that want them.
async fn dispatch(manager: Weak<TriggerManager>, mut flushes: mpsc::Receiver<Flush>) {
    while let Some(rows) = flushes.recv().await {
        let Some(manager) = manager.upgrade() else {
            return;
        };
        let targets: Vec<(String, Trigger, WalQueue)> = manager
            .running()
            .values()
            .filter_map(|run| {
                Some((
                    run.database.name.clone(),
                    run.definition.clone(),
                    run.queue.clone()?,
                ))
            })
            .collect();
        for (database, lines) in rows.iter() {
            let mut batches: Option<Vec<TableBatch>> = None;
            for (_, trigger, queue) in targets.iter().filter(|(db, _, _)| db == database) {
                let all = batches.get_or_insert_with(|| table_batches(lines).batches);
                let wanted: Arc<[TableBatch]> = match &trigger.trigger {
                    TriggerSpec::SingleTableWalWrite { table_name } => all
                        .iter()
                        .filter(|b| &b.table_name == table_name)
                        .cloned()
                        .collect(),
                    _ => all.iter().cloned().collect(),
                };
                if wanted.is_empty() {
                    continue;
                }
                if let Err(mpsc::error::TrySendError::Full(_)) = queue.try_send(wanted) {
                    let dropped = manager.dropped_flushes.fetch_add(1, Ordering::Relaxed) + 1;
                    manager
                        .invoker
                        .records()
                        .metrics()
                        .dropped_flush(database, &trigger.trigger_name);
                    tracing::warn!(database = %database, trigger = %trigger.trigger_name, dropped_total = dropped, "WAL trigger is behind: a flush was dropped for it");
                }
            }
        }
    }
}

/// A WAL trigger: runs its plugin on each flush queued for it, in order (or
/// concurrently with `run_async`).
async fn wal(
    manager: Weak<TriggerManager>,
    database: DatabaseRef,
    trigger: Trigger,
    mut queue: mpsc::Receiver<Arc<[TableBatch]>>,
) {
    while let Some(batches) = queue.recv().await {
        let Some(manager) = manager.upgrade() else {
            return;
        };
        let call = PluginCall::Writes {
            batches,
            args: arguments(&trigger),
        };
        manager
            .start_call(&database, &trigger, call, "wal plugin")
            .await;
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
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Semaphore;

    /// Runs nothing: each call takes a permit, so calls wait until the test adds some.
    struct StuckExecutor {
        permits: Semaphore,
        calls: AtomicUsize,
    }

    impl PluginExecutor for StuckExecutor {
        fn run<'a>(
            &'a self,
            _: &'a PluginRef,
            _: PluginCall,
            _: &'a Limits,
            services: Arc<dyn HostServices>,
        ) -> BoxFuture<'a, Result<Invocation, InvocationError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
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
            reach: Default::default(),
            public: false,
            limits: Default::default(),
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

    /// Starts a manager of `catalog`, which nothing publishes: tests reconcile by hand.
    fn start(
        catalog: Arc<Catalog>,
        invoker: Arc<Invoker>,
        disable: impl Fn(&str, TriggerId) -> Result<(), String> + Send + Sync + 'static,
    ) -> Arc<TriggerManager> {
        let versions = watch::Sender::new(catalog.generation()).subscribe();
        TriggerManager::start(catalog, versions, invoker, disable)
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
        let executor = Arc::new(StuckExecutor {
            permits: Semaphore::new(0),
            calls: AtomicUsize::new(0),
        });
        (catalog, executor)
    }

    #[tokio::test]
    async fn each_published_catalog_is_reconciled_and_ids_tell_a_database_created_again_apart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = CatalogStore::open(dir.path(), 500).expect("opens").store;
        let executor = Arc::new(StuckExecutor {
            permits: Semaphore::new(0),
            calls: AtomicUsize::new(0),
        });
        let invoker = invoker(executor);
        let cache = Arc::clone(invoker.cache());
        let manager = TriggerManager::start(
            Arc::clone(store.catalog()),
            store.subscribe(),
            invoker,
            |_, _| Ok(()),
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

    #[tokio::test]
    async fn a_stuck_wal_trigger_loses_flushes_but_never_blocks_the_flush() {
        let (catalog, executor) = stuck_trigger("stuck");
        let invoker = invoker(executor.clone());
        let manager = start(catalog, invoker, |_, _| Ok(()));

        // Far more flushes than the queues hold; each call returns at once.
        for _ in 0..(DISPATCH_QUEUE + TRIGGER_QUEUE) * 4 {
            manager.flushed(flush());
            tokio::task::yield_now().await;
        }
        for _ in 0..1000 {
            if manager.dropped_flushes() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(manager.dropped_flushes() > 0, "the queues are bounded");
        assert_eq!(
            executor.calls.load(Ordering::SeqCst),
            1,
            "one call is stuck, the rest wait or were dropped"
        );

        // Once unstuck, the trigger works through what it kept.
        executor.permits.add_permits(1_000);
        for _ in 0..1000 {
            if executor.calls.load(Ordering::SeqCst) > TRIGGER_QUEUE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(executor.calls.load(Ordering::SeqCst) > TRIGGER_QUEUE);
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
        let manager = start(catalog, invoker(executor.clone()), move |_, id| {
            disabled_by_manager
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(id);
            Ok(())
        });

        manager.flushed(flush());
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
        let disabled = disabled.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(
            disabled.iter().map(|id| Some(*id)).collect::<Vec<_>>(),
            [disables]
        );
    }
}
