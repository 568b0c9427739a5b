//! Migration V4: the primary key carries the canonical ID, so lookups never visit the table's
//! heap; an index the operator built beforehand (CONCURRENTLY, without blocking writers) is swapped
//! in rather than built again, and one that is invalid or defined otherwise is refused, never
//! dropped.

use idminter::store::migrations::{self, HISTORY_TABLE, RefineryConnection};
use sqlx::Connection;

use crate::helpers::*;

/// The definition the migration expects of a prepared index (its comment tells operators).
const PREPARED: &str = "CREATE UNIQUE INDEX CONCURRENTLY source_identifiers_key_with_id \
    ON source_identifiers (identifier_type, ontology_type, value) INCLUDE (canonical_id)";

/// A database migrated to V3, as the previous release left it, holding one mapping.
async fn database_at_v3() -> TestDatabase {
    let db = TestDatabase::create().await;
    let mut conn = sqlx::PgConnection::connect_with(&db.options).await.unwrap();
    migrations::runner(HISTORY_TABLE)
        .set_target(refinery::Target::Version(3))
        .run_async(&mut RefineryConnection(&mut conn))
        .await
        .expect("migrate to V3");
    db.execute(
        "INSERT INTO source_identifiers (identifier_type, ontology_type, value, canonical_id, minted) \
         VALUES ('sierra-system-number', 'Work', 'b1', 'abcdefgh', true)",
    )
    .await;
    db
}

/// The primary key's index: its oid and definition.
async fn primary_key(db: &TestDatabase) -> (sqlx::postgres::types::Oid, String) {
    sqlx::query_as(
        "SELECT c.conindid, pg_get_indexdef(c.conindid) FROM pg_constraint c \
         WHERE c.conname = 'source_identifiers_pkey'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

async fn migrate(db: &TestDatabase) -> anyhow::Result<Vec<String>> {
    let mut conn = sqlx::PgConnection::connect_with(&db.options).await.unwrap();
    migrations::apply(&mut conn, HISTORY_TABLE).await
}

#[tokio::test]
async fn a_lookup_is_answered_from_the_primary_key_alone() {
    let db = database_at_v3().await;
    migrate(&db).await.expect("migrate to the latest");
    db.execute("VACUUM source_identifiers").await; // marks the page all-visible, as autovacuum does

    // The lookup's own shape (queries::lookup), on one connection with the sequential scan
    // priced out, as a table of millions makes it.
    let mut conn = sqlx::PgConnection::connect_with(&db.options).await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) \
         SELECT array_agg(s.canonical_id ORDER BY k.i) \
         FROM unnest(ARRAY['sierra-system-number'], ARRAY['Work'], ARRAY['b1']) \
             WITH ORDINALITY AS k(identifier_type, ontology_type, value, i) \
         LEFT JOIN source_identifiers s USING (identifier_type, ontology_type, value)",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Only Scan using source_identifiers_pkey"),
        "the lookup reads the key alone:\n{plan}"
    );
    assert!(
        plan.contains("Heap Fetches: 0"),
        "no visit to the heap:\n{plan}"
    );
}

#[tokio::test]
async fn v4_rebuilds_the_primary_key_with_the_canonical_id_and_keeps_the_rows() {
    let db = database_at_v3().await;
    let (_, before) = primary_key(&db).await;
    assert!(!before.contains("INCLUDE"), "{before}");

    let applied = migrate(&db).await.expect("migrate");

    assert_eq!(applied, ["V4__covering_primary_key"]);
    let (_, after) = primary_key(&db).await;
    assert!(
        after.ends_with("(identifier_type, ontology_type, value) INCLUDE (canonical_id)"),
        "{after}"
    );
    let id: String = sqlx::query_scalar("SELECT canonical_id FROM source_identifiers")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(id, "abcdefgh");
}

#[tokio::test]
async fn an_index_built_beforehand_is_swapped_in_not_built_again() {
    let db = database_at_v3().await;
    db.execute(PREPARED).await;
    let prepared: sqlx::postgres::types::Oid =
        sqlx::query_scalar("SELECT 'source_identifiers_key_with_id'::regclass::oid")
            .fetch_one(&db.pool)
            .await
            .unwrap();

    migrate(&db).await.expect("migrate");

    let (index, definition) = primary_key(&db).await;
    assert_eq!(index, prepared, "the prepared index is the key now");
    assert!(
        definition.contains("INCLUDE (canonical_id)"),
        "{definition}"
    );
}

#[tokio::test]
async fn a_prepared_index_defined_otherwise_is_refused_and_nothing_changes() {
    let db = database_at_v3().await;
    db.execute(
        "CREATE UNIQUE INDEX source_identifiers_key_with_id \
         ON source_identifiers (identifier_type, ontology_type, value)",
    )
    .await;
    let (key_before, _) = primary_key(&db).await;

    let error = migrate(&db).await.expect_err("the migration refuses");

    let message = format!("{error:#}");
    assert!(
        message.contains("source_identifiers_key_with_id exists but is defined otherwise"),
        "{message}"
    );
    let (key_after, _) = primary_key(&db).await;
    assert_eq!(key_after, key_before, "the old key stays");
    let still_there: bool =
        sqlx::query_scalar("SELECT to_regclass('source_identifiers_key_with_id') IS NOT NULL")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(still_there, "the operator's index is not dropped");
}
