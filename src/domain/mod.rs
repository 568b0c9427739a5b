//! The rules of idminter in plain Rust types: what a valid source identifier and canonical ID are,
//! how ontology aliases rewrite identifiers, and how a batch of mint items is planned. Nothing here
//! knows about protobuf or SQL.

mod canonical_id;
mod mint;
mod ontology;
mod source_identifier;
mod violations;

pub use canonical_id::CanonicalId;
pub use mint::{MintItem, MintOutcome, MintPlan, Minted, Pending, PlanError, UnmintedPredecessor};
pub use ontology::OntologyAliases;
pub use source_identifier::SourceIdentifier;
pub use violations::{Violation, Violations};
