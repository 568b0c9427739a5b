//! Protobuf to domain and back. Validation happens once, here on the receiving side: prost's
//! `Option`s and plain strings become domain types, and every violation is named by its path in the
//! request (`items[3].source_identifier.value: must not be empty`).

use crate::domain::{
    CanonicalId, MintItem, MintOutcome, Minted, OntologyAliases, SourceIdentifier, Violations,
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
    let mut violations = Violations::default();
    check_batch(
        request.canonical_ids.len(),
        max_batch,
        "canonical_ids",
        &mut violations,
    );
    if !violations.is_empty() {
        return Err(violations);
    }
    let ids: Vec<_> = request
        .canonical_ids
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

pub fn mint_response(minted: Vec<Minted>) -> pb::MintIdsResponse {
    pb::MintIdsResponse {
        ids: minted
            .into_iter()
            .map(|m| pb::MintedId {
                source_identifier: Some(to_proto(m.source_identifier)),
                canonical_id: m.canonical_id.into_string(),
                outcome: outcome(m.outcome).into(),
            })
            .collect(),
    }
}

pub fn lookup_response(
    ids: Vec<SourceIdentifier>,
    found: Vec<Option<CanonicalId>>,
) -> pb::LookupIdsResponse {
    pb::LookupIdsResponse {
        results: ids
            .into_iter()
            .zip(found)
            .map(|(id, canonical_id)| pb::LookupResult {
                source_identifier: Some(to_proto(id)),
                canonical_id: canonical_id.map(CanonicalId::into_string),
            })
            .collect(),
    }
}

pub fn resolve_response(
    ids: Vec<CanonicalId>,
    found: Vec<Vec<SourceIdentifier>>,
) -> pb::ResolveCanonicalIdsResponse {
    pb::ResolveCanonicalIdsResponse {
        resolutions: ids
            .into_iter()
            .zip(found)
            .map(|(id, sources)| pb::Resolution {
                canonical_id: id.into_string(),
                source_identifiers: sources.into_iter().map(to_proto).collect(),
            })
            .collect(),
    }
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
