//! Statistics contracts end to end (PROTOCOL.md §2.6): a table of counts from BP2MI's own
//! data, protected by the contract's disclosure rules before BP2MI's gateway signs it,
//! verified and recorded at both ends; a question too narrow to answer, and one outside the
//! contract, refused with their codes.

use std::collections::BTreeSet;

use contracts::disclosure::{Figure, PublishedTable, feasible_ranges};
use serde_json::{Value, json};

use crate::common::*;

const COUNTS: &str = "placement.counts";

/// Active placements by country and sex, as BP2MI's database has them.
async fn truth(f: &Federation) -> Vec<(String, String, i64)> {
    use sqlx::ConnectOptions;
    let mut db = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(f.data_dir().join("bp2mi.db"))
        .read_only(true)
        .connect()
        .await
        .unwrap();
    sqlx::query_as(
        "SELECT country, CASE WHEN substr(nik, 7, 2) > '40' THEN 'F' ELSE 'M' END, COUNT(*)
           FROM placements WHERE status = 'active' GROUP BY 1, 2",
    )
    .fetch_all(&mut db)
    .await
    .unwrap()
}

fn statistics(query: Value) -> Value {
    json!({"purpose": "statistics", "query": query})
}

#[tokio::test]
async fn a_statistics_question_is_answered_with_a_protected_table_signed_and_recorded_at_both_ends()
{
    let f = Federation::start().await;
    let truth = truth(&f).await;
    let reply = f
        .local_query(
            PEDULI,
            KEMLU,
            COUNTS,
            statistics(json!({"dimensions": ["country", "sex"]})),
        )
        .await;
    let body: Value = ok_json(&reply);
    let table: PublishedTable = serde_json::from_value(body["result"].clone()).unwrap();
    assert_eq!(table.min_cell, 10);
    let mut small = 0;
    for (country, sex, n) in &truth {
        let n = *n as u64;
        let figure = table.figure(&[Some(country), Some(sex)]).unwrap();
        match figure {
            // Every published count is the true one.
            Figure::Count(c) => assert_eq!(c, n, "{country} {sex}"),
            Figure::Suppressed => small += usize::from((1..10).contains(&n)),
        }
        // A count under 10 is never published.
        if (1..10).contains(&n) {
            assert_eq!(figure, Figure::Suppressed, "{country} {sex}: {n}");
        }
    }
    assert!(small > 0, "the demo's data has small cells to protect");
    let total: i64 = truth.iter().map(|t| t.2).sum();
    assert_eq!(
        table.figure(&[None, None]),
        Some(Figure::Count(total as u64))
    );
    // What the consumer holds reveals no suppressed figure, and none as small.
    for range in feasible_ranges(&table).unwrap() {
        assert!(range.protected(table.min_cell), "{range:?}");
    }

    // One record at each end: the question, no subject (it names no one), the answer.
    let exchange_id = body["exchange_id"].as_str().unwrap();
    for member in [KEMLU, BP2MI] {
        let records = f.records(member, exchange_id).await;
        assert_eq!(records.len(), 1, "{member}");
        let r = &records[0];
        assert_eq!(r["outcome"], "ok", "{member}: {r}");
        assert_eq!(r["purpose"], "statistics", "{member}: {r}");
        assert!(r["subject"].is_null(), "{member}: {r}");
    }
}

#[tokio::test]
async fn a_question_selecting_fewer_than_100_people_is_refused_with_422_population_too_small() {
    let f = Federation::start().await;
    let truth = truth(&f).await;
    // The country with the fewest active placements, under the contract's minimum of 100.
    let mut by_country = std::collections::BTreeMap::<&str, i64>::new();
    for (country, _, n) in &truth {
        *by_country.entry(country).or_default() += n;
    }
    let (rare, n) = by_country.iter().min_by_key(|(_, n)| **n).unwrap();
    assert!(
        *n < 100,
        "the demo has a country under the minimum: {by_country:?}"
    );
    let narrow = json!({"dimensions": ["sex"], "filters": {"country": [rare]}});

    // On the local face, relayed from BP2MI.
    let reply = f
        .local_query(PEDULI, KEMLU, COUNTS, statistics(narrow.clone()))
        .await;
    let p = assert_problem(&reply, 422, "population-too-small");
    assert_eq!(
        p.detail,
        "the population the filters select is below the contract's minimum of 100"
    );
    // At BP2MI's exchange face, from Kemlu's gateway.
    let request = f.request(KEMLU, BP2MI, COUNTS, "statistics", narrow);
    assert_problem(
        &f.send_signed(KEMLU, &request).await,
        422,
        "population-too-small",
    );
    // The refusal is recorded at the provider with its code, like any refusal after the
    // signature.
    let records = f.records(BP2MI, &request.id).await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0]["outcome"], "population-too-small",
        "{}",
        records[0]
    );

    // The same country with every other beside it is answered.
    let all: Vec<&str> = by_country.keys().copied().collect();
    let wide = json!({"dimensions": ["sex"], "filters": {"country": all}});
    assert_ok(&f.local_query(PEDULI, KEMLU, COUNTS, statistics(wide)).await);
}

#[tokio::test]
async fn a_question_outside_the_contract_is_refused_with_400_invalid_query() {
    let f = Federation::start().await;
    for (query, pointer) in [
        (json!({"dimensions": ["religion"]}), "/query/dimensions/0"),
        (json!({"dimensions": ["sex", "sex"]}), "/query/dimensions"),
        (
            json!({"dimensions": ["sex"], "filters": {"nik": ["3171011701900001"]}}),
            "/query/filters",
        ),
    ] {
        let request = f.request(KEMLU, BP2MI, COUNTS, "statistics", query.clone());
        let p = assert_problem(&f.send_signed(KEMLU, &request).await, 400, "invalid-query");
        assert!(
            p.errors.iter().any(|e| e.pointer == pointer),
            "{query}: {:?}",
            p.errors
        );
    }
}

/// `simpul counts` as a person runs it.
async fn counts(f: &Federation, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--config", f.config_file.to_str().unwrap(), "counts"];
    all.extend_from_slice(args);
    tokio::process::Command::new(env!("CARGO_BIN_EXE_simpul"))
        .args(&all)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn simpul_counts_reports_each_list_by_country_and_the_bounds_of_their_union() {
    let f = Federation::start().await;
    let out = counts(
        &f,
        &["--as", PEDULI, "--by", "country", "--json", "--no-overlaps"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["overlaps"], json!([]));
    // Every statistics contract Peduli WNI is granted, in the grants' order.
    let lists: Vec<&str> = report["lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["contract"].as_str().unwrap())
        .collect();
    assert_eq!(
        lists,
        ["placement.counts", "selfreport.counts", "insurance.counts"]
    );
    // BP2MI's count of each country is its database's, exactly or within the range shown.
    let mut by_country = std::collections::BTreeMap::<String, u64>::new();
    for (country, _, n) in truth(&f).await {
        *by_country.entry(country).or_default() += n as u64;
    }
    let rows = report["rows"].as_array().unwrap();
    for row in rows {
        let placed = &row["lists"][0];
        let (lo, hi) = (placed["lo"].as_u64().unwrap(), placed["hi"].as_u64());
        let truth = match row["value"].as_str() {
            Some(country) => by_country.get(country).copied().unwrap_or(0),
            None => by_country.values().sum(),
        };
        assert!(lo <= truth && hi.is_none_or(|hi| truth <= hi), "{row}");
        // The union is at least the largest list and at most their sum.
        let union = &row["union"];
        let lists = row["lists"].as_array().unwrap();
        let largest = lists.iter().map(|l| l["lo"].as_u64().unwrap()).max();
        assert_eq!(union["lo"].as_u64(), largest, "{row}");
    }
    assert!(
        rows.last().unwrap()["value"].is_null(),
        "the totals come last"
    );
    // Each figure's signed answer is recorded at both ends under its exchange id.
    for list in report["lists"].as_array().unwrap() {
        let id = list["exchange_id"].as_str().unwrap();
        let provider = list["provider"].as_str().unwrap();
        assert!(list["answer"].as_str().unwrap().split('.').count() == 3);
        for member in [KEMLU, provider] {
            let records = f.records(member, id).await;
            assert!(
                records.iter().any(|r| r["outcome"] == "ok"),
                "{member} records {id}: {records:?}"
            );
        }
    }

    // As a table for people, and a breakdown not every list has refused with its reason.
    let out = counts(&f, &["--as", PEDULI, "--no-overlaps"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("UNION") && text.contains("placement.counts/1"),
        "{text}"
    );
    let out = counts(&f, &["--as", PEDULI, "--by", "sector"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--by sector: selfreport.counts/1 has no such dimension"),
        "{stderr}"
    );

    // The overlaps too: Kemlu's list of a few hundred NIKs is under the contracts' minimum
    // of 1,000, so each run is refused before it begins. The counts are reported all the
    // same, and the command fails.
    let out = counts(&f, &["--as", PEDULI, "--json"]).await;
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["lists"].as_array().unwrap().len(), 3);
    let refused: Vec<(&str, &str)> = report["overlaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["contract"].as_str().unwrap(),
                o["refused"]["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            ("placement.overlap", "urn:simpul:error:set-too-small"),
            ("insurance.overlap", "urn:simpul:error:set-too-small"),
        ]
    );
    assert!(report["union_of_all"].is_null());
    let out = counts(&f, &["--as", PEDULI, "--overlap", "insurance.overlap"]).await;
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("insurance.overlap/1  ID:GOV:BPJSTK  statistics  refused: HTTP 422 urn:simpul:error:set-too-small: "),
        "{text}"
    );
}

#[tokio::test]
async fn simpul_counts_measures_each_overlap_with_the_callers_list_and_bounds_the_union_of_all() {
    let dir = tempfile::tempdir().unwrap();
    let f = Federation::start_with(Options {
        edits: vec![crate::overlap::catalog_with(dir.path(), 20, 2)],
        ..Options::default()
    })
    .await;
    // The truth, which no side of a run sees: Kemlu's list as its binding reads it (NIK,
    // country of the latest report), and the two providers' lists.
    let kemlu = crate::overlap::column(
        &f,
        "kemlu.db",
        "SELECT nik, country FROM reports r
          WHERE id = (SELECT id FROM reports l WHERE l.nik = r.nik ORDER BY reported_on DESC, id DESC LIMIT 1)",
    )
    .await;
    let ours: BTreeSet<&str> = kemlu.iter().map(|r| r.0.as_str()).collect();
    let placed = crate::overlap::column(
        &f,
        "bp2mi.db",
        "SELECT nik, '' FROM placements WHERE status = 'active'",
    )
    .await;
    let placed: BTreeSet<&str> = placed.iter().map(|r| r.0.as_str()).collect();
    let insured = crate::overlap::column(
        &f,
        "bpjstk.db",
        "SELECT nik, '' FROM participants WHERE status = 'active' AND country IS NOT NULL",
    )
    .await;
    let insured: BTreeSet<&str> = insured.iter().map(|r| r.0.as_str()).collect();
    let providers = [&placed, &insured];
    let all: BTreeSet<&str> = ours
        .iter()
        .chain(&placed)
        .chain(&insured)
        .copied()
        .collect();
    // Placed and insured, never self-reported: what the upper bound counts twice.
    let twice = placed
        .iter()
        .filter(|n| insured.contains(*n) && !ours.contains(*n))
        .count() as u64;
    assert!(twice > 0, "the demo's providers' lists overlap off Kemlu's");

    let out = counts(&f, &["--as", PEDULI, "--by", "country", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The statistics rows are still there.
    assert_eq!(report["lists"].as_array().unwrap().len(), 3);
    assert_eq!(report["own_list"]["name"], "selfreports");
    assert_eq!(report["own_list"]["grouped"], true);
    let overlaps = report["overlaps"].as_array().unwrap();
    let names: Vec<&str> = overlaps
        .iter()
        .map(|o| o["contract"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["placement.overlap", "insurance.overlap"]);
    // Each overlap is the true one, each union of two exact.
    let size = |s: &BTreeSet<&str>| s.len() as u64;
    let mut unions = Vec::new();
    let mut overlaps_sum = 0;
    for (o, theirs) in overlaps.iter().zip(providers) {
        let m = &o["measured"];
        let both = ours.iter().filter(|n| theirs.contains(*n)).count() as u64;
        let union = ours.union(theirs).count() as u64;
        assert_eq!(m["list"], "selfreports");
        assert_eq!(m["identifiers"], json!(size(&ours)), "{o}");
        assert_eq!(m["theirs"], json!(size(theirs)), "{o}");
        assert_eq!(m["overlap"], json!(both), "{o}");
        assert_eq!(m["union"], json!(union), "{o}");
        assert!(both > 0 && union > size(&ours).max(size(theirs)), "{o}");
        unions.push(union);
        overlaps_sum += both;
        // Per country of Kemlu's list, the countries under the minimum of 20 pooled.
        let mut rows = std::collections::BTreeMap::<&str, u64>::new();
        for (_, country) in &kemlu {
            *rows.entry(country).or_default() += 1;
        }
        let mut truth = std::collections::BTreeMap::<&str, (u64, u64)>::new();
        for (nik, country) in &kemlu {
            let label = if rows[country.as_str()] < 20 {
                "(other)"
            } else {
                country
            };
            let t = truth.entry(label).or_default();
            t.0 += 1;
            t.1 += u64::from(theirs.contains(nik.as_str()));
        }
        let got: std::collections::BTreeMap<&str, (u64, u64)> = m["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["label"].as_str().unwrap(),
                    (g["size"].as_u64().unwrap(), g["overlap"].as_u64().unwrap()),
                )
            })
            .collect();
        assert_eq!(got, truth);
        assert!(got.len() > 1, "{got:?}");
        // The run and its report are recorded at both ends; the run's signed envelopes
        // are in the report.
        assert_eq!(m["report"]["recorded"], true, "{o}");
        let provider = o["provider"].as_str().unwrap();
        for id in [&m["exchange_id"], &m["report"]["exchange_id"]] {
            let id = id.as_str().unwrap();
            for member in [KEMLU, provider] {
                let records = f.records(member, id).await;
                assert!(
                    records.iter().any(|r| r["outcome"] == "ok"),
                    "{member} records {id}: {records:?}"
                );
            }
        }
        for jws in ["request", "response"] {
            assert_eq!(m["evidence"][jws].as_str().unwrap().split('.').count(), 3);
        }
    }
    // The union of all three lists: at least the larger union of two, at most what counts
    // twice the people on both providers' lists and not on Kemlu's.
    let u = &report["union_of_all"];
    assert_eq!(
        u["lists"],
        json!(["selfreports", "placement.overlap/1", "insurance.overlap/1"])
    );
    let lo = u["lo"].as_u64().unwrap();
    let hi = u["hi"].as_u64().unwrap();
    assert_eq!(lo, unions.iter().copied().max().unwrap());
    assert_eq!(
        hi,
        size(&ours) + size(&placed) + size(&insured) - overlaps_sum
    );
    let truth = all.len() as u64;
    assert!(lo <= truth && truth <= hi, "{lo} ≤ {truth} ≤ {hi}");
    assert_eq!(hi - truth, twice);
    // BP2MI's placement count and its list's distinct NIKs are side by side, said to be
    // two measures.
    let notes: Vec<&str> = report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notes.iter().any(
            |n| n.starts_with("ID:GOV:BP2MI: placement.counts/1 counts ")
                && n.contains(&format!(
                    "placement.overlap/1 holds {} distinct NIKs",
                    size(&placed)
                ))
        ),
        "{notes:?}"
    );

    // As a table, one overlap named: its union is exact.
    let out = counts(
        &f,
        &[
            "--as",
            PEDULI,
            "--overlap",
            "placement.overlap/1",
            "--list",
            "selfreports",
        ],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "All lists: selfreports, placement.overlap/1 — exactly {} people",
            unions[0]
        )),
        "{text}"
    );

    // A day's runs spent at BP2MI (two in this catalog): its run is refused, BPJS TK's
    // still measured and reported, and the command fails.
    let out = counts(&f, &["--as", PEDULI, "--json"]).await;
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let overlaps = report["overlaps"].as_array().unwrap();
    assert_eq!(
        overlaps[0]["refused"]["type"],
        "urn:simpul:error:runs-exhausted"
    );
    assert_eq!(overlaps[1]["measured"]["union"], json!(unions[1]));
    assert_eq!(report["union_of_all"]["lo"], json!(unions[1]));
    assert_eq!(report["union_of_all"]["hi"], json!(unions[1]));

    // What cannot be asked is refused before anything is.
    for (args, says) in [
        (
            &["--list", "nosuch"][..],
            "--list nosuch: ID:GOV:KEMLU has no such list",
        ),
        (
            &["--overlap", "placement.counts"][..],
            "placement.counts: placement.counts/1 is not an overlap contract",
        ),
    ] {
        let mut all = vec!["--as", PEDULI];
        all.extend_from_slice(args);
        let out = counts(&f, &all).await;
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}
