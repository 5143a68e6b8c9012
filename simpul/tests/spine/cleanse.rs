//! `simpul cleanse` as an operator runs it: the built binary against a real federation of
//! four gateways over real TLS (the spine's harness), Dukcapil's registry answering
//! `identity.verify` — each row's reason, each batch one audited exchange on both sides, a
//! run killed and resumed, a run over its subsystem's rate — and the refusals that need no
//! federation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use sqlx::{ConnectOptions, Row};

/// `simpul` with `args` in `dir`, to its end.
async fn simpul(dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_simpul"))
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------
// Refusals before any exchange (the embedded demo configuration; no gateway runs).

#[tokio::test]
async fn an_existing_work_directory_is_refused_saying_how_to_resume_or_start_over() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("reports.csv"), "nik\n3201011407950001\n").unwrap();
    std::fs::create_dir(d.join("cleansed.csv.work")).unwrap();
    let out = simpul(
        d,
        &[
            "cleanse",
            "--as",
            PEDULI,
            "reports.csv",
            "--out",
            "cleansed.csv",
        ],
    )
    .await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("cleansed.csv.work")
            && err.contains("--resume")
            && err.contains("remove the directory"),
        "{err}"
    );
    assert!(!d.join("cleansed.csv").exists());
}

#[tokio::test]
async fn a_missing_column_is_refused_in_one_line_naming_the_file_and_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("reports.csv"),
        "No KTP,Nama\n3201011407950001,Budi\n",
    )
    .unwrap();
    let out = simpul(
        d,
        &[
            "cleanse",
            "--as",
            PEDULI,
            "reports.csv",
            "--out",
            "cleansed.csv",
        ],
    )
    .await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("reports.csv")
            && err.contains("`nik`")
            && err.contains("--nik-column")
            && err.contains("No KTP"),
        "{err}"
    );
}

#[tokio::test]
async fn age_at_without_a_day_and_a_day_that_is_no_date_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("reports.csv"), "nik\n3201011407950001\n").unwrap();
    let base = [
        "cleanse",
        "--as",
        PEDULI,
        "reports.csv",
        "--out",
        "cleansed.csv",
    ];
    let out = simpul(d, &[&base[..], &["--age-at", "17"]].concat()).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--on"), "{}", text(&out.stderr));
    let out = simpul(
        d,
        &[&base[..], &["--age-at", "17", "--on", "2024-02-30"]].concat(),
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("YYYY-MM-DD"),
        "{}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// Against the federation.

/// One resident of Dukcapil's seeded registry.
#[derive(Clone, Debug)]
struct Resident {
    nik: String,
    full_name: String,
    birth_date: String,
    sex: String,
}

/// Residents of Dukcapil's registry matching `filter` (an SQL condition), at most `n`.
async fn residents(fed: &Federation, filter: &str, n: u32) -> Vec<Resident> {
    let db = fed.data_dir().join("dukcapil.db");
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    let sql = format!(
        "SELECT nik, full_name, birth_date, sex FROM residents WHERE {filter} ORDER BY nik LIMIT {n}"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| Resident {
            nik: r.get("nik"),
            full_name: r.get("full_name"),
            birth_date: r.get("birth_date"),
            sex: r.get("sex"),
        })
        .collect()
}

/// A well-formed NIK no resident holds.
async fn unregistered_nik(fed: &Federation) -> String {
    let someone = &residents(fed, "1 = 1", 1).await[0].nik;
    let db = fed.data_dir().join("dukcapil.db");
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    for serial in (1..9999).rev() {
        let nik = format!("{}{serial:04}", &someone[..12]);
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM residents WHERE nik = ?")
            .bind(&nik)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if held == 0 {
            return nik;
        }
    }
    panic!("every serial is taken");
}

/// The purpose PEDULI-WNI is granted `identity.verify` for in the federation's configuration.
fn purpose(fed: &Federation) -> String {
    let kemlu = fed.config.member(&id(KEMLU)).unwrap();
    let peduli = kemlu
        .subsystems
        .iter()
        .find(|s| s.id == id(PEDULI))
        .unwrap();
    let grant = peduli
        .grants
        .iter()
        .find(|g| g.contract.id == "identity.verify")
        .expect("PEDULI-WNI is granted identity.verify");
    grant.purposes[0].clone()
}

/// A CSV line of `fields`, quoted where they must be.
fn csv_line(fields: &[&str]) -> String {
    let quoted: Vec<String> = fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                (*f).to_owned()
            }
        })
        .collect();
    quoted.join(",") + "\n"
}

/// `simpul cleanse` as PEDULI-WNI on the federation's configuration, in `dir`.
fn cleanse_args<'a>(fed: &'a Federation, purpose: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--config",
        fed.config_file.to_str().unwrap(),
        "cleanse",
        "--as",
        PEDULI,
        "--purpose",
        purpose,
    ];
    args.extend_from_slice(extra);
    args
}

/// The reason of each rejected row, by the line of the input it came from.
fn reasons_by_line(rejects: &str, input: &str) -> HashMap<u64, String> {
    let mut lines = HashMap::new();
    let mut reader = csv::Reader::from_reader(input.as_bytes());
    for record in reader.records() {
        let record = record.unwrap();
        let line = record.position().unwrap().line();
        lines.insert(record.iter().collect::<Vec<_>>().join("\u{1}"), line);
    }
    let mut reasons = HashMap::new();
    let mut reader = csv::Reader::from_reader(rejects.as_bytes());
    for record in reader.records() {
        let record = record.unwrap();
        let fields: Vec<&str> = record.iter().collect();
        let (row, verdict) = fields.split_at(fields.len() - 2);
        reasons.insert(lines[&row.join("\u{1}")], verdict[0].to_owned());
    }
    reasons
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanse_against_dukcapil_gives_each_row_its_reason_and_each_batch_one_audited_exchange_on_both_sides()
 {
    let fed = Federation::start().await;
    let purpose = purpose(&fed);
    let alive = "citizenship = 'WNI' AND deceased = 0";
    let people = residents(&fed, alive, 6).await;
    let dead = &residents(&fed, "deceased = 1", 1).await[0];
    let foreign = &residents(&fed, "citizenship = 'WNA' AND deceased = 0", 1).await[0];
    let unknown = unregistered_nik(&fed).await;
    let row = |r: &Resident, city: &str| {
        csv_line(&[
            &r.nik,
            &r.full_name,
            &r.birth_date,
            &r.sex,
            "2024-01-10",
            city,
        ])
    };
    let [kept, twice, renamed, redated, young, plain] = [0, 1, 2, 3, 4, 5].map(|i| &people[i]);
    let mut input = String::from("nik,full_name,birth_date,sex,reported_on,city\n");
    input += &row(kept, "Taipei"); // 2: kept
    input += &row(twice, "Osaka, JP"); // 3: kept
    input += &csv_line(&[&twice.nik, &twice.full_name, "", "", "2023-01-01", "Osaka"]); // 4: duplicate of 3
    input += &csv_line(&["32010114079500", "Tono", "1990-01-01", "M", "", "Dubai"]); // 5: invalid-nik
    input += &csv_line(&[&unknown, "Ani Wijaya", "1995-05-05", "F", "", "Doha"]); // 6: not-registered
    input += &row(dead, "Kuala Lumpur"); // 7: deceased
    input += &row(foreign, "Hong Kong"); // 8: foreign-national
    input += &csv_line(&[
        &renamed.nik,
        "Zzyzx Qwerty",
        &renamed.birth_date,
        &renamed.sex,
        "",
        "Seoul",
    ]); // 9: name-mismatch
    // Another day of the same month, which every month has.
    let day = if &redated.birth_date[8..] == "01" {
        "02"
    } else {
        "01"
    };
    let other_birth = format!("{}{day}", &redated.birth_date[..8]);
    input += &csv_line(&[
        &redated.nik,
        &redated.full_name,
        &other_birth,
        &redated.sex,
        "",
        "Tokyo",
    ]); // 10: birth-date-mismatch
    input += &row(young, "Singapore"); // 11: kept
    input += &csv_line(&[&plain.nik, &plain.full_name, "", "", "", "Sydney"]); // 12: kept, only the NIK and name sent
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("reports.csv"), &input).unwrap();
    let args = cleanse_args(
        &fed,
        &purpose,
        &[
            "reports.csv",
            "--out",
            "cleansed.csv",
            "--batch-size",
            "3",
            "--age-at",
            "17",
            "--on",
            "2024-02-14",
        ],
    );
    let out = simpul(d, &args).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("rows in") && table.contains("reaching 17 by 2024-02-14"),
        "{table}"
    );

    let cleansed = std::fs::read_to_string(d.join("cleansed.csv")).unwrap();
    let lines: Vec<&str> = input.lines().collect();
    let expected_kept: String = [1, 2, 10, 11]
        .iter()
        .map(|i| format!("{}\n", lines[*i]))
        .collect();
    assert_eq!(cleansed, format!("{}\n{expected_kept}", lines[0]));
    let rejects = std::fs::read_to_string(d.join("cleansed.rejects.csv")).unwrap();
    let reasons = reasons_by_line(&rejects, &input);
    let expected: HashMap<u64, String> = [
        (4, "duplicate"),
        (5, "invalid-nik"),
        (6, "not-registered"),
        (7, "deceased"),
        (8, "foreign-national"),
        (9, "name-mismatch"),
        (10, "birth-date-mismatch"),
    ]
    .into_iter()
    .map(|(line, reason)| (line, reason.to_owned()))
    .collect();
    assert_eq!(reasons, expected, "{rejects}");
    assert!(
        rejects.contains("duplicate of row 3 (same NIK)"),
        "{rejects}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("cleansed.summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["rows_in"], 11);
    assert_eq!(summary["rows_out"], 4);
    // Nine rows sent (all but the duplicate and the malformed NIK), in batches of three.
    assert_eq!(summary["verified"], 9);
    assert!(!d.join("cleansed.csv.work").exists());

    // Each batch is one exchange, recorded by both gateways, asked by PEDULI-WNI.
    let verify_records = |records: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        records
            .into_iter()
            .filter(|r| r["contract"] == "identity.verify")
            .collect()
    };
    let consumer = verify_records(fed.all_records(KEMLU).await);
    let provider = verify_records(fed.all_records(DUKCAPIL).await);
    assert_eq!(consumer.len(), 3, "{consumer:?}");
    assert_eq!(provider.len(), 3, "{provider:?}");
    for r in &consumer {
        assert_eq!(r["outcome"], "ok");
        assert_eq!(r["subsystem"], PEDULI);
        assert_eq!(r["purpose"], purpose.as_str());
        assert!(
            provider
                .iter()
                .any(|p| p["exchange_id"] == r["exchange_id"])
        );
    }
}

/// A file of every living citizen of the registry (about 2,000 rows), each reported once.
async fn big_input(fed: &Federation, dir: &Path) -> PathBuf {
    let mut input = String::from("nik,full_name,birth_date,sex\n");
    for r in residents(fed, "citizenship = 'WNI' AND deceased = 0", 100_000).await {
        input += &csv_line(&[&r.nik, &r.full_name, &r.birth_date, &r.sex]);
    }
    let path = dir.join("reports.csv");
    std::fs::write(&path, input).unwrap();
    path
}

/// Batches done so far in a run's work database, once it has one.
async fn batches_done(work: &Path) -> i64 {
    let db = work.join("work.db");
    if !db.exists() {
        return 0;
    }
    let Ok(mut conn) = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .read_only(true)
        .connect()
        .await
    else {
        return 0;
    };
    sqlx::query_scalar("SELECT COUNT(*) FROM batches WHERE done = 1")
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0)
}

/// Starts a cleanse, waits until `more` further batches are done, and stops it with `signal`.
async fn stopped_part_way(
    d: &Path,
    args: &[&str],
    work: &Path,
    more: i64,
    signal: &str,
) -> std::process::ExitStatus {
    let before = batches_done(work).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_simpul"))
        .current_dir(d)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while batches_done(work).await < before + more {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be stopped"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no batch done"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    child.wait().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleanse_stopped_and_killed_mid_run_and_resumed_gives_the_same_files_as_a_straight_run() {
    let fed = Federation::start().await;
    let purpose = purpose(&fed);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    big_input(&fed, d).await;
    let straight = simpul(
        d,
        &cleanse_args(
            &fed,
            &purpose,
            &["reports.csv", "--out", "straight.csv", "--batch-size", "10"],
        ),
    )
    .await;
    assert!(straight.status.success(), "{}", text(&straight.stderr));

    let args = cleanse_args(
        &fed,
        &purpose,
        &[
            "reports.csv",
            "--out",
            "resumed.csv",
            "--batch-size",
            "10",
            "--resume",
        ],
    );
    let work = d.join("resumed.csv.work");
    // Stopped as a service manager stops it: exit 1, the work kept.
    let status = stopped_part_way(d, &args, &work, 3, "-TERM").await;
    assert_eq!(status.code(), Some(1));
    assert!(work.join("work.db").exists());
    // Killed outright, twice.
    for _ in 0..2 {
        let status = stopped_part_way(d, &args, &work, 5, "-KILL").await;
        assert!(!status.success());
    }
    let resumed = simpul(d, &args).await;
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    for (a, b) in [
        ("straight.csv", "resumed.csv"),
        ("straight.rejects.csv", "resumed.rejects.csv"),
        ("straight.summary.json", "resumed.summary.json"),
    ] {
        assert_eq!(
            std::fs::read(d.join(a)).unwrap(),
            std::fs::read(d.join(b)).unwrap(),
            "{a} and {b} differ"
        );
    }
    assert!(!work.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleanse_over_its_subsystems_rate_slows_down_and_still_finishes() {
    // PEDULI-WNI may ask two exchanges a second.
    let fed = Federation::start_with(Options {
        edits: vec![(
            "rate = { per_second = 20000, burst = 20000 }".into(),
            "rate = { per_second = 2, burst = 2 }".into(),
        )],
        ..Options::default()
    })
    .await;
    let purpose = purpose(&fed);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut input = String::from("nik,full_name,birth_date,sex\n");
    for r in residents(&fed, "citizenship = 'WNI' AND deceased = 0", 60).await {
        input += &csv_line(&[&r.nik, &r.full_name, &r.birth_date, &r.sex]);
    }
    std::fs::write(d.join("reports.csv"), &input).unwrap();
    let out = simpul(
        d,
        &cleanse_args(
            &fed,
            &purpose,
            &["reports.csv", "--out", "cleansed.csv", "--batch-size", "5"],
        ),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cleansed = std::fs::read_to_string(d.join("cleansed.csv")).unwrap();
    assert_eq!(cleansed, input);
    // Some batches were refused as too fast on the way, and asked again.
    let refused = fed
        .all_records(KEMLU)
        .await
        .into_iter()
        .filter(|r| r["outcome"] == "subsystem-rate-limited")
        .count();
    assert!(refused > 0, "the run never went over its rate");
}
