//! gRPC over TLS, over real TLS connections with certificates made by the test: who is served, who
//! is refused, and a certificate rotated under a running server.

use std::net::SocketAddr;
use std::time::Duration;

use idminter::config::ServeConfig;
use idminter::error::chain;
use idminter::pb;
use idminter::pb::id_minter_client::IdMinterClient;
use idminter::startup::Application;
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::fixtures::*;
use crate::helpers::*;

const HOSTS: &[&str] = &["localhost", "127.0.0.1"];

/// A server in-process with TLS, SERVING (seen on the admin listener, which stays plain HTTP).
struct TlsApp {
    db: TestDatabase,
    grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn spawn_tls_app(files: idminter::tls::TlsFiles) -> TlsApp {
    let db = TestDatabase::migrated().await;
    let mut config = ServeConfig::local(db.options.clone());
    config.tls = Some(files);
    config.reload_interval = Duration::from_millis(50);
    let app = Application::build(config).await.expect("build the app");
    let (grpc_addr, admin_addr) = (app.grpc_addr(), app.admin_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    eventually("the server is ready", || async {
        http_get(admin_addr, "/readyz").await.0 == 200
    })
    .await;
    TlsApp {
        db,
        grpc_addr,
        admin_addr,
        _stop: stop,
    }
}

async fn mint_b1(channel: Channel) -> Result<pb::MintIdsResponse, tonic::Status> {
    IdMinterClient::new(channel)
        .mint_ids(pb::MintIdsRequest {
            items: vec![item(work("b1"))],
        })
        .await
        .map(|r| r.into_inner())
}

/// A health check over a fresh connection made with `channel`'s result: Ok only if a TLS
/// connection was made and answered.
async fn health_over(channel: Result<Channel, tonic::transport::Error>) -> Result<(), String> {
    let channel = channel.map_err(|e| chain(&e))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
        .map_err(|s| format!("{s:?}"))
}

async fn plaintext_health(addr: SocketAddr) -> Result<(), String> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await;
    health_over(channel).await
}

#[tokio::test]
async fn a_client_trusting_the_ca_is_served_and_a_plaintext_client_is_not() {
    let ca = TestCa::new("idminter test CA");
    let dir = TempDir::new("tls");
    let tls = ServerTls::write(&dir, &ca, &ca.server(HOSTS));
    let app = spawn_tls_app(tls.files()).await;

    let minted = mint_b1(
        tls_channel(app.grpc_addr, &ca.pem, None)
            .await
            .expect("TLS"),
    )
    .await;
    let plaintext = plaintext_health(app.grpc_addr).await;

    assert!(minted.is_ok(), "{minted:?}");
    assert_eq!(app.db.count().await, 1);
    assert!(plaintext.is_err(), "a plaintext client was served");
    let (code, _) = http_get(app.admin_addr, "/metrics").await;
    assert_eq!(code, 200, "the admin listener stays plain HTTP");
}

#[tokio::test]
async fn a_client_trusting_another_ca_refuses_the_server() {
    let ca = TestCa::new("idminter test CA");
    let other = TestCa::new("someone else's CA");
    let dir = TempDir::new("tls");
    let app = spawn_tls_app(ServerTls::write(&dir, &ca, &ca.server(HOSTS)).files()).await;

    let refused = health_over(tls_channel(app.grpc_addr, &other.pem, None).await).await;

    let error = refused.expect_err("served although the CA is not trusted");
    assert!(says(&error, "UnknownIssuer"), "{error}");
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let ca = TestCa::new("idminter test CA");
    let dir = TempDir::new("tls");
    let expired = ca.expired_server(HOSTS);
    let app = spawn_tls_app(ServerTls::write(&dir, &ca, &expired).files()).await;

    let refused = health_over(tls_channel(app.grpc_addr, &ca.pem, None).await).await;

    let error = refused.expect_err("served with an expired certificate");
    assert!(says(&error, "Expired"), "{error}");
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let ca = TestCa::new("idminter test CA");
    let dir = TempDir::new("tls");
    let elsewhere = ca.server(&["minter.elsewhere.example"]);
    let app = spawn_tls_app(ServerTls::write(&dir, &ca, &elsewhere).files()).await;

    let refused = health_over(tls_channel(app.grpc_addr, &ca.pem, None).await).await;

    let error = refused.expect_err("served with a certificate for another host");
    assert!(says(&error, "NotValidForName"), "{error}");
}

#[tokio::test]
async fn a_rotated_certificate_is_served_to_new_connections_without_a_restart() {
    let old_ca = TestCa::new("old CA");
    let new_ca = TestCa::new("new CA");
    let dir = TempDir::new("tls");
    let tls = ServerTls::write(&dir, &old_ca, &old_ca.server(HOSTS));
    let app = spawn_tls_app(tls.files()).await;
    let open = tls_channel(app.grpc_addr, &old_ca.pem, None)
        .await
        .expect("TLS with the first certificate");
    assert!(
        health_over(tls_channel(app.grpc_addr, &new_ca.pem, None).await)
            .await
            .is_err()
    );

    // The renewal: the key first, then the certificate, as a careless deploy might (in between,
    // the pair does not fit and the old one stays in force).
    let renewed = new_ca.server(HOSTS);
    dir.write("server.key", &renewed.key);
    dir.write("server.pem", &renewed.cert);

    eventually("a new connection gets the new certificate", || async {
        health_over(tls_channel(app.grpc_addr, &new_ca.pem, None).await)
            .await
            .is_ok()
    })
    .await;
    let old = health_over(tls_channel(app.grpc_addr, &old_ca.pem, None).await).await;
    assert!(
        old.is_err(),
        "new connections no longer get the old certificate"
    );
    let still_open = mint_b1(open).await;
    assert!(
        still_open.is_ok(),
        "an open connection keeps working: {still_open:?}"
    );
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate_and_serves_one_with() {
    let ca = TestCa::new("server CA");
    let clients = TestCa::new("client CA");
    let strangers = TestCa::new("strangers' CA");
    let dir = TempDir::new("tls");
    let tls = ServerTls::write(&dir, &ca, &ca.server(HOSTS));
    let mut files = tls.files();
    files.client_ca = Some(dir.write("clients.pem", &clients.pem));
    let app = spawn_tls_app(files).await;

    let anonymous = health_over(tls_channel(app.grpc_addr, &ca.pem, None).await).await;
    let stranger =
        health_over(tls_channel(app.grpc_addr, &ca.pem, Some(&strangers.client("mallory"))).await)
            .await;
    let adapter =
        health_over(tls_channel(app.grpc_addr, &ca.pem, Some(&clients.client("adapter"))).await)
            .await;

    assert!(anonymous.is_err(), "served without a client certificate");
    assert!(
        stranger.is_err(),
        "served a client certificate of another CA"
    );
    assert!(adapter.is_ok(), "{adapter:?}");
}

#[tokio::test]
async fn tls_files_that_do_not_load_stop_the_server_from_starting() {
    let ca = TestCa::new("idminter test CA");
    let other = ca.server(HOSTS);
    let dir = TempDir::new("tls");
    let mut tls = ServerTls::write(&dir, &ca, &ca.server(HOSTS));
    tls.key = dir.write("other.key", &other.key);
    let db = TestDatabase::migrated().await;
    let mut config = ServeConfig::local(db.options.clone());
    config.tls = Some(tls.files());

    let error = Application::build(config)
        .await
        .err()
        .expect("a key that does not fit");

    assert!(
        format!("{error:#}").contains("the key does not fit the certificate"),
        "{error:#}"
    );
}

/// Real processes: `serve` with TLS and tokens, and the client commands with `https://`,
/// `--tls-ca` and `--token`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_commands_speak_tls_with_a_token_to_a_real_server() {
    let ca = TestCa::new("idminter test CA");
    let dir = TempDir::new("tls");
    let tls = ServerTls::write(&dir, &ca, &ca.server(HOSTS));
    let token = "idm_cli-token";
    let tokens = dir.write("tokens", token_line("operator", "mint", token));
    let db = TestDatabase::migrated().await;
    let server = ServerProcess::start(
        &db.url(),
        &[
            "--tls-cert",
            tls.cert.to_str().unwrap(),
            "--tls-key",
            tls.key.to_str().unwrap(),
            "--auth-tokens",
            tokens.to_str().unwrap(),
        ],
    );
    let https = format!("https://127.0.0.1:{}", server.grpc_addr.port());
    let ca_file = tls.ca.to_str().unwrap();
    eventually("the server is SERVING over TLS", || async {
        idminter(&["health", "--addr", &https, "--tls-ca", ca_file], None).0 == 0
    })
    .await;

    let (minted, out, err) = idminter(
        &[
            "mint",
            "--addr",
            &https,
            "--tls-ca",
            ca_file,
            "--token",
            token,
            "sierra-system-number/Work/b1",
        ],
        None,
    );
    let (unauthenticated, _, denied) = idminter(
        &[
            "mint",
            "--addr",
            &https,
            "--tls-ca",
            ca_file,
            "sierra-system-number/Work/b2",
        ],
        None,
    );
    let (plaintext, _, _) = idminter(
        &[
            "health",
            "--addr",
            &format!("http://{}", server.grpc_addr),
            "--timeout",
            "5s",
        ],
        None,
    );

    assert_eq!(minted, 0, "{err}");
    assert!(out.contains("MINTED"), "{out}");
    assert_eq!(unauthenticated, 16, "UNAUTHENTICATED is code 16: {denied}");
    assert_ne!(
        plaintext, 0,
        "a plaintext health check of a TLS server fails"
    );
    let by: String = sqlx::query_scalar("SELECT created_by FROM source_identifiers")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(by, "operator");
}
