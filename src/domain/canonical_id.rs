//! Canonical IDs: 8 characters, the first one of 23 letters, the other seven one of 31 symbols (no
//! 0, 1, i, l or o, which people misread), about 6.3 x 10^11 IDs in all. Drawn uniformly from a
//! cryptographically secure generator, so that IDs are opaque and cannot be guessed in sequence.

use std::fmt;

use rand::Rng;
use rand::seq::IndexedRandom;

const LETTERS: &[u8] = b"abcdefghjkmnpqrstuvwxyz";
const SYMBOLS: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
/// The length of every canonical ID.
pub const LENGTH: usize = 8;

/// A canonical ID in the contract's format. Build one with [`CanonicalId::parse`] or
/// [`CanonicalId::generate`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CanonicalId(String);

impl CanonicalId {
    /// Checks the format.
    ///
    /// # Errors
    /// A description of the expected format when `text` does not have it.
    pub fn parse(text: String) -> Result<Self, String> {
        let bytes = text.as_bytes();
        let well_formed = bytes.len() == LENGTH
            && LETTERS.contains(&bytes[0])
            && bytes[1..].iter().all(|b| SYMBOLS.contains(b));
        if well_formed {
            Ok(Self(text))
        } else {
            Err("must be 8 characters: a letter of `abcdefghjkmnpqrstuvwxyz`, then 7 of those letters or `23456789`".to_owned())
        }
    }

    /// Draws a fresh ID uniformly from all valid IDs.
    pub fn generate(rng: &mut impl Rng) -> Self {
        let mut id = String::with_capacity(LENGTH);
        id.push(char::from(
            *LETTERS.choose(rng).expect("alphabet is not empty"),
        ));
        for _ in 1..LENGTH {
            id.push(char::from(
                *SYMBOLS.choose(rng).expect("alphabet is not empty"),
            ));
        }
        Self(id)
    }

    /// Builds an ID from a row of our own table, whose CHECK constraint enforces the format.
    pub(crate) fn from_database(text: String) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl AsRef<str> for CanonicalId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CanonicalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_the_canonical_format() {
        let mut rng = rand::rng();
        for _ in 0..10_000 {
            let id = CanonicalId::generate(&mut rng);
            assert!(CanonicalId::parse(id.0.clone()).is_ok(), "{id}");
        }
    }

    #[test]
    fn every_symbol_appears_at_every_position_roughly_equally() {
        // 62,000 draws: each of the 31 symbols is expected 2,000 times at positions 1..8; a
        // generator that skipped a symbol or favoured one would fall outside these loose bounds.
        let mut rng = rand::rng();
        let mut counts = [[0u32; 256]; LENGTH];
        for _ in 0..62_000 {
            for (pos, b) in CanonicalId::generate(&mut rng).0.bytes().enumerate() {
                counts[pos][b as usize] += 1;
            }
        }
        for &b in LETTERS {
            let n = counts[0][b as usize];
            assert!(
                (2_200..3_200).contains(&n),
                "first position, {}: {n}",
                b as char
            );
        }
        for (pos, count) in counts.iter().enumerate().skip(1) {
            for &b in SYMBOLS {
                let n = count[b as usize];
                assert!(
                    (1_700..2_300).contains(&n),
                    "position {pos}, {}: {n}",
                    b as char
                );
            }
        }
    }

    #[test]
    fn misreadable_characters_and_wrong_lengths_are_rejected() {
        for bad in [
            "",
            "abcdefg",
            "abcdefghj",
            "2bcdefgh",
            "abcdefg0",
            "abcdefg1",
            "abcdefgi",
            "abcdefgl",
            "abcdefgo",
            "Abcdefgh",
        ] {
            assert!(
                CanonicalId::parse(bad.to_owned()).is_err(),
                "{bad:?} was accepted"
            );
        }
        assert!(CanonicalId::parse("a2345678".to_owned()).is_ok());
    }
}
