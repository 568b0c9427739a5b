//! The input queue, over SQS: long-poll receives, batched deletes and visibility changes, and the
//! queue's attributes (its depth and visibility timeout). Errors come back as one-line strings that
//! the adapter logs and shows on `/healthz`; nothing here retries (the SDK's own retries aside).

use std::time::{Duration, SystemTime};

use aws_sdk_sqs::Client;

use crate::adapter::aws::describe;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName, QueueAttributeName,
};

/// SQS takes at most this many entries per batch call.
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

/// The queue the documents come from.
#[derive(Clone)]
pub struct InputQueue {
    client: Client,
    url: String,
}

impl InputQueue {
    pub fn new(client: Client, url: String) -> Self {
        Self { client, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Receives up to `max` messages, waiting up to `wait` for the first, hidden from other
    /// consumers for `visibility`.
    ///
    /// # Errors
    /// The receive failed.
    pub async fn receive(
        &self,
        max: u8,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, String> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::from(max))
            .wait_time_seconds(seconds(wait))
            .visibility_timeout(seconds(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| format!("receive from {}: {}", self.url, describe(&e)))?;
        let mut received = Vec::new();
        for message in output.messages.unwrap_or_default() {
            let (Some(message_id), Some(receipt_handle)) =
                (message.message_id.clone(), message.receipt_handle.clone())
            else {
                tracing::error!(
                    ?message,
                    "SQS returned a message without an id or receipt handle: skipped"
                );
                continue;
            };
            let attribute = |name: MessageSystemAttributeName| {
                message
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&name))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            received.push(Received {
                message_id,
                receipt_handle,
                sent: attribute(MessageSystemAttributeName::SentTimestamp)
                    .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
                receive_count: attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                    .and_then(|n| u32::try_from(n).ok()),
                body: message.body.unwrap_or_default(),
            });
        }
        Ok(received)
    }

    /// Deletes messages (at most [`MAX_BATCH_ENTRIES`]), returning those the queue refused.
    ///
    /// # Errors
    /// The call failed as a whole: nothing is known to be deleted.
    pub async fn delete(&self, messages: &[&Received]) -> Result<Vec<EntryFailure>, String> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&m.receipt_handle)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| format!("delete from {}: {}", self.url, describe(&e)))?;
        Ok(entry_failures(
            messages,
            output
                .failed
                .iter()
                .map(|f| (f.id.as_str(), f.code.as_str(), f.message.as_deref())),
        ))
    }

    /// Sets the visibility timeout of messages (at most [`MAX_BATCH_ENTRIES`]), returning those the
    /// queue refused: `Duration::ZERO` hands them back to the queue at once.
    ///
    /// # Errors
    /// The call failed as a whole.
    pub async fn change_visibility(
        &self,
        messages: &[&Received],
        visibility: Duration,
    ) -> Result<Vec<EntryFailure>, String> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&m.receipt_handle)
                    .visibility_timeout(seconds(visibility))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| format!("change visibility in {}: {}", self.url, describe(&e)))?;
        Ok(entry_failures(
            messages,
            output
                .failed
                .iter()
                .map(|f| (f.id.as_str(), f.code.as_str(), f.message.as_deref())),
        ))
    }

    /// ApproximateNumberOfMessages: the messages waiting to be received.
    ///
    /// # Errors
    /// The call failed or the attribute is missing.
    pub async fn depth(&self) -> Result<u64, String> {
        self.attribute(QueueAttributeName::ApproximateNumberOfMessages)
            .await
    }

    /// The queue's own visibility timeout.
    ///
    /// # Errors
    /// The call failed or the attribute is missing.
    pub async fn visibility_timeout(&self) -> Result<Duration, String> {
        self.attribute(QueueAttributeName::VisibilityTimeout)
            .await
            .map(Duration::from_secs)
    }

    async fn attribute(&self, name: QueueAttributeName) -> Result<u64, String> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(name.clone())
            .send()
            .await
            .map_err(|e| format!("get attributes of {}: {}", self.url, describe(&e)))?;
        output
            .attributes
            .as_ref()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{} did not report {}", self.url, name.as_str()))
    }
}

/// Whole seconds, as SQS counts them (our durations are at most 12 hours).
fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

fn entry_failures<'a>(
    messages: &[&Received],
    failed: impl Iterator<Item = (&'a str, &'a str, Option<&'a str>)>,
) -> Vec<EntryFailure> {
    failed
        .map(|(id, code, message)| EntryFailure {
            message_id: id
                .parse::<usize>()
                .ok()
                .and_then(|i| messages.get(i))
                .map_or_else(|| format!("entry {id}"), |m| m.message_id.clone()),
            reason: format!("{code}: {}", message.unwrap_or("")),
        })
        .collect()
}
