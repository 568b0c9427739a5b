//! The benchmark's identifiers: the seeded mappings, which are a pure function of their number so
//! that the load generator knows every existing identifier without asking the database, and the
//! new identifiers each workload mints, which are unique across the process and recognisable by
//! their value's first letter, so that the preparation can remove them again.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;

/// The identifier schemes of the seeded and new identifiers, as the reference pipeline uses them.
pub const KINDS: [(&str, &str); 6] = [
    ("sierra-system-number", "Work"),
    ("sierra-identifier", "Work"),
    ("miro-image-number", "Image"),
    ("lc-subjects", "Concept"),
    ("lc-names", "Concept"),
    ("calm-record-id", "Work"),
];

/// Seeded values start with this letter, new ones with [`NEW_PREFIX`].
pub const SEED_PREFIX: char = 's';
/// The first letter of every value the benchmark mints; the preparation deletes these.
pub const NEW_PREFIX: char = 'n';

/// One source identifier, as both the gRPC client and the floor build it.
#[derive(Debug, Clone)]
pub struct Ident {
    pub identifier_type: &'static str,
    pub ontology_type: &'static str,
    pub value: String,
}

/// The `k`th seeded identifier.
pub fn seed(k: u64) -> Ident {
    let (identifier_type, ontology_type) = KINDS[(k % KINDS.len() as u64) as usize];
    Ident {
        identifier_type,
        ontology_type,
        value: format!("{SEED_PREFIX}{k:010}"),
    }
}

const LETTERS: &[u8] = b"abcdefghjkmnpqrstuvwxyz";
const SYMBOLS: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
/// 23 * 31^7: how many canonical IDs there are.
const ID_SPACE: u128 = 23 * 31u128.pow(7);
/// Coprime with 23 and 31, so `k -> k * MULTIPLIER mod ID_SPACE` is a bijection: seeded IDs are
/// unique, scattered over the whole space like drawn ones, and need no uniqueness check.
const MULTIPLIER: u128 = 2_654_435_761;
const OFFSET: u128 = 98_765_432_109;

/// The canonical ID of the `k`th seeded identifier, in the canonical format.
pub fn seed_canonical_id(k: u64) -> [u8; 8] {
    let mut x = (u128::from(k) * MULTIPLIER + OFFSET) % ID_SPACE;
    let mut id = [0u8; 8];
    for slot in id[1..].iter_mut().rev() {
        *slot = SYMBOLS[(x % 31) as usize];
        x /= 31;
    }
    id[0] = LETTERS[x as usize];
    id
}

/// Draws new identifiers, unique within the process (and across processes, by a random tag).
pub struct NewIds {
    tag: String,
    next: AtomicU64,
}

impl NewIds {
    pub fn new() -> Self {
        let tag: String = (0..6)
            .map(|_| char::from(b'a' + rand::rng().random_range(0..26)))
            .collect();
        Self {
            tag,
            next: AtomicU64::new(0),
        }
    }

    /// The next new identifier.
    pub fn next(&self) -> Ident {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (identifier_type, ontology_type) = KINDS[(n % KINDS.len() as u64) as usize];
        Ident {
            identifier_type,
            ontology_type,
            value: format!("{NEW_PREFIX}{}{n:010}", self.tag),
        }
    }
}

/// One entry of a call: the identifier, its predecessor if it inherits, and what it should get.
#[derive(Debug, Clone)]
pub struct Entry {
    pub ident: Ident,
    pub predecessor: Option<Ident>,
    pub expect: Expect,
}

/// The outcome the load generator expects, checked on every answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Existing,
    Minted,
    Inherited,
}

/// Counts of each expected outcome in a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub existing: usize,
    pub minted: usize,
    pub inherited: usize,
}

impl Counts {
    pub fn of(batch: &[Entry]) -> Self {
        let mut counts = Self::default();
        for e in batch {
            counts.add(e.expect);
        }
        counts
    }

    pub fn add(&mut self, expect: Expect) {
        match expect {
            Expect::Existing => self.existing += 1,
            Expect::Minted => self.minted += 1,
            Expect::Inherited => self.inherited += 1,
        }
    }
}

/// Where the batches come from: the seeded table's size and the new-identifier source.
pub struct Source {
    pub rows: u64,
    pub new_ids: NewIds,
}

impl Source {
    /// `n` distinct seeded identifiers drawn uniformly from the whole table, so that a cache sees no
    /// more repeats than its share of the table (from a window of consecutive seeds when the table
    /// is not much larger than the batch).
    pub fn distinct_existing(&self, n: usize, rng: &mut impl Rng) -> Vec<Ident> {
        if (n as u64) >= self.rows / 4 {
            let start = rng.random_range(0..self.rows);
            return (0..n.min(self.rows as usize) as u64)
                .map(|i| seed((start + i) % self.rows))
                .collect();
        }
        let mut chosen = std::collections::HashSet::with_capacity(n);
        while chosen.len() < n {
            chosen.insert(rng.random_range(0..self.rows));
        }
        chosen.into_iter().map(seed).collect()
    }

    /// `n` existing identifiers, expected EXISTING.
    pub fn all_existing(&self, n: usize, rng: &mut impl Rng) -> Vec<Entry> {
        self.distinct_existing(n, rng)
            .into_iter()
            .map(|ident| Entry {
                ident,
                predecessor: None,
                expect: Expect::Existing,
            })
            .collect()
    }

    /// `n` new identifiers, expected MINTED.
    pub fn all_new(&self, n: usize) -> Vec<Entry> {
        (0..n)
            .map(|_| Entry {
                ident: self.new_ids.next(),
                predecessor: None,
                expect: Expect::Minted,
            })
            .collect()
    }

    /// The reference mixed call: of every ten entries, five new, four existing and one new
    /// identifier inheriting from an existing predecessor (a record moved to a new system). A
    /// table smaller than the batch runs out of distinct seeds; the rest are then new.
    pub fn mixed(&self, n: usize, rng: &mut impl Rng) -> Vec<Entry> {
        let needed = (0..n).filter(|i| i % 10 >= 5).count();
        let mut known = self.distinct_existing(needed, rng).into_iter();
        (0..n)
            .map(|i| {
                let known = if i % 10 >= 5 { known.next() } else { None };
                match (i % 10, known) {
                    (9, Some(p)) => Entry {
                        ident: self.new_ids.next(),
                        predecessor: Some(p),
                        expect: Expect::Inherited,
                    },
                    (_, Some(ident)) => Entry {
                        ident,
                        predecessor: None,
                        expect: Expect::Existing,
                    },
                    (_, None) => Entry {
                        ident: self.new_ids.next(),
                        predecessor: None,
                        expect: Expect::Minted,
                    },
                }
            })
            .collect()
    }
}
