//! A config that cannot be used stops before any work: exit 2, with file, line and key.

use crate::common::{Env, text};

#[test]
fn unknown_key_exits_2_naming_file_line_and_key() {
    let env = Env::new("retention_days = 5");
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(2));
    let msg = text(&out);
    let expected = format!(
        "{}:14: policies.export.retention_days: unknown field `retention_days`",
        env.config().display()
    );
    assert!(msg.contains(&expected), "{msg}");
    assert!(!env.archive().exists(), "nothing may be written");
}

#[test]
fn wrong_type_exits_2_naming_file_line_and_key() {
    let env = Env::new("metadata_file = \"yes\"");
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(2));
    let msg = text(&out);
    assert!(
        msg.contains(&format!(
            "{}:14: policies.export.metadata_file:",
            env.config().display()
        )),
        "{msg}"
    );
}

#[test]
fn unknown_policy_and_missing_config_exit_2() {
    let env = Env::new("");
    let out = env.run(&["run", "nightly"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("policies.nightly: no such policy (defined: export)"),
        "{}",
        text(&out)
    );
    std::fs::remove_file(env.config()).unwrap();
    let out = env.run(&["index"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("custodian.toml: No such file"),
        "{}",
        text(&out)
    );
}

#[test]
fn unwritable_target_root_exits_2_before_any_work() {
    let env = Env::new("");
    env.conversation("acme", 1, "c1", &[("a.wav", b"data")]);
    std::fs::write(
        env.archive(),
        b"a file where the target directory should be",
    )
    .unwrap();
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("target `archive` is not usable"),
        "{}",
        text(&out)
    );
    let (_, runs) = env.json(&["jobs", "list"]);
    assert_eq!(runs.as_array().unwrap().len(), 0, "no run may start");
}

#[test]
fn schedules_are_validated_and_listed_with_their_next_due_instant() {
    let env = Env::new("schedule = \"daily at 02:30\"\ntimezone = \"Europe/London\"");
    let (code, rows) = env.json(&["schedules"]);
    assert_eq!(code, 0, "{rows}");
    assert_eq!(rows[0]["policy"], "export");
    assert_eq!(rows[0]["schedule"], "daily at 02:30");
    assert_eq!(rows[0]["timezone"], "Europe/London");
    let next: chrono::DateTime<chrono::Utc> =
        rows[0]["next_due"].as_str().unwrap().parse().unwrap();
    let london = next.with_timezone(&chrono_tz::Europe::London);
    assert_eq!(london.format("%H:%M").to_string(), "02:30");
    assert!(next > chrono::Utc::now());

    for (line, key, hint) in [
        (
            "schedule = \"cron 61 * * * *\"",
            "policies.export.schedule",
            "not a valid cron expression",
        ),
        (
            "timezone = \"Mars/Olympus\"",
            "policies.export.timezone",
            "IANA",
        ),
        (
            "keep_job_history_days = 0",
            "policies.export.keep_job_history_days",
            "at least 1 day",
        ),
    ] {
        let env = Env::new(line);
        let out = env.run(&["schedules"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let msg = text(&out);
        assert!(
            msg.contains("custodian.toml:") && msg.contains(key) && msg.contains(hint),
            "{msg}"
        );
    }
}

#[test]
fn the_former_fsync_key_is_refused_with_what_replaced_it() {
    let env = Env::new("");
    let config = std::fs::read_to_string(env.config()).unwrap().replace(
        "path = \"archive\"\n",
        "path = \"archive\"\nfsync = false\n",
    );
    env.write_config(&config);
    env.conversation("acme", 1, "c1", &[("a.wav", b"data")]);
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(2));
    let msg = text(&out);
    assert!(
        msg.contains(&format!(
            "{}:10: targets.archive.fsync: `fsync` is gone: filesystem targets are durable by default",
            env.config().display()
        )),
        "{msg}"
    );
    assert!(msg.contains("durability = \"unsafe_no_sync\""), "{msg}");
    assert!(!env.archive().exists(), "nothing may be written");
}

#[test]
fn durability_belongs_to_filesystem_targets() {
    let env = Env::new("");
    let config = std::fs::read_to_string(env.config()).unwrap()
        + "\n[targets.bucket]\nkind = \"s3\"\nbucket = \"b\"\ndurability = \"durable\"\n";
    env.write_config(&config);
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(2));
    let msg = text(&out);
    assert!(
        msg.contains("targets.bucket.durability: `durability` belongs to filesystem targets"),
        "{msg}"
    );
}

/// `object_lock` errors name file, line and key, and stop before any work.
#[test]
fn object_lock_errors_name_file_line_and_key() {
    let env = Env::new("");
    let base = std::fs::read_to_string(env.config()).unwrap();
    let s3 = "\n[targets.bucket]\nkind = \"s3\"\nbucket = \"b\"\n";
    // The `object_lock` line is line 4 of each table added after `base`.
    let line = base.lines().count() + 5;
    for (table, lock, key, says) in [
        (
            s3,
            "{ mode = \"forever\", retain_days = 30 }",
            "targets.bucket.object_lock.mode",
            "unknown variant `forever`",
        ),
        (
            s3,
            "{ mode = \"compliance\", retain_days = 0 }",
            "targets.bucket.object_lock.retain_days",
            "retain objects 1 to 36500 days",
        ),
        (
            s3,
            "{ mode = \"governance\", retain_days = 99999999 }",
            "targets.bucket.object_lock.retain_days",
            "not 99999999",
        ),
        (
            s3,
            "{ mode = \"governance\" }",
            "targets.bucket.object_lock",
            "missing field `retain_days`",
        ),
        (
            "\n[targets.bucket]\nkind = \"filesystem\"\npath = \"b\"\n",
            "{ mode = \"compliance\", retain_days = 30 }",
            "targets.bucket.object_lock",
            "`object_lock` belongs to S3 targets",
        ),
        (
            "\n[targets.bucket]\nkind = \"azure\"\ncontainer = \"c\"\n",
            "{ mode = \"compliance\", retain_days = 30 }",
            "targets.bucket.object_lock",
            "version-level immutability on the container with a time-based retention policy, and set legal holds there (docs/operations.md, \"WORM exports on Azure\")",
        ),
    ] {
        env.write_config(&format!("{base}{table}object_lock = {lock}\n"));
        let out = env.run(&["run", "export"]);
        assert_eq!(out.status.code(), Some(2), "{lock}: {}", text(&out));
        let msg = text(&out);
        let expected = format!("{}:{line}: {key}", env.config().display());
        assert!(msg.contains(&expected), "{expected} in {msg}");
        assert!(msg.contains(says), "{says} in {msg}");
        assert!(!env.archive().exists(), "nothing may be written");
    }
}
