//! Carrying out a lifecycle call (redirect, withdraw, restore) in one transaction, and reading the
//! event log.
//!
//! Concurrency: every lifecycle transaction first takes the lifecycle lock, one transaction-level
//! advisory lock shared by all server processes, and only then reads the states it decides on. So
//! lifecycle calls run one at a time, each deciding on the state the previous one committed, and
//! no interleaving of two calls (say A -> B on one process and B -> A on another) can produce a
//! cycle or a redirect to a withdrawn ID. Lifecycle changes are rare admin calls, so serializing
//! them costs nothing that matters; per-ID locks would have to cover every ID redirected to an
//! involved one, which is not known before reading. MintIds, LookupIds and the resolvers never
//! take the lock. The database re-checks the rules at commit under the same lock (a constraint
//! trigger of migration V3), so even a writer that bypasses this code cannot break them.

use std::collections::HashSet;

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use super::pooler::Statements;
use crate::domain::{Action, CanonicalId, Change, Event, IdState, Ledger, StateRecord};
use crate::error::Error;

/// The lifecycle lock: `"lifecycl"` in ASCII, the key the V3 trigger takes too.
pub const LIFECYCLE_LOCK_KEY: i64 = 0x6c69_6665_6379_636c;

/// The columns of a `canonical_id_states s` row that [`record_from_row`] reads, as a literal for
/// `concat!`.
macro_rules! state_columns {
    () => {
        "s.canonical_id, s.status, s.redirect_target, s.reason, \
         (extract(epoch FROM s.changed_at) * 1000000)::int8, s.changed_by"
    };
}
pub(crate) use state_columns;

/// Decodes [`state_columns!`] starting at column `first`; `None` for the NULLs of an outer join.
pub(crate) fn record_from_row(
    row: &PgRow,
    first: usize,
) -> Result<Option<(CanonicalId, StateRecord)>, sqlx::Error> {
    let Some(id): Option<String> = row.try_get(first)? else {
        return Ok(None);
    };
    let status: String = row.try_get(first + 1)?;
    let target: Option<String> = row.try_get(first + 2)?;
    let state = match (status.as_str(), target) {
        ("active", None) => IdState::Active,
        ("withdrawn", None) => IdState::Withdrawn,
        ("redirected", Some(target)) => IdState::Redirected(CanonicalId::from_database(target)),
        (status, target) => {
            return Err(sqlx::Error::Protocol(format!(
                "canonical_id_states row {id} has status {status} and target {target:?}"
            )));
        }
    };
    Ok(Some((
        CanonicalId::from_database(id),
        StateRecord {
            state,
            reason: row.try_get(first + 3)?,
            changed_at: from_micros(row.try_get(first + 4)?)?,
            changed_by: row.try_get(first + 5)?,
        },
    )))
}

fn from_micros(micros: i64) -> Result<OffsetDateTime, sqlx::Error> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .map_err(|e| sqlx::Error::Protocol(format!("timestamp out of range: {e}")))
}

fn to_micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// Applies `changes` in order, atomically, stamped with `principal`, and returns the state of each
/// entry's ID once all are applied.
///
/// # Errors
/// [`Error::LifecycleRefused`] when a rule refuses an entry (nothing is written);
/// [`Error::Unavailable`] and [`Error::Internal`] as for any call.
pub async fn change(
    pool: &PgPool,
    statements: Statements,
    changes: &[Change],
    principal: &str,
) -> Result<Vec<Option<StateRecord>>, Error> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut involved: Vec<&str> = changes
        .iter()
        .flat_map(|c| std::iter::once(&c.canonical_id).chain(c.target.as_ref()))
        .map(CanonicalId::as_str)
        .collect();
    involved.sort_unstable();
    involved.dedup();

    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await?;
    // Taken before anything is read: every statement after it sees what the previous lifecycle
    // call committed.
    let now_micros: i64 = sqlx::query_scalar(
        "SELECT (extract(epoch FROM now()) * 1000000)::int8 FROM pg_advisory_xact_lock($1)",
    )
    .bind(LIFECYCLE_LOCK_KEY)
    .fetch_one(statements.on(&mut tx))
    .await?;
    let known: Vec<String> = sqlx::query_scalar(
        "SELECT k.id FROM unnest($1::text[]) AS k(id) \
         WHERE EXISTS (SELECT 1 FROM source_identifiers s WHERE s.canonical_id = k.id)",
    )
    .bind(&involved)
    .fetch_all(statements.on(&mut tx))
    .await?;
    let rows = sqlx::query(concat!(
        "SELECT ",
        state_columns!(),
        " FROM canonical_id_states s \
          WHERE s.canonical_id = ANY($1::text[]) OR s.redirect_target = ANY($1::text[])"
    ))
    .bind(&involved)
    .fetch_all(statements.on(&mut tx))
    .await?;
    let states = rows
        .iter()
        .map(|row| record_from_row(row, 0))
        .filter_map(Result::transpose)
        .collect::<Result<Vec<_>, _>>()?;

    let known: HashSet<CanonicalId> = known.into_iter().map(CanonicalId::from_database).collect();
    let mut ledger = Ledger::new(
        known,
        states,
        from_micros(now_micros)?,
        principal.to_owned(),
    );
    for (position, change) in changes.iter().enumerate() {
        ledger.apply(position, change)?;
    }

    let (rows, events) = ledger.changes();
    write_states(&mut tx, statements, &rows).await?;
    write_events(&mut tx, statements, events).await?;
    tx.commit().await?;

    Ok(changes
        .iter()
        .map(|c| ledger.record(&c.canonical_id).cloned())
        .collect())
}

async fn write_states(
    tx: &mut sqlx::PgConnection,
    statements: Statements,
    rows: &[(&CanonicalId, &StateRecord)],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    let statuses: Vec<&str> = rows.iter().map(|(_, r)| r.state.as_str()).collect();
    let targets: Vec<Option<&str>> = rows
        .iter()
        .map(|(_, r)| r.state.redirect_target().map(CanonicalId::as_str))
        .collect();
    let reasons: Vec<&str> = rows.iter().map(|(_, r)| r.reason.as_str()).collect();
    let at: Vec<i64> = rows.iter().map(|(_, r)| to_micros(r.changed_at)).collect();
    let by: Vec<&str> = rows.iter().map(|(_, r)| r.changed_by.as_str()).collect();
    sqlx::query(
        "INSERT INTO canonical_id_states \
             (canonical_id, status, redirect_target, reason, changed_at, changed_by) \
         SELECT id, status, target, reason, timestamptz 'epoch' + at * interval '1 microsecond', by \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[]) \
             AS r(id, status, target, reason, at, by) \
         ON CONFLICT (canonical_id) DO UPDATE SET status = excluded.status, \
             redirect_target = excluded.redirect_target, reason = excluded.reason, \
             changed_at = excluded.changed_at, changed_by = excluded.changed_by",
    )
    .bind(ids)
    .bind(statuses)
    .bind(targets)
    .bind(reasons)
    .bind(at)
    .bind(by)
    .execute(statements.on(tx))
    .await?;
    Ok(())
}

async fn write_events(
    tx: &mut sqlx::PgConnection,
    statements: Statements,
    events: &[Event],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = events.iter().map(|e| e.canonical_id.as_str()).collect();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    let targets: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.target.as_ref().map(CanonicalId::as_str))
        .collect();
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    let by: Vec<&str> = events.iter().map(|e| e.changed_by.as_str()).collect();
    // In call order: the identity column numbers them as they happened. `changed_at` is the
    // transaction's time, the column's default.
    sqlx::query(
        "INSERT INTO canonical_id_events (canonical_id, action, target_canonical_id, reason, changed_by) \
         SELECT id, action, target, reason, by \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
             WITH ORDINALITY AS e(id, action, target, reason, by, i) \
         ORDER BY i",
    )
    .bind(ids)
    .bind(actions)
    .bind(targets)
    .bind(reasons)
    .bind(by)
    .execute(statements.on(tx))
    .await?;
    Ok(())
}

/// The events of each ID, grouped by ID in the order given, each ID's oldest first.
///
/// # Errors
/// Any database error.
pub async fn events(
    pool: &PgPool,
    statements: Statements,
    ids: &[CanonicalId],
) -> Result<Vec<Event>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = ids.iter().map(CanonicalId::as_str).collect();
    // In a transaction, so that an unnamed statement keeps its server connection (see pooler).
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT e.canonical_id, e.action, e.target_canonical_id, e.reason, \
                (extract(epoch FROM e.changed_at) * 1000000)::int8, e.changed_by \
         FROM unnest($1::text[]) WITH ORDINALITY AS k(id, i) \
         JOIN canonical_id_events e ON e.canonical_id = k.id \
         ORDER BY k.i, e.event_id",
    )
    .bind(ids)
    .fetch_all(statements.on(&mut tx))
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|row| {
            let action: String = row.try_get(1)?;
            Ok(Event {
                canonical_id: CanonicalId::from_database(row.try_get(0)?),
                action: Action::from_name(&action).ok_or_else(|| {
                    sqlx::Error::Protocol(format!("unknown lifecycle action {action}"))
                })?,
                target: row
                    .try_get::<Option<String>, _>(2)?
                    .map(CanonicalId::from_database),
                reason: row.try_get(3)?,
                changed_at: from_micros(row.try_get(4)?)?,
                changed_by: row.try_get(5)?,
            })
        })
        .collect()
}
