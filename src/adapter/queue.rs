//! The input queue as the worker sees it: the [`Queue`] trait (receive, delete, change visibility,
//! and the two attributes the adapter reads) and the values that cross it. The trait is the
//! adapter's I/O boundary on the input side, as quickwit's queue sources have it: the SQS
//! implementation is [`crate::adapter::sqs::SqsQueue`], and an in-memory one
//! (`adapter::memory`, tests only) lets the worker's rules be tested without a network.
//!
//! Errors come back as one-line strings that the adapter logs and shows on `/healthz`;
//! implementations do not retry (the SDK's own retries aside): the worker decides that.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

/// SQS takes at most this many entries per batch call; the worker never asks for more.
pub const MAX_BATCH_ENTRIES: usize = 10;

/// A received message.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// When the message was first sent (SentTimestamp).
    pub sent: Option<SystemTime>,
    /// How often it has been received, this time included (ApproximateReceiveCount).
    pub receive_count: Option<u32>,
}

/// A message the queue would not delete or change, and why.
#[derive(Debug, Clone)]
pub struct EntryFailure {
    pub message_id: String,
    pub reason: String,
}

/// A queue whose messages, once received, are hidden from other consumers until their
/// visibility timeout runs out, and gone only when deleted (SQS's model).
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Receives up to `max` messages, waiting up to `wait` for the first, hidden from other
    /// consumers for `visibility`.
    ///
    /// # Errors
    /// The receive failed.
    async fn receive(
        &self,
        max: u8,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, String>;

    /// Deletes messages (at most [`MAX_BATCH_ENTRIES`]), returning those the queue refused.
    ///
    /// # Errors
    /// The call failed as a whole: nothing is known to be deleted.
    async fn delete(&self, messages: &[&Received]) -> Result<Vec<EntryFailure>, String>;

    /// Sets the visibility timeout of messages (at most [`MAX_BATCH_ENTRIES`]), returning those
    /// the queue refused: `Duration::ZERO` hands them back to the queue at once.
    ///
    /// # Errors
    /// The call failed as a whole.
    async fn change_visibility(
        &self,
        messages: &[&Received],
        visibility: Duration,
    ) -> Result<Vec<EntryFailure>, String>;

    /// The messages waiting to be received (SQS: ApproximateNumberOfMessages).
    ///
    /// # Errors
    /// The call failed or the queue did not say.
    async fn depth(&self) -> Result<u64, String>;

    /// The queue's own visibility timeout.
    ///
    /// # Errors
    /// The call failed or the queue did not say.
    async fn visibility_timeout(&self) -> Result<Duration, String>;
}
