//! The lifecycle sweep of a repository in a bucket (docs/operations.md, "A repository in an
//! object store"): against s3s-fs on 127.0.0.1 (with its own listings,
//! tests/support/listed_fs.rs) for deletes in batches, holds, the audit trail and a sweep
//! killed while its `DeleteObjects` request is in flight; against moto for a versioned bucket
//! and for versions Object Lock refuses to delete.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::{ByteStream, DateTime as SdkDateTime};
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, ObjectLockMode, VersioningConfiguration,
};

use crate::common::{Env, text};
use crate::lifecycle::{ALL, enabled_policy, events};
use crate::s3::{ACCESS_KEY, S3Server, SECRET_KEY, run};
use crate::store_repository::copy_tree;
use crate::worm::Moto;

const BUCKET: &str = "recordings";
const PREFIX: &str = "site-a/";

/// An installation whose repository is `PREFIX` in `bucket` at `endpoint` (read with the AWS
/// SDK client), whose roles file grants every lifecycle permission, and whose sweep may delete
/// the whole catalog. Its `repo/` directory is where the tests write conversations before they
/// go to the store.
fn store_env(endpoint: &str, bucket: &str) -> Env {
    let env = Env::new("");
    std::fs::write(
        env.path().join("roles.toml"),
        format!("[users]\n\"*\" = {ALL}\n"),
    )
    .unwrap();
    env.write_config(&format!(
        r#"[catalog]
url = "sqlite:catalog.db"

[repository]
kind = "s3"
bucket = "{bucket}"
prefix = "{PREFIX}"
region = "us-east-1"
endpoint = "{endpoint}"
path_style = true
client = "aws_sdk"

[targets.archive]
kind = "filesystem"
path = "archive"

[policies.export]
action = "export"
target = "archive"

[lifecycle]
roles = "roles.toml"
max_delete_share = 1.0
"#
    ));
    env
}

/// Where the repository's top lies in the s3s-fs server's directory.
fn top(server: &S3Server) -> PathBuf {
    server.root.join(BUCKET).join(PREFIX.trim_end_matches('/'))
}

fn ok(env: &Env, args: &[&str]) {
    let out = run(env, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
}

/// `run lifecycle --no-index --json`: its exit code and summary.
fn sweep(env: &Env) -> (i32, serde_json::Value) {
    let out = run(env, &["--json", "run", "lifecycle", "--no-index"]);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("run lifecycle --json ({e}): {}", text(&out)));
    (out.status.code().unwrap(), report)
}

/// The (conversation, artifact, file_was_missing) of every `artifact_deleted` event.
fn deletions(env: &Env) -> Vec<(String, String, bool)> {
    events(env, "artifact_deleted")
        .iter()
        .map(|e| {
            (
                e["conversation_id"].as_str().unwrap().to_owned(),
                e["details"]["artifact"].as_str().unwrap().to_owned(),
                e["details"]["file_was_missing"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Puts `conversation`'s record under legal hold (the recorder's flag).
fn flag_legal_hold(conversation: &Path) {
    let record = conversation.join("conversation.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    json["flags"] = serde_json::json!({"legal_hold": true});
    std::fs::write(&record, serde_json::to_vec(&json).unwrap()).unwrap();
}

fn audit_verifies(env: &Env) {
    let out = env.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_sweep_of_a_bucket_deletes_what_is_due_keeps_what_holds_keep_with_one_event_each() {
    let server = S3Server::start_listed(Some(BUCKET));
    let env = store_env(&server.endpoint, BUCKET);
    env.conversation(
        "acme",
        1,
        "c1",
        &[("a.wav", b"RIFF-1"), ("b.wav", b"RIFF-2")],
    );
    env.conversation("acme", 2, "c2", &[("a.wav", b"RIFF-3")]);
    flag_legal_hold(&env.conversation("acme", 3, "held", &[("a.wav", b"RIFF-held")]));
    env.conversation("acme", 4, "changed", &[("a.wav", b"RIFF-4")]);
    copy_tree(&env.root(), &top(&server));
    ok(&env, &["index"]);
    enabled_policy(&env);
    // Rewritten after the index read it: the same size, other bytes, so only the ETag tells.
    let changed = top(&server).join(Env::rel_dir("acme", 4, "changed"));
    let record = std::fs::read_to_string(changed.join("conversation.json")).unwrap();
    std::fs::write(
        changed.join("conversation.json"),
        record.replace("alice", "alina"),
    )
    .unwrap();

    let (code, report) = sweep(&env);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["status"], "succeeded", "{report}");
    assert_eq!(
        (&report["deleted"], &report["held_back"], &report["failed"]),
        (&3.into(), &1.into(), &0.into()),
        "{report}"
    );
    assert!(
        report["held_back_reasons"][0]
            .as_str()
            .unwrap()
            .contains("changed since it was indexed"),
        "{report}"
    );
    let c1 = top(&server).join(Env::rel_dir("acme", 1, "c1"));
    assert!(!c1.join("a.wav").exists() && !c1.join("b.wav").exists());
    assert!(c1.join("conversation.json").exists(), "records stay");
    assert!(
        !top(&server)
            .join(Env::rel_dir("acme", 2, "c2"))
            .join("a.wav")
            .exists()
    );
    let held = top(&server).join(Env::rel_dir("acme", 3, "held"));
    assert!(held.join("a.wav").exists(), "a legal hold is never deleted");
    assert!(
        changed.join("a.wav").exists(),
        "a changed record holds back"
    );
    let mut deleted = deletions(&env);
    deleted.sort();
    assert_eq!(
        deleted,
        [
            ("c1".into(), "a.wav".into(), false),
            ("c1".into(), "b.wav".into(), false),
            ("c2".into(), "a.wav".into(), false)
        ]
    );
    assert!(
        events(&env, "artifact_deleted")
            .iter()
            .all(|e| e["run"] == report["run"] && e["policy"] == "voice-30d")
    );
    audit_verifies(&env);

    // Nothing more is due; the changed record still holds its artifact back.
    let (code, again) = sweep(&env);
    assert_eq!(code, 0, "{again}");
    assert_eq!(
        (&again["deleted"], &again["held_back"]),
        (&0.into(), &1.into())
    );
    assert_eq!(deletions(&env).len(), 3);
}

#[test]
fn a_days_due_conversations_are_listed_in_pages_and_those_past_a_page_of_others_one_by_one() {
    let server = S3Server::start_listed(Some(BUCKET));
    let env = store_env(&server.endpoint, BUCKET);
    let due: Vec<String> = (1..=30).map(|i| format!("a{i:02}")).collect();
    for id in &due {
        env.conversation("acme", 5, id, &[("a.wav", b"RIFF-due")]);
    }
    // 2,000 keys of conversations kept (their records put them under legal hold) between the
    // first due conversations and the last: more than a listing page holds.
    let files: Vec<(String, Vec<u8>)> = (1..=9)
        .map(|i| (format!("k{i}.wav"), b"RIFF-kept".to_vec()))
        .collect();
    let files: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    for i in 0..200 {
        flag_legal_hold(&env.conversation("acme", 5, &format!("m{i:03}"), &files));
    }
    for id in ["z1", "z2", "z3"] {
        env.conversation("acme", 5, id, &[("a.wav", b"RIFF-due")]);
    }
    copy_tree(&env.root(), &top(&server));
    ok(&env, &["index"]);
    enabled_policy(&env);
    let dir = |id: &str| top(&server).join(Env::rel_dir("acme", 5, id));
    let record = std::fs::read_to_string(dir("a15").join("conversation.json")).unwrap();
    std::fs::write(
        dir("a15").join("conversation.json"),
        record.replace("alice", "alina"),
    )
    .unwrap();
    std::fs::remove_file(dir("a20").join("a.wav")).unwrap();

    let listed = server.listings();
    let (code, report) = sweep(&env);
    let listings = server.listings() - listed;
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        (&report["deleted"], &report["held_back"], &report["failed"]),
        (&32.into(), &1.into(), &0.into()),
        "{report}"
    );
    // One by one, the 33 due conversations would take 33 listings: here two pages from the
    // first of them, then the three past a page of kept ones on their own.
    assert!(listings <= 6, "{listings} listings");
    let mut deleted = deletions(&env);
    deleted.sort();
    let mut expected: Vec<(String, String, bool)> = due
        .iter()
        .chain(&["z1".to_owned(), "z2".to_owned(), "z3".to_owned()])
        .filter(|id| *id != "a15")
        .map(|id| (id.clone(), "a.wav".to_owned(), id == "a20"))
        .collect();
    expected.sort();
    assert_eq!(deleted, expected);
    assert!(
        dir("a15").join("a.wav").exists(),
        "a changed record holds back"
    );
    assert!(!dir("z3").join("a.wav").exists());
    for i in 0..200 {
        assert!(dir(&format!("m{i:03}")).join("k9.wav").exists());
    }
    audit_verifies(&env);
}

#[test]
fn a_sweep_of_more_than_one_batch_records_every_deletion_once_with_its_event() {
    let server = S3Server::start_listed(Some(BUCKET));
    let env = store_env(&server.endpoint, BUCKET);
    // A batch from a store is 8,000 artifacts: the second batch's deletes overlap the first's
    // records.
    let names: Vec<String> = (0..9).map(|i| format!("a{i}.wav")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"RIFF"[..])).collect();
    let ids: Vec<String> = (0..1_000).map(|i| format!("c{i:04}")).collect();
    let dir = |i: usize, id: &str| Env::rel_dir("acme", 1 + (i % 3) as u32, id);
    for (i, id) in ids.iter().enumerate() {
        env.conversation("acme", 1 + (i % 3) as u32, id, &files);
    }
    copy_tree(&env.root(), &top(&server));
    ok(&env, &["index"]);
    enabled_policy(&env);

    let (code, report) = sweep(&env);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        (&report["deleted"], &report["failed"]),
        (&9_000.into(), &0.into()),
        "{report}"
    );
    let mut deleted: Vec<(String, String)> = deletions(&env)
        .into_iter()
        .map(|(id, file, _)| (id, file))
        .collect();
    deleted.sort();
    let mut expected: Vec<(String, String)> = ids
        .iter()
        .flat_map(|id| names.iter().map(move |n| (id.clone(), n.clone())))
        .collect();
    expected.sort();
    assert_eq!(deleted, expected, "one event per artifact");
    let top = top(&server);
    let left = ids
        .iter()
        .enumerate()
        .flat_map(|(i, id)| {
            names
                .iter()
                .map(|n| top.join(dir(i, id)).join(n))
                .collect::<Vec<_>>()
        })
        .filter(|p| p.exists())
        .count();
    assert_eq!(left, 0);
    audit_verifies(&env);
    let (code, again) = sweep(&env);
    assert_eq!((code, &again["deleted"]), (0, &0.into()), "{again}");
}

#[test]
fn a_sweep_killed_mid_delete_objects_is_completed_once_by_the_next_with_one_event_each() {
    let server = S3Server::start_listed(Some(BUCKET));
    let env = store_env(&server.endpoint, BUCKET);
    env.conversation(
        "acme",
        1,
        "c1",
        &[("a.wav", b"RIFF-1"), ("b.wav", b"RIFF-2")],
    );
    env.conversation("acme", 2, "c2", &[("a.wav", b"RIFF-3")]);
    env.conversation("globex", 2, "g1", &[("a.wav", b"RIFF-4")]);
    copy_tree(&env.root(), &top(&server));
    ok(&env, &["index"]);
    enabled_policy(&env);
    let artifacts = [
        ("acme", 1, "c1", "a.wav"),
        ("acme", 1, "c1", "b.wav"),
        ("acme", 2, "c2", "a.wav"),
        ("globex", 2, "g1", "a.wav"),
    ]
    .map(|(tenant, day, id, file)| top(&server).join(Env::rel_dir(tenant, day, id)).join(file));

    // The store deletes the batch, and the answer never comes: the sweep is killed waiting.
    server.hang_next_write();
    let mut child = env
        .command(&["run", "lifecycle", "--no-index"])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.answers_withheld() == 0 {
        assert!(
            Instant::now() < deadline,
            "the sweep never sent its deletes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        artifacts.iter().all(|a| !a.exists()),
        "the store deleted the batch"
    );
    assert!(
        deletions(&env).is_empty(),
        "nothing recorded by the killed sweep"
    );

    let (code, report) = sweep(&env);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        (
            &report["resumed"],
            &report["deleted"],
            &report["already_missing"]
        ),
        (&4.into(), &4.into(), &4.into()),
        "{report}"
    );
    let deleted = deletions(&env);
    let once: BTreeSet<_> = deleted.iter().map(|(c, f, _)| (c, f)).collect();
    assert_eq!(
        (deleted.len(), once.len()),
        (4, 4),
        "each artifact once: {deleted:?}"
    );
    assert!(deleted.iter().all(|(_, _, missing)| *missing));
    audit_verifies(&env);
    let (code, again) = sweep(&env);
    assert_eq!((code, &again["deleted"]), (0, &0.into()), "{again}");
    assert_eq!(deletions(&env).len(), 4);
}

/// Uploads every file under `dir` into `bucket` under `PREFIX`, keyed by its path below `dir`.
fn upload(moto: &Moto, bucket: &str, dir: &Path, below: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            upload(moto, bucket, &path, below);
            continue;
        }
        let key = format!(
            "{PREFIX}{}",
            path.strip_prefix(below).unwrap().to_str().unwrap()
        );
        put(moto, bucket, &key, std::fs::read(&path).unwrap(), None);
    }
}

/// Stores `body` at `key`, under Object Lock in compliance mode until `locked_until` if given.
fn put(moto: &Moto, bucket: &str, key: &str, body: Vec<u8>, locked_until: Option<i64>) {
    let mut request = moto
        .client
        .put_object()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from(body));
    if let Some(until) = locked_until {
        request = request
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(SdkDateTime::from_secs(until));
    }
    moto.runtime.block_on(request.send()).unwrap();
}

/// Every version and delete marker in `bucket` whose key is not a record.
fn artifact_versions(moto: &Moto, bucket: &str) -> Vec<String> {
    let out = moto
        .runtime
        .block_on(moto.client.list_object_versions().bucket(bucket).send())
        .unwrap();
    let versions = out.versions().iter().filter_map(|v| v.key());
    let markers = out.delete_markers().iter().filter_map(|m| m.key());
    let mut keys: Vec<String> = versions
        .chain(markers)
        .filter(|k| !k.ends_with("conversation.json"))
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys
}

#[test]
fn in_a_versioned_bucket_a_retention_delete_removes_every_version_not_just_adds_a_marker() {
    let moto = Moto::start();
    let bucket = "versioned";
    moto.bucket(bucket, false);
    moto.runtime
        .block_on(
            moto.client
                .put_bucket_versioning()
                .bucket(bucket)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send(),
        )
        .unwrap();
    let env = store_env(&moto.endpoint, bucket);
    env.conversation(
        "acme",
        1,
        "c1",
        &[("a.wav", b"RIFF-1"), ("b.wav", b"RIFF-2")],
    );
    env.conversation("acme", 2, "c2", &[("a.wav", b"RIFF-3")]);
    let c1_a = format!("{PREFIX}{}/a.wav", Env::rel_dir("acme", 1, "c1"));
    let c2_a = format!("{PREFIX}{}/a.wav", Env::rel_dir("acme", 2, "c2"));
    // An older version of c1's a.wav under the current one.
    put(&moto, bucket, &c1_a, b"RIFF-0".to_vec(), None);
    upload(&moto, bucket, &env.root(), &env.root());
    ok(&env, &["index"]);
    // c2's a.wav deleted the plain way since: a delete marker hides its data.
    moto.runtime
        .block_on(moto.client.delete_object().bucket(bucket).key(&c2_a).send())
        .unwrap();
    enabled_policy(&env);
    assert_eq!(artifact_versions(&moto, bucket).len(), 5);

    let (code, report) = sweep(&env);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        (&report["deleted"], &report["already_missing"]),
        (&3.into(), &1.into()),
        "{report}"
    );
    assert_eq!(
        artifact_versions(&moto, bucket),
        Vec::<String>::new(),
        "no version and no delete marker of a deleted artifact remains"
    );
    assert_eq!(moto.versions(bucket).len(), 2, "the records stay");
    assert_eq!(deletions(&env).len(), 3);
    audit_verifies(&env);
}

#[test]
fn a_version_object_lock_protects_fails_its_artifact_which_stays_due() {
    let moto = Moto::start();
    let bucket = "locked";
    moto.bucket(bucket, true);
    let env = store_env(&moto.endpoint, bucket);
    env.conversation("acme", 1, "c1", &[("a.wav", b"RIFF-1")]);
    env.conversation("acme", 2, "c2", &[("a.wav", b"RIFF-2")]);
    upload(&moto, bucket, &env.root(), &env.root());
    let c1_a = format!("{PREFIX}{}/a.wav", Env::rel_dir("acme", 1, "c1"));
    let tomorrow = chrono::Utc::now().timestamp() + 86_400;
    put(&moto, bucket, &c1_a, b"RIFF-1".to_vec(), Some(tomorrow));
    ok(&env, &["index"]);
    enabled_policy(&env);

    let (code, report) = sweep(&env);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        (&report["deleted"], &report["failed"]),
        (&1.into(), &1.into()),
        "{report}"
    );
    let failure = report["failures"][0].as_str().unwrap();
    assert!(
        failure.contains(&c1_a) && failure.contains("stays due"),
        "{failure}"
    );
    assert_eq!(deletions(&env), [("c2".into(), "a.wav".into(), false)]);
    assert!(
        artifact_versions(&moto, bucket).iter().all(|k| *k == c1_a),
        "c2's artifact is gone, c1's locked one is kept"
    );
    let out = run(&env, &["--json", "plan", "lifecycle"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan[0]["artifacts"], 1, "still due: {plan}");
    audit_verifies(&env);
}

#[test]
fn a_quarantine_window_with_a_repository_in_a_bucket_is_refused_naming_the_key() {
    let server = S3Server::start_listed(Some(BUCKET));
    let env = store_env(&server.endpoint, BUCKET);
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{config}quarantine_days = 7\n"));
    for args in [&["run", "lifecycle"][..], &["plan", "lifecycle"]] {
        let out = run(&env, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let said = text(&out);
        assert!(
            said.contains("lifecycle.quarantine_days")
                && said.contains("needs a repository in a directory"),
            "{said}"
        );
    }
}

#[test]
fn a_sweep_through_a_client_that_cannot_tell_versions_is_refused_before_deleting() {
    let server = S3Server::start_listed(Some(BUCKET));
    let env = store_env(&server.endpoint, BUCKET);
    env.conversation("acme", 1, "c1", &[("a.wav", b"RIFF-1")]);
    copy_tree(&env.root(), &top(&server));
    ok(&env, &["index"]);
    enabled_policy(&env);
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&config.replace("client = \"aws_sdk\"", "client = \"object_store\""));
    let out = run(&env, &["run", "lifecycle", "--no-index"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("set `client = \"aws_sdk\"` in [repository]"),
        "{}",
        text(&out)
    );
    let c1 = top(&server).join(Env::rel_dir("acme", 1, "c1"));
    assert!(c1.join("a.wav").exists());
    assert!(deletions(&env).is_empty());
}
