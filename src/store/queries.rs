//! The SQL idminter sends, one function per statement. Batches go in as parallel arrays and come
//! back keyed by their position in the batch (`WITH ORDINALITY`), so no row is ever matched by
//! comparing strings in Rust; batch answers come back as one array in one row. The benchmark's
//! floor (`benches/workloads`) runs these same functions.

use sqlx::{PgExecutor, Row};

use crate::domain::{CanonicalId, SourceIdentifier};

/// A row to insert: an identifier and the ID it should get; `minted` is false for inheritors.
pub struct NewRow<'a> {
    pub identifier: &'a SourceIdentifier,
    pub canonical_id: &'a CanonicalId,
    pub minted: bool,
}

fn columns<'a>(ids: impl Iterator<Item = &'a SourceIdentifier>) -> [Vec<&'a str>; 3] {
    let (low, _) = ids.size_hint();
    let mut cols = [
        Vec::with_capacity(low),
        Vec::with_capacity(low),
        Vec::with_capacity(low),
    ];
    for id in ids {
        cols[0].push(id.identifier_type());
        cols[1].push(id.ontology_type());
        cols[2].push(id.value());
    }
    cols
}

/// The canonical ID of each identifier, in order; `None` where it has none.
///
/// The answer is one row holding one array, aligned with the input: a batch costs one message
/// to decode rather than one row, and one trip through the driver's row stream, per identifier.
/// The planner joins with a nested loop over the primary key (one index probe per identifier,
/// whatever the table's size); a hash join would read the whole table.
///
/// # Errors
/// Any database error.
pub async fn lookup<'e, 'a>(
    db: impl PgExecutor<'e>,
    ids: impl IntoIterator<Item = &'a SourceIdentifier>,
) -> Result<Vec<Option<CanonicalId>>, sqlx::Error> {
    let [types, ontologies, values] = columns(ids.into_iter());
    if types.is_empty() {
        return Ok(Vec::new());
    }
    let n = types.len();
    let found: Option<Vec<Option<String>>> = sqlx::query_scalar(
        "SELECT array_agg(s.canonical_id ORDER BY k.i) \
         FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k(identifier_type, ontology_type, value, i) \
         LEFT JOIN source_identifiers s USING (identifier_type, ontology_type, value)",
    )
    .bind(types)
    .bind(ontologies)
    .bind(values)
    .fetch_one(db)
    .await?;
    let found = found.unwrap_or_default();
    if found.len() != n {
        return Err(sqlx::Error::Protocol(format!(
            "lookup of {n} identifiers answered {}",
            found.len()
        )));
    }
    Ok(found
        .into_iter()
        .map(|id| id.map(CanonicalId::from_database))
        .collect())
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

/// Inserts the rows that do not conflict, recording `created_by` as their provenance (a principal,
/// or `import`), and tells, for each row in `rows`, whether it was inserted.
/// A row is skipped when its identifier already has a row (another call got there first, possibly
/// after this transaction's snapshot) or when its freshly drawn ID is already taken.
///
/// # Errors
/// Any database error.
pub async fn insert<'e>(
    db: impl PgExecutor<'e>,
    rows: &[NewRow<'_>],
    created_by: &str,
) -> Result<Vec<bool>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // Rows go in in primary-key order (byte order, as the "C" collation sorts). An insert waits
    // for a concurrent transaction that wrote the same identifier first; if two calls wrote
    // overlapping batches in different orders, each could be waiting for the other (a deadlock,
    // which PostgreSQL breaks by failing one call after a second). In one order, the first to
    // reach an identifier goes on and the other waits, then skips it.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_unstable_by(|&a, &b| rows[a].identifier.cmp(rows[b].identifier));
    let sorted = || order.iter().map(|&k| &rows[k]);
    let [types, ontologies, values] = columns(sorted().map(|r| r.identifier));
    let ids: Vec<&str> = sorted().map(|r| r.canonical_id.as_str()).collect();
    let minted: Vec<Option<bool>> = sorted().map(|r| r.minted.then_some(true)).collect();
    // RETURNING sees only the table's columns, so the inserted keys are joined back to their
    // ordinals; the join is on the primary key's columns of rows this statement just wrote. The
    // ordinals come back as one array, in one row.
    let inserted: Option<Vec<i64>> = sqlx::query_scalar(
        "WITH input AS ( \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[]) \
                 WITH ORDINALITY AS r(identifier_type, ontology_type, value, canonical_id, minted, i) \
         ), inserted AS ( \
             INSERT INTO source_identifiers (identifier_type, ontology_type, value, canonical_id, minted, created_by) \
             SELECT identifier_type, ontology_type, value, canonical_id, minted, $6::text FROM input \
             ON CONFLICT DO NOTHING \
             RETURNING identifier_type, ontology_type, value \
         ) \
         SELECT array_agg(input.i) FROM inserted JOIN input USING (identifier_type, ontology_type, value)",
    )
    .bind(types)
    .bind(ontologies)
    .bind(values)
    .bind(ids)
    .bind(minted)
    .bind(created_by)
    .fetch_one(db)
    .await?;
    // ORDINALITY counts from 1, in sorted order.
    let mut was_inserted = vec![false; rows.len()];
    for i in inserted.unwrap_or_default() {
        match usize::try_from(i) {
            Ok(i) if (1..=rows.len()).contains(&i) => was_inserted[order[i - 1]] = true,
            _ => {
                return Err(sqlx::Error::Protocol(format!(
                    "insert answered ordinal {i} for {} rows",
                    rows.len()
                )));
            }
        }
    }
    Ok(was_inserted)
}
