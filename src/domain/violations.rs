//! Validation failures, each named by the path of the offending field in the request, so a caller can
//! find `items[3].source_identifier.value` in a batch of ten thousand.

use std::fmt;

/// One broken rule: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field's path in the request, e.g. `items[3].source_identifier.value`.
    pub path: String,
    /// What is wrong with it, e.g. `must not be empty`.
    pub message: String,
}

/// Every violation found in a request, in request order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(Vec<Violation>);

/// How many violations the error message shows; the rest are counted.
const SHOWN: usize = 10;

impl Violations {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Violation {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Violation] {
        &self.0
    }

    /// `Ok(value)` when nothing was found wrong.
    ///
    /// # Errors
    /// The violations themselves, when there are any.
    pub fn into_result<T>(self, value: T) -> Result<T, Violations> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.path, v.message)?;
        }
        if self.0.len() > SHOWN {
            write!(f, "; and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_each_violation_by_path() {
        let mut v = Violations::default();
        v.push("items[3].source_identifier.value", "must not be empty");
        v.push("items[4]", "source_identifier is required");
        assert_eq!(
            v.to_string(),
            "items[3].source_identifier.value: must not be empty; items[4]: source_identifier is required"
        );
    }

    #[test]
    fn the_message_shows_the_first_ten_and_counts_the_rest() {
        let mut v = Violations::default();
        for i in 0..12 {
            v.push(format!("items[{i}]"), "bad");
        }
        let message = v.to_string();
        assert!(message.contains("items[9]: bad"), "{message}");
        assert!(!message.contains("items[10]"), "{message}");
        assert!(message.ends_with("; and 2 more"), "{message}");
    }
}
