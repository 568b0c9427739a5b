//! The adapter's MintIds client: one call for the identifiers of a whole batch of documents,
//! deduplicated, split when over the minter's max batch, and its failures sorted into the two kinds
//! the adapter acts on differently: the documents' fault (retrying gives the same answer) and the
//! minter's unavailability (retrying later helps).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Duration;

use async_trait::async_trait;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::adapter::args::Redirects;
use crate::adapter::document::{Mint, SourceKey};
use crate::auth::BearerToken;
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

/// How the adapter proves itself to the minter: a token, and the CA of an https:// minter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    pub token: Option<&'a str>,
    pub tls_ca: Option<&'a std::path::Path>,
}

/// What the worker needs of the minter: the canonical ID of every identifier of a batch. The
/// boundary between the worker and the network on the minter's side, as [`crate::adapter::queue::Queue`]
/// and [`crate::adapter::output::Sink`] are on the queues' side; [`Minter`] is the gRPC
/// implementation.
#[async_trait]
pub trait MintIds: Send + Sync + 'static {
    /// The canonical ID of every identifier in `mints`.
    ///
    /// # Errors
    /// [`MintError::Rejected`] for the request's fault, [`MintError::Unavailable`] otherwise.
    async fn mint(&self, mints: &[&Mint]) -> Result<HashMap<SourceKey, String>, MintError>;
}

/// A MintIds client for one minter.
#[derive(Clone)]
pub struct Minter {
    client: IdMinterClient<InterceptedService<Channel, BearerToken>>,
    /// For error messages: which minter.
    addr: String,
    max_batch: usize,
    timeout: Duration,
    redirects: Redirects,
}

impl Minter {
    /// A client that connects on first use (and reconnects by itself), so that the adapter starts
    /// while the minter is still down. An `https://` address uses TLS.
    ///
    /// # Errors
    /// `addr` is not a URL, the CA file cannot be read, or the token cannot be sent as metadata.
    pub fn connect_lazy(
        addr: &str,
        credentials: Credentials<'_>,
        max_batch: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let endpoint = crate::tls::client_endpoint(addr, credentials.tls_ca)
            .map_err(|e| anyhow::anyhow!("--minter-addr: {e:#}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout);
        let token = BearerToken::new(credentials.token)
            .map_err(|e| anyhow::anyhow!("--minter-token: {e}"))?;
        Ok(Self {
            client: IdMinterClient::with_interceptor(endpoint.connect_lazy(), token),
            addr: addr.to_owned(),
            max_batch: max_batch.max(1),
            timeout,
            redirects: Redirects::default(),
        })
    }

    /// Which ID to write for a redirected one (default: the target).
    pub fn with_redirects(mut self, redirects: Redirects) -> Self {
        self.redirects = redirects;
        self
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
        crate::telemetry::inject(request.metadata_mut());
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
            // A merged record joins the one it was merged into (contract section 9).
            let written = match (self.redirects, minted.redirect_target) {
                (Redirects::Follow, Some(target)) => target,
                _ => minted.canonical_id,
            };
            let id = CanonicalId::parse(written).map_err(|why| {
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

// === impl MintIds for Minter ===

#[async_trait]
impl MintIds for Minter {
    /// Items are deduplicated by source identifier (see [`dedupe`]); items without a predecessor
    /// go first, so that when the request has to be split, a predecessor minted by this batch is
    /// minted by an earlier call than the identifiers inheriting from it (one level deep; longer
    /// chains in one batch are rare, and isolating the documents one by one still mints them).
    async fn mint(&self, mints: &[&Mint]) -> Result<HashMap<SourceKey, String>, MintError> {
        let items = dedupe(mints.iter().copied())?;
        let mut ids = HashMap::with_capacity(items.len());
        for chunk in items.chunks(self.max_batch) {
            self.mint_chunk(chunk, &mut ids).await?;
        }
        Ok(ids)
    }
}

/// One item per source identifier, those without a predecessor first. An identifier named once
/// with and once without a predecessor keeps the predecessor, as the minter does within one call:
/// deduplicating by (source, predecessor) instead could put the two in different calls when the
/// request is split, and the call without the predecessor would then mint a fresh ID for it.
///
/// # Errors
/// [`MintError::Rejected`] when an identifier is named with two different predecessors, which the
/// minter rejects too (INVALID_ARGUMENT) when both are in one call.
fn dedupe<'a>(mints: impl IntoIterator<Item = &'a Mint>) -> Result<Vec<&'a Mint>, MintError> {
    let mut position: HashMap<&SourceKey, usize> = HashMap::new();
    let mut items: Vec<&Mint> = Vec::new();
    for mint in mints {
        match position.entry(&mint.source) {
            Entry::Vacant(slot) => {
                slot.insert(items.len());
                items.push(mint);
            }
            Entry::Occupied(slot) => {
                let kept = &mut items[*slot.get()];
                match (&kept.predecessor, &mint.predecessor) {
                    (None, Some(_)) => *kept = mint,
                    (Some(a), Some(b)) if a != b => {
                        return Err(MintError::Rejected(format!(
                            "{} is named with two different predecessors, {a} and {b}",
                            mint.source
                        )));
                    }
                    _ => {}
                }
            }
        }
    }
    items.sort_by_key(|m| m.predecessor.is_some());
    Ok(items)
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

    fn key(value: &str) -> SourceKey {
        SourceKey {
            identifier_type: "sierra-system-number".to_owned(),
            ontology_type: "Work".to_owned(),
            value: value.to_owned(),
        }
    }

    fn mint(value: &str, predecessor: Option<&str>) -> Mint {
        Mint {
            source: key(value),
            predecessor: predecessor.map(key),
        }
    }

    #[test]
    fn an_identifier_named_with_and_without_a_predecessor_keeps_the_predecessor() {
        // f1 first without its predecessor (say, as a subject), then as itself with it: one item,
        // with the predecessor, so that no call of a split request mints f1 afresh.
        let mints = [
            mint("f1", None),
            mint("x", None),
            mint("f1", Some("b1")),
            mint("f1", None),
            mint("x", None),
        ];
        let items = dedupe(&mints).unwrap();
        assert_eq!(
            items,
            [&mints[1], &mints[2]],
            "f1 is minted once, with b1, after x"
        );
    }

    #[test]
    fn an_identifier_named_with_two_different_predecessors_is_rejected() {
        let mints = [mint("f1", Some("b1")), mint("f1", Some("b2"))];
        assert!(matches!(dedupe(&mints), Err(MintError::Rejected(_))));
        let same = [mint("f1", Some("b1")), mint("f1", Some("b1"))];
        assert_eq!(dedupe(&same).unwrap(), [&same[0]]);
    }

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
