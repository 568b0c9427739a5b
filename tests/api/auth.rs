//! Tokens and scopes: who may call what, the principal on every call, and tokens kept out of logs.

use std::time::Duration;

use idminter::pb;
use tonic::Code;

use crate::fixtures::{TempDir, idminter_with_env, token_line, with_token};
use crate::helpers::*;

const READER: &str = "idm_reader-token";
const MINTER: &str = "idm_minter-token";
const OPS: &str = "idm_ops-token";

/// An app checking the tokens of a file with a reader, a minter (`adapter`) and an admin.
async fn app_with_tokens() -> (TestApp, TempDir) {
    let dir = TempDir::new("tokens");
    let file = dir.write(
        "tokens",
        format!(
            "# NAME SCOPES SHA256HEX\n{}{}{}",
            token_line("reader", "read", READER),
            token_line("adapter", "mint", MINTER),
            token_line("ops", "admin", OPS),
        ),
    );
    let app = spawn_app_with(TestDatabase::migrated().await, |c| {
        c.auth_tokens = Some(file);
        c.reload_interval = Duration::from_millis(50);
    })
    .await
    .wait_until(ServingStatus::Serving)
    .await;
    (app, dir)
}

async fn mint_as(
    app: &TestApp,
    token: Option<&str>,
    value: &str,
) -> Result<pb::MintIdsResponse, tonic::Status> {
    let message = pb::MintIdsRequest {
        items: vec![item(work(value))],
    };
    let request = match token {
        Some(t) => with_token(message, t),
        None => tonic::Request::new(message),
    };
    app.client
        .clone()
        .mint_ids(request)
        .await
        .map(|r| r.into_inner())
}

async fn lookup_as(app: &TestApp, token: &str) -> Result<pb::LookupIdsResponse, tonic::Status> {
    let request = with_token(
        pb::LookupIdsRequest {
            source_identifiers: vec![work("b1")],
        },
        token,
    );
    app.client
        .clone()
        .lookup_ids(request)
        .await
        .map(|r| r.into_inner())
}

async fn resolve_as(app: &TestApp, token: &str) -> Result<(), tonic::Status> {
    let request = with_token(
        pb::ResolveCanonicalIdsRequest {
            canonical_ids: vec!["abcdefgh".to_owned()],
        },
        token,
    );
    app.client
        .clone()
        .resolve_canonical_ids(request)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn a_call_without_a_token_or_with_an_unknown_one_is_unauthenticated() {
    let (app, _dir) = app_with_tokens().await;

    let none = mint_as(&app, None, "b1").await.unwrap_err();
    let unknown = mint_as(&app, Some("idm_not-a-token"), "b1")
        .await
        .unwrap_err();

    assert_eq!(none.code(), Code::Unauthenticated, "{none:?}");
    assert!(
        none.message().contains("authorization: Bearer"),
        "{}",
        none.message()
    );
    assert_eq!(unknown.code(), Code::Unauthenticated, "{unknown:?}");
    assert!(
        !unknown.message().contains("idm_not-a-token"),
        "the token is not echoed"
    );
    assert_eq!(app.db.count().await, 0, "nothing was minted");
}

#[tokio::test]
async fn a_token_without_the_scope_is_permission_denied_naming_the_scope() {
    let (app, _dir) = app_with_tokens().await;

    let denied = mint_as(&app, Some(READER), "b1").await.unwrap_err();

    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert_eq!(
        denied.message(),
        "MintIds needs the `mint` scope; `reader` has `read`"
    );
    assert_eq!(app.db.count().await, 0);
}

#[tokio::test]
async fn each_scope_allows_its_calls_and_the_ones_below_it() {
    let (app, _dir) = app_with_tokens().await;

    for token in [READER, MINTER, OPS] {
        lookup_as(&app, token)
            .await
            .unwrap_or_else(|e| panic!("lookup as {token}: {e:?}"));
        resolve_as(&app, token)
            .await
            .unwrap_or_else(|e| panic!("resolve as {token}: {e:?}"));
    }
    for (token, value) in [(MINTER, "b1"), (OPS, "b2")] {
        mint_as(&app, Some(token), value)
            .await
            .unwrap_or_else(|e| panic!("mint as {token}: {e:?}"));
    }
    assert_eq!(app.db.count().await, 2);
}

#[tokio::test]
async fn health_and_reflection_need_no_token() {
    let (app, _dir) = app_with_tokens().await;

    assert_eq!(app.health_status().await, ServingStatus::Serving);
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            channel(app.grpc_addr).await,
        );
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection without a token")
        .into_inner();
    let answer = answers.message().await.unwrap().expect("one answer");
    assert!(
        format!("{answer:?}").contains("idminter.v1.IdMinter"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn the_tokens_file_is_re_read_when_it_changes() {
    let (app, dir) = app_with_tokens().await;
    let newcomer = "idm_newcomer-token";
    assert_eq!(
        mint_as(&app, Some(newcomer), "b1")
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    // Rotation: the newcomer's token is added and the reader's removed.
    dir.write(
        "tokens",
        token_line("adapter", "mint", MINTER) + &token_line("adapter", "mint", newcomer),
    );
    eventually("the new token is accepted", || async {
        mint_as(&app, Some(newcomer), "b1").await.is_ok()
    })
    .await;
    assert_eq!(
        lookup_as(&app, READER).await.unwrap_err().code(),
        Code::Unauthenticated,
        "a removed token is refused"
    );

    // A malformed file is refused and the set in force stays.
    dir.write("tokens", "adapter mint not-a-hash\n");
    mint_as(&app, Some(newcomer), "b2")
        .await
        .expect("the previous set stays in force");
}

#[tokio::test]
async fn the_principal_is_recorded_on_rows_and_in_the_request_counter() {
    let (app, _dir) = app_with_tokens().await;

    mint_as(&app, Some(MINTER), "b1").await.unwrap();
    mint_as(&app, Some(READER), "b2").await.unwrap_err();
    mint_as(&app, None, "b3").await.unwrap_err();

    let created_by: String =
        sqlx::query_scalar("SELECT created_by FROM source_identifiers WHERE value = 'b1'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(created_by, "adapter");
    let (_, metrics) = http_get(app.admin_addr, "/metrics").await;
    for sample in [
        r#"idminter_rpc_requests_total{method="MintIds",code="Ok",principal="adapter"} 1"#,
        r#"idminter_rpc_requests_total{method="MintIds",code="PermissionDenied",principal="reader"} 1"#,
        r#"idminter_rpc_requests_total{method="MintIds",code="Unauthenticated",principal="anonymous"} 1"#,
        "idminter_auth_enabled 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == sample),
            "no `{sample}` in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn without_tokens_every_call_is_allowed_and_recorded_as_anonymous() {
    let app = spawn_app().await;

    app.mint(vec![item(work("b1"))]).await.unwrap();

    let created_by: String = sqlx::query_scalar("SELECT created_by FROM source_identifiers")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(created_by, "anonymous");
    let (_, metrics) = http_get(app.admin_addr, "/metrics").await;
    assert!(
        metrics.lines().any(|l| l == "idminter_auth_enabled 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_malformed_tokens_file_stops_the_server_from_starting() {
    let dir = TempDir::new("tokens");
    let file = dir.write("tokens", "adapter mint idm_pasted-token-by-mistake\n");
    let db = TestDatabase::migrated().await;

    let (code, _, stderr) = idminter(
        &[
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--auth-tokens",
            file.to_str().unwrap(),
        ],
        Some(&db.url()),
    );

    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("line 1: the third field"), "{stderr}");
    assert!(!stderr.contains("idm_pasted-token-by-mistake"), "{stderr}");
}

/// A real server process with debug logs, called with valid, unknown and under-scoped tokens and
/// through a tokens-file change: none of the tokens appears in anything it logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_appear_in_the_server_logs() {
    let db = TestDatabase::migrated().await;
    let dir = TempDir::new("tokens");
    let (code, out, _) = idminter(&["token", "new", "adapter", "--scopes", "mint"], None);
    assert_eq!(code, 0);
    let mut lines = out.lines();
    let (token, line) = (
        lines.next().unwrap().to_owned(),
        lines.next().unwrap().to_owned(),
    );
    let unknown = "idm_unknown-token-0123456789";
    let file = dir.write("tokens", format!("{line}\n"));
    let mut server = ServerProcess::start_with_env(
        &db.url(),
        &["--auth-tokens", file.to_str().unwrap()],
        &[("RUST_LOG", "debug")],
    );
    let health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    wait_for_health(&health, ServingStatus::Serving).await;
    let app_client = idminter::pb::id_minter_client::IdMinterClient::new(server.channel().await);

    let minted = app_client
        .clone()
        .mint_ids(with_token(
            pb::MintIdsRequest {
                items: vec![item(work("b1"))],
            },
            &token,
        ))
        .await;
    let refused = app_client
        .clone()
        .mint_ids(with_token(
            pb::MintIdsRequest {
                items: vec![item(work("b2"))],
            },
            unknown,
        ))
        .await;
    // Through the client command too, with the token in its environment variable.
    let (cli_code, cli_out, cli_err) = idminter_with_env(
        &[
            "mint",
            "--addr",
            &format!("http://{}", server.grpc_addr),
            "sierra-system-number/Work/b3",
        ],
        &[("IDMINTER_TOKEN", token.as_str())],
    );
    dir.write("tokens", format!("{line}\n# rotated\n"));
    let mut log = Vec::new();
    loop {
        let line = server
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the server re-reads the tokens file");
        let reread = line.contains("tokens file re-read");
        log.push(line);
        if reread {
            break;
        }
    }
    server.terminate();
    log.push(server.drain_log());
    let log = log.join("\n");

    assert!(minted.is_ok(), "{minted:?}");
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(cli_code, 0, "{cli_err}");
    assert!(cli_out.contains("MINTED"), "{cli_out}");
    assert!(log.contains("rpc"), "the calls were logged at all:\n{log}");
    for secret in [token.as_str(), unknown, &token[4..]] {
        assert!(!log.contains(secret), "a token is in the log:\n{log}");
    }
}
