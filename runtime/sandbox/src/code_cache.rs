//! File plugins' compiled code, kept so that a fresh instance loads a plugin without
//! compiling it.
//!
//! Compiling a plugin's source was about a quarter of a fresh instance's first call
//! (`BENCHMARKS.md`, "The sandbox on that runtime"): the compiler's first use in the
//! instance. So the guest hands the host the code object it compiled, marshalled, as the
//! outcome of the load, and later loads of the same plugin get it with the source and
//! unmarshal it (as CPython's `.pyc` files are used).
//!
//! Whose code it is. The host keeps what the guest hands over only from loading a file
//! plugin into an instance whose only code so far is the runtime's own (a fresh instance,
//! or a spare, which ran the sandbox's own plugin): loading a file compiles it and runs
//! none of it, so no plugin code has run in that instance when the code is handed over.
//! A package's import runs its code, so packages are not kept. Entries are keyed by the
//! plugin's directory (the server's, or a database's own area), its name and its source,
//! so even a guest that did hand over something else would only ever reach loads of the
//! same file of the same directory.
//!
//! What it costs. The cache is one for the server, bounded in bytes
//! ([`CodeCache::BUDGET`]), and drops the least recently used code first; code larger
//! than [`CodeCache::MAX_ENTRY`] is not kept. A tenant with many plugins can push another's
//! code out: that costs the other a compile, never an error.

use lru::LruCache;
use sha2::{Digest, Sha256};
use sluice_plugin_api::PluginSource;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// Which plugin's code an entry is: a digest of its directory, name and source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CodeKey([u8; 32]);

impl CodeKey {
    /// The key of a file plugin's code, `None` for a package (whose import runs its code).
    pub(crate) fn of(plugin_dir: &Path, source: &PluginSource) -> Option<Self> {
        let PluginSource::File { name, code } = source else {
            return None;
        };
        let mut digest = Sha256::new();
        for part in [plugin_dir.as_os_str().as_encoded_bytes(), name.as_bytes()] {
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part);
        }
        digest.update(code.as_bytes());
        Some(Self(digest.finalize().into()))
    }
}

/// How the cache fares, for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CodeCacheStats {
    /// Plugins whose code is kept.
    pub entries: usize,
    /// The bytes the cache holds: the code, and each entry's bookkeeping
    /// (128 bytes an entry).
    pub bytes: usize,
    /// Loads that found their plugin's code.
    pub hits: u64,
    /// Loads of a file plugin that compiled it.
    pub misses: u64,
}

/// Compiled code by plugin, least recently used first out.
pub(crate) struct CodeCache {
    inner: Mutex<Inner>,
}

struct Inner {
    entries: LruCache<CodeKey, Arc<[u8]>>,
    stats: CodeCacheStats,
}

impl CodeCache {
    /// The most bytes of code kept for the whole server.
    pub(crate) const BUDGET: usize = 32 << 20;
    /// The largest code kept: a plugin's whose is larger compiles on every load.
    pub(crate) const MAX_ENTRY: usize = 1 << 20;
    /// What an entry costs besides its code (its key, the list's and the map's
    /// bookkeeping), counted against the budget, so that many tiny files cannot hold
    /// more than the budget either.
    pub(crate) const ENTRY_OVERHEAD: usize = 128;

    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                entries: LruCache::unbounded(),
                stats: CodeCacheStats::default(),
            }),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The code kept for `key`, counted as a hit or a miss.
    pub(crate) fn get(&self, key: &CodeKey) -> Option<Arc<[u8]>> {
        let mut inner = self.inner();
        let found = inner.entries.get(key).cloned();
        match found {
            Some(_) => inner.stats.hits += 1,
            None => inner.stats.misses += 1,
        }
        found
    }

    /// Keeps `code` for `key`, dropping the least recently used code past the budget.
    pub(crate) fn put(&self, key: CodeKey, code: Vec<u8>) {
        if code.len() > Self::MAX_ENTRY {
            return;
        }
        let cost = |code: &[u8]| code.len() + Self::ENTRY_OVERHEAD;
        let mut inner = self.inner();
        let added = cost(&code);
        if let Some(old) = inner.entries.put(key, code.into()) {
            inner.stats.bytes -= cost(&old);
        }
        inner.stats.bytes += added;
        while inner.stats.bytes > Self::BUDGET {
            let Some((_, dropped)) = inner.entries.pop_lru() else {
                break;
            };
            inner.stats.bytes -= cost(&dropped);
        }
        inner.stats.entries = inner.entries.len();
    }

    pub(crate) fn stats(&self) -> CodeCacheStats {
        self.inner().stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, code: &str) -> PluginSource {
        PluginSource::File {
            name: name.into(),
            code: code.into(),
        }
    }

    #[test]
    fn keys_differ_by_directory_name_and_source_and_packages_have_none() {
        let key = |dir: &str, name: &str, code: &str| {
            CodeKey::of(Path::new(dir), &file(name, code)).expect("a file has a key")
        };
        let one = key("/p/db1", "a.py", "x = 1");
        assert_eq!(one, key("/p/db1", "a.py", "x = 1"));
        assert_ne!(one, key("/p/db2", "a.py", "x = 1"));
        assert_ne!(one, key("/p/db1", "b.py", "x = 1"));
        assert_ne!(one, key("/p/db1", "a.py", "x = 2"));
        // The parts are delimited: moving a byte from one to the next changes the key.
        assert_ne!(key("/p/db", "1a.py", "x"), key("/p/db1", "a.py", "x"));
        let package = PluginSource::Package("pkg".into());
        assert_eq!(CodeKey::of(Path::new("/p"), &package), None);
    }

    #[test]
    fn the_least_recently_used_code_goes_first_past_the_budget() {
        let cache = CodeCache::new();
        let key = |n: u8| CodeKey([n; 32]);
        let quarter = CodeCache::BUDGET / 4;
        let entry = CodeCache::MAX_ENTRY.min(quarter) - CodeCache::ENTRY_OVERHEAD;
        let count = CodeCache::BUDGET / (entry + CodeCache::ENTRY_OVERHEAD);
        for n in 0..count {
            cache.put(key(n as u8), vec![0; entry]);
        }
        assert!(cache.get(&key(0)).is_some(), "all fit");
        cache.put(key(200), vec![0; entry]);
        // Key 0 was used last; key 1 is the least recently used.
        assert!(cache.get(&key(1)).is_none());
        assert!(cache.get(&key(0)).is_some());
        let stats = cache.stats();
        assert_eq!(stats.entries, count);
        assert!(stats.bytes <= CodeCache::BUDGET);
        assert_eq!((stats.hits, stats.misses), (2, 1));
    }

    #[test]
    fn tiny_entries_count_their_bookkeeping_against_the_budget() {
        let cache = CodeCache::new();
        let per_entry = 1 + CodeCache::ENTRY_OVERHEAD;
        let fits = CodeCache::BUDGET / per_entry;
        for n in 0..fits + 10 {
            let mut key = [0; 32];
            key[..8].copy_from_slice(&(n as u64).to_le_bytes());
            cache.put(CodeKey(key), vec![0]);
        }
        let stats = cache.stats();
        assert_eq!(stats.entries, fits);
        assert_eq!(stats.bytes, fits * per_entry);
    }

    #[test]
    fn code_larger_than_an_entry_may_be_is_not_kept() {
        let cache = CodeCache::new();
        let key = CodeKey([7; 32]);
        cache.put(key, vec![0; CodeCache::MAX_ENTRY + 1]);
        assert!(cache.get(&key).is_none());
        assert_eq!(cache.stats().bytes, 0);
    }
}
