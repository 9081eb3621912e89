//! Catalogs at scale for the examples that measure them: conversations as the index records
//! them, written straight to the catalog (no repository on disk).

use std::time::Instant;

use anyhow::Result;
use chrono::{DateTime, TimeDelta, Utc};
use custodian::catalog::sqlite::SqliteCatalog;
use custodian::catalog::{Catalog, Fingerprint, IndexChange};

/// Indexes `n` conversations of tenant `acme`, `c0` … `c{n-1}`, ending over the two years
/// before 2026-11-01, each with four artifacts (two audio legs, a transcript, a screen
/// recording) and one participant, user `u{i % 100}` at extension `{1000 + i % 100}`; in
/// batches of 20,000.
pub fn conversations(cat: &SqliteCatalog, n: usize) -> Result<()> {
    let base: DateTime<Utc> = "2024-11-01T00:00:00Z".parse()?;
    let span = 730 * 86_400 / n.max(1) as i64;
    let sha = "0".repeat(64);
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(20_000) {
        let changes: Vec<IndexChange> = chunk
            .iter()
            .map(|&i| {
                let start = base + TimeDelta::seconds(i as i64 * span);
                let end = start + TimeDelta::seconds(300);
                let conversation = serde_json::from_value(serde_json::json!({
                    "schema": 1, "id": format!("c{i}"), "tenant": "acme", "type": "voice",
                    "source_platform": "cisco", "direction": "inbound",
                    "start": start.to_rfc3339(), "end": end.to_rfc3339(),
                    "participants": [{"user": format!("u{}", i % 100), "extension": format!("{}", 1000 + i % 100), "role": "agent"}],
                    "artifacts": [
                        {"file": "customer.wav", "type": "audio_recording", "audio_type": "conference_customer", "size": 4_800_000, "sha256": sha},
                        {"file": "agent.wav", "type": "audio_recording", "audio_type": "conference_agent", "size": 4_800_000, "sha256": sha},
                        {"file": "transcript.txt", "type": "transcript", "size": 3_000, "sha256": sha},
                        {"file": "screen.mp4", "type": "screen_recording", "size": 30_000_000, "sha256": sha}
                    ]
                }))
                .expect("valid record");
                IndexChange::Upsert {
                    rel_dir: format!("acme/{}/c{i}", start.format("%Y/%m/%d")),
                    fingerprint: Fingerprint { mtime_ns: 1, size: 1 },
                    conversation: Box::new(conversation),
                }
            })
            .collect();
        cat.apply_index(&changes)?;
    }
    eprintln!(
        "built {n} conversations ({} artifacts) in {:.1} s",
        n * 4,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
