//! `simpul demo webhook` end to end: the receiver makes the secret file the subscriber's
//! gateway signs with, appends each verified webhook to `--out`, and answers 401 to one
//! signed with another secret.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use gateway::webhook::{WebhookClient, WebhookError, WebhookSecret, send};

/// Kills the receiver when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the receiver on a free port; its URL from the line it announces itself with.
fn start(dir: &Path, secret: &Path, out: &Path) -> (Running, http::Uri) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_simpul"))
        .current_dir(dir)
        .args([
            "demo",
            "webhook",
            "--listen",
            "127.0.0.1:0",
            "--secret-file",
        ])
        .arg(secret)
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let running = Running(child);
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    (running, format!("{url}notify").parse().unwrap())
}

/// Sends the test's event as webhook `id`, signed with `secret`.
async fn deliver(
    client: &WebhookClient,
    url: &http::Uri,
    secret: &WebhookSecret,
    id: &str,
) -> Result<(), WebhookError> {
    send(
        client,
        url,
        secret,
        id,
        now(),
        Bytes::from(EVENT),
        Duration::from_secs(5),
    )
    .await
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

const EVENT: &str = r#"{
  "event": {"type": "placement.changed", "subject": "3171234567890123"},
  "jws": "eyJhbGciOiJFUzI1NiJ9.e30.sig",
  "provider": "ID:GOV:BP2MI"
}"#;

#[tokio::test]
async fn the_receiver_appends_verified_webhooks_and_refuses_another_secret_with_401() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secrets/webhook.secret");
    let out = dir.path().join("webhooks.log");
    let (_receiver, url) = start(dir.path(), &secret_file, &out);
    // The gateway's side reads the same file the receiver made.
    let secret = WebhookSecret::load_or_create(&secret_file).unwrap();
    let client = WebhookClient::new(rustls::RootCertStore::empty());
    deliver(&client, &url, &secret, "evt_0001").await.unwrap();
    deliver(&client, &url, &secret, "evt_0001").await.unwrap();
    let e = deliver(&client, &url, &WebhookSecret::generate(), "evt_0002")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, WebhookError::Status { status, answer, .. } if status.as_u16() == 401 && answer.contains("signature")),
        "{e}"
    );

    let compact = r#"{"event":{"type":"placement.changed","subject":"3171234567890123"},"jws":"eyJhbGciOiJFUzI1NiJ9.e30.sig","provider":"ID:GOV:BP2MI"}"#;
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("evt_0001 {compact}\nevt_0001 (repeat) {compact}\n")
    );
}

#[cfg(unix)]
#[test]
fn a_secret_file_others_can_read_is_refused_on_one_line_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("webhook.secret");
    std::fs::write(
        &secret_file,
        format!("{}\n", WebhookSecret::generate().to_text()),
    )
    .unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_simpul"))
        .current_dir(dir.path())
        .args([
            "demo",
            "webhook",
            "--listen",
            "127.0.0.1:0",
            "--secret-file",
        ])
        .arg(&secret_file)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("webhook.secret"), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
}
