//! Moving mappings in and out in bulk: `idminter import` and `idminter export` (contract section
//! 7), for institutions that bring millions of existing canonical IDs with them.
//!
//! - [`format`]: CSV, TSV and JSON lines, column names (ours and the Wellcome table's);
//! - [`validate`]: a row checked by the API's rules, through the domain's parsers;
//! - [`plan`]: the staging table and the set-based classification, done by PostgreSQL, and the
//!   chunked, crash-safe writes;
//! - [`seen`]: which rows may repeat a key, found while reading, so that PostgreSQL plans only those;
//! - [`bulk`]: a first load into an empty table, in one transaction, indexes built at the end;
//! - [`import`], [`export`]: the two commands; [`progress`] and [`report`]: what they tell the
//!   user; [`timestamp`]: `created_at` at microsecond precision.

pub mod bulk;
pub mod export;
pub mod format;
pub mod import;
pub mod plan;
pub mod progress;
pub mod report;
pub mod seen;
pub mod timestamp;
pub mod validate;

use std::path::PathBuf;

use clap::Args;

use crate::config::DatabaseArgs;
use crate::domain::OntologyAliases;
use format::Format;

/// `idminter import`'s flags.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// Files to import, in order; `-` (or none) is stdin. `.gz` files are decompressed.
    pub files: Vec<String>,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Rewrite an ontology type before anything else, FROM=TO, as `serve` does; repeatable.
    #[arg(
        long = "ontology-alias",
        env = "IDMINTER_ONTOLOGY_ALIASES",
        value_delimiter = ',',
        value_parser = crate::config::parse_alias
    )]
    pub ontology_aliases: Vec<String>,
    /// The input format; default: from the file extension (csv for stdin).
    #[arg(long, env = "IDMINTER_IMPORT_FORMAT")]
    pub format: Option<Format>,
    /// The column names in file order, comma-separated, for files without a header row (as
    /// `mysqldump --tab` and `SELECT ... INTO OUTFILE` write them).
    #[arg(long, env = "IDMINTER_IMPORT_COLUMNS", value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Validate and classify every row; write nothing.
    #[arg(long, env = "IDMINTER_IMPORT_DRY_RUN")]
    pub dry_run: bool,
    /// Write every rejected or conflicting row here (CSV: file, line, outcome, reason, row).
    #[arg(long, env = "IDMINTER_IMPORT_REJECTS")]
    pub rejects: Option<PathBuf>,
    /// Rows per committed chunk.
    #[arg(long, env = "IDMINTER_IMPORT_CHUNK_ROWS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_rows: u64,
    /// Keep the table available to servers even when it is empty: write in committed chunks
    /// instead of the faster first load, which holds the table (servers wait) until it commits.
    #[arg(long, env = "IDMINTER_IMPORT_ONLINE")]
    pub online: bool,
}

/// `idminter export`'s flags.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The output format.
    #[arg(long, env = "IDMINTER_EXPORT_FORMAT", default_value = "csv")]
    pub format: Format,
    /// Where to write; `-` is stdout. A name ending in `.gz` is compressed.
    #[arg(long, env = "IDMINTER_EXPORT_OUTPUT", default_value = "-")]
    pub output: String,
}

impl TryFrom<ImportArgs> for import::ImportConfig {
    type Error = anyhow::Error;

    fn try_from(args: ImportArgs) -> anyhow::Result<Self> {
        let ImportArgs {
            files,
            database,
            ontology_aliases,
            format,
            columns,
            dry_run,
            rejects,
            chunk_rows,
            online,
        } = args;
        Ok(Self {
            database: database.connect_options()?,
            history_table: database.history_table,
            aliases: OntologyAliases::parse(&ontology_aliases).map_err(anyhow::Error::msg)?,
            files,
            format,
            columns,
            dry_run,
            rejects,
            chunk_rows,
            online,
        })
    }
}

impl TryFrom<ExportArgs> for export::ExportConfig {
    type Error = anyhow::Error;

    fn try_from(args: ExportArgs) -> anyhow::Result<Self> {
        let ExportArgs {
            database,
            format,
            output,
        } = args;
        Ok(Self {
            database: database.connect_options()?,
            history_table: database.history_table,
            format,
            output: (output != "-").then(|| PathBuf::from(output)),
        })
    }
}
