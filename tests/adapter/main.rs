//! Integration tests of `idminter adapter`: a real SQS and SNS server (moto, on 127.0.0.1), a real
//! minter process on a fresh PostgreSQL database, and the adapter as a real process, so that
//! SIGTERM and SIGKILL are what they are in production. One binary, so it links once.

#[path = "../common/mod.rs"]
mod common;
use common::{fixtures, helpers};
mod support;

mod crash;
mod identify;
mod monitoring;
mod outages;
mod poison;
mod redirects;
mod shutdown;
mod tls;
mod traces;
