//! Exponential backoff with jitter, bounded by a deadline: the one retry policy of this crate.

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
            deadline: Instant::now() + budget,
        }
    }

    /// Sleeps before the next attempt; returns false (without sleeping) when the budget is spent.
    pub async fn wait(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        let jitter = 0.5 + rand::random::<f64>() * 0.5;
        let delay = self.next.mul_f64(jitter).min(self.deadline - now);
        self.next = (self.next * 2).min(self.max);
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
}
