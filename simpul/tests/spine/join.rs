//! A ministry joining with keys it keeps: `simpul pki request` on its machine, `simpul pki
//! issue` at the authority, `simpul manifest sign`; its gateway then exchanges with the
//! others. And each refusal of `issue`, on one line naming the request.

use std::path::Path;
use std::process::{Command, Output};

use contracts::ParsedJws;
use contracts::envelope::ANSWER_TYP;
use gateway::config::Config;
use serde_json::Value;

use crate::common::*;

fn simpul(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simpul"))
        .env("RUST_LOG", "warn")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The one line a refused command printed.
#[track_caller]
fn refused(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

/// Dukcapil's keys are made by `request` in a directory of the ministry's, its certificate
/// by `issue`, the manifest signed anew, and the keys and certificate installed where its
/// gateway reads them — replacing what `simpul up` made for it.
fn dukcapil_joins(config: &Config) {
    let file = config.base_dir.join("config.toml");
    let ministry = config.base_dir.join("ministry");
    let m = ministry.display().to_string();
    let issued = ministry.join("issued").display().to_string();
    let request = ministry.join("request.json").display().to_string();
    ok(&simpul(
        &file,
        &["pki", "request", "--member", DUKCAPIL, "--out", &m],
    ));
    ok(&simpul(
        &file,
        &["pki", "issue", &request, "--out", &issued],
    ));
    ok(&simpul(&file, &["manifest", "sign"]));
    let layout = &config.federation.pki;
    let dukcapil = id(DUKCAPIL);
    for (from, to) in [
        (ministry.join("gateway.key"), layout.gateway_key(&dukcapil)),
        (ministry.join("signing.key"), layout.signing_key(&dukcapil)),
        (
            ministry.join("issued/gateway.pem"),
            layout.gateway_cert(&dukcapil),
        ),
    ] {
        std::fs::remove_file(&to).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
}

#[tokio::test]
async fn a_member_whose_keys_were_made_by_request_and_issue_exchanges() {
    let f = Federation::start_with(Options {
        after_prepare: Some(Box::new(dukcapil_joins)),
        ..Options::default()
    })
    .await;
    let ministry = f.config.base_dir.join("ministry");
    let jwk: Value =
        serde_json::from_slice(&std::fs::read(ministry.join("signing.jwk")).unwrap()).unwrap();
    let kid = jwk["kid"].as_str().unwrap();
    // The manifest lists the key the ministry made, and only it.
    let listed = &f
        .manifest
        .doc()
        .members
        .iter()
        .find(|m| m.id == id(DUKCAPIL))
        .unwrap()
        .keys;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["kid"], kid);
    // Kemlu asks Dukcapil through its own gateway (Dukcapil's certificate and answer both
    // checked by Kemlu's gateway), and directly: the answer is signed with the new key.
    f.ask_citizenship().await;
    let request = f.citizenship_request();
    let reply = f.send_signed(KEMLU, &request).await;
    assert_ok(&reply);
    let parsed = ParsedJws::parse(std::str::from_utf8(&reply.body).unwrap(), ANSWER_TYP).unwrap();
    assert_eq!(parsed.header.kid.as_deref(), Some(kid));
    f.manifest.key(kid).unwrap().1.verify(&parsed).unwrap();
    // Dukcapil asks BP2MI, presenting the issued certificate and signing with the new key:
    // BP2MI accepts both (the TLS handshake, then the signature against the manifest) and
    // refuses only at the grant, which the manifest does not give Dukcapil.
    let request = f.nik_request(DUKCAPIL, BP2MI, "employment.placement", "social-security");
    let reply = f.send_signed(DUKCAPIL, &request).await;
    assert_problem(&reply, 403, "forbidden");
    assert_eq!(
        std::fs::read(f.layout().gateway_cert(&id(DUKCAPIL))).unwrap(),
        std::fs::read(ministry.join("issued/gateway.pem")).unwrap()
    );
}

/// A configuration and a dev PKI in `dir`, and a request of Dukcapil's in `dir/req`.
fn authority(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(&config, test_config(&[])).unwrap();
    ok(&simpul(&config, &["pki", "init"]));
    config
}

#[test]
fn issue_refuses_what_a_request_may_not_ask_each_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = authority(dir.path());
    let req = |name: &str, member: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec!["pki", "request", "--member", member, "--out"];
        let o = out.display().to_string();
        args.push(&o);
        args.extend_from_slice(extra);
        ok(&simpul(&config, &args));
        out.join("request.json")
    };
    let issue = |request: &Path| {
        let out = dir.path().join("issued");
        simpul(
            &config,
            &[
                "pki",
                "issue",
                &request.display().to_string(),
                "--out",
                &out.display().to_string(),
            ],
        )
    };
    let edit = |request: &Path, name: &str, f: &dyn Fn(&mut Value)| {
        let mut v: Value = serde_json::from_slice(&std::fs::read(request).unwrap()).unwrap();
        f(&mut v);
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        path
    };

    let good = req("dukcapil", DUKCAPIL, &[]);
    let bp2mi = req("bp2mi", BP2MI, &[]);
    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        (
            edit(&good, "nobody.json", &|v| {
                v["member"] = "ID:GOV:NOBODY".into()
            }),
            "ID:GOV:NOBODY is not a member in",
        ),
        (
            edit(&good, "authority.json", &|v| {
                v["member"] = "ID:GOV:SIMPUL".into()
            }),
            "is the federation authority",
        ),
        (
            edit(&good, "subsystem.json", &|v| {
                v["member"] = "ID:GOV:DUKCAPIL:SIAK".into()
            }),
            "is a subsystem",
        ),
        // BP2MI's CSR sent as Dukcapil's.
        (
            edit(&bp2mi, "other.json", &|v| v["member"] = DUKCAPIL.into()),
            "the subject",
        ),
        (
            req("evil", DUKCAPIL, &["--host", "gw.evil.example"]),
            "the host gw.evil.example",
        ),
        // Dukcapil's CSR with BP2MI's signing key: its proof is over BP2MI's CSR.
        (
            edit(&good, "key.json", &|v| {
                let other: Value = serde_json::from_slice(&std::fs::read(&bp2mi).unwrap()).unwrap();
                v["signing_jwk"] = other["signing_jwk"].clone();
            }),
            "its kid is",
        ),
        (
            edit(&good, "proof.json", &|v| {
                let other: Value = serde_json::from_slice(&std::fs::read(&bp2mi).unwrap()).unwrap();
                v["proof"] = other["proof"].clone();
            }),
            "the proof is not signed by this key",
        ),
        (
            edit(&good, "extra.json", &|v| v["note"] = "hello".into()),
            "not a join request",
        ),
    ];
    for (request, want) in cases {
        let err = refused(&issue(&request));
        let name = request.file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.contains(&name) && err.contains(want), "{want}: {err}");
        assert!(!dir.path().join("issued").exists(), "{want}: wrote files");
    }
    // The good one is issued, once.
    ok(&issue(&good));
    assert!(dir.path().join("issued/gateway.pem").is_file());
    assert!(dir.path().join("issued/ca.pem").is_file());
    // A request for an unknown member is refused on the ministry's side too.
    let out = simpul(
        &config,
        &["pki", "request", "--member", "ID:GOV:NOBODY", "--out", "x"],
    );
    assert!(refused(&out).contains("--member"));
}
