//! Writing a dataset into a member's SQLite file.

use super::*;

/// Why a dataset could not be written; every variant names the database file.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The database already exists: seeding never overwrites data.
    #[error("refusing to seed {}: the file already exists", path.display())]
    Exists {
        /// The database file.
        path: PathBuf,
    },
    /// A file-system operation (creating the directory, renaming the file) failed.
    #[error("cannot seed {}: {source}", path.display())]
    Io {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The database server failed while writing the dataset (the table is named, never the
    /// URL, which may hold a password).
    #[error("cannot seed {table}: {source}")]
    Server {
        /// `schema.table`.
        table: String,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// SQLite failed while writing the dataset.
    #[error("cannot seed {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
}

pub(super) const RESIDENTS_SCHEMA: &str = "CREATE TABLE residents (nik TEXT PRIMARY KEY, full_name TEXT NOT NULL, sex TEXT NOT NULL CHECK (sex IN ('M','F')), birth_date TEXT NOT NULL, province TEXT NOT NULL, citizenship TEXT NOT NULL CHECK (citizenship IN ('WNI','WNA')), deceased INTEGER NOT NULL CHECK (deceased IN (0,1)))";
pub(crate) const PLACEMENTS_SCHEMA: &str = "CREATE TABLE placements (id INTEGER PRIMARY KEY, nik TEXT NOT NULL, country TEXT NOT NULL, agency TEXT NOT NULL, occupation TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('active','completed')), start_date TEXT NOT NULL, end_date TEXT)";
pub(super) const PLACEMENTS_INDEX: &str = "CREATE INDEX placements_nik ON placements(nik)";
/// BP2MI's change table (docs/EVENTS.md), empty when seeded: SISKOP2MI writes one row per
/// placement that starts or ends, in the same transaction as the change, and BP2MI's gateway
/// emits each row as a `placement.changed` event. AUTOINCREMENT: a row number is never given
/// twice, even after the newest rows were deleted, so a row written later always comes after
/// every row emitted.
pub(crate) const PLACEMENT_CHANGES_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS placement_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, placement TEXT NOT NULL, kind TEXT NOT NULL, changed_on TEXT NOT NULL)";
/// The change table's name.
pub(super) const CHANGE_TABLE: &str = "placement_changes";
pub(super) const PARTICIPANTS_SCHEMA: &str = "CREATE TABLE participants (nik TEXT PRIMARY KEY, status TEXT NOT NULL CHECK (status IN ('active','inactive')), programs TEXT NOT NULL, paid_until TEXT NOT NULL, country TEXT)";
pub(super) const REPORTS_SCHEMA: &str = "CREATE TABLE reports (id INTEGER PRIMARY KEY, nik TEXT NOT NULL, full_name TEXT NOT NULL, country TEXT NOT NULL, city TEXT NOT NULL, reported_on TEXT NOT NULL)";
pub(super) const REPORTS_INDEX: &str = "CREATE INDEX reports_nik ON reports(nik)";

/// Bound parameters per statement: 999 was SQLite's limit before 3.32 and is still the limit
/// of some system builds, so staying under it works with any SQLite.
pub(super) const MAX_PARAMS: usize = 999;

/// Writes one dataset into a new SQLite database file at `path` (parent directories are
/// created) and returns the number of rows written.
///
/// The rows go to `<path>.tmp` first (WAL journal, one transaction, multi-row INSERTs with
/// bound parameters) and the file is renamed to `path` only once complete and closed, so an
/// interrupted seed never leaves a half-filled database that looks complete; a leftover
/// `.tmp` from an interrupted run is replaced. Refuses with [`SeedError::Exists`] if `path`
/// exists, because seeding must never overwrite a member's data.
pub async fn write_dataset(
    pop: &Population,
    dataset: Dataset,
    path: &Path,
) -> Result<usize, SeedError> {
    let io = |source| SeedError::Io {
        path: path.to_path_buf(),
        source,
    };
    let exists = || SeedError::Exists {
        path: path.to_path_buf(),
    };
    if tokio::fs::try_exists(path).await.map_err(io)? {
        return Err(exists());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
    }
    let tmp = with_suffix(path, ".tmp");
    remove_database(&tmp).await.map_err(io)?;

    let written = match fill_file(pop, dataset, &tmp).await {
        Ok(rows) => rows,
        Err(source) => {
            // Best effort: the error being reported matters more than the cleanup's.
            let _ = remove_database(&tmp).await;
            return Err(SeedError::Sqlite {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    // Someone may have seeded the same path meanwhile; rename would silently replace it.
    if tokio::fs::try_exists(path).await.map_err(io)? {
        let _ = remove_database(&tmp).await;
        return Err(exists());
    }
    tokio::fs::rename(&tmp, path).await.map_err(io)?;
    tracing::debug!(dataset = dataset.table(), rows = written, path = %path.display(), "seeded");
    Ok(written)
}

/// Adds BP2MI's change table, empty, to the placements database at `path` when it has none
/// (one seeded before the demo had it); whether it was missing. `simpul up` calls it before
/// the gateways start.
pub async fn ensure_change_table(path: &Path) -> Result<bool, SeedError> {
    let err = |source| SeedError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .map_err(err)?;
    let made = add_change_table(&mut conn).await;
    let closed = conn.close().await;
    let made = made.map_err(err)?;
    closed.map_err(err)?;
    Ok(made)
}

async fn add_change_table(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    let there: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?")
            .bind(CHANGE_TABLE)
            .fetch_one(&mut *conn)
            .await?;
    if there > 0 {
        return Ok(false);
    }
    sqlx::query(PLACEMENT_CHANGES_SCHEMA)
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes a database file and its WAL companions, if present.
pub(super) async fn remove_database(path: &Path) -> std::io::Result<()> {
    for file in [
        path.to_path_buf(),
        with_suffix(path, "-wal"),
        with_suffix(path, "-shm"),
    ] {
        match tokio::fs::remove_file(&file).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Creates the database at `path`, fills it and closes it. Closing the last connection
/// checkpoints the WAL into the file and deletes it, so the file alone is the database when
/// it is renamed (and it stays in WAL mode: that is recorded in the file).
pub(super) async fn fill_file(
    pop: &Population,
    dataset: Dataset,
    path: &Path,
) -> Result<usize, sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    let mut conn = options.connect().await?;
    let filled = fill(&mut conn, pop, dataset).await;
    let closed = conn.close().await;
    let rows = filled?;
    closed?;
    Ok(rows)
}

pub(super) async fn fill(
    conn: &mut SqliteConnection,
    pop: &Population,
    dataset: Dataset,
) -> Result<usize, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let rows = match dataset {
        Dataset::Residents => {
            sqlx::query(RESIDENTS_SCHEMA).execute(&mut *tx).await?;
            insert(
                &mut tx,
                "INSERT INTO residents (nik, full_name, sex, birth_date, province, citizenship, deceased)",
                7,
                pop.residents.len(),
                |args, i| {
                    let r = &pop.residents[i];
                    args.add(r.nik.as_str())?;
                    args.add(r.full_name.as_str())?;
                    args.add(if r.female { "F" } else { "M" })?;
                    args.add(r.birth.to_string())?;
                    args.add(province_name(r.province))?;
                    args.add(if r.wna { "WNA" } else { "WNI" })?;
                    args.add(i64::from(r.deceased))
                },
            )
            .await?
        }
        Dataset::Placements => {
            sqlx::query(PLACEMENTS_SCHEMA).execute(&mut *tx).await?;
            let rows = insert(
                &mut tx,
                "INSERT INTO placements (id, nik, country, agency, occupation, status, start_date, end_date)",
                8,
                pop.placements.len(),
                |args, i| {
                    let p = &pop.placements[i];
                    args.add(p.id)?;
                    args.add(pop.residents[p.person].nik.as_str())?;
                    args.add(p.country)?;
                    args.add(p.agency)?;
                    args.add(p.occupation)?;
                    args.add(if p.active { "active" } else { "completed" })?;
                    args.add(p.start.to_string())?;
                    args.add(p.end.map(|d| d.to_string()))
                },
            )
            .await?;
            // Indexing after the inserts is faster than maintaining the index row by row.
            sqlx::query(PLACEMENTS_INDEX).execute(&mut *tx).await?;
            sqlx::query(PLACEMENT_CHANGES_SCHEMA)
                .execute(&mut *tx)
                .await?;
            rows
        }
        Dataset::Participants => {
            sqlx::query(PARTICIPANTS_SCHEMA).execute(&mut *tx).await?;
            insert(
                &mut tx,
                "INSERT INTO participants (nik, status, programs, paid_until, country)",
                5,
                pop.participants.len(),
                |args, i| {
                    let p = &pop.participants[i];
                    args.add(pop.residents[p.person].nik.as_str())?;
                    args.add(if p.active { "active" } else { "inactive" })?;
                    args.add(p.programs)?;
                    args.add(p.paid_until.to_string())?;
                    args.add(p.country)
                },
            )
            .await?
        }
        Dataset::Reports => {
            sqlx::query(REPORTS_SCHEMA).execute(&mut *tx).await?;
            let rows = insert(
                &mut tx,
                "INSERT INTO reports (id, nik, full_name, country, city, reported_on)",
                6,
                pop.reports.len(),
                |args, i| {
                    let r = &pop.reports[i];
                    args.add(r.id)?;
                    args.add(r.nik.as_str())?;
                    args.add(r.full_name.as_str())?;
                    args.add(r.country)?;
                    args.add(r.city.as_str())?;
                    args.add(r.reported_on.to_string())
                },
            )
            .await?;
            sqlx::query(REPORTS_INDEX).execute(&mut *tx).await?;
            rows
        }
    };
    tx.commit().await?;
    Ok(rows)
}

/// Inserts `rows` rows with multi-row INSERTs of as many rows as fit under [`MAX_PARAMS`].
/// `bind(args, i)` adds row `i`'s `columns` values. The statement text holds only `?`
/// placeholders (never values), and the full-batch text is built once so SQLite prepares it
/// once.
pub(super) async fn insert<F>(
    conn: &mut SqliteConnection,
    prefix: &str,
    columns: usize,
    rows: usize,
    mut bind: F,
) -> Result<usize, sqlx::Error>
where
    F: FnMut(&mut SqliteArguments, usize) -> Result<(), sqlx::error::BoxDynError>,
{
    let per_batch = MAX_PARAMS / columns;
    let full: Arc<str> = insert_sql(prefix, columns, per_batch).into();
    let table = prefix
        .strip_prefix("INSERT INTO ")
        .and_then(|t| t.split(' ').next())
        .unwrap_or(prefix);
    let mut progress = super::Progress::new(table, rows);
    let mut start = 0;
    while start < rows {
        progress.at(start);
        let count = per_batch.min(rows - start);
        let sql: Arc<str> = if count == per_batch {
            Arc::clone(&full)
        } else {
            insert_sql(prefix, columns, count).into()
        };
        let mut args = SqliteArguments::default();
        for i in start..start + count {
            bind(&mut args, i).map_err(sqlx::Error::Encode)?;
        }
        // Safe to assert: the text is our constant prefix and `?` placeholders only.
        sqlx::query_with(AssertSqlSafe(sql), args)
            .execute(&mut *conn)
            .await?;
        start += count;
    }
    Ok(rows)
}

pub(super) fn insert_sql(prefix: &str, columns: usize, rows: usize) -> String {
    let tuple = format!("({})", vec!["?"; columns].join(","));
    let mut sql = String::with_capacity(prefix.len() + 8 + rows * (tuple.len() + 1));
    sql.push_str(prefix);
    sql.push_str(" VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&tuple);
    }
    sql
}
