//! Key validity windows over real TLS (PROTOCOL.md §1.5, §1.6): a request, a tree head or an
//! answer signed by a key outside its window is refused; and the CLI of a rotation: `pki rotate`,
//! `manifest sign` publishing both keys, `manifest diff`, `pki rotate --finish`, and the
//! authority's serial growing across `pki init --force`.

use std::path::Path;
use std::process::{Command, Output};

use contracts::envelope::REQUEST_TYP;
use contracts::{Algorithm, KeyWindow, Manifest, SigningKey};
use serde_json::Value;

use crate::common::*;

/// Signs a manifest for `f`'s configuration, with `edit` applied to its document, writes it
/// where the gateways read it, and returns it.
fn publish(f: &Federation, edit: impl FnOnce(&mut contracts::manifest::ManifestDoc)) -> Manifest {
    let now = contracts::unix_now();
    let serial = gateway::authority::next_serial(&f.config, now).unwrap();
    let mut doc = gateway::authority::build_manifest_doc(&f.config, serial, now).unwrap();
    doc.v = 2;
    edit(&mut doc);
    let pem = std::fs::read(f.layout().authority_key()).unwrap();
    let authority = SigningKey::from_pem(
        Algorithm::ES256,
        f.config.federation.authority.as_str(),
        &pem,
    )
    .unwrap();
    let jws = Manifest::sign(&doc, &authority).unwrap();
    std::fs::write(&f.config.federation.manifest, format!("{jws}\n")).unwrap();
    Manifest::verify(&jws, &authority.verifying_key().unwrap(), now).unwrap()
}

/// Adds `key` with `window` to `member`'s keys.
fn add_key(
    doc: &mut contracts::manifest::ManifestDoc,
    member: &str,
    key: &SigningKey,
    window: KeyWindow,
) {
    let mut jwk = key.public_jwk().clone();
    window.set_in(&mut jwk);
    doc.members
        .iter_mut()
        .find(|m| m.id == id(member))
        .unwrap()
        .keys
        .push(jwk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_signed_by_a_key_outside_its_window_is_refused_as_a_bad_signature() {
    let mut f = Federation::start().await;
    let now = contracts::unix_now();
    // Kemlu's retired key (its window ended a minute ago) and its next one (from an hour on).
    let retired = SigningKey::generate(Algorithm::ES256, KEMLU).unwrap();
    let early = SigningKey::generate(Algorithm::ES256, KEMLU).unwrap();
    publish(&f, |doc| {
        add_key(
            doc,
            KEMLU,
            &retired,
            KeyWindow {
                not_before: None,
                not_after: Some(now - 60),
            },
        );
        add_key(
            doc,
            KEMLU,
            &early,
            KeyWindow {
                not_before: Some(now + 3_600),
                not_after: None,
            },
        );
    });
    f.stop(DUKCAPIL).await;
    f.restart(DUKCAPIL).await;

    for (key, why) in [(&retired, "until"), (&early, "from")] {
        let request = f.citizenship_request();
        let jws = key
            .sign(REQUEST_TYP, &serde_json::to_vec(&request).unwrap())
            .unwrap();
        let p = assert_problem(
            &f.exchange(KEMLU, jws, &request).await,
            401,
            "bad-signature",
        );
        assert!(
            p.detail.contains(key.kid()) && p.detail.contains(&format!("may sign {why}")),
            "{}",
            p.detail
        );
    }
    // Kemlu's current key, which has no window, still signs.
    let request = f.citizenship_request();
    assert_ok(&f.send_signed(KEMLU, &request).await);

    // A tree head signed by the retired key now, carried by a good request: refused as a
    // bad head (row 18a), recorded.
    let head = audit::tree_head::sign_tree_head(
        &retired,
        0,
        &audit::empty_root(),
        contracts::unix_now() * 1000,
    )
    .unwrap();
    let request = f.citizenship_request();
    let url = format!("{}/v1/exchange/citizenship.status/1", f.url(DUKCAPIL));
    let reply = f
        .as_gateway(KEMLU, DUKCAPIL)
        .call_with(
            http::Method::POST,
            &url,
            contracts::envelope::JOSE_MEDIA_TYPE,
            &[(gateway::witness::TREE_HEAD_HEADER, head.jws.as_str())],
            f.sign(KEMLU, &request).into(),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    let p = assert_problem(&reply, 400, "bad-tree-head");
    assert!(p.detail.contains("may sign until"), "{}", p.detail);
    assert_eq!(
        f.records(DUKCAPIL, &request.id).await[0]["outcome"],
        "bad-tree-head"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answer_signed_by_a_key_whose_window_has_passed_is_refused_by_the_consumer() {
    let mut f = Federation::start().await;
    assert_ok(&f.ask_citizenship_reply().await);
    // Kemlu restarts with a manifest in which Dukcapil's key (which Dukcapil still signs
    // with) may no longer sign: Dukcapil itself keeps the manifest it started with.
    let dukcapil = f.signing_key(DUKCAPIL);
    publish(&f, |doc| {
        let m = doc
            .members
            .iter_mut()
            .find(|m| m.id == id(DUKCAPIL))
            .unwrap();
        KeyWindow {
            not_before: None,
            not_after: Some(contracts::unix_now() - 60),
        }
        .set_in(&mut m.keys[0]);
        assert_eq!(m.keys[0]["kid"], dukcapil.kid());
    });
    f.stop(KEMLU).await;
    f.restart(KEMLU).await;
    let p = assert_problem(&f.ask_citizenship_reply().await, 502, "bad-answer");
    assert!(p.detail.contains("may sign until"), "{}", p.detail);
}

fn simpul(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simpul"))
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[track_caller]
fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn serial(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("data/manifest.jws")).unwrap();
    let payload = text.trim().split('.').nth(1).unwrap();
    let doc: Value =
        serde_json::from_slice(&contracts::canonical::b64url_decode(payload).unwrap()).unwrap();
    doc["serial"].as_u64().unwrap()
}

#[test]
fn the_authoritys_serial_grows_across_a_rekey() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), test_config(&[])).unwrap();
    ok(simpul(dir.path(), &["pki", "init"]));
    ok(simpul(dir.path(), &["manifest", "sign"]));
    let first = serial(dir.path());
    assert!(first >= contracts::unix_now() as u64 - 5, "{first}");
    // A rotation under way is abandoned by the re-key, which makes new current keys.
    ok(simpul(dir.path(), &["pki", "rotate", "--member", KEMLU]));
    let out = ok(simpul(dir.path(), &["pki", "init", "--force"]));
    assert!(
        out.contains("removed") && out.contains("signing.next.key"),
        "{out}"
    );
    assert!(
        !dir.path()
            .join("certs/ID_GOV_KEMLU/signing.next.jwk")
            .exists()
    );
    ok(simpul(dir.path(), &["manifest", "sign"]));
    let second = serial(dir.path());
    assert!(second > first, "{second} after {first}");
    // Recorded outside the PKI directory.
    let recorded =
        std::fs::read_to_string(dir.path().join("data/manifest.authority.serial")).unwrap();
    assert_eq!(recorded.trim(), second.to_string());
    // A serial file that holds no serial is refused, naming it, rather than guessed past.
    std::fs::write(dir.path().join("data/manifest.authority.serial"), "seven").unwrap();
    let out = simpul(dir.path(), &["manifest", "sign"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.trim().lines().count() == 1 && err.contains("manifest.authority.serial"),
        "{err}"
    );
}

#[test]
fn rotate_sign_diff_finish() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("config.toml"), test_config(&[])).unwrap();
    ok(simpul(d, &["pki", "init"]));
    ok(simpul(d, &["manifest", "sign"]));
    std::fs::copy(d.join("data/manifest.jws"), d.join("before.jws")).unwrap();
    let layout = gateway::layout::PkiLayout::new(d.join("certs"));
    let old_kid = SigningKey::from_pem(
        Algorithm::ES256,
        KEMLU,
        &std::fs::read(layout.signing_key(&id(KEMLU))).unwrap(),
    )
    .unwrap()
    .kid()
    .to_owned();

    let out = ok(simpul(
        d,
        &["pki", "rotate", "--member", KEMLU, "--overlap-days", "3"],
    ));
    assert!(out.contains("signing.next.key"), "{out}");
    // A second rotation waits for the first to finish.
    let again = simpul(d, &["pki", "rotate", "--member", KEMLU]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--finish"));
    ok(simpul(d, &["manifest", "sign"]));
    std::fs::copy(d.join("data/manifest.jws"), d.join("during.jws")).unwrap();

    let diff = ok(simpul(d, &["manifest", "diff", "before.jws", "during.jws"]));
    assert!(diff.contains("~ version: 1 -> 2"), "{diff}");
    assert!(
        diff.contains(&format!(
            "~ key.window {old_kid}: signs always -> signs until "
        )),
        "{diff}"
    );
    let next_kid = diff
        .lines()
        .find_map(|l| l.strip_prefix(&format!("+ key {KEMLU}#")))
        .map(|rest| format!("{KEMLU}#{}", rest.split(':').next().unwrap()))
        .unwrap_or_else(|| panic!("no key added: {diff}"));
    let json: Value = serde_json::from_str(&ok(simpul(
        d,
        &["manifest", "diff", "--json", "before.jws", "during.jws"],
    )))
    .unwrap();
    let changes = json["changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["kind"] == "added"
            && c["what"] == "key"
            && c["subject"] == next_kid.as_str())
    );
    assert!(json["new"]["serial"].as_u64() > json["old"]["serial"].as_u64());

    // The gateway's start-up check and every verifier accept both keys now.
    let config = gateway::config::Config::load(&d.join("config.toml")).unwrap();
    let authority =
        gateway::assemble::load_authority_key(&config.federation.authority_key).unwrap();
    let text = std::fs::read_to_string(d.join("during.jws")).unwrap();
    let m = Manifest::verify(&text, &authority, contracts::unix_now()).unwrap();
    let now = contracts::unix_now();
    assert!(m.key_at(&old_kid, now).is_ok() && m.key_at(&next_kid, now).is_ok());
    assert!(m.key_at(&old_kid, now + 3 * 86_400 + 1).is_err());

    let out = ok(simpul(d, &["pki", "rotate", "--member", KEMLU, "--finish"]));
    assert!(out.contains(&format!("now signs with {next_kid}")), "{out}");
    ok(simpul(d, &["manifest", "sign"]));
    // After the finish the old key stays listed, with its window: nothing is removed.
    let diff = ok(simpul(
        d,
        &["manifest", "diff", "during.jws", "data/manifest.jws"],
    ));
    assert!(!diff.contains("- key") && !diff.contains("+ key"), "{diff}");
    let m = Manifest::verify(
        &std::fs::read_to_string(d.join("data/manifest.jws")).unwrap(),
        &authority,
        now,
    )
    .unwrap();
    assert!(m.key(&old_kid).is_some());
    // The gateway's start-up check of its own key: the new one signs now.
    let current = SigningKey::from_pem(
        Algorithm::ES256,
        KEMLU,
        &std::fs::read(layout.signing_key(&id(KEMLU))).unwrap(),
    )
    .unwrap();
    assert_eq!(current.kid(), next_kid);
    assert!(m.key_at(&next_kid, contracts::unix_now()).is_ok());

    // A manifest not signed by the authority key given is refused, naming the file.
    let stranger = SigningKey::generate(Algorithm::ES256, "ID:GOV:SIMPUL").unwrap();
    std::fs::write(
        d.join("stranger.jwk"),
        serde_json::to_vec(stranger.public_jwk()).unwrap(),
    )
    .unwrap();
    let out = simpul(
        d,
        &[
            "manifest",
            "diff",
            "--authority-key",
            "stranger.jwk",
            "before.jws",
            "during.jws",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.trim().lines().count() == 1
            && err.contains("before.jws")
            && err.contains("--authority-key"),
        "{err}"
    );
    // A member that is not one is named.
    let out = simpul(d, &["pki", "rotate", "--member", "ID:GOV:NOBODY"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--member"));
}
