//! `IdMinterService`: the three RPCs. Each handler checks readiness, validates the request into
//! domain types, asks the store, and converts back; errors map to statuses in `grpc::error`.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::{convert, deadline};
use crate::auth::Principal;
use crate::domain::{MintOutcome, MintPlan, Minted, OntologyAliases};
use crate::error::Error;
use crate::pb;
use crate::readiness::Readiness;
use crate::store::Store;

/// What the service needs to answer.
#[derive(Clone)]
pub struct IdMinterService {
    store: Store,
    readiness: Readiness,
    aliases: Arc<OntologyAliases>,
    max_batch: usize,
    request_timeout: Option<Duration>,
}

// === impl IdMinterService ===

impl IdMinterService {
    pub fn new(
        store: Store,
        readiness: Readiness,
        aliases: OntologyAliases,
        max_batch: usize,
        request_timeout: Option<Duration>,
    ) -> Self {
        Self {
            store,
            readiness,
            aliases: Arc::new(aliases),
            max_batch,
            request_timeout,
        }
    }

    /// The generated tonic server wrapping this service.
    pub fn into_server(self) -> pb::id_minter_server::IdMinterServer<Self> {
        pb::id_minter_server::IdMinterServer::new(self)
    }
}

#[tonic::async_trait]
impl pb::id_minter_server::IdMinter for IdMinterService {
    #[tracing::instrument(
        name = "MintIds",
        skip_all,
        fields(items = request.get_ref().items.len(), existing, minted, inherited)
    )]
    async fn mint_ids(
        &self,
        request: Request<pb::MintIdsRequest>,
    ) -> Result<Response<pb::MintIdsResponse>, Status> {
        let deadline = deadline::deadline(&request, self.request_timeout);
        // Provenance: the rows this call creates record who asked.
        let principal = Principal::of(&request);
        deadline::within(deadline, async {
            self.readiness.check()?;
            let items = convert::mint_items(request.into_inner(), &self.aliases, self.max_batch)?;
            let minted = self
                .store
                .mint(MintPlan::new(items)?, principal.as_str())
                .await?;
            record_outcomes(&minted);
            Ok::<_, Error>(Response::new(convert::mint_response(minted)))
        })
        .await
        .map_err(Status::from)
    }

    #[tracing::instrument(name = "LookupIds", skip_all, fields(items = request.get_ref().source_identifiers.len()))]
    async fn lookup_ids(
        &self,
        request: Request<pb::LookupIdsRequest>,
    ) -> Result<Response<pb::LookupIdsResponse>, Status> {
        let deadline = deadline::deadline(&request, self.request_timeout);
        deadline::within(deadline, async {
            self.readiness.check()?;
            let ids =
                convert::lookup_identifiers(request.into_inner(), &self.aliases, self.max_batch)?;
            let found = self.store.lookup(&ids).await?;
            Ok(Response::new(convert::lookup_response(ids, found)))
        })
        .await
        .map_err(Status::from)
    }

    #[tracing::instrument(name = "ResolveCanonicalIds", skip_all, fields(items = request.get_ref().canonical_ids.len()))]
    async fn resolve_canonical_ids(
        &self,
        request: Request<pb::ResolveCanonicalIdsRequest>,
    ) -> Result<Response<pb::ResolveCanonicalIdsResponse>, Status> {
        let deadline = deadline::deadline(&request, self.request_timeout);
        deadline::within(deadline, async {
            self.readiness.check()?;
            let ids = convert::canonical_ids(request.into_inner(), self.max_batch)?;
            let found = self.store.resolve(&ids).await?;
            Ok(Response::new(convert::resolve_response(ids, found)))
        })
        .await
        .map_err(Status::from)
    }
}

/// Counts the answers by outcome, in the metrics and on the call's span (the span of a
/// ten-thousand-item call carries three numbers, never the batch).
fn record_outcomes(minted: &[Minted]) {
    let span = tracing::Span::current();
    for outcome in [
        MintOutcome::Existing,
        MintOutcome::Minted,
        MintOutcome::Inherited,
    ] {
        let count = minted.iter().filter(|m| m.outcome == outcome).count() as u64;
        span.record(outcome.as_str(), count);
        metrics::counter!(crate::metrics::IDS, "outcome" => outcome.as_str()).increment(count);
    }
}
