//! Overlap counts end to end (PROTOCOL.md §2.7): Kemlu's own list against BP2MI's and BPJS
//! TK's, counted without either side seeing the other's NIKs, equal to the true intersection
//! and recorded at both ends with the report that carries the count; and every refusal of a
//! run — a list below the minimum, a day's runs spent, a tampered or replayed list, a report
//! of no run — with its code.
//!
//! The test federation has 3,000 people, so its lists hold a few hundred NIKs: its catalog
//! is the repository's with the overlap contracts' `min_set` lowered to 20 and
//! `runs_per_day` to 3.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use contracts::ContractRef;
use contracts::psi::wire::{PSI_MEDIA_TYPE, frame_lists, run_context};
use contracts::psi::{BlindingKey, DEFAULT_FRAME_BYTES, Limits, ListKind, Query};
use serde_json::{Value, json};

use crate::common::*;

const PLACEMENTS: &str = "placement.overlap";
const INSURANCE: &str = "insurance.overlap";

/// A copy of the repository's catalog with the overlap contracts' `min_set` and
/// `runs_per_day` set, and the edit that points the test's config at it.
pub(crate) fn catalog_with(dir: &Path, min_set: u64, runs_per_day: u32) -> (String, String) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let from = repo.join("contracts/catalog");
    let to = dir.join("catalog");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if doc.get("overlap").is_some() {
            doc["overlap"]["min_set"] = json!(min_set);
            doc["overlap"]["runs_per_day"] = json!(runs_per_day);
        }
        std::fs::write(
            to.join(path.file_name().unwrap()),
            serde_json::to_vec_pretty(&doc).unwrap(),
        )
        .unwrap();
    }
    (
        format!("catalog = {:?}", from.display().to_string()),
        format!("catalog = {:?}", to.display().to_string()),
    )
}

/// A federation on a catalog of `min_set` 20 and `runs_per_day` 3, with `edits`.
async fn federation(dir: &Path, edits: &[(&str, &str)]) -> Federation {
    let mut options = Options {
        edits: vec![catalog_with(dir, 20, 3)],
        ..Options::default()
    };
    for (old, new) in edits {
        options.edits.push(((*old).to_owned(), (*new).to_owned()));
    }
    Federation::start_with(options).await
}

/// The rows of two text columns `statement` reads from the member's database `db`.
pub(crate) async fn column(
    f: &Federation,
    db: &str,
    statement: &'static str,
) -> Vec<(String, String)> {
    use sqlx::ConnectOptions;
    let mut db = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(f.data_dir().join(db))
        .read_only(true)
        .connect()
        .await
        .unwrap();
    sqlx::query_as(sqlx::AssertSqlSafe(statement))
        .fetch_all(&mut db)
        .await
        .unwrap()
}

/// Kemlu's list as its binding reads it: (NIK, country of the latest report).
async fn kemlu_list(f: &Federation) -> Vec<(String, String)> {
    column(
        f,
        "kemlu.db",
        "SELECT nik, country FROM reports r
          WHERE id = (SELECT id FROM reports l WHERE l.nik = r.nik ORDER BY reported_on DESC, id DESC LIMIT 1)",
    )
    .await
}

fn run(list: &str, grouped: bool) -> Value {
    json!({"purpose": "statistics", "query": {"list": list, "grouped": grouped}})
}

/// A run of `ids` (one group) from Kemlu's gateway to BP2MI's, as its exchange face takes
/// it: the signed request, and the body with its lists after the envelope.
fn direct_run(f: &Federation, ids: &[String]) -> (contracts::ExchangeRequest, Vec<u8>) {
    let mut request = f.request(KEMLU, BP2MI, PLACEMENTS, "statistics", json!(null));
    let context = run_context(&request.id, &ContractRef::new(PLACEMENTS, "1"));
    let key = BlindingKey::generate().unwrap();
    let limits = Limits {
        min_set: 1,
        ..Limits::default()
    };
    let query = Query::blind(&key, &context, ids.iter().map(|id| ("", id)), &limits).unwrap();
    let (framed, groups) = frame_lists(
        &[(ListKind::Points, 0, query.lists()[0].as_flattened())],
        DEFAULT_FRAME_BYTES,
    )
    .unwrap();
    request.query = json!({"run": {"groups": groups}});
    let mut body = f.sign(KEMLU, &request).into_bytes();
    body.push(b'\n');
    body.extend_from_slice(&framed);
    (request, body)
}

fn niks(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{:016}", 3_171_000_000_000_000u64 + i as u64))
        .collect()
}

async fn post_run(f: &Federation, body: Vec<u8>) -> gateway::client::Reply {
    f.post_exchange(KEMLU, BP2MI, PLACEMENTS, PSI_MEDIA_TYPE, body)
        .await
}

#[tokio::test]
async fn an_overlap_run_counts_the_true_intersection_and_both_logs_hold_the_run_and_its_count() {
    let dir = tempfile::tempdir().unwrap();
    let f = federation(dir.path(), &[]).await;
    let kemlu = kemlu_list(&f).await;
    let placed: BTreeSet<String> = column(
        &f,
        "bp2mi.db",
        "SELECT nik, nik FROM placements WHERE status = 'active'",
    )
    .await
    .into_iter()
    .map(|r| r.0)
    .collect();
    let ours: BTreeSet<&String> = kemlu.iter().map(|r| &r.0).collect();
    let both = ours.iter().filter(|n| placed.contains(**n)).count();
    assert!(
        both > 0 && both < ours.len(),
        "the demo's lists overlap in part"
    );

    let reply = f
        .local_query(PEDULI, KEMLU, PLACEMENTS, run("selfreports", false))
        .await;
    let body: Value = ok_json(&reply);
    let result = &body["result"];
    assert_eq!(result["overlap"], json!(both), "{result}");
    assert_eq!(result["identifiers"], json!(ours.len()));
    assert_eq!(result["theirs"], json!(placed.len()));
    assert_eq!(result["report"]["recorded"], json!(true), "{result}");

    // The run and its report, one record each at both ends, linked by the run's id, with
    // the run's figures: the sizes at the provider (which never learns the count from the
    // run), the count too at the consumer, and what the report says at both.
    let run_id = body["exchange_id"].as_str().unwrap();
    let report_id = result["report"]["exchange_id"].as_str().unwrap();
    let sizes = json!({"groups": [ours.len()], "theirs": placed.len()});
    let counted = json!({"groups": [ours.len()], "theirs": placed.len(), "overlaps": [both]});
    for (member, run_figures) in [(KEMLU, &counted), (BP2MI, &sizes)] {
        let runs = f.records(member, run_id).await;
        assert_eq!(runs.len(), 1, "{member}");
        assert_eq!(runs[0]["outcome"], "ok", "{member}: {}", runs[0]);
        assert_eq!(runs[0]["contract"], PLACEMENTS);
        assert!(runs[0]["subject"].is_null(), "{member}: {}", runs[0]);
        assert_eq!(&runs[0]["overlap"], run_figures, "{member}");
        let reports = f.records(member, report_id).await;
        assert_eq!(reports.len(), 1, "{member}");
        assert_eq!(reports[0]["outcome"], "ok", "{member}: {}", reports[0]);
        assert_eq!(reports[0]["lookup_id"], run_id, "{member}: {}", reports[0]);
        assert_eq!(reports[0]["overlap"], counted, "{member}");
    }
    // The count is in the report's signed request in both logs; the run's envelopes hold
    // the lists' sizes and digests, never a point.
    for member in [KEMLU, BP2MI] {
        let kept = f
            .audit_get(member, &format!("/audit/evidence?exchange_id={report_id}"))
            .await;
        let text = String::from_utf8_lossy(&kept.body).into_owned();
        assert_eq!(kept.status, 200, "{member}: {text}");
        let kept: Value = serde_json::from_str(&text).unwrap();
        let request = kept["evidence"][0]["request"].as_str().unwrap();
        let payload = contracts::ParsedJws::parse(request, contracts::envelope::REQUEST_TYP)
            .unwrap()
            .payload;
        let payload: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            payload["query"]["report"]["groups"][0]["overlap"],
            json!(both),
            "{member}"
        );
    }

    // Grouped by country, against BPJS TK: each group's count is its true overlap, the
    // countries under the minimum of 20 pooled.
    let insured: BTreeSet<String> = column(
        &f,
        "bpjstk.db",
        "SELECT nik, nik FROM participants WHERE status = 'active' AND country IS NOT NULL",
    )
    .await
    .into_iter()
    .map(|r| r.0)
    .collect();
    let mut rows: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, country) in &kemlu {
        *rows.entry(country).or_default() += 1;
    }
    let mut truth: BTreeMap<String, BTreeSet<&String>> = BTreeMap::new();
    for (nik, country) in &kemlu {
        let label = if rows[country.as_str()] < 20 {
            "(other)"
        } else {
            country
        };
        truth.entry(label.to_owned()).or_default().insert(nik);
    }
    let reply = f
        .local_query(PEDULI, KEMLU, INSURANCE, run("selfreports", true))
        .await;
    let body: Value = ok_json(&reply);
    let got: BTreeMap<String, (u64, u64)> = body["result"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["label"].as_str().unwrap().to_owned(),
                (g["size"].as_u64().unwrap(), g["overlap"].as_u64().unwrap()),
            )
        })
        .collect();
    let expected: BTreeMap<String, (u64, u64)> = truth
        .iter()
        .map(|(label, group)| {
            let overlap = group.iter().filter(|n| insured.contains(**n)).count();
            (label.clone(), (group.len() as u64, overlap as u64))
        })
        .collect();
    assert_eq!(got, expected);
    assert!(got.len() > 1, "{got:?}");
}

#[tokio::test]
async fn a_list_below_the_minimum_is_refused_with_422_set_too_small() {
    let dir = tempfile::tempdir().unwrap();
    let f = federation(
        dir.path(),
        &[(
            "statement = \"SELECT nik AS identifier FROM placements WHERE status = 'active'\"",
            "statement = \"SELECT nik AS identifier FROM placements WHERE status = 'active' LIMIT 19\"",
        )],
    )
    .await;
    // The consumer's group, as its envelope announces it: refused before a list is read.
    let (request, body) = direct_run(&f, &niks(19));
    let p = assert_problem(&post_run(&f, body).await, 422, "set-too-small");
    assert!(p.detail.contains("group 0"), "{}", p.detail);
    let records = f.records(BP2MI, &request.id).await;
    assert_eq!(records[0]["outcome"], "set-too-small");
    assert_eq!(records[0]["overlap"], json!({"groups": [19]}));
    // Refused from the envelope while 40 MB of lists are still on their way: the consumer
    // reads the refusal, not a reset.
    let (mut request, _) = direct_run(&f, &niks(20));
    request.query["run"]["groups"][0]["size"] = json!(19);
    let mut body = f.sign(KEMLU, &request).into_bytes();
    body.push(b'\n');
    body.resize(body.len() + 40_000_000, 0);
    assert_problem(&post_run(&f, body).await, 422, "set-too-small");
    // The provider's own list (19 here): its size is not said.
    let reply = f
        .local_query(PEDULI, KEMLU, PLACEMENTS, run("selfreports", false))
        .await;
    let p = assert_problem(&reply, 422, "set-too-small");
    assert!(p.detail.contains("the provider's list"), "{}", p.detail);
    assert!(!p.detail.contains("19"), "{}", p.detail);
}

#[tokio::test]
async fn a_consumers_runs_past_runs_per_day_are_refused_with_429_runs_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let f = federation(dir.path(), &[]).await;
    let ids = niks(60);
    for _ in 0..3 {
        let (_, body) = direct_run(&f, &ids);
        assert_ok(&post_run(&f, body).await);
    }
    // Wait out the rate (1 a second) so that only the day's count can refuse.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let (request, body) = direct_run(&f, &ids);
    let reply = post_run(&f, body).await;
    let p = assert_problem(&reply, 429, "runs-exhausted");
    let retry: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    assert_eq!(p.retry_after, Some(retry));
    assert_eq!(
        f.records(BP2MI, &request.id).await[0]["outcome"],
        "runs-exhausted"
    );
    // A report is not a run: it is still answered (here, refused for naming no run).
    let report = f.request(
        KEMLU,
        BP2MI,
        PLACEMENTS,
        "statistics",
        json!({"report": {"run": uuid::Uuid::new_v4().to_string(), "theirs": 1, "groups": [{"size": 60, "overlap": 0}]}}),
    );
    assert_problem(&f.send_signed(KEMLU, &report).await, 422, "run-mismatch");
}

#[tokio::test]
async fn a_tampered_list_is_refused_with_400_bad_frames_and_a_replayed_run_with_409() {
    let dir = tempfile::tempdir().unwrap();
    let f = federation(dir.path(), &[]).await;
    let ids = niks(60);
    // A point altered after signing: the frame's running digest no longer holds.
    let (request, mut body) = direct_run(&f, &ids);
    let last = body.len() - 1;
    body[last] ^= 1;
    let p = assert_problem(&post_run(&f, body).await, 400, "bad-frames");
    assert!(p.detail.contains("running digest"), "{}", p.detail);
    assert_eq!(
        f.records(BP2MI, &request.id).await[0]["outcome"],
        "bad-frames"
    );
    // The lists cut short.
    let (_, mut body) = direct_run(&f, &ids);
    body.truncate(body.len() - 32);
    assert_problem(&post_run(&f, body).await, 400, "bad-frames");
    // A run's envelope sent as application/jose, without its lists.
    let (request, _) = direct_run(&f, &ids);
    let p = assert_problem(&f.send_signed(KEMLU, &request).await, 400, "bad-frames");
    assert!(p.detail.contains("application/simpul-psi"), "{}", p.detail);
    // The same run twice: the second is a replay.
    let (_, body) = direct_run(&f, &ids);
    assert_ok(&post_run(&f, body.clone()).await);
    assert_problem(&post_run(&f, body).await, 409, "replay");
}

#[tokio::test]
async fn a_report_that_does_not_match_its_run_is_refused_with_422_run_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let f = federation(dir.path(), &[]).await;
    let (request, body) = direct_run(&f, &niks(60));
    let reply = post_run(&f, body).await;
    assert_ok(&reply);
    // The provider's list size, as the run's signed answer announces it.
    let lf = reply.body.iter().position(|&b| b == b'\n').unwrap();
    let answer = std::str::from_utf8(&reply.body[..lf]).unwrap();
    let answer = contracts::ParsedJws::parse(answer, contracts::envelope::ANSWER_TYP).unwrap();
    let answer: Value = serde_json::from_slice(&answer.payload).unwrap();
    let theirs = answer["result"]["theirs"]["size"].as_u64().unwrap();
    let report = |run: &str, theirs: u64, size: u64, overlap: u64| {
        f.request(
            KEMLU,
            BP2MI,
            PLACEMENTS,
            "statistics",
            json!({"report": {"run": run, "theirs": theirs, "groups": [{"size": size, "overlap": overlap}]}}),
        )
    };
    // The report that matches is recorded.
    let fine = report(&request.id, theirs, 60, 7);
    let receipt: Value = {
        let reply = f.send_signed(KEMLU, &fine).await;
        assert_ok(&reply);
        let text = std::str::from_utf8(&reply.body).unwrap();
        let parsed = contracts::ParsedJws::parse(text, contracts::envelope::ANSWER_TYP).unwrap();
        serde_json::from_slice(&parsed.payload).unwrap()
    };
    assert_eq!(receipt["result"]["recorded"], json!(request.id));
    // Another size of the provider's list, of a group, an overlap larger than its group, and
    // a run that does not exist.
    for r in [
        report(&request.id, theirs + 1, 60, 0),
        report(&request.id, theirs, 61, 0),
        report(&request.id, theirs, 60, 61),
        report(&uuid::Uuid::new_v4().to_string(), theirs, 60, 0),
    ] {
        let run = r.query["report"]["run"].as_str().unwrap().to_owned();
        let p = assert_problem(&f.send_signed(KEMLU, &r).await, 422, "run-mismatch");
        assert!(p.detail.contains(&run), "{}", p.detail);
    }
}

#[tokio::test]
async fn a_run_while_another_is_answered_is_refused_with_503_and_the_next_one_is_answered() {
    use rustls::pki_types::ServerName;
    use tokio::io::AsyncWriteExt;

    let dir = tempfile::tempdir().unwrap();
    let f = federation(dir.path(), &[]).await;
    let ids = niks(5_000);
    // A run whose lists stop half way, its connection held open: the provider is answering it.
    let (_, body) = direct_run(&f, &ids);
    let (chain, key) = f.gateway_identity(KEMLU);
    let tls = rustls::ClientConfig::builder_with_provider(gateway::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(f.roots())
        .with_client_auth_cert(chain, key)
        .unwrap();
    let addr = f.config.member(&id(BP2MI)).unwrap().listen;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stalled = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let head = format!(
        "POST /v1/exchange/{PLACEMENTS}/1 HTTP/1.1\r\nhost: localhost\r\ncontent-type: {PSI_MEDIA_TYPE}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&body[..body.len() / 2]).await.unwrap();
    stalled.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let (_, body) = direct_run(&f, &ids);
    let p = assert_problem(&post_run(&f, body).await, 503, "provider-unavailable");
    assert!(p.detail.contains("another overlap run"), "{}", p.detail);
    // The stalled run's connection breaks: its run ends, and the next one is answered.
    drop(stalled);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, body) = direct_run(&f, &ids);
    assert_ok(&post_run(&f, body).await);
}
