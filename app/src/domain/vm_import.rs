//! Many VMs at once: a CSV file whose columns are the fields of the Add VM form.
//!
//! It exists so that the portal's import page, the REST API and the CLI read a file the
//! same way and name every problem by its line and column before anything is stored.
//! Each cell goes through [`VmSpec::parse`], the parser of the single form, so an
//! imported VM is exactly a VM someone could have added by hand.
//!
//! The format: a header row naming the columns (any order, case and spaces ignored),
//! then one VM per line. `name` and `group` are required; `addresses`, `os` and
//! `exposed_ports` may be left out (then empty, as on the form). Fields are separated by
//! commas and may be quoted (`"10.0.0.1, 10.0.0.2"`, `""` for a quote inside); inside a
//! cell, several addresses or ports are separated by spaces, semicolons or, quoted,
//! commas. Blank lines are skipped. At most [`MAX_ROWS`] VMs per file.

use super::vm::VmSpec;
use std::collections::HashMap;

/// The most VMs one file may add: enough for a data centre's inventory in one go, small
/// enough that one import is one short write transaction.
pub const MAX_ROWS: usize = 5_000;

/// The columns a file may have, as the Add VM form names its fields.
pub const COLUMNS: [&str; 5] = ["name", "group", "addresses", "os", "exposed_ports"];
/// The columns a file must have.
pub const REQUIRED: [&str; 2] = ["name", "group"];

/// A problem of the file, named by the line it is on (the header is line 1) and the
/// column it concerns (empty when it concerns the whole line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: usize,
    pub column: String,
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.column.is_empty() {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            write!(f, "line {}, {}: {}", self.line, self.column, self.message)
        }
    }
}

/// The cells of one VM as written, by column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawVm {
    pub name: String,
    pub group: String,
    pub addresses: String,
    pub os: String,
    pub exposed_ports: String,
}

/// One VM of the file: what was written, what it parsed to, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    pub line: usize,
    pub raw: RawVm,
    /// `Some` while the row has no error.
    pub spec: Option<VmSpec>,
    pub errors: Vec<RowError>,
}

impl ImportRow {
    /// Marks the row bad (checks made later, such as names already taken, add here).
    pub fn reject(&mut self, column: &str, message: impl Into<String>) {
        self.spec = None;
        self.errors.push(RowError {
            line: self.line,
            column: column.to_owned(),
            message: message.into(),
        });
    }
}

/// A whole file, parsed: every row with its values or errors, and the errors of the file
/// itself (header, quoting, size).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportFile {
    pub rows: Vec<ImportRow>,
    pub file_errors: Vec<RowError>,
}

impl ImportFile {
    /// Whether every row parsed and the file itself is sound: only then may it be stored.
    pub fn is_ok(&self) -> bool {
        self.file_errors.is_empty() && self.rows.iter().all(|r| r.errors.is_empty())
    }

    /// Every error, in line order.
    pub fn errors(&self) -> Vec<RowError> {
        let mut all: Vec<RowError> = self
            .file_errors
            .iter()
            .chain(self.rows.iter().flat_map(|r| r.errors.iter()))
            .cloned()
            .collect();
        all.sort_by_key(|e| e.line);
        all
    }

    /// The VMs to add, when [`ImportFile::is_ok`].
    pub fn specs(&self) -> Vec<&VmSpec> {
        self.rows.iter().filter_map(|r| r.spec.as_ref()).collect()
    }

    /// Parses rows given one by one (the REST API's JSON rows): numbered from 1, checked
    /// as the rows of a file are.
    pub fn from_rows(rows: Vec<RawVm>) -> ImportFile {
        let mut file = ImportFile::default();
        for (i, raw) in rows.into_iter().enumerate() {
            if i == MAX_ROWS {
                file.file_errors.push(too_many(i + 1));
                break;
            }
            file.rows.push(parse_row(i + 1, raw));
        }
        if file.rows.is_empty() {
            file.file_errors.push(RowError {
                line: 1,
                column: String::new(),
                message: "No VMs to import.".into(),
            });
        }
        mark_duplicates(&mut file.rows);
        file
    }
}

fn too_many(line: usize) -> RowError {
    RowError {
        line,
        column: String::new(),
        message: format!("At most {MAX_ROWS} VMs in one import; split the file."),
    }
}

/// A column name as people write it in a header: `Exposed ports`, `exposedPorts`.
fn column_key(raw: &str) -> Option<&'static str> {
    let key: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect();
    match key.as_str() {
        "name" => Some("name"),
        "group" => Some("group"),
        "addresses" => Some("addresses"),
        "os" => Some("os"),
        "exposedports" => Some("exposed_ports"),
        _ => None,
    }
}

fn parse_row(line: usize, raw: RawVm) -> ImportRow {
    // Inside one cell a semicolon separates items as a comma does on the form: it needs
    // no quoting in a CSV file.
    let addresses = raw.addresses.replace(';', " ");
    let ports = raw.exposed_ports.replace(';', " ");
    match VmSpec::parse(&raw.name, &raw.group, &addresses, &raw.os, &ports) {
        Ok(spec) => ImportRow {
            line,
            raw,
            spec: Some(spec),
            errors: Vec::new(),
        },
        Err(errors) => ImportRow {
            line,
            raw,
            spec: None,
            errors: errors
                .0
                .into_iter()
                .map(|e| RowError {
                    line,
                    column: e.field,
                    message: e.message,
                })
                .collect(),
        },
    }
}

/// A name given twice is an error on every line after the first that gives it.
fn mark_duplicates(rows: &mut [ImportRow]) {
    let mut first: HashMap<String, usize> = HashMap::new();
    for row in rows.iter_mut() {
        let name = row.raw.name.trim().to_owned();
        if name.is_empty() {
            continue;
        }
        match first.get(&name) {
            Some(line) => {
                let message = format!("{name} is also on line {line}.");
                row.reject("name", message);
            }
            None => {
                first.insert(name, row.line);
            }
        }
    }
}

/// One record of the file: its first line and its fields, or what is wrong with its
/// quoting.
struct Record {
    line: usize,
    fields: Vec<String>,
    error: Option<(usize, String)>,
}

/// Splits CSV text into records (RFC 4180: commas, `"` quoting with `""` inside, CRLF or
/// LF line ends, line breaks inside quotes). Stops after `limit` records that are not
/// blank, so a huge file costs no more than the rows it may hold.
fn records(text: &str, limit: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut kept = 0;
    while chars.peek().is_some() {
        if kept == limit {
            break;
        }
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut error = None;
        // Whether this field began with a quote and its closing quote was seen.
        let mut was_quoted = false;
        loop {
            let Some(c) = chars.next() else {
                if quoted {
                    error = Some((fields.len(), "A quote is never closed.".to_owned()));
                }
                break;
            };
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => {
                        quoted = false;
                        was_quoted = true;
                    }
                    '\n' => {
                        line += 1;
                        field.push('\n');
                    }
                    _ => field.push(c),
                }
                continue;
            }
            match c {
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' | '\r' => {
                    line += 1;
                    break;
                }
                '"' if field.trim().is_empty() && !was_quoted => {
                    field.clear();
                    quoted = true;
                }
                '"' => {
                    if error.is_none() {
                        error = Some((
                            fields.len(),
                            "A quote inside a field; quote the whole field and double the quote."
                                .to_owned(),
                        ));
                    }
                    field.push(c);
                }
                _ if was_quoted && !c.is_whitespace() => {
                    if error.is_none() {
                        error = Some((
                            fields.len(),
                            "Text after a closing quote; quote the whole field.".to_owned(),
                        ));
                    }
                    field.push(c);
                }
                _ => field.push(c),
            }
        }
        fields.push(field);
        // An empty line, or a spreadsheet's row of empty cells (`,,,`).
        let blank = error.is_none() && fields.iter().all(|f| f.trim().is_empty());
        if !blank {
            kept += 1;
            out.push(Record {
                line: start,
                fields,
                error,
            });
        }
    }
    out
}

/// Parses a CSV file of VMs. Never fails as a whole: whatever is wrong is in the result,
/// by line and column, and [`ImportFile::is_ok`] says whether it may be stored.
pub fn parse_csv(text: &str) -> ImportFile {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut file = ImportFile::default();
    // The header, the rows allowed, and one more to tell that there are too many.
    let mut recs = records(text, MAX_ROWS + 2).into_iter();
    let Some(header) = recs.next() else {
        file.file_errors.push(RowError {
            line: 1,
            column: String::new(),
            message: format!(
                "The file is empty: give a header row ({}) and one VM per line.",
                COLUMNS.join(",")
            ),
        });
        return file;
    };
    let mut columns: Vec<Option<&'static str>> = Vec::new();
    // Columns already refused in the header: their cells are not refused again per line.
    let mut refused: Vec<usize> = Vec::new();
    let header_error = |column: &str, message: String| RowError {
        line: header.line,
        column: column.to_owned(),
        message,
    };
    if let Some((_, message)) = &header.error {
        file.file_errors
            .push(header_error("", format!("The header row: {message}")));
    }
    for name in &header.fields {
        let key = column_key(name);
        match key {
            // A spreadsheet's empty trailing header cells name nothing.
            None if name.trim().is_empty() => {}
            None => {
                refused.push(columns.len());
                file.file_errors.push(header_error(
                    name.trim(),
                    format!(
                        "Unknown column '{}'; the columns are {}.",
                        name.trim(),
                        COLUMNS.join(", ")
                    ),
                ));
            }
            Some(k) if columns.contains(&Some(k)) => file
                .file_errors
                .push(header_error(k, format!("The column {k} is given twice."))),
            Some(_) => {}
        }
        columns.push(key);
    }
    let absent: Vec<&str> = REQUIRED
        .into_iter()
        .filter(|r| !columns.contains(&Some(*r)))
        .collect();
    for required in REQUIRED {
        if !columns.contains(&Some(required)) {
            file.file_errors.push(header_error(
                required,
                format!("The column {required} is missing from the header row."),
            ));
        }
    }
    for (i, rec) in recs.enumerate() {
        if i == MAX_ROWS {
            file.file_errors.push(too_many(rec.line));
            break;
        }
        let mut raw = RawVm::default();
        let mut extra = Vec::new();
        for (j, value) in rec.fields.iter().enumerate() {
            match columns.get(j) {
                Some(Some("name")) => raw.name = value.clone(),
                Some(Some("group")) => raw.group = value.clone(),
                Some(Some("addresses")) => raw.addresses = value.clone(),
                Some(Some("os")) => raw.os = value.clone(),
                Some(Some("exposed_ports")) => raw.exposed_ports = value.clone(),
                Some(Some(_)) => {}
                Some(None) | None => {
                    if !value.trim().is_empty() && !refused.contains(&j) {
                        extra.push(j + 1);
                    }
                }
            }
        }
        let mut row = parse_row(rec.line, raw);
        // A column missing from the header is said once, there, not on every line.
        row.errors.retain(|e| !absent.contains(&e.column.as_str()));
        if let Some((j, message)) = &rec.error {
            // The cell's own errors come from reading it wrongly: the quoting is the news.
            let column = columns.get(*j).copied().flatten().unwrap_or_default();
            row.errors.retain(|e| e.column != column);
            row.reject(column, message.clone());
        }
        if let Some(first) = extra.first() {
            row.reject(
                "",
                format!(
                    "A value in field {first}, which the header does not name: quote a field that holds commas."
                ),
            );
        }
        if rec.fields.len() < columns.len() {
            // A short line: the columns it leaves out are named, so the user sees which.
            let missing: Vec<&str> = columns[rec.fields.len()..]
                .iter()
                .filter_map(|c| *c)
                .collect();
            if let Some(first) = missing.first() {
                row.errors.retain(|e| !missing.contains(&e.column.as_str()));
                row.reject(
                    first,
                    format!(
                        "The line ends before the column{} {}.",
                        if missing.len() == 1 { "" } else { "s" },
                        missing.join(", ")
                    ),
                );
            }
        }
        file.rows.push(row);
    }
    if file.rows.is_empty() && file.file_errors.is_empty() {
        file.file_errors.push(RowError {
            line: header.line + 1,
            column: String::new(),
            message: "No VMs below the header row.".into(),
        });
    }
    mark_duplicates(&mut file.rows);
    file
}

/// A CSV cell for `value`: quoted when it holds a comma, a quote or a line break.
pub fn csv_cell(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn only_error(file: &ImportFile) -> RowError {
        let errors = file.errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors[0].clone()
    }

    #[test]
    fn a_good_file_gives_every_vm_with_the_forms_parsing() {
        let file = parse_csv(
            "\u{feff}Name,Group,Addresses,OS,Exposed ports\r\n\
             web-1,prod,\"198.51.100.5, 2001:db8::5\",linux,22\r\n\
             \r\n\
             db-1,prod,198.51.100.6 198.51.100.7,windows,3389;5985\r\n",
        );
        assert!(file.is_ok(), "{:?}", file.errors());
        let specs = file.specs();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].name, "web-1");
        assert_eq!(specs[0].addresses_text(), "198.51.100.5, 2001:db8::5");
        assert_eq!(file.rows[1].line, 4, "blank lines still count");
        assert_eq!(specs[1].exposed_text(), "3389, 5985");
        assert_eq!(specs[1].addresses.len(), 2);
    }

    #[test]
    fn optional_columns_may_be_left_out_in_any_order() {
        let file = parse_csv("group,name\nprod,web-1\n");
        assert!(file.is_ok(), "{:?}", file.errors());
        let spec = file.specs()[0];
        assert_eq!((spec.name.as_str(), spec.group.as_str()), ("web-1", "prod"));
        assert!(spec.addresses.is_empty());
    }

    #[test]
    fn each_bad_cell_is_named_by_line_and_column() {
        let file = parse_csv(
            "name,group,addresses,os,exposed_ports\n\
             web-1,prod,300.1.1.1,linux,22\n\
             web 2,prod,,beos,8080\n",
        );
        assert!(!file.is_ok());
        let errors = file.errors();
        let at =
            |line: usize, column: &str| errors.iter().any(|e| e.line == line && e.column == column);
        assert!(at(2, "addresses"), "{errors:?}");
        assert!(at(3, "name"));
        assert!(at(3, "os"));
        assert!(at(3, "exposed_ports"));
        assert!(file.rows[0].spec.is_none());
        assert_eq!(
            file.rows[1].raw.os, "beos",
            "what was written is kept to show"
        );
    }

    #[test]
    fn unknown_missing_and_repeated_columns_are_refused() {
        let e = only_error(&parse_csv("name,group,colour\nweb-1,prod,red\n"));
        assert_eq!((e.line, e.column.as_str()), (1, "colour"));
        let e = only_error(&parse_csv("name,os\nweb-1,linux\n"));
        assert_eq!((e.line, e.column.as_str()), (1, "group"));
        let e = only_error(&parse_csv("name,group,Name\nweb-1,prod,web-2\n"));
        assert_eq!((e.line, e.column.as_str()), (1, "name"));
        let e = only_error(&parse_csv(""));
        assert_eq!(e.line, 1);
        let e = only_error(&parse_csv("name,group\n"));
        assert_eq!(e.line, 2, "a header alone imports nothing");
        assert!(!ImportFile::from_rows(Vec::new()).is_ok());
        assert!(!parse_csv("\n\n").is_ok());
    }

    #[test]
    fn a_name_given_twice_is_an_error_on_the_later_line() {
        let file = parse_csv("name,group\nweb-1,a\nweb-2,a\nweb-1,b\n");
        let e = only_error(&file);
        assert_eq!((e.line, e.column.as_str()), (4, "name"));
        assert!(e.message.contains("line 2"), "{}", e.message);
    }

    #[test]
    fn lines_with_too_many_or_too_few_fields_say_so() {
        let e = only_error(&parse_csv(
            "name,group,addresses\nweb-1,prod,10.0.0.1,10.0.0.2\n",
        ));
        assert_eq!(e.line, 2);
        assert!(e.message.contains("quote"), "{}", e.message);
        // Trailing empty cells from a spreadsheet are fine.
        assert!(parse_csv("name,group\nweb-1,prod,,\n").is_ok());
        let e = only_error(&parse_csv("name,group,os\nweb-1\n"));
        assert_eq!((e.line, e.column.as_str()), (2, "group"));
    }

    #[test]
    fn quoting_follows_rfc_4180_and_bad_quotes_are_named() {
        let file = parse_csv(
            "name,group,addresses\n\"web-1\",prod,\"10.0.0.1,\n10.0.0.2\"\nweb-2,prod,\n",
        );
        assert!(file.is_ok(), "{:?}", file.errors());
        assert_eq!(file.rows[1].line, 4, "a line break inside quotes counts");
        let e = only_error(&parse_csv("name,group\nweb-1,\"prod\n"));
        assert_eq!((e.line, e.column.as_str()), (2, "group"));
        let e = only_error(&parse_csv("name,group\nweb\"1,prod\n"));
        assert_eq!((e.line, e.column.as_str()), (2, "name"));
    }

    #[test]
    fn more_than_the_cap_is_refused_at_the_first_line_over_it() {
        let mut text = String::from("name,group\n");
        for i in 0..=MAX_ROWS {
            text.push_str(&format!("vm-{i},g\n"));
        }
        let file = parse_csv(&text);
        let e = only_error(&file);
        assert_eq!(e.line, MAX_ROWS + 2);
        assert_eq!(file.rows.len(), MAX_ROWS);
        let rows = (0..=MAX_ROWS)
            .map(|i| RawVm {
                name: format!("vm-{i}"),
                group: "g".into(),
                ..RawVm::default()
            })
            .collect();
        assert!(!ImportFile::from_rows(rows).is_ok());
    }

    #[test]
    fn rows_given_one_by_one_are_checked_alike() {
        let raw = |name: &str| RawVm {
            name: name.into(),
            group: "prod".into(),
            ..RawVm::default()
        };
        let file = ImportFile::from_rows(vec![raw("a"), raw("b c"), raw("a")]);
        let errors = file.errors();
        assert_eq!(errors.len(), 2);
        assert_eq!((errors[0].line, errors[0].column.as_str()), (2, "name"));
        assert_eq!(errors[1].line, 3);
    }

    fn cell() -> impl Strategy<Value = String> {
        "[a-z0-9 ,\"\n.:-]{0,12}"
    }

    proptest! {
        /// Whatever the file holds, parsing ends, and every error names a line of it.
        #[test]
        fn any_text_parses_into_rows_or_named_errors(text in "[a-z,\"\n\r ]{0,200}") {
            let file = parse_csv(&text);
            // One past the end: "no VMs below the header" points there.
            let lines = text.matches(['\n', '\r']).count() + 2;
            for e in file.errors() {
                prop_assert!(e.line >= 1 && e.line <= lines, "{e:?} of {lines}");
            }
            prop_assert_eq!(file.is_ok(), file.errors().is_empty());
        }

        /// A cell written with `csv_cell` reads back as itself, whatever it holds.
        #[test]
        fn cells_written_quoted_read_back(name in cell(), group in cell(), addresses in cell()) {
            let text = format!(
                "name,group,addresses\n{},{},{}\n",
                csv_cell(&name), csv_cell(&group), csv_cell(&addresses)
            );
            let file = parse_csv(&text);
            // A row of blank cells is skipped as a blank line.
            if name.trim().is_empty() && group.trim().is_empty() && addresses.trim().is_empty() {
                prop_assert!(file.rows.is_empty());
            } else {
                prop_assert!(file.file_errors.is_empty());
                prop_assert_eq!(file.rows.len(), 1);
                let raw = &file.rows[0].raw;
                prop_assert_eq!(&raw.name, &name);
                prop_assert_eq!(&raw.group, &group);
                prop_assert_eq!(&raw.addresses, &addresses);
            }
        }

        /// Valid VMs written out as CSV import as themselves.
        #[test]
        fn valid_vms_round_trip(names in proptest::collection::btree_set("[a-z][a-z0-9-]{0,10}", 1..20),
                                octet in 1u8..255) {
            let mut text = String::from("name,group,addresses,os,exposed_ports\n");
            for n in &names {
                text.push_str(&format!("{n},grp,\"10.0.0.{octet}, 2001:db8::{octet}\",linux,22\n"));
            }
            let file = parse_csv(&text);
            prop_assert!(file.is_ok(), "{:?}", file.errors());
            let got: Vec<&str> = file.specs().iter().map(|s| s.name.as_str()).collect();
            let want: Vec<&str> = names.iter().map(String::as_str).collect();
            prop_assert_eq!(got, want);
        }
    }
}
