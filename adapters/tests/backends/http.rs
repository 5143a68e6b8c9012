//! The HTTP adapter against real HTTP servers on loopback: a good, a slow, a failing, a
//! flaky, a refusing, a 404 and a malformed upstream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adapters::{Adapter, AdapterError, HttpAdapter, HttpSpec};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::common::{ALL_FOUR, http_server, json_response, raw_response};

/// Requests seen per path.
#[derive(Default)]
struct Hits(Mutex<HashMap<String, usize>>);

impl Hits {
    fn count(&self, path: &str) -> usize {
        self.0.lock().expect("lock").get(path).copied().unwrap_or(0)
    }
}

/// BP2MI's placement API, with one path per way an upstream can misbehave.
async fn upstream() -> (SocketAddr, Arc<Hits>) {
    let hits = Arc::new(Hits::default());
    let seen = Arc::clone(&hits);
    let flaky = Arc::new(AtomicUsize::new(0));
    let addr = http_server(Arc::new(move |req| {
        let seen = Arc::clone(&seen);
        let flaky = Arc::clone(&flaky);
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let key = path.rsplit_once('/').map_or(path.as_str(), |(p, _)| p).to_owned();
            *seen.0.lock().expect("lock").entry(key.clone()).or_default() += 1;
            match key.as_str() {
                "/v1/placements" if path.ends_with(ALL_FOUR) => json_response(
                    200,
                    &json!({"data": {"placed": true, "country": "MY", "agency": "PT Sinar Abadi", "since": "2023-03-01", "employer": null}}),
                ),
                "/v1/placements" => json_response(404, &json!({"error": "no placement"})),
                "/slow" => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    json_response(200, &json!({"data": {"placed": false}}))
                }
                "/fail" => json_response(500, &json!({"error": "internal"})),
                "/flaky" => {
                    if flaky.fetch_add(1, Ordering::SeqCst) < 2 {
                        json_response(503, &json!({"error": "busy"}))
                    } else {
                        json_response(200, &json!({"data": {"placed": false}}))
                    }
                }
                "/bad-request" => json_response(400, &json!({"error": "bad"})),
                "/malformed" => raw_response(200, "{\"data\": {\"placed\": tru"),
                // `placed` twice: one parser reads true, another false.
                "/repeated" => raw_response(200, "{\"data\": {\"placed\": true, \"placed\": false}}"),
                // A big identifier in a member no binding maps does not matter.
                "/big-id" => raw_response(200, "{\"data\": {\"placed\": true, \"row_id\": 12345678901234567890}}"),
                "/empty" => json_response(200, &json!({"data": {}})),
                "/big" => json_response(200, &json!({"data": {"placed": true, "pad": "x".repeat(10_000)}})),
                "/echo" => {
                    let method = req.method().to_string();
                    let key = req
                        .headers()
                        .get("x-api-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let query: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    json_response(200, &json!({"data": {"method": method, "key": key, "query": query}}))
                }
                _ => json_response(404, &json!({})),
            }
        })
    }))
    .await;
    (addr, hits)
}

fn spec(url: String) -> HttpSpec {
    serde_json::from_value(json!({
        "url": url,
        "answer": {"placed": "/data/placed"},
        "timeout_ms": 1000,
    }))
    .expect("binding")
}

fn adapter(spec: HttpSpec) -> HttpAdapter {
    HttpAdapter::new(spec, std::path::Path::new(".")).expect("adapter")
}

#[tokio::test]
async fn http_answer_maps_pointers_and_404_gives_not_found() {
    let (addr, _) = upstream().await;
    let mut s = spec(format!("http://{addr}/v1/placements/{{nik}}"));
    for field in ["country", "agency", "since", "employer"] {
        s.answer.insert(field.into(), format!("/data/{field}"));
    }
    s.found = json!({"source": "siskop2mi"})
        .as_object()
        .cloned()
        .expect("map");
    s.not_found = Some(json!({"placed": false}));
    let a = adapter(s);
    assert_eq!(
        a.answer(&json!({ "nik": ALL_FOUR })).await.expect("found"),
        json!({"source": "siskop2mi", "placed": true, "country": "MY", "agency": "PT Sinar Abadi", "since": "2023-03-01"})
    );
    assert_eq!(
        a.answer(&json!({"nik": "3171010101010009"}))
            .await
            .expect("404"),
        json!({"placed": false})
    );
}

#[tokio::test]
async fn http_404_without_not_found_is_a_backend_error() {
    let (addr, _) = upstream().await;
    let a = adapter(spec(format!("http://{addr}/v1/placements/{{nik}}")));
    let err = a.answer(&json!({"nik": "1"})).await.expect_err("404");
    assert!(matches!(err, AdapterError::Failed(_)), "{err:?}");
}

#[tokio::test]
async fn http_slow_upstream_times_out_within_the_deadline() {
    let (addr, _) = upstream().await;
    let mut s = spec(format!("http://{addr}/slow/{{nik}}"));
    s.timeout_ms = 300;
    s.retries = 3;
    let a = adapter(s);
    let started = Instant::now();
    let err = a.answer(&json!({"nik": "1"})).await.expect_err("slow");
    let took = started.elapsed();
    assert!(matches!(err, AdapterError::Timeout(300)), "{err:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
}

#[tokio::test]
async fn http_failing_upstream_is_unavailable_after_bounded_get_retries() {
    let (addr, hits) = upstream().await;
    let mut s = spec(format!("http://{addr}/fail/{{nik}}"));
    s.retries = 2;
    let err = adapter(s)
        .answer(&json!({"nik": "1"}))
        .await
        .expect_err("500");
    assert!(matches!(err, AdapterError::Unavailable(_)), "{err:?}");
    assert_eq!(hits.count("/fail"), 3, "one try and two retries");
}

#[tokio::test]
async fn http_flaky_upstream_is_answered_by_a_retry() {
    let (addr, hits) = upstream().await;
    let mut s = spec(format!("http://{addr}/flaky/{{nik}}"));
    s.retries = 2;
    assert_eq!(
        adapter(s)
            .answer(&json!({"nik": "1"}))
            .await
            .expect("third try"),
        json!({"placed": false})
    );
    assert_eq!(hits.count("/flaky"), 3);
}

#[tokio::test]
async fn http_refused_connection_is_unavailable() {
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        l.local_addr().expect("addr")
    };
    let mut s = spec(format!("http://{closed}/v1/placements/{{nik}}"));
    s.retries = 1;
    let err = adapter(s)
        .answer(&json!({"nik": "1"}))
        .await
        .expect_err("refused");
    assert!(matches!(err, AdapterError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn http_client_errors_are_backend_errors_and_not_retried() {
    let (addr, hits) = upstream().await;
    let mut s = spec(format!("http://{addr}/bad-request/{{nik}}"));
    s.retries = 3;
    let err = adapter(s)
        .answer(&json!({"nik": "1"}))
        .await
        .expect_err("400");
    assert!(matches!(err, AdapterError::Failed(_)), "{err:?}");
    assert_eq!(hits.count("/bad-request"), 1);
}

#[tokio::test]
async fn http_malformed_unmappable_or_oversized_answers_are_backend_errors() {
    let (addr, hits) = upstream().await;
    for path in ["malformed", "repeated", "empty", "big"] {
        let mut s = spec(format!("http://{addr}/{path}/{{nik}}"));
        s.max_answer_bytes = 4096;
        s.retries = 2;
        let err = adapter(s)
            .answer(&json!({"nik": "1"}))
            .await
            .expect_err(path);
        assert!(matches!(err, AdapterError::Failed(_)), "{path}: {err:?}");
        assert_eq!(hits.count(&format!("/{path}")), 1, "{path} is not retried");
        if path == "repeated" {
            assert!(err.to_string().contains("`placed` appears twice"), "{err}");
        }
    }
    let s = spec(format!("http://{addr}/big-id/{{nik}}"));
    assert_eq!(
        adapter(s)
            .answer(&json!({"nik": "1"}))
            .await
            .expect("big-id"),
        json!({"placed": true})
    );
}

#[tokio::test]
async fn http_post_sends_the_query_as_json_with_secret_headers() {
    let (addr, hits) = upstream().await;
    let s: HttpSpec = serde_json::from_value(json!({
        "url": format!("http://{addr}/echo/x"),
        "method": "POST",
        // Cargo sets CARGO_PKG_NAME for the test process: a variable known to be there,
        // without the (unsafe, racy) std::env::set_var.
        "headers": {"x-api-key": "env:CARGO_PKG_NAME"},
        "answer": {"method": "/data/method", "key": "/data/key", "query": "/data/query"},
    }))
    .expect("binding");
    let query = json!({"nik": "' OR 1=1 --", "n": 3});
    assert_eq!(
        adapter(s).answer(&query).await.expect("echo"),
        json!({"method": "POST", "key": "simpul-adapters", "query": query})
    );
    assert_eq!(hits.count("/echo"), 1);
}
