//! The public resolver: read-only JSON over HTTP for web front ends and people, served by
//! `serve --http-addr` beside the gRPC API, from the same store (so the same caches and the same
//! never-stale statuses).
//!
//! - `GET /v1/canonical-ids/{id}`: 200 with the ID, its status and its source identifiers when
//!   ACTIVE; 301 to `/v1/canonical-ids/{target}` (with the same JSON) when REDIRECTED; 410 with the
//!   tombstone when WITHDRAWN; 404 unknown; 400 malformed.
//! - `GET /v1/source-identifiers/{identifier_type}/{ontology_type}/{value}`, each segment
//!   percent-encoded (values contain `/`, spaces, any Unicode): 200 with the canonical ID, its
//!   status and redirect target, or 404. Ontology aliases apply, as in the gRPC API.
//!
//! With tokens configured (`--auth-tokens`), GET and HEAD need a token with the `read` scope
//! (`Authorization: Bearer TOKEN`, the tokens of the gRPC API): 401 without a known token, 403
//! without the scope; answers are then `Cache-Control: private`, so that no shared cache hands
//! them to a client without a token.
//!
//! Every 200/301/410 carries a strong `ETag` (a hash of the body) and `Cache-Control`; a matching
//! `If-None-Match` gets 304. `HEAD` answers as `GET` without the body. Every answer carries
//! `Access-Control-Allow-Origin: *`, and preflight `OPTIONS` is answered. Errors are JSON
//! (`{"error": "...", "message": "..."}`), never a stack or SQL; a malformed ID or path is 400.
//! Segments are split on the raw path and decoded here, so that an encoded `/` (`%2F`) stays
//! inside its segment and a bad encoding is our 400, not a framework's plain-text one.

use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::get;
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, Scope};
use crate::domain::{CanonicalId, IdState, OntologyAliases, SourceIdentifier, StateRecord};
use crate::error::Error;
use crate::readiness::Readiness;
use crate::store::Store;

const CANONICAL_IDS: &str = "/v1/canonical-ids/";
const SOURCE_IDENTIFIERS: &str = "/v1/source-identifiers/";
/// How long a client or a shared cache may reuse an answer: short, because a status can change
/// (and a redirect can be undone), so no answer is ever cached as permanent.
const CACHE_CONTROL: &str = "public, max-age=60";
/// The same when tokens are required: only the client's own cache may keep an answer.
const CACHE_CONTROL_PRIVATE: &str = "private, max-age=60";

/// What the resolver reads.
#[derive(Clone)]
pub struct ResolverState {
    pub store: Store,
    pub readiness: Readiness,
    pub aliases: Arc<OntologyAliases>,
    /// The gRPC API's tokens: with them, the `read` scope is required here too.
    pub auth: Auth,
}

/// The resolver's routes.
pub fn router(state: ResolverState) -> Router {
    Router::new()
        .route(
            "/v1/canonical-ids/{*id}",
            get(canonical_id).options(preflight),
        )
        .route(
            "/v1/source-identifiers/{*segments}",
            get(source_identifier).options(preflight),
        )
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serves the resolver until `stop` fires, then finishes the requests in flight.
///
/// # Errors
/// The listener failed.
pub async fn serve(
    listener: TcpListener,
    state: ResolverState,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

async fn canonical_id(
    State(resolver): State<ResolverState>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(raw) = uri.path().strip_prefix(CANONICAL_IDS) else {
        return fallback(uri).await;
    };
    if let Some(refused) = refusal(&resolver.auth, &headers) {
        return refused;
    }
    let id = match decode(raw)
        .and_then(|text| CanonicalId::parse(text).map_err(|m| format!("canonical ID: {m}")))
    {
        Ok(id) => id,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_request", &message),
    };
    if let Err(e) = resolver.readiness.check() {
        return failure(e);
    }
    let (sources, states) = match tokio::try_join!(
        resolver.store.resolve(std::slice::from_ref(&id)),
        resolver.store.states()
    ) {
        Ok(found) => found,
        Err(e) => return failure(e),
    };
    let sources = sources.into_iter().next().unwrap_or_default();
    if sources.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("{id} is not a canonical ID"),
        );
    }
    let record = states.states.record(&id);
    let state = record.map_or(&IdState::Active, |r| &r.state);
    let mut body = json!({"canonical_id": id.as_str(), "status": status_name(state)});
    let status = match state {
        IdState::Active => StatusCode::OK,
        IdState::Redirected(_) => StatusCode::MOVED_PERMANENTLY,
        IdState::Withdrawn => StatusCode::GONE,
    };
    if let Some(target) = state.redirect_target() {
        body["redirect_target"] = json!(target.as_str());
    }
    if !matches!(state, IdState::Withdrawn) {
        body["source_identifiers"] = sources.iter().map(identifier_json).collect();
    }
    if let Some(record) = record {
        add_change(&mut body, record);
    }
    let mut response = cacheable(status, &body, &headers, &resolver.auth);
    if let Some(target) = state.redirect_target()
        && let Ok(location) = HeaderValue::from_str(&format!("{CANONICAL_IDS}{target}"))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

async fn source_identifier(
    State(resolver): State<ResolverState>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(raw) = uri.path().strip_prefix(SOURCE_IDENTIFIERS) else {
        return fallback(uri).await;
    };
    if let Some(refused) = refusal(&resolver.auth, &headers) {
        return refused;
    }
    let identifier = match parse_identifier(raw) {
        Ok(id) => resolver.aliases.apply(id),
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_request", &message),
    };
    if let Err(e) = resolver.readiness.check() {
        return failure(e);
    }
    let (found, states) = match tokio::try_join!(
        resolver.store.lookup(std::slice::from_ref(&identifier)),
        resolver.store.states()
    ) {
        Ok(found) => found,
        Err(e) => return failure(e),
    };
    let Some(id) = found.into_iter().next().flatten() else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("{identifier} has no canonical ID"),
        );
    };
    let state = states.states.state(&id);
    let mut body = json!({
        "canonical_id": id.as_str(),
        "status": status_name(state),
        "source_identifier": identifier_json(&identifier),
    });
    if let Some(target) = state.redirect_target() {
        body["redirect_target"] = json!(target.as_str());
    }
    cacheable(StatusCode::OK, &body, &headers, &resolver.auth)
}

/// With tokens configured, the answer to a request without a known token with the `read` scope:
/// 401 (no or an unknown token) or 403 (a token without the scope); `None` lets it through. The
/// token rules are the gRPC API's (RFC 6750 `Bearer`).
fn refusal(auth: &Auth, headers: &HeaderMap) -> Option<Response> {
    let Auth::Enabled(set) = auth else {
        return None;
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .map(|(_, token)| token.trim());
    let Some(token) = token else {
        return Some(unauthorized(
            "the resolver needs a token: send `Authorization: Bearer TOKEN`",
        ));
    };
    let set = set.load();
    match set.authenticate(token) {
        None => Some(unauthorized("the token is not known to this server")),
        Some((_, granted)) if granted >= Scope::Read => None,
        Some((principal, granted)) => Some(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("the resolver needs the `read` scope; `{principal}` has `{granted}`"),
        )),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// `type/ontology/value`, exactly three non-empty percent-encoded segments.
fn parse_identifier(raw: &str) -> Result<SourceIdentifier, String> {
    let segments: Vec<&str> = raw.split('/').collect();
    let [t, o, v] = segments.as_slice() else {
        return Err(format!(
            "the path must be {SOURCE_IDENTIFIERS}{{identifier_type}}/{{ontology_type}}/{{value}} with each segment percent-encoded (a `/` in a value as %2F); found {} segments",
            segments.len()
        ));
    };
    SourceIdentifier::parse(decode(t)?, decode(o)?, decode(v)?).map_err(|problems| {
        problems
            .into_iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Percent-decodes one segment, which must then be UTF-8.
fn decode(segment: &str) -> Result<String, String> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "a path segment is not UTF-8 once percent-decoded".to_owned())
}

fn status_name(state: &IdState) -> &'static str {
    match state {
        IdState::Active => "ACTIVE",
        IdState::Redirected(_) => "REDIRECTED",
        IdState::Withdrawn => "WITHDRAWN",
    }
}

fn identifier_json(id: &SourceIdentifier) -> Value {
    json!({
        "identifier_type": id.identifier_type(),
        "ontology_type": id.ontology_type(),
        "value": id.value(),
    })
}

fn add_change(body: &mut Value, record: &StateRecord) {
    body["reason"] = json!(record.reason);
    body["changed_at"] = json!(record.changed_at.format(&Rfc3339).ok());
    body["changed_by"] = json!(record.changed_by);
}

/// A 200/301/410 with its ETag and Cache-Control, or 304 when the client has it already.
fn cacheable(status: StatusCode, body: &Value, request: &HeaderMap, auth: &Auth) -> Response {
    let bytes = body.to_string().into_bytes();
    let mut hasher = DefaultHasher::new();
    hasher.write_u16(status.as_u16());
    hasher.write(&bytes);
    let etag = format!("\"{:016x}\"", hasher.finish());
    let not_modified = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*");
    let mut response = if not_modified {
        respond(StatusCode::NOT_MODIFIED, Body::empty())
    } else {
        let mut response = respond(status, Body::from(bytes));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if auth.is_enabled() {
            CACHE_CONTROL_PRIVATE
        } else {
            CACHE_CONTROL
        }),
    );
    if auth.is_enabled() {
        headers.insert(header::VARY, HeaderValue::from_static("authorization"));
    }
    response
}

/// Every answer: the status, the body, and CORS.
fn respond(status: StatusCode, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// A JSON error: `{"error": kind, "message": ...}`.
fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"error": kind, "message": message}).to_string();
    let mut response = respond(status, Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Our failures: 503 while the database or schema is not there, 500 (opaque) for a bug.
fn failure(e: Error) -> Response {
    match e {
        Error::Unavailable(why) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &why),
        Error::DeadlineExceeded => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "deadline exceeded",
        ),
        other => {
            tracing::error!(error = ?other, "resolver: internal error");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; the server's log has the details",
            )
        }
    }
}

async fn preflight() -> Response {
    let mut response = respond(StatusCode::NO_CONTENT, Body::empty());
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, if-none-match"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

/// Paths under our two prefixes that do not have their shape are malformed (400); anything else
/// is not ours (404).
async fn fallback(uri: Uri) -> Response {
    let path = uri.path();
    let prefixes = [CANONICAL_IDS, SOURCE_IDENTIFIERS];
    if prefixes
        .iter()
        .any(|p| path.starts_with(p.trim_end_matches('/')))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "malformed path: expected /v1/canonical-ids/{id} or /v1/source-identifiers/{identifier_type}/{ontology_type}/{value}",
        );
    }
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route: see /v1/canonical-ids/{id} and /v1/source-identifiers/{identifier_type}/{ontology_type}/{value}",
    )
}

async fn method_not_allowed(method: Method) -> Response {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("{method} is not allowed: the resolver is read-only (GET, HEAD, OPTIONS)"),
    );
    response.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_identifier_segments_are_split_raw_then_decoded() {
        let id = parse_identifier("lc-subjects/Concept/sh85%2F123%20x%C3%A9").unwrap();
        assert_eq!(id.identifier_type(), "lc-subjects");
        assert_eq!(id.value(), "sh85/123 xé");
        assert!(
            parse_identifier("a/b/c/d")
                .unwrap_err()
                .contains("4 segments")
        );
        assert!(
            parse_identifier("a//c")
                .unwrap_err()
                .contains("ontology_type")
        );
        assert!(parse_identifier("a/b/%FF").unwrap_err().contains("UTF-8"));
        assert!(parse_identifier("a/b/%00").unwrap_err().contains("control"));
    }
}
