//! Conformance of the audit trail: queries over it, and the keyed chain.

use super::*;

/// A verification appended alone joins the chain, and the newest one is found whatever other
/// events follow it.
pub fn the_newest_verification_is_found_among_other_events(cat: &dyn Catalog) {
    assert!(cat.newest_verification().unwrap().is_none());
    let event = |kind, n: u64| crate::audit::NewEvent {
        at: chrono::Utc::now(),
        kind,
        actor: "auditor".into(),
        policy: None,
        run: None,
        tenant: None,
        conversation_id: None,
        details: serde_json::json!({ "events": n }),
    };
    cat.append_audit_event(&event(AuditKind::TrailVerified, 0))
        .unwrap();
    cat.append_audit_event(&event(AuditKind::AccountAdded, 1))
        .unwrap();
    cat.append_audit_event(&event(AuditKind::TrailVerified, 2))
        .unwrap();
    cat.append_audit_event(&event(AuditKind::AccountRemoved, 3))
        .unwrap();
    let newest = cat.newest_verification().unwrap().unwrap();
    assert_eq!(
        (newest.seq, newest.event.kind),
        (3, AuditKind::TrailVerified)
    );
    assert_eq!(newest.event.details, serde_json::json!({ "events": 2 }));
    let all = all_events(cat);
    assert_eq!(all.len(), 4);
    verify_chain(&all, None).unwrap();
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
