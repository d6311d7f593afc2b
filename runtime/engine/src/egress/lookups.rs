//! Name lookups for outbound requests, bounded.
//!
//! The system's resolver blocks a thread until it answers, which may take it tens of
//! seconds, and a lookup cannot be called back once started: the request that asked
//! may have timed out long before. A plugin that sends many requests to names whose DNS
//! never answers would otherwise hold every thread of the blocking pool, which the
//! server's writes need too. So the lookups running at once are bounded, for the server
//! and for each database, and a lookup's place is given back only when the resolver has
//! answered; a request that finds no place fails at once, naming the bound.

use sluice_catalog::DbId;
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};

/// Lookups running at once, for the whole server.
pub(crate) const MAX_LOOKUPS: usize = 32;
/// Lookups running at once for one database: a tenant's never take all the server's.
pub(crate) const MAX_LOOKUPS_PER_DATABASE: usize = 8;

/// The lookups running, per database.
#[derive(Debug, Default)]
pub(crate) struct Lookups {
    running: Mutex<HashMap<DbId, usize>>,
}

/// A place among the running lookups, given back when dropped.
struct Place {
    lookups: Arc<Lookups>,
    database: DbId,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut running = self.lookups.running();
        if let Some(count) = running.get_mut(&self.database) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.database);
            }
        }
    }
}

impl Lookups {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<DbId, usize>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a lookup of `database`, if the bounds leave one.
    fn take(self: &Arc<Self>, database: DbId) -> Result<Place, String> {
        let mut running = self.running();
        let total: usize = running.values().sum();
        let own = running.get(&database).copied().unwrap_or(0);
        if own >= MAX_LOOKUPS_PER_DATABASE {
            return Err(format!(
                "the database's plugins are resolving {own} names already, the most at once \
                 for one database; try again later"
            ));
        }
        if total >= MAX_LOOKUPS {
            return Err(format!(
                "the server is resolving {total} names already, the most at once; try again \
                 later"
            ));
        }
        *running.entry(database).or_default() += 1;
        Ok(Place {
            lookups: Arc::clone(self),
            database,
        })
    }

    /// The addresses of `host` (with `port`), looked up for `database` on a blocking
    /// thread that keeps its place until the resolver answers.
    pub(crate) async fn resolve(
        self: &Arc<Self>,
        database: DbId,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, String> {
        let place = self.take(database)?;
        let name = host.to_string();
        let found = tokio::task::spawn_blocking(move || {
            let _place = place;
            (name.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect::<Vec<_>>)
        })
        .await
        .map_err(|e| format!("the lookup of `{host}` failed: {e}"))?;
        found.map_err(|e| format!("`{host}` does not resolve: {e}"))
    }

    /// Lookups running now.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.running().values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_database_takes_at_most_its_share_and_the_server_at_most_its_bound() {
        let lookups = Arc::new(Lookups::default());
        let mut held = Vec::new();
        for _ in 0..MAX_LOOKUPS_PER_DATABASE {
            held.push(lookups.take(DbId::new(1)).expect("a place"));
        }
        let refused = lookups.take(DbId::new(1)).err().expect("over its share");
        assert!(refused.contains("for one database"), "{refused}");
        // Others still find places, up to the server's bound.
        let mut database = 2;
        while lookups.count() < MAX_LOOKUPS {
            match lookups.take(DbId::new(database)) {
                Ok(place) => held.push(place),
                Err(_) => database += 1,
            }
        }
        let refused = lookups.take(DbId::new(999)).err().expect("over the bound");
        assert!(refused.contains("the most at once;"), "{refused}");
        held.clear();
        assert_eq!(lookups.count(), 0, "every place given back");
        assert!(lookups.take(DbId::new(1)).is_ok());
    }

    #[tokio::test]
    async fn a_name_resolves_through_a_place_given_back_after() {
        let lookups = Arc::new(Lookups::default());
        let found = lookups
            .resolve(DbId::new(1), "localhost", 80)
            .await
            .expect("localhost resolves");
        assert!(
            found.iter().all(|a| a.ip().is_loopback() && a.port() == 80),
            "{found:?}"
        );
        assert_eq!(lookups.count(), 0);
    }
}
