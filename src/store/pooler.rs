//! Working through a connection pooler in transaction mode (pgbouncer's `pool_mode = transaction`),
//! which hands each transaction whichever server connection is free.
//!
//! sqlx prepares every statement with bind parameters as a *named* statement (`sqlx_s_1`, ...) in
//! one protocol exchange and binds it in a second, each ending in a Sync. Outside a transaction the
//! pooler may send the two to different servers ("prepared statement does not exist"), and names
//! one client left on a server collide with another client's ("already exists"). Turning sqlx's
//! statement cache off does not help: it still names every statement. pgbouncer 1.21 can track
//! named statements (`max_prepared_statements`), but Debian bookworm ships 1.18.
//!
//! So with `--transaction-pooler` every statement idminter sends through its pools is *unnamed*
//! (each replaces the last, so nothing is left behind) and runs inside an explicit transaction
//! (which pins one server connection from BEGIN to COMMIT); MintIds already runs its writes in
//! one. The cost is a BEGIN and a COMMIT per read and a parse and plan per statement, small
//! against a batch of thousands of identifiers. Without the flag nothing changes: named, cached
//! statements on a direct connection, one round trip per read.

use std::future::Future;
use std::pin::Pin;

use futures_core::stream::BoxStream;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Either, Execute, Executor, PgConnection, Postgres, SqlStr};

/// How statements are sent: prepared and cached (a direct connection), or unnamed (through a
/// transaction-mode pooler).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Statements {
    #[default]
    Prepared,
    Unnamed,
}

impl Statements {
    /// `conn` as an executor sending statements this way.
    pub fn on(self, conn: &mut PgConnection) -> On<'_> {
        On {
            conn,
            unnamed: self == Statements::Unnamed,
        }
    }
}

/// A connection that sends its statements prepared or unnamed; see [`Statements::on`].
#[derive(Debug)]
pub struct On<'c> {
    conn: &'c mut PgConnection,
    unnamed: bool,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl<'c> Executor<'c> for On<'c> {
    type Database = Postgres;

    fn fetch_many<'e, 'q, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: Execute<'q, Postgres>,
        'q: 'e,
        E: 'q,
    {
        if self.unnamed {
            self.conn.fetch_many(Unnamed(query))
        } else {
            self.conn.fetch_many(query)
        }
    }

    fn fetch_optional<'e, 'q, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: Execute<'q, Postgres>,
        'q: 'e,
        E: 'q,
    {
        if self.unnamed {
            self.conn.fetch_optional(Unnamed(query))
        } else {
            self.conn.fetch_optional(query)
        }
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        self.conn.prepare_with(sql, parameters)
    }
}

/// A query sent as an unnamed statement (sqlx's "not persistent").
struct Unnamed<E>(E);

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Unnamed<E> {
    fn sql(self) -> SqlStr {
        self.0.sql()
    }

    fn statement(&self) -> Option<&PgStatement> {
        self.0.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, BoxDynError> {
        self.0.take_arguments()
    }

    fn persistent(&self) -> bool {
        false
    }
}
