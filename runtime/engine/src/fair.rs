//! Turns to run plugin calls, shared fairly between databases.
//!
//! The sandbox keeps a bounded number of instances; when every one runs a call, calls
//! wait. Waiting in one line would let a tenant that floods its triggers stand in front
//! of everyone else: with 16 of its calls queued, another tenant's single call waits for
//! all 16. So calls take a [`FairTurn`] first: at most as many run at once as there are
//! instances, and when calls wait, each turn that ends goes to the next database in
//! round-robin order (its oldest waiting call), so a flooding tenant waits behind its own
//! calls, and another tenant's call waits for at most one call of each database ahead of
//! it. A call that waits longer than the bound is refused, having run nothing.

use sluice_catalog::DbId;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;

/// Turns for at most `capacity` calls at once.
pub struct FairTurns {
    capacity: usize,
    wait: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Turns held, by database.
    running: HashMap<DbId, usize>,
    /// Databases with waiting calls, in the order they get the next turn.
    order: VecDeque<DbId>,
    /// Each database's waiting calls, oldest first.
    waiting: HashMap<DbId, VecDeque<oneshot::Sender<FairTurn>>>,
}

/// The right to run one call of `database`; the next waiting call gets it when dropped.
pub struct FairTurn {
    turns: Arc<FairTurns>,
    database: DbId,
    /// False for a turn that was handed over and came back (its call had gone): it
    /// frees nothing when dropped.
    armed: bool,
}

/// A call that found every turn taken for as long as it could wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "every one of the server's {capacity} plugin instances was running a call for {} (its \
     --max-instances and --instance-wait); the call did not start",
    humantime::format_duration(*wait)
)]
pub struct NoTurn {
    /// Calls that may run at once.
    pub capacity: usize,
    /// How long the call waited.
    pub wait: Duration,
}

/// What the turns are now, per database: `(running, waiting)`.
pub type TurnCounts = HashMap<DbId, (usize, usize)>;

impl FairTurns {
    /// Turns for `capacity` calls at once; a call waits at most `wait` for one.
    pub fn new(capacity: usize, wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            wait,
            state: Mutex::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A turn for a call of `database`: at once when one is free and nobody waits, else
    /// in round-robin order between the databases whose calls wait.
    ///
    /// # Errors
    ///
    /// [`NoTurn`] when no turn came within the bound.
    pub async fn take(self: &Arc<Self>, database: DbId) -> Result<FairTurn, NoTurn> {
        let receiver = {
            let mut state = self.state();
            let free = state.running.values().sum::<usize>() < self.capacity;
            if free {
                // Only calls that gave up waiting can be waiting while a turn is free.
                forget_gone(&mut state);
            }
            if free && state.order.is_empty() {
                *state.running.entry(database).or_default() += 1;
                return Ok(self.turn(database));
            }
            let (sender, receiver) = oneshot::channel();
            let queue = state.waiting.entry(database).or_default();
            let first = queue.is_empty();
            queue.push_back(sender);
            if first {
                state.order.push_back(database);
            }
            receiver
        };
        match tokio::time::timeout(self.wait, receiver).await {
            Ok(Ok(turn)) => Ok(turn),
            // Timed out (a turn sent meanwhile is dropped with the receiver, and goes
            // on to the next call), or the turns are gone.
            _ => Err(NoTurn {
                capacity: self.capacity,
                wait: self.wait,
            }),
        }
    }

    fn turn(self: &Arc<Self>, database: DbId) -> FairTurn {
        FairTurn {
            turns: Arc::clone(self),
            database,
            armed: true,
        }
    }

    /// Hands the turn of a call of `database` that ended to the next waiting call, or
    /// frees it.
    fn pass_on(self: &Arc<Self>, database: DbId) {
        let mut from = database;
        loop {
            let (next, sender) = {
                let mut state = self.state();
                release(&mut state, from);
                let Some((next, sender)) = next_waiting(&mut state) else {
                    return;
                };
                *state.running.entry(next).or_default() += 1;
                (next, sender)
            };
            // Sent outside the lock: a turn that comes back is dropped disarmed.
            match sender.send(self.turn(next)) {
                Ok(()) => return,
                Err(mut unwanted) => {
                    unwanted.armed = false;
                    from = next;
                }
            }
        }
    }

    /// Running and waiting calls, per database.
    pub fn counts(&self) -> TurnCounts {
        let state = self.state();
        let mut counts: TurnCounts = HashMap::new();
        for (database, running) in &state.running {
            counts.entry(*database).or_default().0 = *running;
        }
        for (database, waiting) in &state.waiting {
            counts.entry(*database).or_default().1 = waiting.len();
        }
        counts
    }
}

/// Forgets the waiting calls that gave up.
fn forget_gone(state: &mut State) {
    state.waiting.retain(|_, queue| {
        queue.retain(|sender| !sender.is_closed());
        !queue.is_empty()
    });
    let waiting = &state.waiting;
    state
        .order
        .retain(|database| waiting.contains_key(database));
}

/// Counts one call of `database` out of those running.
fn release(state: &mut State, database: DbId) {
    if let Some(running) = state.running.get_mut(&database) {
        *running -= 1;
        if *running == 0 {
            state.running.remove(&database);
        }
    }
}

/// The oldest waiting call of the next database in round-robin order, which goes to the
/// back of the order if it has more.
fn next_waiting(state: &mut State) -> Option<(DbId, oneshot::Sender<FairTurn>)> {
    while let Some(database) = state.order.pop_front() {
        let Some(queue) = state.waiting.get_mut(&database) else {
            continue;
        };
        let sender = queue.pop_front();
        if queue.is_empty() {
            state.waiting.remove(&database);
        } else {
            state.order.push_back(database);
        }
        if let Some(sender) = sender {
            return Some((database, sender));
        }
    }
    None
}

impl Drop for FairTurn {
    fn drop(&mut self) {
        if self.armed {
            self.turns.pass_on(self.database);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOOD: DbId = DbId::new(1);
    const QUIET: DbId = DbId::new(2);

    #[tokio::test]
    async fn a_waiting_database_gets_the_next_turn_ahead_of_a_flood() {
        let turns = FairTurns::new(1, Duration::from_secs(10));
        let first = turns.take(FLOOD).await.expect("free");
        let (sender, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut waiting = Vec::new();
        for (index, database) in [FLOOD, FLOOD, FLOOD, QUIET].into_iter().enumerate() {
            let (turns, sender) = (Arc::clone(&turns), sender.clone());
            waiting.push(tokio::spawn(async move {
                let turn = turns.take(database).await.expect("a turn");
                let _ = sender.send(index);
                // Held a moment, as a call would.
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(turn);
            }));
            // Queued in this order.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(turns.counts()[&FLOOD], (1, 3));
        assert_eq!(turns.counts()[&QUIET], (0, 1));
        drop(first);
        for task in waiting {
            task.await.expect("ran");
        }
        drop(sender);
        let mut served = Vec::new();
        while let Some(index) = order.recv().await {
            served.push(index);
        }
        // The flood's oldest, then the quiet database's only call, then the flood's rest.
        assert_eq!(served, [0, 3, 1, 2]);
        assert!(turns.counts().is_empty(), "every turn given back");
    }

    #[tokio::test]
    async fn a_call_waits_at_most_its_bound_and_a_dropped_wait_loses_no_turn() {
        let turns = FairTurns::new(1, Duration::from_millis(50));
        let held = turns.take(FLOOD).await.expect("free");
        let refused = turns
            .take(QUIET)
            .await
            .err()
            .map(|refused| refused.to_string());
        assert_eq!(
            refused.as_deref(),
            Some(
                "every one of the server's 1 plugin instances was running a call for 50ms (its \
                 --max-instances and --instance-wait); the call did not start"
            )
        );
        // A call that gave up waiting: the turn sent to it goes to the next one.
        let gave_up = {
            let turns = Arc::clone(&turns);
            tokio::spawn(async move { turns.take(QUIET).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        gave_up.abort();
        drop(held);
        assert!(turns.take(FLOOD).await.is_ok(), "the turn came back");
        assert!(turns.counts().is_empty());
        // Calls that gave up leave nothing behind that would hold a free turn back.
        let held = turns.take(FLOOD).await.expect("free");
        assert!(turns.take(QUIET).await.is_err());
        drop(held);
        assert!(
            turns.take(QUIET).await.is_ok(),
            "not queued behind a call that gave up"
        );
    }
}
