//! The reference workloads (our reference user's own benchmark, one MintIds call per 1000 works),
//! the LookupIds batch, and the single-identifier calls whose latency we promise.

use clap::ValueEnum;
use rand::Rng;

use crate::data::{Entry, Source};

/// Identifiers per work in the reference workloads.
const IDS_PER_WORK: usize = 6;
/// Identifiers per work in the large-fanout workload.
const FANOUT_IDS_PER_WORK: usize = 51;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// MintIds, 1000 works x 6 identifiers, all already minted.
    AllExisting,
    /// LookupIds of 6000 minted identifiers.
    Lookup,
    /// MintIds of one minted identifier, one client.
    SingleExisting,
    /// MintIds, 1000 works x 6 identifiers, none minted.
    AllNew,
    /// MintIds, 1000 works x 6 identifiers: 50% new, 40% minted, 10% new inheriting from a minted
    /// predecessor.
    Mixed,
    /// MintIds, 200 works x 51 identifiers, none minted (10,200 entries, above the default
    /// --max-batch: the benchmark raises it).
    LargeFanout,
    /// MintIds of one new identifier, one client.
    SingleNew,
}

impl Workload {
    /// Reads first (on the pristine table), then writes.
    pub const ALL: [Workload; 7] = [
        Workload::AllExisting,
        Workload::Lookup,
        Workload::SingleExisting,
        Workload::AllNew,
        Workload::Mixed,
        Workload::LargeFanout,
        Workload::SingleNew,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::AllExisting => "all-existing",
            Workload::Lookup => "lookup",
            Workload::SingleExisting => "single-existing",
            Workload::AllNew => "all-new",
            Workload::Mixed => "mixed",
            Workload::LargeFanout => "large-fanout",
            Workload::SingleNew => "single-new",
        }
    }

    pub fn ids_per_call(self) -> usize {
        match self {
            Workload::LargeFanout => 200 * FANOUT_IDS_PER_WORK,
            Workload::SingleExisting | Workload::SingleNew => 1,
            _ => 1000 * IDS_PER_WORK,
        }
    }

    /// Whether the workload adds mappings (and the table is restored before it).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Workload::AllNew | Workload::Mixed | Workload::LargeFanout | Workload::SingleNew
        )
    }

    /// Single-identifier workloads measure latency with one client.
    pub fn single(self) -> bool {
        matches!(self, Workload::SingleExisting | Workload::SingleNew)
    }

    /// The next call's entries.
    pub fn batch(self, source: &Source, rng: &mut impl Rng) -> Vec<Entry> {
        let n = self.ids_per_call();
        match self {
            Workload::AllExisting | Workload::Lookup => source.all_existing(n, rng),
            Workload::SingleExisting => source.all_existing(1, rng),
            Workload::AllNew | Workload::LargeFanout | Workload::SingleNew => source.all_new(n),
            Workload::Mixed => source.mixed(n, rng),
        }
    }
}
