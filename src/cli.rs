//! Running each subcommand and turning its result into an exit code: 0 success, 1 failure (for
//! `check`: not ready; for `health`: not SERVING), 2 usage error (clap's own).

use std::process::ExitCode;

use sqlx::{Connection, PgConnection};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::client::{self, Call};
use crate::config::{
    Cli, Command, DatabaseArgs, HealthArgs, MigrateArgs, ServeConfig, TokenCommand,
};
use crate::startup::{self, Application};
use crate::store::baseline;
use crate::store::schema::SchemaState;
use crate::{guard, telemetry};

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
    app.run_until_stopped(startup::shutdown_signal()).await?;
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
