//! Fixtures shared by the backend tests: the demo's four tables with a few known people in
//! a fresh SQLite file, PostgreSQL schema or MariaDB/MySQL database; the demo's bindings;
//! a TCP proxy that can stop a server's port; and a small loopback HTTP server.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use adapters::{Adapter, SqlAdapter, SqlSpec};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, MySqlConnection, PgConnection, SqliteConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// In all four datasets: a living citizen, placed in Malaysia, insured, reported twice.
pub const ALL_FOUR: &str = "3171011701900001";
/// A foreign national, deceased, with a completed placement and lapsed insurance.
pub const WNA_DECEASED: &str = "3171015701900002";
/// Only in the civil registry.
pub const DUKCAPIL_ONLY: &str = "3273012505850003";
/// In no dataset.
pub const UNKNOWN: &str = "3171010101010009";
/// The people every contract test asks about.
pub const PEOPLE: [&str; 4] = [ALL_FOUR, WNA_DECEASED, DUKCAPIL_ONLY, UNKNOWN];

/// One DDL text for all three engines: BOOLEAN is a real boolean on PostgreSQL,
/// `TINYINT(1)` on MariaDB/MySQL and an integer on SQLite, which is the point.
const SCHEMA: [&str; 4] = [
    "CREATE TABLE residents (nik VARCHAR(32) PRIMARY KEY, citizenship VARCHAR(3) NOT NULL, deceased BOOLEAN NOT NULL)",
    "CREATE TABLE placements (id INTEGER PRIMARY KEY, nik VARCHAR(32) NOT NULL, country VARCHAR(2) NOT NULL, agency VARCHAR(200) NOT NULL, status VARCHAR(16) NOT NULL, start_date VARCHAR(10) NOT NULL)",
    "CREATE TABLE participants (nik VARCHAR(32) PRIMARY KEY, status VARCHAR(16) NOT NULL, programs VARCHAR(64) NOT NULL)",
    "CREATE TABLE reports (id INTEGER PRIMARY KEY, nik VARCHAR(32) NOT NULL, country VARCHAR(2) NOT NULL, reported_on VARCHAR(10) NOT NULL)",
];

const ROWS: [&str; 4] = [
    "INSERT INTO residents VALUES ('3171011701900001', 'WNI', FALSE), ('3171015701900002', 'WNA', TRUE), ('3273012505850003', 'WNI', FALSE)",
    "INSERT INTO placements VALUES (1, '3171011701900001', 'SA', 'PT Maju Jaya', 'completed', '2019-01-10'), (2, '3171011701900001', 'MY', 'PT Sinar Abadi', 'active', '2023-03-01'), (3, '3171015701900002', 'HK', 'PT Lama', 'completed', '2015-05-05')",
    "INSERT INTO participants VALUES ('3171011701900001', 'active', 'JKK,JKM,JHT'), ('3171015701900002', 'inactive', '')",
    "INSERT INTO reports VALUES (1, '3171011701900001', 'MY', '2023-04-01'), (2, '3171011701900001', 'MY', '2024-02-11'), (3, '3171011701900O01', 'SA', '2022-01-01')",
];

/// The four contracts of the demo federation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contract {
    Citizenship,
    Placement,
    Insurance,
    Residence,
}

impl Contract {
    pub const ALL: [Contract; 4] = [
        Contract::Citizenship,
        Contract::Placement,
        Contract::Insurance,
        Contract::Residence,
    ];

    /// The binding from the demo's config.toml, without `database`: the statements are the
    /// same text on every backend.
    pub fn binding(self) -> Value {
        match self {
            Contract::Citizenship => json!({
                "statement": "SELECT citizenship, deceased FROM residents WHERE nik = :nik",
                "columns": {"citizenship": "text", "deceased": "bool"},
                "found": {"registered": true},
                "not_found": {"registered": false, "citizenship": "unknown", "deceased": false},
            }),
            Contract::Placement => json!({
                "statement": "SELECT country, agency, start_date AS since FROM placements WHERE nik = :nik AND status = 'active' ORDER BY start_date DESC LIMIT 1",
                "columns": {"country": "text", "agency": "text", "since": "text"},
                "found": {"placed": true},
                "not_found": {"placed": false},
            }),
            Contract::Insurance => json!({
                "statement": "SELECT status = 'active' AS active, programs FROM participants WHERE nik = :nik",
                "columns": {"active": "bool", "programs": "list"},
                "found": {"enrolled": true},
                "not_found": {"enrolled": false, "active": false, "programs": []},
            }),
            Contract::Residence => json!({
                "statement": "SELECT country, reported_on, (SELECT COUNT(*) FROM reports r2 WHERE r2.nik = r.nik) AS reports FROM reports r WHERE r.nik = :nik ORDER BY reported_on DESC LIMIT 1",
                "columns": {"country": "text", "reported_on": "text", "reports": "integer"},
                "found": {"reported": true},
                "not_found": {"reported": false},
            }),
        }
    }

    /// What the contract answers for each of [`PEOPLE`].
    pub fn expected(self, nik: &str) -> Value {
        match (self, nik) {
            (Contract::Citizenship, ALL_FOUR | DUKCAPIL_ONLY) => {
                json!({"registered": true, "citizenship": "WNI", "deceased": false})
            }
            (Contract::Citizenship, WNA_DECEASED) => {
                json!({"registered": true, "citizenship": "WNA", "deceased": true})
            }
            (Contract::Citizenship, _) => {
                json!({"registered": false, "citizenship": "unknown", "deceased": false})
            }
            (Contract::Placement, ALL_FOUR) => {
                json!({"placed": true, "country": "MY", "agency": "PT Sinar Abadi", "since": "2023-03-01"})
            }
            (Contract::Placement, _) => json!({"placed": false}),
            (Contract::Insurance, ALL_FOUR) => {
                json!({"enrolled": true, "active": true, "programs": ["JKK", "JKM", "JHT"]})
            }
            (Contract::Insurance, WNA_DECEASED) => {
                json!({"enrolled": true, "active": false, "programs": []})
            }
            (Contract::Insurance, _) => {
                json!({"enrolled": false, "active": false, "programs": []})
            }
            (Contract::Residence, ALL_FOUR) => {
                json!({"reported": true, "country": "MY", "reported_on": "2024-02-11", "reports": 2})
            }
            (Contract::Residence, _) => json!({"reported": false}),
        }
    }
}

/// The PostgreSQL server under test, or `None` (and a line saying the test is skipped).
pub fn postgres_url(test: &str) -> Option<String> {
    server_url("SIMPUL_TEST_POSTGRES_URL", test)
}

/// The MariaDB/MySQL server under test, or `None` (and a line saying the test is skipped).
pub fn mysql_url(test: &str) -> Option<String> {
    server_url("SIMPUL_TEST_MYSQL_URL", test)
}

fn server_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped {test}: {var} is not set");
            None
        }
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() % 1_000_000_000)
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{micros}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` with its `host:port` replaced by `addr` (to go through a proxy).
pub fn with_address(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (userinfo, hostpath) = match rest.rfind('@') {
        Some(at) => (&rest[..=at], &rest[at + 1..]),
        None => ("", rest),
    };
    let path = hostpath.find(['/', '?']).map_or("", |i| &hostpath[i..]);
    format!("{scheme}://{userinfo}{addr}{path}")
}

/// A connection for setting up and inspecting fixtures.
pub enum Admin {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
    MySql(MySqlConnection),
}

impl Admin {
    pub async fn exec(&mut self, sql: &str) {
        let q = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()));
        match self {
            Admin::Sqlite(c) => q.execute(c).await.map(drop),
            Admin::Postgres(c) => q.execute(c).await.map(drop),
            Admin::MySql(c) => q.execute(c).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// One integer the statement selects.
    pub async fn scalar(&mut self, sql: &str) -> i64 {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            Admin::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await,
            Admin::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await,
            Admin::MySql(c) => sqlx::query_scalar(sql).fetch_one(c).await,
        }
        .expect("a count")
    }
}

/// Which engine a fixture lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
    MySql,
}

/// The demo tables in a fresh place of one engine. Call [`Fixture::drop_all`] at the end;
/// a test that fails leaves its uniquely named schema behind for inspection.
pub struct Fixture {
    pub engine: Engine,
    /// What a binding's `database` says.
    pub database: String,
    /// What a binding's `schema` says.
    pub schema: Option<String>,
    pub admin: Admin,
    dir: tempfile::TempDir,
}

impl Fixture {
    pub async fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("fixture.db"))
            .create_if_missing(true);
        let admin = Admin::Sqlite(
            SqliteConnection::connect_with(&options)
                .await
                .expect("sqlite"),
        );
        Self::fill(Engine::Sqlite, "fixture.db".into(), None, admin, dir).await
    }

    pub async fn postgres(url: &str) -> Fixture {
        let schema = unique("simpul_t");
        let mut conn = PgConnection::connect(url).await.expect("postgres");
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema}"
        )))
        .execute(&mut conn)
        .await
        .expect("schema");
        let dir = tempfile::tempdir().expect("tempdir");
        Self::fill(
            Engine::Postgres,
            url.into(),
            Some(schema),
            Admin::Postgres(conn),
            dir,
        )
        .await
    }

    pub async fn mysql(url: &str) -> Fixture {
        let schema = unique("simpul_t");
        let mut conn = MySqlConnection::connect(url).await.expect("mysql");
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE DATABASE {schema}; USE {schema}"
        )))
        .execute(&mut conn)
        .await
        .expect("database");
        let dir = tempfile::tempdir().expect("tempdir");
        Self::fill(
            Engine::MySql,
            url.into(),
            Some(schema),
            Admin::MySql(conn),
            dir,
        )
        .await
    }

    async fn fill(
        engine: Engine,
        database: String,
        schema: Option<String>,
        mut admin: Admin,
        dir: tempfile::TempDir,
    ) -> Fixture {
        for sql in SCHEMA.iter().chain(ROWS.iter()) {
            admin.exec(sql).await;
        }
        Fixture {
            engine,
            database,
            schema,
            admin,
            dir,
        }
    }

    /// The directory a binding's relative paths resolve against.
    pub fn base_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `binding` pointed at this fixture (its `database` and `schema` filled in).
    pub fn spec(&self, binding: Value) -> SqlSpec {
        let mut b = binding;
        b["database"] = json!(self.database);
        if let Some(s) = &self.schema {
            b["schema"] = json!(s);
        }
        serde_json::from_value(b).expect("a valid binding")
    }

    /// An adapter for `binding` on this fixture.
    pub fn adapter(&self, binding: Value) -> SqlAdapter {
        SqlAdapter::new(self.spec(binding), self.base_dir()).expect("adapter")
    }

    /// Rows in `table` (to check that nothing was dropped or deleted).
    pub async fn count(&mut self, table: &str) -> i64 {
        self.admin
            .scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .await
    }

    /// Drops the fixture's schema or database.
    pub async fn drop_all(mut self) {
        match (&self.engine, &self.schema) {
            (Engine::Postgres, Some(s)) => {
                self.admin.exec(&format!("DROP SCHEMA {s} CASCADE")).await
            }
            (Engine::MySql, Some(s)) => self.admin.exec(&format!("DROP DATABASE {s}")).await,
            _ => {}
        }
    }
}

/// Asks every contract about every person and checks the answers.
pub async fn check_all_contracts(fixture: &Fixture) {
    for contract in Contract::ALL {
        let adapter = fixture.adapter(contract.binding());
        for nik in PEOPLE {
            let answer = adapter
                .answer(&json!({ "nik": nik }))
                .await
                .unwrap_or_else(|e| panic!("{:?} {contract:?} {nik}: {e}", fixture.engine));
            assert_eq!(
                answer,
                contract.expected(nik),
                "{:?} {contract:?} {nik}",
                fixture.engine
            );
        }
    }
}

/// A TCP proxy in front of a server, which the test can stop (live connections cut, the
/// port refusing new ones, as when the server process stops) and start again on the same
/// port.
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    running: Mutex<Vec<AbortHandle>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Arc<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = Arc::new(Proxy {
            addr: listener.local_addr().expect("addr"),
            upstream,
            running: Mutex::new(Vec::new()),
        });
        proxy.serve(listener);
        proxy
    }

    fn serve(self: &Arc<Self>, listener: TcpListener) {
        let me = Arc::clone(self);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let upstream = me.upstream;
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                me.running.lock().expect("lock").push(pipe.abort_handle());
            }
        });
        self.running
            .lock()
            .expect("lock")
            .push(accept.abort_handle());
    }

    /// Cuts every connection and closes the port.
    pub fn stop(&self) {
        for task in self.running.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    /// Listens on the same port again.
    pub async fn restart(self: &Arc<Self>) {
        // The aborted accept task drops its listener asynchronously; retry briefly.
        for _ in 0..50 {
            if let Ok(listener) = TcpListener::bind(self.addr).await {
                self.serve(listener);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("cannot listen on {} again", self.addr);
    }
}

/// The socket address of a database URL's host and port.
pub async fn server_address(url: &str, default_port: u16) -> SocketAddr {
    let rest = url.split_once("://").expect("a URL").1;
    let hostpath = rest.rfind('@').map_or(rest, |at| &rest[at + 1..]);
    let hostport = hostpath.split(['/', '?']).next().unwrap_or(hostpath);
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:{default_port}")
    };
    tokio::net::lookup_host(hostport)
        .await
        .expect("resolve")
        .next()
        .expect("an address")
}

/// What a test HTTP server answers: a handler from request to response.
pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>
        + Send
        + Sync,
>;

/// Starts an HTTP/1.1 server on loopback; it runs until the test's runtime ends.
pub async fn http_server(handler: Handler) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = Arc::clone(&handler);
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A JSON response.
pub fn json_response(status: u16, body: &Value) -> Response<Full<Bytes>> {
    raw_response(status, body.to_string())
}

/// A response with any body.
pub fn raw_response(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .expect("response")
}
