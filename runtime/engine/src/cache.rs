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
    Database(String),
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
            Self::Trigger { .. } | Self::Database(_) => None,
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
    /// The current run of each trigger that had a call: it changes each time the trigger
    /// stops, so that a call still running then (its plugin cannot be stopped halfway
    /// through a host call) reaches only the cache of its own, ended, run.
    runs: Mutex<HashMap<(String, String), u64>>,
}

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

    /// Keeps only the namespaces for which `keep` holds, and only their live entries.
    pub fn retain(&self, keep: impl Fn(&Namespace) -> bool) {
        let now = Instant::now();
        let mut namespaces = self
            .namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        namespaces.retain(|namespace, entries| {
            entries.retain(|_, entry| entry.is_live(now));
            keep(namespace) && !entries.is_empty()
        });
    }

    /// Drops a whole namespace.
    pub fn drop_namespace(&self, namespace: &Namespace) {
        self.namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(namespace);
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), u64>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cache of the current run of `trigger` of `database`, for a call starting now.
    pub fn trigger_namespace(&self, database: &str, trigger: &str) -> Namespace {
        let run = *self
            .runs()
            .entry((database.to_string(), trigger.to_string()))
            .or_insert(0);
        Namespace::Trigger {
            database: database.to_string(),
            trigger: trigger.to_string(),
            run,
        }
    }

    /// Ends the current run of each trigger for which `ended(database, trigger)` holds:
    /// its cache is dropped, and calls that started before reach a cache no later call
    /// reads. Also drops what such calls left in the caches of ended runs.
    pub fn end_triggers(&self, ended: impl Fn(&str, &str) -> bool) {
        let mut runs = self.runs();
        for ((database, trigger), run) in runs.iter_mut() {
            if ended(database, trigger) {
                *run += 1;
            }
        }
        self.namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|namespace, _| match namespace {
                Namespace::Trigger {
                    database,
                    trigger,
                    run,
                } => runs.get(&(database.clone(), trigger.clone())) == Some(run),
                _ => true,
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
        let shared = Namespace::Database("db".into());
        store.put(&local, "k", b"local".to_vec(), None);
        store.put(&shared, "k", b"shared".to_vec(), None);
        assert_eq!(store.get(&local, "k").as_deref(), Some(&b"local"[..]));
        assert_eq!(store.get(&shared, "k").as_deref(), Some(&b"shared"[..]));
        assert_eq!(store.get(&Namespace::Database("other".into()), "k"), None);

        store.put(&local, "gone", b"x".to_vec(), Some(Duration::ZERO));
        assert_eq!(store.get(&local, "gone"), None);
        assert!(!store.delete(&local, "gone"));
        assert!(store.delete(&local, "k"));
        assert!(!store.delete(&local, "k"));

        store.drop_namespace(&shared);
        assert_eq!(store.get(&shared, "k"), None);

        store.put(&local, "k", b"local".to_vec(), None);
        store.put(&shared, "k", b"shared".to_vec(), None);
        store.retain(|namespace| !matches!(namespace, Namespace::Trigger { .. }));
        assert_eq!(store.get(&local, "k"), None);
        assert_eq!(store.get(&shared, "k").as_deref(), Some(&b"shared"[..]));
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
