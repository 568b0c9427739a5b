//! The command line: the command tree ([`Cli`], [`Command`]; clap, every flag also read from the
//! environment variable named in its help), and running each subcommand and turning its result
//! into an exit code: 0 success, 1 failure (for `check`: not ready; for `health`: not SERVING),
//! 2 usage error (clap's own). The top of the crate: it depends on every command's module and
//! none depends on it. Each command's own flags live with the command (`config` for the shared
//! groups and `serve`, `client`, `adapter::args`, `transfer`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sqlx::{Connection, PgConnection};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::client::{self, Call};
use crate::config::{DatabaseArgs, LogFormat, ServeArgs, ServeConfig};
use crate::startup::Application;
use crate::store::baseline;
use crate::store::schema::SchemaState;
use crate::{guard, telemetry};

/// idminter: short, stable, opaque canonical IDs for the source identifiers of a data pipeline.
#[derive(Debug, Parser)]
#[command(name = "idminter", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format: `text` for people, `json` for log pipelines. Levels come from RUST_LOG.
    #[arg(
        long,
        env = "IDMINTER_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// Export traces over OTLP/gRPC to this collector (e.g. `http://localhost:4317`), for `serve`
    /// and `adapter`; the other OTEL_* variables (service name, sampler) apply. Off when unset.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server.
    Serve(ServeArgs),
    /// Apply pending migrations and exit.
    Migrate(MigrateArgs),
    /// Run the schema guard once: exit 0 when ready, 1 when not (diagnosis on stderr).
    Check(DatabaseArgs),
    /// Ask a server's grpc.health.v1 Check: exit 0 only for SERVING.
    Health(HealthArgs),
    /// Mint canonical IDs: `type/ontology/value` arguments, or lines (or JSON lines) on stdin.
    Mint(crate::client::ClientArgs),
    /// Look up canonical IDs without minting.
    Lookup(crate::client::ClientArgs),
    /// Resolve canonical IDs to their source identifiers.
    Resolve(crate::client::ClientArgs),
    /// Redirect canonical IDs to others (merged records): `ID=TARGET` arguments or lines.
    Redirect(crate::client::ChangeArgs),
    /// Withdraw canonical IDs (records that went away), leaving a tombstone.
    Withdraw(crate::client::ChangeArgs),
    /// Make redirected or withdrawn canonical IDs ACTIVE again.
    Restore(crate::client::ChangeArgs),
    /// Print the lifecycle events of canonical IDs, oldest first.
    History(crate::client::ClientArgs),
    /// Run the queue adapter: SQS documents in, identified documents out.
    Adapter(crate::adapter::AdapterArgs),
    /// Import existing mappings from CSV, TSV or JSON lines files (exit 0: every row imported
    /// or already present; 1: rows rejected or conflicting, or an error; 2: usage).
    Import(crate::transfer::ImportArgs),
    /// Export every mapping from one snapshot, in the order the rows were written (storage order).
    Export(crate::transfer::ExportArgs),
    /// Client tokens: `idminter token new NAME --scopes S`.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `idminter token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a fresh random token (give it to the client) and its line for the tokens file (the
    /// server keeps only the token's SHA-256).
    New {
        /// The client's name: its principal in logs, metrics and `created_by`.
        name: String,
        /// A comma-separated subset of read, mint, admin (each includes the ones before it).
        #[arg(long)]
        scopes: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Adopt an existing schema that has no history table: record the migrations its tables
    /// already match, and refuse if they match none.
    #[arg(long)]
    pub baseline: bool,
}

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// The server's gRPC URL; `https://` uses TLS.
    #[arg(long, env = "IDMINTER_ADDR", default_value = crate::config::DEFAULT_SERVER_URL)]
    pub addr: String,
    /// A token to send (health needs none; accepted so that one environment serves every command).
    #[arg(long, env = "IDMINTER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The CA certificate (PEM) that signed an https:// server's certificate; default: the
    /// system's roots.
    #[arg(long, env = "IDMINTER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// The service to ask about; "" is the whole server.
    #[arg(long, default_value = "")]
    pub service: String,
    /// How long to wait for an answer.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    // Traces for the long-running commands only.
    let service_name = match &cli.command {
        Command::Serve(_) => Some("idminter"),
        Command::Adapter(_) => Some("idminter-adapter"),
        _ => None,
    };
    let traces = service_name.map(|service_name| telemetry::Traces {
        endpoint: cli.otlp_endpoint.clone(),
        service_name,
    });
    let telemetry = telemetry::init_with_traces(cli.log_format, traces);
    let result = match cli.command {
        Command::Serve(args) => serve(args.try_into()).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Check(args) => check(args).await,
        Command::Health(args) => health(args).await,
        Command::Mint(args) => Ok(client::run(Call::Mint, args).await),
        Command::Lookup(args) => Ok(client::run(Call::Lookup, args).await),
        Command::Resolve(args) => Ok(client::run(Call::Resolve, args).await),
        Command::Redirect(args) => Ok(client::run_change(Call::Redirect, args).await),
        Command::Withdraw(args) => Ok(client::run_change(Call::Withdraw, args).await),
        Command::Restore(args) => Ok(client::run_change(Call::Restore, args).await),
        Command::History(args) => Ok(client::run(Call::History, args).await),
        Command::Adapter(args) => crate::adapter::run(args).await,
        Command::Token(TokenCommand::New { name, scopes }) => Ok(token_new(&name, &scopes)),
        Command::Import(args) => match args.try_into() {
            Ok(config) => crate::transfer::import::run(config).await,
            Err(e) => usage_error(&e),
        },
        Command::Export(args) => match args.try_into() {
            Ok(config) => crate::transfer::export::run(config).await,
            Err(e) => usage_error(&e),
        },
    };
    telemetry.shutdown().await;
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A command line clap accepted but whose values do not fit together: exit 2, as clap's own.
fn usage_error(e: &anyhow::Error) -> anyhow::Result<ExitCode> {
    eprintln!("error: {e:#}");
    Ok(ExitCode::from(2))
}

async fn serve(config: anyhow::Result<ServeConfig>) -> anyhow::Result<ExitCode> {
    let app = Application::build(config?).await?;
    app.run_until_stopped(crate::shutdown::signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// `idminter token new`: the token on the first line of standard output, its line for the tokens
/// file on the second, and what to do with them on standard error.
fn token_new(name: &str, scopes: &str) -> ExitCode {
    match crate::auth::tokens::new_line(name, scopes) {
        Ok((token, line)) => {
            println!("{token}");
            println!("{line}");
            eprintln!(
                "line 1 is the token: give it to `{name}` (it is shown only now); line 2 goes in the \
                 server's --auth-tokens file, which the server re-reads when it changes"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let options = args.database.connect_options()?;
    let table = &args.database.history_table;
    if args.baseline {
        let mut conn = PgConnection::connect_with(&options).await?;
        let recorded = baseline::adopt(&mut conn, table).await?;
        println!(
            "baselined: recorded {} as applied in {table}",
            recorded.join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let state = guard::run(&options, table, true).await?;
    if state.is_ready() {
        println!("{state}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{state}");
        Ok(ExitCode::FAILURE)
    }
}

async fn check(args: DatabaseArgs) -> anyhow::Result<ExitCode> {
    let options = args.connect_options()?;
    match guard::run(&options, &args.history_table, false).await {
        Ok(state @ SchemaState::Ready { .. }) => {
            println!("{state}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(state) => {
            eprintln!("{state}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("database unreachable: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn health(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let ask = async {
        let token = crate::auth::BearerToken::new(args.token.as_deref())?;
        let channel = crate::tls::client_endpoint(&args.addr, args.tls_ca.as_deref())?
            .connect()
            .await?;
        let mut client = HealthClient::with_interceptor(channel, token);
        let response = client
            .check(HealthCheckRequest {
                service: args.service.clone(),
            })
            .await?;
        anyhow::Ok(response.into_inner().status())
    };
    match tokio::time::timeout(args.timeout, ask).await {
        Ok(Ok(status)) => {
            println!("{}", status.as_str_name());
            Ok(if status == ServingStatus::Serving {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Ok(Err(e)) => {
            eprintln!("health check of {} failed: {e:#}", args.addr);
            Ok(ExitCode::FAILURE)
        }
        Err(_) => {
            eprintln!(
                "health check of {} timed out after {:?}",
                args.addr, args.timeout
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_through_a_transaction_pooler_is_a_usage_error() {
        let parsed = Cli::try_parse_from([
            "idminter",
            "serve",
            "--database-url",
            "postgres://x@h/db",
            "--transaction-pooler",
            "--migrate",
        ]);
        assert_eq!(
            parsed.unwrap_err().kind(),
            clap::error::ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn the_default_history_table_is_ours() {
        let cli = Cli::try_parse_from(["idminter", "check", "--database-url", "postgres://x@h/db"])
            .unwrap();
        let Command::Check(db) = cli.command else {
            panic!("not check")
        };
        assert_eq!(db.history_table, "idminter_schema_history");
    }
}
