//! SQS behind the adapter's two I/O traits: [`SqsQueue`], the input [`Queue`] (long-poll receives,
//! batched deletes and visibility changes, the queue's depth and visibility timeout), and
//! [`SqsOutput`], an output queue as a [`Sink`] (SendMessageBatch, and the queue's
//! MaximumMessageSize). Only the SDK calls and the mapping of their answers live here; what to do
//! with the answers is the worker's and [`crate::adapter::output::Output`]'s.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use crate::adapter::aws::{call_error, describe, numbered};
use crate::adapter::output::{CallError, SendFailure, Sink, send_failures};
use crate::adapter::queue::{EntryFailure, Queue, Received};

/// The SQS queue the documents come from.
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: String) -> Self {
        Self { client, url }
    }

    async fn attribute(&self, name: QueueAttributeName) -> Result<u64, String> {
        queue_attribute(&self.client, &self.url, name).await
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn receive(
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

    async fn delete(&self, messages: &[&Received]) -> Result<Vec<EntryFailure>, String> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let entries = numbered(messages, |id, m| {
            DeleteMessageBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(&m.receipt_handle)
                .build()
        })?;
        let output = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| format!("delete from {}: {}", self.url, describe(&e)))?;
        Ok(entry_failures(messages, &output.failed))
    }

    async fn change_visibility(
        &self,
        messages: &[&Received],
        visibility: Duration,
    ) -> Result<Vec<EntryFailure>, String> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let entries = numbered(messages, |id, m| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(&m.receipt_handle)
                .visibility_timeout(seconds(visibility))
                .build()
        })?;
        let output = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| format!("change visibility in {}: {}", self.url, describe(&e)))?;
        Ok(entry_failures(messages, &output.failed))
    }

    async fn depth(&self) -> Result<u64, String> {
        self.attribute(QueueAttributeName::ApproximateNumberOfMessages)
            .await
    }

    async fn visibility_timeout(&self) -> Result<Duration, String> {
        self.attribute(QueueAttributeName::VisibilityTimeout)
            .await
            .map(Duration::from_secs)
    }
}

/// An SQS queue identified documents are sent to.
#[derive(Clone)]
pub struct SqsOutput {
    client: Client,
    url: String,
}

impl SqsOutput {
    pub fn new(client: Client, url: String) -> Self {
        Self { client, url }
    }
}

#[async_trait]
impl Sink for SqsOutput {
    fn name(&self) -> &str {
        &self.url
    }

    async fn read_max_message_bytes(&self) -> Option<Result<usize, String>> {
        let limit = queue_attribute(
            &self.client,
            &self.url,
            QueueAttributeName::MaximumMessageSize,
        )
        .await
        .and_then(|n| usize::try_from(n).map_err(|e| e.to_string()));
        Some(limit)
    }

    async fn send_batch(&self, documents: &[&str]) -> Result<Vec<SendFailure>, CallError> {
        let entries = numbered(documents, |id, document| {
            SendMessageBatchRequestEntry::builder()
                .id(id)
                .message_body(*document)
                .build()
        })
        .map_err(CallError::unsent)?;
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| call_error(&format!("send to {}", self.url), &e))?;
        Ok(send_failures(output.failed().iter().map(|f| {
            (
                f.id.as_str(),
                f.sender_fault,
                f.code.as_str(),
                f.message.as_deref(),
            )
        })))
    }
}

/// A numeric attribute of a queue.
async fn queue_attribute(
    client: &Client,
    url: &str,
    name: QueueAttributeName,
) -> Result<u64, String> {
    let output = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(name.clone())
        .send()
        .await
        .map_err(|e| format!("get attributes of {url}: {}", describe(&e)))?;
    output
        .attributes
        .as_ref()
        .and_then(|a| a.get(&name))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{url} did not report {}", name.as_str()))
}

/// Whole seconds, as SQS counts them (our durations are at most 12 hours).
fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

/// The entries of a batch call the queue refused, by the message each entry id (its position)
/// names.
fn entry_failures(messages: &[&Received], failed: &[BatchResultErrorEntry]) -> Vec<EntryFailure> {
    failed
        .iter()
        .map(|f| EntryFailure {
            message_id: f
                .id
                .parse::<usize>()
                .ok()
                .and_then(|i| messages.get(i))
                .map_or_else(|| format!("entry {}", f.id), |m| m.message_id.clone()),
            reason: format!("{}: {}", f.code, f.message.as_deref().unwrap_or("")),
        })
        .collect()
}
