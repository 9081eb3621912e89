//! Hot paths of an export run: hashing copy to the target, one conversation end to end,
//! catalog index writes, and filter evaluation.

use std::sync::Arc;

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use custodian::app::{Acting, Loaded};
use custodian::catalog::sqlite::SqliteCatalog;
use custodian::catalog::{Catalog, Fingerprint, IndexChange, RunId, Selected};
use custodian::config::Config;
use custodian::filter::{Criteria, Filter};
use custodian::repository::record::Conversation;
use custodian::target::Durability;
use custodian::target::fs::FsTarget;
use custodian::target::{ObjectKey, WriteContext, put_stream};

fn record(i: usize, size: usize) -> Conversation {
    serde_json::from_value(serde_json::json!({
        "schema": 1, "id": format!("c{i}"), "tenant": "acme", "type": "voice",
        "source_platform": if i.is_multiple_of(3) { "teams" } else { "cisco" }, "direction": "inbound",
        "start": "2026-01-02T10:00:00+00:00", "end": "2026-01-02T10:01:00+00:00",
        "participants": [{"user": format!("user{}", i % 50), "extension": "1001", "role": "agent"}],
        "artifacts": [{"file": "call.wav", "type": "audio_recording", "audio_type": "conference_agent",
                        "size": size, "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}]
    }))
    .unwrap()
}

fn copy_to_target(c: &mut Criterion) {
    let mut group = c.benchmark_group("copy_to_target");
    let dir = tempfile::tempdir().unwrap();
    let target = FsTarget::new("bench", dir.path(), Durability::Durable);
    let mut buffer = Vec::new();
    for mib in [1usize, 16] {
        let data = vec![7u8; mib << 20];
        let key = ObjectKey::new(format!("x/{mib}.bin")).unwrap();
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(
            BenchmarkId::new("hash_and_write", format!("{mib}MiB")),
            |b| {
                b.iter(|| {
                    put_stream(
                        &target,
                        &key,
                        &mut &data[..],
                        &mut buffer,
                        None,
                        &WriteContext::default(),
                    )
                    .unwrap()
                })
            },
        );
    }
    group.finish();
}

fn export_conversation(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let wav = vec![1u8; 960_044];
    let mut conv = record(1, wav.len());
    conv.artifacts[0].sha256 = custodian_sha(&wav);
    let rel_dir = "acme/2026/01/02/c1";
    std::fs::create_dir_all(root.join(rel_dir)).unwrap();
    std::fs::write(root.join(rel_dir).join("call.wav"), &wav).unwrap();
    let config = Config::parse(
        &dir.path().join("custodian.toml"),
        "[repository]\nroot = \"repo\"\n[targets.t]\nkind = \"filesystem\"\npath = \"out\"\n\
         [policies.p]\naction = \"export\"\ntarget = \"t\"\n[media]\nscratch_dir = \"scratch\"\n",
    )
    .unwrap();
    let target = FsTarget::new("t", &dir.path().join("out"), Durability::Durable);
    let l = Loaded {
        config,
        catalog: Arc::new(SqliteCatalog::open(&dir.path().join("c.db")).unwrap()),
        acting: Acting::Process,
    };
    let policy = l.export_policy("p").unwrap();
    let export = l.export(policy, &target, None, Filter::all()).unwrap();
    let selected = Selected {
        rowid: 1,
        rel_dir: rel_dir.into(),
        fingerprint: custodian::catalog::Fingerprint {
            mtime_ns: 1,
            size: 1,
        },
        conversation: conv,
        exported: Vec::new(),
        holds: Vec::new(),
    };
    let mut group = c.benchmark_group("export_conversation");
    group.throughput(Throughput::Bytes(wav.len() as u64));
    let mut buffer = Vec::new();
    let control = custodian::pipeline::Control::new();
    group.bench_function("60s_8kHz_wav_plus_metadata", |b| {
        b.iter(|| {
            let claimed = export.claim(RunId(1), std::slice::from_ref(&selected), &control);
            let claimed = claimed.into_iter().next().expect("one answer");
            export.export_one(RunId(1), &mut buffer, (selected.clone(), claimed), &control)
        })
    });
    group.finish();
}

fn custodian_sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn index_writes(c: &mut Criterion) {
    let mut group = c.benchmark_group("index_writes");
    let changes: Vec<IndexChange> = (0..2000)
        .map(|i| IndexChange::Upsert {
            rel_dir: format!("acme/2026/01/02/c{i}"),
            fingerprint: Fingerprint {
                mtime_ns: 1,
                size: 2,
            },
            conversation: Box::new(record(i, 100)),
        })
        .collect();
    group.throughput(Throughput::Elements(changes.len() as u64));
    group.sample_size(20);
    group.bench_function("upsert_2000_conversations", |b| {
        b.iter_with_setup(
            || {
                let dir = tempfile::tempdir().unwrap();
                let cat = SqliteCatalog::open(&dir.path().join("c.db")).unwrap();
                (dir, cat)
            },
            |(_dir, cat)| cat.apply_index(&changes).unwrap(),
        )
    });
    group.finish();
}

fn filter_predicate(c: &mut Criterion) {
    let records: Vec<Conversation> = (0..10_000).map(|i| record(i, 100)).collect();
    let criteria: Criteria = toml_edit::de::from_str(
        "source_platforms = ['cisco']\nusers = ['user7', 'user9']\nmin_duration = '30s'\nfile_extensions = ['wav']",
    )
    .unwrap();
    let filter = Filter::resolve(&criteria, Utc::now(), chrono_tz::Tz::UTC);
    let mut group = c.benchmark_group("filter_predicate");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("10000_records", |b| {
        b.iter(|| records.iter().filter(|r| filter.matches(r)).count())
    });
    group.finish();
}

criterion_group!(
    benches,
    copy_to_target,
    export_conversation,
    index_writes,
    filter_predicate
);
criterion_main!(benches);
