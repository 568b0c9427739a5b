//! An SNS topic as the adapter's output [`Sink`] (PublishBatch). SNS takes 256 KiB a message,
//! which is [`crate::adapter::output::Output`]'s default, so there is no limit to read.

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::PublishBatchRequestEntry;

use crate::adapter::aws::{call_error, numbered};
use crate::adapter::output::{CallError, SendFailure, Sink, send_failures};

/// An SNS topic identified documents are published to.
#[derive(Clone)]
pub struct SnsTopic {
    client: Client,
    arn: String,
}

impl SnsTopic {
    pub fn new(client: Client, arn: String) -> Self {
        Self { client, arn }
    }
}

#[async_trait]
impl Sink for SnsTopic {
    fn name(&self) -> &str {
        &self.arn
    }

    async fn read_max_message_bytes(&self) -> Option<Result<usize, String>> {
        None
    }

    async fn send_batch(&self, documents: &[&str]) -> Result<Vec<SendFailure>, CallError> {
        let entries = numbered(documents, |id, document| {
            PublishBatchRequestEntry::builder()
                .id(id)
                .message(*document)
                .build()
        })
        .map_err(CallError::unsent)?;
        let output = self
            .client
            .publish_batch()
            .topic_arn(&self.arn)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await
            .map_err(|e| call_error(&format!("publish to {}", self.arn), &e))?;
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
