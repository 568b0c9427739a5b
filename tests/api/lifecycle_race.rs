//! Lifecycle across server processes: a status changed through one process is answered by every
//! other at once (their caches never hide it), and concurrent changes on two processes never make
//! a cycle or a redirect to a withdrawn ID (the database decides).

use std::collections::HashMap;
use std::sync::Arc;

use idminter::pb::id_minter_client::IdMinterClient;
use idminter::pb::{self, IdStatus};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Barrier;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::*;
use crate::lifecycle::{redirect, restore, withdraw};

/// Two `idminter serve` processes on `db`, SERVING, with a client each.
async fn two_processes(db: &TestDatabase) -> ([ServerProcess; 2], [IdMinterClient<Channel>; 2]) {
    let processes = [
        ServerProcess::start(&db.url(), &[]),
        ServerProcess::start(&db.url(), &[]),
    ];
    let mut clients = Vec::new();
    for process in &processes {
        let channel = process.channel().await;
        wait_for_health(
            &tonic_health::pb::health_client::HealthClient::new(channel.clone()),
            ServingStatus::Serving,
        )
        .await;
        clients.push(IdMinterClient::new(channel));
    }
    let clients: [IdMinterClient<Channel>; 2] = clients.try_into().ok().unwrap();
    (processes, clients)
}

async fn lookup_status(
    client: &IdMinterClient<Channel>,
    value: &str,
) -> (IdStatus, Option<String>) {
    let r = client
        .clone()
        .lookup_ids(pb::LookupIdsRequest {
            source_identifiers: vec![work(value)],
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0);
    (r.status(), r.redirect_target)
}

async fn mint_status(client: &IdMinterClient<Channel>, value: &str) -> (IdStatus, Option<String>) {
    let m = client
        .clone()
        .mint_ids(pb::MintIdsRequest {
            items: vec![item(work(value))],
        })
        .await
        .unwrap()
        .into_inner()
        .ids
        .remove(0);
    (m.status(), m.redirect_target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_or_withdrawal_made_through_one_process_is_answered_by_the_other_at_once() {
    let db = TestDatabase::migrated().await;
    let (_processes, [first, second]) = two_processes(&db).await;
    let minted = first
        .clone()
        .mint_ids(pb::MintIdsRequest {
            items: vec![item(work("a")), item(work("b")), item(work("c"))],
        })
        .await
        .unwrap()
        .into_inner()
        .ids;
    let (a, b, c) = (
        &minted[0].canonical_id,
        &minted[1].canonical_id,
        &minted[2].canonical_id,
    );
    // The second process has the mappings in its cache, answered ACTIVE.
    for _ in 0..2 {
        assert_eq!(lookup_status(&second, "a").await, (IdStatus::Active, None));
        assert_eq!(mint_status(&second, "c").await, (IdStatus::Active, None));
    }

    // Changed through the first process: the very next call to the second sees it, with no wait.
    redirect(&first, &[(a, b)]).await.unwrap();
    assert_eq!(
        lookup_status(&second, "a").await,
        (IdStatus::Redirected, Some(b.clone()))
    );
    assert_eq!(
        mint_status(&second, "a").await,
        (IdStatus::Redirected, Some(b.clone()))
    );
    withdraw(&first, &[c]).await.unwrap();
    assert_eq!(mint_status(&second, "c").await, (IdStatus::Withdrawn, None));
    assert_eq!(
        lookup_status(&second, "c").await,
        (IdStatus::Withdrawn, None)
    );
    restore(&first, &[a, c]).await.unwrap();
    assert_eq!(lookup_status(&second, "a").await, (IdStatus::Active, None));
    assert_eq!(mint_status(&second, "c").await, (IdStatus::Active, None));

    // And the other way round.
    redirect(&second, &[(c, a)]).await.unwrap();
    assert_eq!(
        lookup_status(&first, "c").await,
        (IdStatus::Redirected, Some(a.clone()))
    );
}

/// Every recorded state, from the table: id -> (status, target).
async fn states(db: &TestDatabase) -> HashMap<String, (String, Option<String>)> {
    sqlx::query_as::<_, (String, String, Option<String>)>(
        "SELECT canonical_id, status, redirect_target FROM canonical_id_states",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, status, target)| (id, (status, target)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crossing_redirects_on_two_processes_never_make_a_cycle() {
    let db = TestDatabase::migrated().await;
    let (_processes, clients) = two_processes(&db).await;
    let minted = clients[0]
        .clone()
        .mint_ids(pb::MintIdsRequest {
            items: vec![item(work("x")), item(work("y"))],
        })
        .await
        .unwrap()
        .into_inner()
        .ids;
    let (x, y) = (
        minted[0].canonical_id.clone(),
        minted[1].canonical_id.clone(),
    );
    for round in 0..25 {
        // X -> Y on one process and Y -> X on the other, released together.
        let barrier = Arc::new(Barrier::new(2));
        let calls = [(x.clone(), y.clone()), (y.clone(), x.clone())].map(|(from, to)| {
            let client = clients[usize::from(from == y)].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                redirect(&client, &[(&from, &to)]).await
            })
        });
        let mut succeeded = 0;
        for call in calls {
            match call.await.unwrap() {
                Ok(_) => succeeded += 1,
                Err(status) => {
                    assert_eq!(
                        status.code(),
                        Code::FailedPrecondition,
                        "round {round}: {status:?}"
                    )
                }
            }
        }
        assert_eq!(
            succeeded, 1,
            "round {round}: exactly one of the crossing redirects wins"
        );
        restore(&clients[round % 2], &[&x, &y]).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_concurrent_changes_on_two_processes_keep_every_redirect_pointing_at_an_active_id() {
    // Arrange: 12 IDs; 8 clients, alternating processes, each making 40 random changes.
    let db = TestDatabase::migrated().await;
    let (_processes, clients) = two_processes(&db).await;
    let values: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    let ids: Vec<String> = clients[0]
        .clone()
        .mint_ids(pb::MintIdsRequest {
            items: values.iter().map(|v| item(work(v))).collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .ids
        .into_iter()
        .map(|m| m.canonical_id)
        .collect();
    let ids = Arc::new(ids);
    let barrier = Arc::new(Barrier::new(8));
    let mut tasks = Vec::new();
    for c in 0..8u64 {
        let client = clients[(c % 2) as usize].clone();
        let (ids, barrier) = (ids.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(c);
            barrier.wait().await;
            let mut outcomes = (0, 0);
            for _ in 0..40 {
                let pick = |rng: &mut StdRng| ids[rng.random_range(0..ids.len())].clone();
                let (x, y) = (pick(&mut rng), pick(&mut rng));
                let result = match rng.random_range(0..10) {
                    0..=5 => redirect(&client, &[(&x, &y)]).await,
                    6..=7 => withdraw(&client, &[&x]).await,
                    _ => restore(&client, &[&x]).await,
                };
                match result {
                    Ok(_) => outcomes.0 += 1,
                    Err(status) => {
                        // Only a rule's refusal, never a failure of the database's own check
                        // (which would be INTERNAL) nor anything else.
                        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                        outcomes.1 += 1;
                    }
                }
            }
            outcomes
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.unwrap().0;
    }
    assert!(accepted > 0, "some changes were accepted");

    // Assert: every redirect points at a known ID that is ACTIVE; so no chain, no cycle, and no
    // redirect to a withdrawn ID.
    let states = states(&db).await;
    for (id, (status, target)) in &states {
        if let Some(target) = target {
            assert_eq!(status, "redirected");
            assert!(ids.contains(target), "{id} -> unknown {target}");
            let target_status = states.get(target).map_or("active", |(s, _)| s.as_str());
            assert_eq!(
                target_status, "active",
                "{id} -> {target}, which is {target_status}"
            );
        }
    }
    // And every process answers the same as the table.
    for client in &clients {
        for (value, id) in values.iter().zip(ids.iter()) {
            let (status, target) = lookup_status(client, value).await;
            let expected = states
                .get(id)
                .map_or(("active", None), |(s, t)| (s.as_str(), t.clone()));
            assert_eq!(
                (
                    status
                        .as_str_name()
                        .trim_start_matches("ID_STATUS_")
                        .to_lowercase(),
                    target
                ),
                (expected.0.to_owned(), expected.1),
                "{value}"
            );
        }
    }
}
