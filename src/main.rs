//! The `idminter` binary: parse the command line, hand off to the library.
use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    idminter::cli::run(idminter::cli::Cli::parse()).await
}
