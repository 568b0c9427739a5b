//! The adapter tests' harness: moto (a real SQS and SNS server on 127.0.0.1), queues and topics of
//! each test's own, the adapter as a real process, and documents in the reference pipeline's shape.
//!
//! Every AWS client here, the tests' own and the adapter processes', gets static credentials, a
//! region and the local endpoint, and the EC2 metadata lookup is disabled: nothing may reach an
//! address off this machine.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use idminter::pb;
use idminter::pb::id_minter_client::IdMinterClient;
use serde_json::{Value, json};

pub use crate::helpers::eventually;
use crate::helpers::{self, ServerProcess, ServingStatus};

pub const REGION: &str = "eu-west-1";
const ACCESS_KEY: &str = "testing";
const SECRET_KEY: &str = "testing";

/// How long any condition in these tests may take to come true.
pub const DEADLINE: Duration = Duration::from_secs(30);

// === moto ===

/// The SQS/SNS endpoint: the moto server `./scripts/test` started (IDMINTER_TEST_SQS_ENDPOINT),
/// or one started here for this test process (from data/venv, or `moto_server` on PATH).
pub static ENDPOINT: LazyLock<String> =
    LazyLock::new(|| std::env::var("IDMINTER_TEST_SQS_ENDPOINT").unwrap_or_else(|_| start_moto()));

fn start_moto() -> String {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/data/venv/bin/moto_server");
    let server = if std::path::Path::new(venv).exists() {
        venv
    } else {
        "moto_server"
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string();
    // The shell stops moto when its stdin closes, which happens when this test process exits:
    // no server outlives the tests.
    let child = Command::new("sh")
        .args([
            "-c",
            r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & pid=$!; cat >/dev/null; kill $pid"#,
            server,
            &port,
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    // Kept open (never dropped) for the life of the process; see above.
    std::mem::forget(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < DEADLINE,
            "moto did not start: run ./scripts/test (it installs moto into data/venv), or set \
             IDMINTER_TEST_SQS_ENDPOINT to a running moto server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    format!("http://{addr}")
}

/// Sets the AWS environment of a process we spawn: local endpoint, static credentials, a region,
/// no metadata service, no profile files.
pub fn aws_env(command: &mut Command) -> &mut Command {
    for var in [
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_DEFAULT_REGION",
    ] {
        command.env_remove(var);
    }
    command
        .env("AWS_ENDPOINT_URL", ENDPOINT.as_str())
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
}

// === queues and topics ===

/// The tests' own AWS clients, configured explicitly (no environment is read).
#[derive(Clone)]
pub struct Aws {
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
}

impl Aws {
    pub fn new() -> Self {
        let credentials =
            aws_sdk_sqs::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "tests");
        let sqs = aws_sdk_sqs::Config::builder()
            .behavior_version(idminter::adapter::aws::behavior_version())
            .region(aws_sdk_sqs::config::Region::new(REGION))
            .credentials_provider(credentials.clone())
            .endpoint_url(ENDPOINT.as_str())
            .http_client(idminter::adapter::aws::http_client())
            .build();
        let sns = aws_sdk_sns::Config::builder()
            .behavior_version(idminter::adapter::aws::behavior_version())
            .region(aws_sdk_sns::config::Region::new(REGION))
            .credentials_provider(credentials)
            .endpoint_url(ENDPOINT.as_str())
            .http_client(idminter::adapter::aws::http_client())
            .build();
        Self {
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
            sns: aws_sdk_sns::Client::from_conf(sns),
        }
    }

    /// A new queue with a unique name.
    pub async fn queue(&self, role: &str) -> Queue {
        self.queue_with(role, HashMap::new()).await
    }

    /// A new queue whose messages move to a new dead-letter queue after `max_receive_count`
    /// receives: (queue, dead-letter queue).
    pub async fn queue_with_dlq(&self, role: &str, max_receive_count: u32) -> (Queue, Queue) {
        let dlq = self.queue(&format!("{role}-dlq")).await;
        let policy = json!({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": max_receive_count});
        let queue = self
            .queue_with(
                role,
                HashMap::from([(QueueAttributeName::RedrivePolicy, policy.to_string())]),
            )
            .await;
        (queue, dlq)
    }

    /// A new queue with the given attributes.
    pub async fn queue_with(
        &self,
        role: &str,
        attributes: HashMap<QueueAttributeName, String>,
    ) -> Queue {
        let name = format!("{role}-{}", uuid::Uuid::new_v4().simple());
        let url = self
            .sqs
            .create_queue()
            .queue_name(&name)
            .set_attributes(Some(attributes))
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("a queue URL");
        let arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .expect("a queue ARN");
        Queue {
            name,
            url,
            arn,
            sqs: self.sqs.clone(),
        }
    }

    /// A new topic: its ARN.
    pub async fn topic(&self, role: &str) -> String {
        self.sns
            .create_topic()
            .name(format!("{role}-{}", uuid::Uuid::new_v4().simple()))
            .send()
            .await
            .expect("create topic")
            .topic_arn
            .expect("a topic ARN")
    }

    /// Delivers the topic's messages to the queue, in SNS notification envelopes.
    pub async fn subscribe(&self, topic_arn: &str, queue: &Queue) {
        self.sns
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("sqs")
            .endpoint(&queue.arn)
            .send()
            .await
            .expect("subscribe");
    }

    pub async fn publish(&self, topic_arn: &str, message: &str) {
        self.sns
            .publish()
            .topic_arn(topic_arn)
            .message(message)
            .send()
            .await
            .expect("publish");
    }
}

/// A message read off a queue.
#[derive(Debug, Clone)]
pub struct Message {
    pub body: String,
    pub json: Value,
}

pub struct Queue {
    pub name: String,
    pub url: String,
    pub arn: String,
    sqs: aws_sdk_sqs::Client,
}

impl Queue {
    /// Sends one message: its message id.
    pub async fn send(&self, body: &str) -> String {
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .expect("send")
            .message_id
            .expect("a message id")
    }

    /// Sends each body: their message ids, in order.
    pub async fn send_all(&self, bodies: &[String]) -> Vec<String> {
        let mut ids = Vec::new();
        for body in bodies {
            ids.push(self.send(body).await);
        }
        ids
    }

    /// Receives (and deletes) messages until `n` have arrived; fails after [`DEADLINE`].
    pub async fn receive(&self, n: usize) -> Vec<Message> {
        let started = Instant::now();
        let mut messages = Vec::new();
        while messages.len() < n {
            assert!(
                started.elapsed() < DEADLINE,
                "only {} of {n} messages arrived in {}: {messages:#?}",
                messages.len(),
                self.name
            );
            messages.extend(self.receive_once(1).await);
        }
        messages
    }

    /// One receive (and delete) of what is there, waiting up to `wait_seconds`.
    pub async fn receive_once(&self, wait_seconds: i32) -> Vec<Message> {
        let output = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .send()
            .await
            .expect("receive");
        let mut messages = Vec::new();
        for m in output.messages.unwrap_or_default() {
            self.sqs
                .delete_message()
                .queue_url(&self.url)
                .receipt_handle(m.receipt_handle.clone().expect("a receipt handle"))
                .send()
                .await
                .expect("delete");
            let body = m.body.unwrap_or_default();
            let json = serde_json::from_str(&body).unwrap_or(Value::Null);
            messages.push(Message { body, json });
        }
        messages
    }

    /// (visible, in flight): ApproximateNumberOfMessages and ...NotVisible.
    pub async fn counts(&self) -> (u64, u64) {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        let get = |name| {
            attributes
                .get(&name)
                .and_then(|v| v.parse().ok())
                .expect("a count")
        };
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Waits until the queue holds nothing, visible or in flight.
    pub async fn wait_until_empty(&self) {
        eventually(&format!("{} is empty", self.name), || async {
            self.counts().await == (0, 0)
        })
        .await;
    }

    pub async fn delete_queue(&self) {
        self.sqs
            .delete_queue()
            .queue_url(&self.url)
            .send()
            .await
            .expect("delete queue");
    }

    /// Creates the queue again under the same name (and so the same URL).
    pub async fn recreate(&self) {
        let url = self
            .sqs
            .create_queue()
            .queue_name(&self.name)
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("a queue URL");
        assert_eq!(url, self.url, "a recreated queue keeps its URL");
    }
}

// === the minter ===

/// `idminter serve` as a process on a fresh database, SERVING.
pub struct MinterUnderTest {
    /// Kept for the life of the test: dropping it drops the database.
    _db: helpers::TestDatabase,
    pub process: ServerProcess,
}

impl MinterUnderTest {
    pub async fn start() -> Self {
        let db = helpers::TestDatabase::migrated().await;
        let process = ServerProcess::start(&db.url(), &[]);
        let health = tonic_health::pb::health_client::HealthClient::new(process.channel().await);
        helpers::wait_for_health(&health, ServingStatus::Serving).await;
        Self { _db: db, process }
    }

    /// A minter started with extra `serve` flags (TLS, tokens), ready: its admin `/readyz` (plain
    /// HTTP whatever the gRPC port speaks) answers 200.
    pub async fn start_with(extra: &[&str]) -> Self {
        let db = helpers::TestDatabase::migrated().await;
        let process = ServerProcess::start(&db.url(), extra);
        let admin = process.admin_addr;
        helpers::eventually("the minter is ready", || async move {
            helpers::http_get(admin, "/readyz").await.0 == 200
        })
        .await;
        Self { _db: db, process }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.process.grpc_addr)
    }

    /// The address of a minter started with TLS (its certificate names 127.0.0.1).
    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.process.grpc_addr.port())
    }

    /// `created_by` of every row, by value.
    pub async fn created_by(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT created_by FROM source_identifiers ORDER BY value")
            .fetch_all(&self._db.pool)
            .await
            .unwrap()
    }

    /// The canonical ID of each identifier, `None` where none was minted.
    pub async fn lookup(&self, ids: &[pb::SourceIdentifier]) -> Vec<Option<String>> {
        let mut client = IdMinterClient::new(self.process.channel().await);
        client
            .lookup_ids(pb::LookupIdsRequest {
                source_identifiers: ids.to_vec(),
            })
            .await
            .expect("lookup")
            .into_inner()
            .results
            .into_iter()
            .map(|r| r.canonical_id)
            .collect()
    }
}

// === the adapter ===

/// `idminter adapter` as a real process, killed when dropped. Its log lines (JSON) are kept.
pub struct AdapterProcess {
    child: Child,
    pub admin_addr: SocketAddr,
    log: Arc<Mutex<Log>>,
}

#[derive(Default)]
struct Log {
    lines: Vec<String>,
    /// The process closed its stderr: no more lines will come.
    closed: bool,
}

impl AdapterProcess {
    /// Starts the adapter with `args`, and the test defaults for the flags `args` does not give:
    /// admin on an OS-chosen port, 1 s long polls, backoff capped at 500 ms, queue depth read every
    /// 200 ms.
    pub fn start(args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_idminter"));
        command.args(["--log-format", "json", "adapter"]).args(args);
        for (flag, value) in [
            ("--admin-addr", "127.0.0.1:0"),
            ("--wait-seconds", "1"),
            ("--max-backoff", "500ms"),
            ("--depth-interval", "200ms"),
        ] {
            if !args.contains(&flag) {
                command.args([flag, value]);
            }
        }
        command
            .env("RUST_LOG", "info,idminter::adapter=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = aws_env(&mut command)
            .spawn()
            .expect("spawn idminter adapter");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Log::default()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("TEST_LOG").is_some() {
                    eprintln!("adapter: {line}");
                }
                sink.lock().unwrap().lines.push(line);
            }
            sink.lock().unwrap().closed = true;
        });
        let mut process = Self {
            child,
            admin_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            log,
        };
        let started = process.wait_for_log("adapter started");
        let json: Value = serde_json::from_str(&started).expect("a JSON log line");
        process.admin_addr = json["admin_addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("admin_addr in the start line");
        process
    }

    /// Blocks until a log line contains `needle` and returns it; fails when the log ends (the
    /// process exited) without one, or after [`DEADLINE`].
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        let started = Instant::now();
        loop {
            let closed = {
                let log = self.log.lock().unwrap();
                if let Some(line) = log.lines.iter().find(|l| l.contains(needle)) {
                    return line.clone();
                }
                log.closed
            };
            assert!(
                !closed && started.elapsed() < DEADLINE,
                "no log line with {needle:?}:\n{}",
                self.log_lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().lines.clone()
    }

    /// How many log lines contain `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .lines
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// `/healthz`: (status code, body).
    pub async fn healthz(&self) -> (u16, String) {
        helpers::http_get(self.admin_addr, "/healthz").await
    }

    /// The value of one series of `/metrics`, e.g. `idminter_adapter_queue_depth` or
    /// `idminter_adapter_messages_total{result="published"}`.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = helpers::http_get(self.admin_addr, "/metrics").await;
        text.lines().find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    /// Polls `/healthz` until it answers 503 with `reason` in its body, and returns the body.
    pub async fn wait_until_unhealthy_because(&self, reason: &str) -> String {
        let started = Instant::now();
        loop {
            let (status, body) = self.healthz().await;
            if status == 503 && body.contains(reason) {
                return body;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "/healthz never said {reason:?}; last: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_until_healthy(&self) {
        eventually("/healthz says ok", || async {
            self.healthz().await.0 == 200
        })
        .await;
    }

    /// SIGTERM.
    pub fn terminate(&self) {
        signal(&self.child, "TERM");
    }

    /// SIGKILL, and reaps the process.
    pub fn kill(&mut self) {
        signal(&self.child, "KILL");
        self.child.wait().expect("reap the adapter");
    }

    /// Waits for the process to exit; fails after [`DEADLINE`].
    pub fn wait_for_exit(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(started.elapsed() < DEADLINE, "the adapter did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AdapterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} failed");
}

/// The usual adapter flags: input queue, output queue, minter.
pub fn queue_to_queue<'a>(
    input: &'a Queue,
    output: &'a Queue,
    minter_url: &'a str,
) -> Vec<&'a str> {
    vec![
        "--queue-url",
        &input.url,
        "--output-queue-url",
        &output.url,
        "--minter-addr",
        minter_url,
    ]
}

// === documents ===

/// A source identifier as documents carry it.
pub fn sid(identifier_type: &str, ontology_type: &str, value: &str) -> Value {
    json!({"identifierType": {"id": identifier_type}, "ontologyType": ontology_type, "value": value})
}

/// The same identifier for the minter.
pub fn pb_sid(identifier_type: &str, ontology_type: &str, value: &str) -> pb::SourceIdentifier {
    helpers::sid(identifier_type, ontology_type, value)
}

/// A work as the reference pipeline sends it: the root identifier, another identifier that is not
/// minted, and an identifiable subject and item nested in its data.
pub fn work(value: &str) -> Value {
    json!({
        "type": "Identifiable",
        "sourceIdentifier": sid("sierra-system-number", "Work", value),
        "otherIdentifiers": [sid("miro-image-number", "Image", &format!("V{value}"))],
        "data": {
            "title": format!("Work {value}"),
            "subjects": [{
                "id": {
                    "type": "Identifiable",
                    "sourceIdentifier": sid("lc-subjects", "Subject", &format!("sh-{value}")),
                    "identifiedType": "Subject"
                },
                "label": "Anatomy"
            }],
            "items": [{
                "id": {
                    "type": "Identifiable",
                    "sourceIdentifier": sid("sierra-system-number", "Item", &format!("i-{value}"))
                }
            }]
        }
    })
}

/// The root source identifier value of an identified document.
pub fn value_of(doc: &Value) -> &str {
    doc["sourceIdentifier"]["value"]
        .as_str()
        .unwrap_or_default()
}

/// The canonical ID at `pointer` (a JSON pointer) of an identified document.
pub fn id_at<'a>(doc: &'a Value, pointer: &str) -> &'a str {
    doc.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {doc}"))
}
