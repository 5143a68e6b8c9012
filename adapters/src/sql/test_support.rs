//! What the tests of the SQL adapter's row modes (`changes`, `list`, `table`) share: the
//! check that a binding is refused, the fields a mode that answers no single question
//! refuses, an adapter that keeps the trait's defaults, and a small SQLite file.

use std::path::Path;

use serde_json::json;
use sqlx::{Connection as _, SqliteConnection};

use super::{SqlAdapter, SqlSpec};
use crate::{HttpAdapter, HttpSpec};

/// Asserts that `s` is refused at `field`, the reason saying `says`.
#[track_caller]
pub(super) fn assert_refused(s: SqlSpec, field: &str, says: &str) {
    let e = SqlAdapter::new(s, Path::new(".")).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.reason.contains(says)),
        (field, true),
        "{e}"
    );
}

/// Asserts that `s`, a binding of `rows = "{mode}"`, is refused when `field` is given too:
/// `found`, `not_found` or `list_field` (the fields of a binding that answers one question)
/// or `batch` (only `rows = "batch"` takes a batch table).
#[track_caller]
pub(super) fn assert_refused_with_field(mut s: SqlSpec, mode: &str, field: &str) {
    let not_with_mode = format!("not with rows = \"{mode}\"");
    let says = match field {
        "found" => {
            s.found.insert("registered".into(), json!(true));
            not_with_mode
        }
        "not_found" => {
            s.not_found = Some(json!({}));
            not_with_mode
        }
        "list_field" => {
            s.list_field = Some("rows".into());
            not_with_mode
        }
        "batch" => {
            s.batch = Some(
                serde_json::from_value(
                    json!({"items": "items", "key": "nik", "answer": "identity-verdicts"}),
                )
                .unwrap(),
            );
            "only with rows = \"batch\"".to_owned()
        }
        other => panic!("{other}: not a field another row mode takes"),
    };
    assert_refused(s, field, &says);
}

/// An adapter that overrides none of the trait's methods for the row modes (an HTTP one):
/// what the trait's defaults answer.
pub(super) fn adapter_with_the_trait_defaults() -> HttpAdapter {
    let http: HttpSpec = serde_json::from_value(json!({
        "url": "http://127.0.0.1:9/{nik}", "answer": {"placed": "/placed"},
    }))
    .unwrap();
    HttpAdapter::new(http, Path::new(".")).unwrap()
}

/// Makes the SQLite file `t.db` in `dir` and runs `statements` on it.
pub(super) async fn sqlite_file(dir: &Path, statements: &[&'static str]) {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.join("t.db"))
        .create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    for sql in statements {
        sqlx::raw_sql(*sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
}
