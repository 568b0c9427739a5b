//! Imports that are killed, and imports that race live servers: real `idminter` processes on a
//! real database. The points of interruption are made observable (a row lock the import must
//! wait on, a COPY waiting for more input), never guessed with a clock.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::process::Stdio;

use idminter::pb::id_minter_client::IdMinterClient;
use idminter::pb::{self};

use crate::helpers::*;
use crate::import::{Scratch, idminter_command, import, mappings, read};

const LETTERS: &[u8] = b"abcdefghjkmnpqrstuvwxyz";
const SYMBOLS: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// A distinct canonical ID for each `k`, scattered like drawn ones.
fn canonical(k: u64) -> String {
    let mut x = (k * 2_654_435_761 + 98_765) % (23 * 31u64.pow(7));
    let mut id = vec![0u8; 8];
    for slot in id[1..].iter_mut().rev() {
        *slot = SYMBOLS[(x % 31) as usize];
        x /= 31;
    }
    id[0] = LETTERS[x as usize];
    String::from_utf8(id).unwrap()
}

/// A Wellcome-shaped file of `n` rows (no minted or created_at columns); every fifth identifier
/// inherits the ID of the one before it.
fn wellcome_file(n: u64) -> String {
    let mut text = String::from("CanonicalId,SourceSystem,OntologyType,SourceId\n");
    for k in 0..n {
        let id = if k % 5 == 4 {
            canonical(k - 1)
        } else {
            canonical(k)
        };
        text.push_str(&format!("{id},sierra-system-number,Work,b{k:07}\n"));
    }
    text
}

type Mapping = (String, String, String, String, Option<bool>, String);

async fn uninterrupted(file: &str) -> Vec<Mapping> {
    let db = TestDatabase::migrated().await;
    let run = import(&db, &[file, "--chunk-rows", "100"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    mappings(&db).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_between_chunks_and_run_again_ends_as_an_uninterrupted_one() {
    let dir = Scratch::new();
    let rows = 2_000;
    let file = dir.file("identifiers.csv", wellcome_file(rows));
    let expected = uninterrupted(&file).await;
    // Chunks follow the input order: the import is killed while it waits for a lock on an
    // identifier of a late chunk, then of a middle one. `--online`: the table is empty, and
    // without it the import would load it in one transaction (the next test).
    for blocked in [rows * 3 / 4 + 17, rows / 2 - 23] {
        let db = TestDatabase::migrated().await;
        let held = hold_uncommitted_work(&db, &format!("b{blocked:07}"), "zzzzzzzz").await;
        let mut child =
            idminter_command(&db, &["import", &file, "--chunk-rows", "100", "--online"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();

        wait_until_a_backend_waits_on_a_lock(&db).await;
        let committed = db.count().await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        held.rollback().await.unwrap();

        assert!(
            0 < committed && committed < rows as i64,
            "killed after some chunks, not all: {committed} of {rows} committed"
        );
        let again = import(&db, &[&file, "--chunk-rows", "100"]);
        assert_eq!(again.code, 0, "{}", again.stderr);
        assert_eq!(again.count("already present"), committed as u64);
        assert_eq!(again.count("imported"), rows - committed as u64);
        assert_eq!(mappings(&db).await, expected, "blocked on b{blocked:07}");
    }
}

/// The definitions of every index and constraint of `source_identifiers`.
async fn schema(db: &TestDatabase) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'source_identifiers' \
         UNION ALL \
         SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE conrelid = 'source_identifiers'::regclass ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

/// A statement trigger that makes every INSERT into `source_identifiers` wait for advisory lock
/// 4242 (an interruption point the test controls), or fail when `fail` is set.
async fn gate_inserts(db: &TestDatabase, fail: bool) {
    let body = if fail {
        "RAISE EXCEPTION 'the test refuses this insert'"
    } else {
        "PERFORM pg_advisory_xact_lock_shared(4242)"
    };
    db.execute(&format!(
        "CREATE FUNCTION test_gate() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN {body}; RETURN NULL; END $$; \
         CREATE TRIGGER test_gate BEFORE INSERT ON source_identifiers \
         FOR EACH STATEMENT EXECUTE FUNCTION test_gate()"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_load_killed_before_it_commits_leaves_the_table_empty_with_every_constraint() {
    let dir = Scratch::new();
    let file = dir.file("identifiers.csv", wellcome_file(2_000));
    let expected = uninterrupted(&file).await;
    let db = TestDatabase::migrated().await;
    let constraints = schema(&db).await;
    gate_inserts(&db, false).await;
    let mut gate = db.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut *gate)
        .await
        .unwrap();
    let mut child = idminter_command(&db, &["import", &file])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // The import waits inside its INSERT: the table is locked, its indexes dropped.
    wait_until_a_backend_waits_on_a_lock(&db).await;
    let (query, locked): (String, bool) = sqlx::query_as(
        "SELECT a.query, EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.granted \
             AND l.relation = 'source_identifiers'::regclass AND l.mode = 'AccessExclusiveLock') \
         FROM pg_stat_activity a WHERE a.datname = current_database() AND a.wait_event_type = 'Lock'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        query.starts_with("INSERT INTO source_identifiers"),
        "{query}"
    );
    assert!(locked, "the first load holds the table");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    sqlx::query("SELECT pg_advisory_unlock(4242)")
        .execute(&mut *gate)
        .await
        .unwrap();
    drop(gate);

    // Waits for the table's lock: the orphaned transaction is rolled back, never committed.
    assert_eq!(db.count().await, 0, "nothing committed");
    assert_eq!(
        schema(&db).await,
        constraints,
        "every index and constraint is back"
    );
    db.execute("DROP TRIGGER test_gate ON source_identifiers")
        .await;
    let again = import(&db, &[&file]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.count("imported"), 2_000);
    assert_eq!(mappings(&db).await, expected);
}

#[tokio::test]
async fn a_first_load_that_fails_rolls_back_to_the_empty_table_with_every_constraint() {
    let dir = Scratch::new();
    let file = dir.file("identifiers.csv", wellcome_file(300));
    let db = TestDatabase::migrated().await;
    let constraints = schema(&db).await;
    gate_inserts(&db, true).await;

    let run = import(&db, &[&file]);

    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("the test refuses this insert"),
        "{}",
        run.stderr
    );
    assert_eq!(db.count().await, 0);
    assert_eq!(schema(&db).await, constraints);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_written_to_before_the_first_load_locks_it_is_written_in_chunks() {
    let dir = Scratch::new();
    let file = dir.file("identifiers.csv", wellcome_file(500));
    let db = TestDatabase::migrated().await;
    // Uncommitted: the import finds the table empty, plans, then waits for the lock behind it.
    let held = hold_uncommitted_work(&db, "b0000010", "zzzzzzzz").await;
    let child = idminter_command(&db, &["import", &file])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_a_backend_waits_on_a_lock(&db).await;
    held.commit().await.unwrap();

    let output = child.wait_with_output().unwrap();
    let run = crate::import::Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("no longer empty"),
        "took the chunked path: {}",
        run.stderr
    );
    assert_eq!(run.count("conflicts"), 1, "b0000010 has another ID");
    assert_eq!(run.count("imported"), 499);
    assert_eq!(db.count().await, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_while_reading_writes_nothing_and_runs_again_from_the_start() {
    let dir = Scratch::new();
    let text = wellcome_file(500);
    let file = dir.file("identifiers.csv", &text);
    let expected = uninterrupted(&file).await;
    let db = TestDatabase::migrated().await;
    let mut child = idminter_command(&db, &["import", "-", "--chunk-rows", "100"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&text.as_bytes()[..text.len() / 2]).unwrap();
    stdin.flush().unwrap();

    eventually("the import streams into its staging table", || async {
        let copying: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND query LIKE 'COPY import_staging%' AND state = 'active'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        copying > 0
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);

    assert_eq!(
        db.count().await,
        0,
        "nothing is written before the input is read"
    );
    let again = import(&db, &[&file, "--chunk-rows", "100"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(mappings(&db).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_minting_during_an_import_never_gives_an_identifier_a_second_id() {
    let db = TestDatabase::migrated().await;
    let server = ServerProcess::start(&db.url(), &[]);
    let channel = server.channel().await;
    wait_for_health(
        &tonic_health::pb::health_client::HealthClient::new(channel.clone()),
        ServingStatus::Serving,
    )
    .await;
    let mut client = IdMinterClient::new(channel);
    let rows = 3_000u64;
    let dir = Scratch::new();
    let mut text = String::from("canonical_id,identifier_type,ontology_type,value\n");
    for k in 0..rows {
        text.push_str(&format!(
            "{},sierra-system-number,Work,live-{k}\n",
            canonical(k)
        ));
    }
    let file = dir.file("live.csv", text);
    let rejects = dir.path("rejects.csv");
    let mint = |values: Vec<u64>| pb::MintIdsRequest {
        items: values
            .into_iter()
            .map(|k| item(work(&format!("live-{k}"))))
            .collect(),
    };
    let mut answers: HashMap<String, HashSet<String>> = HashMap::new();
    let mut record = |response: pb::MintIdsResponse| {
        for m in response.ids {
            answers
                .entry(m.source_identifier.unwrap().value)
                .or_default()
                .insert(m.canonical_id);
        }
    };
    // The server gets to the first hundred before the import starts; then, while the import
    // commits its chunks, they race over every third identifier of the rest.
    record(
        client
            .mint_ids(mint((0..100).collect()))
            .await
            .unwrap()
            .into_inner(),
    );
    let mut child = idminter_command(
        &db,
        &[
            "import",
            &file,
            "--chunk-rows",
            "100",
            "--rejects",
            &rejects,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let contested: Vec<u64> = (100..rows).step_by(3).collect();
    // Race the chunks: start once the import has committed its first one.
    eventually("the import commits a chunk", || async {
        db.count().await > 100
    })
    .await;
    let mut round = 0;
    while child.try_wait().unwrap().is_none() {
        let mut batch: Vec<u64> = contested
            .iter()
            .copied()
            .skip(round * 7 % 50)
            .step_by(7)
            .collect();
        if round % 2 == 1 {
            batch.reverse();
        }
        let response = client
            .mint_ids(mint(batch))
            .await
            .expect("the server keeps answering");
        record(response.into_inner());
        round += 1;
    }
    let output = child.wait_with_output().unwrap();
    record(
        client
            .mint_ids(mint(contested.clone()))
            .await
            .unwrap()
            .into_inner(),
    );
    record(
        client
            .mint_ids(mint((0..100).collect()))
            .await
            .unwrap()
            .into_inner(),
    );

    eprintln!("{round} rounds of minting raced the import");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let final_ids: HashMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT value, canonical_id FROM source_identifiers")
            .fetch_all(&db.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    for (value, seen) in &answers {
        assert_eq!(
            seen.iter().collect::<Vec<_>>(),
            vec![&final_ids[value]],
            "{value}: one ID, whoever wrote it"
        );
    }
    let lost: Vec<u64> = (0..rows)
        .filter(|k| final_ids[&format!("live-{k}")] != canonical(*k))
        .collect();
    eprintln!("{} identifiers went to the server", lost.len());
    assert!(lost.iter().all(|k| *k < 100 || contested.contains(k)));
    assert!(
        (0..100).all(|k| lost.contains(&k)),
        "minted before the import: conflicts"
    );
    let run = crate::import::Run {
        code: output.status.code().unwrap_or(-1),
        stdout,
        stderr,
    };
    assert_eq!(
        run.code, 1,
        "conflicts make the exit code 1: {}",
        run.stderr
    );
    assert_eq!(run.count("conflicts"), lost.len() as u64);
    assert_eq!(
        run.count("imported") + run.count("already present") + run.count("conflicts"),
        rows
    );
    let reported = read(&rejects)
        .lines()
        .filter(|l| l.contains(",conflict,"))
        .count();
    assert_eq!(reported, lost.len(), "every loser is in --rejects");
    drop(server);
}
