//! A source identifier: the identity of a record in the system it comes from. Matching is exact
//! (case-sensitive, no trimming): our reference user's old case-insensitive columns made `B13026252`
//! and `b13026252` collide, which took manual repair.

use std::fmt;

/// The longest field we accept, in bytes; the database enforces the same bound.
pub const MAX_FIELD_BYTES: usize = 255;

/// A valid (identifier type, ontology type, value) triple. The fields are private: [`parse`] is the
/// only way to build one from untrusted input, so every `SourceIdentifier` obeys the rules.
///
/// [`parse`]: SourceIdentifier::parse
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceIdentifier {
    identifier_type: String,
    ontology_type: String,
    value: String,
}

impl SourceIdentifier {
    /// Validates the three fields.
    ///
    /// # Errors
    /// For each invalid field, its name (`identifier_type`, `ontology_type` or `value`) and what is
    /// wrong with it.
    pub fn parse(
        identifier_type: String,
        ontology_type: String,
        value: String,
    ) -> Result<Self, Vec<(&'static str, String)>> {
        let problems: Vec<_> = [
            ("identifier_type", &identifier_type),
            ("ontology_type", &ontology_type),
            ("value", &value),
        ]
        .into_iter()
        .filter_map(|(name, field)| check_field(field).err().map(|e| (name, e)))
        .collect();
        if problems.is_empty() {
            Ok(Self {
                identifier_type,
                ontology_type,
                value,
            })
        } else {
            Err(problems)
        }
    }

    /// Builds an identifier from a row of our own table, whose constraints enforce the same rules as
    /// [`SourceIdentifier::parse`].
    pub(crate) fn from_database(
        identifier_type: String,
        ontology_type: String,
        value: String,
    ) -> Self {
        Self {
            identifier_type,
            ontology_type,
            value,
        }
    }

    /// A placeholder left behind when an identifier is moved out of a collection; it never leaves
    /// the domain (it is not valid) and costs no allocation.
    pub(crate) fn empty() -> Self {
        Self {
            identifier_type: String::new(),
            ontology_type: String::new(),
            value: String::new(),
        }
    }

    pub fn identifier_type(&self) -> &str {
        &self.identifier_type
    }

    pub fn ontology_type(&self) -> &str {
        &self.ontology_type
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// The same identifier with another ontology type (for ontology aliases).
    pub(crate) fn with_ontology_type(mut self, ontology_type: &str) -> Self {
        ontology_type.clone_into(&mut self.ontology_type);
        self
    }

    /// The three fields, for the wire format.
    pub fn into_parts(self) -> (String, String, String) {
        (self.identifier_type, self.ontology_type, self.value)
    }
}

/// Checks one field against the contract's rules: 1 to 255 bytes, no control characters.
///
/// # Errors
/// What is wrong with the field, in words for the caller.
pub fn check_field(field: &str) -> Result<(), String> {
    if field.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if field.len() > MAX_FIELD_BYTES {
        return Err(format!(
            "must be at most {MAX_FIELD_BYTES} bytes (is {})",
            field.len()
        ));
    }
    if let Some(c) = field.chars().find(|c| c.is_control()) {
        return Err(format!(
            "must not contain control characters (found U+{:04X})",
            c as u32
        ));
    }
    Ok(())
}

impl fmt::Display for SourceIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.identifier_type, self.ontology_type, self.value
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str, o: &str, v: &str) -> Result<SourceIdentifier, Vec<(&'static str, String)>> {
        SourceIdentifier::parse(t.into(), o.into(), v.into())
    }

    #[test]
    fn a_well_formed_identifier_is_accepted_as_given() {
        let id = parse("sierra-system-number", "Work", " b1000001").expect("valid");
        assert_eq!(id.value(), " b1000001", "values are not trimmed");
    }

    #[test]
    fn empty_fields_are_rejected_by_name() {
        let errors = parse("", "Work", "").unwrap_err();
        let names: Vec<_> = errors.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["identifier_type", "value"]);
        assert_eq!(errors[0].1, "must not be empty");
    }

    #[test]
    fn a_field_of_255_bytes_is_accepted_and_256_rejected() {
        assert!(parse(&"x".repeat(255), "Work", "v").is_ok());
        // 128 two-byte characters: 128 characters but 256 bytes.
        let errors = parse(&"é".repeat(128), "Work", "v").unwrap_err();
        assert_eq!(errors[0].1, "must be at most 255 bytes (is 256)");
    }

    #[test]
    fn control_characters_are_rejected_in_both_ranges() {
        for (text, code) in [
            ("a\u{0}", "U+0000"),
            ("a\nb", "U+000A"),
            ("a\u{7f}", "U+007F"),
            ("\u{9f}", "U+009F"),
        ] {
            let errors = parse("t", "Work", text).unwrap_err();
            assert!(
                errors[0].1.contains(code),
                "{text:?} gave {:?}",
                errors[0].1
            );
        }
    }

    #[test]
    fn identifiers_differing_only_in_case_are_different() {
        assert_ne!(
            parse("t", "Work", "B1").unwrap(),
            parse("t", "Work", "b1").unwrap()
        );
    }
}
