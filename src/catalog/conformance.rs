//! The catalog conformance suite: behaviour every [`Catalog`] implementation must show, written
//! against the trait and run against each implementation.

use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::audit::{AuditKind, GENESIS, verify_chain};
use crate::filter::Criteria;
use crate::repository::record::{
    Artifact, ArtifactType, AudioRecordingType, ConversationType, Direction, Encryption, Flags,
    Participant, Role,
};

const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn rel_dir(c: &Conversation) -> String {
    format!("{}/{}/{}", c.tenant, c.start.format("%Y/%m/%d"), c.id)
}

fn upsert(c: &Conversation) -> IndexChange {
    IndexChange::Upsert {
        rel_dir: rel_dir(c),
        fingerprint: Fingerprint {
            mtime_ns: 1,
            size: 2,
        },
        conversation: Box::new(c.clone()),
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
    let mut changed = c.clone();
    changed.artifacts.clear();
    cat.apply_index(&[upsert(&changed)]).unwrap();
    assert_eq!(
        select_all(cat, &Filter::all(), &Exclude::Nothing),
        vec![changed]
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
    verify_chain(&events, GENESIS.into()).unwrap();

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
