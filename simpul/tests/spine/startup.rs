//! A gateway that starts is a gateway that is configured right: a manifest that does not
//! verify, has expired, rolls back, or disagrees with the catalog, the keys or the grants of
//! the member's subsystems is refused at start-up, naming what is wrong.

use contracts::{Algorithm, Manifest, SigningKey};
use gateway::assemble::StartError;
use gateway::authority::{build_manifest_doc, sign_manifest};
use gateway::gateway::Gateway;

use crate::common::*;

async fn start_error(f: &Federation) -> String {
    let err = Gateway::from_config(&f.config, &id(DUKCAPIL))
        .await
        .unwrap_err();
    err.to_string()
}

fn authority(f: &Federation) -> SigningKey {
    let pem = std::fs::read(f.layout().authority_key()).unwrap();
    SigningKey::from_pem(Algorithm::ES256, "ID:GOV:SIMPUL", &pem).unwrap()
}

#[tokio::test]
async fn tampered_manifest_is_refused() {
    let f = Federation::start().await;
    let path = f.config.federation.manifest.clone();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut doc = f.manifest.doc().clone();
    doc.serial += 7;
    let parts: Vec<&str> = text.trim().split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        contracts::canonical::b64url(&serde_json::to_vec(&doc).unwrap()),
        parts[2]
    );
    std::fs::write(&path, forged).unwrap();
    let msg = start_error(&f).await;
    assert!(
        msg.contains("manifest.jws") && msg.contains("signature"),
        "{msg}"
    );
}

#[tokio::test]
async fn manifest_signed_by_another_authority_is_refused() {
    let f = Federation::start().await;
    let doc = build_manifest_doc(
        &f.config,
        f.manifest.doc().serial + 5,
        contracts::unix_now(),
    )
    .unwrap();
    let impostor = SigningKey::generate(Algorithm::ES256, "ID:GOV:SIMPUL").unwrap();
    std::fs::write(
        &f.config.federation.manifest,
        Manifest::sign(&doc, &impostor).unwrap(),
    )
    .unwrap();
    let msg = start_error(&f).await;
    assert!(msg.contains("pinned authority key"), "{msg}");
}

#[tokio::test]
async fn expired_manifest_is_refused() {
    let f = Federation::start().await;
    let now = contracts::unix_now();
    let mut doc = build_manifest_doc(&f.config, f.manifest.doc().serial + 5, now - 200).unwrap();
    doc.expires_at = now - 100;
    std::fs::write(
        &f.config.federation.manifest,
        Manifest::sign(&doc, &authority(&f)).unwrap(),
    )
    .unwrap();
    let msg = start_error(&f).await;
    assert!(msg.contains("expired"), "{msg}");
}

#[tokio::test]
async fn older_manifest_than_the_one_held_is_refused_as_a_rollback() {
    let mut f = Federation::start().await;
    // Dukcapil's gateways below are started here: one gateway per SQLite audit store.
    f.stop(DUKCAPIL).await;
    let old = std::fs::read_to_string(&f.config.federation.manifest).unwrap();
    let first = f.manifest.doc().serial;
    let newer = sign_manifest(&f.config, None).unwrap();
    let second = newer.doc().serial;
    assert!(second > first, "{second} after {first}");
    Gateway::from_config(&f.config, &id(DUKCAPIL))
        .await
        .unwrap();
    std::fs::write(&f.config.federation.manifest, old).unwrap();
    let err = Gateway::from_config(&f.config, &id(DUKCAPIL))
        .await
        .unwrap_err();
    match &err {
        StartError::Manifest {
            source: contracts::ManifestError::Rollback { offered, held },
            ..
        } => assert_eq!((*offered, *held), (first, second)),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn contract_digest_that_differs_from_the_catalog_is_refused() {
    let f = Federation::start().await;
    let mut doc = build_manifest_doc(
        &f.config,
        f.manifest.doc().serial + 9,
        contracts::unix_now(),
    )
    .unwrap();
    doc.contracts[0].digest = contracts::canonical::sha256_b64url(b"another document");
    std::fs::write(
        &f.config.federation.manifest,
        Manifest::sign(&doc, &authority(&f)).unwrap(),
    )
    .unwrap();
    let msg = start_error(&f).await;
    assert!(
        msg.contains("digest") && msg.contains(&doc.contracts[0].id),
        "{msg}"
    );
}

#[tokio::test]
async fn signing_key_not_in_the_manifest_is_refused() {
    let f = Federation::start().await;
    let replacement = SigningKey::generate(Algorithm::ES256, DUKCAPIL).unwrap();
    std::fs::write(
        f.layout().signing_key(&id(DUKCAPIL)),
        replacement.private_pem().unwrap(),
    )
    .unwrap();
    let msg = start_error(&f).await;
    assert!(
        msg.contains("not among") && msg.contains(replacement.kid()),
        "{msg}"
    );
}

#[tokio::test]
async fn a_subsystem_granted_what_the_manifest_does_not_grant_its_member_is_refused() {
    let f = Federation::start().await;
    // A manifest in which Kemlu is no longer a consumer of residence.abroad, which the
    // configuration still grants Peduli WNI (alone, and as a part of the federated lookup).
    let mut doc = build_manifest_doc(
        &f.config,
        f.manifest.doc().serial + 9,
        contracts::unix_now(),
    )
    .unwrap();
    let residence = doc
        .contracts
        .iter_mut()
        .find(|c| c.id == "residence.abroad")
        .unwrap();
    residence.consumers.retain(|c| c.member.as_str() != KEMLU);
    std::fs::write(
        &f.config.federation.manifest,
        Manifest::sign(&doc, &authority(&f)).unwrap(),
    )
    .unwrap();
    let err = Gateway::from_config(&f.config, &id(KEMLU))
        .await
        .unwrap_err();
    match &err {
        StartError::Config(e) => {
            assert_eq!(e.kind, gateway::config::Rejection::NotGranted, "{e}");
            assert_eq!(e.path, "test config.toml");
            assert_eq!(
                e.field, "members[0].subsystems[0].grants[0].purposes",
                "{e}"
            );
            assert!(e.reason.contains("part `residence`"), "{e}");
        }
        other => panic!("expected a configuration refusal, got {other}"),
    }
}

#[tokio::test]
async fn a_binding_secret_is_needed_only_by_the_gateway_that_serves_it() {
    let unset = "SIMPUL_TEST_SURELY_UNSET_DUKCAPIL_DB";
    let f = Federation::start_with(Options {
        edits: vec![(
            "  database = \"data/dukcapil.db\"\n  statement = \"SELECT citizenship".into(),
            format!("  database = \"env:{unset}\"\n  statement = \"SELECT citizenship"),
        )],
        not_started: vec![DUKCAPIL],
        ..Options::default()
    })
    .await;
    // Every other member started from the same file without Dukcapil's secret…
    assert!(f.gateways.contains_key(&id(KEMLU)));
    // …and Dukcapil's gateway refuses to start, naming the variable and the field.
    let err = start_error(&f).await;
    assert!(
        err.contains(unset) && err.contains("sql.database") && err.contains("not set"),
        "{err}"
    );
    // `simpul doctor` on Dukcapil's machine says the same, as a failed binding.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_simpul"))
        .arg("--config")
        .arg(&f.config_file)
        .args(["doctor", "--member", DUKCAPIL])
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.lines()
            .any(|l| l.starts_with("FAIL binding") && l.contains(unset)),
        "{said}"
    );
}
