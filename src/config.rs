//! The flag groups that more than one command shares or that map onto a plain configuration
//! (the database, `serve`'s flags, TLS; clap, every flag also read from the environment variable
//! named in its help), and those plain configuration structs, which startup takes and tests build
//! directly. The command tree itself is [`crate::cli`]'s: this module knows no command, so that
//! the modules that take these values (`startup`, `transfer`) do not depend on the ones that run
//! commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use sqlx::postgres::PgConnectOptions;

use crate::domain::OntologyAliases;
use crate::store::PoolSettings;
use crate::store::migrations::HISTORY_TABLE;

/// `serve --max-batch`'s default, which is also the adapter's `--mint-max-batch` (the most items
/// of one MintIds call).
pub const DEFAULT_MAX_BATCH: u32 = 10_000;

/// Where the client commands and the adapter find the server by default.
pub const DEFAULT_SERVER_URL: &str = "http://127.0.0.1:50051";

/// The format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the database is and which history table records our migrations.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL, e.g. postgres://user@host:5432/idminter.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// The migration-history table. Pinned by us; change it only to point at a table that
    /// already records idminter's migrations under another name.
    #[arg(long, env = "IDMINTER_HISTORY_TABLE", default_value = HISTORY_TABLE, value_parser = parse_table_name)]
    pub history_table: String,
}

impl DatabaseArgs {
    /// # Errors
    /// A malformed URL.
    pub fn connect_options(&self) -> anyhow::Result<PgConnectOptions> {
        PgConnectOptions::from_str(&self.database_url)
            .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))
    }
}

/// Checks one `FROM=TO` alias on its own, so that a malformed one is a usage error (exit 2);
/// [`OntologyAliases::parse`] checks the set (conflicts, chains).
pub(crate) fn parse_alias(pair: &str) -> Result<String, String> {
    OntologyAliases::parse(&[pair]).map(|_| pair.to_owned())
}

/// Accepts `table` or `schema.table`, each part a plain lower-case SQL identifier: the name is
/// written into SQL, by refinery and by us, so nothing else may pass.
fn parse_table_name(name: &str) -> Result<String, String> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() <= 2 && parts.iter().all(|p| part_ok(p)) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "`{name}` is not a plain table name (lower-case letters, digits and _, optionally schema.table)"
        ))
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The gRPC listen address.
    #[arg(long, env = "IDMINTER_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,
    /// The admin HTTP listen address (/metrics, /healthz, /readyz).
    #[arg(long, env = "IDMINTER_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    pub admin_addr: SocketAddr,
    /// The public HTTP resolver's listen address (read-only JSON for web front ends); off unless
    /// given.
    #[arg(long, env = "IDMINTER_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// A streaming replica of the database for the reads (LookupIds, ResolveCanonicalIds, MintIds'
    /// lookups); what it lacks is asked of the primary, and while it is unreachable everything is.
    #[arg(long, env = "IDMINTER_READ_DATABASE_URL", hide_env_values = true)]
    pub read_database_url: Option<String>,
    /// The database URLs reach a connection pooler in transaction mode (pgbouncer's
    /// `pool_mode = transaction`): every statement goes unnamed inside a transaction of its own.
    /// Migrations need a direct connection: not with `--migrate`.
    #[arg(long, env = "IDMINTER_TRANSACTION_POOLER", conflicts_with = "migrate")]
    pub transaction_pooler: bool,
    /// The most database connections this process opens (to each of the primary and the replica).
    #[arg(long, env = "IDMINTER_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// How long a request waits for a free database connection before failing with UNAVAILABLE.
    #[arg(long, env = "IDMINTER_DB_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub db_acquire_timeout: Duration,
    /// The most identifier-to-ID mappings kept in memory (about 85 bytes each), consulted before
    /// the database; 0 turns the cache off. Mappings never change, so it never answers otherwise.
    #[arg(long, env = "IDMINTER_ID_CACHE_CAPACITY", default_value_t = crate::store::cache::DEFAULT_CAPACITY)]
    pub id_cache_capacity: usize,
    /// Apply pending migrations at start (an empty database gets the whole schema). Never acts on
    /// a database whose history table is missing.
    #[arg(long, env = "IDMINTER_MIGRATE")]
    pub migrate: bool,
    /// Rewrite an ontology type before anything else, FROM=TO; repeatable (comma-separated in the
    /// environment variable).
    #[arg(
        long = "ontology-alias",
        env = "IDMINTER_ONTOLOGY_ALIASES",
        value_delimiter = ',',
        value_parser = parse_alias
    )]
    pub ontology_aliases: Vec<String>,
    /// The most entries one call may carry.
    #[arg(long, env = "IDMINTER_MAX_BATCH", default_value_t = DEFAULT_MAX_BATCH, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch: u32,
    /// The longest a call may run before DEADLINE_EXCEEDED (a caller's shorter deadline wins).
    #[arg(long, env = "IDMINTER_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// The most calls served at once; more get RESOURCE_EXHAUSTED.
    #[arg(long, env = "IDMINTER_CONCURRENCY_LIMIT", default_value_t = 64)]
    pub concurrency_limit: usize,
    /// The largest request or response message, in bytes.
    #[arg(long, env = "IDMINTER_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// How often the database is checked while serving.
    #[arg(long, env = "IDMINTER_DB_CHECK_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub db_check_interval: Duration,
    /// How long SIGTERM waits for in-flight calls before exiting anyway.
    #[arg(long, env = "IDMINTER_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// The tokens file (`NAME SCOPES SHA256HEX` per line), re-read when it changes. Without it,
    /// every call is allowed as `anonymous`.
    #[arg(long, env = "IDMINTER_AUTH_TOKENS")]
    pub auth_tokens: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// TLS for the gRPC listener (the admin listener stays plain HTTP).
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// The server certificate chain (PEM); with --tls-key, gRPC is served over TLS only. Re-read
    /// when it changes.
    #[arg(long, env = "IDMINTER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The server certificate's private key (PEM).
    #[arg(long, env = "IDMINTER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Also require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "IDMINTER_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

/// Everything `serve` needs, as plain values.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The public resolver's address; `None`: no resolver.
    pub http_addr: Option<SocketAddr>,
    pub database: PgConnectOptions,
    /// The read replica, if any.
    pub read_database: Option<PgConnectOptions>,
    /// Both URLs reach a pooler in transaction mode (see `store::pooler`).
    pub transaction_pooler: bool,
    pub pool: PoolSettings,
    pub id_cache_capacity: usize,
    pub history_table: String,
    pub migrate: bool,
    pub aliases: OntologyAliases,
    pub max_batch: usize,
    pub request_timeout: Duration,
    pub concurrency_limit: usize,
    pub max_message_bytes: usize,
    pub db_check_interval: Duration,
    pub shutdown_timeout: Duration,
    /// The tokens file; `None`: no tokens, every call allowed.
    pub auth_tokens: Option<PathBuf>,
    /// TLS for the gRPC listener; `None`: plaintext.
    pub tls: Option<crate::tls::TlsFiles>,
    /// How often the tokens file and the TLS files are checked for changes.
    pub reload_interval: Duration,
}

impl ServeConfig {
    /// `serve`'s defaults for everything but the database, listening on loopback with OS-chosen
    /// ports (for tests and embedding). The defaults are those of the flags, read from clap with
    /// no flag and no environment variable: the `#[arg]` attributes of [`ServeArgs`] are the one
    /// place they are written.
    ///
    /// # Panics
    /// Never: the flags' defaults are valid (a unit test parses them).
    pub fn local(database: PgConnectOptions) -> Self {
        let mut config = ServeArgs::defaults()
            .map_err(anyhow::Error::from)
            .and_then(|args| Self::from_args(args, database))
            .expect("the defaults of serve's flags are valid");
        config.grpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config.admin_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }
}

impl ServeArgs {
    /// The flags as clap gives them when none is given and the environment is ignored (the
    /// database URL, which has no default, is a placeholder that [`ServeConfig::local`] replaces).
    fn defaults() -> Result<Self, clap::Error> {
        use clap::{CommandFactory as _, FromArgMatches as _};
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            args: ServeArgs,
        }
        let matches = Serve::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(["serve", "--database-url", "postgres://localhost"])?;
        Serve::from_arg_matches(&matches).map(|serve| serve.args)
    }
}

impl TryFrom<ServeArgs> for ServeConfig {
    type Error = anyhow::Error;

    fn try_from(args: ServeArgs) -> anyhow::Result<Self> {
        let database = args.database.connect_options()?;
        Self::from_args(args, database)
    }
}

impl ServeConfig {
    /// The configuration the flags describe, with `database` for the database URL's options.
    fn from_args(args: ServeArgs, database_options: PgConnectOptions) -> anyhow::Result<Self> {
        // Destructured in full, so that a new flag that is not wired up fails to compile.
        let ServeArgs {
            grpc_addr,
            admin_addr,
            http_addr,
            database,
            read_database_url,
            transaction_pooler,
            db_max_connections,
            db_acquire_timeout,
            id_cache_capacity,
            migrate,
            ontology_aliases,
            max_batch,
            request_timeout,
            concurrency_limit,
            max_message_bytes,
            db_check_interval,
            shutdown_timeout,
            auth_tokens,
            tls,
        } = args;
        let TlsArgs {
            tls_cert,
            tls_key,
            tls_client_ca,
        } = tls;
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles {
                cert,
                key,
                client_ca: tls_client_ca,
            }),
            (None, None) if tls_client_ca.is_none() => None,
            _ => anyhow::bail!(
                "--tls-cert and --tls-key go together (and --tls-client-ca needs them)"
            ),
        };
        Ok(Self {
            grpc_addr,
            admin_addr,
            http_addr,
            database: database_options,
            read_database: read_database_url
                .map(|url| {
                    PgConnectOptions::from_str(&url).map_err(|e| {
                        anyhow::anyhow!(
                            "IDMINTER_READ_DATABASE_URL is not a valid PostgreSQL URL: {e}"
                        )
                    })
                })
                .transpose()?,
            transaction_pooler,
            pool: PoolSettings {
                max_connections: db_max_connections,
                acquire_timeout: db_acquire_timeout,
            },
            id_cache_capacity,
            history_table: database.history_table,
            migrate,
            aliases: OntologyAliases::parse(&ontology_aliases).map_err(anyhow::Error::msg)?,
            max_batch: max_batch as usize,
            request_timeout,
            concurrency_limit,
            max_message_bytes,
            db_check_interval,
            shutdown_timeout,
            auth_tokens,
            tls,
            reload_interval: Duration::from_secs(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_configuration_has_the_flags_defaults_on_loopback_ports() {
        let database = PgConnectOptions::new().database("db");
        let config = ServeConfig::local(database);
        assert_eq!(config.grpc_addr, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(config.admin_addr, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(config.database.get_database(), Some("db"));
        assert_eq!(config.max_batch, 10_000, "the contract's --max-batch");
        assert_eq!(config.history_table, "idminter_schema_history");
        assert_eq!(config.pool.max_connections, 16);
        assert_eq!(config.pool.acquire_timeout, Duration::from_secs(3));
        assert_eq!(config.request_timeout, Duration::from_secs(30));
        assert_eq!(config.concurrency_limit, 64);
        assert_eq!(config.max_message_bytes, 16 * 1024 * 1024);
        assert_eq!(config.db_check_interval, Duration::from_secs(1));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(
            config.id_cache_capacity,
            crate::store::cache::DEFAULT_CAPACITY
        );
        assert!(config.http_addr.is_none() && config.read_database.is_none());
        assert!(!config.migrate && !config.transaction_pooler);
        assert!(config.auth_tokens.is_none() && config.tls.is_none());
    }

    #[test]
    fn history_table_names_must_be_plain_identifiers() {
        for ok in ["idminter_schema_history", "public.schema_version", "_x1"] {
            assert!(parse_table_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Schema_Version",
            "a;drop table x",
            "a.b.c",
            "1abc",
            "a-b",
            "\"quoted\"",
        ] {
            assert!(parse_table_name(bad).is_err(), "{bad}");
        }
    }
}
