//! The adapter's MintIds client: one call for the identifiers of a whole batch of documents,
//! deduplicated, split when over the minter's max batch, and its failures sorted into the two kinds
//! the adapter acts on differently: the documents' fault (retrying gives the same answer) and the
//! minter's unavailability (retrying later helps).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::adapter::document::{Mint, SourceKey};
use crate::domain::CanonicalId;
use crate::pb;
use crate::pb::id_minter_client::IdMinterClient;

/// How long a connection to the minter may take to establish.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a MintIds call gave no IDs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// INVALID_ARGUMENT or FAILED_PRECONDITION: something in the request (a malformed identifier,
    /// a predecessor never minted) is wrong, and stays wrong.
    #[error("the minter rejected the identifiers: {0}")]
    Rejected(String),
    /// Anything else: the minter is down, overloaded, not ready, or broken; retry later.
    #[error("minter unavailable: {0}")]
    Unavailable(String),
}

/// A MintIds client for one minter.
#[derive(Clone)]
pub struct Minter {
    client: IdMinterClient<Channel>,
    /// For error messages: which minter.
    addr: String,
    max_batch: usize,
    timeout: Duration,
}

impl Minter {
    /// A client that connects on first use (and reconnects by itself), so that the adapter starts
    /// while the minter is still down.
    ///
    /// # Errors
    /// `addr` is not a URL.
    pub fn connect_lazy(addr: &str, max_batch: usize, timeout: Duration) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(addr.to_owned())
            .map_err(|e| anyhow::anyhow!("--minter-addr `{addr}` is not a valid URL: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout);
        Ok(Self {
            client: IdMinterClient::new(endpoint.connect_lazy()),
            addr: addr.to_owned(),
            max_batch: max_batch.max(1),
            timeout,
        })
    }

    /// The canonical ID of every identifier in `mints`.
    ///
    /// Items are deduplicated; items without a predecessor go first, so that when the request
    /// has to be split, a predecessor minted by this batch is minted by an earlier call than the
    /// identifiers inheriting from it (one level deep; longer chains in one batch are rare, and
    /// isolating the documents one by one still mints them).
    ///
    /// # Errors
    /// [`MintError::Rejected`] for the request's fault, [`MintError::Unavailable`] otherwise.
    pub async fn mint<'a>(
        &self,
        mints: impl IntoIterator<Item = &'a Mint>,
    ) -> Result<HashMap<SourceKey, String>, MintError> {
        let mut seen = HashSet::new();
        let mut items: Vec<&Mint> = mints.into_iter().filter(|m| seen.insert(*m)).collect();
        items.sort_by_key(|m| m.predecessor.is_some());
        let mut ids = HashMap::with_capacity(items.len());
        for chunk in items.chunks(self.max_batch) {
            self.mint_chunk(chunk, &mut ids).await?;
        }
        Ok(ids)
    }

    async fn mint_chunk(
        &self,
        chunk: &[&Mint],
        ids: &mut HashMap<SourceKey, String>,
    ) -> Result<(), MintError> {
        let request = pb::MintIdsRequest {
            items: chunk
                .iter()
                .map(|m| pb::MintItem {
                    source_identifier: Some(m.source.to_pb()),
                    predecessor: m.predecessor.as_ref().map(SourceKey::to_pb),
                })
                .collect(),
        };
        let mut request = tonic::Request::new(request);
        request.set_timeout(self.timeout);
        // The endpoint's own timeout covers the call; this one also covers a connection attempt
        // that hangs.
        let mut client = self.client.clone();
        let call = client.mint_ids(request);
        let response = match tokio::time::timeout(self.timeout + CONNECT_TIMEOUT, call).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return Err(classify(&self.addr, &status)),
            Err(_) => {
                return Err(MintError::Unavailable(format!(
                    "{}: no answer within {:?}",
                    self.addr,
                    self.timeout + CONNECT_TIMEOUT
                )));
            }
        };
        if response.ids.len() != chunk.len() {
            return Err(MintError::Unavailable(format!(
                "{}: the minter answered {} IDs for {} items",
                self.addr,
                response.ids.len(),
                chunk.len()
            )));
        }
        // The response is in request order; its identifiers are in the stored form (after the
        // minter's ontology aliases), so the request's own are the keys.
        for (mint, minted) in chunk.iter().zip(response.ids) {
            let id = CanonicalId::parse(minted.canonical_id).map_err(|why| {
                MintError::Unavailable(format!(
                    "{}: the minter answered an invalid canonical ID for {}: {why}",
                    self.addr, mint.source
                ))
            })?;
            ids.insert(mint.source.clone(), id.into_string());
        }
        Ok(())
    }
}

fn classify(addr: &str, status: &tonic::Status) -> MintError {
    let message = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::InvalidArgument | Code::FailedPrecondition => MintError::Rejected(message),
        _ => MintError::Unavailable(format!("{addr}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documents_faults_count_as_rejections() {
        for code in [Code::InvalidArgument, Code::FailedPrecondition] {
            assert!(
                matches!(
                    classify("http://minter", &tonic::Status::new(code, "x")),
                    MintError::Rejected(_)
                ),
                "{code:?}"
            );
        }
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Internal,
            Code::Unknown,
            Code::Unimplemented,
        ] {
            assert!(
                matches!(
                    classify("http://minter", &tonic::Status::new(code, "x")),
                    MintError::Unavailable(_)
                ),
                "{code:?}"
            );
        }
    }
}
