//! `custodian completions` and `custodian man` in a directory with no config: they describe
//! the command line and read nothing else.

use std::process::{Command, Output};

/// Runs custodian in an empty directory, where the default `custodian.toml` is missing.
fn without_config(args: &[&str]) -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("CUSTODIAN_CONFIG")
        .output()
        .unwrap();
    assert!(!dir.path().join("custodian.toml").exists());
    assert_eq!(
        out.status.code(),
        Some(0),
        "custodian {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, out)
}

#[test]
fn completions_print_a_script_without_a_config() {
    let (_dir, out) = without_config(&["completions", "bash"]);
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("custodian"), "{script}");
    assert!(script.contains("lifecycle"), "{script}");
    let (_dir, out) = without_config(&["completions", "fish"]);
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("complete -c custodian"), "{script}");
    assert!(script.contains("schedules"), "{script}");
}

#[test]
fn man_prints_a_roff_page_without_a_config() {
    let (_dir, out) = without_config(&["man"]);
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".TH") || page.starts_with(".ie"),
        "not a roff header: {}",
        page.lines().next().unwrap_or_default()
    );
    assert!(page.contains("custodian"), "{page}");
}

#[test]
fn man_dir_writes_a_page_per_command() {
    let (dir, _out) = without_config(&["man", "--dir", "pages"]);
    for page in [
        "custodian.1",
        "custodian-run.1",
        "custodian-lifecycle-create.1",
    ] {
        let path = dir.path().join("pages").join(page);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains("custodian"), "{page}: {text}");
    }
}
