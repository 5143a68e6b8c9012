//! A provider that answers garbage (issue #12, the fault matrix): Dukcapil's gateway is
//! replaced on its address by a TLS server holding Dukcapil's real certificate — so the
//! consumer's TLS checks pass — that answers each request with one kind of garbage. Kemlu's
//! gateway refuses every one with a problem, records each exchange with that outcome, and
//! answers again as soon as the real provider is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// What the fake provider sends, in turn, for each request it reads: not a JWS; a JWS by
/// Dukcapil's key of a payload that is no answer; one naming a member twice; one by another
/// member's key; HTML; bytes that are no HTTP; a 4 MiB body (over the 1 MiB a consumer
/// reads).
fn answers(f: &Federation) -> Vec<Vec<u8>> {
    let http = |content_type: &str, body: &[u8]| {
        let mut out = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    };
    // A compact JWS signed by Dukcapil's real key, of a payload that is no answer.
    let signed = f
        .signing_key(DUKCAPIL)
        .sign("simpul-response+jws", br#"{"hello":"world"}"#)
        .unwrap();
    // Signed by the right key, but naming a member twice.
    let repeated = f
        .signing_key(DUKCAPIL)
        .sign("simpul-response+jws", br#"{"v":1,"v":2}"#)
        .unwrap();
    // Signed by another member's key under Dukcapil's kid's member.
    let foreign = f
        .signing_key(BP2MI)
        .sign("simpul-response+jws", br#"{"v":1}"#)
        .unwrap();
    vec![
        http("application/jose", b"this is not a JWS"),
        http("application/jose", signed.as_bytes()),
        http("application/jose", repeated.as_bytes()),
        http("application/jose", foreign.as_bytes()),
        http("text/html", b"<html>maintenance</html>"),
        b"\x00\x01\x02 not HTTP at all\r\n\r\n".to_vec(),
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/jose\r\ncontent-length: {}\r\n\r\n",
            4 << 20
        )
        .into_bytes()
        .into_iter()
        .chain(std::iter::repeat_n(b'a', 4 << 20))
        .collect(),
    ]
}

/// Serves `answers` in turn on `listener`, with `member`'s certificate, one per request.
async fn fake_provider(
    f: &Federation,
    member: &str,
    listener: tokio::net::TcpListener,
) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let (chain, key) = f.gateway_identity(member);
    let config = rustls::ServerConfig::builder_with_provider(gateway::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let answers = Arc::new(answers(f));
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, answers, count) = (acceptor.clone(), answers.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                // Read the request head and its body, then answer with the next garbage.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let i = count.fetch_add(1, Ordering::SeqCst);
                let _ = tls.write_all(&answers[i % answers.len()]).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (served, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_answering_garbage_is_refused_recorded_and_forgotten_once_it_is_back() {
    let mut f = Federation::start_with(Options {
        // Every garbage answer is a failure towards Dukcapil: keep the breaker closed, so
        // that each reaches the fake.
        edits: vec![(
            "seed = { dataset = \"reports\", database = \"data/kemlu.db\" }".into(),
            "seed = { dataset = \"reports\", database = \"data/kemlu.db\" }\nbreaker = { failures = 1000 }".into(),
        )],
        ..Default::default()
    })
    .await;
    let addr = f.config.member(&id(DUKCAPIL)).unwrap().listen;
    f.stop(DUKCAPIL).await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let kinds = answers(&f).len();
    let (served, fake) = fake_provider(&f, DUKCAPIL, listener).await;

    for i in 0..kinds {
        let reply = f.ask_citizenship_reply().await;
        let problem: serde_json::Value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|_| panic!("answer {i}: not a problem: {reply:?}"));
        let code = problem["type"]
            .as_str()
            .unwrap_or_default()
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        // Bytes that are no HTTP answer are a provider out of reach; everything else is an
        // answer that failed verification.
        let expected = if i == 5 {
            (503, "provider-unavailable")
        } else {
            (502, "bad-answer")
        };
        assert_eq!(
            (reply.status.as_u16(), code.as_str()),
            expected,
            "answer {i}: {problem}"
        );
        // The exchange is on Kemlu's log with that outcome.
        let exchange_id = problem["exchange_id"].as_str().unwrap();
        let records = f.records(KEMLU, exchange_id).await;
        assert_eq!(records.len(), 1, "answer {i}: {records:?}");
        assert_eq!(records[0]["outcome"], code.as_str(), "answer {i}");
    }
    assert_eq!(
        served.load(Ordering::SeqCst),
        kinds,
        "each kind reached the fake once"
    );

    // The real provider back on its address: answered at once.
    fake.abort();
    let _ = fake.await;
    f.restart(DUKCAPIL).await;
    f.ask_citizenship().await;
}
