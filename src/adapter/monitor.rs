//! What the adapter tells its operators: the reasons `/healthz` gives while a dependency is
//! unavailable, and the adapter's metrics (messages by result, the oldest message's age, the queue
//! depth). The age is the incident's lesson: a stuck adapter shows as an age that keeps growing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::metrics::{ADAPTER_MESSAGES, ADAPTER_OLDEST_MESSAGE_AGE, ADAPTER_QUEUE_DEPTH};

/// A dependency whose unavailability `/healthz` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dependency {
    InputQueue,
    Minter,
    Output,
}

impl Dependency {
    fn name(self) -> &'static str {
        match self {
            Self::InputQueue => "input queue",
            Self::Minter => "minter",
            Self::Output => "output",
        }
    }
}

/// What happened to a message, the `result` label of `idminter_adapter_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageResult {
    /// The identified document was accepted by the output (the input is then deleted).
    Published,
    /// The document cannot be identified or was refused by the output; left for the redrive policy.
    Poison,
    /// Handed back to the queue unprocessed because the adapter is stopping.
    Released,
}

impl MessageResult {
    fn label(self) -> &'static str {
        match self {
            Self::Published => "published",
            Self::Poison => "poison",
            Self::Released => "released",
        }
    }
}

/// Shared by the adapter's tasks; cheap to clone.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

struct Inner {
    problems: Mutex<BTreeMap<Dependency, String>>,
    health: watch::Sender<Option<String>>,
    /// The SentTimestamp of the oldest message of the last receive, if it had any.
    oldest_sent: Mutex<Option<SystemTime>>,
}

impl Monitor {
    /// A healthy monitor, and the receiver `/healthz` reads.
    pub fn new() -> (Self, watch::Receiver<Option<String>>) {
        let (health, receiver) = watch::channel(None);
        let monitor = Self {
            inner: Arc::new(Inner {
                problems: Mutex::new(BTreeMap::new()),
                health,
                oldest_sent: Mutex::new(None),
            }),
        };
        // Every result is exported from the start, at 0: Prometheus's increase() and rate() need
        // a sample before the first message, or the first poison message would go unnoticed.
        for result in [
            MessageResult::Published,
            MessageResult::Poison,
            MessageResult::Released,
        ] {
            monitor.count(result, 0);
        }
        (monitor, receiver)
    }

    /// `/healthz` answers 503 with `reason` until [`Monitor::available`] is called for `dependency`.
    pub fn unavailable(&self, dependency: Dependency, reason: &str) {
        let mut problems = lock(&self.inner.problems);
        let changed = problems.get(&dependency).map(String::as_str) != Some(reason);
        if changed {
            tracing::warn!(
                dependency = dependency.name(),
                reason,
                "unavailable: backing off"
            );
            problems.insert(dependency, reason.to_owned());
            self.publish(&problems);
        }
    }

    pub fn available(&self, dependency: Dependency) {
        let mut problems = lock(&self.inner.problems);
        if problems.remove(&dependency).is_some() {
            tracing::info!(dependency = dependency.name(), "available again");
            self.publish(&problems);
        }
    }

    fn publish(&self, problems: &BTreeMap<Dependency, String>) {
        let reason = (!problems.is_empty()).then(|| {
            problems
                .iter()
                .map(|(d, why)| format!("{} unavailable: {why}", d.name()))
                .collect::<Vec<_>>()
                .join("; ")
        });
        self.inner.health.send_replace(reason);
    }

    pub fn count(&self, result: MessageResult, n: usize) {
        metrics::counter!(ADAPTER_MESSAGES, "result" => result.label()).increment(n as u64);
    }

    /// A receive returned messages sent at `sent` (empty for an empty receive): this is the new
    /// poll window.
    pub fn received(&self, sent: impl IntoIterator<Item = SystemTime>) {
        *lock(&self.inner.oldest_sent) = sent.into_iter().min();
        self.refresh_age();
    }

    /// Sets the age gauge from the current window. Called after every receive and periodically,
    /// so that the age keeps growing while a batch is stuck (the minter or the output down).
    pub fn refresh_age(&self) {
        let age = lock(&self.inner.oldest_sent).map_or(Duration::ZERO, |sent| {
            SystemTime::now()
                .duration_since(sent)
                .unwrap_or(Duration::ZERO)
        });
        metrics::gauge!(ADAPTER_OLDEST_MESSAGE_AGE).set(age.as_secs_f64());
    }

    pub fn queue_depth(&self, depth: u64) {
        metrics::gauge!(ADAPTER_QUEUE_DEPTH).set(depth as f64);
    }
}

/// The guarded data stays consistent whatever a panicking holder did (each update is one
/// assignment), so a poisoned lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthz_names_every_unavailable_dependency_until_it_recovers() {
        let (monitor, health) = Monitor::new();
        assert_eq!(*health.borrow(), None);
        monitor.unavailable(Dependency::Output, "QueueDoesNotExist");
        monitor.unavailable(Dependency::Minter, "Unavailable: tcp connect error");
        assert_eq!(
            health.borrow().as_deref(),
            Some(
                "minter unavailable: Unavailable: tcp connect error; output unavailable: QueueDoesNotExist"
            )
        );
        monitor.available(Dependency::Minter);
        assert_eq!(
            health.borrow().as_deref(),
            Some("output unavailable: QueueDoesNotExist")
        );
        monitor.available(Dependency::Output);
        assert_eq!(*health.borrow(), None);
    }
}
