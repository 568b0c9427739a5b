//! The set work of an import, done by PostgreSQL so that memory does not grow with the input: the
//! validated rows are streamed with COPY into a temporary staging table (in input order), and
//! applied to `source_identifiers` in chunks of that order, each its own transaction.
//!
//! Most rows stand alone: their identifier and their canonical ID appear once in the input. They
//! are decided when their chunk is written, by the table's constraints: inserted as the ID's
//! minted row, or skipped and then reported as already present (the identifier has this ID), a
//! conflict (it has another), or a conflict because the table already uses the ID for other
//! identifiers. The others are the *special* rows: an identifier given more than once, or a
//! canonical ID shared by several rows (and a few rows that only may be, see [`SPECIAL`]). Only
//! those are planned ahead, by two sorting passes over that subset, against the table as it is
//! then:
//! 1. A row whose identifier is in the table is already present (same ID) or a conflict.
//! 2. Otherwise each identifier's first row in input order is its candidate; a later row for it is
//!    a conflict when it names another ID ("earlier in the input"), else a repeat (present).
//! 3. The candidates sharing a canonical ID form its group. When the table already uses the ID for
//!    identifiers none of which is in the group, the group is a conflict (the ID belongs to
//!    someone else). Otherwise one candidate is the minted row (the one marked `minted=true`, else
//!    the earliest `created_at`, else the first in input order), unless the table already has the
//!    ID's minted row; a second row marked `minted=true` is a conflict; the others inherit.
//!
//! Crash safety follows: rows an interrupted run committed are "already present" to the next run,
//! keep their group acknowledged and its minted row where it was, so every chunk makes the same
//! decisions as in an uninterrupted run.
//!
//! Live servers: each chunk inserts with `ON CONFLICT DO NOTHING` in primary-key order (the order
//! MintIds inserts in, so the two never deadlock). A row a server wrote first is skipped by the
//! database's constraints and reported as already present or a conflict.

use futures_util::TryStreamExt;

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, Row};

/// The staging table, a temporary table: it vanishes with the connection, however the import
/// ends. Columns use the "C" collation, as the main table does, so sorts agree with its keys.
pub const CREATE_STAGING: &str = "CREATE TEMP TABLE import_staging ( \
    seq bigint NOT NULL, src int NOT NULL, line bigint NOT NULL, \
    identifier_type text COLLATE \"C\" NOT NULL, ontology_type text COLLATE \"C\" NOT NULL, \
    value text COLLATE \"C\" NOT NULL, canonical_id text COLLATE \"C\" NOT NULL, \
    claim boolean, created_at timestamptz, given_ontology text, \
    key_hash bigint NOT NULL, dup boolean NOT NULL)";

pub const COPY_STAGING: &str = "COPY import_staging FROM STDIN";

/// The special rows: an identifier or a canonical ID given more than once, and a few more. The
/// reading thread flagged (`dup`) every row that may repeat a key given earlier (see
/// [`seen`](super::seen)); every row sharing an identifier hash or a canonical ID with a flagged
/// row is special. Both key sets are the flagged rows' only, small beside the input; the staged
/// rows are scanned once. Written as outer joins on the distinct keys rather than `IN`
/// subqueries: a hash join spills to disk in batches when a set outgrows `work_mem`, where an
/// `IN` too large to hash would be run again for every staged row.
const SPECIAL: &str = "CREATE TEMP TABLE import_special AS \
    SELECT s.* FROM import_staging s \
    LEFT JOIN (SELECT DISTINCT key_hash FROM import_staging WHERE dup) k \
        ON k.key_hash = s.key_hash \
    LEFT JOIN (SELECT DISTINCT canonical_id FROM import_staging WHERE dup) c \
        ON c.canonical_id = s.canonical_id \
    WHERE k.key_hash IS NOT NULL OR c.canonical_id IS NOT NULL";

/// Pass 1 over the special rows, sorting by identifier: each row with its identifier's first row
/// and the table's ID.
const FIRST_ROWS: &str = "CREATE TEMP TABLE import_rows AS \
    SELECT s.*, \
        first_value(s.seq) OVER w AS first_seq, first_value(s.canonical_id) OVER w AS first_id, \
        first_value(s.src) OVER w AS first_src, first_value(s.line) OVER w AS first_line, \
        t.canonical_id AS db_id \
    FROM import_special s \
    LEFT JOIN source_identifiers t USING (identifier_type, ontology_type, value) \
    WINDOW w AS (PARTITION BY s.identifier_type, s.ontology_type, s.value ORDER BY s.seq)";

/// Pass 2 over the special rows, sorting by canonical ID: the groups, the minted row, and every
/// row's action.
/// `taken` is NULL when the table does not use the ID, else whether it has its minted row (not
/// looked up at all when the table is empty: the EXISTS is an init plan, evaluated once).
const PLAN: &str = "CREATE TEMP TABLE import_plan AS \
    SELECT seq, src, line, identifier_type, ontology_type, value, canonical_id, claim, created_at, \
        given_ontology, action, why, other_id, other_src, other_line, \
        (action = 'insert' AND chosen = seq AND taken IS NOT TRUE) AS mint \
    FROM ( \
      SELECT g.*, \
        CASE \
          WHEN db_id IS NOT NULL AND db_id <> canonical_id THEN 'conflict' \
          WHEN db_id IS NOT NULL THEN 'present' \
          WHEN seq <> first_seq AND canonical_id <> first_id THEN 'conflict' \
          WHEN taken IS NOT NULL AND NOT acknowledged THEN 'conflict' \
          WHEN seq <> first_seq THEN 'present' \
          WHEN claim IS TRUE AND (taken OR chosen <> seq) THEN 'conflict' \
          ELSE 'insert' END AS action, \
        CASE \
          WHEN db_id IS NOT NULL AND db_id <> canonical_id THEN 'database' \
          WHEN db_id IS NOT NULL THEN NULL \
          WHEN seq <> first_seq AND canonical_id <> first_id THEN 'earlier' \
          WHEN taken IS NOT NULL AND NOT acknowledged THEN 'taken' \
          WHEN seq <> first_seq THEN 'repeat' \
          WHEN claim IS TRUE AND taken THEN 'minted_in_database' \
          WHEN claim IS TRUE AND chosen <> seq THEN 'minted_earlier' END AS why, \
        coalesce(db_id, first_id) AS other_id, \
        CASE WHEN seq <> first_seq THEN first_src ELSE chosen_src END AS other_src, \
        CASE WHEN seq <> first_seq THEN first_line ELSE chosen_line END AS other_line \
      FROM ( \
        SELECT c.*, \
          first_value(seq) OVER w AS chosen, first_value(src) OVER w AS chosen_src, \
          first_value(line) OVER w AS chosen_line, \
          bool_or(db_id IS NOT NULL AND db_id = canonical_id) OVER (PARTITION BY canonical_id) \
              AS acknowledged \
        FROM ( \
          SELECT r.*, \
            (seq = first_seq AND (db_id IS NULL OR db_id = canonical_id)) AS candidate, \
            CASE WHEN db_id IS NULL AND (SELECT EXISTS (SELECT 1 FROM source_identifiers)) THEN ( \
                SELECT bool_or(t.minted IS TRUE) FROM source_identifiers t \
                WHERE t.canonical_id = r.canonical_id) END AS taken \
          FROM import_rows r \
        ) c \
        WINDOW w AS (PARTITION BY canonical_id, candidate \
                     ORDER BY claim IS TRUE DESC, created_at NULLS LAST, seq) \
      ) g \
    ) p";

/// How the plan classified the staged rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub insert: u64,
    pub present: u64,
    pub conflict: u64,
}

/// A conflicting row, for the report and `--rejects`.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub src: usize,
    pub line: u64,
    pub reason: Reason,
    /// The row's columns as the file gave them, in export order.
    pub row: [Option<String>; 6],
}

/// Why a row conflicts.
#[derive(Debug, Clone)]
pub enum Reason {
    /// The identifier has another ID earlier in the input.
    Earlier {
        other_id: String,
        src: usize,
        line: u64,
    },
    /// The identifier has another ID in the table (before the import, or written by a server
    /// during it).
    Database { other_id: String },
    /// The table uses the ID for identifiers that are not in this file's group (or a server took
    /// the ID's minted row during the import).
    Taken,
    /// A second row marked minted for an ID whose minted row is in the table.
    MintedInDatabase,
    /// A second row marked minted for an ID whose minted row is earlier in the input.
    MintedEarlier { src: usize, line: u64 },
}

/// Prepares the session: a temporary-table buffer and sort memory of its own (session settings,
/// they change nothing for anyone else), then the staging table.
///
/// # Errors
/// Any database error.
pub async fn begin(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    conn.execute("SET temp_buffers = '256MB'").await?;
    conn.execute("SET work_mem = '256MB'").await?;
    conn.execute(CREATE_STAGING).await?;
    Ok(())
}

/// Finds and plans the special rows (see the module's documentation); the counts are theirs.
///
/// # Errors
/// Any database error.
pub async fn classify(conn: &mut PgConnection) -> Result<Counts, sqlx::Error> {
    conn.execute("ANALYZE import_staging").await?;
    conn.execute(SPECIAL).await?;
    conn.execute(FIRST_ROWS).await?;
    conn.execute("DROP TABLE import_special").await?;
    conn.execute(PLAN).await?;
    conn.execute("DROP TABLE import_rows").await?;
    conn.execute("CREATE INDEX ON import_plan (seq)").await?;
    conn.execute("ANALYZE import_plan").await?;
    let row = sqlx::query(
        "SELECT count(*) FILTER (WHERE action = 'insert'), \
                count(*) FILTER (WHERE action = 'present'), \
                count(*) FILTER (WHERE action = 'conflict') \
         FROM import_plan",
    )
    .fetch_one(&mut *conn)
    .await?;
    let get = |i: usize| row.try_get::<i64, _>(i).map(|n| n as u64);
    Ok(Counts {
        insert: get(0)?,
        present: get(1)?,
        conflict: get(2)?,
    })
}

/// For a dry run: how the rows that stand alone would fare against the table now (counted like
/// [`classify`]'s), their conflicts passed to `each`.
///
/// # Errors
/// Any database error.
pub async fn dry_run(
    conn: &mut PgConnection,
    mut each: impl FnMut(Conflict) -> std::io::Result<()>,
) -> anyhow::Result<Counts> {
    let mut counts = Counts::default();
    let mut rows = sqlx::query(
        "SELECT s.src, s.line, s.canonical_id, s.identifier_type, \
             coalesce(s.given_ontology, s.ontology_type), s.value, s.claim, \
             to_char(s.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
             t.canonical_id, \
             t.canonical_id IS NULL AND EXISTS ( \
                 SELECT 1 FROM source_identifiers u WHERE u.canonical_id = s.canonical_id) \
         FROM import_staging s \
         LEFT JOIN source_identifiers t ON t.identifier_type = s.identifier_type \
             AND t.ontology_type = s.ontology_type AND t.value = s.value \
         WHERE NOT EXISTS (SELECT 1 FROM import_plan p WHERE p.seq = s.seq) \
         ORDER BY s.seq",
    )
    .fetch(&mut *conn);
    while let Some(row) = rows.try_next().await? {
        let own: String = row.try_get(2)?;
        let found: Option<String> = row.try_get(8)?;
        let taken: bool = row.try_get(9)?;
        match found {
            Some(id) if id == own => counts.present += 1,
            Some(other_id) => {
                counts.conflict += 1;
                each(conflict_row(&row, Reason::Database { other_id })?)?;
            }
            None if taken => {
                counts.conflict += 1;
                each(conflict_row(&row, Reason::Taken)?)?;
            }
            None => counts.insert += 1,
        }
    }
    Ok(counts)
}

/// The conflicts the plan found, in input order, one at a time.
///
/// # Errors
/// Any database error.
pub async fn conflicts(
    conn: &mut PgConnection,
    mut each: impl FnMut(Conflict) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut rows = sqlx::query(
        "SELECT src, line, canonical_id, identifier_type, coalesce(given_ontology, ontology_type), \
             value, claim, \
             to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), why, other_id, other_src, other_line \
         FROM import_plan WHERE action = 'conflict' ORDER BY seq",
    )
    .fetch(&mut *conn);
    while let Some(row) = rows.try_next().await? {
        let other_src = || {
            row.try_get::<Option<i32>, _>(10)
                .map(|s| s.unwrap_or(0) as usize)
        };
        let other_line = || {
            row.try_get::<Option<i64>, _>(11)
                .map(|l| l.unwrap_or(0) as u64)
        };
        let other_id = || {
            row.try_get::<Option<String>, _>(9)
                .map(Option::unwrap_or_default)
        };
        let why: Option<String> = row.try_get(8)?;
        let reason = match why.as_deref() {
            Some("earlier") => Reason::Earlier {
                other_id: other_id()?,
                src: other_src()?,
                line: other_line()?,
            },
            Some("database") => Reason::Database {
                other_id: other_id()?,
            },
            Some("taken") => Reason::Taken,
            Some("minted_in_database") => Reason::MintedInDatabase,
            Some("minted_earlier") => Reason::MintedEarlier {
                src: other_src()?,
                line: other_line()?,
            },
            other => anyhow::bail!("the import plan has a conflict of unknown kind {other:?}"),
        };
        each(conflict_row(&row, reason)?)?;
    }
    Ok(())
}

fn conflict_row(row: &sqlx::postgres::PgRow, reason: Reason) -> Result<Conflict, sqlx::Error> {
    Ok(Conflict {
        src: row.try_get::<i32, _>(0)? as usize,
        line: row.try_get::<i64, _>(1)? as u64,
        reason,
        row: [
            Some(row.try_get(2)?),
            Some(row.try_get(3)?),
            Some(row.try_get(4)?),
            Some(row.try_get(5)?),
            row.try_get::<Option<bool>, _>(6)?.map(|b| b.to_string()),
            row.try_get::<Option<String>, _>(7)?,
        ],
    })
}

/// The chunks: page ranges of the staging table (input order), of about `rows` rows each.
///
/// # Errors
/// Any database error.
pub async fn chunks(conn: &mut PgConnection, rows: u64) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let (pages, tuples): (i64, i64) = sqlx::query_as(
        "SELECT (pg_relation_size('import_staging') / current_setting('block_size')::int)::bigint, \
                (SELECT count(*) FROM import_staging)",
    )
    .fetch_one(&mut *conn)
    .await?;
    if pages == 0 || tuples == 0 {
        return Ok(Vec::new());
    }
    let per_chunk =
        ((rows as i128 * pages as i128) / tuples as i128).clamp(1, pages as i128) as i64;
    Ok((0..pages)
        .step_by(per_chunk as usize)
        .map(|lo| (lo, (lo + per_chunk).min(pages)))
        .collect())
}

/// What one chunk did.
#[derive(Debug, Default)]
pub struct Applied {
    pub imported: u64,
    pub present: u64,
    pub conflicts: Vec<Conflict>,
}

/// Inserts one chunk's rows in one transaction: the special rows the plan says to insert, and
/// every row that stands alone unless the table already uses its ID; then reports the rows the
/// constraints (or that guard) skipped.
///
/// # Errors
/// Any database error; the chunk's transaction is rolled back.
pub async fn apply(conn: &mut PgConnection, (lo, hi): (i64, i64)) -> Result<Applied, sqlx::Error> {
    let mut tx = conn
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await?;
    // A plain INSERT first: without ON CONFLICT, PostgreSQL skips the speculative insertion's
    // extra work, and on an import nobody races that is every chunk. A unique violation (a row
    // already there, a server's write) undoes it, and the chunk goes in with ON CONFLICT.
    tx.execute("SAVEPOINT chunk").await?;
    let (planned, inserted) = match insert_chunk(&mut tx, lo, hi, "").await {
        Ok(counts) => counts,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
            tx.execute("ROLLBACK TO SAVEPOINT chunk").await?;
            insert_chunk(&mut tx, lo, hi, "ON CONFLICT DO NOTHING").await?
        }
        Err(e) => return Err(e),
    };
    let mut applied = Applied {
        imported: inserted as u64,
        ..Applied::default()
    };
    let skipped = (planned - inserted) as u64;
    if skipped > 0 {
        // A new statement sees what concurrent writers committed: rows now holding another ID,
        // or none at all (the table uses the ID for other identifiers), are conflicts; the rest
        // have this same ID (written earlier, or by someone else).
        let rows = sqlx::query(
            "SELECT s.src, s.line, s.canonical_id, s.identifier_type, \
                 coalesce(s.given_ontology, s.ontology_type), s.value, s.claim, \
                 to_char(s.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
                 t.canonical_id \
             FROM import_staging s LEFT JOIN import_plan p ON p.seq = s.seq \
             LEFT JOIN source_identifiers t ON t.identifier_type = s.identifier_type \
                 AND t.ontology_type = s.ontology_type AND t.value = s.value \
             WHERE s.ctid >= format('(%s,0)', $1::bigint)::tid \
               AND s.ctid < format('(%s,0)', $2::bigint)::tid \
               AND (p.seq IS NULL OR p.action = 'insert') \
               AND t.canonical_id IS DISTINCT FROM s.canonical_id \
             ORDER BY s.seq",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let reason = match row.try_get::<Option<String>, _>(8)? {
                Some(other_id) => Reason::Database { other_id },
                None => Reason::Taken,
            };
            applied.conflicts.push(conflict_row(row, reason)?);
        }
        applied.present = skipped - rows.len() as u64;
    }
    tx.commit().await?;
    Ok(applied)
}

/// The chunk's INSERT, with `on_conflict` (empty, or `ON CONFLICT DO NOTHING`): how many rows were
/// to go in, and how many did.
async fn insert_chunk(
    tx: &mut PgConnection,
    lo: i64,
    hi: i64,
    on_conflict: &str,
) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(
        "WITH planned AS ( \
             SELECT s.identifier_type, s.ontology_type, s.value, s.canonical_id, s.created_at, \
                    p.seq IS NULL AS alone, coalesce(p.mint, true) AS mint \
             FROM import_staging s LEFT JOIN import_plan p ON p.seq = s.seq \
             WHERE s.ctid >= format('(%s,0)', $1::bigint)::tid \
               AND s.ctid < format('(%s,0)', $2::bigint)::tid \
               AND (p.seq IS NULL OR p.action = 'insert') \
         ), ins AS ( \
             INSERT INTO source_identifiers \
                 (identifier_type, ontology_type, value, canonical_id, minted, created_at, created_by) \
             SELECT identifier_type, ontology_type, value, canonical_id, \
                    CASE WHEN mint THEN true END, coalesce(created_at, now()), 'import' \
             FROM planned \
             WHERE NOT alone OR NOT EXISTS ( \
                 SELECT 1 FROM source_identifiers t WHERE t.canonical_id = planned.canonical_id) \
             ORDER BY identifier_type, ontology_type, value \
             {on_conflict} \
             RETURNING 1 \
         ) \
         SELECT (SELECT count(*) FROM planned), (SELECT count(*) FROM ins)"
    )))
    .bind(lo)
    .bind(hi)
    .fetch_one(&mut *tx)
    .await
}
