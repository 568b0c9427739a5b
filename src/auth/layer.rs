//! The tower layers that authenticate every gRPC call, in two halves around the metrics layer:
//!
//! - [`Authenticate`] (outermost) reads `authorization: Bearer TOKEN`, finds the token's client,
//!   puts its [`Principal`] in the request extensions (anonymous for no or an unknown token) and
//!   decides whether the method's scope is granted; a refusal is only noted, as a [`Denied`]
//!   extension, so that the metrics layer, inside, sees the principal and counts the refused call;
//! - [`Enforce`] (innermost, around the services) answers a noted refusal with its status instead
//!   of calling the service.
//!
//! The scope a method needs ([`required_scope`]): `read` for LookupIds and ResolveCanonicalIds,
//! `mint` for MintIds, `admin` for every other `idminter.v1` method (so methods added to the API
//! later are admin-only until someone decides otherwise); gRPC health and reflection need nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderMap;
use tonic::{Code, Status};
use tower::{Layer, Service};

use super::{Auth, Principal, Scope};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The scope a gRPC path needs, or `None` for a path anyone may call (health, reflection, and
/// paths of no service, which get UNIMPLEMENTED).
pub fn required_scope(path: &str) -> Option<Scope> {
    let method = path.strip_prefix("/idminter.v1.")?;
    Some(match method {
        "IdMinter/MintIds" => Scope::Mint,
        "IdMinter/LookupIds" | "IdMinter/ResolveCanonicalIds" => Scope::Read,
        _ => Scope::Admin,
    })
}

/// A refusal decided by [`Authenticate`], answered by [`Enforce`].
#[derive(Debug, Clone)]
pub struct Denied {
    code: Code,
    message: String,
}

impl Denied {
    fn unauthenticated(message: &str) -> Self {
        Self {
            code: Code::Unauthenticated,
            message: message.to_owned(),
        }
    }

    fn status(&self) -> Status {
        Status::new(self.code, self.message.clone())
    }
}

/// What the `authorization` metadata holds.
enum Credential<'a> {
    Missing,
    Malformed,
    Bearer(&'a str),
}

fn credential(headers: &HeaderMap) -> Credential<'_> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Credential::Missing;
    };
    let Ok(value) = value.to_str() else {
        return Credential::Malformed;
    };
    match value.split_once(' ') {
        // The scheme is case-insensitive (RFC 6750).
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Credential::Bearer(token.trim())
        }
        _ => Credential::Malformed,
    }
}

/// The call's principal, and its refusal if the method's scope is not granted.
fn decide(auth: &Auth, path: &str, headers: &HeaderMap) -> (Principal, Option<Denied>) {
    let Auth::Enabled(set) = auth else {
        return (Principal::anonymous(), None);
    };
    let set = set.load();
    let identity = match credential(headers) {
        Credential::Bearer(token) => set.authenticate(token).map(|(p, s)| (p.clone(), s)),
        Credential::Missing | Credential::Malformed => None,
    };
    let Some(required) = required_scope(path) else {
        let principal = identity.map_or_else(Principal::anonymous, |(p, _)| p);
        return (principal, None);
    };
    match identity {
        Some((principal, granted)) if granted >= required => (principal, None),
        Some((principal, granted)) => {
            let method = path.rsplit('/').next().unwrap_or_default();
            let method: String = method.chars().take(64).collect();
            let denied = Denied {
                code: Code::PermissionDenied,
                message: format!(
                    "{method} needs the `{required}` scope; `{principal}` has `{granted}`"
                ),
            };
            (principal, Some(denied))
        }
        None => {
            let denied = match credential(headers) {
                Credential::Missing => Denied::unauthenticated(
                    "this call needs a token: send the metadata `authorization: Bearer TOKEN`",
                ),
                Credential::Malformed => {
                    Denied::unauthenticated("the `authorization` metadata must be `Bearer TOKEN`")
                }
                Credential::Bearer(_) => {
                    Denied::unauthenticated("the token is not known to this server")
                }
            };
            (Principal::anonymous(), Some(denied))
        }
    }
}

// === impl Authenticate ===

/// The outer half: principal and decision. See the module doc.
#[derive(Debug, Clone)]
pub struct Authenticate {
    auth: Auth,
}

impl Authenticate {
    pub fn new(auth: Auth) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for Authenticate {
    type Service = AuthenticateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthenticateService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthenticateService<S> {
    inner: S,
    auth: Auth,
}

impl<S, B> Service<http::Request<B>> for AuthenticateService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let (principal, denied) = decide(&self.auth, request.uri().path(), request.headers());
        request.extensions_mut().insert(principal);
        if let Some(denied) = denied {
            request.extensions_mut().insert(denied);
        }
        self.inner.call(request)
    }
}

// === impl Enforce ===

/// The inner half: answers a refused call with its status. See the module doc.
#[derive(Debug, Clone, Default)]
pub struct Enforce;

impl<S> Layer<S> for Enforce {
    type Service = EnforceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EnforceService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct EnforceService<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for EnforceService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Some(denied) = request.extensions().get::<Denied>() {
            let response = denied.status().into_http();
            return Box::pin(async move { Ok(response) });
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arc_swap::ArcSwap;

    use super::*;
    use crate::auth::TokenSet;
    use crate::auth::tokens::hash_hex;

    fn auth() -> Auth {
        let text = format!(
            "reader read {}\nminter mint {}\nops admin {}\n",
            hash_hex("r"),
            hash_hex("m"),
            hash_hex("a")
        );
        Auth::Enabled(Arc::new(ArcSwap::from_pointee(
            TokenSet::parse(&text).unwrap(),
        )))
    }

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = authorization {
            h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    fn outcome(path: &str, authorization: Option<&str>) -> (String, Option<Code>) {
        let (p, d) = decide(&auth(), path, &headers(authorization));
        (p.as_str().to_owned(), d.map(|d| d.code))
    }

    #[test]
    fn each_method_needs_its_scope_and_new_methods_need_admin() {
        assert_eq!(
            required_scope("/idminter.v1.IdMinter/MintIds"),
            Some(Scope::Mint)
        );
        assert_eq!(
            required_scope("/idminter.v1.IdMinter/LookupIds"),
            Some(Scope::Read)
        );
        assert_eq!(
            required_scope("/idminter.v1.IdMinter/ResolveCanonicalIds"),
            Some(Scope::Read)
        );
        assert_eq!(
            required_scope("/idminter.v1.IdMinter/WithdrawCanonicalIds"),
            Some(Scope::Admin)
        );
        assert_eq!(required_scope("/idminter.v1.Other/X"), Some(Scope::Admin));
        assert_eq!(required_scope("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            required_scope("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            None
        );
    }

    #[test]
    fn no_or_an_unknown_token_is_unauthenticated_and_anonymous() {
        let mint = "/idminter.v1.IdMinter/MintIds";
        for authorization in [
            None,
            Some("Bearer nope"),
            Some("Basic bTpt"),
            Some("Bearer "),
        ] {
            assert_eq!(
                outcome(mint, authorization),
                ("anonymous".to_owned(), Some(Code::Unauthenticated)),
                "{authorization:?}"
            );
        }
    }

    #[test]
    fn a_token_without_the_scope_is_permission_denied_with_its_name() {
        let (principal, denied) = decide(
            &auth(),
            "/idminter.v1.IdMinter/MintIds",
            &headers(Some("Bearer r")),
        );
        assert_eq!(principal.as_str(), "reader");
        let denied = denied.unwrap();
        assert_eq!(denied.code, Code::PermissionDenied);
        assert_eq!(
            denied.message,
            "MintIds needs the `mint` scope; `reader` has `read`"
        );
        assert_eq!(
            outcome("/idminter.v1.IdMinter/Redirect", Some("Bearer m")).1,
            Some(Code::PermissionDenied)
        );
    }

    #[test]
    fn higher_scopes_include_lower_ones() {
        for (token, path) in [
            ("m", "/idminter.v1.IdMinter/LookupIds"),
            ("a", "/idminter.v1.IdMinter/MintIds"),
            ("a", "/idminter.v1.IdMinter/Redirect"),
            ("bearer r", "/idminter.v1.IdMinter/ResolveCanonicalIds"),
        ] {
            let authorization = if token.contains(' ') {
                token.to_owned()
            } else {
                format!("Bearer {token}")
            };
            assert_eq!(
                outcome(path, Some(&authorization)).1,
                None,
                "{token} {path}"
            );
        }
    }

    #[test]
    fn health_and_reflection_are_open_and_name_a_known_caller() {
        assert_eq!(
            outcome("/grpc.health.v1.Health/Check", None),
            ("anonymous".to_owned(), None)
        );
        assert_eq!(
            outcome("/grpc.health.v1.Health/Check", Some("Bearer a")),
            ("ops".to_owned(), None)
        );
    }

    #[test]
    fn without_tokens_every_call_is_anonymous_and_allowed() {
        let (p, d) = decide(
            &Auth::Disabled,
            "/idminter.v1.IdMinter/MintIds",
            &headers(Some("Bearer whatever")),
        );
        assert_eq!(p.as_str(), "anonymous");
        assert!(d.is_none());
    }
}
