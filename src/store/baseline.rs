//! `idminter migrate --baseline`: adopt a database whose tables are ours but whose history table is
//! missing (for instance, it was recorded under another name). We apply our migrations to a scratch
//! schema inside a transaction that is rolled back, describe both schemas from the catalog, and
//! record as applied the longest run of migrations whose result matches the existing tables
//! exactly. If none matches, we refuse and say what differs: adopting a schema we did not make
//! would put every later guarantee on sand.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::migrations;
use super::schema::{self, SchemaState};
use crate::guard;

/// Records the migrations the existing schema matches.
///
/// # Errors
/// The database is not in the "history missing, our tables present" state, or no run of
/// migrations reproduces its tables, or a database error.
pub async fn adopt(conn: &mut PgConnection, history_table: &str) -> anyhow::Result<Vec<String>> {
    guard::lock(conn).await?;
    let result = adopt_locked(conn, history_table).await;
    guard::unlock(conn).await?;
    result
}

async fn adopt_locked(conn: &mut PgConnection, history_table: &str) -> anyhow::Result<Vec<String>> {
    let state = schema::inspect(conn, history_table).await?;
    let SchemaState::HistoryMissing { ours, .. } = &state else {
        anyhow::bail!("nothing to baseline: {state}");
    };
    let schema_name = ours[0]
        .split_once('.')
        .map_or("public", |(schema, _)| schema)
        .to_owned();
    let existing = describe(conn, &schema_name).await?;
    let all = migrations::embedded();
    let mut closest = None;
    for upto in (1..=all.len()).rev() {
        let expected = describe_migrated(conn, &all[..upto]).await?;
        if expected == existing {
            migrations::record_applied(conn, history_table, all[upto - 1].version()).await?;
            return Ok(all[..upto].iter().map(ToString::to_string).collect());
        }
        if closest.is_none() {
            closest = Some(expected);
        }
    }
    let expected = closest.unwrap_or_default();
    let missing: Vec<_> = expected
        .iter()
        .filter(|e| !existing.contains(e))
        .cloned()
        .collect();
    let unexpected: Vec<_> = existing
        .iter()
        .filter(|e| !expected.contains(e))
        .cloned()
        .collect();
    anyhow::bail!(
        "refusing to baseline: the tables in schema `{schema_name}` do not match what idminter's migrations create; missing: [{}]; unexpected: [{}]",
        missing.join("; "),
        unexpected.join("; ")
    )
}

/// The catalog description of `migrations` applied to an empty scratch schema, rolled back.
async fn describe_migrated(
    conn: &mut PgConnection,
    upto: &[refinery::Migration],
) -> anyhow::Result<Vec<String>> {
    let mut tx = conn.begin().await?;
    let scratch = "idminter_baseline_scratch";
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SCHEMA {scratch}; SET LOCAL search_path = {scratch}"
    )))
    .execute(&mut *tx)
    .await?;
    for m in upto {
        let sql = m.sql().unwrap_or_default().to_owned();
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
    }
    let description = describe(&mut tx, scratch).await?;
    tx.rollback().await?;
    Ok(description)
}

/// Every column, constraint, index and trigger of our tables in `schema_name`, as sorted lines
/// that do not mention the schema's name.
async fn describe(conn: &mut PgConnection, schema_name: &str) -> Result<Vec<String>, sqlx::Error> {
    let mut lines: Vec<String> = sqlx::query_scalar(
        "SELECT format('column %s.%s %s%s collate %s default %s', c.relname, a.attname, \
                format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, \
                coalesce(co.collname, '-'), coalesce(pg_get_expr(d.adbin, d.adrelid), '-')) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 0 \
         LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
         WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind IN ('r', 'p') \
         UNION ALL \
         SELECT format('constraint %s.%s %s', c.relname, k.conname, pg_get_constraintdef(k.oid)) \
         FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = ANY($2) \
         UNION ALL \
         SELECT format('index %s', replace(pg_get_indexdef(i.indexrelid), quote_ident($1) || '.', '')) \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = ANY($2) \
         UNION ALL \
         SELECT format('trigger %s', replace(pg_get_triggerdef(t.oid), quote_ident($1) || '.', '')) \
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = ANY($2) AND NOT t.tgisinternal",
    )
    .bind(schema_name)
    .bind(schema::OUR_TABLES)
    .fetch_all(&mut *conn)
    .await?;
    lines.sort();
    Ok(lines)
}
