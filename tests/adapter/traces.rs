//! Traces exported over OTLP/gRPC to a real receiver (a TraceService server built from the
//! OpenTelemetry protocol's own definitions, on 127.0.0.1): one adapter message is one trace, from
//! the adapter's batch through the minter's call to its database work, linked by parent ids; and
//! a caller's W3C `traceparent` is continued by the server.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use tonic::transport::server::TcpIncoming;

use crate::helpers::{self, ServerProcess, ServingStatus, TestDatabase};
use crate::support::*;

// === the receiver ===

/// One exported span, as the receiver got it.
#[derive(Clone)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
}

impl std::fmt::Debug for ReceivedSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} trace {} span {} parent {}",
            self.service,
            self.name,
            hex(&self.trace_id),
            hex(&self.span_id),
            hex(&self.parent_span_id)
        )
    }
}

/// An OTLP/gRPC trace receiver that keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    AnyValue::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// Starts the receiver on an OS-chosen port: (receiver, its endpoint URL).
    async fn start() -> (Self, String) {
        let receiver = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        (receiver, format!("http://{addr}"))
    }

    fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until a span of `service` named `name` has arrived; returns every such span.
    async fn wait_for(&self, service: &str, name: &str) -> Vec<ReceivedSpan> {
        let find = || -> Vec<ReceivedSpan> {
            self.spans()
                .into_iter()
                .filter(|s| s.service == service && s.name == name)
                .collect()
        };
        eventually(&format!("{service} exported a {name} span"), || async {
            !find().is_empty()
        })
        .await;
        find()
    }
}

/// The one span of `spans` named `name` whose parent is `parent`.
fn child<'a>(spans: &'a [ReceivedSpan], parent: &ReceivedSpan, name: &str) -> &'a ReceivedSpan {
    let children: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name == name && s.parent_span_id == parent.span_id)
        .collect();
    assert_eq!(
        children.len(),
        1,
        "one {name} span under {} {:?}: {spans:#?}",
        parent.name,
        parent.span_id
    );
    assert_eq!(children[0].trace_id, parent.trace_id, "{name}: same trace");
    children[0]
}

/// `idminter serve` exporting to `endpoint`, SERVING.
async fn traced_minter(db: &TestDatabase, endpoint: &str) -> ServerProcess {
    let process = ServerProcess::start(&db.url(), &["--otlp-endpoint", endpoint]);
    let health = tonic_health::pb::health_client::HealthClient::new(process.channel().await);
    helpers::wait_for_health(&health, ServingStatus::Serving).await;
    process
}

/// SIGTERM, and waits for the exit, which exports the spans still buffered.
fn stop_minter(mut minter: ServerProcess) {
    minter.terminate();
    let status = minter.child.wait().expect("wait for the minter");
    assert!(status.success(), "{status}");
}

// === the tests ===

#[tokio::test(flavor = "multi_thread")]
async fn one_adapter_message_is_one_trace_from_the_adapter_through_the_minter_to_the_database() {
    // Arrange: a minter and an adapter, both exporting to the receiver.
    let (receiver, endpoint) = Receiver::start().await;
    let db = TestDatabase::migrated().await;
    let minter = traced_minter(&db, &endpoint).await;
    let aws = Aws::new();
    let input = aws.queue("in").await;
    let output = aws.queue("out").await;
    let minter_url = format!("http://{}", minter.grpc_addr);
    let mut args = queue_to_queue(&input, &output, &minter_url);
    args.extend(["--otlp-endpoint", &endpoint]);
    let mut adapter = AdapterProcess::start(&args);

    // Act: one message through.
    input.send(&work("t1").to_string()).await;
    output.receive(1).await;
    adapter.terminate();
    assert!(adapter.wait_for_exit().success());
    stop_minter(minter);

    // Assert: the adapter's batch span is the root of one trace: the minter's call, its handler
    // and the database work are its descendants, each the child of the one before.
    let batches = receiver
        .wait_for("idminter-adapter", "Identifying a batch")
        .await;
    assert_eq!(batches.len(), 1, "one message, one batch: {batches:#?}");
    let batch = &batches[0];
    assert!(
        batch.parent_span_id.is_empty(),
        "the batch starts the trace"
    );
    receiver.wait_for("idminter", "db.mint").await;
    let minter_spans: Vec<ReceivedSpan> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.service == "idminter")
        .collect();
    let call = child(&minter_spans, batch, "rpc");
    let handler = child(&minter_spans, call, "MintIds");
    let database = child(&minter_spans, handler, "db.mint");
    assert_eq!(database.trace_id, batch.trace_id);

    // Everything the minter did for the message is in that one trace.
    for span in receiver.spans() {
        if span.name == "MintIds" || span.name == "db.mint" {
            assert_eq!(
                span.trace_id, batch.trace_id,
                "{span:?} is in another trace"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callers_traceparent_is_continued_by_the_server() {
    let (receiver, endpoint) = Receiver::start().await;
    let db = TestDatabase::migrated().await;
    let minter = traced_minter(&db, &endpoint).await;

    // A caller in trace 4bf9...4736 whose current span is 00f0...02b7 (the W3C example).
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let mut request = tonic::Request::new(idminter::pb::LookupIdsRequest {
        source_identifiers: vec![pb_sid("sierra-system-number", "Work", "b1")],
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
    );
    idminter::pb::id_minter_client::IdMinterClient::new(minter.channel().await)
        .lookup_ids(request)
        .await
        .expect("lookup");
    stop_minter(minter);

    let lookups = receiver.wait_for("idminter", "db.lookup").await;
    assert_eq!(lookups.len(), 1, "{lookups:#?}");
    let spans = receiver.spans();
    let call = spans
        .iter()
        .find(|s| s.name == "rpc" && hex(&s.trace_id) == trace_id)
        .unwrap_or_else(|| panic!("no rpc span in the caller's trace: {spans:#?}"));
    assert_eq!(
        hex(&call.parent_span_id),
        parent_id,
        "the caller's span is the parent"
    );
    let handler = child(&spans, call, "LookupIds");
    let database = child(&spans, handler, "db.lookup");
    assert_eq!(hex(&database.trace_id), trace_id);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
