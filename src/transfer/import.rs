//! `idminter import`: the schema guard, then two phases on one connection.
//!
//! 1. Reading: a thread of its own parses the files (decompressing `.gz`), validates each row and
//!    encodes the valid ones as COPY text in buffers of about 1 MB, which the async side streams
//!    into the staging table. Invalid rows go to the report as they are found. The channel
//!    between the two is bounded, so memory stays flat whatever the input's size.
//! 2. Writing: PostgreSQL classifies the staged rows; into an empty table they go in one
//!    transaction that builds the indexes at the end (see [`bulk`](super::bulk), unless
//!    `--online`), otherwise the chunks are applied one transaction at a time (see
//!    [`plan`](super::plan)).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use flate2::read::MultiGzDecoder;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::mpsc;

use super::format::{Format, Records};
use super::progress::{Counters, Phase, Reporter};
use super::report::{Rejects, Summary};
use super::seen::Seen;
use super::validate::validate;
use super::{bulk, plan};
use crate::domain::OntologyAliases;

/// The bytes of COPY data sent to PostgreSQL at a time.
const COPY_BUFFER: usize = 1 << 20;
/// Buffers in flight between the reading thread and the connection.
const BUFFERS_IN_FLIGHT: usize = 4;

/// Everything `import` needs, as plain values.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    pub database: PgConnectOptions,
    pub history_table: String,
    pub aliases: OntologyAliases,
    /// Paths; `-` is stdin.
    pub files: Vec<String>,
    pub format: Option<Format>,
    pub columns: Option<Vec<String>>,
    pub dry_run: bool,
    pub rejects: Option<PathBuf>,
    /// Rows per committed chunk.
    pub chunk_rows: u64,
    /// Write in chunks even into an empty table (servers keep serving).
    pub online: bool,
}

/// One input file.
struct Input {
    name: String,
    path: Option<PathBuf>,
    format: Format,
}

/// Why reading stopped early.
enum LoadError {
    /// The file's header (or --columns) does not name our columns: a usage error.
    Usage(String),
    Failed(String),
}

/// Runs an import; the exit code follows the contract (0 clean, 1 rows not imported or an
/// error, 2 usage).
///
/// # Errors
/// The database failed during the import.
pub async fn run(config: ImportConfig) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let files = if config.files.is_empty() {
        vec!["-".to_owned()]
    } else {
        config.files.clone()
    };
    let mut inputs = Vec::new();
    let mut total_bytes = Some(0u64);
    for name in files {
        let path = (name != "-").then(|| PathBuf::from(&name));
        let format = match (config.format, &path) {
            (Some(f), _) => f,
            (None, None) => Format::Csv,
            (None, Some(_)) => match Format::from_path(&name) {
                Some(f) => f,
                None => {
                    eprintln!(
                        "error: cannot tell the format of {name} from its extension: use --format csv|tsv|jsonl"
                    );
                    return Ok(ExitCode::from(2));
                }
            },
        };
        match &path {
            Some(p) => match std::fs::metadata(p) {
                Ok(m) => total_bytes = total_bytes.map(|t| t + m.len()),
                Err(e) => {
                    eprintln!("error: {name}: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            },
            None => total_bytes = None,
        }
        let name = if path.is_none() {
            "stdin".to_owned()
        } else {
            name
        };
        inputs.push(Input { name, path, format });
    }

    let state = match crate::guard::run(&config.database, &config.history_table, false).await {
        Ok(state) => state,
        Err(e) => {
            eprintln!("error: database unreachable: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if !state.is_ready() {
        eprintln!("error: {state}");
        return Ok(ExitCode::FAILURE);
    }

    let mut rejects = Rejects::create(
        config.rejects.as_deref(),
        inputs.iter().map(|i| i.name.clone()).collect(),
    )
    .with_context(|| "create the --rejects file")?;
    // Its statements are long by design (a COPY, a chunk of 100,000 rows): sqlx's slow-statement
    // warnings would fill the terminal and say nothing; progress and phases are logged instead.
    let mut conn =
        PgConnection::connect_with(&config.database.clone().disable_statement_logging()).await?;
    plan::begin(&mut conn).await?;

    // Phase 1: read, validate, stage.
    let counters = Arc::new(Counters::default());
    let reporter = Reporter::start(counters.clone(), Phase::Reading { total: total_bytes });
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(BUFFERS_IN_FLIGHT);
    let expected_rows = expected_rows(total_bytes, &inputs);
    let reader = {
        let counters = counters.clone();
        let columns = config.columns.clone();
        let aliases = config.aliases.clone();
        std::thread::spawn(move || {
            let outcome = load(
                &inputs,
                columns.as_deref(),
                &aliases,
                &mut rejects,
                &counters,
                &tx,
                expected_rows,
            );
            (outcome, rejects)
        })
    };
    let mut copy = conn.copy_in_raw(plan::COPY_STAGING).await?;
    let mut sent = Ok(());
    while let Some(buffer) = rx.recv().await {
        if let Err(e) = copy.send(buffer).await {
            sent = Err(e);
            break;
        }
    }
    drop(rx); // the reader stops at its next buffer if the database failed
    let (outcome, mut rejects) = tokio::task::spawn_blocking(move || reader.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the reading thread panicked"))?;
    let mut summary = Summary::default();
    let staged = match (sent, outcome) {
        (Err(e), _) => {
            reporter.finish().await;
            let _ = rejects.finish();
            return Err(e).context("stream the rows into the staging table");
        }
        (Ok(()), Err(e)) => {
            let _ = copy.abort("import stopped").await;
            reporter.finish().await;
            let _ = rejects.finish();
            let (code, message) = match e {
                LoadError::Usage(message) => (ExitCode::from(2), message),
                LoadError::Failed(message) => (ExitCode::FAILURE, message),
            };
            eprintln!("error: {message}");
            return Ok(code);
        }
        (Ok(()), Ok(stats)) => {
            copy.finish().await?;
            tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                rows = stats.staged,
                "read and staged"
            );
            summary.read = stats.read;
            summary.rejected = stats.rejected;
            stats.staged
        }
    };

    // Phase 2: classify and write. Whether the table is empty is asked before classifying, so
    // that a first load's plan is one made against the empty table.
    let first_load = !config.dry_run && !config.online && bulk::is_empty(&mut conn).await?;
    let phase_started = Instant::now();
    reporter.phase(Phase::Classifying { rows: staged });
    let counts = plan::classify(&mut conn).await?;
    summary.present = counts.present;
    summary.conflicts = counts.conflict;
    plan::conflicts(&mut conn, |c| rejects.conflict(&c)).await?;
    if config.dry_run {
        let alone = plan::dry_run(&mut conn, |c| rejects.conflict(&c)).await?;
        summary.imported = counts.insert + alone.insert;
        summary.present += alone.present;
        summary.conflicts += alone.conflict;
    } else {
        tracing::info!(
            seconds = phase_started.elapsed().as_secs_f64(),
            special = counts.insert + counts.present + counts.conflict,
            "classified"
        );
        let phase_started = Instant::now();
        reporter.phase(Phase::Writing {
            total: staged - counts.present - counts.conflict,
        });
        let loaded = if first_load {
            match bulk::load(&mut conn, |rows| {
                counters.applied.store(rows, Ordering::Relaxed)
            })
            .await
            {
                Ok(loaded) => loaded,
                // Not the table's owner (or no TRUNCATE right): the chunked path needs only
                // INSERT. The failed transaction was rolled back.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => {
                    tracing::warn!(
                        "cannot take the empty table for a first load ({e}); writing in chunks"
                    );
                    None
                }
                Err(e) => return Err(e).context("first load into the empty table"),
            }
        } else {
            None
        };
        if loaded.is_none() && first_load {
            tracing::warn!("the table is no longer empty once locked: writing in chunks");
        }
        let chunks = match loaded {
            Some(inserted) => {
                summary.imported = inserted;
                Vec::new()
            }
            None => plan::chunks(&mut conn, config.chunk_rows).await?,
        };
        for chunk in chunks {
            let applied = plan::apply(&mut conn, chunk).await?;
            summary.imported += applied.imported;
            summary.present += applied.present;
            summary.conflicts += applied.conflicts.len() as u64;
            for c in &applied.conflicts {
                rejects.conflict(c)?;
            }
            counters.applied.fetch_add(
                applied.imported + applied.present + applied.conflicts.len() as u64,
                Ordering::Relaxed,
            );
            tracing::debug!(imported = summary.imported, "chunk committed");
        }
        tracing::info!(
            seconds = phase_started.elapsed().as_secs_f64(),
            first_load = loaded.is_some(),
            "written"
        );
    }
    reporter.finish().await;
    rejects.finish().context("write the --rejects file")?;
    conn.close().await.ok();
    println!(
        "{}",
        summary.line(config.dry_run, started.elapsed().as_secs_f64())
    );
    Ok(if summary.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A generous guess of the rows in the inputs, to size the [`Seen`] filter: a row takes at least
/// about 24 bytes, and gzip shrinks such text about eightfold. Unknown (stdin): as many as the
/// filter can take.
fn expected_rows(total_bytes: Option<u64>, inputs: &[Input]) -> u64 {
    let compressed = inputs
        .iter()
        .any(|i| i.name.to_ascii_lowercase().ends_with(".gz"));
    match total_bytes {
        Some(bytes) if compressed => bytes.saturating_mul(8) / 24,
        Some(bytes) => bytes / 24,
        None => u64::MAX,
    }
}

/// What phase 1 counted.
struct LoadStats {
    read: u64,
    staged: u64,
    rejected: u64,
}

/// Reads every input in order, sending valid rows as COPY text and reporting invalid ones.
fn load(
    inputs: &[Input],
    columns: Option<&[String]>,
    aliases: &OntologyAliases,
    rejects: &mut Rejects,
    counters: &Arc<Counters>,
    tx: &mpsc::Sender<Vec<u8>>,
    expected_rows: u64,
) -> Result<LoadStats, LoadError> {
    let mut stats = LoadStats {
        read: 0,
        staged: 0,
        rejected: 0,
    };
    let mut buffer = Vec::with_capacity(COPY_BUFFER + 4096);
    let mut seen = Seen::for_rows(expected_rows);
    let failed = |name: &str, e: &dyn std::fmt::Display| LoadError::Failed(format!("{name}: {e}"));
    for (src, input) in inputs.iter().enumerate() {
        let reader = open(input, counters.clone()).map_err(|e| failed(&input.name, &e))?;
        let mut records = Records::new(reader, input.format, columns)
            .map_err(|e| LoadError::Usage(format!("{}: {e}", input.name)))?;
        if !records.ignored_columns().is_empty() {
            eprintln!(
                "{}: ignoring columns that are not idminter's: {}",
                input.name,
                records.ignored_columns().join(", ")
            );
        }
        while let Some(record) = records.next_record().map_err(|e| failed(&input.name, &e))? {
            stats.read += 1;
            counters.rows.fetch_add(1, Ordering::Relaxed);
            let valid = record.fields.and_then(|fields| validate(fields, aliases));
            match valid {
                Ok(row) => {
                    stats.staged += 1;
                    let key_hash = row.identifier_hash();
                    // Both keys go in (no short-circuit): a later row may repeat either.
                    let dup = seen.insert(key_hash) | seen.insert(row.canonical_id_hash());
                    row.write_copy_line(
                        (stats.staged, src, record.line),
                        (key_hash, dup),
                        &mut buffer,
                    );
                    if buffer.len() >= COPY_BUFFER {
                        let full =
                            std::mem::replace(&mut buffer, Vec::with_capacity(COPY_BUFFER + 4096));
                        tx.blocking_send(full).map_err(|_| {
                            LoadError::Failed("the database connection stopped the import".into())
                        })?;
                    }
                }
                Err(reason) => {
                    stats.rejected += 1;
                    rejects
                        .rejected(src, record.line, &reason, &record.raw)
                        .map_err(|e| failed("--rejects", &e))?;
                }
            }
        }
    }
    if !buffer.is_empty() {
        tx.blocking_send(buffer)
            .map_err(|_| LoadError::Failed("the database connection stopped the import".into()))?;
    }
    Ok(stats)
}

/// Opens an input, counting the bytes read from it, and decompresses it when it starts with the
/// gzip magic number (whatever its name).
fn open(input: &Input, counters: Arc<Counters>) -> std::io::Result<Box<dyn BufRead + Send>> {
    let raw: Box<dyn Read + Send> = match &input.path {
        Some(path) => Box::new(File::open(path)?),
        None => Box::new(std::io::stdin()),
    };
    let mut reader = BufReader::with_capacity(1 << 18, Counting { raw, counters });
    let gzip = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(BufReader::with_capacity(
            1 << 18,
            MultiGzDecoder::new(reader),
        ))
    } else {
        Box::new(reader)
    })
}

/// Counts the bytes read, for the progress bar's ETA.
struct Counting {
    raw: Box<dyn Read + Send>,
    counters: Arc<Counters>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.raw.read(buf)?;
        self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
