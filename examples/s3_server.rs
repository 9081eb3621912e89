//! A local S3 server over a directory (s3s + s3s-fs, the server the tests use), for
//! benchmarks that compare S3 clients side by side on loopback.
//!
//! ```text
//! cargo run --release --example s3_server -- ROOT PORT ACCESS_KEY SECRET_KEY [--listed] [--latency-ms N]
//! ```
//!
//! With `--latency-ms N`, every request is answered N ms late: a store that far away (a round
//! trip per request on a pooled connection), for comparing clients that send different numbers
//! of requests for the same work as they would fare against a remote store.
//!
//! Each directory under ROOT is a bucket. Serves until killed. With `--listed`, listings are
//! answered from the prefix's own directory with an ETag per object (tests/support/listed_fs.rs)
//! instead of s3s-fs's walk of the whole bucket without ETags, as a repository in a bucket
//! needs at scale.
//!
//! A `CopyObject` that asks for a SHA-256 checksum (`x-amz-checksum-algorithm: SHA256`) is
//! answered with the copy's SHA-256 (`ChecksumSHA256` in its result), computed here on the
//! server as S3 does; s3s-fs alone copies without one.

use std::path::{Path, PathBuf};

use base64::Engine;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

/// `key` with its `%XX` escapes decoded.
fn decode(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(hasher.finalize()))
}

/// Serves `req`, adding the copy's SHA-256 to a `CopyObject` result that asked for it.
async fn serve(
    service: s3s::service::S3Service,
    root: PathBuf,
    latency: std::time::Duration,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<s3s::Body>, s3s::HttpError> {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let checksum = req.method() == hyper::Method::PUT
        && req.headers().contains_key("x-amz-copy-source")
        && !req.uri().query().unwrap_or("").contains("partNumber=")
        && req
            .headers()
            .get("x-amz-checksum-algorithm")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"SHA256"));
    let path = root.join(decode(req.uri().path().trim_start_matches('/')));
    let response = hyper::service::Service::call(&service, req).await?;
    if !checksum || !response.status().is_success() {
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    let xml = body
        .collect()
        .await
        .map_err(|e| s3s::HttpError::new(Box::new(std::io::Error::other(e.to_string()))))?
        .to_bytes();
    let sha = tokio::task::spawn_blocking(move || sha256_of(&path))
        .await
        .map_err(|e| s3s::HttpError::new(Box::new(e)))?
        .map_err(|e| s3s::HttpError::new(Box::new(e)))?;
    let xml = String::from_utf8_lossy(&xml).replace(
        "</CopyObjectResult>",
        &format!("<ChecksumSHA256>{sha}</ChecksumSHA256></CopyObjectResult>"),
    );
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    Ok(hyper::Response::from_parts(parts, s3s::Body::from(xml)))
}

#[path = "../tests/support/listed_fs.rs"]
mod listed_fs;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let listed = args.iter().any(|a| a == "--listed");
    args.retain(|a| a != "--listed");
    let latency = match args.iter().position(|a| a == "--latency-ms") {
        Some(at) if at + 1 < args.len() => {
            let ms: u64 = args[at + 1].parse()?;
            args.drain(at..at + 2);
            std::time::Duration::from_millis(ms)
        }
        Some(_) => anyhow::bail!("--latency-ms needs a number of milliseconds"),
        None => std::time::Duration::ZERO,
    };
    let [root, port, access, secret] = args.as_slice() else {
        anyhow::bail!(
            "usage: s3_server ROOT PORT ACCESS_KEY SECRET_KEY [--listed] [--latency-ms N]"
        );
    };
    let root = PathBuf::from(root);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let auth = s3s::auth::SimpleAuth::from_single(access.as_str(), secret.as_str());
        let service = if listed {
            let mut builder = s3s::service::S3ServiceBuilder::new(listed_fs::ListedFs::new(&root));
            builder.set_auth(auth);
            builder.build()
        } else {
            let mut builder = s3s::service::S3ServiceBuilder::new(
                s3s_fs::FileSystem::new(&root)
                    .map_err(|e| anyhow::anyhow!("{}: {e:?}", root.display()))?,
            );
            builder.set_auth(auth);
            builder.build()
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
        eprintln!(
            "serving {} at http://{}",
            root.display(),
            listener.local_addr()?
        );
        let http =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        loop {
            let (socket, _) = listener.accept().await?;
            // As HTTP servers do: an answer whose body follows its head in a second write is
            // not held back by Nagle until the client's delayed ACK (40 ms a request).
            socket.set_nodelay(true)?;
            let (service, root) = (service.clone(), root.clone());
            let handler = hyper::service::service_fn(move |req| {
                serve(service.clone(), root.clone(), latency, req)
            });
            let conn = http
                .serve_connection(hyper_util::rt::TokioIo::new(socket), handler)
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    })
}
