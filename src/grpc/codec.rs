//! Request bytes that are not a valid message are the caller's fault, and are answered as such.
//!
//! tonic answers them INTERNAL: prost's decode errors (a truncated message, invalid UTF-8 in a
//! string, a wrong wire type, an overlong varint) through tonic-prost's codec, and a few framing
//! faults of the gRPC message envelope (a compressed flag without `grpc-encoding`, an invalid flag,
//! a body that ends inside a message) in tonic itself; a message over the size limit is
//! OUT_OF_RANGE. INTERNAL means a bug of ours and pages someone, and the gRPC status-code guide
//! names RESOURCE_EXHAUSTED for a message over the limit. So:
//!
//! - [`Codec`], the codec of the generated idminter.v1 code (`build.rs`), is prost's with decode
//!   errors made INVALID_ARGUMENT, carrying the decoder's message, cut to [`MAX_MESSAGE_CHARS`];
//! - [`ClientFaultsLayer`], around every service, rewrites the statuses tonic gives those framing
//!   faults (recognised by code and message, as tonic sends them in a trailers-only response
//!   before any handler runs): INVALID_ARGUMENT, and RESOURCE_EXHAUSTED for the size limit. The
//!   same rewrite covers the health service's decode errors, whose codec is not ours.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use prost::Message;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tower::{Layer, Service};

/// The longest decoder message a client gets, in characters.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// The message prefixes of tonic's and tonic-prost's statuses for undecodable request bytes.
const DECODE_FAULTS: [&str; 4] = [
    "failed to decode Protobuf message",
    "protocol error:",
    "Unexpected EOF decoding stream",
    "Error decompressing",
];
/// The message prefix of tonic's OUT_OF_RANGE for a message over the size limit.
const TOO_LARGE: &str = "Error, decoded message length too large";

/// `message` cut to [`MAX_MESSAGE_CHARS`] characters.
fn bounded(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}...", &message[..end]),
        None => message.to_owned(),
    }
}

/// The INVALID_ARGUMENT status for a decode error.
pub fn decode_error(error: &prost::DecodeError) -> Status {
    Status::invalid_argument(bounded(&format!("the request does not decode: {error}")))
}

// === impl Codec ===

/// prost encoding and decoding, with decode errors as INVALID_ARGUMENT.
#[derive(Debug, Clone, Copy)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder(PhantomData)
    }
}

/// Decodes a prost message; a failure is the sender's fault.
#[derive(Debug)]
pub struct ProstDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for ProstDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| decode_error(&e))
    }
}

// === impl ClientFaultsLayer ===

/// Rewrites tonic's statuses for undecodable request bytes; see the module doc.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientFaultsLayer;

impl<S> Layer<S> for ClientFaultsLayer {
    type Service = ClientFaults<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientFaults { inner }
    }
}

#[derive(Debug, Clone)]
pub struct ClientFaults<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResBody> Service<http::Request<B>> for ClientFaults<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            rewrite(response.headers_mut());
            Ok(response)
        })
    }
}

/// Rewrites a trailers-only status in `headers` when it is one of tonic's answers to bad bytes.
fn rewrite(headers: &mut http::HeaderMap) {
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let message = status.message();
    let new = match status.code() {
        Code::OutOfRange if message.starts_with(TOO_LARGE) => Status::resource_exhausted(message),
        Code::Internal if DECODE_FAULTS.iter().any(|p| message.starts_with(p)) => {
            Status::invalid_argument(bounded(message))
        }
        _ => return,
    };
    if new.add_header(headers).is_err() {
        tracing::warn!("could not rewrite the status of an undecodable request");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(status: Status) -> Status {
        let mut headers = http::HeaderMap::new();
        status.add_header(&mut headers).unwrap();
        rewrite(&mut headers);
        Status::from_header_map(&headers).unwrap()
    }

    #[test]
    fn tonics_answers_to_bad_bytes_become_client_errors() {
        let framing = rewritten(Status::internal(
            "protocol error: received message with compressed-flag but no grpc-encoding was specified",
        ));
        assert_eq!(framing.code(), Code::InvalidArgument);
        assert!(
            framing.message().starts_with("protocol error: received"),
            "{}",
            framing.message()
        );
        let large = rewritten(Status::out_of_range(
            "Error, decoded message length too large: found 20 bytes, the limit is: 10 bytes",
        ));
        assert_eq!(large.code(), Code::ResourceExhausted);
    }

    #[test]
    fn our_own_internal_errors_stay_internal() {
        let ours = rewritten(Status::internal(
            "internal error; the server's log has the details",
        ));
        assert_eq!(ours.code(), Code::Internal);
    }

    #[test]
    fn decoder_messages_are_bounded() {
        let long = "x".repeat(10_000);
        assert_eq!(bounded(&long).chars().count(), MAX_MESSAGE_CHARS + 3);
        assert_eq!(bounded("short"), "short");
        assert_eq!(
            bounded(&"é".repeat(400)).chars().count(),
            MAX_MESSAGE_CHARS + 3
        );
    }
}
