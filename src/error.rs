//! The one error type of the service, in two kinds: the caller's mistakes, safe to show them, and
//! our failures (unavailable dependencies, bugs), which stay opaque. `grpc::error` maps it to a
//! gRPC status in one place.

use std::fmt;

use crate::domain::{PlanError, Refused, Violations};

#[derive(thiserror::Error)]
pub enum Error {
    /// The request is malformed: nothing was written.
    #[error("{0}")]
    InvalidArgument(#[from] Violations),
    /// New identifiers name predecessors that have no canonical ID: nothing was written.
    #[error("{0}")]
    PredecessorNotMinted(#[from] PlanError),
    /// A lifecycle rule refuses an entry (a cycle, a withdrawn target, ...): nothing was written.
    #[error("{0}")]
    LifecycleRefused(#[from] Refused),
    /// The database or the schema is not there; the message is one line, safe for callers.
    #[error("{0}")]
    Unavailable(String),
    /// The caller's deadline (or the server's request timeout) passed.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// A bug or an unexpected database error; its cause chain is logged, never shown to callers.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<sqlx::Error> for Error {
    /// Losing the database is expected and transient (UNAVAILABLE, with a cause that names no SQL);
    /// anything else from the database is a bug of ours (INTERNAL).
    fn from(e: sqlx::Error) -> Self {
        match unavailable(&e) {
            Some(why) => Error::Unavailable(why),
            None => Error::Internal(anyhow::Error::new(e).context("database error")),
        }
    }
}

/// Why the database is unavailable, when `e` says it is (one line, no SQL); `None` for an error
/// that is not about availability.
pub fn unavailable(e: &sqlx::Error) -> Option<String> {
    Some(match e {
        sqlx::Error::PoolTimedOut => {
            "database unavailable: no connection free within the pool's acquire timeout".to_owned()
        }
        sqlx::Error::PoolClosed => "shutting down".to_owned(),
        sqlx::Error::Io(io) => format!("database unreachable: {io}"),
        sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => {
            "database unreachable: connection failed".to_owned()
        }
        sqlx::Error::Database(db) if db.code().as_deref() == Some(READ_ONLY) => {
            READ_ONLY_DIAGNOSIS.to_owned()
        }
        sqlx::Error::Database(db) if is_transient(db.code().as_deref()) => format!(
            "database unavailable (SQLSTATE {})",
            db.code().unwrap_or_default()
        ),
        _ => return None,
    })
}

/// SQLSTATE 25006, read_only_sql_transaction: a write reached a hot standby (as during a
/// failover, before the promoted replica answers at the primary's address).
const READ_ONLY: &str = "25006";

/// What callers see when the database at `--database-url` is read-only.
pub const READ_ONLY_DIAGNOSIS: &str = "database is read-only: the server at --database-url is a hot standby (or has \
     default_transaction_read_only on), not the primary; point it at the primary or promote the standby";

/// SQLSTATEs that mean "try again", not that our SQL is wrong: class 08 (connection exception),
/// 57P01-57P03 (shutdown), 53300 (too many connections), 25006 (read-only, as after a failover),
/// 57014 (statement cancelled), 40001 and 40P01 (serialization failure, deadlock).
fn is_transient(code: Option<&str>) -> bool {
    matches!(code, Some(c) if c.starts_with("08") || c.starts_with("57P")
        || ["53300", "25006", "57014", "40001", "40P01"].contains(&c))
}

impl fmt::Debug for Error {
    /// Logs show the whole cause chain.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            writeln!(f, "Caused by:\n\t{cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// An error with its whole chain of causes on one line ("connect: tls handshake: certificate
/// expired"): wrappers such as a TLS or transport error often say why only in a cause.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_and_connection_sqlstates_are_transient_and_others_are_not() {
        for code in [
            "08006", "08001", "57P01", "57P03", "53300", "25006", "40001", "40P01",
        ] {
            assert!(is_transient(Some(code)), "{code}");
        }
        for code in ["23505", "42P01", "XX000"] {
            assert!(!is_transient(Some(code)), "{code}");
        }
        assert!(!is_transient(None));
    }

    #[test]
    fn pool_exhaustion_is_unavailable() {
        assert!(matches!(
            Error::from(sqlx::Error::PoolTimedOut),
            Error::Unavailable(_)
        ));
    }
}
