//! The admin HTTP listener, for what cannot speak gRPC health: `/healthz` (the process is alive),
//! `/readyz` (200 when SERVING, 503 with the diagnosis otherwise) and `/metrics` (Prometheus).

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::readiness::{Readiness, State};

/// Serves the admin routes until `stop` fires.
///
/// # Errors
/// The listener failed.
pub async fn serve(
    listener: TcpListener,
    readiness: Readiness,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(readiness);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

async fn readyz(AxumState(readiness): AxumState<Readiness>) -> (StatusCode, String) {
    match readiness.current() {
        State::Serving => (StatusCode::OK, "SERVING\n".to_owned()),
        State::NotServing(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("NOT_SERVING: {why}\n"),
        ),
    }
}
