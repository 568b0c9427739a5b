//! The queue adapter's document identification on generated JSON documents: it never panics, and
//! it changes nothing in a document but the identified objects (`canonicalId` added, `type` made
//! identified), down to key order and the exact text of numbers.

use std::collections::HashMap;

use idminter::adapter::document::{Document, SourceKey};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// A well-formed source identifier, as documents carry it.
fn source_identifier() -> impl Strategy<Value = Value> {
    ("[a-z-]{1,12}", prop::sample::select(vec!["Work", "Image", "Concept"]), "[a-zA-Z0-9]{1,8}")
        .prop_map(|(t, o, v)| {
            serde_json::json!({"identifierType": {"id": t}, "ontologyType": o, "value": v})
        })
}

/// Numbers as their text, which the adapter must keep exactly (1.50 stays 1.50).
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        Just("1.50".to_owned()),
        Just("1180591620717411303424".to_owned()),
        Just("-0.0".to_owned()),
        Just("6.02e23".to_owned()),
    ]
    .prop_map(|text| serde_json::from_str(&text).unwrap())
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        prop_oneof![
            any::<String>(),
            Just("Identifiable".to_owned()),
            Just("Identified".to_owned())
        ]
        .prop_map(Value::String),
    ]
}

/// Keys, with the ones identification looks at over-represented.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(vec!["type", "identifiedType", "canonicalId", "id", "items", "Type", "Message"])
            .prop_map(str::to_owned),
        1 => "[a-zA-Z]{1,8}",
    ]
}

/// Any JSON document; some objects carry a `sourceIdentifier` (and some a `predecessorIdentifier`).
fn document() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            (
                prop::collection::vec((key(), inner), 0..5),
                prop::option::of(source_identifier()),
                prop::option::of(source_identifier()),
            )
                .prop_map(|(entries, source, predecessor)| {
                    let mut object = Map::new();
                    for (k, v) in entries {
                        object.insert(k, v);
                    }
                    if let Some(source) = source {
                        object.insert("sourceIdentifier".to_owned(), source);
                        if let Some(predecessor) = predecessor {
                            object.insert("predecessorIdentifier".to_owned(), predecessor);
                        }
                    }
                    Value::Object(object)
                }),
        ]
    })
}

fn key_of(identifier: &Value) -> SourceKey {
    SourceKey {
        identifier_type: identifier["identifierType"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        ontology_type: identifier["ontologyType"].as_str().unwrap().to_owned(),
        value: identifier["value"].as_str().unwrap().to_owned(),
    }
}

/// Checks `after` against `before`: identical, except that each object with a `sourceIdentifier`
/// gained its `canonicalId` and had its `type` identified.
fn only_identified_objects_changed(
    before: &Value,
    after: &Value,
    ids: &HashMap<SourceKey, String>,
) -> Result<(), String> {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut expected = b.clone();
            if let Some(source) = b.get("sourceIdentifier") {
                expected.insert(
                    "canonicalId".to_owned(),
                    Value::String(ids[&key_of(source)].clone()),
                );
                if let Some(identified) = expected.shift_remove("identifiedType") {
                    expected.insert("type".to_owned(), identified);
                } else if expected.get("type").and_then(Value::as_str) == Some("Identifiable") {
                    expected.insert("type".to_owned(), Value::String("Identified".to_owned()));
                }
            }
            let expected_keys: Vec<&String> = expected.keys().collect();
            let keys: Vec<&String> = a.keys().collect();
            if expected_keys != keys {
                return Err(format!("keys {keys:?}, expected {expected_keys:?}"));
            }
            let identified = b.contains_key("sourceIdentifier");
            for (k, v) in &expected {
                // What identification wrote here, compared whole; everything else recursively
                // (an identifiedType moved to `type` is still searched for identifiers).
                let written = k == "sourceIdentifier"
                    || k == "predecessorIdentifier"
                    || (identified && k == "canonicalId")
                    || (identified
                        && k == "type"
                        && !b.contains_key("identifiedType")
                        && b.get("type").and_then(Value::as_str) == Some("Identifiable"));
                let was = if identified && k == "type" && b.contains_key("identifiedType") {
                    &b["identifiedType"]
                } else {
                    b.get(k).unwrap_or(v)
                };
                if written {
                    if &a[k] != v {
                        return Err(format!("{k}: {} instead of {v}", a[k]));
                    }
                } else {
                    only_identified_objects_changed(was, &a[k], ids)
                        .map_err(|e| format!("{k}/{e}"))?;
                }
            }
            Ok(())
        }
        (Value::Array(b), Value::Array(a)) if a.len() == b.len() => {
            for (i, (b, a)) in b.iter().zip(a).enumerate() {
                only_identified_objects_changed(b, a, ids).map_err(|e| format!("{i}/{e}"))?;
            }
            Ok(())
        }
        (b, a) if a == b => Ok(()),
        (b, a) => Err(format!("{a} instead of {b}")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn identification_changes_nothing_but_the_identified_objects(doc in document()) {
        let text = serde_json::to_string(&doc).unwrap();
        // A generated SNS-looking envelope may hold a Message that is not JSON: refused, no panic.
        let Ok(parsed) = Document::parse(&text) else { return Ok(()); };
        let ids: HashMap<SourceKey, String> = parsed
            .mints()
            .iter()
            .enumerate()
            .map(|(i, m)| (m.source.clone(), format!("id{i:06}")))
            .collect();

        let identified = parsed.identify(&ids).unwrap();

        let after: Value = serde_json::from_str(&identified).unwrap();
        if let Err(e) = only_identified_objects_changed(&doc, &after, &ids) {
            prop_assert!(false, "{}\nbefore: {}\nafter:  {}", e, text, identified);
        }
    }

    #[test]
    fn any_text_is_refused_or_parsed_without_panicking(body in any::<String>()) {
        let _ = Document::parse(&body);
    }
}
