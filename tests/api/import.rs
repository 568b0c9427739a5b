//! `idminter import` as a real process against a real database: formats, validation with file
//! and line, the classification, the minted row, aliases, dry runs, the schema guard, exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::helpers::*;

// === harness ===

/// A scratch directory for input and rejects files, removed afterwards.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("idminter-import-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Writes `name` with `content` and returns its path.
    pub fn file(&self, name: &str, content: impl AsRef<[u8]>) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path.to_string_lossy().into_owned()
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a finished `idminter` process said.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The count the summary line gives for `what` (`imported`, `already present`, ...).
    pub fn count(&self, what: &str) -> u64 {
        let line = self.stdout.lines().last().unwrap_or_default();
        let at = line
            .find(&format!(" {what}"))
            .unwrap_or_else(|| panic!("no `{what}` in summary {line:?}; stderr: {}", self.stderr));
        let digits: String = line[..at]
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        digits.parse().unwrap()
    }
}

/// `idminter ARGS` against `db`, with `stdin` fed in, to completion.
pub fn run_idminter(db: &TestDatabase, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = idminter_command(db, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn idminter");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    Run::from(output)
}

pub fn idminter_command(db: &TestDatabase, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_idminter"));
    command
        .args(args)
        .env("DATABASE_URL", db.url())
        .env("RUST_LOG", "warn")
        .env_remove("IDMINTER_ONTOLOGY_ALIASES");
    command
}

pub fn import(db: &TestDatabase, args: &[&str]) -> Run {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    run_idminter(db, &all, b"")
}

/// Every mapping: (identifier_type, ontology_type, value, canonical_id, minted, created_by), in
/// key order.
pub async fn mappings(
    db: &TestDatabase,
) -> Vec<(String, String, String, String, Option<bool>, String)> {
    sqlx::query_as(
        "SELECT identifier_type, ontology_type, value, canonical_id, minted, created_by \
         FROM source_identifiers ORDER BY identifier_type, ontology_type, value",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

/// One mapping as [`mappings`] lists it.
pub fn mapping(
    t: &str,
    o: &str,
    v: &str,
    id: &str,
    minted: bool,
) -> (String, String, String, String, Option<bool>, String) {
    (
        t.to_owned(),
        o.to_owned(),
        v.to_owned(),
        id.to_owned(),
        minted.then_some(true),
        "import".to_owned(),
    )
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(path)).unwrap()
}

// === formats ===

#[tokio::test]
async fn a_wellcome_table_export_imports_without_editing_and_the_first_row_of_an_id_is_minted() {
    let db = TestDatabase::migrated().await;
    let dir = Scratch::new();
    // The Wellcome table's own column names; two identifiers share an ID (a Sierra -> FOLIO
    // style predecessor): the first in input order becomes the minted row.
    let file = dir.file(
        "identifiers.csv",
        "CanonicalId,SourceSystem,OntologyType,SourceId\n\
         a2345678,sierra-system-number,Work,b1000001\n\
         a2345678,folio-instance,Work,f-1\n\
         b2345678,miro-image-number,Image,\"V0001, part 2\"\n",
    );

    let run = import(&db, &[&file]);

    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.count("imported"), 3, "{}", run.stdout);
    assert_eq!(
        mappings(&db).await,
        vec![
            mapping("folio-instance", "Work", "f-1", "a2345678", false),
            mapping(
                "miro-image-number",
                "Image",
                "V0001, part 2",
                "b2345678",
                true
            ),
            mapping("sierra-system-number", "Work", "b1000001", "a2345678", true),
        ]
    );
}

#[tokio::test]
async fn csv_tsv_jsonl_gzip_and_stdin_all_read_the_same_rows() {
    let dir = Scratch::new();
    let csv = "canonical_id,identifier_type,ontology_type,value\n\
               a2345678,t,Work,\"comma, \"\"quote\"\"\"\n\
               b2345678,t,Work,back\\slash\n";
    // mysqldump --tab / INTO OUTFILE: no header (so --columns), backslash escapes.
    let tsv = "a2345678\tt\tWork\tcomma, \"quote\"\nb2345678\tt\tWork\tback\\\\slash\n";
    let jsonl = "{\"canonical_id\":\"a2345678\",\"identifier_type\":\"t\",\"ontology_type\":\"Work\",\"value\":\"comma, \\\"quote\\\"\"}\n\
                 {\"CanonicalId\":\"b2345678\",\"SourceSystem\":\"t\",\"OntologyType\":\"Work\",\"SourceId\":\"back\\\\slash\"}\n";
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(jsonl.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let cases: Vec<(&str, Vec<String>, Vec<u8>)> = vec![
        ("csv", vec![dir.file("m.csv", csv)], vec![]),
        (
            "tsv with --columns",
            vec![
                dir.file("identifiers.txt", tsv),
                "--columns".into(),
                "CanonicalId,SourceSystem,OntologyType,SourceId".into(),
            ],
            vec![],
        ),
        ("jsonl", vec![dir.file("m.jsonl", jsonl)], vec![]),
        ("jsonl.gz", vec![dir.file("m.jsonl.gz", &gz)], vec![]),
        (
            "gzip on stdin",
            vec!["-".into(), "--format".into(), "jsonl".into()],
            gz.clone(),
        ),
        ("csv on stdin", vec![], csv.as_bytes().to_vec()),
    ];
    for (case, args, stdin) in cases {
        let db = TestDatabase::migrated().await;
        let mut all = vec!["import"];
        all.extend(args.iter().map(String::as_str));
        let run = run_idminter(&db, &all, &stdin);
        assert_eq!(run.code, 0, "{case}: {}", run.stderr);
        assert_eq!(
            mappings(&db).await,
            vec![
                mapping("t", "Work", "back\\slash", "b2345678", true),
                mapping("t", "Work", "comma, \"quote\"", "a2345678", true),
            ],
            "{case}"
        );
    }
}

// === validation and classification ===

#[tokio::test]
async fn invalid_rows_are_rejected_with_file_line_reason_and_raw_row_and_the_rest_imported() {
    let db = TestDatabase::migrated().await;
    let dir = Scratch::new();
    let long = "x".repeat(256);
    let file = dir.file(
        "m.csv",
        format!(
            "canonical_id,identifier_type,ontology_type,value\n\
             a2345678,t,Work,ok\n\
             a234567o,t,Work,misread-letter\n\
             b2345678,t,Work,\n\
             c2345678,t,Work,{long}\n\
             d2345678,t,Work,\"bell\u{7}\"\n\
             e2345678,t,Work\n"
        ),
    );
    let rejects = dir.path("rejects.csv");

    let run = import(&db, &[&file, "--rejects", &rejects]);

    assert_eq!(run.code, 1, "rejected rows make the exit code 1");
    assert_eq!(run.count("imported"), 1);
    assert_eq!(run.count("rejected"), 5);
    assert_eq!(db.count().await, 1);
    let report = read(&rejects);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "file,line,outcome,reason,row");
    for (k, (line, reason)) in [
        (3, "canonical_id: must be 8 characters"),
        (4, "value: must not be empty"),
        (5, "value: must be at most 255 bytes (is 256)"),
        (
            6,
            "value: must not contain control characters (found U+0007)",
        ),
        (7, "the row has 3 fields, the header 4"),
    ]
    .into_iter()
    .enumerate()
    {
        let row = lines[k + 1];
        assert!(
            row.starts_with(&format!("{file},{line},rejected,")) && row.contains(reason),
            "line {line}: {row}"
        );
    }
    assert!(
        lines[1].ends_with(",\"a234567o,t,Work,misread-letter\""),
        "{}",
        lines[1]
    );
    assert!(
        run.stderr.contains(&format!("{file}:3: rejected")),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn conflicts_inside_the_file_and_against_the_database_are_reported_and_never_written() {
    let db = TestDatabase::migrated().await;
    db.execute(
        "INSERT INTO source_identifiers (identifier_type, ontology_type, value, canonical_id, minted) VALUES \
         ('t', 'Work', 'in-db', 'z2345678', true), ('t', 'Work', 'owner', 'y2345678', true)",
    )
    .await;
    let dir = Scratch::new();
    let file = dir.file(
        "m.csv",
        "canonical_id,identifier_type,ontology_type,value,minted\n\
         a2345678,t,Work,twice,\n\
         b2345678,t,Work,twice,\n\
         c2345678,t,Work,first-minted,true\n\
         c2345678,t,Work,second-minted,true\n\
         c2345678,t,Work,inheritor,false\n\
         d2345678,t,Work,in-db,\n\
         z2345678,t,Work,in-db,\n\
         y2345678,t,Work,stranger,\n",
    );
    let rejects = dir.path("rejects.csv");

    let run = import(&db, &[&file, "--rejects", &rejects]);

    assert_eq!(run.code, 1);
    assert_eq!(run.count("imported"), 3, "{}", run.stdout);
    assert_eq!(run.count("already present"), 1, "in-db with its own ID");
    assert_eq!(run.count("conflicts"), 4);
    let report = read(&rejects);
    for (line, reason) in [
        (
            3,
            "the identifier has canonical ID a2345678 earlier in the input",
        ),
        (5, "a second minted row: the canonical ID's minted row is"),
        (
            7,
            "the identifier already has canonical ID z2345678 in the database",
        ),
        (
            9,
            "the canonical ID already belongs to other identifiers in the database",
        ),
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&format!("{file},{line},conflict,")) && l.contains(reason)),
            "line {line} ({reason}) missing from:\n{report}"
        );
    }
    let stored = mappings(&db).await;
    let get = |v: &str| stored.iter().find(|m| m.2 == v).map(|m| (m.3.clone(), m.4));
    assert_eq!(
        get("twice"),
        Some(("a2345678".into(), Some(true))),
        "the first ID wins"
    );
    assert_eq!(get("first-minted"), Some(("c2345678".into(), Some(true))));
    assert_eq!(get("second-minted"), None, "never half-imported");
    assert_eq!(get("inheritor"), Some(("c2345678".into(), None)));
    assert_eq!(
        get("in-db"),
        Some(("z2345678".into(), Some(true))),
        "never overwritten"
    );
    assert_eq!(get("stranger"), None);
}

#[tokio::test]
async fn running_the_same_import_again_finds_every_row_already_present() {
    let db = TestDatabase::migrated().await;
    let dir = Scratch::new();
    let file = dir.file(
        "m.csv",
        "canonical_id,identifier_type,ontology_type,value\n\
         a2345678,t,Work,1\na2345678,t,Work,2\nb2345678,t,Work,3\n",
    );
    assert_eq!(import(&db, &[&file]).code, 0);
    let before = mappings(&db).await;

    let again = import(&db, &[&file]);

    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.count("imported"), 0);
    assert_eq!(again.count("already present"), 3);
    assert_eq!(mappings(&db).await, before);
}

#[tokio::test]
async fn the_minted_row_is_the_marked_one_else_the_earliest_created_at_else_the_first() {
    let db = TestDatabase::migrated().await;
    let dir = Scratch::new();
    let file = dir.file(
        "m.jsonl",
        [
            r#"{"canonical_id":"a2345678","identifier_type":"t","ontology_type":"Work","value":"a1"}"#,
            r#"{"canonical_id":"a2345678","identifier_type":"t","ontology_type":"Work","value":"a2","minted":true}"#,
            r#"{"canonical_id":"b2345678","identifier_type":"t","ontology_type":"Work","value":"b1","created_at":"2024-01-02T00:00:00Z"}"#,
            r#"{"canonical_id":"b2345678","identifier_type":"t","ontology_type":"Work","value":"b2","created_at":"2024-01-01T23:00:00-02:00"}"#,
            r#"{"canonical_id":"b2345678","identifier_type":"t","ontology_type":"Work","value":"b3","created_at":"2024-01-01T12:00:00.123456Z"}"#,
            r#"{"canonical_id":"c2345678","identifier_type":"t","ontology_type":"Work","value":"c1"}"#,
            r#"{"canonical_id":"c2345678","identifier_type":"t","ontology_type":"Work","value":"c2"}"#,
        ]
        .join("\n"),
    );

    let run = import(&db, &[&file]);

    assert_eq!(run.code, 0, "{}", run.stderr);
    let minted: Vec<(String, Option<bool>)> = mappings(&db)
        .await
        .into_iter()
        .map(|m| (m.2, m.4))
        .collect();
    assert_eq!(
        minted,
        [
            ("a1", None),
            ("a2", Some(true)),
            ("b1", None),
            ("b2", None),
            ("b3", Some(true)),
            ("c1", Some(true)),
            ("c2", None)
        ]
        .map(|(v, m)| (v.to_owned(), m))
    );
    let created: String = sqlx::query_scalar(
        "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') \
         FROM source_identifiers WHERE value = 'b3'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        created, "2024-01-01 12:00:00.123456",
        "created_at from the file"
    );
}

#[tokio::test]
async fn ontology_aliases_rewrite_rows_as_serve_rewrites_requests() {
    let db = TestDatabase::migrated().await;
    let dir = Scratch::new();
    let file = dir.file(
        "m.csv",
        "canonical_id,identifier_type,ontology_type,value\n\
         a2345678,lc-names,Person,n1\n\
         a2345678,lc-names,Concept,n1\n",
    );

    let run = import(&db, &[&file, "--ontology-alias", "Person=Concept"]);

    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.count("imported"), 1);
    assert_eq!(
        run.count("already present"),
        1,
        "the same identifier once aliased"
    );
    assert_eq!(
        mappings(&db).await,
        vec![mapping("lc-names", "Concept", "n1", "a2345678", true)]
    );
}

#[tokio::test]
async fn a_dry_run_classifies_every_row_and_writes_nothing() {
    let db = TestDatabase::migrated().await;
    let dir = Scratch::new();
    let file = dir.file(
        "m.csv",
        "canonical_id,identifier_type,ontology_type,value\n\
         a2345678,t,Work,1\nb2345678,t,Work,1\nbad,t,Work,2\n",
    );
    let rejects = dir.path("rejects.csv");

    let run = import(&db, &[&file, "--dry-run", "--rejects", &rejects]);

    assert_eq!(run.code, 1);
    assert!(run.stdout.starts_with("dry run: "), "{}", run.stdout);
    assert_eq!(run.count("to import"), 1);
    assert_eq!(run.count("conflicts"), 1);
    assert_eq!(run.count("rejected"), 1);
    assert_eq!(db.count().await, 0, "a dry run writes nothing");
    assert_eq!(read(&rejects).lines().count(), 3);
}

// === the guard and usage ===

#[tokio::test]
async fn import_and_export_refuse_an_unready_schema_with_the_guards_diagnosis() {
    let db = TestDatabase::create().await;
    let dir = Scratch::new();
    let file = dir.file(
        "m.csv",
        "canonical_id,identifier_type,ontology_type,value\n",
    );

    let run = import(&db, &[&file]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("database is empty: run `idminter migrate`"),
        "{}",
        run.stderr
    );
    let export = run_idminter(&db, &["export"], b"");
    assert_eq!(export.code, 1);
    assert!(
        export.stderr.contains("database is empty"),
        "{}",
        export.stderr
    );
}

#[tokio::test]
async fn usage_errors_exit_2_and_write_nothing() {
    let db = TestDatabase::migrated().await;
    let dir = Scratch::new();
    let unknown = dir.file("m.xlsx", "whatever");
    let headless = dir.file("m.csv", "a2345678,t,Work,1\n");
    for (case, args) in [
        ("unknown extension", vec!["import", unknown.as_str()]),
        ("no usable header", vec!["import", headless.as_str()]),
        (
            "bad format flag",
            vec!["import", "--format", "xml", headless.as_str()],
        ),
        (
            "conflicting aliases",
            vec![
                "import",
                "--ontology-alias",
                "Person=Concept",
                "--ontology-alias",
                "Person=Agent",
                headless.as_str(),
            ],
        ),
    ] {
        let run = run_idminter(&db, &args, b"");
        assert_eq!(run.code, 2, "{case}: {}", run.stderr);
    }
    assert_eq!(db.count().await, 0);
}
