//! gRPC health and the admin listener over the server's life: NOT_SERVING before the guard passes,
//! when the database goes away and while draining; SERVING again on recovery, without a restart.

use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn an_unreachable_database_is_not_serving_from_the_first_probe() {
    let db = TestDatabase::migrated().await;
    let proxy = Proxy::start(postgres_addr()).await;
    proxy.cut();
    let options = proxy.options(&db);

    let app = spawn_app_with(db, move |c| c.database = options).await;

    // The very first probe, before the guard can have run.
    assert_eq!(app.health_status().await, ServingStatus::NotServing);
    let status = app.lookup(vec![work("b1")]).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
}

#[tokio::test]
async fn losing_the_database_is_noticed_and_recovery_serves_again_without_restart() {
    let db = TestDatabase::migrated().await;
    let proxy = Proxy::start(postgres_addr()).await;
    let options = proxy.options(&db);
    let app = spawn_app_with(db, move |c| {
        c.database = options;
        c.pool.acquire_timeout = std::time::Duration::from_millis(500);
    })
    .await
    .wait_until(ServingStatus::Serving)
    .await;
    let minted = app
        .mint(vec![item(work("b1"))])
        .await
        .unwrap()
        .ids
        .remove(0)
        .canonical_id;

    proxy.cut();
    let app = app.wait_until(ServingStatus::NotServing).await;
    let during = app.lookup(vec![work("b1")]).await.unwrap_err();
    let (readyz, body) = http_get(app.admin_addr, "/readyz").await;

    proxy.restore();
    let app = app.wait_until(ServingStatus::Serving).await;
    let after = app.lookup(vec![work("b1")]).await.unwrap();

    assert_eq!(during.code(), Code::Unavailable, "{during:?}");
    assert!(
        during.message().contains("database"),
        "{}",
        during.message()
    );
    assert!(
        !during.message().to_lowercase().contains("select"),
        "never SQL: {}",
        during.message()
    );
    assert_eq!(readyz, 503, "{body}");
    assert_eq!(
        after.results[0].canonical_id.as_deref(),
        Some(minted.as_str())
    );
}

#[tokio::test]
async fn both_service_names_report_and_an_unknown_one_is_not_found() {
    let app = spawn_app().await;

    assert_eq!(
        health_check(&app.health, "").await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        health_check(&app.health, "idminter.v1.IdMinter")
            .await
            .unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        health_check(&app.health, "no.such.Service")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let (code, body) = http_get(app.admin_addr, "/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
}

// The command runs as a blocking child process: the in-process server needs a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_command_exits_zero_only_for_serving() {
    let app = spawn_app().await;
    let serving = idminter(
        &["health", "--addr", &format!("http://{}", app.grpc_addr)],
        None,
    );
    let unknown = idminter(
        &[
            "health",
            "--addr",
            &format!("http://{}", app.grpc_addr),
            "--service",
            "nope",
        ],
        None,
    );
    let nobody = idminter(&["health", "--addr", "http://127.0.0.1:1"], None);

    let not_ready = spawn_app_with(TestDatabase::create().await, |_| {}).await;
    let not_serving = idminter(
        &[
            "health",
            "--addr",
            &format!("http://{}", not_ready.grpc_addr),
        ],
        None,
    );

    assert_eq!((serving.0, serving.1.trim()), (0, "SERVING"));
    assert_eq!(not_serving.0, 1);
    assert_eq!(not_serving.1.trim(), "NOT_SERVING");
    assert_eq!(unknown.0, 1);
    assert_eq!(nobody.0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_reports_not_serving_drains_the_call_in_flight_and_exits_zero() {
    let db = TestDatabase::migrated().await;
    let mut server = ServerProcess::start(&db.url(), &[]);
    let channel = server.channel().await;
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    wait_for_health(&health, ServingStatus::Serving).await;
    let mut watch = health
        .clone()
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );

    // A call held in flight by a row lock the test owns.
    let blocker = hold_uncommitted_work(&db, "held", "hhhhhhhh").await;
    let mut client = idminter::pb::id_minter_client::IdMinterClient::new(channel);
    let call = tokio::spawn(async move {
        client
            .mint_ids(idminter::pb::MintIdsRequest {
                items: vec![item(work("held")), item(work("new"))],
            })
            .await
    });
    wait_until_a_backend_waits_on_a_lock(&db).await;

    server.terminate();
    let update = watch
        .message()
        .await
        .unwrap()
        .expect("a NOT_SERVING update before the stream ends");
    assert_eq!(update.status(), ServingStatus::NotServing);
    server.wait_for_log("draining");
    let (readyz, body) = http_get(server.admin_addr, "/readyz").await;
    assert_eq!(
        (readyz, body.as_str()),
        (503, "NOT_SERVING: shutting down\n"),
        "the admin listener outlives the drain"
    );
    blocker.commit().await.unwrap();

    let response = call
        .await
        .unwrap()
        .expect("the in-flight call completes")
        .into_inner();
    assert_eq!(response.ids[0].canonical_id, "hhhhhhhh");
    assert_eq!(response.ids[1].outcome(), idminter::pb::MintOutcome::Minted);
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a drained server exits 0");
}
