//! The schema guard: before serving, compare the database with what this binary expects, and say
//! in one line what is wrong and how to fix it. Written for the October 2024 incident, where a
//! migration library's new default history-table name made a healthy-looking deploy fail every
//! message for days.
//!
//! We compare the applied migrations with the embedded ones ourselves rather than relying on
//! refinery's errors, which call a never-applied old file "missing from the filesystem".

use std::fmt;

use refinery::Migration;
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::migrations;

/// The tables our migrations create; any of them present means "this database is ours".
pub const OUR_TABLES: &[&str] = &[
    "source_identifiers",
    "canonical_id_states",
    "canonical_id_events",
    "canonical_id_states_generation",
];

/// What the guard found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// Every embedded migration is applied unchanged. `newer` lists applied migrations this binary
    /// does not know, of higher versions: a newer release ran; we serve, with a warning.
    Ready { newer: Vec<String> },
    /// Neither the history table nor our tables exist.
    Empty,
    /// The history table exists; these embedded migrations are not applied yet.
    Pending { pending: Vec<String> },
    /// An applied migration differs from this binary's (name or checksum), or an unknown one sits
    /// among ours: the schema is not what this binary was built for.
    Changed { problems: Vec<String> },
    /// Our tables exist but the history table does not: never migrate, never create it.
    HistoryMissing {
        expected: String,
        ours: Vec<String>,
        history_like: Vec<String>,
    },
}

impl SchemaState {
    /// True when the service may serve.
    pub fn is_ready(&self) -> bool {
        matches!(self, SchemaState::Ready { .. })
    }

    /// True when `--migrate` may act: the database is empty or only has pending migrations.
    pub fn is_migratable(&self) -> bool {
        matches!(self, SchemaState::Empty | SchemaState::Pending { .. })
    }
}

impl fmt::Display for SchemaState {
    /// The diagnosis: one line naming what was found and what to do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaState::Ready { newer } if newer.is_empty() => f.write_str("schema ready"),
            SchemaState::Ready { newer } => write!(
                f,
                "schema ready; the database also has {} migration(s) this release does not know ({}): a newer release migrated it",
                newer.len(),
                newer.join(", ")
            ),
            SchemaState::Empty => f.write_str("database is empty: run `idminter migrate`"),
            SchemaState::Pending { pending } => write!(
                f,
                "{} pending migrations ({}): run `idminter migrate`",
                pending.len(),
                pending.join(", ")
            ),
            SchemaState::Changed { problems } => write!(
                f,
                "applied migrations differ from this release's: {}; the schema was changed outside this release: deploy the release that applied them, or restore the database",
                problems.join("; ")
            ),
            SchemaState::HistoryMissing {
                expected,
                ours,
                history_like,
            } => {
                write!(
                    f,
                    "migration history table `{expected}` not found, but idminter's tables are present ({}); ",
                    ours.join(", ")
                )?;
                if history_like.is_empty() {
                    f.write_str("no other history-like table found; ")?;
                } else {
                    write!(
                        f,
                        "history-like tables found: {}; ",
                        history_like.join(", ")
                    )?;
                }
                f.write_str("refusing to migrate: point --history-table (IDMINTER_HISTORY_TABLE) at the table that records idminter's migrations, or adopt the schema with `idminter migrate --baseline`")
            }
        }
    }
}

/// Inspects the database for the guard.
///
/// # Errors
/// A database error (typically: unreachable).
pub async fn inspect(
    conn: &mut PgConnection,
    history_table: &str,
) -> Result<SchemaState, sqlx::Error> {
    inspect_against(conn, history_table, &migrations::embedded()).await
}

/// Inspects the database as a binary built with `embedded` would: the tests play an older
/// release this way (a rolling deploy runs one against a database a newer one migrated).
///
/// # Errors
/// A database error (typically: unreachable).
pub async fn inspect_against(
    conn: &mut PgConnection,
    history_table: &str,
    embedded: &[Migration],
) -> Result<SchemaState, sqlx::Error> {
    let history_exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(history_table)
        .fetch_one(&mut *conn)
        .await?;
    if history_exists {
        let applied = applied(conn, history_table).await?;
        return Ok(compare(&applied, embedded));
    }
    let ours = present_tables(conn).await?;
    if ours.is_empty() {
        return Ok(SchemaState::Empty);
    }
    Ok(SchemaState::HistoryMissing {
        expected: history_table.to_owned(),
        ours,
        history_like: history_like_tables(conn).await?,
    })
}

/// An applied migration as recorded in the history table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i32,
    pub name: String,
    pub checksum: String,
}

async fn applied(
    conn: &mut PgConnection,
    history_table: &str,
) -> Result<Vec<Applied>, sqlx::Error> {
    // The name is validated as a plain SQL identifier by the configuration.
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT version, name, checksum FROM {history_table} ORDER BY version"
    )))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Applied {
                version: row.try_get(0)?,
                name: row.try_get(1)?,
                checksum: row.try_get(2)?,
            })
        })
        .collect()
}

/// Our tables that exist, schema-qualified, as seen through the search path.
async fn present_tables(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    let mut found = Vec::new();
    for table in OUR_TABLES {
        let name: Option<String> = sqlx::query_scalar(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
        )
        .bind(*table)
        .fetch_optional(&mut *conn)
        .await?;
        found.extend(name);
    }
    Ok(found)
}

/// Every table, in every schema, whose name says it records migrations: `*schema_history`
/// (refinery, Flyway 5+), `*schema_version` (Flyway before 5), `_sqlx_migrations`,
/// `__diesel_schema_migrations`.
async fn history_like_tables(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND (c.relname ~ '(schema_history|schema_version)$' \
                OR c.relname IN ('_sqlx_migrations', '__diesel_schema_migrations')) \
         ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
}

/// Compares the applied migrations with the embedded ones. Pure, so each case has a unit test.
pub fn compare(applied: &[Applied], embedded: &[Migration]) -> SchemaState {
    let newest_embedded = embedded.iter().map(Migration::version).max().unwrap_or(0);
    let mut problems = Vec::new();
    let mut newer = Vec::new();
    for a in applied {
        let label = format!("V{}__{}", a.version, a.name);
        match embedded.iter().find(|m| m.version() == a.version) {
            Some(m) if m.name() != a.name => problems.push(format!(
                "{label} is applied where this release has V{}__{}",
                m.version(),
                m.name()
            )),
            Some(m) if m.checksum().to_string() != a.checksum => problems.push(format!(
                "{label} was applied with checksum {} but this release's has {}",
                a.checksum,
                m.checksum()
            )),
            Some(_) => {}
            None if a.version > newest_embedded => newer.push(label),
            None => problems.push(format!("{label} is applied but not part of this release")),
        }
    }
    if !problems.is_empty() {
        return SchemaState::Changed { problems };
    }
    let pending: Vec<String> = embedded
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version()))
        .map(ToString::to_string)
        .collect();
    if pending.is_empty() {
        SchemaState::Ready { newer }
    } else {
        SchemaState::Pending { pending }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedded() -> Vec<Migration> {
        vec![
            Migration::unapplied("V1__first", "SELECT 1").unwrap(),
            Migration::unapplied("V2__second", "SELECT 2").unwrap(),
        ]
    }

    fn applied_as(m: &Migration) -> Applied {
        Applied {
            version: m.version(),
            name: m.name().to_owned(),
            checksum: m.checksum().to_string(),
        }
    }

    #[test]
    fn all_applied_unchanged_is_ready() {
        let e = embedded();
        let applied: Vec<_> = e.iter().map(applied_as).collect();
        assert_eq!(compare(&applied, &e), SchemaState::Ready { newer: vec![] });
    }

    #[test]
    fn unapplied_migrations_are_pending_by_name() {
        let e = embedded();
        let state = compare(&[applied_as(&e[0])], &e);
        assert_eq!(
            state.to_string(),
            "1 pending migrations (V2__second): run `idminter migrate`"
        );
        assert!(state.is_migratable());
    }

    #[test]
    fn a_changed_checksum_or_name_is_named_and_not_migratable() {
        let e = embedded();
        let mut a = applied_as(&e[0]);
        a.checksum = "42".into();
        let state = compare(&[a, applied_as(&e[1])], &e);
        assert!(
            state
                .to_string()
                .contains("V1__first was applied with checksum 42"),
            "{state}"
        );
        assert!(!state.is_migratable());

        let mut renamed = applied_as(&e[0]);
        renamed.name = "other".into();
        let state = compare(&[renamed, applied_as(&e[1])], &e);
        assert!(
            state
                .to_string()
                .contains("V1__other is applied where this release has V1__first"),
            "{state}"
        );
    }

    #[test]
    fn newer_migrations_serve_with_a_warning_and_unknown_older_ones_do_not() {
        let e = embedded();
        let mut all: Vec<_> = e.iter().map(applied_as).collect();
        all.push(Applied {
            version: 3,
            name: "third".into(),
            checksum: "1".into(),
        });
        assert_eq!(
            compare(&all, &e),
            SchemaState::Ready {
                newer: vec!["V3__third".into()]
            }
        );

        let e2 = vec![e[1].clone()];
        let state = compare(&[applied_as(&e[0]), applied_as(&e[1])], &e2);
        assert!(matches!(state, SchemaState::Changed { .. }), "{state}");
        assert!(
            state
                .to_string()
                .contains("V1__first is applied but not part of this release")
        );
    }

    #[test]
    fn the_missing_history_diagnosis_names_expected_found_and_fix() {
        let state = SchemaState::HistoryMissing {
            expected: "idminter_schema_history".into(),
            ours: vec!["source_identifiers".into()],
            history_like: vec!["public.schema_version".into()],
        };
        let text = state.to_string();
        for needle in [
            "`idminter_schema_history` not found",
            "public.schema_version",
            "--history-table",
            "idminter migrate --baseline",
        ] {
            assert!(text.contains(needle), "{needle} missing from: {text}");
        }
    }
}
