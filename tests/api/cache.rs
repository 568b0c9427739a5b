//! The identifier cache never answers differently from the table: checked against the table itself
//! after every call, with caches small enough to evict all the time, two stores ("replicas") that
//! each mint what the other then looks up, and a call whose transaction fails at commit.

use std::collections::HashMap;

use idminter::domain::{CanonicalId, MintItem, MintOutcome, MintPlan, SourceIdentifier};
use idminter::store::Store;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::postgres::PgPoolOptions;

use crate::helpers::*;

fn ident(value: &str) -> SourceIdentifier {
    SourceIdentifier::parse("sierra-system-number".into(), "Work".into(), value.into()).unwrap()
}

/// A store of its own (its own pool and cache) on `db`, as another server process would be.
async fn store(db: &TestDatabase, cache_capacity: usize) -> Store {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(db.options.clone())
        .await
        .unwrap();
    Store::with_id_cache(pool, cache_capacity)
}

/// Every mapping in the table.
async fn table(db: &TestDatabase) -> HashMap<String, String> {
    sqlx::query_as::<_, (String, String)>("SELECT value, canonical_id FROM source_identifiers")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn cached_answers_always_match_the_table_across_replicas_and_evictions() {
    // Arrange: two stores with caches far smaller than the 400 identifiers they share.
    let db = TestDatabase::migrated().await;
    let replicas = [store(&db, 64).await, store(&db, 64).await];
    let values: Vec<String> = (0..400).map(|i| format!("c{i}")).collect();
    let mut rng = StdRng::seed_from_u64(6);

    for round in 0..40 {
        // Act: one replica mints or looks up a random batch, with repeats and predecessors.
        let replica = &replicas[round % 2];
        let batch: Vec<usize> = (0..rng.random_range(1..120))
            .map(|_| rng.random_range(0..values.len()))
            .collect();
        let answers: Vec<(String, Option<CanonicalId>)> = if rng.random_bool(0.6) {
            let items = batch
                .iter()
                .map(|&i| MintItem {
                    source_identifier: ident(&values[i]),
                    // Every tenth identifier inherits from its neighbour (minted by now or in this
                    // very call; else the call fails and writes nothing, also fine).
                    predecessor: (i % 10 == 9).then(|| ident(&values[i - 1])),
                })
                .collect();
            match replica
                .mint(MintPlan::new(items).unwrap(), "anonymous")
                .await
            {
                Ok(minted) => minted
                    .into_iter()
                    .map(|m| (m.source_identifier.value().to_owned(), Some(m.canonical_id)))
                    .collect(),
                Err(e) => {
                    assert!(e.to_string().contains("predecessor"), "round {round}: {e}");
                    Vec::new()
                }
            }
        } else {
            let ids: Vec<SourceIdentifier> = batch.iter().map(|&i| ident(&values[i])).collect();
            let found = replica.lookup(&ids).await.unwrap();
            ids.iter()
                .map(|id| id.value().to_owned())
                .zip(found)
                .collect()
        };

        // Assert: every answer, cached or not, is the table's.
        let table = table(&db).await;
        for (value, answer) in answers {
            assert_eq!(
                answer.as_ref().map(CanonicalId::as_str),
                table.get(&value).map(String::as_str),
                "round {round}: {value}"
            );
        }
    }

    // And a final sweep of everything through both replicas, twice (the second mostly cached).
    let table = table(&db).await;
    let ids: Vec<SourceIdentifier> = values.iter().map(|v| ident(v)).collect();
    for replica in &replicas {
        for _ in 0..2 {
            for (id, found) in ids.iter().zip(replica.lookup(&ids).await.unwrap()) {
                assert_eq!(
                    found.as_ref().map(CanonicalId::as_str),
                    table.get(id.value()).map(String::as_str),
                    "{id}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_mint_whose_commit_fails_leaves_no_answer_behind() {
    // Arrange: a deferred constraint that fails the commit of any transaction writing `doomed`,
    // after the insert itself succeeded.
    let db = TestDatabase::migrated().await;
    db.execute(
        "CREATE FUNCTION refuse_doomed() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.value = 'doomed' THEN RAISE EXCEPTION 'doomed at commit'; END IF; RETURN NULL; END $$; \
         CREATE CONSTRAINT TRIGGER refuse_doomed AFTER INSERT ON source_identifiers \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_doomed();",
    )
    .await;
    let replica = store(&db, 1000).await;
    let doomed = ident("doomed");
    let failed = replica
        .mint(
            MintPlan::new(vec![MintItem {
                source_identifier: doomed.clone(),
                predecessor: None,
            }])
            .unwrap(),
            "anonymous",
        )
        .await;
    assert!(failed.is_err(), "the commit must fail: {failed:?}");

    // Act: the identifier gets another ID, written by someone else.
    db.execute(
        "DROP TRIGGER refuse_doomed ON source_identifiers; \
         INSERT INTO source_identifiers (identifier_type, ontology_type, value, canonical_id, minted) \
         VALUES ('sierra-system-number', 'Work', 'doomed', 'zzzzzzzz', true);",
    )
    .await;

    // Assert: the replica answers the table's ID, not the one it drew for the failed call.
    assert_eq!(
        replica.lookup(std::slice::from_ref(&doomed)).await.unwrap(),
        vec![Some(CanonicalId::parse("zzzzzzzz".into()).unwrap())]
    );
    let minted = replica
        .mint(
            MintPlan::new(vec![MintItem {
                source_identifier: doomed,
                predecessor: None,
            }])
            .unwrap(),
            "anonymous",
        )
        .await
        .unwrap();
    assert_eq!(minted[0].canonical_id.as_str(), "zzzzzzzz");
    assert_eq!(minted[0].outcome, MintOutcome::Existing);
}

#[tokio::test]
async fn the_service_answers_repeated_calls_from_the_cache_with_the_tables_ids() {
    // Arrange
    let app = spawn_app().await;
    let items: Vec<_> = (0..50).map(|i| item(work(&format!("r{i}")))).collect();
    let minted = app.mint(items.clone()).await.unwrap();

    // Act: the same identifiers again, twice, through both RPCs.
    let again = app.mint(items.clone()).await.unwrap();
    let looked_up = app
        .lookup((0..50).map(|i| work(&format!("r{i}"))).collect())
        .await
        .unwrap();

    // Assert: the cache served them (hits counted), and every answer is the table's.
    let (_, metrics) = http_get(app.admin_addr, "/metrics").await;
    let hits: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"idminter_id_cache_lookups_total{result="hit"} "#))
        .map_or(0.0, |v| v.trim().parse().unwrap());
    assert!(hits >= 50.0, "cache hits: {hits}\n{metrics}");
    let table = table(&app.db).await;
    for m in minted.ids.iter().chain(&again.ids) {
        let value = &m.source_identifier.as_ref().unwrap().value;
        assert_eq!(Some(&m.canonical_id), table.get(value), "{value}");
    }
    for r in &looked_up.results {
        let value = &r.source_identifier.as_ref().unwrap().value;
        assert_eq!(r.canonical_id.as_ref(), table.get(value), "{value}");
    }
}
