//! `idminter import` and `idminter export` against PostgreSQL's own COPY of the same rows into
//! (and out of) the same table, side by side in one run: the floor is what the server itself
//! does with the bytes, so the ratio says what our parsing, validation, classification and chunked
//! writes cost on top.
//!
//! `cargo bench --bench transfer -- --rows 1000000 [--base-rows 50000000]`
//!
//! Cases (each on a database of its own, created and dropped by the benchmark, except the
//! populated one, which is the workloads benchmark's seeded database, restored afterwards):
//! - import into an empty database: `COPY source_identifiers (...) FROM STDIN (FORMAT csv)` of the
//!   file vs. `idminter import FILE` (a release-build process; peak RSS sampled from /proc);
//! - export: `COPY source_identifiers TO STDOUT`, drained, vs. `idminter export --output /dev/null`;
//! - import into a database holding `--base-rows` mappings (with `--base-rows`).
//!
//! The rows are Wellcome-shaped (`canonical_id, identifier_type, ontology_type, value`, no
//! minted column), every tenth inheriting the ID of the row before, with values that start with
//! the workloads' new-row prefix so that its restore removes them again.

#[allow(dead_code)]
#[path = "../workloads/data.rs"]
mod data;
#[allow(dead_code)]
#[path = "../workloads/prepare.rs"]
mod prepare;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::TryStreamExt;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use data::{KINDS, NEW_PREFIX, seed_canonical_id};

#[derive(Debug, Parser)]
struct Args {
    /// A PostgreSQL URL on the server to measure; its database name is ignored.
    #[arg(
        long,
        env = "IDMINTER_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Rows in the file imported (and exported).
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Also import into the workloads benchmark's database of this many mappings (0: skip).
    #[arg(long, default_value_t = 0)]
    base_rows: u64,
    /// Where the generated file goes.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// `cargo bench` passes --bench; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The first seed number of the imported rows: above any seeded database's rows, so their IDs
/// (a bijection of the number) never collide with the seeded ones.
const FIRST: u64 = 1_000_000_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = PgConnectOptions::from_str(&args.database_url).context("--database-url")?;
    let file = args.dir.join(format!(
        "idminter-transfer-{}-{}.csv",
        args.rows,
        std::process::id()
    ));
    let started = Instant::now();
    write_file(&file, args.rows)?;
    let file_bytes = std::fs::metadata(&file)?.len();
    eprintln!(
        "wrote {} ({} rows, {:.0} MB) in {:.1}s",
        file.display(),
        args.rows,
        file_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let mut table = Vec::new();

    // Import into an empty database: the floor first, then ours, each on a fresh database.
    let floor = {
        let db = Scratch::create(&server, "floor").await?;
        let t = copy_in(&db.options, &file).await?;
        db.drop().await?;
        t
    };
    let db = Scratch::create(&server, "import").await?;
    let ours = run_idminter(&db.options, &["import", path(&file)?])?;
    check_count(&db.options, args.rows).await?;
    table.push(Line::new(
        format!("import {} rows into an empty database", args.rows),
        floor,
        &ours,
        args.rows,
    ));

    // Export of the same table.
    let floor = copy_out(&db.options).await?;
    let ours = run_idminter(&db.options, &["export", "--output", "/dev/null"])?;
    table.push(Line::new(
        format!("export {} rows", args.rows),
        floor,
        &ours,
        args.rows,
    ));
    db.drop().await?;

    if args.base_rows > 0 {
        // The workloads benchmark's name for a database of this size, so that both reuse it.
        let label = match args.base_rows {
            n if n % 1_000_000 == 0 => format!("{}m", n / 1_000_000),
            n if n % 1_000 == 0 => format!("{}k", n / 1_000),
            n => n.to_string(),
        };
        let name = format!("idminter_bench_{label}");
        let url = server.clone().database(&name);
        let url = format!(
            "postgres://{}@{}:{}/{name}",
            url.get_username(),
            url.get_host(),
            url.get_port()
        );
        eprintln!("preparing {name} (reused when it already holds the seeded mappings)");
        let prepared = prepare::prepare(&url, args.base_rows, 2).await?;
        let floor = copy_in(&prepared.options, &file).await?;
        prepare::restore(&prepared.options).await?;
        let ours = run_idminter(&prepared.options, &["import", path(&file)?])?;
        check_count(&prepared.options, args.base_rows + args.rows).await?;
        prepare::restore(&prepared.options).await?;
        table.push(Line::new(
            format!(
                "import {} rows into a database holding {}",
                args.rows, args.base_rows
            ),
            floor,
            &ours,
            args.rows,
        ));
    }
    std::fs::remove_file(&file).ok();

    println!("| case | COPY (floor) | idminter | ratio (floor / idminter) | rows/s | peak RSS |");
    println!("|---|---|---|---|---|---|");
    for line in &table {
        println!("{line}");
    }
    Ok(())
}

/// The file: `canonical_id,identifier_type,ontology_type,value`, every tenth row inheriting.
fn write_file(path: &Path, rows: u64) -> anyhow::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    out.write_all(b"canonical_id,identifier_type,ontology_type,value\n")?;
    for i in 0..rows {
        let k = FIRST + i;
        let id_of = if i % 10 == 9 { k - 1 } else { k };
        let (identifier_type, ontology_type) = KINDS[(k % KINDS.len() as u64) as usize];
        out.write_all(&seed_canonical_id(id_of))?;
        writeln!(
            out,
            ",{identifier_type},{ontology_type},{NEW_PREFIX}{k:010}"
        )?;
    }
    out.flush()?;
    Ok(())
}

fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("a UTF-8 path")
}

/// A database of the benchmark's own, migrated, dropped by [`Scratch::drop`].
struct Scratch {
    admin: PgConnectOptions,
    name: String,
    options: PgConnectOptions,
}

impl Scratch {
    async fn create(server: &PgConnectOptions, what: &str) -> anyhow::Result<Self> {
        let admin = server.clone().database("postgres");
        // The process id: two checkouts benchmarking at once never share a database.
        let name = format!("idminter_bench_transfer_{what}_{}", std::process::id());
        let mut conn = PgConnection::connect_with(&admin).await?;
        conn.execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await?;
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        conn.close().await.ok();
        let options = server.clone().database(&name);
        let state =
            idminter::guard::run(&options, idminter::store::migrations::HISTORY_TABLE, true)
                .await?;
        if !state.is_ready() {
            bail!("{name}: {state}");
        }
        Ok(Self {
            admin,
            name,
            options,
        })
    }

    async fn drop(self) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect_with(&self.admin).await?;
        conn.execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .await?;
        Ok(())
    }
}

/// The floor for import: the file's bytes through COPY into the table, as they are.
async fn copy_in(options: &PgConnectOptions, file: &Path) -> anyhow::Result<Duration> {
    let mut conn = PgConnection::connect_with(options).await?;
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(
            "COPY source_identifiers (canonical_id, identifier_type, ontology_type, value) \
             FROM STDIN (FORMAT csv, HEADER)",
        )
        .await?;
    copy.read_from(tokio::fs::File::open(file).await?).await?;
    copy.finish().await?;
    let elapsed = started.elapsed();
    conn.close().await.ok();
    eprintln!("floor: COPY FROM STDIN {:.1}s", elapsed.as_secs_f64());
    Ok(elapsed)
}

/// The floor for export: the whole table through COPY TO STDOUT, drained.
async fn copy_out(options: &PgConnectOptions) -> anyhow::Result<Duration> {
    let mut conn = PgConnection::connect_with(options).await?;
    let started = Instant::now();
    let mut bytes = 0usize;
    {
        let mut stream = conn
            .copy_out_raw("COPY source_identifiers TO STDOUT (FORMAT csv)")
            .await?;
        while let Some(chunk) = stream.try_next().await? {
            bytes += chunk.len();
        }
    }
    let elapsed = started.elapsed();
    conn.close().await.ok();
    eprintln!("floor: COPY TO STDOUT {:.1}s", elapsed.as_secs_f64());
    std::hint::black_box(bytes);
    Ok(elapsed)
}

async fn check_count(options: &PgConnectOptions, expected: u64) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect_with(options).await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM source_identifiers")
        .fetch_one(&mut conn)
        .await?;
    if n as u64 != expected {
        bail!("the table holds {n} mappings, not {expected}");
    }
    Ok(())
}

/// A finished `idminter` run.
struct Measured {
    elapsed: Duration,
    peak_rss_kb: u64,
}

/// Runs the release binary, sampling its peak RSS (VmHWM) from /proc while it runs.
fn run_idminter(options: &PgConnectOptions, args: &[&str]) -> anyhow::Result<Measured> {
    let url = format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    );
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_idminter"))
        .args(args)
        .env("DATABASE_URL", url)
        // IDMINTER_BENCH_LOG=info shows each phase's time.
        .env(
            "RUST_LOG",
            std::env::var("IDMINTER_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kb);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        std::io::Read::read_to_string(&mut out, &mut stdout).ok();
    }
    if !status.success() {
        bail!("idminter {args:?} failed ({status}): {stdout}");
    }
    eprintln!(
        "idminter {}: {} ({:.1}s, peak RSS {} kB)",
        args[0],
        stdout.trim(),
        elapsed.as_secs_f64(),
        peak
    );
    Ok(Measured {
        elapsed,
        peak_rss_kb: peak,
    })
}

struct Line {
    case: String,
    floor: Duration,
    ours: Duration,
    rss_kb: u64,
    rows: u64,
}

impl Line {
    fn new(case: String, floor: Duration, ours: &Measured, rows: u64) -> Self {
        Self {
            case,
            floor,
            ours: ours.elapsed,
            rss_kb: ours.peak_rss_kb,
            rows,
        }
    }
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "| {} | {:.1} s | {:.1} s | {:.2} | {:.0} | {:.0} MB |",
            self.case,
            self.floor.as_secs_f64(),
            self.ours.as_secs_f64(),
            self.floor.as_secs_f64() / self.ours.as_secs_f64(),
            self.rows as f64 / self.ours.as_secs_f64(),
            self.rss_kb as f64 / 1024.0
        )
    }
}
