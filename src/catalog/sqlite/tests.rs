//! Tests of the SQLite catalog: the conformance suite on fresh catalog files, and what only
//! this backend does (its migrations, its query plans).

use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use super::runs::{FAILED_ITEMS, RUN_COUNTERS};
use super::{SqliteCatalog, to_sql};
use crate::catalog::{Catalog, conformance, holds, sql};
use crate::filter::{Criteria, Dialect};

fn fresh() -> (tempfile::TempDir, SqliteCatalog) {
    let dir = tempfile::tempdir().unwrap();
    let cat = SqliteCatalog::open(&dir.path().join("c.db")).unwrap();
    (dir, cat)
}

conformance::conformance_suite!(fresh);

#[test]
fn keyed_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    conformance::audit::keyed_chain(&|key| {
        Box::new(SqliteCatalog::open(&path).unwrap().with_audit_key(key))
    });
}

#[test]
fn sql_agrees_with_predicate() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicU32::new(0);
    conformance::select::sql_agrees_with_predicate(&|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Box::new(SqliteCatalog::open(&dir.path().join(format!("c{i}.db"))).unwrap())
    });
}

#[test]
fn failed_subjects_are_probed_through_an_index_not_a_scan_of_the_run() {
    let (_dir, cat) = fresh();
    for (sql, n) in [(RUN_COUNTERS, 1), (FAILED_ITEMS, 2)] {
        let plan: Vec<String> = cat
            .with_reader(|conn| {
                let mut stmt = conn
                    .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .map_err(|e| cat.err(e))?;
                let rows = stmt
                    .query_map(params_from_iter([1, 10].into_iter().take(n)), |r| {
                        r.get::<_, String>(3)
                    })
                    .map_err(|e| cat.err(e))?;
                rows.collect::<rusqlite::Result<_>>()
                    .map_err(|e| cat.err(e))
            })
            .unwrap();
        assert!(
            plan.iter()
                .any(|l| l.contains("SEARCH x USING COVERING INDEX run_items_subject")),
            "{sql}:\n{}",
            plan.join("\n")
        );
    }
}

/// What the standing holds by users and by extensions cover is found through the
/// participants' indexes, not by reading every conversation (docs/performance.md,
/// "Lifecycle").
#[test]
fn standing_holds_by_participant_are_found_through_an_index() {
    let (_dir, cat) = fresh();
    let standing = [
        holds::standing(
            "a".into(),
            &Criteria {
                users: vec!["bob".into()],
                ..Criteria::default()
            },
        ),
        holds::standing(
            "b".into(),
            &Criteria {
                extensions: vec!["1001".into()],
                ..Criteria::default()
            },
        ),
    ];
    let mut params = Vec::new();
    let set = sql::held_set(&["a".into(), "b".into()], &standing, 3, &mut params).unwrap();
    let mut bound = vec![
        rusqlite::types::Value::Integer(0),
        rusqlite::types::Value::Null,
        rusqlite::types::Value::Null,
    ];
    bound.extend(params.iter().map(to_sql));
    let plan: Vec<String> = cat
        .with_reader(|conn| {
            let mut stmt = conn
                .prepare(&sql::numbered(&format!(
                    "EXPLAIN QUERY PLAN WITH {set} SELECT count(*) FROM held"
                )))
                .map_err(|e| cat.err(e))?;
            let rows = stmt
                .query_map(params_from_iter(&bound), |r| r.get::<_, String>(3))
                .map_err(|e| cat.err(e))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| cat.err(e))
        })
        .unwrap();
    let shown = plan.join("\n");
    for index in ["participants_user", "participants_extension"] {
        assert!(
            plan.iter()
                .any(|l| l.starts_with(&format!("SEARCH p USING COVERING INDEX {index}"))),
            "{shown}"
        );
    }
    assert!(
        !plan
            .iter()
            .any(|l| l.split_whitespace().take(2).eq(["SCAN", "c"])),
        "{shown}"
    );
}

/// The next due date is read in the order of the end-time index, not by sorting every
/// artifact of the type (docs/performance.md, "Lifecycle").
#[test]
fn the_next_due_is_read_in_end_time_order() {
    let (_dir, cat) = fresh();
    let sql = super::lifecycle::next_due("(c.legal_hold = 1)");
    let plan: Vec<String> = cat
        .with_reader(|conn| {
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .map_err(|e| cat.err(e))?;
            let rows = stmt
                .query_map(params_from_iter([0, 0, 0]), |r| r.get::<_, String>(3))
                .map_err(|e| cat.err(e))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| cat.err(e))
        })
        .unwrap();
    let shown = plan.join("\n");
    assert!(
        plan.iter()
            .any(|l| l.starts_with("SEARCH c USING INDEX conversations_end")),
        "{shown}"
    );
    assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "{shown}");
}

/// The plan SQLite makes of `sql` with `bound`, a line per step.
fn query_plan(cat: &SqliteCatalog, sql: &str, bound: &[rusqlite::types::Value]) -> Vec<String> {
    cat.with_reader(|conn| {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .map_err(|e| cat.err(e))?;
        let rows = stmt
            .query_map(params_from_iter(bound), |r| r.get::<_, String>(3))
            .map_err(|e| cat.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| cat.err(e))
    })
    .unwrap()
}

/// The due summary reads the artifacts of the policy's type through their index, in its scan
/// and in its pass over the held conversations, and looks no due artifact up in the held set
/// (docs/performance.md, "`plan lifecycle` under ten standing holds").
#[test]
fn the_due_summary_reads_the_artifacts_of_its_type_through_their_index() {
    let (_dir, cat) = fresh();
    let standing = [holds::standing(
        "a".into(),
        &Criteria {
            users: vec!["bob".into()],
            ..Criteria::default()
        },
    )];
    let mut params = Vec::new();
    let set = sql::held_set(&["a".into()], &standing, 3, &mut params).unwrap();
    let summary = sql::numbered(&sql::due_summary(
        Dialect::Sqlite,
        super::lifecycle::LIVE,
        "TRUE",
        Some((&set, 1)),
    ));
    let mut bound = vec![
        Value::Integer(0),
        Value::Text("transcript".into()),
        Value::Null,
    ];
    bound.extend(params.iter().map(to_sql));
    let plan = query_plan(&cat, &summary, &bound);
    let shown = plan.join("\n");
    let through_index = plan
        .iter()
        .filter(|l| l.starts_with("SEARCH a USING COVERING INDEX artifacts_kind"))
        .count();
    assert_eq!(through_index, 2, "{shown}");
    assert!(
        !plan
            .iter()
            .any(|l| l.starts_with("SCAN a") || l.contains("AUTOMATIC")),
        "{shown}"
    );
}

/// A page of the sweep's due artifacts is read in index order from its cursor, not sorted
/// from every due artifact after it.
#[test]
fn a_page_of_due_artifacts_is_read_in_index_order() {
    let (_dir, cat) = fresh();
    let page = super::lifecycle::due_page("(c.legal_hold = 1)", "TRUE", 4);
    let bound = [
        Value::Integer(0),
        Value::Text("transcript".into()),
        Value::Null,
        Value::Integer(0),
        Value::Integer(0),
        Value::Integer(2000),
    ];
    let plan = query_plan(&cat, &page, &bound);
    let shown = plan.join("\n");
    assert!(
        plan.iter().any(|l| l.starts_with(
            "SEARCH a USING COVERING INDEX artifacts_kind (kind=? AND audio_type=? AND (conversation,ordinal)>(?,?))"
        )),
        "{shown}"
    );
    assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "{shown}");
}

#[test]
fn processes_opening_a_new_catalog_at_once_migrate_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let barrier = std::sync::Barrier::new(6);
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                barrier.wait();
                SqliteCatalog::open(&path).unwrap();
            });
        }
    });
    assert_eq!(
        SqliteCatalog::open(&path)
            .unwrap()
            .conversation_count()
            .unwrap(),
        0
    );
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    drop(SqliteCatalog::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = SqliteCatalog::open(&path).err().unwrap().to_string();
    assert!(err.contains("upgrade custodian"), "{err}");
}

#[test]
fn a_new_catalog_and_its_wal_are_closed_to_others() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, cat) = fresh();
    cat.create_matter(
        &crate::catalog::holds::Matter {
            name: "m".into(),
            description: String::new(),
            created_at: chrono::Utc::now(),
            created_by: "t".into(),
        },
        &crate::audit::NewEvent {
            at: chrono::Utc::now(),
            kind: crate::audit::AuditKind::MatterCreated,
            actor: "t".into(),
            policy: None,
            run: None,
            tenant: None,
            conversation_id: None,
            details: serde_json::json!({}),
        },
    )
    .unwrap();
    for file in ["c.db", "c.db-wal", "c.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o007, 0, "{file}: mode {mode:o}");
    }
}

#[test]
fn a_run_falls_in_the_duration_buckets_its_length_reaches_and_old_runs_are_counted_on_upgrade() {
    use crate::catalog::{Counters, Mode, RunStatus};
    let (dir, cat) = fresh();
    let run = cat.begin_run("p", Mode::Full, "t").unwrap();
    let raw = Connection::open(dir.path().join("c.db")).unwrap();
    // Started two minutes before now: it ends 120 s long.
    raw.execute(
        "UPDATE job_runs SET started_at = strftime('%Y-%m-%dT%H:%M:%fZ', julianday(started_at) - 120.0 / 86400)",
        [],
    )
    .unwrap();
    cat.finish_run(run, RunStatus::Succeeded, &Counters::default(), None, None)
        .unwrap();
    let buckets = |cat: &SqliteCatalog| cat.run_metrics().unwrap().totals[0].durations.clone();
    let expected = conformance::BUCKETS_OF_ONE_120_S_RUN;
    assert_eq!(buckets(&cat), expected);

    // A catalog from before the buckets counts the runs it has when it is upgraded.
    drop(cat);
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    raw.execute_batch(
        "DROP TRIGGER run_duration_buckets_on_finish; DROP TABLE run_duration_buckets; \
         DROP TABLE run_duration_bounds;",
    )
    .unwrap();
    raw.pragma_update(None, "user_version", version - 1)
        .unwrap();
    drop(raw);
    let cat = SqliteCatalog::open(&dir.path().join("c.db")).unwrap();
    assert_eq!(buckets(&cat), expected);
}
