//! Carrying out a MintIds plan in one transaction, correct against concurrent callers on other
//! server processes without locks of our own:
//!
//! 1. Look up every identifier and predecessor, in the cache and then in the table (outside any
//!    transaction: mappings never change, so what is known stays known). If all are known, that is
//!    the answer: at most one round trip, no write. With a read replica, the table is first the
//!    replica's and then the primary's for whatever the replica lacks, so a lagging replica never
//!    leads to minting an identifier the primary already has.
//! 2. Insert the new roots with freshly drawn IDs, and the identifiers inheriting from an already
//!    minted predecessor, with `ON CONFLICT DO NOTHING`. A row comes back skipped when another call
//!    inserted the identifier first, even one that committed after our snapshot (the insert sees
//!    and waits for every conflicting row), or when its drawn ID was taken.
//! 3. Look the skipped rows up again (a new statement sees every committed row): those found are
//!    EXISTING with the other call's ID; a root not found lost only its ID draw, and is retried
//!    with a fresh one.
//! 4. Insert the identifiers inheriting from a root of this call, now that every root's final ID is
//!    known, and settle their skipped rows as in step 3.
//!
//! The uniqueness constraints decide every race; the code only reports what they decided. Only
//! step 1's reads fill the cache, never what a call writes.

use sqlx::PgPool;

use super::cache::IdCache;
use super::pooler::Statements;
use super::queries::{self, NewRow};
use crate::domain::{CanonicalId, Inheritance, MintOutcome, MintPlan, Minted, Pending, Slot};
use crate::error::Error;

/// How often a root may draw an ID that is already taken before we call it a bug. With 6.3 x 10^11
/// IDs, even a table of 10^9 rows makes one retry rare and eight consecutive ones impossible.
const MAX_ID_DRAWS: usize = 8;

pub(super) async fn mint(
    pool: &PgPool,
    reads: &super::Reads,
    cache: &IdCache,
    plan: MintPlan,
    created_by: &str,
) -> Result<Vec<Minted>, Error> {
    let known = super::lookup(reads, cache, plan.to_look_up()).await?;
    let mut pending = plan.resolve(known)?;

    if !pending.is_complete() {
        // READ COMMITTED whatever the database's default: step 3 relies on each statement seeing
        // rows committed after the transaction began.
        let mut tx = pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await?;
        let statements = reads.statements;
        insert_roots_and_known_inheritors(&mut tx, statements, &mut pending, created_by).await?;
        insert_new_inheritors(&mut tx, statements, &mut pending, created_by).await?;
        tx.commit().await?;
    }
    pending.into_answers().map_err(|slot| {
        Error::Internal(anyhow::anyhow!(
            "mint left identifier {slot} of the batch unanswered"
        ))
    })
}

/// One planned row.
struct Planned {
    /// The identifier's slot in the plan.
    slot: Slot,
    id: CanonicalId,
    /// Minted here (a root), rather than inherited.
    minted: bool,
}

impl Planned {
    /// A root's row, with a freshly drawn ID.
    fn root(slot: Slot) -> Self {
        Self {
            slot,
            id: fresh_id(),
            minted: true,
        }
    }

    fn inheriting(slot: Slot, id: CanonicalId) -> Self {
        Self {
            slot,
            id,
            minted: false,
        }
    }
}

async fn insert_roots_and_known_inheritors(
    tx: &mut sqlx::PgConnection,
    statements: Statements,
    pending: &mut Pending,
    created_by: &str,
) -> Result<(), Error> {
    let mut rows: Vec<Planned> = pending
        .roots()
        .iter()
        .map(|&slot| Planned::root(slot))
        .chain(
            pending
                .inherit_known()
                .iter()
                .map(|(slot, id)| Planned::inheriting(*slot, id.clone())),
        )
        .collect();
    for _ in 0..MAX_ID_DRAWS {
        let not_found = insert_and_settle(tx, statements, pending, rows, created_by).await?;
        if not_found.is_empty() {
            return Ok(());
        }
        if let Some(row) = not_found.iter().find(|row| !row.minted) {
            return Err(vanished(pending, row.slot));
        }
        // Only drawn IDs that were already taken remain: draw again.
        rows = not_found
            .into_iter()
            .map(|row| Planned::root(row.slot))
            .collect();
    }
    Err(Error::Internal(anyhow::anyhow!(
        "{MAX_ID_DRAWS} consecutive canonical ID draws were all taken"
    )))
}

async fn insert_new_inheritors(
    tx: &mut sqlx::PgConnection,
    statements: Statements,
    pending: &mut Pending,
    created_by: &str,
) -> Result<(), Error> {
    let rows = pending
        .inherit_new()
        .iter()
        .map(|&Inheritance { heir, root }| {
            let id = pending.answer(root).cloned().ok_or_else(|| {
                Error::Internal(anyhow::anyhow!(
                    "root {root} unsettled before its inheritors"
                ))
            })?;
            Ok(Planned::inheriting(heir, id))
        })
        .collect::<Result<Vec<Planned>, Error>>()?;
    let not_found = insert_and_settle(tx, statements, pending, rows, created_by).await?;
    match not_found.first() {
        None => Ok(()),
        Some(row) => Err(vanished(pending, row.slot)),
    }
}

/// Inserts `rows`, settles the inserted ones as MINTED or INHERITED and the skipped ones that now
/// exist as EXISTING, and returns the rows that were skipped yet are not there.
async fn insert_and_settle(
    tx: &mut sqlx::PgConnection,
    statements: Statements,
    pending: &mut Pending,
    rows: Vec<Planned>,
    created_by: &str,
) -> Result<Vec<Planned>, Error> {
    if rows.is_empty() {
        return Ok(rows);
    }
    let new_rows: Vec<NewRow<'_>> = rows
        .iter()
        .map(|row| NewRow {
            identifier: pending.identifier(row.slot),
            canonical_id: &row.id,
            minted: row.minted,
        })
        .collect();
    let was_inserted = queries::insert(statements.on(&mut *tx), &new_rows, created_by).await?;
    drop(new_rows);
    let mut skipped = Vec::new();
    for (row, inserted) in rows.into_iter().zip(was_inserted) {
        if inserted {
            let outcome = if row.minted {
                MintOutcome::Minted
            } else {
                MintOutcome::Inherited
            };
            pending.settle(row.slot, row.id, outcome);
        } else {
            skipped.push(row);
        }
    }
    if skipped.is_empty() {
        return Ok(skipped);
    }

    let found = queries::lookup(
        statements.on(&mut *tx),
        skipped.iter().map(|row| pending.identifier(row.slot)),
    )
    .await?;
    let mut not_found = Vec::new();
    for (row, found) in skipped.into_iter().zip(found) {
        match found {
            Some(id) => pending.settle(row.slot, id, MintOutcome::Existing),
            None => not_found.push(row),
        }
    }
    Ok(not_found)
}

/// A freshly drawn ID. The thread's generator is fetched per draw, since it cannot be held across
/// an await.
fn fresh_id() -> CanonicalId {
    CanonicalId::generate(&mut rand::rng())
}

/// An inheriting row was skipped for a conflict, yet its identifier is not there: only a deleted
/// row could do that, which the schema forbids.
fn vanished(pending: &Pending, slot: Slot) -> Error {
    Error::Internal(anyhow::anyhow!(
        "identifier {} conflicted on insert but is not in the table",
        pending.identifier(slot)
    ))
}
