//! Who is calling, and may they: bearer tokens from a tokens file, scopes per method, and the
//! [`Principal`] every gRPC call carries from here on (on its span, in the request counter's
//! `principal` label, and in `source_identifiers.created_by` for the rows MintIds writes).
//!
//! - [`tokens`]: the tokens file (`NAME SCOPES SHA256HEX` per line), the token set it holds, and
//!   `idminter token new`; tokens are only ever held as SHA-256 hashes, compared in constant time;
//! - [`layer`]: the tower layers that authenticate every call and refuse the ones without the
//!   scope their method needs (UNAUTHENTICATED, PERMISSION_DENIED); health and reflection are open.
//!
//! Without a tokens file every call is allowed and its principal is `anonymous`.

pub mod layer;
pub mod tokens;

use std::fmt;
use std::sync::{Arc, LazyLock};

pub use layer::{Authenticate, Enforce};
pub use tokens::{Auth, TokenSet};

/// The principal of calls made without tokens (and the label of unauthenticated calls).
pub const ANONYMOUS: &str = "anonymous";
/// The principal of rows brought in by `idminter import`.
pub const IMPORT: &str = "import";

static ANONYMOUS_PRINCIPAL: LazyLock<Principal> = LazyLock::new(|| Principal(Arc::from(ANONYMOUS)));

/// The client a call comes from: the NAME of its token in the tokens file, or `anonymous`. Cheap to
/// clone. The layer puts one in the request extensions of every gRPC call; handlers read it with
/// `request.extensions().get::<Principal>()` (absent means anonymous).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal(Arc<str>);

impl Principal {
    /// The principal of calls that carry no valid token, or of every call without a tokens file.
    pub fn anonymous() -> Self {
        ANONYMOUS_PRINCIPAL.clone()
    }

    /// A named principal; names come from the tokens file, which [`tokens`] validates.
    pub(crate) fn named(name: &str) -> Self {
        Self(Arc::from(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The principal of a request: the one the layer put there, or anonymous.
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        request
            .extensions()
            .get::<Principal>()
            .cloned()
            .unwrap_or_else(Principal::anonymous)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a token allows. Each scope includes the ones below it: `admin` includes `mint`, which
/// includes `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// LookupIds and ResolveCanonicalIds.
    Read,
    /// MintIds (and read).
    Mint,
    /// Every other idminter.v1 method, such as the lifecycle calls (and mint, read).
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Mint, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Mint => "mint",
            Scope::Admin => "admin",
        }
    }

    /// Parses one scope name, exactly as written in the tokens file.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === client side ===

/// A client interceptor that sends `authorization: Bearer TOKEN` with every call (nothing without
/// a token). The value is marked sensitive, so HTTP/2 never puts it in its header-compression
/// table.
#[derive(Clone, Default)]
pub struct BearerToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl BearerToken {
    /// # Errors
    /// The token has characters that cannot go in gRPC metadata (the error does not repeat it).
    pub fn new(token: Option<&str>) -> anyhow::Result<Self> {
        let Some(token) = token else {
            return Ok(Self(None));
        };
        let mut value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            format!("Bearer {}", token.trim()).parse().map_err(|_| {
                anyhow::anyhow!("the token has characters that cannot be sent as gRPC metadata")
            })?;
        value.set_sensitive(true);
        Ok(Self(Some(value)))
    }
}

impl fmt::Debug for BearerToken {
    /// Never shows the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "BearerToken(..)"
        } else {
            "BearerToken(none)"
        })
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}
