//! MintIds, rule by rule as the contract states them.

use idminter::pb::MintOutcome;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn new_identifiers_are_minted_once_and_existing_ever_after() {
    let app = spawn_app().await;

    let first = app
        .mint(vec![item(work("b1000001")), item(work("b1000002"))])
        .await
        .unwrap();
    let again = app
        .mint(vec![item(work("b1000002")), item(work("b1000001"))])
        .await
        .unwrap();

    assert_eq!(first.ids.len(), 2);
    for id in &first.ids {
        assert_eq!(id.outcome(), MintOutcome::Minted);
        assert!(is_canonical(&id.canonical_id), "{}", id.canonical_id);
    }
    assert_ne!(
        first.ids[0].canonical_id, first.ids[1].canonical_id,
        "distinct identifiers, distinct IDs"
    );
    assert_eq!(again.ids[0].canonical_id, first.ids[1].canonical_id);
    assert_eq!(again.ids[1].canonical_id, first.ids[0].canonical_id);
    assert!(
        again
            .ids
            .iter()
            .all(|id| id.outcome() == MintOutcome::Existing)
    );
    assert_eq!(
        again.ids[0].source_identifier,
        Some(work("b1000002")),
        "answers echo the identifier in request order"
    );
}

#[tokio::test]
async fn an_identifier_repeated_in_one_request_gets_the_same_answer_everywhere() {
    let app = spawn_app().await;

    let response = app
        .mint(vec![
            item(work("a")),
            item(work("b")),
            item(work("a")),
            item(work("a")),
        ])
        .await
        .unwrap();

    let ids: Vec<_> = response
        .ids
        .iter()
        .map(|m| (m.canonical_id.as_str(), m.outcome()))
        .collect();
    assert_eq!(ids[0], ids[2]);
    assert_eq!(ids[0], ids[3]);
    assert_eq!(
        ids[0].1,
        MintOutcome::Minted,
        "every position of the new identifier says MINTED"
    );
    assert_eq!(app.db.count().await, 2, "one row per distinct identifier");
}

#[tokio::test]
async fn an_empty_request_gets_an_empty_response() {
    let app = spawn_app().await;
    assert!(app.mint(vec![]).await.unwrap().ids.is_empty());
    assert!(app.lookup(vec![]).await.unwrap().results.is_empty());
    assert!(app.resolve(&[]).await.unwrap().resolutions.is_empty());
}

#[tokio::test]
async fn a_new_identifier_inherits_an_already_minted_predecessors_id() {
    let app = spawn_app().await;
    let sierra = app
        .mint(vec![item(work("b1"))])
        .await
        .unwrap()
        .ids
        .remove(0);

    let folio = sid("folio-instance", "Work", "f-1");
    let response = app
        .mint(vec![inheriting(folio.clone(), work("b1"))])
        .await
        .unwrap();

    assert_eq!(response.ids[0].outcome(), MintOutcome::Inherited);
    assert_eq!(response.ids[0].canonical_id, sierra.canonical_id);
    let again = app.mint(vec![item(folio)]).await.unwrap();
    assert_eq!(again.ids[0].outcome(), MintOutcome::Existing);
    assert_eq!(again.ids[0].canonical_id, sierra.canonical_id);
}

#[tokio::test]
async fn a_predecessor_minted_by_the_same_request_is_inherited_in_any_order_and_through_chains() {
    let app = spawn_app().await;

    // The inheritors come before their root; c <- b <- a is a chain of new identifiers.
    let response = app
        .mint(vec![
            inheriting(work("a"), work("b")),
            inheriting(work("b"), work("c")),
            item(work("c")),
        ])
        .await
        .unwrap();

    let outcomes: Vec<_> = response.ids.iter().map(|m| m.outcome()).collect();
    assert_eq!(
        outcomes,
        [
            MintOutcome::Inherited,
            MintOutcome::Inherited,
            MintOutcome::Minted
        ]
    );
    assert!(
        response
            .ids
            .iter()
            .all(|m| m.canonical_id == response.ids[2].canonical_id)
    );
}

#[tokio::test]
async fn an_unminted_predecessor_fails_the_call_naming_the_items_and_mints_nothing() {
    let app = spawn_app().await;

    let status = app
        .mint(vec![
            item(work("innocent")),
            inheriting(work("orphan"), work("never-minted")),
        ])
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("items[1]"),
        "{}",
        status.message()
    );
    assert!(
        status
            .message()
            .contains("sierra-system-number/Work/never-minted"),
        "{}",
        status.message()
    );
    assert_eq!(
        app.db.count().await,
        0,
        "the call is atomic: its valid item was not minted either"
    );
}

#[tokio::test]
async fn an_identifier_with_an_id_keeps_it_whatever_predecessor_is_named() {
    let app = spawn_app().await;
    let [own, other] = [work("own"), work("other")];
    let minted = app
        .mint(vec![item(own.clone()), item(other.clone())])
        .await
        .unwrap();

    for predecessor in [other, work("never-minted")] {
        let response = app
            .mint(vec![inheriting(own.clone(), predecessor)])
            .await
            .unwrap();

        assert_eq!(response.ids[0].outcome(), MintOutcome::Existing);
        assert_eq!(response.ids[0].canonical_id, minted.ids[0].canonical_id);
    }
}

#[tokio::test]
async fn matching_is_exact_case_sensitive_and_untrimmed() {
    let app = spawn_app().await;

    let response = app
        .mint(vec![
            item(work("b13026252")),
            item(work("B13026252")),
            item(work(" b13026252")),
        ])
        .await
        .unwrap();

    let ids: std::collections::HashSet<_> = response
        .ids
        .iter()
        .map(|m| m.canonical_id.as_str())
        .collect();
    assert_eq!(ids.len(), 3, "three identifiers, three IDs: {ids:?}");
}

#[tokio::test]
async fn a_malformed_request_names_the_first_violations_by_path_and_writes_nothing() {
    let app = spawn_app().await;
    let cases = [
        (
            vec![item(work("ok")), item(work(""))],
            "items[1].source_identifier.value: must not be empty",
        ),
        (
            vec![idminter::pb::MintItem {
                source_identifier: None,
                predecessor: None,
            }],
            "items[0].source_identifier: is required",
        ),
        (
            vec![item(sid("t\n", "Work", "v"))],
            "items[0].source_identifier.identifier_type: must not contain control characters (found U+000A)",
        ),
        (
            vec![item(work(&"x".repeat(256)))],
            "items[0].source_identifier.value: must be at most 255 bytes (is 256)",
        ),
        (
            vec![inheriting(work("a"), sid("", "Work", "p"))],
            "items[0].predecessor.identifier_type: must not be empty",
        ),
        (
            vec![
                inheriting(work("a"), work("p")),
                inheriting(work("a"), work("q")),
            ],
            "items[1].predecessor: differs from the predecessor named for the same identifier at items[0]",
        ),
    ];
    for (items, expected) in cases {
        let status = app.mint(items).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{expected}");
        assert!(
            status.message().contains(expected),
            "expected {expected:?} in {:?}",
            status.message()
        );
    }
    assert_eq!(app.db.count().await, 0);
}

#[tokio::test]
async fn a_batch_over_max_batch_is_refused_and_one_at_the_limit_is_served() {
    let db = TestDatabase::migrated().await;
    let app = spawn_app_with(db, |c| c.max_batch = 3)
        .await
        .wait_until(ServingStatus::Serving)
        .await;

    let over = app
        .mint((0..4).map(|i| item(work(&i.to_string()))).collect())
        .await
        .unwrap_err();
    let at = app
        .mint((0..3).map(|i| item(work(&i.to_string()))).collect())
        .await
        .unwrap();

    assert_eq!(over.code(), Code::InvalidArgument);
    assert_eq!(
        over.message(),
        "items: has 4 entries; at most 3 are allowed per call"
    );
    assert_eq!(at.ids.len(), 3);
}

#[tokio::test]
async fn ontology_aliases_make_one_thing_of_several_roles_and_answers_show_the_stored_form() {
    let db = TestDatabase::migrated().await;
    let app = spawn_app_with(db, |c| {
        c.aliases =
            idminter::domain::OntologyAliases::parse(&["Person=Concept", "Place=Concept"]).unwrap();
    })
    .await
    .wait_until(ServingStatus::Serving)
    .await;

    let response = app
        .mint(vec![
            item(sid("lc-names", "Person", "n79021164")),
            item(sid("lc-names", "Concept", "n79021164")),
            inheriting(
                sid("lc-names", "Place", "n2"),
                sid("lc-names", "Person", "n79021164"),
            ),
        ])
        .await
        .unwrap();

    assert_eq!(response.ids[0].canonical_id, response.ids[1].canonical_id);
    assert_eq!(
        response.ids[0].source_identifier,
        Some(sid("lc-names", "Concept", "n79021164"))
    );
    assert_eq!(response.ids[2].outcome(), MintOutcome::Inherited);
    assert_eq!(response.ids[2].canonical_id, response.ids[0].canonical_id);
    let looked_up = app
        .lookup(vec![sid("lc-names", "Person", "n79021164")])
        .await
        .unwrap();
    assert_eq!(
        looked_up.results[0].canonical_id.as_deref(),
        Some(response.ids[0].canonical_id.as_str())
    );
}

#[tokio::test]
async fn a_drawn_id_that_is_already_taken_is_retried_and_never_surfaced() {
    let app = spawn_app().await;
    let taken = app
        .mint(vec![item(work("first"))])
        .await
        .unwrap()
        .ids
        .remove(0)
        .canonical_id;
    // Force the next draw to collide: a trigger rewrites the first inserted ID to the taken one.
    app.db
        .execute(&format!(
            "CREATE SEQUENCE collisions; \
             CREATE FUNCTION collide() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF nextval('collisions') = 1 THEN NEW.canonical_id := '{taken}'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER collide BEFORE INSERT ON source_identifiers FOR EACH ROW EXECUTE FUNCTION collide();"
        ))
        .await;

    let response = app.mint(vec![item(work("second"))]).await.unwrap();

    assert_eq!(response.ids[0].outcome(), MintOutcome::Minted);
    assert_ne!(response.ids[0].canonical_id, taken);
    let draws: i64 = sqlx::query_scalar("SELECT last_value FROM collisions")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(draws, 2, "the collision was seen and a second ID drawn");
}

#[tokio::test]
async fn a_failure_after_some_rows_were_written_rolls_the_whole_call_back() {
    let app = spawn_app().await;
    // Inheritors of new roots are written last; make that write fail.
    app.db
        .execute(
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.value = 'boom' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER boom BEFORE INSERT ON source_identifiers FOR EACH ROW EXECUTE FUNCTION boom();",
        )
        .await;

    let status = app
        .mint(vec![
            item(work("root")),
            item(work("plain")),
            inheriting(work("boom"), work("root")),
        ])
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::Internal);
    assert!(
        !status.message().contains("boom"),
        "never the database's text: {}",
        status.message()
    );
    assert_eq!(
        app.db.count().await,
        0,
        "the roots written before the failure were rolled back"
    );
}

#[tokio::test]
async fn the_database_refuses_to_change_or_delete_a_mapping_or_reuse_a_minted_id() {
    let app = spawn_app().await;
    let minted = app
        .mint(vec![item(work("a"))])
        .await
        .unwrap()
        .ids
        .remove(0)
        .canonical_id;

    let update = sqlx::query("UPDATE source_identifiers SET canonical_id = 'zzzzzzzz'")
        .execute(&app.db.pool)
        .await;
    let delete = sqlx::query("DELETE FROM source_identifiers")
        .execute(&app.db.pool)
        .await;
    let reuse = sqlx::query(
        "INSERT INTO source_identifiers (identifier_type, ontology_type, value, canonical_id, minted) \
         VALUES ('t', 'Work', 'b', $1, true)",
    )
    .bind(&minted)
    .execute(&app.db.pool)
    .await;
    let malformed = sqlx::query(
        "INSERT INTO source_identifiers (identifier_type, ontology_type, value, canonical_id, minted) \
         VALUES ('t', 'Work', 'c', 'ABCDEFGH', true)",
    )
    .execute(&app.db.pool)
    .await;

    assert!(update.is_err(), "UPDATE must be refused");
    assert!(delete.is_err(), "DELETE must be refused");
    assert!(
        reuse.is_err(),
        "a second minted row for one ID must be refused"
    );
    assert!(malformed.is_err(), "a malformed ID must be refused");
    assert_eq!(
        app.lookup(vec![work("a")]).await.unwrap().results[0]
            .canonical_id
            .as_deref(),
        Some(minted.as_str())
    );
}

#[tokio::test]
async fn a_caller_deadline_that_passes_gives_deadline_exceeded_and_mints_nothing() {
    let app = spawn_app().await;
    // Hold a row lock the call will wait on, so the call cannot finish before its deadline.
    let blocker = hold_uncommitted_work(&app.db, "contended", "aaaaaaaa").await;

    let mut request = tonic::Request::new(idminter::pb::MintIdsRequest {
        items: vec![item(work("fresh")), item(work("contended"))],
    });
    request.set_timeout(std::time::Duration::from_millis(300));
    let status = app.client.clone().mint_ids(request).await.unwrap_err();
    blocker.rollback().await.unwrap();

    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        app.db.count().await,
        0,
        "the abandoned call's rows were rolled back"
    );
}
