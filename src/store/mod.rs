//! PostgreSQL: the schema's migrations, the schema guard and the queries, taking and returning
//! domain types. Every query binds its batch as arrays (`unnest`), so a call costs a constant number
//! of round trips whatever its size.

pub mod baseline;
pub mod cache;
pub mod migrations;
mod mint;
pub mod queries;
pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use self::cache::IdCache;
use crate::domain::{CanonicalId, MintPlan, Minted, SourceIdentifier};
use crate::error::Error;

/// How the connection pool is sized and how long a request may wait for a connection.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// A request waits at most this long for a connection, then fails with UNAVAILABLE rather than
    /// hanging while the database is gone.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// Opens a lazily-connecting pool: the server starts, and reports NOT_SERVING, even when the
/// database is not there yet.
pub fn connect_lazy(options: PgConnectOptions, settings: &PoolSettings) -> PgPool {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy_with(options)
}

/// The mappings, behind a connection pool and a bounded cache of the mappings already seen.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    cache: Arc<IdCache>,
}

impl Store {
    /// A store caching at most `capacity` mappings (0: none).
    pub fn with_id_cache(pool: PgPool, capacity: usize) -> Self {
        Self {
            pool,
            cache: Arc::new(IdCache::new(capacity)),
        }
    }

    /// The canonical ID of each identifier, in order; `None` where it has none. One round trip.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the database cannot be reached.
    #[tracing::instrument(name = "db.lookup", level = "debug", skip_all, fields(db.system = "postgresql"))]
    pub async fn lookup(
        &self,
        ids: &[SourceIdentifier],
    ) -> Result<Vec<Option<CanonicalId>>, Error> {
        Ok(lookup(&self.pool, &self.cache, ids.iter()).await?)
    }

    /// The identifiers that carry each canonical ID, in order. One round trip.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the database cannot be reached.
    #[tracing::instrument(name = "db.resolve", level = "debug", skip_all, fields(db.system = "postgresql"))]
    pub async fn resolve(&self, ids: &[CanonicalId]) -> Result<Vec<Vec<SourceIdentifier>>, Error> {
        let mut found: HashMap<CanonicalId, Vec<SourceIdentifier>> = HashMap::new();
        for (canonical_id, source) in queries::resolve(&self.pool, ids).await? {
            found.entry(canonical_id).or_default().push(source);
        }
        Ok(ids
            .iter()
            .map(|id| found.get(id).cloned().unwrap_or_default())
            .collect())
    }

    /// Answers a MintIds call; see [`mint`](self::mint) for how. The rows it creates record
    /// `created_by` (the call's principal) as their provenance.
    ///
    /// # Errors
    /// [`Error::PredecessorNotMinted`] before anything is written; [`Error::Unavailable`] and
    /// [`Error::Internal`] after rolling back whatever was written.
    #[tracing::instrument(name = "db.mint", level = "debug", skip_all, fields(db.system = "postgresql"))]
    pub async fn mint(&self, plan: MintPlan, created_by: &str) -> Result<Vec<Minted>, Error> {
        mint::mint(&self.pool, &self.cache, plan, created_by).await
    }
}

/// The canonical ID of each identifier, in order: from the cache where it has them, from one
/// lookup query for the rest, whose answers then join the cache.
async fn lookup<'a>(
    pool: &PgPool,
    cache: &IdCache,
    ids: impl Iterator<Item = &'a SourceIdentifier> + Clone,
) -> Result<Vec<Option<CanonicalId>>, sqlx::Error> {
    let mut found: Vec<Option<CanonicalId>> = ids.clone().map(|id| cache.get(id)).collect();
    let misses: Vec<usize> = (0..found.len()).filter(|&k| found[k].is_none()).collect();
    metrics::counter!(crate::metrics::ID_CACHE_LOOKUPS, "result" => "hit")
        .increment((found.len() - misses.len()) as u64);
    metrics::counter!(crate::metrics::ID_CACHE_LOOKUPS, "result" => "miss")
        .increment(misses.len() as u64);
    if misses.is_empty() {
        return Ok(found);
    }
    let ids: Vec<&SourceIdentifier> = ids.collect();
    let answers = queries::lookup(pool, misses.iter().map(|&k| ids[k])).await?;
    for (&k, answer) in misses.iter().zip(answers) {
        if let Some(id) = &answer {
            cache.insert(ids[k], id);
        }
        found[k] = answer;
    }
    Ok(found)
}
