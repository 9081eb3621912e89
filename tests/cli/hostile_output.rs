//! What the command line prints when its reader goes away or its records carry control
//! characters: a closed pipe never changes a run's outcome, and nothing from a record reaches
//! the terminal raw.

use std::process::{Command, Output, Stdio};

use crate::common::{Art, Env, text};

/// Runs `cmd` with stdout a pipe whose reading end is already closed, so its first write
/// fails with EPIPE, as `custodian … | head` does once head has its lines.
fn into_closed_pipe(mut cmd: Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer).stderr(Stdio::piped()).output().unwrap()
}

fn exported_one(env: &Env) {
    env.conversation("acme", 2, "c1", &[("call.wav", b"RIFF-audio")]);
}

#[test]
fn closed_stdout_keeps_a_succeeded_run_and_its_manifest() {
    let env = Env::new("");
    exported_one(&env);
    let out = into_closed_pipe(env.command(&["run", "export"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stderr.is_empty(), "{}", text(&out));
    let (_, run) = env.json(&["jobs", "show", "1"]);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(run["manifest_key"].is_string(), "{run}");
    assert_eq!(env.archive_files().len(), 2, "{:?}", env.archive_files());
}

#[test]
fn closed_stdout_keeps_a_succeeded_json_run() {
    let env = Env::new("");
    exported_one(&env);
    let out = into_closed_pipe(env.command(&["--json", "run", "export"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stderr.is_empty(), "{}", text(&out));
    let (_, run) = env.json(&["jobs", "show", "1"]);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(run["manifest_key"].is_string(), "{run}");
}

#[test]
fn closed_stdout_ends_jobs_show_and_audit_list_quietly() {
    let env = Env::new("");
    exported_one(&env);
    assert!(env.run(&["run", "export"]).status.success());
    for args in [
        &["jobs", "show", "1"][..],
        &["jobs", "list"],
        &["audit", "list"],
        &["plan", "export"],
    ] {
        let out = into_closed_pipe(env.command(args));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        assert!(out.stderr.is_empty(), "{args:?}: {}", text(&out));
    }
}

/// Nothing raw from a record: no ESC, CR or NUL, no bidirectional override.
fn assert_escaped(what: &str, out: &Output) {
    let all = text(out);
    for raw in ['\u{1b}', '\r', '\0', '\u{202e}'] {
        assert!(!all.contains(raw), "{what} printed {raw:?} raw: {all:?}");
    }
}

#[test]
fn control_characters_from_records_are_escaped_in_index_failures() {
    let env = Env::new("");
    // Refused at indexing (ids may not hold control characters); the failure names the
    // directory and the id, which must arrive escaped.
    let dir = env.conversation(
        "acme",
        2,
        "evil\u{1b}]0;owned\u{7}\r",
        &[("call.wav", b"RIFF")],
    );
    let path = dir.join("conversation.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    record["id"] = "evil\u{1b}]0;owned\u{7}\r\0".into();
    std::fs::write(&path, record.to_string()).unwrap();
    let out = env.run(&["index"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_escaped("index", &out);
    assert!(
        text(&out).contains("evil\\x1b]0;owned\\x07\\x0d\\x00"),
        "{}",
        text(&out)
    );
    let out = env.run(&["run", "export"]);
    assert_escaped("run", &out);
    assert!(text(&out).contains("evil\\x1b]0;owned"), "{}", text(&out));
    let out = env.run(&["jobs", "show", "1"]);
    assert_escaped("jobs show", &out);
}

#[test]
fn bidi_overrides_in_file_names_are_escaped_in_plan_and_audit_list() {
    let env = Env::new("");
    let file = "call\u{202e}vaw.exe";
    env.record(
        "acme",
        2,
        "c1",
        "voice",
        &[Art::plain(file, "audio_recording", b"RIFF-audio")],
    );
    let out = env.run(&["plan", "export"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_escaped("plan", &out);
    assert!(
        text(&out).contains("call\\u{202e}vaw.exe"),
        "{}",
        text(&out)
    );
    assert!(env.run(&["run", "export"]).status.success());
    let out = env.run(&["audit", "list"]);
    assert_escaped("audit list", &out);
    assert!(
        text(&out).contains("call\\u{202e}vaw.exe"),
        "{}",
        text(&out)
    );
    // JSON keeps the name, written as a JSON escape.
    let out = env.run(&["--json", "audit", "list"]);
    assert_escaped("audit list --json", &out);
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(events.to_string().contains(file), "{events}");
}
