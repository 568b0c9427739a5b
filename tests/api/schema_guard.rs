//! The schema guard, through every surface that reports it: gRPC health, RPC status, the admin
//! `/readyz` and `idminter check`. Each case is one the contract names, beginning with the incident
//! we exist to prevent.

use tonic::Code;

use crate::helpers::*;

/// Serves `db` in-process with `history_table` and `migrate`, and checks every surface against
/// the expected diagnosis.
async fn assert_not_serving(app: &TestApp, expected: &[&str]) {
    assert_eq!(app.health_status().await, ServingStatus::NotServing);
    assert_eq!(
        health_check(&app.health, "idminter.v1.IdMinter")
            .await
            .unwrap(),
        ServingStatus::NotServing
    );

    let status = app.mint(vec![item(work("b1"))]).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let (code, body) = http_get(app.admin_addr, "/readyz").await;
    assert_eq!(code, 503);
    for needle in expected {
        assert!(
            status.message().contains(needle),
            "RPC message lacks {needle:?}: {}",
            status.message()
        );
        assert!(body.contains(needle), "/readyz lacks {needle:?}: {body}");
    }
}

/// Starts the app and waits until its guard has run once (NOT_SERVING with a diagnosis).
async fn spawn_guarded(db: TestDatabase, history_table: &str, migrate: bool) -> TestApp {
    let history_table = history_table.to_owned();
    let app = spawn_app_with(db, move |c| {
        c.history_table = history_table;
        c.migrate = migrate;
    })
    .await;
    wait_for_diagnosis(&app).await;
    app
}

/// Polls `/readyz` (a condition, bounded) until the guard has replaced the start-up message.
async fn wait_for_diagnosis(app: &TestApp) {
    eventually("the guard has run", || async {
        let (code, body) = http_get(app.admin_addr, "/readyz").await;
        code == 200 || !body.contains("has not passed yet")
    })
    .await;
}

#[tokio::test]
async fn the_incident_replayed_a_renamed_history_table_is_not_serving_and_names_what_it_found() {
    // A migrated database, and a release that expects the history under another name (as Flyway
    // 4 -> 7 did with schema_version -> flyway_schema_history).
    let db = TestDatabase::migrated().await;
    let url = db.url();

    let app = spawn_guarded(db, "flyway_schema_history", true).await;

    let expected = [
        "`flyway_schema_history` not found",
        "public.idminter_schema_history",
        "--history-table",
        "idminter migrate --baseline",
    ];
    assert_not_serving(&app, &expected).await;
    let (code, _, stderr) = idminter(
        &["check", "--history-table", "flyway_schema_history"],
        Some(&url),
    );
    assert_eq!(code, 1, "check exits 1 when not ready");
    for needle in expected {
        assert!(
            stderr.contains(needle),
            "check's stderr lacks {needle:?}: {stderr}"
        );
    }
    let created: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('flyway_schema_history')::text")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        created, None,
        "--migrate must never create a history table beside our tables"
    );
}

#[tokio::test]
async fn our_tables_beside_only_a_flyway_schema_version_table_is_never_migrated() {
    let db = TestDatabase::migrated().await;
    db.execute("ALTER TABLE idminter_schema_history RENAME TO schema_version")
        .await;

    let app = spawn_guarded(db, "idminter_schema_history", true).await;

    assert_not_serving(
        &app,
        &[
            "`idminter_schema_history` not found",
            "public.schema_version",
            "refusing to migrate",
        ],
    )
    .await;
    let created: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('idminter_schema_history')::text")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(created, None);
}

#[tokio::test]
async fn history_like_tables_are_found_in_every_schema() {
    let db = TestDatabase::migrated().await;
    db.execute(
        "ALTER TABLE idminter_schema_history RENAME TO flyway_schema_history; \
         CREATE SCHEMA legacy; CREATE TABLE legacy.schema_version (v int); \
         CREATE TABLE _sqlx_migrations (v int); CREATE TABLE __diesel_schema_migrations (v int)",
    )
    .await;

    let (code, _, stderr) = idminter(&["check"], Some(&db.url()));

    assert_eq!(code, 1);
    for table in [
        "public.flyway_schema_history",
        "legacy.schema_version",
        "public._sqlx_migrations",
        "public.__diesel_schema_migrations",
    ] {
        assert!(stderr.contains(table), "{table} missing from: {stderr}");
    }
}

#[tokio::test]
async fn an_empty_database_is_not_serving_without_migrate() {
    let app = spawn_guarded(
        TestDatabase::create().await,
        "idminter_schema_history",
        false,
    )
    .await;
    assert_not_serving(&app, &["database is empty: run `idminter migrate`"]).await;
}

#[tokio::test]
async fn an_empty_database_is_created_and_served_with_migrate() {
    let app = spawn_app_with(TestDatabase::create().await, |c| c.migrate = true)
        .await
        .wait_until(ServingStatus::Serving)
        .await;

    let minted = app.mint(vec![item(work("b1"))]).await.unwrap();
    assert_eq!(minted.ids.len(), 1);
    let (code, body) = http_get(app.admin_addr, "/readyz").await;
    assert_eq!((code, body.as_str()), (200, "SERVING\n"));
}

#[tokio::test]
async fn a_deleted_history_row_is_a_pending_migration() {
    let db = TestDatabase::migrated().await;
    db.execute(
        "DELETE FROM idminter_schema_history \
         WHERE version = (SELECT max(version) FROM idminter_schema_history)",
    )
    .await;
    let newest = idminter::store::migrations::embedded()
        .last()
        .expect("the binary embeds migrations")
        .to_string();

    let app = spawn_guarded(db, "idminter_schema_history", false).await;

    assert_not_serving(
        &app,
        &[&format!(
            "1 pending migrations ({newest}): run `idminter migrate`"
        )],
    )
    .await;
}

#[tokio::test]
async fn a_changed_checksum_is_not_serving_even_with_migrate() {
    let db = TestDatabase::migrated().await;
    db.execute("UPDATE idminter_schema_history SET checksum = '12345'")
        .await;

    let app = spawn_guarded(db, "idminter_schema_history", true).await;

    assert_not_serving(
        &app,
        &["V1__source_identifiers was applied with checksum 12345"],
    )
    .await;
}

#[tokio::test]
async fn a_migration_from_a_newer_release_serves_with_a_warning() {
    let db = TestDatabase::migrated().await;
    db.execute(
        "INSERT INTO idminter_schema_history (version, name, applied_on, checksum) \
         VALUES (999, 'from_the_future', '2030-01-01T00:00:00Z', '1')",
    )
    .await;

    let app = spawn_app_with(db, |_| {})
        .await
        .wait_until(ServingStatus::Serving)
        .await;

    assert!(app.mint(vec![item(work("b1"))]).await.is_ok());
}

#[tokio::test]
async fn migrate_and_check_report_through_their_exit_codes() {
    let db = TestDatabase::create().await;
    let url = db.url();

    let before = idminter(&["check"], Some(&url));
    let migrate = idminter(&["migrate"], Some(&url));
    let after = idminter(&["check"], Some(&url));
    let usage = idminter(&["check", "--no-such-flag"], Some(&url));
    let unreachable = idminter(&["check"], Some("postgres://postgres@127.0.0.1:1/nowhere"));

    assert_eq!(
        (before.0, before.2.trim()),
        (1, "database is empty: run `idminter migrate`")
    );
    assert_eq!(migrate.0, 0, "{}", migrate.2);
    assert_eq!((after.0, after.1.trim()), (0, "schema ready"));
    assert_eq!(usage.0, 2, "usage errors exit 2");
    assert_eq!(unreachable.0, 1);
    assert!(
        unreachable.2.starts_with("database unreachable"),
        "{}",
        unreachable.2
    );
}

#[tokio::test]
async fn baseline_adopts_a_matching_schema_and_refuses_a_different_one() {
    let matching = TestDatabase::migrated().await;
    matching.execute("DROP TABLE idminter_schema_history").await;
    let different = TestDatabase::migrated().await;
    different.execute("DROP TABLE idminter_schema_history; ALTER TABLE source_identifiers DROP COLUMN created_at").await;

    let adopted = idminter(&["migrate", "--baseline"], Some(&matching.url()));
    let refused = idminter(&["migrate", "--baseline"], Some(&different.url()));

    assert_eq!(adopted.0, 0, "{}", adopted.2);
    assert!(
        adopted.1.contains("V1__source_identifiers"),
        "{}",
        adopted.1
    );
    assert_eq!(
        idminter(&["check"], Some(&matching.url())).0,
        0,
        "adopted: ready"
    );
    assert_eq!(refused.0, 1);
    assert!(
        refused.2.contains("refusing to baseline") && refused.2.contains("created_at"),
        "{}",
        refused.2
    );
    let history: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('idminter_schema_history')::text")
            .fetch_one(&different.pool)
            .await
            .unwrap();
    assert_eq!(history, None, "a refused baseline records nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_migrating_an_empty_database_at_once_both_serve_and_migrate_once() {
    let db = TestDatabase::create().await;

    let replicas = [
        ServerProcess::start(&db.url(), &["--migrate"]),
        ServerProcess::start(&db.url(), &["--migrate"]),
    ];
    for replica in &replicas {
        let health = tonic_health::pb::health_client::HealthClient::new(replica.channel().await);
        wait_for_health(&health, ServingStatus::Serving).await;
    }

    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM idminter_schema_history")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let embedded = idminter::store::migrations::embedded().len();
    assert_eq!(
        usize::try_from(applied).unwrap(),
        embedded,
        "each migration recorded once"
    );
}

#[tokio::test]
async fn the_guard_passes_again_without_restart_once_an_operator_migrates() {
    let db = TestDatabase::create().await;
    let url = db.url();
    let app = spawn_guarded(db, "idminter_schema_history", false).await;
    assert_eq!(app.health_status().await, ServingStatus::NotServing);

    assert_eq!(idminter(&["migrate"], Some(&url)).0, 0);

    let app = app.wait_until(ServingStatus::Serving).await;
    assert!(app.mint(vec![item(work("b1"))]).await.is_ok());
}
