//! High availability and scale, against the real thing on one machine: a streaming replica for
//! reads (`--read-database-url`), failover behind a moved address, and pgbouncer in transaction
//! pooling mode. Every test starts the servers it needs (see `cluster`) and stops them after.

#[path = "../common/mod.rs"]
mod common;
use common::helpers;

mod app;
mod cluster;

mod failover;
mod lifecycle;
mod pgbouncer;
mod replica;
