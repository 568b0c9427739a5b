//! Document identification, as the Wellcome pipeline does it, in pure JSON logic (no I/O): unwrap
//! an SNS notification envelope, find every object that carries a `sourceIdentifier` (at any depth,
//! the root included) and the `predecessorIdentifier` beside it, and later write the minted
//! `canonicalId` into each of those objects and turn their `type` into the identified one.
//!
//! Finding and writing are two passes over the same tree, so that one MintIds call can serve a whole
//! batch of documents between them; the second pass re-reads the identifiers the first one already
//! validated.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::pb;

const SOURCE_IDENTIFIER: &str = "sourceIdentifier";
const PREDECESSOR_IDENTIFIER: &str = "predecessorIdentifier";
const CANONICAL_ID: &str = "canonicalId";
const IDENTIFIED_TYPE: &str = "identifiedType";
const TYPE: &str = "type";

/// A source identifier as the minter knows it (the document shape is
/// `{"identifierType":{"id":S},"ontologyType":S,"value":S}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    pub identifier_type: String,
    pub ontology_type: String,
    pub value: String,
}

impl SourceKey {
    pub fn to_pb(&self) -> pb::SourceIdentifier {
        pb::SourceIdentifier {
            identifier_type: self.identifier_type.clone(),
            ontology_type: self.ontology_type.clone(),
            value: self.value.clone(),
        }
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.identifier_type, self.ontology_type, self.value
        )
    }
}

/// One identifier that needs a canonical ID, and the identifier it inherits from, if any.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mint {
    pub source: SourceKey,
    pub predecessor: Option<SourceKey>,
}

/// Why a message body cannot be identified. Each is the document's fault, not ours: retrying it
/// gives the same answer, so it is left for the queue's redrive policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("an SNS notification whose Message is not a string")]
    Envelope,
    #[error("the SNS notification's Message is not JSON: {0}")]
    EnvelopeMessageNotJson(String),
    #[error("malformed {key} at {path}: {why}")]
    Malformed {
        path: String,
        key: &'static str,
        why: String,
    },
    #[error("no canonical ID was minted for {0}")]
    Unminted(SourceKey),
}

/// A parsed document and the identifiers found in it, in document order.
#[derive(Debug, Clone)]
pub struct Document {
    value: Value,
    mints: Vec<Mint>,
}

impl Document {
    /// Parses a message body: a JSON document, or an SNS notification whose `Message` is one.
    ///
    /// # Errors
    /// The body or the envelope's Message is not JSON, or an identifier is malformed.
    pub fn parse(body: &str) -> Result<Self, DocumentError> {
        let value: Value =
            serde_json::from_str(body).map_err(|e| DocumentError::NotJson(e.to_string()))?;
        let value = unwrap_envelope(value)?;
        let mut mints = Vec::new();
        collect(&value, &mut String::new(), &mut mints)?;
        Ok(Self { value, mints })
    }

    /// The identifiers to mint, in document order (repeats included).
    pub fn mints(&self) -> &[Mint] {
        &self.mints
    }

    /// True when some identifier of this document names a predecessor.
    pub fn has_predecessors(&self) -> bool {
        self.mints.iter().any(|m| m.predecessor.is_some())
    }

    /// Writes the canonical IDs into the document and returns it as JSON text.
    ///
    /// # Errors
    /// `ids` lacks an identifier of the document (a bug of the caller, reported rather than
    /// published half-identified).
    pub fn identify(mut self, ids: &HashMap<SourceKey, String>) -> Result<String, DocumentError> {
        write_ids(&mut self.value, ids)?;
        // Serialising a Value cannot fail: its keys are strings and it holds no non-finite floats.
        serde_json::to_string(&self.value).map_err(|e| DocumentError::NotJson(e.to_string()))
    }
}

/// `{"Type":"Notification","Message":"<document>",...}` -> the document; anything else is returned
/// as it is. Documents of the pipeline have a lower-case `type`, so the capitalised `Type` of SNS
/// does not clash with them.
fn unwrap_envelope(value: Value) -> Result<Value, DocumentError> {
    let is_notification = value
        .as_object()
        .is_some_and(|o| o.get("Type").and_then(Value::as_str) == Some("Notification"));
    if !is_notification {
        return Ok(value);
    }
    match value.get("Message") {
        Some(Value::String(message)) => serde_json::from_str(message)
            .map_err(|e| DocumentError::EnvelopeMessageNotJson(e.to_string())),
        _ => Err(DocumentError::Envelope),
    }
}

/// Depth first, in document order. `path` is the JSON pointer of `value`. Recursion is bounded by
/// serde_json's own nesting limit (128) when parsing.
fn collect(value: &Value, path: &mut String, out: &mut Vec<Mint>) -> Result<(), DocumentError> {
    match value {
        Value::Object(object) => {
            if let Some(mint) = mint_of(object, path)? {
                out.push(mint);
            }
            for (key, child) in object {
                if key == SOURCE_IDENTIFIER || key == PREDECESSOR_IDENTIFIER {
                    continue;
                }
                let len = path.len();
                path.push('/');
                push_pointer_token(path, key);
                collect(child, path, out)?;
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                collect(child, path, out)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn push_pointer_token(path: &mut String, key: &str) {
    path.push_str(&key.replace('~', "~0").replace('/', "~1"));
}

/// The identifier an object carries, if it has a `sourceIdentifier`.
fn mint_of(object: &Map<String, Value>, path: &str) -> Result<Option<Mint>, DocumentError> {
    let Some(source) = object.get(SOURCE_IDENTIFIER) else {
        return Ok(None);
    };
    let source = parse_identifier(source).map_err(|why| DocumentError::Malformed {
        path: format!("{path}/{SOURCE_IDENTIFIER}"),
        key: SOURCE_IDENTIFIER,
        why,
    })?;
    let predecessor = match object.get(PREDECESSOR_IDENTIFIER) {
        None | Some(Value::Null) => None,
        Some(p) => Some(parse_identifier(p).map_err(|why| DocumentError::Malformed {
            path: format!("{path}/{PREDECESSOR_IDENTIFIER}"),
            key: PREDECESSOR_IDENTIFIER,
            why,
        })?),
    };
    Ok(Some(Mint {
        source,
        predecessor,
    }))
}

/// `{"identifierType":{"id":S},"ontologyType":S,"value":S}`; other keys are allowed and ignored.
/// The minter validates the strings themselves (length, control characters).
fn parse_identifier(value: &Value) -> Result<SourceKey, String> {
    let object = value
        .as_object()
        .ok_or_else(|| format!("expected an object, found {}", kind(value)))?;
    let string = |v: Option<&Value>, name: &str| -> Result<String, String> {
        match v {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("{name} must be a string, found {}", kind(other))),
            None => Err(format!("{name} is missing")),
        }
    };
    let identifier_type = match object.get("identifierType") {
        Some(Value::Object(t)) => string(t.get("id"), "identifierType.id")?,
        Some(other) => {
            return Err(format!(
                "identifierType must be an object {{\"id\": ...}}, found {}",
                kind(other)
            ));
        }
        None => return Err("identifierType is missing".to_owned()),
    };
    Ok(SourceKey {
        identifier_type,
        ontology_type: string(object.get("ontologyType"), "ontologyType")?,
        value: string(object.get("value"), "value")?,
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn write_ids(value: &mut Value, ids: &HashMap<SourceKey, String>) -> Result<(), DocumentError> {
    match value {
        Value::Object(object) => {
            if let Some(source) = object.get(SOURCE_IDENTIFIER) {
                // Validated by `collect`; a failure here would be a bug, reported as malformed.
                let key = parse_identifier(source).map_err(|why| DocumentError::Malformed {
                    path: String::new(),
                    key: SOURCE_IDENTIFIER,
                    why,
                })?;
                let id = ids.get(&key).ok_or(DocumentError::Unminted(key))?;
                object.insert(CANONICAL_ID.to_owned(), Value::String(id.clone()));
                // `shift_remove` keeps the order of the other keys (serde_json's preserve_order).
                if let Some(identified) = object.shift_remove(IDENTIFIED_TYPE) {
                    object.insert(TYPE.to_owned(), identified);
                } else if object.get(TYPE).and_then(Value::as_str) == Some("Identifiable") {
                    object.insert(TYPE.to_owned(), Value::String("Identified".to_owned()));
                }
            }
            for (key, child) in object.iter_mut() {
                if key != SOURCE_IDENTIFIER && key != PREDECESSOR_IDENTIFIER {
                    write_ids(child, ids)?;
                }
            }
        }
        Value::Array(items) => {
            for child in items {
                write_ids(child, ids)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sid(identifier_type: &str, ontology_type: &str, value: &str) -> Value {
        json!({"identifierType": {"id": identifier_type}, "ontologyType": ontology_type, "value": value})
    }

    fn key(identifier_type: &str, ontology_type: &str, value: &str) -> SourceKey {
        SourceKey {
            identifier_type: identifier_type.to_owned(),
            ontology_type: ontology_type.to_owned(),
            value: value.to_owned(),
        }
    }

    /// Every identifier of `doc` gets the ID "id-" + its value.
    fn identify_all(doc: &Document) -> HashMap<SourceKey, String> {
        doc.mints()
            .iter()
            .map(|m| (m.source.clone(), format!("id-{}", m.source.value)))
            .collect()
    }

    fn parse(value: &Value) -> Document {
        Document::parse(&value.to_string()).expect("parses")
    }

    #[test]
    fn identifiers_are_found_at_every_depth_the_root_included_in_document_order() {
        let work = json!({
            "type": "Identifiable",
            "sourceIdentifier": sid("sierra-system-number", "Work", "b1"),
            "otherIdentifiers": [sid("miro-image-number", "Image", "V1")],
            "data": {"subjects": [
                {"id": {"type": "Identifiable", "sourceIdentifier": sid("lc-subjects", "Subject", "sh1"), "identifiedType": "Subject"}},
                {"concepts": [{"id": {"type": "Identifiable", "sourceIdentifier": sid("lc-names", "Person", "n1")}}]}
            ]}
        });
        let values: Vec<_> = parse(&work)
            .mints()
            .iter()
            .map(|m| m.source.value.clone())
            .collect();
        assert_eq!(
            values,
            ["b1", "sh1", "n1"],
            "otherIdentifiers are not minted"
        );
    }

    #[test]
    fn canonical_ids_are_written_and_identifiable_becomes_identified() {
        let work = json!({
            "type": "Identifiable",
            "sourceIdentifier": sid("sierra-system-number", "Work", "b1"),
            "data": {"items": [{"id": {"type": "Identifiable", "sourceIdentifier": sid("sierra-system-number", "Item", "i1")}, "title": "x"}]}
        });
        let doc = parse(&work);
        let ids = identify_all(&doc);
        let out: Value = serde_json::from_str(&doc.identify(&ids).unwrap()).unwrap();
        assert_eq!(out["canonicalId"], "id-b1");
        assert_eq!(out["type"], "Identified");
        let item = &out["data"]["items"][0]["id"];
        assert_eq!(item["canonicalId"], "id-i1");
        assert_eq!(item["type"], "Identified");
        assert_eq!(
            out["data"]["items"][0]["title"], "x",
            "the rest is untouched"
        );
    }

    #[test]
    fn identified_type_replaces_type_and_is_removed() {
        let doc = parse(&json!({"id": {
            "type": "Identifiable",
            "sourceIdentifier": sid("lc-subjects", "Subject", "sh1"),
            "identifiedType": "Subject"
        }}));
        let ids = identify_all(&doc);
        let out: Value = serde_json::from_str(&doc.identify(&ids).unwrap()).unwrap();
        assert_eq!(
            out["id"],
            json!({"type": "Subject", "sourceIdentifier": sid("lc-subjects", "Subject", "sh1"), "canonicalId": "id-sh1"})
        );
    }

    #[test]
    fn a_type_other_than_identifiable_is_left_alone() {
        let doc = parse(&json!({"type": "Visible", "sourceIdentifier": sid("a", "Work", "1")}));
        let ids = identify_all(&doc);
        let out: Value = serde_json::from_str(&doc.identify(&ids).unwrap()).unwrap();
        assert_eq!(out["type"], "Visible");
        assert_eq!(out["canonicalId"], "id-1");
    }

    #[test]
    fn nothing_but_the_identified_objects_changes_and_key_order_is_kept() {
        let body = r#"{"z":1,"type":"Identifiable","sourceIdentifier":{"identifierType":{"id":"a"},"ontologyType":"Work","value":"1"},"a":[true,null,"s"],"m":{"k":2.5}}"#;
        let doc = Document::parse(body).unwrap();
        let ids = identify_all(&doc);
        assert_eq!(
            doc.identify(&ids).unwrap(),
            r#"{"z":1,"type":"Identified","sourceIdentifier":{"identifierType":{"id":"a"},"ontologyType":"Work","value":"1"},"a":[true,null,"s"],"m":{"k":2.5},"canonicalId":"id-1"}"#
        );
    }

    #[test]
    fn numbers_pass_through_exactly_as_written() {
        // Without serde_json's arbitrary_precision, 1.50 would come out as 1.5 and 2^70 rounded.
        // (An exponent is the one thing normalised: 1e3 comes out as 1e+3, the same number.)
        let body = r#"{"sourceIdentifier":{"identifierType":{"id":"a"},"ontologyType":"Work","value":"1"},"n":[1.50,1180591620717411303424,-0.0]}"#;
        let doc = Document::parse(body).unwrap();
        let ids = identify_all(&doc);
        assert_eq!(
            doc.identify(&ids).unwrap(),
            r#"{"sourceIdentifier":{"identifierType":{"id":"a"},"ontologyType":"Work","value":"1"},"n":[1.50,1180591620717411303424,-0.0],"canonicalId":"id-1"}"#
        );
    }

    #[test]
    fn a_predecessor_beside_a_source_identifier_is_found() {
        let doc = parse(&json!({
            "sourceIdentifier": sid("folio-instance", "Work", "f1"),
            "predecessorIdentifier": sid("sierra-system-number", "Work", "b1")
        }));
        assert_eq!(
            doc.mints(),
            [Mint {
                source: key("folio-instance", "Work", "f1"),
                predecessor: Some(key("sierra-system-number", "Work", "b1")),
            }]
        );
        assert!(doc.has_predecessors());
    }

    #[test]
    fn a_null_predecessor_is_no_predecessor_and_a_lone_predecessor_is_ignored() {
        let doc = parse(&json!({
            "sourceIdentifier": sid("a", "Work", "1"),
            "predecessorIdentifier": null,
            "other": {"predecessorIdentifier": sid("a", "Work", "0")}
        }));
        assert_eq!(doc.mints().len(), 1);
        assert_eq!(doc.mints()[0].predecessor, None);
        let ids = identify_all(&doc);
        let out: Value = serde_json::from_str(&doc.identify(&ids).unwrap()).unwrap();
        assert!(out["other"].get("canonicalId").is_none());
    }

    #[test]
    fn an_sns_envelope_is_unwrapped_and_only_its_message_is_published() {
        let inner = json!({"type": "Identifiable", "sourceIdentifier": sid("a", "Work", "1")});
        let envelope = json!({
            "Type": "Notification",
            "MessageId": "m-1",
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:works",
            "Message": inner.to_string(),
        });
        let doc = parse(&envelope);
        assert_eq!(doc.mints()[0].source, key("a", "Work", "1"));
        let ids = identify_all(&doc);
        let out: Value = serde_json::from_str(&doc.identify(&ids).unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"type": "Identified", "sourceIdentifier": sid("a", "Work", "1"), "canonicalId": "id-1"})
        );
    }

    #[test]
    fn bodies_that_cannot_be_identified_say_why() {
        let cases: &[(&str, &str)] = &[
            ("not json", "not JSON"),
            (
                r#"{"Type":"Notification","Message":{"a":1}}"#,
                "SNS notification whose Message is not a string",
            ),
            (
                r#"{"Type":"Notification","Message":"oops"}"#,
                "Message is not JSON",
            ),
            (
                r#"{"sourceIdentifier":"b1"}"#,
                "malformed sourceIdentifier at /sourceIdentifier: expected an object, found a string",
            ),
            (
                r#"{"a":[{"sourceIdentifier":{"identifierType":"x","ontologyType":"Work","value":"1"}}]}"#,
                "malformed sourceIdentifier at /a/0/sourceIdentifier: identifierType must be an object",
            ),
            (
                r#"{"sourceIdentifier":{"identifierType":{"id":"x"},"ontologyType":"Work"}}"#,
                "value is missing",
            ),
            (
                r#"{"sourceIdentifier":{"identifierType":{"id":"x"},"ontologyType":7,"value":"1"}}"#,
                "ontologyType must be a string, found a number",
            ),
            (
                r#"{"sourceIdentifier":null}"#,
                "expected an object, found null",
            ),
            (
                r#"{"sourceIdentifier":{"identifierType":{"id":"x"},"ontologyType":"Work","value":"1"},"predecessorIdentifier":{"identifierType":{}}}"#,
                "malformed predecessorIdentifier at /predecessorIdentifier: identifierType.id is missing",
            ),
        ];
        for (body, expected) in cases {
            let err = Document::parse(body).expect_err(body).to_string();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn a_json_pointer_escapes_slashes_and_tildes() {
        let err = Document::parse(r#"{"a/b~c":{"sourceIdentifier":1}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/a~1b~0c/sourceIdentifier"), "{err}");
    }

    #[test]
    fn a_document_without_identifiers_passes_through_unchanged() {
        let body = r#"{"deleted":true,"reason":"suppressed"}"#;
        let doc = Document::parse(body).unwrap();
        assert!(doc.mints().is_empty());
        assert_eq!(doc.identify(&HashMap::new()).unwrap(), body);
    }

    #[test]
    fn an_identifier_without_a_canonical_id_is_an_error_not_a_half_identified_document() {
        let doc = parse(&json!({"sourceIdentifier": sid("a", "Work", "1")}));
        assert_eq!(
            doc.identify(&HashMap::new()).unwrap_err(),
            DocumentError::Unminted(key("a", "Work", "1"))
        );
    }

    #[test]
    fn an_existing_canonical_id_is_overwritten_in_place() {
        let body = r#"{"canonicalId":"old","sourceIdentifier":{"identifierType":{"id":"a"},"ontologyType":"Work","value":"1"}}"#;
        let doc = Document::parse(body).unwrap();
        let ids = identify_all(&doc);
        assert!(
            doc.identify(&ids)
                .unwrap()
                .starts_with(r#"{"canonicalId":"id-1","#)
        );
    }
}
