//! Lifecycle (contract section 9): redirect, withdraw and restore canonical IDs, the statuses every
//! answer carries, the append-only event log, and the rules the database enforces.

use idminter::pb::id_minter_client::IdMinterClient;
use idminter::pb::{self, IdStatus, MintOutcome};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::*;

// === the calls, as a test writes them ===

pub async fn redirect(
    client: &IdMinterClient<Channel>,
    pairs: &[(&str, &str)],
) -> Result<pb::ChangeCanonicalIdsResponse, Status> {
    let redirects = pairs
        .iter()
        .map(|(id, target)| pb::Redirect {
            canonical_id: (*id).to_owned(),
            target_canonical_id: (*target).to_owned(),
            reason: format!("merged {id} into {target}"),
        })
        .collect();
    client
        .clone()
        .redirect_canonical_ids(pb::RedirectCanonicalIdsRequest { redirects })
        .await
        .map(|r| r.into_inner())
}

pub async fn withdraw(
    client: &IdMinterClient<Channel>,
    ids: &[&str],
) -> Result<pb::ChangeCanonicalIdsResponse, Status> {
    let withdrawals = ids
        .iter()
        .map(|id| pb::Withdrawal {
            canonical_id: (*id).to_owned(),
            reason: "record deleted at source".to_owned(),
        })
        .collect();
    client
        .clone()
        .withdraw_canonical_ids(pb::WithdrawCanonicalIdsRequest { withdrawals })
        .await
        .map(|r| r.into_inner())
}

pub async fn restore(
    client: &IdMinterClient<Channel>,
    ids: &[&str],
) -> Result<pb::ChangeCanonicalIdsResponse, Status> {
    let restorations = ids
        .iter()
        .map(|id| pb::Restoration {
            canonical_id: (*id).to_owned(),
            reason: "merged in error".to_owned(),
        })
        .collect();
    client
        .clone()
        .restore_canonical_ids(pb::RestoreCanonicalIdsRequest { restorations })
        .await
        .map(|r| r.into_inner())
}

pub async fn history(
    client: &IdMinterClient<Channel>,
    ids: &[&str],
) -> Result<Vec<pb::CanonicalIdEvent>, Status> {
    client
        .clone()
        .list_canonical_id_events(pb::ListCanonicalIdEventsRequest {
            canonical_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
        })
        .await
        .map(|r| r.into_inner().events)
}

/// Mints one work per value and returns their IDs in order.
pub async fn mint_works(app: &TestApp, values: &[&str]) -> Vec<String> {
    let response = app
        .mint(values.iter().map(|v| item(work(v))).collect())
        .await
        .expect("mint");
    response.ids.into_iter().map(|m| m.canonical_id).collect()
}

/// (status, redirect_target) of `id` as ResolveCanonicalIds answers it.
async fn resolved(app: &TestApp, id: &str) -> (IdStatus, Option<String>) {
    let r = app
        .resolve(&[id])
        .await
        .expect("resolve")
        .resolutions
        .remove(0);
    (r.status(), r.redirect_target)
}

/// (status, redirect_target) of `work(value)` as LookupIds answers it.
async fn looked_up(app: &TestApp, value: &str) -> (IdStatus, Option<String>) {
    let r = app
        .lookup(vec![work(value)])
        .await
        .expect("lookup")
        .results
        .remove(0);
    (r.status(), r.redirect_target)
}

fn refused(result: Result<pb::ChangeCanonicalIdsResponse, Status>, needle: &str) -> Status {
    let status = result.expect_err("the call is refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains(needle),
        "{needle:?} not in {status:?}"
    );
    status
}

// === the tests ===

#[tokio::test]
async fn every_minted_id_starts_active_and_an_unknown_one_has_no_status() {
    let app = spawn_app().await;
    let minted = app
        .mint(vec![item(work("b1"))])
        .await
        .unwrap()
        .ids
        .remove(0);
    assert_eq!(minted.status(), IdStatus::Active);
    assert_eq!(minted.redirect_target, None);

    let found = app
        .lookup(vec![work("b1"), work("never")])
        .await
        .unwrap()
        .results;
    assert_eq!(found[0].status(), IdStatus::Active);
    assert_eq!(found[1].status(), IdStatus::Unspecified);
    assert_eq!(found[1].canonical_id, None);

    let resolved = app
        .resolve(&[&minted.canonical_id, "zzzzzzzz"])
        .await
        .unwrap()
        .resolutions;
    assert_eq!(resolved[0].status(), IdStatus::Active);
    assert_eq!(resolved[0].reason, "");
    assert_eq!(resolved[0].changed_at, None);
    assert_eq!(resolved[1].status(), IdStatus::Unspecified);
}

#[tokio::test]
async fn chains_collapse_so_every_answer_names_the_final_active_id() {
    let app = spawn_app().await;
    let ids = mint_works(&app, &["a", "b", "c"]).await;
    let (a, b, c) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str());

    // A -> B, then B -> C: A reports C, not B.
    let answer = redirect(&app.client, &[(a, b)]).await.unwrap();
    assert_eq!(answer.resolutions[0].status(), IdStatus::Redirected);
    assert_eq!(answer.resolutions[0].redirect_target.as_deref(), Some(b));
    redirect(&app.client, &[(b, c)]).await.unwrap();
    assert_eq!(
        resolved(&app, a).await,
        (IdStatus::Redirected, Some(c.to_owned()))
    );
    assert_eq!(
        resolved(&app, b).await,
        (IdStatus::Redirected, Some(c.to_owned()))
    );
    assert_eq!(
        looked_up(&app, "a").await,
        (IdStatus::Redirected, Some(c.to_owned()))
    );
    let minted = app.mint(vec![item(work("a"))]).await.unwrap().ids.remove(0);
    assert_eq!(minted.canonical_id, a, "the mapping never changes");
    assert_eq!(minted.outcome(), MintOutcome::Existing);
    assert_eq!(minted.status(), IdStatus::Redirected);
    assert_eq!(minted.redirect_target.as_deref(), Some(c));

    // Redirecting to a redirected ID lands on the end of its chain.
    let d = &mint_works(&app, &["d"]).await[0];
    let answer = redirect(&app.client, &[(d, a)]).await.unwrap();
    assert_eq!(answer.resolutions[0].redirect_target.as_deref(), Some(c));
    assert_eq!(resolved(&app, c).await, (IdStatus::Active, None));
}

#[tokio::test]
async fn redirects_to_itself_to_unknown_or_withdrawn_ids_and_cycles_are_refused() {
    let app = spawn_app().await;
    let ids = mint_works(&app, &["a", "b", "w"]).await;
    let (a, b, w) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str());
    withdraw(&app.client, &[w]).await.unwrap();

    refused(redirect(&app.client, &[(a, a)]).await, "itself");
    refused(
        redirect(&app.client, &[(a, "zzzzzzzz")]).await,
        "not a minted",
    );
    refused(
        redirect(&app.client, &[("zzzzzzzz", a)]).await,
        "not a minted",
    );
    refused(redirect(&app.client, &[(a, w)]).await, "withdrawn");
    redirect(&app.client, &[(a, b)]).await.unwrap();
    let status = refused(redirect(&app.client, &[(b, a)]).await, "cycle");
    assert!(status.message().starts_with("redirects[0]:"), "{status:?}");
    assert_eq!(resolved(&app, b).await, (IdStatus::Active, None));
}

#[tokio::test]
async fn a_call_is_atomic_and_applies_its_entries_in_order() {
    let app = spawn_app().await;
    let ids = mint_works(&app, &["a", "b", "c"]).await;
    let (a, b, c) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str());

    // The second entry is refused: the first is not applied either, and nothing is logged.
    let status = refused(redirect(&app.client, &[(a, b), (b, a)]).await, "cycle");
    assert!(status.message().starts_with("redirects[1]:"), "{status:?}");
    assert_eq!(resolved(&app, a).await, (IdStatus::Active, None));
    assert!(history(&app.client, &[a, b]).await.unwrap().is_empty());

    // In order: A -> B then B -> C is a chain that collapses within one call; the answer is the
    // state after the whole call, at every position.
    let answer = redirect(&app.client, &[(a, b), (b, c)]).await.unwrap();
    let targets: Vec<_> = answer
        .resolutions
        .iter()
        .map(|r| r.redirect_target.as_deref())
        .collect();
    assert_eq!(targets, [Some(c), Some(c)]);
    assert_eq!(answer.resolutions[0].canonical_id, a);
    assert_eq!(answer.resolutions[0].source_identifiers, [work("a")]);
}

#[tokio::test]
async fn the_same_redirect_again_is_a_no_op_and_another_target_needs_a_restore_first() {
    let app = spawn_app().await;
    let ids = mint_works(&app, &["a", "b", "c"]).await;
    let (a, b, c) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str());
    redirect(&app.client, &[(a, b)]).await.unwrap();

    let again = redirect(&app.client, &[(a, b)]).await.unwrap();
    assert_eq!(again.resolutions[0].redirect_target.as_deref(), Some(b));
    assert_eq!(
        history(&app.client, &[a]).await.unwrap().len(),
        1,
        "no second event"
    );

    refused(redirect(&app.client, &[(a, c)]).await, "restore it first");
    restore(&app.client, &[a]).await.unwrap();
    redirect(&app.client, &[(a, c)]).await.unwrap();
    assert_eq!(
        resolved(&app, a).await,
        (IdStatus::Redirected, Some(c.to_owned()))
    );
}

#[tokio::test]
async fn a_withdrawn_id_is_never_reused_and_a_new_identifier_inheriting_it_is_withdrawn() {
    let app = spawn_app().await;
    let w = mint_works(&app, &["gone"]).await.remove(0);
    let answer = withdraw(&app.client, &[&w]).await.unwrap();
    assert_eq!(answer.resolutions[0].status(), IdStatus::Withdrawn);
    assert_eq!(answer.resolutions[0].reason, "record deleted at source");

    // Its identifier keeps it: EXISTING, WITHDRAWN, no new ID.
    let again = app
        .mint(vec![
            item(work("gone")),
            inheriting(work("successor"), work("gone")),
        ])
        .await
        .unwrap()
        .ids;
    assert_eq!(again[0].canonical_id, w);
    assert_eq!(again[0].outcome(), MintOutcome::Existing);
    assert_eq!(again[0].status(), IdStatus::Withdrawn);
    assert_eq!(again[1].canonical_id, w);
    assert_eq!(again[1].outcome(), MintOutcome::Inherited);
    assert_eq!(again[1].status(), IdStatus::Withdrawn);
    assert_eq!(app.db.count().await, 2);

    // Withdrawing it again changes nothing.
    withdraw(&app.client, &[&w]).await.unwrap();
    assert_eq!(history(&app.client, &[&w]).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_id_others_redirect_to_cannot_be_withdrawn_and_a_redirected_one_must_be_restored_first()
{
    let app = spawn_app().await;
    let ids = mint_works(&app, &["a", "b"]).await;
    let (a, b) = (ids[0].as_str(), ids[1].as_str());
    redirect(&app.client, &[(a, b)]).await.unwrap();

    let status = refused(withdraw(&app.client, &[b]).await, "redirect to it");
    assert!(status.message().contains(a), "{status:?}");
    refused(withdraw(&app.client, &[a]).await, "restore it first");

    restore(&app.client, &[a]).await.unwrap();
    withdraw(&app.client, &[b]).await.unwrap();
    assert_eq!(resolved(&app, b).await, (IdStatus::Withdrawn, None));
}

#[tokio::test]
async fn restore_makes_an_id_active_again_with_its_reason_principal_and_time() {
    let app = spawn_app().await;
    let ids = mint_works(&app, &["a", "b"]).await;
    let (a, b) = (ids[0].as_str(), ids[1].as_str());
    redirect(&app.client, &[(a, b)]).await.unwrap();
    withdraw(&app.client, &[b])
        .await
        .expect_err("b is a target");

    let answer = restore(&app.client, &[a]).await.unwrap();
    let r = &answer.resolutions[0];
    assert_eq!(r.status(), IdStatus::Active);
    assert_eq!(r.redirect_target, None);
    assert_eq!(r.reason, "merged in error");
    assert_eq!(r.changed_by, "anonymous");
    assert!(
        r.changed_at.is_some_and(|t| t.seconds > 1_700_000_000),
        "{r:?}"
    );
    assert_eq!(looked_up(&app, "a").await, (IdStatus::Active, None));

    // Restoring an ACTIVE ID is a no-op.
    restore(&app.client, &[b]).await.unwrap();
    assert!(history(&app.client, &[b]).await.unwrap().is_empty());
}

#[tokio::test]
async fn every_change_is_logged_in_order_and_the_log_refuses_update_and_delete() {
    let app = spawn_app().await;
    let ids = mint_works(&app, &["a", "b"]).await;
    let (a, b) = (ids[0].as_str(), ids[1].as_str());
    redirect(&app.client, &[(a, b)]).await.unwrap();
    restore(&app.client, &[a]).await.unwrap();
    withdraw(&app.client, &[a]).await.unwrap();

    let events = history(&app.client, &[a, b]).await.unwrap();
    let seen: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.canonical_id.as_str(),
                e.action(),
                e.target_canonical_id.as_deref(),
            )
        })
        .collect();
    use pb::CanonicalIdAction::*;
    assert_eq!(
        seen,
        [
            (a, Redirect, Some(b)),
            (a, Restore, None),
            (a, Withdraw, None)
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.changed_by == "anonymous" && e.changed_at.is_some())
    );
    assert_eq!(events[0].reason, format!("merged {a} into {b}"));

    for sql in [
        "UPDATE canonical_id_events SET reason = 'rewritten'",
        "DELETE FROM canonical_id_events",
        "TRUNCATE canonical_id_events",
    ] {
        let err = sqlx::raw_sql(sql)
            .execute(&app.db.pool)
            .await
            .expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(history(&app.client, &[a]).await.unwrap().len(), 3);
}

#[tokio::test]
async fn the_database_itself_refuses_states_that_break_the_rules() {
    // Writers that bypass the service (a hand-written fix, a bug) meet the same rules at commit.
    let app = spawn_app().await;
    let ids = mint_works(&app, &["a", "b", "c"]).await;
    let (a, b, c) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str());
    redirect(&app.client, &[(a, b)]).await.unwrap();
    withdraw(&app.client, &[c]).await.unwrap();
    let insert = |id: &str, status: &str, target: Option<&str>| {
        format!(
            "INSERT INTO canonical_id_states (canonical_id, status, redirect_target, reason, changed_by) \
             VALUES ('{id}', '{status}', {}, 'by hand', 'dba') \
             ON CONFLICT (canonical_id) DO UPDATE SET status = excluded.status, redirect_target = excluded.redirect_target",
            target.map_or("NULL".to_owned(), |t| format!("'{t}'"))
        )
    };
    for (what, sql, needle) in [
        ("a cycle", insert(b, "redirected", Some(a)), "not ACTIVE"),
        (
            "a redirect to a withdrawn ID",
            insert(b, "redirected", Some(c)),
            "not ACTIVE",
        ),
        (
            "withdrawing a target",
            insert(b, "withdrawn", None),
            "redirect to it",
        ),
        (
            "an unknown ID",
            insert("zzzzzzzz", "withdrawn", None),
            "not a minted",
        ),
        (
            "an unknown target",
            insert(b, "redirected", Some("zzzzzzzz")),
            "not a minted",
        ),
    ] {
        let err = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&app.db.pool)
            .await
            .expect_err(what);
        assert!(err.to_string().contains(needle), "{what}: {err}");
    }
    assert_eq!(resolved(&app, b).await, (IdStatus::Active, None));
    // The mappings stay permanent whatever the lifecycle says.
    let err = sqlx::raw_sql("DELETE FROM source_identifiers")
        .execute(&app.db.pool)
        .await
        .expect_err("permanent");
    assert!(err.to_string().contains("permanent"), "{err}");
}

#[tokio::test]
async fn malformed_lifecycle_requests_are_invalid_argument_by_path() {
    let app = spawn_app().await;
    let a = mint_works(&app, &["a"]).await.remove(0);
    let status = app
        .client
        .clone()
        .redirect_canonical_ids(pb::RedirectCanonicalIdsRequest {
            redirects: vec![
                pb::Redirect {
                    canonical_id: a.clone(),
                    target_canonical_id: "0000".into(),
                    reason: "ok".into(),
                },
                pb::Redirect {
                    canonical_id: a.clone(),
                    target_canonical_id: a.clone(),
                    reason: String::new(),
                },
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("redirects[0].target_canonical_id: must be 8 characters"),
        "{status:?}"
    );
    assert!(
        status
            .message()
            .contains("redirects[1].reason: must not be empty"),
        "{status:?}"
    );

    let status = app
        .client
        .clone()
        .withdraw_canonical_ids(pb::WithdrawCanonicalIdsRequest {
            withdrawals: vec![pb::Withdrawal {
                canonical_id: a.clone(),
                reason: "x".repeat(1001),
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("withdrawals[0].reason: must be at most 1000 bytes"),
        "{status:?}"
    );
    assert!(history(&app.client, &["0000"]).await.is_err());
}

#[tokio::test]
async fn lifecycle_batches_are_bounded_by_max_batch() {
    let app = spawn_app_with(TestDatabase::migrated().await, |c| c.max_batch = 2)
        .await
        .wait_until(ServingStatus::Serving)
        .await;
    let status = withdraw(&app.client, &["aaaaaaaa"; 3]).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("withdrawals: has 3 entries"),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_commands_redirect_withdraw_restore_and_print_history_as_json_lines() {
    use crate::operators::client;
    let app = spawn_app().await;
    let ids = mint_works(&app, &["a", "b", "c"]).await;
    let (a, b, c) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str());

    let (code, redirected, _) = client(
        &app,
        &[
            "redirect",
            "--reason",
            "duplicate concept",
            &format!("{a}={b}"),
        ],
        "",
    );
    assert_eq!(code, 0);
    assert_eq!(redirected[0]["canonical_id"], a);
    assert_eq!(redirected[0]["status"], "REDIRECTED");
    assert_eq!(redirected[0]["redirect_target"], b);
    assert_eq!(redirected[0]["reason"], "duplicate concept");
    assert_eq!(redirected[0]["changed_by"], "anonymous");
    assert_eq!(redirected[0]["source_identifiers"][0]["value"], "a");

    // Standard input, JSON lines with their own reason.
    let stdin = format!("{{\"canonical_id\":\"{c}\",\"reason\":\"record deleted\"}}\n");
    let (code, withdrawn, _) = client(&app, &["withdraw"], &stdin);
    assert_eq!(
        (code, withdrawn[0]["status"].as_str()),
        (0, Some("WITHDRAWN"))
    );
    let (code, looked_up, _) = client(&app, &["lookup", "sierra-system-number/Work/a"], "");
    assert_eq!(
        (code, looked_up[0]["status"].as_str()),
        (0, Some("REDIRECTED"))
    );
    assert_eq!(looked_up[0]["redirect_target"], b);

    let (code, _, err) = client(
        &app,
        &["redirect", "--reason", "x", &format!("{b}={c}")],
        "",
    );
    assert_eq!(code, 9, "FAILED_PRECONDITION: {err}");
    let (code, _, err) = client(&app, &["withdraw", a], "");
    assert_eq!(code, 3, "no reason is a usage error: {err}");

    let (code, restored, _) = client(&app, &["restore", "--reason", "split again", a], "");
    assert_eq!((code, restored[0]["status"].as_str()), (0, Some("ACTIVE")));
    let (code, events, _) = client(&app, &["history", a, c], "");
    assert_eq!(code, 0);
    let actions: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["canonical_id"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(actions, [(a, "redirect"), (a, "restore"), (c, "withdraw")]);
    assert_eq!(events[0]["target_canonical_id"], b);
    assert!(
        events[0]["changed_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{events:?}"
    );
}
