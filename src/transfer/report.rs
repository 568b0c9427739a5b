//! What an import tells its user about rows it did not import: the first few on stderr, every
//! one in the `--rejects` file (CSV: `file,line,outcome,reason,row`), and the counts of the
//! one-line summary.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::plan::{Conflict, Reason};

/// How many rejected or conflicting rows are shown on stderr; the rest only in `--rejects`.
const SHOWN: u64 = 10;

/// The counts of the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub read: u64,
    pub imported: u64,
    pub present: u64,
    pub rejected: u64,
    pub conflicts: u64,
}

impl Summary {
    /// True when every row was imported or already present.
    pub fn is_clean(&self) -> bool {
        self.rejected == 0 && self.conflicts == 0
    }

    /// The one-line summary.
    pub fn line(&self, dry_run: bool, seconds: f64) -> String {
        let rate = if seconds > 0.0 {
            self.read as f64 / seconds
        } else {
            0.0
        };
        format!(
            "{}{} rows read: {} {}, {} already present, {} rejected, {} conflicts ({seconds:.1}s, {rate:.0} rows/s)",
            if dry_run { "dry run: " } else { "" },
            self.read,
            self.imported,
            if dry_run { "to import" } else { "imported" },
            self.present,
            self.rejected,
            self.conflicts,
        )
    }
}

/// The rows not imported, as they are found.
pub struct Rejects {
    files: Vec<String>,
    writer: Option<csv::Writer<BufWriter<File>>>,
    reported: u64,
}

impl Rejects {
    /// Reports into `path` when given; `files` names the inputs by their index.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(path: Option<&Path>, files: Vec<String>) -> io::Result<Self> {
        let writer = match path {
            Some(path) => {
                let mut w = csv::Writer::from_writer(BufWriter::new(File::create(path)?));
                w.write_record(["file", "line", "outcome", "reason", "row"])?;
                Some(w)
            }
            None => None,
        };
        Ok(Self {
            files,
            writer,
            reported: 0,
        })
    }

    fn file(&self, src: usize) -> &str {
        self.files.get(src).map_or("?", String::as_str)
    }

    /// An invalid row: `raw` is the row as read.
    ///
    /// # Errors
    /// Writing the rejects file failed.
    pub fn rejected(&mut self, src: usize, line: u64, reason: &str, raw: &str) -> io::Result<()> {
        self.report(src, line, "rejected", reason, raw)
    }

    /// A conflicting row; its row is rebuilt from its columns (in export order, as CSV), since
    /// the import keeps no copy of the raw input.
    ///
    /// # Errors
    /// Writing the rejects file failed.
    pub fn conflict(&mut self, conflict: &Conflict) -> io::Result<()> {
        let reason = self.describe(&conflict.reason);
        let mut row = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        row.write_record(conflict.row.iter().map(|f| f.as_deref().unwrap_or("")))?;
        let mut raw = row.into_inner().map_err(|e| e.into_error())?;
        raw.pop();
        let raw = String::from_utf8_lossy(&raw).into_owned();
        self.report(conflict.src, conflict.line, "conflict", &reason, &raw)
    }

    fn describe(&self, reason: &Reason) -> String {
        match reason {
            Reason::Earlier {
                other_id,
                src,
                line,
            } => format!(
                "the identifier has canonical ID {other_id} earlier in the input ({}:{line})",
                self.file(*src)
            ),
            Reason::Database { other_id } => {
                format!("the identifier already has canonical ID {other_id} in the database")
            }
            Reason::Taken => {
                "the canonical ID already belongs to other identifiers in the database".to_owned()
            }
            Reason::MintedInDatabase => {
                "a second minted row: the canonical ID's minted row is in the database".to_owned()
            }
            Reason::MintedEarlier { src, line } => format!(
                "a second minted row: the canonical ID's minted row is {}:{line}",
                self.file(*src)
            ),
            Reason::Raced { other_id } => format!(
                "the identifier got canonical ID {other_id} from another writer during the import"
            ),
            Reason::RacedMinted => {
                "another writer took the canonical ID's minted row during the import".to_owned()
            }
        }
    }

    fn report(
        &mut self,
        src: usize,
        line: u64,
        outcome: &str,
        reason: &str,
        raw: &str,
    ) -> io::Result<()> {
        let file = self.file(src).to_owned();
        if self.reported < SHOWN {
            eprintln!("{file}:{line}: {outcome}: {reason}");
        } else if self.reported == SHOWN && self.writer.is_none() {
            eprintln!("(further rejected and conflicting rows not shown: use --rejects FILE)");
        }
        self.reported += 1;
        if let Some(w) = &mut self.writer {
            w.write_record([file.as_str(), &line.to_string(), outcome, reason, raw])?;
        }
        Ok(())
    }

    /// Flushes the rejects file.
    ///
    /// # Errors
    /// Writing failed.
    pub fn finish(self) -> io::Result<()> {
        if let Some(w) = self.writer {
            w.into_inner()
                .map_err(|e| e.into_error())?
                .into_inner()
                .map_err(|e| e.into_error())?
                .flush()?;
        }
        Ok(())
    }
}
