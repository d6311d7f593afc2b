//! The plugin cache: bytes by key, in namespaces, with an optional time to live.
//!
//! Values are opaque bytes (the Python layer pickles them), so a value read back is a
//! copy, never the stored object itself.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Which cache a key lives in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// A trigger's own cache, dropped when the trigger stops.
    Trigger {
        /// The trigger's database.
        database: String,
        /// The trigger's name.
        trigger: String,
        /// Which run of the trigger (see [`CacheStore::trigger_namespace`]).
        run: u64,
    },
    /// Shared by the triggers of one database, never across databases.
    Database {
        /// The database.
        database: String,
        /// Which run of the database (see [`CacheStore::database_namespace`]): one
        /// created again under the name of a deleted one starts afresh.
        run: u64,
    },
    /// The trigger-local cache of test runs with this cache name.
    Test(String),
    /// The shared cache of test runs with this cache name.
    TestShared(String),
}

impl Namespace {
    /// Test caches give entries without a time to live this one, as upstream does.
    fn default_ttl(&self) -> Option<Duration> {
        match self {
            Self::Test(_) | Self::TestShared(_) => Some(Duration::from_secs(30 * 60)),
            Self::Trigger { .. } | Self::Database { .. } => None,
        }
    }
}

struct Entry {
    value: Vec<u8>,
    expires_at: Option<Instant>,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// All plugin caches of a process.
#[derive(Default)]
pub struct CacheStore {
    namespaces: Mutex<HashMap<Namespace, HashMap<String, Entry>>>,
    /// The current run of each trigger that had a call, by (database, Some(trigger)), and
    /// of each database's shared cache, by (database, None): it changes each time the
    /// trigger stops or the database is deleted, so that a call still running then (its
    /// plugin cannot be stopped halfway through a host call) reaches only the cache of
    /// its own, ended, run.
    runs: Mutex<HashMap<RunOf, u64>>,
}

/// What a run is of: (database, Some(trigger)) or (database, None).
type RunOf = (String, Option<String>);

impl CacheStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`, unless missing or expired (an expired entry is removed).
    pub fn get(&self, namespace: &Namespace, key: &str) -> Option<Vec<u8>> {
        let mut namespaces = self
            .namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entries = namespaces.get_mut(namespace)?;
        let now = Instant::now();
        match entries.get(key) {
            Some(entry) if entry.is_live(now) => Some(entry.value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value`, replacing any previous value and its expiry.
    pub fn put(&self, namespace: &Namespace, key: &str, value: Vec<u8>, ttl: Option<Duration>) {
        let ttl = ttl.or_else(|| namespace.default_ttl());
        let expires_at = ttl.and_then(|ttl| Instant::now().checked_add(ttl));
        let mut namespaces = self
            .namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        namespaces
            .entry(namespace.clone())
            .or_default()
            .insert(key.to_string(), Entry { value, expires_at });
    }

    /// Removes `key`; true if a live value was there.
    pub fn delete(&self, namespace: &Namespace, key: &str) -> bool {
        let mut namespaces = self
            .namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(entries) = namespaces.get_mut(namespace) else {
            return false;
        };
        entries
            .remove(key)
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
    pub fn trigger_namespace(&self, database: &str, trigger: &str) -> Namespace {
        Namespace::Trigger {
            database: database.to_string(),
            trigger: trigger.to_string(),
            run: self.current_run((database.to_string(), Some(trigger.to_string()))),
        }
    }

    /// The shared cache of the current run of `database`, for a call starting now.
    pub fn database_namespace(&self, database: &str) -> Namespace {
        Namespace::Database {
            database: database.to_string(),
            run: self.current_run((database.to_string(), None)),
        }
    }

    /// Ends the current run of each trigger for which `ended(database, trigger)` holds:
    /// its cache is dropped, and calls that started before reach a cache no later call
    /// reads. Also drops what such calls left in the caches of ended runs.
    pub fn end_triggers(&self, ended: impl Fn(&str, &str) -> bool) {
        self.end_runs(|(database, trigger)| {
            trigger
                .as_deref()
                .is_some_and(|trigger| ended(database, trigger))
        });
    }

    /// [`Self::end_triggers`] for the shared caches of the databases for which
    /// `ended(database)` holds (deleted ones).
    pub fn end_databases(&self, ended: impl Fn(&str) -> bool) {
        self.end_runs(|(database, trigger)| trigger.is_none() && ended(database));
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
        self.namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|namespace, entries| {
                entries.retain(|_, entry| entry.is_live(now));
                let kept = match namespace {
                    Namespace::Trigger {
                        database,
                        trigger,
                        run,
                    } => current((database.clone(), Some(trigger.clone())), run),
                    Namespace::Database { database, run } => current((database.clone(), None), run),
                    Namespace::Test(_) | Namespace::TestShared(_) => true,
                };
                kept && !entries.is_empty()
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_separate_and_ttl_expires() {
        let store = CacheStore::new();
        let local = store.trigger_namespace("db", "t");
        let shared = store.database_namespace("db");
        store.put(&local, "k", b"local".to_vec(), None);
        store.put(&shared, "k", b"shared".to_vec(), None);
        assert_eq!(store.get(&local, "k").as_deref(), Some(&b"local"[..]));
        assert_eq!(store.get(&shared, "k").as_deref(), Some(&b"shared"[..]));
        assert_eq!(store.get(&store.database_namespace("other"), "k"), None);

        store.put(&local, "gone", b"x".to_vec(), Some(Duration::ZERO));
        assert_eq!(store.get(&local, "gone"), None);
        assert!(!store.delete(&local, "gone"));
        assert!(store.delete(&local, "k"));
        assert!(!store.delete(&local, "k"));
    }

    #[test]
    fn a_database_created_again_does_not_share_the_cache_of_the_deleted_one() {
        let store = CacheStore::new();
        let first = store.database_namespace("db");
        let other = store.database_namespace("other");
        let trigger = store.trigger_namespace("db", "t");
        store.put(&first, "k", b"1".to_vec(), None);
        store.put(&other, "k", b"1".to_vec(), None);
        store.put(&trigger, "k", b"1".to_vec(), None);
        store.put(&trigger, "expired", b"1".to_vec(), Some(Duration::ZERO));

        store.end_databases(|database| database == "db");
        assert_eq!(store.get(&first, "k"), None);
        // A call of a trigger of the deleted database goes on after the deletion.
        store.put(&first, "late", b"1".to_vec(), None);

        let second = store.database_namespace("db");
        assert_ne!(first, second);
        assert_eq!(store.get(&second, "late"), None);
        assert_eq!(store.get(&other, "k").as_deref(), Some(&b"1"[..]));
        assert_eq!(store.get(&trigger, "k").as_deref(), Some(&b"1"[..]));

        // The next reconciliation drops what the late call left, and expired entries.
        store.end_databases(|_| false);
        assert_eq!(store.get(&first, "late"), None);
        assert_eq!(store.database_namespace("db"), second);
        let namespaces = store.namespaces.lock().expect("not poisoned");
        assert!(!namespaces.contains_key(&first));
        assert!(!namespaces[&trigger].contains_key("expired"));
    }

    #[test]
    fn a_call_from_before_its_trigger_stopped_leaves_nothing_for_the_next_run() {
        let store = CacheStore::new();
        let first = store.trigger_namespace("db", "t");
        let other = store.trigger_namespace("db", "other");
        store.put(&first, "started", b"1".to_vec(), None);
        store.put(&other, "kept", b"1".to_vec(), None);

        store.end_triggers(|_, trigger| trigger == "t");
        // The call of the first run goes on after the stop.
        assert_eq!(store.get(&first, "started"), None);
        store.put(&first, "late", b"1".to_vec(), None);

        let second = store.trigger_namespace("db", "t");
        assert_ne!(first, second);
        assert_eq!(store.get(&second, "started"), None);
        assert_eq!(store.get(&second, "late"), None);
        assert_eq!(store.get(&other, "kept").as_deref(), Some(&b"1"[..]));

        // The next reconciliation drops what the late call left.
        store.end_triggers(|_, _| false);
        assert_eq!(store.get(&first, "late"), None);
        assert_eq!(store.trigger_namespace("db", "t"), second);
    }
}
