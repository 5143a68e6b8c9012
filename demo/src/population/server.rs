//! Writing a dataset into a schema of a database server (PostgreSQL, MySQL/MariaDB).

use super::*;

/// A database server to seed a dataset into (`simpul up --backend postgres`): the dataset's
/// table goes into `schema`, a PostgreSQL schema or a MySQL/MariaDB database, so each member
/// keeps its own namespace on one shared demo server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTarget {
    /// `postgres://…` or `mysql://…`/`mariadb://…`. For PostgreSQL the database in the URL
    /// is created if it is missing.
    pub url: String,
    /// The schema (PostgreSQL) or database (MySQL/MariaDB): a plain identifier.
    pub schema: String,
}

/// The SQL that differs between the two servers; everything else is one code path.
#[derive(Clone, Copy)]
pub(super) struct ServerDialect {
    pub(super) create_schema: &'static str,
    /// `{s}` is the schema, `{t}` the table.
    pub(super) rename: &'static str,
}

pub(super) const POSTGRES: ServerDialect = ServerDialect {
    create_schema: "CREATE SCHEMA IF NOT EXISTS {s}",
    rename: "ALTER TABLE {s}.{t}_seeding RENAME TO {t}",
};

pub(super) const MYSQL: ServerDialect = ServerDialect {
    create_schema: "CREATE DATABASE IF NOT EXISTS {s} CHARACTER SET utf8mb4",
    rename: "RENAME TABLE {s}.{t}_seeding TO {s}.{t}",
};

/// Column types both servers accept. Dates stay `YYYY-MM-DD` text as in SQLite, so the
/// demo's statements (which select them as text) run unchanged on every backend; `deceased`
/// is a real BOOLEAN (a `TINYINT(1)` on MySQL), which the adapters read as the same JSON.
pub(super) fn server_schema(
    dataset: Dataset,
) -> (&'static str, &'static [&'static str], Option<&'static str>) {
    match dataset {
        Dataset::Residents => (
            "nik VARCHAR(32) PRIMARY KEY, full_name VARCHAR(200) NOT NULL, sex CHAR(1) NOT NULL CHECK (sex IN ('M','F')), birth_date VARCHAR(10) NOT NULL, province VARCHAR(64) NOT NULL, citizenship VARCHAR(3) NOT NULL CHECK (citizenship IN ('WNI','WNA')), deceased BOOLEAN NOT NULL",
            &[
                "nik",
                "full_name",
                "sex",
                "birth_date",
                "province",
                "citizenship",
                "deceased",
            ],
            None,
        ),
        Dataset::Placements => (
            "id BIGINT PRIMARY KEY, nik VARCHAR(32) NOT NULL, country VARCHAR(2) NOT NULL, agency VARCHAR(200) NOT NULL, occupation VARCHAR(100) NOT NULL, status VARCHAR(16) NOT NULL CHECK (status IN ('active','completed')), start_date VARCHAR(10) NOT NULL, end_date VARCHAR(10)",
            &[
                "id",
                "nik",
                "country",
                "agency",
                "occupation",
                "status",
                "start_date",
                "end_date",
            ],
            Some("nik"),
        ),
        Dataset::Participants => (
            "nik VARCHAR(32) PRIMARY KEY, status VARCHAR(16) NOT NULL CHECK (status IN ('active','inactive')), programs VARCHAR(64) NOT NULL, paid_until VARCHAR(10) NOT NULL, country VARCHAR(2)",
            &["nik", "status", "programs", "paid_until", "country"],
            None,
        ),
        Dataset::Reports => (
            "id BIGINT PRIMARY KEY, nik VARCHAR(32) NOT NULL, full_name VARCHAR(200) NOT NULL, country VARCHAR(2) NOT NULL, city VARCHAR(100) NOT NULL, reported_on VARCHAR(10) NOT NULL",
            &["id", "nik", "full_name", "country", "city", "reported_on"],
            Some("nik"),
        ),
    }
}

/// One value of a seeded row.
pub(super) enum Cell {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Bool(bool),
}

/// Row `i` of `dataset`, in the column order of [`server_schema`].
pub(super) fn server_row(pop: &Population, dataset: Dataset, i: usize) -> Vec<Cell> {
    use Cell::{Bool, Int, OptText, Text};
    match dataset {
        Dataset::Residents => {
            let r = &pop.residents[i];
            vec![
                Text(r.nik.clone()),
                Text(r.full_name.clone()),
                Text(if r.female { "F" } else { "M" }.into()),
                Text(r.birth.to_string()),
                Text(province_name(r.province).into()),
                Text(if r.wna { "WNA" } else { "WNI" }.into()),
                Bool(r.deceased),
            ]
        }
        Dataset::Placements => {
            let p = &pop.placements[i];
            vec![
                Int(p.id),
                Text(pop.residents[p.person].nik.clone()),
                Text(p.country.into()),
                Text(p.agency.into()),
                Text(p.occupation.into()),
                Text(if p.active { "active" } else { "completed" }.into()),
                Text(p.start.to_string()),
                OptText(p.end.map(|d| d.to_string())),
            ]
        }
        Dataset::Participants => {
            let p = &pop.participants[i];
            vec![
                Text(pop.residents[p.person].nik.clone()),
                Text(if p.active { "active" } else { "inactive" }.into()),
                Text(p.programs.into()),
                Text(p.paid_until.to_string()),
                OptText(p.country.map(str::to_owned)),
            ]
        }
        Dataset::Reports => {
            let r = &pop.reports[i];
            vec![
                Int(r.id),
                Text(r.nik.clone()),
                Text(r.full_name.clone()),
                Text(r.country.into()),
                Text(r.city.clone()),
                Text(r.reported_on.to_string()),
            ]
        }
    }
}

/// Bound parameters per INSERT: both servers allow 65,535 per statement.
pub(super) const MAX_SERVER_PARAMS: usize = 60_000;

pub(super) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 63
}

/// Writes one dataset into `target`'s schema and returns the rows written, or `None` when
/// the table is already there (seeding never overwrites a member's data).
///
/// The rows go to `<table>_seeding` first, in one transaction, and the table is renamed
/// only when complete, so an interrupted seed never leaves a half-filled table that looks
/// complete; a leftover `_seeding` table from an interrupted run is replaced.
pub async fn write_dataset_server(
    pop: &Population,
    dataset: Dataset,
    target: &ServerTarget,
) -> Result<Option<usize>, SeedError> {
    let at = format!("{}.{}", target.schema, dataset.table());
    let err = |source| SeedError::Server {
        table: at.clone(),
        source,
    };
    if !is_identifier(&target.schema) {
        return Err(err(sqlx::Error::Configuration(
            "the schema must be a plain identifier".into(),
        )));
    }
    let scheme = target.url.split_once("://").map(|(s, _)| s);
    match scheme {
        Some("postgres" | "postgresql") => {
            ensure_postgres_database(&target.url).await.map_err(err)?;
            // `DROP TABLE IF EXISTS` of a missing table is a NOTICE: not worth a log line.
            let options =
                <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&target.url)
                    .map_err(err)?
                    .options([("client_min_messages", "warning")]);
            let mut conn = options.connect().await.map_err(err)?;
            let written =
                fill_server::<sqlx::Postgres>(&mut conn, pop, dataset, &target.schema, POSTGRES)
                    .await;
            let _ = conn.close().await;
            written.map_err(err)
        }
        Some("mysql" | "mariadb") => {
            let mut conn = sqlx::MySqlConnection::connect(&target.url)
                .await
                .map_err(err)?;
            let written =
                fill_server::<sqlx::MySql>(&mut conn, pop, dataset, &target.schema, MYSQL).await;
            let _ = conn.close().await;
            written.map_err(err)
        }
        _ => Err(err(sqlx::Error::Configuration(
            "not a postgres:// or mysql:// URL".into(),
        ))),
    }
}

/// True when `target` already holds the dataset's table (so `simpul up` leaves it alone and
/// need not generate the population). For PostgreSQL the URL's database is created first if
/// it is missing.
pub async fn server_has_dataset(
    target: &ServerTarget,
    dataset: Dataset,
) -> Result<bool, SeedError> {
    let table = dataset.table();
    let err = |source| SeedError::Server {
        table: format!("{}.{table}", target.schema),
        source,
    };
    if !is_identifier(&target.schema) {
        return Err(err(sqlx::Error::Configuration(
            "the schema must be a plain identifier".into(),
        )));
    }
    // Safe to assert: the checked schema identifier and a constant table name.
    let count = AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{}' AND table_name = '{table}'",
        target.schema
    ));
    let n: i64 = match target.url.split_once("://").map(|(s, _)| s) {
        Some("postgres" | "postgresql") => {
            ensure_postgres_database(&target.url).await.map_err(err)?;
            let mut conn = sqlx::PgConnection::connect(&target.url)
                .await
                .map_err(err)?;
            let n = sqlx::query_scalar(count).fetch_one(&mut conn).await;
            let _ = conn.close().await;
            n.map_err(err)?
        }
        Some("mysql" | "mariadb") => {
            let mut conn = sqlx::MySqlConnection::connect(&target.url)
                .await
                .map_err(err)?;
            let n = sqlx::query_scalar(count).fetch_one(&mut conn).await;
            let _ = conn.close().await;
            n.map_err(err)?
        }
        _ => {
            return Err(err(sqlx::Error::Configuration(
                "not a postgres:// or mysql:// URL".into(),
            )));
        }
    };
    Ok(n > 0)
}

/// Creates the database the PostgreSQL URL names, if it is missing, by way of the server's
/// `postgres` maintenance database.
pub(super) async fn ensure_postgres_database(url: &str) -> Result<(), sqlx::Error> {
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(url)?;
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    if !is_identifier(&name) {
        return Err(sqlx::Error::Configuration(
            format!("database name `{name}`: use letters, digits and `_` only").into(),
        ));
    }
    let mut conn = options.database("postgres").connect().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        // Safe to assert: `name` is checked to be a plain identifier above.
        let created = sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await;
        match created {
            // 42P04: created meanwhile by someone else, which is just as good.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            other => {
                other?;
            }
        }
    }
    let _ = conn.close().await;
    Ok(())
}

/// The one code path for both servers: schema, staging table, batched multi-row INSERTs
/// with bound values (placeholders written by sqlx's `QueryBuilder` in the server's own
/// style), index, rename.
pub(super) async fn fill_server<DB>(
    conn: &mut DB::Connection,
    pop: &Population,
    dataset: Dataset,
    schema: &str,
    dialect: ServerDialect,
) -> Result<Option<usize>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    use sqlx::Row;
    let table = dataset.table();
    // Safe to assert in this function: the texts are constants with the checked schema
    // identifier and a constant table name formatted in; values are always bound.
    let sql = |text: String| AssertSqlSafe(text);
    let fill = |template: &str| template.replace("{s}", schema).replace("{t}", table);
    let existing = sqlx::query(sql(format!(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{schema}' AND table_name = '{table}'"
    )))
    .fetch_one(&mut *conn)
    .await?
    .try_get::<i64, _>(0usize)?;
    if existing > 0 {
        return Ok(None);
    }
    let (columns_ddl, columns, index) = server_schema(dataset);
    sqlx::query(sql(fill(dialect.create_schema)))
        .execute(&mut *conn)
        .await?;
    sqlx::query(sql(format!(
        "DROP TABLE IF EXISTS {schema}.{table}_seeding"
    )))
    .execute(&mut *conn)
    .await?;
    sqlx::query(sql(format!(
        "CREATE TABLE {schema}.{table}_seeding ({columns_ddl})"
    )))
    .execute(&mut *conn)
    .await?;
    let rows = pop.rows(dataset);
    let per_batch = MAX_SERVER_PARAMS / columns.len();
    let prefix = format!(
        "INSERT INTO {schema}.{table}_seeding ({}) ",
        columns.join(", ")
    );
    sqlx::query(sql("BEGIN".into())).execute(&mut *conn).await?;
    let mut progress = super::Progress::new(format!("{schema}.{table}"), rows);
    let mut start = 0;
    while start < rows {
        progress.at(start);
        let end = (start + per_batch).min(rows);
        let mut insert = sqlx::QueryBuilder::<DB>::new(prefix.as_str());
        insert.push_values(start..end, |mut b, i| {
            for cell in server_row(pop, dataset, i) {
                match cell {
                    Cell::Text(v) => b.push_bind(v),
                    Cell::OptText(v) => b.push_bind(v),
                    Cell::Int(v) => b.push_bind(v),
                    Cell::Bool(v) => b.push_bind(v),
                };
            }
        });
        insert.build().execute(&mut *conn).await?;
        start = end;
    }
    sqlx::query(sql("COMMIT".into()))
        .execute(&mut *conn)
        .await?;
    if let Some(column) = index {
        // Indexing after the inserts is faster than maintaining the index row by row.
        sqlx::query(sql(format!(
            "CREATE INDEX {table}_{column} ON {schema}.{table}_seeding ({column})"
        )))
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(sql(fill(dialect.rename)))
        .execute(&mut *conn)
        .await?;
    tracing::debug!(dataset = table, rows, schema, "seeded on a database server");
    Ok(Some(rows))
}
