//! Provenance (migration V2, `created_by`) and the rolling deploy that brings it: a release that
//! knows only V1 keeps serving a migrated database, and the new release finds V2 pending on an old
//! database and applies it with --migrate.

use idminter::store::migrations::{self, HISTORY_TABLE};
use idminter::store::schema::{self, SchemaState};
use sqlx::Connection;

use crate::helpers::*;

/// A database migrated to V1 only, as the previous release left it.
async fn database_at_v1() -> TestDatabase {
    TestDatabase::migrated_to(1).await
}

#[tokio::test]
async fn every_row_records_when_and_by_whom_it_was_created() {
    let app = spawn_app().await;

    app.mint(vec![item(work("b1"))]).await.unwrap();

    let (by, recent): (String, bool) = sqlx::query_as(
        "SELECT created_by, created_at > now() - interval '1 minute' FROM source_identifiers",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(by, "anonymous", "no tokens: anonymous");
    assert!(recent, "created_at is the time of the call");
}

/// The previous release's view, played with its list of migrations (V1 only) against a database
/// the new release migrated: the guard is ready with a warning, and its INSERT, which does not
/// name `created_by`, still works and records `anonymous`.
#[tokio::test]
async fn a_release_knowing_only_v1_keeps_serving_a_v2_database() {
    let db = TestDatabase::migrated().await;
    let v1_only: Vec<_> = migrations::embedded().into_iter().take(1).collect();
    assert_eq!(v1_only[0].to_string(), "V1__source_identifiers");
    let mut conn = sqlx::PgConnection::connect_with(&db.options).await.unwrap();

    let state = schema::inspect_against(&mut conn, HISTORY_TABLE, &v1_only)
        .await
        .unwrap();
    db.execute(
        "INSERT INTO source_identifiers (identifier_type, ontology_type, value, canonical_id, minted) \
         VALUES ('sierra-system-number', 'Work', 'old', 'abcdefgh', true)",
    )
    .await;

    // Every migration after V1 is newer to it (V2, and whatever came after, such as V3).
    let after_v1: Vec<String> = migrations::embedded()
        .iter()
        .skip(1)
        .map(ToString::to_string)
        .collect();
    assert_eq!(after_v1[0], "V2__provenance");
    assert_eq!(state, SchemaState::Ready { newer: after_v1 });
    assert!(
        state.to_string().contains("a newer release migrated it"),
        "{state}"
    );
    let by: String = sqlx::query_scalar("SELECT created_by FROM source_identifiers")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(by, "anonymous");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_release_finds_v2_pending_on_a_v1_database_and_applies_it_with_migrate() {
    let db = database_at_v1().await;
    db.execute(
        "INSERT INTO source_identifiers (identifier_type, ontology_type, value, canonical_id, minted) \
         VALUES ('sierra-system-number', 'Work', 'old', 'abcdefgh', true)",
    )
    .await;

    let (code, _, stderr) = idminter(&["check"], Some(&db.url()));
    assert_eq!(code, 1, "{stderr}");
    // V2, and every migration after it, is pending.
    let pending: Vec<String> = migrations::embedded()
        .iter()
        .skip(1)
        .map(ToString::to_string)
        .collect();
    assert_eq!(pending[0], "V2__provenance");
    assert!(
        stderr.contains(&format!(
            "{} pending migrations ({})",
            pending.len(),
            pending.join(", ")
        )),
        "{stderr}"
    );

    let server = ServerProcess::start(&db.url(), &["--migrate"]);
    let health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    wait_for_health(&health, ServingStatus::Serving).await;
    let (code, stdout, stderr) = idminter(&["check"], Some(&db.url()));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let by: String = sqlx::query_scalar("SELECT created_by FROM source_identifiers")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(by, "anonymous", "rows from before V2 get the default");
}
