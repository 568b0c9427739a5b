//! The rules of idminter in plain Rust types: what a valid source identifier and canonical ID are,
//! how ontology aliases rewrite identifiers, how a batch of mint items is planned, and the lifecycle
//! of a canonical ID (redirect, withdraw, restore). Nothing here
//! knows about protobuf or SQL.

mod canonical_id;
mod lifecycle;
mod mint;
mod ontology;
mod source_identifier;
mod violations;

pub use canonical_id::CanonicalId;
pub use lifecycle::{
    Action, Change, Event, IdState, KnownStates, Ledger, MAX_REASON_BYTES, Reason, Refused,
    StateRecord,
};
pub use mint::{
    Inheritance, MintItem, MintOutcome, MintPlan, Minted, Pending, PlanError, Position, Slot,
    UnmintedPredecessor,
};
pub use ontology::OntologyAliases;
pub use source_identifier::SourceIdentifier;
pub use violations::{Violation, Violations};
