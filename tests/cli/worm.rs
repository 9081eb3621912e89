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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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
        }
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

    fn head(
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
