//! Ontology aliases: `--ontology-alias Person=Concept` makes a Person identifier and a Concept
//! identifier with the same type and value one thing with one canonical ID, as our reference user's
//! pipeline does for authority records that appear in several roles.

use std::collections::HashMap;

use super::SourceIdentifier;
use super::source_identifier::check_field;

/// The alias map, validated when the server starts.
#[derive(Debug, Clone, Default)]
pub struct OntologyAliases(HashMap<String, String>);

impl OntologyAliases {
    /// Parses `FROM=TO` pairs.
    ///
    /// # Errors
    /// A malformed pair, a FROM given twice with different targets, or a TO that is itself an alias
    /// (rewrites are applied once, so a chain would be a surprise).
    pub fn parse<S: AsRef<str>>(pairs: &[S]) -> Result<Self, String> {
        let mut map = HashMap::new();
        for pair in pairs {
            let pair = pair.as_ref();
            let (from, to) = pair
                .split_once('=')
                .ok_or_else(|| format!("ontology alias `{pair}` must have the form FROM=TO"))?;
            for side in [from, to] {
                check_field(side).map_err(|e| format!("ontology alias `{pair}`: `{side}` {e}"))?;
            }
            if let Some(previous) = map.insert(from.to_owned(), to.to_owned())
                && previous != to
            {
                return Err(format!(
                    "ontology alias `{from}` is given twice, to `{previous}` and to `{to}`"
                ));
            }
        }
        if let Some(to) = map.values().find(|to| map.contains_key(*to)) {
            return Err(format!(
                "ontology alias target `{to}` is itself an alias; give the final type directly"
            ));
        }
        Ok(Self(map))
    }

    /// Rewrites the identifier's ontology type if it has an alias.
    pub fn apply(&self, id: SourceIdentifier) -> SourceIdentifier {
        match self.0.get(id.ontology_type()) {
            Some(to) => id.with_ontology_type(to),
            None => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(o: &str) -> SourceIdentifier {
        SourceIdentifier::parse("lc-names".into(), o.into(), "n1".into()).unwrap()
    }

    #[test]
    fn an_aliased_ontology_type_is_rewritten_and_others_are_left_alone() {
        let aliases = OntologyAliases::parse(&["Person=Concept", "Place=Concept"]).unwrap();
        assert_eq!(aliases.apply(id("Person")), id("Concept"));
        assert_eq!(aliases.apply(id("Work")), id("Work"));
        assert_eq!(
            aliases.apply(id("person")),
            id("person"),
            "matching is exact"
        );
    }

    #[test]
    fn malformed_conflicting_and_chained_aliases_are_refused() {
        for (pairs, why) in [
            (vec!["Person"], "no ="),
            (vec!["=Concept"], "empty FROM"),
            (vec!["Person=Concept", "Person=Agent"], "two targets"),
            (vec!["Person=Agent", "Agent=Concept"], "chain"),
        ] {
            assert!(
                OntologyAliases::parse(&pairs).is_err(),
                "{why}: {pairs:?} was accepted"
            );
        }
        assert!(OntologyAliases::parse(&["Person=Concept", "Person=Concept"]).is_ok());
    }
}
