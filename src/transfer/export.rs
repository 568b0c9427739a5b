//! `idminter export`: every mapping, from one snapshot (a REPEATABLE READ, READ ONLY transaction),
//! streamed: PostgreSQL's binary COPY of the table is decoded and written row by row, so memory
//! does not depend on the table's size.
//!
//! The order is the table's storage order: one sequential scan from the first page, no sort, so
//! an export costs about what `COPY source_identifiers TO STDOUT` costs. Rows are never updated
//! or deleted (the permanence trigger), so that is the order they were written in. An import into
//! an empty table writes in input order (see [`bulk`](super::bulk)), so exporting, importing into
//! an empty database and exporting again gives the same bytes. The session makes the scan start at
//! the first page (`synchronize_seqscans = off`: it does not join another scan midway) and keeps it
//! in one process (no parallel workers, whose rows would interleave).
//!
//! Every row says whether it is its ID's minted row and when it was created (UTC, six fractional
//! digits), so that the round trip loses nothing.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, bail};
use futures_util::TryStreamExt;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};

use super::format::{Column, Format, escape_tsv};
use super::progress::{Counters, Phase, Reporter};
use super::timestamp;

/// Everything `export` needs, as plain values.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    pub database: PgConnectOptions,
    pub history_table: String,
    pub format: Format,
    /// A path, or `None` for stdout; a path ending in `.gz` is compressed.
    pub output: Option<PathBuf>,
}

const EXPORT: &str = "COPY (SELECT canonical_id, identifier_type, ontology_type, value, \
     minted IS TRUE, created_at FROM source_identifiers) TO STDOUT (FORMAT binary)";

/// Runs an export.
///
/// # Errors
/// The database or the output failed.
pub async fn run(config: ExportConfig) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
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
    let sink: Box<dyn Write + Send> = match &config.output {
        None => Box::new(std::io::stdout()),
        Some(path) => {
            let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
            if path.extension().is_some_and(|e| e == "gz") {
                Box::new(flate2::write::GzEncoder::new(
                    file,
                    flate2::Compression::fast(),
                ))
            } else {
                Box::new(file)
            }
        }
    };
    let mut writer = RowWriter::new(config.format, BufWriter::with_capacity(1 << 20, sink))?;

    let counters = Arc::new(Counters::default());
    let reporter = Reporter::start(counters.clone(), Phase::Exporting);
    // Its statements are long by design (a COPY, a chunk of 100,000 rows): sqlx's slow-statement
    // warnings would fill the terminal and say nothing; progress and phases are logged instead.
    let mut conn =
        PgConnection::connect_with(&config.database.clone().disable_statement_logging()).await?;
    // Storage order, from the first page, in one process (see the module's documentation).
    conn.execute("SET synchronize_seqscans = off").await?;
    conn.execute("SET max_parallel_workers_per_gather = 0")
        .await?;
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let mut decoder = Decoder::default();
    {
        let mut stream = conn.copy_out_raw(EXPORT).await?;
        while let Some(chunk) = stream.try_next().await? {
            decoder.feed(&chunk, |row| {
                counters.rows.fetch_add(1, Ordering::Relaxed);
                writer.write(&row)
            })?;
        }
    }
    conn.execute("COMMIT").await?;
    conn.close().await.ok();
    if !decoder.finished {
        bail!("the export stream ended before its trailer");
    }
    writer.finish()?;
    reporter.finish().await;
    let rows = counters.rows.load(Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "exported {rows} rows ({seconds:.1}s, {:.0} rows/s)",
        rows as f64 / seconds.max(0.001)
    );
    Ok(ExitCode::SUCCESS)
}

/// One exported row, borrowed from the COPY data.
struct Row<'a> {
    canonical_id: &'a str,
    identifier_type: &'a str,
    ontology_type: &'a str,
    value: &'a str,
    minted: bool,
    /// Microseconds since the Unix epoch.
    created_at: i64,
}

/// Decodes PostgreSQL's binary COPY format (signature, flags, extension; then per tuple a field
/// count and length-prefixed fields; a field count of -1 ends it) across message boundaries.
#[derive(Default)]
struct Decoder {
    pending: Vec<u8>,
    header_done: bool,
    finished: bool,
}

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

impl Decoder {
    fn feed(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(Row<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.pending.extend_from_slice(chunk);
        let buf = std::mem::take(&mut self.pending);
        let mut at = 0;
        if !self.header_done {
            if buf.len() < SIGNATURE.len() + 8 {
                self.pending = buf;
                return Ok(());
            }
            if &buf[..SIGNATURE.len()] != SIGNATURE {
                bail!("the export stream is not binary COPY data");
            }
            let ext = be_u32(&buf[SIGNATURE.len() + 4..]) as usize;
            at = SIGNATURE.len() + 8 + ext;
            self.header_done = true;
        }
        while let Some((row, next)) = tuple(&buf, at)? {
            match row {
                Some(row) => each(row)?,
                None => self.finished = true,
            }
            at = next;
        }
        self.pending = buf[at..].to_vec();
        Ok(())
    }
}

fn text(b: &[u8]) -> anyhow::Result<&str> {
    std::str::from_utf8(b).context("the export stream has invalid UTF-8")
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The tuple at `at`, and where the next one starts; `None` when it is not complete yet;
/// `Some((None, _))` for the trailer.
#[allow(clippy::type_complexity)]
fn tuple(buf: &[u8], at: usize) -> anyhow::Result<Option<(Option<Row<'_>>, usize)>> {
    let Some(count) = buf.get(at..at + 2) else {
        return Ok(None);
    };
    let count = i16::from_be_bytes([count[0], count[1]]);
    if count == -1 {
        return Ok(Some((None, at + 2)));
    }
    if count != 6 {
        bail!("the export stream has {count} columns, not 6");
    }
    let mut fields: [&[u8]; 6] = [&[]; 6];
    let mut pos = at + 2;
    for field in &mut fields {
        let Some(len) = buf.get(pos..pos + 4) else {
            return Ok(None);
        };
        let len = be_u32(len) as i32;
        pos += 4;
        if len < 0 {
            bail!("the export stream has a NULL");
        }
        let Some(bytes) = buf.get(pos..pos + len as usize) else {
            return Ok(None);
        };
        *field = bytes;
        pos += len as usize;
    }
    let [id, t, o, v, minted, created] = fields;
    if minted.len() != 1 || created.len() != 8 {
        bail!("the export stream's minted or created_at column is malformed");
    }
    let pg_micros = i64::from_be_bytes(created.try_into().context("created_at")?);
    Ok(Some((
        Some(Row {
            canonical_id: text(id)?,
            identifier_type: text(t)?,
            ontology_type: text(o)?,
            value: text(v)?,
            minted: minted[0] != 0,
            created_at: pg_micros + timestamp::POSTGRES_EPOCH_MICROS,
        }),
        pos,
    )))
}

/// Writes rows in one of the formats, header first.
enum RowWriter<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Tsv(W),
    Jsonl(W),
}

impl<W: Write> RowWriter<W> {
    fn new(format: Format, mut out: W) -> anyhow::Result<Self> {
        let names = Column::ALL.map(Column::name);
        Ok(match format {
            Format::Csv => {
                let mut csv = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::Any(b'\n'))
                    .from_writer(out);
                csv.write_record(names)?;
                RowWriter::Csv(Box::new(csv))
            }
            Format::Tsv => {
                out.write_all(names.join("\t").as_bytes())?;
                out.write_all(b"\n")?;
                RowWriter::Tsv(out)
            }
            Format::Jsonl => RowWriter::Jsonl(out),
        })
    }

    fn write(&mut self, row: &Row<'_>) -> anyhow::Result<()> {
        let mut stamp = Vec::with_capacity(27);
        timestamp::write(row.created_at, false, &mut stamp);
        let created_at = std::str::from_utf8(&stamp).unwrap_or_default();
        let minted = if row.minted { "true" } else { "false" };
        match self {
            RowWriter::Csv(csv) => csv.write_record([
                row.canonical_id,
                row.identifier_type,
                row.ontology_type,
                row.value,
                minted,
                created_at,
            ])?,
            RowWriter::Tsv(out) => {
                let mut line = Vec::with_capacity(96);
                for field in [
                    row.canonical_id,
                    row.identifier_type,
                    row.ontology_type,
                    row.value,
                ] {
                    escape_tsv(field, &mut line);
                    line.push(b'\t');
                }
                line.extend_from_slice(minted.as_bytes());
                line.push(b'\t');
                line.extend_from_slice(created_at.as_bytes());
                line.push(b'\n');
                out.write_all(&line)?;
            }
            RowWriter::Jsonl(out) => {
                serde_json::to_writer(
                    &mut *out,
                    &Json {
                        canonical_id: row.canonical_id,
                        identifier_type: row.identifier_type,
                        ontology_type: row.ontology_type,
                        value: row.value,
                        minted: row.minted,
                        created_at,
                    },
                )?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        let mut out = match self {
            RowWriter::Csv(csv) => csv.into_inner().map_err(|e| e.into_error())?,
            RowWriter::Tsv(out) | RowWriter::Jsonl(out) => out,
        };
        out.flush()?;
        Ok(())
    }
}

/// A JSON line, keys in export order.
#[derive(serde::Serialize)]
struct Json<'a> {
    canonical_id: &'a str,
    identifier_type: &'a str,
    ontology_type: &'a str,
    value: &'a str,
    minted: bool,
    created_at: &'a str,
}
