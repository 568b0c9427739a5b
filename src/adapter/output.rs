//! The output the identified documents go to: an SQS queue (SendMessageBatch) or an SNS topic
//! (PublishBatch). Documents are sent in as few calls as the services allow (10 entries and
//! 256 KiB per call), and the answer sorts each document into accepted, refused for its own sake
//! (a sender fault such as a message too large: retrying gives the same answer), or to retry (the
//! call failed, or the service failed on that entry).

use aws_sdk_sns::types::PublishBatchRequestEntry;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::adapter::args::OutputTarget;
use crate::adapter::aws::describe;
use crate::adapter::queue::MAX_BATCH_ENTRIES;

/// The most bytes of message bodies one SendMessageBatch or PublishBatch call may carry.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// A clean copy of an SDK error for the callers: one line with its cause chain.
type CallError = String;

/// Where identified documents go.
#[derive(Clone)]
pub enum Output {
    Queue {
        client: aws_sdk_sqs::Client,
        url: String,
    },
    Topic {
        client: aws_sdk_sns::Client,
        arn: String,
    },
}

/// What became of the documents given to [`Output::publish`], by their index in its input.
#[derive(Debug, Default)]
pub struct Published {
    pub accepted: Vec<usize>,
    /// Refused for the document's own sake, with the reason.
    pub refused: Vec<(usize, String)>,
    /// Not accepted for a passing reason: try again later.
    pub retry: Vec<usize>,
    /// Why some were not accepted, when the output seems unavailable.
    pub unavailable: Option<String>,
}

impl Output {
    pub fn new(target: &OutputTarget, sdk: &aws_config::SdkConfig) -> Self {
        match target {
            OutputTarget::Queue(url) => Self::Queue {
                client: aws_sdk_sqs::Client::new(sdk),
                url: url.clone(),
            },
            OutputTarget::Topic(arn) => Self::Topic {
                client: aws_sdk_sns::Client::new(sdk),
                arn: arn.clone(),
            },
        }
    }

    /// The queue URL or topic ARN, for logs.
    pub fn name(&self) -> &str {
        match self {
            Self::Queue { url, .. } => url,
            Self::Topic { arn, .. } => arn,
        }
    }

    /// Sends each document once. Stops at the first call that fails as a whole (the output is
    /// then most likely unavailable) and marks the documents not yet sent for retry.
    pub async fn publish(&self, documents: &[&str]) -> Published {
        let mut published = Published::default();
        let chunks = chunk(documents);
        for (n, indexes) in chunks.iter().enumerate() {
            let result = match self {
                Self::Queue { client, url } => send_to_queue(client, url, documents, indexes).await,
                Self::Topic { client, arn } => {
                    publish_to_topic(client, arn, documents, indexes).await
                }
            };
            match result {
                Ok(outcome) => {
                    for (i, failure) in outcome {
                        match failure {
                            None => published.accepted.push(i),
                            Some(Failure {
                                sender_fault: true,
                                reason,
                            }) => {
                                published.refused.push((i, reason));
                            }
                            Some(Failure {
                                sender_fault: false,
                                reason,
                            }) => {
                                published.retry.push(i);
                                published.unavailable = Some(reason);
                            }
                        }
                    }
                }
                Err(reason) => {
                    published
                        .retry
                        .extend(chunks[n..].iter().flatten().copied());
                    published.unavailable = Some(reason);
                    break;
                }
            }
        }
        published
    }
}

struct Failure {
    sender_fault: bool,
    reason: String,
}

/// Indexes of `documents`, grouped into calls of at most [`MAX_BATCH_ENTRIES`] entries and
/// [`MAX_BATCH_BYTES`] bytes (a single larger document goes alone, for the service to judge).
fn chunk(documents: &[&str]) -> Vec<Vec<usize>> {
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, doc) in documents.iter().enumerate() {
        let fits = chunks
            .last()
            .is_some_and(|c| c.len() < MAX_BATCH_ENTRIES && bytes + doc.len() <= MAX_BATCH_BYTES);
        if fits {
            bytes += doc.len();
            if let Some(last) = chunks.last_mut() {
                last.push(i);
            }
        } else {
            bytes = doc.len();
            chunks.push(vec![i]);
        }
    }
    chunks
}

/// Per index of the chunk: `None` when accepted. Entry ids are positions in the chunk.
type ChunkOutcome = Vec<(usize, Option<Failure>)>;

fn outcome<'a>(
    indexes: &[usize],
    failed: impl Iterator<Item = (&'a str, bool, &'a str, Option<&'a str>)>,
) -> ChunkOutcome {
    let mut result: ChunkOutcome = indexes.iter().map(|&i| (i, None)).collect();
    for (id, sender_fault, code, message) in failed {
        if let Some(slot) = id.parse::<usize>().ok().and_then(|p| result.get_mut(p)) {
            slot.1 = Some(Failure {
                sender_fault,
                reason: format!("{code}: {}", message.unwrap_or("")),
            });
        }
    }
    result
}

async fn send_to_queue(
    client: &aws_sdk_sqs::Client,
    url: &str,
    documents: &[&str],
    indexes: &[usize],
) -> Result<ChunkOutcome, CallError> {
    let entries = indexes
        .iter()
        .enumerate()
        .map(|(p, &i)| {
            SendMessageBatchRequestEntry::builder()
                .id(p.to_string())
                .message_body(documents[i])
                .build()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let output = client
        .send_message_batch()
        .queue_url(url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| format!("send to {url}: {}", describe(&e)))?;
    let failed = output.failed().iter().map(|f| {
        (
            f.id.as_str(),
            f.sender_fault,
            f.code.as_str(),
            f.message.as_deref(),
        )
    });
    Ok(outcome(indexes, failed))
}

async fn publish_to_topic(
    client: &aws_sdk_sns::Client,
    arn: &str,
    documents: &[&str],
    indexes: &[usize],
) -> Result<ChunkOutcome, CallError> {
    let entries = indexes
        .iter()
        .enumerate()
        .map(|(p, &i)| {
            PublishBatchRequestEntry::builder()
                .id(p.to_string())
                .message(documents[i])
                .build()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let output = client
        .publish_batch()
        .topic_arn(arn)
        .set_publish_batch_request_entries(Some(entries))
        .send()
        .await
        .map_err(|e| format!("publish to {arn}: {}", describe(&e)))?;
    let failed = output.failed().iter().map(|f| {
        (
            f.id.as_str(),
            f.sender_fault,
            f.code.as_str(),
            f.message.as_deref(),
        )
    });
    Ok(outcome(indexes, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_carry_at_most_ten_entries_and_256_kib() {
        let small = "x".repeat(10);
        let docs: Vec<&str> = vec![small.as_str(); 23];
        let sizes: Vec<usize> = chunk(&docs).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 3]);

        let big = "x".repeat(100 * 1024);
        let docs = [big.as_str(), big.as_str(), big.as_str(), small.as_str()];
        assert_eq!(
            chunk(&docs),
            [vec![0, 1], vec![2, 3]],
            "300 KiB do not fit one call"
        );

        let huge = "x".repeat(300 * 1024);
        let docs = [small.as_str(), huge.as_str(), small.as_str()];
        assert_eq!(
            chunk(&docs),
            [vec![0], vec![1], vec![2]],
            "an oversized document goes alone"
        );
        assert!(chunk(&[]).is_empty());
    }

    #[test]
    fn entry_failures_are_mapped_back_to_the_documents() {
        let result = outcome(
            &[4, 7, 9],
            [
                ("1", true, "InvalidMessageContents", Some("bad")),
                ("2", false, "InternalError", None),
            ]
            .into_iter(),
        );
        assert!(result[0].1.is_none());
        assert_eq!(result[1].0, 7);
        assert!(result[1].1.as_ref().is_some_and(|f| f.sender_fault));
        assert!(result[2].1.as_ref().is_some_and(|f| !f.sender_fault));
    }
}
