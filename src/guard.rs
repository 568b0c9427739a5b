//! The schema guard in action: run once by `check` and `migrate`, and at every start of `serve`
//! and then in a loop that keeps readiness true to the database: NOT_SERVING until the guard
//! passes and the database answers, NOT_SERVING again within seconds of losing it, SERVING again
//! when it returns, with no restart.
//!
//! Failover is the same story: when the primary is lost, the probe fails (NOT_SERVING); when a
//! promoted replica answers at the same address, the whole guard runs again on it and the pool's
//! dead connections are replaced as they are next used (sqlx tests each before lending it). A
//! server that answers but is read-only (a hot standby not yet promoted) is NOT_SERVING with a
//! diagnosis that says so, since it could not take a single mint.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};
use tokio_util::sync::CancellationToken;

use crate::readiness::{Readiness, State};
use crate::store::migrations::{self, MIGRATION_LOCK_KEY};
use crate::store::schema::{self, SchemaState};

/// How long one database probe may take before the database counts as gone.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the guard on a connection of its own; with `migrate`, applies pending migrations first,
/// under the migration advisory lock so that replicas starting together migrate one at a time
/// (the others wait, then find the migrations applied).
///
/// # Errors
/// The database could not be reached, or migrating failed.
pub async fn run(
    options: &PgConnectOptions,
    history_table: &str,
    migrate: bool,
) -> anyhow::Result<SchemaState> {
    // A dedicated connection: if anything fails while the lock is held, dropping the connection
    // releases it, so a pooled connection never carries a stale lock.
    let mut conn = PgConnection::connect_with(options).await?;
    if !migrate {
        // In one transaction, so that a pooler in transaction mode (pgbouncer) keeps every
        // statement on one server connection, and leaving no prepared statement behind on it.
        let mut tx = conn.begin().await?;
        let state = schema::inspect(&mut tx, history_table).await?;
        sqlx::raw_sql("DEALLOCATE ALL").execute(&mut *tx).await?;
        tx.rollback().await?;
        conn.close().await?;
        return Ok(state);
    }
    lock(&mut conn).await?;
    let mut state = schema::inspect(&mut conn, history_table).await?;
    if state.is_migratable() {
        let applied = migrations::apply(&mut conn, history_table).await?;
        tracing::info!(?applied, history_table, "migrations applied");
        state = schema::inspect(&mut conn, history_table).await?;
    }
    unlock(&mut conn).await?;
    conn.close().await?;
    Ok(state)
}

pub(crate) async fn lock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(crate) async fn unlock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Keeps `readiness` true to the schema and the database until `stop` fires: the guard until it
/// passes, then a ping every `interval` (and the guard again after any failed ping).
pub async fn watch(
    readiness: Readiness,
    options: PgConnectOptions,
    history_table: String,
    migrate: bool,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut schema_passed = false;
    let mut probe = Probe {
        options: options.clone(),
        conn: None,
    };
    loop {
        let state = if schema_passed {
            probe.check().await
        } else {
            match tokio::time::timeout(PROBE_TIMEOUT * 5, run(&options, &history_table, migrate))
                .await
            {
                Ok(Ok(state)) if state.is_ready() => {
                    if let SchemaState::Ready { newer } = &state
                        && !newer.is_empty()
                    {
                        tracing::warn!(diagnosis = %state, "serving a schema newer than this release");
                    }
                    schema_passed = true;
                    probe.check().await
                }
                Ok(Ok(state)) => State::NotServing(state.to_string()),
                Ok(Err(e)) => State::NotServing(format!("database unreachable: {}", one_line(&e))),
                Err(_) => State::NotServing(
                    "database unreachable: the schema guard got no answer".to_owned(),
                ),
            }
        };
        if stop.is_cancelled() {
            return;
        }
        // After losing the database, run the whole guard again before serving: what comes back
        // may be a restored backup, not the schema we checked.
        schema_passed &= state == State::Serving;
        readiness.set(state).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// The database watch's own connection, so that a busy pool (every connection in use) is never
/// mistaken for a lost database.
struct Probe {
    options: PgConnectOptions,
    conn: Option<PgConnection>,
}

impl Probe {
    /// One round trip, reconnecting first if the last probe failed.
    async fn check(&mut self) -> State {
        let attempt = async {
            let conn = match &mut self.conn {
                Some(conn) => conn,
                None => self
                    .conn
                    .insert(PgConnection::connect_with(&self.options).await?),
            };
            // Simple protocol (no parameters, no prepared statement): safe through a pooler in
            // transaction mode. A hot standby answers too, but cannot take a write: after a
            // failover, the address may reach a replica that is not (yet) promoted.
            let row = sqlx::raw_sql(
                "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only')::bool",
            )
            .fetch_one(conn)
            .await?;
            row.try_get::<bool, _>(0)
        };
        let result = tokio::time::timeout(PROBE_TIMEOUT, attempt).await;
        let state = match result {
            Ok(Ok(false)) => State::Serving,
            Ok(Ok(true)) => State::NotServing(crate::error::READ_ONLY_DIAGNOSIS.to_owned()),
            Ok(Err(e)) => State::NotServing(crate::error::Error::from(e).to_string()),
            Err(_) => State::NotServing(format!(
                "database unreachable: no answer within {}s",
                PROBE_TIMEOUT.as_secs()
            )),
        };
        if state != State::Serving {
            self.conn = None;
        }
        state
    }
}

/// An error's top-level message, without SQL or newlines (connection errors carry neither).
fn one_line(e: &anyhow::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}
