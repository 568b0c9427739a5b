//! pgbouncer in transaction pooling mode (Debian's package, 1.18: no prepared-statement tracking)
//! in front of PostgreSQL, with four server connections for every client to share: the whole API
//! works through it with `--transaction-pooler`, the schema guard included, also under racing
//! calls from two server processes. Migrations go to the database directly, as documented.

use std::str::FromStr;

use idminter::pb::{self, MintOutcome};
use sqlx::postgres::PgConnectOptions;
use tonic::Code;

use crate::app::{App, ids};
use crate::cluster::Pgbouncer;
use crate::common::race;
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
    race::two_servers_mint_each_identifier_exactly_once(&db, &url, &["--transaction-pooler"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_committed_after_the_calls_snapshot_is_existing_through_pgbouncer_too() {
    let (db, _bouncer, url) = database_behind_pgbouncer().await;
    let app = App::serving(PgConnectOptions::from_str(&url).unwrap(), |c| {
        c.transaction_pooler = true;
    })
    .await;
    race::a_row_committed_after_the_calls_snapshot_is_existing(app.client.clone(), &db).await;
}
