//! The gRPC face of idminter: the `IdMinter` service, the conversions between protobuf and domain
//! types, and the one mapping from our errors to gRPC statuses.

pub mod codec;
mod convert;
mod deadline;
pub mod error;
mod layers;
pub use layers::{RpcMetricsLayer, limit_concurrency};
mod service;

pub use service::IdMinterService;
