//! Exports to an S3 target, against a real S3 HTTP server on 127.0.0.1 (s3s + s3s-fs, a
//! bucket per directory) started by the test, through both S3 clients. The server can inject
//! faults into upload requests: 500 and 503 SlowDown answers, connections reset mid-body,
//! stalls longer than the client's timeout, or a store that starts failing mid-run.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;

use crate::common::{Env, text};

pub(crate) const ACCESS_KEY: &str = "AKIACUSTODIANTEST";
pub(crate) const SECRET_KEY: &str = "custodian-test-secret-key-do-not-print";
pub(crate) const CLIENTS: [&str; 2] = ["aws_sdk", "object_store"];

/// What the server does with one upload request (PUT or POST).
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Answers with this status (503 as S3's SlowDown) without storing anything.
    Status(u16),
    /// Reads part of the body, then drops the connection.
    Reset,
    /// Waits this long before serving the request.
    Stall(Duration),
    /// Serves the request, then waits this long before answering: the store has done what
    /// was asked, the client does not know it.
    Hang(Duration),
}

/// The faults to inject, in order, one per upload request; then either pass everything or,
/// from `fail_after` successful uploads on, answer every upload with 500. Whatever the order
/// of requests, a multipart part numbered above `stall_parts.0` waits `stall_parts.1` first
/// (counted in `hung`).
#[derive(Default)]
struct Plan {
    faults: Vec<Fault>,
    fail_after: Option<usize>,
    stall_parts: Option<(u32, Duration)>,
    hung: usize,
    passed: usize,
}

impl Plan {
    fn next(&mut self, part: Option<u32>) -> Option<Fault> {
        if let (Some(n), Some((above, wait))) = (part, self.stall_parts)
            && n > above
        {
            self.hung += 1;
            return Some(Fault::Stall(wait));
        }
        if !self.faults.is_empty() {
            return Some(self.faults.remove(0));
        }
        match self.fail_after {
            Some(n) if self.passed >= n => Some(Fault::Status(500)),
            _ => {
                self.passed += 1;
                None
            }
        }
    }
}

/// An S3 server over a temporary directory (a bucket per directory under `root`); it stops
/// when dropped.
pub(crate) struct S3Server {
    pub(crate) endpoint: String,
    pub(crate) root: PathBuf,
    plan: Arc<Mutex<Plan>>,
    counters: Arc<Counters>,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

type Response = hyper::Response<s3s::Body>;

/// What the server counts of the requests it serves.
#[derive(Default)]
struct Counters {
    /// Body bytes of every answer to a GET, as its Content-Length states them.
    served: AtomicU64,
    /// `ListObjectsV2` requests.
    listings: AtomicU64,
}

async fn serve(
    service: s3s::service::S3Service,
    plan: Arc<Mutex<Plan>>,
    counters: Arc<Counters>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<Response, s3s::HttpError> {
    if req.method() == hyper::Method::GET {
        if req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "list-type=2"))
        {
            counters.listings.fetch_add(1, Ordering::Relaxed);
        }
        let response = hyper::service::Service::call(&service, req).await?;
        let length = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        counters.served.fetch_add(length, Ordering::Relaxed);
        return Ok(response);
    }
    let upload = matches!(*req.method(), hyper::Method::PUT | hyper::Method::POST);
    let fault = if upload {
        let part = req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("partNumber="))
                .and_then(|n| n.parse().ok())
        });
        plan.lock().unwrap().next(part)
    } else {
        None
    };
    match fault {
        None => hyper::service::Service::call(&service, req).await,
        Some(Fault::Stall(d)) => {
            tokio::time::sleep(d).await;
            hyper::service::Service::call(&service, req).await
        }
        Some(Fault::Hang(d)) => {
            let answer = hyper::service::Service::call(&service, req).await;
            plan.lock().unwrap().hung += 1;
            tokio::time::sleep(d).await;
            answer
        }
        Some(Fault::Status(status)) => {
            let code = if status == 503 {
                "SlowDown"
            } else {
                "InternalError"
            };
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"
            );
            let _ = req.into_body().collect().await;
            Ok(hyper::Response::builder()
                .status(status)
                .header("content-type", "application/xml")
                .body(s3s::Body::from(body))
                .unwrap())
        }
        Some(Fault::Reset) => {
            let mut body = req.into_body();
            let _ = body.frame().await;
            Err(s3s::HttpError::new(Box::new(std::io::Error::other(
                "injected connection reset",
            ))))
        }
    }
}

impl S3Server {
    /// Starts a server, with one empty bucket when `bucket` is given.
    pub(crate) fn start(bucket: Option<&str>) -> S3Server {
        S3Server::start_with(bucket, |root| s3s_fs::FileSystem::new(root).unwrap())
    }

    /// Starts a server whose listings walk only the prefix asked for and carry ETags
    /// (`ListedFs`), for repositories in a bucket; it stores single-part uploads only.
    pub(crate) fn start_listed(bucket: Option<&str>) -> S3Server {
        S3Server::start_with(bucket, crate::listed_fs::ListedFs::new)
    }

    fn start_with<S: s3s::S3>(bucket: Option<&str>, store: impl FnOnce(&Path) -> S) -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        if let Some(b) = bucket {
            std::fs::create_dir(root.join(b)).unwrap();
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(store(root));
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let plan = Arc::new(Mutex::new(Plan::default()));
        let shared = plan.clone();
        let counters = Arc::new(Counters::default());
        let counted = counters.clone();
        runtime.spawn(async move {
            let http =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            while let Ok((socket, _)) = listener.accept().await {
                // As HTTP servers do: a body written after its head is not held back by
                // Nagle until the client's delayed ACK.
                let _ = socket.set_nodelay(true);
                let (service, plan, counters) = (service.clone(), shared.clone(), counted.clone());
                let handler = hyper::service::service_fn(move |req| {
                    serve(service.clone(), plan.clone(), counters.clone(), req)
                });
                let conn = http
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), handler)
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        S3Server {
            endpoint,
            root: root.to_owned(),
            plan,
            counters,
            _runtime: runtime,
            _dir: dir,
        }
    }

    fn set_plan(&self, plan: Plan) {
        *self.plan.lock().unwrap() = plan;
    }

    /// Body bytes the server has sent in answer to GETs so far.
    pub(crate) fn served(&self) -> u64 {
        self.counters.served.load(Ordering::Relaxed)
    }

    /// `ListObjectsV2` requests served so far.
    pub(crate) fn listings(&self) -> u64 {
        self.counters.listings.load(Ordering::Relaxed)
    }

    /// Every upload passes from now on.
    pub(crate) fn pass_all(&self) {
        self.set_plan(Plan::default());
    }

    /// The next PUT or POST (a `DeleteObjects` is a POST) is served, and its answer then
    /// withheld for 10 minutes; [`S3Server::answers_withheld`] counts such requests served.
    pub(crate) fn hang_next_write(&self) {
        self.set_plan(Plan {
            faults: vec![Fault::Hang(Duration::from_secs(600))],
            ..Plan::default()
        });
    }

    /// How many requests were served with their answer withheld, or stalled.
    pub(crate) fn answers_withheld(&self) -> usize {
        self.plan.lock().unwrap().hung
    }

    /// Every upload passes except multipart parts after the first, which hang.
    pub(crate) fn hang_second_part(&self) {
        self.set_plan(Plan {
            stall_parts: Some((1, Duration::from_secs(600))),
            ..Plan::default()
        });
    }

    /// Waits until the upload `hang_second_part` set up is open and hanging.
    pub(crate) fn wait_for_hung_part(&self, client: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.open_uploads() == 0 || self.plan.lock().unwrap().hung == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{client}: upload never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Multipart uploads the store holds open (s3s-fs keeps one `.upload-ID.json` each).
    pub(crate) fn open_uploads(&self) -> usize {
        std::fs::read_dir(&self.root)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.starts_with(".upload-") && name.ends_with(".json")
            })
            .count()
    }
}

fn s3_env(server: &S3Server, bucket: &str, client: &str, extra: &str) -> Env {
    let env = Env::new("");
    env.write_config(&format!(
        r#"[catalog]
url = "sqlite:catalog.db"

[repository]
root = "repo"

[targets.s3]
kind = "s3"
bucket = "{bucket}"
prefix = "exports"
region = "us-east-1"
endpoint = "{}"
path_style = true
client = "{client}"
{extra}

[policies.export]
action = "export"
target = "s3"
"#,
        server.endpoint
    ));
    env
}

pub(crate) fn run(env: &Env, args: &[&str]) -> Output {
    run_as(env, args, SECRET_KEY)
}

pub(crate) fn run_as(env: &Env, args: &[&str], secret: &str) -> Output {
    env.command(args)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(out)))
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
        .collect()
}

#[test]
fn export_to_s3_uploads_verified_objects_and_skips_identical_ones() {
    for client in CLIENTS {
        let server = S3Server::start(Some("archive"));
        let env = s3_env(&server, "archive", client, "part_size_mib = 5");
        let big = pattern(12_000_000, 7);
        env.conversation(
            "acme",
            1,
            "a1",
            &[("big.wav", &big), ("small.wav", b"RIFF-small")],
        );
        let out = run(&env, &["--json", "run", "export"]);
        assert_eq!(out.status.code(), Some(0), "{client}: {}", text(&out));
        let dir = server.root.join("archive/exports/acme/2026/01/01/a1");
        assert_eq!(std::fs::read(dir.join("big.wav")).unwrap(), big, "{client}");
        assert_eq!(std::fs::read(dir.join("small.wav")).unwrap(), b"RIFF-small");
        assert!(dir.join("conversation.json").exists());
        let verify = run(&env, &["verify", &json(&out)["run"].to_string()]);
        assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
        assert!(text(&verify).contains("all match"), "{}", text(&verify));
        assert_eq!(server.open_uploads(), 0, "{client}");

        // A full rerun finds both recordings already stored with the same SHA-256 and does
        // not upload them again: the stored files are the very same ones.
        let stamp = |name: &str| {
            std::fs::metadata(dir.join(name))
                .unwrap()
                .modified()
                .unwrap()
        };
        let before = (stamp("big.wav"), stamp("small.wav"));
        std::thread::sleep(Duration::from_millis(20));
        let config = std::fs::read_to_string(env.config()).unwrap();
        env.write_config(&format!("{config}mode = \"full\"\n"));
        let again = run(&env, &["--json", "run", "export"]);
        assert_eq!(again.status.code(), Some(0), "{client}: {}", text(&again));
        assert_eq!(json(&again)["counters"]["exported"], 1, "{}", text(&again));
        assert_eq!((stamp("big.wav"), stamp("small.wav")), before, "{client}");
        let verify = run(&env, &["verify", &json(&again)["run"].to_string()]);
        assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    }
}

#[test]
fn uploads_ride_out_errors_slowdowns_resets_and_stalls() {
    for client in CLIENTS {
        let server = S3Server::start(Some("archive"));
        let env = s3_env(
            &server,
            "archive",
            client,
            "part_size_mib = 5\nrequest_timeout_secs = 2",
        );
        let big = pattern(11_000_000, 3);
        env.conversation("acme", 1, "a1", &[("big.wav", &big)]);
        for i in 2..=5 {
            env.conversation(
                "acme",
                i,
                &format!("s{i}"),
                &[("call.wav", &pattern(1000, i))],
            );
        }
        server.set_plan(Plan {
            faults: vec![
                Fault::Status(503),
                Fault::Reset,
                Fault::Status(500),
                Fault::Stall(Duration::from_secs(5)),
                Fault::Reset,
                Fault::Status(503),
            ],
            ..Plan::default()
        });
        let out = run(&env, &["--json", "run", "export"]);
        assert_eq!(out.status.code(), Some(0), "{client}: {}", text(&out));
        assert_eq!(json(&out)["counters"]["exported"], 5, "{}", text(&out));
        assert!(server.plan.lock().unwrap().faults.is_empty());
        let verify = run(&env, &["verify", &json(&out)["run"].to_string()]);
        assert_eq!(verify.status.code(), Some(0), "{client}: {}", text(&verify));
        assert_eq!(server.open_uploads(), 0, "{client}");
    }
}

/// Every file under `dir` (the bucket), relative, except s3s-fs's own bookkeeping.
fn stored_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap().to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_store_failing_mid_run_fails_items_that_the_next_run_completes() {
    for client in CLIENTS {
        let server = S3Server::start(Some("archive"));
        let env = s3_env(
            &server,
            "archive",
            client,
            // The store answers errors at once: the default timeout only keeps a slow
            // machine from timing out a completion the store did make (a lost reply).
            "part_size_mib = 5",
        );
        let mut originals = Vec::new();
        for i in 1..=4u32 {
            let data = pattern(7_000_000 + i as usize, i);
            env.conversation("acme", i, &format!("c{i}"), &[("call.wav", &data)]);
            originals.push((format!("exports/acme/2026/01/{i:02}/c{i}/call.wav"), data));
        }
        server.set_plan(Plan {
            fail_after: Some(3),
            ..Plan::default()
        });
        // The store stays down for the manifest too: the run stays open for the next one.
        let out = run(&env, &["run", "export"]);
        assert_eq!(out.status.code(), Some(1), "{client}: {}", text(&out));
        let msg = text(&out);
        assert!(msg.contains("InternalError"), "{msg}");
        assert!(msg.contains("the next run of `export` resumes it"), "{msg}");
        // Whatever is stored under a final name is whole.
        let bucket_dir = server.root.join("archive");
        for rel in stored_files(&bucket_dir) {
            if let Some((_, data)) = originals.iter().find(|(k, _)| Path::new(k) == rel) {
                assert_eq!(
                    &std::fs::read(bucket_dir.join(&rel)).unwrap(),
                    data,
                    "{rel:?}"
                );
            }
        }

        server.set_plan(Plan::default());
        let rerun = run(&env, &["--json", "run", "export"]);
        assert_eq!(rerun.status.code(), Some(0), "{client}: {}", text(&rerun));
        for (key, data) in &originals {
            assert_eq!(&std::fs::read(bucket_dir.join(key)).unwrap(), data, "{key}");
        }
        assert_eq!(server.open_uploads(), 0, "{client}: {}", text(&rerun));
    }
}

#[test]
fn a_killed_run_leaves_no_open_upload_after_the_next_one() {
    for client in CLIENTS {
        let server = S3Server::start(Some("archive"));
        let env = s3_env(&server, "archive", client, "part_size_mib = 5");
        let big = pattern(16_000_000, 9);
        env.conversation("acme", 1, "a1", &[("big.wav", &big)]);
        server.hang_second_part();
        let mut child = env
            .command(&["run", "export"])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        server.wait_for_hung_part(client);
        // Another policy's run to the same target leaves the upload in flight alone.
        server.set_plan(Plan::default());
        let config = std::fs::read_to_string(env.config()).unwrap();
        env.write_config(&format!(
            "{config}\n[policies.other]\naction = \"export\"\ntarget = \"s3\"\n"
        ));
        let out = run(&env, &["--json", "run", "other"]);
        assert_eq!(out.status.code(), Some(0), "{client}: {}", text(&out));
        assert_eq!(server.open_uploads(), 1, "{client}: {}", text(&out));
        assert!(child.try_wait().unwrap().is_none(), "{client}");

        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(server.open_uploads(), 1, "{client}");

        let out = run(&env, &["--json", "run", "export"]);
        assert_eq!(out.status.code(), Some(0), "{client}: {}", text(&out));
        assert!(
            text(&out).contains("aborted 1 unfinished upload"),
            "{client}: {}",
            text(&out)
        );
        assert_eq!(server.open_uploads(), 0, "{client}");
        let dir = server.root.join("archive/exports/acme/2026/01/01/a1");
        assert_eq!(std::fs::read(dir.join("big.wav")).unwrap(), big);
    }
}

#[test]
fn an_upload_longer_than_the_keep_alive_is_not_taken_for_a_stall() {
    let server = S3Server::start(Some("archive"));
    let env = s3_env(
        &server,
        "archive",
        "aws_sdk",
        "part_size_mib = 5\npart_concurrency = 1",
    );
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{config}keep_alive = \"3s\"\n"));
    let big = pattern(20_000_000, 3);
    env.conversation("acme", 1, "a1", &[("big.wav", &big)]);
    // Four parts one after another, 1 s each: the one object takes over 4 s, longer than the
    // keep-alive, while every part is headway.
    server.set_plan(Plan {
        stall_parts: Some((0, Duration::from_secs(1))),
        ..Plan::default()
    });
    let out = run(&env, &["--json", "run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary = json(&out);
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(server.plan.lock().unwrap().hung, 4);
    let dir = server.root.join("archive/exports/acme/2026/01/01/a1");
    assert_eq!(std::fs::read(dir.join("big.wav")).unwrap(), big);
}

#[test]
fn missing_bucket_stops_before_any_work_without_printing_the_secret() {
    for client in CLIENTS {
        let server = S3Server::start(None);
        let env = s3_env(&server, "no-such-bucket", client, "");
        env.conversation("acme", 1, "a1", &[("call.wav", b"RIFF")]);
        let out = run(&env, &["run", "export"]);
        assert_eq!(out.status.code(), Some(2), "{client}: {}", text(&out));
        let msg = text(&out);
        assert!(
            msg.contains("target `s3`") && msg.contains("s3://no-such-bucket/exports/"),
            "{msg}"
        );
        assert!(msg.contains("NoSuchBucket"), "{client}: {msg}");
        assert!(!msg.contains(SECRET_KEY), "{msg}");
    }
}

#[test]
fn wrong_credentials_stop_before_any_work_without_printing_them() {
    for client in CLIENTS {
        let server = S3Server::start(Some("archive"));
        let env = s3_env(&server, "archive", client, "");
        env.conversation("acme", 1, "a1", &[("call.wav", b"RIFF")]);
        let wrong = "not-the-secret-key-either-should-not-print";
        let out = run_as(&env, &["run", "export"], wrong);
        assert_eq!(out.status.code(), Some(2), "{client}: {}", text(&out));
        let msg = text(&out);
        assert!(
            msg.contains("target `s3`") && msg.contains("credentials"),
            "{msg}"
        );
        assert!(!msg.contains(wrong) && !msg.contains(SECRET_KEY), "{msg}");
        assert!(
            std::fs::read_dir(server.root.join("archive"))
                .unwrap()
                .next()
                .is_none()
        );
    }
}

#[test]
fn unreachable_endpoint_stops_before_any_work() {
    for client in CLIENTS {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let env = Env::new("");
        env.write_config(&format!(
            "[repository]\nroot = \"repo\"\n[targets.s3]\nkind = \"s3\"\nbucket = \"b\"\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\npath_style = true\nclient = \"{client}\"\n[policies.export]\naction = \"export\"\ntarget = \"s3\"\n"
        ));
        let out = run(&env, &["run", "export"]);
        assert_eq!(out.status.code(), Some(2), "{client}: {}", text(&out));
        assert!(text(&out).contains("target `s3`"), "{}", text(&out));
    }
}

#[cfg(feature = "postgres")]
#[test]
fn the_node_that_ends_a_cluster_run_aborts_a_killed_nodes_upload() {
    let scratch = crate::postgres::Scratch::new("s3node");
    let server = S3Server::start(Some("archive"));
    let env = s3_env(&server, "archive", "aws_sdk", "part_size_mib = 5");
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&config.replace("sqlite:catalog.db", &scratch.url()));
    let big = pattern(16_000_000, 5);
    env.conversation("acme", 1, "a1", &[("big.wav", &big)]);
    env.conversation("acme", 2, "a2", &[("small.wav", b"RIFF-small")]);
    assert_eq!(run(&env, &["index"]).status.code(), Some(0));
    let node = |name: &str| {
        let mut cmd = crate::cluster::node_command(&env, name, "1", &[]);
        cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        cmd
    };

    server.hang_second_part();
    let mut doomed = node("doomed")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    server.wait_for_hung_part("doomed");
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    server.set_plan(Plan::default());

    // The survivor starts with the run still going, so it leaves the upload for now; it ends
    // the run once it has redone the doomed node's unit, and then aborts the upload.
    let out = node("survivor").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["finished"]["status"], "succeeded", "{report}");
    assert_eq!(report["finished"]["counters"]["exported"], 2, "{report}");
    assert_eq!(report["reclaimed"], 1, "{report}");
    assert!(
        text(&out).contains("aborted 1 unfinished upload"),
        "{}",
        text(&out)
    );
    assert_eq!(server.open_uploads(), 0);
    let dir = server.root.join("archive/exports/acme/2026/01/01/a1");
    assert_eq!(std::fs::read(dir.join("big.wav")).unwrap(), big);
}

/// Puts `body` at `key` through the S3 API with `sha256` as its user metadata, as a careless
/// or hostile writer would, without a SHA-256 checksum of the bytes.
fn overwrite(server: &S3Server, bucket: &str, key: &str, body: &[u8], sha256: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "test",
        ))
        .endpoint_url(&server.endpoint)
        .force_path_style(true)
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    runtime
        .block_on(
            client
                .put_object()
                .bucket(bucket)
                .key(key)
                .metadata("sha256", sha256)
                .body(body.to_vec().into())
                .send(),
        )
        .unwrap();
}

#[test]
fn a_full_run_repairs_an_object_overwritten_under_the_same_sha256_metadata() {
    let server = S3Server::start(Some("archive"));
    let env = s3_env(&server, "archive", "aws_sdk", "");
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{config}mode = \"full\"\n"));
    env.conversation("acme", 1, "a1", &[("small.wav", b"RIFF-small")]);
    let out = run(&env, &["--json", "run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let key = "exports/acme/2026/01/01/a1/small.wav";
    overwrite(
        &server,
        "archive",
        key,
        b"RIFF-EVIL!",
        &crate::common::sha256(b"RIFF-small"),
    );
    let stored = server.root.join("archive").join(key);
    assert_eq!(std::fs::read(&stored).unwrap(), b"RIFF-EVIL!");
    let again = run(&env, &["--json", "run", "export"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(std::fs::read(&stored).unwrap(), b"RIFF-small");
    let verify = run(&env, &["verify", &json(&again)["run"].to_string()]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}
