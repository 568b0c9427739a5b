//! The test harness shared by every test binary: databases, servers (in-process and as
//! processes), clients, and builders that let the tests read like the contract.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::ops::Deref;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::LazyLock;
use std::sync::mpsc;
use std::time::Duration;

use idminter::config::ServeConfig;
use idminter::pb;
use idminter::pb::id_minter_client::IdMinterClient;
use idminter::startup::Application;
use idminter::store::migrations::HISTORY_TABLE;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, PgPool};
use tokio::sync::oneshot;
use tonic::Status;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
pub use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Logs only when TEST_LOG is set.
static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        idminter::telemetry::init(idminter::config::LogFormat::Text);
    }
});

/// The server the tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("IDMINTER_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

// === TestDatabase ===

/// A database of its own for one test, dropped (with its connections) when the test ends.
pub struct TestDatabase {
    pub name: String,
    pub options: PgConnectOptions,
    pub pool: PgPool,
}

impl TestDatabase {
    /// An empty database.
    pub async fn create() -> Self {
        LazyLock::force(&TRACING);
        let name = format!("idminter_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("connect to the test server");
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create the test database");
        admin.close().await.ok();
        let options = PgConnectOptions::from_str(&admin_url())
            .unwrap()
            .database(&name);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .unwrap();
        Self {
            name,
            options,
            pool,
        }
    }

    /// A database migrated by `idminter migrate`'s own code.
    pub async fn migrated() -> Self {
        let db = Self::create().await;
        let state = idminter::guard::run(&db.options, HISTORY_TABLE, true)
            .await
            .expect("migrate");
        assert!(state.is_ready(), "{state}");
        db
    }

    /// This database's URL, for server processes.
    pub fn url(&self) -> String {
        let admin = admin_url();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        format!("{base}/{}", self.name)
    }

    pub async fn execute(&self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// How many mappings are stored.
    pub async fn count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM source_identifiers")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await, and the test's runtime may be single-threaded: a thread of its own
        // with its own runtime drops the database, terminating the connections still open to it.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                        let _ = admin
                            .execute(AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .await;
                    }
                });
        })
        .join()
        .ok();
    }
}

// === InProcessServer ===

/// A server started in-process through the production `Application::build` on port 0, with
/// clients; stopped as SIGTERM would when dropped. The api tests' [`TestApp`] and the ha tests'
/// `App` are this plus what each needs.
pub struct InProcessServer {
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub client: IdMinterClient<Channel>,
    pub health: HealthClient<Channel>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl InProcessServer {
    /// Builds and starts the server; it may not be SERVING yet.
    pub async fn start(config: ServeConfig) -> Self {
        let app = Application::build(config).await.expect("build the app");
        let (grpc_addr, admin_addr) = (app.grpc_addr(), app.admin_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let channel = channel(grpc_addr).await;
        Self {
            grpc_addr,
            admin_addr,
            client: IdMinterClient::new(channel.clone()),
            health: HealthClient::new(channel),
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub async fn mint(&self, items: Vec<pb::MintItem>) -> Result<pb::MintIdsResponse, Status> {
        self.client
            .clone()
            .mint_ids(pb::MintIdsRequest { items })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn lookup(
        &self,
        ids: Vec<pb::SourceIdentifier>,
    ) -> Result<pb::LookupIdsResponse, Status> {
        self.client
            .clone()
            .lookup_ids(pb::LookupIdsRequest {
                source_identifiers: ids,
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn resolve(&self, ids: &[&str]) -> Result<pb::ResolveCanonicalIdsResponse, Status> {
        let canonical_ids = ids.iter().map(|s| (*s).to_owned()).collect();
        self.client
            .clone()
            .resolve_canonical_ids(pb::ResolveCanonicalIdsRequest { canonical_ids })
            .await
            .map(|r| r.into_inner())
    }

    /// The health status of `""` now.
    pub async fn health_status(&self) -> ServingStatus {
        health_check(&self.health, "").await.expect("health check")
    }

    /// Stops the server as SIGTERM would and waits for it to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.take().unwrap().send(()).ok();
        self.server.take().unwrap().await.unwrap()
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
    }
}

pub async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

// === TestApp ===

/// A server started in-process on a database of its own (see [`InProcessServer`], whose fields
/// and calls it offers).
pub struct TestApp {
    // Declared first so that it is dropped first: the server is told to stop before its
    // database is dropped.
    server: InProcessServer,
    pub db: TestDatabase,
}

impl Deref for TestApp {
    type Target = InProcessServer;

    fn deref(&self) -> &InProcessServer {
        &self.server
    }
}

/// A SERVING app on a freshly migrated database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestDatabase::migrated().await, |_| {})
        .await
        .wait_until(ServingStatus::Serving)
        .await
}

/// An app on `db`, configured by `configure`; it may not be SERVING yet.
pub async fn spawn_app_with(db: TestDatabase, configure: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let mut config = ServeConfig::local(db.options.clone());
    configure(&mut config);
    TestApp {
        server: InProcessServer::start(config).await,
        db,
    }
}

impl TestApp {
    /// Waits (on the health Watch stream, not a clock) until `""` reports `status`.
    pub async fn wait_until(self, status: ServingStatus) -> Self {
        wait_for_health(&self.health, status).await;
        self
    }

    /// Stops the server as SIGTERM would and waits for it to finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.server.stop().await
    }
}

pub async fn health_check(
    health: &HealthClient<Channel>,
    service: &str,
) -> Result<ServingStatus, Status> {
    let response = health
        .clone()
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?;
    Ok(response.into_inner().status())
}

/// Follows the health Watch stream of `""` until it reports `status`.
pub async fn wait_for_health(health: &HealthClient<Channel>, status: ServingStatus) {
    let mut stream = health
        .clone()
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    let wait = async {
        while let Some(update) = stream.message().await.expect("watch stream") {
            if update.status() == status {
                return;
            }
        }
        panic!("health stream ended before {status:?}");
    };
    // A bound, not a synchronisation: a server that never gets there fails the test.
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("never reached {status:?}"));
}

// === ServerProcess ===

/// `idminter serve` as a real process, killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The public resolver's address, when started with `--http-addr`.
    pub http_addr: Option<SocketAddr>,
    pub lines: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts `idminter serve` on loopback with OS-chosen ports and reads the bound addresses from
    /// its first log line.
    pub fn start(database_url: &str, extra: &[&str]) -> Self {
        Self::start_with_env(database_url, extra, &[])
    }

    /// As [`start`](Self::start), with environment variables (`RUST_LOG` among them) set.
    pub fn start_with_env(database_url: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_idminter"))
            .args([
                "--log-format",
                "json",
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
            ])
            .args(["--db-check-interval", "200ms"])
            .args(extra)
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn idminter serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = Self {
            child,
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            http_addr: None,
            lines,
        };
        let listening = process.wait_for_log("listening");
        let json: serde_json::Value = serde_json::from_str(&listening).unwrap();
        process.grpc_addr = json["grpc_addr"].as_str().unwrap().parse().unwrap();
        process.admin_addr = json["admin_addr"].as_str().unwrap().parse().unwrap();
        process.http_addr = json["http_addr"].as_str().and_then(|a| a.parse().ok());
        process
    }

    /// Blocks until a log line contains `needle` and returns it; fails if the process exits first.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {needle:?}: {e}"),
            }
        }
    }

    pub async fn channel(&self) -> Channel {
        channel(self.grpc_addr).await
    }

    /// Every log line not read yet, up to the process's exit (call after stopping it).
    pub fn drain_log(&mut self) -> String {
        let _ = self.child.wait();
        self.lines.iter().collect::<Vec<_>>().join("\n")
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === builders ===

pub fn sid(identifier_type: &str, ontology_type: &str, value: &str) -> pb::SourceIdentifier {
    pb::SourceIdentifier {
        identifier_type: identifier_type.to_owned(),
        ontology_type: ontology_type.to_owned(),
        value: value.to_owned(),
    }
}

/// A Sierra work, the commonest identifier in the reference pipeline.
pub fn work(value: &str) -> pb::SourceIdentifier {
    sid("sierra-system-number", "Work", value)
}

pub fn item(source: pb::SourceIdentifier) -> pb::MintItem {
    pb::MintItem {
        source_identifier: Some(source),
        predecessor: None,
    }
}

pub fn inheriting(source: pb::SourceIdentifier, predecessor: pb::SourceIdentifier) -> pb::MintItem {
    pb::MintItem {
        source_identifier: Some(source),
        predecessor: Some(predecessor),
    }
}

pub fn outcome(id: &pb::MintedId) -> pb::MintOutcome {
    id.outcome()
}

/// True when `id` has the canonical format.
pub fn is_canonical(id: &str) -> bool {
    idminter::domain::CanonicalId::parse(id.to_owned()).is_ok()
}

// === plain HTTP, for the admin listener ===

/// GETs `path` from the admin listener with a bare HTTP/1.0 request: (status code, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to admin");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

// === the idminter binary ===

/// Runs `idminter ARGS` to completion: (exit code, stdout, stderr).
pub fn idminter(args: &[&str], database_url: Option<&str>) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_idminter"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn");
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    let output = command.output().expect("run idminter");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

// === a database connection we can cut ===

/// A TCP proxy in front of PostgreSQL: `cut()` drops every connection and refuses new ones, as a
/// database that went away would; `restore()` lets connections through again.
pub struct Proxy {
    pub addr: SocketAddr,
    open: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(tokio::sync::watch::Sender::new(true));
        let state = open.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*state.borrow() {
                    continue; // dropped: connection refused in effect
                }
                let mut closed = state.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = closed.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Self { addr, open }
    }

    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    pub fn restore(&self) {
        self.open.send_replace(true);
    }

    /// Connect options for `db` through this proxy.
    pub fn options(&self, db: &TestDatabase) -> PgConnectOptions {
        db.options
            .clone()
            .host(&self.addr.ip().to_string())
            .port(self.addr.port())
    }
}

/// The address of the test PostgreSQL server.
pub fn postgres_addr() -> SocketAddr {
    let options = PgConnectOptions::from_str(&admin_url()).unwrap();
    let host = options.get_host();
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{}", options.get_port())
        .parse()
        .expect("the test server has a TCP address")
}

/// Polls pg_stat_activity (a condition, not a clock) until some backend of this database is
/// blocked on a lock.
pub async fn wait_until_a_backend_waits_on_a_lock(db: &TestDatabase) {
    eventually("a backend waits on a lock", || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        waiting > 0
    })
    .await;
}

/// Polls `condition` until it holds, failing the test after 30 s. A bound, not a synchronisation:
/// the condition is what the test waits for.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Inserts `work(value)` with `canonical_id` in a transaction left open: a call that writes the same
/// identifier waits on its row lock until the returned transaction commits or rolls back.
pub async fn hold_uncommitted_work(
    db: &TestDatabase,
    value: &str,
    canonical_id: &str,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO source_identifiers (identifier_type, ontology_type, value, canonical_id, minted) \
         VALUES ('sierra-system-number', 'Work', $1, $2, true)",
    )
    .bind(value)
    .bind(canonical_id)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx
}
