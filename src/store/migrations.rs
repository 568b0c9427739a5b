//! The schema's migrations (`migrations/*.sql`, embedded in the binary) and applying them with
//! refinery through our sqlx connection.
//!
//! Refinery has no sqlx driver; rather than carry tokio-postgres as a second PostgreSQL driver (a
//! second TLS and connection stack, second pool settings), [`RefineryConnection`] implements
//! refinery's two async traits for an sqlx connection in a few lines.
//!
//! The history table's name is ours, [`HISTORY_TABLE`], always passed to refinery explicitly: the
//! incident we exist to prevent began when a migration library changed its default name.

use refinery::{AsyncMigrate, Migration};
use refinery_core::traits::r#async::{AsyncQuery, AsyncTransaction};
use sqlx::{Acquire, AssertSqlSafe, PgConnection, Row};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The name of our migration-history table. Never the migration library's default, which may
/// change under us with an upgrade.
pub const HISTORY_TABLE: &str = "idminter_schema_history";

/// The advisory lock key held while migrating, so that replicas starting together migrate one at a
/// time: `"idminter"` in ASCII.
pub const MIGRATION_LOCK_KEY: i64 = 0x6964_6d69_6e74_6572;

/// The migrations built into this binary, in version order.
pub fn embedded() -> Vec<Migration> {
    let mut all = embedded::migrations::runner().get_migrations().clone();
    all.sort_by_key(Migration::version);
    all
}

/// A refinery runner over our migrations, writing to `history_table`.
pub fn runner(history_table: &str) -> refinery::Runner {
    let mut runner = embedded::migrations::runner();
    runner.set_migration_table_name(history_table);
    runner
}

/// Applies every pending migration, holding the migration advisory lock.
///
/// # Errors
/// A database error, or refinery's refusal (for instance a changed applied migration).
pub async fn apply(conn: &mut PgConnection, history_table: &str) -> anyhow::Result<Vec<String>> {
    let report = runner(history_table)
        .run_async(&mut RefineryConnection(conn))
        .await?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(ToString::to_string)
        .collect())
}

/// Records the migrations up to `up_to_version` as applied without running them (for
/// `migrate --baseline`).
///
/// # Errors
/// A database error.
pub async fn record_applied(
    conn: &mut PgConnection,
    history_table: &str,
    up_to_version: i32,
) -> anyhow::Result<()> {
    runner(history_table)
        .set_target(refinery::Target::FakeVersion(up_to_version))
        .run_async(&mut RefineryConnection(conn))
        .await?;
    Ok(())
}

/// An sqlx connection, seen by refinery as one of its async drivers.
pub struct RefineryConnection<'c>(pub &'c mut PgConnection);

impl AsyncTransaction for RefineryConnection<'_> {
    type Error = sqlx::Error;

    /// Runs the statements (each may hold several) in one transaction, as refinery expects.
    async fn execute<'a, T: Iterator<Item = &'a str> + Send + 'a>(
        &'a mut self,
        queries: T,
    ) -> Result<usize, Self::Error> {
        let mut tx = self.0.begin().await?;
        let mut count = 0;
        for query in queries {
            sqlx::raw_sql(AssertSqlSafe(query))
                .execute(&mut *tx)
                .await?;
            count += 1;
        }
        tx.commit().await?;
        Ok(count)
    }
}

impl AsyncQuery<Vec<Migration>> for RefineryConnection<'_> {
    /// Reads the history table in refinery's column layout: version, name, applied_on, checksum.
    async fn query<'a>(&'a mut self, query: &'a str) -> Result<Vec<Migration>, Self::Error> {
        let rows = sqlx::query(AssertSqlSafe(query))
            .fetch_all(&mut *self.0)
            .await?;
        rows.iter()
            .map(|row| {
                let applied_on: String = row.try_get(2)?;
                let applied_on = OffsetDateTime::parse(&applied_on, &Rfc3339)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                let checksum: String = row.try_get(3)?;
                let checksum = checksum
                    .parse::<u64>()
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                Ok(Migration::applied(
                    row.try_get(0)?,
                    row.try_get(1)?,
                    applied_on,
                    checksum,
                ))
            })
            .collect()
    }
}

impl AsyncMigrate for RefineryConnection<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_table_is_ours_and_not_refinerys_default() {
        // Pinned on purpose: changing it strands every deployed database's history. If a test
        // must change, the change needs a migration path, not just a new constant.
        assert_eq!(HISTORY_TABLE, "idminter_schema_history");
        assert_ne!(HISTORY_TABLE, "refinery_schema_history");
    }

    #[test]
    fn migrations_are_embedded_in_version_order() {
        let all = embedded();
        assert!(!all.is_empty());
        assert_eq!(all[0].to_string(), "V1__source_identifiers");
        assert!(all.windows(2).all(|w| w[0].version() < w[1].version()));
    }
}
