//! Tests of the PostgreSQL catalog: the conformance suite, each test in a schema of its own,
//! and what only this backend does (migrations under a lock, query plans, advisory locks, the
//! index plan, several writers on one chain).

use std::sync::atomic::{AtomicU32, Ordering};

use super::index::plan_index;
use super::*;
use crate::audit::{AuditKind, GENESIS, verify_chain};
use crate::catalog::{conformance, sql};
use crate::filter::Dialect;
use crate::repository::record::Conversation;

/// The server the tests use: `CUSTODIAN_TEST_POSTGRES`, else the local one.
fn server() -> String {
    std::env::var("CUSTODIAN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema of its own on the test server, dropped with everything in it when the test
/// ends, passed or failed.
pub(crate) struct Scratch {
    server: String,
    schema: String,
    /// The server's URL with this schema as the search path.
    pub url: String,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let server = server();
        let schema = format!(
            "custodian_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut client = Client::connect(&server, NoTls).unwrap_or_else(|e| {
            panic!(
                "the PostgreSQL catalog tests need a server, and {} cannot be reached ({}); \
                 start PostgreSQL there or set CUSTODIAN_TEST_POSTGRES to a URL such as \
                 postgres://USER@HOST:5432/DATABASE",
                redact_url(&server),
                describe(&e)
            )
        });
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .unwrap();
        let separator = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{separator}options=-c%20search_path%3D{schema}");
        Scratch {
            server,
            schema,
            url,
        }
    }

    pub(crate) fn open(&self) -> PostgresCatalog {
        PostgresCatalog::open(&self.url).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(mut client) = Client::connect(&self.server, NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

fn fresh() -> (Scratch, PostgresCatalog) {
    let scratch = Scratch::new();
    let cat = scratch.open();
    (scratch, cat)
}

conformance::conformance_suite!(fresh);

#[test]
fn keyed_chain() {
    let scratch = Scratch::new();
    conformance::audit::keyed_chain(&|key| Box::new(scratch.open().with_audit_key(key)));
}

#[test]
fn sql_agrees_with_predicate() {
    let schemas = Mutex::new(Vec::new());
    conformance::select::sql_agrees_with_predicate(&|| {
        let scratch = Scratch::new();
        let cat = scratch.open();
        schemas.lock().unwrap().push(scratch);
        Box::new(cat)
    });
}

#[test]
fn exclusions_probe_an_index_whatever_the_statistics_say() {
    let (_scratch, cat) = fresh();
    for (exclude, index) in [
        (Exclude::DoneIn(RunId(1)), "run_items_run"),
        (Exclude::ExportedBy("p".into()), "export_state_pkey"),
    ] {
        let (sql, params) = sql::selection(
            Dialect::Postgres,
            sql::SELECT_CONVERSATION.postgres,
            &Filter::all(),
            &exclude,
            0,
            Some(512),
        );
        let plan: Vec<String> = cat
            .autocommit(|s| {
                s.query(&format!("EXPLAIN {sql}"), &sql_params(&params))?
                    .iter()
                    .map(|r| Ok(r.try_get(0)?))
                    .collect()
            })
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            !plan.contains("Anti Join") && plan.contains("SubPlan") && plan.contains(index),
            "{exclude:?}:\n{plan}"
        );
    }
}

#[test]
fn processes_opening_a_new_catalog_at_once_migrate_it_once() {
    let scratch = Scratch::new();
    let barrier = std::sync::Barrier::new(6);
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                barrier.wait();
                scratch.open();
            });
        }
    });
    let cat = scratch.open();
    assert_eq!(cat.conversation_count().unwrap(), 0);
    let versions: Vec<i64> = cat
        .autocommit(|s| {
            s.query("SELECT version FROM custodian_schema ORDER BY version", &[])?
                .iter()
                .map(|r| Ok(r.try_get(0)?))
                .collect()
        })
        .unwrap();
    assert_eq!(versions, (1..=MIGRATIONS.len() as i64).collect::<Vec<_>>());
}

#[test]
fn newer_schema_is_refused() {
    let scratch = Scratch::new();
    scratch
        .open()
        .autocommit(|s| s.execute("INSERT INTO custodian_schema (version) VALUES (99)", &[]))
        .unwrap();
    let err = PostgresCatalog::open(&scratch.url)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("schema version 99") && err.contains("upgrade custodian"),
        "{err}"
    );
}

#[test]
fn two_catalogs_writing_at_once_keep_one_audit_chain() {
    let scratch = Scratch::new();
    let (a, b) = (scratch.open(), scratch.open());
    let convs: Vec<Conversation> = (0..20)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "schema": 1, "id": format!("c{i}"), "tenant": "acme", "type": "im",
                "source_platform": "teams", "direction": "internal",
                "start": "2026-01-02T10:00:00+00:00", "end": "2026-01-02T10:01:00+00:00",
                "participants": [{"user": "a", "role": "participant"}], "artifacts": []
            }))
            .unwrap()
        })
        .collect();
    let changes: Vec<IndexChange> = convs
        .iter()
        .map(|c| IndexChange::Upsert {
            rel_dir: format!("acme/2026/01/02/{}", c.id),
            fingerprint: Fingerprint {
                mtime_ns: 1,
                size: 1,
            },
            conversation: Box::new(c.clone()),
        })
        .collect();
    a.apply_index(&changes).unwrap();
    let rounds = 25;
    std::thread::scope(|s| {
        for (cat, policy) in [(&a, "one"), (&b, "two")] {
            let convs = &convs;
            s.spawn(move || {
                for round in 0..rounds {
                    // A run records a conversation once, so each round is a run.
                    let run = cat.begin_run(policy, Mode::Full, "t").unwrap();
                    let outcomes: Vec<ItemOutcome> = convs
                        .iter()
                        .skip(round % 5)
                        .step_by(5)
                        .map(|c| ItemOutcome::Exported {
                            tenant: c.tenant.clone(),
                            conversation_id: c.id.clone(),
                            fingerprint: Fingerprint {
                                mtime_ns: 1,
                                size: 1,
                            },
                            artifacts: Vec::new(),
                            objects: vec![ObjectRecord {
                                key: format!("{policy}/{round}/{}", c.id),
                                size: 1,
                                sha256: GENESIS.into(),
                            }],
                            audit: NewEvent {
                                at: Utc::now(),
                                kind: AuditKind::ConversationExported,
                                actor: policy.into(),
                                policy: Some(policy.into()),
                                run: Some(run.0),
                                tenant: Some(c.tenant.clone()),
                                conversation_id: Some(c.id.clone()),
                                details: serde_json::json!({ "round": round }),
                            },
                        })
                        .collect();
                    cat.record_outcomes(run, policy, &outcomes).unwrap();
                }
            });
        }
    });
    let events = a
        .audit_events(&AuditQuery {
            limit: 10_000,
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(events.len(), 2 * rounds * 4);
    assert!(events.iter().zip(1..).all(|(e, seq)| e.seq == seq));
    verify_chain(&events, None).unwrap();
    for policy in ["one", "two"] {
        assert!(events.iter().any(|e| e.event.actor == policy));
    }
}

#[test]
fn an_unreachable_server_is_named_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://custodian:s3cret@127.0.0.1:{port}/records");
    let err = PostgresCatalog::open(&url).err().unwrap();
    assert!(matches!(err, CatalogError::Open { .. }), "{err:?}");
    let err = err.to_string();
    assert!(
        err.starts_with(&format!(
            "catalog postgres://custodian@127.0.0.1:{port}/records: "
        )) && err.contains(&format!("cannot connect to PostgreSQL at 127.0.0.1:{port}"))
            && err.contains("check that the server is running")
            && !err.contains("s3cret"),
        "{err}"
    );
}

#[test]
fn a_missing_schema_is_explained() {
    let scratch = Scratch::new();
    let url = scratch.url.replace(&scratch.schema, "no_such_schema");
    let err = PostgresCatalog::open(&url).err().unwrap().to_string();
    assert!(
        err.contains("search_path `no_such_schema` names no schema that exists")
            && err.contains("CREATE SCHEMA"),
        "{err}"
    );
}

#[test]
fn a_held_policy_lock_is_released_when_its_process_dies() {
    let (_scratch, cat) = fresh();
    let held = cat.lock_policy("p").unwrap();
    let err = cat.lock_policy("p").err().unwrap().to_string();
    assert!(err.contains("policy `p` is already running"), "{err}");
    // A process that dies closes its connection without unlocking.
    std::mem::forget(held);
    let key = cat.lock_key("policy", "p");
    cat.autocommit(|s| {
        s.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
             AND classid = (($1::int8 >> 32) & 4294967295)::oid \
             AND objid = ($1::int8 & 4294967295)::oid AND objsubid = 1",
            &[&key],
        )
    })
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cat.lock_policy("p").is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the lock outlived its connection"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn index_plans_follow_the_order_of_changes() {
    let conv = |id: &str| -> Conversation {
        serde_json::from_value(serde_json::json!({
            "schema": 1, "id": id, "tenant": "t", "type": "im", "source_platform": "x",
            "direction": "internal", "start": "2026-01-02T10:00:00+00:00",
            "end": "2026-01-02T10:01:00+00:00", "participants": [{"user": "a", "role": "participant"}]
        }))
        .unwrap()
    };
    let up = |dir: &str, id: &str| IndexChange::Upsert {
        rel_dir: dir.into(),
        fingerprint: Fingerprint {
            mtime_ns: 0,
            size: 0,
        },
        conversation: Box::new(conv(id)),
    };
    let existing = vec![
        (1, "d1".to_string(), "t".to_string(), "a".to_string()),
        (2, "d2".to_string(), "t".to_string(), "b".to_string()),
    ];
    let changes = [
        IndexChange::Remove {
            rel_dir: "d1".into(),
        },
        up("d1", "a"),
        up("d3", "b"),
        up("d2", "c"),
        up("d4", "c"),
        IndexChange::Remove {
            rel_dir: "d4".into(),
        },
    ];
    let plan = plan_index(&changes, &existing);
    assert!(plan.outcomes[2].as_ref().unwrap().contains("d2"));
    assert!(plan.outcomes[4].as_ref().unwrap().contains("d2"));
    assert_eq!(
        plan.outcomes
            .iter()
            .map(Option::is_some)
            .collect::<Vec<_>>(),
        [false, false, true, false, true, false]
    );
    assert_eq!(plan.delete, [1]);
    assert_eq!(plan.insert, [1]);
    assert_eq!(plan.update, [(2, 3)]);
}

#[test]
fn a_run_falls_in_the_duration_buckets_its_length_reaches_and_old_runs_are_counted_on_upgrade() {
    use crate::catalog::{Counters, Mode, RunStatus};
    let (scratch, cat) = fresh();
    let run = cat.begin_run("p", Mode::Full, "t").unwrap();
    // Started two minutes before now: it ends 120 s long.
    cat.autocommit(|s| {
        s.execute(
            "UPDATE job_runs SET started_at = started_at - interval '120 seconds'",
            &[],
        )
    })
    .unwrap();
    cat.finish_run(run, RunStatus::Succeeded, &Counters::default(), None, None)
        .unwrap();
    let buckets = |cat: &PostgresCatalog| cat.run_metrics().unwrap().totals[0].durations.clone();
    let expected = conformance::BUCKETS_OF_ONE_120_S_RUN;
    assert_eq!(buckets(&cat), expected);

    // A catalog from before the buckets counts the runs it has when it is upgraded.
    drop(cat);
    Client::connect(&scratch.url, NoTls)
        .unwrap()
        .batch_execute(
            "DROP TRIGGER run_duration_buckets_on_finish ON job_runs; \
             DROP FUNCTION run_duration_buckets_on_finish(); DROP TABLE run_duration_buckets; \
             DROP TABLE run_duration_bounds; \
             DELETE FROM custodian_schema WHERE version = (SELECT max(version) FROM custodian_schema)",
        )
        .unwrap();
    assert_eq!(buckets(&scratch.open()), expected);
}
