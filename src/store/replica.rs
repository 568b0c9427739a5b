//! The read replica (`serve --read-database-url`): a streaming standby that answers the reads
//! (LookupIds, ResolveCanonicalIds and MintIds' lookup phase) so the primary is left the writes.
//!
//! A replica is only ever a first opinion. What it has is true (mappings never change once
//! committed, and a standby only holds committed rows); what it lacks may simply not have been
//! replayed yet, so every identifier it does not know is asked of the primary before anything is
//! minted or answered "absent". A lagging replica therefore costs a second query, never a
//! second ID.
//!
//! A replica that cannot be reached is stepped around: reads go to the primary, health stays
//! SERVING (the primary alone can answer everything), `idminter_read_replica_up` drops to 0 and a
//! warning is logged. Its own watch ([`watch`]) probes it every check interval, reports its replay
//! lag (`idminter_read_replica_lag_seconds`) and takes it back once it answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio_util::sync::CancellationToken;

use crate::metrics::{READ_REPLICA_LAG, READ_REPLICA_UP};

/// How long one replica probe may take before the replica counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The replica's pool and whether reads should go there now.
#[derive(Debug, Clone)]
pub struct ReadReplica {
    pool: PgPool,
    up: Arc<AtomicBool>,
}

impl ReadReplica {
    /// A replica behind `pool`, presumed up until a read or a probe fails.
    pub fn new(pool: PgPool) -> Self {
        metrics::gauge!(READ_REPLICA_UP).set(1.0);
        Self {
            pool,
            up: Arc::new(AtomicBool::new(true)),
        }
    }

    /// The pool to read from, or `None` while the replica is down (reads then go to the primary
    /// straight away rather than waiting on a dead host each time).
    pub fn pool(&self) -> Option<&PgPool> {
        self.up.load(Ordering::Relaxed).then_some(&self.pool)
    }

    /// The replica's pool, up or not (for the admin listener's connection gauges and shutdown).
    pub fn raw_pool(&self) -> &PgPool {
        &self.pool
    }

    /// Records that a read failed on the replica: if the failure means it cannot be reached
    /// (UNAVAILABLE by our error mapping), reads go to the primary until the watch takes it back,
    /// and the caller should retry there. Any other error is the caller's to report.
    pub fn failed(&self, e: &sqlx::Error) -> bool {
        match crate::error::unavailable(e) {
            Some(reason) => {
                self.set_up(false, &reason);
                true
            }
            None => false,
        }
    }

    fn set_up(&self, up: bool, reason: &str) {
        let was = self.up.swap(up, Ordering::Relaxed);
        metrics::gauge!(READ_REPLICA_UP).set(if up { 1.0 } else { 0.0 });
        match (was, up) {
            (true, false) => tracing::warn!(
                reason,
                "read replica unreachable: reads go to the primary until it answers again"
            ),
            (false, true) => tracing::info!("read replica answers again: reads go there"),
            _ => {}
        }
    }
}

/// Probes the replica every `interval` until `stop` fires: marks it up or down, and reports its
/// replay lag.
pub async fn watch(
    replica: ReadReplica,
    options: PgConnectOptions,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut conn: Option<PgConnection> = None;
    loop {
        let attempt = async {
            let c = match &mut conn {
                Some(c) => c,
                None => conn.insert(PgConnection::connect_with(&options).await?),
            };
            lag(c).await
        };
        match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
            Ok(Ok(lag)) => {
                metrics::gauge!(READ_REPLICA_LAG).set(lag);
                replica.set_up(true, "");
            }
            Ok(Err(e)) => {
                conn = None;
                replica.set_up(
                    false,
                    &crate::error::unavailable(&e).unwrap_or_else(|| e.to_string()),
                );
            }
            Err(_) => {
                conn = None;
                replica.set_up(
                    false,
                    &format!("no answer within {}s", PROBE_TIMEOUT.as_secs()),
                );
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// The replica's replay lag in seconds: 0 when it has replayed everything it received (an idle
/// primary sends nothing, and that is no lag), else the age of the last transaction it replayed;
/// 0 for a server that is not a standby at all.
async fn lag(conn: &mut PgConnection) -> Result<f64, sqlx::Error> {
    // Simple protocol (no parameters): safe through a transaction-mode pooler.
    let row = sqlx::raw_sql(
        "SELECT CASE \
             WHEN NOT pg_is_in_recovery() THEN 0 \
             WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 \
             ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) \
         END::float8",
    )
    .fetch_one(conn)
    .await?;
    row.try_get::<f64, _>(0)
}
