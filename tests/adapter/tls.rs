//! The adapter against a minter that speaks only TLS and checks tokens: `--minter-addr https://..`,
//! `--minter-tls-ca` and `--minter-token`, with real processes and real queues.

use std::path::PathBuf;

use crate::fixtures::{ServerTls, TempDir, TestCa, token_line};
use crate::support::*;

/// A minter with TLS (a certificate for 127.0.0.1 from a CA of the test) and a tokens file naming
/// the adapter, with the `mint` scope.
struct SecureMinter {
    minter: MinterUnderTest,
    ca: PathBuf,
    _dir: TempDir,
}

const TOKEN: &str = "idm_adapter-token-for-the-test";

async fn secure_minter() -> SecureMinter {
    let ca = TestCa::new("idminter test CA");
    let dir = TempDir::new("adapter-tls");
    let tls = ServerTls::write(&dir, &ca, &ca.server(&["localhost", "127.0.0.1"]));
    let tokens = dir.write("tokens", token_line("adapter", "mint", TOKEN));
    let minter = MinterUnderTest::start_with(&[
        "--tls-cert",
        tls.cert.to_str().unwrap(),
        "--tls-key",
        tls.key.to_str().unwrap(),
        "--auth-tokens",
        tokens.to_str().unwrap(),
    ])
    .await;
    SecureMinter {
        minter,
        ca: tls.ca,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_adapter_identifies_documents_through_a_tls_minter_with_its_token() {
    let secure = secure_minter().await;
    let aws = Aws::new();
    let (input, output) = (aws.queue("in").await, aws.queue("out").await);
    input
        .send_all(&[work("b1").to_string(), work("b2").to_string()])
        .await;

    let url = secure.minter.https_url();
    let mut args = queue_to_queue(&input, &output, &url);
    let ca = secure.ca.to_str().unwrap().to_owned();
    args.extend(["--minter-tls-ca", &ca, "--minter-token", TOKEN]);
    let adapter = AdapterProcess::start(&args);
    let docs = output.receive(2).await;

    for doc in &docs {
        assert_eq!(id_at(&doc.json, "/canonicalId").len(), 8, "{}", doc.json);
    }
    let created_by = secure.minter.created_by().await;
    assert!(
        created_by.len() >= 2 && created_by.iter().all(|by| by == "adapter"),
        "the rows record the adapter's principal: {created_by:?}"
    );
    input.wait_until_empty().await;
    assert!(
        !adapter.log_lines().iter().any(|l| l.contains(TOKEN)),
        "the token is not in the adapter's log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adapter_with_a_wrong_token_deletes_nothing_and_says_why() {
    let secure = secure_minter().await;
    let aws = Aws::new();
    let (input, output) = (aws.queue("in").await, aws.queue("out").await);
    input.send(&work("b1").to_string()).await;

    let url = secure.minter.https_url();
    let mut args = queue_to_queue(&input, &output, &url);
    let ca = secure.ca.to_str().unwrap().to_owned();
    args.extend([
        "--minter-tls-ca",
        &ca,
        "--minter-token",
        "idm_wrong",
        "--visibility-timeout",
        "10s",
    ]);
    let adapter = AdapterProcess::start(&args);

    let why = adapter
        .wait_until_unhealthy_because("Unauthenticated")
        .await;
    assert!(why.contains("minter unavailable"), "{why}");
    assert!(!why.contains("idm_wrong"), "{why}");
    assert_eq!(secure.minter.created_by().await.len(), 0, "nothing minted");
    assert!(output.receive_once(0).await.is_empty(), "nothing published");
}
