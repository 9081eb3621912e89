//! Direct export: conversations exported once complete, half-written ones waited for, imported
//! ones ignored, nothing skipped or exported twice across restarts.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Art, Env, text};

/// Runs `direct export --once` and returns its JSON summary, checking it exited 0.
fn direct_once(env: &Env) -> serde_json::Value {
    let (code, s) = env.json(&["direct", "export", "--once"]);
    assert_eq!(code, 0, "{s}");
    s
}

/// Starts `direct export` looking every 100 ms, its output captured.
fn start(env: &Env) -> std::process::Child {
    env.command(&["direct", "export", "--interval", "100ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends SIGTERM to a running `direct` and returns what it printed once it has stopped.
fn terminate(mut child: std::process::Child) -> std::process::Output {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "direct did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn audit_count(env: &Env) -> usize {
    let (_, events) = env.json(&["audit", "list", "--kind", "conversation_exported"]);
    events.as_array().unwrap().len()
}

#[test]
fn complete_conversations_are_exported_once_and_half_written_ones_wait() {
    let env = Env::new("[policies.export.filter]\nusers = [\"alice\"]");
    for i in 0..3 {
        env.conversation("acme", 3, &format!("c{i}"), &[("a.wav", b"complete")]);
    }
    // Listed artifact missing; another shorter than recorded; a conversation.json cut short.
    let missing = env.conversation("acme", 3, "missing", &[("a.wav", b"soon")]);
    std::fs::remove_file(missing.join("a.wav")).unwrap();
    let short = env.conversation("acme", 3, "short", &[("a.wav", b"0123456789")]);
    std::fs::write(short.join("a.wav"), b"01234").unwrap();
    let cut = env.conversation("acme", 3, "cut", &[("a.wav", b"x")]);
    let record = std::fs::read(cut.join("conversation.json")).unwrap();
    std::fs::write(cut.join("conversation.json"), &record[..record.len() / 2]).unwrap();
    // Imported records are not this server's to export.
    let imported = env.conversation("acme", 3, "imported", &[("a.wav", b"old")]);
    let text_of = std::fs::read_to_string(imported.join("conversation.json")).unwrap();
    std::fs::write(
        imported.join("conversation.json"),
        text_of.replace(
            "\"artifacts\"",
            "\"flags\": {\"imported\": true},\n  \"artifacts\"",
        ),
    )
    .unwrap();

    let s = direct_once(&env);
    assert_eq!(
        (s["exported"].as_u64(), s["waiting"].as_u64()),
        (Some(3), Some(3)),
        "{s}"
    );
    assert_eq!(audit_count(&env), 3);
    let exported = env.archive_files();
    assert!(
        exported.iter().all(|f| !f.contains("missing")
            && !f.contains("short")
            && !f.contains("cut")
            && !f.contains("imported")),
        "{exported:?}"
    );

    // They complete; a restarted direct export exports just those.
    std::fs::write(missing.join("a.wav"), b"soon").unwrap();
    std::fs::write(short.join("a.wav"), b"0123456789").unwrap();
    std::fs::write(cut.join("conversation.json"), &record).unwrap();
    let mtimes = || -> Vec<_> {
        exported
            .iter()
            .map(|f| {
                std::fs::metadata(env.archive().join(f))
                    .unwrap()
                    .modified()
                    .unwrap()
            })
            .collect()
    };
    let before = mtimes();
    let s = direct_once(&env);
    assert_eq!(
        (s["exported"].as_u64(), s["waiting"].as_u64()),
        (Some(3), Some(0)),
        "{s}"
    );
    assert_eq!(audit_count(&env), 6);
    let after = mtimes();
    assert_eq!(before, after, "objects exported before were written again");
    let (_, s) = env.json(&["direct", "export", "--once"]);
    assert_eq!(s["runs"], 0, "{s}");
}

#[test]
fn filters_direct_export_cannot_apply_are_refused() {
    let env = Env::new("[policies.export.filter]\nolder_than_days = 3");
    let out = env.run(&["direct", "export", "--once"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(
            "policies.export.filter.older_than_days: direct export cannot apply this criterion"
        ),
        "{}",
        text(&out)
    );
}

#[test]
fn a_running_direct_export_picks_up_new_conversations_and_reports_latency() {
    let env = Env::new("");
    let child = start(&env);
    std::thread::sleep(Duration::from_millis(500));
    env.record(
        "acme",
        4,
        "late",
        "voice",
        &[Art::plain("a.wav", "audio_recording", b"late")],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env.archive().join("acme/2026/01/04/late/a.wav").exists() {
        assert!(Instant::now() < deadline, "not exported");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = terminate(child);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("1 exported"), "{printed}");
    assert!(
        printed.contains("completion to export over 1 conversation(s): median"),
        "{printed}"
    );
}

#[test]
fn a_killed_direct_export_loses_nothing_and_repeats_nothing() {
    let env = Env::new("concurrency = 1");
    for i in 0..6 {
        env.conversation(
            "acme",
            5,
            &format!("k{i}"),
            &[("a.wav", format!("kill {i}").as_bytes())],
        );
    }
    let mut child = env
        .command(&["direct", "export", "--interval", "100ms"])
        .env("FAILPOINTS", "export-item=sleep(400)")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1300));
    child.kill().unwrap();
    child.wait().unwrap();
    let before = audit_count(&env);
    assert!(before < 6, "all exported before the kill: {before}");
    let s = direct_once(&env);
    assert_eq!(audit_count(&env), 6, "{s}");
    let files = env.archive_files();
    for i in 0..6 {
        assert!(
            files.contains(&format!("acme/2026/01/05/k{i}/a.wav")),
            "{files:?}"
        );
    }
}

#[test]
fn what_a_full_target_left_is_exported_once_there_is_room_without_new_arrivals() {
    let env = Env::new("");
    let n = 30;
    let payload = crate::common::payload;
    for i in 0..n {
        env.conversation("acme", 2, &format!("c{i:02}"), &[("a.wav", &payload(i))]);
    }
    // 15 conversations (17 pages each) fill 255 of its 258 pages; the manifest of their 30
    // objects, with its audit anchor, takes 2 of the 3 left, so the run ends `failed`.
    let disk = crate::common::SmallDisk::mount(&env.archive(), "1032k");
    let child = start(&env);
    let deadline = Instant::now() + Duration::from_secs(20);
    let stopped = || {
        let (_, runs) = env.json(&["jobs", "list"]);
        runs.as_array()
            .is_some_and(|r| r.iter().any(|r| r["status"] == "failed"))
    };
    while !stopped() {
        assert!(Instant::now() < deadline, "the first run never stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    disk.resize("16m");
    let deadline = Instant::now() + Duration::from_secs(30);
    while audit_count(&env) < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} exported",
            audit_count(&env)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = terminate(child);
    let printed = text(&out);
    assert!(
        printed.contains("No space left on device")
            && printed.contains("stopped because the target is out of space"),
        "{printed}"
    );
    // Latency counts only what was exported as it completed: the first run's conversations,
    // not those it never reached (the second run found nothing new).
    let first = printed
        .split("direct: run 1: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap();
    assert!(
        printed.contains(&format!("over {first} conversation(s)")),
        "{printed}"
    );
    assert_eq!(audit_count(&env), n);
    for i in 0..n {
        let key = format!("acme/2026/01/02/c{i:02}/a.wav");
        assert_eq!(
            std::fs::read(env.archive().join(&key)).unwrap(),
            payload(i),
            "{key}"
        );
    }
}
