//! The command centre: its page and state on the admin listener with the listener's
//! allow-lists, `simpul console`'s local proxy and its refusals, and — when
//! `SIMPUL_TEST_CHROMIUM` names a Chromium binary — the page rendered in headless Chromium
//! showing the exchanges the test made, with screenshots kept in `target/console-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::common::*;

const CITIZENSHIP: &str = "citizenship.status/1";

/// Three answered citizenship queries through Kemlu's local face and one that Kemlu's own
/// gateway refuses (a purpose it was not granted); the refusal's code and the id of an
/// answered one.
async fn known_exchanges(f: &Federation) -> (String, String) {
    let mut answered = String::new();
    for _ in 0..3 {
        answered = f.ask_citizenship().await.exchange_id;
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
    (code, answered)
}

/// The sum of the `exchanges` rows of a state that match `contract`, `peer`, `role` and
/// `outcome` (`None`: any).
fn exchanges(state: &Value, peer: &str, role: &str, outcome: Option<&str>) -> u64 {
    state["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["contract"] == CITIZENSHIP && r["peer"] == peer && r["role"] == role)
        .filter(|r| outcome.is_none_or(|o| r["outcome"] == o))
        .map(|r| r["value"].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn the_page_and_its_state_are_served_to_operators_and_auditors_with_a_strict_policy() {
    let f = Federation::start().await;
    let (code, _) = known_exchanges(&f).await;
    let page = f
        .admin_call(
            DUKCAPIL,
            "operator:ID:GOV:DUKCAPIL:OPS",
            Method::GET,
            "/console/",
            Bytes::new(),
        )
        .await;
    assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
    let header = |name: &str| page.headers[name].to_str().unwrap().to_owned();
    assert!(header("content-type").starts_with("text/html"));
    assert!(header("content-security-policy").starts_with("default-src 'self';"));
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("cache-control"), "no-store");
    let html = String::from_utf8(page.body.to_vec()).unwrap();
    assert!(!html.contains("<script>"), "no inline script");
    assert!(
        html.contains("needs an auditor identity"),
        "an operator cannot search"
    );
    for m in [KEMLU, DUKCAPIL, BP2MI, BPJSTK] {
        assert!(html.contains(&format!("data-member=\"{m}\"")), "{m}");
    }

    // The auditor sees the page with its search, and the same state.
    let state = f
        .admin_call(
            DUKCAPIL,
            "auditor:ID:GOV:DUKCAPIL:AUDIT",
            Method::GET,
            "/console/state",
            Bytes::new(),
        )
        .await;
    let state: Value = ok_json(&state);
    assert_eq!(state["viewer"]["auditor"], true);
    assert_eq!(state["viewer"]["operator"], false);
    assert_eq!(exchanges(&state, KEMLU, "provider", Some("ok")), 3);
    assert_eq!(exchanges(&state, KEMLU, "provider", None), 3);
    assert_eq!(state["federation"]["members"].as_array().unwrap().len(), 4);
    assert_eq!(state["audit"]["tampered"], Value::Null);
    // Kemlu stated its manifest serial on every request: the one both hold.
    let heard = state["federation"]["heard"].as_array().unwrap();
    let serial = state["federation"]["serial"].as_u64().unwrap();
    assert!(
        heard.iter().any(|h| h["member"] == KEMLU
            && h["serial"].as_u64() == Some(serial)
            && h["at_ms"].as_i64().unwrap_or_default() > 0),
        "{heard:?}"
    );
    assert!(
        heard.iter().all(|h| h["member"] != BP2MI),
        "never heard from: {heard:?}"
    );

    let kemlu: Value = ok_json(
        &f.admin_call(
            KEMLU,
            "operator:ID:GOV:KEMLU:OPS",
            Method::GET,
            "/console/state",
            Bytes::new(),
        )
        .await,
    );
    assert_eq!(exchanges(&kemlu, DUKCAPIL, "consumer", Some("ok")), 3);
    let refused: u64 = kemlu["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["contract"] == CITIZENSHIP && r["role"] == "consumer" && r["outcome"] == code)
        .map(|r| r["value"].as_u64().unwrap())
        .sum();
    assert_eq!(refused, 1);
    let breakers = kemlu["breakers"].as_array().unwrap();
    assert!(
        breakers
            .iter()
            .any(|b| b["provider"] == DUKCAPIL && b["state"] == "closed"),
        "{breakers:?}"
    );
    // Kemlu's gateway witnessed Dukcapil's log with the answers.
    let witnessed = kemlu["witness"]["partners"].as_array().unwrap();
    assert!(
        witnessed.iter().any(|p| p["member"] == DUKCAPIL),
        "{witnessed:?}"
    );

    // Its assets, and nothing else under /console/.
    for (path, media) in [
        ("/console/assets/console.js", "text/javascript"),
        ("/console/assets/console.css", "text/css"),
        (
            "/console/assets/vendor/uplot/uPlot.iife.min.js",
            "text/javascript",
        ),
    ] {
        let r = f
            .admin_call(
                KEMLU,
                "operator:ID:GOV:KEMLU:OPS",
                Method::GET,
                path,
                Bytes::new(),
            )
            .await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(media),
            "{path}"
        );
    }
    let missing = f
        .admin_call(
            KEMLU,
            "operator:ID:GOV:KEMLU:OPS",
            Method::GET,
            "/console/assets/../../metrics",
            Bytes::new(),
        )
        .await;
    assert_problem(&missing, 404, "not-found");
    let post = f
        .admin_call(
            KEMLU,
            "operator:ID:GOV:KEMLU:OPS",
            Method::POST,
            "/console/state",
            Bytes::new(),
        )
        .await;
    assert_problem(&post, 405, "method-not-allowed");
    assert_eq!(post.headers["allow"], "GET");
    assert!(post.headers.contains_key("content-security-policy"));
}

#[tokio::test]
async fn the_console_is_refused_to_a_subsystem_and_to_another_members_operator() {
    let f = Federation::start().await;
    for path in ["/console/", "/console/state"] {
        let reply = f
            .admin_call(DUKCAPIL, SIAK, Method::GET, path, Bytes::new())
            .await;
        assert_problem(&reply, 403, "identity-kind");
    }
    // Another member's operator, from another member's CA: refused in the handshake.
    let refused = f
        .try_admin_call(
            DUKCAPIL,
            "operator:ID:GOV:KEMLU:OPS",
            Method::GET,
            "/console/",
            Bytes::new(),
        )
        .await
        .unwrap_err();
    assert!(is_refused(&refused), "{refused}");
}

/// A `simpul console` child process and the URL it printed; killed when dropped.
struct Console {
    child: Child,
    url: String,
    port: u16,
}

impl Console {
    async fn start(f: &Federation, member: &str, staff: Option<&str>) -> Console {
        let dir = f.config_file.parent().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_simpul"));
        command
            .current_dir(dir)
            .arg("--config")
            .arg(&f.config_file)
            .args(["console", "--member", member]);
        if let Some(staff) = staff {
            command.args(["--as", staff]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("simpul console printed its URL")
            .unwrap()
            .expect("a line");
        let port = url
            .strip_prefix("http://127.0.0.1:")
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("not the console's URL: {url}"));
        assert!(url.contains("/console/?token="), "{url}");
        Console { child, url, port }
    }

    /// The path and query of its URL, token included.
    fn token_path(&self) -> String {
        self.url
            .split_once(&format!(":{}", self.port))
            .unwrap()
            .1
            .to_owned()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A raw HTTP/1.1 request to the proxy: status, headers (lower-cased names), body.
async fn raw(
    port: u16,
    method: &str,
    path: &str,
    host: &str,
    cookie: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        request.push_str(&format!("Cookie: {c}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simpul_console_trades_its_one_time_token_for_a_cookie_and_refuses_everything_else() {
    let f = Federation::start().await;
    let console = Console::start(&f, KEMLU, None).await;
    let port = console.port;
    let host = format!("127.0.0.1:{port}");
    let with_token = console.token_path();

    // No token, no cookie.
    let (status, headers, body) = raw(port, "GET", "/console/", &host, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/problem+json")
    );
    assert!(
        body.contains("urn:simpul:console:unauthenticated"),
        "{body}"
    );
    // A wrong token is refused and does not use up the right one.
    let (status, _, _) = raw(port, "GET", "/console/?token=00", &host, None).await;
    assert_eq!(status, 401);
    // Another Host (a rebound name) is refused before the token is looked at.
    let (status, _, body) = raw(
        port,
        "GET",
        &with_token,
        &format!("evil.example:{port}"),
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("host-refused"), "{body}");

    // The token buys a cookie and a redirect to the URL without it.
    let (status, headers, _) =
        raw(port, "GET", &with_token, &format!("localhost:{port}"), None).await;
    assert_eq!(status, 303);
    assert_eq!(header(&headers, "location"), Some("/console/"));
    let set = header(&headers, "set-cookie").unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    assert!(
        cookie.starts_with(&format!("simpul_console_{port}=")),
        "{cookie}"
    );
    // Used once, it is gone.
    let (status, _, body) = raw(port, "GET", &with_token, &host, None).await;
    assert_eq!(status, 401);
    assert!(body.contains("used already"), "{body}");

    // With the cookie: the page, its state, the probe; nothing else, and GET only.
    let (status, headers, body) = raw(port, "GET", "/console/", &host, Some(&cookie)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        header(&headers, "content-security-policy")
            .unwrap()
            .starts_with("default-src 'self'")
    );
    assert!(body.contains("Simpul command centre"));
    let (status, _, body) = raw(port, "GET", "/console/state", &host, Some(&cookie)).await;
    assert_eq!(status, 200, "{body}");
    let state: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["member"], KEMLU);
    assert_eq!(state["viewer"]["identity"], "operator:ID:GOV:KEMLU:OPS");
    assert_eq!(
        raw(port, "GET", "/healthz", &host, Some(&cookie)).await.0,
        200
    );
    for path in ["/metrics", "/", "/admin/cache/purge", "/console/../metrics"] {
        let (status, _, body) = raw(port, "GET", path, &host, Some(&cookie)).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, headers, _) = raw(port, "POST", "/console/state", &host, Some(&cookie)).await;
    assert_eq!(status, 405);
    assert_eq!(header(&headers, "allow"), Some("GET"));
    // An operator's session reaches the auditor face, which refuses it.
    let (status, _, body) = raw(port, "GET", "/audit/tree-head", &host, Some(&cookie)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("forbidden"), "{body}");
    // An auditor's session reaches it, for the page's search.
    let auditor = Console::start(&f, KEMLU, Some("auditor:ID:GOV:KEMLU:AUDIT")).await;
    let (status, headers, _) = raw(
        auditor.port,
        "GET",
        &auditor.token_path(),
        &format!("127.0.0.1:{}", auditor.port),
        None,
    )
    .await;
    assert_eq!(status, 303);
    let auditor_cookie = header(&headers, "set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let answered = f.ask_citizenship().await.exchange_id;
    let (status, _, body) = raw(
        auditor.port,
        "GET",
        &format!("/audit/inclusion?exchange_id={answered}"),
        &format!("localhost:{}", auditor.port),
        Some(&auditor_cookie),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let proofs: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        proofs["proofs"][0]["record"]["exchange_id"],
        answered.as_str()
    );
    // Each console's cookie is its own: Kemlu's operator session is not the auditor's.
    let (status, _, _) = raw(
        auditor.port,
        "GET",
        "/console/",
        &format!("127.0.0.1:{}", auditor.port),
        Some(&cookie),
    )
    .await;
    assert_eq!(status, 401);
    // A cookie of another value is no session.
    let (status, _, _) = raw(
        port,
        "GET",
        "/console/",
        &host,
        Some(&format!("simpul_console_{port}=00")),
    )
    .await;
    assert_eq!(status, 401);
}

/// Where the screenshots go: `target/console-screenshots/`, which CI keeps.
fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `url` with `args` and returns its standard output.
async fn chromium(binary: &str, profile: &Path, url: &str, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--virtual-time-budget=8000",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg(url)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finished within 120 s")
    .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {log}");
    // The page keeps to its own Content-Security-Policy: the browser refused nothing.
    assert!(
        !log.contains("Content Security Policy") && !log.contains("Refused to"),
        "{log}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The text of the element that follows `marker` (an attribute), up to its closing tag.
fn cell<'d>(dom: &'d str, marker: &str, close: &str) -> &'d str {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("the page has no {marker}"));
    let rest = &dom[at + marker.len()..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest.find(close).unwrap();
    &rest[start..end]
}

/// The row whose `data-key` is `key`.
fn row<'d>(dom: &'d str, key: &str) -> &'d str {
    let marker = format!("data-key=\"{key}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("the page has no row {key}"));
    let rest = &dom[at..];
    &rest[..rest.find("</tr>").unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_shows_the_exchanges_made_the_tree_head_and_the_members() {
    let Ok(binary) = std::env::var("SIMPUL_TEST_CHROMIUM") else {
        eprintln!("skipped: set SIMPUL_TEST_CHROMIUM to a Chromium binary to run this test");
        return;
    };
    let f = Federation::start().await;
    let (code, answered) = known_exchanges(&f).await;
    // A head signed now covers every record of the exchanges above.
    let head: Value = ok_json(
        &f.admin_call(
            DUKCAPIL,
            "auditor:ID:GOV:DUKCAPIL:AUDIT",
            Method::POST,
            "/audit/tree-head",
            Bytes::new(),
        )
        .await,
    );
    let size = head["tree_size"].as_u64().unwrap();
    assert!(size >= 3, "{head}");
    let profile = tempfile::tempdir().unwrap();

    // Dukcapil's, as its auditor: the provider's side and the search.
    // The URL names an exchange: the page searches for it as it loads.
    let console = Console::start(&f, DUKCAPIL, Some("auditor:ID:GOV:DUKCAPIL:AUDIT")).await;
    let url = format!("{}&exchange_id={answered}", console.url);
    let dom = chromium(&binary, profile.path(), &url, &["--dump-dom"]).await;
    let provided = row(&dom, &format!("{CITIZENSHIP}|{KEMLU}|provider"));
    assert_eq!(
        cell(provided, "data-col=\"ok\"", "</td>"),
        "3",
        "{provided}"
    );
    assert_eq!(
        cell(provided, "data-col=\"refused\"", "</td>"),
        "0",
        "{provided}"
    );
    assert_eq!(
        cell(&dom, "data-k=\"tree-size\"", "</dd>"),
        format!("{size} records")
    );
    assert!(
        cell(&dom, "data-k=\"verified\"", "</dd>").starts_with("✓ verifies"),
        "{dom}"
    );
    for m in [KEMLU, DUKCAPIL, BP2MI, BPJSTK] {
        assert!(dom.contains(&format!("data-member=\"{m}\"")), "{m}");
    }
    assert!(dom.contains("id=\"search\""), "an auditor gets the search");
    let found = cell(&dom, "id=\"search-result\"", "</article>");
    assert!(found.contains(&answered), "{found}");
    assert!(found.contains("— provider, ok"), "{found}");
    assert!(found.contains("Included in the tree of"), "{found}");
    let nik = f.population.sample_in_all_four();
    assert!(!found.contains(nik), "no personal data: {found}");
    assert!(dom.contains("signed in as auditor"));

    // Kemlu's, as its operator: the consumer's side, its refusal, no search.
    let console = Console::start(&f, KEMLU, None).await;
    let dom = chromium(&binary, profile.path(), &console.url, &["--dump-dom"]).await;
    let asked = row(&dom, &format!("{CITIZENSHIP}|{DUKCAPIL}|consumer"));
    assert_eq!(cell(asked, "data-col=\"ok\"", "</td>"), "3", "{asked}");
    let refusal = row(&dom, &format!("{code}|as consumer"));
    assert_eq!(
        cell(refusal, "data-col=\"count\"", "</td>"),
        "1",
        "{refusal}"
    );
    let dukcapil = cell(&dom, &format!("data-member=\"{DUKCAPIL}\""), "</tr>");
    assert!(dukcapil.contains("closed"), "{dukcapil}");
    assert!(dukcapil.contains("3 answered"), "{dukcapil}");
    assert!(dom.contains("needs an auditor identity"));

    // Screenshots, for people and for CI's artifacts, while exchanges go on (one in eight
    // refused), so that the charts have something to show.
    let f = Arc::new(f);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (f, stop) = (f.clone(), stop.clone());
        tokio::spawn(async move {
            for i in 0..20_000u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if i % 8 == 7 {
                    let nik = f.population.sample_in_all_four();
                    let social = json!({"purpose": "social-security", "query": {"nik": nik}});
                    f.local_query(PEDULI, KEMLU, "citizenship.status", social)
                        .await;
                } else {
                    f.ask_citizenship_reply().await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let dir = screenshots();
    let search = format!("&exchange_id={answered}");
    for (member, staff, name, size, query) in [
        (KEMLU, None, "kemlu-operator.png", "1400,1000", ""),
        (
            DUKCAPIL,
            Some("auditor:ID:GOV:DUKCAPIL:AUDIT"),
            "dukcapil-auditor.png",
            "1400,1000",
            "",
        ),
        (
            KEMLU,
            None,
            "kemlu-operator-whole-page.png",
            "1400,2000",
            "",
        ),
        (
            DUKCAPIL,
            Some("auditor:ID:GOV:DUKCAPIL:AUDIT"),
            "dukcapil-auditor-search.png",
            "1400,2400",
            search.as_str(),
        ),
    ] {
        let console = Console::start(&f, member, staff).await;
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        chromium(
            &binary,
            profile.path(),
            &format!("{}{query}", console.url),
            &[
                &format!("--screenshot={}", path.display()),
                &format!("--window-size={size}"),
            ],
        )
        .await;
        let png = std::fs::read(&path).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{}",
            path.display()
        );
    }
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
}
