//! A first load: an import into an empty `source_identifiers` writes every row in one transaction
//! that holds the table for itself, with its unique indexes dropped and built again at the end
//! ("load, then build indexes"), which is faster than PostgreSQL's own COPY into the indexed table.
//!
//! The transaction:
//! 1. `LOCK TABLE source_identifiers IN ACCESS EXCLUSIVE MODE`, then checks, under the lock, that
//!    the table is still empty and that no other table's foreign key depends on its indexes;
//!    otherwise it rolls back and the import takes the chunked path ([`plan::apply`](super::plan::apply)).
//! 2. `TRUNCATE` (of an empty table: a fresh, empty file, so that rows go in strictly in the
//!    order they are inserted, whatever free space earlier deletes left).
//! 3. Reads every index's definition from the catalog ([`Indexes::capture`]) and drops them.
//! 4. Inserts the planned rows in input order.
//! 5. Builds the indexes again from those definitions, then commits.
//!
//! DDL is transactional in PostgreSQL: until the commit, nobody sees the table without its
//! indexes, and any failure or a SIGKILL at any moment (PostgreSQL aborts the transaction of a
//! backend whose client is gone) leaves the table empty with every constraint, so running the same
//! command again does the same again. A duplicate the plan missed would make the unique index
//! build fail, and that rolls the whole load back rather than committing it.
//!
//! Servers block on the lock until the commit (a MintIds waits, it does not fail unless it has a
//! deadline shorter than the load); `--online` keeps the chunked path for those who must keep
//! serving during a first load.

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// The indexes of `source_identifiers`, as the catalog defines them: those backing constraints
/// (the primary key, the one-minted-row-per-ID unique constraint, any exclusion constraint), and
/// the others, so that an index an operator added comes back too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indexes {
    /// (name, `pg_get_constraintdef`), e.g. `PRIMARY KEY (identifier_type, ontology_type, value)`.
    pub constraints: Vec<(String, String)>,
    /// (name, `pg_get_indexdef`): a whole `CREATE INDEX` statement.
    pub indexes: Vec<(String, String)>,
}

impl Indexes {
    /// Reads the definitions. Names come back quoted as SQL needs them (`quote_ident`).
    ///
    /// # Errors
    /// Any database error.
    pub async fn capture(conn: &mut PgConnection) -> Result<Self, sqlx::Error> {
        let constraints = sqlx::query_as(
            "SELECT quote_ident(conname), pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = 'source_identifiers'::regclass AND conindid <> 0 \
               AND contype IN ('p', 'u', 'x') \
             ORDER BY contype = 'p' DESC, conname",
        )
        .fetch_all(&mut *conn)
        .await?;
        let indexes = sqlx::query_as(
            "SELECT quote_ident(c.relname), pg_get_indexdef(i.indexrelid) \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = 'source_identifiers'::regclass \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
             ORDER BY c.relname",
        )
        .fetch_all(&mut *conn)
        .await?;
        Ok(Self {
            constraints,
            indexes,
        })
    }

    /// Drops them all (in the caller's transaction).
    ///
    /// # Errors
    /// Any database error.
    pub async fn drop_all(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        for (name, _) in &self.constraints {
            conn.execute(AssertSqlSafe(format!(
                "ALTER TABLE source_identifiers DROP CONSTRAINT {name}"
            )))
            .await?;
        }
        for (name, _) in &self.indexes {
            conn.execute(AssertSqlSafe(format!("DROP INDEX {name}")))
                .await?;
        }
        Ok(())
    }

    /// Builds them again, exactly as they were defined (a unique violation fails the build).
    ///
    /// # Errors
    /// Any database error.
    pub async fn recreate(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        for (name, definition) in &self.constraints {
            conn.execute(AssertSqlSafe(format!(
                "ALTER TABLE source_identifiers ADD CONSTRAINT {name} {definition}"
            )))
            .await?;
        }
        for (_, definition) in &self.indexes {
            conn.execute(AssertSqlSafe(definition.clone())).await?;
        }
        Ok(())
    }
}

/// True when the table has no rows (as this connection's snapshot sees it).
///
/// # Errors
/// Any database error.
pub async fn is_empty(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM source_identifiers)")
        .fetch_one(&mut *conn)
        .await
}

/// Staged rows inserted per statement: each statement joins its slice of the staging table to
/// the plan and sorts it by input order, in memory.
const ROWS_PER_STATEMENT: u64 = 500_000;

/// Loads the planned rows into the empty table in one transaction (see the module's
/// documentation). Returns the number of rows inserted, or `None` when the table is not empty (or
/// another table's foreign key depends on its keys) once locked: nothing was done, and the caller
/// takes the chunked path. `progress` is told the rows inserted so far.
///
/// # Errors
/// Any database error; the transaction is rolled back, the table is as it was.
pub async fn load(
    conn: &mut PgConnection,
    mut progress: impl FnMut(u64),
) -> Result<Option<u64>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    tx.execute("LOCK TABLE source_identifiers IN ACCESS EXCLUSIVE MODE")
        .await?;
    let referenced: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint \
                        WHERE confrelid = 'source_identifiers'::regclass AND contype = 'f')",
    )
    .fetch_one(&mut *tx)
    .await?;
    if referenced || !is_empty(&mut tx).await? {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.execute("TRUNCATE source_identifiers").await?;
    let indexes = Indexes::capture(&mut tx).await?;
    indexes.drop_all(&mut tx).await?;

    let mut inserted = 0u64;
    for (lo, hi) in super::plan::chunks(&mut tx, ROWS_PER_STATEMENT).await? {
        let (first, next) = seq_bounds(&mut tx, lo, hi).await?;
        // The plan's rows are bounded by seq as well as joined on it, so that PostgreSQL hashes
        // only this slice's few planned rows. The staged rows arrive in input order already (a
        // TID range scan of a table COPY filled in that order): the sort only confirms it.
        let result = sqlx::query(
            "INSERT INTO source_identifiers \
                 (identifier_type, ontology_type, value, canonical_id, minted, created_at, created_by) \
             SELECT s.identifier_type, s.ontology_type, s.value, s.canonical_id, \
                    CASE WHEN coalesce(p.mint, true) THEN true END, \
                    coalesce(s.created_at, now()), 'import' \
             FROM import_staging s \
             LEFT JOIN (SELECT seq, action, mint FROM import_plan \
                        WHERE seq >= $3 AND ($4::bigint IS NULL OR seq < $4)) p ON p.seq = s.seq \
             WHERE s.ctid >= format('(%s,0)', $1::bigint)::tid \
               AND s.ctid < format('(%s,0)', $2::bigint)::tid \
               AND (p.seq IS NULL OR p.action = 'insert') \
             ORDER BY s.seq",
        )
        .bind(lo)
        .bind(hi)
        .bind(first)
        .bind(next)
        .execute(&mut *tx)
        .await?;
        inserted += result.rows_affected();
        progress(inserted);
    }
    tracing::info!(
        rows = inserted,
        "first load: rows inserted, building the indexes"
    );
    // Index builds sort; give them room (a session setting, for this transaction only), unless
    // the server is configured with more.
    tx.execute(
        "SELECT set_config('maintenance_work_mem', '512MB', true) \
         WHERE pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes('512MB')",
    )
    .await?;
    indexes.recreate(&mut tx).await?;
    tx.commit().await?;
    Ok(Some(inserted))
}

/// The first seq of the staging pages `lo..hi`, and the first seq after them (`None` at the end).
async fn seq_bounds(
    conn: &mut PgConnection,
    lo: i64,
    hi: i64,
) -> Result<(i64, Option<i64>), sqlx::Error> {
    let first_of = "SELECT min(seq) FROM import_staging \
                    WHERE ctid >= format('(%s,0)', $1::bigint)::tid \
                      AND ctid < format('(%s,0)', $1::bigint + 1)::tid";
    let first: Option<i64> = sqlx::query_scalar(first_of)
        .bind(lo)
        .fetch_one(&mut *conn)
        .await?;
    let next: Option<i64> = sqlx::query_scalar(first_of)
        .bind(hi)
        .fetch_one(&mut *conn)
        .await?;
    Ok((first.unwrap_or(0), next))
}
