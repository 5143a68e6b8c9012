//! The run's files, written from the work database in line order to temporary files renamed
//! into place — the cleansed rows, the rejects with their reasons, the summary as JSON — and
//! the summary as a table for people.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::CleanseError;
use super::classify::{Reason, classify};
use super::date::Date;
use super::progress::Progress;
use super::work::{Meta, StoredRow, Work};

/// Rows read from the work database at a time.
const PAGE: u32 = 10_000;

/// Where the files go.
#[derive(Clone, Debug)]
pub struct Outputs {
    /// The kept rows.
    pub cleansed: PathBuf,
    /// The rejected rows with their reasons.
    pub rejects: PathBuf,
    /// The summary, as JSON.
    pub summary: PathBuf,
}

/// `--age-at A --on DATE`: how many kept rows reach age `age` by `on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgeAt {
    /// The age.
    pub age: u32,
    /// The day.
    pub on: Date,
}

/// Counts by the sex reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BySex {
    /// `M`.
    #[serde(rename = "M")]
    pub m: u64,
    /// `F`.
    #[serde(rename = "F")]
    pub f: u64,
    /// No sex read.
    pub unknown: u64,
}

impl BySex {
    fn add(&mut self, sex: Option<&str>) {
        match sex {
            Some("M") => self.m += 1,
            Some("F") => self.f += 1,
            _ => self.unknown += 1,
        }
    }

    /// All of them.
    pub fn total(&self) -> u64 {
        self.m + self.f + self.unknown
    }
}

/// Rows per reason, in the order of precedence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Reasons {
    /// `kept`.
    pub kept: u64,
    /// `invalid-nik`.
    #[serde(rename = "invalid-nik")]
    pub invalid_nik: u64,
    /// `duplicate`.
    pub duplicate: u64,
    /// `not-registered`.
    #[serde(rename = "not-registered")]
    pub not_registered: u64,
    /// `deceased`.
    pub deceased: u64,
    /// `foreign-national`.
    #[serde(rename = "foreign-national")]
    pub foreign_national: u64,
    /// `name-mismatch`.
    #[serde(rename = "name-mismatch")]
    pub name_mismatch: u64,
    /// `birth-date-mismatch`.
    #[serde(rename = "birth-date-mismatch")]
    pub birth_date_mismatch: u64,
}

impl Reasons {
    fn count(&mut self, reason: Reason) -> &mut u64 {
        match reason {
            Reason::Kept => &mut self.kept,
            Reason::InvalidNik => &mut self.invalid_nik,
            Reason::Duplicate => &mut self.duplicate,
            Reason::NotRegistered => &mut self.not_registered,
            Reason::Deceased => &mut self.deceased,
            Reason::ForeignNational => &mut self.foreign_national,
            Reason::NameMismatch => &mut self.name_mismatch,
            Reason::BirthDateMismatch => &mut self.birth_date_mismatch,
        }
    }

    /// The count of `reason`.
    pub fn get(&self, reason: Reason) -> u64 {
        match reason {
            Reason::Kept => self.kept,
            Reason::InvalidNik => self.invalid_nik,
            Reason::Duplicate => self.duplicate,
            Reason::NotRegistered => self.not_registered,
            Reason::Deceased => self.deceased,
            Reason::ForeignNational => self.foreign_national,
            Reason::NameMismatch => self.name_mismatch,
            Reason::BirthDateMismatch => self.birth_date_mismatch,
        }
    }
}

/// Values written but not read, over all rows: never sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NotRead {
    /// Full names longer than the contract takes.
    pub full_name: u64,
    /// Birth dates in no form this command reads, or no real day.
    pub birth_date: u64,
    /// Sexes in no form this command reads.
    pub sex: u64,
    /// Report dates in no form this command reads.
    pub reported_on: u64,
}

/// How many kept rows reach an age by a day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Ages {
    /// The age.
    pub age: u32,
    /// The day, `YYYY-MM-DD`.
    #[serde(serialize_with = "as_text")]
    pub on: Date,
    /// Kept rows whose birth date makes them that age or older on that day, by sex.
    pub reached: BySex,
    /// Kept rows whose birth date makes them younger.
    pub not_reached: BySex,
    /// Kept rows with no birth date read.
    pub birth_date_unknown: u64,
}

fn as_text<S: serde::Serializer>(date: &Date, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(date)
}

/// What a run found: the same for the same input, however often it was interrupted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The input's SHA-256, hexadecimal.
    pub input_sha256: String,
    /// Rows read (the header aside).
    pub rows_in: u64,
    /// Rows kept: the cleansed file's.
    pub rows_out: u64,
    /// Rows rejected: the rejects file's.
    pub rejected: u64,
    /// Rows per reason.
    pub reasons: Reasons,
    /// Kept rows by the sex reported.
    pub kept_by_sex: BySex,
    /// Rows sent to the registry (one per person with a well-formed NIK).
    pub verified: u64,
    /// Values written but not read, so not sent.
    pub values_not_read: NotRead,
    /// With `--age-at` and `--on`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age: Option<Ages>,
}

impl Summary {
    fn new(input_sha256: String, age: Option<AgeAt>) -> Summary {
        Summary {
            input_sha256,
            rows_in: 0,
            rows_out: 0,
            rejected: 0,
            reasons: Reasons::default(),
            kept_by_sex: BySex::default(),
            verified: 0,
            values_not_read: NotRead::default(),
            age: age.map(|a| Ages {
                age: a.age,
                on: a.on,
                reached: BySex::default(),
                not_reached: BySex::default(),
                birth_date_unknown: 0,
            }),
        }
    }

    /// Counts one row with its reason.
    pub fn add(&mut self, row: &StoredRow, reason: Reason) {
        self.rows_in += 1;
        *self.reasons.count(reason) += 1;
        if row.verdict.is_some() {
            self.verified += 1;
        }
        let u = &row.unreadable;
        let n = &mut self.values_not_read;
        n.full_name += u64::from(u.full_name);
        n.birth_date += u64::from(u.birth_date);
        n.sex += u64::from(u.sex);
        n.reported_on += u64::from(u.reported_on);
        if reason != Reason::Kept {
            self.rejected += 1;
            return;
        }
        self.rows_out += 1;
        let sex = row.sex.as_deref();
        self.kept_by_sex.add(sex);
        if let Some(ages) = &mut self.age {
            match row.birth_date.as_deref().and_then(Date::parse) {
                None => ages.birth_date_unknown += 1,
                Some(born) if i64::from(born.age_on(ages.on)) >= i64::from(ages.age) => {
                    ages.reached.add(sex)
                }
                Some(_) => ages.not_reached.add(sex),
            }
        }
    }

    /// The summary as a table for people.
    pub fn table(&self, outputs: &Outputs) -> String {
        let mut t = String::new();
        let mut line = |label: &str, value: String| t.push_str(&format!("{label:<28}{value}\n"));
        line("rows in", self.rows_in.to_string());
        line("rows out (kept)", self.rows_out.to_string());
        line("rejected", self.rejected.to_string());
        for reason in Reason::ALL.into_iter().filter(|r| *r != Reason::Kept) {
            line(
                &format!("  {}", reason.as_str()),
                self.reasons.get(reason).to_string(),
            );
        }
        let sexes = |s: &BySex| format!("M {}, F {}, unknown {}", s.m, s.f, s.unknown);
        line("kept by sex", sexes(&self.kept_by_sex));
        line("sent to the registry", self.verified.to_string());
        let n = &self.values_not_read;
        line(
            "values not read",
            format!(
                "full_name {}, birth_date {}, sex {}, reported_on {}",
                n.full_name, n.birth_date, n.sex, n.reported_on
            ),
        );
        if let Some(a) = &self.age {
            line(
                &format!("reaching {} by {}", a.age, a.on),
                format!(
                    "{} ({}); younger {}; birth date unknown {}",
                    a.reached.total(),
                    sexes(&a.reached),
                    a.not_reached.total(),
                    a.birth_date_unknown
                ),
            );
        }
        line("cleansed", outputs.cleansed.display().to_string());
        line("rejects", outputs.rejects.display().to_string());
        line("summary", outputs.summary.display().to_string());
        t
    }
}

/// A file being written under a temporary name beside its own.
struct Pending {
    path: PathBuf,
    temp: PathBuf,
}

impl Pending {
    fn new(path: &Path) -> Pending {
        let mut temp = path.as_os_str().to_owned();
        temp.push(".partial");
        Pending {
            path: path.to_owned(),
            temp: PathBuf::from(temp),
        }
    }

    fn create(&self) -> Result<BufWriter<File>, CleanseError> {
        File::create(&self.temp)
            .map(|f| BufWriter::with_capacity(1 << 16, f))
            .map_err(|e| CleanseError::output(&self.path, e))
    }

    /// Flushes, syncs and closes `file`.
    fn finish(&self, file: BufWriter<File>) -> Result<(), CleanseError> {
        let file = file
            .into_inner()
            .map_err(|e| CleanseError::output(&self.path, e.error()))?;
        file.sync_all()
            .map_err(|e| CleanseError::output(&self.path, e))
    }

    fn rename(&self) -> Result<(), CleanseError> {
        std::fs::rename(&self.temp, &self.path).map_err(|e| CleanseError::output(&self.path, e))
    }
}

/// A CSV writer of the outputs: `\n` line ends, fields quoted only when they must be.
fn csv_writer(file: BufWriter<File>) -> csv::Writer<BufWriter<File>> {
    csv::WriterBuilder::new()
        .flexible(false)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(file)
}

/// Writes the three files from the work database of a run that has every verdict, and returns
/// its summary. Each file is written whole under `<name>.partial` and renamed into place
/// only once all three are written.
pub async fn write(
    work: &mut Work,
    meta: &Meta,
    outputs: &Outputs,
    age: Option<AgeAt>,
    progress: &Progress,
) -> Result<Summary, CleanseError> {
    let files = [
        Pending::new(&outputs.cleansed),
        Pending::new(&outputs.rejects),
        Pending::new(&outputs.summary),
    ];
    let width = meta.header.len();
    let mut cleansed = csv_writer(files[0].create()?);
    let mut rejects = csv_writer(files[1].create()?);
    let csv_err = |path: &Path| {
        let path = path.to_owned();
        move |e: csv::Error| CleanseError::output(&path, e)
    };
    cleansed
        .write_record(&meta.header)
        .map_err(csv_err(&outputs.cleansed))?;
    rejects
        .write_record(
            meta.header
                .iter()
                .map(String::as_str)
                .chain(["reason", "detail"]),
        )
        .map_err(csv_err(&outputs.rejects))?;
    let mut summary = Summary::new(meta.input_sha256.clone(), age);
    let mut meter = progress.meter("write", None, 0);
    let mut after = 0;
    loop {
        let rows = work.rows_after(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.line;
        for row in &rows {
            let c = classify(row).map_err(|u| CleanseError::Unverified {
                dir: work.dir().to_owned(),
                line: u.0,
            })?;
            summary.add(row, c.reason);
            // A row shorter than the header is written with empty fields to its width.
            let fields = row
                .fields
                .iter()
                .map(String::as_str)
                .chain(std::iter::repeat(""))
                .take(width);
            if c.reason == Reason::Kept {
                cleansed
                    .write_record(fields)
                    .map_err(csv_err(&outputs.cleansed))?;
            } else {
                rejects
                    .write_record(fields.chain([c.reason.as_str(), c.detail.as_str()]))
                    .map_err(csv_err(&outputs.rejects))?;
            }
        }
        meter.advance(rows.len() as u64);
    }
    meter.finish();
    for (writer, file) in [(cleansed, &files[0]), (rejects, &files[1])] {
        let inner = writer
            .into_inner()
            .map_err(|e| CleanseError::output(&file.path, e.error()))?;
        file.finish(inner)?;
    }
    let mut json = files[2].create()?;
    let text = serde_json::to_string_pretty(&summary)
        .map_err(|e| CleanseError::output(&outputs.summary, e))?;
    json.write_all(text.as_bytes())
        .and_then(|()| json.write_all(b"\n"))
        .map_err(|e| CleanseError::output(&outputs.summary, e))?;
    files[2].finish(json)?;
    for file in &files {
        file.rename()?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::cleanse::work::Unreadable;

    fn kept(sex: Option<&str>, birth_date: Option<&str>) -> StoredRow {
        StoredRow {
            line: 2,
            fields: vec![],
            nik_fault: None,
            kept_line: Some(2),
            same_nik_as_kept: true,
            sex: sex.map(str::to_owned),
            birth_date: birth_date.map(str::to_owned),
            verdict: None,
            unreadable: Unreadable::default(),
        }
    }

    #[test]
    fn the_summary_counts_reasons_sexes_and_who_reaches_the_age_by_the_day() {
        let on = Date::parse("2024-02-14").unwrap();
        let mut s = Summary::new("00".into(), Some(AgeAt { age: 17, on }));
        s.add(&kept(Some("F"), Some("2007-02-14")), Reason::Kept); // 17 that day
        s.add(&kept(Some("M"), Some("2007-02-15")), Reason::Kept); // 17 the day after
        s.add(&kept(Some("M"), Some("1980-01-01")), Reason::Kept);
        s.add(&kept(None, None), Reason::Kept);
        let mut unread = kept(None, None);
        unread.unreadable = Unreadable {
            full_name: false,
            birth_date: true,
            sex: true,
            reported_on: true,
        };
        s.add(&unread, Reason::Duplicate);
        s.add(&kept(Some("F"), Some("1990-01-01")), Reason::Deceased);
        assert_eq!((s.rows_in, s.rows_out, s.rejected), (6, 4, 2));
        assert_eq!(
            (s.reasons.kept, s.reasons.duplicate, s.reasons.deceased),
            (4, 1, 1)
        );
        assert_eq!(
            s.kept_by_sex,
            BySex {
                m: 2,
                f: 1,
                unknown: 1
            }
        );
        let ages = s.age.unwrap();
        assert_eq!(
            ages.reached,
            BySex {
                m: 1,
                f: 1,
                unknown: 0
            }
        );
        assert_eq!(
            ages.not_reached,
            BySex {
                m: 1,
                f: 0,
                unknown: 0
            }
        );
        assert_eq!(ages.birth_date_unknown, 1);
        assert_eq!(
            s.values_not_read,
            NotRead {
                full_name: 0,
                birth_date: 1,
                sex: 1,
                reported_on: 1
            }
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["age"]["on"], "2024-02-14");
        assert_eq!(json["reasons"]["invalid-nik"], 0);
        assert_eq!(json["kept_by_sex"]["M"], 2);
    }

    #[test]
    fn without_age_at_the_summary_has_no_age() {
        let s = Summary::new("00".into(), None);
        assert!(serde_json::to_value(&s).unwrap().get("age").is_none());
    }
}
