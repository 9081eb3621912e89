//! Hot paths of the lifecycle sweep: selecting a page of due artifacts, committing a batch
//! of deletions with one hash-chained audit event each, and one whole batch of a sweep over
//! real files (checks on disk, removals, commit); and the due summary `plan lifecycle` makes,
//! with ten standing holds covering 30 % of the conversations and an export required. Whole sweeps against `find -delete` live in
//! `scripts/compare-lifecycle.sh`.

use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use custodian::audit::{AuditKind, NewEvent};
use custodian::catalog::lifecycle::{
    DeleteOutcome, DueQuery, LifecyclePolicy, LifecycleVersion, RetentionAction,
};
use custodian::catalog::sqlite::SqliteCatalog;
use custodian::catalog::{Catalog, Fingerprint, IndexChange};
use custodian::pipeline::Control;
use custodian::policy::lifecycle::{self, Deleter, Limits};
use custodian::progress::Silent;
use custodian::repository::record::ArtifactType;

const CONVERSATIONS: usize = 20_000;
const PAGE: usize = 2000;

fn event() -> NewEvent {
    NewEvent {
        at: Utc::now(),
        kind: AuditKind::LifecyclePolicyChanged,
        actor: "bench".into(),
        policy: None,
        run: None,
        tenant: None,
        conversation_id: None,
        details: serde_json::json!({}),
    }
}

fn enable_policy(cat: &SqliteCatalog) {
    let policy = LifecyclePolicy::new("t", "", ArtifactType::Transcript, None, "bench");
    cat.create_lifecycle_policy(&policy, &event()).unwrap();
    let v = LifecycleVersion::new("v1", RetentionAction::Delete { days: 30 }, "bench");
    cat.publish_lifecycle_version("t", &v, &event()).unwrap();
    cat.update_lifecycle_policy("t", true, "v1", &[event()])
        .unwrap();
}

/// A repository of one batch of due conversations (a record and a 200-byte transcript each)
/// on disk, indexed into a fresh catalog with a policy deleting transcripts after 30 days.
fn repository(dir: &std::path::Path) -> SqliteCatalog {
    let sha = "0".repeat(64);
    for i in 0..PAGE {
        let conv = dir.join(format!("repo/acme/2026/01/02/c{i}"));
        std::fs::create_dir_all(&conv).unwrap();
        std::fs::write(conv.join("t.txt"), [b'x'; 200]).unwrap();
        let record = serde_json::json!({
            "schema": 1, "id": format!("c{i}"), "tenant": "acme", "type": "im",
            "source_platform": "teams", "direction": "internal",
            "start": "2026-01-02T10:00:00+00:00", "end": "2026-01-02T10:01:00+00:00",
            "participants": [{"user": "a", "role": "participant"}],
            "artifacts": [{"file": "t.txt", "type": "transcript", "size": 200, "sha256": sha}]
        });
        std::fs::write(conv.join("conversation.json"), record.to_string()).unwrap();
    }
    let cat = SqliteCatalog::open(&dir.join("c.db")).unwrap();
    custodian::policy::index::index(
        &dir.join("repo"),
        custodian::repository::DEFAULT_MAX_RECORD_BYTES,
        &cat,
        &Silent,
        &custodian::pipeline::Control::new(),
    )
    .unwrap();
    enable_policy(&cat);
    cat
}

fn catalog(dir: &std::path::Path) -> SqliteCatalog {
    let cat = SqliteCatalog::open(&dir.join("c.db")).unwrap();
    let sha = "0".repeat(64);
    let changes: Vec<IndexChange> = (0..CONVERSATIONS)
        .map(|i| IndexChange::Upsert {
            rel_dir: format!("acme/2026/01/02/c{i}"),
            fingerprint: Fingerprint { mtime_ns: 1, size: 1 },
            conversation: Box::new(
                serde_json::from_value(serde_json::json!({
                    "schema": 1, "id": format!("c{i}"), "tenant": "acme", "type": "im",
                    "source_platform": "teams", "direction": "internal",
                    "start": "2026-01-02T10:00:00+00:00", "end": "2026-01-02T10:01:00+00:00",
                    "participants": [{"user": "a", "role": "participant"}],
                    "artifacts": [{"file": "t.txt", "type": "transcript", "size": 200, "sha256": sha}]
                }))
                .unwrap(),
            ),
        })
        .collect();
    cat.apply_index(&changes).unwrap();
    enable_policy(&cat);
    cat
}

fn sweep_steps(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path());
    let policy = cat.lifecycle_policies().unwrap().remove(0);
    let query = DueQuery::of(&policy, Utc::now()).unwrap();
    let mut group = c.benchmark_group("lifecycle");
    group.throughput(Throughput::Elements(PAGE as u64));
    group.bench_function("due_page_2000", |b| {
        b.iter(|| cat.due_artifacts(&query, (0, -1), PAGE).unwrap())
    });
    // Each iteration records a page's intents and commits their deletions and events; the
    // next page is then due, until the catalog runs out and is rebuilt outside the timing.
    group.sample_size(10);
    let mut cat = cat;
    let mut dir = dir;
    group.bench_function("intents_and_events_2000", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let mut page = cat.due_artifacts(&query, (0, -1), PAGE).unwrap();
                if page.len() < PAGE {
                    dir = tempfile::tempdir().unwrap();
                    cat = catalog(dir.path());
                    page = cat.due_artifacts(&query, (0, -1), PAGE).unwrap();
                }
                let outcomes: Vec<_> = page
                    .iter()
                    .map(|a| (a.clone(), DeleteOutcome::Deleted { was_missing: false }))
                    .collect();
                let started = std::time::Instant::now();
                cat.begin_deletes(&page).unwrap();
                cat.finish_deletes(&outcomes, "bench", None).unwrap();
                total += started.elapsed();
            }
            total
        })
    });
    // One sweep of a batch of real files: the checks each conversation gets on disk before
    // its artifacts are removed, the removals and the commit; the repository is rebuilt
    // outside the timing.
    group.bench_function("sweep_files_2000", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let cat = repository(dir.path());
                let control = Control::new();
                let by = Deleter {
                    actor: "bench",
                    run: None,
                    control: &control,
                };
                let limits = Limits {
                    max_count: u64::MAX,
                    max_share: 1.0,
                    force: true,
                };
                let started = std::time::Instant::now();
                let report = lifecycle::sweep(
                    &cat,
                    &dir.path().join("repo"),
                    Utc::now(),
                    by,
                    limits,
                    None,
                    &|_| {},
                )
                .unwrap();
                total += started.elapsed();
                assert_eq!(report.deleted, PAGE as u64);
            }
            total
        })
    });
    group.finish();
}

/// A catalog of `CONVERSATIONS` due conversations, user `u{i % 100}` at extension
/// `{1000 + i % 100}` each, with a transcript and a customer-leg recording, and ten standing holds
/// over three users or three extensions each (30 % in all), as `examples/lifecycle_scale.rs`
/// places them.
fn held_catalog(dir: &std::path::Path) -> SqliteCatalog {
    use custodian::catalog::holds::{HoldScope, Matter};
    use custodian::filter::Criteria;
    let cat = SqliteCatalog::open(&dir.join("held.db")).unwrap();
    let sha = "0".repeat(64);
    let changes: Vec<IndexChange> = (0..CONVERSATIONS)
        .map(|i| IndexChange::Upsert {
            rel_dir: format!("acme/2026/01/02/c{i}"),
            fingerprint: Fingerprint { mtime_ns: 1, size: 1 },
            conversation: Box::new(
                serde_json::from_value(serde_json::json!({
                    "schema": 1, "id": format!("c{i}"), "tenant": "acme", "type": "voice",
                    "source_platform": "cisco", "direction": "inbound",
                    "start": "2026-01-02T10:00:00+00:00", "end": "2026-01-02T10:01:00+00:00",
                    "participants": [{"user": format!("u{}", i % 100), "extension": format!("{}", 1000 + i % 100), "role": "agent"}],
                    "artifacts": [
                        {"file": "t.txt", "type": "transcript", "size": 200, "sha256": sha},
                        {"file": "c.wav", "type": "audio_recording", "audio_type": "conference_customer", "size": 9000, "sha256": sha}
                    ]
                }))
                .unwrap(),
            ),
        })
        .collect();
    cat.apply_index(&changes).unwrap();
    enable_policy(&cat);
    for m in 0..10u32 {
        let name = format!("standing-{m}");
        let matter = Matter {
            name: name.clone(),
            description: String::new(),
            created_at: Utc::now(),
            created_by: "bench".into(),
        };
        cat.create_matter(&matter, &event()).unwrap();
        let three: Vec<u32> = (3 * m..3 * m + 3).collect();
        let criteria = if m < 5 {
            Criteria {
                users: three.iter().map(|u| format!("u{u}")).collect(),
                ..Criteria::default()
            }
        } else {
            Criteria {
                extensions: three.iter().map(|u| format!("{}", 1000 + u)).collect(),
                ..Criteria::default()
            }
        };
        cat.place_hold(
            &name,
            &HoldScope::Standing(Box::new(criteria)),
            Utc::now(),
            "bench",
            &event(),
            &[],
        )
        .unwrap();
    }
    cat
}

fn due_summary(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let cat = held_catalog(dir.path());
    let policy = cat.lifecycle_policies().unwrap().remove(0);
    let query = DueQuery::of(&policy, Utc::now()).unwrap();
    let count = cat.due_summary(&query).unwrap();
    assert_eq!(count.held, CONVERSATIONS as u64 * 3 / 10);
    let mut group = c.benchmark_group("lifecycle");
    group.throughput(Throughput::Elements(CONVERSATIONS as u64));
    group.bench_function("due_summary_20000_ten_holds", |b| {
        b.iter(|| cat.due_summary(&query).unwrap())
    });
    let exported = DueQuery {
        require_export: Some("archive".into()),
        ..query.clone()
    };
    group.bench_function("due_summary_20000_ten_holds_require_export", |b| {
        b.iter(|| cat.due_summary(&exported).unwrap())
    });
    group.finish();
}

criterion_group!(benches, sweep_steps, due_summary);
criterion_main!(benches);
