//! The guarantees under concurrency, decided by the database's constraints: real clients racing
//! against two server processes on one database.

use std::collections::HashMap;
use std::sync::Arc;

use idminter::pb::id_minter_client::IdMinterClient;
use idminter::pb::{self, MintOutcome};
use tokio::sync::Barrier;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_on_two_replicas_agree_and_mint_each_identifier_exactly_once() {
    let db = TestDatabase::migrated().await;
    let replicas = [
        ServerProcess::start(&db.url(), &[]),
        ServerProcess::start(&db.url(), &[]),
    ];
    let mut channels = Vec::new();
    for replica in &replicas {
        let channel = replica.channel().await;
        wait_for_health(
            &tonic_health::pb::health_client::HealthClient::new(channel.clone()),
            ServingStatus::Serving,
        )
        .await;
        channels.push(channel);
    }
    // 300 identifiers; 16 clients, alternating replicas, each minting all of them in its own
    // order, with predecessors inside the batch so inheritance races too.
    let identifiers: Vec<_> = (0..300).map(|i| work(&format!("race-{i}"))).collect();
    let clients = 16;
    let barrier = Arc::new(Barrier::new(clients));
    let mut calls = Vec::new();
    for c in 0..clients {
        let mut client = IdMinterClient::new(channels[c % 2].clone());
        let barrier = barrier.clone();
        let mut items: Vec<pb::MintItem> = identifiers
            .iter()
            .enumerate()
            .map(|(i, id)| {
                if i % 10 == 9 {
                    inheriting(id.clone(), identifiers[i - 1].clone())
                } else {
                    item(id.clone())
                }
            })
            .collect();
        let shift = c * 37 % items.len();
        items.rotate_left(shift);
        if c % 3 == 0 {
            items.reverse();
        }
        calls.push(tokio::spawn(async move {
            barrier.wait().await;
            client
                .mint_ids(pb::MintIdsRequest { items })
                .await
                .map(|r| r.into_inner())
        }));
    }

    let mut answers: HashMap<String, Vec<(String, MintOutcome)>> = HashMap::new();
    for call in calls {
        for m in call.await.unwrap().expect("every racing call succeeds").ids {
            let outcome = m.outcome();
            answers
                .entry(m.source_identifier.unwrap().value)
                .or_default()
                .push((m.canonical_id, outcome));
        }
    }

    assert_eq!(answers.len(), 300);
    for (value, seen) in &answers {
        assert_eq!(seen.len(), clients);
        assert!(
            seen.iter().all(|(id, _)| *id == seen[0].0),
            "{value} got different IDs: {seen:?}"
        );
        let fresh = seen
            .iter()
            .filter(|(_, o)| *o != MintOutcome::Existing)
            .count();
        assert_eq!(
            fresh, 1,
            "{value}: exactly one call minted or inherited it: {seen:?}"
        );
    }
    for i in (9..300).step_by(10) {
        let (inheritor, predecessor) = (
            &answers[&format!("race-{i}")][0].0,
            &answers[&format!("race-{}", i - 1)][0].0,
        );
        assert_eq!(inheritor, predecessor, "race-{i} inherits race-{}", i - 1);
        assert!(
            answers[&format!("race-{i}")]
                .iter()
                .any(|(_, o)| *o == MintOutcome::Inherited)
        );
    }
    assert_eq!(db.count().await, 300);
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
    // Another writer inserts the identifier and holds its transaction open.
    let other = hold_uncommitted_work(&app.db, "late", "bbbbbbbb").await;

    // The call looks up (not there yet), inserts, and must wait on the other writer's row.
    let call = {
        let app_client = app.client.clone();
        tokio::spawn(async move {
            let mut client = app_client;
            client
                .mint_ids(pb::MintIdsRequest {
                    items: vec![item(work("late"))],
                })
                .await
                .map(|r| r.into_inner())
        })
    };
    wait_until_a_backend_waits_on_a_lock(&app.db).await;
    other.commit().await.unwrap();

    let response = call.await.unwrap().expect("the call succeeds");
    assert_eq!(response.ids[0].outcome(), MintOutcome::Existing);
    assert_eq!(response.ids[0].canonical_id, "bbbbbbbb");
    assert_eq!(app.db.count().await, 1);
}
