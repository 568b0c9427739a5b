//! Integration tests: a real PostgreSQL (one fresh database per test, dropped afterwards) and real
//! gRPC over real sockets, in-process through the production `Application::build` or as real
//! server processes. One binary, so it links once.

#[path = "../common/mod.rs"]
mod common;
use common::{fixtures, helpers};

mod auth;
mod cache;
mod covering_key;
mod database_tls;
mod dockerfile;
mod document_properties;
mod export;
mod health;
mod hostile_input;
mod import;
mod import_live;
mod lifecycle;
mod lifecycle_race;
mod logs;
mod lookup;
mod mint;
mod operators;
mod provenance;
mod race;
mod resolve;
mod resolver_http;
mod schema_guard;
mod tls;
