//! SQL injection attempts in every query field are bound as values: answered correctly
//! (nothing matches, or the value comes back byte for byte) and harmlessly (every table
//! intact afterwards).

use adapters::{Adapter, AdapterError};
use serde_json::{Value, json};

use crate::common::{ALL_FOUR, Engine, Fixture, mysql_url, postgres_url};

const ATTEMPTS: [&str; 20] = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "'; DROP TABLE residents; --",
    "1; DELETE FROM residents",
    "\" OR \"\"=\"",
    "\\' OR 1=1 -- ",
    "\\",
    "'",
    "''",
    "/* */ OR 1=1",
    "# comment\n OR 1=1",
    "`residents`",
    "$1",
    ":nik",
    "?",
    "%' OR nik LIKE '%",
    "3171011701900001' --",
    "NİK \u{202e} üñïçødé 🇮🇩 ニク",
    "＇ OR ＇1＇=＇1",
    "a\u{0}b",
];

/// Echoes one field back, so a value that reached the database whole is seen to come back
/// whole.
fn binding() -> Value {
    json!({
        "statement": "SELECT citizenship, deceased, :note AS echo FROM residents WHERE nik = :nik",
        "columns": {"citizenship": "text", "deceased": "bool", "echo": "text"},
        "found": {"registered": true},
        "not_found": {"registered": false},
    })
}

async fn check(mut fixture: Fixture) {
    let adapter = fixture.adapter(binding());
    for attempt in ATTEMPTS {
        // PostgreSQL text cannot hold NUL: it refuses the value, which is the right
        // (and harmless) answer there.
        let refused = fixture.engine == Engine::Postgres && attempt.contains('\0');
        let as_nik = adapter.answer(&json!({"nik": attempt, "note": "x"})).await;
        let as_note = adapter
            .answer(&json!({"nik": ALL_FOUR, "note": attempt}))
            .await;
        if refused {
            assert!(
                matches!(as_nik, Err(AdapterError::Failed(_))),
                "{attempt:?}: {as_nik:?}"
            );
            assert!(
                matches!(as_note, Err(AdapterError::Failed(_))),
                "{attempt:?}: {as_note:?}"
            );
            continue;
        }
        assert_eq!(
            as_nik.unwrap_or_else(|e| panic!("{:?} nik {attempt:?}: {e}", fixture.engine)),
            json!({"registered": false}),
            "{:?} nik {attempt:?}",
            fixture.engine
        );
        assert_eq!(
            as_note.unwrap_or_else(|e| panic!("{:?} note {attempt:?}: {e}", fixture.engine)),
            json!({"registered": true, "citizenship": "WNI", "deceased": false, "echo": attempt}),
            "{:?} note {attempt:?}",
            fixture.engine
        );
    }
    for (table, rows) in [
        ("residents", 3),
        ("placements", 3),
        ("participants", 2),
        ("reports", 3),
    ] {
        assert_eq!(fixture.count(table).await, rows, "{table}");
    }
    fixture.drop_all().await;
}

#[tokio::test]
async fn injection_in_every_field_is_just_a_value_on_sqlite() {
    check(Fixture::sqlite().await).await;
}

#[tokio::test]
async fn injection_in_every_field_is_just_a_value_on_postgres() {
    let Some(url) = postgres_url("injection_in_every_field_is_just_a_value_on_postgres") else {
        return;
    };
    check(Fixture::postgres(&url).await).await;
}

#[tokio::test]
async fn injection_in_every_field_is_just_a_value_on_mariadb() {
    let Some(url) = mysql_url("injection_in_every_field_is_just_a_value_on_mariadb") else {
        return;
    };
    check(Fixture::mysql(&url).await).await;
}
