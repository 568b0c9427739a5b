//! PostgreSQL: the schema's migrations, the schema guard and the queries, taking and returning
//! domain types. Every query binds its batch as arrays (`unnest`), so a call costs a constant number
//! of round trips whatever its size.

pub mod baseline;
pub mod cache;
pub mod lifecycle;
pub mod migrations;
mod mint;
pub mod pooler;
pub mod queries;
pub mod replica;
pub mod schema;
pub mod states;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use self::cache::IdCache;
use self::pooler::Statements;
use self::replica::ReadReplica;
use self::states::{States, StatesView};
use crate::domain::{CanonicalId, Change, Event, MintPlan, Minted, SourceIdentifier, StateRecord};
use crate::error::Error;

/// How the connection pool is sized and how long a request may wait for a connection.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// A request waits at most this long for a connection, then fails with UNAVAILABLE rather than
    /// hanging while the database is gone.
    pub acquire_timeout: Duration,
}

/// Opens a lazily-connecting pool: the server starts, and reports NOT_SERVING, even when the
/// database is not there yet.
pub fn connect_lazy(options: PgConnectOptions, settings: &PoolSettings) -> PgPool {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy_with(options)
}

/// The mappings, behind a connection pool (and optionally a read replica's) and a bounded cache
/// of the mappings already seen.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    reads: Reads,
    cache: Arc<IdCache>,
    states: Arc<States>,
}

impl Store {
    /// A store caching at most `capacity` mappings (0: none).
    pub fn with_id_cache(pool: PgPool, capacity: usize) -> Self {
        Self {
            reads: Reads {
                primary: pool.clone(),
                replica: None,
                statements: Statements::Prepared,
            },
            pool,
            cache: Arc::new(IdCache::new(capacity)),
            states: Arc::default(),
        }
    }

    /// The lifecycle states as of now (see [`states`](self::states) for why never stale). One
    /// small read of the primary, plus a reload when another call changed them.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the database cannot be reached.
    pub async fn states(&self) -> Result<Arc<StatesView>, Error> {
        Ok(self
            .states
            .current(&self.pool, self.reads.statements)
            .await?)
    }

    /// Applies a lifecycle call; see [`lifecycle`](self::lifecycle).
    ///
    /// # Errors
    /// [`Error::LifecycleRefused`] before anything is written; [`Error::Unavailable`].
    pub async fn change(
        &self,
        changes: &[Change],
        principal: &str,
    ) -> Result<Vec<Option<StateRecord>>, Error> {
        lifecycle::change(&self.pool, self.reads.statements, changes, principal).await
    }

    /// The lifecycle events of each ID, oldest first.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the database cannot be reached.
    pub async fn events(&self, ids: &[CanonicalId]) -> Result<Vec<Event>, Error> {
        Ok(lifecycle::events(&self.pool, self.reads.statements, ids).await?)
    }

    /// Statements go unnamed, each in a transaction of its own, for a pooler in transaction mode;
    /// see [`pooler`](self::pooler).
    pub fn with_statements(mut self, statements: Statements) -> Self {
        self.reads.statements = statements;
        self
    }

    /// Reads go to `replica` first; see [`replica`](self::replica).
    pub fn with_read_replica(mut self, replica: ReadReplica) -> Self {
        self.reads.replica = Some(replica);
        self
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
        Ok(lookup(&self.reads, &self.cache, ids.iter()).await?)
    }

    /// The identifiers that carry each canonical ID, in order. One round trip.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the database cannot be reached.
    #[tracing::instrument(name = "db.resolve", level = "debug", skip_all, fields(db.system = "postgresql"))]
    pub async fn resolve(&self, ids: &[CanonicalId]) -> Result<Vec<Vec<SourceIdentifier>>, Error> {
        let mut found: HashMap<CanonicalId, Vec<SourceIdentifier>> = HashMap::new();
        for (canonical_id, source) in self.reads.resolve(ids).await? {
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
        mint::mint(&self.pool, &self.reads, &self.cache, plan, created_by).await
    }
}

/// The canonical ID of each identifier, in order: from the cache where it has them, from one
/// lookup query for the rest, whose answers then join the cache.
async fn lookup<'a>(
    reads: &Reads,
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
    let answers = reads
        .lookup(&misses.iter().map(|&k| ids[k]).collect::<Vec<_>>())
        .await?;
    for (&k, answer) in misses.iter().zip(answers) {
        if let Some(id) = &answer {
            cache.insert(ids[k], id);
        }
        found[k] = answer;
    }
    Ok(found)
}

/// Where reads go: the read replica first when there is one and it is up, the primary for
/// whatever the replica lacks (it may lag) and for everything while it is down.
#[derive(Debug, Clone)]
struct Reads {
    primary: PgPool,
    replica: Option<ReadReplica>,
    statements: Statements,
}

impl Reads {
    /// [`queries::lookup`] on `pool`, sent the configured way.
    async fn lookup_on<'a>(
        &self,
        pool: &PgPool,
        ids: impl IntoIterator<Item = &'a SourceIdentifier>,
    ) -> Result<Vec<Option<CanonicalId>>, sqlx::Error> {
        match self.statements {
            Statements::Prepared => queries::lookup(pool, ids).await,
            Statements::Unnamed => {
                let mut tx = pool.begin().await?;
                let found = queries::lookup(Statements::Unnamed.on(&mut tx), ids).await?;
                tx.commit().await?;
                Ok(found)
            }
        }
    }

    /// [`queries::resolve`] on `pool`, sent the configured way.
    async fn resolve_on(
        &self,
        pool: &PgPool,
        ids: &[CanonicalId],
    ) -> Result<Vec<(CanonicalId, SourceIdentifier)>, sqlx::Error> {
        match self.statements {
            Statements::Prepared => queries::resolve(pool, ids).await,
            Statements::Unnamed => {
                let mut tx = pool.begin().await?;
                let found = queries::resolve(Statements::Unnamed.on(&mut tx), ids).await?;
                tx.commit().await?;
                Ok(found)
            }
        }
    }

    /// The replica's pool, when reads should try it.
    fn replica(&self) -> Option<(&ReadReplica, &PgPool)> {
        let replica = self.replica.as_ref()?;
        Some((replica, replica.pool()?))
    }

    /// [`queries::lookup`], on the replica and then on the primary for what the replica lacks.
    async fn lookup(
        &self,
        ids: &[&SourceIdentifier],
    ) -> Result<Vec<Option<CanonicalId>>, sqlx::Error> {
        let Some((replica, pool)) = self.replica() else {
            return self.lookup_on(&self.primary, ids.iter().copied()).await;
        };
        let mut found = match self.lookup_on(pool, ids.iter().copied()).await {
            Ok(found) => found,
            Err(e) if replica.failed(&e) => {
                return self.lookup_on(&self.primary, ids.iter().copied()).await;
            }
            Err(e) => return Err(e),
        };
        let missing: Vec<usize> = (0..found.len()).filter(|&k| found[k].is_none()).collect();
        if !missing.is_empty() {
            let again = self
                .lookup_on(&self.primary, missing.iter().map(|&k| ids[k]))
                .await?;
            for (&k, answer) in missing.iter().zip(again) {
                found[k] = answer;
            }
        }
        Ok(found)
    }

    /// [`queries::resolve`], on the replica and then on the primary for the IDs it has no
    /// identifier for.
    async fn resolve(
        &self,
        ids: &[CanonicalId],
    ) -> Result<Vec<(CanonicalId, SourceIdentifier)>, sqlx::Error> {
        let Some((replica, pool)) = self.replica() else {
            return self.resolve_on(&self.primary, ids).await;
        };
        let mut found = match self.resolve_on(pool, ids).await {
            Ok(found) => found,
            Err(e) if replica.failed(&e) => return self.resolve_on(&self.primary, ids).await,
            Err(e) => return Err(e),
        };
        let seen: std::collections::HashSet<&CanonicalId> =
            found.iter().map(|(id, _)| id).collect();
        let missing: Vec<CanonicalId> = ids
            .iter()
            .filter(|id| !seen.contains(id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            found.extend(self.resolve_on(&self.primary, &missing).await?);
        }
        Ok(found)
    }
}
