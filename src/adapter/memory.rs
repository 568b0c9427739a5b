//! In-memory implementations of the adapter's three I/O boundaries ([`Queue`], [`Sink`],
//! [`MintIds`]), for fast tests of the worker's rules: no moto, no minter process, no network, and
//! tokio's paused clock instead of waiting. Like quickwit's `memory_queue`, they keep the part of
//! the real services' behaviour the worker relies on: a received message is hidden until its
//! visibility runs out and comes back with a new receipt handle, a redrive policy moves it to a
//! dead-letter queue after `max_receive_count` receives, and the minter mints, inherits and
//! rejects a predecessor never minted. Each can be told to fail its next calls.
//!
//! Every call is written into a shared [`Journal`], so that a test can check the order of what
//! happened across the three (a message deleted only after its document was published) and wait
//! for a condition without sleeping.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::adapter::document::{Mint, SourceKey};
use crate::adapter::minter::{MintError, MintIds};
use crate::adapter::output::{CallError, SendFailure, Sink};
use crate::adapter::queue::{EntryFailure, Queue, Received};

/// How long (on the paused clock) a test waits for a condition before it fails.
const PATIENCE: Duration = Duration::from_secs(3600);

/// One call's effect, in the order they happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message was handed to the worker; `receive_count` includes this receive.
    Received {
        message_id: String,
        receive_count: u32,
    },
    Deleted(String),
    Visibility {
        message_id: String,
        visibility: Duration,
    },
    /// The redrive policy moved a message to the dead-letter queue.
    DeadLettered(String),
    /// The output accepted a document (its body).
    Published(String),
    /// A MintIds call that reached the minter, with the values of its identifiers.
    MintCall(Vec<String>),
}

/// The shared record of every call, which tests read and wait on.
#[derive(Clone)]
pub struct Journal(Arc<JournalInner>);

struct JournalInner {
    events: Mutex<Vec<Event>>,
    changed: watch::Sender<()>,
}

impl Journal {
    pub fn new() -> Self {
        Self(Arc::new(JournalInner {
            events: Mutex::new(Vec::new()),
            changed: watch::Sender::new(()),
        }))
    }

    fn record(&self, event: Event) {
        lock(&self.0.events).push(event);
        self.0.changed.send_replace(());
    }

    pub fn events(&self) -> Vec<Event> {
        lock(&self.0.events).clone()
    }

    /// Returns once `done` holds for the events so far; panics, naming `what`, when it has not
    /// after an hour on the (paused) clock.
    pub async fn until(&self, what: &str, done: impl Fn(&[Event]) -> bool) {
        let mut changed = self.0.changed.subscribe();
        let wait = async {
            while !done(&lock(&self.0.events)) {
                changed
                    .changed()
                    .await
                    .expect("the journal holds the sender");
            }
        };
        if tokio::time::timeout(PATIENCE, wait).await.is_err() {
            panic!("never happened: {what}; events: {:#?}", self.events());
        }
    }
}

// === MemoryQueue ===

/// An SQS-like queue with a redrive policy.
pub struct MemoryQueue {
    journal: Journal,
    state: Mutex<QueueState>,
    max_receive_count: u32,
    visibility_timeout: Duration,
    failing_deletes: AtomicUsize,
}

#[derive(Default)]
struct QueueState {
    messages: Vec<Stored>,
    sent: u64,
}

struct Stored {
    message_id: String,
    body: String,
    sent: SystemTime,
    receive_count: u32,
    receipt_handle: String,
    visible_at: Instant,
}

impl MemoryQueue {
    /// A queue with a visibility timeout of 30 s and no redrive policy.
    pub fn new(journal: Journal) -> Self {
        Self {
            journal,
            state: Mutex::new(QueueState::default()),
            max_receive_count: u32::MAX,
            visibility_timeout: Duration::from_secs(30),
            failing_deletes: AtomicUsize::new(0),
        }
    }

    /// A message received this often goes to the dead-letter queue when it would be received
    /// once more.
    pub fn with_max_receive_count(mut self, max_receive_count: u32) -> Self {
        self.max_receive_count = max_receive_count;
        self
    }

    /// The next `calls` deletes fail as a whole.
    pub fn fail_deletes(&self, calls: usize) {
        self.failing_deletes.store(calls, Ordering::SeqCst);
    }

    /// Enqueues a message, visible at once; returns its message id.
    pub fn send(&self, body: &str) -> String {
        let mut state = lock(&self.state);
        state.sent += 1;
        let message_id = format!("m{}", state.sent);
        state.messages.push(Stored {
            message_id: message_id.clone(),
            body: body.to_owned(),
            sent: SystemTime::now(),
            receive_count: 0,
            receipt_handle: String::new(),
            visible_at: Instant::now(),
        });
        message_id
    }

    /// Takes up to `max` visible messages, dead-lettering those received too often; `None` when
    /// none was visible: then when the next one becomes visible, if any.
    fn take(&self, max: u8, visibility: Duration) -> Result<Vec<Received>, Option<Instant>> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let mut received = Vec::new();
        let mut kept = Vec::with_capacity(state.messages.len());
        for mut message in std::mem::take(&mut state.messages) {
            if message.visible_at > now || received.len() >= usize::from(max) {
                kept.push(message);
            } else if message.receive_count >= self.max_receive_count {
                self.journal
                    .record(Event::DeadLettered(message.message_id.clone()));
            } else {
                message.receive_count += 1;
                message.receipt_handle =
                    format!("{}#{}", message.message_id, message.receive_count);
                message.visible_at = now + visibility;
                self.journal.record(Event::Received {
                    message_id: message.message_id.clone(),
                    receive_count: message.receive_count,
                });
                received.push(Received {
                    message_id: message.message_id.clone(),
                    receipt_handle: message.receipt_handle.clone(),
                    body: message.body.clone(),
                    sent: Some(message.sent),
                    receive_count: Some(message.receive_count),
                });
                kept.push(message);
            }
        }
        let next = kept.iter().map(|m| m.visible_at).min();
        state.messages = kept;
        if received.is_empty() {
            Err(next)
        } else {
            Ok(received)
        }
    }

    /// Applies `change` to the message each receipt handle names; the others are failures.
    fn with_each(
        &self,
        messages: &[&Received],
        mut change: impl FnMut(&mut Vec<Stored>, usize),
    ) -> Vec<EntryFailure> {
        let mut state = lock(&self.state);
        let mut failures = Vec::new();
        for message in messages {
            let position = state
                .messages
                .iter()
                .position(|m| m.receipt_handle == message.receipt_handle);
            match position {
                Some(position) => change(&mut state.messages, position),
                None => failures.push(EntryFailure {
                    message_id: message.message_id.clone(),
                    reason: "ReceiptHandleIsInvalid: ".to_owned(),
                }),
            }
        }
        failures
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn receive(
        &self,
        max: u8,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, String> {
        let deadline = Instant::now() + wait;
        let mut changed = self.journal.0.changed.subscribe();
        loop {
            let next = match self.take(max, visibility) {
                Ok(received) => return Ok(received),
                Err(next) => next,
            };
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            let wake = next.map_or(deadline, |next| next.min(deadline));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                _ = changed.changed() => {}
            }
        }
    }

    async fn delete(&self, messages: &[&Received]) -> Result<Vec<EntryFailure>, String> {
        if take_one(&self.failing_deletes) {
            return Err("delete: the in-memory queue is unavailable".to_owned());
        }
        Ok(self.with_each(messages, |stored, position| {
            let message = stored.remove(position);
            self.journal.record(Event::Deleted(message.message_id));
        }))
    }

    async fn change_visibility(
        &self,
        messages: &[&Received],
        visibility: Duration,
    ) -> Result<Vec<EntryFailure>, String> {
        Ok(self.with_each(messages, |stored, position| {
            let message = &mut stored[position];
            message.visible_at = Instant::now() + visibility;
            self.journal.record(Event::Visibility {
                message_id: message.message_id.clone(),
                visibility,
            });
        }))
    }

    async fn depth(&self) -> Result<u64, String> {
        let now = Instant::now();
        let state = lock(&self.state);
        Ok(state
            .messages
            .iter()
            .filter(|m| m.visible_at <= now)
            .count() as u64)
    }

    async fn visibility_timeout(&self) -> Result<Duration, String> {
        Ok(self.visibility_timeout)
    }
}

// === MemorySink ===

/// An output that accepts every document, unless told to fail its next calls, or to refuse as a
/// whole (a sender fault, as SQS does for a message too long) any call carrying a document over
/// some size.
pub struct MemorySink {
    journal: Journal,
    failing_calls: AtomicUsize,
    refuse_over: Option<usize>,
}

impl MemorySink {
    pub fn new(journal: Journal) -> Self {
        Self {
            journal,
            failing_calls: AtomicUsize::new(0),
            refuse_over: None,
        }
    }

    /// Refuses as a whole every call that carries a document of more than `bytes`, without
    /// telling that limit in advance (like an SQS queue whose MaximumMessageSize cannot be read).
    pub fn refusing_documents_over(mut self, bytes: usize) -> Self {
        self.refuse_over = Some(bytes);
        self
    }

    /// The next `calls` calls fail as a whole, as an unreachable output does.
    pub fn fail_calls(&self, calls: usize) {
        self.failing_calls.store(calls, Ordering::SeqCst);
    }
}

#[async_trait]
impl Sink for MemorySink {
    fn name(&self) -> &str {
        "memory-output"
    }

    async fn read_max_message_bytes(&self) -> Option<Result<usize, String>> {
        None
    }

    async fn send_batch(&self, documents: &[&str]) -> Result<Vec<SendFailure>, CallError> {
        if take_one(&self.failing_calls) {
            return Err(CallError {
                sender_fault: false,
                reason: "send: the in-memory output is unavailable".to_owned(),
            });
        }
        if let Some(limit) = self.refuse_over
            && documents.iter().any(|d| d.len() > limit)
        {
            return Err(CallError {
                sender_fault: true,
                reason: format!("MessageTooLong: a message is longer than {limit} bytes"),
            });
        }
        for document in documents {
            self.journal
                .record(Event::Published((*document).to_owned()));
        }
        Ok(Vec::new())
    }
}

// === MemoryMinter ===

/// A minter with the rules of MintIds that the worker meets: known identifiers keep their ID,
/// new ones get a fresh one or inherit their predecessor's, and a call naming a predecessor that
/// is neither minted nor in the call is rejected as a whole (nothing minted).
pub struct MemoryMinter {
    journal: Journal,
    ids: Mutex<HashMap<SourceKey, String>>,
    failing_calls: AtomicUsize,
}

impl MemoryMinter {
    pub fn new(journal: Journal) -> Self {
        Self {
            journal,
            ids: Mutex::new(HashMap::new()),
            failing_calls: AtomicUsize::new(0),
        }
    }

    /// The next `calls` calls fail as when the minter is down.
    pub fn fail_calls(&self, calls: usize) {
        self.failing_calls.store(calls, Ordering::SeqCst);
    }
}

#[async_trait]
impl MintIds for MemoryMinter {
    async fn mint(&self, mints: &[&Mint]) -> Result<HashMap<SourceKey, String>, MintError> {
        if take_one(&self.failing_calls) {
            return Err(MintError::Unavailable(
                "the in-memory minter is unavailable".to_owned(),
            ));
        }
        self.journal.record(Event::MintCall(
            mints.iter().map(|m| m.source.value.clone()).collect(),
        ));
        let mut ids = lock(&self.ids);
        let mut new: HashMap<SourceKey, String> = HashMap::new();
        let mut answer = HashMap::new();
        let (plain, inheriting): (Vec<&Mint>, Vec<&Mint>) =
            mints.iter().partition(|m| m.predecessor.is_none());
        for mint in plain.into_iter().chain(inheriting) {
            let known = ids
                .get(&mint.source)
                .or_else(|| new.get(&mint.source))
                .cloned();
            let fresh = known.is_none();
            let id = match (known, &mint.predecessor) {
                (Some(id), _) => id,
                (None, None) => format!("id{}", ids.len() + new.len() + 1),
                (None, Some(predecessor)) => ids
                    .get(predecessor)
                    .or_else(|| new.get(predecessor))
                    .cloned()
                    .ok_or_else(|| {
                        MintError::Rejected(format!("the predecessor {predecessor} is not minted"))
                    })?,
            };
            if fresh {
                new.insert(mint.source.clone(), id.clone());
            }
            answer.insert(mint.source.clone(), id);
        }
        ids.extend(new);
        Ok(answer)
    }
}

/// Counts one down from a positive `counter`: true when it was positive.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// The guarded state stays consistent whatever a panicking test did.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
