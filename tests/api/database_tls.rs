//! PostgreSQL over TLS: a cluster of the test's own with `ssl = on`, a certificate for `localhost`
//! made by the test, and only `hostssl` connections allowed; `sslmode` and `sslrootcert` in the
//! URL, through sqlx and through the real `idminter` binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use idminter::error::chain;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::fixtures::*;
use crate::helpers::*;

/// A PostgreSQL cluster with TLS on a free port, run by the `postgres` user, stopped and removed
/// when dropped.
struct TlsPostgres {
    dir: TempDir,
    data: PathBuf,
    bindir: PathBuf,
    port: u16,
}

fn run(command: &mut Command) {
    let output = command.output().expect("run a PostgreSQL tool");
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn as_postgres(bindir: &Path, tool: &str) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .arg(bindir.join(tool));
    command
}

impl TlsPostgres {
    fn start(server: &CertifiedKey) -> Self {
        let bindir = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .expect("pg_config");
        let bindir = PathBuf::from(String::from_utf8(bindir.stdout).unwrap().trim());
        let dir = TempDir::new("pg-tls");
        let data = dir.path("data");
        run(Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir.0));
        run(as_postgres(&bindir, "initdb")
            .args(["-U", "postgres", "--auth=trust", "-N", "-D"])
            .arg(&data));
        std::fs::write(data.join("server.crt"), &server.cert).unwrap();
        std::fs::write(data.join("server.key"), &server.key).unwrap();
        // Only TLS connections are allowed: a test that passes did not fall back to plaintext.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .unwrap();
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&data));
        run(Command::new("chmod")
            .arg("0600")
            .arg(data.join("server.key")));
        // A free port: bound, read, released (a clash with another process is retried once).
        for attempt in 0..2 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let options = format!(
                "-p {port} -c listen_addresses=localhost -c ssl=on -c fsync=off -c unix_socket_directories={}",
                dir.0.display()
            );
            let status = as_postgres(&bindir, "pg_ctl")
                .args(["-w", "-D"])
                .arg(&data)
                .args(["-l"])
                .arg(dir.path("log"))
                .args(["-o", &options, "start"])
                .status()
                .unwrap();
            if status.success() {
                return Self {
                    dir,
                    data,
                    bindir,
                    port,
                };
            }
            assert_eq!(
                attempt,
                0,
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(dir.path("log")).unwrap_or_default()
            );
        }
        unreachable!()
    }

    fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.port)
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bindir, "pg_ctl")
            .args(["-D"])
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

async fn connect(url: &str) -> Result<PgConnection, String> {
    let options = PgConnectOptions::from_str(url).map_err(|e| e.to_string())?;
    PgConnection::connect_with(&options)
        .await
        .map_err(|e| chain(&e))
}

async fn uses_tls(conn: &mut PgConnection) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_and_sslrootcert_work_against_a_postgresql_with_tls() {
    let ca = TestCa::new("database CA");
    let other = TestCa::new("another CA");
    let pg = TlsPostgres::start(&ca.server(&["localhost"]));
    let ca_file = pg.dir.write("ca.pem", &ca.pem);
    let other_file = pg.dir.write("other.pem", &other.pem);
    let root = |f: &PathBuf| format!("sslrootcert={}", f.display());

    let verify_full = pg.url(
        "localhost",
        &format!("sslmode=verify-full&{}", root(&ca_file)),
    );
    let wrong_host = pg.url(
        "127.0.0.1",
        &format!("sslmode=verify-full&{}", root(&ca_file)),
    );
    let wrong_ca = pg.url(
        "localhost",
        &format!("sslmode=verify-full&{}", root(&other_file)),
    );
    let verify_ca = pg.url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&{}", root(&ca_file)),
    );
    let require = pg.url("127.0.0.1", "sslmode=require");
    let plaintext = pg.url("127.0.0.1", "sslmode=disable");

    for (url, what) in [
        (&verify_full, "verify-full with the right CA and host"),
        (&verify_ca, "verify-ca with the right CA"),
        (&require, "require"),
    ] {
        let mut conn = connect(url).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(uses_tls(&mut conn).await, "{what} uses TLS");
    }
    let host_error = connect(&wrong_host)
        .await
        .expect_err("verify-full with a wrong host name");
    assert!(says(&host_error, "NotValidForName"), "{host_error}");
    let ca_error = connect(&wrong_ca)
        .await
        .expect_err("verify-full with another CA");
    assert!(says(&ca_error, "UnknownIssuer"), "{ca_error}");
    assert!(
        connect(&plaintext).await.is_err(),
        "the cluster refuses plaintext"
    );

    // The real binary: migrate over verify-full; check refuses the wrong host with one clear line.
    let (migrated, out, err) = idminter(&["migrate"], Some(&verify_full));
    assert_eq!(migrated, 0, "{out}{err}");
    let (code, _, err) = idminter(&["check"], Some(&wrong_host));
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("database unreachable:"), "{err}");
    assert!(
        says(&err, "NotValidForName") && !err.contains("panicked"),
        "{err}"
    );
    let (code, out, err) = idminter(&["check"], Some(&require));
    assert_eq!(code, 0, "{out}{err}");
}
