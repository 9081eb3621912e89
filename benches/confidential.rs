//! The hot path of a confidential-flag run: one page of 2,000 conversations flipped in one
//! catalog transaction (flag, kept value, one hash-chained audit event each). Whole runs over a
//! million conversations live in `scripts/measure-jobs.sh`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use custodian::catalog::sqlite::SqliteCatalog;
use custodian::catalog::{Catalog, ConfidentialPage, Exclude, Fingerprint, IndexChange, Mode};
use custodian::filter::Filter;

const CONVERSATIONS: usize = 20_000;
const PAGE: usize = 2000;

fn catalog(dir: &std::path::Path) -> SqliteCatalog {
    let cat = SqliteCatalog::open(&dir.join("c.db")).unwrap();
    let changes: Vec<IndexChange> = (0..CONVERSATIONS)
        .map(|i| IndexChange::Upsert {
            rel_dir: format!("acme/2026/01/02/c{i}"),
            fingerprint: Fingerprint {
                mtime_ns: 1,
                size: 1,
            },
            conversation: Box::new(
                serde_json::from_value(serde_json::json!({
                    "schema": 1, "id": format!("c{i}"), "tenant": "acme", "type": "voice",
                    "source_platform": "cisco", "direction": "inbound",
                    "start": "2026-01-02T10:00:00+00:00", "end": "2026-01-02T12:01:00+00:00",
                    "participants": [{"user": "a", "role": "agent"}],
                    "artifacts": []
                }))
                .unwrap(),
            ),
        })
        .collect();
    cat.apply_index(&changes).unwrap();
    cat
}

fn flag_page(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path());
    let run = cat.begin_run("flag", Mode::Full, "catalog").unwrap();
    let filter = Filter::all();
    let mut group = c.benchmark_group("confidential");
    group.throughput(Throughput::Elements(PAGE as u64));
    group.sample_size(20);
    let page = |value| ConfidentialPage {
        run,
        policy: "flag",
        filter: &filter,
        exclude: &Exclude::Nothing,
        value,
        remember: false,
        actor: "bench",
        limit: PAGE,
    };
    // Alternately sets and clears the flag of the first page, so every iteration changes
    // (and audits) all 2,000.
    let mut value = true;
    group.bench_function("flip_page_2000", |b| {
        b.iter(|| {
            let (n, changed, _) = cat.set_confidential_page(&page(value), 0).unwrap();
            value = !value;
            assert_eq!((n, changed), (PAGE as u64, PAGE as u64));
        })
    });
    let unchanged = page(!value);
    group.bench_function("unchanged_page_2000", |b| {
        b.iter(|| cat.set_confidential_page(&unchanged, 0).unwrap())
    });
    group.finish();
}

criterion_group!(benches, flag_page);
criterion_main!(benches);
