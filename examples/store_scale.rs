//! A repository in a bucket the size the store index is measured at (docs/performance.md,
//! "Index of a repository in a store"), served by `examples/s3_server.rs --listed`.
//!
//! ```text
//! cargo run --release --example store_scale -- TOP [--conversations N] [--per-day D]
//! ```
//!
//! Lays N conversations (tenants acme and globex, D a day each from 2025-01-01)
//! into the directory TOP, as s3s-fs stores the keys below a bucket's prefix: a small
//! conversation.json and one 4-byte artifact each. Rerunning on a generated TOP does nothing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{Days, NaiveDate};
use clap::Parser;
use sha2::{Digest, Sha256};

#[derive(Parser)]
struct Args {
    top: PathBuf,
    #[arg(long, default_value_t = 200_000)]
    conversations: usize,
    #[arg(long, default_value_t = 500)]
    per_day: usize,
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

fn main() -> Result<()> {
    let args = Args::parse();
    generate(&args.top, args.conversations, args.per_day)
}
