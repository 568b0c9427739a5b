//! Capped exponential backoff for the waits between retries while a dependency (the minter, the
//! output, the input queue) is unavailable: short first waits so that a blip costs little, a cap so
//! that recovery is noticed soon, and jitter so that many adapters do not retry in step.

use std::time::Duration;

use rand::Rng;

/// The first wait.
pub const INITIAL: Duration = Duration::from_millis(200);

/// Waits that double from [`INITIAL`] up to a cap.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Self {
            next: INITIAL.min(max),
            max,
        }
    }

    /// The wait before the next retry: the current step with up to 25% taken off at random; the
    /// step then doubles, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = rand::rng().random_range(0.0..0.25);
        step.mul_f64(1.0 - jitter)
    }

    /// Back to the first, short wait (after a success).
    pub fn reset(&mut self) {
        self.next = INITIAL.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset_after_success() {
        let mut backoff = Backoff::new(Duration::from_secs(1));
        let steps: Vec<Duration> = (0..6).map(|_| backoff.next_delay()).collect();
        let expected_ms = [200, 400, 800, 1000, 1000, 1000];
        for (step, ms) in steps.iter().zip(expected_ms) {
            let ms = Duration::from_millis(ms);
            assert!(
                *step <= ms && *step >= ms.mul_f64(0.75),
                "{step:?} not within 75-100% of {ms:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= INITIAL);
    }

    #[test]
    fn a_cap_below_the_first_wait_is_the_wait() {
        let mut backoff = Backoff::new(Duration::from_millis(50));
        assert!(backoff.next_delay() <= Duration::from_millis(50));
    }
}
