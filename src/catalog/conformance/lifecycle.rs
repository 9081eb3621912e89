//! Conformance of lifecycle policies, the artifacts they make due, and the deletions recorded.

use super::*;
use crate::catalog::holds::{ConversationRef, HoldScope, Matter};

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
pub(super) fn with_retention_artifacts(id: &str, start: &str) -> Conversation {
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

pub(super) fn due_count(
    artifacts: u64,
    bytes: u64,
    held: u64,
    next_end: Option<DateTime<Utc>>,
) -> DueCount {
    DueCount {
        artifacts,
        bytes,
        held,
        held_by_matter: Vec::new(),
        not_exported: 0,
        next_end,
    }
}

pub(super) fn due_query(
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
        require_export: None,
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
        due_count(2, 20, 1, Some(late.end.to_utc()))
    );
    let transcripts = due_query(ArtifactType::Transcript, None, "2026-12-31T00:00:00Z");
    assert_eq!(
        cat.due_summary(&transcripts).unwrap(),
        due_count(3, 15, 1, None)
    );
    let untyped_audio = due_query(ArtifactType::AudioRecording, None, "2026-12-31T00:00:00Z");
    assert_eq!(
        cat.due_summary(&untyped_audio).unwrap(),
        due_count(0, 0, 0, None)
    );
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

/// Four eyes: at most one pending change per policy, requested from the policy's state, applied
/// only by another user while the policy is as it was and before it expires, decided once;
/// each step with its events (carrying the change's id), and nothing written on a refusal.
pub fn pending_changes_need_a_second_user(cat: &dyn Catalog) {
    use crate::catalog::lifecycle::{ChangeKind, ChangeState, PendingChange};
    let now = Utc::now().trunc_subsecs(6);
    let p = LifecyclePolicy {
        created_at: now,
        ..LifecyclePolicy::new("t", "", ArtifactType::Transcript, None, "alice")
    };
    cat.create_lifecycle_policy(&p, &changed("create")).unwrap();
    for (name, days) in [("v1", 30), ("v2", 60)] {
        let v = LifecycleVersion {
            published_at: now,
            ..LifecycleVersion::new(name, RetentionAction::Delete { days }, "alice")
        };
        cat.publish_lifecycle_version("t", &v, &changed(name))
            .unwrap();
    }
    let enable = PendingChange {
        id: 0,
        policy: "t".into(),
        change: ChangeKind::Enable,
        version: "v1".into(),
        enabled_before: false,
        version_before: Some("v1".into()),
        acknowledgments: vec!["storage-overage".into(), "irreversible-delete".into()],
        requested_by: "alice".into(),
        requested_at: now,
        expires_at: now + Duration::hours(1),
        state: ChangeState::Pending,
        decided_by: None,
        decided_at: None,
    };
    let before = all_events(cat).len();
    refused(
        cat.request_lifecycle_change(
            &PendingChange {
                enabled_before: true,
                ..enable.clone()
            },
            &[changed("request")],
        ),
        "changed while the change was being requested",
    );
    let id = cat
        .request_lifecycle_change(&enable, &[changed("ack"), changed("request")])
        .unwrap();
    let events = all_events(cat);
    assert_eq!(events.len(), before + 2);
    assert!(
        events[before..]
            .iter()
            .all(|e| e.event.details["pending_change"] == id)
    );
    let pending = PendingChange {
        id,
        ..enable.clone()
    };
    assert_eq!(cat.lifecycle_changes(true).unwrap(), vec![pending.clone()]);
    refused(
        cat.request_lifecycle_change(&enable, &[changed("again")]),
        &format!("already has a pending change ({id}, enable `v1`, requested by alice)"),
    );
    let approve = |id: i64, by: &str, at| {
        cat.decide_lifecycle_change(id, ChangeState::Approved, by, at, &[changed("approve")])
    };
    refused(approve(id, "alice", now), "was requested by alice");
    refused(approve(id, "bob", now + Duration::hours(2)), "expired at");
    refused(
        approve(id + 100, "bob", now),
        &format!("no change {}", id + 100),
    );
    assert_eq!(all_events(cat).len(), before + 2);
    assert!(!cat.lifecycle_policies().unwrap()[0].enabled);

    let done = approve(id, "bob", now).unwrap();
    let approved = PendingChange {
        state: ChangeState::Approved,
        decided_by: Some("bob".into()),
        decided_at: Some(now),
        ..pending
    };
    assert_eq!(done, approved);
    assert_eq!(cat.lifecycle_changes(false).unwrap(), vec![approved]);
    assert!(cat.lifecycle_changes(true).unwrap().is_empty());
    let policy = &cat.lifecycle_policies().unwrap()[0];
    assert!(policy.enabled);
    assert_eq!(policy.active_version.as_deref(), Some("v1"));
    assert_eq!(all_events(cat).len(), before + 3);
    refused(approve(id, "carol", now), "was approved already, by bob");

    // The policy changes under a pending activation: it cannot be approved, only rejected (by
    // anyone allowed to decide, the requester too).
    let activate = PendingChange {
        change: ChangeKind::Activate,
        version: "v2".into(),
        enabled_before: true,
        ..enable.clone()
    };
    let id2 = cat
        .request_lifecycle_change(&activate, &[changed("request")])
        .unwrap();
    cat.update_lifecycle_policy("t", false, "v1", &[changed("disable")])
        .unwrap();
    refused(
        approve(id2, "bob", now),
        "it was enabled with `v1` active, it is disabled with `v1` active",
    );
    let rejected = cat
        .decide_lifecycle_change(
            id2,
            ChangeState::Rejected,
            "alice",
            now,
            &[changed("reject")],
        )
        .unwrap();
    assert_eq!(rejected.state, ChangeState::Rejected);
    assert_eq!(
        cat.lifecycle_policies().unwrap()[0]
            .active_version
            .as_deref(),
        Some("v1")
    );

    // Expiry is recorded once, with an event by whoever noticed it.
    let id3 = cat
        .request_lifecycle_change(
            &PendingChange {
                enabled_before: false,
                ..activate.clone()
            },
            &[changed("request")],
        )
        .unwrap();
    assert!(
        cat.expire_lifecycle_changes(now, "carol")
            .unwrap()
            .is_empty()
    );
    let expired = cat
        .expire_lifecycle_changes(now + Duration::hours(2), "carol")
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (expired[0].id, expired[0].state),
        (id3, ChangeState::Expired)
    );
    let last = all_events(cat).pop().unwrap();
    assert_eq!(last.event.kind, AuditKind::LifecycleChangeExpired);
    assert_eq!(last.event.actor, "carol");
    assert_eq!(last.event.details["pending_change"], id3);
    assert!(
        cat.expire_lifecycle_changes(now + Duration::hours(3), "carol")
            .unwrap()
            .is_empty()
    );
    refused(approve(id3, "bob", now), "expired at");
    assert_eq!(
        cat.lifecycle_changes(false)
            .unwrap()
            .iter()
            .map(|c| c.state)
            .collect::<Vec<_>>(),
        [
            ChangeState::Approved,
            ChangeState::Rejected,
            ChangeState::Expired
        ]
    );
}

/// An export of `c`'s transcript by `run`: `sha256` as the record stated it then, and its object
/// (None for what was exported before the catalog kept objects per artifact).
fn transcript_export(run: RunId, c: &Conversation, sha256: &str, object: bool) -> ItemOutcome {
    let ItemOutcome::Exported {
        tenant,
        conversation_id,
        fingerprint,
        objects,
        audit,
        ..
    } = exported(run, c, &["k"])
    else {
        unreachable!("an export")
    };
    ItemOutcome::Exported {
        tenant,
        conversation_id,
        fingerprint,
        artifacts: vec![ExportedArtifact {
            file: "t.txt".into(),
            sha256: sha256.into(),
            output: object.then(|| ObjectRecord {
                key: format!("{}/t.txt", c.id),
                size: 5,
                sha256: SHA.into(),
            }),
        }],
        objects,
        audit,
    }
}

/// Export before delete: under a version requiring export policy `archive`, a due artifact is
/// deletable only once `archive` recorded its object at the artifact's current SHA-256 in a run
/// that ended; the others are held back and counted, what a hold covers is counted as held.
pub fn export_before_delete(cat: &dyn Catalog) {
    let ids = [
        "exported",
        "elsewhere",
        "changed",
        "running",
        "unrecorded",
        "never",
        "held",
    ];
    let mut convs: Vec<Conversation> = ids
        .iter()
        .map(|id| with_retention_artifacts(id, "2026-01-02T10:00:00Z"))
        .collect();
    convs[6].flags.legal_hold = true;
    cat.apply_index(&convs.iter().map(upsert).collect::<Vec<_>>())
        .unwrap();
    let ended = |policy: &str, exports: &[(usize, bool)]| {
        let run = cat.begin_run(policy, Mode::Incremental, "archive").unwrap();
        let outcomes: Vec<_> = exports
            .iter()
            .map(|&(i, object)| transcript_export(run, &convs[i], SHA, object))
            .collect();
        cat.record_outcomes(run, policy, &outcomes).unwrap();
        run
    };
    let done = |run: RunId| {
        cat.finish_run(run, RunStatus::Succeeded, &Counters::default(), None, None)
            .unwrap()
    };
    done(ended(
        "archive",
        &[(0, true), (2, true), (4, false), (6, true)],
    ));
    done(ended("other", &[(1, true)]));
    let running = ended("archive", &[(3, true)]);
    // The record of `changed` changed its transcript since the export.
    convs[2].artifacts[1].sha256 = SHA.replace('0', "2");
    cat.apply_index(&[upsert(&convs[2])]).unwrap();

    let q = DueQuery {
        require_export: Some("archive".into()),
        ..due_query(ArtifactType::Transcript, None, "2026-12-31T00:00:00Z")
    };
    let due_ids = |q: &DueQuery| {
        cat.due_artifacts(q, (0, -1), 100)
            .unwrap()
            .into_iter()
            .map(|a| a.conversation_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(due_ids(&q), ["exported"]);
    assert_eq!(
        cat.due_summary(&q).unwrap(),
        DueCount {
            not_exported: 5,
            ..due_count(1, 5, 1, None)
        },
        "held back: another policy's export, a changed record, a run still running, no object, none"
    );
    let plain = DueQuery {
        require_export: None,
        ..q.clone()
    };
    assert_eq!(due_ids(&plain).len(), 6, "without the requirement");
    assert_eq!(cat.due_summary(&plain).unwrap(), due_count(6, 30, 1, None));
    // A matter holding `exported`, `never` and the flagged `held`: each is counted once as
    // held, exported or not, and for the matter; what it holds is neither deletable nor held
    // back.
    let event = |kind| NewEvent {
        at: Utc::now(),
        kind,
        actor: "tester".into(),
        policy: None,
        run: None,
        tenant: None,
        conversation_id: None,
        details: serde_json::json!({ "matter": "m" }),
    };
    let matter = Matter {
        name: "m".into(),
        description: "a dispute".into(),
        created_at: Utc::now().trunc_subsecs(6),
        created_by: "carol".into(),
    };
    cat.create_matter(&matter, &event(AuditKind::MatterCreated))
        .unwrap();
    let held = [0, 5, 6].map(|i| ConversationRef {
        tenant: convs[i].tenant.clone(),
        id: convs[i].id.clone(),
    });
    let scope = HoldScope::Conversations(held.to_vec());
    cat.place_hold(
        "m",
        &scope,
        Utc::now(),
        "carol",
        &event(AuditKind::LegalHoldPlaced),
        &[],
    )
    .unwrap();
    let by_matter = || vec![("m".to_owned(), 3)];
    assert_eq!(
        cat.due_summary(&q).unwrap(),
        DueCount {
            not_exported: 4,
            held_by_matter: by_matter(),
            ..due_count(0, 0, 3, None)
        }
    );
    assert_eq!(
        cat.due_summary(&plain).unwrap(),
        DueCount {
            held_by_matter: by_matter(),
            ..due_count(4, 20, 3, None)
        }
    );
    cat.release_holds(
        "m",
        Utc::now(),
        "carol",
        &event(AuditKind::LegalHoldReleased),
        &[],
    )
    .unwrap();
    done(running);
    assert_eq!(due_ids(&q), ["exported", "running"], "once its run ended");
    assert_eq!(
        cat.prune_runs("archive", Utc::now() + Duration::days(1))
            .unwrap(),
        2
    );
    assert_eq!(
        due_ids(&q),
        ["exported", "running"],
        "a pruned run had ended"
    );
}
