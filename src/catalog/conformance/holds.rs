//! Conformance of legal holds: matters, standing and explicit holds, what they keep out of the
//! sweep's selection, and their release.

use super::lifecycle::{due_count, due_query, with_retention_artifacts};
use super::*;
use crate::catalog::holds::{ConversationRef, HoldScope, HoldSync, Matter};

fn hold_event(kind: AuditKind, matter: &str) -> NewEvent {
    NewEvent {
        at: Utc::now(),
        kind,
        actor: "tester".into(),
        policy: None,
        run: None,
        tenant: None,
        conversation_id: None,
        details: serde_json::json!({ "matter": matter }),
    }
}

fn matter(name: &str) -> Matter {
    Matter {
        name: name.into(),
        description: "a dispute".into(),
        created_at: Utc::now().trunc_subsecs(6),
        created_by: "carol".into(),
    }
}

fn conversation(tenant: &str, id: &str) -> ConversationRef {
    ConversationRef {
        tenant: tenant.into(),
        id: id.into(),
    }
}

/// A conversation ended in January 2026 with bob as its participant.
fn bobs(id: &str) -> Conversation {
    let mut c = with_retention_artifacts(id, "2026-01-04T10:00:00Z");
    c.participants[0].user = Some("bob".into());
    c
}

/// The sync queue, which must hold the conversation acme/exported alone, held, with its one
/// object `key` on the target `t`.
fn only_exported_held(cat: &dyn Catalog, key: &str) -> Vec<HoldSync> {
    let queued = cat.hold_syncs(None, 10).unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].conversation, conversation("acme", "exported"));
    assert!(queued[0].held);
    assert_eq!(queued[0].objects, [("t".to_owned(), key.to_owned())]);
    queued
}

fn due_ids(cat: &dyn Catalog, q: &DueQuery) -> Vec<String> {
    let mut ids: Vec<String> = cat
        .due_artifacts(q, (0, -1), 100)
        .unwrap()
        .into_iter()
        .map(|a| a.conversation_id)
        .collect();
    ids.dedup();
    ids
}

/// Matters are unique; holds need a matter and conversations the catalog holds; a standing
/// hold covers what matches it, indexed before or after it was placed; an explicit hold its
/// conversations; held conversations are left out of what is due, counted as held, and listed
/// as held in selections; a release makes them due again; every change is one event.
pub fn holds_keep_conversations_from_the_sweep(cat: &dyn Catalog) {
    let now = Utc::now().trunc_subsecs(6);
    let alices = with_retention_artifacts("alices", "2026-01-02T10:00:00Z");
    cat.apply_index(&[upsert(&alices), upsert(&bobs("bobs"))])
        .unwrap();
    let q = due_query(
        ArtifactType::AudioRecording,
        Some(AudioRecordingType::ConferenceAgent),
        "2026-02-10T00:00:00Z",
    );
    assert_eq!(due_ids(cat, &q), ["alices", "bobs"]);

    let placed = |m: &str| hold_event(AuditKind::LegalHoldPlaced, m);
    let smith = matter("smith-v-acme");
    cat.create_matter(&smith, &hold_event(AuditKind::MatterCreated, "s"))
        .unwrap();
    refused(
        cat.create_matter(&smith, &hold_event(AuditKind::MatterCreated, "s")),
        "already exists",
    );
    let by_bob = HoldScope::Standing(Box::new(Criteria {
        users: vec!["bob".into()],
        ..Criteria::default()
    }));
    refused(
        cat.place_hold("nope", &by_bob, now, "carol", &placed("nope"), &[]),
        "no matter named `nope`",
    );
    refused(
        cat.place_hold(
            "smith-v-acme",
            &HoldScope::Conversations(vec![
                conversation("acme", "alices"),
                conversation("acme", "ghost"),
            ]),
            now,
            "carol",
            &placed("smith-v-acme"),
            &[],
        ),
        "not in the catalog: acme/ghost",
    );
    assert!(
        cat.matters(None).unwrap()[0].holds.is_empty(),
        "nothing placed"
    );
    assert!(cat.matters(Some("nope")).unwrap().is_empty());

    let standing = cat
        .place_hold("smith-v-acme", &by_bob, now, "carol", &placed("s"), &[])
        .unwrap();
    assert_eq!(due_ids(cat, &q), ["alices"]);
    // Indexed after the hold was placed, and covered by it all the same.
    cat.apply_index(&[upsert(&bobs("bobs-later"))]).unwrap();
    assert_eq!(due_ids(cat, &q), ["alices"]);
    assert_eq!(
        cat.due_summary(&q).unwrap(),
        DueCount {
            held_by_matter: vec![("smith-v-acme".into(), 2)],
            ..due_count(1, 10, 2, None)
        }
    );

    cat.create_matter(
        &matter("audit-2026"),
        &hold_event(AuditKind::MatterCreated, "a"),
    )
    .unwrap();
    let explicit = HoldScope::Conversations(vec![
        conversation("acme", "alices"),
        conversation("acme", "bobs"),
    ]);
    let explicit_id = cat
        .place_hold("audit-2026", &explicit, now, "dave", &placed("a"), &[])
        .unwrap();
    assert!(due_ids(cat, &q).is_empty());
    assert_eq!(
        cat.due_summary(&q).unwrap(),
        DueCount {
            held_by_matter: vec![("audit-2026".into(), 2), ("smith-v-acme".into(), 2)],
            ..due_count(0, 0, 3, None)
        },
        "a conversation two matters hold counts for both"
    );

    let page = cat
        .select_page(&Filter::all(), &Exclude::Nothing, i64::MIN, 10)
        .unwrap();
    let holds: Vec<(&str, Vec<String>)> = page
        .iter()
        .map(|s| (s.conversation.id.as_str(), s.holds.clone()))
        .collect();
    assert_eq!(
        holds,
        [
            ("alices", vec!["audit-2026".to_string()]),
            (
                "bobs",
                vec!["audit-2026".to_string(), "smith-v-acme".to_string()]
            ),
            ("bobs-later", vec!["smith-v-acme".to_string()]),
        ]
    );
    let pks: Vec<i64> = page.iter().map(|s| s.rowid).collect();
    let holding = cat.holding_matters(&pks).unwrap();
    assert_eq!(holding.len(), 3);
    assert_eq!(holding[&pks[2]], ["smith-v-acme"]);

    let matters = cat.matters(None).unwrap();
    let names: Vec<&str> = matters.iter().map(|m| m.matter.name.as_str()).collect();
    assert_eq!(names, ["audit-2026", "smith-v-acme"]);
    let state = &matters[1];
    assert_eq!(
        cat.matters(Some("smith-v-acme")).unwrap(),
        std::slice::from_ref(state)
    );
    assert_eq!(state.matter, smith);
    assert_eq!((state.conversations, state.artifacts), (2, 6));
    assert_eq!(state.holds.len(), 1);
    assert_eq!(
        (
            &state.holds[0].scope,
            state.holds[0].id,
            state.holds[0].placed_at,
            state.holds[0].placed_by.as_str()
        ),
        (&by_bob, standing, now, "carol")
    );
    assert_eq!((matters[0].conversations, matters[0].artifacts), (2, 6));
    assert_eq!(matters[0].holds[0].scope, explicit);

    // Released, a matter holds nothing; the other matter's holds still do.
    assert_eq!(
        cat.release_holds(
            "audit-2026",
            now,
            "dave",
            &hold_event(AuditKind::LegalHoldReleased, "a"),
            &[]
        )
        .unwrap(),
        1
    );
    refused(
        cat.release_holds(
            "audit-2026",
            now,
            "dave",
            &hold_event(AuditKind::LegalHoldReleased, "a"),
            &[],
        ),
        "no active hold",
    );
    refused(
        cat.release_holds(
            "nope",
            now,
            "dave",
            &hold_event(AuditKind::LegalHoldReleased, "a"),
            &[],
        ),
        "no matter named `nope`",
    );
    assert_eq!(due_ids(cat, &q), ["alices"]);
    let matters = cat.matters(None).unwrap();
    assert_eq!((matters[0].conversations, matters[0].artifacts), (0, 0));
    let released = matters[0].holds[0].released.as_ref().unwrap();
    assert_eq!((released.at, released.by.as_str()), (now, "dave"));
    cat.release_holds(
        "smith-v-acme",
        now,
        "carol",
        &hold_event(AuditKind::LegalHoldReleased, "s"),
        &[],
    )
    .unwrap();
    assert_eq!(due_ids(cat, &q), ["alices", "bobs", "bobs-later"]);
    assert!(cat.holding_matters(&pks).unwrap().is_empty());

    let trail = all_events(cat);
    let kinds: Vec<&str> = trail.iter().map(|e| e.event.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "matter_created",
            "legal_hold_placed",
            "matter_created",
            "legal_hold_placed",
            "legal_hold_released",
            "legal_hold_released",
        ],
        "refused changes leave no event"
    );
    let placed_ids: Vec<&serde_json::Value> = trail
        .iter()
        .filter(|e| e.event.kind == AuditKind::LegalHoldPlaced)
        .map(|e| &e.event.details["hold"])
        .collect();
    assert_eq!(
        placed_ids,
        [
            &serde_json::json!(standing),
            &serde_json::json!(explicit_id)
        ],
        "each placement's event names its hold"
    );
    verify_chain(&trail, None).unwrap();
}

/// The summary counts each of more matters than bits in an integer apart: a conversation
/// that a matter holds twice (explicitly and by its standing hold) counts once for it, one that
/// ends after the cutoff not at all, and one held by the record's flag alone counts as held
/// for no matter.
pub fn many_matters_are_counted_apart(cat: &dyn Catalog) {
    let now = Utc::now().trunc_subsecs(6);
    let alices = with_retention_artifacts("alices", "2026-01-02T10:00:00Z");
    let mut bobs = bobs("bobs");
    bobs.participants[0].extension = Some("2002".into());
    let mut flagged = with_retention_artifacts("flagged", "2026-01-03T10:00:00Z");
    flagged.flags.legal_hold = true;
    flagged.participants[0].user = Some("carol".into());
    flagged.participants[0].extension = Some("3003".into());
    let mut late = bobs.clone();
    late.id = "late".into();
    late.start = "2026-03-01T10:00:00Z".parse().unwrap();
    late.end = late.start + Duration::seconds(90);
    cat.apply_index(&[
        upsert(&alices),
        upsert(&bobs),
        upsert(&flagged),
        upsert(&late),
    ])
    .unwrap();
    let q = due_query(
        ArtifactType::AudioRecording,
        Some(AudioRecordingType::ConferenceAgent),
        "2026-02-10T00:00:00Z",
    );
    let names: Vec<String> = (0..70).map(|k| format!("m{k:02}")).collect();
    for (k, name) in names.iter().enumerate() {
        cat.create_matter(&matter(name), &hold_event(AuditKind::MatterCreated, name))
            .unwrap();
        let criteria = if k % 2 == 0 {
            Criteria {
                users: vec!["bob".into()],
                ..Criteria::default()
            }
        } else {
            Criteria {
                extensions: vec!["1001".into()],
                ..Criteria::default()
            }
        };
        let placed = hold_event(AuditKind::LegalHoldPlaced, name);
        cat.place_hold(
            name,
            &HoldScope::Standing(Box::new(criteria)),
            now,
            "carol",
            &placed,
            &[],
        )
        .unwrap();
    }
    cat.place_hold(
        "m00",
        &HoldScope::Conversations(vec![
            conversation("acme", "alices"),
            conversation("acme", "bobs"),
        ]),
        now,
        "carol",
        &hold_event(AuditKind::LegalHoldPlaced, "m00"),
        &[],
    )
    .unwrap();
    assert!(due_ids(cat, &q).is_empty());
    let held_by_matter: Vec<(String, u64)> = names
        .iter()
        .enumerate()
        .map(|(k, m)| (m.clone(), if k == 0 { 2 } else { 1 }))
        .collect();
    assert_eq!(
        cat.due_summary(&q).unwrap(),
        DueCount {
            held_by_matter,
            ..due_count(0, 0, 3, None)
        }
    );
}

/// Placing and releasing a hold queue a legal-hold sync of the conversations it covers that
/// have object keys, in its transaction; a page tells whether a hold covers each now, with its
/// objects; finishing takes an entry off the queue unless a change queued it again since it
/// was read, and appends the events.
pub fn hold_changes_queue_legal_hold_syncs(cat: &dyn Catalog) {
    cat.apply_index(&[
        upsert(&bobs("exported")),
        upsert(&bobs("other")),
        upsert(&bobs("unexported")),
    ])
    .unwrap();
    let run = cat.begin_run("p", Mode::Full, "t").unwrap();
    let key = |id: &str| KeyClaim {
        key: format!("acme/{id}/conversation.json"),
        tenant: "acme".into(),
        conversation_id: id.into(),
        file: "conversation.json".into(),
    };
    cat.claim_keys("t", run, &[vec![key("exported")], vec![key("other")]])
        .unwrap();
    cat.create_matter(&matter("m"), &hold_event(AuditKind::MatterCreated, "m"))
        .unwrap();
    assert_eq!(cat.hold_syncs(None, 10).unwrap(), []);

    // Without a locked target, or with keys on another one only, nothing is queued.
    let placed = hold_event(AuditKind::LegalHoldPlaced, "m");
    let first = conversation("acme", "exported");
    for targets in [vec![], vec!["elsewhere".to_owned()]] {
        cat.place_hold(
            "m",
            &HoldScope::Conversations(vec![first.clone()]),
            Utc::now(),
            "carol",
            &placed,
            &targets,
        )
        .unwrap();
        assert_eq!(cat.hold_syncs(None, 10).unwrap(), []);
    }
    let locked = ["t".to_owned()];
    cat.place_hold(
        "m",
        &HoldScope::Conversations(vec![
            conversation("acme", "exported"),
            conversation("acme", "unexported"),
        ]),
        Utc::now(),
        "carol",
        &placed,
        &locked,
    )
    .unwrap();
    let queued = only_exported_held(cat, "acme/exported/conversation.json");

    // A standing hold on bob's conversations queues the other exported one too, and the
    // queued one again: a newer generation, which the first page's finish leaves queued.
    let criteria = crate::filter::Criteria {
        users: vec!["bob".into()],
        ..Default::default()
    };
    cat.place_hold(
        "m",
        &HoldScope::Standing(Box::new(criteria)),
        Utc::now(),
        "carol",
        &placed,
        &locked,
    )
    .unwrap();
    let set = NewEvent {
        tenant: Some("acme".into()),
        conversation_id: Some("exported".into()),
        ..hold_event(AuditKind::LegalHoldStatusSet, "m")
    };
    cat.finish_hold_syncs(&queued, std::slice::from_ref(&set))
        .unwrap();
    let again = cat.hold_syncs(None, 10).unwrap();
    let ids: Vec<&str> = again.iter().map(|s| s.conversation.id.as_str()).collect();
    assert_eq!(ids, ["exported", "other"]);
    assert_eq!(
        cat.hold_syncs(Some(&conversation("acme", "exported")), 10)
            .unwrap()
            .len(),
        1,
        "a page after a conversation"
    );
    cat.finish_hold_syncs(&again, &[]).unwrap();
    assert_eq!(cat.hold_syncs(None, 10).unwrap(), []);

    // Releasing queues both again, now held by nothing.
    cat.release_holds(
        "m",
        Utc::now(),
        "carol",
        &hold_event(AuditKind::LegalHoldReleased, "m"),
        &locked,
    )
    .unwrap();
    let released = cat.hold_syncs(None, 10).unwrap();
    assert_eq!(released.len(), 2);
    assert!(released.iter().all(|s| !s.held), "{released:?}");
    let kinds: Vec<String> = cat
        .audit_events(&AuditQuery {
            kind: Some(AuditKind::LegalHoldStatusSet),
            limit: 100,
            ..AuditQuery::default()
        })
        .unwrap()
        .into_iter()
        .map(|e| e.event.conversation_id.unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["exported"]);
}

/// A record whose legal_hold flag the recorder changed is queued for a legal-hold sync when it
/// has exported objects, in the index transaction that stores the change; a change of
/// anything else, or of a conversation never exported, queues nothing.
pub fn a_recorder_legal_hold_flag_change_queues_a_sync(cat: &dyn Catalog) {
    cat.apply_index(&[upsert(&bobs("exported")), upsert(&bobs("unexported"))])
        .unwrap();
    let run = cat.begin_run("p", Mode::Full, "t").unwrap();
    cat.claim_keys(
        "t",
        run,
        &[vec![KeyClaim {
            key: "acme/exported/call.wav".into(),
            tenant: "acme".into(),
            conversation_id: "exported".into(),
            file: "call.wav".into(),
        }]],
    )
    .unwrap();
    let changed = |id: &str, held: bool, channel: &str| {
        let mut c = bobs(id);
        c.flags.legal_hold = held;
        c.channel = Some(channel.into());
        upsert(&c)
    };
    cat.apply_index(&[changed("exported", false, "other channel")])
        .unwrap();
    assert_eq!(
        cat.hold_syncs(None, 10).unwrap(),
        [],
        "the flag did not change"
    );
    cat.apply_index(&[
        changed("exported", true, "other channel"),
        changed("unexported", true, "other channel"),
    ])
    .unwrap();
    let queued = only_exported_held(cat, "acme/exported/call.wav");
    cat.finish_hold_syncs(&queued, &[]).unwrap();
    cat.apply_index(&[changed("exported", false, "other channel")])
        .unwrap();
    let released = cat.hold_syncs(None, 10).unwrap();
    assert_eq!(released.len(), 1, "{released:?}");
    assert!(!released[0].held, "the flag cleared");
}
