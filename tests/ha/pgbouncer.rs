//! pgbouncer in transaction pooling mode (Debian's package, 1.18: no prepared-statement tracking)
//! in front of PostgreSQL, with four server connections for every client to share: the whole API
//! works through it with `--transaction-pooler`, the schema guard included, also under racing
//! calls from two server processes. Migrations go to the database directly, as documented.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use idminter::pb::id_minter_client::IdMinterClient;
use idminter::pb::{self, MintOutcome};
use sqlx::postgres::PgConnectOptions;
use tokio::sync::Barrier;
use tonic::Code;

use crate::app::{App, ids};
use crate::cluster::Pgbouncer;
use crate::helpers::*;

/// A migrated database on the test server (migrated directly) and pgbouncer in front of it.
async fn database_behind_pgbouncer() -> (TestDatabase, Pgbouncer, String) {
    let db = TestDatabase::migrated().await;
    let bouncer = Pgbouncer::start(postgres_addr()).await;
    let url = bouncer.url_of(&db.name);
    (db, bouncer, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_api_works_through_pgbouncer_in_transaction_mode() {
    let (db, _bouncer, url) = database_behind_pgbouncer().await;
    let app = App::serving(PgConnectOptions::from_str(&url).unwrap(), |c| {
        c.transaction_pooler = true;
        c.id_cache_capacity = 0;
    })
    .await;

    let minted = app
        .mint(vec![
            item(work("p1")),
            inheriting(work("p2"), work("p1")),
            item(work("p3")),
        ])
        .await
        .unwrap();
    let again = app
        .mint(vec![item(work("p1")), item(work("p3"))])
        .await
        .unwrap();
    let looked_up = app.lookup(vec![work("p1"), work("never")]).await.unwrap();
    let resolved = app
        .resolve(&[minted.ids[0].canonical_id.as_str()])
        .await
        .unwrap();
    let orphan = app
        .mint(vec![inheriting(work("p4"), work("unminted"))])
        .await
        .unwrap_err();
    // Many calls at once, more than pgbouncer has server connections, each with its statements.
    let calls: Vec<_> = (0..32)
        .map(|c| {
            let mut client = app.client.clone();
            tokio::spawn(async move {
                let items = (0..50).map(|i| item(work(&format!("c{c}-{i}")))).collect();
                let minted = client
                    .mint_ids(pb::MintIdsRequest { items })
                    .await?
                    .into_inner();
                let looked_up = client
                    .lookup_ids(pb::LookupIdsRequest {
                        source_identifiers: (0..50).map(|i| work(&format!("c{c}-{i}"))).collect(),
                    })
                    .await?
                    .into_inner();
                Ok::<_, tonic::Status>((minted, looked_up))
            })
        })
        .collect();
    for call in calls {
        let (minted, looked_up) = call.await.unwrap().expect("every concurrent call succeeds");
        let found: Vec<String> = looked_up
            .results
            .iter()
            .map(|r| r.canonical_id.clone().unwrap_or_default())
            .collect();
        assert_eq!(found, ids(&minted));
    }

    assert_eq!(
        minted.ids.iter().map(|m| m.outcome()).collect::<Vec<_>>(),
        [
            MintOutcome::Minted,
            MintOutcome::Inherited,
            MintOutcome::Minted
        ]
    );
    assert_eq!(
        ids(&again),
        [ids(&minted)[0].clone(), ids(&minted)[2].clone()]
    );
    assert_eq!(
        looked_up.results[0].canonical_id.as_deref(),
        Some(ids(&minted)[0].as_str())
    );
    assert_eq!(looked_up.results[1].canonical_id, None);
    assert_eq!(
        resolved.resolutions[0].source_identifiers,
        vec![work("p1"), work("p2")]
    );
    assert_eq!(orphan.code(), Code::FailedPrecondition, "{orphan:?}");
    assert_eq!(db.count().await, 3 + 32 * 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_calls_on_two_servers_through_pgbouncer_mint_each_identifier_exactly_once() {
    let (db, _bouncer, url) = database_behind_pgbouncer().await;
    let servers = [
        ServerProcess::start(&url, &["--transaction-pooler"]),
        ServerProcess::start(&url, &["--transaction-pooler"]),
    ];
    let mut channels = Vec::new();
    for server in &servers {
        let channel = server.channel().await;
        wait_for_health(
            &tonic_health::pb::health_client::HealthClient::new(channel.clone()),
            ServingStatus::Serving,
        )
        .await;
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
        assert!(
            seen.iter().all(|(id, _)| *id == seen[0].0),
            "{value} got different IDs: {seen:?}"
        );
        let fresh = seen
            .iter()
            .filter(|(_, o)| *o != MintOutcome::Existing)
            .count();
        assert_eq!(fresh, 1, "{value}: minted exactly once: {seen:?}");
    }
    assert_eq!(db.count().await, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_committed_after_the_calls_snapshot_is_existing_through_pgbouncer_too() {
    let (db, _bouncer, url) = database_behind_pgbouncer().await;
    let app = App::serving(PgConnectOptions::from_str(&url).unwrap(), |c| {
        c.transaction_pooler = true;
    })
    .await;
    let other = hold_uncommitted_work(&db, "late", "bbbbbbbb").await;

    let call = {
        let mut client = app.client.clone();
        tokio::spawn(async move {
            client
                .mint_ids(pb::MintIdsRequest {
                    items: vec![item(work("late"))],
                })
                .await
                .map(|r| r.into_inner())
        })
    };
    wait_until_a_backend_waits_on_a_lock(&db).await;
    other.commit().await.unwrap();

    let response = call.await.unwrap().expect("the call succeeds");
    assert_eq!(response.ids[0].outcome(), MintOutcome::Existing);
    assert_eq!(response.ids[0].canonical_id, "bbbbbbbb");
    assert_eq!(db.count().await, 1);
}
