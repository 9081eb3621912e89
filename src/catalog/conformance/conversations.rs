//! Conformance of the service's reads: conversation search pages, one conversation's detail,
//! and the run totals metrics read.

use super::lifecycle::{due_query, with_retention_artifacts};
use super::*;
use crate::catalog::conversations::{ArtifactState, ConversationSearch, Cursor};
use crate::catalog::holds::{ConversationRef, HoldScope, Matter};

/// A conversation of `tenant` started at `start` with `user` as its participant.
fn at(id: &str, tenant: &str, start: &str, user: &str) -> Conversation {
    let mut c = base(id, tenant);
    c.start = start.parse().unwrap();
    c.end = c.start + Duration::seconds(30);
    c.participants[0].user = Some(user.into());
    c
}

/// Every page of `search`, `limit` rows at a time, as tenant/id.
fn all_pages(cat: &dyn Catalog, search: &ConversationSearch, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = cat
            .search_conversations(&ConversationSearch {
                after,
                limit,
                ..search.clone()
            })
            .unwrap();
        out.extend(page.iter().map(|c| format!("{}/{}", c.tenant, c.id)));
        if page.len() < limit {
            return out;
        }
        after = page.last().map(|c| c.cursor);
    }
}

/// A search is newest first (ties by catalog key), each conversation on one page; tenant, id,
/// user and the start range narrow it; rows carry their participants and artifact count.
pub fn conversation_search_pages_newest_first(cat: &dyn Catalog) {
    cat.apply_index(&[
        upsert(&at("c1", "acme", "2026-01-01T10:00:00Z", "alice")),
        upsert(&at("c2", "acme", "2026-01-02T10:00:00Z", "bob")),
        upsert(&at("c3", "beta", "2026-01-02T10:00:00Z", "alice")),
        upsert(&at("c4", "acme", "2026-01-03T10:00:00+02:00", "alice")),
        upsert(&at("c5", "beta", "2026-01-04T10:00:00Z", "carol")),
    ])
    .unwrap();
    let everything = ConversationSearch::default();
    let newest_first = ["beta/c5", "acme/c4", "beta/c3", "acme/c2", "acme/c1"];
    for limit in [1, 2, 3, 10] {
        assert_eq!(all_pages(cat, &everything, limit), newest_first, "{limit}");
    }
    let by = |search: ConversationSearch| all_pages(cat, &search, 2);
    assert_eq!(
        by(ConversationSearch {
            tenant: Some("acme".into()),
            ..everything.clone()
        }),
        ["acme/c4", "acme/c2", "acme/c1"]
    );
    assert_eq!(
        by(ConversationSearch {
            user: Some("alice".into()),
            ..everything.clone()
        }),
        ["acme/c4", "beta/c3", "acme/c1"]
    );
    assert_eq!(
        by(ConversationSearch {
            id: Some("c3".into()),
            ..everything.clone()
        }),
        ["beta/c3"]
    );
    assert_eq!(
        by(ConversationSearch {
            start_from: Some("2026-01-02T10:00:00Z".parse().unwrap()),
            start_before: Some("2026-01-04T10:00:00Z".parse().unwrap()),
            ..everything.clone()
        }),
        ["acme/c4", "beta/c3", "acme/c2"]
    );
    assert!(
        by(ConversationSearch {
            user: Some("alice".into()),
            tenant: Some("beta".into()),
            id: Some("c1".into()),
            ..everything.clone()
        })
        .is_empty()
    );
    let first = cat
        .search_conversations(&ConversationSearch {
            limit: 1,
            ..everything
        })
        .unwrap();
    assert_eq!(first[0].participants[0].user.as_deref(), Some("carol"));
    assert_eq!(first[0].artifacts, 1);
    assert_eq!(
        first[0].start,
        "2026-01-04T10:00:00Z"
            .parse::<DateTime<FixedOffset>>()
            .unwrap()
    );
}

/// A search by user reads that user's participant rows, which carry their conversation's
/// start: a conversation the user takes part in twice is listed once, and a reindexed start
/// moves the conversation to its new place.
pub fn a_search_by_user_lists_each_conversation_once_by_its_current_start(cat: &dyn Catalog) {
    let mut twice = at("c1", "acme", "2026-01-01T10:00:00Z", "alice");
    let mut again = twice.participants[0].clone();
    again.extension = Some("2001".into());
    twice.participants.push(again);
    cat.apply_index(&[
        upsert(&twice),
        upsert(&at("c2", "acme", "2026-01-02T10:00:00Z", "alice")),
        upsert(&at("c3", "acme", "2026-01-03T10:00:00Z", "bob")),
    ])
    .unwrap();
    let alice = ConversationSearch {
        user: Some("alice".into()),
        ..ConversationSearch::default()
    };
    for limit in [1, 2, 10] {
        assert_eq!(
            all_pages(cat, &alice, limit),
            ["acme/c2", "acme/c1"],
            "{limit}"
        );
    }
    let mut later = twice.clone();
    later.start = "2026-01-05T10:00:00Z".parse().unwrap();
    later.end = later.start + Duration::seconds(30);
    cat.apply_index(&[upsert_at(&rel_dir(&twice), &later)])
        .unwrap();
    for limit in [1, 10] {
        assert_eq!(
            all_pages(cat, &alice, limit),
            ["acme/c1", "acme/c2"],
            "{limit}"
        );
    }
    let before_the_move = ConversationSearch {
        start_before: Some("2026-01-04T00:00:00Z".parse().unwrap()),
        ..alice
    };
    assert_eq!(all_pages(cat, &before_the_move, 1), ["acme/c2"]);
}

/// The detail of a conversation: its record, what each export wrote (key, checksums, target),
/// what the sweep deleted (and the artifact's state), who set its confidential flag, and the
/// matters holding it; an unknown conversation is None.
pub fn conversation_detail_tells_what_became_of_it(cat: &dyn Catalog) {
    let c = with_retention_artifacts("c1", "2026-01-02T10:00:00Z");
    cat.apply_index(&[upsert(&c)]).unwrap();
    assert!(cat.conversation_detail("acme", "nope").unwrap().is_none());
    assert!(cat.conversation_detail("other", "c1").unwrap().is_none());

    let run = cat.begin_run("export", Mode::Incremental, "vault").unwrap();
    let ItemOutcome::Exported { audit, objects, .. } = exported(run, &c, &["acme/c1/t.txt"]) else {
        unreachable!()
    };
    let output = ObjectRecord {
        key: "acme/c1/t.txt".into(),
        size: 5,
        sha256: SHA.replace('0', "2"),
    };
    cat.record_outcomes(
        run,
        "export",
        &[ItemOutcome::Exported {
            tenant: "acme".into(),
            conversation_id: "c1".into(),
            fingerprint: FP,
            artifacts: vec![ExportedArtifact {
                file: "t.txt".into(),
                sha256: SHA.into(),
                output: Some(output.clone()),
            }],
            objects,
            audit,
        }],
    )
    .unwrap();

    let q = due_query(
        ArtifactType::AudioRecording,
        Some(AudioRecordingType::ConferenceAgent),
        "2027-01-01T00:00:00Z",
    );
    let due = cat.due_artifacts(&q, (0, -1), 10).unwrap();
    assert_eq!(due.len(), 1);
    cat.begin_deletes(&due).unwrap();
    cat.finish_deletes(
        &[(
            due[0].clone(),
            crate::catalog::lifecycle::DeleteOutcome::Deleted { was_missing: false },
        )],
        "tester",
        None,
    )
    .unwrap();

    let flag_run = cat.begin_run("flags", Mode::Full, "").unwrap();
    let filter = Filter::all();
    cat.set_confidential_page(
        &ConfidentialPage {
            run: flag_run,
            policy: "flags",
            filter: &filter,
            exclude: &Exclude::Nothing,
            value: true,
            remember: false,
            actor: "tester",
            limit: 10,
        },
        i64::MIN,
    )
    .unwrap();

    let event = |kind| NewEvent {
        at: Utc::now(),
        kind,
        actor: "tester".into(),
        policy: None,
        run: None,
        tenant: None,
        conversation_id: None,
        details: serde_json::json!({}),
    };
    cat.create_matter(
        &Matter {
            name: "smith".into(),
            description: "a dispute".into(),
            created_at: Utc::now().trunc_subsecs(6),
            created_by: "carol".into(),
        },
        &event(AuditKind::MatterCreated),
    )
    .unwrap();
    cat.place_hold(
        "smith",
        &HoldScope::Conversations(vec![ConversationRef {
            tenant: "acme".into(),
            id: "c1".into(),
        }]),
        Utc::now(),
        "carol",
        &event(AuditKind::LegalHoldPlaced),
        &[],
    )
    .unwrap();

    let d = cat.conversation_detail("acme", "c1").unwrap().unwrap();
    assert_eq!((d.tenant.as_str(), d.id.as_str()), ("acme", "c1"));
    assert_eq!(d.directory, rel_dir(&c));
    assert_eq!(d.participants, c.participants);
    let states: Vec<(&str, &ArtifactState)> = d
        .artifacts
        .iter()
        .map(|a| (a.file.as_str(), &a.state))
        .collect();
    assert_eq!(
        states,
        [
            ("agent.wav", &ArtifactState::Deleted),
            ("t.txt", &ArtifactState::Live),
            ("customer.wav", &ArtifactState::Live),
        ]
    );
    assert_eq!(d.deletions.len(), 1);
    assert_eq!(
        (d.deletions[0].file.as_str(), d.deletions[0].policy.as_str()),
        ("agent.wav", "retention")
    );
    assert_eq!(d.exports.len(), 1);
    let e = &d.exports[0];
    assert_eq!(
        (
            e.policy.as_str(),
            e.file.as_str(),
            e.target.as_deref(),
            e.key.as_deref(),
            e.size,
            e.object_sha256.as_deref(),
            e.run
        ),
        (
            "export",
            "t.txt",
            Some("vault"),
            Some("acme/c1/t.txt"),
            Some(5),
            Some(output.sha256.as_str()),
            run.0
        )
    );
    assert!(d.flags.confidential);
    let flag = d.confidential_flag.expect("the flag's origin");
    assert_eq!(
        (flag.value, flag.policy.as_str(), flag.run),
        (true, "flags", flag_run.0)
    );
    assert_eq!(d.holds, ["smith"]);
    assert!(d.quarantine.is_empty());
}

/// Each run that ends is added to its policy's totals for its outcome once, whatever else
/// updates its row; runs going on are counted apart; pruning history keeps the totals.
pub fn run_totals_count_each_run_once(cat: &dyn Catalog) {
    assert_eq!(cat.run_metrics().unwrap(), totals::RunMetrics::default());
    let counters = |objects, bytes, failed| Counters {
        exported: 2,
        objects,
        bytes,
        failed,
        ..Counters::default()
    };
    let a = cat.begin_run("p", Mode::Full, "t").unwrap();
    let b = cat.begin_run("p", Mode::Full, "t").unwrap();
    let c = cat.begin_run("q", Mode::Full, "t").unwrap();
    let m = cat.run_metrics().unwrap();
    assert!(m.totals.is_empty());
    assert_eq!(m.running, [("p".to_string(), 2), ("q".to_string(), 1)]);

    // A checkpoint of counters while running is no end.
    cat.finish_run(a, RunStatus::Running, &counters(1, 1, 0), None, None)
        .unwrap();
    assert!(cat.run_metrics().unwrap().totals.is_empty());
    cat.finish_run(a, RunStatus::Succeeded, &counters(3, 100, 0), None, None)
        .unwrap();
    let took = |run| {
        let r = cat.job_run(run).unwrap().unwrap();
        (r.finished_at.unwrap() - r.started_at).num_milliseconds()
    };
    let took_a = took(a);
    // Recording the same end again adds nothing (its row's end moves; the totals keep the first).
    cat.finish_run(a, RunStatus::Succeeded, &counters(3, 100, 0), None, None)
        .unwrap();
    cat.finish_run(b, RunStatus::Succeeded, &counters(4, 50, 0), None, None)
        .unwrap();
    cat.finish_run(
        c,
        RunStatus::CompletedWithFailures,
        &counters(1, 7, 2),
        None,
        Some("1 failed"),
    )
    .unwrap();
    let m = cat.run_metrics().unwrap();
    assert!(m.running.is_empty());
    let view: Vec<_> = m
        .totals
        .iter()
        .map(|t| {
            (
                t.policy.as_str(),
                t.outcome,
                t.runs,
                t.exported,
                t.objects,
                t.bytes,
                t.failed,
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            ("p", RunStatus::Succeeded, 2, 4, 7, 150, 0),
            ("q", RunStatus::CompletedWithFailures, 1, 2, 1, 7, 2),
        ]
    );
    // Runs this quick took no longer than any bound: every bucket holds them all.
    for t in &m.totals {
        let bounds: Vec<u64> = t.durations.iter().map(|d| d.0).collect();
        assert_eq!(
            bounds,
            [
                1000, 10_000, 60_000, 300_000, 900_000, 3_600_000, 14_400_000, 86_400_000
            ]
        );
        assert!(t.durations.iter().all(|d| d.1 == t.runs), "{t:?}");
    }
    let summed = i64::try_from(m.totals[0].duration_ms).unwrap();
    assert!((summed - took_a - took(b)).abs() <= 2, "{summed}");
    let finished_b = cat.job_run(b).unwrap().unwrap().finished_at.unwrap();
    assert_eq!(m.totals[0].last_finished_at, finished_b);

    assert_eq!(
        cat.prune_runs("p", Utc::now() + Duration::days(1)).unwrap(),
        2
    );
    assert_eq!(cat.run_metrics().unwrap().totals, m.totals);
}
