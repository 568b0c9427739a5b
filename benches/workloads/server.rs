//! `idminter serve` as a process of its own, built by cargo with the benchmark's profile, so that
//! its memory and CPU are its own: the peak resident set (VmHWM in /proc) is reset before each
//! workload and read after it, and CPU time is read from /proc, for the server and the machine.
//! The process is stopped with SIGTERM when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub struct Server {
    child: Child,
    pub grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
    /// The public resolver's address, when started with `--http-addr`.
    pub http_addr: Option<SocketAddr>,
}

impl Server {
    /// Starts the server on loopback with an OS-chosen port, migrating the database if it needs
    /// it, and waits until it reports SERVING.
    ///
    /// # Errors
    /// The process could not start, or never became SERVING.
    pub async fn start(database_url: &str, extra: &[String]) -> anyhow::Result<Self> {
        Self::start_binary(
            std::path::Path::new(env!("CARGO_BIN_EXE_idminter")),
            database_url,
            extra,
        )
        .await
    }

    /// As [`start`](Self::start), with another idminter binary (a baseline to compare with).
    ///
    /// # Errors
    /// The process could not start, or never became SERVING.
    pub async fn start_binary(
        binary: &std::path::Path,
        database_url: &str,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args(["--log-format", "json", "serve"])
            .args(["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            // Through a transaction-mode pooler, migrations are refused: the benchmark's own
            // preparation has migrated the database directly.
            .args((!extra.iter().any(|a| a == "--transaction-pooler")).then_some("--migrate"))
            .args(extra)
            .env("DATABASE_URL", database_url)
            .env(
                "RUST_LOG",
                std::env::var("IDMINTER_BENCH_SERVER_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start idminter serve")?;
        let stderr = child.stderr.take().context("the server's stderr")?;
        let (tx, lines) = mpsc::channel::<String>();
        // Reads the log for as long as the server runs (a full pipe would stall it), hands the
        // first lines to `start`, and echoes warnings and errors, except the driver's slow-statement
        // warnings, which a saturated database gives by the hundred.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let loud =
                    line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"");
                if loud && !line.contains("slow statement") {
                    eprintln!("server: {line}");
                }
                let _ = tx.send(line);
            }
        });
        let mut server = Self {
            child,
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: None,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .context("the server exited or never logged `listening`")?;
            if line.contains("\"listening\"") {
                let json: serde_json::Value = serde_json::from_str(&line)?;
                server.grpc_addr = json["grpc_addr"]
                    .as_str()
                    .context("grpc_addr in the listening line")?
                    .parse()?;
                server.admin_addr = json["admin_addr"]
                    .as_str()
                    .context("admin_addr in the listening line")?
                    .parse()?;
                server.http_addr = json["http_addr"].as_str().and_then(|a| a.parse().ok());
                break;
            }
        }
        let mut health = HealthClient::new(server.channel().await?);
        loop {
            let status = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|r| r.into_inner().status());
            if matches!(status, Ok(ServingStatus::Serving)) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("the server is not SERVING after 60 s: {status:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new HTTP/2 connection to the server.
    ///
    /// # Errors
    /// The server does not accept connections.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(format!("http://{}", self.grpc_addr))?
            .tcp_nodelay(true)
            .connect()
            .await?)
    }

    /// The identifier cache's hits and misses so far, from the admin listener's `/metrics`.
    pub async fn cache_lookups(&self) -> Option<(f64, f64)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.admin_addr).await.ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .await
            .ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await.ok()?;
        let sample = |result: &str| {
            let prefix = format!("idminter_id_cache_lookups_total{{result=\"{result}\"}} ");
            body.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Some((sample("hit"), sample("miss")))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resets the peak resident set to the current one (Linux `clear_refs` 5); false where that
    /// is not possible, and the peak then covers the whole run.
    pub fn reset_peak_rss(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }

    /// The peak resident set since start or the last reset, in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        status_kb(self.pid(), "VmHWM:").map(|kb| kb * 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM, so that the server drains and closes its pool; killed if it does not exit.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` field of /proc/PID/status.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Clock ticks per second in /proc (USER_HZ, 100 on every Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time used so far, in seconds: by the process `pid`, or by the whole machine (`None`).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let ticks: u64 = match pid {
        Some(pid) => {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command may contain spaces; the fields after it are fixed: utime and stime are
            // the 12th and 13th after the closing parenthesis.
            let after = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = after.split_whitespace().collect();
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?
        }
        None => {
            let stat = std::fs::read_to_string("/proc/stat").ok()?;
            let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
            let fields: Vec<u64> = cpu
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal: busy is user to system, irq and
            // softirq.
            [0, 1, 2, 5, 6]
                .iter()
                .map(|&i| fields.get(i).copied())
                .sum::<Option<u64>>()?
        }
    };
    Some(ticks as f64 / TICKS_PER_SECOND)
}
