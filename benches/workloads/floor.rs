//! The floor: the very statements the service sends (`idminter::store::queries`), straight from
//! sqlx over a pool like the server's, in the phases of `store::mint`: one lookup of every item and
//! predecessor outside any transaction; then, if anything is new, one transaction that inserts the
//! new roots with freshly drawn IDs and the inheritors of known predecessors, settles skipped rows
//! by looking them up again, and commits (durably, as the server's does). No gRPC, no domain
//! planning: what is left between the two is the cost of the service itself.

use anyhow::bail;
use idminter::domain::{CanonicalId, SourceIdentifier};
use idminter::store::queries::{self, NewRow};
use sqlx::PgPool;

use crate::data::{Counts, Entry, Expect, Ident};
use crate::workload::Workload;

/// How often a drawn ID may be taken before the floor gives up, as in `store::mint`.
const MAX_ID_DRAWS: usize = 8;

/// Runs one call's statements and checks the answers.
///
/// # Errors
/// A statement failed, or an answer is not the expected one.
pub async fn call(pool: &PgPool, workload: Workload, batch: Vec<Entry>) -> anyhow::Result<()> {
    if workload == Workload::Lookup {
        let n = batch.len();
        let ids: Vec<SourceIdentifier> = batch
            .into_iter()
            .map(|e| domain(e.ident))
            .collect::<anyhow::Result<_>>()?;
        let found = queries::lookup(pool, &ids).await?;
        let known = found.iter().filter(|id| id.is_some()).count();
        if known != n {
            bail!("lookup found {known} of {n}");
        }
        return Ok(());
    }

    let expected = Counts::of(&batch);
    let n = batch.len();
    // The items, then their predecessors: what the service looks up.
    let mut to_look_up = Vec::with_capacity(n + n / 10);
    let mut predecessor_of = Vec::with_capacity(n);
    let mut predecessors = Vec::new();
    for e in batch {
        to_look_up.push(domain(e.ident)?);
        predecessor_of.push(e.predecessor.is_some().then(|| n + predecessors.len()));
        if let Some(p) = e.predecessor {
            predecessors.push(domain(p)?);
        }
    }
    to_look_up.extend(predecessors);
    let mut found = queries::lookup(pool, &to_look_up).await?;

    let mut got = Counts::default();
    // (item, ID, minted) for every new item.
    let mut rows: Vec<(usize, CanonicalId, bool)> = Vec::new();
    for (i, predecessor) in predecessor_of.iter().enumerate() {
        if found[i].is_some() {
            got.add(Expect::Existing);
            continue;
        }
        match predecessor {
            None => rows.push((i, fresh_id(), true)),
            Some(p) => match found[*p].take() {
                Some(id) => rows.push((i, id, false)),
                None => bail!("predecessor of item {i} is not minted"),
            },
        }
    }
    if !rows.is_empty() {
        // As `store::mint` begins it: READ COMMITTED whatever the database default.
        let mut tx = pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await?;
        for _ in 0..MAX_ID_DRAWS {
            let new_rows: Vec<NewRow<'_>> = rows
                .iter()
                .map(|(i, id, minted)| NewRow {
                    identifier: &to_look_up[*i],
                    canonical_id: id,
                    minted: *minted,
                })
                .collect();
            let was_inserted = queries::insert(&mut *tx, &new_rows, "anonymous").await?;
            drop(new_rows);
            let mut skipped = Vec::new();
            for (row, inserted) in rows.into_iter().zip(was_inserted) {
                if inserted {
                    got.add(if row.2 {
                        Expect::Minted
                    } else {
                        Expect::Inherited
                    });
                } else {
                    skipped.push(row);
                }
            }
            if skipped.is_empty() {
                rows = skipped;
                break;
            }
            // A skipped row is there now (EXISTING) or lost its ID draw (drawn again).
            let again: Vec<SourceIdentifier> = skipped
                .iter()
                .map(|(i, _, _)| to_look_up[*i].clone())
                .collect();
            let there = queries::lookup(&mut *tx, &again).await?;
            rows = Vec::new();
            for ((i, _, minted), there) in skipped.into_iter().zip(there) {
                match (there.is_some(), minted) {
                    (true, _) => got.add(Expect::Existing),
                    (false, true) => rows.push((i, fresh_id(), true)),
                    (false, false) => bail!("inheritor {i} conflicted but is not there"),
                }
            }
        }
        if !rows.is_empty() {
            bail!("{} rows could not be inserted", rows.len());
        }
        tx.commit().await?;
    }
    if got != expected {
        bail!("the floor settled {got:?}, expected {expected:?}");
    }
    Ok(())
}

fn fresh_id() -> CanonicalId {
    CanonicalId::generate(&mut rand::rng())
}

fn domain(ident: Ident) -> anyhow::Result<SourceIdentifier> {
    SourceIdentifier::parse(
        ident.identifier_type.to_owned(),
        ident.ontology_type.to_owned(),
        ident.value,
    )
    .map_err(|e| anyhow::anyhow!("invalid benchmark identifier: {e:?}"))
}
