//! OpenTelemetry export, in a build with the `otel` feature (`cargo test -p simpul --features
//! otel --test otel`): the demo federation, run by the real binary with
//! OTEL_EXPORTER_OTLP_ENDPOINT pointing at a receiver of this test, exports the spans of an
//! exchange over OTLP/HTTP in the trace the member system sent.
#![cfg(feature = "otel")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contracts::MemberId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An OTLP/HTTP receiver: keeps every request body and answers each with an empty 200.
async fn receiver() -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    // One request: its head, then Content-Length bytes of body.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    kept.lock()
                        .unwrap()
                        .push(buf[head_end..head_end + length].to_vec());
                    buf.drain(..head_end + length);
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if tcp.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, bodies)
}

/// The repository's demo configuration on free loopback ports, with a small population.
fn config(dir: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut text = std::fs::read_to_string(repo.join("config.toml")).unwrap();
    let mut ports: Vec<String> = text
        .match_indices("127.0.0.1:7")
        .map(|(i, _)| text[i..i + 14].to_owned())
        .collect();
    ports.sort();
    ports.dedup();
    let free: Vec<std::net::TcpListener> = ports
        .iter()
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    for (old, l) in ports.iter().zip(&free) {
        text = text.replace(old, &l.local_addr().unwrap().to_string());
    }
    let people = text
        .lines()
        .find(|l| l.starts_with("people = "))
        .unwrap()
        .to_owned();
    text = text.replacen(&people, "people = 2000", 1);
    let catalog = repo.join("contracts/catalog");
    text = text.replacen(
        "catalog = \"contracts/catalog\"",
        &format!("catalog = \"{}\"", catalog.display()),
        1,
    );
    std::fs::write(dir.join("config.toml"), text).unwrap();
}

// Two workers: the receiver answers while the test waits on the child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchanges_spans_are_exported_in_the_member_systems_trace() {
    let (port, bodies) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    config(dir.path());
    let mut up = Command::new(env!("CARGO_BIN_EXE_simpul"))
        .current_dir(dir.path())
        .arg("up")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("up.log")).unwrap())
        .spawn()
        .unwrap();
    // Up when it says how to stop it; the NIKs it prints are in the databases.
    let mut printed = String::new();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let started = Instant::now();
    while !printed.contains("Ctrl-C stops the federation.") {
        assert!(started.elapsed() < Duration::from_secs(120), "{printed}");
        printed.push_str(&lines.next().unwrap().unwrap());
        printed.push('\n');
    }
    let nik = printed
        .split("\"nik\":\"")
        .nth(1)
        .and_then(|rest| rest.get(..16))
        .unwrap()
        .to_owned();

    let config = gateway::config::Config::load(&dir.path().join("config.toml")).unwrap();
    let layout = &config.federation.pki;
    let trust =
        gateway::tls::FederationTrust::from_files(&layout.ca_cert(), &config.federation.crl)
            .unwrap();
    let (kemlu, peduli) = (
        MemberId::parse("ID:GOV:KEMLU").unwrap(),
        MemberId::parse("ID:GOV:KEMLU:PEDULI-WNI").unwrap(),
    );
    let client = gateway::client::PeerClient::from_files(
        &trust,
        &layout.client_cert(&peduli),
        &layout.client_key(&peduli),
        kemlu.clone(),
        1 << 20,
    )
    .unwrap();
    let local = config.member(&kemlu).unwrap().local.as_ref().unwrap().url();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let reply = client
        .call_with(
            http::Method::POST,
            &format!("{local}/v1/query/citizenship.status/1"),
            "application/json",
            &[("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))],
            format!(r#"{{"purpose":"citizen-protection","query":{{"nik":"{nik}"}}}}"#).into(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    // Stopped, it flushes what it has not exported yet.
    Command::new("kill")
        .arg("-INT")
        .arg(up.id().to_string())
        .status()
        .unwrap();
    assert!(up.wait().unwrap().success());
    let bodies = bodies.lock().unwrap().clone();
    let all: Vec<u8> = bodies.concat();
    let log = std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
    let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
    assert!(
        !all.is_empty(),
        "nothing was exported; the end of its log, last first:\n{tail}"
    );
    // The trace id travels as its 16 raw bytes in a span's `trace_id`: only a span of the
    // member system's trace carries them.
    let raw: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let in_trace = bodies
        .iter()
        .filter(|b| b.windows(16).any(|w| w == raw.as_slice()))
        .count();
    assert!(
        in_trace > 0,
        "no exported span is in the member system's trace"
    );
    for name in [&b"ask"[..], b"answer"] {
        assert!(
            all.windows(name.len()).any(|w| w == name),
            "no span named {}",
            String::from_utf8_lossy(name)
        );
    }
}
