//! This process's copy of the lifecycle states (every ID ever redirected, withdrawn or restored),
//! kept current by one cheap read per call.
//!
//! Why a cached answer never hides a redirect or withdrawal made through another process: the
//! identifier -> ID mappings (the [`IdCache`](super::cache::IdCache)) never change, so they stay
//! cached; the status of an ID is never cached without a check. Every statement that changes
//! `canonical_id_states` bumps `canonical_id_states_generation` in the same transaction (a
//! trigger), and every call that answers statuses first reads that counter (one row, one index
//! probe, run alongside the call's lookup). When it moved, the copy is reloaded, in one statement
//! that reads the counter and the states from one snapshot, before answering. A call that begins
//! after a change committed therefore sees it, whichever process made it.
//!
//! The states table holds only IDs that were ever changed (about 2,200 merges for our reference
//! user), so the copy is small and a reload is cheap; with nothing ever changed, a status costs no
//! hashing at all.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sqlx::{PgExecutor, PgPool, Row};

use super::lifecycle::{record_from_row, state_columns};
use super::pooler::Statements;
use crate::domain::KnownStates;

/// The states as of one generation of the counter.
#[derive(Debug, Default)]
pub struct StatesView {
    pub generation: i64,
    pub states: KnownStates,
}

/// The current copy, replaced whole when the counter moves.
#[derive(Debug, Default)]
pub struct States {
    current: RwLock<Arc<StatesView>>,
    /// One reload at a time; the others wait for it and then use its result.
    reloading: tokio::sync::Mutex<()>,
}

impl States {
    /// The states as of now: the copy if the counter has not moved, else a fresh one.
    ///
    /// # Errors
    /// Any database error.
    pub async fn current(
        &self,
        pool: &PgPool,
        statements: Statements,
    ) -> Result<Arc<StatesView>, sqlx::Error> {
        const GENERATION: &str = "SELECT generation FROM canonical_id_states_generation";
        let generation: i64 = match statements {
            Statements::Prepared => sqlx::query_scalar(GENERATION).fetch_one(pool).await?,
            Statements::Unnamed => {
                let mut tx = pool.begin().await?;
                let generation = sqlx::query_scalar(GENERATION)
                    .fetch_one(Statements::Unnamed.on(&mut tx))
                    .await?;
                tx.commit().await?;
                generation
            }
        };
        self.at_least(pool, statements, generation).await
    }

    /// A copy at `generation` or later.
    async fn at_least(
        &self,
        pool: &PgPool,
        statements: Statements,
        generation: i64,
    ) -> Result<Arc<StatesView>, sqlx::Error> {
        let copy = self.copy();
        if copy.generation >= generation {
            return Ok(copy);
        }
        let _one_at_a_time = self.reloading.lock().await;
        let copy = self.copy();
        if copy.generation >= generation {
            return Ok(copy);
        }
        let fresh = Arc::new(match statements {
            Statements::Prepared => load(pool).await?,
            Statements::Unnamed => {
                let mut tx = pool.begin().await?;
                let fresh = load(Statements::Unnamed.on(&mut tx)).await?;
                tx.commit().await?;
                fresh
            }
        });
        tracing::debug!(
            generation = fresh.generation,
            states = fresh.states.len(),
            "reloaded the lifecycle states"
        );
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if fresh.generation > current.generation {
            *current = fresh.clone();
        }
        Ok(fresh)
    }

    fn copy(&self) -> Arc<StatesView> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Every recorded state with the counter, from one snapshot (one statement).
async fn load<'e>(db: impl PgExecutor<'e>) -> Result<StatesView, sqlx::Error> {
    let rows = sqlx::query(concat!(
        "SELECT g.generation, ",
        state_columns!(),
        " FROM canonical_id_states_generation g LEFT JOIN canonical_id_states s ON true"
    ))
    .fetch_all(db)
    .await?;
    let mut generation = 0;
    let mut states = HashMap::with_capacity(rows.len());
    for row in rows {
        generation = row.try_get(0)?;
        if let Some((id, record)) = record_from_row(&row, 1)? {
            states.insert(id, record);
        }
    }
    Ok(StatesView {
        generation,
        states: KnownStates::new(states),
    })
}
