//! TLS to the database: `tls = "require"` encrypts (the server says so), and
//! `tls = "verify-full"` refuses a certificate it cannot verify (503, not a plain fallback).

use adapters::{Adapter, AdapterError, DatabaseTls};
use serde_json::json;
use sqlx::{Connection, PgConnection};

use crate::common::{ALL_FOUR, Fixture, postgres_url};

#[tokio::test]
async fn postgres_tls_require_encrypts_and_verify_full_refuses_an_unknown_certificate() {
    let test = "postgres_tls_require_encrypts_and_verify_full_refuses_an_unknown_certificate";
    let Some(url) = postgres_url(test) else {
        return;
    };
    let mut conn = PgConnection::connect(&url).await.expect("postgres");
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut conn)
        .await
        .expect("show ssl");
    if ssl != "on" {
        eprintln!("skipped {test}: the server has ssl = {ssl}");
        return;
    }
    let fixture = Fixture::postgres(&url).await;
    let binding = json!({
        "statement": "SELECT ssl AS encrypted FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND :nik IS NOT NULL",
        "columns": {"encrypted": "bool"},
        "not_found": {},
    });
    let query = json!({ "nik": ALL_FOUR });

    let mut spec = fixture.spec(binding.clone());
    spec.tls = Some(DatabaseTls::Require);
    let a = adapters::SqlAdapter::new(spec, fixture.base_dir()).expect("adapter");
    assert_eq!(
        a.answer(&query).await.expect("tls"),
        json!({"encrypted": true})
    );

    let mut spec = fixture.spec(binding.clone());
    let sep = if url.contains('?') { '&' } else { '?' };
    spec.database = format!("{url}{sep}sslmode=disable");
    let a = adapters::SqlAdapter::new(spec, fixture.base_dir()).expect("adapter");
    assert_eq!(
        a.answer(&query).await.expect("plain"),
        json!({"encrypted": false})
    );

    // The test server's certificate is self-signed: no web PKI root vouches for it.
    let mut spec = fixture.spec(binding);
    spec.tls = Some(DatabaseTls::VerifyFull);
    let a = adapters::SqlAdapter::new(spec, fixture.base_dir()).expect("adapter");
    let err = a.answer(&query).await.expect_err("unverifiable");
    assert!(matches!(err, AdapterError::Unavailable(_)), "{err:?}");
    fixture.drop_all().await;
}
