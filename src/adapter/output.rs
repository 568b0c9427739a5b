//! Where identified documents go, and how: the [`Sink`] trait is the adapter's I/O boundary on
//! the output side (one batch call of an SQS queue, [`crate::adapter::sqs::SqsOutput`], or an SNS
//! topic, [`crate::adapter::sns::SnsTopic`]; an in-memory one in tests), and [`Output`] is the
//! policy over it. Documents are sent in as few calls as the services allow (10 entries and
//! 256 KiB per call), and the answer sorts each document into accepted, refused for its own sake
//! (a sender fault such as a message too large: retrying gives the same answer), or to retry (the
//! output failed, or is unreachable, throttling, or misconfigured).
//!
//! A document must not hold back its batch-mates: one larger than the output takes (256 KiB for
//! SNS, the queue's MaximumMessageSize for SQS) is refused here without being sent, and a call
//! refused as a whole for a sender fault (a message or the batch too long, an invalid parameter)
//! is split in halves and retried, down to the single document at fault, which is refused.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

use crate::adapter::queue::MAX_BATCH_ENTRIES;

/// The most bytes of message bodies one SendMessageBatch or PublishBatch call may carry.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// The largest message SNS takes, and the size assumed for an SQS queue whose
/// MaximumMessageSize cannot be read.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// A call that failed as a whole.
#[derive(Debug, Clone)]
pub struct CallError {
    /// Refused for what it carries: the same call gives the same answer.
    pub sender_fault: bool,
    /// One line, with the cause chain.
    pub reason: String,
}

impl CallError {
    /// A call that could not even be built: not the documents' fault, and not sent.
    pub fn unsent(reason: String) -> Self {
        Self {
            sender_fault: false,
            reason,
        }
    }
}

/// An entry of a call that the sink did not accept.
#[derive(Debug, Clone)]
pub struct SendFailure {
    /// The entry's position in the documents of the call.
    pub position: usize,
    /// Refused for what it carries, rather than for a passing reason.
    pub sender_fault: bool,
    pub reason: String,
}

/// A destination that takes documents in batch calls (SQS SendMessageBatch, SNS PublishBatch).
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// The queue URL or topic ARN, for logs and reasons.
    fn name(&self) -> &str;

    /// The largest document this sink takes, for a sink with a limit of its own to read (an
    /// SQS queue's MaximumMessageSize); `None` for one that takes [`DEFAULT_MAX_MESSAGE_BYTES`].
    async fn read_max_message_bytes(&self) -> Option<Result<usize, String>>;

    /// Sends `documents` in one call (the caller keeps to [`MAX_BATCH_ENTRIES`] and
    /// [`MAX_BATCH_BYTES`]) and returns the entries not accepted, by their position.
    ///
    /// # Errors
    /// The call failed as a whole.
    async fn send_batch(&self, documents: &[&str]) -> Result<Vec<SendFailure>, CallError>;
}

/// The failed entries of a batch answer, `(id, sender_fault, code, message)` with the entry ids
/// being positions, as [`SendFailure`]s. An id that is not a position of ours is ignored.
pub fn send_failures<'a>(
    failed: impl Iterator<Item = (&'a str, bool, &'a str, Option<&'a str>)>,
) -> Vec<SendFailure> {
    failed
        .filter_map(|(id, sender_fault, code, message)| {
            Some(SendFailure {
                position: id.parse().ok()?,
                sender_fault,
                reason: format!("{code}: {}", message.unwrap_or("")),
            })
        })
        .collect()
}

/// Where identified documents go.
#[derive(Clone)]
pub struct Output {
    sink: Arc<dyn Sink>,
    /// The largest document the output takes, in bytes.
    max_message_bytes: usize,
}

/// What became of the documents given to [`Output::publish`], by their index in its input.
#[derive(Debug, Default, PartialEq, Eq)]
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
    /// An output that takes documents of up to 256 KiB until [`Output::read_limit`] says
    /// otherwise.
    pub fn new(sink: Arc<dyn Sink>) -> Self {
        Self {
            sink,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }

    /// The queue URL or topic ARN, for logs.
    pub fn name(&self) -> &str {
        self.sink.name()
    }

    /// The largest document the output takes, in bytes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Reads an output queue's MaximumMessageSize, once; when it cannot be read, 256 KiB is
    /// assumed (a smaller limit then shows as calls refused, which are split). A topic takes
    /// 256 KiB.
    pub async fn read_limit(&mut self) {
        let Some(limit) = self.sink.read_max_message_bytes().await else {
            return;
        };
        let output = self.sink.name();
        match limit {
            Ok(limit) => {
                tracing::info!(%output, max_message_bytes = limit, "the output queue's MaximumMessageSize");
                self.max_message_bytes = limit;
            }
            Err(reason) => {
                tracing::warn!(%output, %reason, max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES,
                    "could not read the output queue's MaximumMessageSize: assuming 256 KiB");
            }
        }
    }

    /// Sends each document once, except those larger than the output takes, which are refused
    /// unsent. A call refused as a whole for a sender fault is split (see [`deliver`]). Stops at
    /// the first call that fails as a whole for another reason (the output is then most likely
    /// unavailable) and marks the documents not yet sent for retry.
    pub async fn publish(&self, documents: &[&str]) -> Published {
        let mut published = Published::default();
        let mut sendable = Vec::with_capacity(documents.len());
        for (i, doc) in documents.iter().enumerate() {
            if doc.len() > self.max_message_bytes {
                published.refused.push((
                    i,
                    format!(
                        "{} bytes, more than {} takes ({} bytes)",
                        doc.len(),
                        self.name(),
                        self.max_message_bytes
                    ),
                ));
            } else {
                sendable.push(i);
            }
        }
        let chunks = chunk(documents, &sendable);
        deliver(chunks, &mut published, |indexes| async move {
            let call: Vec<&str> = indexes.iter().map(|&i| documents[i]).collect();
            let failed = self.sink.send_batch(&call).await?;
            Ok(outcome(&indexes, failed))
        })
        .await;
        published
    }
}

/// Sends `chunks` in order with `send`, sorting their documents into `published`. A chunk
/// refused as a whole for a sender fault is split in halves, each sent in its turn; a chunk of
/// one so refused is refused. Any other failure of a whole call stops the sending: that chunk and
/// the ones after it are to retry.
async fn deliver<F, Fut>(chunks: Vec<Vec<usize>>, published: &mut Published, mut send: F)
where
    F: FnMut(Vec<usize>) -> Fut,
    Fut: Future<Output = Result<ChunkOutcome, CallError>>,
{
    let mut pending: VecDeque<Vec<usize>> = chunks.into();
    while let Some(indexes) = pending.pop_front() {
        match send(indexes.clone()).await {
            Ok(outcome) => {
                for (i, failure) in outcome {
                    match failure {
                        None => published.accepted.push(i),
                        Some(Failure {
                            sender_fault: true,
                            reason,
                        }) => published.refused.push((i, reason)),
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
            Err(CallError {
                sender_fault: true,
                reason,
            }) => {
                if let [i] = indexes[..] {
                    published.refused.push((i, reason));
                } else {
                    tracing::info!(documents = indexes.len(), %reason,
                        "the output refused a call for what it carries: splitting it to find the documents at fault");
                    let (first, second) = indexes.split_at(indexes.len() / 2);
                    pending.push_front(second.to_vec());
                    pending.push_front(first.to_vec());
                }
            }
            Err(CallError {
                sender_fault: false,
                reason,
            }) => {
                published.retry.extend(indexes);
                published.retry.extend(pending.drain(..).flatten());
                published.unavailable = Some(reason);
                break;
            }
        }
    }
}

struct Failure {
    sender_fault: bool,
    reason: String,
}

/// The `indexes` of `documents`, grouped into calls of at most [`MAX_BATCH_ENTRIES`] entries and
/// [`MAX_BATCH_BYTES`] bytes (a single larger document goes alone, for the service to judge).
fn chunk(documents: &[&str], indexes: &[usize]) -> Vec<Vec<usize>> {
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for &i in indexes {
        let len = documents[i].len();
        let fits = chunks
            .last()
            .is_some_and(|c| c.len() < MAX_BATCH_ENTRIES && bytes + len <= MAX_BATCH_BYTES);
        if fits {
            bytes += len;
            if let Some(last) = chunks.last_mut() {
                last.push(i);
            }
        } else {
            bytes = len;
            chunks.push(vec![i]);
        }
    }
    chunks
}

/// Per index of the chunk: `None` when accepted. Entry ids are positions in the chunk.
type ChunkOutcome = Vec<(usize, Option<Failure>)>;

fn outcome(indexes: &[usize], failed: Vec<SendFailure>) -> ChunkOutcome {
    let mut result: ChunkOutcome = indexes.iter().map(|&i| (i, None)).collect();
    for failure in failed {
        if let Some(slot) = result.get_mut(failure.position) {
            slot.1 = Some(Failure {
                sender_fault: failure.sender_fault,
                reason: failure.reason,
            });
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::memory::{Journal, MemorySink};

    #[test]
    fn calls_carry_at_most_ten_entries_and_256_kib() {
        let small = "x".repeat(10);
        let docs: Vec<&str> = vec![small.as_str(); 23];
        let sizes: Vec<usize> = chunk(&docs, &all(&docs)).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 3]);

        let big = "x".repeat(100 * 1024);
        let docs = [big.as_str(), big.as_str(), big.as_str(), small.as_str()];
        assert_eq!(
            chunk(&docs, &all(&docs)),
            [vec![0, 1], vec![2, 3]],
            "300 KiB do not fit one call"
        );

        let huge = "x".repeat(300 * 1024);
        let docs = [small.as_str(), huge.as_str(), small.as_str()];
        assert_eq!(
            chunk(&docs, &all(&docs)),
            [vec![0], vec![1], vec![2]],
            "an oversized document goes alone"
        );
        assert_eq!(
            chunk(&docs, &[0, 2]),
            [vec![0, 2]],
            "only the indexes given"
        );
        assert!(chunk(&[], &[]).is_empty());
    }

    fn all(docs: &[&str]) -> Vec<usize> {
        (0..docs.len()).collect()
    }

    /// An output that refuses any call carrying one of `poison` as a whole, with `error`, and
    /// accepts the others: (what became of the documents, the calls made).
    async fn deliver_to(
        chunks: Vec<Vec<usize>>,
        poison: &[usize],
        error: CallError,
    ) -> (Published, Vec<Vec<usize>>) {
        let mut published = Published::default();
        let mut calls = Vec::new();
        deliver(chunks, &mut published, |indexes| {
            calls.push(indexes.clone());
            let result = if indexes.iter().any(|i| poison.contains(i)) {
                Err(error.clone())
            } else {
                Ok(indexes.iter().map(|&i| (i, None)).collect())
            };
            std::future::ready(result)
        })
        .await;
        (published, calls)
    }

    fn refused_as_a_whole() -> CallError {
        CallError {
            sender_fault: true,
            reason: "InvalidParameterValue: Message must be shorter than 1024 bytes".to_owned(),
        }
    }

    #[tokio::test]
    async fn a_call_refused_for_a_sender_fault_is_split_down_to_the_document_at_fault() {
        let (published, calls) = deliver_to(
            vec![(0..10).collect(), vec![10, 11]],
            &[6],
            refused_as_a_whole(),
        )
        .await;
        let mut accepted = published.accepted.clone();
        accepted.sort_unstable();
        assert_eq!(accepted, [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11]);
        assert_eq!(published.refused.len(), 1);
        assert_eq!(published.refused[0].0, 6);
        assert!(published.refused[0].1.contains("shorter than 1024"));
        assert!(published.retry.is_empty());
        assert_eq!(published.unavailable, None, "a sender fault is no outage");
        // Halving: 10 -> 5 + (5 -> (2 -> 1 + 1) + 3), then the second chunk.
        assert_eq!(calls.len(), 8, "{calls:?}");
        assert_eq!(calls.last(), Some(&vec![10, 11]));
    }

    #[tokio::test]
    async fn a_chunk_of_one_refused_as_a_whole_is_refused() {
        let (published, calls) = deliver_to(vec![vec![3]], &[3], refused_as_a_whole()).await;
        assert_eq!(calls, [vec![3]]);
        assert_eq!(published.refused.len(), 1);
        assert!(published.accepted.is_empty() && published.retry.is_empty());
    }

    #[tokio::test]
    async fn any_other_failure_of_a_whole_call_stops_sending_and_retries_the_rest() {
        let unavailable = CallError {
            sender_fault: false,
            reason: "dispatch failure: Connection refused".to_owned(),
        };
        let (published, calls) =
            deliver_to(vec![vec![0, 1], vec![2, 3], vec![4]], &[2], unavailable).await;
        assert_eq!(calls, [vec![0, 1], vec![2, 3]], "no split, no more calls");
        assert_eq!(published.accepted, [0, 1]);
        assert_eq!(published.retry, [2, 3, 4]);
        assert!(published.refused.is_empty());
        assert!(published.unavailable.is_some());
    }

    #[tokio::test]
    async fn a_document_larger_than_the_output_takes_is_refused_unsent() {
        let journal = Journal::new();
        let sink = MemorySink::new(journal.clone());
        let output = Output::new(Arc::new(sink));
        assert_eq!(output.max_message_bytes(), 256 * 1024);
        let large = "x".repeat(256 * 1024 + 1);
        let published = output.publish(&[large.as_str()]).await;
        assert_eq!(published.refused.len(), 1, "{published:?}");
        assert!(
            published.refused[0].1.contains("262145 bytes"),
            "{published:?}"
        );
        assert!(published.accepted.is_empty() && published.retry.is_empty());
        assert_eq!(published.unavailable, None);
        assert!(journal.events().is_empty(), "nothing was sent");
    }

    #[test]
    fn entry_failures_are_mapped_back_to_the_documents() {
        let result = outcome(
            &[4, 7, 9],
            send_failures(
                [
                    ("1", true, "InvalidMessageContents", Some("bad")),
                    ("2", false, "InternalError", None),
                    ("x", false, "InternalError", None),
                ]
                .into_iter(),
            ),
        );
        assert!(result[0].1.is_none());
        assert_eq!(result[1].0, 7);
        assert!(result[1].1.as_ref().is_some_and(|f| f.sender_fault));
        assert!(result[2].1.as_ref().is_some_and(|f| !f.sender_fault));
    }
}
