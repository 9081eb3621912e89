//! Conformance of the quarantine window's state: intents to move, restore and purge, what each
//! ended as with its audit event, and what quarantined and restored artifacts do to the due
//! selection, the export selection and the counts.

use super::lifecycle::{due_query, with_retention_artifacts};
use super::*;

/// The retention policy `due_query` names, enabled with `version` (published first) active.
fn retention(cat: &dyn Catalog, version: &str) {
    if !cat
        .lifecycle_policies()
        .unwrap()
        .iter()
        .any(|p| p.name == "retention")
    {
        let p = LifecyclePolicy::new(
            "retention",
            "",
            ArtifactType::AudioRecording,
            Some(AudioRecordingType::ConferenceAgent),
            "tester",
        );
        cat.create_lifecycle_policy(&p, &changed("create")).unwrap();
    }
    let v = LifecycleVersion::new(version, RetentionAction::Delete { days: 30 }, "tester");
    cat.publish_lifecycle_version("retention", &v, &changed(version))
        .unwrap();
    cat.update_lifecycle_policy("retention", true, version, &[changed("enable")])
        .unwrap();
}

/// Moves, restores and purges: each intent is listed until finished, each finish records its
/// outcome once with its event; quarantined artifacts are neither due nor exported nor live,
/// a restored one is exempt from the version that quarantined it only, and a purged one is
/// recorded deleted.
pub fn quarantine_intents_and_outcomes(cat: &dyn Catalog) {
    let convs: Vec<_> = (0..3)
        .map(|i| with_retention_artifacts(&format!("c{i}"), "2026-01-02T10:00:00Z"))
        .collect();
    cat.apply_index(&convs.iter().map(upsert).collect::<Vec<_>>())
        .unwrap();
    retention(cat, "v1");
    let q = due_query(
        ArtifactType::AudioRecording,
        Some(AudioRecordingType::ConferenceAgent),
        "2027-01-01T00:00:00Z",
    );
    let due = cat.due_artifacts(&q, (0, -1), 100).unwrap();
    assert_eq!(due.len(), 3);
    let sweep = cat
        .begin_run("lifecycle", Mode::Full, "repository")
        .unwrap();
    let intents: Vec<(DueArtifact, String)> = due
        .iter()
        .map(|a| (a.clone(), format!("n-{}", a.conversation_id)))
        .collect();
    cat.begin_quarantine(&intents, Some(sweep)).unwrap();
    let pending = cat.quarantined(&QuarantineSelect::Pending).unwrap();
    assert_eq!(pending.len(), 3);
    for (p, a) in pending.iter().zip(&due) {
        assert_eq!(p.artifact.file, a.file);
        assert_eq!(p.artifact.conversation_pk, a.conversation_pk);
        assert_eq!(p.artifact.due, a.due);
        assert_eq!(p.artifact.record, a.record);
        assert_eq!(p.name, format!("n-{}", a.conversation_id));
        assert_eq!(
            (p.state, p.exempt, p.run, p.quarantined_at, p.legal_hold),
            (QuarantineState::Moving, false, Some(sweep), None, false)
        );
    }
    // Moving already leaves them out of what is due, exported and live.
    assert!(cat.due_artifacts(&q, (0, -1), 100).unwrap().is_empty());
    assert_eq!(cat.live_artifact_count().unwrap(), 6);
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
    cat.finish_quarantine(
        &[
            (pending[0].clone(), QuarantineOutcome::Quarantined),
            (
                pending[1].clone(),
                QuarantineOutcome::Purged { was_missing: true },
            ),
            (pending[2].clone(), QuarantineOutcome::Kept),
        ],
        "tester",
        Some(sweep),
    )
    .unwrap();
    assert!(
        cat.quarantined(&QuarantineSelect::Pending)
            .unwrap()
            .is_empty()
    );
    // The failed move is forgotten: c2's artifact is due again.
    let again = cat.due_artifacts(&q, (0, -1), 100).unwrap();
    assert_eq!(again, [due[2].clone()]);
    let page = cat
        .quarantined(&QuarantineSelect::Page {
            after: (0, String::new()),
            limit: 10,
        })
        .unwrap();
    assert_eq!(page.len(), 1);
    let c0 = page[0].clone();
    assert_eq!(c0.artifact.conversation_id, "c0");
    assert_eq!(c0.state, QuarantineState::Quarantined);
    let at = c0.quarantined_at.expect("quarantined_at is recorded");
    assert!(
        cat.quarantined(&QuarantineSelect::Page {
            after: (c0.artifact.conversation_pk, c0.artifact.file.clone()),
            limit: 10,
        })
        .unwrap()
        .is_empty()
    );
    assert_eq!(
        cat.quarantined(&QuarantineSelect::Run(sweep)).unwrap(),
        std::slice::from_ref(&c0)
    );
    assert!(
        cat.quarantined(&QuarantineSelect::Run(RunId(sweep.0 + 1)))
            .unwrap()
            .is_empty()
    );
    let of = |id: &str| QuarantineSelect::Conversation {
        tenant: "acme".into(),
        id: id.into(),
    };
    assert_eq!(
        cat.quarantined(&of("c0")).unwrap(),
        std::slice::from_ref(&c0)
    );
    assert!(cat.quarantined(&of("c1")).unwrap().is_empty(), "purged");
    let count = |purgeable| QuarantineCount {
        policy: "retention".into(),
        version: "v1".into(),
        artifacts: 1,
        bytes: 10,
        purgeable,
    };
    assert_eq!(
        cat.quarantine_counts(at + Duration::seconds(1)).unwrap(),
        [count(1)]
    );
    assert_eq!(
        cat.quarantine_counts(at - Duration::seconds(1)).unwrap(),
        [count(0)]
    );
    // Reindexing keeps it in quarantine, out of the export.
    cat.apply_index(&[upsert(&convs[0])]).unwrap();
    assert_eq!(files("c0"), ["t.txt", "customer.wav"]);
    assert_eq!(files("c1"), ["t.txt", "customer.wav"]);

    // A user's restore: the intent is listed until finished, then the artifact is back,
    // exempt from v1 only.
    cat.mark_quarantine(std::slice::from_ref(&c0), QuarantineState::Restoring, true)
        .unwrap();
    let restoring = cat.quarantined(&QuarantineSelect::Restoring).unwrap();
    assert_eq!(
        (restoring.len(), restoring[0].state, restoring[0].exempt),
        (1, QuarantineState::Restoring, true)
    );
    assert!(cat.quarantined(&of("c0")).unwrap().is_empty());
    cat.finish_quarantine(
        &[(
            restoring[0].clone(),
            QuarantineOutcome::Restored {
                reason: "restored by tester".into(),
            },
        )],
        "tester",
        None,
    )
    .unwrap();
    assert!(
        cat.quarantined(&QuarantineSelect::Restoring)
            .unwrap()
            .is_empty()
    );
    assert_eq!(files("c0"), ["agent.wav", "t.txt", "customer.wav"]);
    assert_eq!(
        cat.due_artifacts(&q, (0, -1), 100).unwrap(),
        [due[2].clone()],
        "exempt from v1"
    );
    assert!(cat.quarantine_counts(at).unwrap().is_empty());

    // A purge of c2: quarantined, marked, purged: recorded deleted.
    cat.begin_quarantine(&[(due[2].clone(), "n-c2".into())], Some(sweep))
        .unwrap();
    let c2 = cat.quarantined(&QuarantineSelect::Pending).unwrap();
    cat.finish_quarantine(
        &[(c2[0].clone(), QuarantineOutcome::Quarantined)],
        "tester",
        Some(sweep),
    )
    .unwrap();
    let c2 = cat.quarantined(&of("c2")).unwrap();
    cat.mark_quarantine(&c2, QuarantineState::Purging, false)
        .unwrap();
    let purging = cat.quarantined(&QuarantineSelect::Pending).unwrap();
    assert_eq!(purging[0].state, QuarantineState::Purging);
    // A kept purge goes back to quarantine.
    cat.finish_quarantine(
        &[(purging[0].clone(), QuarantineOutcome::Kept)],
        "tester",
        Some(sweep),
    )
    .unwrap();
    assert_eq!(
        cat.quarantined(&of("c2")).unwrap()[0].state,
        QuarantineState::Quarantined
    );
    cat.mark_quarantine(&c2, QuarantineState::Purging, false)
        .unwrap();
    cat.finish_quarantine(
        &[(
            purging[0].clone(),
            QuarantineOutcome::Purged { was_missing: false },
        )],
        "tester",
        Some(sweep),
    )
    .unwrap();
    assert!(cat.quarantined(&of("c2")).unwrap().is_empty());
    assert_eq!(files("c2"), ["t.txt", "customer.wav"]);
    assert!(cat.due_artifacts(&q, (0, -1), 100).unwrap().is_empty());
    assert_eq!(cat.live_artifact_count().unwrap(), 7);
    assert_eq!(cat.run_counters(sweep).unwrap().deleted, 2);

    // A new version ends the exemption: c0's artifact is due again.
    retention(cat, "v2");
    let q2 = DueQuery {
        version: "v2".into(),
        ..q
    };
    let due2 = cat.due_artifacts(&q2, (0, -1), 100).unwrap();
    assert_eq!(
        due2.iter()
            .map(|a| a.conversation_id.as_str())
            .collect::<Vec<_>>(),
        ["c0"]
    );

    let events = all_events(cat);
    verify_chain(&events, None).unwrap();
    let trail: Vec<(AuditKind, String)> = events
        .iter()
        .filter(|e| e.event.kind != AuditKind::LifecyclePolicyChanged)
        .map(|e| (e.event.kind, e.event.conversation_id.clone().unwrap()))
        .collect();
    assert_eq!(
        trail,
        [
            (AuditKind::ArtifactQuarantined, "c0".to_string()),
            (AuditKind::ArtifactDeleted, "c1".to_string()),
            (AuditKind::ArtifactRestored, "c0".to_string()),
            (AuditKind::ArtifactQuarantined, "c2".to_string()),
            (AuditKind::ArtifactDeleted, "c2".to_string()),
        ]
    );
    let restored = events
        .iter()
        .find(|e| e.event.kind == AuditKind::ArtifactRestored)
        .unwrap();
    assert_eq!(restored.event.details["reason"], "restored by tester");
    assert_eq!(restored.event.details["exempt_from_version"], true);
    assert_eq!(
        restored.event.details["path"],
        "acme/2026/01/02/c0/agent.wav"
    );
    assert_eq!(restored.event.run, None);
    let purged = events
        .iter()
        .rfind(|e| e.event.kind == AuditKind::ArtifactDeleted)
        .unwrap();
    assert_eq!(purged.event.details["quarantine_name"], "n-c2");
    assert_eq!(purged.event.details["file_was_missing"], false);
    assert_eq!(purged.event.run, Some(sweep.0));
}
