//! The `simpul` binary as a person uses it: bad input gives one line naming the file and
//! field; `simpul up` prints a curl command that works; Ctrl-C stops it cleanly.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn simpul(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simpul"))
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A config.toml for the demo on free loopback ports, in `dir`.
fn write_config(dir: &Path) {
    let ports: Vec<(String, u16)> = [
        "127.0.0.1:7441",
        "127.0.0.1:7442",
        "127.0.0.1:7443",
        "127.0.0.1:7444",
        "127.0.0.1:7541",
        "127.0.0.1:7542",
        "127.0.0.1:7543",
        "127.0.0.1:7544",
        "127.0.0.1:7641",
        "127.0.0.1:7642",
        "127.0.0.1:7643",
        "127.0.0.1:7644",
    ]
    .iter()
    .map(|old| {
        (
            old.to_string(),
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        )
    })
    .collect::<Vec<_>>()
    // Every probe stays bound until all are chosen, so no port is handed out twice.
    .iter()
    .map(|(old, l)| (old.clone(), l.local_addr().unwrap().port()))
    .collect();
    std::fs::write(dir.join("config.toml"), test_config(&ports)).unwrap();
}

#[test]
fn bad_config_is_refused_with_one_line_naming_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let text = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    let bad = text.replacen("listen = \"127.0.0.1:", "listen = \"nowhere:", 1);
    std::fs::write(dir.path().join("bad.toml"), bad).unwrap();
    let out = simpul(dir.path(), &["--config", "bad.toml", "pki", "init"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("bad.toml") && err.contains("listen") && err.contains("line"),
        "{err}"
    );
}

#[test]
fn up_with_an_address_in_use_fails_naming_it_and_never_says_it_is_up() {
    // The free ports are chosen, then let go for `simpul up` to bind: a test running
    // beside this one may take one meanwhile. That collision names another address, and is
    // tried again with fresh ports.
    for attempt in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path());
        let config = gateway::config::Config::load(&dir.path().join("config.toml")).unwrap();
        // Another program holds the last member's admin address.
        let taken = config
            .members
            .last()
            .unwrap()
            .admin
            .as_ref()
            .unwrap()
            .listen;
        let _holder = std::net::TcpListener::bind(taken).unwrap();
        let out = simpul(dir.path(), &["up"]);
        assert!(!out.status.success());
        let err = stderr(&out);
        if !err.contains(&taken.to_string()) && err.contains("cannot listen") && attempt < 3 {
            continue;
        }
        assert!(
            err.contains(&taken.to_string()) && err.contains("cannot listen"),
            "{err}"
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(!printed.contains("is up"), "{printed}");
        return;
    }
}

#[test]
fn pki_init_refuses_to_overwrite_without_force_and_manifest_verify_catches_tampering() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    assert!(simpul(dir.path(), &["pki", "init"]).status.success());
    let again = simpul(dir.path(), &["pki", "init"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert!(
        simpul(dir.path(), &["pki", "init", "--force"])
            .status
            .success()
    );

    assert!(simpul(dir.path(), &["manifest", "sign"]).status.success());
    let ok = simpul(dir.path(), &["manifest", "verify", "data/manifest.jws"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let shown = String::from_utf8_lossy(&ok.stdout);
    assert!(
        shown.contains("citizenship.status/1 by ID:GOV:DUKCAPIL"),
        "{shown}"
    );
    // Dates a person reads, not Unix seconds.
    let dated = shown
        .lines()
        .find(|l| l.starts_with("federation "))
        .unwrap_or_default();
    let is_date = |w: &str| w.len() == 20 && w.starts_with("20") && w.ends_with('Z');
    let words: Vec<&str> = dated.split(' ').collect();
    assert!(
        words.windows(2).any(|w| w[0] == "issued" && is_date(w[1]))
            && words.windows(2).any(|w| w[0] == "expires" && is_date(w[1])),
        "{dated}"
    );

    let text = std::fs::read_to_string(dir.path().join("data/manifest.jws")).unwrap();
    let mut chars: Vec<char> = text.trim().chars().collect();
    let middle = chars.len() / 2;
    chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
    std::fs::write(
        dir.path().join("tampered.jws"),
        chars.into_iter().collect::<String>(),
    )
    .unwrap();
    let bad = simpul(dir.path(), &["manifest", "verify", "tampered.jws"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("tampered.jws"), "{}", stderr(&bad));
}

#[test]
fn up_prints_a_curl_command_that_returns_the_four_part_profile_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_simpul"))
        .current_dir(dir.path())
        .arg("up")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    let started = Instant::now();
    while !printed.contains("Ctrl-C stops") {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "simpul up printed: {printed}"
        );
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("simpul up exited early: {printed}");
        }
        printed.push_str(&line);
    }
    // The first printed command: a person known to all four ministries.
    let start = printed.find("curl ").unwrap();
    let end = start + printed[start..].find("\n\n").unwrap();
    let curl = printed[start..end].replace("\\\n", " ");
    let out = Command::new("sh")
        .arg("-c")
        .arg(&curl)
        .current_dir(dir.path())
        .output()
        .unwrap();
    if out.status.code() == Some(127) {
        eprintln!("curl is not installed: the printed command was not run");
    } else {
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "{curl}\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                stderr(&out)
            )
        });
        for part in ["citizenship", "placement", "insurance", "residence"] {
            assert_eq!(body["parts"][part]["status"], "ok", "{part}: {body}");
        }
    }
    // The CLI client through the same gateway.
    let q = simpul(
        dir.path(),
        &[
            "query",
            "--as",
            PEDULI,
            "citizenship.status",
            "1",
            r#"{"nik":"12"}"#,
        ],
    );
    assert!(!q.status.success());
    assert!(String::from_utf8_lossy(&q.stdout).contains("urn:simpul:error:invalid-query"));
    // The schema's 400-character NIK pattern is named, not printed.
    assert!(
        String::from_utf8_lossy(&q.stdout).contains("the pattern at /properties/nik/pattern"),
        "{}",
        String::from_utf8_lossy(&q.stdout)
    );
    // A subsystem the member does not have, and a contract nobody defines, are named as
    // such, with what there is.
    for (args, says) in [
        (
            [
                "query",
                "--as",
                "ID:GOV:KEMLU:PEDULI",
                "citizenship.status",
                "1",
                "{}",
            ],
            vec![
                "no such subsystem",
                "its subsystems: ID:GOV:KEMLU:PEDULI-WNI",
            ],
        ),
        (
            ["query", "--as", PEDULI, "citizenship.statu", "1", "{}"],
            vec![
                "citizenship.statu 1: no such contract",
                "citizenship.status 1",
            ],
        ),
    ] {
        let out = simpul(dir.path(), &args);
        assert!(!out.status.success());
        let said = stderr(&out);
        assert_eq!(said.lines().count(), 1, "{said}");
        for s in says {
            assert!(said.contains(s), "{said}");
        }
    }

    // The admin listener through the CLI: purge one contract's cached answers.
    let purge = simpul(
        dir.path(),
        &[
            "cache",
            "purge",
            "--member",
            DUKCAPIL,
            "--contract",
            "citizenship.status",
        ],
    );
    assert!(
        purge.status.success(),
        "{}{}",
        String::from_utf8_lossy(&purge.stdout),
        stderr(&purge)
    );
    assert!(
        String::from_utf8_lossy(&purge.stdout).contains("dropped"),
        "{}",
        String::from_utf8_lossy(&purge.stdout)
    );
    let unknown = simpul(
        dir.path(),
        &[
            "cache",
            "purge",
            "--member",
            DUKCAPIL,
            "--contract",
            "citizenship.statu",
        ],
    );
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("provides no contract citizenship.statu"),
        "{}",
        stderr(&unknown)
    );

    Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "simpul up exited with {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "simpul up did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops `child` as Ctrl-C would, and waits for it.
fn interrupt(child: &mut std::process::Child) {
    Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
}

/// A demo configuration on free ports in a new directory, prepared as `simpul up` would
/// (PKI, manifest, seeded databases), with its population.
async fn prepared() -> (
    tempfile::TempDir,
    gateway::config::Config,
    demo::population::Population,
) {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let config = gateway::config::Config::load(&dir.path().join("config.toml")).unwrap();
    let plan = demo::DemoPlan::from_config(&config).unwrap();
    let population = plan.population();
    demo::prepare(&config, &plan, &population).await.unwrap();
    (dir, config, population)
}

/// The `simpul` binary serving one member from the config in `dir`.
fn serve(dir: &Path, member: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_simpul"))
        .current_dir(dir)
        .args(["serve", "--member", member])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until `addr` accepts connections.
async fn listening(addr: std::net::SocketAddr) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{addr} never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `subsystem`'s client of its member's local face, and the URL of `citizenship.status` there.
fn citizenship_asker(
    config: &gateway::config::Config,
    member: &str,
    subsystem: &str,
) -> (gateway::client::PeerClient, String) {
    let layout = &config.federation.pki;
    let trust =
        gateway::tls::FederationTrust::from_files(&layout.ca_cert(), &config.federation.crl)
            .unwrap();
    let client = gateway::client::PeerClient::from_files(
        &trust,
        &layout.client_cert(&id(subsystem)),
        &layout.client_key(&id(subsystem)),
        id(member),
        1 << 20,
    )
    .unwrap();
    let local = config.member(&id(member)).unwrap().local.as_ref().unwrap();
    (
        client,
        format!("{}/v1/query/citizenship.status/1", local.url()),
    )
}

/// Exports `member`'s log with `simpul audit export`, checks it with `simpul audit verify`
/// and the member's key, and returns the exchange ids of its records in `role`.
fn verified_ids(
    dir: &Path,
    config: &gateway::config::Config,
    member: &str,
    role: &str,
) -> std::collections::HashSet<String> {
    let out = format!("{}.jsonl", id(member).file_stem());
    let export = simpul(dir, &["audit", "export", "--member", member, "--out", &out]);
    assert!(export.status.success(), "{}", stderr(&export));
    let key = config.federation.pki.signing_jwk(&id(member));
    let verify = simpul(
        dir,
        &["audit", "verify", &out, "--key", key.to_str().unwrap()],
    );
    assert!(
        verify.status.success(),
        "{member}: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        stderr(&verify)
    );
    // The private key beside it is refused, pointing at the public one.
    let private = config.federation.pki.signing_key(&id(member));
    let wrong = simpul(
        dir,
        &["audit", "verify", &out, "--key", private.to_str().unwrap()],
    );
    assert!(!wrong.status.success());
    let said = stderr(&wrong);
    assert!(
        said.lines().count() == 1 && said.contains(key.to_str().unwrap()),
        "{said}"
    );
    exported_ids(&std::fs::read_to_string(dir.join(&out)).unwrap(), role)
}

/// The exchange ids of one side's records in an export.
fn exported_ids(export: &str, role: &str) -> std::collections::HashSet<String> {
    export
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "record" && v["record"]["role"] == role)
        .map(|v| {
            v["record"]["exchange_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn killing_the_provider_mid_traffic_loses_no_record_and_both_logs_verify() {
    let (dir, config, population) = prepared().await;
    let kemlu_addr = config.member(&id(KEMLU)).unwrap().listen;
    let dukcapil_addr = config.member(&id(DUKCAPIL)).unwrap().listen;
    let mut kemlu = serve(dir.path(), KEMLU);
    let mut dukcapil = serve(dir.path(), DUKCAPIL);
    listening(kemlu_addr).await;
    listening(dukcapil_addr).await;

    let (client, url) = citizenship_asker(&config, KEMLU, PEDULI);
    let body = serde_json::json!({"purpose": "citizen-protection", "query": {"nik": population.sample_in_all_four()}}).to_string();
    // Four clients drive exchanges while the provider is killed and restarted.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut drivers = Vec::new();
    for _ in 0..4 {
        let (client, url, body, stop) = (client.clone(), url.clone(), body.clone(), stop.clone());
        drivers.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = client
                    .call(
                        http::Method::POST,
                        &url,
                        "application/json",
                        body.clone().into(),
                        Duration::from_secs(10),
                    )
                    .await;
                if let Ok(r) = reply
                    && r.status == 200
                {
                    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                    answered.push(v["exchange_id"].as_str().unwrap().to_owned());
                }
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    dukcapil.kill().unwrap(); // SIGKILL: no shutdown, no flush
    dukcapil.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    dukcapil = serve(dir.path(), DUKCAPIL);
    listening(dukcapil_addr).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered = Vec::new();
    for d in drivers {
        answered.extend(d.await.unwrap());
    }
    for child in [&mut kemlu, &mut dukcapil] {
        interrupt(child);
    }
    assert!(
        answered.len() > 10,
        "only {} exchanges answered",
        answered.len()
    );

    for (member, role) in [(KEMLU, "consumer"), (DUKCAPIL, "provider")] {
        let ids = verified_ids(dir.path(), &config, member, role);
        let missing: Vec<_> = answered.iter().filter(|id| !ids.contains(*id)).collect();
        assert!(
            missing.is_empty(),
            "{member} has no {role} record of {} answered exchanges, e.g. {:?}",
            missing.len(),
            missing.first()
        );
    }
}

#[tokio::test]
async fn serve_refuses_to_start_when_its_connection_bounds_exceed_the_open_file_limit() {
    let (dir, config, _) = prepared().await;
    // Dukcapil's listeners may hold 2 × 256 + 64 connections; with the margin of 1,024 that
    // is 1,600: more than a hard limit of 1,500, less than one of 1,700.
    let run = |hard: u32| {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -Sn {hard} && ulimit -Hn {hard} && exec \"$0\" serve --member {DUKCAPIL}"
            ))
            .arg(env!("CARGO_BIN_EXE_simpul"))
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let refused = run(1500).wait_with_output().unwrap();
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(
        err.contains("576 connections")
            && err.contains("open-file limit of 1500")
            && err.contains("limits.max_connections"),
        "{err}"
    );
    // Under a limit that fits, it serves.
    let mut fits = run(1700);
    listening(config.member(&id(DUKCAPIL)).unwrap().listen).await;
    assert!(fits.try_wait().unwrap().is_none(), "it exited");
    fits.kill().unwrap();
    fits.wait().unwrap();
}

/// `simpul --config CONFIG serve --member MEMBER` in `dir`.
fn serve_with(dir: &Path, config: &str, member: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_simpul"))
        .current_dir(dir)
        .args(["--config", config, "serve", "--member", member])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_haproxy_lose_nothing_when_one_is_killed() {
    let (Ok(pg), Ok(redis), Ok(haproxy)) = (
        std::env::var("SIMPUL_TEST_POSTGRES_URL"),
        std::env::var("SIMPUL_TEST_REDIS_URL"),
        std::env::var("SIMPUL_TEST_HAPROXY"),
    ) else {
        eprintln!(
            "skipped: SIMPUL_TEST_POSTGRES_URL, SIMPUL_TEST_REDIS_URL and SIMPUL_TEST_HAPROXY \
             must all be set (CI sets them; see .ci/run)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let config = gateway::config::Config::load(&dir.path().join("config.toml")).unwrap();
    let dukcapil = config.member(&id(DUKCAPIL)).unwrap();
    let a = dukcapil.listen;
    let a_local = dukcapil.local.as_ref().unwrap().listen;
    let a_admin = dukcapil.admin.as_ref().unwrap().listen;
    let front = free_port();

    // Dukcapil: two replicas, both behind HAProxy's address (the manifest's gateway URL),
    // sharing one PostgreSQL log (a fresh schema), and rate limits and the replay window in
    // Redis. Replica B differs only in its listen addresses.
    let schema = format!("replicas_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let sep = if pg.contains('?') { '&' } else { '?' };
    let store = format!("{pg}{sep}options[search_path]={schema}");
    let prefix = format!("simpul-test-{}", uuid::Uuid::new_v4());
    let mut text = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    let listen = format!("listen = \"{a}\"");
    assert!(text.contains(&listen));
    text = text.replacen(
        &listen,
        &format!("{listen}\ngateway = \"https://localhost:{front}\""),
        1,
    );
    let (old, new) = dukcapil_limits(&format!(
        "max_connections = 256, rate_backend = \"redis\", replay_backend = \"redis\", redis_url = \"{redis}\", redis_prefix = \"{prefix}\""
    ));
    assert!(text.contains(&old));
    text = text.replacen(
        &old,
        &format!("{new}\naudit = {{ store = \"{store}\" }}"),
        1,
    );
    // The consumers keep asking through the failover: their breakers do not open on the
    // few exchanges the killed replica held.
    text = text.replace(
        "limits = { max_connections = 256, max_connections_per_address = 64 }",
        "limits = { max_connections = 256, max_connections_per_address = 64 }\nbreaker = { failures = 1000 }",
    );
    std::fs::write(dir.path().join("config.toml"), &text).unwrap();
    let (b, b_local, b_admin) = (free_port(), free_port(), free_port());
    let text_b = text
        .replace(&format!("\"{a}\""), &format!("\"127.0.0.1:{b}\""))
        .replace(
            &format!("\"{a_local}\""),
            &format!("\"127.0.0.1:{b_local}\""),
        )
        .replace(
            &format!("\"{a_admin}\""),
            &format!("\"127.0.0.1:{b_admin}\""),
        );
    std::fs::write(dir.path().join("config-b.toml"), &text_b).unwrap();

    let config = gateway::config::Config::load(&dir.path().join("config.toml")).unwrap();
    let plan = demo::DemoPlan::from_config(&config).unwrap();
    let population = plan.population();
    demo::prepare(&config, &plan, &population).await.unwrap();

    // HAProxy in TCP mode: TLS passes through, so the consumer authenticates the replica's
    // certificate and the replica the consumer's. A replica that stops answering connects
    // is out within 200 ms; a connection refused is dispatched to the other.
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 2000\ndefaults\n  mode tcp\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n  retries 3\n  option redispatch\nfrontend simpul\n  bind 127.0.0.1:{front}\n  default_backend dukcapil\nbackend dukcapil\n  balance roundrobin\n  server a {a} check inter 200ms fall 1 rise 2\n  server b 127.0.0.1:{b} check inter 200ms fall 1 rise 2\n"
        ),
    )
    .unwrap();
    let mut proxy = Command::new(&haproxy)
        .args(["-db", "-f"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let mut replica_a = serve_with(dir.path(), "config.toml", DUKCAPIL);
    listening(a).await;
    let mut replica_b = serve_with(dir.path(), "config-b.toml", DUKCAPIL);
    listening(std::net::SocketAddr::from(([127, 0, 0, 1], b))).await;
    listening(std::net::SocketAddr::from(([127, 0, 0, 1], front))).await;
    let consumers = [
        (KEMLU, PEDULI, "citizen-protection"),
        (BP2MI, SISKOP2MI, "placement-verification"),
        (BPJSTK, "ID:GOV:BPJSTK:SIPP", "social-security"),
    ];
    let mut children = vec![];
    for (member, _, _) in consumers {
        children.push(serve_with(dir.path(), "config.toml", member));
        listening(
            config
                .member(&id(member))
                .unwrap()
                .local
                .as_ref()
                .unwrap()
                .listen,
        )
        .await;
    }

    // Three consumers, two drivers each, ask continuously through their own gateways.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killed_at = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut drivers = Vec::new();
    for (member, subsystem, purpose) in consumers {
        let (client, url) = citizenship_asker(&config, member, subsystem);
        let body = serde_json::json!({"purpose": purpose, "query": {"nik": population.sample_in_all_four()}}).to_string();
        for _ in 0..2 {
            let (client, url, body, stop, killed_at) = (
                client.clone(),
                url.clone(),
                body.clone(),
                stop.clone(),
                killed_at.clone(),
            );
            drivers.push(tokio::spawn(async move {
                let (mut answered, mut after_kill, mut failed_after_kill) =
                    (Vec::new(), 0, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = Instant::now();
                    let reply = client
                        .call(
                            http::Method::POST,
                            &url,
                            "application/json",
                            body.clone().into(),
                            Duration::from_secs(10),
                        )
                        .await;
                    let killed = killed_at.lock().unwrap().is_some();
                    match reply {
                        Ok(r) if r.status == 200 => {
                            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                            answered.push((member, v["exchange_id"].as_str().unwrap().to_owned()));
                            if killed {
                                after_kill += 1;
                            }
                        }
                        // What the failover cost, for the message if too few pass.
                        Ok(r) if killed => failed_after_kill.push(format!(
                            "{} after {:?}: {}",
                            r.status,
                            started.elapsed(),
                            String::from_utf8_lossy(&r.body)
                        )),
                        Err(e) if killed => {
                            failed_after_kill.push(format!("{e} after {:?}", started.elapsed()))
                        }
                        _ => {}
                    }
                }
                (answered, after_kill, failed_after_kill)
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    replica_a.kill().unwrap(); // SIGKILL: no shutdown, no flush
    replica_a.wait().unwrap();
    *killed_at.lock().unwrap() = Some(Instant::now());
    // Long enough for the balancer's checks and the consumers' connections to move to B
    // on a busy machine.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut answered, mut after_kill, mut failed_after_kill) = (Vec::new(), 0, Vec::new());
    for d in drivers {
        let (a, k, f) = d.await.unwrap();
        answered.extend(a);
        after_kill += k;
        failed_after_kill.extend(f);
    }
    for child in children.iter_mut().chain([&mut replica_b]) {
        interrupt(child);
    }
    proxy.kill().unwrap();
    proxy.wait().unwrap();
    eprintln!(
        "{} exchanges answered, {after_kill} of them after replica A was killed",
        answered.len()
    );
    assert!(
        answered.len() > 30,
        "only {} exchanges answered",
        answered.len()
    );
    assert!(
        after_kill > 10,
        "replica B answered only {after_kill} exchanges after A was killed; the others: {failed_after_kill:#?}"
    );

    // Every answered exchange is on both sides' logs, and every log verifies: Dukcapil's
    // one shared log (both replicas appended to it), and each consumer's.
    for (member, role) in [
        (DUKCAPIL, "provider"),
        (KEMLU, "consumer"),
        (BP2MI, "consumer"),
        (BPJSTK, "consumer"),
    ] {
        let ids = verified_ids(dir.path(), &config, member, role);
        let missing: Vec<_> = answered
            .iter()
            .filter(|(asker, _)| role == "provider" || *asker == member)
            .filter(|(_, x)| !ids.contains(x))
            .collect();
        assert!(
            missing.is_empty(),
            "{member} has no {role} record of {} answered exchanges, e.g. {:?}",
            missing.len(),
            missing.first()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleven_hundred_reconnecting_sockets_under_a_1024_soft_limit_leave_exchanges_answered() {
    let (dir, config, population) = prepared().await;
    let kemlu = config.member(&id(KEMLU)).unwrap();
    let dukcapil_addr = config.member(&id(DUKCAPIL)).unwrap().listen;
    // Dukcapil starts with the soft limit services commonly get, 1,024 (the hard one as the
    // machine has it): it raises the soft limit to the hard one before it accepts.
    let mut dukcapil = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 1024 && exec \"$0\" serve --member {DUKCAPIL}"
        ))
        .arg(env!("CARGO_BIN_EXE_simpul"))
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut kemlu_gw = serve_with(dir.path(), "config.toml", KEMLU);
    listening(dukcapil_addr).await;
    listening(kemlu.local.as_ref().unwrap().listen).await;

    // 1,100 sockets from 127.0.0.2 that never start TLS, each reconnecting as soon as it is
    // closed: over the listener's bounds they are closed at once, the rest at the 5 s
    // handshake deadline.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    for _ in 0..1100 {
        let stop = stop.clone();
        flood.push(tokio::spawn(async move {
            let mut connects = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket
                    .bind(std::net::SocketAddr::from(([127, 0, 0, 2], 0)))
                    .unwrap();
                if let Ok(mut s) = socket.connect(dukcapil_addr).await {
                    connects += 1;
                    let mut buf = [0u8; 1];
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        tokio::io::AsyncReadExt::read(&mut s, &mut buf),
                    )
                    .await;
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            connects
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Meanwhile Kemlu's system asks Dukcapil through Kemlu's gateway: every query answered.
    let (client, url) = citizenship_asker(&config, KEMLU, PEDULI);
    let body = serde_json::json!({"purpose": "citizen-protection", "query": {"nik": population.sample_in_all_four()}}).to_string();
    for i in 0..50 {
        let reply = client
            .call(
                http::Method::POST,
                &url,
                "application/json",
                body.clone().into(),
                Duration::from_secs(15),
            )
            .await
            .unwrap_or_else(|e| panic!("query {i}: {e}"));
        assert_eq!(
            reply.status,
            200,
            "query {i}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut connects = 0;
    for f in flood {
        connects += f.await.unwrap();
    }
    assert!(
        connects >= 1100,
        "the flood connected only {connects} times"
    );
    assert!(
        dukcapil.try_wait().unwrap().is_none(),
        "Dukcapil's gateway exited under the flood"
    );
    for child in [&mut kemlu_gw, &mut dukcapil] {
        interrupt(child);
    }
}

#[tokio::test]
async fn log_format_json_writes_json_lines_naming_the_exchange_and_its_trace_on_both_sides() {
    let (dir, config, population) = prepared().await;
    let json_serve = |member: &str| {
        let log = std::fs::File::create(dir.path().join(format!("{member}.log"))).unwrap();
        Command::new(env!("CARGO_BIN_EXE_simpul"))
            .current_dir(dir.path())
            .args(["serve", "--member", member, "--log-format", "json"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let mut kemlu = json_serve(KEMLU);
    let mut dukcapil = json_serve(DUKCAPIL);
    listening(config.member(&id(KEMLU)).unwrap().listen).await;
    listening(config.member(&id(DUKCAPIL)).unwrap().listen).await;
    let (client, url) = citizenship_asker(&config, KEMLU, PEDULI);
    let body = serde_json::json!({"purpose": "citizen-protection", "query": {"nik": population.sample_in_all_four()}});
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let reply = client
        .call_with(
            http::Method::POST,
            &url,
            "application/json",
            &[("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))],
            body.to_string().into(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let exchange_id = answer["exchange_id"].as_str().unwrap();
    for child in [&mut kemlu, &mut dukcapil] {
        interrupt(child);
    }
    for member in [KEMLU, DUKCAPIL] {
        let log = std::fs::read_to_string(dir.path().join(format!("{member}.log"))).unwrap();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{member}: not a JSON line ({e}): {l}"))
            })
            .collect();
        // The line of the answer names the exchange and the trace in its span.
        let answered = lines
            .iter()
            .find(|l| l["fields"]["message"] == "answered")
            .unwrap_or_else(|| panic!("{member} logged no answer:\n{log}"));
        assert_eq!(
            answered["span"]["exchange_id"], exchange_id,
            "{member}: {answered}"
        );
        assert_eq!(answered["span"]["trace_id"], trace, "{member}: {answered}");
    }
}

#[test]
fn up_on_an_unreachable_postgres_names_the_url_and_its_variable_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_simpul"))
        .current_dir(dir.path())
        .args(["up", "--backend", "postgres"])
        .env(
            "SIMPUL_PG_URL",
            "postgres://demo:hunter2@127.0.0.1:1/simpul_demo",
        )
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = stderr(&out);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.contains("postgres://demo:***@127.0.0.1:1/simpul_demo")
            && said.contains("from SIMPUL_PG_URL")
            && !said.contains("hunter2"),
        "{said}"
    );
}

#[test]
fn up_stopped_while_it_prepares_ends_cleanly_at_once() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    // A million people: seconds of generating and seeding to stop in the middle of.
    let config = dir.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let people = text
        .lines()
        .find(|l| l.starts_with("people = "))
        .unwrap()
        .to_owned();
    std::fs::write(&config, text.replacen(&people, "people = 1000000", 1)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_simpul"))
        .current_dir(dir.path())
        .arg("up")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?} to stop",
        started.elapsed()
    );
    let said = stderr(&out);
    assert!(out.status.success(), "{:?}: {said}", out.status);
    assert!(
        said.contains("stopped before the federation was up"),
        "{said}"
    );
}
