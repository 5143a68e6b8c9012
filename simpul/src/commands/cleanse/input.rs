//! Reading the self-reports: the CSV file, its five columns found by header name, and each
//! row's values read into the forms `identity.verify` takes.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CleanseError;
use super::date::Date;

/// The longest `full_name` the contract takes, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// The header names asked for, one per field: each a `--…-column` flag, or the default.
#[derive(Clone, Debug)]
pub struct ColumnNames {
    /// `--nik-column`, default `nik`.
    pub nik: Option<String>,
    /// `--name-column`, default `full_name`, else `name`.
    pub name: Option<String>,
    /// `--birth-date-column`, default `birth_date`.
    pub birth_date: Option<String>,
    /// `--sex-column`, default `sex`.
    pub sex: Option<String>,
    /// `--reported-on-column`, default `reported_on`.
    pub reported_on: Option<String>,
}

/// Where each field is in a row (0-based), as the header names them; `None` for an optional
/// column the file does not have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnMap {
    /// The NIK's column (required).
    pub nik: usize,
    /// The full name's.
    pub name: Option<usize>,
    /// The birth date's.
    pub birth_date: Option<usize>,
    /// The sex's.
    pub sex: Option<usize>,
    /// The report date's.
    pub reported_on: Option<usize>,
}

/// One field of the five as a row holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<T> {
    /// Empty, or no such column.
    Absent,
    /// Read.
    Read(T),
    /// Written, but not in a form this command reads.
    Unreadable,
}

impl<T> Value<T> {
    /// The value read, if any.
    pub fn read(&self) -> Option<&T> {
        match self {
            Value::Read(v) => Some(v),
            _ => None,
        }
    }

    /// True when something was written that could not be read.
    pub fn unreadable(&self) -> bool {
        matches!(self, Value::Unreadable)
    }
}

/// The sex as the contract takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sex {
    /// Male: `M`, `L`, `Laki-laki`, `male`.
    M,
    /// Female: `F`, `P`, `Perempuan`, `female`.
    F,
}

impl Sex {
    /// Reads `text`, case and surrounding spaces aside.
    pub fn parse(text: &str) -> Option<Sex> {
        match text.trim().to_lowercase().as_str() {
            "m" | "l" | "laki-laki" | "male" => Some(Sex::M),
            "f" | "p" | "perempuan" | "female" => Some(Sex::F),
            _ => None,
        }
    }

    /// `M` or `F`.
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::M => "M",
            Sex::F => "F",
        }
    }
}

/// One self-report: where it is in the file, its fields as written, and its five values read.
#[derive(Clone, Debug)]
pub struct Report {
    /// The line of the file the row starts on, the header being line 1.
    pub line: u64,
    /// Every field as written, in the file's order.
    pub fields: Vec<String>,
    /// The NIK, surrounding spaces aside (empty when none).
    pub nik: String,
    /// The full name, surrounding spaces aside; `Unreadable` when longer than
    /// [`MAX_NAME_CHARS`].
    pub name: Value<String>,
    /// The birth date.
    pub birth_date: Value<Date>,
    /// The sex.
    pub sex: Value<Sex>,
    /// The date of the report.
    pub reported_on: Value<Date>,
}

impl Report {
    /// Reads a row's values through `map`.
    pub fn from_fields(line: u64, fields: Vec<String>, map: &ColumnMap) -> Report {
        let at = |i: Option<usize>| {
            i.and_then(|i| fields.get(i))
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
        };
        fn value<T>(text: Option<&str>, read: impl Fn(&str) -> Option<T>) -> Value<T> {
            match text {
                None => Value::Absent,
                Some(t) => read(t).map_or(Value::Unreadable, Value::Read),
            }
        }
        let nik = at(Some(map.nik)).unwrap_or_default().to_owned();
        let name = value(at(map.name), |t| {
            (t.chars().count() <= MAX_NAME_CHARS).then(|| t.to_owned())
        });
        let birth_date = value(at(map.birth_date), Date::parse);
        let sex = value(at(map.sex), Sex::parse);
        let reported_on = value(at(map.reported_on), Date::parse_with_time);
        Report {
            line,
            fields,
            nik,
            name,
            birth_date,
            sex,
            reported_on,
        }
    }
}

/// The file of self-reports, open for reading after its header.
pub struct Reports {
    path: PathBuf,
    reader: csv::Reader<BufReader<File>>,
    lines: LineCounter,
    header: Vec<String>,
    record: csv::StringRecord,
}

/// The line on which each row starts, counted over the file's bytes beside the CSV reader
/// (whose own count skips the line breaks inside quoted values).
struct LineCounter {
    file: BufReader<File>,
    /// Bytes of the file passed.
    at: u64,
    /// The line the next byte is on.
    line: u64,
}

impl LineCounter {
    /// The line of the first byte at or after `start` that is not a line break: where a
    /// record found from `start` (after blank lines, perhaps) begins.
    fn line_of(&mut self, start: u64) -> std::io::Result<u64> {
        loop {
            let buf = self.file.fill_buf()?;
            if buf.is_empty() {
                return Ok(self.line);
            }
            let before = usize::try_from(start.saturating_sub(self.at)).unwrap_or(usize::MAX);
            let skip = buf.len().min(before);
            let mut used = skip;
            let mut breaks = buf[..skip].iter().filter(|&&b| b == b'\n').count();
            let mut found = false;
            if skip < buf.len() {
                // At `start`: past the line ends of blank lines, up to the record.
                let rest = &buf[skip..];
                let blank = rest
                    .iter()
                    .position(|&b| b != b'\n' && b != b'\r')
                    .unwrap_or(rest.len());
                breaks += rest[..blank].iter().filter(|&&b| b == b'\n').count();
                used += blank;
                found = blank < rest.len();
            }
            self.file.consume(used);
            self.at += used as u64;
            self.line += breaks as u64;
            if found {
                return Ok(self.line);
            }
        }
    }
}

impl Reports {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Reports, CleanseError> {
        let file = File::open(path).map_err(|e| CleanseError::input(path, None, e))?;
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .from_reader(BufReader::with_capacity(1 << 16, file));
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| csv_error(path, e))?
            .iter()
            .map(str::to_owned)
            .collect();
        if header.iter().all(|h| h.trim().is_empty()) {
            return Err(CleanseError::input(
                path,
                None,
                "no header line: the first line must name the columns (nik, full_name, birth_date, sex, reported_on)",
            ));
        }
        let counter = File::open(path).map_err(|e| CleanseError::input(path, None, e))?;
        Ok(Reports {
            path: path.to_owned(),
            reader,
            lines: LineCounter {
                file: BufReader::with_capacity(1 << 16, counter),
                at: 0,
                line: 1,
            },
            header,
            record: csv::StringRecord::new(),
        })
    }

    /// The header's names, as written (a UTF-8 byte order mark aside).
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// Finds each field's column in the header: case and surrounding spaces aside; a
    /// column named by a flag must be there, and so must the NIK's.
    pub fn map(&self, names: &ColumnNames) -> Result<ColumnMap, CleanseError> {
        let find = |wanted: &str| -> Result<Option<usize>, CleanseError> {
            let key = normalise(wanted);
            let found: Vec<usize> = self
                .header
                .iter()
                .enumerate()
                .filter(|(_, h)| normalise(h) == key)
                .map(|(i, _)| i)
                .collect();
            match found.as_slice() {
                [] => Ok(None),
                [one] => Ok(Some(*one)),
                _ => Err(CleanseError::input(
                    &self.path,
                    Some(1),
                    format!(
                        "{} columns are named `{wanted}`: rename all but one",
                        found.len()
                    ),
                )),
            }
        };
        let missing = |wanted: &str, flag: &str| CleanseError::Column {
            path: self.path.clone(),
            wanted: wanted.to_owned(),
            flag: flag.to_owned(),
            header: self.header.join(", "),
        };
        // A column named by a flag must exist; a default name may be missing (that field
        // is then never sent), except the NIK's.
        let column = |flag_value: &Option<String>,
                      defaults: &[&str],
                      flag: &str|
         -> Result<Option<usize>, CleanseError> {
            match flag_value {
                Some(name) => match find(name)? {
                    Some(i) => Ok(Some(i)),
                    None => Err(missing(name, flag)),
                },
                None => {
                    for name in defaults {
                        if let Some(i) = find(name)? {
                            return Ok(Some(i));
                        }
                    }
                    Ok(None)
                }
            }
        };
        let nik = column(&names.nik, &["nik"], "--nik-column")?
            .ok_or_else(|| missing(names.nik.as_deref().unwrap_or("nik"), "--nik-column"))?;
        let map = ColumnMap {
            nik,
            name: column(&names.name, &["full_name", "name"], "--name-column")?,
            birth_date: column(&names.birth_date, &["birth_date"], "--birth-date-column")?,
            sex: column(&names.sex, &["sex"], "--sex-column")?,
            reported_on: column(&names.reported_on, &["reported_on"], "--reported-on-column")?,
        };
        Ok(map)
    }

    /// The next row as its fields and the line it starts on, or `None` at the end. A row of
    /// more fields than the header is refused; fewer are read as empty.
    pub fn next_row(&mut self) -> Result<Option<(u64, Vec<String>)>, CleanseError> {
        let more = self
            .reader
            .read_record(&mut self.record)
            .map_err(|e| csv_error(&self.path, e))?;
        if !more {
            return Ok(None);
        }
        let start = self.record.position().map_or(0, |p| p.byte());
        let line = self
            .lines
            .line_of(start)
            .map_err(|e| CleanseError::input(&self.path, None, e))?;
        if self.record.len() > self.header.len() {
            return Err(CleanseError::input(
                &self.path,
                Some(line),
                format!(
                    "{} fields, but the header names {}: put a value holding a comma in double quotes",
                    self.record.len(),
                    self.header.len()
                ),
            ));
        }
        Ok(Some((
            line,
            self.record.iter().map(str::to_owned).collect(),
        )))
    }
}

/// A header name as compared: case, surrounding spaces and a byte order mark aside.
fn normalise(name: &str) -> String {
    name.trim_start_matches('\u{feff}').trim().to_lowercase()
}

/// A CSV reader's error, naming the line where it has one.
fn csv_error(path: &Path, e: csv::Error) -> CleanseError {
    let line = e.position().map(|p| p.line());
    let reason = match e.kind() {
        csv::ErrorKind::Utf8 { .. } => {
            "not UTF-8 text: save the file as CSV UTF-8 and run again".to_owned()
        }
        _ => e.to_string(),
    };
    CleanseError::input(path, line, reason)
}

/// The SHA-256 of the file at `path`, in hexadecimal: what ties a work directory to its
/// input.
pub fn file_sha256(path: &Path) -> Result<String, CleanseError> {
    use aws_lc_rs::digest::{Context, SHA256};
    let mut file = File::open(path).map_err(|e| CleanseError::input(path, None, e))?;
    let mut context = Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| CleanseError::input(path, None, e))?;
        if n == 0 {
            break;
        }
        context.update(&buf[..n]);
    }
    Ok(context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reports(text: &[u8]) -> (tempfile::TempDir, Reports) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports.csv");
        std::fs::write(&path, text).unwrap();
        let reports = Reports::open(&path).unwrap();
        (dir, reports)
    }

    fn defaults() -> ColumnNames {
        ColumnNames {
            nik: None,
            name: None,
            birth_date: None,
            sex: None,
            reported_on: None,
        }
    }

    #[test]
    fn a_mixed_case_header_with_a_bom_quoted_commas_and_crlf_line_ends_is_read() {
        let text = "\u{feff} NIK ,Full_Name,Birth_Date ,SEX,Reported_On,City\r\n\
                    3201014507950001,\"Siti Aminah, S.Pd\",14/07/1995,Perempuan,2024-01-02,\"Taipei, TW\"\r\n\
                    3201011407950002,Budi,1995-07-14,l,,Osaka\r\n";
        let (_dir, mut r) = reports(text.as_bytes());
        let map = r.map(&defaults()).unwrap();
        assert_eq!(
            map,
            ColumnMap {
                nik: 0,
                name: Some(1),
                birth_date: Some(2),
                sex: Some(3),
                reported_on: Some(4),
            }
        );
        assert_eq!(r.header()[0], " NIK ");
        let (line, fields) = r.next_row().unwrap().unwrap();
        assert_eq!(line, 2);
        assert_eq!(fields[1], "Siti Aminah, S.Pd");
        assert_eq!(fields[5], "Taipei, TW");
        let report = Report::from_fields(line, fields, &map);
        assert_eq!(report.nik, "3201014507950001");
        assert_eq!(report.name, Value::Read("Siti Aminah, S.Pd".to_owned()));
        assert_eq!(
            report.birth_date.read().map(|d| d.to_string()).as_deref(),
            Some("1995-07-14")
        );
        assert_eq!(report.sex, Value::Read(Sex::F));
        assert_eq!(
            report.reported_on.read().map(|d| d.to_string()).as_deref(),
            Some("2024-01-02")
        );
        let (line, fields) = r.next_row().unwrap().unwrap();
        assert_eq!(line, 3);
        let report = Report::from_fields(line, fields, &map);
        assert_eq!(report.sex, Value::Read(Sex::M));
        assert_eq!(report.reported_on, Value::Absent);
        assert!(r.next_row().unwrap().is_none());
    }

    #[test]
    fn a_row_with_a_quoted_line_break_is_numbered_by_the_line_it_starts_on() {
        let (_dir, mut r) = reports(b"nik,name,note\n1,a,\"two\nlines\"\n\n2,b,c\n");
        let map = r.map(&defaults()).unwrap();
        assert_eq!(map.name, Some(1));
        assert_eq!(r.next_row().unwrap().unwrap().0, 2);
        assert_eq!(r.next_row().unwrap().unwrap().0, 5);
    }

    #[test]
    fn flags_name_other_columns_and_a_missing_one_is_refused_naming_the_flag() {
        let (_dir, r) = reports(b"No KTP,Nama,Tgl Lahir,JK,Tanggal\n");
        let mut names = defaults();
        names.nik = Some("no ktp".into());
        names.name = Some("NAMA".into());
        names.birth_date = Some("tgl lahir".into());
        names.sex = Some("jk".into());
        names.reported_on = Some("tanggal".into());
        let map = r.map(&names).unwrap();
        assert_eq!(
            (map.nik, map.name, map.birth_date, map.sex, map.reported_on),
            (0, Some(1), Some(2), Some(3), Some(4))
        );
        names.sex = Some("kelamin".into());
        let err = r.map(&names).unwrap_err().to_string();
        assert!(
            err.contains("reports.csv") && err.contains("kelamin") && err.contains("--sex-column"),
            "{err}"
        );
        let err = r.map(&defaults()).unwrap_err().to_string();
        assert!(
            err.contains("`nik`") && err.contains("--nik-column"),
            "{err}"
        );
    }

    #[test]
    fn optional_columns_may_be_missing_and_unreadable_values_are_marked() {
        let (_dir, mut r) = reports(b"nik,sex,birth_date\n32,X,1990-02-30\n");
        let map = r.map(&defaults()).unwrap();
        assert_eq!((map.name, map.reported_on), (None, None));
        let (line, fields) = r.next_row().unwrap().unwrap();
        let report = Report::from_fields(line, fields, &map);
        assert_eq!(report.name, Value::Absent);
        assert!(report.sex.unreadable() && report.birth_date.unreadable());
    }

    #[test]
    fn every_spelling_of_the_sexes_is_read() {
        for (text, sex) in [
            ("M", Sex::M),
            ("l", Sex::M),
            ("Laki-laki", Sex::M),
            ("MALE", Sex::M),
            (" f ", Sex::F),
            ("P", Sex::F),
            ("perempuan", Sex::F),
            ("Female", Sex::F),
        ] {
            assert_eq!(Sex::parse(text), Some(sex), "{text}");
        }
        assert_eq!(Sex::parse("x"), None);
    }

    #[test]
    fn a_name_longer_than_the_contract_takes_is_unreadable_and_a_longer_row_is_refused() {
        let long = "a".repeat(MAX_NAME_CHARS + 1);
        let text = format!("nik,name\n1,{long}\n2,b,extra\n");
        let (_dir, mut r) = reports(text.as_bytes());
        let map = r.map(&defaults()).unwrap();
        let (line, fields) = r.next_row().unwrap().unwrap();
        assert!(Report::from_fields(line, fields, &map).name.unreadable());
        let err = r.next_row().unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("double quotes"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_is_not_utf8_is_refused_naming_the_line() {
        let (_dir, mut r) = reports(b"nik,name\n1,Jos\xe9\n");
        r.map(&defaults()).unwrap();
        let err = r.next_row().unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("UTF-8"), "{err}");
    }
}
