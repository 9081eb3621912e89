//! Conformance of selections: the SQL a filter becomes agrees with the filter, confidential-flag pages, and incremental state.

use super::*;

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
