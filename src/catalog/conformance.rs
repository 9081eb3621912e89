//! The catalog conformance suite: behaviour every [`Catalog`] implementation must show, written
//! against the trait and run against each implementation (`conformance_suite!` makes one test
//! per function for an implementation's fresh catalogs).

use chrono::{DateTime, Duration, FixedOffset, SubsecRound, TimeZone, Utc};
use proptest::prelude::*;

use super::lifecycle::RetentionAction;
use super::*;
use crate::audit::{AuditKind, KeyError, KeySource, verify_chain};
use crate::filter::Criteria;
use crate::repository::record::{
    Artifact, ArtifactType, AudioRecordingType, ConversationType, Direction, Encryption, Flags,
    Participant, Role,
};

/// One `#[test]` per conformance function, each on a catalog from `$fresh()`, which returns
/// whatever owns the catalog's storage (dropped after the test) and the catalog.
macro_rules! conformance_suite {
    ($fresh:path) => {
        $crate::catalog::conformance::conformance_suite!(
            @each $fresh;
            round_trip,
            duplicate_ids_are_reported,
            a_record_the_catalog_cannot_store_fails_alone,
            index_batches_apply_in_order,
            runs_and_audit,
            run_history,
            audit_queries,
            policy_lock_is_exclusive,
            lifecycle_policies_and_versions,
            due_artifacts_and_summary,
            deletes_are_recorded_once,
            confidential_pages,
            upload_journal,
            object_keys_are_held_by_one_file,
            object_key_claims_race_to_one_winner,
            incremental_state_is_per_record_version_and_artifact,
        );
    };
    (@each $fresh:path; $($name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (_storage, cat) = $fresh();
                $crate::catalog::conformance::$name(&cat);
            }
        )+
    };
}
pub(crate) use conformance_suite;

const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn rel_dir(c: &Conversation) -> String {
    format!("{}/{}/{}", c.tenant, c.start.format("%Y/%m/%d"), c.id)
}

fn upsert(c: &Conversation) -> IndexChange {
    upsert_at(&rel_dir(c), c)
}

/// The fingerprint `upsert` indexes records with.
const FP: Fingerprint = Fingerprint {
    mtime_ns: 1,
    size: 2,
};

fn upsert_at(dir: &str, c: &Conversation) -> IndexChange {
    IndexChange::Upsert {
        rel_dir: dir.into(),
        fingerprint: FP,
        conversation: Box::new(c.clone()),
    }
}

fn all_events(cat: &dyn Catalog) -> Vec<crate::audit::AuditEvent> {
    cat.audit_events(&AuditQuery {
        limit: 10_000,
        ..AuditQuery::default()
    })
    .unwrap()
}

fn refused<T: std::fmt::Debug>(result: Result<T>, needle: &str) {
    match result {
        Err(CatalogError::Refused(m)) => assert!(m.contains(needle), "{m}"),
        other => panic!("expected a refusal naming {needle:?}, got {other:?}"),
    }
}

fn select_all(cat: &dyn Catalog, filter: &Filter, exclude: &Exclude) -> Vec<Conversation> {
    let mut out = Vec::new();
    let mut after = i64::MIN;
    loop {
        let page = cat.select_page(filter, exclude, after, 7).unwrap();
        let Some(last) = page.last() else { break };
        after = last.rowid;
        out.extend(page.into_iter().map(|s| s.conversation));
    }
    out
}

fn base(id: &str, tenant: &str) -> Conversation {
    let start: DateTime<FixedOffset> = "2026-01-02T10:00:00+01:00".parse().unwrap();
    Conversation {
        schema: 1,
        id: id.into(),
        tenant: tenant.into(),
        kind: ConversationType::Voice,
        source_platform: "cisco".into(),
        direction: Direction::Inbound,
        start,
        end: start + Duration::seconds(90),
        participants: vec![Participant {
            user: Some("alice".into()),
            extension: Some("1001".into()),
            role: Role::Agent,
        }],
        flags: Flags::default(),
        channel: None,
        artifacts: vec![Artifact {
            file: "a.wav".into(),
            kind: ArtifactType::AudioRecording,
            audio_type: Some(AudioRecordingType::ConferenceAgent),
            size: 10,
            sha256: SHA.into(),
            encryption: Some(Encryption {
                key_id: "k1".into(),
            }),
        }],
    }
}

/// A record whose content no catalog can store (a size past i64, a NUL in text) fails alone:
/// the rest of its batch is indexed, and nothing of it is written.
pub fn a_record_the_catalog_cannot_store_fails_alone(cat: &dyn Catalog) {
    let good = base("good", "acme");
    let mut huge = base("huge", "acme");
    huge.artifacts[0].size = u64::MAX;
    let mut nul = base("nul", "acme");
    nul.participants[0].user = Some("a\0b".into());
    let mut channel = base("channel", "acme");
    channel.channel = Some("../../globex/channels/X".into());
    let outcomes = cat
        .apply_index(&[upsert(&huge), upsert(&good), upsert(&nul), upsert(&channel)])
        .unwrap();
    assert_eq!(outcomes[1], None);
    for (i, needle) in [(0, "out of range"), (2, "NUL"), (3, "not a plain name")] {
        let reason = outcomes[i].as_deref().unwrap_or_default();
        assert!(reason.contains(needle), "{i}: {reason:?}");
    }
    let ids: Vec<String> = select_all(cat, &Filter::all(), &Exclude::Nothing)
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, vec!["good".to_owned()]);
}

/// Records round-trip through index and selection unchanged.
pub fn round_trip(cat: &dyn Catalog) {
    let c = base("c1", "acme");
    assert_eq!(cat.apply_index(&[upsert(&c)]).unwrap(), vec![None]);
    let got = select_all(cat, &Filter::all(), &Exclude::Nothing);
    assert_eq!(got, vec![c.clone()]);
    assert_eq!(cat.fingerprints_under("acme/2026/01/02").unwrap().len(), 1);
    assert!(cat.fingerprints_under("acme/2026/01/0").unwrap().is_empty());
    assert_eq!(
        cat.indexed_days().unwrap(),
        vec!["acme/2026/01/02".to_string()]
    );
    assert_eq!(cat.live_artifact_count().unwrap(), 1);
    let mut changed = c.clone();
    changed.artifacts.clear();
    cat.apply_index(&[upsert(&changed)]).unwrap();
    assert_eq!(
        select_all(cat, &Filter::all(), &Exclude::Nothing),
        vec![changed]
    );
    assert_eq!(
        cat.live_artifact_count().unwrap(),
        0,
        "children are replaced"
    );
    cat.apply_index(&[IndexChange::Remove {
        rel_dir: rel_dir(&c),
    }])
    .unwrap();
    assert_eq!(cat.conversation_count().unwrap(), 0);
}

/// The same tenant and id from two directories is an item error, not a failed batch.
pub fn duplicate_ids_are_reported(cat: &dyn Catalog) {
    let a = base("dup", "acme");
    let mut b = a.clone();
    b.start += Duration::days(1);
    b.end += Duration::days(1);
    let out = cat
        .apply_index(&[upsert(&a), upsert(&b), upsert(&base("other", "acme"))])
        .unwrap();
    assert!(out[0].is_none() && out[2].is_none());
    let msg = out[1].as_ref().unwrap();
    assert!(
        msg.contains("`dup`") && msg.contains("acme/2026/01/02/dup"),
        "{msg}"
    );
    assert_eq!(cat.conversation_count().unwrap(), 2);
}

/// Runs record outcomes, exclude what they exported, and chain one audit event per export.
pub fn runs_and_audit(cat: &dyn Catalog) {
    let convs: Vec<_> = (0..5).map(|i| base(&format!("c{i}"), "acme")).collect();
    cat.apply_index(&convs.iter().map(upsert).collect::<Vec<_>>())
        .unwrap();
    let run = cat.begin_run("p", Mode::Incremental, "t").unwrap();
    assert_eq!(cat.interrupted_run("p").unwrap().unwrap().id, run);
    let exported = |c: &Conversation| ItemOutcome::Exported {
        tenant: c.tenant.clone(),
        conversation_id: c.id.clone(),
        fingerprint: FP,
        artifacts: Vec::new(),
        objects: vec![ObjectRecord {
            key: format!("k/{}", c.id),
            size: 3,
            sha256: SHA.into(),
        }],
        audit: NewEvent {
            at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            kind: AuditKind::ConversationExported,
            actor: "t".into(),
            policy: Some("p".into()),
            run: Some(run.0),
            tenant: Some(c.tenant.clone()),
            conversation_id: Some(c.id.clone()),
            details: serde_json::json!({}),
        },
    };
    cat.record_outcomes(run, "p", &[exported(&convs[0]), exported(&convs[1])])
        .unwrap();
    cat.record_outcomes(
        run,
        "p",
        &[ItemOutcome::Failed {
            subject: "acme/c2".into(),
            error: "boom".into(),
        }],
    )
    .unwrap();
    let remaining = select_all(cat, &Filter::all(), &Exclude::ExportedBy("p".into()));
    assert_eq!(
        remaining.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["c2", "c3", "c4"]
    );
    assert_eq!(
        cat.count_selection(&Filter::all(), &Exclude::DoneIn(run))
            .unwrap(),
        3
    );
    assert_eq!(
        cat.count_selection(&Filter::all(), &Exclude::ExportedBy("other".into()))
            .unwrap(),
        5
    );
    let counters = cat.run_counters(run).unwrap();
    assert_eq!(
        (
            counters.exported,
            counters.failed,
            counters.objects,
            counters.bytes
        ),
        (2, 1, 2, 6)
    );
    let mut keys = Vec::new();
    cat.run_objects(run, &mut |o| {
        keys.push(o.key);
        Ok(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(keys, ["k/c0", "k/c1"]);
    cat.finish_run(
        run,
        RunStatus::CompletedWithFailures,
        &counters,
        Some("m"),
        Some("1 failed"),
    )
    .unwrap();
    assert!(cat.interrupted_run("p").unwrap().is_none());
    let stored = cat.job_run(run).unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::CompletedWithFailures);
    assert_eq!(stored.manifest_key.as_deref(), Some("m"));
    assert_eq!(cat.failed_items(run, 10).unwrap()[0].error, "boom");
    let events = cat
        .audit_events(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(events.len(), 2);
    verify_chain(&events, None).unwrap();

    // History pruning drops succeeded runs finished before the cutoff, and only those.
    let ok = cat.begin_run("p", Mode::Full, "t").unwrap();
    cat.finish_run(ok, RunStatus::Succeeded, &Counters::default(), None, None)
        .unwrap();
    let later = Utc::now() + Duration::days(1);
    assert_eq!(cat.prune_runs("other", later).unwrap(), 0);
    assert_eq!(
        cat.prune_runs("p", Utc::now() - Duration::days(1)).unwrap(),
        0
    );
    assert_eq!(cat.prune_runs("p", later).unwrap(), 1);
    assert!(cat.job_run(ok).unwrap().is_none());
    assert!(
        cat.job_run(run).unwrap().is_some(),
        "a run with failures is kept"
    );
    let after = cat
        .audit_events(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(after.len(), 2, "the audit trail is never pruned");
}

/// A policy lock is exclusive until dropped.
pub fn policy_lock_is_exclusive(cat: &dyn Catalog) {
    let held = cat.lock_policy("p").unwrap();
    assert!(matches!(
        cat.lock_policy("p"),
        Err(CatalogError::Busy { .. })
    ));
    assert!(cat.lock_policy("q").is_ok());
    drop(held);
    assert!(cat.lock_policy("p").is_ok());
}

fn arb_conversation(i: usize) -> impl Strategy<Value = Conversation> {
    (
        (
            0usize..2,
            0usize..ConversationType::ALL.len(),
            0usize..3,
            0usize..Direction::ALL.len(),
        ),
        (
            0i64..20 * 86_400,
            0i64..10_000,
            proptest::collection::vec((0usize..3, 0usize..3), 0..3),
        ),
        (
            any::<[bool; 4]>(),
            proptest::collection::vec(
                (0usize..ArtifactType::ALL.len(), 0usize..5, 0usize..3),
                0..3,
            ),
        ),
    )
        .prop_map(
            move |((tenant, kind, platform, direction), (start, dur, people), (flags, arts))| {
                let start = Utc
                    .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                    .unwrap()
                    .fixed_offset()
                    + Duration::seconds(start);
                Conversation {
                    schema: 1,
                    id: format!("c{i}"),
                    tenant: ["acme", "globex"][tenant].into(),
                    kind: ConversationType::ALL[kind],
                    source_platform: ["cisco", "teams", "ipc"][platform].into(),
                    direction: Direction::ALL[direction],
                    start,
                    end: start + Duration::seconds(dur),
                    participants: people
                        .into_iter()
                        .map(|(u, e)| Participant {
                            user: (u > 0).then(|| format!("user{u}")),
                            extension: (u == 0 || e > 0).then(|| format!("{e}00")),
                            role: Role::Participant,
                        })
                        .collect(),
                    flags: Flags {
                        cdr_only: flags[0],
                        imported: flags[1],
                        confidential: flags[2],
                        legal_hold: flags[3],
                    },
                    channel: Some("ch".into()),
                    artifacts: arts
                        .into_iter()
                        .enumerate()
                        .map(|(n, (kind, audio, ext))| {
                            let kind = ArtifactType::ALL[kind];
                            Artifact {
                                file: format!("f{n}.{}", ["wav", "MP3", "txt"][ext]),
                                kind,
                                audio_type: (kind == ArtifactType::AudioRecording)
                                    .then(|| AudioRecordingType::ALL[audio]),
                                size: 1,
                                sha256: SHA.into(),
                                encryption: None,
                            }
                        })
                        .collect(),
                }
            },
        )
}

fn arb_criteria() -> impl Strategy<Value = Criteria> {
    let pick = |n: usize| proptest::collection::vec(0..n, 0..3);
    (
        (
            pick(2),
            pick(ConversationType::ALL.len()),
            pick(3),
            pick(Direction::ALL.len()),
            pick(3),
            pick(3),
        ),
        (
            proptest::option::of(0i64..20 * 86_400),
            proptest::option::of(0i64..20 * 86_400),
            proptest::option::of(0u64..10_000),
            proptest::option::of(0u64..10_000),
        ),
        (
            any::<[Option<bool>; 4]>(),
            pick(ArtifactType::ALL.len()),
            pick(AudioRecordingType::ALL.len()),
            pick(3),
        ),
    )
        .prop_map(
            |(
                (tenants, kinds, platforms, directions, users, exts),
                (after, before, min, max),
                (flags, akinds, atypes, fexts),
            )| {
                let t0 = Utc
                    .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                    .unwrap()
                    .fixed_offset();
                Criteria {
                    tenants: tenants
                        .into_iter()
                        .map(|i| ["acme", "globex"][i].to_string())
                        .collect(),
                    conversation_types: kinds
                        .into_iter()
                        .map(|i| ConversationType::ALL[i])
                        .collect(),
                    source_platforms: platforms
                        .into_iter()
                        .map(|i| ["cisco", "teams", "ipc"][i].to_string())
                        .collect(),
                    directions: directions.into_iter().map(|i| Direction::ALL[i]).collect(),
                    users: users.into_iter().map(|i| format!("user{i}")).collect(),
                    extensions: exts.into_iter().map(|i| format!("{i}00")).collect(),
                    start_after: after.map(|s| t0 + Duration::seconds(s)),
                    start_before: before.map(|s| t0 + Duration::seconds(s)),
                    min_duration: min.map(std::time::Duration::from_secs),
                    max_duration: max.map(std::time::Duration::from_secs),
                    confidential: flags[0],
                    cdr_only: flags[1],
                    imported: flags[2],
                    legal_hold: flags[3],
                    artifact_types: akinds.into_iter().map(|i| ArtifactType::ALL[i]).collect(),
                    audio_recording_types: atypes
                        .into_iter()
                        .map(|i| AudioRecordingType::ALL[i])
                        .collect(),
                    file_extensions: fexts
                        .into_iter()
                        .map(|i| ["wav", "mp3", ".TXT"][i].to_string())
                        .collect(),
                    ..Criteria::default()
                }
            },
        )
}

/// Random records and criteria: SQL selection equals the in-memory predicate.
pub fn sql_agrees_with_predicate(new_catalog: &dyn Fn() -> Box<dyn Catalog>) {
    let records = (0..30usize).map(arb_conversation).collect::<Vec<_>>();
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 48,
        ..Default::default()
    });
    runner
        .run(
            &(records, proptest::collection::vec(arb_criteria(), 8)),
            |(convs, criteria)| {
                let cat = new_catalog();
                cat.apply_index(&convs.iter().map(upsert).collect::<Vec<_>>())
                    .unwrap();
                for c in &criteria {
                    let filter = Filter::resolve(c, Utc::now(), chrono_tz::Tz::UTC);
                    let mut by_sql: Vec<String> =
                        select_all(cat.as_ref(), &filter, &Exclude::Nothing)
                            .into_iter()
                            .map(|c| c.id)
                            .collect();
                    let mut by_predicate: Vec<String> = convs
                        .iter()
                        .filter(|c| filter.matches(c))
                        .map(|c| c.id.clone())
                        .collect();
                    by_sql.sort();
                    by_predicate.sort();
                    prop_assert_eq!(&by_sql, &by_predicate, "criteria {:?}", c);
                    prop_assert_eq!(
                        cat.count_selection(&filter, &Exclude::Nothing).unwrap(),
                        by_sql.len() as u64
                    );
                }
                Ok(())
            },
        )
        .unwrap();
}

/// A batch is applied change by change: a directory removed and added again, an id that moves
/// between directories, the same directory twice, and a refused change amid accepted ones.
pub fn index_batches_apply_in_order(cat: &dyn Catalog) {
    let a = base("a", "acme");
    let ids = |cat: &dyn Catalog| -> Vec<(String, String)> {
        let mut page = cat
            .select_page(&Filter::all(), &Exclude::Nothing, i64::MIN, 100)
            .unwrap();
        page.sort_by(|x, y| x.rel_dir.cmp(&y.rel_dir));
        page.into_iter()
            .map(|s| (s.rel_dir, s.conversation.id))
            .collect()
    };
    let out = cat
        .apply_index(&[
            upsert(&a),
            IndexChange::Remove {
                rel_dir: rel_dir(&a),
            },
            upsert(&a),
            IndexChange::Remove {
                rel_dir: "acme/2026/01/09/never-indexed".into(),
            },
        ])
        .unwrap();
    assert_eq!(out, vec![None; 4]);
    assert_eq!(ids(cat), [(rel_dir(&a), "a".to_string())]);

    // The record moves to another day directory: removed there, added here, in one batch.
    let moved = "acme/2026/01/05/a";
    let out = cat
        .apply_index(&[
            IndexChange::Remove {
                rel_dir: rel_dir(&a),
            },
            upsert_at(moved, &a),
        ])
        .unwrap();
    assert_eq!(out, vec![None, None]);
    assert_eq!(ids(cat), [(moved.to_string(), "a".to_string())]);

    // Directory y gives up id `y` before directory x takes it: valid in this order.
    let (x, y) = ("acme/2026/01/06/x", "acme/2026/01/07/y");
    let with_id = |id: &str| base(id, "acme");
    cat.apply_index(&[upsert_at(x, &with_id("x")), upsert_at(y, &with_id("y"))])
        .unwrap();
    let out = cat
        .apply_index(&[upsert_at(y, &with_id("z")), upsert_at(x, &with_id("y"))])
        .unwrap();
    assert_eq!(out, vec![None, None]);
    assert_eq!(
        ids(cat),
        [
            (moved.to_string(), "a".to_string()),
            (x.to_string(), "y".to_string()),
            (y.to_string(), "z".to_string()),
        ]
    );

    // In the other order the first change is refused (z is still y's) and the second applies.
    let out = cat
        .apply_index(&[upsert_at(x, &with_id("z")), upsert_at(y, &with_id("w"))])
        .unwrap();
    assert!(out[0].as_ref().unwrap().contains(y), "{:?}", out[0]);
    assert_eq!(out[1], None);
    assert_eq!(
        ids(cat),
        [
            (moved.to_string(), "a".to_string()),
            (x.to_string(), "y".to_string()),
            (y.to_string(), "w".to_string()),
        ]
    );

    // The same directory twice: the last record wins, children included.
    let mut twice = with_id("y");
    twice.artifacts[0].file = "second.wav".into();
    twice.participants.push(Participant {
        user: None,
        extension: Some("2002".into()),
        role: Role::Customer,
    });
    cat.apply_index(&[upsert_at(x, &with_id("y")), upsert_at(x, &twice)])
        .unwrap();
    let stored = select_all(cat, &Filter::all(), &Exclude::Nothing)
        .into_iter()
        .find(|c| c.id == "y")
        .unwrap();
    assert_eq!(stored, twice);
    assert_eq!(cat.conversation_count().unwrap(), 3);
    assert_eq!(
        cat.live_artifact_count().unwrap(),
        3,
        "no artifact outlives its row"
    );
}

/// Job-run rows: listing, resume counts, logs and notifications, counters as recorded.
pub fn run_history(cat: &dyn Catalog) {
    let r1 = cat.begin_run("p", Mode::Full, "t").unwrap();
    let r2 = cat.begin_run("p", Mode::Incremental, "t2").unwrap();
    let r3 = cat.begin_run("q", Mode::Full, "t").unwrap();
    assert!(r1 < r2 && r2 < r3);
    assert_eq!(cat.interrupted_run("p").unwrap().unwrap().id, r2);
    cat.resume_run(r2).unwrap();
    cat.resume_run(r2).unwrap();
    cat.set_run_log(r1, "/var/log/custodian/p-1.log").unwrap();
    cat.set_run_notification(r1, "sent to ops@example.com")
        .unwrap();
    let counters = Counters {
        selected: 5,
        exported: 4,
        flagged: 1,
        deleted: 3,
        failed: 1,
        objects: 8,
        bytes: 1 << 40,
        index_errors: 2,
    };
    cat.finish_run(
        r1,
        RunStatus::Succeeded,
        &counters,
        Some("manifest.json"),
        None,
    )
    .unwrap();
    let run = cat.job_run(r1).unwrap().unwrap();
    assert_eq!(
        (
            run.policy.as_str(),
            run.mode,
            run.target.as_str(),
            run.status
        ),
        ("p", Mode::Full, "t", RunStatus::Succeeded)
    );
    assert_eq!(run.counters, counters);
    assert_eq!(run.manifest_key.as_deref(), Some("manifest.json"));
    assert_eq!(run.error_summary, None);
    assert_eq!(run.log_path.as_deref(), Some("/var/log/custodian/p-1.log"));
    assert_eq!(run.notification.as_deref(), Some("sent to ops@example.com"));
    assert!(run.finished_at.unwrap() >= run.started_at);
    assert_eq!(run.resumed, 0);
    assert_eq!(cat.job_run(r2).unwrap().unwrap().resumed, 2);

    cat.finish_run(
        r2,
        RunStatus::Running,
        &Counters::default(),
        None,
        Some("still going"),
    )
    .unwrap();
    let still = cat.job_run(r2).unwrap().unwrap();
    assert_eq!(
        (
            still.status,
            still.finished_at,
            still.error_summary.as_deref()
        ),
        (RunStatus::Running, None, Some("still going"))
    );
    let ids = |runs: Vec<JobRun>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(cat.job_runs(Some("p"), 10).unwrap()), [r2, r1]);
    assert_eq!(ids(cat.job_runs(None, 2).unwrap()), [r3, r2]);
    assert_eq!(cat.job_runs(Some("none"), 10).unwrap().len(), 0);
    assert!(cat.job_run(RunId(r3.0 + 1000)).unwrap().is_none());

    let failures: Vec<ItemOutcome> = (0..3)
        .map(|i| ItemOutcome::Failed {
            subject: format!("acme/f{i}"),
            error: format!("error {i}"),
        })
        .collect();
    cat.record_outcomes(r3, "q", &failures).unwrap();
    let listed = cat.failed_items(r3, 2).unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|f| (f.subject.as_str(), f.error.as_str()))
            .collect::<Vec<_>>(),
        [("acme/f0", "error 0"), ("acme/f1", "error 1")]
    );
    assert_eq!(cat.run_counters(r3).unwrap().failed, 3);
    // A conversation that failed and then was exported in the same run counts as exported.
    cat.record_outcomes(r3, "q", &[exported(r3, &base("f0", "acme"), &["k/f0"])])
        .unwrap();
    let counters = cat.run_counters(r3).unwrap();
    assert_eq!((counters.exported, counters.failed), (1, 2));
    let listed = cat.failed_items(r3, 10).unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|f| f.subject.as_str())
            .collect::<Vec<_>>(),
        ["acme/f1", "acme/f2"],
        "and is no longer listed as failed"
    );
}

fn exported(run: RunId, c: &Conversation, keys: &[&str]) -> ItemOutcome {
    ItemOutcome::Exported {
        tenant: c.tenant.clone(),
        conversation_id: c.id.clone(),
        fingerprint: FP,
        artifacts: Vec::new(),
        objects: keys
            .iter()
            .map(|k| ObjectRecord {
                key: (*k).into(),
                size: 7,
                sha256: SHA.into(),
            })
            .collect(),
        audit: NewEvent {
            at: Utc::now(),
            kind: AuditKind::ConversationExported,
            actor: "tester".into(),
            policy: Some("p".into()),
            run: Some(run.0),
            tenant: Some(c.tenant.clone()),
            conversation_id: Some(c.id.clone()),
            details: serde_json::json!({ "keys": keys, "n": 1.5, "nested": { "b": [1, 2], "a": null } }),
        },
    }
}

/// Audit events are listed by run, conversation, kind and page, with details as written.
pub fn audit_queries(cat: &dyn Catalog) {
    let convs: Vec<_> = (0..4).map(|i| base(&format!("c{i}"), "acme")).collect();
    cat.apply_index(&convs.iter().map(upsert).collect::<Vec<_>>())
        .unwrap();
    let r1 = cat.begin_run("p", Mode::Full, "t").unwrap();
    let r2 = cat.begin_run("p", Mode::Full, "t").unwrap();
    cat.record_outcomes(
        r1,
        "p",
        &[
            exported(r1, &convs[0], &["k/0"]),
            exported(r1, &convs[1], &["k/1"]),
        ],
    )
    .unwrap();
    cat.record_outcomes(
        r2,
        "p",
        &[
            exported(r2, &convs[1], &["k/1"]),
            exported(r2, &convs[2], &["k/2"]),
            exported(r2, &convs[3], &["k/3"]),
        ],
    )
    .unwrap();
    let policy = LifecyclePolicy::new("t", "", ArtifactType::Transcript, None, "tester");
    let mut created = match exported(r1, &convs[0], &[]) {
        ItemOutcome::Exported { audit, .. } => audit,
        ItemOutcome::Failed { .. } => unreachable!(),
    };
    created.kind = AuditKind::LifecyclePolicyChanged;
    created.run = None;
    cat.create_lifecycle_policy(&policy, &created).unwrap();

    let all = all_events(cat);
    assert_eq!(all.len(), 6);
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    verify_chain(&all, None).unwrap();
    assert_eq!(
        all[0].event.details,
        serde_json::json!({ "keys": ["k/0"], "n": 1.5, "nested": { "a": null, "b": [1, 2] } })
    );
    let query = |q: AuditQuery| {
        cat.audit_events(&AuditQuery { limit: 100, ..q })
            .unwrap()
            .into_iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        query(AuditQuery {
            run: Some(r2),
            ..AuditQuery::default()
        }),
        [3, 4, 5]
    );
    assert_eq!(
        query(AuditQuery {
            conversation_id: Some("c1".into()),
            ..AuditQuery::default()
        }),
        [2, 3]
    );
    assert_eq!(
        query(AuditQuery {
            kind: Some(AuditKind::LifecyclePolicyChanged),
            ..AuditQuery::default()
        }),
        [6]
    );
    assert_eq!(
        query(AuditQuery {
            run: Some(r2),
            conversation_id: Some("c1".into()),
            kind: Some(AuditKind::ConversationExported),
            ..AuditQuery::default()
        }),
        [3]
    );
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = cat
            .audit_events(&AuditQuery {
                after_seq: after,
                limit: 4,
                ..AuditQuery::default()
            })
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        paged.extend(page);
    }
    assert_eq!(
        paged.iter().map(|e| e.hash.as_str()).collect::<Vec<_>>(),
        all.iter().map(|e| e.hash.as_str()).collect::<Vec<_>>()
    );
}

fn changed(what: &str) -> NewEvent {
    NewEvent {
        at: Utc::now(),
        kind: AuditKind::LifecyclePolicyChanged,
        actor: "tester".into(),
        policy: Some(what.into()),
        run: None,
        tenant: None,
        conversation_id: None,
        details: serde_json::json!({ "change": what }),
    }
}

/// Lifecycle policies: unique names, immutable versions, the first version active, at most
/// one enabled policy per artifact (and audio recording) type, and an event per change.
pub fn lifecycle_policies_and_versions(cat: &dyn Catalog) {
    let now = Utc::now().trunc_subsecs(6);
    let policy = |name: &str, audio: Option<AudioRecordingType>| LifecyclePolicy {
        created_at: now,
        ..LifecyclePolicy::new(
            name,
            "what it keeps",
            ArtifactType::AudioRecording,
            audio,
            "alice",
        )
    };
    let version = |name: &str, action: RetentionAction| LifecycleVersion {
        published_at: now,
        ..LifecycleVersion::new(name, action, "bob")
    };
    let agent = policy("agent", Some(AudioRecordingType::ConferenceAgent));
    let v1 = version("v1", RetentionAction::Delete { days: 30 });
    let v2 = version("v2", RetentionAction::KeepForever);
    let mut events = 0;
    cat.create_lifecycle_policy(&agent, &changed("create"))
        .unwrap();
    events += 1;
    refused(
        cat.create_lifecycle_policy(&agent, &changed("again")),
        "already exists",
    );
    refused(
        cat.publish_lifecycle_version("nope", &v1, &changed("v1")),
        "no lifecycle policy named `nope`",
    );
    assert_eq!(cat.lifecycle_policies().unwrap(), vec![agent.clone()]);
    cat.publish_lifecycle_version("agent", &v1, &changed("v1"))
        .unwrap();
    refused(
        cat.publish_lifecycle_version(
            "agent",
            &LifecycleVersion {
                name: "v1".into(),
                ..v2.clone()
            },
            &changed("v1"),
        ),
        "already has a version named `v1`",
    );
    cat.publish_lifecycle_version("agent", &v2, &changed("v2"))
        .unwrap();
    events += 2;
    assert_eq!(
        cat.lifecycle_policies().unwrap(),
        vec![LifecyclePolicy {
            active_version: Some("v1".into()),
            versions: vec![v1.clone(), v2.clone()],
            ..agent.clone()
        }]
    );
    cat.update_lifecycle_policy("agent", true, "v2", &[changed("enable"), changed("ack")])
        .unwrap();
    events += 2;
    refused(
        cat.update_lifecycle_policy("missing", true, "v1", &[changed("x")]),
        "no lifecycle policy named `missing`",
    );

    let rival = policy("rival", Some(AudioRecordingType::ConferenceAgent));
    let all_audio = policy("all-audio", None);
    let customer = policy("customer", Some(AudioRecordingType::ConferenceCustomer));
    for p in [&rival, &all_audio, &customer] {
        cat.create_lifecycle_policy(p, &changed("create")).unwrap();
        cat.publish_lifecycle_version(&p.name, &v1, &changed("v1"))
            .unwrap();
        events += 2;
    }
    refused(
        cat.update_lifecycle_policy("rival", true, "v1", &[changed("enable")]),
        "policy `agent` is already enabled for audio_recording/conference_agent",
    );
    // Another audio recording type, and audio recordings of no audio type, are other scopes.
    for name in ["all-audio", "customer"] {
        cat.update_lifecycle_policy(name, true, "v1", &[changed("enable")])
            .unwrap();
        events += 1;
    }
    cat.create_lifecycle_policy(&policy("more-audio", None), &changed("create"))
        .unwrap();
    cat.publish_lifecycle_version("more-audio", &v1, &changed("v1"))
        .unwrap();
    events += 2;
    refused(
        cat.update_lifecycle_policy("more-audio", true, "v1", &[changed("enable")]),
        "policy `all-audio` is already enabled for audio_recording;",
    );
    // Disabling frees the scope.
    cat.update_lifecycle_policy("agent", false, "v2", &[changed("disable")])
        .unwrap();
    cat.update_lifecycle_policy("rival", true, "v1", &[changed("enable")])
        .unwrap();
    events += 2;
    let state: Vec<_> = cat
        .lifecycle_policies()
        .unwrap()
        .into_iter()
        .map(|p| {
            (
                p.name,
                p.enabled,
                p.active_version.unwrap(),
                p.versions.len(),
            )
        })
        .collect();
    assert_eq!(
        state,
        [
            ("agent".to_string(), false, "v2".to_string(), 2),
            ("all-audio".to_string(), true, "v1".to_string(), 1),
            ("customer".to_string(), true, "v1".to_string(), 1),
            ("more-audio".to_string(), false, "v1".to_string(), 1),
            ("rival".to_string(), true, "v1".to_string(), 1),
        ]
    );
    let trail = all_events(cat);
    assert_eq!(trail.len(), events, "refused changes leave no event");
    verify_chain(&trail, None).unwrap();
}

/// Conversations whose artifacts retention tests use: an agent recording (10 bytes), a
/// transcript (5) and a customer recording (20).
fn with_retention_artifacts(id: &str, start: &str) -> Conversation {
    let mut c = base(id, "acme");
    let start: DateTime<FixedOffset> = start.parse().unwrap();
    c.start = start;
    c.end = start + Duration::seconds(90);
    let artifact = |file: &str, kind, audio_type, size| Artifact {
        file: file.into(),
        kind,
        audio_type,
        size,
        sha256: SHA.into(),
        encryption: None,
    };
    c.artifacts = vec![
        artifact(
            "agent.wav",
            ArtifactType::AudioRecording,
            Some(AudioRecordingType::ConferenceAgent),
            10,
        ),
        artifact("t.txt", ArtifactType::Transcript, None, 5),
        artifact(
            "customer.wav",
            ArtifactType::AudioRecording,
            Some(AudioRecordingType::ConferenceCustomer),
            20,
        ),
    ];
    c
}

fn due_query(
    artifact_type: ArtifactType,
    audio_type: Option<AudioRecordingType>,
    cutoff: &str,
) -> DueQuery {
    DueQuery {
        policy: "retention".into(),
        version: "v1".into(),
        artifact_type,
        audio_type,
        days: 30,
        cutoff: cutoff.parse().unwrap(),
    }
}

/// Due artifacts: of the query's type and audio type (none means none), ended by the cutoff,
/// not under legal hold, paged by (conversation, ordinal); the summary agrees.
pub fn due_artifacts_and_summary(cat: &dyn Catalog) {
    let early = with_retention_artifacts("early", "2026-01-02T10:00:00+01:00");
    let mut held = with_retention_artifacts("held", "2026-01-03T10:00:00+00:00");
    held.flags.legal_hold = true;
    let late = with_retention_artifacts("late", "2026-03-01T08:00:00-05:00");
    let middle = with_retention_artifacts("middle", "2026-01-05T10:00:00Z");
    cat.apply_index(&[
        upsert(&early),
        upsert(&held),
        upsert(&late),
        upsert(&middle),
    ])
    .unwrap();
    assert_eq!(cat.live_artifact_count().unwrap(), 12);
    let q = due_query(
        ArtifactType::AudioRecording,
        Some(AudioRecordingType::ConferenceAgent),
        "2026-02-10T00:00:00Z",
    );
    let first = cat.due_artifacts(&q, (0, -1), 1).unwrap();
    assert_eq!(first.len(), 1);
    let a = &first[0];
    assert_eq!(
        (
            a.tenant.as_str(),
            a.conversation_id.as_str(),
            a.rel_dir.as_str(),
            a.file.as_str(),
            a.size,
            a.ordinal,
            a.policy.as_str(),
            a.version.as_str()
        ),
        (
            "acme",
            "early",
            "acme/2026/01/02/early",
            "agent.wav",
            10,
            0,
            "retention",
            "v1"
        )
    );
    assert_eq!(a.due, early.end.to_utc() + Duration::days(30));
    let rest = cat
        .due_artifacts(&q, (a.conversation_pk, a.ordinal), 10)
        .unwrap();
    assert_eq!(
        rest.iter()
            .map(|a| a.conversation_id.as_str())
            .collect::<Vec<_>>(),
        ["middle"]
    );
    assert!(
        cat.due_artifacts(&q, (rest[0].conversation_pk, rest[0].ordinal), 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        cat.due_summary(&q).unwrap(),
        (2, 20, Some(late.end.to_utc()))
    );
    let transcripts = due_query(ArtifactType::Transcript, None, "2026-12-31T00:00:00Z");
    assert_eq!(cat.due_summary(&transcripts).unwrap(), (3, 15, None));
    let untyped_audio = due_query(ArtifactType::AudioRecording, None, "2026-12-31T00:00:00Z");
    assert_eq!(cat.due_summary(&untyped_audio).unwrap(), (0, 0, None));
    assert!(
        cat.due_artifacts(&untyped_audio, (0, -1), 10)
            .unwrap()
            .is_empty()
    );
}

/// Delete intents survive until finished; a finished delete is recorded once with its event
/// and stays recorded when the conversation is reindexed; a failed one is only forgotten.
pub fn deletes_are_recorded_once(cat: &dyn Catalog) {
    let convs: Vec<_> = (0..3)
        .map(|i| with_retention_artifacts(&format!("c{i}"), "2026-01-02T10:00:00Z"))
        .collect();
    cat.apply_index(&convs.iter().map(upsert).collect::<Vec<_>>())
        .unwrap();
    let q = due_query(
        ArtifactType::AudioRecording,
        Some(AudioRecordingType::ConferenceAgent),
        "2027-01-01T00:00:00Z",
    );
    let due = cat.due_artifacts(&q, (0, -1), 100).unwrap();
    assert_eq!(due.len(), 3);
    assert!(cat.pending_deletes().unwrap().is_empty());
    cat.begin_deletes(&due).unwrap();
    cat.begin_deletes(&due[..1]).unwrap();
    assert_eq!(cat.pending_deletes().unwrap(), due);
    let sweep = cat
        .begin_run("lifecycle", Mode::Full, "repository")
        .unwrap();
    cat.finish_deletes(
        &[
            (
                due[0].clone(),
                DeleteOutcome::Deleted { was_missing: false },
            ),
            (due[1].clone(), DeleteOutcome::Deleted { was_missing: true }),
            (due[2].clone(), DeleteOutcome::Failed("busy".into())),
        ],
        "tester",
        Some(sweep),
    )
    .unwrap();
    assert_eq!(cat.run_counters(sweep).unwrap().deleted, 2);
    assert!(cat.pending_deletes().unwrap().is_empty());
    assert_eq!(
        cat.due_artifacts(&q, (0, -1), 100).unwrap(),
        [due[2].clone()]
    );
    assert_eq!(cat.live_artifact_count().unwrap(), 7);
    let files = |id: &str| {
        select_all(cat, &Filter::all(), &Exclude::Nothing)
            .into_iter()
            .find(|c| c.id == id)
            .unwrap()
            .artifacts
            .into_iter()
            .map(|a| a.file)
            .collect::<Vec<_>>()
    };
    assert_eq!(files("c0"), ["t.txt", "customer.wav"]);
    assert_eq!(files("c2"), ["agent.wav", "t.txt", "customer.wav"]);
    cat.apply_index(&[upsert(&convs[0])]).unwrap();
    assert_eq!(
        files("c0"),
        ["t.txt", "customer.wav"],
        "reindexing keeps it deleted"
    );
    assert_eq!(
        cat.due_artifacts(&q, (0, -1), 100).unwrap(),
        [due[2].clone()]
    );
    let events = all_events(cat);
    verify_chain(&events, None).unwrap();
    let deleted: Vec<_> = events
        .iter()
        .map(|e| {
            assert_eq!(e.event.kind, AuditKind::ArtifactDeleted);
            assert_eq!(e.event.actor, "tester");
            assert_eq!(e.event.policy.as_deref(), Some("retention"));
            assert_eq!(e.event.run, Some(sweep.0));
            (
                e.event.conversation_id.clone().unwrap(),
                e.event.details["path"].clone(),
                e.event.details["file_was_missing"].clone(),
                e.event.details["due"].clone(),
            )
        })
        .collect();
    assert_eq!(
        deleted,
        [
            (
                "c0".to_string(),
                serde_json::json!("acme/2026/01/02/c0/agent.wav"),
                serde_json::json!(false),
                serde_json::json!("2026-02-01T10:01:30.000000Z")
            ),
            (
                "c1".to_string(),
                serde_json::json!("acme/2026/01/02/c1/agent.wav"),
                serde_json::json!(true),
                serde_json::json!("2026-02-01T10:01:30.000000Z")
            ),
        ]
    );
}

/// Confidential-flag pages: paged by rowid, one event per changed flag, the flag kept across
/// reindexing, and incremental pages remembered.
pub fn confidential_pages(cat: &dyn Catalog) {
    let convs: Vec<_> = (0..5).map(|i| base(&format!("c{i}"), "acme")).collect();
    cat.apply_index(&convs.iter().map(upsert).collect::<Vec<_>>())
        .unwrap();
    let run = cat.begin_run("flag", Mode::Full, "catalog").unwrap();
    let all = Filter::all();
    let page = ConfidentialPage {
        run,
        policy: "flag",
        filter: &all,
        exclude: &Exclude::Nothing,
        value: true,
        remember: false,
        actor: "tester",
        limit: 2,
    };
    let pass = |page: &ConfidentialPage<'_>| {
        let mut sizes = Vec::new();
        let mut after = 0;
        loop {
            let (n, changed, last) = cat.set_confidential_page(page, after).unwrap();
            sizes.push((n, changed));
            if n == 0 {
                assert_eq!(last, after);
                return sizes;
            }
            assert!(last > after);
            after = last;
        }
    };
    assert_eq!(pass(&page), [(2, 2), (2, 2), (1, 1), (0, 0)]);
    assert_eq!(pass(&page), [(2, 0), (2, 0), (1, 0), (0, 0)]);
    let confidential = Filter::resolve(
        &Criteria {
            confidential: Some(true),
            ..Criteria::default()
        },
        Utc::now(),
        chrono_tz::Tz::UTC,
    );
    assert_eq!(
        cat.count_selection(&confidential, &Exclude::Nothing)
            .unwrap(),
        5
    );
    // The record says false; the flag a policy set stays.
    cat.apply_index(&[upsert(&convs[0])]).unwrap();
    assert_eq!(
        cat.count_selection(&confidential, &Exclude::Nothing)
            .unwrap(),
        5
    );

    let exclude = Exclude::ExportedBy("flag".into());
    let clear = ConfidentialPage {
        exclude: &exclude,
        value: false,
        remember: true,
        limit: 10,
        ..page
    };
    assert_eq!(pass(&clear), [(5, 5), (0, 0)]);
    assert_eq!(cat.count_selection(&all, &exclude).unwrap(), 0);
    let mut says_confidential = convs[1].clone();
    says_confidential.flags.confidential = true;
    let mut new_one = base("c9", "acme");
    new_one.flags.confidential = true;
    cat.apply_index(&[upsert(&says_confidential), upsert(&new_one)])
        .unwrap();
    let flagged: Vec<String> = select_all(cat, &confidential, &Exclude::Nothing)
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        flagged,
        ["c9"],
        "a cleared flag stays cleared; a new record keeps its own"
    );
    assert_eq!(cat.count_selection(&all, &exclude).unwrap(), 1);

    let events = all_events(cat);
    assert_eq!(events.len(), 10);
    verify_chain(&events, None).unwrap();
    assert!(
        events
            .iter()
            .all(|e| e.event.kind == AuditKind::ConfidentialFlagChanged
                && e.event.run == Some(run.0)
                && e.event.policy.as_deref() == Some("flag"))
    );
    assert_eq!(
        events[0].event.details,
        serde_json::json!({ "confidential": true, "was": false })
    );
    assert_eq!(
        events[9].event.details,
        serde_json::json!({ "confidential": false, "was": true })
    );
}

/// The upload journal keeps open multipart uploads per target until they end, with their run:
/// an upload is abandoned once its run is no longer running, or when the caller holds its run.
pub fn upload_journal(cat: &dyn Catalog) {
    let abandoned = |target: &str, run: Option<RunId>| {
        let mut v: Vec<(String, String)> = cat
            .abandoned_uploads(target, run)
            .unwrap()
            .into_iter()
            .map(|u| (u.upload_id, u.key))
            .collect();
        v.sort();
        v
    };
    let pair = |u: &str, k: &str| (u.to_string(), k.to_string());
    assert!(abandoned("t1", None).is_empty());
    let mine = cat.begin_run("p", Mode::Full, "t1").unwrap();
    let other = cat.begin_run("q", Mode::Full, "t1").unwrap();
    cat.upload_started("t1", "k/a", "u1", Some(mine)).unwrap();
    cat.upload_started("t1", "k/b", "u2", Some(other)).unwrap();
    cat.upload_started("t1", "k/n", "u3", None).unwrap();
    cat.upload_started("t2", "k/c", "u1", Some(mine)).unwrap();
    // Another run still going keeps its uploads; the caller's own run and no run do not.
    assert_eq!(abandoned("t1", None), [pair("u3", "k/n")]);
    assert_eq!(
        abandoned("t1", Some(mine)),
        [pair("u1", "k/a"), pair("u3", "k/n")]
    );
    cat.upload_started("t1", "k/a2", "u1", Some(mine)).unwrap();
    assert_eq!(
        abandoned("t1", Some(mine)),
        [pair("u1", "k/a2"), pair("u3", "k/n")]
    );
    cat.upload_ended("t1", "u1").unwrap();
    cat.upload_ended("t1", "u3").unwrap();
    cat.upload_ended("t1", "unknown").unwrap();
    assert!(abandoned("t1", Some(mine)).is_empty());
    // Once the other run has ended (a killed run recorded failed), its upload is abandoned.
    cat.finish_run(
        other,
        RunStatus::Failed,
        &Counters::default(),
        None,
        Some("killed"),
    )
    .unwrap();
    assert_eq!(abandoned("t1", None), [pair("u2", "k/b")]);
    assert_eq!(abandoned("t2", Some(mine)), [pair("u1", "k/c")]);
    assert!(abandoned("t2", None).is_empty());
}

fn claim(key: &str, id: &str, file: &str) -> KeyClaim {
    KeyClaim {
        key: key.into(),
        tenant: "acme".into(),
        conversation_id: id.into(),
        file: file.into(),
    }
}

/// A key belongs to the first file of a conversation that claimed it at a target: the same
/// file claims it again (a rerun), any other is told who holds it, and a refused batch claims
/// nothing.
pub fn object_keys_are_held_by_one_file(cat: &dyn Catalog) {
    let run = cat.begin_run("p", Mode::Full, "t").unwrap();
    let victim = [
        claim("victim-x-a.wav", "victim", "x-a.wav"),
        claim("victim/conversation.json", "victim", "conversation.json"),
    ];
    assert_eq!(cat.claim_keys("t", run, &victim).unwrap(), []);
    assert_eq!(cat.claim_keys("t", run, &victim).unwrap(), [], "a rerun");
    let other = [
        claim(
            "victim-x/conversation.json",
            "victim-x",
            "conversation.json",
        ),
        claim("victim-x-a.wav", "victim-x", "a.wav"),
    ];
    assert_eq!(
        cat.claim_keys("t", run, &other).unwrap(),
        [victim[0].clone()]
    );
    let after = claim("victim-x/conversation.json", "later", "conversation.json");
    assert_eq!(
        cat.claim_keys("t", run, std::slice::from_ref(&after))
            .unwrap(),
        [],
        "the refused batch claimed none of its keys"
    );
    let same_conversation = claim("victim-x-a.wav", "victim", "call.txt");
    assert_eq!(
        cat.claim_keys("t", run, &[same_conversation]).unwrap(),
        [victim[0].clone()],
        "another file of the same conversation"
    );
    assert_eq!(
        cat.claim_keys("other-target", run, &other).unwrap(),
        [],
        "keys are per target"
    );
    let twice = [claim("dup", "c", "a.wav"), claim("dup", "c", "b.wav")];
    assert_eq!(
        cat.claim_keys("t", run, &twice).unwrap(),
        [claim("dup", "c", "a.wav")],
        "two files of one batch"
    );
}

/// Claims of one key made at the same moment from many threads: exactly one wins.
pub fn object_key_claims_race_to_one_winner(cat: &dyn Catalog) {
    let run = cat.begin_run("p", Mode::Full, "t").unwrap();
    for round in 0..5 {
        let key = format!("race/{round}");
        let winners = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for i in 0..6 {
                let (key, winners) = (&key, &winners);
                s.spawn(move || {
                    let c = claim(key, &format!("c{i}"), "a.wav");
                    let held = cat.claim_keys("t", run, &[c]).unwrap();
                    if held.is_empty() {
                        winners.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    } else {
                        assert_eq!(held.len(), 1);
                        assert_ne!(held[0].conversation_id, format!("c{i}"));
                    }
                });
            }
        });
        assert_eq!(winners.into_inner(), 1, "round {round}");
    }
}

/// Incremental state records the record version and each artifact: a record that changed
/// since (a transcript added) is selected again, with what was exported of it before.
pub fn incremental_state_is_per_record_version_and_artifact(cat: &dyn Catalog) {
    let mut c = base("late", "acme");
    let other = base("other", "acme");
    cat.apply_index(&[upsert(&c), upsert(&other)]).unwrap();
    let selected = |policy: &str| {
        let exclude = Exclude::ExportedBy(policy.into());
        let page = cat
            .select_page(&Filter::all(), &exclude, i64::MIN, 10)
            .unwrap();
        assert_eq!(
            cat.count_selection(&Filter::all(), &exclude).unwrap(),
            page.len() as u64
        );
        page
    };
    let first = selected("p");
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].fingerprint, FP);
    assert!(first[0].exported.is_empty());
    let run = cat.begin_run("p", Mode::Incremental, "t").unwrap();
    let wav = ExportedArtifact {
        file: "a.wav".into(),
        sha256: SHA.into(),
        output: Some(ObjectRecord {
            key: "acme/late/a.wav".into(),
            size: 10,
            sha256: SHA.into(),
        }),
    };
    let outcome = |run: RunId, fingerprint: Fingerprint, artifacts: Vec<ExportedArtifact>| {
        let late = base("late", "acme");
        let ItemOutcome::Exported { audit, objects, .. } = exported(run, &late, &["k"]) else {
            unreachable!()
        };
        ItemOutcome::Exported {
            tenant: "acme".into(),
            conversation_id: "late".into(),
            fingerprint,
            artifacts,
            objects,
            audit,
        }
    };
    cat.record_outcomes(run, "p", &[outcome(run, FP, vec![wav.clone()])])
        .unwrap();
    let ids = |page: &[Selected]| {
        page.iter()
            .map(|s| s.conversation.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&selected("p")), ["other"]);
    assert_eq!(ids(&selected("q")), ["late", "other"]);
    assert!(selected("q")[0].exported.is_empty(), "state is per policy");

    c.artifacts.push(Artifact {
        file: "a.txt".into(),
        kind: ArtifactType::Transcript,
        audio_type: None,
        size: 4,
        sha256: SHA.replace('0', "1"),
        encryption: None,
    });
    let changed = Fingerprint {
        mtime_ns: 5,
        size: 3,
    };
    cat.apply_index(&[IndexChange::Upsert {
        rel_dir: rel_dir(&c),
        fingerprint: changed,
        conversation: Box::new(c.clone()),
    }])
    .unwrap();
    let again = selected("p");
    assert_eq!(ids(&again), ["late", "other"]);
    assert_eq!(again[0].fingerprint, changed);
    assert_eq!(again[0].exported, std::slice::from_ref(&wav));
    assert_eq!(again[0].conversation.artifacts.len(), 2);

    let txt = ExportedArtifact {
        file: "a.txt".into(),
        sha256: SHA.replace('0', "1"),
        output: None,
    };
    // The next run (a run records a conversation once).
    let run = cat.begin_run("p", Mode::Incremental, "t").unwrap();
    cat.record_outcomes(run, "p", &[outcome(run, changed, vec![txt.clone()])])
        .unwrap();
    assert_eq!(ids(&selected("p")), ["other"]);
    cat.apply_index(&[IndexChange::Upsert {
        rel_dir: rel_dir(&c),
        fingerprint: FP,
        conversation: Box::new(c.clone()),
    }])
    .unwrap();
    let mut both = selected("p")[0].exported.clone();
    both.sort_by(|a, b| a.file.cmp(&b.file));
    assert_eq!(both, [txt, wav]);
}

/// Appends one lifecycle-policy event through `cat` (a policy named `name` is created).
fn append_one(cat: &dyn Catalog, name: &str) -> Result<()> {
    let policy = LifecyclePolicy::new(name, "", ArtifactType::Transcript, None, "tester");
    cat.create_lifecycle_policy(&policy, &changed(name))
}

/// The keyed chain: a catalog whose events are plain goes on keyed from the first append
/// with a key (the key file is created then, and each keyed event names the key's id);
/// afterwards an append without the key, with another key, or with the key file gone is
/// refused naming why, and nothing is appended. `open` opens the same catalog each time,
/// with the key source given.
pub fn keyed_chain(open: &dyn Fn(Option<KeySource>) -> Box<dyn Catalog>) {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("audit.key");
    let plain = open(None);
    append_one(plain.as_ref(), "p1").unwrap();
    append_one(plain.as_ref(), "p2").unwrap();
    assert_eq!(plain.audit_head().unwrap().seq, 2);

    let keyed = open(Some(KeySource::new(&key_file)));
    append_one(keyed.as_ref(), "k1").unwrap();
    let key = crate::audit::key::read_key(&key_file)
        .unwrap()
        .expect("the first keyed append creates the key file");
    let events = all_events(keyed.as_ref());
    assert_eq!(events.len(), 3);
    assert_eq!(events[1].key_id, None);
    assert_eq!(events[2].key_id.as_deref(), Some(key.id()));
    assert_eq!(verify_chain(&events, Some(&key)).unwrap(), events[2].hash);
    assert_eq!(
        keyed.audit_head().unwrap(),
        AuditHead {
            seq: 3,
            hash: events[2].hash.clone()
        }
    );
    // Several events in one transaction are all keyed.
    let v1 = LifecycleVersion::new("v1", RetentionAction::KeepForever, "tester");
    keyed
        .publish_lifecycle_version("k1", &v1, &changed("v1"))
        .unwrap();
    keyed
        .update_lifecycle_policy("k1", false, "v1", &[changed("a"), changed("b")])
        .unwrap();
    let events = all_events(keyed.as_ref());
    assert_eq!(events.len(), 6);
    assert!(
        events[2..]
            .iter()
            .all(|e| e.key_id.as_deref() == Some(key.id()))
    );
    verify_chain(&events, Some(&key)).unwrap();
    // Without its key, verification stops at the first keyed event.
    assert_eq!(verify_chain(&events, None).unwrap_err().seq, 3);

    type Expected = fn(&KeyError) -> bool;
    let refusals: [(Option<KeySource>, Expected); 3] = [
        (None, |e| matches!(e, KeyError::NotConfigured { .. })),
        (Some(KeySource::new(keys.path().join("gone.key"))), |e| {
            matches!(e, KeyError::Missing { .. })
        }),
        (
            Some({
                let other = keys.path().join("other.key");
                crate::audit::key::create_key(&other).unwrap();
                KeySource::new(other)
            }),
            |e| matches!(e, KeyError::Mismatch { .. }),
        ),
    ];
    for (i, (source, expected)) in refusals.into_iter().enumerate() {
        let cat = open(source);
        match append_one(cat.as_ref(), &format!("refused{i}")) {
            Err(CatalogError::AuditKey(e)) => assert!(expected(&e), "{i}: {e}"),
            other => panic!("{i}: {other:?}"),
        }
        assert_eq!(cat.audit_head().unwrap().seq, 6, "{i}");
        let policies = cat.lifecycle_policies().unwrap();
        assert!(
            policies.iter().all(|p| p.name != format!("refused{i}")),
            "{i}"
        );
    }
    assert!(!keys.path().join("gone.key").exists());
}
