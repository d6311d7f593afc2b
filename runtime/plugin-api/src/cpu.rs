//! The CPU time a future spends: the calling thread's CPU clock read around each poll,
//! whichever thread polls it. An invocation's future runs the plugin, so this is the CPU
//! its code took; host work it asked for and that runs elsewhere (its queries' plans,
//! executed by DataFusion's tasks) is not in it, and is bounded apart.
//!
//! The sandbox stops a call whose clock passes [`crate::Limits::cpu_time`], and the
//! engine charges each call's clock to its trigger.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a future's polls have spent so far, readable during a poll from the thread
/// that polls it (the sandbox's epoch callback runs there, inside the guest). It times
/// one future at a time.
#[derive(Debug)]
pub struct CpuClock {
    /// Nanoseconds of the polls that have ended.
    spent_ns: AtomicU64,
    /// The polling thread's CPU clock when the current poll began, in nanoseconds;
    /// [`NOT_POLLED`] between polls.
    poll_began_ns: AtomicU64,
}

const NOT_POLLED: u64 = u64::MAX;

impl Default for CpuClock {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self {
            spent_ns: AtomicU64::new(0),
            poll_began_ns: AtomicU64::new(NOT_POLLED),
        }
    }

    /// Runs `future`, counting the CPU time of each of its polls.
    pub async fn time<F: Future>(&self, future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(|cx| {
            let began = nanos(thread_cpu_time());
            let before = self.poll_began_ns.swap(began, Ordering::Relaxed);
            debug_assert_eq!(before, NOT_POLLED, "a clock times one future at a time");
            let poll = future.as_mut().poll(cx);
            let ended = nanos(thread_cpu_time());
            self.poll_began_ns.store(NOT_POLLED, Ordering::Relaxed);
            self.spent_ns
                .fetch_add(ended.saturating_sub(began), Ordering::Relaxed);
            poll
        })
        .await
    }

    /// The CPU time spent so far: the polls that have ended, and the current one (read
    /// during a poll, this must be on the thread that polls: the clock is that thread's).
    pub fn used(&self) -> Duration {
        let mut spent = self.spent_ns.load(Ordering::Relaxed);
        let began = self.poll_began_ns.load(Ordering::Relaxed);
        if began != NOT_POLLED {
            spent = spent.saturating_add(nanos(thread_cpu_time()).saturating_sub(began));
        }
        Duration::from_nanos(spent)
    }
}

/// Runs `future`; its output and the CPU time its polls took.
pub async fn cpu_timed<F: Future>(future: F) -> (F::Output, Duration) {
    let clock = CpuClock::new();
    let output = clock.time(future).await;
    (output, clock.used())
}

/// The CPU time the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or_default(),
        u32::try_from(now.tv_nsec).unwrap_or_default(),
    )
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(iterations: u64) {
        let mut x = 0_u64;
        for i in 0..iterations {
            x = std::hint::black_box(x.wrapping_add(i));
        }
    }

    #[tokio::test]
    async fn the_cpu_a_future_spends_is_counted_and_its_sleep_is_not() {
        let ((), busy) = cpu_timed(async { spin(20_000_000) }).await;
        assert!(busy > Duration::ZERO);
        let ((), asleep) = cpu_timed(tokio::time::sleep(Duration::from_millis(200))).await;
        assert!(
            asleep < busy,
            "waiting takes no CPU: {asleep:?} against {busy:?}"
        );
    }

    #[tokio::test]
    async fn a_clock_read_during_a_poll_counts_that_poll_so_far() {
        let clock = CpuClock::new();
        let (before, during) = clock
            .time(async {
                let before = clock.used();
                spin(20_000_000);
                (before, clock.used())
            })
            .await;
        assert!(during > before, "{during:?} after {before:?}");
        assert!(clock.used() >= during);
    }

    #[test]
    fn a_new_clock_reads_zero() {
        assert_eq!(CpuClock::default().used(), Duration::ZERO);
    }
}
