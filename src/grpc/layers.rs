//! Tower layers around the gRPC server:
//! - [`RpcMetricsLayer`] (all services): one span per call, and the request counter by method,
//!   gRPC code and principal (put in the extensions by `auth::Authenticate`, outside this layer)
//!   and the latency histogram, counted once here rather than in every handler;
//! - [`limit_concurrency`] (our service only): at most N calls at once, RESOURCE_EXHAUSTED beyond,
//!   using tower's load-shedding concurrency limit. Health checks stay outside the limit, so an
//!   overloaded server is not mistaken for a dead one.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder};
use tracing::Instrument;

use super::deadline::Arrival;
use crate::auth::Principal;
use crate::metrics::{RPC_DURATION, RPC_REQUESTS};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

// === impl RpcMetricsLayer ===

#[derive(Debug, Clone, Default)]
pub struct RpcMetricsLayer;

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
}

impl<S, B, ResBody> Service<http::Request<B>> for RpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        request.extensions_mut().insert(Arrival(started));
        let parent = crate::telemetry::remote_parent(request.headers());
        let method = method_label(request.uri().path());
        // Bounded: the names of the tokens file, and `anonymous`.
        let principal = request
            .extensions()
            .get::<Principal>()
            .cloned()
            .unwrap_or_else(Principal::anonymous);
        let span = tracing::info_span!("rpc", %method, %principal);
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let result = future.await;
                let elapsed = started.elapsed();
                // Unary calls that fail carry grpc-status in the headers ("trailers-only");
                // successful ones carry 0 in the trailers, which a layer does not wait for.
                let code = match &result {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map_or(tonic::Code::Ok, tonic::Code::from),
                    Err(_) => tonic::Code::Internal,
                };
                let code_label = format!("{code:?}");
                metrics::counter!(RPC_REQUESTS, "method" => method.clone(), "code" => code_label.clone(), "principal" => principal.to_string()).increment(1);
                metrics::histogram!(RPC_DURATION, "method" => method).record(elapsed.as_secs_f64());
                let latency_ms = elapsed.as_secs_f64() * 1000.0;
                if code == tonic::Code::Ok {
                    tracing::debug!(code = %code_label, latency_ms, "rpc finished");
                } else {
                    tracing::info!(code = %code_label, latency_ms, "rpc failed");
                }
                result
            }
            .instrument(crate::telemetry::with_parent(span, parent)),
        )
    }
}

/// The method name for labels: the last path segment for the services we serve, `other` for any
/// other path, so that a client cannot create a time series per random path.
fn method_label(path: &str) -> String {
    const SERVICES: [&str; 4] = [
        "/idminter.v1.IdMinter/",
        "/grpc.health.v1.Health/",
        "/grpc.reflection.v1.ServerReflection/",
        "/grpc.reflection.v1alpha.ServerReflection/",
    ];
    match SERVICES.iter().find_map(|s| path.strip_prefix(s)) {
        Some(method) if !method.is_empty() && !method.contains('/') => method.to_owned(),
        _ => "other".to_owned(),
    }
}

// === limit_concurrency ===

/// A tonic service wrapped in tower's load-shedding concurrency limit, with overload turned into
/// a RESOURCE_EXHAUSTED response (tonic's router needs services that never fail).
#[derive(Clone)]
pub struct Limited<S> {
    inner: BoxCloneSyncService<http::Request<Body>, http::Response<Body>, tower::BoxError>,
    _named: std::marker::PhantomData<fn() -> S>,
}

impl<S: NamedService> NamedService for Limited<S> {
    const NAME: &'static str = S::NAME;
}

/// Limits `service` to `limit` concurrent calls, shared by all connections.
pub fn limit_concurrency<S>(service: S, limit: usize) -> Limited<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let limited = ServiceBuilder::new()
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::new(limit))
        .service(service);
    Limited {
        inner: BoxCloneSyncService::new(limited),
        _named: std::marker::PhantomData,
    }
}

impl<S> Service<http::Request<Body>> for Limited<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // LoadShed is always ready (it only notes whether its inner service is), and the inner
        // tonic service cannot fail: there is no error to pass on here.
        self.inner.poll_ready(cx).map(|_| Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            Ok(future.await.unwrap_or_else(|e| {
                if e.is::<tower::load_shed::error::Overloaded>() {
                    Status::resource_exhausted(
                        "server is at its concurrency limit; retry with backoff",
                    )
                    .into_http()
                } else {
                    tracing::error!(error = %e, "concurrency limit failed");
                    Status::internal("internal error").into_http()
                }
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_bounded_to_the_methods_we_serve() {
        assert_eq!(method_label("/idminter.v1.IdMinter/MintIds"), "MintIds");
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "Check");
        for path in [
            "/x.Y/Z",
            "/idminter.v1.IdMinter/",
            "/idminter.v1.IdMinter/a/b",
            "/random-1234",
        ] {
            assert_eq!(method_label(path), "other", "{path}");
        }
    }
}
