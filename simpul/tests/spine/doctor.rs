//! `simpul doctor` beside a running federation: every line `ok` on a healthy one (exit 0),
//! then each fault in turn gives its `FAIL` line, naming the file or field and what to do,
//! and exit 1.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use crate::common::*;

/// `simpul doctor --member <member>` against the federation's config file.
async fn doctor(f: &Federation, member: &str) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_simpul"))
        .args(["--config"])
        .arg(&f.config_file)
        .args(["doctor", "--member", member])
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap()
}

fn lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The run's lines, after checking its exit status and that every line but `fails` is ok.
#[track_caller]
fn expect(o: &Output, fails: &[&str]) -> Vec<String> {
    let all = lines(o);
    let shown = format!(
        "stdout:\n{}\nstderr:\n{}",
        all.join("\n"),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        o.status.code(),
        Some(if fails.is_empty() { 0 } else { 1 }),
        "{shown}"
    );
    for line in &all[..all.len() - 1] {
        if fails.iter().any(|f| line.starts_with(f)) {
            continue;
        }
        assert!(line.starts_with("ok "), "not ok: {line}\n{shown}");
    }
    for f in fails {
        assert!(
            all.iter().any(|l| l.starts_with(f)),
            "no line `{f}…`\n{shown}"
        );
    }
    all
}

/// The line of `o` starting with `start`.
#[track_caller]
fn line(o: &Output, start: &str) -> String {
    let all = lines(o);
    all.iter()
        .find(|l| l.starts_with(start))
        .cloned()
        .unwrap_or_else(|| panic!("no line starting `{start}` in:\n{}", all.join("\n")))
}

/// A certificate naming `member` from a CA of its own (not the federation's), valid from
/// 2020 until the date given.
fn foreign_certificate(member: &str, (year, month, day): (i32, u8, u8)) -> String {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca, rcgen::KeyPair::generate().unwrap());
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.subject_alt_names.push(rcgen::SanType::URI(
        format!("urn:simpul:{member}").try_into().unwrap(),
    ));
    leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
    leaf.not_after = rcgen::date_time_ymd(year, month, day);
    leaf.signed_by(&rcgen::KeyPair::generate().unwrap(), &issuer)
        .unwrap()
        .pem()
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_is_all_ok_on_a_healthy_member_and_names_each_fault() {
    let mut f = Federation::start().await;
    let l = f.layout();
    let member = id(DUKCAPIL);

    let healthy = doctor(&f, DUKCAPIL).await;
    let all = expect(&healthy, &[]);
    assert!(
        all.last().unwrap().starts_with("ID:GOV:DUKCAPIL: "),
        "{all:?}"
    );
    for start in [
        "ok   certificate ",
        "ok   key         ",
        "ok   manifest    ",
        "ok   binding     citizenship.status/1 (members.provides): SQLite file ",
        "ok   audit       ",
        "ok   peer        ID:GOV:KEMLU ",
        "ok   peer        ID:GOV:BP2MI ",
        "ok   peer        ID:GOV:BPJSTK ",
        "ok   listen      ",
        "ok   open-files  ",
    ] {
        line(&healthy, start);
    }
    assert!(
        line(
            &healthy,
            &format!(
                "ok   listen      {} (listen)",
                f.config.member(&member).unwrap().listen
            )
        )
        .contains("in use by ID:GOV:DUKCAPIL's running gateway"),
    );
    let admin = f
        .config
        .member(&member)
        .unwrap()
        .admin
        .clone()
        .unwrap()
        .listen;
    assert_eq!(
        line(
            &healthy,
            &format!("ok   listen      {admin} (admin.listen)")
        ),
        format!(
            "ok   listen      {admin} (admin.listen): in use by the running gateway: /healthz ok, \
             /readyz ready (asked as operator:ID:GOV:DUKCAPIL:OPS)"
        )
    );

    // The same for machines.
    let json = tokio::process::Command::new(env!("CARGO_BIN_EXE_simpul"))
        .arg("--config")
        .arg(&f.config_file)
        .args(["doctor", "--member", DUKCAPIL, "--json"])
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    assert_eq!(json.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["member"], DUKCAPIL);
    assert_eq!(doc["verdict"], "ok");
    let findings = doc["findings"].as_array().unwrap();
    assert_eq!(findings.len(), all.len() - 1);
    assert!(
        findings
            .iter()
            .any(|f| f["check"] == "open-files" && f["verdict"] == "ok")
    );

    // A key file its group and others can read.
    let key = l.gateway_key(&member);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = doctor(&f, DUKCAPIL).await;
    expect(&out, &["FAIL key "]);
    assert_eq!(
        line(&out, "FAIL key "),
        format!(
            "FAIL key         {k}: is accessible to its group or others (mode 644): run `chmod 600 {k}`",
            k = display(&key)
        )
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Another member's certificate in place of this one's.
    let cert = l.gateway_cert(&member);
    let own = std::fs::read(&cert).unwrap();
    std::fs::copy(l.gateway_cert(&id(BP2MI)), &cert).unwrap();
    let out = doctor(&f, DUKCAPIL).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        line(&out, "FAIL certificate ").starts_with(&format!(
            "FAIL certificate {}: names ID:GOV:BP2MI, not ID:GOV:DUKCAPIL: put ID:GOV:DUKCAPIL's gateway certificate here",
            display(&cert)
        )),
        "{:?}",
        lines(&out)
    );
    std::fs::write(&cert, &own).unwrap();

    // An expired certificate, then a current one from a CA the federation does not know.
    std::fs::write(&cert, foreign_certificate(DUKCAPIL, (2021, 1, 1))).unwrap();
    let out = doctor(&f, DUKCAPIL).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        line(&out, "FAIL certificate "),
        format!(
            "FAIL certificate {}: expired at 2021-01-01T00:00:00Z: renew it (`simpul pki renew \
             --member ID:GOV:DUKCAPIL`, or a new request to the authority, OPERATIONS.md §7.7), \
             then SIGHUP the gateway",
            display(&cert)
        )
    );
    std::fs::write(&cert, foreign_certificate(DUKCAPIL, (2099, 1, 1))).unwrap();
    let out = doctor(&f, DUKCAPIL).await;
    assert_eq!(out.status.code(), Some(1));
    let failed = line(&out, "FAIL certificate ");
    assert!(
        failed.starts_with(&format!(
            "FAIL certificate {}: refused by the manifest's CAs and CRLs (invalid peer certificate: UnknownIssuer): every peer refuses it in the handshake",
            display(&cert)
        )),
        "{failed}"
    );
    std::fs::write(&cert, &own).unwrap();

    // A manifest whose signature does not verify.
    let manifest = f.config.federation.manifest.clone();
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut forged = text.trim().to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    std::fs::write(&manifest, &forged).unwrap();
    let out = doctor(&f, DUKCAPIL).await;
    assert_eq!(out.status.code(), Some(1));
    let failed = line(&out, "FAIL manifest ");
    assert!(
        failed.starts_with(&format!(
            "FAIL manifest    {}: does not verify against the pinned authority key ID:GOV:SIMPUL#",
            display(&manifest)
        )) && failed.ends_with("get the authority's current manifest"),
        "{failed}"
    );

    // A manifest that has expired (signed by the authority, dated in the past).
    let mut doc = f.manifest.doc().clone();
    doc.issued_at -= 40 * 86_400;
    doc.expires_at = contracts::unix_now() - 3600;
    std::fs::write(
        &manifest,
        contracts::Manifest::sign(&doc, &f.authority()).unwrap(),
    )
    .unwrap();
    let out = doctor(&f, DUKCAPIL).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        line(&out, "FAIL manifest "),
        format!(
            "FAIL manifest    {}: serial {} expired at {}: every exchange is refused \
             (manifest-expired) and the gateway does not start until the authority's next \
             manifest is in place",
            display(&manifest),
            doc.serial,
            contracts::utc(doc.expires_at)
        )
    );
    std::fs::write(&manifest, &text).unwrap();

    // The binding's database gone.
    let db = f.config.resolve(Path::new("data/dukcapil.db"));
    let aside = db.with_extension("aside");
    std::fs::rename(&db, &aside).unwrap();
    let out = doctor(&f, DUKCAPIL).await;
    expect(&out, &["FAIL binding "]);
    assert_eq!(
        line(&out, "FAIL binding "),
        format!(
            "FAIL binding     citizenship.status/1 (members.provides): backend unavailable: {} \
             does not exist: every exchange for citizenship.status/1 fails until it is fixed \
             (the binding is in {})",
            display(&db),
            display(&f.config_file)
        )
    );
    std::fs::rename(&aside, &db).unwrap();

    // A peer whose gateway is down.
    f.stop(BP2MI).await;
    let out = doctor(&f, DUKCAPIL).await;
    expect(&out, &["FAIL peer        ID:GOV:BP2MI "]);
    let failed = line(&out, "FAIL peer ");
    assert!(
        failed.starts_with(&format!(
            "FAIL peer        ID:GOV:BP2MI {url}: unreachable (cannot reach {url}/v1/manifest: ",
            url = f.url(BP2MI)
        )) && failed.ends_with(
            "every exchange with ID:GOV:BP2MI fails until it answers; is its gateway running, its address right, the way open?"
        ),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_a_statement_with_a_missing_column_and_a_tampered_audit_store() {
    let f = Federation::start().await;
    // The statement names a column the table does not have.
    let text = std::fs::read_to_string(&f.config_file).unwrap();
    let broken = text.replacen(
        "SELECT citizenship, deceased FROM residents WHERE nik = :nik",
        "SELECT citizenship, deceased FROM residents WHERE no_such_column = :nik",
        1,
    );
    assert_ne!(broken, text);
    std::fs::write(&f.config_file, &broken).unwrap();
    let out = doctor(&f, DUKCAPIL).await;
    expect(&out, &["FAIL binding "]);
    let failed = line(&out, "FAIL binding ");
    assert!(
        failed.starts_with(
            "FAIL binding     citizenship.status/1 (members.provides): backend error: "
        ) && failed.contains("no such column: no_such_column"),
        "{failed}"
    );
    std::fs::write(&f.config_file, &text).unwrap();

    // One of Kemlu's own lists, checked like a provided contract's binding.
    let out = doctor(&f, KEMLU).await;
    assert!(
        line(&out, "ok   binding     selfreports (members.lists): ").contains("SQLite file"),
        "{out:?}"
    );
    let broken = text.replacen(
        "SELECT nik AS identifier, country AS label",
        "SELECT nik AS identifier, no_such_column AS label",
        1,
    );
    assert_ne!(broken, text);
    std::fs::write(&f.config_file, &broken).unwrap();
    let out = doctor(&f, KEMLU).await;
    let failed = line(&out, "FAIL binding ");
    assert!(
        failed.starts_with("FAIL binding     selfreports (members.lists): backend error: ")
            && failed.contains("no such column: no_such_column")
            && failed
                .contains("every overlap run with the list `selfreports` fails until it is fixed"),
        "{failed}"
    );
    std::fs::write(&f.config_file, &text).unwrap();

    // Kemlu's audit store rewritten behind its gateway's back (stopped, as an insider would).
    let mut f = f;
    for _ in 0..3 {
        f.ask_citizenship().await;
    }
    f.stop(KEMLU).await;
    let store = f.data_dir().join("audit-ID_GOV_KEMLU.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", store.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE simpul_audit_nodes SET hash = zeroblob(32)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    // Its journal too, whose frames would otherwise put the tree back (as the audit store's
    // own tests do).
    let journal = f
        .data_dir()
        .join("audit-ID_GOV_KEMLU.db.journal/ID_GOV_KEMLU");
    for entry in std::fs::read_dir(&journal).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "seg") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let out = doctor(&f, KEMLU).await;
    let failed = line(&out, "FAIL audit ");
    eprintln!("{}", lines(&out).join("\n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        failed.starts_with(&format!(
            "FAIL audit       {}: audit store {}",
            display(&store),
            display(&store)
        )),
        "{failed}\n{}",
        lines(&out).join("\n")
    );
}
