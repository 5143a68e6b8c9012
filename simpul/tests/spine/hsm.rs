//! A provider whose signing key lives in a real SoftHSM2 token: its gateway runs as a
//! `simpul serve` process of its own (SoftHSM2 reads `SOFTHSM2_CONF` once per process, so the
//! token's configuration is that process's environment, never this one's), the rest of the
//! federation in this process. Skipped (with a message) unless `SIMPUL_TEST_SOFTHSM2_MODULE`
//! names the module; `.ci/run` sets it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use audit::tree_head::{SignedTreeHead, verify_tree_head};
use contracts::ParsedJws;
use contracts::envelope::ANSWER_TYP;
use gateway::config::Config;

use crate::common::*;

const PIN: &str = "4711-test";

/// A SoftHSM2 token of its own: a configuration whose token directory is a temporary one,
/// a token labelled `simpul` initialised with [`PIN`], and the PIN in a 0600 file.
struct Token {
    dir: tempfile::TempDir,
    module: String,
}

impl Token {
    /// `None` (and a message) when SoftHSM2 tests are skipped.
    fn new() -> Option<Token> {
        let module = match std::env::var("SIMPUL_TEST_SOFTHSM2_MODULE") {
            Ok(m) if !m.is_empty() => m,
            _ => {
                eprintln!("skipped: SIMPUL_TEST_SOFTHSM2_MODULE is not set (the SoftHSM2 module)");
                return None;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        let token = Token { dir, module };
        let init = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", token.conf())
            .args(["--init-token", "--free", "--label", "simpul", "--pin", PIN])
            .args(["--so-pin", "so-4711"])
            .output()
            .expect("softhsm2-util (Debian's softhsm2 package)");
        assert!(init.status.success(), "{init:?}");
        token.write_pin(PIN);
        Some(token)
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    fn pin_file(&self) -> PathBuf {
        self.dir.path().join("pin")
    }

    fn write_pin(&self, pin: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(self.pin_file(), format!("{pin}\n")).unwrap();
        std::fs::set_permissions(self.pin_file(), std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// The config edit that puts Dukcapil's signing key in this token.
    fn dukcapil_edit(&self) -> (String, String) {
        let name = "name = \"Direktorat Jenderal Kependudukan dan Pencatatan Sipil\"";
        (
            name.to_owned(),
            format!(
                "{name}\nsigning = {{ pkcs11 = {{ module = {:?}, token = \"simpul\", key = \"dukcapil-signing\", pin_file = {:?} }} }}",
                self.module,
                self.pin_file().display().to_string()
            ),
        )
    }

    /// `simpul` with this token's configuration in its environment.
    fn simpul(&self, config: &Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_simpul"));
        c.env("SOFTHSM2_CONF", self.conf())
            .env("RUST_LOG", "warn")
            .arg("--config")
            .arg(config);
        c
    }
}

/// Dukcapil joins with its signing key in the token, each step a `simpul` process with the
/// token's configuration: `pki hsm-key` makes the key pair in the token; `pki request` makes
/// the TLS key and a request whose proof the token signs; `pki issue` (the authority) checks
/// it and records the token's public key; `manifest sign` lists it; the TLS key and the
/// issued certificate are installed where the gateway reads them.
fn join_with_a_token_key(token_conf: PathBuf, module: String) -> impl FnOnce(&Config) {
    move |config: &Config| {
        let file = config.base_dir.join("config.toml");
        let run = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_simpul"))
                .env("SOFTHSM2_CONF", &token_conf)
                .env("RUST_LOG", "warn")
                .arg("--config")
                .arg(&file)
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?} ({module}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        let jwk: serde_json::Value =
            serde_json::from_slice(&run(&["pki", "hsm-key", "--member", DUKCAPIL])).unwrap();
        assert!(jwk.get("d").is_none(), "{jwk}");
        let layout = &config.federation.pki;
        let dukcapil = id(DUKCAPIL);
        // The key file `simpul up` made is not the key any more.
        std::fs::remove_file(layout.signing_key(&dukcapil)).unwrap();
        let ministry = config.base_dir.join("ministry");
        let m = ministry.display().to_string();
        run(&["pki", "request", "--member", DUKCAPIL, "--out", &m]);
        assert!(
            !ministry.join("signing.key").exists(),
            "the key is in the token"
        );
        let request: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ministry.join("request.json")).unwrap()).unwrap();
        assert_eq!(request["signing_jwk"]["kid"], jwk["kid"]);
        let issued = ministry.join("issued").display().to_string();
        let request = ministry.join("request.json").display().to_string();
        run(&["pki", "issue", &request, "--out", &issued]);
        run(&["manifest", "sign"]);
        for (from, to) in [
            (ministry.join("gateway.key"), layout.gateway_key(&dukcapil)),
            (
                ministry.join("issued/gateway.pem"),
                layout.gateway_cert(&dukcapil),
            ),
        ] {
            std::fs::remove_file(&to).unwrap();
            std::fs::copy(&from, &to).unwrap();
        }
    }
}

/// A `simpul serve` process, killed when dropped.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Dukcapil's gateway as `simpul serve` with `token`, and waits until it listens.
fn serve_dukcapil(f: &Federation, token: &Token) -> Served {
    let stderr = std::fs::File::create(token.dir.path().join("serve.log")).unwrap();
    let child = token
        .simpul(&f.config_file)
        .args(["serve", "--member", DUKCAPIL])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut served = Served(child);
    let listen = f.config.member(&id(DUKCAPIL)).unwrap().listen;
    let admin = f
        .config
        .member(&id(DUKCAPIL))
        .unwrap()
        .admin
        .as_ref()
        .map(|a| a.listen);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = served.0.try_wait().unwrap() {
            let log = std::fs::read_to_string(token.dir.path().join("serve.log")).unwrap();
            panic!("simpul serve exited ({status}): {log}");
        }
        let up = |a| std::net::TcpStream::connect(a).is_ok();
        if up(listen) && admin.is_none_or(up) {
            return served;
        }
        assert!(Instant::now() < deadline, "simpul serve did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn a_provider_signing_in_softhsm2_answers_and_its_tree_heads_verify() {
    let Some(token) = Token::new() else { return };
    let f = Federation::start_with(Options {
        edits: vec![token.dukcapil_edit()],
        after_prepare: Some(Box::new(join_with_a_token_key(
            token.conf(),
            token.module.clone(),
        ))),
        not_started: vec![DUKCAPIL],
        ..Options::default()
    })
    .await;
    let _dukcapil = serve_dukcapil(&f, &token);
    let listed = &f
        .manifest
        .doc()
        .members
        .iter()
        .find(|m| m.id == id(DUKCAPIL))
        .unwrap()
        .keys;
    assert_eq!(listed.len(), 1);
    let kid = listed[0]["kid"].as_str().unwrap().to_owned();

    // A consumer's exchange, answered by the provider with its key in the token: Kemlu's
    // gateway verifies the answer against the manifest before it answers Peduli WNI.
    f.ask_citizenship().await;

    // Asked directly: the answer's JWS names the token's key and verifies with the
    // manifest's key for it.
    let request = f.citizenship_request();
    let reply = f.send_signed(KEMLU, &request).await;
    assert_ok(&reply);
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    let parsed = ParsedJws::parse(text.trim(), ANSWER_TYP).unwrap();
    assert_eq!(parsed.header.kid.as_deref(), Some(kid.as_str()));
    let (signer, key) = f.manifest.key(&kid).unwrap();
    assert_eq!(signer, &id(DUKCAPIL));
    key.verify(&parsed).unwrap();

    // The provider's audit log: the head it signed at start-up and one it signs now, over
    // both exchanges, verify with the manifest's key.
    let reply = f.audit_get(DUKCAPIL, "/audit/tree-head").await;
    let head: SignedTreeHead = ok_json(&reply);
    verify_tree_head(&head, key).unwrap();
    let reply = f
        .admin_call(
            DUKCAPIL,
            "auditor:ID:GOV:DUKCAPIL:AUDIT",
            http::Method::POST,
            "/audit/tree-head",
            bytes::Bytes::new(),
        )
        .await;
    let head: SignedTreeHead = ok_json(&reply);
    let (payload, _) = verify_tree_head(&head, key).unwrap();
    assert!(payload.tree_size >= 2, "{payload:?}");
    assert_eq!(head.member, DUKCAPIL);
}

#[tokio::test]
async fn a_wrong_token_pin_stops_the_gateway_at_start_up_with_one_line() {
    let Some(token) = Token::new() else { return };
    let f = Federation::start_with(Options {
        edits: vec![token.dukcapil_edit()],
        after_prepare: Some(Box::new(join_with_a_token_key(
            token.conf(),
            token.module.clone(),
        ))),
        not_started: vec![DUKCAPIL],
        ..Options::default()
    })
    .await;
    token.write_pin("0000");
    let out = token
        .simpul(&f.config_file)
        .args(["serve", "--member", DUKCAPIL])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("token `simpul`") && err.contains("PIN") && err.contains("wrong"),
        "{err}"
    );
    // Nothing listens.
    let listen = f.config.member(&id(DUKCAPIL)).unwrap().listen;
    assert!(std::net::TcpStream::connect(listen).is_err());
}
