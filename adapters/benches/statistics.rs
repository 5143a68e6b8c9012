//! A statistics answer over 1,000,000 placements, timed step by step as the provider gateway
//! makes it (issue #16): `cargo bench -p simpul-adapters --bench statistics`.
//!
//! The steps of one question, each timed on its own (docs/BENCHMARKS.md, "Statistics
//! answers"):
//!
//! 1. the aggregate: `SqlAdapter` in `rows = "table"` mode with config.toml's
//!    `placement.counts` statement, [`Adapter::table`];
//! 2. the answer: [`contracts::statistics::answer`] under the catalog contract's rules
//!    (filters, sums, population minimum, `protect`), with `protect` alone also timed on the
//!    same table as a diagnostic;
//! 3. the JSON that is signed: `serde_json::to_vec` of the protected table;
//!
//! and, beside them, the gateway's response-schema check (row 36) of the same table.
//!
//! The database, placements shaped like the demo's (13 destinations weighted by sex,
//! occupations by destination and sex, sex in the NIK's day digits, start dates over ten
//! years, most active placements recent), is built once — not timed — with a deterministic
//! generator, then copied with each candidate index. `SIMPUL_BENCH_STATISTICS_DIR` keeps the
//! databases there and reuses them (delete them when the generator changes); otherwise they
//! live in a temporary directory for the run. `SIMPUL_BENCH_RUNS` (default 10) sets the timed runs per question, after one run
//! that warms the pool and the page cache. Run by `cargo test --benches` (no `--bench`
//! argument), it builds 20,000 rows and answers each question once, only to check it still
//! works.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use adapters::{Adapter, SqlAdapter, SqlSpec};
use contracts::disclosure::{CountTable, PublishedTable, protect};
use contracts::statistics::{StatisticsQuery, answer, table as table_asked};
use contracts::{Contract, embedded_catalog};
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection};

/// config.toml's `placement.counts` binding at BP2MI, word for word.
const STATEMENT: &str = "
    SELECT country, occupation AS sector,
           CASE WHEN substr(nik, 7, 2) > '40' THEN 'F' ELSE 'M' END AS sex,
           substr(start_date, 1, 4) AS year, COUNT(*) AS count
      FROM placements
     WHERE status = 'active'
     GROUP BY 1, 2, 3, 4";

/// The demo's placements table (`demo/src/population/sqlite.rs`) and its index.
const SCHEMA: &str = "CREATE TABLE placements (id INTEGER PRIMARY KEY, nik TEXT NOT NULL, country TEXT NOT NULL, agency TEXT NOT NULL, occupation TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('active','completed')), start_date TEXT NOT NULL, end_date TEXT)";
const NIK_INDEX: &str = "CREATE INDEX placements_nik ON placements(nik)";

/// The databases timed: none but the demo's NIK index, and each index a ministry could add
/// for the statement.
const VARIANTS: &[(&str, Option<&str>)] = &[
    ("no index for the statement", None),
    (
        "covering index (status, country, occupation, nik, start_date)",
        Some(
            "CREATE INDEX placements_statistics ON placements(status, country, occupation, nik, start_date)",
        ),
    ),
    (
        "index on the statement's expressions (status, country, occupation, sex, year)",
        Some(
            "CREATE INDEX placements_statistics ON placements(status, country, occupation, (CASE WHEN substr(nik, 7, 2) > '40' THEN 'F' ELSE 'M' END), substr(start_date, 1, 4))",
        ),
    ),
];

/// The questions, each asked without a filter and with [`filter`].
const QUESTIONS: &[&[&str]] = &[
    &["country"],
    &["country", "sex"],
    &["country", "sector", "sex"],
    &["country", "sector", "sex", "year"],
];

/// The filter: the care sectors (mostly women, in a few destinations).
fn filter() -> Value {
    json!({"sector": ["caregiver", "domestic worker"]})
}

fn main() {
    let timed = std::env::args().any(|a| a == "--bench");
    let rows: usize = if timed { 1_000_000 } else { 20_000 };
    let runs: usize = if timed {
        env_number("SIMPUL_BENCH_RUNS").unwrap_or(10).max(1)
    } else {
        1
    };
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let dir = std::env::var_os("SIMPUL_BENCH_STATISTICS_DIR")
        .map(PathBuf::from)
        .filter(|_| timed)
        .unwrap_or_else(|| temporary.path().to_owned());
    std::fs::create_dir_all(&dir).expect("the databases' directory");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");

    let contract = embedded_catalog()
        .expect("the embedded catalog")
        .into_iter()
        .find(|c| c.doc().id == "placement.counts")
        .expect("placement.counts in the catalog");
    let stats = contract
        .statistics()
        .expect("a statistics contract")
        .clone();
    let rules = stats.rules();
    let questions: Vec<(String, StatisticsQuery)> = QUESTIONS
        .iter()
        .flat_map(|dims| {
            let plain = json!({ "dimensions": dims });
            let filtered = json!({ "dimensions": dims, "filters": filter() });
            [plain, filtered]
        })
        .map(|q| {
            let parsed = StatisticsQuery::parse(&q, &stats).expect("a valid question");
            (q.to_string(), parsed)
        })
        .collect();

    let base = dir.join(format!("placements-{rows}.db"));
    runtime.block_on(build(&base, rows));
    println!(
        "{} placement rows in {}, {} timed runs per question after one untimed",
        rows,
        dir.display(),
        runs
    );
    for (i, (name, index)) in VARIANTS.iter().enumerate() {
        let path = match index {
            None => base.clone(),
            Some(index) => {
                let path = dir.join(format!("placements-{rows}-index{i}.db"));
                runtime.block_on(with_index(&base, &path, index));
                path
            }
        };
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let plan = runtime.block_on(query_plan(&path));
        println!(
            "\n## {name}\n\n{} ({:.0} MB); plan: {plan}\n",
            path.display(),
            size as f64 / 1e6
        );
        let adapter = adapter(&path);
        println!(
            "| question | filter | aggregate rows | cells | figures | suppressed (primary + complementary) | 1 aggregate | 2 answer | protect alone | 3 to_vec | total 1-3 | schema check | JSON bytes |"
        );
        println!(
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        let mut first = None;
        for (text, question) in &questions {
            let measured = measure(&runtime, &adapter, &contract, question, &rules, runs);
            first.get_or_insert(measured.first_aggregate);
            let filtered = if question.filters.is_empty() {
                "—"
            } else {
                "sector"
            };
            println!(
                "| {} | {filtered} | {} | {} | {} | {} ({} + {}) | {} | {} | {} | {} | {} | {} | {} |",
                question.dimensions.join(" × "),
                measured.aggregate_rows,
                measured.cells,
                measured.figures,
                measured.primary + measured.complementary,
                measured.primary,
                measured.complementary,
                spread(&measured.steps[0]),
                spread(&measured.steps[1]),
                spread(&measured.protect),
                spread(&measured.steps[2]),
                spread(&measured.totals()),
                spread(&measured.schema),
                measured.bytes,
            );
            if !timed {
                eprintln!("checked {text}");
            }
        }
        if let Some(first) = first {
            println!(
                "\nThe first aggregate, untimed (it opens the pool's connection): {} ms",
                milliseconds(first.as_secs_f64() * 1e3)
            );
        }
    }
}

/// A whole number from the environment variable `name`, if it holds one.
fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// The binding of config.toml, on the database at `path`; the deadline raised from its
/// default of 2 s so that a slower aggregate is measured rather than refused.
fn adapter(path: &Path) -> SqlAdapter {
    let spec: SqlSpec = serde_json::from_value(json!({
        "database": path.to_str().expect("a UTF-8 path"),
        "rows": "table",
        "statement": STATEMENT,
        "columns": {"country": "text", "sector": "text", "sex": "text", "year": "text", "count": "integer"},
        "timeout_ms": 120_000,
    }))
    .expect("the binding");
    SqlAdapter::new(spec, Path::new("/")).expect("a valid binding")
}

/// What one question's runs measured.
struct Measured {
    aggregate_rows: usize,
    cells: usize,
    figures: usize,
    primary: usize,
    complementary: usize,
    bytes: usize,
    /// The untimed run's aggregate: the first on a fresh pool opens its connection.
    first_aggregate: Duration,
    /// Per step (aggregate, answer, to_vec), one time per run.
    steps: [Vec<Duration>; 3],
    protect: Vec<Duration>,
    schema: Vec<Duration>,
}

impl Measured {
    /// Each run's time over the three steps.
    fn totals(&self) -> Vec<Duration> {
        (0..self.steps[0].len())
            .map(|r| self.steps.iter().map(|s| s[r]).sum())
            .collect()
    }
}

/// One untimed run, then `runs` timed ones of the three steps, each followed by the
/// diagnostics (`protect` alone, the schema check), which are not part of the total.
fn measure(
    runtime: &tokio::runtime::Runtime,
    adapter: &SqlAdapter,
    contract: &Contract,
    question: &StatisticsQuery,
    rules: &contracts::disclosure::DisclosureRules,
    runs: usize,
) -> Measured {
    let mut measured = Measured {
        aggregate_rows: 0,
        cells: 0,
        figures: 0,
        primary: 0,
        complementary: 0,
        bytes: 0,
        first_aggregate: Duration::ZERO,
        steps: [Vec::new(), Vec::new(), Vec::new()],
        protect: Vec::new(),
        schema: Vec::new(),
    };
    for run in 0..=runs {
        let started = Instant::now();
        let aggregate = runtime.block_on(adapter.table()).expect("the aggregate");
        let aggregated = Instant::now();
        let table = answer(question, &aggregate, rules).expect("an answer");
        let answered = Instant::now();
        let json = serde_json::to_vec(&table).expect("the table as JSON");
        let encoded = Instant::now();

        let cells = table_asked(question, &aggregate, rules).expect("the table asked");
        let protect_started = Instant::now();
        let alone = protect(&cells, rules);
        let protect_time = protect_started.elapsed();
        assert_eq!(alone, table, "protect alone gives answer's table");
        let schema_started = Instant::now();
        let value = serde_json::to_value(&table).expect("the table as a value");
        contracts::json::check_numbers(&value).expect("I-JSON numbers");
        contract
            .check_response(&value, "/result")
            .expect("the answer fits the response schema");
        let schema_time = schema_started.elapsed();

        if run == 0 {
            measured.aggregate_rows = aggregate.rows.len();
            measured.cells = cells.cell_count();
            measured.figures = table.figures.len();
            measured.primary = suppressed(&table, &cells, true);
            measured.complementary = suppressed(&table, &cells, false);
            measured.bytes = json.len();
            measured.first_aggregate = aggregated - started;
            continue;
        }
        measured.steps[0].push(aggregated - started);
        measured.steps[1].push(answered - aggregated);
        measured.steps[2].push(encoded - answered);
        measured.protect.push(protect_time);
        measured.schema.push(schema_time);
    }
    measured
}

/// How many of `table`'s figures are suppressed and small in `truth` (primary: from 1 to
/// `min_cell` - 1), or suppressed and not small (complementary). The answer does not say
/// which is which; the true table does.
fn suppressed(table: &PublishedTable, truth: &CountTable, small: bool) -> usize {
    table
        .suppressed()
        .filter(|key| {
            let key: Vec<Option<&str>> = key.iter().map(Option::as_deref).collect();
            let v = truth.count(&key).unwrap_or(0);
            (1..table.min_cell).contains(&v) == small
        })
        .count()
}

/// "median / max" of `times`, in milliseconds.
fn spread(times: &[Duration]) -> String {
    let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    };
    let max = ms[n - 1];
    format!("{} / {}", milliseconds(median), milliseconds(max))
}

fn milliseconds(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

/// What SQLite's planner does with the statement on the database at `path`.
async fn query_plan(path: &Path) -> String {
    let mut conn =
        SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path).read_only(true))
            .await
            .expect("the database");
    let plan = sqlx::query(sqlx::AssertSqlSafe(format!(
        "EXPLAIN QUERY PLAN {STATEMENT}"
    )))
    .fetch_all(&mut conn)
    .await
    .expect("the plan");
    plan.iter()
        .map(|row| row.get::<String, _>("detail"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Writes `rows` placements into a new database at `path`, unless it is there already. The
/// rows go to `<path>.tmp`, renamed once complete, so an interrupted build is never reused.
async fn build(path: &Path, rows: usize) {
    if path.exists() {
        return;
    }
    let started = Instant::now();
    let partial = path.with_extension("db.tmp");
    let _ = std::fs::remove_file(&partial);
    let options = SqliteConnectOptions::new()
        .filename(&partial)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Off)
        .synchronous(SqliteSynchronous::Off);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .expect("a new database");
    sqlx::query(SCHEMA)
        .execute(&mut conn)
        .await
        .expect("the schema");
    let mut placements = Placements::new(0x5349_4D50_554C);
    let mut tx = conn.begin().await.expect("a transaction");
    // 8 parameters a row, under the 999 of older SQLite builds.
    const CHUNK: usize = 120;
    let mut id = 0i64;
    while (id as usize) < rows {
        let n = CHUNK.min(rows - id as usize);
        let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; n].join(", ");
        let sql = format!(
            "INSERT INTO placements (id, nik, country, agency, occupation, status, start_date, end_date) VALUES {values}"
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for _ in 0..n {
            id += 1;
            let p = placements.next();
            insert = insert
                .bind(id)
                .bind(p.nik)
                .bind(p.country)
                .bind(p.agency)
                .bind(p.occupation)
                .bind(if p.active { "active" } else { "completed" })
                .bind(p.start)
                .bind(p.end);
        }
        insert.execute(&mut *tx).await.expect("the rows");
    }
    // Indexing after the inserts, as the demo does.
    sqlx::query(NIK_INDEX)
        .execute(&mut *tx)
        .await
        .expect("the NIK index");
    tx.commit().await.expect("the rows committed");
    conn.close().await.expect("the database closed");
    std::fs::rename(&partial, path).expect("the database in place");
    eprintln!(
        "built {} ({rows} rows) in {:.1} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
}

/// A copy of the database at `base` with `index` created, at `path`, unless it is there.
async fn with_index(base: &Path, path: &Path, index: &str) {
    if path.exists() {
        return;
    }
    let started = Instant::now();
    let partial = path.with_extension("db.tmp");
    std::fs::copy(base, &partial).expect("a copy of the database");
    let mut conn = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(&partial)
            .synchronous(SqliteSynchronous::Off),
    )
    .await
    .expect("the copy");
    sqlx::query(sqlx::AssertSqlSafe(index))
        .execute(&mut conn)
        .await
        .expect("the index");
    conn.close().await.expect("the copy closed");
    std::fs::rename(&partial, path).expect("the copy in place");
    eprintln!(
        "indexed {} in {:.1} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
}

/// One placement row.
struct Placement {
    nik: String,
    country: &'static str,
    agency: &'static str,
    occupation: &'static str,
    active: bool,
    start: String,
    end: Option<String>,
}

/// Destination weights by sex, as the demo's (`demo/src/population/places.rs`).
const COUNTRIES_FEMALE: &[(&str, u32)] = &[
    ("HK", 30),
    ("TW", 25),
    ("MY", 15),
    ("SG", 8),
    ("SA", 6),
    ("JP", 4),
    ("AE", 3),
    ("BN", 2),
    ("KW", 2),
    ("KR", 1),
    ("QA", 1),
    ("PL", 1),
    ("TR", 1),
];
const COUNTRIES_MALE: &[(&str, u32)] = &[
    ("MY", 35),
    ("KR", 20),
    ("TW", 20),
    ("JP", 10),
    ("BN", 3),
    ("SA", 3),
    ("AE", 2),
    ("QA", 2),
    ("PL", 2),
    ("HK", 1),
    ("SG", 1),
    ("TR", 1),
];

/// A destination's occupations with their weights for women and for men.
type Jobs = &'static [(&'static str, u32, u32)];

/// Occupations per destination, as the demo's.
#[rustfmt::skip] // a table reads best as one row per country
const OCCUPATIONS: &[(&str, Jobs)] = &[
    ("HK", &[("domestic worker", 85, 0), ("caregiver", 15, 0), ("driver", 0, 60),
             ("construction worker", 0, 40)]),
    ("TW", &[("caregiver", 55, 0), ("domestic worker", 15, 0), ("factory worker", 30, 55),
             ("fisherman", 0, 35), ("construction worker", 0, 10)]),
    ("MY", &[("domestic worker", 45, 0), ("factory worker", 35, 30), ("plantation worker", 10, 45),
             ("construction worker", 0, 25), ("hospitality worker", 10, 0)]),
    ("SG", &[("domestic worker", 85, 0), ("caregiver", 10, 0), ("construction worker", 0, 60),
             ("factory worker", 5, 40)]),
    ("SA", &[("domestic worker", 80, 0), ("caregiver", 10, 0), ("driver", 0, 60),
             ("hospitality worker", 10, 40)]),
    ("KR", &[("factory worker", 80, 70), ("hospitality worker", 20, 0), ("fisherman", 0, 25),
             ("construction worker", 0, 5)]),
    ("JP", &[("caregiver", 40, 15), ("factory worker", 40, 50), ("hospitality worker", 20, 5),
             ("construction worker", 0, 20), ("fisherman", 0, 10)]),
    ("BN", &[("domestic worker", 70, 0), ("hospitality worker", 30, 20), ("plantation worker", 0, 40),
             ("construction worker", 0, 40)]),
    ("AE", &[("domestic worker", 60, 0), ("hospitality worker", 30, 40), ("nurse", 10, 0),
             ("construction worker", 0, 40), ("driver", 0, 20)]),
    ("QA", &[("domestic worker", 60, 0), ("hospitality worker", 30, 40), ("nurse", 10, 0),
             ("construction worker", 0, 40), ("driver", 0, 20)]),
    ("KW", &[("domestic worker", 70, 0), ("hospitality worker", 20, 40), ("nurse", 10, 0),
             ("driver", 0, 60)]),
    ("PL", &[("factory worker", 60, 30), ("hospitality worker", 40, 20), ("welder", 0, 50)]),
    ("TR", &[("hospitality worker", 50, 50), ("factory worker", 50, 50)]),
];

/// Every occupation of [`OCCUPATIONS`].
const OCCUPATION_NAMES: &[&str] = &[
    "caregiver",
    "construction worker",
    "domestic worker",
    "driver",
    "factory worker",
    "fisherman",
    "hospitality worker",
    "nurse",
    "plantation worker",
    "welder",
];

/// A few agencies place most workers.
const AGENCIES: &[(&str, u32)] = &[
    ("PT Bina Karya Mandiri", 120),
    ("PT Sumber Rejeki Abadi", 60),
    ("PT Mitra Sejahtera Utama", 40),
    ("PT Duta Putra Perkasa", 30),
    ("PT Arni Family", 24),
    ("PT Cahaya Mitra Sentosa", 20),
];

/// Provinces of the NIK, the sending ones favoured.
const PROVINCES: &[(u8, u32)] = &[
    (35, 25),
    (33, 20),
    (32, 18),
    (52, 10),
    (53, 6),
    (18, 5),
    (12, 4),
    (36, 4),
    (31, 2),
    (51, 2),
    (73, 2),
    (64, 2),
];

/// The placements, drawn one after another from a fixed seed (SplitMix64), so every build
/// holds the same rows.
struct Placements {
    state: u64,
}

impl Placements {
    fn new(seed: u64) -> Self {
        Placements { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `per_mille / 1000`.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    fn weighted<T: Copy>(&mut self, items: &[(T, u32)]) -> T {
        let total: u64 = items.iter().map(|&(_, w)| u64::from(w)).sum();
        let mut roll = self.below(total);
        for &(item, weight) in items {
            if roll < u64::from(weight) {
                return item;
            }
            roll -= u64::from(weight);
        }
        unreachable!("roll is below the total weight")
    }

    /// The next placement. About two thirds of workers are women, each destination's
    /// occupations are mostly those of the demo's table for it. Start dates run over the
    /// ten years before 2026-11 (the demo's "as of"); a contract runs about two years, so
    /// most placements started in the last two are active, fewer of the third year (extended
    /// contracts), and a few older ones (renewed for years, as caregivers often are): the
    /// older years give the small cells that suppression works on.
    fn next(&mut self) -> Placement {
        let female = self.chance(667);
        let country = self.weighted(if female {
            COUNTRIES_FEMALE
        } else {
            COUNTRIES_MALE
        });
        let jobs: Vec<(&'static str, u32)> = OCCUPATIONS
            .iter()
            .find(|(c, _)| *c == country)
            .map(|(_, jobs)| {
                jobs.iter()
                    .map(|&(j, f, m)| (j, if female { f } else { m }))
            })
            .expect("every destination has occupations")
            .collect();
        // One in 200 entries has an occupation the destination rarely recruits for (a man
        // caregiver in Hong Kong, a nurse in Korea): real registers have such a tail, and its
        // cells are the small ones even in the coarser tables.
        let occupation = if self.chance(5) {
            OCCUPATION_NAMES[self.below(OCCUPATION_NAMES.len() as u64) as usize]
        } else {
            self.weighted(&jobs)
        };
        let agency = self.weighted(AGENCIES);
        let province = self.weighted(PROVINCES);
        let (regency, district) = (1 + self.below(20), 1 + self.below(30));
        let birth_day = 1 + self.below(28) + if female { 40 } else { 0 };
        let (birth_month, birth_year) = (1 + self.below(12), 1970 + self.below(35));
        let serial = 1 + self.below(9999);
        let nik = format!(
            "{province:02}{regency:02}{district:02}{birth_day:02}{birth_month:02}{:02}{serial:04}",
            birth_year % 100
        );
        // Months before 2026-11: 0..120 (0 is October 2026).
        let age = self.below(120);
        let active = match age {
            0..24 => self.chance(900),
            24..36 => self.chance(300),
            _ => self.chance(40),
        };
        let month = 2026 * 12 + 9 - age;
        let day = 1 + self.below(28);
        let start = format!("{}-{:02}-{day:02}", month / 12, month % 12 + 1);
        let end = (!active).then(|| {
            let end = (month + 24).min(2026 * 12 + 9);
            format!("{}-{:02}-{day:02}", end / 12, end % 12 + 1)
        });
        Placement {
            nik,
            country,
            agency,
            occupation,
            active,
            start,
            end,
        }
    }
}
