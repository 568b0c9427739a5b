//! Hostile input: request bytes that do not decode are INVALID_ARGUMENT with the decoder's message,
//! a message over `--max-message-bytes` is RESOURCE_EXHAUSTED, and no generated or mutated request
//! is ever answered INTERNAL (a bug of ours) or breaks the server. The bytes go over a real gRPC
//! connection, framed by hand, so that nothing on the client side tidies them first.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use idminter::pb;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower::ServiceExt;

use crate::helpers::*;

const MINT: &str = "/idminter.v1.IdMinter/MintIds";
const LOOKUP: &str = "/idminter.v1.IdMinter/LookupIds";
const RESOLVE: &str = "/idminter.v1.IdMinter/ResolveCanonicalIds";
const HEALTH: &str = "/grpc.health.v1.Health/Check";

/// A gRPC message frame: the compressed flag, the length, the bytes.
fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut framed = vec![flag];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

/// Sends `body` as the request body of a unary call to `path` and returns the call's status
/// (from the headers of a trailers-only answer, else from the trailers).
async fn raw_call(channel: &Channel, path: &str, body: Vec<u8>) -> Status {
    let request = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(Full::new(Bytes::from(body))))
        .unwrap();
    let response = channel
        .clone()
        .oneshot(request)
        .await
        .expect("the server answers (it did not crash or drop the connection)");
    if let Some(status) = Status::from_header_map(response.headers()) {
        return status;
    }
    let collected = response.into_body().collect().await.expect("the body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    Status::from_header_map(&trailers).unwrap_or_else(|| Status::unknown("no grpc-status"))
}

/// MintIdsRequest{items: [MintItem{source_identifier: SourceIdentifier{value: <bytes>}}]}, by hand.
fn mint_with_value_bytes(value: &[u8]) -> Vec<u8> {
    let mut identifier = vec![0x1a, u8::try_from(value.len()).unwrap()];
    identifier.extend_from_slice(value);
    let mut item = vec![0x0a, u8::try_from(identifier.len()).unwrap()];
    item.extend(identifier);
    let mut request = vec![0x0a, u8::try_from(item.len()).unwrap()];
    request.extend(item);
    request
}

#[tokio::test]
async fn undecodable_request_bytes_are_invalid_argument_with_the_decoders_message() {
    let app = spawn_app().await;
    let channel = channel(app.grpc_addr).await;
    let valid = pb::MintIdsRequest {
        items: vec![item(work("b1"))],
    }
    .encode_to_vec();

    for (what, message, expected) in [
        (
            "a truncated message",
            valid[..valid.len() - 3].to_vec(),
            "buffer underflow",
        ),
        (
            "invalid UTF-8 in a string",
            mint_with_value_bytes(&[0xff, 0xfe]),
            "UTF-8",
        ),
        ("a wrong wire type", vec![0x08, 0x01], "wire type"),
        (
            "an overlong varint",
            vec![
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            "varint",
        ),
    ] {
        let status = raw_call(&channel, MINT, frame(0, &message)).await;

        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().starts_with("the request does not decode"),
            "{what}: {status:?}"
        );
        assert!(status.message().contains(expected), "{what}: {status:?}");
    }
    assert_eq!(app.db.count().await, 0);
}

#[tokio::test]
async fn a_broken_message_envelope_is_invalid_argument() {
    let app = spawn_app().await;
    let channel = channel(app.grpc_addr).await;
    let valid = pb::LookupIdsRequest {
        source_identifiers: vec![work("b1")],
    }
    .encode_to_vec();
    let mut cut_short = frame(0, &valid);
    cut_short.truncate(cut_short.len() - 2);

    for (what, body) in [
        ("compressed without grpc-encoding", frame(1, &valid)),
        ("an invalid compressed flag", frame(7, &valid)),
        ("a body ending inside the message", cut_short),
    ] {
        let status = raw_call(&channel, LOOKUP, body).await;

        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    }
}

#[tokio::test]
async fn a_message_over_max_message_bytes_is_resource_exhausted() {
    let app = spawn_app_with(TestDatabase::migrated().await, |c| {
        c.max_message_bytes = 1024
    })
    .await
    .wait_until(ServingStatus::Serving)
    .await;
    let channel = channel(app.grpc_addr).await;
    let large = pb::MintIdsRequest {
        items: (0..20).map(|i| item(work(&format!("{i:0>100}")))).collect(),
    }
    .encode_to_vec();
    assert!(large.len() > 1024);

    let raw = raw_call(&channel, MINT, frame(0, &large)).await;
    let through_a_client = app
        .mint((0..20).map(|i| item(work(&format!("{i:0>100}")))).collect())
        .await
        .unwrap_err();

    assert_eq!(raw.code(), Code::ResourceExhausted, "{raw:?}");
    assert_eq!(
        through_a_client.code(),
        Code::ResourceExhausted,
        "{through_a_client:?}"
    );
    assert_eq!(app.db.count().await, 0);
}

#[tokio::test]
async fn undecodable_health_checks_are_invalid_argument_too() {
    let app = spawn_app().await;
    let channel = channel(app.grpc_addr).await;

    let status = raw_call(&channel, HEALTH, frame(0, &[0x0a, 0x05, b'a'])).await;

    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

// === properties ===

/// Strings as they come: empty, plain, any Unicode (control characters included), long.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-zA-Z0-9/_-]{1,12}",
        any::<String>(),
        "\\PC{250,260}",
        Just("\u{0}\u{7f}\u{85}".to_owned()),
    ]
}

fn source_identifier() -> impl Strategy<Value = pb::SourceIdentifier> {
    (text(), text(), text()).prop_map(|(identifier_type, ontology_type, value)| {
        pb::SourceIdentifier {
            identifier_type,
            ontology_type,
            value,
        }
    })
}

/// The encoded bytes of a generated request of one of the three kinds.
fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let mint = prop::collection::vec(
        (
            prop::option::of(source_identifier()),
            prop::option::of(source_identifier()),
        ),
        0..4,
    )
    .prop_map(|items| {
        pb::MintIdsRequest {
            items: items
                .into_iter()
                .map(|(source_identifier, predecessor)| pb::MintItem {
                    source_identifier,
                    predecessor,
                })
                .collect(),
        }
        .encode_to_vec()
    });
    let lookup = prop::collection::vec(source_identifier(), 0..4)
        .prop_map(|source_identifiers| pb::LookupIdsRequest { source_identifiers }.encode_to_vec());
    let resolve = prop::collection::vec(prop_oneof![text(), "[a-z2-9]{8}"], 0..4)
        .prop_map(|canonical_ids| pb::ResolveCanonicalIdsRequest { canonical_ids }.encode_to_vec());
    prop_oneof![mint, lookup, resolve]
}

/// A request's bytes, possibly mutated: cut short, a byte changed, a byte inserted; or noise.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let mutated = (
        request_bytes(),
        any::<prop::sample::Index>(),
        1..=255u8,
        0..4u8,
    )
        .prop_map(|(mut bytes, at, byte, how)| {
            match how {
                0 => bytes.truncate(at.index(bytes.len() + 1)),
                1 if !bytes.is_empty() => {
                    let i = at.index(bytes.len());
                    bytes[i] ^= byte;
                }
                2 => bytes.insert(at.index(bytes.len() + 1), byte),
                _ => {}
            }
            bytes
        });
    prop_oneof![
        4 => mutated,
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// Generated and mutated requests to every method of ours and to health: never INTERNAL or
/// UNKNOWN, and the server keeps answering (a panic would drop the connection).
#[test]
fn no_generated_or_mutated_request_is_answered_internal() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(spawn_app());
    let channel = runtime.block_on(channel(app.grpc_addr));
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });

    let result = runner.run(
        &(
            prop::sample::select(vec![MINT, LOOKUP, RESOLVE, HEALTH]),
            hostile_bytes(),
        ),
        |(path, bytes)| {
            let status = runtime.block_on(raw_call(&channel, path, frame(0, &bytes)));
            prop_assert!(
                !matches!(status.code(), Code::Internal | Code::Unknown),
                "{path} answered {status:?} to {bytes:?}"
            );
            prop_assert!(
                status.message().len() <= 2048,
                "an unbounded message: {status:?}"
            );
            Ok(())
        },
    );

    drop(app);
    result.unwrap();
}
