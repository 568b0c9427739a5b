//! `idminter export` as a real process: every mapping, with `minted` and `created_at`, in an
//! order that makes `export | import` into an empty database and a second export byte-identical.

use std::io::Read;

use crate::helpers::*;
use crate::import::{Scratch, run_idminter};

/// A table as servers leave it: minted rows and inheritors, times with microseconds, and values
/// that need quoting or escaping in every format.
async fn populated() -> TestDatabase {
    let db = TestDatabase::migrated().await;
    db.execute(
        "INSERT INTO source_identifiers \
             (identifier_type, ontology_type, value, canonical_id, minted, created_at, created_by) VALUES \
         ('sierra-system-number', 'Work', 'b1000001', 'a2345678', true, '2024-10-07 09:15:00.000001+00', 'anonymous'), \
         ('folio-instance', 'Work', 'f-1', 'a2345678', NULL, '2025-01-01 00:00:00+00', 'pipeline'), \
         ('miro-image-number', 'Image', 'V0001, \"part\" 2', 'b2345678', true, '2024-10-07 09:15:00.5+00', 'anonymous'), \
         ('lc-names', 'Concept', 'back\\slash \u{e9}\u{65e5}', 'c2345678', true, '1999-12-31 23:59:59.999999+00', 'import'), \
         ('lc-subjects', 'Concept', 'sh 85', 'zzzzzzzz', true, now(), 'anonymous')",
    )
    .await;
    db
}

#[tokio::test]
async fn export_then_import_into_an_empty_database_then_export_again_gives_the_same_bytes() {
    let source = populated().await;
    for format in ["csv", "tsv", "jsonl"] {
        let first = run_idminter(&source, &["export", "--format", format], b"");
        assert_eq!(first.code, 0, "{format}: {}", first.stderr);
        assert_eq!(
            first.stdout.lines().count(),
            if format == "jsonl" { 5 } else { 6 }
        );

        let copy = TestDatabase::migrated().await;
        let imported = run_idminter(
            &copy,
            &["import", "--format", format, "-"],
            first.stdout.as_bytes(),
        );
        assert_eq!(
            imported.code, 0,
            "{format}: {}{}",
            imported.stdout, imported.stderr
        );
        assert_eq!(imported.count("imported"), 5, "{format}");
        let second = run_idminter(&copy, &["export", "--format", format], b"");

        assert_eq!(
            second.stdout, first.stdout,
            "{format}: the second export differs"
        );
        assert_eq!(
            table(&copy).await,
            table(&source).await,
            "{format}: minted rows and times came across exactly"
        );
    }
}

#[tokio::test]
async fn export_writes_a_header_and_rfc3339_times_in_utc_with_microseconds() {
    let source = populated().await;

    let run = run_idminter(&source, &["export"], b"");

    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "canonical_id,identifier_type,ontology_type,value,minted,created_at"
    );
    assert!(
        lines.contains(
            &"a2345678,sierra-system-number,Work,b1000001,true,2024-10-07T09:15:00.000001Z"
        ),
        "{}",
        run.stdout
    );
    assert!(
        lines.contains(&"a2345678,folio-instance,Work,f-1,false,2025-01-01T00:00:00.000000Z"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("exported 5 rows"), "{}", run.stderr);
}

#[tokio::test]
async fn export_to_a_gz_file_compresses_it_and_import_reads_it_back() {
    let source = populated().await;
    let dir = Scratch::new();
    let path = dir.path("mappings.csv.gz");

    let run = run_idminter(&source, &["export", "--output", &path], b"");

    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text.lines().count(), 6);
    let copy = TestDatabase::migrated().await;
    let imported = run_idminter(&copy, &["import", &path], b"");
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    assert_eq!(copy.count().await, 5);
}

/// Every mapping with its minted flag and creation time, in key order.
async fn table(db: &TestDatabase) -> Vec<(String, String, String, String, Option<bool>, String)> {
    sqlx::query_as(
        "SELECT identifier_type, ontology_type, value, canonical_id, minted, created_at::text \
         FROM source_identifiers ORDER BY 1, 2, 3",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}
