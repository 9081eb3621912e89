//! Export runs as a user sees them: what lands at the target, what is recorded, and what a bad
//! item does to the run (fails alone, exit 1, exported by the next run once fixed).

use std::collections::HashMap;

use crate::common::{Env, sha256, text};

fn three(env: &Env) {
    env.conversation(
        "acme",
        1,
        "a1",
        &[("in.wav", b"RIFF-a1-in"), ("out.wav", b"RIFF-a1-out")],
    );
    env.conversation("acme", 2, "a2", &[("call.mp3", b"ID3-a2")]);
    env.conversation("globex", 3, "g1", &[("call.wav", b"RIFF-g1")]);
}

fn exported(env: &Env, key: &str) -> Option<Vec<u8>> {
    std::fs::read(env.archive().join(key)).ok()
}

fn audit_counts(env: &Env) -> HashMap<String, usize> {
    let (_, events) = env.json(&["audit", "list", "--limit", "100000"]);
    let mut counts = HashMap::new();
    for e in events.as_array().unwrap() {
        *counts
            .entry(e["conversation_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

#[test]
fn export_writes_files_metadata_manifest_and_audit_then_rerun_is_incremental() {
    let env = Env::new("");
    three(&env);
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["counters"]["exported"], 3);
    assert_eq!(summary["counters"]["objects"], 7);
    assert_eq!(
        exported(&env, "acme/2026/01/01/a1/in.wav").unwrap(),
        b"RIFF-a1-in"
    );
    assert_eq!(
        exported(&env, "globex/2026/01/03/g1/call.wav").unwrap(),
        b"RIFF-g1"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&exported(&env, "acme/2026/01/01/a1/conversation.json").unwrap())
            .unwrap();
    assert_eq!(meta["conversation"]["id"], "a1");
    assert_eq!(meta["export"]["files"][1]["sha256"], sha256(b"RIFF-a1-out"));

    let manifest =
        std::fs::read_to_string(env.archive().join(summary["manifest"].as_str().unwrap())).unwrap();
    let lines: Vec<serde_json::Value> = manifest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1 + 7 + 1);
    assert_eq!(lines[8]["end"]["objects"], 7);
    assert!(
        lines[1..8]
            .iter()
            .any(|l| l["key"] == "acme/2026/01/02/a2/call.mp3" && l["sha256"] == sha256(b"ID3-a2"))
    );

    let counts = audit_counts(&env);
    assert_eq!(counts.len(), 3);
    assert!(counts.values().all(|&n| n == 1));
    let out = env.run(&["verify", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("7 objects") && text(&out).contains("all match"),
        "{}",
        text(&out)
    );

    let (code, again) = env.json(&["run", "export"]);
    assert_eq!(code, 0);
    assert_eq!(again["counters"]["selected"], 0);
    assert_eq!(again["index"]["unchanged"], 3);
    assert_eq!(audit_counts(&env).values().sum::<usize>(), 3);

    let out = env.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (_, runs) = env.json(&["jobs", "list"]);
    assert_eq!(runs.as_array().unwrap().len(), 2);
    let (_, shown) = env.json(&["jobs", "show", "1"]);
    assert_eq!(shown["counters"]["exported"], 3);
}

#[test]
fn full_mode_exports_everything_every_run() {
    let env = Env::new("mode = \"full\"");
    three(&env);
    assert_eq!(env.json(&["run", "export"]).0, 0);
    let (code, second) = env.json(&["run", "export"]);
    assert_eq!(code, 0);
    assert_eq!(second["counters"]["exported"], 3);
    assert!(audit_counts(&env).values().all(|&n| n == 2));
}

#[test]
fn filters_and_extension_list_limit_what_is_exported() {
    let env = Env::new(
        "file_extensions = [\"wav\"]\nmetadata_file = false\n[policies.export.filter]\ntenants = [\"acme\"]",
    );
    three(&env);
    let (code, s) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["counters"]["exported"], 2);
    assert_eq!(s["counters"]["objects"], 2);
    assert!(exported(&env, "acme/2026/01/01/a1/out.wav").is_some());
    assert!(exported(&env, "acme/2026/01/02/a2/call.mp3").is_none());
    assert!(exported(&env, "acme/2026/01/01/a1/conversation.json").is_none());
    assert!(!env.archive().join("globex").exists());
}

#[test]
fn dry_run_lists_objects_and_bytes_and_writes_nothing() {
    let env = Env::new("");
    three(&env);
    let out = env.run(&["run", "export", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("acme/2026/01/01/a1/in.wav"), "{t}");
    assert!(t.contains("3 conversations, 7 objects, 34 B"), "{t}");
    let (code, plan) = env.json(&["plan", "export"]);
    assert_eq!(code, 0);
    assert_eq!(plan["bytes"], 34);
    assert_eq!(plan["plan"].as_array().unwrap().len(), 3);
    assert!(!env.archive().exists());
    assert_eq!(env.json(&["jobs", "list"]).1.as_array().unwrap().len(), 0);
}

#[test]
fn corrupt_record_fails_alone_and_is_exported_once_fixed() {
    let env = Env::new("");
    three(&env);
    let bad = env
        .root()
        .join(Env::rel_dir("acme", 2, "a2"))
        .join("conversation.json");
    let good = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, b"{\"schema\": 1, \"id\": ").unwrap();
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains(&format!("{}: EOF while parsing", bad.display())),
        "{t}"
    );
    assert!(t.contains("2 exported, 1 failed"), "{t}");
    assert!(exported(&env, "acme/2026/01/02/a2/call.mp3").is_none());

    std::fs::write(&bad, good).unwrap();
    let (code, s) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["counters"]["exported"], 1);
    assert_eq!(
        exported(&env, "acme/2026/01/02/a2/call.mp3").unwrap(),
        b"ID3-a2"
    );
}

#[test]
fn missing_record_fails_alone_and_is_exported_once_written() {
    let env = Env::new("");
    three(&env);
    let dir = env.root().join(Env::rel_dir("acme", 2, "a2"));
    let record = dir.join("conversation.json");
    let saved = std::fs::read(&record).unwrap();
    std::fs::remove_file(&record).unwrap();
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("{}: missing conversation.json", record.display())),
        "{}",
        text(&out)
    );
    std::fs::write(&record, saved).unwrap();
    let (code, s) = env.json(&["run", "export"]);
    assert_eq!(code, 0);
    assert_eq!(s["counters"]["exported"], 1);
}

#[test]
fn missing_artifact_fails_alone_and_is_exported_once_restored() {
    let env = Env::new("");
    three(&env);
    let file = env
        .root()
        .join(Env::rel_dir("acme", 1, "a1"))
        .join("out.wav");
    std::fs::remove_file(&file).unwrap();
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(
        t.contains(&format!(
            "acme/a1: artifact {} is listed in conversation.json but missing",
            file.display()
        )),
        "{t}"
    );
    assert!(t.contains("2 exported, 1 failed"), "{t}");
    std::fs::write(&file, b"RIFF-a1-out").unwrap();
    let (code, s) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["counters"]["exported"], 1);
    assert_eq!(
        exported(&env, "acme/2026/01/01/a1/out.wav").unwrap(),
        b"RIFF-a1-out"
    );
    assert_eq!(audit_counts(&env)["a1"], 1);
}

#[test]
fn artifact_that_does_not_match_its_checksum_is_not_exported() {
    let env = Env::new("");
    three(&env);
    std::fs::write(
        env.root()
            .join(Env::rel_dir("globex", 3, "g1"))
            .join("call.wav"),
        b"RIFF-XX",
    )
    .unwrap();
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("the file is corrupt or was replaced; nothing was written"),
        "{}",
        text(&out)
    );
    let dir = env.archive().join("globex/2026/01/03/g1");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert!(
        left.is_empty() || left == vec![0],
        "nothing may be left for g1: {left:?}"
    );
}

#[test]
fn target_that_refuses_writes_fails_those_items_and_the_next_run_exports_them() {
    let env = Env::new("");
    three(&env);
    std::fs::create_dir_all(env.archive()).unwrap();
    std::fs::write(env.archive().join("acme"), b"blocks the acme directory").unwrap();
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("target `archive`: acme/2026/01/01/a1/"), "{t}");
    assert!(t.contains("1 exported, 2 failed"), "{t}");
    assert!(exported(&env, "globex/2026/01/03/g1/call.wav").is_some());
    let (_, shown) = env.json(&["jobs", "show", "1"]);
    assert_eq!(shown["status"], "completed_with_failures");
    assert_eq!(shown["failures"].as_array().unwrap().len(), 2);

    std::fs::remove_file(env.archive().join("acme")).unwrap();
    let (code, s) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["counters"]["exported"], 2);
    assert_eq!(audit_counts(&env).values().sum::<usize>(), 3);
}

#[test]
fn a_full_target_stops_the_run_and_the_next_finishes_once_there_is_room() {
    let env = Env::new("");
    let n = 40;
    let payload = crate::common::payload;
    for i in 0..n {
        env.conversation("acme", 1, &format!("c{i:02}"), &[("call.wav", &payload(i))]);
    }
    let disk = crate::common::SmallDisk::mount(&env.archive(), "1m");
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("No space left on device"), "{t}");
    let (_, runs) = env.json(&["jobs", "list"]);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    // The run stopped at the first full write instead of failing every item after it; it is
    // either open (its manifest did not fit either) or failed with the reason.
    let run = &runs[0];
    match run["status"].as_str().unwrap() {
        "running" => {}
        "failed" => assert!(
            run["error_summary"]
                .as_str()
                .unwrap()
                .contains("the target is out of space"),
            "{run}"
        ),
        other => panic!("{other}: {run}"),
    }
    let (_, shown) = env.json(&["jobs", "show", "1"]);
    let failed = shown["failures"].as_array().unwrap().len();
    assert!(
        (1..10).contains(&failed),
        "only the items in flight fail: {shown}"
    );
    let (_, events) = env.json(&["audit", "list", "--limit", "1000"]);
    let first = events.as_array().unwrap().len();
    assert!(
        first > 0 && first < n / 2,
        "{first} exported before the disk filled"
    );
    // Nothing partial under a final name, and no temporary left behind.
    let files = env.archive_files();
    for f in &files {
        assert!(!f.contains(".custodian-tmp-"), "{files:?}");
        if let Some(id) = f.strip_suffix("/call.wav") {
            let i: usize = id.rsplit('/').next().unwrap()[1..].parse().unwrap();
            assert_eq!(exported(&env, f).unwrap(), payload(i), "{f}");
        }
    }

    disk.resize("16m");
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let counts = audit_counts(&env);
    assert_eq!(counts.len(), n, "{counts:?}");
    assert!(counts.values().all(|&c| c == 1), "{counts:?}");
    for i in 0..n {
        let key = format!("acme/2026/01/01/c{i:02}/call.wav");
        assert_eq!(exported(&env, &key).unwrap(), payload(i), "{key}");
    }
}

#[test]
fn a_full_catalog_disk_stops_with_a_clear_error_and_the_next_run_loses_nothing() {
    // How much room is left decides where the catalog fills: opening it, beginning the run,
    // or recording items.
    for room in [24, 32, 40, 48, 64] {
        let env = Env::new("");
        let config = std::fs::read_to_string(env.config()).unwrap();
        env.write_config(&config.replace("sqlite:catalog.db", "sqlite:cat/catalog.db"));
        let n = 40;
        for i in 0..n {
            let bytes = format!("RIFF {i}");
            env.conversation(
                "acme",
                1,
                &format!("c{i:02}"),
                &[("call.wav", bytes.as_bytes())],
            );
        }
        let _disk = crate::common::SmallDisk::mount(&env.path().join("cat"), "2m");
        let out = env.run(&["index"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let ballast = env.path().join("cat/ballast");
        let free = nix::sys::statvfs::statvfs(&env.path().join("cat")).unwrap();
        let fill = free.blocks_available() * free.fragment_size() - room * 1024;
        std::fs::write(&ballast, vec![0u8; fill as usize]).unwrap();
        let out = env.run(&["run", "export", "--no-index"]);
        assert_eq!(out.status.code(), Some(2), "{room} KiB: {}", text(&out));
        let t = text(&out);
        assert!(
            t.contains("cat/catalog.db: the disk holding it is full; free space there"),
            "{room} KiB: {t}"
        );

        std::fs::remove_file(&ballast).unwrap();
        let (code, summary) = env.json(&["run", "export", "--no-index"]);
        assert_eq!(code, 0, "{room} KiB: {summary}");
        let counts = audit_counts(&env);
        assert_eq!(counts.len(), n, "{room} KiB: {counts:?}");
        assert!(counts.values().all(|&c| c == 1), "{room} KiB: {counts:?}");
        assert_eq!(env.archive_files().len(), 2 * n, "{room} KiB");
    }
}

#[test]
fn verify_reports_an_exported_file_changed_after_the_run() {
    let env = Env::new("");
    three(&env);
    assert_eq!(env.json(&["run", "export"]).0, 0);
    std::fs::write(
        env.archive().join("acme/2026/01/02/a2/call.mp3"),
        b"edited!",
    )
    .unwrap();
    std::fs::remove_file(env.archive().join("globex/2026/01/03/g1/call.wav")).unwrap();
    let (code, report) = env.json(&["verify", "1"]);
    assert_eq!(code, 1);
    let problems: Vec<String> = report["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{} {}",
                m["key"].as_str().unwrap(),
                m["problem"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("acme/2026/01/02/a2/call.mp3 size is 7")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("g1/call.wav") && p.contains("not found")),
        "{problems:?}"
    );
}

#[test]
fn index_rereads_only_what_changed_and_drops_what_is_gone() {
    let env = Env::new("");
    three(&env);
    let (code, first) = env.json(&["index"]);
    assert_eq!(code, 0);
    assert_eq!(first["indexed"], 3);
    env.conversation("acme", 2, "a2", &[("call.mp3", b"ID3-a2-longer")]);
    std::fs::remove_dir_all(env.root().join("globex")).unwrap();
    let (code, second) = env.json(&["index"]);
    assert_eq!(code, 0, "{second}");
    assert_eq!(
        (
            second["indexed"].as_u64(),
            second["unchanged"].as_u64(),
            second["removed"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
}

#[test]
fn a_new_catalog_in_new_directories_under_a_relative_config_path_is_made() {
    let env = Env::new("");
    env.conversation("acme", 1, "c1", &[("a.wav", b"data")]);
    let config = std::fs::read_to_string(env.config())
        .unwrap()
        .replace("sqlite:catalog.db", "sqlite:state/new/catalog.db");
    env.write_config(&config);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
        .current_dir(env.path())
        .args(["--config", "custodian.toml", "run", "export"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(env.path().join("state/new/catalog.db").is_file());
}
