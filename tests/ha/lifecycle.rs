//! Lifecycle calls through pgbouncer in transaction mode: every statement they send (the lock, the
//! state reads and writes, the event log, the generation read of every MintIds and LookupIds) goes
//! unnamed inside a transaction, so the whole lifecycle works with `--transaction-pooler`.

use std::str::FromStr;

use idminter::pb::{self, IdStatus};
use sqlx::postgres::PgConnectOptions;

use crate::app::{App, ids};
use crate::cluster::Pgbouncer;
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redirect_withdraw_restore_and_history_work_through_pgbouncer_in_transaction_mode() {
    let db = TestDatabase::migrated().await;
    let bouncer = Pgbouncer::start(postgres_addr()).await;
    let app = App::serving(
        PgConnectOptions::from_str(&bouncer.url_of(&db.name)).unwrap(),
        |c| c.transaction_pooler = true,
    )
    .await;
    let minted = ids(&app
        .mint(vec![item(work("a")), item(work("b")), item(work("c"))])
        .await
        .unwrap());
    let mut client = app.client.clone();

    for _ in 0..3 {
        // Repeated, so that statements meet server connections other calls used.
        client
            .redirect_canonical_ids(pb::RedirectCanonicalIdsRequest {
                redirects: vec![pb::Redirect {
                    canonical_id: minted[0].clone(),
                    target_canonical_id: minted[1].clone(),
                    reason: "merged".into(),
                }],
            })
            .await
            .expect("redirect through pgbouncer");
    }
    client
        .withdraw_canonical_ids(pb::WithdrawCanonicalIdsRequest {
            withdrawals: vec![pb::Withdrawal {
                canonical_id: minted[2].clone(),
                reason: "gone".into(),
            }],
        })
        .await
        .expect("withdraw through pgbouncer");
    let found = app
        .lookup(vec![work("a"), work("c")])
        .await
        .unwrap()
        .results;
    assert_eq!(found[0].status(), IdStatus::Redirected);
    assert_eq!(
        found[0].redirect_target.as_deref(),
        Some(minted[1].as_str())
    );
    assert_eq!(found[1].status(), IdStatus::Withdrawn);
    let again = app.mint(vec![item(work("c"))]).await.unwrap().ids.remove(0);
    assert_eq!(again.status(), IdStatus::Withdrawn);

    client
        .restore_canonical_ids(pb::RestoreCanonicalIdsRequest {
            restorations: vec![pb::Restoration {
                canonical_id: minted[0].clone(),
                reason: "split".into(),
            }],
        })
        .await
        .expect("restore through pgbouncer");
    let events = client
        .list_canonical_id_events(pb::ListCanonicalIdEventsRequest {
            canonical_ids: vec![minted[0].clone()],
        })
        .await
        .expect("history through pgbouncer")
        .into_inner()
        .events;
    assert_eq!(
        events.len(),
        2,
        "one redirect (the repeats are no-ops), one restore"
    );
    let resolved = app
        .resolve(&[minted[0].as_str()])
        .await
        .unwrap()
        .resolutions;
    assert_eq!(resolved[0].status(), IdStatus::Active);
}
