//! Exponential backoff with jitter: the one retry policy of this crate.
//!
//! Every retry loop (connect, metadata, fetch, produce, group join, offset lookups, the RPC
//! reply reader) waits through a [`Backoff`]: delays double from `retry.backoff.ms` up to
//! `retry.backoff.max.ms` (the Java client's names, [`crate::ClientConfig::retry_backoff`] and
//! [`crate::ClientConfig::retry_backoff_max`]), each scaled by a random 0.5..1.0 so clients
//! that failed together do not retry together. A loop with a budget gives up when it is spent;
//! a loop that never gives up (a fetcher on a partition without a leader) uses
//! [`Backoff::unbounded`] and [`Backoff::next_delay`], and [`Backoff::reset`]s on success.

use std::time::Duration;

use tokio::time::Instant;

/// Delays between attempts: doubling from `initial` up to `max`, each scaled by a random 0.5..1.0.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    deadline: Instant,
}

impl Backoff {
    /// A backoff that gives up once `budget` has elapsed from now.
    pub fn new(initial: Duration, max: Duration, budget: Duration) -> Self {
        Self {
            next: initial.max(Duration::from_millis(1)),
            max: max.max(initial),
            deadline: {
                let now = Instant::now();
                now.checked_add(budget)
                    .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400))
            },
        }
    }

    /// A backoff without a budget: [`Backoff::wait`] never returns false (a budget of years).
    pub fn unbounded(initial: Duration, max: Duration) -> Self {
        Self::new(initial, max, Duration::from_secs(100 * 365 * 86_400))
    }

    /// The delay before the next attempt (jittered, never past the budget), advancing the
    /// doubling; for loops that wait on something else at the same time.
    pub fn next_delay(&mut self) -> Duration {
        let left = self.remaining();
        let jitter = 0.5 + rand::random::<f64>() * 0.5;
        let delay = self.next.mul_f64(jitter).min(left);
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Starts the doubling again from `initial` (after a success).
    pub fn reset(&mut self, initial: Duration) {
        self.next = initial.max(Duration::from_millis(1));
    }

    /// Sleeps before the next attempt; returns false (without sleeping) when the budget is spent.
    pub async fn wait(&mut self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        let delay = self.next_delay();
        tokio::time::sleep(delay).await;
        true
    }

    /// Time left in the budget.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stops_at_the_deadline_and_grows_to_max() {
        let start = Instant::now();
        let mut b = Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(80),
            Duration::from_secs(1),
        );
        let mut attempts = 0;
        while b.wait().await {
            attempts += 1;
            assert!(attempts < 100, "backoff never ran out");
        }
        let spent = start.elapsed();
        assert!(
            spent >= Duration::from_secs(1) && spent < Duration::from_millis(1100),
            "{spent:?}"
        );
        assert!(
            attempts >= 12,
            "delays never reached the 80 ms cap shape: {attempts}"
        );
        assert_eq!(b.remaining(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unbounded_backoff_doubles_to_max_with_jitter_and_resets() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        let mut b = Backoff::unbounded(initial, max);
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let full = (initial * 2u32.pow(i as u32)).min(max);
            assert!(*d >= full / 2 && *d <= full, "delay {i}: {d:?} vs {full:?}");
        }
        b.reset(initial);
        assert!(b.next_delay() <= initial);
        assert!(b.wait().await);
    }
}
