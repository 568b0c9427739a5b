//! `IdMinterService`: the RPCs (mint, lookup, resolve; the lifecycle calls and their log). Each handler checks readiness, validates the request into
//! domain types, asks the store, and converts back; errors map to statuses in `grpc::error`.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::{convert, deadline};
use crate::auth::Principal;
use crate::domain::{Action, MintOutcome, MintPlan, Minted, OntologyAliases};
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
            // The statuses are read alongside the mint: a status is never served from a copy
            // older than the call (see store::states).
            let (minted, states) = tokio::try_join!(
                self.store.mint(MintPlan::new(items)?, principal.as_str()),
                self.store.states()
            )?;
            record_outcomes(&minted);
            Ok::<_, Error>(Response::new(convert::mint_response(
                minted,
                &states.states,
            )))
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
            let (found, states) = tokio::try_join!(self.store.lookup(&ids), self.store.states())?;
            Ok(Response::new(convert::lookup_response(
                ids,
                found,
                &states.states,
            )))
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
            let (found, states) = tokio::try_join!(self.store.resolve(&ids), self.store.states())?;
            Ok(Response::new(convert::resolve_response(
                ids,
                found,
                &states.states,
            )))
        })
        .await
        .map_err(Status::from)
    }

    #[tracing::instrument(name = "RedirectCanonicalIds", skip_all, fields(items = request.get_ref().redirects.len()))]
    async fn redirect_canonical_ids(
        &self,
        request: Request<pb::RedirectCanonicalIdsRequest>,
    ) -> Result<Response<pb::ChangeCanonicalIdsResponse>, Status> {
        let principal = principal(&request);
        let entries = |r: pb::RedirectCanonicalIdsRequest| r.redirects;
        self.change(request, Action::Redirect, entries, principal)
            .await
    }

    #[tracing::instrument(name = "WithdrawCanonicalIds", skip_all, fields(items = request.get_ref().withdrawals.len()))]
    async fn withdraw_canonical_ids(
        &self,
        request: Request<pb::WithdrawCanonicalIdsRequest>,
    ) -> Result<Response<pb::ChangeCanonicalIdsResponse>, Status> {
        let principal = principal(&request);
        let entries = |r: pb::WithdrawCanonicalIdsRequest| r.withdrawals;
        self.change(request, Action::Withdraw, entries, principal)
            .await
    }

    #[tracing::instrument(name = "RestoreCanonicalIds", skip_all, fields(items = request.get_ref().restorations.len()))]
    async fn restore_canonical_ids(
        &self,
        request: Request<pb::RestoreCanonicalIdsRequest>,
    ) -> Result<Response<pb::ChangeCanonicalIdsResponse>, Status> {
        let principal = principal(&request);
        let entries = |r: pb::RestoreCanonicalIdsRequest| r.restorations;
        self.change(request, Action::Restore, entries, principal)
            .await
    }

    #[tracing::instrument(name = "ListCanonicalIdEvents", skip_all, fields(items = request.get_ref().canonical_ids.len()))]
    async fn list_canonical_id_events(
        &self,
        request: Request<pb::ListCanonicalIdEventsRequest>,
    ) -> Result<Response<pb::ListCanonicalIdEventsResponse>, Status> {
        let deadline = deadline::deadline(&request, self.request_timeout);
        deadline::within(deadline, async {
            self.readiness.check()?;
            let ids =
                convert::canonical_id_list(request.into_inner().canonical_ids, self.max_batch)?;
            let events = self.store.events(&ids).await?;
            Ok(Response::new(convert::events_response(events)))
        })
        .await
        .map_err(Status::from)
    }
}

impl IdMinterService {
    /// The three lifecycle calls: validate, apply atomically, answer each entry's new state.
    async fn change<R, E>(
        &self,
        request: Request<R>,
        action: Action,
        entries: impl FnOnce(R) -> Vec<E>,
        principal: String,
    ) -> Result<Response<pb::ChangeCanonicalIdsResponse>, Status>
    where
        E: Into<convert::RawChange>,
    {
        let deadline = deadline::deadline(&request, self.request_timeout);
        deadline::within(deadline, async {
            self.readiness.check()?;
            let raw = entries(request.into_inner())
                .into_iter()
                .map(Into::into)
                .collect();
            let changes = convert::changes(action, raw, self.max_batch)?;
            let records = self.store.change(&changes, &principal).await?;
            let ids: Vec<_> = changes.into_iter().map(|c| c.canonical_id).collect();
            let sources = self.store.resolve(&ids).await?;
            Ok(Response::new(convert::change_response(
                ids, sources, records,
            )))
        })
        .await
        .map_err(Status::from)
    }
}

/// Who makes a lifecycle change, for its record and the event log: the caller's principal, which
/// the authentication layer puts in the request's extensions; `anonymous` without one.
fn principal<T>(request: &Request<T>) -> String {
    Principal::of(request).as_str().to_owned()
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
