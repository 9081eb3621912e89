//! A repository in a bucket the size the store index is measured at (docs/performance.md,
//! "Index of a repository in a store"), and the loopback S3 server it is read from.
//!
//! ```text
//! cargo run --release --example store_scale -- generate TOP [--conversations N] [--per-day D]
//! cargo run --release --example store_scale -- serve ROOT PORT ACCESS_KEY SECRET_KEY
//! ```
//!
//! `generate` lays N conversations (tenants acme and globex, D a day each from 2025-01-01)
//! into the directory TOP, as s3s-fs stores the keys below a bucket's prefix: a small
//! conversation.json and one 4-byte artifact each. Rerunning on a generated TOP does nothing.
//! `serve` serves ROOT (a bucket per directory) on 127.0.0.1:PORT with s3s-fs behind the
//! listings of tests/support/listed_fs.rs (one directory per delimited listing, ETags), until
//! killed.

#[path = "../tests/support/listed_fs.rs"]
mod listed_fs;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{Days, NaiveDate};
use clap::Parser;
use sha2::{Digest, Sha256};

#[derive(Parser)]
enum Args {
    Generate {
        top: PathBuf,
        #[arg(long, default_value_t = 200_000)]
        conversations: usize,
        #[arg(long, default_value_t = 500)]
        per_day: usize,
    },
    Serve {
        root: PathBuf,
        port: u16,
        access_key: String,
        secret_key: String,
    },
}

const TENANTS: [&str; 2] = ["acme", "globex"];
const ARTIFACT: &[u8] = b"RIFF";

fn generate(top: &Path, conversations: usize, per_day: usize) -> Result<()> {
    if top.exists() {
        eprintln!("{} exists; left as it is", top.display());
        return Ok(());
    }
    let start = NaiveDate::from_ymd_opt(2025, 1, 1).context("start date")?;
    let sha = hex::encode(Sha256::digest(ARTIFACT));
    for n in 0..conversations {
        let tenant = TENANTS[n % TENANTS.len()];
        let day = start + Days::new((n / (per_day * TENANTS.len())) as u64);
        let id = format!("c{n:07}");
        let dir = top.join(format!("{tenant}/{}/{id}", day.format("%Y/%m/%d")));
        std::fs::create_dir_all(&dir)?;
        let at = day.format("%Y-%m-%d");
        let record = serde_json::json!({
            "schema": 1, "id": id, "tenant": tenant, "type": "voice",
            "source_platform": "cisco", "direction": "inbound",
            "start": format!("{at}T10:00:00+00:00"), "end": format!("{at}T10:01:00+00:00"),
            "participants": [{"user": "alice", "extension": "1001", "role": "agent"}],
            "artifacts": [{"file": "a.wav", "type": "audio_recording",
                           "audio_type": "conference_customer", "size": ARTIFACT.len(),
                           "sha256": sha}]
        });
        std::fs::write(dir.join("conversation.json"), serde_json::to_vec(&record)?)?;
        std::fs::write(dir.join("a.wav"), ARTIFACT)?;
    }
    eprintln!("{conversations} conversations under {}", top.display());
    Ok(())
}

fn serve(root: &Path, port: u16, access: &str, secret: &str) -> Result<()> {
    if !root.is_dir() {
        bail!("{}: not a directory", root.display());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut builder = s3s::service::S3ServiceBuilder::new(listed_fs::ListedFs::new(root));
        builder.set_auth(s3s::auth::SimpleAuth::from_single(access, secret));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
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
            let conn = http
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    })
}

fn main() -> Result<()> {
    match Args::parse() {
        Args::Generate {
            top,
            conversations,
            per_day,
        } => generate(&top, conversations, per_day),
        Args::Serve {
            root,
            port,
            access_key,
            secret_key,
        } => serve(&root, port, &access_key, &secret_key),
    }
}
