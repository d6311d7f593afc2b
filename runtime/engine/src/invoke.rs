//! One invocation of a trigger's plugin on the real database: the plugin runs in the
//! executor with a [`TriggerHost`], and its batched writes are written afterwards, only
//! if it succeeded.
//!
//! Each trigger gets its own pool of warm instances when the executor has them
//! ([`PluginExecutor::warm_pool`]): instances are never shared between triggers, so
//! what one tenant's plugin leaves in memory never reaches another's.

use crate::cache::CacheStore;
use crate::dry_run::{DryRunHost, DryRunReport, dry_run};
use crate::egress::Egress;
use crate::fair::{FairTurn, FairTurns, HeldTurn, TurnCounts};
use crate::host::{Database, TriggerHost};
use crate::plugin_dir::PluginAreas;
use crate::records::{EngineRecords, InvocationRecord, LogRecord, Outcome};
use crate::spares::SpareMaker;
use sluice_catalog::{
    Catalog, DatabaseRef, DbId, LimitOverrides, Quotas, Runtime, Trigger, TriggerId,
};
use sluice_plugin_api::{
    HostServices, Invocation, InvocationError, LimitError, Limits, PluginCall, PluginExecutor,
    PluginRef, TriggerArguments, WarmPool, cpu_timed,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A semaphore's permits for `quota` (which [`Quotas::MAX`] keeps small).
fn permits(quota: u64) -> usize {
    usize::try_from(quota)
        .unwrap_or(Semaphore::MAX_PERMITS)
        .min(Semaphore::MAX_PERMITS)
}

/// The semaphore of `key` in `all` for `quota` turns; a changed quota takes effect for
/// the turns taken from now on.
fn semaphore<K: std::hash::Hash + Eq>(
    all: &Mutex<HashMap<K, (u64, Arc<Semaphore>)>>,
    key: K,
    quota: u64,
) -> Arc<Semaphore> {
    let mut all = all.lock().unwrap_or_else(PoisonError::into_inner);
    let entry = all
        .entry(key)
        .or_insert_with(|| (quota, Arc::new(Semaphore::new(permits(quota)))));
    if entry.0 != quota {
        *entry = (quota, Arc::new(Semaphore::new(permits(quota))));
    }
    Arc::clone(&entry.1)
}

/// How long a call to be refused when its database runs its quota of calls waits for
/// one of them to end first. A short queue takes bursts without refusing them, and a
/// caller that calls again as soon as it is refused (a flood) is slowed to one call per
/// wait on each connection: refusing it at once would let it spend the server's threads
/// on refusals, which other tenants' calls wait behind.
pub const REFUSE_AFTER: Duration = Duration::from_secs(1);

/// A turn of `turns`: once one is free, for at most [`REFUSE_AFTER`] when the call is to
/// be refused.
async fn take_turn(
    turns: Arc<Semaphore>,
    admission: Admission,
) -> Result<OwnedSemaphorePermit, ()> {
    // The semaphore is never closed.
    match admission {
        Admission::Refuse => {
            match tokio::time::timeout(REFUSE_AFTER, turns.acquire_owned()).await {
                Ok(Ok(turn)) => Ok(turn),
                _ => Err(()),
            }
        }
        Admission::Wait => turns.acquire_owned().await.map_err(drop),
    }
}

/// Each trigger's warm pool, with the plugin it was made for.
type Pools = HashMap<TriggerId, (String, Arc<dyn WarmPool>)>;

/// What every invocation needs: the executors, the database, the caches, the plugins.
pub struct Invoker {
    /// The WebAssembly sandbox (or, in tests, what stands for it).
    executor: Arc<dyn PluginExecutor>,
    /// The pyo3 runtime, when the operator enabled it.
    pyo3: Option<Arc<dyn PluginExecutor>>,
    storage: Arc<dyn Database>,
    cache: Arc<CacheStore>,
    plugins: Arc<PluginAreas>,
    limits: Limits,
    /// Keep instances warm between calls (else every call gets a fresh instance).
    warm: bool,
    pools: Mutex<Pools>,
    records: Arc<EngineRecords>,
    /// The server's quotas, and the catalog that holds each database's own.
    quotas: Option<(Arc<Catalog>, Quotas)>,
    /// The invocations each database may still start, for its quota of concurrent ones.
    turns: Mutex<HashMap<DbId, (u64, Arc<Semaphore>)>>,
    /// The invocations each trigger with a `max_concurrency` may still start.
    trigger_turns: Mutex<HashMap<TriggerId, (u64, Arc<Semaphore>)>>,
    /// Turns to run on the executor's instances, shared fairly between databases.
    fair: Option<Arc<FairTurns>>,
    /// Turns to run plugin code on the CPU, shared fairly between databases.
    cpu: Option<Arc<FairTurns>>,
    /// Where the calls nobody waits for run ([`crate::background`]); the current
    /// runtime when not set.
    background: Option<tokio::runtime::Handle>,
    /// What sends the plugins' outbound requests, within the server's allow-list.
    egress: Arc<Egress>,
}

/// The turns an invocation holds while it runs ([`Invoker::admit`]).
pub struct Admitted {
    _trigger: Option<OwnedSemaphorePermit>,
    _database: OwnedSemaphorePermit,
}

/// What becomes of a call when its database runs as many invocations as its quota
/// allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It waits for one to end (WAL and schedule triggers: nothing is lost).
    Wait,
    /// It waits [`REFUSE_AFTER`] at most, then it is refused (request triggers and test
    /// runs: the caller is told 429).
    Refuse,
}

/// Why a call of a trigger failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin failed (its exception, a limit, a missing file), or its batched writes
    /// did: the message, as the logs show it.
    #[error("{0}")]
    Failed(String),
    /// It never started: no instance could be had in time, every one the server may hold
    /// was running a call. It may be tried again; the message names the bound.
    #[error("{0}")]
    Busy(String),
}

/// A call refused because as many invocations run at once as a bound allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooManyInvocations {
    /// Its database's quota of concurrent invocations.
    #[error(
        "database '{database}' runs {quota} invocations at once already \
         (its max-concurrent-invocations quota)"
    )]
    Database {
        /// The database.
        database: String,
        /// Its quota.
        quota: u64,
    },
    /// Its trigger's `max_concurrency`.
    #[error("trigger '{trigger}' runs {max} invocations at once already (its max_concurrency)")]
    Trigger {
        /// The trigger.
        trigger: String,
        /// Its bound.
        max: u64,
    },
}

impl Invoker {
    /// Runs plugins from `plugins` with `executor` within `limits`, on `storage`;
    /// with `warm`, on instances kept loaded per trigger.
    pub fn new(
        executor: Arc<dyn PluginExecutor>,
        storage: Arc<dyn Database>,
        cache: Arc<CacheStore>,
        plugins: Arc<PluginAreas>,
        limits: Limits,
        warm: bool,
    ) -> Self {
        Self {
            executor,
            pyo3: None,
            storage,
            cache,
            plugins,
            limits,
            warm,
            pools: Mutex::default(),
            records: Arc::default(),
            quotas: None,
            turns: Mutex::default(),
            trigger_turns: Mutex::default(),
            fair: None,
            cpu: None,
            background: None,
            egress: Arc::new(Egress::none()),
        }
    }

    /// The same invoker, running the plugins of [`Runtime::Pyo3`] triggers with `pyo3`.
    pub fn with_pyo3(mut self, pyo3: Arc<dyn PluginExecutor>) -> Self {
        self.pyo3 = Some(pyo3);
        self
    }

    /// Whether the server runs plugins on `runtime`.
    pub fn runs(&self, runtime: Runtime) -> bool {
        match runtime {
            Runtime::Wasm => true,
            Runtime::Pyo3 => self.pyo3.is_some(),
        }
    }

    /// What runs plugins on `runtime`.
    ///
    /// # Errors
    ///
    /// The server does not run it (a trigger's runtime was enabled when it was created,
    /// and may not be now).
    fn executor(&self, runtime: Runtime) -> Result<&Arc<dyn PluginExecutor>, String> {
        match runtime {
            Runtime::Wasm => Ok(&self.executor),
            Runtime::Pyo3 => self.pyo3.as_ref().ok_or_else(|| {
                "the plugin runs on the pyo3 runtime, which this server does not enable \
                 (sluice serve --plugin-runtimes wasm,pyo3)"
                    .to_string()
            }),
        }
    }

    /// The same invoker, letting plugins send requests with `egress` to the destinations
    /// their triggers are granted within its allow-list.
    pub fn with_egress(mut self, egress: Egress) -> Self {
        self.egress = Arc::new(egress);
        self
    }

    /// What sends the plugins' outbound requests.
    pub fn egress(&self) -> &Egress {
        &self.egress
    }

    /// The same invoker, running at most as many calls at once as `turns` give, shared
    /// fairly between databases (the executor's instances: more would only wait there,
    /// first come first served).
    pub fn with_fair_turns(mut self, turns: Arc<FairTurns>) -> Self {
        self.fair = Some(turns);
        self
    }

    /// The same invoker, running plugin code of at most as many calls at once as `turns`
    /// give ([`FairTurns::cpu`]), shared fairly between databases at each epoch tick.
    pub fn with_cpu_turns(mut self, turns: Arc<FairTurns>) -> Self {
        self.cpu = Some(turns);
        self
    }

    /// The same invoker, running WAL and schedule triggers on `background`, a runtime of
    /// lower priority ([`crate::background::runtime`]).
    pub fn with_background(mut self, background: tokio::runtime::Handle) -> Self {
        self.background = Some(background);
        self
    }

    /// Starts `task`, which runs calls nobody waits for, on the background runtime, or
    /// on the current one when there is none.
    pub(crate) fn spawn_background<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.background {
            Some(background) => background.spawn(task),
            None => tokio::spawn(task),
        }
    }

    /// Has the executor keep `count` spare instances ready, made in the server's own
    /// turns on the CPU ([`crate::spares`]). Call it within the async runtime.
    pub fn keep_spares(&self, count: usize) {
        let maker = SpareMaker::new(self.cpu.as_ref());
        Arc::clone(&self.executor).keep_spares(count, Arc::new(maker));
    }

    /// A turn on the CPU for a call of `database`, when the CPU is shared out.
    async fn cpu_turn(&self, database: DbId) -> Option<HeldTurn> {
        match &self.cpu {
            Some(turns) => Some(HeldTurn::take(turns, database).await),
            None => None,
        }
    }

    /// Running and waiting calls per database, when turns are shared out.
    pub fn turn_counts(&self) -> Option<TurnCounts> {
        self.fair.as_ref().map(|fair| fair.counts())
    }

    /// The same invoker, holding each database to `quotas` (the server's), with the
    /// database's own from `catalog`. Without, nothing is bounded per database.
    pub fn with_quotas(mut self, catalog: Arc<Catalog>, quotas: Quotas) -> Self {
        self.quotas = Some((catalog, quotas));
        self
    }

    /// The quotas of `database`: the server's with its own.
    pub fn quotas_of(&self, database: &str) -> Quotas {
        match &self.quotas {
            Some((catalog, quotas)) => quotas.with(&catalog.quota_overrides(database)),
            None => Quotas::MAX,
        }
    }

    /// The turns to run an invocation of `trigger` (none for a test run) of `database`:
    /// within the trigger's `max_concurrency` first, so that its calls beyond it hold
    /// none of the database's, then within the database's quota of concurrent ones;
    /// held until the invocation ends.
    ///
    /// # Errors
    ///
    /// With [`Admission::Refuse`], [`TooManyInvocations`] when either has none free.
    pub async fn admit(
        &self,
        database: &DatabaseRef,
        trigger: Option<&Trigger>,
        admission: Admission,
    ) -> Result<Admitted, TooManyInvocations> {
        let own = match trigger {
            Some(trigger) => self.admit_trigger(trigger, admission).await?,
            None => None,
        };
        let database = self.admit_database(database, admission).await?;
        Ok(Admitted {
            _trigger: own,
            _database: database,
        })
    }

    /// A turn within `database`'s quota of concurrent invocations.
    async fn admit_database(
        &self,
        database: &DatabaseRef,
        admission: Admission,
    ) -> Result<OwnedSemaphorePermit, TooManyInvocations> {
        let quota = self.quotas_of(&database.name).concurrent_invocations;
        let turns = semaphore(&self.turns, database.id, quota);
        let refused = || TooManyInvocations::Database {
            database: database.name.clone(),
            quota,
        };
        take_turn(turns, admission).await.map_err(|()| refused())
    }

    /// A turn within `trigger`'s `max_concurrency`, if it has one.
    async fn admit_trigger(
        &self,
        trigger: &Trigger,
        admission: Admission,
    ) -> Result<Option<OwnedSemaphorePermit>, TooManyInvocations> {
        let Some(max) = trigger.trigger_settings.max_concurrency else {
            return Ok(None);
        };
        let turns = semaphore(&self.trigger_turns, trigger.id, max);
        let refused = || TooManyInvocations::Trigger {
            trigger: trigger.trigger_name.clone(),
            max,
        };
        take_turn(turns, admission)
            .await
            .map(Some)
            .map_err(|()| refused())
    }

    /// Forgets the turns of the triggers for which `keep` is false (deleted ones).
    pub fn retain_trigger_turns(&self, keep: impl Fn(TriggerId) -> bool) {
        self.trigger_turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|trigger, _| keep(*trigger));
    }

    /// Forgets the turns of the databases for which `gone` holds (deleted ones).
    pub fn forget_turns(&self, gone: impl Fn(DbId) -> bool) {
        self.turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|database, _| !gone(*database));
    }

    /// The limits of a trigger's invocations: the server's, with the trigger's overrides.
    ///
    /// # Errors
    ///
    /// An override the executor cannot honour: zero, or more memory than an instance may
    /// have.
    pub fn limits_for(&self, overrides: &LimitOverrides) -> Result<Limits, LimitError> {
        let limits = self.limits.with(overrides);
        limits.check(self.executor.max_memory_bytes())?;
        Ok(limits)
    }

    /// What the executor's instances are now.
    pub fn instance_stats(&self) -> Option<sluice_plugin_api::InstanceStats> {
        self.executor.instance_stats()
    }

    /// The server's limits of each invocation.
    pub fn server_limits(&self) -> &Limits {
        &self.limits
    }

    /// Recent log lines and invocations of every trigger.
    pub fn records(&self) -> &Arc<EngineRecords> {
        &self.records
    }

    /// The caches of every trigger.
    pub fn cache(&self) -> &Arc<CacheStore> {
        &self.cache
    }

    /// Where the plugins are.
    pub fn plugins(&self) -> &Arc<PluginAreas> {
        &self.plugins
    }

    fn pools(&self) -> std::sync::MutexGuard<'_, Pools> {
        self.pools.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The warm pool of `trigger`, made on first use (and anew when its plugin changed).
    fn pool(&self, trigger: &Trigger, plugin: &PluginRef) -> Option<Arc<dyn WarmPool>> {
        // The pyo3 runtime keeps its loaded plugins itself.
        if !self.warm || !trigger.runtime.is_wasm() {
            return None;
        }
        let mut pools = self.pools();
        if let Some((name, pool)) = pools.get(&trigger.id)
            && *name == trigger.plugin_filename
        {
            return Some(Arc::clone(pool));
        }
        let pool = Arc::clone(&self.executor).warm_pool(plugin.clone())?;
        pools.insert(
            trigger.id,
            (trigger.plugin_filename.clone(), Arc::clone(&pool)),
        );
        Some(pool)
    }

    /// Drops the warm instances of the triggers for which `keep(trigger)` is false.
    pub fn retain_pools(&self, keep: impl Fn(TriggerId) -> bool) {
        self.pools().retain(|trigger, _| keep(*trigger));
    }

    /// Runs `call` for `trigger` of `database`; batched writes are durable when this
    /// returns.
    ///
    /// # Errors
    ///
    /// [`CallError::Failed`]: the plugin's failure (its exception, a limit, a missing
    /// file) or the failure of its batched writes; [`CallError::Busy`]: the call could not
    /// start, for want of an instance (not recorded as an invocation: it ran nothing).
    pub async fn invoke(
        &self,
        database: &DatabaseRef,
        trigger: &Trigger,
        call: PluginCall,
    ) -> Result<Invocation, CallError> {
        let plugin = self.plugins.plugin(
            trigger.plugin_area,
            database.id,
            &trigger.plugin_filename,
            trigger.reach.is_tenants(),
        );
        // Counted for the trigger; nothing ran, so no invocation is recorded.
        let not_started = |why: String| {
            self.records
                .metrics()
                .not_started(&database.name, &trigger.trigger_name);
            CallError::Busy(why)
        };
        let turn = match &self.fair {
            Some(fair) => {
                let taken = fair.take(database.id).await;
                let waited = taken
                    .as_ref()
                    .map_or_else(|refused| refused.wait, FairTurn::waited);
                if !waited.is_zero() {
                    self.records
                        .metrics()
                        .queued(&database.name, &trigger.trigger_name, waited);
                }
                Some(taken.map_err(|refused| not_started(refused.to_string()))?)
            }
            None => None,
        };
        let cpu_turn = self.cpu_turn(database.id).await;
        let limits = self.limits.with(&trigger.limits);
        let host = Arc::new(
            TriggerHost::new(
                database,
                trigger,
                (&limits, &self.quotas_of(&database.name)),
                Arc::clone(&self.storage),
                Arc::clone(&self.cache),
                Arc::clone(&self.records),
            )
            .with_cpu_turn(cpu_turn.clone())
            .with_egress(Arc::clone(&self.egress)),
        );
        let started = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let clock = std::time::Instant::now();
        let services = Arc::clone(&host) as Arc<dyn HostServices>;
        // A limit the executor cannot honour, or a runtime the server does not run,
        // fails the call, recorded like any failure.
        let run = async {
            let executor = self
                .executor(trigger.runtime)
                .map_err(InvocationError::Plugin)?;
            match limits.check(executor.max_memory_bytes()) {
                Err(refused) => Err(InvocationError::Plugin(refused.to_string())),
                Ok(()) => match self.pool(trigger, &plugin) {
                    Some(pool) => pool.run(call, &limits, services).await,
                    None => executor.run(&plugin, call, &limits, services).await,
                },
            }
        };
        let (outcome, cpu) = cpu_timed(run).await;
        // Given up before the batched writes wait for their flush: the instance and the
        // CPU are free.
        drop(turn);
        if let Some(cpu_turn) = &cpu_turn {
            cpu_turn.release();
        }
        if let Err(InvocationError::Busy(why)) = outcome {
            return Err(not_started(why));
        }
        let write_errors = host.apply_writes().await;
        let result = outcome
            .map_err(|error| match error {
                InvocationError::Plugin(message) => message,
                other => other.to_string(),
            })
            .and_then(|invocation| match write_errors.into_iter().next() {
                Some(error) => Err(format!("the plugin's writes failed: {error}")),
                None => Ok(invocation),
            });
        // A failed call is charged what it used until it failed.
        let usage = host.usage();
        self.records.invocation(InvocationRecord {
            database: database.clone(),
            trigger: trigger.trigger_name.clone(),
            start_ns: started,
            duration_ns: i64::try_from(clock.elapsed().as_nanos()).unwrap_or(i64::MAX),
            peak_memory_bytes: usage.peak_memory_bytes,
            bytes_written: usage.bytes_written,
            cpu_ns: u64::try_from((cpu + usage.cpu_elsewhere).as_nanos()).unwrap_or(u64::MAX),
            query_rows: host.query_rows(),
            http_requests: host.http_usage().requests,
            http_response_bytes: host.http_usage().response_bytes,
            tmp_bytes: usage.tmp_bytes,
            outcome: if result.is_ok() {
                Outcome::Success
            } else {
                Outcome::Error
            },
            error: result.as_ref().err().cloned(),
        });
        result.map_err(CallError::Failed)
    }

    /// Records a failure of `trigger` on `database` as an ERROR line of the trigger in
    /// `system.processing_engine_logs`, where upstream's users look for it.
    pub fn log_error(&self, database: &DatabaseRef, trigger: &str, text: String) {
        self.records.log(LogRecord {
            time_ns: chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            database: database.clone(),
            trigger: trigger.to_string(),
            level: "ERROR",
            text,
        });
    }
}

impl Invoker {
    /// Runs `call` once on `plugin` for a trigger on `database`, on `runtime` (on a fresh
    /// instance, in the sandbox), without writing anything: what the plugin test
    /// endpoints do.
    /// Queries are real; writes are collected and validated; caches are the test
    /// namespaces of `cache_name`. Unless `reaches_others`, the plugin may name no other
    /// database than `database`.
    ///
    /// # Errors
    ///
    /// The plugin file cannot be read (missing, outside the plugin directory), or the
    /// server does not run `runtime`; every other failure is in the report.
    pub async fn dry_run(
        &self,
        database: &DatabaseRef,
        (plugin, runtime): (PluginRef, Runtime),
        call: PluginCall,
        cache_name: &str,
        reaches_others: bool,
    ) -> Result<DryRunReport, InvocationError> {
        plugin.read()?;
        let executor = self.executor(runtime).map_err(InvocationError::Plugin)?;
        let quotas = self.quotas_of(&database.name);
        // Test runs share the CPU with the triggers' calls.
        let cpu_turn = self.cpu_turn(database.id).await;
        let mut host = DryRunHost::new(
            database.name.as_str(),
            &self.limits,
            Arc::clone(&self.cache),
            cache_name,
        )
        .with_queries(Arc::clone(&self.storage))
        .counted(database.id, &quotas)
        .with_cpu_turn(cpu_turn.clone());
        if !reaches_others {
            host = host.own_database_only();
        }
        let report = dry_run(
            executor.as_ref(),
            &plugin,
            call,
            &self.limits,
            Arc::new(host),
        )
        .await;
        if let Some(cpu_turn) = &cpu_turn {
            cpu_turn.release();
        }
        Ok(report)
    }
}

/// A trigger's arguments as a call takes them.
pub fn arguments(trigger: &Trigger) -> TriggerArguments {
    trigger
        .trigger_arguments
        .as_ref()
        .map(|map| map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}
