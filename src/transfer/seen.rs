//! Which rows may repeat an identifier or a canonical ID given earlier in the input: a Bloom
//! filter the reading thread fills as it goes, so that PostgreSQL need not group every staged row
//! to find the few that repeat.
//!
//! The filter never misses a repeat (no false negatives); it sometimes flags a row that repeats
//! nothing (a false positive, about 1% when full). Each staged row carries the 64-bit hash of its
//! identifier and the flag, and the plan's *special* rows are those whose identifier hash or
//! canonical ID is among the flagged rows'. That catches every occurrence of a repeated key,
//! including the first one (its later occurrence is flagged and shares its key), and a false
//! positive or a hash collision only makes a row special for nothing: special rows are planned
//! exactly, so the result is the same, a little slower.
//!
//! The memory is fixed up front, from the input's size: from 1 MiB up to 128 MiB (enough for
//! about 50 million rows, two keys each, at that 1%); an input larger than estimated only raises
//! the false positive rate.

use std::hash::{Hash, Hasher};

/// Bits per key the filter is sized for (three probes each: about 1.5% false positives when
/// every key it was sized for is in).
const BITS_PER_KEY: u64 = 10;
const MIN_BITS: u64 = 1 << 23;
const MAX_BITS: u64 = 1 << 30;
/// Probes per key.
const PROBES: u64 = 3;

/// The filter: keys seen so far.
pub struct Seen {
    words: Vec<u64>,
    mask: u64,
}

impl Seen {
    /// A filter for about `rows` rows (two keys each).
    pub fn for_rows(rows: u64) -> Self {
        let bits = rows
            .saturating_mul(2 * BITS_PER_KEY)
            .clamp(MIN_BITS, MAX_BITS)
            .next_power_of_two()
            .min(MAX_BITS);
        Self {
            words: vec![0; (bits / 64) as usize],
            mask: bits - 1,
        }
    }

    /// Adds a key (a 64-bit hash); true when it may have been added before.
    pub fn insert(&mut self, hash: u64) -> bool {
        // Double hashing: probe i is h1 + i * h2, with h2 odd (it then visits distinct bits).
        let h1 = hash;
        let h2 = hash.rotate_left(32) | 1;
        let mut present = true;
        for i in 0..PROBES {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) & self.mask;
            let (word, mask) = ((bit / 64) as usize, 1u64 << (bit % 64));
            present &= self.words[word] & mask != 0;
            self.words[word] |= mask;
        }
        present
    }
}

/// The 64-bit hash of an identifier (its three fields) as the staging table stores it, and the
/// filter's key for it.
pub fn identifier_hash(identifier_type: &str, ontology_type: &str, value: &str) -> u64 {
    // SipHash with fixed keys: the same input gives the same hash in every run and process.
    let mut h = std::hash::DefaultHasher::new();
    (identifier_type, ontology_type, value).hash(&mut h);
    h.finish()
}

/// The filter's key for a canonical ID (a domain of its own: never equal to an identifier's by
/// construction, beyond chance).
pub fn canonical_id_hash(canonical_id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    0xC1D_u16.hash(&mut h);
    canonical_id.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_added_before_is_always_found_and_a_new_one_rarely() {
        let mut seen = Seen::for_rows(100_000);
        let keys: Vec<u64> = (0..200_000u64)
            .map(|k| canonical_id_hash(&k.to_string()))
            .collect();
        let false_positives = keys.iter().filter(|&&k| seen.insert(k)).count();
        assert!(
            false_positives < 2_000,
            "{false_positives} of 200000 new keys"
        );
        assert!(keys.iter().all(|&k| seen.insert(k)), "no false negative");
    }

    #[test]
    fn identifiers_differing_in_any_field_hash_apart() {
        let a = identifier_hash("sierra-system-number", "Work", "b1");
        assert_eq!(a, identifier_hash("sierra-system-number", "Work", "b1"));
        assert_ne!(a, identifier_hash("sierra-system-number", "Work", "b2"));
        assert_ne!(a, identifier_hash("sierra-system-number", "Image", "b1"));
        // The fields' boundaries count: ("ab", "c") is not ("a", "bc").
        assert_ne!(
            identifier_hash("ab", "c", "d"),
            identifier_hash("a", "bc", "d")
        );
    }

    #[test]
    fn the_filter_stays_within_its_bounds() {
        assert_eq!(Seen::for_rows(0).words.len() as u64 * 64, MIN_BITS);
        assert_eq!(Seen::for_rows(u64::MAX).words.len() as u64 * 64, MAX_BITS);
    }
}
