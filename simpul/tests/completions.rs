//! `simpul completions` and `simpul man`: the scripts and pages generated from the CLI
//! definition name every command, and bash parses its script.

use std::path::Path;
use std::process::{Command, Output};

/// Every top-level command of `simpul`.
const COMMANDS: [&str; 11] = [
    "up",
    "serve",
    "pki",
    "manifest",
    "cache",
    "query",
    "cleanse",
    "openapi",
    "audit",
    "completions",
    "man",
];

fn simpul(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_simpul"))
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "simpul {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn completion_script(shell: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = simpul(dir.path(), &["completions", shell]);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_shell_gets_a_script_naming_every_command() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = completion_script(shell);
        assert!(!script.trim().is_empty(), "{shell}: empty script");
        for command in COMMANDS {
            assert!(script.contains(command), "{shell}: no {command}");
        }
    }
}

#[test]
fn bash_parses_the_bash_script_and_it_completes_subcommands() {
    let script = completion_script("bash");
    assert!(script.contains("complete -F _simpul"), "{script}");
    for nested in [
        "init", "renew", "revoke", "sign", "verify", "export", "purge",
    ] {
        assert!(script.contains(nested), "no {nested}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("simpul.bash");
    std::fs::write(&file, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn an_unknown_shell_is_refused_with_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_simpul"))
        .current_dir(dir.path())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bash") && err.contains("zsh"), "{err}");
}

#[test]
fn man_prints_the_main_page_listing_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let page = String::from_utf8(simpul(dir.path(), &["man"]).stdout).unwrap();
    assert!(page.contains(".TH simpul 1"), "{page}");
    for command in COMMANDS {
        assert!(
            page.contains(&format!("simpul\\-{command}(1)")),
            "no {command}: {page}"
        );
    }
    // Nothing is written where it ran without --out.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn man_out_writes_one_page_per_command_and_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man/man1");
    let out = simpul(dir.path(), &["man", "--out", out_dir.to_str().unwrap()]);
    let listed = String::from_utf8(out.stdout).unwrap();
    let mut written: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    for page in [
        "simpul.1",
        "simpul-serve.1",
        "simpul-pki-init.1",
        "simpul-audit-verify.1",
    ] {
        assert!(
            written.iter().any(|w| w == page),
            "no {page} in {written:?}"
        );
    }
    for command in COMMANDS {
        assert!(
            written.contains(&format!("simpul-{command}.1")),
            "no page for {command}: {written:?}"
        );
    }
    assert!(!written.iter().any(|w| w.contains("help")), "{written:?}");
    // Each file written is printed, and none is empty.
    assert_eq!(listed.lines().count(), written.len(), "{listed}");
    for w in &written {
        let text = std::fs::read_to_string(out_dir.join(w)).unwrap();
        assert!(text.contains(".TH "), "{w}: {text}");
    }
    let serve = std::fs::read_to_string(out_dir.join("simpul-serve.1")).unwrap();
    assert!(serve.contains("member"), "{serve}");
}
