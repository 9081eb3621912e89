//! Conformance of job history: runs and their items, the per-policy lock, object-key claims and the upload journal.

use super::*;

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

/// One conversation's claims, in a batch of its own.
fn claim_one(cat: &dyn Catalog, target: &str, run: RunId, claims: &[KeyClaim]) -> Claimed {
    let mut answers = cat.claim_keys(target, run, &[claims.to_vec()]).unwrap();
    assert_eq!(answers.len(), 1, "one answer per conversation");
    answers.pop().unwrap()
}

/// A key belongs to the first file of a conversation that claimed it at a target: the same
/// file claims it again (a rerun), any other is told who holds it, and a refused claim claims
/// nothing. Only a key's first claim is fresh.
pub fn object_keys_are_held_by_one_file(cat: &dyn Catalog) {
    let run = cat.begin_run("p", Mode::Full, "t").unwrap();
    let victim = [
        claim("victim-x-a.wav", "victim", "x-a.wav"),
        claim("victim/conversation.json", "victim", "conversation.json"),
    ];
    let keys = |claims: &[KeyClaim]| claims.iter().map(|c| c.key.clone()).collect::<Vec<_>>();
    let first = claim_one(cat, "t", run, &victim);
    assert_eq!(first.held, []);
    let mut fresh = first.fresh;
    fresh.sort();
    let mut all = keys(&victim);
    all.sort();
    assert_eq!(fresh, all, "a first claim is fresh");
    assert_eq!(
        claim_one(cat, "t", run, &victim),
        Claimed::default(),
        "a rerun holds its keys, none of them fresh"
    );
    let other = [
        claim(
            "victim-x/conversation.json",
            "victim-x",
            "conversation.json",
        ),
        claim("victim-x-a.wav", "victim-x", "a.wav"),
    ];
    assert_eq!(
        claim_one(cat, "t", run, &other),
        Claimed {
            held: vec![victim[0].clone()],
            fresh: Vec::new(),
        },
        "a refused claim has no fresh keys"
    );
    let after = claim("victim-x/conversation.json", "later", "conversation.json");
    assert_eq!(
        claim_one(cat, "t", run, std::slice::from_ref(&after)),
        Claimed {
            held: Vec::new(),
            fresh: keys(std::slice::from_ref(&after)),
        },
        "the refused claim claimed none of its keys"
    );
    let same_conversation = claim("victim-x-a.wav", "victim", "call.txt");
    assert_eq!(
        claim_one(cat, "t", run, &[same_conversation]).held,
        [victim[0].clone()],
        "another file of the same conversation"
    );
    let elsewhere = claim_one(cat, "other-target", run, &other);
    assert_eq!(elsewhere.held, [], "keys are per target");
    assert_eq!(elsewhere.fresh.len(), 2, "keys are per target");
    let twice = [claim("dup", "c", "a.wav"), claim("dup", "c", "b.wav")];
    assert_eq!(
        claim_one(cat, "t", run, &twice).held,
        [claim("dup", "c", "a.wav")],
        "two files of one conversation"
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
                    let held = claim_one(cat, "t", run, &[c]).held;
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

/// A batch of conversations' claims, some refused: each refused one (a key held before the
/// batch, or by an earlier conversation of the same batch) claims none of its keys and leaves
/// the others' claimed and fresh.
pub fn a_batch_of_claims_is_answered_each_on_its_own(cat: &dyn Catalog) {
    let run = cat.begin_run("p", Mode::Full, "t").unwrap();
    claim_one(cat, "t", run, &[claim("taken", "holder", "a.wav")]);
    let mut batch: Vec<Vec<KeyClaim>> = (0..16)
        .map(|i| {
            let mut claims = vec![claim(&format!("own/{i}"), &format!("c{i}"), "a.wav")];
            match i % 4 {
                0 => claims.push(claim("taken", &format!("c{i}"), "b.wav")),
                1 => claims.push(claim("shared", &format!("c{i}"), "b.wav")),
                _ => {}
            }
            claims
        })
        .collect();
    // A key only a refused conversation of the batch tried is free for a later one; a
    // conversation with nothing to claim is answered too.
    batch.push(vec![claim("own/0", "late", "a.wav")]);
    batch.push(Vec::new());
    let answers = cat.claim_keys("t", run, &batch).unwrap();
    assert_eq!(answers.len(), batch.len(), "one answer per conversation");
    assert_eq!(answers[16].held, [], "a key a refused conversation tried");
    assert_eq!(
        answers[16].fresh,
        ["own/0"],
        "a key a refused conversation tried"
    );
    assert_eq!(answers[17], Claimed::default(), "nothing to claim");
    for (i, (claims, answer)) in batch.iter().zip(&answers).take(16).enumerate() {
        let holder = match i {
            _ if i % 4 == 0 => Some(claim("taken", "holder", "a.wav")),
            1 => None,
            _ if i % 4 == 1 => Some(claim("shared", "c1", "b.wav")),
            _ => None,
        };
        match holder {
            Some(h) => {
                assert_eq!(answer.held, [h], "{i}");
                assert_eq!(answer.fresh, Vec::<String>::new(), "{i}");
            }
            None => {
                assert_eq!(answer.held, [], "{i}");
                let mut fresh = answer.fresh.clone();
                fresh.sort();
                let mut keys: Vec<String> = claims.iter().map(|c| c.key.clone()).collect();
                keys.sort();
                assert_eq!(fresh, keys, "{i}");
            }
        }
    }
    for i in 0..16 {
        let again = claim_one(
            cat,
            "t",
            run,
            &[claim(&format!("own/{i}"), "late", "a.wav")],
        );
        let refused = i % 4 == 0 || (i % 4 == 1 && i != 1);
        assert_eq!(again.held.is_empty(), refused, "own/{i}: {again:?}");
    }
}

/// The job history read a page at a time, filtered by policy and outcome.
pub fn run_pages(cat: &dyn Catalog) {
    let mut ids = Vec::new();
    for (policy, status) in [
        ("p", RunStatus::Succeeded),
        ("p", RunStatus::Failed),
        ("q", RunStatus::Failed),
        ("p", RunStatus::Succeeded),
        ("q", RunStatus::Succeeded),
    ] {
        let id = cat.begin_run(policy, Mode::Full, "t").unwrap();
        cat.finish_run(id, status, &Counters::default(), None, None)
            .unwrap();
        ids.push(id);
    }
    let page = |policy: Option<&str>, status, before, limit| -> Vec<RunId> {
        cat.job_runs_page(&RunPage {
            policy: policy.map(str::to_owned),
            status,
            before,
            limit,
        })
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
    };
    assert_eq!(page(None, None, None, 2), vec![ids[4], ids[3]]);
    assert_eq!(page(None, None, Some(ids[3]), 2), vec![ids[2], ids[1]]);
    assert_eq!(page(None, None, Some(ids[1]), 2), vec![ids[0]]);
    assert_eq!(
        page(Some("p"), None, None, 10),
        vec![ids[3], ids[1], ids[0]]
    );
    assert_eq!(
        page(None, Some(RunStatus::Failed), None, 10),
        vec![ids[2], ids[1]]
    );
    assert_eq!(
        page(Some("p"), Some(RunStatus::Succeeded), Some(ids[3]), 10),
        vec![ids[0]]
    );
    assert!(page(Some("none"), None, None, 10).is_empty());
}
