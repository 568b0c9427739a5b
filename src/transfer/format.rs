//! The file formats of `import` and `export`: which format a file is in, which of its columns is
//! which, and reading its records one at a time with the line each starts on.
//!
//! - CSV is RFC 4180 (quoted fields, embedded commas, quotes and newlines), read by the `csv`
//!   crate.
//! - TSV is the text format of MySQL (`mysqldump --tab`, `SELECT ... INTO OUTFILE`,
//!   `mysql --batch`) and of PostgreSQL's COPY: tab-separated, one record per line, with
//!   backslash escapes (`\t`, `\n`, `\\`, `\N` for NULL, and a backslash before a literal tab or
//!   newline, as INTO OUTFILE writes them). The `csv` crate has no backslash escapes outside
//!   quotes, so this small reader is ours.
//! - JSON lines: one object per line, keys named as the columns.
//!
//! Column names match case-insensitively, ignoring `_`; the Wellcome identifiers table's names
//! (`CanonicalId`, `SourceSystem`, `OntologyType`, `SourceId`) are accepted as they are.

use std::io::BufRead;
use std::path::Path;

use clap::ValueEnum;

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Tsv,
    Jsonl,
}

impl Format {
    /// The format a file name implies, after any `.gz`: `.csv`; `.tsv`, `.tab` or `.txt` (what
    /// `mysqldump --tab` writes); `.jsonl`, `.ndjson` or `.json`.
    pub fn from_path(path: &str) -> Option<Self> {
        let name = path.strip_suffix(".gz").unwrap_or(path);
        let ext = Path::new(name).extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "tsv" | "tab" | "txt" => Some(Format::Tsv),
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// One of the columns a mapping file may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    CanonicalId,
    IdentifierType,
    OntologyType,
    Value,
    Minted,
    CreatedAt,
}

impl Column {
    /// Every column, in the order `export` writes them.
    pub const ALL: [Column; 6] = [
        Column::CanonicalId,
        Column::IdentifierType,
        Column::OntologyType,
        Column::Value,
        Column::Minted,
        Column::CreatedAt,
    ];

    /// Our name for the column, as `export` writes it.
    pub fn name(self) -> &'static str {
        match self {
            Column::CanonicalId => "canonical_id",
            Column::IdentifierType => "identifier_type",
            Column::OntologyType => "ontology_type",
            Column::Value => "value",
            Column::Minted => "minted",
            Column::CreatedAt => "created_at",
        }
    }

    /// The column a header name means: ours or the Wellcome table's, in any case, `_` ignored.
    pub fn from_name(name: &str) -> Option<Self> {
        let key: String = name
            .trim()
            .chars()
            .filter(|c| *c != '_')
            .flat_map(char::to_lowercase)
            .collect();
        match key.as_str() {
            "canonicalid" => Some(Column::CanonicalId),
            "identifiertype" | "sourcesystem" => Some(Column::IdentifierType),
            "ontologytype" => Some(Column::OntologyType),
            "value" | "sourceid" => Some(Column::Value),
            "minted" => Some(Column::Minted),
            "createdat" => Some(Column::CreatedAt),
            _ => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which position of a record holds which column.
#[derive(Debug, Clone)]
pub struct Layout {
    positions: Vec<Option<Column>>,
    /// Names of the columns that matched none of ours (ignored, reported once).
    pub ignored: Vec<String>,
}

impl Layout {
    /// Maps header names to columns.
    ///
    /// # Errors
    /// A column named twice, or one of the four required columns missing.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut positions = Vec::with_capacity(names.len());
        let mut ignored = Vec::new();
        let mut seen = [false; 6];
        for name in names {
            let name = name.as_ref();
            let column = Column::from_name(name);
            match column {
                Some(c) if seen[c.index()] => {
                    return Err(format!("column `{}` is given twice", c.name()));
                }
                Some(c) => seen[c.index()] = true,
                None => ignored.push(name.to_owned()),
            }
            positions.push(column);
        }
        let missing: Vec<&str> = Column::ALL[..4]
            .iter()
            .filter(|c| !seen[c.index()])
            .map(|c| c.name())
            .collect();
        if missing.is_empty() {
            Ok(Self { positions, ignored })
        } else {
            Err(format!(
                "no column for {} (columns found: {}); name the columns with --columns",
                missing.join(", "),
                names
                    .iter()
                    .map(|n| format!("`{}`", n.as_ref()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }

    /// Sorts a record's fields into our columns. `None` fields (NULL) stay `None`.
    ///
    /// # Errors
    /// The record has another number of fields than the header.
    pub fn fields(&self, values: Vec<Option<String>>) -> Result<Fields, String> {
        if values.len() != self.positions.len() {
            return Err(format!(
                "has {} fields, the header {}",
                values.len(),
                self.positions.len()
            ));
        }
        let mut fields = Fields::default();
        for (column, value) in self.positions.iter().zip(values) {
            if let Some(c) = column {
                fields.0[c.index()] = value;
            }
        }
        Ok(fields)
    }
}

/// A record's fields by column; `None` when absent or NULL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields([Option<String>; 6]);

impl Fields {
    pub fn get(&self, column: Column) -> Option<&str> {
        self.0[column.index()].as_deref()
    }

    pub fn take(&mut self, column: Column) -> Option<String> {
        self.0[column.index()].take()
    }

    /// Builds fields from a JSON object's members.
    ///
    /// # Errors
    /// A member that is neither a string nor null (`minted` may also be a boolean), or a column
    /// given twice.
    fn from_json(object: serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let mut fields = Fields::default();
        let mut seen = [false; 6];
        for (key, value) in object {
            let Some(column) = Column::from_name(&key) else {
                continue;
            };
            if std::mem::replace(&mut seen[column.index()], true) {
                return Err(format!("column `{}` is given twice", column.name()));
            }
            fields.0[column.index()] = match value {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Bool(b) if column == Column::Minted => Some(b.to_string()),
                other => {
                    return Err(format!(
                        "{}: must be a string, not {}",
                        column.name(),
                        json_kind(&other)
                    ));
                }
            };
        }
        for column in &Column::ALL[..4] {
            if !seen[column.index()] {
                return Err(format!("{}: missing", column.name()));
            }
        }
        Ok(fields)
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// One record as read: where it starts, the row as it was written (for `--rejects`), and its
/// fields, or why they could not be read.
#[derive(Debug)]
pub struct Record {
    pub line: u64,
    pub raw: String,
    pub fields: Result<Fields, String>,
}

/// Reads the records of one file in one format.
pub struct Records<R: BufRead> {
    inner: Inner<R>,
    layout: Option<Layout>,
}

enum Inner<R: BufRead> {
    Csv {
        reader: csv::Reader<R>,
        record: csv::ByteRecord,
    },
    Lines {
        reader: R,
        format: Format,
        line: u64,
        buf: Vec<u8>,
    },
}

impl<R: BufRead> Records<R> {
    /// A reader of `format` records; `columns` names the columns when the file has no header.
    ///
    /// # Errors
    /// The header (or `columns`) does not name the required columns; reading the header failed.
    pub fn new(reader: R, format: Format, columns: Option<&[String]>) -> Result<Self, String> {
        let inner = match format {
            Format::Csv => Inner::Csv {
                reader: csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(reader),
                record: csv::ByteRecord::new(),
            },
            Format::Tsv | Format::Jsonl => Inner::Lines {
                reader,
                format,
                line: 0,
                buf: Vec::new(),
            },
        };
        let mut records = Self {
            inner,
            layout: None,
        };
        if format == Format::Jsonl {
            return Ok(records);
        }
        let names: Vec<String> = match columns {
            Some(columns) => columns.to_vec(),
            None => match records.next_values()? {
                Some((_, _, values)) => values
                    .into_iter()
                    .map(|v| String::from_utf8_lossy(&v.unwrap_or_default()).into_owned())
                    .collect::<Vec<_>>(),
                None => return Err("the file is empty (no header row)".to_owned()),
            },
        };
        records.layout = Some(Layout::from_names(&names)?);
        Ok(records)
    }

    /// Names of header columns that are not ours (ignored).
    pub fn ignored_columns(&self) -> &[String] {
        self.layout.as_ref().map_or(&[], |l| &l.ignored)
    }

    /// The next record, `None` at the end.
    ///
    /// # Errors
    /// Reading failed (an I/O error, not a malformed record: those come back as records whose
    /// `fields` is an error).
    pub fn next_record(&mut self) -> Result<Option<Record>, String> {
        if let Inner::Lines {
            format: Format::Jsonl,
            ..
        } = self.inner
        {
            return self.next_json();
        }
        let Some((line, raw, values)) = self.next_values()? else {
            return Ok(None);
        };
        let layout = self.layout.as_ref().ok_or("no header")?;
        let fields = values
            .into_iter()
            .map(|v| v.map(String::from_utf8).transpose())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "is not valid UTF-8".to_owned())
            .and_then(|values| layout.fields(values));
        Ok(Some(Record { line, raw, fields }))
    }

    /// The next CSV or TSV record's line, raw text and fields (bytes, checked for UTF-8 later).
    #[allow(clippy::type_complexity)]
    fn next_values(&mut self) -> Result<Option<(u64, String, Vec<Option<Vec<u8>>>)>, String> {
        match &mut self.inner {
            Inner::Csv { reader, record } => {
                if !reader
                    .read_byte_record(record)
                    .map_err(|e| format!("read error: {e}"))?
                {
                    return Ok(None);
                }
                let line = record.position().map_or(0, |p| p.line());
                let mut writer = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::Any(b'\n'))
                    .from_writer(Vec::new());
                let raw = writer
                    .write_byte_record(record)
                    .ok()
                    .and_then(|()| writer.into_inner().ok())
                    .map(|mut v| {
                        v.pop();
                        String::from_utf8_lossy(&v).into_owned()
                    })
                    .unwrap_or_default();
                let values = record.iter().map(|f| Some(f.to_vec())).collect();
                Ok(Some((line, raw, values)))
            }
            Inner::Lines {
                reader, line, buf, ..
            } => {
                let Some(start) = read_tsv_line(reader, line, buf)? else {
                    return Ok(None);
                };
                let raw = String::from_utf8_lossy(buf).into_owned();
                Ok(Some((start, raw, split_tsv(buf))))
            }
        }
    }

    fn next_json(&mut self) -> Result<Option<Record>, String> {
        let Inner::Lines {
            reader, line, buf, ..
        } = &mut self.inner
        else {
            return Err("not a JSON lines reader".to_owned());
        };
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', buf)
                .map_err(|e| format!("read error: {e}"))?;
            if n == 0 {
                return Ok(None);
            }
            *line += 1;
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let raw = String::from_utf8_lossy(buf).into_owned();
            let fields = match serde_json::from_slice::<serde_json::Value>(buf) {
                Ok(serde_json::Value::Object(object)) => Fields::from_json(object),
                Ok(other) => Err(format!("is {}, not a JSON object", json_kind(&other))),
                Err(e) => Err(format!("is not valid JSON: {e}")),
            };
            return Ok(Some(Record {
                line: *line,
                raw,
                fields,
            }));
        }
    }
}

/// Reads one TSV record into `buf` (without its line end), joining lines whose newline is
/// escaped by a backslash. Returns the record's first line number, `None` at the end. Blank lines
/// are skipped.
fn read_tsv_line<R: BufRead>(
    reader: &mut R,
    line: &mut u64,
    buf: &mut Vec<u8>,
) -> Result<Option<u64>, String> {
    buf.clear();
    loop {
        let start = *line + 1;
        loop {
            let n = reader
                .read_until(b'\n', buf)
                .map_err(|e| format!("read error: {e}"))?;
            if n == 0 {
                break;
            }
            *line += 1;
            if buf.last() != Some(&b'\n') {
                break; // the last line, without a line end
            }
            // A newline preceded by an odd number of backslashes is part of the field.
            let backslashes = buf[..buf.len() - 1]
                .iter()
                .rev()
                .take_while(|b| **b == b'\\')
                .count();
            if backslashes % 2 == 0 {
                buf.pop();
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                break;
            }
        }
        if buf.is_empty() {
            if *line < start {
                return Ok(None); // end of input
            }
            continue; // a blank line
        }
        return Ok(Some(start));
    }
}

/// Splits a TSV record at unescaped tabs and decodes the escapes; a field that is exactly `\N` is
/// NULL.
fn split_tsv(record: &[u8]) -> Vec<Option<Vec<u8>>> {
    let mut fields = Vec::with_capacity(6);
    let mut field = Vec::new();
    let mut null = false;
    let mut i = 0;
    let mut field_start = 0;
    while i < record.len() {
        match record[i] {
            b'\t' => {
                fields.push((!null).then(|| std::mem::take(&mut field)));
                field.clear();
                null = false;
                field_start = i + 1;
            }
            b'\\' if i + 1 < record.len() => {
                i += 1;
                let c = record[i];
                if c == b'N'
                    && i == field_start + 1
                    && matches!(record.get(i + 1), None | Some(b'\t'))
                {
                    null = true;
                } else {
                    field.push(match c {
                        b'0' => 0,
                        b'b' => 8,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'Z' => 26,
                        other => other, // `\\`, and a backslash before a literal tab or newline
                    });
                }
            }
            b => field.push(b),
        }
        i += 1;
    }
    fields.push((!null).then_some(field));
    fields
}

/// Appends `field` to `out` escaped for TSV (and for PostgreSQL's COPY text format).
pub fn escape_tsv(field: &str, out: &mut Vec<u8>) {
    if !field
        .bytes()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        out.extend_from_slice(field.as_bytes());
        return;
    }
    for b in field.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str, format: Format, columns: Option<&[String]>) -> Vec<Record> {
        let mut records = Records::new(text.as_bytes(), format, columns).expect("header");
        let mut out = Vec::new();
        while let Some(r) = records.next_record().expect("read") {
            out.push(r);
        }
        out
    }

    fn value(r: &Record, c: Column) -> Option<&str> {
        r.fields.as_ref().expect("fields").get(c)
    }

    #[test]
    fn wellcome_column_names_are_accepted_in_any_case() {
        let layout =
            Layout::from_names(&["CanonicalId", "SourceSystem", "ontologytype", "SOURCE_ID"])
                .expect("layout");
        let fields = layout
            .fields(["a", "b", "c", "d"].map(|s| Some(s.to_owned())).to_vec())
            .unwrap();
        assert_eq!(fields.get(Column::IdentifierType), Some("b"));
        assert_eq!(fields.get(Column::Value), Some("d"));
    }

    #[test]
    fn a_header_without_a_required_column_is_refused_by_name() {
        let e = Layout::from_names(&["canonical_id", "value", "ontology_type"]).unwrap_err();
        assert!(e.contains("identifier_type"), "{e}");
    }

    #[test]
    fn csv_fields_may_hold_quoted_commas_quotes_and_newlines() {
        let text = "canonical_id,identifier_type,ontology_type,value\n\
                    a2345678,t,Work,\"x,\"\"y\"\"\nz\"\n\
                    b2345678,t,Work,plain\n";
        let records = read_all(text, Format::Csv, None);
        assert_eq!(records.len(), 2);
        assert_eq!(value(&records[0], Column::Value), Some("x,\"y\"\nz"));
        assert_eq!(records[0].line, 2);
        assert_eq!(records[1].line, 4, "the record after a two-line one");
    }

    #[test]
    fn tsv_decodes_mysql_escapes_and_null() {
        let columns: Vec<String> = [
            "CanonicalId",
            "SourceSystem",
            "OntologyType",
            "SourceId",
            "minted",
        ]
        .map(String::from)
        .to_vec();
        // `\\` is a backslash, `\t` a tab (escape), a backslash before a literal newline is a
        // newline inside the field (INTO OUTFILE), `\N` is NULL.
        let text = "a2345678\tt\tWork\tback\\\\slash\t\\N\nb2345678\tt\tWork\tx\\\ny\t1\n";
        let records = read_all(text, Format::Tsv, Some(&columns));
        assert_eq!(records.len(), 2);
        assert_eq!(value(&records[0], Column::Value), Some("back\\slash"));
        assert_eq!(value(&records[0], Column::Minted), None);
        assert_eq!(value(&records[1], Column::Value), Some("x\ny"));
        assert_eq!(records[1].line, 2);
    }

    #[test]
    fn a_record_with_the_wrong_number_of_fields_is_a_bad_record_not_an_error() {
        let text = "canonical_id\tidentifier_type\tontology_type\tvalue\na2345678\tt\tWork\n";
        let records = read_all(text, Format::Tsv, None);
        assert!(records[0].fields.as_ref().unwrap_err().contains("3 fields"));
    }

    #[test]
    fn json_lines_take_strings_nulls_and_a_boolean_minted() {
        let text = "{\"canonical_id\":\"a2345678\",\"identifier_type\":\"t\",\"ontology_type\":\"Work\",\"value\":\"v\",\"minted\":true,\"created_at\":null}\n\n[1]\n";
        let records = read_all(text, Format::Jsonl, None);
        assert_eq!(records.len(), 2);
        assert_eq!(value(&records[0], Column::Minted), Some("true"));
        assert_eq!(value(&records[0], Column::CreatedAt), None);
        assert_eq!(records[1].line, 3);
        assert!(records[1].fields.is_err());
    }

    #[test]
    fn formats_come_from_the_extension_after_gz() {
        assert_eq!(Format::from_path("ids.csv.gz"), Some(Format::Csv));
        assert_eq!(Format::from_path("identifiers.txt"), Some(Format::Tsv));
        assert_eq!(Format::from_path("x.JSONL"), Some(Format::Jsonl));
        assert_eq!(Format::from_path("x.bin"), None);
    }
}
