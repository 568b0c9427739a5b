//! What the high-availability tests start for themselves, each on free ports with its data in a
//! temporary folder of its own, stopped and removed when dropped: PostgreSQL primaries and their
//! streaming replicas (initdb, pg_basebackup -R, pg_ctl, as the `postgres` user when we are root,
//! since PostgreSQL refuses to run as root), pgbouncer in transaction pooling mode, and a TCP proxy
//! whose upstream can be switched, playing the virtual IP of a failover manager.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use idminter::store::migrations::HISTORY_TABLE;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use crate::helpers::eventually;

/// True when the tests run as root: server binaries then run as `postgres`.
static AS_ROOT: LazyLock<bool> = LazyLock::new(|| {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
});

/// PostgreSQL's server binaries (`pg_config --bindir`).
static BINDIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("pg_config (PostgreSQL's server package) must be installed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
});

/// A command run as the `postgres` user when we are root.
fn as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if *AS_ROOT {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// A temporary folder the `postgres` user owns (mode 0700), removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create a temporary folder");
        if *AS_ROOT {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(&path);
            run(chown, "chown");
        }
        let mut chmod = Command::new("chmod");
        chmod.arg("700").arg(&path);
        run(chmod, "chmod");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// === Cluster ===

/// One PostgreSQL server of our own.
pub struct Cluster {
    pub port: u16,
    dir: TempDir,
    running: bool,
}

/// The database the tests use on their clusters.
pub const DB: &str = "idminter";

impl Cluster {
    /// A new primary with an empty, migrated `idminter` database.
    pub async fn primary() -> Self {
        let dir = TempDir::new("idminter-pg");
        let mut initdb = as_postgres(BINDIR.join("initdb"));
        initdb.arg("-D").arg(dir.path().join("data")).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "-N",
        ]);
        run(initdb, "initdb");
        let mut cluster = Self {
            port: free_port(),
            dir,
            running: false,
        };
        cluster.start();
        let mut admin = cluster.connect("postgres").await;
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE {DB}")))
            .await
            .expect("create the database");
        admin.close().await.ok();
        let state = idminter::guard::run(&cluster.options(), HISTORY_TABLE, true)
            .await
            .expect("migrate");
        assert!(state.is_ready(), "{state}");
        cluster
    }

    /// A streaming replica of `self` (pg_basebackup -R), started, read-only.
    pub async fn replica(&self) -> Self {
        let dir = TempDir::new("idminter-pg");
        let mut basebackup = as_postgres(BINDIR.join("pg_basebackup"));
        basebackup
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-R", "-X", "stream", "-c", "fast"]);
        run(basebackup, "pg_basebackup");
        let mut replica = Self {
            port: free_port(),
            dir,
            running: false,
        };
        replica.start();
        // A hot standby accepts connections once it has reached consistency.
        eventually("the replica accepts connections", || async {
            PgConnection::connect_with(&replica.options()).await.is_ok()
        })
        .await;
        replica
    }

    /// Starts the server (again, after [`Cluster::stop_immediately`]) on its port.
    pub fn start(&mut self) {
        let mut pg_ctl = as_postgres(BINDIR.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                self.port,
                self.dir.path().display()
            ))
            .arg("start");
        run(pg_ctl, "pg_ctl start");
        self.running = true;
    }

    /// Stops the server at once, as a crash or a lost machine would (`pg_ctl stop -m immediate`).
    pub fn stop_immediately(&mut self) {
        if !self.running {
            return;
        }
        let mut pg_ctl = as_postgres(BINDIR.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        run(pg_ctl, "pg_ctl stop");
        self.running = false;
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The URL of `database` on this server.
    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The URL of the test database.
    pub fn url(&self) -> String {
        self.url_of(DB)
    }

    pub fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url()).expect("a valid URL")
    }

    pub async fn connect(&self, database: &str) -> PgConnection {
        PgConnection::connect(&self.url_of(database))
            .await
            .expect("connect to a test cluster")
    }

    /// Runs `sql` in the test database and returns the first column of the first row as text.
    pub async fn query(&self, sql: &str) -> Option<String> {
        let mut conn = self.connect(DB).await;
        let value: Option<String> =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT ({sql})::text")))
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.close().await.ok();
        value
    }

    /// Waits until this replica has replayed everything `primary` has written so far.
    pub async fn wait_until_replayed(&self, primary: &Cluster) {
        let target = primary.query("pg_current_wal_lsn()").await.expect("an LSN");
        eventually("the replica has replayed the primary's WAL", || async {
            self.query(&format!("pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"))
                .await
                .as_deref()
                == Some("true")
        })
        .await;
    }

    /// Pauses WAL replay: the replica keeps receiving but stops applying, so it lags.
    pub async fn pause_replay(&self) {
        self.query("pg_wal_replay_pause()").await;
        eventually("replay is paused", || async {
            self.query("pg_get_wal_replay_pause_state()")
                .await
                .as_deref()
                == Some("paused")
        })
        .await;
    }

    /// Promotes this replica to a primary and waits until it accepts writes.
    pub async fn promote(&self) {
        assert_eq!(
            self.query("pg_promote(true, 60)").await.as_deref(),
            Some("true")
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_immediately();
    }
}

// === Pgbouncer ===

/// pgbouncer in transaction pooling mode in front of a PostgreSQL server, with fewer server
/// connections than its clients will open, so that clients share them.
pub struct Pgbouncer {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Pgbouncer {
    pub async fn start(upstream: SocketAddr) -> Self {
        let dir = TempDir::new("idminter-pgbouncer");
        let port = free_port();
        let ini = dir.path().join("pgbouncer.ini");
        let users = dir.path().join("userlist.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").expect("write userlist");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n\
                 * = host={} port={}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {}\n\
                 pool_mode = transaction\n\
                 default_pool_size = 4\n\
                 max_client_conn = 500\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 logfile = {}\n",
                upstream.ip(),
                upstream.port(),
                users.display(),
                dir.path().join("pgbouncer.log").display(),
            ),
        )
        .expect("write pgbouncer.ini");
        if *AS_ROOT {
            let mut chown = Command::new("chown");
            chown.arg("-R").arg("postgres:postgres").arg(dir.path());
            run(chown, "chown");
        }
        let child = as_postgres(pgbouncer_binary())
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgbouncer (Debian package `pgbouncer`; scripts/test installs it)");
        let bouncer = Self {
            port,
            child,
            _dir: dir,
        };
        eventually("pgbouncer accepts connections", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        bouncer
    }

    /// The URL of `database` through pgbouncer.
    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

fn pgbouncer_binary() -> PathBuf {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("pgbouncer"))
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        // runuser forwards the signal to pgbouncer.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

// === VirtualIp ===

/// A TCP proxy whose upstream can be moved, as a failover manager moves a virtual IP (or a DNS
/// name) from the lost primary to the promoted replica: moving it drops every connection open
/// through it, and new connections go to the new upstream.
pub struct VirtualIp {
    pub addr: SocketAddr,
    upstream: Arc<tokio::sync::watch::Sender<SocketAddr>>,
}

impl VirtualIp {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(tokio::sync::watch::Sender::new(upstream));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut moved = shared.subscribe();
                let target = *moved.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = moved.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            upstream: state,
        }
    }

    /// Moves the address to `upstream`.
    pub fn switch_to(&self, upstream: SocketAddr) {
        self.upstream.send_replace(upstream);
    }

    /// The URL of the test database through this address.
    pub fn url(&self) -> String {
        format!("postgres://postgres@{}/{DB}", self.addr)
    }

    pub fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url()).expect("a valid URL")
    }
}

/// Polls `condition` until it holds, failing the test after `bound`.
pub async fn within<F, Fut>(bound: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + bound;
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen within {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
