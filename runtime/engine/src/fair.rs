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
//!
//! The CPU is shared the same way ([`FairTurns::cpu`], [`HeldTurn`]): as many calls run
//! plugin code at once as the server has worker threads, and at each epoch tick a
//! running call gives its turn to the next waiting database's call, in round-robin
//! order. Were they left to the threads' own queue, a tenant with 64 spinning calls on
//! two threads would take 64 slices of 10 ms for each slice of another's call. One more
//! rule keeps a waiting call from waiting for a tick: while another database has asked
//! for a turn within the last 100 ms, no database holds every turn, so the other's call
//! finds one free.

use sluice_catalog::DbId;
use sluice_plugin_api::BoxFuture;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Turns for at most `capacity` calls at once.
pub struct FairTurns {
    capacity: usize,
    kind: Kind,
    state: Mutex<State>,
}

/// What the turns are for.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Instances: a call waits at most `wait` for a turn.
    Instances { wait: Duration },
    /// The CPU: a call waits until it gets a turn; no database holds every turn while
    /// another asked for one within [`CPU_RESERVE`]; a turn whose holder did not renew
    /// it for `lease` (it waits on the host: a sleep, a query) goes to the next call.
    Cpu { lease: Duration },
}

/// How long a database that asked for a CPU turn counts as wanting the CPU: long enough
/// to cover the gaps between the calls of a database that calls steadily, short enough
/// that a busy database is held to all turns but one only while another is active (the
/// engine bench's WAL transform lost a quarter of its throughput with a second).
const CPU_RESERVE: Duration = Duration::from_millis(100);

struct State {
    /// Turns held, by database.
    running: HashMap<DbId, usize>,
    /// Databases with waiting calls, in the order they get the next turn.
    order: VecDeque<DbId>,
    /// Each database's waiting calls, oldest first.
    waiting: HashMap<DbId, VecDeque<oneshot::Sender<FairTurn>>>,
    /// When each database last asked for a turn, if within the reserve's window.
    asked: HashMap<DbId, Instant>,
    /// When `asked` was last rid of the databases outside the window.
    pruned: Instant,
    /// The turns held under a lease, by lease number: their database and when renewed.
    leases: HashMap<u64, (DbId, Instant)>,
    next_lease: u64,
}

impl Default for State {
    fn default() -> Self {
        Self {
            running: HashMap::new(),
            order: VecDeque::new(),
            waiting: HashMap::new(),
            asked: HashMap::new(),
            pruned: Instant::now(),
            leases: HashMap::new(),
            next_lease: 1,
        }
    }
}

/// The right to run one call of `database`; the next waiting call gets it when dropped.
pub struct FairTurn {
    turns: Arc<FairTurns>,
    database: DbId,
    /// False for a turn that was handed over and came back (its call had gone): it
    /// frees nothing when dropped.
    armed: bool,
    /// How long its call waited in the queue for it; zero when one was free.
    waited: Duration,
    /// Its lease's number (0: none).
    lease: u64,
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

impl FairTurn {
    /// How long its call waited in the queue for it; zero when one was free.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

/// What the turns are now, per database: `(running, waiting)`.
pub type TurnCounts = HashMap<DbId, (usize, usize)>;

impl FairTurns {
    /// Turns for `capacity` calls at once; a call waits at most `wait` for one.
    pub fn new(capacity: usize, wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            kind: Kind::Instances { wait },
            state: Mutex::default(),
        })
    }

    /// Turns on the CPU for `threads` calls at once: a call waits as long as it takes,
    /// no database holds every turn while another wants one, and a turn not renewed
    /// ([`HeldTurn::pause`]) for two epoch ticks of `tick` goes to the next waiting call.
    pub fn cpu(threads: usize, tick: Duration) -> Arc<Self> {
        Arc::new(Self {
            capacity: threads.max(1),
            kind: Kind::Cpu { lease: tick * 2 },
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
        self.take_instead_of(database, None).await
    }

    /// A turn for a call of `database` that gives `held` up: queued first, so that the
    /// turn it gives up goes to the next database in round-robin order, to itself only
    /// when no other may have it.
    async fn take_instead_of(
        self: &Arc<Self>,
        database: DbId,
        held: Option<FairTurn>,
    ) -> Result<FairTurn, NoTurn> {
        let receiver = {
            let mut state = self.state();
            if let Kind::Cpu { .. } = self.kind {
                let (now, window) = (Instant::now(), CPU_RESERVE);
                // The databases that asked long ago are forgotten now and then: the list
                // holds every database that asked within the window.
                if now.duration_since(state.pruned) > window / 4 {
                    state
                        .asked
                        .retain(|_, asked| now.duration_since(*asked) < window);
                    state.pruned = now;
                }
                state.asked.insert(database, now);
            }
            let free = state.running.values().sum::<usize>() < self.capacity;
            if free {
                // Only calls that gave up waiting can be waiting while a turn is free.
                forget_gone(&mut state);
            }
            if held.is_none() && free && state.order.is_empty() && self.may_hold(&state, database) {
                let lease = self.grant(&mut state, database);
                return Ok(self.turn(database, lease));
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
        // Given up once this call is queued; a turn kept free for another database may be
        // this one's.
        drop(held);
        self.pass_on(None);
        let queued = Instant::now();
        let mut receiver = receiver;
        let received = match self.kind {
            Kind::Instances { wait } => tokio::time::timeout(wait, receiver).await.ok(),
            // Looks for turns whose lease ran out at each term: nothing else would.
            Kind::Cpu { lease } => loop {
                match tokio::time::timeout(lease, &mut receiver).await {
                    Ok(received) => break Some(received),
                    Err(_) => self.pass_on(None),
                }
            },
        };
        match received {
            Some(Ok(mut turn)) => {
                turn.waited = queued.elapsed();
                Ok(turn)
            }
            // Timed out (a turn sent meanwhile is dropped with the receiver, and goes
            // on to the next call), or the turns are gone.
            _ => Err(NoTurn {
                capacity: self.capacity,
                wait: match self.kind {
                    Kind::Instances { wait } => wait,
                    Kind::Cpu { .. } => Duration::ZERO,
                },
            }),
        }
    }

    /// A turn for `database` only if it leaves the CPU idle enough: no call waits, and
    /// another turn stays free for the next call that comes (with a single turn, only
    /// when it is free). For work that should use idle capacity only, the server's own;
    /// it never counts as a database asking.
    pub fn take_if_idle(self: &Arc<Self>, database: DbId) -> Option<FairTurn> {
        let mut state = self.state();
        self.reclaim(&mut state);
        let running = state.running.values().sum::<usize>();
        if running < self.capacity {
            // Only calls that gave up waiting can be waiting while a turn is free.
            forget_gone(&mut state);
        }
        let leaves_one = running + 1 < self.capacity || (self.capacity == 1 && running == 0);
        if !leaves_one || !state.order.is_empty() {
            return None;
        }
        let lease = self.grant(&mut state, database);
        Some(self.turn(database, lease))
    }

    /// Whether `database` may take one more turn: always, unless no other turn would be
    /// left while another database wants one.
    fn may_hold(&self, state: &State, database: DbId) -> bool {
        if matches!(self.kind, Kind::Instances { .. }) || self.capacity == 1 {
            return true;
        }
        let held = state.running.get(&database).copied().unwrap_or(0);
        let others_want = state.running.keys().any(|other| *other != database)
            || state.order.iter().any(|other| *other != database)
            || state.asked.keys().any(|other| *other != database);
        held + 1 < self.capacity || !others_want
    }

    /// Whether any call waits for a turn.
    fn anyone_waits(&self) -> bool {
        !self.state().order.is_empty()
    }

    fn turn(self: &Arc<Self>, database: DbId, lease: u64) -> FairTurn {
        FairTurn {
            turns: Arc::clone(self),
            database,
            armed: true,
            waited: Duration::ZERO,
            lease,
        }
    }

    /// Counts a turn of `database` as held; its lease's number (0: none).
    fn grant(&self, state: &mut State, database: DbId) -> u64 {
        *state.running.entry(database).or_default() += 1;
        if let Kind::Instances { .. } = self.kind {
            return 0;
        }
        let lease = state.next_lease;
        state.next_lease += 1;
        state.leases.insert(lease, (database, Instant::now()));
        lease
    }

    /// Counts a turn of `database` under `lease` as no longer held, unless its lease
    /// ran out and it was counted out then.
    fn release(&self, state: &mut State, database: DbId, lease: u64) {
        if let Kind::Cpu { .. } = self.kind
            && state.leases.remove(&lease).is_none()
        {
            return;
        }
        count_out(state, database);
    }

    /// Counts out the turns whose lease ran out.
    fn reclaim(&self, state: &mut State) {
        let Kind::Cpu { lease: term } = self.kind else {
            return;
        };
        let now = Instant::now();
        let mut ran_out = Vec::new();
        state.leases.retain(|_, (database, renewed)| {
            let keep = now.duration_since(*renewed) < term;
            if !keep {
                ran_out.push(*database);
            }
            keep
        });
        for database in ran_out {
            count_out(state, database);
        }
    }

    /// Renews `turn`'s lease; false when it ran out, so the turn is no longer held.
    fn renew(&self, turn: &FairTurn) -> bool {
        if let Kind::Instances { .. } = self.kind {
            return true;
        }
        match self.state().leases.get_mut(&turn.lease) {
            Some((_, renewed)) => {
                *renewed = Instant::now();
                true
            }
            None => false,
        }
    }

    /// Frees the turn `(database, lease)` of a call that ended, if any, and the turns
    /// whose lease ran out, and hands every free turn to the next waiting call that may
    /// hold it.
    fn pass_on(self: &Arc<Self>, from: Option<(DbId, u64)>) {
        let mut from = from;
        loop {
            let (next, sender, lease) = {
                let mut state = self.state();
                if let Some((database, lease)) = from.take() {
                    self.release(&mut state, database, lease);
                }
                self.reclaim(&mut state);
                if state.running.values().sum::<usize>() >= self.capacity {
                    return;
                }
                let Some((next, sender)) = self.next_waiting(&mut state) else {
                    return;
                };
                let lease = self.grant(&mut state, next);
                (next, sender, lease)
            };
            // Sent outside the lock: a turn that comes back is dropped disarmed, and
            // its place is handed on.
            if let Err(mut unwanted) = sender.send(self.turn(next, lease)) {
                unwanted.armed = false;
                from = Some((next, lease));
            }
        }
    }

    /// The oldest waiting call of the next database in round-robin order that may hold
    /// a turn; the database goes to the back of the order if it has more.
    fn next_waiting(&self, state: &mut State) -> Option<(DbId, oneshot::Sender<FairTurn>)> {
        for _ in 0..state.order.len() {
            let database = state.order.pop_front()?;
            if !self.may_hold(state, database) {
                state.order.push_back(database);
                continue;
            }
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
fn count_out(state: &mut State, database: DbId) {
    if let Some(running) = state.running.get_mut(&database) {
        *running -= 1;
        if *running == 0 {
            state.running.remove(&database);
        }
    }
}

impl Drop for FairTurn {
    fn drop(&mut self) {
        if self.armed {
            self.turns.pass_on(Some((self.database, self.lease)));
        }
    }
}

/// A running call's turn on the CPU, given up at each pause when another call waits
/// and taken again in its turn.
#[derive(Clone)]
pub struct HeldTurn {
    turns: Arc<FairTurns>,
    database: DbId,
    turn: Arc<Mutex<Option<FairTurn>>>,
}

impl HeldTurn {
    /// A turn of `turns` for a call of `database`, once it comes.
    pub async fn take(turns: &Arc<FairTurns>, database: DbId) -> Self {
        let turn = turns.take(database).await.ok();
        Self {
            turns: Arc::clone(turns),
            database,
            turn: Arc::new(Mutex::new(turn)),
        }
    }

    /// A hold on turns of `turns` for `database` without a turn yet: it takes one at its
    /// first pause.
    pub fn waiting(turns: &Arc<FairTurns>, database: DbId) -> Self {
        Self {
            turns: Arc::clone(turns),
            database,
            turn: Arc::new(Mutex::new(None)),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<FairTurn>> {
        self.turn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets the others run: gives the turn to the next waiting call, if any, and comes
    /// back with a turn of its own; else yields to the executor once. A call that gave
    /// its turn up while it waited on the host ([`HeldTurn::release`]) takes one again.
    pub fn pause(&self) -> BoxFuture<'static, ()> {
        let this = self.clone();
        Box::pin(async move {
            // A turn whose lease ran out while the call waited on the host is no longer
            // its own: dropped, it frees nothing.
            let held = this.held().take().filter(|turn| this.turns.renew(turn));
            if held.is_some() && !this.turns.anyone_waits() {
                *this.held() = held;
                return tokio::task::yield_now().await;
            }
            let turn = this.turns.take_instead_of(this.database, held).await.ok();
            *this.held() = turn;
        })
    }

    /// Takes a turn if [`FairTurns::take_if_idle`] gives one; true when it did.
    pub fn take_if_idle(&self) -> bool {
        let turn = self.turns.take_if_idle(self.database);
        let taken = turn.is_some();
        *self.held() = turn;
        taken
    }

    /// Gives the turn back: the call runs no plugin code until its next pause (it ended,
    /// or it waits on the host).
    pub fn release(&self) {
        let given_up = self.held().take();
        drop(given_up);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOOD: DbId = DbId::new(1);
    const QUIET: DbId = DbId::new(2);
    // Long enough that no test's short holds outlast a lease on a busy machine.
    const TICK: Duration = Duration::from_millis(100);

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
    async fn no_database_holds_every_cpu_turn_while_another_wants_one() {
        let turns = FairTurns::cpu(2, TICK);
        // Alone, a database may use every thread.
        let first = turns.take(FLOOD).await.expect("free");
        let second = turns
            .take(FLOOD)
            .await
            .expect("free while nobody else asks");
        drop(second);
        // Another database asks: it gets the free turn, and from now on the flood holds
        // one turn at most, the other staying free for the quiet one.
        let quiet = turns.take(QUIET).await.expect("free");
        drop(quiet);
        let capped = {
            let turns = Arc::clone(&turns);
            tokio::spawn(async move { turns.take(FLOOD).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !capped.is_finished(),
            "the flood waits though a turn is free"
        );
        let quiet = tokio::time::timeout(Duration::from_secs(1), turns.take(QUIET))
            .await
            .expect("the quiet database's call does not wait")
            .expect("a turn");
        drop(quiet);
        drop(first);
        assert!(
            capped.await.expect("ran"),
            "the flood's call runs once it holds none"
        );
    }

    #[tokio::test]
    async fn a_paused_call_gives_its_cpu_turn_to_the_next_database() {
        let turns = FairTurns::cpu(1, TICK);
        let running = HeldTurn::take(&turns, FLOOD).await;
        // Nobody waits: the pause keeps the turn.
        running.pause().await;
        assert_eq!(turns.counts()[&FLOOD], (1, 0));
        let quiet = {
            let turns = Arc::clone(&turns);
            tokio::spawn(async move {
                let turn = HeldTurn::take(&turns, QUIET).await;
                // Less than its lease: it still holds the turn.
                tokio::time::sleep(Duration::from_millis(5)).await;
                turn.release();
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(turns.counts()[&QUIET], (0, 1));
        // The pause hands the turn over and waits for the quiet call to give it back.
        running.pause().await;
        assert!(quiet.is_finished(), "the quiet call ran during the pause");
        assert_eq!(turns.counts()[&FLOOD], (1, 0));
        running.release();
        assert!(turns.counts().is_empty());
    }

    #[tokio::test]
    async fn a_turn_not_renewed_goes_to_the_next_call() {
        let turns = FairTurns::cpu(1, TICK);
        // A call that holds its turn while it sleeps in a host call, never pausing.
        let sleeper = HeldTurn::take(&turns, FLOOD).await;
        let quiet = tokio::time::timeout(Duration::from_secs(1), turns.take(QUIET))
            .await
            .expect("the turn went on once its lease ran out")
            .expect("a turn");
        // Back from its sleep, the call has to wait for a turn again.
        let back = {
            let sleeper = sleeper.clone();
            tokio::spawn(async move { sleeper.pause().await })
        };
        // Less than the quiet call's lease: it still holds the turn.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!back.is_finished(), "it runs on without a turn");
        drop(quiet);
        back.await.expect("paused");
        assert_eq!(turns.counts()[&FLOOD], (1, 0));
        sleeper.release();
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
