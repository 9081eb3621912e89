//! Conformance of the index: records stored and read back as written, batches applied change by change, and refusals of what cannot be stored.

use super::*;

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
