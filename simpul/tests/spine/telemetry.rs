//! What operators plug in: the Prometheus series (every family described, with the labels
//! OPERATIONS.md §3.8 lists, counts that match the exchanges made, accepted by `promtool`
//! when `SIMPUL_TEST_PROMTOOL` names it), the health probes of the admin listener, and the
//! W3C trace context carried from a member system through both gateways into an HTTP
//! adapter's upstream call.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gateway::metrics::{Kind, SERIES};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::*;

/// The labels of one sample line, `name{a="x",b="y"} 1` (values hold no `",`).
fn sample(line: &str) -> Option<(&str, HashMap<&str, &str>)> {
    let (name, rest) = line.split_once('{')?;
    let (labels, _) = rest.rsplit_once('}')?;
    let labels = labels
        .split("\",")
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.split_once("=\"")?;
            Some((k, v.trim_end_matches('"')))
        })
        .collect();
    Some((name, labels))
}

#[tokio::test]
async fn every_series_is_described_and_labelled_as_documented_and_counts_the_exchanges_made() {
    let f = Federation::start().await;
    // Three answered, one refused by Kemlu's own gateway (a purpose it was not granted).
    for _ in 0..3 {
        f.ask_citizenship().await;
    }
    let nik = f.population.sample_in_all_four();
    let refused = f
        .local_query(
            PEDULI,
            KEMLU,
            "citizenship.status",
            json!({"purpose": "social-security", "query": {"nik": nik}}),
        )
        .await;
    assert!(refused.status.is_client_error(), "{}", refused.status);
    let refused: Value = serde_json::from_slice(&refused.body).unwrap();
    let code = refused["type"]
        .as_str()
        .unwrap()
        .trim_start_matches("urn:simpul:error:")
        .to_owned();
    let contract = "contract=\"citizenship.status/1\"";
    let answered_at_kemlu = f
        .counter(
            KEMLU,
            "simpul_exchanges_total",
            &[
                contract,
                "peer=\"ID:GOV:DUKCAPIL\"",
                "role=\"consumer\"",
                "outcome=\"ok\"",
            ],
        )
        .await;
    assert_eq!(answered_at_kemlu, 3.0);
    let refused_at_kemlu = f
        .counter(
            KEMLU,
            "simpul_exchanges_total",
            &[
                contract,
                "role=\"consumer\"",
                &format!("outcome=\"{code}\""),
            ],
        )
        .await;
    assert_eq!(refused_at_kemlu, 1.0);
    let answered_at_dukcapil = f
        .counter(
            DUKCAPIL,
            "simpul_exchanges_total",
            &[
                contract,
                "peer=\"ID:GOV:KEMLU\"",
                "role=\"provider\"",
                "outcome=\"ok\"",
            ],
        )
        .await;
    assert_eq!(answered_at_dukcapil, 3.0);
    let timed = f
        .counter(
            DUKCAPIL,
            "simpul_exchange_duration_seconds_count",
            &[contract, "role=\"provider\""],
        )
        .await;
    assert_eq!(timed, 3.0);
    let appended = f
        .counter(DUKCAPIL, "simpul_audit_append_seconds_count", &[])
        .await;
    assert!(appended >= 3.0, "{appended}");

    // A connection that is no TLS at all is a failed handshake.
    let failed_before = f
        .counter(
            DUKCAPIL,
            "simpul_tls_handshakes_total",
            &["listener=\"gateway\"", "result=\"failed\""],
        )
        .await;
    let gateway = f.config.member(&id(DUKCAPIL)).unwrap().listen;
    let mut tcp = tokio::net::TcpStream::connect(gateway).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tcp.read_to_end(&mut sink).await;
    let failed_after = f
        .counter(
            DUKCAPIL,
            "simpul_tls_handshakes_total",
            &["listener=\"gateway\"", "result=\"failed\""],
        )
        .await;
    assert_eq!(failed_after, failed_before + 1.0);
    let completed = f
        .counter(
            DUKCAPIL,
            "simpul_tls_handshakes_total",
            &["listener=\"gateway\"", "result=\"completed\""],
        )
        .await;
    assert!(completed >= 1.0, "{completed}");

    // Every family is one of SERIES, described, of its type, with exactly its labels.
    let text = f.metrics(DUKCAPIL).await;
    let mut typed = HashMap::new();
    let mut helped = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            typed.insert(name.to_owned(), kind.to_owned());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split_once(' ').unwrap().0.to_owned());
        }
    }
    for must in [
        "simpul_exchanges_total",
        "simpul_exchange_duration_seconds",
        "simpul_audit_append_seconds",
        "simpul_tls_handshakes_total",
        "simpul_connections_open",
        "simpul_audit_records",
    ] {
        assert!(typed.contains_key(must), "{must} is not exported:\n{text}");
    }
    for (name, kind) in &typed {
        let s = SERIES
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} is exported but not in SERIES"));
        assert_eq!(kind, s.kind.as_str(), "{name}");
        assert!(helped.contains(name), "{name} has no # HELP");
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, labels) = sample(line).unwrap_or_else(|| panic!("unlabelled: {line}"));
        let family = SERIES
            .iter()
            .find(|s| {
                name == s.name
                    || (s.kind == Kind::Histogram
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|suffix| name.strip_suffix(suffix) == Some(s.name)))
            })
            .unwrap_or_else(|| panic!("{line}: not in SERIES"));
        let mut want: BTreeSet<&str> = family.labels.iter().copied().collect();
        want.extend(["member", "instance"]);
        if name.ends_with("_bucket") {
            want.insert("le");
        }
        let got: BTreeSet<&str> = labels.keys().copied().collect();
        assert_eq!(got, want, "{line}");
    }

    // Prometheus's own linter accepts the exposition.
    if let Ok(promtool) = std::env::var("SIMPUL_TEST_PROMTOOL") {
        let mut child = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("SIMPUL_TEST_PROMTOOL not set: promtool check metrics skipped");
    }
}

#[tokio::test]
async fn health_probes_answer_any_certificate_of_the_member_and_nothing_else() {
    let f = Federation::start().await;
    for identity in [
        format!("operator:{KEMLU}:OPS"),
        format!("auditor:{KEMLU}:AUDIT"),
        PEDULI.to_owned(),
    ] {
        let alive = f
            .admin_call(
                KEMLU,
                &identity,
                http::Method::GET,
                "/healthz",
                Bytes::new(),
            )
            .await;
        let body: Value = ok_json(&alive);
        assert_eq!(body["status"], "ok", "{identity}");
        let ready = f
            .admin_call(KEMLU, &identity, http::Method::GET, "/readyz", Bytes::new())
            .await;
        let body: Value = ok_json(&ready);
        assert_eq!(body["ready"], true, "{identity}");
    }
    // A subsystem still gets nothing else there.
    let metrics = f
        .admin_call(KEMLU, PEDULI, http::Method::GET, "/metrics", Bytes::new())
        .await;
    assert_problem(&metrics, 403, "identity-kind");
    // Another member's certificate is refused in the handshake, probes included.
    let other = f
        .try_admin_call(
            KEMLU,
            &format!("operator:{DUKCAPIL}:OPS"),
            http::Method::GET,
            "/healthz",
            Bytes::new(),
        )
        .await;
    assert!(other.is_err(), "{:?}", other.map(|r| r.status));
}

/// The request heads an HTTP backend received, and a server that answers every request
/// with `answer`.
async fn capture_backend(answer: Value) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let (seen, answer) = (seen.clone(), answer.to_string());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = tcp.write_all(reply.as_bytes()).await;
            });
        }
    });
    (port, heads)
}

/// The value of `name` in an HTTP request head, lower-cased names.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn a_member_systems_trace_reaches_the_providers_upstream_api_under_the_same_trace_id() {
    let (port, heads_store) =
        capture_backend(json!({"registered": true, "citizenship": "WNI", "deceased": false})).await;
    let sql = r#"  [members.provides.sql]
  database = "data/dukcapil.db"
  statement = "SELECT citizenship, deceased FROM residents WHERE nik = :nik"
  columns = { citizenship = "text", deceased = "bool" }
  found = { registered = true }
  not_found = { registered = false, citizenship = "unknown", deceased = false }"#;
    let http = format!(
        r#"  [members.provides.http]
  url = "http://127.0.0.1:{port}/residents/{{nik}}"
  method = "GET"
  answer = {{ registered = "/registered", citizenship = "/citizenship", deceased = "/deceased" }}
  timeout_ms = 2000"#
    );
    let f = Federation::start_with(Options {
        edits: vec![(sql.to_owned(), http)],
        ..Options::default()
    })
    .await;
    let sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let nik = f.population.sample_in_all_four();
    let reply = f
        .local_query_with(
            PEDULI,
            KEMLU,
            "citizenship.status",
            &[("traceparent", sent), ("tracestate", "kemlu=peduli")],
            citizen_protection(nik),
        )
        .await;
    assert_ok(&reply);
    let heads = heads_of(&heads_store);
    assert_eq!(heads.len(), 1, "{heads:?}");
    let got = header(&heads[0], "traceparent").expect("the upstream call carries traceparent");
    assert_eq!(&got[..36], &sent[..36], "the same trace: {got}");
    assert_ne!(
        &got[36..52],
        &sent[36..52],
        "a span of the provider's own: {got}"
    );
    assert_eq!(&got[52..], "-01", "sampled: {got}");
    assert_eq!(header(&heads[0], "tracestate"), Some("kemlu=peduli"));

    // A malformed traceparent is ignored, never refused: the call goes on without one.
    let purged = f
        .admin_call(
            DUKCAPIL,
            &format!("operator:{DUKCAPIL}:OPS"),
            http::Method::POST,
            "/admin/cache/purge",
            Bytes::from_static(br#"{"contract":"citizenship.status"}"#),
        )
        .await;
    assert_ok(&purged);
    let reply = f
        .local_query_with(
            PEDULI,
            KEMLU,
            "citizenship.status",
            &[
                ("traceparent", "00-not-a-trace-01"),
                ("tracestate", "kemlu=peduli"),
            ],
            citizen_protection(nik),
        )
        .await;
    assert_ok(&reply);
    let heads = heads_of(&heads_store);
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert_eq!(header(&heads[1], "traceparent"), None, "{}", heads[1]);
    assert_eq!(header(&heads[1], "tracestate"), None, "{}", heads[1]);
}

fn heads_of(store: &Mutex<Vec<String>>) -> Vec<String> {
    store.lock().unwrap().clone()
}
