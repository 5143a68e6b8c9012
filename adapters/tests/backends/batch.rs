//! The SQL adapter's batch mode on SQLite, PostgreSQL and MariaDB/MySQL: a batch of 1,000
//! identities (found, not found, malformed, one NIK many times) answered by the
//! `identity-verdicts` rule with one statement per chunk of distinct well-formed NIKs —
//! counted, across small and default chunks — within one deadline for the whole batch, and
//! unavailable (503) when the database is missing.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use adapters::{Adapter, AdapterError, SqlAdapter, SqlSpec};
use serde_json::{Value, json};
use tracing::span;
use tracing::subscriber::Interest;

use crate::common::{Fixture, mysql_url, postgres_url, unique};

/// Items in the big batch: the contract's most.
const ITEMS: usize = 1_000;

/// The binding under test, as a ministry would write it (without `database`).
fn binding(chunk: Option<u32>) -> Value {
    let mut b = json!({
        "rows": "batch",
        "statement": "SELECT nik, full_name, birth_date, sex, citizenship, deceased FROM population WHERE nik IN (:nik)",
        "columns": {
            "nik": "text", "full_name": "text", "birth_date": "text", "sex": "text",
            "citizenship": "text", "deceased": "bool"
        },
        "batch": {"items": "items", "key": "nik", "answer": "identity-verdicts"},
    });
    if let Some(chunk) = chunk {
        b["batch"]["chunk"] = json!(chunk);
    }
    b
}

/// (registered name, a close spelling of it, another person's name).
const NAMES: [(&str, &str, &str); 4] = [
    ("Siti Rahmawati", "Siti Rahmawaty", "Budi Santoso"),
    ("Agus Setiawan", "Agus Setiyawan", "Agung Sedayu"),
    ("Fitri Handayani", "Fitri Handayan", "Joko Widodo"),
    ("Dewi Kartika Sari", "Kartika Sari Dewi", "Siti Rahmawati"),
];

/// Synthetic person `p`: a well-formed NIK (distinct serials) with the birth date and sex it
/// carries.
struct Person {
    nik: String,
    birth_date: String,
    wrong_birth_date: String,
    sex: &'static str,
    other_sex: &'static str,
    name: &'static str,
    close_name: &'static str,
    other_name: &'static str,
}

impl Person {
    fn new(p: usize) -> Person {
        let female = p % 2 == 1;
        let (day, month, yy) = (1 + p % 28, 1 + (p / 28) % 12, 50 + p % 50);
        let (name, close_name, other_name) = NAMES[p % NAMES.len()];
        Person {
            nik: format!(
                "3171{:02}{:02}{month:02}{yy:02}{:04}",
                1 + p % 40,
                day + if female { 40 } else { 0 },
                p + 1
            ),
            birth_date: format!("19{yy:02}-{month:02}-{day:02}"),
            wrong_birth_date: format!("19{:02}-{month:02}-{day:02}", yy - 1),
            sex: if female { "F" } else { "M" },
            other_sex: if female { "M" } else { "F" },
            name,
            close_name,
            other_name,
        }
    }
}

/// What item `j` of the batch is: its kind is `j % 10`.
/// 0, 1, 2, 9: a registered person reported rightly (every 20th with titles);
/// 3: registered, a close name, the wrong birth date and sex; 4: registered, another
/// person's name and nothing else; 5: registered, no name; 6: a well-formed NIK nobody
/// holds; 7: a malformed NIK; 8: person 0 again (a hundred times), rightly or with a close
/// name.
fn kind(j: usize) -> usize {
    j % 10
}

/// The person item `j` is about.
fn person_of(j: usize) -> usize {
    if kind(j) == 8 { 0 } else { j }
}

fn registered(p: usize) -> bool {
    !matches!(kind(p), 6..=8)
}

/// Registry rows with no name, birth date or sex on record.
fn blank(p: usize) -> bool {
    p % 50 == 1 || p % 50 == 13
}

fn wna(p: usize) -> bool {
    p % 7 == 2
}

fn deceased(p: usize) -> bool {
    p % 11 == 4
}

fn item(j: usize) -> Value {
    let person = Person::new(person_of(j));
    let mut item = json!({"ref": format!("row-{j}"), "nik": person.nik});
    let mut set = |field: &str, value: String| item[field] = json!(value);
    match kind(j) {
        0..=2 | 9 => {
            let name = if j.is_multiple_of(20) {
                format!("Hj. {}, S.Pd.", person.name)
            } else {
                person.name.to_uppercase()
            };
            set("full_name", name);
            set("birth_date", person.birth_date);
            set("sex", person.sex.into());
        }
        3 => {
            set("full_name", person.close_name.into());
            set("birth_date", person.wrong_birth_date);
            set("sex", person.other_sex.into());
        }
        4 => set("full_name", person.other_name.into()),
        5 => {
            set("birth_date", person.birth_date);
            set("sex", person.sex.into());
        }
        6 => {
            set("full_name", person.name.into());
            set("birth_date", person.birth_date);
        }
        7 => {
            let nik = match (j / 10) % 4 {
                0 => format!("{}0000", &person.nik[..12]),
                1 => person.nik[..15].to_owned(),
                2 => "31710117019000AB".to_owned(),
                _ => format!("{} ", person.nik),
            };
            set("nik", nik);
            set("full_name", person.name.into());
        }
        _ => {
            let name = if j % 20 == 8 {
                person.name
            } else {
                person.close_name
            };
            set("full_name", name.into());
            set("birth_date", person.birth_date);
            set("sex", person.sex.into());
        }
    }
    item
}

/// The verdicts on item `j`, without `name_similarity` (checked apart, by its range).
fn expected(j: usize) -> Value {
    let mut v = json!({
        "ref": format!("row-{j}"), "nik_valid": true, "found": false, "name": "not_checked",
        "birth_date": "not_checked", "sex": "not_checked", "citizenship": "unknown", "deceased": false
    });
    let p = person_of(j);
    let (name, birth_date, sex) = match kind(j) {
        7 => {
            v["nik_valid"] = json!(false);
            return v;
        }
        6 => return v,
        0..=2 | 9 => ("match", "match", "match"),
        3 => ("close", "mismatch", "mismatch"),
        4 => ("mismatch", "not_checked", "not_checked"),
        5 => ("not_checked", "match", "match"),
        _ if j % 20 == 8 => ("match", "match", "match"),
        _ => ("close", "match", "match"),
    };
    v["found"] = json!(true);
    v["citizenship"] = json!(if wna(p) { "WNA" } else { "WNI" });
    v["deceased"] = json!(deceased(p));
    if !blank(p) {
        v["name"] = json!(name);
        v["birth_date"] = json!(birth_date);
        v["sex"] = json!(sex);
    }
    v
}

fn batch_query(items: impl IntoIterator<Item = usize>) -> Value {
    json!({ "items": items.into_iter().map(item).collect::<Vec<_>>() })
}

/// Distinct well-formed NIKs of the big batch: the keys it looks up.
fn distinct_keys() -> usize {
    (0..ITEMS)
        .filter(|j| kind(*j) != 7)
        .map(|j| Person::new(person_of(j)).nik)
        .collect::<HashSet<_>>()
        .len()
}

/// The registry table in the fixture's place, with every registered person of the batch.
async fn population(fixture: &mut Fixture) {
    fixture
        .admin
        .exec(
            "CREATE TABLE population (nik VARCHAR(32) PRIMARY KEY, full_name VARCHAR(128), \
             birth_date VARCHAR(10), sex VARCHAR(1), citizenship VARCHAR(3) NOT NULL, deceased BOOLEAN NOT NULL)",
        )
        .await;
    let rows: Vec<String> = (0..ITEMS)
        .filter(|p| registered(*p))
        .map(|p| {
            let person = Person::new(p);
            let text = |s: &str| format!("'{s}'");
            let (name, birth_date, sex) = if blank(p) {
                ("NULL".into(), "NULL".into(), "NULL".into())
            } else {
                (
                    text(person.name),
                    text(&person.birth_date),
                    text(person.sex),
                )
            };
            format!(
                "('{}', {name}, {birth_date}, {sex}, '{}', {})",
                person.nik,
                if wna(p) { "WNA" } else { "WNI" },
                if deceased(p) { "TRUE" } else { "FALSE" }
            )
        })
        .collect();
    for part in rows.chunks(100) {
        fixture
            .admin
            .exec(&format!(
                "INSERT INTO population VALUES {}",
                part.join(", ")
            ))
            .await;
    }
}

thread_local! {
    /// Batch statements run on this thread: a `#[tokio::test]` runs its futures on its own
    /// thread, so each test counts its own.
    static STATEMENTS: Cell<usize> = const { Cell::new(0) };
}

/// Counts the adapter's `batch_statement` events, one per statement it runs, per thread.
/// Installed as the global subscriber once, by every test of this file before it builds an
/// adapter: a subscriber set for one thread only can miss a callsite another thread is
/// registering at the same moment, and count nothing.
struct StatementCounter;

impl StatementCounter {
    fn install() {
        static INSTALLED: OnceLock<()> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            tracing::subscriber::set_global_default(StatementCounter)
                .expect("no other global subscriber in this test binary");
        });
    }

    fn counts(metadata: &tracing::Metadata<'_>) -> bool {
        metadata.fields().field("batch_statement").is_some()
    }
}

impl tracing::Subscriber for StatementCounter {
    fn register_callsite(&self, metadata: &'static tracing::Metadata<'static>) -> Interest {
        if Self::counts(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        Self::counts(metadata)
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if Self::counts(event.metadata()) {
            STATEMENTS.with(|n| n.set(n.get() + 1));
        }
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

/// The answer to `query` and the number of statements it took.
async fn answer_counted(adapter: &SqlAdapter, query: &Value) -> (Value, usize) {
    STATEMENTS.with(|n| n.set(0));
    let answer = adapter
        .answer(query)
        .await
        .unwrap_or_else(|e| panic!("batch answer: {e}"));
    (answer, STATEMENTS.with(Cell::get))
}

fn identity_verify() -> contracts::Contract {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/catalog");
    contracts::load_catalog(&dir)
        .expect("catalog")
        .into_iter()
        .find(|c| c.doc().id == "identity.verify" && c.doc().version == "1")
        .expect("identity.verify v1 in the catalog")
}

/// Each item's verdicts as expected, in the order asked, with a similarity in its
/// verdict's range; every kind of verdict present.
fn check_verdicts(engine: &str, answer: &Value) {
    let items = answer["items"].as_array().expect("items");
    assert_eq!(items.len(), ITEMS, "{engine}");
    let mut seen = HashSet::new();
    for (j, got) in items.iter().enumerate() {
        let mut got = got.clone();
        let similarity = got
            .as_object_mut()
            .and_then(|o| o.remove("name_similarity"))
            .and_then(|s| s.as_f64());
        let in_range = match (got["name"].as_str(), similarity) {
            (Some("match"), Some(s)) => s == 1.0,
            (Some("close"), Some(s)) => (0.9..=1.0).contains(&s),
            (Some("mismatch"), Some(s)) => (0.0..0.9).contains(&s),
            (Some("not_checked"), None) => true,
            _ => false,
        };
        assert!(
            in_range,
            "{engine} item {j}: {:?} {similarity:?}",
            got["name"]
        );
        if let Some(s) = similarity {
            assert_eq!((s * 1000.0).round() / 1000.0, s, "three decimals: {s}");
        }
        assert_eq!(got, expected(j), "{engine} item {j}: {}", item(j));
        for field in ["name", "birth_date", "sex", "citizenship", "deceased"] {
            seen.insert(format!("{field}={}", got[field]));
        }
    }
    for verdict in [
        "name=\"match\"",
        "name=\"close\"",
        "name=\"mismatch\"",
        "name=\"not_checked\"",
        "birth_date=\"mismatch\"",
        "sex=\"mismatch\"",
        "citizenship=\"WNA\"",
        "citizenship=\"unknown\"",
        "deceased=true",
    ] {
        assert!(seen.contains(verdict), "{engine}: no {verdict}");
    }
}

/// The big batch on one engine: right verdicts with the default chunk and with a chunk of
/// 7, in ceil(distinct keys / chunk) statements each; the same answer either way; a batch
/// with no well-formed NIK runs none; and `check` prepares the chunk's statement.
async fn check_engine(mut fixture: Fixture) {
    let engine = format!("{:?}", fixture.engine);
    population(&mut fixture).await;
    let contract = identity_verify();
    let query = batch_query(0..ITEMS);
    assert_eq!(contract.check_request(&query, "/query"), Ok(()));
    let keys = distinct_keys();
    assert_eq!(
        keys, 800,
        "700 registered, 100 nobody holds, person 0 again"
    );

    let default = fixture.adapter(binding(None));
    assert_eq!(default.statements_for(keys), 2);
    let (answer, statements) = answer_counted(&default, &query).await;
    assert_eq!(
        statements, 2,
        "{engine}: statements for {keys} keys in chunks of 500"
    );
    check_verdicts(&engine, &answer);
    assert_eq!(contract.check_response(&answer, "/result"), Ok(()));

    let small = fixture.adapter(binding(Some(7)));
    assert_eq!(small.statements_for(keys), 115);
    let (again, statements) = answer_counted(&small, &query).await;
    assert_eq!(
        statements, 115,
        "{engine}: statements for {keys} keys in chunks of 7"
    );
    assert_eq!(
        again.to_string(),
        answer.to_string(),
        "{engine}: chunks of 7"
    );
    // The same adapter again: its statement, prepared once, serves every chunk.
    let (third, statements) = answer_counted(&small, &query).await;
    assert_eq!((third, statements), (again, 115), "{engine}");

    // One short chunk (padded) and nothing to look up.
    let few = batch_query([0, 3, 6, 7, 8, 8]);
    let (answer, statements) = answer_counted(&small, &few).await;
    assert_eq!(statements, 1, "{engine}");
    let want: Vec<Value> = [0, 3, 6, 7, 8, 8].into_iter().map(expected).collect();
    let got: Vec<Value> = answer["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| {
            let mut v = v.clone();
            v.as_object_mut().map(|o| o.remove("name_similarity"));
            v
        })
        .collect();
    assert_eq!(got, want, "{engine}");
    let malformed = batch_query([7, 17, 27, 37]);
    let (answer, statements) = answer_counted(&default, &malformed).await;
    assert_eq!(statements, 0, "{engine}");
    assert!(
        answer["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|v| v["nik_valid"] == json!(false) && v["found"] == json!(false)),
        "{engine}: {answer}"
    );

    let what = default.check().await.expect("prepared").expect("checked");
    assert!(what.ends_with(": statement prepared"), "{engine}: {what}");
    let mut wrong = binding(None);
    wrong["statement"] = json!(
        "SELECT nik, full_name, birth_date, sex, citizenship FROM population WHERE nik IN (:nik)"
    );
    let refused = fixture
        .adapter(wrong)
        .check()
        .await
        .expect_err("no deceased");
    assert!(
        matches!(&refused, AdapterError::Failed(m) if m.contains("`deceased`")),
        "{engine}: {refused:?}"
    );
    fixture.drop_all().await;
}

#[tokio::test]
async fn sqlite_answers_a_batch_of_1000_with_one_statement_per_chunk() {
    StatementCounter::install();
    check_engine(Fixture::sqlite().await).await;
}

#[tokio::test]
async fn postgres_answers_a_batch_of_1000_with_one_statement_per_chunk() {
    StatementCounter::install();
    let Some(url) = postgres_url("postgres_answers_a_batch_of_1000_with_one_statement_per_chunk")
    else {
        return;
    };
    check_engine(Fixture::postgres(&url).await).await;
}

#[tokio::test]
async fn mariadb_answers_a_batch_of_1000_with_one_statement_per_chunk() {
    StatementCounter::install();
    let Some(url) = mysql_url("mariadb_answers_a_batch_of_1000_with_one_statement_per_chunk")
    else {
        return;
    };
    check_engine(Fixture::mysql(&url).await).await;
}

const DEADLINE_MS: u64 = 1_000;

/// A batch whose statements are each well within the deadline, and together past it, times
/// out at the deadline: the deadline is the whole batch's, not each statement's. Then the
/// adapter answers again.
async fn check_deadline(mut fixture: Fixture, slow_condition: &str) {
    let engine = format!("{:?}", fixture.engine);
    population(&mut fixture).await;
    let mut slow = binding(Some(2));
    slow["statement"] = json!(format!(
        "SELECT nik, full_name, birth_date, sex, citizenship, deceased FROM population WHERE nik IN (:nik) AND {slow_condition}"
    ));
    slow["timeout_ms"] = json!(DEADLINE_MS);
    let adapter = fixture.adapter(slow);
    // Four chunks of two registered people: each statement sleeps 0.4 s.
    let query = batch_query([0, 1, 2, 3, 4, 5, 9, 10]);
    let started = Instant::now();
    let err = adapter.answer(&query).await.expect_err("past the deadline");
    let took = started.elapsed();
    assert!(
        matches!(err, AdapterError::Timeout(DEADLINE_MS)),
        "{engine}: {err:?}"
    );
    assert!(
        took >= Duration::from_millis(DEADLINE_MS)
            && took < Duration::from_millis(DEADLINE_MS + 300),
        "{engine}: timed out after {took:?}"
    );
    // One statement fits the deadline: the adapter answers again.
    let (answer, statements) = answer_counted(&adapter, &batch_query([0, 1])).await;
    assert_eq!(statements, 1, "{engine}");
    assert_eq!(answer["items"][0], {
        let mut e = expected(0);
        e["name_similarity"] = json!(1.0);
        e
    });
    fixture.drop_all().await;
}

#[tokio::test]
async fn postgres_batch_past_its_deadline_times_out_as_a_whole() {
    StatementCounter::install();
    let Some(url) = postgres_url("postgres_batch_past_its_deadline_times_out_as_a_whole") else {
        return;
    };
    check_deadline(
        Fixture::postgres(&url).await,
        "(SELECT 1 FROM pg_sleep(0.4)) = 1",
    )
    .await;
}

#[tokio::test]
async fn mariadb_batch_past_its_deadline_times_out_as_a_whole() {
    StatementCounter::install();
    let Some(url) = mysql_url("mariadb_batch_past_its_deadline_times_out_as_a_whole") else {
        return;
    };
    // SLEEP() runs once per row it is asked for: two rows a chunk, 0.2 s each.
    check_deadline(Fixture::mysql(&url).await, "SLEEP(0.2) = 0").await;
}

/// SQLite runs a statement in a worker thread that a dropped future does not stop: a
/// runaway statement in the batch's last chunk, after quick ones, is interrupted by the
/// batch's deadline, and the adapter's only connection is free again at once.
#[tokio::test]
async fn sqlite_batch_past_its_deadline_is_interrupted_in_a_later_chunk() {
    StatementCounter::install();
    let mut fixture = Fixture::sqlite().await;
    population(&mut fixture).await;
    let runaway = Person::new(10).nik;
    let mut slow = binding(Some(2));
    // About a minute of CPU for the one row `runaway`, nothing for the others.
    slow["statement"] = json!(format!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) \
         SELECT nik, full_name, birth_date, sex, citizenship, deceased FROM population p \
         WHERE nik IN (:nik) AND (p.nik <> '{runaway}' OR (SELECT count(*) FROM c WHERE x > length(p.nik)) > 0)"
    ));
    slow["timeout_ms"] = json!(300);
    slow["pool_size"] = json!(1);
    let adapter = fixture.adapter(slow);
    let started = Instant::now();
    let err = adapter
        .answer(&batch_query([0, 1, 2, 3, 4, 5, 10]))
        .await
        .expect_err("a runaway statement");
    let took = started.elapsed();
    assert!(matches!(err, AdapterError::Timeout(300)), "{err:?}");
    assert!(
        took < Duration::from_millis(500),
        "timed out after {took:?}"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (answer, statements) = answer_counted(&adapter, &batch_query([0, 1, 2, 3, 4])).await;
    assert_eq!(statements, 3);
    assert_eq!(answer["items"][0], {
        let mut e = expected(0);
        e["name_similarity"] = json!(1.0);
        e
    });
}

/// A missing database is unavailable (503) for a batch that needs it; a batch with no
/// well-formed NIK does not need it.
async fn check_missing(spec: SqlSpec, base_dir: &std::path::Path, engine: &str) {
    let adapter = SqlAdapter::new(spec, base_dir).expect("adapter");
    let err = adapter
        .answer(&batch_query(0..20))
        .await
        .expect_err("no database");
    assert!(
        matches!(err, AdapterError::Unavailable(_)),
        "{engine}: {err:?}"
    );
    let answer = adapter
        .answer(&batch_query([7, 17]))
        .await
        .expect("nothing to look up");
    assert_eq!(answer, json!({"items": [expected(7), expected(17)]}));
}

fn spec_for(database: &str) -> SqlSpec {
    let mut b = binding(None);
    b["database"] = json!(database);
    b["timeout_ms"] = json!(2_000);
    serde_json::from_value(b).expect("binding")
}

/// `url` naming another database on the same server.
fn other_database(url: &str, name: &str) -> String {
    let (server, _) = url.rsplit_once('/').expect("a database in the URL");
    format!("{server}/{name}")
}

#[tokio::test]
async fn sqlite_batch_from_a_missing_file_is_unavailable() {
    StatementCounter::install();
    let dir = tempfile::tempdir().expect("tempdir");
    check_missing(spec_for("missing.db"), dir.path(), "sqlite").await;
    assert!(!dir.path().join("missing.db").exists(), "never created");
}

#[tokio::test]
async fn postgres_batch_from_a_missing_database_is_unavailable() {
    StatementCounter::install();
    let Some(url) = postgres_url("postgres_batch_from_a_missing_database_is_unavailable") else {
        return;
    };
    let spec = spec_for(&other_database(&url, &unique("simpul_missing")));
    check_missing(spec, std::path::Path::new("."), "postgres").await;
}

#[tokio::test]
async fn mariadb_batch_from_a_missing_database_is_unavailable() {
    StatementCounter::install();
    let Some(url) = mysql_url("mariadb_batch_from_a_missing_database_is_unavailable") else {
        return;
    };
    let spec = spec_for(&other_database(&url, &unique("simpul_missing")));
    check_missing(spec, std::path::Path::new("."), "mariadb").await;
}
