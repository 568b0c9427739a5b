//! Prometheus metrics: one process-wide recorder, rendered by the admin listener's `/metrics`.
//! The names are part of the contract (dashboards and alerts depend on them), so they are
//! constants here.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const RPC_REQUESTS: &str = "idminter_rpc_requests_total";
pub const RPC_DURATION: &str = "idminter_rpc_duration_seconds";
pub const IDS: &str = "idminter_ids_total";
pub const READY: &str = "idminter_ready";
pub const DB_POOL_CONNECTIONS: &str = "idminter_db_pool_connections";
pub const ADAPTER_MESSAGES: &str = "idminter_adapter_messages_total";
pub const ADAPTER_OLDEST_MESSAGE_AGE: &str = "idminter_adapter_oldest_message_age_seconds";
pub const ADAPTER_QUEUE_DEPTH: &str = "idminter_adapter_queue_depth";
pub const ID_CACHE_LOOKUPS: &str = "idminter_id_cache_lookups_total";
pub const READ_REPLICA_LAG: &str = "idminter_read_replica_lag_seconds";
pub const READ_REPLICA_UP: &str = "idminter_read_replica_up";
pub const AUTH_ENABLED: &str = "idminter_auth_enabled";

/// Latency buckets from 0.5 ms (one cached identifier) to 30 s (the default request timeout).
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder once (later calls, as in tests, get the same handle).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(RPC_DURATION.to_owned()), DURATION_BUCKETS)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding program; ours then
            // renders nothing, which is visible rather than fatal.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        RPC_REQUESTS,
        "gRPC calls by method, status code and principal (the token's NAME, or anonymous)"
    );
    metrics::describe_gauge!(
        AUTH_ENABLED,
        "1 when the server checks tokens (--auth-tokens), 0 when every call is allowed"
    );
    metrics::describe_histogram!(
        RPC_DURATION,
        metrics::Unit::Seconds,
        "gRPC call latency by method"
    );
    metrics::describe_counter!(IDS, "identifiers answered by MintIds, by outcome");
    metrics::describe_gauge!(READY, "1 when the health status is SERVING, 0 otherwise");
    metrics::describe_gauge!(
        DB_POOL_CONNECTIONS,
        "database pool connections by state (idle, in_use, max)"
    );
    metrics::describe_counter!(ADAPTER_MESSAGES, "queue adapter messages by result");
    metrics::describe_gauge!(
        ADAPTER_OLDEST_MESSAGE_AGE,
        metrics::Unit::Seconds,
        "age of the oldest message received in the last poll window"
    );
    metrics::describe_gauge!(
        ADAPTER_QUEUE_DEPTH,
        "ApproximateNumberOfMessages of the input queue"
    );
    metrics::describe_counter!(
        ID_CACHE_LOOKUPS,
        "identifiers looked up in the in-process cache, by result (hit, miss)"
    );
    metrics::describe_gauge!(
        READ_REPLICA_LAG,
        metrics::Unit::Seconds,
        "the read replica's replay lag (0 when it has replayed all it received)"
    );
    metrics::describe_gauge!(
        READ_REPLICA_UP,
        "1 while reads go to the read replica, 0 while it is unreachable and reads go to the primary"
    );
}
