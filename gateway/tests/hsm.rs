//! Signing keys in a PKCS#11 token, against a real SoftHSM2: skipped (with a message) unless
//! `SIMPUL_TEST_SOFTHSM2_MODULE` names the module (`.ci/run` sets it).
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` when the module is initialised, once per process, and
//! setting an environment variable in a running test process is unsafe: so each test runs
//! its body in a process of its own — this test binary again, for that one test — with
//! `SOFTHSM2_CONF` naming a configuration whose token directory is the test's own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use contracts::{JwsError, MemberId, ParsedJws, VerifyingKey};
use gateway::hsm::{self, HsmError, PinSource, Pkcs11Config};

const TYP: &str = "simpul-request+jws";
const PIN: &str = "4711-test";

/// The module, or `None` (and a message) when the tests are skipped.
fn module() -> Option<PathBuf> {
    match std::env::var("SIMPUL_TEST_SOFTHSM2_MODULE") {
        Ok(m) if !m.is_empty() => Some(PathBuf::from(m)),
        _ => {
            eprintln!("skipped: SIMPUL_TEST_SOFTHSM2_MODULE is not set (the SoftHSM2 module)");
            None
        }
    }
}

/// Runs `body` in a child process of this test binary (only `name`), with a SoftHSM2
/// configuration and token directory of its own under a temporary directory, in which a
/// token labelled `simpul` is initialised with [`PIN`]. In the child, `body` gets the module
/// and that directory.
fn in_own_softhsm(name: &str, body: impl FnOnce(&Path, &Path)) {
    let Some(module) = module() else { return };
    if let Ok(dir) = std::env::var("SIMPUL_TEST_SOFTHSM2_DIR") {
        body(&module, Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::create_dir(dir.path().join("tokens")).unwrap();
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.path().join("tokens").display()
        ),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", "simpul", "--pin", PIN])
        .args(["--so-pin", "so-4711"])
        .output()
        .expect("softhsm2-util (Debian's softhsm2 package)");
    assert!(init.status.success(), "{init:?}");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", &conf)
        .env("SIMPUL_TEST_SOFTHSM2_DIR", dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child ran no test: {text}");
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn config(module: &Path, dir: &Path, key: &str) -> Pkcs11Config {
    let pin = dir.join("pin");
    if !pin.exists() {
        write_private(&pin, &format!("{PIN}\n"));
    }
    Pkcs11Config {
        module: module.to_owned(),
        token: "simpul".into(),
        key: key.into(),
        pin: PinSource::File(pin),
    }
}

fn member() -> MemberId {
    MemberId::parse("ID:GOV:DUKCAPIL").unwrap()
}

#[test]
fn a_jws_signed_in_the_token_verifies_with_its_public_jwk() {
    in_own_softhsm(
        "a_jws_signed_in_the_token_verifies_with_its_public_jwk",
        |module, dir| {
            let config = config(module, dir, "dukcapil-signing");
            let made = hsm::generate_key(&config, &member()).unwrap();
            // Opened again, as a gateway does at start-up: the same key.
            let key = Arc::new(hsm::open_key(&config, &member()).unwrap());
            assert_eq!(key.kid(), made.kid());
            assert!(key.kid().starts_with("ID:GOV:DUKCAPIL#"), "{}", key.kid());
            let jwk = key.public_jwk().clone();
            assert!(jwk.get("d").is_none());
            assert_eq!(jwk["crv"], "P-256");
            let verifying = VerifyingKey::from_jwk(&jwk).unwrap();
            // Signed from several threads at once, each through a session of the pool.
            let threads: Vec<_> = (0..6)
                .map(|i| {
                    let key = key.clone();
                    std::thread::spawn(move || {
                        (0..5)
                            .map(|j| {
                                let payload = format!(r#"{{"n":{i},"m":{j}}}"#);
                                (payload.clone(), key.sign(TYP, payload.as_bytes()).unwrap())
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for t in threads {
                for (payload, jws) in t.join().unwrap() {
                    let parsed = ParsedJws::parse(&jws, TYP).unwrap();
                    assert_eq!(parsed.payload, payload.as_bytes());
                    assert_eq!(parsed.header.kid.as_deref(), Some(key.kid()));
                    verifying.verify(&parsed).unwrap();
                }
            }
            // The signature of another payload does not pass for this one.
            let jws = key.sign(TYP, b"{}").unwrap();
            let parts: Vec<&str> = jws.split('.').collect();
            let other = key.sign(TYP, b"{\"x\":1}").unwrap();
            let forged = format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                other.rsplit('.').next().unwrap()
            );
            assert!(matches!(
                verifying.verify(&ParsedJws::parse(&forged, TYP).unwrap()),
                Err(JwsError::BadSignature)
            ));
            // The private key cannot be had as a PEM.
            assert!(matches!(
                key.private_pem(),
                Err(JwsError::NotExportable { .. })
            ));
            // A second key under the same label is refused.
            assert!(matches!(
                hsm::generate_key(&config, &member()),
                Err(HsmError::Key { .. })
            ));
        },
    );
}

#[test]
fn a_wrong_pin_a_missing_token_or_key_are_typed_errors() {
    in_own_softhsm(
        "a_wrong_pin_a_missing_token_or_key_are_typed_errors",
        |module, dir| {
            let good = config(module, dir, "k");
            // Nothing logged in yet in this process: a wrong PIN is refused by the token.
            let wrong_pin = dir.join("wrong.pin");
            write_private(&wrong_pin, "0000\n");
            let wrong = Pkcs11Config {
                pin: PinSource::File(wrong_pin),
                ..good.clone()
            };
            let e = hsm::open_key(&wrong, &member()).unwrap_err();
            assert!(matches!(e, HsmError::WrongPin { .. }), "{e:?}");
            assert!(e.to_string().contains("PIN"), "{e}");
            // A PIN file others can read.
            let open_pin = dir.join("open.pin");
            std::fs::write(&open_pin, PIN).unwrap();
            let open = Pkcs11Config {
                pin: PinSource::File(open_pin),
                ..good.clone()
            };
            let e = hsm::open_key(&open, &member()).unwrap_err();
            assert!(matches!(e, HsmError::Pin { .. }), "{e:?}");
            assert!(e.to_string().contains("chmod 600"), "{e}");
            // An unset PIN variable.
            let unset = Pkcs11Config {
                pin: PinSource::Env("SIMPUL_TEST_NO_SUCH_PIN_VARIABLE".into()),
                ..good.clone()
            };
            assert!(matches!(
                hsm::open_key(&unset, &member()),
                Err(HsmError::Pin { .. })
            ));
            // No such token.
            let elsewhere = Pkcs11Config {
                token: "nowhere".into(),
                ..good.clone()
            };
            let e = hsm::open_key(&elsewhere, &member()).unwrap_err();
            assert!(matches!(e, HsmError::Token { .. }), "{e:?}");
            assert!(e.to_string().contains("`simpul`"), "{e}");
            // No such key.
            let e = hsm::open_key(&good, &member()).unwrap_err();
            assert!(matches!(e, HsmError::Key { .. }), "{e:?}");
            assert!(e.to_string().contains("hsm-key"), "{e}");
            // A module that is not one.
            let bad = Pkcs11Config {
                module: dir.join("pin"),
                ..good
            };
            assert!(matches!(
                hsm::open_key(&bad, &member()),
                Err(HsmError::Module { .. })
            ));
        },
    );
}
