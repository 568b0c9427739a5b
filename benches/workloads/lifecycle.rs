//! The lifecycle comparison (issue 11): do MintIds and LookupIds of existing identifiers get slower
//! now that every answer carries a status? Runs `all-existing` and `lookup` through two server
//! processes on the same database, side by side in one run: this build, and a baseline binary
//! (`--baseline-binary`, e.g. the release before lifecycle). Each workload is measured with none
//! and with 10% of the table's IDs redirected (the baseline knows nothing of redirects, so it does
//! the same work either way; it is there to tell the machine's drift from ours). The two servers
//! alternate within each pair, and the pairs repeat (`--rounds`), so drift falls on both equally.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use sqlx::PgPool;

use crate::data::{Source, seed_canonical_id};
use crate::load::{Client, Sample};
use crate::server::Server;
use crate::service::ServiceClient;
use crate::workload::Workload;

/// One measured cell: which server, which share redirected, which workload, and its sample.
pub struct Cell {
    pub server: &'static str,
    pub redirected_percent: u32,
    pub workload: Workload,
    pub samples: Vec<Sample>,
}

/// Redirects `percent`% of the seeded IDs (every (100/percent)th row, to the next row's ID, which
/// stays ACTIVE), or none. Through SQL straight into the states table: the database's own rule
/// checks run at commit, as they do for the service.
pub async fn set_redirected(pool: &PgPool, rows: u64, percent: u32) -> anyhow::Result<u64> {
    sqlx::query("DELETE FROM canonical_id_states")
        .execute(pool)
        .await?;
    if percent == 0 {
        return Ok(0);
    }
    let step = u64::from(100 / percent.clamp(1, 50));
    let (mut ids, mut targets) = (Vec::new(), Vec::new());
    for k in (0..rows.saturating_sub(1)).step_by(step as usize) {
        ids.push(String::from_utf8_lossy(&seed_canonical_id(k)).into_owned());
        targets.push(String::from_utf8_lossy(&seed_canonical_id(k + 1)).into_owned());
    }
    let n = ids.len() as u64;
    sqlx::query(
        "INSERT INTO canonical_id_states (canonical_id, status, redirect_target, reason, changed_by) \
         SELECT id, 'redirected', target, 'benchmark', 'benchmark' \
         FROM unnest($1::text[], $2::text[]) AS r(id, target)",
    )
    .bind(ids)
    .bind(targets)
    .execute(pool)
    .await
    .context("redirect a share of the table")?;
    Ok(n)
}

/// The servers to compare: ours, and the baseline when given.
pub async fn servers(
    url: &str,
    extra: &[String],
    baseline: Option<&Path>,
) -> anyhow::Result<Vec<(&'static str, Server)>> {
    let mut servers = Vec::new();
    if let Some(binary) = baseline {
        servers.push(("baseline", Server::start_binary(binary, url, extra).await?));
    }
    servers.push(("this build", Server::start(url, extra).await?));
    Ok(servers)
}

/// Measures one workload on one server.
pub async fn measure(
    server: &Server,
    clients: usize,
    workload: Workload,
    source: &Arc<Source>,
    warmup: std::time::Duration,
    window: std::time::Duration,
) -> anyhow::Result<Sample> {
    let mut cs = Vec::with_capacity(clients);
    for _ in 0..clients {
        cs.push(Client::Service(ServiceClient::new(server.channel().await?)));
    }
    crate::load::run(cs, workload, source.clone(), warmup, window).await
}

/// The Markdown table: per workload and share redirected, each server's identifiers/s (median of
/// the rounds) and p99, and this build's throughput as a fraction of the baseline's.
pub fn table(cells: &[Cell]) -> String {
    let mut out = String::from(
        "| workload | redirected | server | ids/s (median of rounds) | p50 ms | p99 ms | vs baseline |\n|---|---|---|---|---|---|---|\n",
    );
    let median = |c: &Cell| {
        let mut v: Vec<f64> = c.samples.iter().map(Sample::ids_per_second).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let quantile = |c: &Cell, q: f64| {
        let mut all: Vec<std::time::Duration> = c
            .samples
            .iter()
            .flat_map(|s| s.latencies.iter().copied())
            .collect();
        all.sort_unstable();
        if all.is_empty() {
            return 0.0;
        }
        let rank = ((all.len() as f64 * q).ceil() as usize).clamp(1, all.len());
        all[rank - 1].as_secs_f64() * 1e3
    };
    for cell in cells {
        let baseline = cells.iter().find(|b| {
            b.server == "baseline"
                && b.workload == cell.workload
                && b.redirected_percent == cell.redirected_percent
        });
        let ratio = match baseline {
            Some(b) if cell.server != "baseline" && median(b) > 0.0 => {
                format!("{:.2}", median(cell) / median(b))
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "| {} | {}% | {} | {:.0} | {:.1} | {:.1} | {} |\n",
            cell.workload.name(),
            cell.redirected_percent,
            cell.server,
            median(cell),
            quantile(cell, 0.5),
            quantile(cell, 0.99),
            ratio
        ));
    }
    out
}

/// What the comparison needs from the command line.
pub struct Settings<'a> {
    pub url: &'a str,
    pub rows: u64,
    pub clients: usize,
    pub server_args: &'a [String],
    pub baseline: Option<&'a Path>,
    pub rounds: usize,
    pub warmup: std::time::Duration,
    pub window: std::time::Duration,
}

/// Runs the comparison and returns its table.
///
/// # Errors
/// A server did not start, or a call failed.
pub async fn compare(pool: &PgPool, settings: &Settings<'_>) -> anyhow::Result<String> {
    let servers = servers(settings.url, settings.server_args, settings.baseline).await?;
    let source = Arc::new(Source {
        rows: settings.rows,
        new_ids: crate::data::NewIds::new(),
    });
    let mut cells: Vec<Cell> = Vec::new();
    for percent in [0, 10] {
        let redirected = set_redirected(pool, settings.rows, percent).await?;
        eprintln!("{redirected} IDs redirected ({percent}%)");
        for workload in [Workload::AllExisting, Workload::Lookup] {
            for round in 0..settings.rounds {
                // Alternate which server goes first, so that drift within a pair cancels.
                let order: Vec<usize> = if round % 2 == 0 {
                    (0..servers.len()).collect()
                } else {
                    (0..servers.len()).rev().collect()
                };
                for i in order {
                    let (name, server) = &servers[i];
                    let sample = measure(
                        server,
                        settings.clients,
                        workload,
                        &source,
                        settings.warmup,
                        settings.window,
                    )
                    .await
                    .with_context(|| format!("{} on {name}", workload.name()))?;
                    eprintln!(
                        "{} {percent}% {name} round {round}: {:.0} ids/s",
                        workload.name(),
                        sample.ids_per_second()
                    );
                    match cells.iter_mut().find(|c| {
                        c.server == *name
                            && c.workload == workload
                            && c.redirected_percent == percent
                    }) {
                        Some(cell) => cell.samples.push(sample),
                        None => cells.push(Cell {
                            server: name,
                            redirected_percent: percent,
                            workload,
                            samples: vec![sample],
                        }),
                    }
                }
            }
        }
    }
    set_redirected(pool, settings.rows, 0).await?;
    Ok(table(&cells))
}

/// The public resolver under load: `clients` HTTP/1.1 keep-alive clients, each sending its next
/// `GET /v1/canonical-ids/{id}` (a random seeded ID, 10% of them redirected) when the last is
/// answered. Returns the table row: requests/s, p50, p99.
///
/// # Errors
/// The server did not start, or a request failed or got an unexpected status.
pub async fn resolver(pool: &PgPool, settings: &Settings<'_>) -> anyhow::Result<String> {
    use rand::{Rng, SeedableRng};
    let redirected = set_redirected(pool, settings.rows, 10).await?;
    let mut extra = settings.server_args.to_vec();
    extra.extend(["--http-addr".to_owned(), "127.0.0.1:0".to_owned()]);
    let server = Server::start(settings.url, &extra).await?;
    let base = format!(
        "http://{}/v1/canonical-ids/",
        server.http_addr.context("the resolver's address")?
    );
    let start = std::time::Instant::now() + std::time::Duration::from_millis(10);
    let measured_from = start + settings.warmup;
    let end = measured_from + settings.window;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..settings.clients {
        let (base, rows) = (base.clone(), settings.rows);
        tasks.spawn(async move {
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?;
            let mut rng = rand::rngs::SmallRng::from_rng(&mut rand::rng());
            let mut done = Vec::new();
            while std::time::Instant::now() < end {
                let k = rng.random_range(0..rows);
                let id = String::from_utf8_lossy(&seed_canonical_id(k)).into_owned();
                let sent = std::time::Instant::now();
                let response = http.get(format!("{base}{id}")).send().await?;
                let status = response.status().as_u16();
                response.bytes().await?;
                let latency = sent.elapsed();
                anyhow::ensure!(status == 200 || status == 301, "GET {id}: {status}");
                let now = std::time::Instant::now();
                if now >= measured_from && now <= end {
                    done.push(latency);
                }
            }
            anyhow::Ok(done)
        });
    }
    let mut latencies = Vec::new();
    while let Some(result) = tasks.join_next().await {
        latencies.extend(result??);
    }
    latencies.sort_unstable();
    drop(server);
    set_redirected(pool, settings.rows, 0).await?;
    let q = |q: f64| {
        let rank = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len().max(1));
        latencies
            .get(rank - 1)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Ok(format!(
        "| resolver GET /v1/canonical-ids/{{id}} ({redirected} of {} IDs redirected) | {} | {:.0} | {:.2} | {:.2} |\n",
        settings.rows,
        settings.clients,
        latencies.len() as f64 / settings.window.as_secs_f64(),
        q(0.5),
        q(0.99)
    ))
}
