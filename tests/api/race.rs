//! The guarantees under concurrency, decided by the database's constraints: real clients racing
//! against two server processes on one database (the races themselves are in `common::race`,
//! which the ha tests run through pgbouncer too).

use crate::common::race;
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_on_two_replicas_agree_and_mint_each_identifier_exactly_once() {
    let db = TestDatabase::migrated().await;
    race::two_servers_mint_each_identifier_exactly_once(&db, &db.url(), &[]).await;
}

#[tokio::test]
async fn a_row_committed_after_the_calls_snapshot_is_reported_existing_not_minted_twice() {
    late_commit_is_existing(TestDatabase::migrated().await).await;
}

#[tokio::test]
async fn the_late_commit_race_is_handled_even_when_the_database_defaults_to_repeatable_read() {
    let db = TestDatabase::migrated().await;
    db.execute(&format!(
        "ALTER DATABASE {} SET default_transaction_isolation = 'repeatable read'",
        db.name
    ))
    .await;
    late_commit_is_existing(db).await;
}

async fn late_commit_is_existing(db: TestDatabase) {
    let app = spawn_app_with(db, |_| {})
        .await
        .wait_until(ServingStatus::Serving)
        .await;
    race::a_row_committed_after_the_calls_snapshot_is_existing(app.client.clone(), &app.db).await;
}
