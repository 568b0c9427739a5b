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
//! Under concurrency the counter reads are shared without weakening that: a call joins a read
//! only if the read *started* after the call did ([`Fresh`]), so with many calls in flight
//! there is one counter read at a time instead of one per call, and each call still waits for
//! a read that began after it.
//!
//! The states table holds only IDs that were ever changed (about 2,200 merges for our reference
//! user), so the copy is small and a reload is cheap; with nothing ever changed, a status costs no
//! hashing at all.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The counter reads, shared between calls that may share them.
    generation: Fresh,
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
        let generation = self
            .generation
            .read(|| async {
                match statements {
                    Statements::Prepared => sqlx::query_scalar(GENERATION).fetch_one(pool).await,
                    Statements::Unnamed => {
                        let mut tx = pool.begin().await?;
                        let generation = sqlx::query_scalar(GENERATION)
                            .fetch_one(Statements::Unnamed.on(&mut tx))
                            .await?;
                        tx.commit().await?;
                        Ok(generation)
                    }
                }
            })
            .await?;
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

/// Reads of a value that only grows (the generation counter), shared between concurrent callers
/// without ever answering a caller with a read that began before it did.
///
/// Reads are numbered as they start. A caller notes how many had started when it arrived; any
/// read numbered above that began after it, so its result is fresh enough for that caller. Callers
/// queue (FIFO) for the right to read; the one at the head reads unless a fresh-enough result was
/// published while it waited, in which case it takes that. With N calls arriving together there is
/// one read for all of them (plus at most the one already in flight); with one call at a time,
/// each reads for itself, as without sharing.
#[derive(Debug, Default)]
pub struct Fresh {
    /// Reads started so far.
    started: AtomicU64,
    /// The latest completed read: its number and its value.
    latest: std::sync::Mutex<(u64, i64)>,
    /// Held by the caller that is reading.
    reading: tokio::sync::Mutex<()>,
}

impl Fresh {
    /// A value read after this call began: shared, or read by `read` here.
    ///
    /// # Errors
    /// `read`'s error, when this caller did the reading (others waiting then read themselves).
    pub async fn read<F, Fut, E>(&self, read: F) -> Result<i64, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<i64, E>>,
    {
        let arrived = self.started.load(Ordering::SeqCst);
        let _turn = self.reading.lock().await;
        if let Some(value) = self.published_after(arrived) {
            return Ok(value);
        }
        let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let value = read().await?;
        let mut latest = self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if number > latest.0 {
            *latest = (number, value);
        }
        Ok(value)
    }

    /// The latest result, if its read started after `arrived` reads had.
    fn published_after(&self, arrived: u64) -> Option<i64> {
        let (number, value) = *self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (number > arrived).then_some(value)
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;

    use tokio::sync::oneshot;

    use super::Fresh;

    #[tokio::test]
    async fn one_caller_at_a_time_reads_every_time() {
        let fresh = Fresh::default();
        let mut reads = 0;
        for value in [1, 2, 3] {
            let got = fresh
                .read(|| {
                    reads += 1;
                    async move { Ok::<_, Infallible>(value) }
                })
                .await
                .unwrap();
            assert_eq!(got, value, "a caller never gets an older read's value");
        }
        assert_eq!(reads, 3);
    }

    #[tokio::test]
    async fn a_caller_arriving_during_a_read_waits_for_the_next_one_which_later_callers_share() {
        let fresh = Arc::new(Fresh::default());
        // The first read is held open until we say.
        let (release_first, first_value) = oneshot::channel::<i64>();
        let first = tokio::spawn({
            let fresh = fresh.clone();
            async move {
                fresh
                    .read(|| async move { Ok::<_, Infallible>(first_value.await.unwrap()) })
                    .await
            }
        });
        while fresh.started.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Two callers arrive while it is in flight: it began before them, so neither may use it.
        let (second_reads, third_reads) = (
            Arc::new(AtomicCount::default()),
            Arc::new(AtomicCount::default()),
        );
        let later = |count: Arc<AtomicCount>| {
            let fresh = fresh.clone();
            tokio::spawn(async move {
                fresh
                    .read(|| async move {
                        count.bump();
                        Ok::<_, Infallible>(2)
                    })
                    .await
            })
        };
        let second = later(second_reads.clone());
        let third = later(third_reads.clone());
        tokio::task::yield_now().await;

        release_first.send(1).unwrap();

        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(
            second.await.unwrap().unwrap(),
            2,
            "a read that began after it"
        );
        assert_eq!(
            third.await.unwrap().unwrap(),
            2,
            "a read that began after it"
        );
        assert_eq!(
            second_reads.get() + third_reads.get(),
            1,
            "the two late callers share one read"
        );
    }

    #[derive(Default)]
    struct AtomicCount(std::sync::atomic::AtomicUsize);

    impl AtomicCount {
        fn bump(&self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        fn get(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }
}
