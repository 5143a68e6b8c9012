//! Change notifications end to end (PROTOCOL.md §2.8): BP2MI's SISKOP2MI emits
//! `placement.changed` through its local face; BP2MI's gateway signs it once and delivers it
//! over mutual TLS to Kemlu's gateway, which checks it, keeps it once and posts it to Peduli
//! WNI's webhook, signed; each delivery is recorded at both ends. Kemlu down for a while
//! gets everything in order once it is back, and its webhook sees each event once; BP2MI
//! stopped before it delivered loses nothing. Deliveries that are not granted, tampered with,
//! replayed or off the contract's schema are refused with their codes. The rows SISKOP2MI
//! writes into BP2MI's change table are emitted in order, each once across a restart, and a
//! row the contract refuses holds back the rows behind it until it is fixed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use contracts::events::{Delivery, EVENT_TYP, Event, Receipt, Status};
use contracts::{ExchangeRequest, ParsedJws};
use gateway::webhook::WebhookSecret;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::common::*;

const CHANGED: &str = "placement.changed";

/// One webhook post as Peduli WNI's system received it.
#[derive(Clone, Debug)]
struct Posted {
    id: String,
    body: Value,
}

/// Peduli WNI's webhook: a plain HTTP server on loopback that keeps every post whose
/// Standard Webhooks signature verifies under the gateway's secret (read once it exists).
struct Hook {
    url: String,
    posted: Arc<Mutex<Vec<Posted>>>,
    refused: Arc<Mutex<u32>>,
}

impl Hook {
    async fn start(secret_file: std::path::PathBuf) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/peduli-wni/events",
            listener.local_addr().unwrap()
        );
        let posted: Arc<Mutex<Vec<Posted>>> = Arc::default();
        let refused: Arc<Mutex<u32>> = Arc::default();
        let (p, r) = (posted.clone(), refused.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (p, r, file) = (p.clone(), r.clone(), secret_file.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (p, r, file) = (p.clone(), r.clone(), file.clone());
                        async move {
                            let header = |n: &str| {
                                req.headers()
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned()
                            };
                            let (id, ts, sig) = (
                                header("webhook-id"),
                                header("webhook-timestamp"),
                                header("webhook-signature"),
                            );
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let secret =
                                WebhookSecret::parse(&std::fs::read_to_string(&file).unwrap())
                                    .unwrap();
                            let verified = secret.verify(
                                &id,
                                ts.parse().unwrap_or(0),
                                &sig,
                                &body,
                                contracts::unix_now(),
                                300,
                            );
                            let status = if verified.is_ok() {
                                p.lock().unwrap().push(Posted {
                                    id,
                                    body: serde_json::from_slice(&body).unwrap(),
                                });
                                204
                            } else {
                                *r.lock().unwrap() += 1;
                                401
                            };
                            let mut reply = http::Response::new(Full::new(Bytes::new()));
                            *reply.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(reply)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Hook {
            url,
            posted,
            refused,
        }
    }

    fn posted(&self) -> Vec<Posted> {
        self.posted.lock().unwrap().clone()
    }

    /// Waits (at most 30 s) until `n` posts arrived.
    async fn wait_for(&self, n: usize) -> Vec<Posted> {
        for _ in 0..300 {
            if self.posted().len() >= n {
                return self.posted();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{n} webhook posts expected, {} arrived",
            self.posted().len()
        )
    }
}

/// A federation whose Kemlu posts to `hook` (started first, on a port of its own).
async fn federation_with_hook(edits: Vec<(String, String)>) -> (Federation, Hook) {
    federation_with_hook_and(edits, vec![]).await
}

/// [`federation_with_hook`], with the gateways of `not_started` left to the test.
async fn federation_with_hook_and(
    edits: Vec<(String, String)>,
    not_started: Vec<&'static str>,
) -> (Federation, Hook) {
    let secret = tempfile::tempdir().unwrap().keep().join("webhook.secret");
    let hook = Hook::start(secret.clone()).await;
    let mut all = vec![
        (
            "url = \"http://127.0.0.1:7680/peduli-wni/events\"".to_owned(),
            format!("url = {:?}", hook.url),
        ),
        (
            "secret_file = \"certs/ID_GOV_KEMLU/webhook-peduli-wni.secret\"".to_owned(),
            format!("secret_file = {:?}", secret.display().to_string()),
        ),
    ];
    all.extend(edits);
    let f = Federation::start_with(Options {
        edits: all,
        not_started,
        ..Options::default()
    })
    .await;
    (f, hook)
}

/// SISKOP2MI emits a change of `placement` through BP2MI's local face.
async fn emit(f: &Federation, placement: &str, change: &str) -> Value {
    let reply = emit_raw(
        f,
        SISKOP2MI,
        json!({"data": {"placement": placement, "change": change, "on": "2026-12-06"}}),
    )
    .await;
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    serde_json::from_slice(&reply.body).unwrap()
}

async fn emit_raw(f: &Federation, identity: &str, body: Value) -> gateway::client::Reply {
    let url = format!("{}/v1/events/{CHANGED}/1", f.local_url(BP2MI));
    f.as_identity(identity, BP2MI)
        .call(
            Method::POST,
            &url,
            "application/json",
            serde_json::to_vec(&body).unwrap().into(),
            Duration::from_secs(10),
        )
        .await
        .unwrap()
}

/// The event a webhook post carries, its signature checked against BP2MI's key.
fn event_of(f: &Federation, posted: &Posted) -> Event {
    let jws = posted.body["jws"].as_str().unwrap();
    let parsed = ParsedJws::parse(jws, EVENT_TYP).unwrap();
    let kid = parsed.header.kid.as_deref().unwrap();
    let (owner, key) = f.manifest.key(kid).unwrap();
    assert_eq!(owner.as_str(), BP2MI);
    key.verify(&parsed).unwrap();
    contracts::json::from_slice(&parsed.payload).unwrap()
}

#[tokio::test]
async fn an_emitted_event_reaches_the_subscribers_webhook_signed_once_and_recorded_at_both_ends() {
    let (f, hook) = federation_with_hook(vec![]).await;
    let emitted = emit(&f, "1", "ended").await;
    let event_id = emitted["event_id"].as_str().unwrap().to_owned();
    let posted = hook.wait_for(1).await;
    assert_eq!(posted.len(), 1);
    // The member system can check the event against BP2MI's key in the manifest itself.
    let event = event_of(&f, &posted[0]);
    assert_eq!(event.id, event_id);
    assert_eq!(posted[0].id, event_id, "webhook-id is the event's id");
    assert_eq!(
        event.data,
        json!({"placement": "1", "change": "ended", "on": "2026-12-06"})
    );
    assert_eq!(posted[0].body["data"], event.data);
    assert_eq!(posted[0].body["provider"], BP2MI);
    assert_eq!(*hook.refused.lock().unwrap(), 0);

    // The emission on BP2MI's log; the delivery on both, paired by its exchange id.
    let emitted = f.records(BP2MI, &event_id).await;
    assert_eq!(emitted.len(), 1, "{emitted:?}");
    assert_eq!(emitted[0]["outcome"], "ok");
    assert_eq!(emitted[0]["subsystem"], SISKOP2MI);
    assert!(
        emitted[0]["subject"].is_string(),
        "the placement is personal data"
    );
    let kemlu = f.all_records(KEMLU).await;
    let received: Vec<&Value> = kemlu
        .iter()
        .filter(|r| r["contract"] == CHANGED && r["role"] == "provider")
        .collect();
    assert_eq!(received.len(), 1, "{kemlu:?}");
    let delivery = received[0];
    assert_eq!(delivery["outcome"], "ok");
    assert_eq!(delivery["consumer"], BP2MI);
    assert_eq!(delivery["provider"], KEMLU);
    assert_eq!(delivery["peer"], BP2MI);
    let sent = f
        .records(BP2MI, delivery["exchange_id"].as_str().unwrap())
        .await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["role"], "consumer");
    assert_eq!(sent[0]["outcome"], "ok");
    assert_eq!(sent[0]["request_hash"], delivery["request_hash"]);
    assert_eq!(sent[0]["response_hash"], delivery["response_hash"]);

    // Peduli WNI may also read it from the inbox, and then ask who it is about.
    let fetched: Value = ok_json(&inbox(&f).await);
    assert_eq!(fetched["events"][0]["id"], event_id);
    assert_eq!(fetched["next"], 1);
    let reply = f
        .local_query(
            PEDULI,
            KEMLU,
            "placement.record",
            json!({"purpose": "citizen-protection", "query": {"placement": "1"}}),
        )
        .await;
    let answer: Value = ok_json(&reply);
    assert_eq!(answer["result"]["found"], true);
    assert!(answer["result"]["nik"].is_string());

    // The two logs reconcile: the delivery and the lookup paired, nothing on one side only.
    let dir = tempfile::tempdir().unwrap();
    let simpul = |args: Vec<String>| {
        let config = f.config_file.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_simpul"))
                .arg("--config")
                .arg(config)
                .args(args)
                .env("RUST_LOG", "warn")
                .output()
                .await
                .unwrap()
        }
    };
    for m in [BP2MI, KEMLU] {
        let out = dir.path().join(format!("{}.jsonl", id(m).file_stem()));
        let o = simpul(vec![
            "audit".into(),
            "export".into(),
            "--member".into(),
            m.into(),
            "--out".into(),
            out.display().to_string(),
        ])
        .await;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = simpul(vec![
        "audit".into(),
        "reconcile".into(),
        dir.path().join("ID_GOV_BP2MI.jsonl").display().to_string(),
        dir.path().join("ID_GOV_KEMLU.jsonl").display().to_string(),
        "--json".into(),
    ])
    .await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["only_in_a"], json!([]), "{report}");
    assert_eq!(report["only_in_b"], json!([]), "{report}");
    assert_eq!(report["disagreements"], json!([]), "{report}");
    assert!(report["matched"].as_u64().unwrap() >= 2, "{report}");
}

#[tokio::test]
async fn a_subscriber_down_for_a_while_gets_everything_in_order_and_its_webhook_each_event_once() {
    let (mut f, hook) = federation_with_hook(vec![]).await;
    f.stop(KEMLU).await;
    let mut ids = Vec::new();
    for n in 1..=12 {
        let change = if n % 2 == 0 { "started" } else { "ended" };
        let e = emit(&f, &n.to_string(), change).await;
        ids.push(e["event_id"].as_str().unwrap().to_owned());
    }
    // BP2MI tries, fails, backs off; nothing is lost meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(hook.posted().is_empty());
    f.restart(KEMLU).await;
    let posted = hook.wait_for(ids.len()).await;
    // A little longer: nothing arrives twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let posted_ids: Vec<String> = hook.posted().iter().map(|p| p.id.clone()).collect();
    assert_eq!(posted_ids, ids, "in the order emitted, each once");
    for p in &posted {
        let event = event_of(&f, p);
        assert_eq!(event.id, p.id);
    }
}

#[tokio::test]
async fn events_emitted_before_the_provider_stopped_are_delivered_after_it_restarts() {
    let (mut f, hook) = federation_with_hook(vec![]).await;
    f.stop(KEMLU).await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        let e = emit(&f, &n.to_string(), "started").await;
        ids.push(e["event_id"].as_str().unwrap().to_owned());
    }
    // BP2MI stops with its events undelivered; they are in its outbox, on disk.
    f.stop(BP2MI).await;
    f.restart(KEMLU).await;
    f.restart(BP2MI).await;
    let posted = hook.wait_for(3).await;
    let posted_ids: Vec<String> = posted.iter().map(|p| p.id.clone()).collect();
    assert_eq!(posted_ids, ids);
}

/// `simpul serve --member ID:GOV:BP2MI` as a process of its own, once its local listener
/// takes connections.
async fn serve_bp2mi(f: &Federation) -> tokio::process::Child {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_simpul"))
        .arg("--config")
        .arg(&f.config_file)
        .args(["serve", "--member", BP2MI])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let local = f
        .config
        .member(&id(BP2MI))
        .unwrap()
        .local
        .as_ref()
        .unwrap()
        .listen;
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(local).await.is_ok() {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("BP2MI's gateway did not listen on {local} within 60 s")
}

#[tokio::test]
async fn the_provider_killed_during_delivery_loses_no_event_and_the_webhook_sees_each_once() {
    let (mut f, hook) = federation_with_hook_and(vec![], vec![BP2MI]).await;
    let mut bp2mi = serve_bp2mi(&f).await;
    // A backlog of several deliveries, while Kemlu is down.
    f.stop(KEMLU).await;
    let mut ids = Vec::new();
    for n in 1..=200 {
        let e = emit(&f, &n.to_string(), "started").await;
        ids.push(e["event_id"].as_str().unwrap().to_owned());
    }
    f.restart(KEMLU).await;
    // Killed (SIGKILL) once the delivery is under way: some events acknowledged, some not.
    hook.wait_for(1).await;
    bp2mi.start_kill().unwrap();
    bp2mi.wait().await.unwrap();
    let arrived = hook.posted().len();
    let _bp2mi = serve_bp2mi(&f).await;
    hook.wait_for(ids.len()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let posted: Vec<String> = hook.posted().iter().map(|p| p.id.clone()).collect();
    assert_eq!(
        posted, ids,
        "every event, in order, each once ({arrived} had arrived at the kill)"
    );
}

/// A delivery of `events` signed by `from`'s key, addressed to `to`.
fn delivery(f: &Federation, from: &str, to: &str, events: Vec<String>) -> ExchangeRequest {
    let query = serde_json::to_value(Delivery {
        events,
        expired: vec![],
    })
    .unwrap();
    f.request(from, to, CHANGED, "citizen-protection", query)
}

/// An event of `placement.changed` signed by `member`'s key, with `data`.
fn signed_event(f: &Federation, member: &str, data: Value) -> String {
    let now = contracts::unix_now();
    let event = Event {
        v: 1,
        id: contracts::ExchangeId::new().to_string(),
        iss: id(member),
        contract: CHANGED.into(),
        version: "1".into(),
        iat: now,
        exp: now + 3600,
        data,
    };
    f.signing_key(member)
        .sign(EVENT_TYP, &serde_json::to_vec(&event).unwrap())
        .unwrap()
}

/// The receipt in a delivery's answer, its signature checked against Kemlu's key.
fn receipt(f: &Federation, reply: &gateway::client::Reply) -> Receipt {
    assert_ok(reply);
    let text = std::str::from_utf8(&reply.body).unwrap();
    let parsed = ParsedJws::parse(text, contracts::envelope::ANSWER_TYP).unwrap();
    let (owner, key) = f
        .manifest
        .key(parsed.header.kid.as_deref().unwrap())
        .unwrap();
    assert_eq!(owner.as_str(), KEMLU);
    key.verify(&parsed).unwrap();
    let answer: contracts::ExchangeAnswer = contracts::json::from_slice(&parsed.payload).unwrap();
    serde_json::from_value(answer.result).unwrap()
}

/// Kemlu's inbox of `placement.changed` from the start, as Peduli WNI fetches it.
async fn inbox(f: &Federation) -> gateway::client::Reply {
    let url = format!("{}/v1/events/{CHANGED}/1?after=0", f.local_url(KEMLU));
    f.as_identity(PEDULI, KEMLU)
        .call(
            Method::GET,
            &url,
            "application/json",
            Bytes::new(),
            Duration::from_secs(10),
        )
        .await
        .unwrap()
}

/// The outcomes `member` recorded for `exchange_id`, in log order.
async fn outcomes(f: &Federation, member: &str, exchange_id: &str) -> Vec<String> {
    f.records(member, exchange_id)
        .await
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn good_data() -> Value {
    json!({"placement": "7", "change": "started", "on": "2026-12-06"})
}

#[tokio::test]
async fn deliveries_that_are_not_granted_tampered_replayed_or_off_schema_are_refused_with_their_codes()
 {
    let f = Federation::start().await;
    // Accepted as a baseline: BP2MI's own event, to Kemlu, which is granted it.
    let event = signed_event(&f, BP2MI, good_data());
    let request = delivery(&f, BP2MI, KEMLU, vec![event.clone()]);
    let jws = f.sign(BP2MI, &request);
    let reply = f.exchange(BP2MI, jws.clone(), &request).await;
    let first = receipt(&f, &reply);
    assert_eq!(first.events.len(), 1);
    assert_eq!(first.events[0].status, Status::Accepted);

    // The same signed delivery again: a replayed exchange, recorded as such beside the first.
    let reply = f.exchange(BP2MI, jws, &request).await;
    assert_problem(&reply, 409, "replay");
    assert_eq!(outcomes(&f, KEMLU, &request.id).await, ["ok", "replay"]);

    // The same event in a fresh delivery: acknowledged, not kept again.
    let again = delivery(&f, BP2MI, KEMLU, vec![event]);
    let reply = f.send_signed(BP2MI, &again).await;
    assert_eq!(receipt(&f, &reply).events[0].status, Status::Duplicate);

    // BPJS TK is not granted placement.changed.
    let to_bpjstk = delivery(
        &f,
        BP2MI,
        BPJSTK,
        vec![signed_event(&f, BP2MI, good_data())],
    );
    let reply = f.send_signed(BP2MI, &to_bpjstk).await;
    assert_problem(&reply, 403, "forbidden");
    assert_eq!(outcomes(&f, BPJSTK, &to_bpjstk.id).await, ["forbidden"]);

    // Dukcapil does not emit placement.changed, even with an event it signed itself.
    let from_dukcapil = delivery(
        &f,
        DUKCAPIL,
        KEMLU,
        vec![signed_event(&f, DUKCAPIL, good_data())],
    );
    let reply = f.send_signed(DUKCAPIL, &from_dukcapil).await;
    assert_problem(&reply, 403, "forbidden");
    assert_eq!(outcomes(&f, KEMLU, &from_dukcapil.id).await, ["forbidden"]);

    // An event whose data was changed after BP2MI signed it.
    let event = signed_event(&f, BP2MI, good_data());
    let mut parts: Vec<String> = event.split('.').map(str::to_owned).collect();
    let mut payload: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &parts[1])
            .unwrap(),
    )
    .unwrap();
    payload["data"]["placement"] = json!("8");
    parts[1] = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        serde_json::to_vec(&payload).unwrap(),
    );
    let tampered = delivery(&f, BP2MI, KEMLU, vec![parts.join(".")]);
    let reply = f.send_signed(BP2MI, &tampered).await;
    assert_problem(&reply, 400, "bad-event");
    assert_eq!(outcomes(&f, KEMLU, &tampered.id).await, ["bad-event"]);

    // An event BP2MI signed whose data the contract's schema refuses.
    let off = signed_event(
        &f,
        BP2MI,
        json!({"placement": "7", "change": "moved", "on": "2026-12-06"}),
    );
    let off = delivery(&f, BP2MI, KEMLU, vec![off]);
    let reply = f.send_signed(BP2MI, &off).await;
    let p = assert_problem(&reply, 400, "bad-event");
    assert!(p.detail.contains("/data/change"), "{}", p.detail);
    assert_eq!(outcomes(&f, KEMLU, &off.id).await, ["bad-event"]);
    // None of the refused deliveries left an event in Kemlu's inbox: only the first.
    let held: Value = ok_json(&inbox(&f).await);
    assert_eq!(held["events"].as_array().unwrap().len(), 1, "{held}");

    // Emitting off the schema is refused where it starts, at BP2MI's local face.
    let reply = emit_raw(
        &f,
        SISKOP2MI,
        json!({"data": {"placement": "7", "change": "moved", "on": "2026-12-06"}}),
    )
    .await;
    let p = assert_problem(&reply, 400, "invalid-query");
    assert_eq!(p.errors[0].pointer, "/data/change");
    // A body with a field the local face does not know.
    let reply = emit_raw(&f, SISKOP2MI, json!({"data": good_data(), "extra": 1})).await;
    assert_problem(&reply, 400, "malformed");
}

#[tokio::test]
async fn an_event_contracts_provider_lists_it_and_serves_its_pinned_document() {
    let f = Federation::start().await;
    let client = f.as_gateway(KEMLU, BP2MI);
    let get = |path: &str| {
        let url = format!("{}{path}", f.url(BP2MI));
        let client = client.clone();
        async move {
            client
                .call(
                    Method::GET,
                    &url,
                    "application/json",
                    Bytes::new(),
                    Duration::from_secs(10),
                )
                .await
                .unwrap()
        }
    };
    let list: Value = ok_json(&get("/v1/contracts").await);
    let ids: Vec<&str> = list["contracts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&CHANGED), "{ids:?}");
    let doc = get(&format!("/v1/contracts/{CHANGED}/1")).await;
    assert_eq!(doc.status, 200);
    let pinned = &f
        .manifest
        .contract(&contracts::ContractRef::new(CHANGED, "1"))
        .unwrap()
        .digest;
    assert_eq!(&contracts::canonical::sha256_b64url(&doc.body), pinned);
}

#[tokio::test]
async fn a_subsystem_that_is_not_an_emitter_is_refused_with_403_not_granted() {
    let f = Federation::start_with(Options {
        edits: vec![(
            "emitters = [\"SISKOP2MI\"]".to_owned(),
            "emitters = []".to_owned(),
        )],
        ..Options::default()
    })
    .await;
    let reply = emit_raw(&f, SISKOP2MI, json!({"data": good_data()})).await;
    assert_problem(&reply, 403, "not-granted");
}

/// BP2MI's database, where SISKOP2MI writes its change table.
async fn bp2mi_database(f: &Federation) -> sqlx::SqliteConnection {
    use sqlx::ConnectOptions;
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(f.data_dir().join("bp2mi.db"))
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap()
}

/// SISKOP2MI records that `placement` changed (`kind`, which the contract may refuse): the
/// row's number in the change table.
async fn write_change(db: &mut sqlx::SqliteConnection, placement: &str, kind: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO placement_changes (placement, kind, changed_on) VALUES (?, ?, '2026-12-06')
         RETURNING id",
    )
    .bind(placement)
    .bind(kind)
    .fetch_one(db)
    .await
    .unwrap()
}

/// The placements the webhook posts name, in the order posted.
fn placements(posted: &[Posted]) -> Vec<String> {
    posted
        .iter()
        .map(|p| p.body["data"]["placement"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn rows_of_the_change_table_reach_the_webhook_in_order_each_once_and_a_refused_row_holds_back_the_rest_until_it_is_fixed()
 {
    let (mut f, hook) = federation_with_hook(vec![]).await;
    let mut db = bp2mi_database(&f).await;
    let mut rows = Vec::new();
    for (placement, kind) in [("11", "started"), ("12", "ended"), ("13", "started")] {
        rows.push(write_change(&mut db, placement, kind).await);
    }
    let posted = hook.wait_for(3).await;
    assert_eq!(placements(&posted), ["11", "12", "13"]);
    let first = event_of(&f, &posted[0]);
    assert_eq!(
        first.data,
        json!({"placement": "11", "change": "started", "on": "2026-12-06"})
    );
    // Each emission is on BP2MI's log as the local face records one, with no subsystem: the
    // gateway read the row itself.
    for p in &posted {
        let records = f.records(BP2MI, &p.id).await;
        assert_eq!(records.len(), 1, "{records:?}");
        let r = &records[0];
        assert_eq!(
            (&r["role"], &r["outcome"], &r["consumer"], &r["provider"]),
            (
                &json!("provider"),
                &json!("ok"),
                &json!(BP2MI),
                &json!(BP2MI)
            ),
            "{r}"
        );
        assert!(r["subsystem"].is_null(), "{r}");
        assert!(r["subject"].is_string(), "the placement is personal data");
    }

    // The row number is the event's `source`: sent again through the local face, it is
    // answered with the event the row made, and nothing new is emitted.
    let reply = emit_raw(
        &f,
        SISKOP2MI,
        json!({"data": {"placement": "11", "change": "started", "on": "2026-12-06"}, "source": rows[0]}),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let repeated: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(repeated["repeated"], true);
    assert_eq!(repeated["event_id"], posted[0].id.as_str());

    // Restarted, BP2MI's gateway resumes after the last row it emitted: nothing twice.
    f.stop(BP2MI).await;
    f.restart(BP2MI).await;
    write_change(&mut db, "14", "ended").await;
    hook.wait_for(4).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(placements(&hook.posted()), ["11", "12", "13", "14"]);

    // A row the contract refuses stops the reading there: neither it nor the rows behind it
    // are emitted, and the stop is counted, while it stays wrong.
    let refused = write_change(&mut db, "15", "moved").await;
    write_change(&mut db, "16", "started").await;
    write_change(&mut db, "17", "ended").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hook.posted().len(), 4, "{:?}", placements(&hook.posted()));
    let stops = f
        .counter(BP2MI, "simpul_events_source_errors_total", &[])
        .await;
    assert!(stops >= 1.0, "{stops}");

    // SISKOP2MI fixes its row: it and the rows behind it go out, in order.
    sqlx::query("UPDATE placement_changes SET kind = 'ended' WHERE id = ?")
        .bind(refused)
        .execute(&mut db)
        .await
        .unwrap();
    hook.wait_for(7).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let posted = hook.posted();
    assert_eq!(
        placements(&posted),
        ["11", "12", "13", "14", "15", "16", "17"]
    );
    assert_eq!(posted[4].body["data"]["change"], "ended");
    let ids: std::collections::HashSet<&str> = posted.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), 7, "each event once");
    assert_eq!(*hook.refused.lock().unwrap(), 0);
}
