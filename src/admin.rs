//! The admin HTTP listener, for what cannot speak gRPC: `/healthz` (the process is alive; for the
//! adapter also whether it is making progress), `/readyz` (200 when SERVING, 503 with the
//! diagnosis otherwise) and `/metrics` (Prometheus text).

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::DB_POOL_CONNECTIONS;
use crate::readiness::{Readiness, State};

/// What the admin routes read.
#[derive(Clone)]
pub struct AdminState {
    /// The server's readiness (`/readyz`); absent for the adapter, which has none.
    pub readiness: Option<Readiness>,
    pub metrics: PrometheusHandle,
    /// The pool whose connections `/metrics` reports.
    pub pool: Option<PgPool>,
    /// What `/healthz` says: `None` is healthy; the adapter sets the reason it is not.
    pub health: Option<tokio::sync::watch::Receiver<Option<String>>>,
}

/// Serves the admin routes until `stop` fires.
///
/// # Errors
/// The listener failed.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

async fn healthz(AxumState(state): AxumState<AdminState>) -> (StatusCode, String) {
    match state.health.as_ref().and_then(|h| h.borrow().clone()) {
        None => (StatusCode::OK, "ok\n".to_owned()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn readyz(AxumState(state): AxumState<AdminState>) -> (StatusCode, String) {
    match state.readiness.map(|r| r.current()) {
        Some(State::Serving) => (StatusCode::OK, "SERVING\n".to_owned()),
        Some(State::NotServing(why)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("NOT_SERVING: {why}\n"),
        ),
        None => (StatusCode::NOT_FOUND, "no readiness here\n".to_owned()),
    }
}

async fn render_metrics(AxumState(state): AxumState<AdminState>) -> String {
    if let Some(pool) = &state.pool {
        let idle = pool.num_idle() as f64;
        let size = f64::from(pool.size());
        metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(idle);
        metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(size - idle);
        metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "max")
            .set(f64::from(pool.options().get_max_connections()));
    }
    state.metrics.render()
}
