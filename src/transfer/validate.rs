//! One row of an import file checked by the rules of the API (contract section 1, through the
//! domain's own parsers) and turned into a line of the staging table's COPY data.

use crate::domain::{CanonicalId, OntologyAliases, SourceIdentifier};

use super::format::{Column, Fields, escape_tsv};
use super::timestamp;

/// A valid row: the identifier (aliases applied), its ID and what the file says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRow {
    pub identifier: SourceIdentifier,
    pub canonical_id: CanonicalId,
    /// `Some(true)`: the file marks this row as the one the ID was minted for.
    pub minted: Option<bool>,
    /// Microseconds since the Unix epoch.
    pub created_at: Option<i64>,
    /// The ontology type as the file gave it, when an alias rewrote it.
    pub given_ontology_type: Option<String>,
}

/// Checks a record's fields.
///
/// # Errors
/// Every problem found, `column: what is wrong`, joined by `; `.
pub fn validate(mut fields: Fields, aliases: &OntologyAliases) -> Result<ValidRow, String> {
    let mut problems = Vec::new();
    let mut required = |column: Column, fields: &mut Fields| match fields.take(column) {
        Some(v) => v,
        None => {
            problems.push(format!("{}: missing (NULL)", column.name()));
            String::new()
        }
    };
    let canonical_id = required(Column::CanonicalId, &mut fields);
    let identifier_type = required(Column::IdentifierType, &mut fields);
    let ontology_type = required(Column::OntologyType, &mut fields);
    let value = required(Column::Value, &mut fields);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let canonical_id = CanonicalId::parse(canonical_id)
        .map_err(|e| problems.push(format!("canonical_id: {e}")))
        .ok();
    let identifier = SourceIdentifier::parse(identifier_type, ontology_type, value)
        .map_err(|errors| {
            for (name, e) in errors {
                problems.push(format!("{name}: {e}"));
            }
        })
        .ok();
    let minted = match fields.get(Column::Minted).map(str::trim) {
        None | Some("") => None,
        Some(text) => match text.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" | "y" => Some(true),
            "false" | "f" | "0" | "no" | "n" => Some(false),
            _ => {
                problems.push(format!("minted: `{text}` is not true or false"));
                None
            }
        },
    };
    let created_at = match fields.get(Column::CreatedAt) {
        None | Some("") => None,
        Some(text) => timestamp::parse(text)
            .map_err(|e| problems.push(format!("created_at: `{text}` {e}")))
            .ok(),
    };
    match (identifier, canonical_id) {
        (Some(identifier), Some(canonical_id)) if problems.is_empty() => {
            let given = identifier.ontology_type().to_owned();
            let identifier = aliases.apply(identifier);
            let given_ontology_type = (identifier.ontology_type() != given).then_some(given);
            Ok(ValidRow {
                identifier,
                canonical_id,
                minted,
                created_at,
                given_ontology_type,
            })
        }
        _ => Err(problems.join("; ")),
    }
}

impl ValidRow {
    /// The hash of the row's identifier, as the staging table keeps it (see [`seen`](super::seen)).
    pub fn identifier_hash(&self) -> u64 {
        super::seen::identifier_hash(
            self.identifier.identifier_type(),
            self.identifier.ontology_type(),
            self.identifier.value(),
        )
    }

    /// The canonical ID's key in the [`Seen`](super::seen::Seen) filter.
    pub fn canonical_id_hash(&self) -> u64 {
        super::seen::canonical_id_hash(self.canonical_id.as_str())
    }

    /// Appends the row as a line of COPY text for the staging table:
    /// `seq, src, line, identifier_type, ontology_type, value, canonical_id, claim, created_at,
    /// given_ontology, key_hash, dup` (`dup`: the row may repeat a key given earlier). Valid
    /// fields hold no control characters, so only `\` needs escaping.
    pub fn write_copy_line(
        &self,
        (seq, src, line): (u64, usize, u64),
        (key_hash, dup): (u64, bool),
        out: &mut Vec<u8>,
    ) {
        use std::io::Write;
        let _ = write!(out, "{seq}\t{src}\t{line}\t");
        escape_tsv(self.identifier.identifier_type(), out);
        out.push(b'\t');
        escape_tsv(self.identifier.ontology_type(), out);
        out.push(b'\t');
        escape_tsv(self.identifier.value(), out);
        out.push(b'\t');
        out.extend_from_slice(self.canonical_id.as_str().as_bytes());
        out.push(b'\t');
        out.extend_from_slice(match self.minted {
            Some(true) => b"t",
            Some(false) => b"f",
            None => b"\\N",
        });
        out.push(b'\t');
        match self.created_at {
            Some(micros) => timestamp::write(micros, true, out),
            None => out.extend_from_slice(b"\\N"),
        }
        out.push(b'\t');
        match &self.given_ontology_type {
            Some(given) => escape_tsv(given, out),
            None => out.extend_from_slice(b"\\N"),
        }
        let _ = writeln!(
            out,
            "\t{}\t{}",
            key_hash as i64,
            if dup { 't' } else { 'f' }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::format::Layout;

    fn fields(values: &[&str]) -> Fields {
        let layout = Layout::from_names(&[
            "canonical_id",
            "identifier_type",
            "ontology_type",
            "value",
            "minted",
            "created_at",
        ])
        .unwrap();
        layout
            .fields(
                values
                    .iter()
                    .map(|v| (*v != "NULL").then(|| (*v).to_owned()))
                    .collect(),
            )
            .unwrap()
    }

    #[test]
    fn a_valid_row_gets_the_alias_and_remembers_the_given_ontology_type() {
        let aliases = OntologyAliases::parse(&["Person=Concept"]).unwrap();
        let row = validate(
            fields(&["a2345678", "lc-names", "Person", "n1", "", ""]),
            &aliases,
        )
        .unwrap();
        assert_eq!(row.identifier.ontology_type(), "Concept");
        assert_eq!(row.given_ontology_type.as_deref(), Some("Person"));
        assert_eq!(row.minted, None);
    }

    #[test]
    fn every_problem_of_a_row_is_named_by_column() {
        let e = validate(
            fields(&["A2345678", "", "Work", "a\u{7}b", "maybe", "yesterday"]),
            &OntologyAliases::default(),
        )
        .unwrap_err();
        for part in [
            "canonical_id: must be 8 characters",
            "identifier_type: must not be empty",
            "value: must not contain control characters (found U+0007)",
            "minted: `maybe` is not true or false",
            "created_at: `yesterday` is not an RFC 3339 timestamp",
        ] {
            assert!(e.contains(part), "{part} not in {e}");
        }
    }

    #[test]
    fn a_field_of_256_bytes_is_rejected() {
        let long = "x".repeat(256);
        let e = validate(
            fields(&["a2345678", "t", "Work", &long, "", ""]),
            &OntologyAliases::default(),
        )
        .unwrap_err();
        assert!(e.contains("value: must be at most 255 bytes"), "{e}");
    }

    #[test]
    fn the_copy_line_escapes_backslashes_and_writes_nulls() {
        let row = validate(
            fields(&[
                "a2345678",
                "t",
                "Work",
                "a\\b",
                "true",
                "2026-01-02T03:04:05Z",
            ]),
            &OntologyAliases::default(),
        )
        .unwrap();
        let mut out = Vec::new();
        row.write_copy_line((7, 0, 9), (u64::MAX, true), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "7\t0\t9\tt\tWork\ta\\\\b\ta2345678\tt\t2026-01-02 03:04:05.000000+00\t\\N\t-1\tt\n",
            "the hash as PostgreSQL's bigint (two's complement), then the flag"
        );
    }
}
