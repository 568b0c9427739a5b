//! Test support shared by the integration-test binaries (`api`, `adapter`, `ha`): each declares
//! it once, `#[path = "../common/mod.rs"] mod common;` in its `main.rs`, and imports what it uses.
//!
//! - [`helpers`]: databases, in-process servers and server processes, clients, builders;
//! - [`fixtures`]: secrets made by the tests (certificate authorities, certificates, tokens);
//! - [`race`]: the concurrency races, run against whichever database URL a binary's servers use.

// Each binary uses a different part of it.
#![allow(dead_code)]

pub mod fixtures;
pub mod helpers;
pub mod race;
