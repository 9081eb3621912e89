//! A filesystem target someone else can write into, and privacy of what custodian writes: a
//! link planted in the target never sends a write outside it, any legal file name exports, and
//! exported files, manifests, run logs and `decrypt` / `transcode` output are readable by the
//! owner alone (or the archive group, with `file_mode`) whatever the umask.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::{Env, text};

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Runs custodian in the environment's directory under `umask`: a lenient one (000) must not
/// widen a mode, a strict one (077) must not narrow a configured one.
fn with_umask(env: &Env, umask: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_custodian"))
        .arg("--config")
        .arg(env.config())
        .args(args)
        .current_dir(env.path())
        .env("TZ", "UTC")
        .env_remove("FAILPOINTS")
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// Every entry under `dir` (directories included), relative.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.symlink_metadata().unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

fn outside(env: &Env) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(env.path().join("outside"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// An environment with one conversation `acme/c1` holding `call.wav`, and a directory
/// `outside` (next to the target) holding `secret`.
fn with_outside() -> Env {
    let env = Env::new("");
    env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-c1")]);
    std::fs::create_dir(env.path().join("outside")).unwrap();
    std::fs::write(env.path().join("outside/secret"), b"untouched").unwrap();
    std::fs::create_dir(env.archive()).unwrap();
    env
}

#[test]
fn a_link_planted_in_place_of_a_target_directory_never_redirects_an_export() {
    let env = with_outside();
    std::os::unix::fs::symlink(env.path().join("outside"), env.archive().join("acme")).unwrap();
    let out = env.run(&["run", "export"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("target `archive`: acme/2026/01/01/c1/"), "{t}");
    assert!(t.contains("archive/acme is a symbolic link"), "{t}");
    assert!(t.contains("0 exported, 1 failed"), "{t}");
    assert_eq!(outside(&env), vec!["secret"]);
}

#[test]
fn a_link_planted_at_an_objects_final_name_fails_the_item_and_its_target_is_untouched() {
    let env = with_outside();
    let dir = env.archive().join("acme/2026/01/01/c1");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(env.path().join("outside/secret"), dir.join("call.wav")).unwrap();
    let out = env.run(&["run", "export"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("acme/2026/01/01/c1/call.wav is a symbolic link"),
        "{t}"
    );
    assert_eq!(
        std::fs::read(env.path().join("outside/secret")).unwrap(),
        b"untouched"
    );
    assert_eq!(outside(&env), vec!["secret"]);
    assert!(
        dir.join("call.wav")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn an_artifact_with_a_255_byte_name_exports() {
    let env = Env::new("");
    let name = format!("{}.wav", "n".repeat(251));
    assert_eq!(name.len(), 255);
    env.conversation("acme", 1, "c1", &[(name.as_str(), b"RIFF-long")]);
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["counters"]["exported"], 1, "{summary}");
    assert_eq!(
        std::fs::read(env.archive().join("acme/2026/01/01/c1").join(&name)).unwrap(),
        b"RIFF-long"
    );
    assert!(
        !env.archive_files()
            .iter()
            .any(|f| f.contains(".custodian-tmp-")),
        "{:?}",
        env.archive_files()
    );
}

#[test]
fn exported_files_manifest_and_run_log_are_private_whatever_the_umask() {
    let env = Env::new("log_dir = \"logs\"");
    env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-c1")]);
    let out = with_umask(&env, "000", &["--json", "run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary = json_of(&out);
    let manifest = env.archive().join(summary["manifest"].as_str().unwrap());
    assert_eq!(mode_of(&manifest), 0o600);
    let entries = walk(&env.archive());
    assert!(entries.len() > 5, "{entries:?}");
    for p in &entries {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode_of(p), want, "{}", p.display());
    }
    assert_eq!(mode_of(&env.archive()), 0o700);
    let run = summary["run"].as_i64().unwrap();
    assert_eq!(
        mode_of(&env.path().join(format!("logs/export-{run}.log"))),
        0o600
    );
    assert_eq!(mode_of(&env.path().join("logs")), 0o700);
}

#[test]
fn file_mode_0640_lets_the_archive_group_read_whatever_the_umask() {
    let env = Env::new("");
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&config.replace(
        "path = \"archive\"",
        "path = \"archive\"\nfile_mode = \"0640\"",
    ));
    env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-c1")]);
    let out = with_umask(&env, "077", &["--json", "run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let manifest = env
        .archive()
        .join(json_of(&out)["manifest"].as_str().unwrap());
    assert_eq!(mode_of(&manifest), 0o640);
    assert_eq!(mode_of(&env.archive()), 0o750);
    for p in walk(&env.archive()) {
        let want = if p.is_dir() { 0o750 } else { 0o640 };
        assert_eq!(mode_of(&p), want, "{}", p.display());
    }
}

#[test]
fn a_file_mode_readable_by_others_is_a_config_error_naming_file_line_and_key() {
    let env = Env::new("");
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&config.replace(
        "path = \"archive\"",
        "path = \"archive\"\nfile_mode = \"0644\"",
    ));
    let out = env.run(&["run", "export"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("custodian.toml:10: targets.archive.file_mode: `0644` lets others read"),
        "{t}"
    );
}

#[test]
fn decrypt_and_transcode_output_is_private_whatever_the_umask() {
    let env = Env::new("");
    let ks = env.keystore(&["k1"]);
    let plain: Vec<u8> = (0..8000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(env.path().join("plain.bin"), &plain).unwrap();
    let ks = ks.to_str().unwrap();
    let sealed = with_umask(
        &env,
        "000",
        &[
            "encrypt",
            "--keystore",
            ks,
            "--key-id",
            "k1",
            "plain.bin",
            "sealed.enc",
        ],
    );
    assert_eq!(sealed.status.code(), Some(0), "{}", text(&sealed));
    assert_eq!(mode_of(&env.path().join("sealed.enc")), 0o600);
    let opened = with_umask(
        &env,
        "000",
        &["decrypt", "--keystore", ks, "sealed.enc", "out.bin"],
    );
    assert_eq!(opened.status.code(), Some(0), "{}", text(&opened));
    assert_eq!(std::fs::read(env.path().join("out.bin")).unwrap(), plain);
    assert_eq!(mode_of(&env.path().join("out.bin")), 0o600);

    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(env.path().join("in.wav"), spec).unwrap();
    for n in 0..8000i32 {
        w.write_sample(((n % 200) * 100 - 10_000) as i16).unwrap();
    }
    w.finalize().unwrap();
    let made = with_umask(
        &env,
        "000",
        &["transcode", "--format", "wav-ulaw", "in.wav", "out.wav"],
    );
    assert_eq!(made.status.code(), Some(0), "{}", text(&made));
    assert_eq!(mode_of(&env.path().join("out.wav")), 0o600);
}
