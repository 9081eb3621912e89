//! Exports to an S3 target, against a real S3 HTTP server on 127.0.0.1 (s3s + s3s-fs, a
//! bucket per directory) started by the test.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{Env, text};

const ACCESS_KEY: &str = "AKIACUSTODIANTEST";
const SECRET_KEY: &str = "custodian-test-secret-key-do-not-print";

/// An S3 server over a directory; it stops when dropped.
struct S3Server {
    endpoint: String,
    root: PathBuf,
    _runtime: tokio::runtime::Runtime,
}

impl S3Server {
    fn start(root: &Path) -> S3Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut builder =
            s3s::service::S3ServiceBuilder::new(s3s_fs::FileSystem::new(root).unwrap());
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        runtime.spawn(async move {
            let http =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            while let Ok((socket, _)) = listener.accept().await {
                let conn = http
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        S3Server {
            endpoint,
            root: root.to_owned(),
            _runtime: runtime,
        }
    }
}

fn s3_env(server: &S3Server, bucket: &str) -> Env {
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

[policies.export]
action = "export"
target = "s3"
"#,
        server.endpoint
    ));
    env
}

fn run(env: &Env, args: &[&str]) -> Output {
    run_as(env, args, SECRET_KEY)
}

fn run_as(env: &Env, args: &[&str], secret: &str) -> Output {
    env.command(args)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()
        .unwrap()
}

#[test]
fn export_to_s3_uploads_verified_objects_in_parts() {
    let store = tempfile::tempdir().unwrap();
    std::fs::create_dir(store.path().join("archive")).unwrap();
    let server = S3Server::start(store.path());
    let env = s3_env(&server, "archive");
    let big: Vec<u8> = (0..20_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
    env.conversation(
        "acme",
        1,
        "a1",
        &[("big.wav", &big), ("small.wav", b"RIFF-small")],
    );
    let out = run(&env, &["--json", "run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dir = server.root.join("archive/exports/acme/2026/01/01/a1");
    assert_eq!(std::fs::read(dir.join("big.wav")).unwrap(), big);
    assert_eq!(std::fs::read(dir.join("small.wav")).unwrap(), b"RIFF-small");
    assert!(dir.join("conversation.json").exists());
    let verify = run(&env, &["verify", &summary["run"].to_string()]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    assert!(text(&verify).contains("all match"), "{}", text(&verify));
}

#[test]
fn missing_bucket_stops_before_any_work_without_printing_the_secret() {
    let store = tempfile::tempdir().unwrap();
    let server = S3Server::start(store.path());
    let env = s3_env(&server, "no-such-bucket");
    env.conversation("acme", 1, "a1", &[("call.wav", b"RIFF")]);
    let out = run(&env, &["run", "export"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("target `s3`") && msg.contains("bucket"),
        "{msg}"
    );
    assert!(!msg.contains(SECRET_KEY), "{msg}");
}

#[test]
fn wrong_credentials_stop_before_any_work_without_printing_them() {
    let store = tempfile::tempdir().unwrap();
    std::fs::create_dir(store.path().join("archive")).unwrap();
    let server = S3Server::start(store.path());
    let env = s3_env(&server, "archive");
    env.conversation("acme", 1, "a1", &[("call.wav", b"RIFF")]);
    let wrong = "not-the-secret-key-either-should-not-print";
    let out = run_as(&env, &["run", "export"], wrong);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("target `s3`") && msg.contains("credentials"),
        "{msg}"
    );
    assert!(!msg.contains(wrong) && !msg.contains(SECRET_KEY), "{msg}");
    assert!(
        std::fs::read_dir(store.path().join("archive"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn unreachable_endpoint_stops_before_any_work() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let env = Env::new("");
    env.write_config(&format!(
        "[repository]\nroot = \"repo\"\n[targets.s3]\nkind = \"s3\"\nbucket = \"b\"\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\npath_style = true\n[policies.export]\naction = \"export\"\ntarget = \"s3\"\n"
    ));
    let out = run(&env, &["run", "export"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("target `s3`"), "{}", text(&out));
}
