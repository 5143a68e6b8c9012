//! The adapters against real backends: SQLite files, the PostgreSQL and MariaDB/MySQL
//! servers named by `SIMPUL_TEST_POSTGRES_URL` and `SIMPUL_TEST_MYSQL_URL` (each test that
//! needs one says it is skipped when its variable is not set), and HTTP servers the tests
//! start on loopback. Every test makes its own uniquely named schema or database and drops it.

mod batch;
mod changes;
mod check;
mod common;
mod contracts;
mod http;
mod injection;
mod list;
mod outage;
mod slow;
mod table;
mod tls;
