//! The SQL idminter sends, one function per statement. Batches go in as parallel arrays and come
//! back keyed by their position in the batch (`WITH ORDINALITY`), so no row is ever matched by
//! comparing strings in Rust. The benchmark's floor runs these same functions.

use std::collections::HashMap;

use sqlx::{PgExecutor, Row};

use crate::domain::{CanonicalId, SourceIdentifier};

/// A row to insert: an identifier and the ID it should get; `minted` is false for inheritors.
pub struct NewRow<'a> {
    pub identifier: &'a SourceIdentifier,
    pub canonical_id: &'a CanonicalId,
    pub minted: bool,
}

fn columns<'a>(ids: impl Iterator<Item = &'a SourceIdentifier>) -> [Vec<&'a str>; 3] {
    let mut cols = [Vec::new(), Vec::new(), Vec::new()];
    for id in ids {
        cols[0].push(id.identifier_type());
        cols[1].push(id.ontology_type());
        cols[2].push(id.value());
    }
    cols
}

/// Canonical IDs of the identifiers that have one, keyed by their index in `ids`.
///
/// # Errors
/// Any database error.
pub async fn lookup<'e>(
    db: impl PgExecutor<'e>,
    ids: &[SourceIdentifier],
) -> Result<HashMap<usize, CanonicalId>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let [types, ontologies, values] = columns(ids.iter());
    let rows = sqlx::query(
        "SELECT k.i, s.canonical_id \
         FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k(identifier_type, ontology_type, value, i) \
         JOIN source_identifiers s USING (identifier_type, ontology_type, value)",
    )
    .bind(types)
    .bind(ontologies)
    .bind(values)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|row| {
            let i: i64 = row.try_get(0)?;
            let id: String = row.try_get(1)?;
            // ORDINALITY counts from 1.
            Ok((i as usize - 1, CanonicalId::from_database(id)))
        })
        .collect()
}

/// Every (canonical ID, identifier) pair for the given IDs.
///
/// # Errors
/// Any database error.
pub async fn resolve<'e>(
    db: impl PgExecutor<'e>,
    ids: &[CanonicalId],
) -> Result<Vec<(CanonicalId, SourceIdentifier)>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = ids.iter().map(CanonicalId::as_str).collect();
    let rows = sqlx::query(
        "SELECT canonical_id, identifier_type, ontology_type, value FROM source_identifiers \
         WHERE canonical_id = ANY($1::text[]) \
         ORDER BY canonical_id, minted NULLS LAST, created_at, identifier_type, ontology_type, value",
    )
    .bind(ids)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok((
                CanonicalId::from_database(row.try_get(0)?),
                SourceIdentifier::from_database(row.try_get(1)?, row.try_get(2)?, row.try_get(3)?),
            ))
        })
        .collect()
}

/// Inserts the rows that do not conflict and returns the indexes (in `rows`) of those inserted.
/// A row is skipped when its identifier already has a row (another call got there first, possibly
/// after this transaction's snapshot) or when its freshly drawn ID is already taken.
///
/// # Errors
/// Any database error.
pub async fn insert<'e>(
    db: impl PgExecutor<'e>,
    rows: &[NewRow<'_>],
) -> Result<Vec<usize>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let [types, ontologies, values] = columns(rows.iter().map(|r| r.identifier));
    let ids: Vec<&str> = rows.iter().map(|r| r.canonical_id.as_str()).collect();
    let minted: Vec<Option<bool>> = rows.iter().map(|r| r.minted.then_some(true)).collect();
    // RETURNING sees only the table's columns, so the inserted keys are joined back to their
    // ordinals; the join is on the primary key's columns of rows this statement just wrote.
    let inserted = sqlx::query(
        "WITH input AS ( \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[]) \
                 WITH ORDINALITY AS r(identifier_type, ontology_type, value, canonical_id, minted, i) \
         ), inserted AS ( \
             INSERT INTO source_identifiers (identifier_type, ontology_type, value, canonical_id, minted) \
             SELECT identifier_type, ontology_type, value, canonical_id, minted FROM input \
             ON CONFLICT DO NOTHING \
             RETURNING identifier_type, ontology_type, value \
         ) \
         SELECT input.i FROM inserted JOIN input USING (identifier_type, ontology_type, value)",
    )
    .bind(types)
    .bind(ontologies)
    .bind(values)
    .bind(ids)
    .bind(minted)
    .fetch_all(db)
    .await?;
    inserted
        .into_iter()
        .map(|row| Ok(row.try_get::<i64, _>(0)? as usize - 1))
        .collect()
}
