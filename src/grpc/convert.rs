//! Protobuf to domain and back. Validation happens once, here on the receiving side: prost's
//! `Option`s and plain strings become domain types, and every violation is named by its path in the
//! request (`items[3].source_identifier.value: must not be empty`).

use time::OffsetDateTime;

use crate::domain::{
    Action, CanonicalId, Change, Event, IdState, KnownStates, MintItem, MintOutcome, Minted,
    OntologyAliases, Reason, SourceIdentifier, StateRecord, Violations,
};
use crate::pb;

/// Validates a batch's size against the server's limit.
fn check_batch(len: usize, max_batch: usize, field: &str, violations: &mut Violations) {
    if len > max_batch {
        violations.push(
            field,
            format!("has {len} entries; at most {max_batch} are allowed per call"),
        );
    }
}

/// Parses one source identifier at `path`, then applies the ontology aliases. The path is
/// formatted only for an invalid identifier, not for each of the ten thousand valid ones.
fn source_identifier(
    proto: pb::SourceIdentifier,
    path: impl FnOnce() -> String,
    aliases: &OntologyAliases,
    violations: &mut Violations,
) -> Option<SourceIdentifier> {
    match SourceIdentifier::parse(proto.identifier_type, proto.ontology_type, proto.value) {
        Ok(id) => Some(aliases.apply(id)),
        Err(problems) => {
            let path = path();
            for (field, message) in problems {
                violations.push(format!("{path}.{field}"), message);
            }
            None
        }
    }
}

/// Validates a MintIds request.
///
/// # Errors
/// Every violation, by path.
pub fn mint_items(
    request: pb::MintIdsRequest,
    aliases: &OntologyAliases,
    max_batch: usize,
) -> Result<Vec<MintItem>, Violations> {
    let mut violations = Violations::default();
    check_batch(request.items.len(), max_batch, "items", &mut violations);
    if !violations.is_empty() {
        return Err(violations);
    }
    let mut items = Vec::with_capacity(request.items.len());
    for (i, item) in request.items.into_iter().enumerate() {
        let source = match item.source_identifier {
            Some(s) => source_identifier(
                s,
                || format!("items[{i}].source_identifier"),
                aliases,
                &mut violations,
            ),
            None => {
                violations.push(format!("items[{i}].source_identifier"), "is required");
                None
            }
        };
        // An invalid predecessor is recorded as a violation, which fails the whole request.
        let predecessor = item.predecessor.and_then(|p| {
            source_identifier(
                p,
                || format!("items[{i}].predecessor"),
                aliases,
                &mut violations,
            )
        });
        if let Some(source_identifier) = source {
            items.push(MintItem {
                source_identifier,
                predecessor,
            });
        }
    }
    violations.into_result(items)
}

/// Validates a LookupIds request.
///
/// # Errors
/// Every violation, by path.
pub fn lookup_identifiers(
    request: pb::LookupIdsRequest,
    aliases: &OntologyAliases,
    max_batch: usize,
) -> Result<Vec<SourceIdentifier>, Violations> {
    let mut violations = Violations::default();
    check_batch(
        request.source_identifiers.len(),
        max_batch,
        "source_identifiers",
        &mut violations,
    );
    if !violations.is_empty() {
        return Err(violations);
    }
    let ids: Vec<_> = request
        .source_identifiers
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| {
            source_identifier(
                s,
                || format!("source_identifiers[{i}]"),
                aliases,
                &mut violations,
            )
        })
        .collect();
    violations.into_result(ids)
}

/// Validates a ResolveCanonicalIds request.
///
/// # Errors
/// Every violation, by path.
pub fn canonical_ids(
    request: pb::ResolveCanonicalIdsRequest,
    max_batch: usize,
) -> Result<Vec<CanonicalId>, Violations> {
    canonical_id_list(request.canonical_ids, max_batch)
}

/// Validates a list of canonical IDs in a field named `canonical_ids` (ResolveCanonicalIds,
/// ListCanonicalIdEvents).
///
/// # Errors
/// Every violation, by path.
pub fn canonical_id_list(
    canonical_ids: Vec<String>,
    max_batch: usize,
) -> Result<Vec<CanonicalId>, Violations> {
    let mut violations = Violations::default();
    check_batch(
        canonical_ids.len(),
        max_batch,
        "canonical_ids",
        &mut violations,
    );
    if !violations.is_empty() {
        return Err(violations);
    }
    let ids: Vec<_> = canonical_ids
        .into_iter()
        .enumerate()
        .filter_map(|(i, id)| match CanonicalId::parse(id) {
            Ok(id) => Some(id),
            Err(message) => {
                violations.push(format!("canonical_ids[{i}]"), message);
                None
            }
        })
        .collect();
    violations.into_result(ids)
}

pub fn to_proto(id: SourceIdentifier) -> pb::SourceIdentifier {
    let (identifier_type, ontology_type, value) = id.into_parts();
    pb::SourceIdentifier {
        identifier_type,
        ontology_type,
        value,
    }
}

fn outcome(outcome: MintOutcome) -> pb::MintOutcome {
    match outcome {
        MintOutcome::Existing => pb::MintOutcome::Existing,
        MintOutcome::Minted => pb::MintOutcome::Minted,
        MintOutcome::Inherited => pb::MintOutcome::Inherited,
    }
}

/// The status and redirect target of a known ID.
fn status(state: &IdState) -> (pb::IdStatus, Option<String>) {
    match state {
        IdState::Active => (pb::IdStatus::Active, None),
        IdState::Redirected(target) => (pb::IdStatus::Redirected, Some(target.to_string())),
        IdState::Withdrawn => (pb::IdStatus::Withdrawn, None),
    }
}

pub fn timestamp(t: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: i32::try_from(t.nanosecond()).unwrap_or(0),
    }
}

pub fn mint_response(minted: Vec<Minted>, states: &KnownStates) -> pb::MintIdsResponse {
    pb::MintIdsResponse {
        ids: minted
            .into_iter()
            .map(|m| {
                let (status, redirect_target) = status(states.state(&m.canonical_id));
                pb::MintedId {
                    source_identifier: Some(to_proto(m.source_identifier)),
                    canonical_id: m.canonical_id.into_string(),
                    outcome: outcome(m.outcome).into(),
                    status: status.into(),
                    redirect_target,
                }
            })
            .collect(),
    }
}

pub fn lookup_response(
    ids: Vec<SourceIdentifier>,
    found: Vec<Option<CanonicalId>>,
    states: &KnownStates,
) -> pb::LookupIdsResponse {
    pb::LookupIdsResponse {
        results: ids
            .into_iter()
            .zip(found)
            .map(|(id, canonical_id)| {
                let (status, redirect_target) = canonical_id
                    .as_ref()
                    .map_or((pb::IdStatus::Unspecified, None), |c| {
                        status(states.state(c))
                    });
                pb::LookupResult {
                    source_identifier: Some(to_proto(id)),
                    canonical_id: canonical_id.map(CanonicalId::into_string),
                    status: status.into(),
                    redirect_target,
                }
            })
            .collect(),
    }
}

/// The Resolution of one ID: unknown (no source identifiers) has no status; a known one has its
/// state, and its last change when it ever had one.
pub fn resolution(
    id: CanonicalId,
    sources: Vec<SourceIdentifier>,
    record: Option<&StateRecord>,
) -> pb::Resolution {
    let mut resolution = pb::Resolution {
        canonical_id: id.into_string(),
        ..Default::default()
    };
    if sources.is_empty() {
        return resolution;
    }
    resolution.source_identifiers = sources.into_iter().map(to_proto).collect();
    let (status, redirect_target) = status(record.map_or(&IdState::Active, |r| &r.state));
    resolution.status = status.into();
    resolution.redirect_target = redirect_target;
    if let Some(record) = record {
        resolution.reason.clone_from(&record.reason);
        resolution.changed_at = Some(timestamp(record.changed_at));
        resolution.changed_by.clone_from(&record.changed_by);
    }
    resolution
}

pub fn resolve_response(
    ids: Vec<CanonicalId>,
    found: Vec<Vec<SourceIdentifier>>,
    states: &KnownStates,
) -> pb::ResolveCanonicalIdsResponse {
    pb::ResolveCanonicalIdsResponse {
        resolutions: ids
            .into_iter()
            .zip(found)
            .map(|(id, sources)| {
                let record = states.record(&id);
                resolution(id, sources, record)
            })
            .collect(),
    }
}

/// The answer to a lifecycle call: each entry's ID with its state after the call.
pub fn change_response(
    ids: Vec<CanonicalId>,
    found: Vec<Vec<SourceIdentifier>>,
    records: Vec<Option<StateRecord>>,
) -> pb::ChangeCanonicalIdsResponse {
    pb::ChangeCanonicalIdsResponse {
        resolutions: ids
            .into_iter()
            .zip(found)
            .zip(records)
            .map(|((id, sources), record)| resolution(id, sources, record.as_ref()))
            .collect(),
    }
}

pub fn events_response(events: Vec<Event>) -> pb::ListCanonicalIdEventsResponse {
    pb::ListCanonicalIdEventsResponse {
        events: events
            .into_iter()
            .map(|e| pb::CanonicalIdEvent {
                canonical_id: e.canonical_id.into_string(),
                action: match e.action {
                    Action::Redirect => pb::CanonicalIdAction::Redirect,
                    Action::Withdraw => pb::CanonicalIdAction::Withdraw,
                    Action::Restore => pb::CanonicalIdAction::Restore,
                }
                .into(),
                target_canonical_id: e.target.map(CanonicalId::into_string),
                reason: e.reason,
                changed_at: Some(timestamp(e.changed_at)),
                changed_by: e.changed_by,
            })
            .collect(),
    }
}

/// One lifecycle entry's fields, before validation.
pub struct RawChange {
    pub canonical_id: String,
    pub target: Option<String>,
    pub reason: String,
}

impl From<pb::Redirect> for RawChange {
    fn from(r: pb::Redirect) -> Self {
        Self {
            canonical_id: r.canonical_id,
            target: Some(r.target_canonical_id),
            reason: r.reason,
        }
    }
}

impl From<pb::Withdrawal> for RawChange {
    fn from(w: pb::Withdrawal) -> Self {
        Self {
            canonical_id: w.canonical_id,
            target: None,
            reason: w.reason,
        }
    }
}

impl From<pb::Restoration> for RawChange {
    fn from(r: pb::Restoration) -> Self {
        Self {
            canonical_id: r.canonical_id,
            target: None,
            reason: r.reason,
        }
    }
}

/// Validates the entries of a lifecycle call.
///
/// # Errors
/// Every violation, by path (`redirects[2].target_canonical_id: must be 8 characters...`).
pub fn changes(
    action: Action,
    entries: Vec<RawChange>,
    max_batch: usize,
) -> Result<Vec<Change>, Violations> {
    let field = action.field();
    let mut violations = Violations::default();
    check_batch(entries.len(), max_batch, field, &mut violations);
    if !violations.is_empty() {
        return Err(violations);
    }
    let mut changes = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let id = CanonicalId::parse(entry.canonical_id)
            .map_err(|m| violations.push(format!("{field}[{i}].canonical_id"), m))
            .ok();
        let target = match entry.target {
            Some(t) => CanonicalId::parse(t)
                .map(Some)
                .map_err(|m| violations.push(format!("{field}[{i}].target_canonical_id"), m))
                .ok(),
            None => Some(None),
        };
        let reason = Reason::parse(entry.reason)
            .map_err(|m| violations.push(format!("{field}[{i}].reason"), m))
            .ok();
        if let (Some(canonical_id), Some(target), Some(reason)) = (id, target, reason) {
            changes.push(Change {
                action,
                canonical_id,
                target,
                reason,
            });
        }
    }
    violations.into_result(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(t: &str, o: &str, v: &str) -> pb::SourceIdentifier {
        pb::SourceIdentifier {
            identifier_type: t.into(),
            ontology_type: o.into(),
            value: v.into(),
        }
    }

    #[test]
    fn every_violation_is_named_by_its_path() {
        let request = pb::MintIdsRequest {
            items: vec![
                pb::MintItem {
                    source_identifier: Some(sid("t", "Work", "ok")),
                    predecessor: None,
                },
                pb::MintItem {
                    source_identifier: None,
                    predecessor: None,
                },
                pb::MintItem {
                    source_identifier: Some(sid("t", "Work", "")),
                    predecessor: Some(sid("", "Work", "p")),
                },
            ],
        };
        let err = mint_items(request, &OntologyAliases::default(), 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "items[1].source_identifier: is required; items[2].source_identifier.value: must not be empty; items[2].predecessor.identifier_type: must not be empty"
        );
    }

    #[test]
    fn a_batch_over_the_limit_is_refused_whole() {
        let request = pb::LookupIdsRequest {
            source_identifiers: vec![sid("t", "Work", "v"); 3],
        };
        let err = lookup_identifiers(request, &OntologyAliases::default(), 2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "source_identifiers: has 3 entries; at most 2 are allowed per call"
        );
    }

    #[test]
    fn aliases_rewrite_items_and_predecessors() {
        let aliases = OntologyAliases::parse(&["Person=Concept"]).unwrap();
        let request = pb::MintIdsRequest {
            items: vec![pb::MintItem {
                source_identifier: Some(sid("lc-names", "Person", "n1")),
                predecessor: Some(sid("lc-names", "Person", "n0")),
            }],
        };
        let items = mint_items(request, &aliases, 10).unwrap();
        assert_eq!(items[0].source_identifier.ontology_type(), "Concept");
        assert_eq!(
            items[0].predecessor.as_ref().unwrap().ontology_type(),
            "Concept"
        );
    }

    #[test]
    fn malformed_canonical_ids_are_named_by_index() {
        let request = pb::ResolveCanonicalIdsRequest {
            canonical_ids: vec!["abcdefgh".into(), "0000".into()],
        };
        let err = canonical_ids(request, 10).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("canonical_ids[1]: must be 8 characters"),
            "{err}"
        );
    }
}
