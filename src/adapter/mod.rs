//! The queue adapter (`idminter adapter`): SQS documents in, MintIds, identified documents out.
//! (Being built; see issue 5.)

use std::process::ExitCode;

use clap::Args;

/// Flags of `idminter adapter`.
#[derive(Debug, Clone, Args)]
pub struct AdapterArgs {}

/// Runs the adapter until SIGTERM.
///
/// # Errors
/// Not built yet.
pub async fn run(_args: AdapterArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the queue adapter is not built yet")
}
