//! A bounded in-process cache of source identifier -> canonical ID, consulted before the lookup
//! query.
//!
//! Why it can never answer differently from the database: a mapping, once made, never changes
//! and is never removed (the table's trigger refuses UPDATE and DELETE), so an entry can only be
//! wrong if it was never true. Entries therefore come only from rows the lookup query read from
//! the table, outside any transaction, so only committed rows; never from what a call is about to
//! write or has written (its transaction might yet fail). Only mappings are cached, never their
//! absence: an unknown identifier may be minted by another process at any moment. A freshly
//! minted identifier joins the cache the next time it is looked up.
//!
//! Layout: `SHARDS` mutex-guarded shards, each a hash table holding its entries inline (the
//! identifier's fields each prefixed by its length, since fields are at most 255 bytes, inline up
//! to 54 bytes; the ID inline), sized once for its share of the capacity so it never rehashes.
//! A full shard evicts by CLOCK (second chance) over its buckets: an entry found again since the
//! hand last passed survives one more round, so the identifiers a pipeline keeps meeting (subjects,
//! people) stay while the one-off identifiers of a reindex pass through. About 85 bytes an entry
//! (72 per bucket, buckets at most 7/8 full).

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Mutex;

use hashbrown::HashTable;

use crate::domain::{CanonicalId, SourceIdentifier};

/// Entries kept by default: 64 shards of 3,584 entries in 4,096 buckets (tables have a power of
/// two of buckets, at most 7/8 full), about 19 MB. Measured (BENCHMARKS.md): eight concurrent
/// 10,200-identifier calls take the server to about 135 MB with this, within its budget of 150 MB;
/// twice as many entries took it past.
pub const DEFAULT_CAPACITY: usize = 229_376;
/// Shards: enough that concurrent calls rarely wait for each other's lock.
const SHARDS: usize = 64;

/// The cache; cheap to share behind an `Arc`. A capacity of 0 turns it off.
pub struct IdCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    /// Keyed SipHash, seeded per process: callers choose the identifiers, and must not be able to
    /// choose them to collide.
    hasher: RandomState,
}

struct Shard {
    table: HashTable<Entry>,
    /// The CLOCK hand: the next bucket considered for eviction.
    hand: usize,
}

struct Entry {
    key: Key,
    id: [u8; 8],
    /// Found again since the hand last passed.
    referenced: bool,
}

/// Bytes of an encoded identifier kept inside the entry; longer ones (rare) get an allocation.
const INLINE: usize = 54;

/// An encoded identifier: inline when short, so that most entries cost no allocation and a
/// comparison reads no other memory.
enum Key {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Key {
    fn new(encoded: &[u8]) -> Self {
        if encoded.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..encoded.len()].copy_from_slice(encoded);
            Key::Inline {
                len: encoded.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(encoded.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Heap(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for IdCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdCache")
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

impl IdCache {
    /// A cache of at most `capacity` entries (rounded up to a multiple of the shard count).
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        let shards = if capacity == 0 { 0 } else { SHARDS };
        Self {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        // Allocated now, touched (and so resident) only as it fills.
                        table: HashTable::with_capacity(per_shard),
                        hand: 0,
                    })
                })
                .collect(),
            per_shard,
            hasher: RandomState::new(),
        }
    }

    /// The most entries it holds.
    pub fn capacity(&self) -> usize {
        self.shards.len() * self.per_shard
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).table.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached canonical ID of `id`, if any.
    pub fn get(&self, id: &SourceIdentifier) -> Option<CanonicalId> {
        if self.shards.is_empty() {
            return None;
        }
        let hash = self.hash(id);
        let mut shard = lock(&self.shards[shard_of(hash)]);
        let entry = shard
            .table
            .find_mut(hash, |e| key_matches(e.key.as_bytes(), id))?;
        entry.referenced = true;
        // The bytes came from a CanonicalId, so they are ASCII.
        std::str::from_utf8(&entry.id)
            .ok()
            .map(|s| CanonicalId::from_database(s.to_owned()))
    }

    /// Remembers that `id` has the canonical ID `canonical_id`. Only for mappings read from the
    /// table (see the module documentation).
    pub fn insert(&self, id: &SourceIdentifier, canonical_id: &CanonicalId) {
        if self.shards.is_empty() {
            return;
        }
        let Ok(bytes) = <[u8; 8]>::try_from(canonical_id.as_str().as_bytes()) else {
            return;
        };
        let hash = self.hash(id);
        let hasher = |e: &Entry| self.hash_key(e.key.as_bytes());
        let mut shard = lock(&self.shards[shard_of(hash)]);
        if shard
            .table
            .find(hash, |e| key_matches(e.key.as_bytes(), id))
            .is_some()
        {
            // Already there, and mappings never change: nothing to update.
            return;
        }
        if shard.table.len() >= self.per_shard {
            shard.evict_one();
        }
        shard.table.insert_unique(
            hash,
            Entry {
                key: Key::new(&encode(id)),
                id: bytes,
                referenced: false,
            },
            hasher,
        );
    }

    fn hash(&self, id: &SourceIdentifier) -> u64 {
        let mut h = self.hasher.build_hasher();
        for part in [id.identifier_type(), id.ontology_type(), id.value()] {
            h.write_usize(part.len());
            h.write(part.as_bytes());
        }
        h.finish()
    }

    /// The same hash as [`hash`](Self::hash), from an encoded key.
    fn hash_key(&self, mut key: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        while let Some((&len, rest)) = key.split_first() {
            let (part, rest) = rest.split_at((len as usize).min(rest.len()));
            h.write_usize(part.len());
            h.write(part);
            key = rest;
        }
        h.finish()
    }
}

impl Shard {
    /// CLOCK: clears the marks of entries found again since the last pass and evicts the first
    /// unmarked one; within two rounds of the buckets, since each pass clears the marks it meets.
    fn evict_one(&mut self) {
        let buckets = self.table.num_buckets();
        for _ in 0..2 * buckets {
            self.hand = (self.hand + 1) % buckets;
            match self.table.get_bucket_mut(self.hand) {
                Some(entry) if entry.referenced => entry.referenced = false,
                Some(_) => {
                    if let Ok(entry) = self.table.get_bucket_entry(self.hand) {
                        entry.remove();
                    }
                    return;
                }
                None => {}
            }
        }
    }
}

fn shard_of(hash: u64) -> usize {
    // The table places entries by the low bits and tells them apart by the top seven: the shard
    // takes bits from the middle, so that neither is the same for every entry of a shard.
    (hash >> 40) as usize % SHARDS
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    // A panic while holding a shard cannot leave it inconsistent in a way that matters: at worst
    // an entry is missing from the table, which is a miss.
    shard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The three fields, each after its length in one byte (a field is at most 255 bytes).
fn encode(id: &SourceIdentifier) -> Vec<u8> {
    let parts = [id.identifier_type(), id.ontology_type(), id.value()];
    let mut key = Vec::with_capacity(3 + parts.iter().map(|p| p.len()).sum::<usize>());
    for part in parts {
        key.push(part.len().min(255) as u8);
        key.extend_from_slice(part.as_bytes());
    }
    key
}

fn key_matches(key: &[u8], id: &SourceIdentifier) -> bool {
    let mut rest = key;
    for part in [id.identifier_type(), id.ontology_type(), id.value()] {
        let Some((&len, tail)) = rest.split_first() else {
            return false;
        };
        if len as usize != part.len() || !tail.starts_with(part.as_bytes()) {
            return false;
        }
        rest = &tail[part.len()..];
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(t: &str, o: &str, v: &str) -> SourceIdentifier {
        SourceIdentifier::parse(t.into(), o.into(), v.into()).unwrap()
    }

    fn cid(s: &str) -> CanonicalId {
        CanonicalId::parse(s.into()).unwrap()
    }

    #[test]
    fn an_inserted_mapping_is_found_and_nothing_else_is() {
        let cache = IdCache::new(1000);
        cache.insert(&id("t", "Work", "a"), &cid("aaaaaaaa"));
        assert_eq!(cache.get(&id("t", "Work", "a")), Some(cid("aaaaaaaa")));
        for other in [
            id("t", "Work", "A"),
            id("t", "Image", "a"),
            id("u", "Work", "a"),
            id("t", "Work", "a "),
        ] {
            assert_eq!(cache.get(&other), None, "{other}");
        }
    }

    #[test]
    fn fields_cannot_be_shifted_into_one_another() {
        // The same bytes split differently are different identifiers.
        let cache = IdCache::new(1000);
        cache.insert(&id("ab", "c", "d"), &cid("aaaaaaaa"));
        assert_eq!(cache.get(&id("a", "bc", "d")), None);
        assert_eq!(cache.get(&id("ab", "cd", "x")), None);
    }

    #[test]
    fn a_full_cache_stays_within_its_capacity_and_keeps_what_is_found_again() {
        let cache = IdCache::new(SHARDS * 4);
        let hot = id("t", "Work", "hot");
        cache.insert(&hot, &cid("hhhhhhhh"));
        for i in 0..SHARDS * 40 {
            // Found again between insertions: the CLOCK keeps it.
            assert_eq!(
                cache.get(&hot),
                Some(cid("hhhhhhhh")),
                "after {i} insertions"
            );
            cache.insert(&id("t", "Work", &format!("cold-{i}")), &cid("cccccccc"));
            assert!(cache.len() <= cache.capacity());
        }
        assert_eq!(cache.len(), cache.capacity(), "full, every shard");
        let kept = (0..SHARDS * 40)
            .filter(|i| cache.get(&id("t", "Work", &format!("cold-{i}"))).is_some())
            .count();
        assert!(kept <= cache.capacity());
    }

    #[test]
    fn an_entry_fits_the_memory_budget() {
        // The default capacity in 64 x 4,096 buckets of this size: about 19 MB.
        assert!(
            std::mem::size_of::<Entry>() <= 72,
            "{}",
            std::mem::size_of::<Entry>()
        );
        let cache = IdCache::new(DEFAULT_CAPACITY);
        let shard = lock(&cache.shards[0]);
        assert_eq!(shard.table.num_buckets(), 4096);
        assert!(shard.table.capacity() >= cache.per_shard);
    }

    #[test]
    fn a_cache_of_capacity_zero_holds_nothing() {
        let cache = IdCache::new(0);
        cache.insert(&id("t", "Work", "a"), &cid("aaaaaaaa"));
        assert_eq!(cache.get(&id("t", "Work", "a")), None);
        assert_eq!(cache.capacity(), 0);
    }
}
