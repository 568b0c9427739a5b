//! The benchmark database: created once per table size and reused while it holds exactly the
//! seeded mappings. A database the benchmark made carries a marker in its comment; any other
//! database of the same name is refused, never dropped.
//!
//! Loading drops the table's unique indexes (remembering their definitions from the catalog, so a
//! later migration's indexes come back as they were), streams the rows with COPY over one
//! connection per core, rebuilds the indexes by sorting (parallel workers), and freezes the table.
//! Rows the workloads add start with [`NEW_PREFIX`](crate::data::NEW_PREFIX); [`restore`] deletes
//! them, bypassing the permanence trigger for its own session only, so every run and every writing
//! workload starts from the same table.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use idminter::store::migrations::HISTORY_TABLE;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use crate::data::{KINDS, NEW_PREFIX, seed, seed_canonical_id};

/// The comment of a database the benchmark made; `rows=N bytes=B` (the table's size right after
/// loading) is appended once loading has finished.
const MARKER: &str = "idminter-bench seed v2";
/// A table grown past this multiple of its loaded size (dead space the restores left: VACUUM
/// makes it reusable but does not return it) is rewritten before a run, so that runs compare.
const BLOAT_LIMIT: f64 = 1.5;
/// COPY data is sent in chunks of about this many bytes.
const CHUNK_BYTES: usize = 1 << 20;

/// The prepared database.
pub struct Prepared {
    pub options: PgConnectOptions,
    /// Mappings in the table (counted, not assumed).
    pub rows: u64,
    /// Heap and indexes of `source_identifiers`.
    pub table_bytes: i64,
    pub reused: bool,
    pub prepare_seconds: f64,
}

/// Makes `url`'s database hold exactly `rows` seeded mappings, reusing it when it already does.
///
/// # Errors
/// The server is unreachable, the name is taken by a database the benchmark did not make, or a
/// statement failed.
pub async fn prepare(url: &str, rows: u64, loaders: usize) -> anyhow::Result<Prepared> {
    let started = Instant::now();
    let options = PgConnectOptions::from_str(url).context("--database-url")?;
    let name = options
        .get_database()
        .context("--database-url names no database")?
        .to_owned();
    if !is_plain_name(&name) {
        bail!("database name `{name}`: use lower-case letters, digits and _ only");
    }
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres"))
        .await
        .with_context(|| format!("connect to the PostgreSQL server of {url}"))?;
    let comment: Option<Option<String>> = sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
    )
    .bind(&name)
    .fetch_optional(&mut admin)
    .await?;
    let done = format!("{MARKER} rows={rows} bytes=");
    let reused = match comment {
        Some(Some(c)) if c.starts_with(&done) => true,
        // Any version of the marker: made by the benchmark, safe to rebuild.
        Some(Some(c)) if c.starts_with("idminter-bench seed") => {
            eprintln!("database {name} holds another seed ({c}): rebuilding it");
            admin
                .execute(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
                .await?;
            false
        }
        Some(_) => bail!(
            "database {name} exists and was not made by this benchmark; \
             point --database-url at another name"
        ),
        None => false,
    };
    if !reused {
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        set_comment(&mut admin, &name, &format!("{MARKER} loading")).await?;
    }
    // A new database gets every migration; a reused one the migrations added since it was made
    // (the schema is the code's, so the benchmark measures this build's schema).
    let state = idminter::guard::run(&options, HISTORY_TABLE, true)
        .await
        .context("migrate the benchmark database")?;
    if !state.is_ready() {
        bail!("the benchmark database is not ready after migrating: {state}");
    }
    if !reused {
        load(&options, rows, loaders).await?;
        let mut conn = PgConnection::connect_with(&options).await?;
        let loaded = table_bytes(&mut conn).await?;
        conn.close().await.ok();
        set_comment(&mut admin, &name, &format!("{done}{loaded}")).await?;
    }
    let loaded: Option<i64> = sqlx::query_scalar::<_, Option<String>>(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await?
    .and_then(|c| c.strip_prefix(&done)?.parse().ok());
    admin.close().await.ok();

    restore(&options).await?;
    let mut conn = PgConnection::connect_with(&options).await?;
    if let Some(loaded) = loaded
        && table_bytes(&mut conn).await? as f64 > loaded as f64 * BLOAT_LIMIT
    {
        eprintln!("the table has grown past {BLOAT_LIMIT} times its loaded size: VACUUM FULL");
        conn.execute("SET maintenance_work_mem = '1GB'").await?;
        conn.execute("VACUUM (FULL, ANALYZE) source_identifiers")
            .await?;
    }
    let counted: i64 = sqlx::query_scalar("SELECT count(*) FROM source_identifiers")
        .fetch_one(&mut conn)
        .await?;
    if counted as u64 != rows {
        bail!(
            "database {name} holds {counted} mappings, not {rows}: drop it (DROP DATABASE {name}) \
             and run again"
        );
    }
    let table_bytes = table_bytes(&mut conn).await?;
    conn.close().await.ok();
    Ok(Prepared {
        options,
        rows,
        table_bytes,
        reused,
        prepare_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Deletes every row the workloads added; returns how many. One range scan of the primary key
/// per identifier scheme; VACUUM afterwards so that the next workload meets no dead rows.
///
/// # Errors
/// The role may not set `session_replication_role` (a superuser is needed to bypass the trigger
/// that makes mappings permanent), or a statement failed.
pub async fn restore(options: &PgConnectOptions) -> anyhow::Result<u64> {
    let mut conn = PgConnection::connect_with(options).await?;
    conn.execute("SET session_replication_role = replica")
        .await
        .context(
            "removing the benchmark's rows needs a superuser (to bypass the permanence trigger)",
        )?;
    let (low, high) = (
        NEW_PREFIX.to_string(),
        char::from(NEW_PREFIX as u8 + 1).to_string(),
    );
    let mut deleted = 0;
    for (identifier_type, ontology_type) in KINDS {
        deleted += sqlx::query(
            "DELETE FROM source_identifiers \
             WHERE identifier_type = $1 AND ontology_type = $2 AND value >= $3 AND value < $4",
        )
        .bind(identifier_type)
        .bind(ontology_type)
        .bind(&low)
        .bind(&high)
        .execute(&mut conn)
        .await?
        .rows_affected();
    }
    if deleted > 0 {
        conn.execute("VACUUM (ANALYZE) source_identifiers").await?;
    }
    conn.close().await.ok();
    Ok(deleted)
}

/// Heap, TOAST and indexes of the table, in bytes.
pub async fn table_bytes(conn: &mut PgConnection) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT pg_total_relation_size('source_identifiers')")
            .fetch_one(conn)
            .await?,
    )
}

async fn set_comment(admin: &mut PgConnection, name: &str, comment: &str) -> anyhow::Result<()> {
    admin
        .execute(AssertSqlSafe(format!(
            "COMMENT ON DATABASE {name} IS '{comment}'"
        )))
        .await?;
    Ok(())
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Fills the freshly migrated, empty table with `rows` seeded mappings.
async fn load(options: &PgConnectOptions, rows: u64, loaders: usize) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect_with(options).await?;
    // The indexes, as the migrations made them (the import's first load does the same).
    let indexes = idminter::transfer::bulk::Indexes::capture(&mut conn).await?;
    indexes.drop_all(&mut conn).await?;

    let started = Instant::now();
    let loaders = loaders.clamp(1, 16) as u64;
    let per = rows.div_ceil(loaders);
    let mut tasks = tokio::task::JoinSet::new();
    for l in 0..loaders {
        let range = (l * per).min(rows)..((l + 1) * per).min(rows);
        let options = options.clone();
        tasks.spawn(async move { copy_range(&options, range, l == 0, rows).await });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    eprintln!(
        "copied {rows} rows in {:.1}s; building indexes",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    conn.execute("SET maintenance_work_mem = '1GB'").await?;
    indexes.recreate(&mut conn).await?;
    conn.execute("VACUUM (FREEZE, ANALYZE) source_identifiers")
        .await?;
    eprintln!(
        "indexes built and table frozen in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    conn.close().await.ok();
    Ok(())
}

/// Streams seeds `range` into the table with COPY; the first loader reports progress.
async fn copy_range(
    options: &PgConnectOptions,
    range: std::ops::Range<u64>,
    report: bool,
    total: u64,
) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect_with(options).await?;
    let mut copy = conn
        .copy_in_raw(
            "COPY source_identifiers (identifier_type, ontology_type, value, canonical_id, minted) \
             FROM STDIN",
        )
        .await?;
    let mut buf = Vec::with_capacity(CHUNK_BYTES + 512);
    let mut last_report = Instant::now();
    let (start, len) = (range.start, range.end - range.start);
    for k in range {
        let ident = seed(k);
        let id = seed_canonical_id(k);
        buf.extend_from_slice(ident.identifier_type.as_bytes());
        buf.push(b'\t');
        buf.extend_from_slice(ident.ontology_type.as_bytes());
        buf.push(b'\t');
        buf.extend_from_slice(ident.value.as_bytes());
        buf.push(b'\t');
        buf.extend_from_slice(&id);
        buf.extend_from_slice(b"\tt\n");
        if buf.len() >= CHUNK_BYTES {
            copy.send(std::mem::take(&mut buf)).await?;
            buf.reserve(CHUNK_BYTES + 512);
            if report && last_report.elapsed() > Duration::from_secs(10) {
                last_report = Instant::now();
                eprintln!(
                    "  loading: {:.0}% of this loader's share ({total} rows in all)",
                    (k - start) as f64 * 100.0 / len as f64
                );
            }
        }
    }
    if !buf.is_empty() {
        copy.send(buf).await?;
    }
    copy.finish().await?;
    conn.close().await.ok();
    Ok(())
}
