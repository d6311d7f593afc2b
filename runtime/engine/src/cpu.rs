//! The CPU time a future spends: the calling thread's CPU clock read around each poll,
//! whichever thread polls it. An invocation's future runs the plugin in the sandbox, so
//! this is the CPU its code took; host work it asked for and that runs elsewhere (its
//! queries' plans, executed by DataFusion's tasks) is not in it, and is bounded apart.

use std::future::Future;
use std::time::Duration;

/// Runs `future`; its output and the CPU time its polls took.
pub async fn cpu_timed<F: Future>(future: F) -> (F::Output, Duration) {
    let mut future = std::pin::pin!(future);
    let mut spent = Duration::ZERO;
    let output = std::future::poll_fn(|cx| {
        let start = thread_cpu_time();
        let poll = future.as_mut().poll(cx);
        spent += thread_cpu_time().saturating_sub(start);
        poll
    })
    .await;
    (output, spent)
}

/// The CPU time the calling thread has used.
pub(crate) fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or_default(),
        u32::try_from(now.tv_nsec).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_cpu_a_future_spends_is_counted_and_its_sleep_is_not() {
        let ((), busy) = cpu_timed(async {
            let mut x = 0_u64;
            for i in 0..20_000_000_u64 {
                x = std::hint::black_box(x.wrapping_add(i));
            }
        })
        .await;
        assert!(busy > Duration::ZERO);
        let ((), asleep) = cpu_timed(tokio::time::sleep(Duration::from_millis(200))).await;
        assert!(
            asleep < busy,
            "waiting takes no CPU: {asleep:?} against {busy:?}"
        );
    }
}
