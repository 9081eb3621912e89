//! Exports to an Azure Blob Storage target, against Azurite (Microsoft's storage emulator,
//! installed from npm by `scripts/test.sh`) started by the test on a free loopback port.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Output};
use std::time::Duration;

use base64::Engine;

use crate::common::{Env, text};

/// Azurite's well-known development account and key.
const ACCOUNT: &str = "devstoreaccount1";
pub(crate) const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub(crate) struct Azurite {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Azurite {
    pub(crate) fn start() -> Azurite {
        let home = std::env::var_os("AZURITE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/custodian-azurite")
            });
        let bin = home.join("node_modules/.bin/azurite-blob");
        assert!(
            bin.exists(),
            "{} is missing: run `bash scripts/test.sh`, which installs Azurite from npm",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new(bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--skipApiVersionCheck", "--silent", "--disableTelemetry"])
            .arg("--location")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "Azurite did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Azurite {
            child,
            port,
            _dir: dir,
        }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// Sends `method` to `/ACCOUNT/{path}?{query}` with `body`, signed by the account key
    /// (SharedKey) over `headers` (lowercase `x-ms-` names, sorted); returns the response, its
    /// status line first.
    fn send(
        &self,
        method: &str,
        path: &str,
        query: Option<(&str, &str)>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> String {
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2021-08-06";
        let length = if body.is_empty() {
            String::new()
        } else {
            body.len().to_string()
        };
        let mut canonical: Vec<(&str, &str)> = headers.to_vec();
        canonical.extend([("x-ms-date", date.as_str()), ("x-ms-version", version)]);
        canonical.sort();
        let signed_headers: String = canonical
            .iter()
            .map(|(k, v)| format!("{k}:{v}\n"))
            .collect();
        let signed_query = query.map_or(String::new(), |(k, v)| format!("\n{k}:{v}"));
        let to_sign = format!(
            "{method}\n\n\n{length}\n\n\n\n\n\n\n\n\n{signed_headers}/{ACCOUNT}/{ACCOUNT}/{path}{signed_query}"
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &b64.decode(KEY).unwrap());
        let signature = b64.encode(ring::hmac::sign(&key, to_sign.as_bytes()));
        let query = query.map_or(String::new(), |(k, v)| format!("?{k}={v}"));
        let header_lines: String = canonical
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "{method} /{ACCOUNT}/{path}{query} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{header_lines}Authorization: SharedKey {ACCOUNT}:{signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        )
        .unwrap();
        stream.write_all(body).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    /// Creates a container.
    pub(crate) fn create_container(&self, name: &str) {
        let response = self.send("PUT", name, Some(("restype", "container")), &[], b"");
        assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    }

    /// Stores `body` as the block blob `name` of `container`, as another writer of the
    /// container would. (The store tests that use it need the S3 server as well.)
    #[cfg(feature = "s3")]
    pub(crate) fn put_blob(&self, container: &str, name: &str, body: &[u8]) {
        let response = self.send(
            "PUT",
            &format!("{container}/{name}"),
            None,
            &[("x-ms-blob-type", "BlockBlob")],
            body,
        );
        assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    }

    /// The response headers of Get Blob Properties of `name` in `container`, lowercased, with
    /// its status line first.
    #[cfg(feature = "s3")]
    pub(crate) fn blob_properties(&self, container: &str, name: &str) -> String {
        self.send("HEAD", &format!("{container}/{name}"), None, &[], b"")
            .to_lowercase()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn azure_env(azurite: &Azurite, container: &str) -> Env {
    let env = Env::new("");
    env.write_config(&format!(
        r#"[catalog]
url = "sqlite:catalog.db"

[repository]
root = "repo"

[targets.blob]
kind = "azure"
container = "{container}"
prefix = "exports"
endpoint = "{}"
part_size_mib = 5

[policies.export]
action = "export"
target = "blob"
"#,
        azurite.endpoint()
    ));
    env
}

pub(crate) fn run(env: &Env, args: &[&str], key: &str) -> Output {
    env.command(args)
        .env("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT)
        .env("AZURE_STORAGE_ACCOUNT_KEY", key)
        .output()
        .unwrap()
}

#[test]
fn export_to_azure_blob_uploads_verified_blobs() {
    let azurite = Azurite::start();
    azurite.create_container("archive");
    let env = azure_env(&azurite, "archive");
    let big: Vec<u8> = (0..12_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    env.conversation(
        "acme",
        1,
        "a1",
        &[("big.wav", &big), ("small.wav", b"RIFF-small")],
    );
    let out = run(&env, &["--json", "run", "export"], KEY);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["counters"]["exported"], 1);
    let verify = run(&env, &["verify", &summary["run"].to_string()], KEY);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    assert!(text(&verify).contains("all match"), "{}", text(&verify));
}

#[test]
fn missing_container_and_wrong_key_stop_before_any_work() {
    let azurite = Azurite::start();
    azurite.create_container("archive");
    let env = azure_env(&azurite, "no-such-container");
    env.conversation("acme", 1, "a1", &[("call.wav", b"RIFF")]);
    let out = run(&env, &["run", "export"], KEY);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("target `blob`") && msg.contains("no-such-container"),
        "{msg}"
    );
    assert!(!msg.contains(KEY), "{msg}");

    let env = azure_env(&azurite, "archive");
    env.conversation("acme", 1, "a1", &[("call.wav", b"RIFF")]);
    let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let out = run(&env, &["run", "export"], &wrong);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("target `blob`") && msg.contains("AZURE_STORAGE_ACCOUNT_KEY"),
        "{msg}"
    );
    assert!(!msg.contains(&wrong) && !msg.contains(KEY), "{msg}");
}

#[test]
fn a_multipart_blob_carries_its_sha256_so_a_full_rerun_skips_it() {
    let azurite = Azurite::start();
    azurite.create_container("archive");
    let env = azure_env(&azurite, "archive");
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{config}mode = \"full\"\n"));
    let big: Vec<u8> = (0..12_000_000u32).map(|i| (i * 11 % 251) as u8).collect();
    env.conversation("acme", 1, "a1", &[("big.wav", &big)]);
    let first = run(&env, &["--json", "run", "export"], KEY);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let verify = run(&env, &["verify", "1"], KEY);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    // The rerun finds the blob's SHA-256 and uploads nothing: its log says it skipped it.
    let again = env
        .command(&["--json", "run", "export"])
        .env("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT)
        .env("AZURE_STORAGE_ACCOUNT_KEY", KEY)
        .env("CUSTODIAN_LOG", "custodian::target=debug")
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        text(&again).contains("identical object already stored; skipped")
            && text(&again).contains("big.wav"),
        "{}",
        text(&again)
    );
    let verify = run(&env, &["verify", "2"], KEY);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}
