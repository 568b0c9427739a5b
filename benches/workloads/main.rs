//! The reference workloads against a real PostgreSQL, through the service and at the SQL floor.
//!
//! `cargo bench --bench workloads -- [--rows N] [--clients C] [--json FILE] ...` prepares (or
//! reuses) a database holding N mappings, starts `idminter serve` as a release process of its own,
//! and runs each workload twice for the same time with the same number of clients: once through
//! gRPC, once as the bare statements the service sends (the floor). It prints a Markdown table and
//! can write the same as JSON. BENCHMARKS.md has the numbers and how to read them.

mod data;
mod floor;
mod lifecycle;
mod load;
mod prepare;
mod report;
mod server;
mod service;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;

use crate::data::{NewIds, Source};
use crate::load::{Client, Sample};
use crate::report::Row;
use crate::server::{Server, cpu_seconds};
use crate::service::ServiceClient;
use crate::workload::Workload;

/// The server's default pool size: the floor gets no more connections than the service has.
const SERVER_POOL: usize = 16;
/// Enough for a 10,200-entry large-fanout call; the server's default is 10,000.
const MAX_BATCH: &str = "10200";

/// Benchmarks idminter on the reference workloads, through the service and at the SQL floor.
#[derive(Debug, Parser)]
#[command(name = "workloads")]
struct Args {
    /// The PostgreSQL server and benchmark database; the database is created if missing. Default:
    /// postgres://postgres@127.0.0.1:5432/idminter_bench_<rows, e.g. 1m>.
    #[arg(long, env = "IDMINTER_BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Mappings in the table before each workload.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Concurrent clients for the batch workloads (the single-identifier ones use one). Default:
    /// four per core, which saturates this service and its database.
    #[arg(long)]
    clients: Option<usize>,
    /// How long each side of each workload is measured.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How long each side runs before it is measured.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// The workloads to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<Workload>,
    /// Which side to run.
    #[arg(long, default_value = "both")]
    side: Side,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// An extra argument for `idminter serve` (repeatable), e.g. `--server-arg=--db-max-connections=32`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Prepare the database and stop.
    #[arg(long)]
    prepare_only: bool,
    /// Instead of the workloads: the lifecycle comparison (all-existing and lookup, with none and
    /// with 10% of IDs redirected, through this build and `--baseline-binary` side by side), then
    /// the public resolver under load (`--clients` HTTP clients, default 16).
    #[arg(long)]
    lifecycle: bool,
    /// An idminter binary to compare with in `--lifecycle` (e.g. the release before lifecycle).
    #[arg(long)]
    baseline_binary: Option<PathBuf>,
    /// Measurements of each server per workload in `--lifecycle` (alternating which goes first).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Side {
    Both,
    Service,
    Floor,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let url = args.database_url.clone().unwrap_or_else(|| {
        format!(
            "postgres://postgres@127.0.0.1:5432/idminter_bench_{}",
            size_label(args.rows)
        )
    });
    eprintln!("preparing {} mappings in {url}", args.rows);
    let prepared = prepare::prepare(&url, args.rows, cores).await?;
    eprintln!(
        "{} database: {} mappings, {:.0} MB with indexes, in {:.1}s",
        if prepared.reused {
            "reused"
        } else {
            "prepared"
        },
        prepared.rows,
        prepared.table_bytes as f64 / 1e6,
        prepared.prepare_seconds
    );
    if args.prepare_only {
        return Ok(());
    }
    if args.lifecycle {
        return lifecycle_comparison(&args, &url, &prepared).await;
    }

    let clients = args.clients.unwrap_or(4 * cores).max(1);
    let workloads = if args.workloads.is_empty() {
        Workload::ALL.to_vec()
    } else {
        args.workloads.clone()
    };
    let mut server_args = args.server_args.clone();
    if !server_args.iter().any(|a| a.starts_with("--max-batch")) {
        server_args.extend(["--max-batch".to_owned(), MAX_BATCH.to_owned()]);
    }
    let server = Server::start(&url, &server_args).await?;
    let pool = PgPoolOptions::new()
        .max_connections(clients.min(SERVER_POOL) as u32)
        .connect_with(prepared.options.clone())
        .await?;
    let source = Arc::new(Source {
        rows: args.rows,
        new_ids: NewIds::new(),
    });
    let postgres: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await?;
    let mut rss_per_workload = true;

    let mut rows = Vec::new();
    for workload in workloads {
        let c = if workload.single() { 1 } else { clients };
        let mut row = Row {
            workload,
            clients: c,
            service: None,
            floor: None,
            server_peak_rss: None,
            server_cpu_cores: None,
            cache_hit_rate: None,
            machine_cpu_cores_service: None,
            machine_cpu_cores_floor: None,
        };
        if args.side != Side::Service {
            if workload.writes() {
                prepare::restore(&prepared.options).await?;
            }
            let clients = (0..c).map(|_| Client::Floor(pool.clone())).collect();
            let (sample, machine) = measure(clients, workload, &source, &args)
                .await
                .with_context(|| format!("{} at the floor", workload.name()))?;
            row.floor = Some(sample);
            row.machine_cpu_cores_floor = machine;
        }
        if args.side != Side::Floor {
            if workload.writes() {
                prepare::restore(&prepared.options).await?;
            }
            let mut clients = Vec::with_capacity(c);
            for _ in 0..c {
                clients.push(Client::Service(ServiceClient::new(server.channel().await?)));
            }
            rss_per_workload &= server.reset_peak_rss();
            let cache_before = server.cache_lookups().await;
            let cpu_before = cpu_seconds(Some(server.pid()));
            let started = Instant::now();
            let (sample, machine) = measure(clients, workload, &source, &args)
                .await
                .with_context(|| format!("{} through the service", workload.name()))?;
            let cpu_after = cpu_seconds(Some(server.pid()));
            row.server_cpu_cores = cpu_before
                .zip(cpu_after)
                .map(|(b, a)| (a - b) / started.elapsed().as_secs_f64());
            row.server_peak_rss = server.peak_rss();
            row.cache_hit_rate =
                cache_before
                    .zip(server.cache_lookups().await)
                    .and_then(|((h0, m0), (h1, m1))| {
                        let lookups = (h1 - h0) + (m1 - m0);
                        (lookups > 0.0).then(|| (h1 - h0) / lookups)
                    });
            row.service = Some(sample);
            row.machine_cpu_cores_service = machine;
        }
        eprintln!(
            "{}",
            report::table(std::slice::from_ref(&row))
                .lines()
                .nth(2)
                .unwrap_or_default()
        );
        rows.push(row);
    }
    drop(server);
    pool.close().await;
    let restored = prepare::restore(&prepared.options).await?;

    let table = report::table(&rows);
    println!(
        "\n{} cores; PostgreSQL {postgres}; {} mappings ({:.0} MB with indexes) before each workload; \
         {} s measured after {} s warm-up per side\n",
        cores,
        prepared.rows,
        prepared.table_bytes as f64 / 1e6,
        args.duration.as_secs_f64(),
        args.warmup.as_secs_f64(),
    );
    println!("{table}");
    if !rss_per_workload {
        println!(
            "(server peak RSS could not be reset: each value is the peak since the server started)"
        );
    }
    if let Some(path) = &args.json {
        let document = json!({
            "machine": {
                "cores": cores,
                "postgres": postgres,
                "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_owned()),
            },
            "table": {
                "rows": prepared.rows,
                "bytes_with_indexes": prepared.table_bytes,
                "restored_before_each_writing_workload": true,
            },
            "settings": {
                "clients": clients,
                "floor_pool": clients.min(SERVER_POOL),
                "duration_seconds": args.duration.as_secs_f64(),
                "warmup_seconds": args.warmup.as_secs_f64(),
                "server_args": server_args,
                "rss_scope": if rss_per_workload { "workload" } else { "run" },
            },
            "results": report::rows_json(&rows),
            "rows_removed_after_run": restored,
        });
        std::fs::write(path, serde_json::to_string_pretty(&document)?)
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// `--lifecycle`: the side-by-side comparison and the resolver's load, printed as Markdown.
async fn lifecycle_comparison(
    args: &Args,
    url: &str,
    prepared: &prepare::Prepared,
) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut server_args = args.server_args.clone();
    if !server_args.iter().any(|a| a.starts_with("--max-batch")) {
        server_args.extend(["--max-batch".to_owned(), MAX_BATCH.to_owned()]);
    }
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(prepared.options.clone())
        .await?;
    let mut settings = lifecycle::Settings {
        url,
        rows: prepared.rows,
        clients: args.clients.unwrap_or(4 * cores).max(1),
        server_args: &server_args,
        baseline: args.baseline_binary.as_deref(),
        rounds: args.rounds.max(1),
        warmup: args.warmup,
        window: args.duration,
    };
    let comparison = lifecycle::compare(&pool, &settings).await?;
    settings.clients = args.clients.unwrap_or(16).max(1);
    let resolver = lifecycle::resolver(&pool, &settings).await?;
    println!(
        "\n{cores} cores; {} mappings; {} clients; {} s measured after {} s warm-up, {} rounds per server\n",
        prepared.rows,
        args.clients.unwrap_or(4 * cores),
        args.duration.as_secs_f64(),
        args.warmup.as_secs_f64(),
        settings.rounds
    );
    println!("{comparison}");
    println!(
        "| resolver | clients | requests/s | p50 ms | p99 ms |\n|---|---|---|---|---|\n{resolver}"
    );
    Ok(())
}

/// Runs one side of one workload; also returns the machine's CPU use in cores over the run.
async fn measure(
    clients: Vec<Client>,
    workload: Workload,
    source: &Arc<Source>,
    args: &Args,
) -> anyhow::Result<(Sample, Option<f64>)> {
    let before = cpu_seconds(None);
    let started = Instant::now();
    let sample = load::run(
        clients,
        workload,
        source.clone(),
        args.warmup,
        args.duration,
    )
    .await?;
    let machine = before
        .zip(cpu_seconds(None))
        .map(|(b, a)| (a - b) / started.elapsed().as_secs_f64());
    Ok((sample, machine))
}

/// `1m` for a million rows, `50m`, `250k`, or the number.
fn size_label(rows: u64) -> String {
    match rows {
        r if r >= 1_000_000 && r % 1_000_000 == 0 => format!("{}m", r / 1_000_000),
        r if r >= 1_000 && r % 1_000 == 0 => format!("{}k", r / 1_000),
        r => r.to_string(),
    }
}
