//! WORM exports: an S3 target with `object_lock`, against moto (PyPI `moto[server]`), which
//! enforces Object Lock: retention modes and dates, legal holds, and refused deletes of locked
//! versions. `bash scripts/test.sh` installs it; the tests start `moto_server` on loopback.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::types::{ObjectLockLegalHoldStatus, ObjectLockMode, ObjectLockRetention};

use crate::common::{Env, text};

/// Days the targets in these tests retain objects for.
const DAYS: i64 = 3650;

/// moto's S3 server on a free loopback port; it stops when dropped.
pub(crate) struct Moto {
    child: Child,
    pub(crate) endpoint: String,
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) client: aws_sdk_s3::Client,
    /// The server's log: one line per request it served.
    log: tempfile::NamedTempFile,
}

fn moto_server() -> PathBuf {
    let home = std::env::var_os("CUSTODIAN_MOTO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/custodian-moto")
        });
    let server = home.join("bin/moto_server");
    assert!(
        server.exists(),
        "{} is missing: run `bash scripts/test.sh`, which installs moto[server] from PyPI",
        server.display()
    );
    server
}

impl Moto {
    pub(crate) fn start() -> Moto {
        let log = tempfile::NamedTempFile::new().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let endpoint = format!("http://127.0.0.1:{port}");
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .build();
        Moto {
            child,
            endpoint,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: aws_sdk_s3::Client::from_conf(config),
            log,
        }
    }

    /// The request lines the server has logged so far (`GET /bucket/key HTTP/1.1` …).
    pub(crate) fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.log.path())
            .unwrap()
            .lines()
            .filter(|l| l.contains(" HTTP/1.1\""))
            .map(str::to_owned)
            .collect()
    }

    pub(crate) fn bucket(&self, name: &str, object_lock: bool) {
        self.runtime
            .block_on(
                self.client
                    .create_bucket()
                    .bucket(name)
                    .object_lock_enabled_for_bucket(object_lock)
                    .send(),
            )
            .unwrap();
    }

    /// Every object version in `bucket`, as (key, version id).
    pub(crate) fn versions(&self, bucket: &str) -> Vec<(String, String)> {
        let out = self
            .runtime
            .block_on(self.client.list_object_versions().bucket(bucket).send())
            .unwrap();
        let mut v: Vec<_> = out
            .versions()
            .iter()
            .map(|v| {
                (
                    v.key().unwrap().to_owned(),
                    v.version_id().unwrap().to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    }

    pub(crate) fn head(
        &self,
        bucket: &str,
        key: &str,
    ) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
        self.runtime
            .block_on(self.client.head_object().bucket(bucket).key(key).send())
            .unwrap_or_else(|e| panic!("{key}: {e:?}"))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn worm_env(moto: &Moto, bucket: &str, mode: &str) -> Env {
    let env = Env::new("");
    env.write_config(&format!(
        r#"[catalog]
url = "sqlite:catalog.db"

[repository]
root = "repo"

[targets.worm]
kind = "s3"
bucket = "{bucket}"
prefix = "exports"
region = "us-east-1"
endpoint = "{}"
path_style = true
part_size_mib = 5
object_lock = {{ mode = "{mode}", retain_days = {DAYS} }}

[policies.export]
action = "export"
target = "worm"
"#,
        moto.endpoint
    ));
    env
}

fn run(env: &Env, args: &[&str]) -> Output {
    env.command(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(out)))
}

/// Points `env`'s config at a port nothing listens on instead of `moto`; returns the config
/// as it was.
fn unreachable_store(env: &Env, moto: &Moto) -> String {
    let good = std::fs::read_to_string(env.config()).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    env.write_config(&good.replace(&moto.endpoint, &dead));
    good
}

/// Puts the conversation `dir` under legal hold through its record's flag.
fn flag_legal_hold(dir: &std::path::Path) {
    let path = dir.join("conversation.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    record["flags"] = serde_json::json!({ "legal_hold": true });
    std::fs::write(&path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
}

/// The retain-until date of a conversation of `Env::conversation` made on `day`.
fn retain_until(day: u32) -> i64 {
    let end =
        chrono::DateTime::parse_from_rfc3339(&format!("2026-01-{day:02}T10:05:00+00:00")).unwrap();
    (end + chrono::Duration::days(DAYS)).timestamp()
}

fn big(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31) % 251) as u8)
        .collect()
}

#[test]
fn a_worm_export_locks_every_object_holds_held_ones_and_a_rerun_writes_nothing() {
    let moto = Moto::start();
    moto.bucket("worm", true);
    let env = worm_env(&moto, "worm", "compliance");
    env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-one")]);
    let held = env.conversation("acme", 2, "c2", &[("call.wav", b"RIFF-two")]);
    flag_legal_hold(&held);
    // Larger than a part: a multipart upload, whose retention goes on its creation.
    env.conversation("acme", 3, "c3", &[("big.wav", &big(6_000_000))]);
    let out = run(&env, &["--json", "run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["counters"]["exported"], 3, "{}", text(&out));

    for (day, id, file) in [
        (1, "c1", "call.wav"),
        (2, "c2", "call.wav"),
        (3, "c3", "big.wav"),
    ] {
        for name in [file, "conversation.json"] {
            let key = format!("exports/acme/2026/01/{day:02}/{id}/{name}");
            let head = moto.head("worm", &key);
            assert_eq!(
                head.object_lock_mode(),
                Some(&ObjectLockMode::Compliance),
                "{key}"
            );
            assert_eq!(
                head.object_lock_retain_until_date().map(|d| d.secs()),
                Some(retain_until(day)),
                "{key}"
            );
            let hold = if day == 2 {
                ObjectLockLegalHoldStatus::On
            } else {
                ObjectLockLegalHoldStatus::Off
            };
            assert_eq!(
                head.object_lock_legal_hold_status()
                    .unwrap_or(&ObjectLockLegalHoldStatus::Off),
                &hold,
                "{key}"
            );
        }
    }
    let versions = moto.versions("worm");
    let manifests: Vec<_> = versions
        .iter()
        .filter(|(k, _)| k.starts_with("exports/_custodian/manifests/") && k.ends_with(".jsonl"))
        .collect();
    assert_eq!(manifests.len(), 1, "{versions:?}");
    let manifest = moto.head("worm", &manifests[0].0);
    assert_eq!(
        manifest.object_lock_mode(),
        Some(&ObjectLockMode::Compliance)
    );

    // The lock is real: the store refuses to delete a locked version.
    let (key, version) = versions
        .iter()
        .find(|(k, _)| k.ends_with("c1/call.wav"))
        .unwrap();
    let deleted = moto.runtime.block_on(
        moto.client
            .delete_object()
            .bucket("worm")
            .key(key)
            .version_id(version)
            .send(),
    );
    assert!(deleted.is_err(), "a locked version was deleted");
    assert!(
        moto.versions("worm")
            .contains(&(key.clone(), version.clone()))
    );

    let verify = run(&env, &["verify", &json(&out)["run"].to_string()]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    assert!(text(&verify).contains("all match"), "{}", text(&verify));

    // A full rerun finds every object stored with the same SHA-256: no new version of any.
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{config}mode = \"full\"\n"));
    let again = run(&env, &["--json", "run", "export"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(json(&again)["counters"]["exported"], 3, "{}", text(&again));
    assert_eq!(json(&again)["counters"]["failed"], 0, "{}", text(&again));
    let after: Vec<_> = moto
        .versions("worm")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("exports/_custodian/"))
        .collect();
    let before: Vec<_> = versions
        .into_iter()
        .filter(|(k, _)| !k.starts_with("exports/_custodian/"))
        .collect();
    assert_eq!(after, before);
}

#[test]
fn another_object_under_a_locked_key_fails_the_item_and_is_not_overwritten() {
    let moto = Moto::start();
    moto.bucket("worm", true);
    let env = worm_env(&moto, "worm", "governance");
    env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-one")]);
    let out = run(&env, &["--json", "run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let before = moto.versions("worm");

    // The recording changes in the repository: the export would write other bytes under the
    // same key, which a locked bucket must never be asked to take.
    env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-changed")]);
    let again = run(&env, &["--json", "run", "export"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    let msg = text(&again);
    assert!(
        msg.contains("exports/acme/2026/01/01/c1/call.wav")
            || msg.contains("acme/2026/01/01/c1/call.wav"),
        "{msg}"
    );
    assert!(msg.contains("never overwrites a locked object"), "{msg}");
    let after: Vec<_> = moto
        .versions("worm")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("exports/_custodian/"))
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|(k, _)| !k.starts_with("exports/_custodian/"))
        .collect();
    assert_eq!(after, before);
}

#[test]
fn a_bucket_without_object_lock_is_refused_before_any_work() {
    let moto = Moto::start();
    moto.bucket("plain", false);
    let env = worm_env(&moto, "plain", "compliance");
    env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-one")]);
    let out = run(&env, &["run", "export"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains("s3://plain/exports/"), "{msg}");
    assert!(msg.contains("does not have Object Lock enabled"), "{msg}");
    assert!(moto.versions("plain").is_empty());
}

#[test]
fn verify_reports_a_retention_shortened_since_it_was_written() {
    let moto = Moto::start();
    moto.bucket("worm", true);
    let env = worm_env(&moto, "worm", "governance");
    env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-one")]);
    env.conversation("acme", 2, "c2", &[("call.wav", b"RIFF-two")]);
    let out = run(&env, &["--json", "run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run_id = json(&out)["run"].to_string();
    let verify = run(&env, &["verify", &run_id]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));

    // Governance mode lets a user with the bypass permission shorten a retention.
    let key = "exports/acme/2026/01/02/c2/call.wav";
    let shorter = aws_sdk_s3::primitives::DateTime::from_secs(retain_until(2) - 86_400);
    moto.runtime
        .block_on(
            moto.client
                .put_object_retention()
                .bucket("worm")
                .key(key)
                .bypass_governance_retention(true)
                .retention(
                    ObjectLockRetention::builder()
                        .mode(ObjectLockMode::Governance.as_str().into())
                        .retain_until_date(shorter)
                        .build(),
                )
                .send(),
        )
        .unwrap();
    let verify = run(&env, &["verify", &run_id]);
    assert_ne!(verify.status.code(), Some(0), "{}", text(&verify));
    let msg = text(&verify);
    assert!(msg.contains("acme/2026/01/02/c2/call.wav"), "{msg}");
    assert!(msg.contains("its retention was shortened"), "{msg}");
    assert!(!msg.contains("c1/call.wav"), "{msg}");
}

const HOLD_GRANTS: &str = r#"["LEGAL_HOLD_READ", "LEGAL_HOLD_MANAGE"]"#;
const RELEASE: [&str; 2] = ["--acknowledge", "hold-release"];

/// [`worm_env`] whose every user may place and release legal holds.
fn worm_hold_env(moto: &Moto, bucket: &str, mode: &str) -> Env {
    let env = worm_env(moto, bucket, mode);
    std::fs::write(
        env.path().join("roles.toml"),
        format!("[users]\n\"*\" = {HOLD_GRANTS}\n"),
    )
    .unwrap();
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{config}\n[lifecycle]\nroles = \"roles.toml\"\n"));
    env
}

/// Runs `args` and wants exit 0; its `--json` output.
fn hold(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "hold"];
    all.extend_from_slice(args);
    let out = run(env, &all);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    json(&out)
}

/// The legal-hold status of the objects of conversation `id` made on January `day`.
fn statuses(moto: &Moto, bucket: &str, day: u32, id: &str) -> [ObjectLockLegalHoldStatus; 2] {
    ["call.wav", "conversation.json"].map(|name| {
        let key = format!("exports/acme/2026/01/{day:02}/{id}/{name}");
        moto.head(bucket, &key)
            .object_lock_legal_hold_status()
            .cloned()
            .unwrap_or(ObjectLockLegalHoldStatus::Off)
    })
}

const ON: [ObjectLockLegalHoldStatus; 2] =
    [ObjectLockLegalHoldStatus::On, ObjectLockLegalHoldStatus::On];
const OFF: [ObjectLockLegalHoldStatus; 2] = [
    ObjectLockLegalHoldStatus::Off,
    ObjectLockLegalHoldStatus::Off,
];

impl Moto {
    /// Deletes one version, bypassing governance retention when `bypass`.
    fn delete_version(&self, bucket: &str, key: &str, bypass: bool) -> bool {
        let version = self
            .versions(bucket)
            .into_iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("no version of {key}"))
            .1;
        self.runtime
            .block_on(
                self.client
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .version_id(version)
                    .bypass_governance_retention(bypass)
                    .send(),
            )
            .is_ok()
    }
}

fn status_events(env: &Env) -> Vec<serde_json::Value> {
    let out = run(
        env,
        &[
            "--json",
            "audit",
            "list",
            "--kind",
            "legal_hold_status_set",
            "--limit",
            "1000",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    json(&out).as_array().unwrap().clone()
}

#[test]
fn a_matter_hold_placed_before_export_locks_held_objects_under_legal_hold_on() {
    let moto = Moto::start();
    moto.bucket("worm", true);
    let env = worm_hold_env(&moto, "worm", "compliance");
    env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-one")]);
    env.conversation("acme", 2, "c2", &[("call.wav", b"RIFF-two")]);
    let indexed = run(&env, &["index"]);
    assert_eq!(indexed.status.code(), Some(0), "{}", text(&indexed));
    hold(&env, &["create", "smith-v-acme"]);
    let placed = hold(&env, &["add", "smith-v-acme", "--conversation", "acme/c2"]);
    // Nothing exported yet: nothing to sync.
    assert_eq!(placed["sync"]["on"], 0, "{placed}");

    let out = run(&env, &["--json", "run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(statuses(&moto, "worm", 2, "c2"), ON);
    assert_eq!(statuses(&moto, "worm", 1, "c1"), OFF);

    // A held version cannot be deleted, and neither can a compliance-retained one, even by a
    // caller asking to bypass governance retention.
    let held = "exports/acme/2026/01/02/c2/call.wav";
    let retained = "exports/acme/2026/01/01/c1/call.wav";
    assert!(
        !moto.delete_version("worm", held, true),
        "a held version was deleted"
    );
    assert!(
        !moto.delete_version("worm", retained, true),
        "a compliance-retained version was deleted"
    );
    let keys: Vec<String> = moto.versions("worm").into_iter().map(|(k, _)| k).collect();
    assert!(keys.iter().any(|k| k == held) && keys.iter().any(|k| k == retained));
}

#[test]
fn holds_placed_and_released_after_export_turn_legal_hold_on_and_off() {
    let moto = Moto::start();
    moto.bucket("worm", true);
    let env = worm_hold_env(&moto, "worm", "governance");
    env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-one")]);
    env.conversation("acme", 2, "c2", &[("call.wav", b"RIFF-two")]);
    env.conversation("acme", 3, "c3", &[("call.wav", b"RIFF-three")]);
    let out = run(&env, &["--json", "run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for (day, id) in [(1, "c1"), (2, "c2"), (3, "c3")] {
        assert_eq!(statuses(&moto, "worm", day, id), OFF, "{id}");
    }

    hold(&env, &["create", "smith-v-acme"]);
    let placed = hold(
        &env,
        &[
            "add",
            "smith-v-acme",
            "--conversation",
            "acme/c1",
            "--conversation",
            "acme/c2",
        ],
    );
    assert_eq!(placed["sync"]["on"], 4, "{placed}");
    assert_eq!(placed["sync"]["conversations"], 2, "{placed}");
    assert_eq!(statuses(&moto, "worm", 1, "c1"), ON);
    assert_eq!(statuses(&moto, "worm", 2, "c2"), ON);
    assert_eq!(statuses(&moto, "worm", 3, "c3"), OFF);

    // Governance retention yields to a bypass; a legal hold does not.
    assert!(!moto.delete_version("worm", "exports/acme/2026/01/01/c1/call.wav", true));
    assert!(moto.delete_version("worm", "exports/acme/2026/01/03/c3/call.wav", true));

    // A standing hold of another matter also covers c2 (January 2).
    hold(&env, &["create", "jones-v-acme"]);
    let standing = hold(
        &env,
        &[
            "add",
            "jones-v-acme",
            "--tenant",
            "acme",
            "--start-after",
            "2026-01-02T00:00:00Z",
            "--start-before",
            "2026-01-03T00:00:00Z",
        ],
    );
    assert_eq!(standing["sync"]["on"], 2, "{standing}");

    // Releasing the first matter turns c1 OFF; c2 stays ON under the second.
    let released = hold(&env, &["release", "smith-v-acme", RELEASE[0], RELEASE[1]]);
    assert_eq!(released["sync"]["off"], 2, "{released}");
    assert_eq!(released["sync"]["on"], 2, "{released}");
    assert_eq!(statuses(&moto, "worm", 1, "c1"), OFF);
    assert_eq!(statuses(&moto, "worm", 2, "c2"), ON);
    let released = hold(&env, &["release", "jones-v-acme", RELEASE[0], RELEASE[1]]);
    assert_eq!(released["sync"]["off"], 2, "{released}");
    assert_eq!(statuses(&moto, "worm", 2, "c2"), OFF);

    // Each status set is audited with its target and key.
    let events = status_events(&env);
    assert_eq!(events.len(), 4 + 2 + 4 + 2, "{events:?}");
    assert!(events.iter().any(|e| e["conversation_id"] == "c1"
        && e["details"]["key"] == "acme/2026/01/01/c1/call.wav"
        && e["details"]["target"] == "worm"
        && e["details"]["legal_hold"] == "OFF"));
    let synced = hold(&env, &["sync"]);
    assert_eq!(synced["conversations"], 0, "{synced}");
}

#[test]
fn a_legal_hold_flag_the_recorder_sets_after_export_reaches_the_locked_objects() {
    let moto = Moto::start();
    moto.bucket("worm", true);
    let env = worm_hold_env(&moto, "worm", "governance");
    let dir = env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-one")]);
    env.conversation("acme", 2, "c2", &[("call.wav", b"RIFF-two")]);
    let out = run(&env, &["--json", "run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(statuses(&moto, "worm", 1, "c1"), OFF);

    // The index that reads the changed flag sets the objects' status itself.
    flag_legal_hold(&dir);
    let indexed = run(&env, &["--json", "index"]);
    assert_eq!(indexed.status.code(), Some(0), "{}", text(&indexed));
    assert_eq!(
        json(&indexed)["legal_hold_statuses_set"],
        2,
        "{}",
        text(&indexed)
    );
    assert_eq!(statuses(&moto, "worm", 1, "c1"), ON);
    assert_eq!(statuses(&moto, "worm", 2, "c2"), OFF);
    assert!(!moto.delete_version("worm", "exports/acme/2026/01/01/c1/call.wav", true));
    assert_eq!(status_events(&env).len(), 2);
    assert_eq!(
        hold(&env, &["sync"])["conversations"],
        0,
        "nothing left queued"
    );
}

#[test]
fn a_recorder_flag_the_index_cannot_take_to_the_store_stays_queued_for_hold_sync() {
    let moto = Moto::start();
    moto.bucket("worm", true);
    let env = worm_hold_env(&moto, "worm", "governance");
    let dir = env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-one")]);
    let out = run(&env, &["--json", "run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    flag_legal_hold(&dir);
    let good = unreachable_store(&env, &moto);
    let indexed = run(&env, &["index"]);
    assert_eq!(indexed.status.code(), Some(0), "{}", text(&indexed));
    let msg = text(&indexed);
    assert!(msg.contains("legal-hold status not set: acme/c1"), "{msg}");
    assert!(msg.contains("custodian hold sync"), "{msg}");
    assert_eq!(statuses(&moto, "worm", 1, "c1"), OFF);

    env.write_config(&good);
    let synced = hold(&env, &["sync"]);
    assert_eq!(synced["conversations"], 1, "{synced}");
    assert_eq!(synced["on"], 2, "{synced}");
    assert_eq!(statuses(&moto, "worm", 1, "c1"), ON);
}

#[test]
fn a_release_the_store_refused_stays_queued_until_hold_sync_finishes_it() {
    let moto = Moto::start();
    moto.bucket("worm", true);
    let env = worm_hold_env(&moto, "worm", "governance");
    env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-one")]);
    let out = run(&env, &["--json", "run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    hold(&env, &["create", "m"]);
    hold(&env, &["add", "m", "--conversation", "acme/c1"]);
    assert_eq!(statuses(&moto, "worm", 1, "c1"), ON);

    // The store cannot be reached when the hold is released: the release is committed, the
    // objects keep their hold, and the conversation stays queued.
    let good = unreachable_store(&env, &moto);
    let out = run(&env, &["hold", "release", "m", RELEASE[0], RELEASE[1]]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains("released 1 hold(s) of matter `m`"), "{msg}");
    assert!(msg.contains("left queued: acme/c1"), "{msg}");
    assert!(msg.contains("custodian hold sync"), "{msg}");
    assert_eq!(statuses(&moto, "worm", 1, "c1"), ON);
    assert!(status_events(&env).len() == 2);

    // A sync against a store still down leaves it queued again; once it is back, it finishes.
    let out = run(&env, &["hold", "sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    env.write_config(&good);
    let synced = hold(&env, &["sync"]);
    assert_eq!(synced["off"], 2, "{synced}");
    assert_eq!(synced["left"], serde_json::json!([]), "{synced}");
    assert_eq!(statuses(&moto, "worm", 1, "c1"), OFF);
    assert_eq!(hold(&env, &["sync"])["conversations"], 0);
}
