//! idminter: gives every source identifier of a data pipeline one short, stable, opaque canonical ID.
//!
//! The crate is layered so that dependencies point one way:
//! - [`domain`]: identifiers, canonical IDs and the rules of minting; knows nothing of gRPC or SQL;
//! - [`store`]: the PostgreSQL schema, its migrations and the queries, in domain types;
//! - [`grpc`]: the tonic service, translating between protobuf and the domain;
//! - [`transfer`]: `import` and `export`, mappings in and out in bulk;
//! - [`resolver`]: the public read-only HTTP resolver (`serve --http-addr`);
//! - [`adapter`]: the SQS queue adapter (`idminter adapter`);
//! - [`config`]: shared flag groups and the plain configuration startup takes;
//! - [`startup`], [`shutdown`], [`telemetry`]: wiring the server, the stop signal, logs;
//! - [`cli`]: the command tree and running each command; the top, which nothing depends on.
#![forbid(unsafe_code)]

pub mod adapter;
pub mod admin;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod guard;
pub mod metrics;
pub mod pb;
pub mod readiness;
pub mod reload;
pub mod resolver;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod transfer;
