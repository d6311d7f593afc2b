//! The plugin cache: bytes by key, in namespaces, with an optional time to live.
//!
//! Values are opaque bytes (the Python layer pickles them), so a value read back is a
//! copy, never the stored object itself.
//!
//! Every namespace is bounded in bytes (its keys and values): a trigger's own cache by
//! the trigger's limit ([`Limits::cache_bytes`](sluice_plugin_api::Limits)), a database's
//! shared cache by the store's [`shared bound`](CacheStore::shared_bound). A value that
//! would pass the bound is refused, and the plugin told which bound it met; expired
//! entries are dropped first to make room.

use sluice_catalog::{DbId, TriggerId};
use sluice_plugin_api::size_text;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Which cache a key lives in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// A trigger's own cache, dropped when the trigger stops.
    Trigger {
        /// The trigger's database, whose quota its cache counts against.
        database: DbId,
        /// The trigger.
        trigger: TriggerId,
        /// Which run of the trigger (see [`CacheStore::trigger_namespace`]).
        run: u64,
    },
    /// Shared by the triggers of one database, never across databases (one created
    /// again under the name of a deleted one is another id, and starts afresh).
    Database {
        /// The database.
        database: DbId,
        /// Which run of the database's cache (see [`CacheStore::database_namespace`]).
        run: u64,
    },
    /// The trigger-local cache of test runs on a database with a cache name. A tenant's
    /// test runs never share one with the admin's, whose may reach every database.
    Test {
        /// The database the test runs for (0 when it does not exist, or runs locally).
        database: DbId,
        /// Whether a database token runs the tests.
        tenant: bool,
        /// The cache name of the test runs.
        name: String,
    },
    /// The shared cache of test runs on a database with a cache name.
    TestShared {
        /// The database the test runs for (0 when it does not exist, or runs locally).
        database: DbId,
        /// Whether a database token runs the tests.
        tenant: bool,
        /// The cache name of the test runs.
        name: String,
    },
}

impl Namespace {
    /// The database whose caches, together, its entries count against (a test run's
    /// too).
    fn database(&self) -> Option<DbId> {
        match self {
            Self::Trigger { database, .. }
            | Self::Database { database, .. }
            | Self::Test { database, .. }
            | Self::TestShared { database, .. } => Some(*database),
        }
    }

    /// Whether the triggers of a database share it.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Database { .. } | Self::TestShared { .. })
    }

    /// The namespace as a cache error names it.
    fn which(&self) -> &'static str {
        if self.is_shared() {
            "the database's shared cache"
        } else {
            "the trigger's cache"
        }
    }

    /// Test caches give entries without a time to live this one, as upstream does.
    fn default_ttl(&self) -> Option<Duration> {
        match self {
            Self::Test { .. } | Self::TestShared { .. } => Some(Duration::from_secs(30 * 60)),
            Self::Trigger { .. } | Self::Database { .. } => None,
        }
    }
}

struct Entry {
    /// Shared, so that a read copies it out after the lock is let go: the lock is every
    /// tenant's, and a value may be as large as a namespace's bound.
    value: Arc<Vec<u8>>,
    expires_at: Option<Instant>,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// The entries of one namespace, and the bytes of their keys and values.
#[derive(Default)]
struct Entries {
    map: HashMap<String, Entry>,
    bytes: u64,
    /// No entry expires before this (it may be earlier than the earliest, never later).
    next_expiry: Option<Instant>,
}

/// What the host holds for an entry besides its key and value.
pub const ENTRY_OVERHEAD: u64 = 64;

fn size(key: &str, entry: &Entry) -> u64 {
    (key.len() + entry.value.len()) as u64 + ENTRY_OVERHEAD
}

impl Entries {
    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.map.remove(key)?;
        self.bytes -= size(key, &entry);
        Some(entry)
    }

    fn insert(&mut self, key: String, entry: Entry) {
        self.remove(&key);
        self.bytes += size(&key, &entry);
        if let Some(at) = entry.expires_at {
            self.next_expiry = Some(self.next_expiry.map_or(at, |next| next.min(at)));
        }
        self.map.insert(key, entry);
    }

    /// Drops the expired entries; looks at them only when one may have expired, so that
    /// refused puts do not scan a full cache again and again.
    fn drop_expired(&mut self, now: Instant) {
        if self.next_expiry.is_none_or(|next| next > now) {
            return;
        }
        self.next_expiry = None;
        let (bytes, next_expiry) = (&mut self.bytes, &mut self.next_expiry);
        self.map.retain(|key, entry| {
            let live = entry.is_live(now);
            if !live {
                *bytes -= size(key, entry);
            } else if let Some(at) = entry.expires_at {
                *next_expiry = Some(next_expiry.map_or(at, |next| next.min(at)));
            }
            live
        });
    }
}

/// A value the cache refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The namespace would hold more than its bound.
    #[error(
        "cache limit of {} exceeded: {which} holds {} and the new entry is {}",
        size_text(*bound), size_text(*held), size_text(*entry)
    )]
    Full {
        /// The namespace's bound, in bytes.
        bound: u64,
        /// "the trigger's cache" or "the database's shared cache".
        which: &'static str,
        /// What it holds, in bytes.
        held: u64,
        /// The key and value refused, in bytes.
        entry: u64,
    },
}

/// The bound of each database's shared cache unless set otherwise: 256 MiB.
pub const DEFAULT_SHARED_BOUND: u64 = 256 << 20;

/// The caches' entries, and the bytes each database's hold together.
#[derive(Default)]
struct Held {
    namespaces: HashMap<Namespace, Entries>,
    by_database: HashMap<DbId, u64>,
}

impl Held {
    /// Runs `change` on the entries of `namespace` (made if missing), keeping its
    /// database's total in step.
    fn change<T>(&mut self, namespace: &Namespace, change: impl FnOnce(&mut Entries) -> T) -> T {
        let entries = self.namespaces.entry(namespace.clone()).or_default();
        let before = entries.bytes;
        let value = change(entries);
        let after = entries.bytes;
        self.count(namespace, before, after);
        value
    }

    /// Moves `namespace`'s database's total from `before` to `after` bytes of it.
    fn count(&mut self, namespace: &Namespace, before: u64, after: u64) {
        if let Some(database) = namespace.database() {
            let total = self.by_database.entry(database).or_default();
            *total = (*total + after).saturating_sub(before);
            if *total == 0 {
                self.by_database.remove(&database);
            }
        }
    }
}

/// All plugin caches of a process.
pub struct CacheStore {
    held: Mutex<Held>,
    /// The bound of each database's shared cache.
    shared_bound: u64,
    /// The current run of each trigger that had a call, and of each database's shared
    /// cache: it changes each time the trigger stops or the database is deleted, so that
    /// a call still running then (its plugin cannot be stopped halfway through a host
    /// call) reaches only the cache of its own, ended, run.
    runs: Mutex<HashMap<RunOf, u64>>,
}

/// What a run is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum RunOf {
    Trigger(TriggerId),
    Database(DbId),
}

impl Default for CacheStore {
    fn default() -> Self {
        Self::new(DEFAULT_SHARED_BOUND)
    }
}

impl CacheStore {
    /// An empty store whose databases' shared caches hold at most `shared_bound` bytes
    /// each.
    pub fn new(shared_bound: u64) -> Self {
        Self {
            held: Mutex::default(),
            shared_bound,
            runs: Mutex::default(),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bytes the caches of `database` (its triggers' and its shared one) hold.
    pub fn held_by(&self, database: DbId) -> u64 {
        self.held().by_database.get(&database).copied().unwrap_or(0)
    }

    /// The bound of each database's shared cache, in bytes.
    pub fn shared_bound(&self) -> u64 {
        self.shared_bound
    }

    /// The value of `key`, unless missing or expired (an expired entry is removed).
    pub fn get(&self, namespace: &Namespace, key: &str) -> Option<Vec<u8>> {
        let value = {
            let mut held = self.held();
            let now = Instant::now();
            match held.namespaces.get(namespace)?.map.get(key) {
                Some(entry) if entry.is_live(now) => Arc::clone(&entry.value),
                Some(_) => {
                    held.change(namespace, |entries| entries.remove(key));
                    return None;
                }
                None => return None,
            }
        };
        Some(value.as_ref().clone())
    }

    /// Stores `value`, replacing any previous value and its expiry, if the namespace then
    /// holds at most `bound` bytes, and its database's caches together at most
    /// `database_bound`.
    ///
    /// # Errors
    ///
    /// [`CacheError::Full`]; the previous value, if any, is kept.
    pub fn put(
        &self,
        namespace: &Namespace,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        bound: u64,
        database_bound: u64,
    ) -> Result<(), CacheError> {
        let ttl = ttl.or_else(|| namespace.default_ttl());
        let now = Instant::now();
        let expires_at = ttl.and_then(|ttl| now.checked_add(ttl));
        let entry = Entry {
            value: Arc::new(value),
            expires_at,
        };
        let added = size(key, &entry);
        let mut held = self.held();
        let replaced = |entries: &Entries| entries.map.get(key).map_or(0, |old| size(key, old));
        let own = held.change(namespace, |entries| {
            if entries.bytes - replaced(entries) + added > bound {
                entries.drop_expired(now);
            }
            entries.bytes - replaced(entries)
        });
        if own + added > bound {
            return Err(CacheError::Full {
                bound,
                which: namespace.which(),
                held: own,
                entry: added,
            });
        }
        if let Some(database) = namespace.database() {
            let total = held.by_database.get(&database).copied().unwrap_or(0);
            let replaced = held.namespaces.get(namespace).map_or(0, replaced);
            let together = total - replaced;
            if together + added > database_bound {
                return Err(CacheError::Full {
                    bound: database_bound,
                    which: "the database's caches together (its max-cache-bytes quota)",
                    held: together,
                    entry: added,
                });
            }
        }
        held.change(namespace, |entries| entries.insert(key.to_string(), entry));
        Ok(())
    }

    /// Removes `key`; true if a live value was there.
    pub fn delete(&self, namespace: &Namespace, key: &str) -> bool {
        let mut held = self.held();
        if !held.namespaces.contains_key(namespace) {
            return false;
        }
        held.change(namespace, |entries| entries.remove(key))
            .is_some_and(|entry| entry.is_live(Instant::now()))
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<RunOf, u64>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current run of `key`.
    fn current_run(&self, key: RunOf) -> u64 {
        *self.runs().entry(key).or_insert(0)
    }

    /// The cache of the current run of `trigger` of `database`, for a call starting now.
    pub fn trigger_namespace(&self, database: DbId, trigger: TriggerId) -> Namespace {
        Namespace::Trigger {
            database,
            trigger,
            run: self.current_run(RunOf::Trigger(trigger)),
        }
    }

    /// The shared cache of the current run of `database`, for a call starting now.
    pub fn database_namespace(&self, database: DbId) -> Namespace {
        Namespace::Database {
            database,
            run: self.current_run(RunOf::Database(database)),
        }
    }

    /// Ends the current run of each trigger for which `ended(trigger)` holds: its cache
    /// is dropped, and calls that started before reach a cache no later call reads. Also
    /// drops what such calls left in the caches of ended runs.
    pub fn end_triggers(&self, ended: impl Fn(TriggerId) -> bool) {
        self.end_runs(|run| matches!(run, RunOf::Trigger(trigger) if ended(*trigger)));
    }

    /// [`Self::end_triggers`] for the shared caches of the databases for which
    /// `ended(database)` holds (deleted ones).
    pub fn end_databases(&self, ended: impl Fn(DbId) -> bool) {
        self.end_runs(|run| matches!(run, RunOf::Database(database) if ended(*database)));
    }

    /// Ends the runs for which `ended` holds, then keeps only the caches of current runs,
    /// and of those only the live entries.
    fn end_runs(&self, ended: impl Fn(&RunOf) -> bool) {
        let mut runs = self.runs();
        for (key, run) in runs.iter_mut() {
            if ended(key) {
                *run += 1;
            }
        }
        let current = |key: RunOf, run: &u64| runs.get(&key) == Some(run);
        let now = Instant::now();
        let mut held = self.held();
        let mut counted = Vec::new();
        held.namespaces.retain(|namespace, entries| {
            let before = entries.bytes;
            entries.drop_expired(now);
            let kept = match namespace {
                Namespace::Trigger { trigger, run, .. } => current(RunOf::Trigger(*trigger), run),
                Namespace::Database { database, run } => current(RunOf::Database(*database), run),
                // Test runs' caches live until they expire, or their database goes.
                Namespace::Test { database, .. } | Namespace::TestShared { database, .. } => {
                    !ended(&RunOf::Database(*database))
                }
            } && !entries.map.is_empty();
            let after = if kept { entries.bytes } else { 0 };
            if after != before {
                counted.push((namespace.clone(), before, after));
            }
            kept
        });
        for (namespace, before, after) in counted {
            held.count(&namespace, before, after);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: DbId = DbId::new(1);
    const OTHER_DB: DbId = DbId::new(2);
    const T: TriggerId = TriggerId::new(1);
    const OTHER_T: TriggerId = TriggerId::new(2);

    #[test]
    fn namespaces_are_separate_and_ttl_expires() {
        let store = CacheStore::default();
        let local = store.trigger_namespace(DB, T);
        let shared = store.database_namespace(DB);
        store
            .put(&local, "k", b"local".to_vec(), None, u64::MAX, u64::MAX)
            .expect("fits");
        store
            .put(&shared, "k", b"shared".to_vec(), None, u64::MAX, u64::MAX)
            .expect("fits");
        assert_eq!(store.get(&local, "k").as_deref(), Some(&b"local"[..]));
        assert_eq!(store.get(&shared, "k").as_deref(), Some(&b"shared"[..]));
        assert_eq!(store.get(&store.database_namespace(OTHER_DB), "k"), None);

        store
            .put(
                &local,
                "gone",
                b"x".to_vec(),
                Some(Duration::ZERO),
                u64::MAX,
                u64::MAX,
            )
            .expect("fits");
        assert_eq!(store.get(&local, "gone"), None);
        assert!(!store.delete(&local, "gone"));
        assert!(store.delete(&local, "k"));
        assert!(!store.delete(&local, "k"));
    }

    #[test]
    fn each_namespace_holds_at_most_its_bound() {
        // An entry weighs its key, its value and 64 bytes.
        let bound = 2 * ENTRY_OVERHEAD + 12;
        let store = CacheStore::new(4);
        let own = store.trigger_namespace(DB, T);
        store
            .put(&own, "k", vec![0; 8], None, bound, u64::MAX)
            .expect("fits");
        store
            .put(&own, "k", vec![0; 75], None, bound, u64::MAX)
            .expect("a replaced value counts once");
        let refused = store
            .put(&own, "j", vec![0; 64], None, bound, u64::MAX)
            .expect_err("does not fit");
        assert_eq!(
            refused.to_string(),
            "cache limit of 140 bytes exceeded: the trigger's cache holds 140 bytes and the \
             new entry is 129 bytes"
        );
        assert_eq!(store.get(&own, "k").map(|v| v.len()), Some(75), "kept");
        assert!(store.delete(&own, "k"));
        store
            .put(
                &own,
                "old",
                vec![0; 9],
                Some(Duration::ZERO),
                bound,
                u64::MAX,
            )
            .expect("fits");
        store
            .put(&own, "new", vec![0; 60], None, bound, u64::MAX)
            .expect("the expired entry made room");

        let other = store.trigger_namespace(DB, OTHER_T);
        store
            .put(&other, "k", vec![0; 75], None, bound, u64::MAX)
            .expect("another trigger's cache is counted apart");
        let shared = store.database_namespace(DB);
        assert_eq!(store.shared_bound(), 4);
        let refused = store
            .put(
                &shared,
                "k",
                vec![0; 4],
                None,
                store.shared_bound(),
                u64::MAX,
            )
            .expect_err("over the shared bound");
        assert!(
            refused
                .to_string()
                .contains("the database's shared cache holds 0 bytes"),
            "{refused}"
        );
    }

    #[test]
    fn a_database_created_again_does_not_share_the_cache_of_the_deleted_one() {
        let store = CacheStore::default();
        let first = store.database_namespace(DB);
        let other = store.database_namespace(OTHER_DB);
        let trigger = store.trigger_namespace(DB, T);
        store
            .put(&first, "k", b"1".to_vec(), None, u64::MAX, u64::MAX)
            .expect("fits");
        store
            .put(&other, "k", b"1".to_vec(), None, u64::MAX, u64::MAX)
            .expect("fits");
        store
            .put(&trigger, "k", b"1".to_vec(), None, u64::MAX, u64::MAX)
            .expect("fits");
        store
            .put(
                &trigger,
                "expired",
                b"1".to_vec(),
                Some(Duration::ZERO),
                u64::MAX,
                u64::MAX,
            )
            .expect("fits");

        store.end_databases(|database| database == DB);
        assert_eq!(store.get(&first, "k"), None);
        // A call of a trigger of the deleted database goes on after the deletion.
        store
            .put(&first, "late", b"1".to_vec(), None, u64::MAX, u64::MAX)
            .expect("fits");

        let second = store.database_namespace(DB);
        assert_ne!(first, second);
        assert_eq!(store.get(&second, "late"), None);
        assert_eq!(store.get(&other, "k").as_deref(), Some(&b"1"[..]));
        assert_eq!(store.get(&trigger, "k").as_deref(), Some(&b"1"[..]));

        // The next reconciliation drops what the late call left, and expired entries.
        store.end_databases(|_| false);
        assert_eq!(store.get(&first, "late"), None);
        assert_eq!(store.database_namespace(DB), second);
        let held = store.held();
        assert!(!held.namespaces.contains_key(&first));
        assert!(!held.namespaces[&trigger].map.contains_key("expired"));
    }

    #[test]
    fn a_databases_caches_together_stay_within_its_quota_and_are_counted() {
        let store = CacheStore::default();
        let (own, other, shared) = (
            store.trigger_namespace(DB, T),
            store.trigger_namespace(DB, OTHER_T),
            store.database_namespace(DB),
        );
        let entry = |bytes: usize| vec![0_u8; bytes];
        // Each entry weighs its key (1 byte), its value and the overhead.
        let weight = |bytes: usize| 1 + bytes as u64 + ENTRY_OVERHEAD;
        let quota = weight(100) * 3;
        let put = |namespace: &Namespace, key: &str, bytes: usize| {
            store.put(namespace, key, entry(bytes), None, u64::MAX, quota)
        };
        put(&own, "a", 100).expect("fits");
        put(&shared, "b", 100).expect("fits");
        assert_eq!(store.held_by(DB), weight(100) * 2);
        let refused = put(&other, "c", 200).expect_err("over the database's quota");
        assert!(
            refused.to_string().contains("max-cache-bytes quota"),
            "{refused}"
        );
        // Replacing a value counts its new size only; another database is not held back.
        put(&own, "a", 50).expect("smaller");
        put(&other, "c", 50).expect("fits now");
        store
            .put(
                &store.database_namespace(OTHER_DB),
                "d",
                entry(100),
                None,
                u64::MAX,
                quota,
            )
            .expect("another database's own quota");
        assert_eq!(store.held_by(DB), weight(50) + weight(100) + weight(50));
        assert!(store.delete(&own, "a"));
        assert_eq!(store.held_by(DB), weight(100) + weight(50));
        // A stopped trigger's cache goes, and its bytes with it.
        store.end_triggers(|trigger| trigger == OTHER_T);
        assert_eq!(store.held_by(DB), weight(100));
        store.end_databases(|database| database == DB);
        assert_eq!(store.held_by(DB), 0);
        assert_eq!(store.held_by(OTHER_DB), weight(100));
    }

    #[test]
    fn a_call_from_before_its_trigger_stopped_leaves_nothing_for_the_next_run() {
        let store = CacheStore::default();
        let first = store.trigger_namespace(DB, T);
        let other = store.trigger_namespace(DB, OTHER_T);
        store
            .put(&first, "started", b"1".to_vec(), None, u64::MAX, u64::MAX)
            .expect("fits");
        store
            .put(&other, "kept", b"1".to_vec(), None, u64::MAX, u64::MAX)
            .expect("fits");

        store.end_triggers(|trigger| trigger == T);
        // The call of the first run goes on after the stop.
        assert_eq!(store.get(&first, "started"), None);
        store
            .put(&first, "late", b"1".to_vec(), None, u64::MAX, u64::MAX)
            .expect("fits");

        let second = store.trigger_namespace(DB, T);
        assert_ne!(first, second);
        assert_eq!(store.get(&second, "started"), None);
        assert_eq!(store.get(&second, "late"), None);
        assert_eq!(store.get(&other, "kept").as_deref(), Some(&b"1"[..]));

        // The next reconciliation drops what the late call left.
        store.end_triggers(|_| false);
        assert_eq!(store.get(&first, "late"), None);
        assert_eq!(store.trigger_namespace(DB, T), second);
    }
}
