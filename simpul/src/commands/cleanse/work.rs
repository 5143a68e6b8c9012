//! The work directory of a run: one SQLite database holding the rows loaded once, how far the
//! run has come, and every verdict, each batch's written in the transaction that marks it
//! done, so a run stopped anywhere resumes without losing or counting a row twice; and a lock
//! file, so two runs never share one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, Sqlite};

use super::CleanseError;
use super::input::{ColumnMap, Report};
use super::verify::{Item, Verdict};

/// The database's file in the work directory.
pub const DB_FILE: &str = "work.db";

/// The layout of the database this build writes; another is refused on resume.
const FORMAT: &str = "1";

const SCHEMA: &[&str] = &[
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    // One row per input row, by the line it starts on. `person` is the smallest line of the
    // rows taken for one person, `kept_line` the line kept for them (dedupe.rs); `batch`
    // the batch a kept row is verified in, and the verdict columns its answer (verify.rs).
    "CREATE TABLE rows (
        line INTEGER PRIMARY KEY,
        fields TEXT NOT NULL,
        nik TEXT NOT NULL,
        nik_fault TEXT,
        name TEXT,
        name_unreadable INTEGER NOT NULL,
        name_key TEXT,
        birth_date TEXT,
        birth_date_unreadable INTEGER NOT NULL,
        sex TEXT,
        sex_unreadable INTEGER NOT NULL,
        reported_on TEXT,
        reported_on_unreadable INTEGER NOT NULL,
        complete INTEGER NOT NULL,
        person INTEGER,
        kept_line INTEGER,
        batch INTEGER,
        nik_valid INTEGER,
        found INTEGER,
        name_verdict TEXT,
        name_similarity REAL,
        birth_date_verdict TEXT,
        sex_verdict TEXT,
        citizenship TEXT,
        deceased INTEGER
    )",
    "CREATE TABLE batches (id INTEGER PRIMARY KEY, rows INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0)",
];

/// How far a run has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading the input into the database (`meta.loaded` rows so far).
    Load,
    /// Grouping duplicates and choosing the batches.
    Dedupe,
    /// Verifying the batches not yet done.
    Verify,
    /// Every verdict is in: writing the files.
    Output,
}

impl Phase {
    /// Its name in the meta table.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Load => "load",
            Phase::Dedupe => "dedupe",
            Phase::Verify => "verify",
            Phase::Output => "output",
        }
    }

    fn parse(text: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// In the order a run goes through them.
    const ALL: [Phase; 4] = [Phase::Load, Phase::Dedupe, Phase::Verify, Phase::Output];
}

/// What a run is bound to: its input and the choices that shape its outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The input file's SHA-256, hexadecimal.
    pub input_sha256: String,
    /// The input's header, as written.
    pub header: Vec<String>,
    /// Where the five fields are.
    pub columns: ColumnMap,
    /// Kept rows per batch.
    pub batch_size: usize,
}

/// A row as the outputs need it.
#[derive(Clone, Debug)]
pub struct StoredRow {
    /// The line it starts on.
    pub line: u64,
    /// Its fields as written.
    pub fields: Vec<String>,
    /// Why its NIK is not well-formed, if it is not.
    pub nik_fault: Option<String>,
    /// The line kept for its person (itself when kept); `None` with a malformed NIK.
    pub kept_line: Option<u64>,
    /// True when the kept row has the same NIK.
    pub same_nik_as_kept: bool,
    /// The sex read (`M` or `F`).
    pub sex: Option<String>,
    /// The birth date read, `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    /// The registry's verdict, for a kept row.
    pub verdict: Option<Verdict>,
    /// Which of name, birth date, sex and report date were written but not read.
    pub unreadable: Unreadable,
}

/// Values written but not read, of one row.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unreadable {
    /// The full name (longer than the contract takes).
    pub full_name: bool,
    /// The birth date.
    pub birth_date: bool,
    /// The sex.
    pub sex: bool,
    /// The report date.
    pub reported_on: bool,
}

/// An open work directory, locked for this run.
pub struct Work {
    dir: PathBuf,
    conn: SqliteConnection,
    /// Held locked while the run lasts.
    _lock: File,
}

/// The lock file in the work directory.
const LOCK_FILE: &str = "lock";

/// Locks the work directory `dir` for this run, or refuses if another run holds it.
fn lock(dir: &Path) -> Result<File, CleanseError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(|e| CleanseError::work_io(dir, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(CleanseError::WorkMismatch {
            dir: dir.to_owned(),
            what: "another run is using this work directory: wait for it to end".into(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(CleanseError::work_io(dir, e)),
    }
}

impl Work {
    /// The database file of the work directory `dir`.
    pub fn db_path(dir: &Path) -> PathBuf {
        dir.join(DB_FILE)
    }

    /// Makes the work directory `dir` and its database for a run bound to `meta`. The
    /// database is filled under a name of its own and renamed, so a `work.db` is always
    /// whole; what an earlier attempt left (a half-made database, the journal of a removed
    /// one) is removed first.
    pub async fn create(dir: &Path, meta: &Meta) -> Result<Work, CleanseError> {
        std::fs::create_dir_all(dir).map_err(|e| CleanseError::work_io(dir, e))?;
        let lock = lock(dir)?;
        let db = Self::db_path(dir);
        remove_leftovers(dir).map_err(|e| CleanseError::work_io(dir, e))?;
        remove_db_files(&db).map_err(|e| CleanseError::work_io(dir, e))?;
        // A name no earlier attempt used: a connection of an abandoned attempt, closing,
        // removes its journal by its own name, never this one's.
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let fresh = dir.join(format!("{DB_FILE}.new-{}-{stamp}", std::process::id()));
        let mut conn = connect(&fresh, true)
            .await
            .map_err(|e| CleanseError::work(dir, e))?;
        let filled = async {
            let mut tx = conn.begin().await?;
            for statement in SCHEMA {
                sqlx::query(*statement).execute(&mut *tx).await?;
            }
            let columns = serde_json::to_string(&meta.columns).map_err(encode)?;
            let header = serde_json::to_string(&meta.header).map_err(encode)?;
            for (key, value) in [
                ("format", FORMAT.to_owned()),
                ("input_sha256", meta.input_sha256.clone()),
                ("header", header),
                ("columns", columns),
                ("batch_size", meta.batch_size.to_string()),
                ("phase", Phase::Load.as_str().to_owned()),
                ("loaded", "0".to_owned()),
            ] {
                sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?)")
                    .bind(key)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        };
        filled.await.map_err(|e| CleanseError::work(dir, e))?;
        conn.close().await.map_err(|e| CleanseError::work(dir, e))?;
        std::fs::rename(&fresh, &db).map_err(|e| CleanseError::work_io(dir, e))?;
        Self::open_locked(dir, lock).await
    }

    /// Opens the work directory `dir`, whose `work.db` exists.
    pub async fn open(dir: &Path) -> Result<Work, CleanseError> {
        let lock = lock(dir)?;
        Self::open_locked(dir, lock).await
    }

    async fn open_locked(dir: &Path, lock: File) -> Result<Work, CleanseError> {
        let conn = connect(&Self::db_path(dir), false)
            .await
            .map_err(|e| CleanseError::work(dir, e))?;
        let mut work = Work {
            dir: dir.to_owned(),
            conn,
            _lock: lock,
        };
        let format = work.get("format").await?;
        if format != FORMAT {
            return Err(CleanseError::corrupt(
                dir,
                format!("was made by another version of simpul (format {format})"),
            ));
        }
        Ok(work)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the run is bound to.
    pub async fn meta(&mut self) -> Result<Meta, CleanseError> {
        let header = self.get("header").await?;
        let columns = self.get("columns").await?;
        let batch_size = self.get("batch_size").await?;
        let input_sha256 = self.get("input_sha256").await?;
        let corrupt =
            |what: &str| CleanseError::corrupt(&self.dir, format!("has an unreadable {what}"));
        Ok(Meta {
            input_sha256,
            header: serde_json::from_str(&header).map_err(|_| corrupt("header"))?,
            columns: serde_json::from_str(&columns).map_err(|_| corrupt("column map"))?,
            batch_size: batch_size.parse().map_err(|_| corrupt("batch size"))?,
        })
    }

    /// How far the run has come.
    pub async fn phase(&mut self) -> Result<Phase, CleanseError> {
        let text = self.get("phase").await?;
        Phase::parse(&text).ok_or_else(|| {
            CleanseError::corrupt(&self.dir, format!("names an unknown phase `{text}`"))
        })
    }

    /// Records that the run has come to `phase` (never back to an earlier one).
    pub async fn set_phase(&mut self, phase: Phase) -> Result<(), CleanseError> {
        let moved = async {
            let mut tx = begin(&mut self.conn).await?;
            advance_phase(&mut tx, phase).await?;
            tx.commit().await
        };
        moved.await.map_err(|e| CleanseError::work(&self.dir, e))
    }

    /// The rows loaded so far.
    pub async fn loaded(&mut self) -> Result<u64, CleanseError> {
        let text = self.get("loaded").await?;
        text.parse().map_err(|_| {
            CleanseError::corrupt(&self.dir, format!("has an unreadable row count `{text}`"))
        })
    }

    /// Adds `reports` and records `loaded` rows as loaded, in one transaction. A row already
    /// there is left as it is (it was read from the same line of the same file). A row with a
    /// well-formed NIK starts as its own person (`person` = its line), which the grouping
    /// then merges.
    pub async fn load(&mut self, reports: &[Report], loaded: u64) -> Result<(), CleanseError> {
        let written = async {
            let rows = reports
                .iter()
                .map(LoadRow::of)
                .collect::<Result<Vec<_>, _>>()?;
            let mut tx = begin(&mut self.conn).await?;
            for chunk in rows.chunks(INSERT_ROWS) {
                let mut insert = QueryBuilder::<Sqlite>::new(
                    "INSERT OR IGNORE INTO rows (line, fields, nik, nik_fault, name, name_unreadable,
                        name_key, birth_date, birth_date_unreadable, sex, sex_unreadable,
                        reported_on, reported_on_unreadable, complete, person) ",
                );
                insert.push_values(chunk, |mut b, r| {
                    b.push_bind(r.line)
                        .push_bind(r.fields.clone())
                        .push_bind(r.nik.clone())
                        .push_bind(r.nik_fault.clone())
                        .push_bind(r.name.clone())
                        .push_bind(r.name_unreadable)
                        .push_bind(r.name_key.clone())
                        .push_bind(r.birth_date.clone())
                        .push_bind(r.birth_date_unreadable)
                        .push_bind(r.sex)
                        .push_bind(r.sex_unreadable)
                        .push_bind(r.reported_on.clone())
                        .push_bind(r.reported_on_unreadable)
                        .push_bind(r.complete)
                        .push_bind(r.nik_fault.is_none().then_some(r.line));
                });
                insert.build().execute(&mut *tx).await?;
            }
            sqlx::query(
                "UPDATE meta SET value = CAST(MAX(CAST(value AS INTEGER), ?) AS TEXT)
                  WHERE key = 'loaded'",
            )
            .bind(line_i64(loaded))
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        };
        written.await.map_err(|e| CleanseError::work(&self.dir, e))
    }

    /// The connection, for the dedupe step's statements.
    pub fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// The batches not yet done, in order.
    pub async fn pending_batches(&mut self) -> Result<Vec<i64>, CleanseError> {
        sqlx::query_scalar("SELECT id FROM batches WHERE done = 0 ORDER BY id")
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| CleanseError::work(&self.dir, e))
    }

    /// Kept rows to verify in all, and those verified.
    pub async fn verify_counts(&mut self) -> Result<(u64, u64), CleanseError> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(rows), 0) AS total, COALESCE(SUM(rows * done), 0) AS done FROM batches",
        )
        .fetch_one(&mut self.conn)
        .await
        .map_err(|e| CleanseError::work(&self.dir, e))?;
        let get = |c: &str| row.try_get::<i64, _>(c).map(|n| n.max(0) as u64);
        Ok((
            get("total").map_err(|e| CleanseError::work(&self.dir, e))?,
            get("done").map_err(|e| CleanseError::work(&self.dir, e))?,
        ))
    }

    /// The items of batch `id`, in line order: what is sent of each kept row.
    pub async fn batch_items(&mut self, id: i64) -> Result<Vec<Item>, CleanseError> {
        let rows = sqlx::query(
            "SELECT line, nik, name, birth_date, sex FROM rows WHERE batch = ? ORDER BY line",
        )
        .bind(id)
        .fetch_all(&mut self.conn)
        .await
        .map_err(|e| CleanseError::work(&self.dir, e))?;
        rows.iter()
            .map(|r| {
                Ok(Item {
                    reference: r.try_get::<i64, _>("line")?.to_string(),
                    nik: r.try_get("nik")?,
                    full_name: r.try_get("name")?,
                    birth_date: r.try_get("birth_date")?,
                    sex: r.try_get("sex")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| CleanseError::work(&self.dir, e))
    }

    /// Writes the verdicts of batch `id` and marks it done, in one transaction; a batch
    /// already done is left as it is. Each verdict's `ref` is a line of the batch (verify.rs
    /// checks the answer first).
    pub async fn record_batch(
        &mut self,
        id: i64,
        verdicts: &[Verdict],
    ) -> Result<(), CleanseError> {
        let written = async {
            let mut tx = begin(&mut self.conn).await?;
            let done: Option<bool> = sqlx::query_scalar("SELECT done FROM batches WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if done != Some(false) {
                return tx.commit().await;
            }
            for v in verdicts {
                let line: i64 = v.reference.parse().unwrap_or(-1);
                let done = sqlx::query(
                    "UPDATE rows SET nik_valid = ?, found = ?, name_verdict = ?, name_similarity = ?,
                        birth_date_verdict = ?, sex_verdict = ?, citizenship = ?, deceased = ?
                     WHERE line = ? AND batch = ?",
                )
                .bind(v.nik_valid)
                .bind(v.found)
                .bind(v.name.as_str())
                .bind(v.name_similarity)
                .bind(v.birth_date.as_str())
                .bind(v.sex.as_str())
                .bind(v.citizenship.as_str())
                .bind(v.deceased)
                .bind(line)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(sqlx::Error::Protocol(format!(
                        "the answer's ref {:?} is no row of batch {id}",
                        v.reference
                    )));
                }
            }
            sqlx::query("UPDATE batches SET done = 1 WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        };
        written.await.map_err(|e| CleanseError::work(&self.dir, e))
    }

    /// Up to `limit` rows after line `after`, in line order, with what the outputs need.
    pub async fn rows_after(
        &mut self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredRow>, CleanseError> {
        let rows = sqlx::query(
            "SELECT r.line, r.fields, r.nik_fault, r.kept_line, r.nik = k.nik AS same_nik,
                    r.sex, r.birth_date, r.name_unreadable, r.birth_date_unreadable,
                    r.sex_unreadable, r.reported_on_unreadable,
                    r.nik_valid, r.found, r.name_verdict, r.name_similarity,
                    r.birth_date_verdict, r.sex_verdict, r.citizenship, r.deceased
               FROM rows r LEFT JOIN rows k ON k.line = r.kept_line
              WHERE r.line > ?
              ORDER BY r.line
              LIMIT ?",
        )
        .bind(line_i64(after))
        .bind(limit)
        .fetch_all(&mut self.conn)
        .await
        .map_err(|e| CleanseError::work(&self.dir, e))?;
        rows.iter()
            .map(|r| self.stored_row(r))
            .collect::<Result<_, _>>()
    }

    fn stored_row(&self, r: &SqliteRow) -> Result<StoredRow, CleanseError> {
        let read = || -> Result<StoredRow, sqlx::Error> {
            let fields: String = r.try_get("fields")?;
            let verdict = match r.try_get::<Option<bool>, _>("nik_valid")? {
                None => None,
                Some(nik_valid) => Some(
                    Verdict::from_stored(
                        r.try_get::<i64, _>("line")?.to_string(),
                        nik_valid,
                        r.try_get("found")?,
                        r.try_get("name_verdict")?,
                        r.try_get("name_similarity")?,
                        r.try_get("birth_date_verdict")?,
                        r.try_get("sex_verdict")?,
                        r.try_get("citizenship")?,
                        r.try_get("deceased")?,
                    )
                    .ok_or_else(|| sqlx::Error::Protocol("an unknown stored verdict".into()))?,
                ),
            };
            Ok(StoredRow {
                line: r.try_get::<i64, _>("line")?.max(0) as u64,
                fields: serde_json::from_str(&fields)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                nik_fault: r.try_get("nik_fault")?,
                kept_line: r
                    .try_get::<Option<i64>, _>("kept_line")?
                    .map(|l| l.max(0) as u64),
                same_nik_as_kept: r.try_get::<Option<bool>, _>("same_nik")?.unwrap_or(false),
                sex: r.try_get("sex")?,
                birth_date: r.try_get("birth_date")?,
                verdict,
                unreadable: Unreadable {
                    full_name: r.try_get("name_unreadable")?,
                    birth_date: r.try_get("birth_date_unreadable")?,
                    sex: r.try_get("sex_unreadable")?,
                    reported_on: r.try_get("reported_on_unreadable")?,
                },
            })
        };
        read().map_err(|e| CleanseError::work(&self.dir, e))
    }

    /// Closes the database and removes the work directory: the files a run makes there, then
    /// the directory if nothing else is in it (a `--work` directory that held other files
    /// keeps them).
    pub async fn remove(self) -> Result<(), CleanseError> {
        let Work {
            dir,
            conn,
            _lock: lock,
        } = self;
        conn.close()
            .await
            .map_err(|e| CleanseError::work(&dir, e))?;
        let io = |e| CleanseError::work_io(&dir, e);
        remove_db_files(&Self::db_path(&dir)).map_err(io)?;
        remove_leftovers(&dir).map_err(io)?;
        match std::fs::remove_file(dir.join(LOCK_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        drop(lock);
        match std::fs::remove_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                tracing::warn!("{}: left in place, it holds other files", dir.display());
                Ok(())
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        }
    }

    /// Closes the database, keeping the directory.
    pub async fn close(self) -> Result<(), CleanseError> {
        let dir = self.dir;
        self.conn
            .close()
            .await
            .map_err(|e| CleanseError::work(&dir, e))
    }

    async fn get(&mut self, key: &str) -> Result<String, CleanseError> {
        let value: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&mut self.conn)
            .await
            .map_err(|e| CleanseError::work(&self.dir, e))?;
        value.ok_or_else(|| CleanseError::corrupt(&self.dir, format!("lacks its `{key}`")))
    }
}

/// A write transaction that takes the database's write lock at once, so what it reads is
/// what it changes: a step checks inside it that it is still to be done.
pub async fn begin(
    conn: &mut SqliteConnection,
) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>, sqlx::Error> {
    conn.begin_with("BEGIN IMMEDIATE").await
}

/// The phase recorded, read inside a transaction.
pub async fn current_phase(conn: &mut SqliteConnection) -> Result<Option<Phase>, sqlx::Error> {
    let text: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'phase'")
        .fetch_optional(conn)
        .await?;
    Ok(text.as_deref().and_then(Phase::parse))
}

/// Moves the recorded phase forward to `to`; a later phase recorded stays.
pub async fn advance_phase(conn: &mut SqliteConnection, to: Phase) -> Result<(), sqlx::Error> {
    let now = current_phase(&mut *conn).await?;
    let rank = |p: Phase| Phase::ALL.iter().position(|q| *q == p);
    if now.and_then(rank) < rank(to) {
        sqlx::query("UPDATE meta SET value = ? WHERE key = 'phase'")
            .bind(to.as_str())
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Rows per INSERT while loading: a statement is a round trip to sqlx's SQLite thread, so
/// one per 64 rows rather than one per row; 64 × 15 parameters stays far below SQLite's
/// limit of 32,766.
const INSERT_ROWS: usize = 64;

/// One report as its row is stored.
struct LoadRow {
    line: i64,
    fields: String,
    nik: String,
    nik_fault: Option<String>,
    name: Option<String>,
    name_unreadable: bool,
    name_key: Option<String>,
    birth_date: Option<String>,
    birth_date_unreadable: bool,
    sex: Option<&'static str>,
    sex_unreadable: bool,
    reported_on: Option<String>,
    reported_on_unreadable: bool,
    complete: u8,
}

impl LoadRow {
    fn of(r: &Report) -> Result<LoadRow, sqlx::Error> {
        let name = r.name.read();
        let name_key = name
            .map(|n| contracts::names::canonical(n).join(" "))
            .filter(|k| !k.is_empty());
        let complete = u8::from(!r.nik.is_empty())
            + u8::from(name.is_some())
            + u8::from(r.birth_date.read().is_some())
            + u8::from(r.sex.read().is_some())
            + u8::from(r.reported_on.read().is_some());
        let nik_fault = match contracts::nik::check(&r.nik) {
            Ok(_) => None,
            Err(_) if r.nik.is_empty() => Some("no NIK".to_owned()),
            Err(fault) => Some(fault.to_string()),
        };
        Ok(LoadRow {
            line: line_i64(r.line),
            fields: serde_json::to_string(&r.fields).map_err(encode)?,
            nik: r.nik.clone(),
            nik_fault,
            name: name.cloned(),
            name_unreadable: r.name.unreadable(),
            name_key,
            birth_date: r.birth_date.read().map(|d| d.to_string()),
            birth_date_unreadable: r.birth_date.unreadable(),
            sex: r.sex.read().map(|s| s.as_str()),
            sex_unreadable: r.sex.unreadable(),
            reported_on: r.reported_on.read().map(|d| d.to_string()),
            reported_on_unreadable: r.reported_on.unreadable(),
            complete,
        })
    }
}

/// A value that cannot be stored as JSON.
fn encode(e: serde_json::Error) -> sqlx::Error {
    sqlx::Error::Encode(Box::new(e))
}

/// A line number as SQLite stores it.
fn line_i64(line: u64) -> i64 {
    i64::try_from(line).unwrap_or(i64::MAX)
}

/// One connection to the database at `path`: WAL, so a killed run loses at most the
/// transaction it was in.
async fn connect(path: &Path, create: bool) -> Result<SqliteConnection, sqlx::Error> {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(create)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        // The grouping statements take seconds on millions of rows by design: no slow-
        // statement warnings on the operator's terminal.
        .disable_statement_logging()
        .connect()
        .await
}

/// Removes the half-made databases of earlier attempts in `dir`.
fn remove_leftovers(dir: &Path) -> std::io::Result<()> {
    let prefix = format!("{DB_FILE}.new");
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            match std::fs::remove_file(entry.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Removes a database file and its WAL and shared-memory files, those that exist.
fn remove_db_files(db: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(PathBuf::from(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}
