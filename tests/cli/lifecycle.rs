//! Lifecycle (retention) policies end to end: management with permissions and
//! acknowledgments, the sweep with its audit trail, limits, and what bad input gets.

use crate::common::{Env, text};

pub const ALL: &str = r#"["ARTIFACTS_LIFECYCLE_POLICY_READ", "ARTIFACTS_LIFECYCLE_POLICY_CREATE", "ARTIFACTS_LIFECYCLE_POLICY_DELETE", "ARTIFACTS_LIFECYCLE_POLICY_RUN", "ARTIFACTS_LIFECYCLE_POLICY_FORCE"]"#;
const ACKS: [&str; 4] = [
    "--acknowledge",
    "storage-overage",
    "--acknowledge",
    "irreversible-delete",
];

/// An installation whose roles file grants `grants` to every user (`*`), with `lifecycle`
/// settings added to the config.
pub fn env_with(grants: &str, lifecycle: &str) -> Env {
    let env = Env::new("");
    std::fs::write(
        env.path().join("roles.toml"),
        format!("[users]\n\"*\" = {grants}\n"),
    )
    .unwrap();
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!(
        "{config}\n[lifecycle]\nroles = \"roles.toml\"\n{lifecycle}\n"
    ));
    env
}

pub fn ok(env: &Env, args: &[&str]) -> String {
    let out = env.run(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    text(&out)
}

pub fn fails(env: &Env, args: &[&str]) -> String {
    let out = env.run(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    text(&out)
}

/// A 30-day delete policy for customer-leg audio, enabled.
pub fn enabled_policy(env: &Env) {
    ok(
        env,
        &[
            "lifecycle",
            "create",
            "voice-30d",
            "--artifact-type",
            "audio_recording",
            "--audio-type",
            "conference_customer",
        ],
    );
    ok(
        env,
        &[
            "lifecycle",
            "version",
            "voice-30d",
            "v1",
            "--delete-after-days",
            "30",
        ],
    );
    let mut enable = vec!["lifecycle", "enable", "voice-30d"];
    enable.extend(ACKS);
    ok(env, &enable);
}

pub fn events(env: &Env, kind: &str) -> Vec<serde_json::Value> {
    let (_, trail) = env.json(&["audit", "list", "--kind", kind, "--limit", "100000"]);
    let trail = trail.as_array().unwrap().clone();
    assert!(trail.iter().all(|e| e["kind"] == kind));
    trail
}

#[test]
fn a_policy_deletes_what_is_due_with_one_audit_event_each() {
    let env = env_with(ALL, "max_delete_share = 1.0");
    env.conversation(
        "acme",
        1,
        "c1",
        &[("a.wav", b"RIFF-1"), ("b.wav", b"RIFF-2")],
    );
    env.conversation("acme", 2, "c2", &[("a.wav", b"RIFF-3")]);
    let held = env.conversation("acme", 3, "held", &[("a.wav", b"RIFF-held")]);
    let record = held.join("conversation.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    json["flags"] = serde_json::json!({"legal_hold": true});
    std::fs::write(&record, serde_json::to_vec(&json).unwrap()).unwrap();
    enabled_policy(&env);

    let (code, plan) = env.json(&["plan", "lifecycle"]);
    assert_eq!(code, 0);
    assert_eq!(plan[0]["policy"], "voice-30d");
    assert_eq!(plan[0]["artifacts"], 3, "{plan}");
    assert_eq!(plan[0]["bytes"], 18);

    let (code, report) = env.json(&["run", "lifecycle"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["deleted"], 3);
    assert_eq!(report["status"], "succeeded", "{report}");
    assert!(
        !env.root()
            .join(Env::rel_dir("acme", 1, "c1"))
            .join("a.wav")
            .exists()
    );
    assert!(held.join("a.wav").exists(), "legal hold is never deleted");
    let deleted = events(&env, "artifact_deleted");
    assert_eq!(deleted.len(), 3);
    assert!(deleted.iter().all(|e| e["policy"] == "voice-30d"
        && e["run"] == report["run"]
        && e["details"]["version"] == "v1"
        && e["details"]["file_was_missing"] == false));
    // The sweep is a job run of its own, in the job history with what it deleted.
    let (_, runs) = env.json(&["jobs", "list", "--policy", "lifecycle"]);
    assert_eq!(runs[0]["id"], report["run"], "{runs}");
    assert_eq!(runs[0]["target"], "repository");
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["counters"]["deleted"], 3);
    assert_eq!(runs[0]["counters"]["selected"], 3);
    assert_eq!(runs[0]["counters"]["bytes"], 18);
    let acks = events(&env, "lifecycle_acknowledged");
    assert_eq!(acks.len(), 2);
    assert!(
        acks.iter()
            .any(|e| e["details"]["acknowledgment"] == "irreversible-delete")
    );
    ok(&env, &["audit", "verify"]);

    // Nothing is due any more; a rerun deletes nothing and an export skips deleted artifacts.
    let (_, again) = env.json(&["run", "lifecycle"]);
    assert_eq!(again["deleted"], 0);
    assert_eq!(events(&env, "artifact_deleted").len(), 3);
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(
        env.archive_files()
            .iter()
            .filter(|f| f.ends_with("a.wav"))
            .count(),
        1
    );
}

#[test]
fn acknowledgments_versions_and_a_second_enabled_policy_are_checked() {
    let env = env_with(ALL, "");
    let create = |name: &str| {
        ok(
            &env,
            &[
                "lifecycle",
                "create",
                name,
                "--artifact-type",
                "audio_recording",
                "--audio-type",
                "conference_customer",
            ],
        )
    };
    create("first");
    let msg = fails(
        &env,
        &[
            "lifecycle",
            "enable",
            "first",
            "--acknowledge",
            "storage-overage",
        ],
    );
    assert!(msg.contains("no version yet"), "{msg}");
    for days in ["0", "10000"] {
        let msg = fails(
            &env,
            &[
                "lifecycle",
                "version",
                "first",
                "v1",
                "--delete-after-days",
                days,
            ],
        );
        assert!(msg.contains("1..=9999"), "{msg}");
    }
    ok(
        &env,
        &[
            "lifecycle",
            "version",
            "first",
            "v1",
            "--delete-after-days",
            "365",
        ],
    );
    let msg = fails(
        &env,
        &["lifecycle", "version", "first", "v1", "--keep-forever"],
    );
    assert!(msg.contains("already has a version named `v1`"), "{msg}");
    let msg = fails(
        &env,
        &[
            "lifecycle",
            "enable",
            "first",
            "--acknowledge",
            "storage-overage",
        ],
    );
    assert!(msg.contains("--acknowledge irreversible-delete"), "{msg}");
    assert!(msg.contains("cannot be retrieved"), "{msg}");
    let mut enable = vec!["lifecycle", "enable", "first"];
    enable.extend(ACKS);
    ok(&env, &enable);

    create("second");
    ok(
        &env,
        &["lifecycle", "version", "second", "keep", "--keep-forever"],
    );
    let msg = fails(
        &env,
        &[
            "lifecycle",
            "enable",
            "second",
            "--acknowledge",
            "storage-overage",
        ],
    );
    assert!(msg.contains("policy `first` is already enabled"), "{msg}");

    ok(
        &env,
        &["lifecycle", "version", "first", "v2", "--keep-forever"],
    );
    let msg = fails(&env, &["lifecycle", "activate", "first", "v2"]);
    assert!(msg.contains("--acknowledge storage-overage"), "{msg}");
    ok(
        &env,
        &[
            "lifecycle",
            "activate",
            "first",
            "v2",
            "--acknowledge",
            "storage-overage",
        ],
    );
    let (_, shown) = env.json(&["lifecycle", "show", "first"]);
    assert_eq!(shown["active_version"], "v2");
    assert_eq!(shown["enabled"], true);
    assert_eq!(shown["versions"].as_array().unwrap().len(), 2);
    let (_, list) = env.json(&["lifecycle", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let msg = fails(
        &env,
        &[
            "lifecycle",
            "create",
            "x",
            "--artifact-type",
            "audio_recording",
        ],
    );
    assert!(msg.contains("--audio-type"), "{msg}");
}

#[test]
fn a_user_without_permission_is_refused_naming_it() {
    let env = env_with(r#"["ARTIFACTS_LIFECYCLE_POLICY_READ"]"#, "");
    let msg = fails(
        &env,
        &["lifecycle", "create", "p", "--artifact-type", "transcript"],
    );
    assert!(
        msg.contains("lacks the permission ARTIFACTS_LIFECYCLE_POLICY_CREATE"),
        "{msg}"
    );
    ok(&env, &["lifecycle", "list"]);

    let env = Env::new("");
    let msg = fails(&env, &["lifecycle", "list"]);
    assert!(
        msg.contains("set `roles` in the [lifecycle] table"),
        "{msg}"
    );
}

#[test]
fn gone_files_are_recorded_and_unremovable_ones_retried() {
    let env = env_with(ALL, "max_delete_share = 1.0");
    let gone = env.conversation("acme", 1, "gone", &[("a.wav", b"RIFF-1")]);
    let stuck = env.conversation("acme", 2, "stuck", &[("a.wav", b"RIFF-2")]);
    ok(&env, &["index"]);
    std::fs::remove_file(gone.join("a.wav")).unwrap();
    // A non-empty directory where the file should be cannot be removed as a file.
    std::fs::remove_file(stuck.join("a.wav")).unwrap();
    std::fs::create_dir(stuck.join("a.wav")).unwrap();
    std::fs::write(stuck.join("a.wav/keep"), b"x").unwrap();
    enabled_policy(&env);

    let (code, report) = env.json(&["run", "lifecycle", "--no-index"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["deleted"], 1);
    assert_eq!(report["already_missing"], 1);
    assert_eq!(report["failed"], 1);
    assert!(
        report["failures"][0]
            .as_str()
            .unwrap()
            .contains("stuck/a.wav"),
        "{report}"
    );
    let deleted = events(&env, "artifact_deleted");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["conversation_id"], "gone");
    assert_eq!(deleted[0]["details"]["file_was_missing"], true);

    std::fs::remove_dir_all(stuck.join("a.wav")).unwrap();
    std::fs::write(stuck.join("a.wav"), b"RIFF-2").unwrap();
    let (code, report) = env.json(&["run", "lifecycle", "--no-index"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["deleted"], 1);
    assert!(!stuck.join("a.wav").exists());
    assert_eq!(events(&env, "artifact_deleted").len(), 2);
}

#[test]
fn more_due_than_the_limit_is_refused_unless_forced() {
    let env = env_with(ALL, "max_deletes_per_run = 1");
    env.conversation("acme", 1, "c1", &[("a.wav", b"RIFF-1")]);
    env.conversation("acme", 2, "c2", &[("a.wav", b"RIFF-2")]);
    enabled_policy(&env);
    let msg = fails(&env, &["run", "lifecycle"]);
    assert!(
        msg.contains("2 artifacts are due") && msg.contains("--force"),
        "{msg}"
    );
    assert!(events(&env, "artifact_deleted").is_empty());
    // The refusal is a failed run in the job history, which is what notifications report.
    let (_, runs) = env.json(&["jobs", "list", "--policy", "lifecycle"]);
    assert_eq!(runs[0]["status"], "failed", "{runs}");
    assert_eq!(runs[0]["counters"]["selected"], 2);
    assert!(
        runs[0]["error_summary"]
            .as_str()
            .unwrap()
            .contains("2 artifacts are due"),
        "{runs}"
    );
    let (code, report) = env.json(&["run", "lifecycle", "--force"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["deleted"], 2);
}

#[test]
fn bad_lifecycle_config_names_the_key() {
    for (setting, key) in [
        ("max_delete_share = 2.0", "lifecycle.max_delete_share"),
        ("schedule = \"daily at 25:00\"", "lifecycle.schedule"),
        ("time_limit = \"soon\"", "lifecycle.time_limit"),
        ("notify = { to = \"ops@example.com\" }", "lifecycle.notify"),
        ("retention = 7", "retention"),
    ] {
        let env = env_with(ALL, setting);
        let msg = fails(&env, &["lifecycle", "list"]);
        assert!(msg.contains(key), "{setting}: {msg}");
    }
}

#[test]
fn a_sweep_past_its_time_limit_is_timed_out_and_the_next_finishes() {
    let env = env_with(
        ALL,
        "max_delete_share = 1.0
time_limit = \"2s\"",
    );
    let n = 2500;
    for i in 0..n {
        env.conversation("acme", 1 + i % 28, &format!("c{i}"), &[("a.wav", b"RIFF")]);
    }
    ok(&env, &["index"]);
    enabled_policy(&env);
    // Each batch of 2,000 takes 3 s more, so the limit passes right after the first.
    let out = env
        .command(&["--json", "run", "lifecycle", "--no-index"])
        .env("FAILPOINTS", "lifecycle-batch=sleep(3000)")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first["status"], "timed_out", "{first}");
    assert_eq!(first["deleted"], 2000, "{first}");
    assert!(
        first["error_summary"]
            .as_str()
            .unwrap()
            .contains("execution time limit (2s); 2000 of 2500"),
        "{first}"
    );
    let (code, rest) = env.json(&["run", "lifecycle", "--no-index"]);
    assert_eq!(code, 0, "{rest}");
    assert_eq!(rest["deleted"], 500, "{rest}");
    let (_, runs) = env.json(&["jobs", "list", "--policy", "lifecycle"]);
    let statuses: Vec<_> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, ["succeeded", "timed_out"], "{runs}");
    let deleted = events(&env, "artifact_deleted");
    assert_eq!(deleted.len(), n as usize);
    assert_eq!(
        deleted.iter().filter(|e| e["run"] == first["run"]).count(),
        2000
    );
    ok(&env, &["audit", "verify"]);
}

#[test]
fn serve_runs_the_sweep_on_its_schedule_with_its_log() {
    let env = env_with(
        ALL,
        "schedule = \"cron * * * * *\"\ntimezone = \"UTC\"\nlog_dir = \"logs\"\nmax_delete_share = 1.0",
    );
    env.conversation("acme", 1, "c1", &[("a.wav", b"RIFF-1")]);
    env.conversation("acme", 2, "c2", &[("a.wav", b"RIFF-2")]);
    enabled_policy(&env);
    let (_, rows) = env.json(&["schedules"]);
    let sweep = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["policy"] == "lifecycle");
    assert!(
        sweep
            .is_some_and(|r| r["schedule"].as_str().unwrap().contains("* * * * *")
                && r["next_due"].is_string()),
        "{rows}"
    );
    let (serve, log) = crate::jobs::serve_with(&env, "");
    let runs = crate::jobs::wait_for_runs(
        &env,
        &log,
        "lifecycle",
        1,
        std::time::Duration::from_secs(150),
    );
    let (code, logged) = crate::jobs::terminate(serve, &log);
    assert_eq!(code, Some(0), "{logged}");
    assert!(logged.contains("1 scheduled jobs"), "{logged}");
    assert_eq!(runs[0]["status"], "succeeded", "{runs}\n{logged}");
    assert_eq!(runs[0]["counters"]["deleted"], 2, "{runs}");
    let run_log = std::fs::read_to_string(runs[0]["log_path"].as_str().unwrap()).unwrap();
    assert!(run_log.contains("lifecycle sweep finished"), "{run_log}");
    assert!(
        !env.root()
            .join(Env::rel_dir("acme", 2, "c2"))
            .join("a.wav")
            .exists()
    );
    assert_eq!(events(&env, "artifact_deleted").len(), 2);
}

#[test]
fn a_sweep_killed_mid_run_is_completed_by_the_next_with_one_event_per_artifact() {
    let env = env_with(ALL, "max_delete_share = 1.0");
    let n = 8000;
    for i in 0..n {
        env.conversation("acme", 1 + i % 28, &format!("c{i}"), &[("a.wav", b"RIFF")]);
    }
    ok(&env, &["index"]);
    enabled_policy(&env);
    let files = || {
        (0..n)
            .filter(|i| {
                env.root()
                    .join(Env::rel_dir("acme", 1 + i % 28, &format!("c{i}")))
                    .join("a.wav")
                    .exists()
            })
            .count()
    };
    let mut child = env
        .command(&["run", "lifecycle", "--no-index"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as the first files are gone, while their events may not be committed.
    let probe = env.root().join(Env::rel_dir("acme", 1, "c0")).join("a.wav");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while probe.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let left = files();
    let (code, report) = env.json(&["run", "lifecycle", "--no-index"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(files(), 0);
    eprintln!(
        "killed with {left} files left; the rerun resumed {}",
        report["resumed"]
    );
    let deleted = events(&env, "artifact_deleted");
    let mut ids: Vec<_> = deleted
        .iter()
        .map(|e| e["conversation_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        n as usize,
        "every artifact has an event ({left} files were left)"
    );
    assert_eq!(deleted.len(), n as usize, "and only one");
    ok(&env, &["audit", "verify"]);
}

#[test]
fn a_refused_sweep_and_a_finished_one_are_notified_by_email() {
    let smtpd = crate::jobs::Smtpd::start();
    let env = env_with(
        ALL,
        "max_deletes_per_run = 1\nnotify = { to = \"compliance@example.com\", on_completion = \"every_time\" }",
    );
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{config}{}", crate::jobs::email_table(smtpd.port)));
    env.conversation("acme", 1, "c1", &[("a.wav", b"RIFF-1")]);
    env.conversation("acme", 2, "c2", &[("a.wav", b"RIFF-2")]);
    enabled_policy(&env);

    fails(&env, &["run", "lifecycle"]);
    let (code, report) = env.json(&["run", "lifecycle", "--force"]);
    assert_eq!(code, 0, "{report}");
    let messages = smtpd.messages();
    assert_eq!(messages.len(), 2, "{messages:?}");
    let refused = messages
        .iter()
        .find(|m| m.contains("FAILED"))
        .unwrap_or_else(|| panic!("{messages:?}"));
    assert!(
        refused.contains("custodian: lifecycle run")
            && refused.contains("To: compliance@example.com")
            && refused.contains("2 artifacts are due"),
        "{refused}"
    );
    let done = messages
        .iter()
        .find(|m| m.contains("succeeded"))
        .unwrap_or_else(|| panic!("{messages:?}"));
    assert!(done.contains("2 deleted"), "{done}");
}

/// Every lifecycle permission and the restore permission.
const WITH_RESTORE: &str = r#"["ARTIFACTS_LIFECYCLE_POLICY_READ", "ARTIFACTS_LIFECYCLE_POLICY_CREATE", "ARTIFACTS_LIFECYCLE_POLICY_DELETE", "ARTIFACTS_LIFECYCLE_POLICY_RUN", "ARTIFACTS_LIFECYCLE_POLICY_FORCE", "ARTIFACTS_LIFECYCLE_POLICY_RESTORE"]"#;

/// A 7-day quarantine window in the default area, and no share limit.
const QUARANTINE: &str = "max_delete_share = 1.0\nquarantine_days = 7";

/// The default quarantine area of `env`.
fn area(env: &Env) -> std::path::PathBuf {
    env.root().join(".custodian-quarantine")
}

fn area_files(env: &Env) -> usize {
    std::fs::read_dir(area(env)).map_or(0, |d| d.count())
}

/// Moves the catalog's clock for the quarantine back `days`: what the sweep quarantined is
/// that much older (the CLI has no clock to move; the catalog is the tests' own SQLite file).
fn age_quarantine(env: &Env, days: i64) {
    let db = rusqlite::Connection::open(env.path().join("catalog.db")).unwrap();
    db.execute(
        "UPDATE quarantine SET quarantined_ms = quarantined_ms - ?",
        [days * 86_400_000],
    )
    .unwrap();
}

/// Puts the record of `dir` under legal hold.
fn set_legal_hold(dir: &std::path::Path) {
    let record = dir.join("conversation.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    json["flags"] = serde_json::json!({"legal_hold": true});
    std::fs::write(&record, serde_json::to_vec(&json).unwrap()).unwrap();
}

#[test]
fn a_quarantine_window_moves_restores_and_purges_with_one_event_each() {
    let env = env_with(WITH_RESTORE, QUARANTINE);
    let c1 = env.conversation(
        "acme",
        1,
        "c1",
        &[("a.wav", b"RIFF-1"), ("b.wav", b"RIFF-2")],
    );
    let c2 = env.conversation("acme", 2, "c2", &[("a.wav", b"RIFF-3")]);
    let c3 = env.conversation("acme", 3, "c3", &[("a.wav", b"RIFF-4")]);
    enabled_policy(&env);

    let text = ok(&env, &["run", "lifecycle"]);
    assert!(
        text.contains("deleted 0 artifacts")
            && text
                .contains("quarantine: 4 artifacts moved in, 0 restored for legal holds, 0 purged"),
        "{text}"
    );
    assert!(!c1.join("a.wav").exists() && !c3.join("a.wav").exists());
    assert_eq!(area_files(&env), 4);
    let moved = events(&env, "artifact_quarantined");
    assert_eq!(moved.len(), 4);
    let first = moved[0].clone();
    assert!(moved.iter().all(|e| e["run"] == first["run"]));
    let (code, again) = env.json(&["run", "lifecycle"]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(
        (&again["quarantined"], &again["purged"]),
        (&0.into(), &0.into()),
        "{again}"
    );
    let (_, plan) = env.json(&["plan", "lifecycle"]);
    assert_eq!(
        (
            &plan[0]["artifacts"],
            &plan[0]["in_quarantine"],
            &plan[0]["purgeable"]
        ),
        (&0.into(), &4.into(), &0.into()),
        "{plan}"
    );
    assert!(
        ok(&env, &["plan", "lifecycle"])
            .contains("in quarantine: 4 artifacts, 24 bytes; purgeable now: 0")
    );
    // Quarantined artifacts are not exported, nor brought back by a reindex.
    ok(&env, &["index"]);
    let (code, exported) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{exported}");
    assert!(
        !env.archive_files().iter().any(|f| f.ends_with(".wav")),
        "{:?}",
        env.archive_files()
    );

    // A restore by conversation: back in place, audited, and not quarantined again.
    let (code, restored) = env.json(&["lifecycle", "restore", "--conversation", "acme/c2"]);
    assert_eq!(code, 0, "{restored}");
    assert_eq!(restored["restored"], 1);
    assert_eq!(std::fs::read(c2.join("a.wav")).unwrap(), b"RIFF-3");
    let (_, next) = env.json(&["run", "lifecycle"]);
    assert_eq!(next["quarantined"], 0, "{next}");
    assert!(c2.join("a.wav").exists());
    let back = events(&env, "artifact_restored");
    assert_eq!(back.len(), 1);
    assert_eq!(back[0]["details"]["exempt_from_version"], true);

    // A hold placed on c3 while in quarantine brings it back; c1's time is up: purged.
    set_legal_hold(&c3);
    age_quarantine(&env, 8);
    let (_, plan) = env.json(&["plan", "lifecycle"]);
    assert_eq!(plan[0]["purgeable"], 3, "{plan}");
    let (code, purge) = env.json(&["run", "lifecycle"]);
    assert_eq!(code, 0, "{purge}");
    assert_eq!(
        (&purge["restored"], &purge["purged"], &purge["quarantined"]),
        (&1.into(), &2.into(), &0.into()),
        "{purge}"
    );
    assert_eq!(std::fs::read(c3.join("a.wav")).unwrap(), b"RIFF-4");
    assert!(!c1.join("a.wav").exists() && !c1.join("b.wav").exists());
    assert_eq!(area_files(&env), 0);
    let deleted = events(&env, "artifact_deleted");
    assert_eq!(deleted.len(), 2);
    assert!(deleted.iter().all(|e| e["conversation_id"] == "c1"
        && e["run"] == purge["run"]
        && e["details"]["quarantine_name"].is_string()));
    assert_eq!(events(&env, "artifact_restored").len(), 2);
    let (_, runs) = env.json(&["jobs", "list", "--policy", "lifecycle"]);
    assert_eq!(runs[0]["counters"]["deleted"], 2, "{runs}");

    // Purged, and nothing left of that sweep: clear errors, nothing changed.
    let err = fails(&env, &["lifecycle", "restore", "--conversation", "acme/c1"]);
    assert!(
        err.contains("conversation `acme/c1` has nothing in quarantine") && err.contains("purged"),
        "{err}"
    );
    let run = first["run"].to_string();
    let err = fails(&env, &["lifecycle", "restore", "--run", &run]);
    assert!(
        err.contains(&format!("run {run} has nothing in quarantine")),
        "{err}"
    );
    assert_eq!(events(&env, "artifact_restored").len(), 2);
    ok(&env, &["audit", "verify"]);
}

#[test]
fn a_restore_by_run_puts_back_everything_that_sweep_quarantined() {
    let env = env_with(WITH_RESTORE, QUARANTINE);
    let dirs: Vec<_> = (0..3)
        .map(|i| env.conversation("acme", 1 + i, &format!("c{i}"), &[("a.wav", b"RIFF")]))
        .collect();
    enabled_policy(&env);
    let (_, sweep) = env.json(&["run", "lifecycle"]);
    assert_eq!(sweep["quarantined"], 3, "{sweep}");
    let run = sweep["run"].to_string();
    let text = ok(&env, &["lifecycle", "restore", "--run", &run]);
    assert!(text.contains("restored 3 artifacts; 0 failed"), "{text}");
    assert!(dirs.iter().all(|d| d.join("a.wav").exists()));
    assert_eq!(area_files(&env), 0);
    assert!(
        events(&env, "artifact_restored")
            .iter()
            .all(|e| e["details"]["reason"]
                == format!("restored by {}", e["actor"].as_str().unwrap()))
    );
}

#[test]
fn bad_restores_and_quarantine_settings_are_refused_changing_nothing() {
    // Without the permission.
    let env = env_with(ALL, QUARANTINE);
    let err = fails(&env, &["lifecycle", "restore", "--conversation", "acme/c1"]);
    assert!(err.contains("ARTIFACTS_LIFECYCLE_POLICY_RESTORE"), "{err}");

    // Without a quarantine window.
    let env = env_with(WITH_RESTORE, "max_delete_share = 1.0");
    let err = fails(&env, &["lifecycle", "restore", "--conversation", "acme/c1"]);
    assert!(
        err.contains("quarantine window is off") && err.contains("quarantine_days"),
        "{err}"
    );

    // Settings.
    for (setting, key) in [
        ("quarantine_days = 0", "quarantine_days"),
        ("quarantine_dir = \"q\"", "quarantine_dir"),
    ] {
        let env = env_with(WITH_RESTORE, setting);
        let err = fails(&env, &["plan", "lifecycle"]);
        assert!(err.contains(key), "{setting}: {err}");
    }

    let env = env_with(WITH_RESTORE, QUARANTINE);
    let c1 = env.conversation("acme", 1, "c1", &[("a.wav", b"RIFF-1")]);
    enabled_policy(&env);
    let (_, sweep) = env.json(&["run", "lifecycle"]);
    assert_eq!(sweep["quarantined"], 1, "{sweep}");
    // A malformed conversation, an unknown one, an unknown run.
    let err = fails(&env, &["lifecycle", "restore", "--conversation", "c1"]);
    assert!(err.contains("TENANT/ID"), "{err}");
    let err = fails(
        &env,
        &["lifecycle", "restore", "--conversation", "acme/nope"],
    );
    assert!(
        err.contains("`acme/nope` has nothing in quarantine"),
        "{err}"
    );
    let err = fails(&env, &["lifecycle", "restore", "--run", "999"]);
    assert!(err.contains("run 999 has nothing in quarantine"), "{err}");
    // Its place is occupied: never replaced.
    std::fs::write(c1.join("a.wav"), b"other").unwrap();
    let err = fails(&env, &["lifecycle", "restore", "--conversation", "acme/c1"]);
    assert!(err.contains("a.wav is occupied"), "{err}");
    assert_eq!(std::fs::read(c1.join("a.wav")).unwrap(), b"other");
    assert_eq!(area_files(&env), 1);
    std::fs::remove_file(c1.join("a.wav")).unwrap();
    // The quarantine area swapped for a link: neither the sweep nor a restore goes through it.
    let moved = env.path().join("moved-area");
    std::fs::rename(area(&env), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, area(&env)).unwrap();
    let err = fails(&env, &["lifecycle", "restore", "--conversation", "acme/c1"]);
    assert!(
        err.contains("symbolic link") && err.contains("quarantine_dir"),
        "{err}"
    );
    let out = env.run(&["run", "lifecycle"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("symbolic link"), "{}", text(&out));
    assert!(!c1.join("a.wav").exists());
    assert!(events(&env, "artifact_restored").is_empty());
    std::fs::remove_file(area(&env)).unwrap();
    std::fs::rename(&moved, area(&env)).unwrap();
    ok(&env, &["lifecycle", "restore", "--conversation", "acme/c1"]);
    assert_eq!(std::fs::read(c1.join("a.wav")).unwrap(), b"RIFF-1");
}

/// Runs `args` with the failpoint between the file operations of a batch and their record
/// sleeping, and kills it (SIGKILL) once `changed` holds: files moved, not recorded.
fn kill_between_files_and_record(env: &Env, args: &[&str], changed: impl Fn() -> bool) {
    let mut child = env
        .command(args)
        .env("FAILPOINTS", "quarantine-record=sleep(10000)")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !changed() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(changed(), "{args:?} changed nothing in time");
    // The record waits on the failpoint: the kill lands between the files and the catalog.
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_quarantine_move_restore_and_purge_killed_are_completed_once_by_the_rerun() {
    let env = env_with(WITH_RESTORE, QUARANTINE);
    let n = 20;
    let dirs: Vec<_> = (0..n)
        .map(|i| env.conversation("acme", 1 + i % 28, &format!("c{i}"), &[("a.wav", b"RIFF")]))
        .collect();
    ok(&env, &["index"]);
    enabled_policy(&env);
    let in_place = || dirs.iter().filter(|d| d.join("a.wav").exists()).count();

    // The move.
    kill_between_files_and_record(&env, &["run", "lifecycle", "--no-index"], || {
        in_place() == 0
    });
    assert!(events(&env, "artifact_quarantined").is_empty());
    let (code, rerun) = env.json(&["run", "lifecycle", "--no-index"]);
    assert_eq!(code, 0, "{rerun}");
    assert_eq!(
        (&rerun["resumed"], &rerun["quarantined"]),
        (&n.into(), &n.into()),
        "{rerun}"
    );
    assert_eq!(events(&env, "artifact_quarantined").len(), n as usize);
    assert_eq!(area_files(&env), n as usize);

    // A restore.
    kill_between_files_and_record(
        &env,
        &["lifecycle", "restore", "--conversation", "acme/c0"],
        || dirs[0].join("a.wav").exists(),
    );
    assert!(events(&env, "artifact_restored").is_empty());
    let (code, rerun) = env.json(&["lifecycle", "restore", "--conversation", "acme/c0"]);
    assert_eq!(code, 0, "{rerun}");
    assert_eq!(
        (&rerun["resumed"], &rerun["restored"]),
        (&1.into(), &1.into()),
        "{rerun}"
    );
    assert_eq!(events(&env, "artifact_restored").len(), 1);
    let err = fails(&env, &["lifecycle", "restore", "--conversation", "acme/c0"]);
    assert!(err.contains("nothing in quarantine"), "{err}");

    // A purge.
    age_quarantine(&env, 8);
    kill_between_files_and_record(&env, &["run", "lifecycle", "--no-index"], || {
        area_files(&env) == 0
    });
    assert!(events(&env, "artifact_deleted").is_empty());
    let (code, rerun) = env.json(&["run", "lifecycle", "--no-index"]);
    assert_eq!(code, 0, "{rerun}");
    assert_eq!(
        (
            &rerun["resumed"],
            &rerun["purged"],
            &rerun["already_missing"]
        ),
        (&(n - 1).into(), &(n - 1).into(), &0.into()),
        "{rerun}"
    );
    let deleted = events(&env, "artifact_deleted");
    let mut ids: Vec<_> = deleted
        .iter()
        .map(|e| e["conversation_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        (ids.len(), deleted.len()),
        ((n - 1) as usize, (n - 1) as usize)
    );
    assert!(dirs[0].join("a.wav").exists(), "the restored one stays");
    ok(&env, &["audit", "verify"]);
}

#[test]
fn a_restore_as_real_users_needs_the_restore_permission_and_shares_the_area() {
    use crate::osusers::{self, ALICE, BOB, EVE, Shared};
    if !osusers::available(
        "a_restore_as_real_users_needs_the_restore_permission_and_shares_the_area",
    ) {
        return;
    }
    // Alice manages the policy and restores; Bob only runs the sweep; Eve only reads.
    let s = Shared::new(
        r#"[users]
"custodian-t-alice" = ["ARTIFACTS_LIFECYCLE_POLICY_CREATE", "ARTIFACTS_LIFECYCLE_POLICY_RESTORE"]
"custodian-t-bob" = ["ARTIFACTS_LIFECYCLE_POLICY_RUN"]
[groups]
"custodian-t" = ["ARTIFACTS_LIFECYCLE_POLICY_READ"]
"#,
        QUARANTINE,
    );
    let c1 = s.env.conversation("acme", 1, "c1", &[("a.wav", b"RIFF-1")]);
    s.share_repository();
    s.publish_voice_30d(ALICE);
    let mut enable = vec!["lifecycle", "enable", "voice-30d"];
    enable.extend(ACKS);
    s.ok(ALICE, &enable);
    // Bob's sweep makes the area; the group shares it, others are kept out.
    let sweep = s.json(BOB, &["run", "lifecycle"]);
    assert_eq!(sweep["quarantined"], 1, "{sweep}");
    let mode = osusers::mode(&s.env.root().join(".custodian-quarantine"));
    assert_eq!(mode & 0o077, 0o070, "{mode:o}");
    for user in [EVE, BOB] {
        let err = s.fails(user, &["lifecycle", "restore", "--conversation", "acme/c1"]);
        assert!(
            err.contains(user) && err.contains("ARTIFACTS_LIFECYCLE_POLICY_RESTORE"),
            "{err}"
        );
    }
    assert!(!c1.join("a.wav").exists());
    s.ok(
        ALICE,
        &["lifecycle", "restore", "--conversation", "acme/c1"],
    );
    assert_eq!(std::fs::read(c1.join("a.wav")).unwrap(), b"RIFF-1");
    let restored: Vec<_> = s
        .trail(ALICE)
        .into_iter()
        .filter(|e| e["kind"] == "artifact_restored")
        .collect();
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0]["actor"], ALICE);
}

/// A policy deleting customer-leg audio after 30 days, created with nothing published.
fn created_policy(env: &Env) {
    ok(
        env,
        &[
            "lifecycle",
            "create",
            "voice-30d",
            "--artifact-type",
            "audio_recording",
            "--audio-type",
            "conference_customer",
        ],
    );
}

#[test]
fn a_version_requiring_export_deletes_only_what_the_export_policy_exported() {
    let smtpd = crate::jobs::Smtpd::start();
    let env = env_with(
        ALL,
        "max_delete_share = 1.0\nnotify = { to = \"compliance@example.com\", on_completion = \"every_time\" }",
    );
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{config}{}", crate::jobs::email_table(smtpd.port)));
    env.conversation("acme", 1, "c1", &[("a.wav", b"RIFF-1")]);
    env.conversation("acme", 2, "c2", &[("a.wav", b"RIFF-2")]);
    created_policy(&env);
    ok(
        &env,
        &[
            "lifecycle",
            "version",
            "voice-30d",
            "v1",
            "--delete-after-days",
            "30",
            "--require-export",
            "export",
        ],
    );
    let mut enable = vec!["lifecycle", "enable", "voice-30d"];
    enable.extend(ACKS);
    let enabled = ok(&env, &enable);
    assert!(
        enabled.contains("delete 30 days after the end, once exported by export"),
        "{enabled}"
    );
    let (_, shown) = env.json(&["lifecycle", "show", "voice-30d"]);
    assert_eq!(shown["versions"][0]["require_export"], "export", "{shown}");
    let listed = ok(&env, &["lifecycle", "list"]);
    assert!(listed.contains("once exported by export"), "{listed}");
    let published: Vec<_> = events(&env, "lifecycle_policy_changed")
        .into_iter()
        .filter(|e| e["details"]["change"] == "version_published")
        .collect();
    assert_eq!(published.len(), 1);
    assert_eq!(
        published[0]["details"]["version"]["require_export"], "export",
        "{published:?}"
    );

    // Due, but not exported yet: held back, counted, and nothing deleted.
    let plan = ok(&env, &["plan", "lifecycle"]);
    assert!(
        plan.contains("0 artifacts due, 0 bytes")
            && plan.contains("2 held back: not exported by export"),
        "{plan}"
    );
    let swept = ok(&env, &["run", "lifecycle"]);
    assert!(
        swept.contains("deleted 0 artifacts")
            && swept.contains("voice-30d: 2 due artifacts held back: not exported by export"),
        "{swept}"
    );
    let messages = smtpd.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].contains("succeeded")
            && messages[0].contains(
                "Held back: voice-30d: 2 due artifact(s) held back: not exported by export"
            ),
        "{messages:?}"
    );
    let (code, report) = env.json(&["run", "lifecycle"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["deleted"], 0);
    assert_eq!(report["policies"][0]["not_exported"], 2, "{report}");
    assert_eq!(report["policies"][0]["require_export"], "export");
    let shown = ok(&env, &["jobs", "show", &report["run"].to_string()]);
    assert!(
        shown.contains("held back: voice-30d: 2 due artifact(s) held back: not exported by export"),
        "{shown}"
    );
    for (day, id) in [(1, "c1"), (2, "c2")] {
        assert!(
            env.root()
                .join(Env::rel_dir("acme", day, id))
                .join("a.wav")
                .exists()
        );
    }
    assert!(events(&env, "artifact_deleted").is_empty());

    // Exported: now deletable, and deleted once each.
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    let (_, plan) = env.json(&["plan", "lifecycle"]);
    assert_eq!(
        (&plan[0]["artifacts"], &plan[0]["not_exported"]),
        (&serde_json::json!(2), &serde_json::json!(0)),
        "{plan}"
    );
    let (code, report) = env.json(&["run", "lifecycle"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["deleted"], 2, "{report}");
    assert!(
        !env.root()
            .join(Env::rel_dir("acme", 1, "c1"))
            .join("a.wav")
            .exists()
    );
    let deleted = events(&env, "artifact_deleted");
    assert_eq!(deleted.len(), 2);
    let (_, again) = env.json(&["run", "lifecycle"]);
    assert_eq!(again["deleted"], 0);
    assert_eq!(events(&env, "artifact_deleted").len(), 2, "one event each");
    ok(&env, &["audit", "verify"]);
}

#[test]
fn require_export_takes_an_export_policy_of_the_config_and_a_delete_version() {
    let env = env_with(ALL, "");
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!(
        "{config}\n[policies.flag]\naction = \"confidential\"\nflag = \"set\"\n"
    ));
    created_policy(&env);
    let version = |extra: &[&str]| {
        let mut args = vec!["lifecycle", "version", "voice-30d", "v1"];
        args.extend(extra);
        fails(&env, &args)
    };
    let unknown = version(&["--delete-after-days", "30", "--require-export", "nope"]);
    assert!(
        unknown.contains("--require-export nope: the config has no policy of that name")
            && unknown.contains("export policies: export"),
        "{unknown}"
    );
    let flag = version(&["--delete-after-days", "30", "--require-export", "flag"]);
    assert!(
        flag.contains("--require-export flag: a confidential-flag policy, which exports nothing")
            && flag.contains("export policies: export"),
        "{flag}"
    );
    let forever = version(&["--keep-forever", "--require-export", "export"]);
    assert!(
        forever.contains("--require-export applies to a version that deletes"),
        "{forever}"
    );
    let (_, shown) = env.json(&["lifecycle", "show", "voice-30d"]);
    assert_eq!(
        shown["versions"],
        serde_json::json!([]),
        "nothing published"
    );
    assert_eq!(
        events(&env, "lifecycle_policy_changed").len(),
        1,
        "only the creation"
    );
}
