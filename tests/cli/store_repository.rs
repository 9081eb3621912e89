//! A repository in a bucket: `custodian index` of an S3 repository served by s3s-fs on
//! 127.0.0.1 (with its own listings, tests/support/listed_fs.rs), through both S3 clients,
//! against the same tree indexed on disk; hostile keys; a missing bucket. Azure (Azurite) and
//! GCS (fake-gcs-server) repositories, uploaded by custodian's own export, index the same.

use std::path::Path;
use std::process::Output;

use crate::common::{Env, text};
use crate::s3::{CLIENTS, S3Server, SECRET_KEY, run, run_as};

const BUCKET: &str = "recordings";
const PREFIX: &str = "site-a/";

/// An installation whose repository is `PREFIX` in `BUCKET` of `server`, read with `client`;
/// `extra` goes into its `[repository]` table.
fn store_env(server: &S3Server, client: &str, extra: &str) -> Env {
    let env = Env::new("");
    env.write_config(&format!(
        r#"[catalog]
url = "sqlite:catalog.db"

[repository]
kind = "s3"
bucket = "{BUCKET}"
prefix = "{PREFIX}"
region = "us-east-1"
endpoint = "{}"
path_style = true
client = "{client}"
{extra}

[targets.archive]
kind = "filesystem"
path = "archive"

[policies.export]
action = "export"
target = "archive"
"#,
        server.endpoint
    ));
    env
}

/// Where the repository's top lies in the server's directory.
fn top(server: &S3Server) -> std::path::PathBuf {
    server.root.join(BUCKET).join(PREFIX.trim_end_matches('/'))
}

pub(crate) fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Writes the repository these tests index into `env`'s: acme on two days, globex on one.
fn fill(env: &Env) {
    env.conversation("acme", 1, "c1", &[("a.wav", b"one")]);
    env.conversation("acme", 1, "c2", &[("a.wav", b"two")]);
    env.conversation("acme", 2, "c3", &[("a.wav", b"three")]);
    env.conversation("globex", 2, "g1", &[("a.wav", b"four"), ("b.wav", b"five")]);
}

/// [`fill`]'s repository on disk.
fn disk_repository() -> Env {
    let disk = Env::new("");
    fill(&disk);
    disk
}

#[cfg(any(feature = "azure", feature = "gcs"))]
/// An installation whose repository is `table` (the keys of a store's `[repository]`).
fn repository_env(table: &str) -> Env {
    let env = Env::new("");
    env.write_config(&format!(
        "[catalog]\nurl = \"sqlite:catalog.db\"\n\n[repository]\n{table}\n"
    ));
    env
}

#[cfg(any(feature = "azure", feature = "gcs"))]
/// Uploads [`fill`]'s repository with `put` (a key relative to the repository's top and its
/// bytes), then `store` indexes it twice: like the tree on disk, then nothing changed.
fn index_uploaded(store: &Env, put: impl Fn(&str, &[u8]), run: impl Fn(&Env, &[&str]) -> Output) {
    let disk = disk_repository();
    let out = disk.run(&["index"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    upload(&disk.root(), "", &put);
    let out = run(store, &["--json", "index"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("index --json ({e}): {}", text(&out)));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(counts(&report), [4, 4, 0, 0], "{report}");
    assert_eq!(catalog_rows(store), catalog_rows(&disk));
    let out = run(store, &["--json", "index"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counts(&report), [4, 0, 4, 0], "{report}");
}

#[cfg(any(feature = "azure", feature = "gcs"))]
/// Every file under `dir` (whose key is `key`, empty or ending in `/`) through `put`.
fn upload(dir: &Path, key: &str, put: &impl Fn(&str, &[u8])) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = format!("{key}{}", entry.file_name().to_str().unwrap());
        if entry.file_type().unwrap().is_dir() {
            upload(&entry.path(), &format!("{name}/"), put);
        } else {
            put(&name, &std::fs::read(entry.path()).unwrap());
        }
    }
}

/// What the catalog of `env` holds of each conversation, its participants and artifacts,
/// without the fingerprint (a file's mtime on disk, an ETag's digest in a store).
fn catalog_rows(env: &Env) -> Vec<String> {
    let db = rusqlite::Connection::open(env.path().join("catalog.db")).unwrap();
    let mut rows = Vec::new();
    for sql in [
        "SELECT rel_dir || '|' || day || '|' || json_size || '|' || tenant || '|' || id || '|' || kind
            || '|' || direction || '|' || start_ms || '|' || duration_ms FROM conversations",
        "SELECT c.id || '|' || p.ordinal || '|' || p.user_name || '|' || p.role
            FROM participants p JOIN conversations c ON c.pk = p.conversation",
        "SELECT c.id || '|' || a.ordinal || '|' || a.file || '|' || a.size || '|' || a.sha256
            FROM artifacts a JOIN conversations c ON c.pk = a.conversation",
    ] {
        let mut statement = db.prepare(sql).unwrap();
        let found = statement
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap);
        rows.extend(found);
    }
    rows.sort();
    rows
}

fn index_json(env: &Env) -> (Output, serde_json::Value) {
    let out = run(env, &["--json", "index"]);
    let value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("index --json ({e}): {}", text(&out)));
    (out, value)
}

/// (seen, indexed, unchanged, removed) of an index report.
fn counts(report: &serde_json::Value) -> [u64; 4] {
    ["seen", "indexed", "unchanged", "removed"].map(|k| report[k].as_u64().unwrap())
}

#[test]
fn an_s3_repository_indexes_like_the_same_tree_on_disk_and_rereads_only_what_changed() {
    let disk = disk_repository();
    let out = disk.run(&["index"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for client in CLIENTS {
        let server = S3Server::start_listed(Some(BUCKET));
        copy_tree(&disk.root(), &top(&server));
        let env = store_env(&server, client, "");
        let (out, report) = index_json(&env);
        assert_eq!(out.status.code(), Some(0), "{client}: {}", text(&out));
        assert_eq!(counts(&report), [4, 4, 0, 0], "{client}: {report}");
        assert_eq!(catalog_rows(&env), catalog_rows(&disk), "{client}");

        let (_, report) = index_json(&env);
        assert_eq!(counts(&report), [4, 0, 4, 0], "{client}: nothing changed");

        // The same size, other bytes: only the ETag tells.
        let c1 = top(&server).join("acme/2026/01/01/c1/conversation.json");
        let record = std::fs::read_to_string(&c1).unwrap();
        std::fs::write(&c1, record.replace("alice", "alina")).unwrap();
        std::fs::remove_dir_all(top(&server).join("acme/2026/01/02")).unwrap();
        let (out, report) = index_json(&env);
        assert_eq!(out.status.code(), Some(0), "{client}: {}", text(&out));
        assert_eq!(counts(&report), [3, 1, 2, 1], "{client}: {report}");
        let rows = catalog_rows(&env);
        assert!(rows.contains(&"c1|0|alina|agent".to_owned()), "{rows:?}");
        assert!(!rows.iter().any(|r| r.contains("|c3|")), "{rows:?}");
    }
}

#[test]
fn hostile_keys_in_an_s3_repository_fail_alone_naming_their_key() {
    for client in CLIENTS {
        let server = S3Server::start_listed(Some(BUCKET));
        let disk = Env::new("");
        disk.conversation("acme", 1, "good", &[("a.wav", b"x")]);
        // A conversation directory whose name holds a control character, on a day of its
        // own: object_store's client cannot list such a key, and fails its whole day.
        disk.conversation("acme", 2, "good2", &[("a.wav", b"x")]);
        disk.conversation("acme", 2, "bad\tname", &[("a.wav", b"x")]);
        // A record one level too deep, and one directly in a day.
        let deep = disk.conversation("acme", 1, "deep", &[("a.wav", b"x")]);
        std::fs::create_dir(deep.join("sub")).unwrap();
        std::fs::rename(
            deep.join("conversation.json"),
            deep.join("sub/conversation.json"),
        )
        .unwrap();
        // globex's record stored under acme.
        let stolen = disk.conversation("globex", 1, "stolen", &[("a.wav", b"x")]);
        let acme_day = disk.root().join("acme/2026/01/01");
        std::fs::rename(&stolen, acme_day.join("stolen")).unwrap();
        // A record over max_record_bytes.
        let big = disk.conversation("acme", 1, "big", &[("a.wav", b"x")]);
        let padded = format!(
            "{}{}",
            std::fs::read_to_string(big.join("conversation.json")).unwrap(),
            " ".repeat(2000)
        );
        std::fs::write(big.join("conversation.json"), padded).unwrap();
        copy_tree(&disk.root(), &top(&server));

        let env = store_env(&server, client, "max_record_bytes = 1024");
        let (out, report) = index_json(&env);
        assert_eq!(out.status.code(), Some(1), "{client}: {}", text(&out));
        let aws = client == "aws_sdk";
        assert_eq!(
            report["indexed"],
            if aws { 2 } else { 1 },
            "{client}: {report}"
        );
        let day = format!("s3://{BUCKET}/{PREFIX}acme/2026/01/01");
        let day2 = format!("s3://{BUCKET}/{PREFIX}acme/2026/01/02");
        let failures: Vec<(String, String)> = report["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().unwrap().to_owned(),
                    f["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let reason = |path: String| {
            failures
                .iter()
                .find(|(p, _)| *p == path)
                .unwrap_or_else(|| panic!("{client}: no failure for {path}: {failures:?}"))
                .1
                .clone()
        };
        let control = if aws {
            (format!("{day2}/bad\tname"), "not a plain name")
        } else {
            (day2, "bad\tname/a.wav")
        };
        for (path, needle) in [
            control,
            (
                format!("{day}/deep/sub/conversation.json"),
                "outside a conversation directory",
            ),
            (
                format!("{day}/deep/conversation.json"),
                "missing conversation.json",
            ),
            (
                format!("{day}/stolen/conversation.json"),
                "does not match its tenant directory",
            ),
            (
                format!("{day}/big/conversation.json"),
                "more than max_record_bytes (1024)",
            ),
        ] {
            let why = reason(path.clone());
            assert!(why.contains(needle), "{client}: {path}: {why}");
        }
        assert_eq!(failures.len(), 5, "{client}: {failures:?}");
    }
}

#[test]
fn run_policy_indexes_an_s3_repository_first() {
    let disk = disk_repository();
    for client in CLIENTS {
        let server = S3Server::start_listed(Some(BUCKET));
        copy_tree(&disk.root(), &top(&server));
        let env = store_env(&server, client, "");
        let config = std::fs::read_to_string(env.config()).unwrap();
        env.write_config(&format!(
            "{config}\n[policies.flag]\naction = \"confidential\"\nflag = \"set\"\n"
        ));
        let out = run(&env, &["run", "flag"]);
        assert_eq!(out.status.code(), Some(0), "{client}: {}", text(&out));
        let db = rusqlite::Connection::open(env.path().join("catalog.db")).unwrap();
        let flagged: i64 = db
            .query_row(
                "SELECT count(*) FROM conversations WHERE confidential",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(flagged, 4, "{client}: {}", text(&out));
    }
}

#[test]
fn refused_credentials_exit_2_naming_the_repository_without_a_secret() {
    for client in CLIENTS {
        let server = S3Server::start_listed(Some(BUCKET));
        let env = store_env(&server, client, "");
        let out = run_as(&env, &["index"], "not-the-secret-key");
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{client}: {all}");
        assert!(
            all.contains(&format!("s3://{BUCKET}/{PREFIX}")),
            "{client}: {all}"
        );
        assert!(
            !all.contains(SECRET_KEY) && !all.contains("not-the-secret-key"),
            "{client}: {all}"
        );
    }
}

#[test]
fn a_missing_repository_bucket_exits_2_naming_it_without_the_secret() {
    for client in CLIENTS {
        let server = S3Server::start_listed(None);
        let env = store_env(&server, client, "");
        let out = run(&env, &["index"]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{client}: {all}");
        assert!(
            all.contains(&format!("s3://{BUCKET}/{PREFIX}")),
            "{client}: {all}"
        );
        assert!(!all.contains(SECRET_KEY), "{client}: {all}");
    }
}

/// An installation whose repository is [`fill`]'s, uploaded to the container `recordings` of
/// `azurite` and indexed by [`index_uploaded`].
#[cfg(feature = "azure")]
fn indexed_azure_repository(azurite: &crate::azure::Azurite) -> Env {
    use crate::azure::{KEY, run};
    azurite.create_container("recordings");
    let store = repository_env(&format!(
        "kind = \"azure\"\ncontainer = \"recordings\"\nprefix = \"{PREFIX}\"\nendpoint = \"{}\"",
        azurite.endpoint()
    ));
    let put = |key: &str, body: &[u8]| {
        azurite.put_blob("recordings", &format!("{PREFIX}{key}"), body);
    };
    index_uploaded(&store, put, |env, args| run(env, args, KEY));
    store
}

#[cfg(feature = "azure")]
#[test]
fn an_azure_repository_indexes_like_the_same_tree_on_disk() {
    indexed_azure_repository(&crate::azure::Azurite::start());
}

#[cfg(feature = "gcs")]
#[test]
fn a_gcs_repository_indexes_like_the_same_tree_on_disk() {
    use crate::gcs::{FakeGcs, run};
    let gcs = FakeGcs::start();
    gcs.create_bucket("recordings");
    let store = repository_env(&format!(
        "kind = \"gcs\"\nbucket = \"recordings\"\nprefix = \"{PREFIX}\"\nendpoint = \"{}\"",
        gcs.endpoint()
    ));
    let put = |key: &str, body: &[u8]| {
        gcs.overwrite(
            "recordings",
            &format!("{PREFIX}{key}"),
            body,
            &serde_json::json!({}),
        );
    };
    index_uploaded(&store, put, run);
}

/// object_store's listing refuses a whole page over one name that is not a path it accepts;
/// the Azure listing is custodian's own, so a stray blob fails only itself.
#[cfg(feature = "azure")]
#[test]
fn a_stray_blob_name_in_an_azure_repository_fails_only_itself() {
    use crate::azure::{Azurite, KEY, run};
    let azurite = Azurite::start();
    let store = indexed_azure_repository(&azurite);
    let day = "acme/2026/01/01";
    azurite.put_blob("recordings", &format!("{PREFIX}{day}/./stray"), b"x");
    azurite.put_blob("recordings", &format!("{PREFIX}{day}/%2E%2E/stray"), b"x");
    let out = run(&store, &["--json", "index"], KEY);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["seen"], 4,
        "every conversation of the day is seen: {report}"
    );
    assert_eq!(report["unchanged"], 4, "{report}");
    let failures = report["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2, "{report}");
    for (failure, name) in failures.iter().zip([".", ".."]) {
        assert!(
            failure["path"]
                .as_str()
                .unwrap()
                .ends_with(&format!("{day}/{name}")),
            "{failure}"
        );
        assert!(
            failure["reason"]
                .as_str()
                .unwrap()
                .contains("is not a plain name"),
            "{failure}"
        );
    }
}
