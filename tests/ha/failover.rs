//! Failover without a restart: a primary and its streaming replica behind one address (a TCP proxy
//! playing the failover manager's virtual IP). The primary is lost, the replica promoted, the
//! address moved: the server notices, serves again on its own, and every identifier keeps its ID.
//! An address that reaches a standby not yet promoted is UNAVAILABLE with a diagnosis saying the
//! server is read-only.

use std::collections::HashSet;
use std::time::Duration;

use idminter::pb::MintOutcome;
use tonic::Code;

use crate::app::{App, ids};
use crate::cluster::{Cluster, VirtualIp};
use crate::helpers::*;

fn works(prefix: &str, n: usize) -> Vec<idminter::pb::SourceIdentifier> {
    (0..n).map(|i| work(&format!("{prefix}{i}"))).collect()
}

/// The contract's bound for noticing a lost database.
const NOTICED_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_at_the_same_address_is_served_again_without_restart_and_every_id_is_kept()
 {
    let mut primary = Cluster::primary().await;
    let replica = primary.replica().await;
    let address = VirtualIp::start(primary.addr()).await;
    let app = App::serving(address.options(), |c| c.id_cache_capacity = 0).await;
    let before = app
        .mint(works("f", 200).into_iter().map(item).collect())
        .await
        .unwrap();
    // Asynchronous replication: a promoted replica has what it had replayed. Production wants
    // synchronous replication for a failover that loses nothing (docs/SCALING.md); here the test
    // waits for the replica instead.
    replica.wait_until_replayed(&primary).await;

    primary.stop_immediately();
    app.wait_for(NOTICED_WITHIN, ServingStatus::NotServing)
        .await;
    let during = app.mint(vec![item(work("during"))]).await.unwrap_err();
    replica.promote().await;
    address.switch_to(replica.addr());
    app.wait_for(Duration::from_secs(30), ServingStatus::Serving)
        .await;

    let mut items: Vec<_> = works("f", 200).into_iter().map(item).collect();
    items.extend(works("g", 50).into_iter().map(item));
    let after = app.mint(items).await.unwrap();
    let looked_up = app.lookup(works("f", 200)).await.unwrap();

    assert_eq!(during.code(), Code::Unavailable, "{during:?}");
    assert_eq!(
        ids(&after)[..200],
        ids(&before)[..],
        "every ID minted before is kept"
    );
    assert!(
        after.ids[..200]
            .iter()
            .all(|m| m.outcome() == MintOutcome::Existing)
    );
    assert!(
        after.ids[200..]
            .iter()
            .all(|m| m.outcome() == MintOutcome::Minted)
    );
    let found: Vec<String> = looked_up
        .results
        .iter()
        .map(|r| r.canonical_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(found, ids(&before));
    let distinct: HashSet<&String> = after.ids.iter().map(|m| &m.canonical_id).collect();
    assert_eq!(distinct.len(), 250, "no ID given twice");
    assert_eq!(
        replica
            .query("(SELECT count(*) FROM source_identifiers)")
            .await
            .as_deref(),
        Some("250")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_reaches_a_standby_not_yet_promoted_is_unavailable_saying_it_is_read_only()
{
    let mut primary = Cluster::primary().await;
    let replica = primary.replica().await;
    let address = VirtualIp::start(primary.addr()).await;
    let app = App::serving(address.options(), |_| {}).await;
    let minted = app.mint(vec![item(work("ro"))]).await.unwrap();
    replica.wait_until_replayed(&primary).await;

    primary.stop_immediately();
    address.switch_to(replica.addr());
    app.wait_for(NOTICED_WITHIN, ServingStatus::NotServing)
        .await;
    // The first diagnosis may still be the lost connection; the read-only one follows.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let status = app.mint(vec![item(work("ro-new"))]).await.unwrap_err();
        if status.message().contains("read-only") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never read-only: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (readyz, body) = http_get(app.admin_addr, "/readyz").await;
    let lookup = app.lookup(vec![work("ro")]).await.unwrap_err();

    replica.promote().await;
    app.wait_for(Duration::from_secs(30), ServingStatus::Serving)
        .await;
    let after = app.mint(vec![item(work("ro"))]).await.unwrap();

    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("hot standby"),
        "{}",
        refused.message()
    );
    assert_eq!(lookup.code(), Code::Unavailable, "{lookup:?}");
    assert_eq!(readyz, 503);
    assert!(body.contains("read-only"), "{body}");
    assert_eq!(ids(&after), ids(&minted));
    assert_eq!(after.ids[0].outcome(), MintOutcome::Existing);
}
