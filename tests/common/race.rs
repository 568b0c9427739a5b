//! The guarantees under concurrency, decided by the database's constraints, as races that more
//! than one binary runs: `api` against the test database directly, `ha` through pgbouncer.

use std::collections::HashMap;
use std::sync::Arc;

use idminter::pb::id_minter_client::IdMinterClient;
use idminter::pb::{self, MintOutcome};
use tokio::sync::Barrier;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

use super::helpers::{
    ServerProcess, ServingStatus, TestDatabase, hold_uncommitted_work, inheriting, item,
    wait_for_health, wait_until_a_backend_waits_on_a_lock, work,
};

/// Two server processes on `database_url` (started with `server_args`), 16 clients alternating
/// between them, each minting the same 300 identifiers in its own order with predecessors inside
/// the batch: every identifier gets one ID, minted or inherited by exactly one call, and `db`
/// (the database behind the URL) holds 300 mappings.
pub async fn two_servers_mint_each_identifier_exactly_once(
    db: &TestDatabase,
    database_url: &str,
    server_args: &[&str],
) {
    let servers = [
        ServerProcess::start(database_url, server_args),
        ServerProcess::start(database_url, server_args),
    ];
    let mut channels = Vec::new();
    for server in &servers {
        let channel = server.channel().await;
        wait_for_health(&HealthClient::new(channel.clone()), ServingStatus::Serving).await;
        channels.push(channel);
    }
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

/// Another writer inserts an identifier and holds its transaction open; a MintIds call through
/// `client` (a server on `db`) looks it up (not there yet), inserts, and must wait on the other
/// writer's row: once that commits, the call answers EXISTING with the other writer's ID, and
/// nothing is minted twice.
pub async fn a_row_committed_after_the_calls_snapshot_is_existing(
    client: IdMinterClient<Channel>,
    db: &TestDatabase,
) {
    let other = hold_uncommitted_work(db, "late", "bbbbbbbb").await;

    let call = {
        let mut client = client;
        tokio::spawn(async move {
            client
                .mint_ids(pb::MintIdsRequest {
                    items: vec![item(work("late"))],
                })
                .await
                .map(|r| r.into_inner())
        })
    };
    wait_until_a_backend_waits_on_a_lock(db).await;
    other.commit().await.unwrap();

    let response = call.await.unwrap().expect("the call succeeds");
    assert_eq!(response.ids[0].outcome(), MintOutcome::Existing);
    assert_eq!(response.ids[0].canonical_id, "bbbbbbbb");
    assert_eq!(db.count().await, 1);
}
