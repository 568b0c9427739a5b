//! `--read-database-url`: reads go to a real streaming replica; whatever it lacks is asked of the
//! primary, so a lagging replica never causes a second ID nor a wrong "absent"; a replica that
//! cannot be reached is stepped around while health stays SERVING.

use std::time::Duration;

use idminter::pb::MintOutcome;

use crate::app::{App, ids};
use crate::cluster::{Cluster, DB};
use crate::helpers::*;

fn works(prefix: &str, n: usize) -> Vec<idminter::pb::SourceIdentifier> {
    (0..n).map(|i| work(&format!("{prefix}{i}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_resolutions_and_mints_of_known_identifiers_are_answered_by_the_replica_alone() {
    let primary = Cluster::primary().await;
    let replica = primary.replica().await;
    let read = replica.options();
    let app = App::serving(primary.options(), move |c| {
        c.read_database = Some(read);
        c.id_cache_capacity = 0;
        c.request_timeout = Duration::from_secs(5);
    })
    .await;
    let minted = app
        .mint(works("r", 20).into_iter().map(item).collect())
        .await
        .unwrap();
    replica.wait_until_replayed(&primary).await;
    // The primary's table is locked against every read; the replica, its replay paused, never
    // sees that lock. A read that went to the primary would wait until the deadline.
    replica.pause_replay().await;
    let mut locker = primary.connect(DB).await;
    let mut lock = sqlx::Connection::begin(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE source_identifiers IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();

    let looked_up = app.lookup(works("r", 20)).await;
    let again = app
        .mint(works("r", 20).into_iter().map(item).collect())
        .await;
    let resolved = app.resolve(&[minted.ids[0].canonical_id.as_str()]).await;
    lock.rollback().await.unwrap();

    let found: Vec<String> = looked_up
        .expect("LookupIds answered without the primary")
        .results
        .iter()
        .map(|r| r.canonical_id.clone().unwrap_or_default())
        .collect();
    let again = again.expect("MintIds of known identifiers answered without the primary");
    assert_eq!(found, ids(&minted));
    assert_eq!(ids(&again), ids(&minted));
    assert!(
        again
            .ids
            .iter()
            .all(|m| m.outcome() == MintOutcome::Existing)
    );
    assert_eq!(
        resolved
            .expect("ResolveCanonicalIds answered without the primary")
            .resolutions[0]
            .source_identifiers,
        vec![work("r0")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_answers_just_minted_identifiers_from_the_primary_and_never_mints_twice()
{
    let primary = Cluster::primary().await;
    let replica = primary.replica().await;
    let read = replica.options();
    let app = App::serving(primary.options(), move |c| {
        c.read_database = Some(read);
        c.id_cache_capacity = 0;
    })
    .await;
    // One replayed transaction first, so the replica has a replay time to measure its lag from.
    app.mint(vec![item(work("before"))]).await.unwrap();
    replica.wait_until_replayed(&primary).await;
    replica.pause_replay().await;

    // Minted on the primary, never replayed on the replica.
    let first = app
        .mint(works("lag", 100).into_iter().map(item).collect())
        .await
        .unwrap();
    let second = app
        .mint(works("lag", 100).into_iter().map(item).collect())
        .await
        .unwrap();
    let looked_up = app.lookup(works("lag", 100)).await.unwrap();
    let resolved = app
        .resolve(&[first.ids[7].canonical_id.as_str()])
        .await
        .unwrap();

    assert!(first.ids.iter().all(|m| m.outcome() == MintOutcome::Minted));
    assert!(
        second
            .ids
            .iter()
            .all(|m| m.outcome() == MintOutcome::Existing),
        "{second:?}"
    );
    assert_eq!(
        ids(&second),
        ids(&first),
        "the same IDs, never a second one"
    );
    let found: Vec<String> = looked_up
        .results
        .iter()
        .map(|r| r.canonical_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        found,
        ids(&first),
        "a lagging replica's gaps are filled by the primary"
    );
    assert_eq!(
        resolved.resolutions[0].source_identifiers,
        vec![work("lag7")]
    );
    assert_eq!(
        primary
            .query("(SELECT count(*) FROM source_identifiers)")
            .await
            .as_deref(),
        Some("101")
    );
    assert_eq!(
        replica
            .query("(SELECT count(*) FROM source_identifiers)")
            .await
            .as_deref(),
        Some("1"),
        "the replica really lagged"
    );
    eventually("the lag is reported", || async {
        app.metric("idminter_read_replica_lag_seconds")
            .await
            .is_some_and(|lag| lag > 0.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_replica_sends_reads_to_the_primary_and_health_stays_serving() {
    let primary = Cluster::primary().await;
    let mut replica = primary.replica().await;
    let mut server = ServerProcess::start(
        &primary.url(),
        &[
            "--read-database-url",
            &replica.url(),
            "--db-acquire-timeout",
            "1s",
        ],
    );
    let channel = server.channel().await;
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    wait_for_health(&health, ServingStatus::Serving).await;
    let mut client = idminter::pb::id_minter_client::IdMinterClient::new(channel);
    let minted = client
        .mint_ids(idminter::pb::MintIdsRequest {
            items: works("down", 10).into_iter().map(item).collect(),
        })
        .await
        .unwrap()
        .into_inner();

    replica.stop_immediately();
    server.wait_for_log("read replica unreachable");
    let during = client
        .lookup_ids(idminter::pb::LookupIdsRequest {
            source_identifiers: works("down", 10),
        })
        .await
        .unwrap()
        .into_inner();
    let new = client
        .mint_ids(idminter::pb::MintIdsRequest {
            items: vec![item(work("down-new"))],
        })
        .await
        .unwrap()
        .into_inner();
    let status_during = health_check(&health, "").await.unwrap();
    let (_, metrics_during) = http_get(server.admin_addr, "/metrics").await;

    replica.start();
    server.wait_for_log("read replica answers again");
    let (_, metrics_after) = http_get(server.admin_addr, "/metrics").await;

    let found: Vec<String> = during
        .results
        .iter()
        .map(|r| r.canonical_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(found, ids(&minted));
    assert_eq!(new.ids[0].outcome(), MintOutcome::Minted);
    assert_eq!(status_during, ServingStatus::Serving);
    assert!(
        metrics_during.contains("idminter_read_replica_up 0"),
        "{metrics_during}"
    );
    assert!(
        metrics_after.contains("idminter_read_replica_up 1"),
        "{metrics_after}"
    );
}
