//! Lifecycle policies and their versions, the artifacts they make due, and the deletions they
//! record (an intent before the file goes, the deletion and its audit event after).

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params, params_from_iter};

use super::{SqliteCatalog, holds, to_sql};
use crate::audit::NewEvent;
use crate::catalog::lifecycle::{
    ChangeState, DeleteOutcome, DueArtifact, DueCount, DueQuery, LifecyclePolicy, LifecycleVersion,
    PendingChange, QuarantineCount, QuarantineOutcome, QuarantineSelect, QuarantineState,
    Quarantined, RetentionAction, already_pending, changed_meanwhile, expiry_event, stamped,
    unknown_change,
};
use crate::catalog::rows::{self, Fields};
use crate::catalog::{
    Result, RunId, deletion_event, other_enabled, policy_exists, quarantine_event,
    rfc3339_micros as ts, sql, unknown_policy, version_exists,
};
use crate::filter::Dialect;

pub(super) fn create_policy(
    cat: &SqliteCatalog,
    p: &LifecyclePolicy,
    event: &NewEvent,
) -> Result<()> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    let taken: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM lifecycle_policies WHERE name = ?)",
            [&p.name],
            |r| r.get(0),
        )
        .map_err(|e| cat.err(e))?;
    if taken {
        return Err(policy_exists(&p.name));
    }
    tx.execute(
        "INSERT INTO lifecycle_policies (name, description, artifact_type, audio_type, enabled, active_version, created_at, created_by) \
         VALUES (?, ?, ?, ?, 0, NULL, ?, ?)",
        params![
            p.name,
            p.description,
            p.artifact_type.as_str(),
            p.audio_type.map(|a| a.as_str()),
            ts(p.created_at),
            p.created_by
        ],
    )
    .map_err(|e| cat.err(e))?;
    cat.chain().append(&tx, event).map_err(|e| cat.err(e))?;
    tx.commit().map_err(|e| cat.err(e))
}

pub(super) fn publish_version(
    cat: &SqliteCatalog,
    policy: &str,
    v: &LifecycleVersion,
    activate_first: bool,
    event: &NewEvent,
) -> Result<bool> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    let active: Option<Option<String>> = tx
        .query_row(sql::POLICY_ACTIVE_VERSION.sqlite, [policy], |r| r.get(0))
        .optional()
        .map_err(|e| cat.err(e))?;
    let Some(active) = active else {
        return Err(unknown_policy(policy));
    };
    let (count, taken): (i64, bool) = tx
        .query_row(
            "SELECT count(*), coalesce(sum(name = ?2), 0) > 0 FROM lifecycle_versions WHERE policy = ?1",
            params![policy, v.name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|e| cat.err(e))?;
    if taken {
        return Err(version_exists(policy, &v.name));
    }
    let (action, days) = match v.action {
        RetentionAction::KeepForever => ("keep_forever", None),
        RetentionAction::Delete { days } => ("delete", Some(days)),
    };
    tx.execute(
        sql::INSERT_VERSION.sqlite,
        params![
            policy,
            v.name,
            count + 1,
            action,
            days,
            ts(v.published_at),
            v.published_by,
            v.require_export
        ],
    )
    .map_err(|e| cat.err(e))?;
    let first = active.is_none();
    if first && activate_first {
        tx.execute(sql::SET_ACTIVE_VERSION.sqlite, params![v.name, policy])
            .map_err(|e| cat.err(e))?;
    }
    cat.chain().append(&tx, event).map_err(|e| cat.err(e))?;
    tx.commit().map_err(|e| cat.err(e))?;
    Ok(first)
}

pub(super) fn update_policy(
    cat: &SqliteCatalog,
    policy: &str,
    enabled: bool,
    active_version: &str,
    events: &[NewEvent],
) -> Result<()> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    set_state(cat, &tx, policy, enabled, active_version)?;
    let mut chain = cat.chain();
    for e in events {
        chain.append(&tx, e).map_err(|e| cat.err(e))?;
    }
    tx.commit().map_err(|e| cat.err(e))
}

/// Sets whether a policy is enabled and its active version, refused when another enabled
/// policy covers the same type.
fn set_state(
    cat: &SqliteCatalog,
    tx: &rusqlite::Transaction<'_>,
    policy: &str,
    enabled: bool,
    active_version: &str,
) -> Result<()> {
    let scope: Option<(String, Option<String>)> = tx
        .query_row(sql::POLICY_SCOPE.sqlite, [policy], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(|e| cat.err(e))?;
    let Some((artifact_type, audio_type)) = scope else {
        return Err(unknown_policy(policy));
    };
    if enabled {
        let other: Option<String> = tx
            .query_row(
                "SELECT name FROM lifecycle_policies WHERE enabled = 1 AND artifact_type = ? \
                 AND audio_type IS ? AND name != ?",
                params![artifact_type, audio_type, policy],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| cat.err(e))?;
        if let Some(other) = other {
            return Err(other_enabled(&other, &artifact_type, audio_type.as_deref()));
        }
    }
    tx.execute(
        sql::SET_POLICY_STATE.sqlite,
        params![enabled, active_version, policy],
    )
    .map_err(|e| cat.err(e))?;
    Ok(())
}

/// A policy's state: whether it is enabled and its active version (None: no such policy).
fn policy_state(
    cat: &SqliteCatalog,
    conn: &rusqlite::Connection,
    policy: &str,
) -> Result<Option<(bool, Option<String>)>> {
    conn.query_row(sql::POLICY_STATE.sqlite, [policy], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
    .map_err(|e| cat.err(e))
}

fn changes_in(
    cat: &SqliteCatalog,
    conn: &rusqlite::Connection,
    pending_only: bool,
) -> Result<Vec<PendingChange>> {
    cat.rows(conn, sql::LIFECYCLE_CHANGES.sqlite, [pending_only], |r| {
        rows::lifecycle_change(r)
    })
}

pub(super) fn request_change(
    cat: &SqliteCatalog,
    c: &PendingChange,
    events: &[NewEvent],
) -> Result<i64> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    match policy_state(cat, &tx, &c.policy)? {
        None => return Err(unknown_policy(&c.policy)),
        Some(now) if now != (c.enabled_before, c.version_before.clone()) => {
            return Err(changed_meanwhile(&c.policy));
        }
        Some(_) => {}
    }
    if let Some(other) = changes_in(cat, &tx, true)?
        .into_iter()
        .find(|o| o.policy == c.policy)
    {
        return Err(already_pending(&c.policy, &other));
    }
    let id: i64 = tx
        .query_row(
            sql::INSERT_CHANGE.sqlite,
            params![
                c.policy,
                c.change.as_str(),
                c.version,
                c.enabled_before,
                c.version_before,
                serde_json::to_string(&c.acknowledgments).expect("strings serialize"),
                c.requested_by,
                ts(c.requested_at),
                ts(c.expires_at)
            ],
            |r| r.get(0),
        )
        .map_err(|e| cat.err(e))?;
    let mut chain = cat.chain();
    for e in stamped(events, id) {
        chain.append(&tx, &e).map_err(|e| cat.err(e))?;
    }
    tx.commit().map_err(|e| cat.err(e))?;
    Ok(id)
}

pub(super) fn changes(cat: &SqliteCatalog, pending_only: bool) -> Result<Vec<PendingChange>> {
    cat.with_reader(|conn| changes_in(cat, conn, pending_only))
}

pub(super) fn expire_changes(
    cat: &SqliteCatalog,
    at: DateTime<Utc>,
    actor: &str,
) -> Result<Vec<PendingChange>> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    let mut expired: Vec<PendingChange> = changes_in(cat, &tx, true)?
        .into_iter()
        .filter(|c| c.expires_at <= at)
        .collect();
    if expired.is_empty() {
        return Ok(expired);
    }
    let mut chain = cat.chain();
    for c in &mut expired {
        tx.execute(
            sql::DECIDE_CHANGE.sqlite,
            params![ChangeState::Expired.as_str(), None::<String>, ts(at), c.id],
        )
        .map_err(|e| cat.err(e))?;
        chain
            .append(&tx, &expiry_event(c, at, actor))
            .map_err(|e| cat.err(e))?;
        c.state = ChangeState::Expired;
        c.decided_at = Some(at);
    }
    tx.commit().map_err(|e| cat.err(e))?;
    Ok(expired)
}

pub(super) fn decide_change(
    cat: &SqliteCatalog,
    id: i64,
    to: ChangeState,
    by: &str,
    at: DateTime<Utc>,
    events: &[NewEvent],
) -> Result<PendingChange> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    let mut c = changes_in(cat, &tx, false)?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| unknown_change(id))?;
    let (enabled, active) = policy_state(cat, &tx, &c.policy)?.unwrap_or((false, None));
    c.check_decision(to, by, at, (enabled, active.as_deref()))?;
    if to == ChangeState::Approved {
        set_state(cat, &tx, &c.policy, c.enabled_after(), &c.version)?;
    }
    tx.execute(
        sql::DECIDE_CHANGE.sqlite,
        params![to.as_str(), by, ts(at), id],
    )
    .map_err(|e| cat.err(e))?;
    let mut chain = cat.chain();
    for e in stamped(events, id) {
        chain.append(&tx, &e).map_err(|e| cat.err(e))?;
    }
    tx.commit().map_err(|e| cat.err(e))?;
    c.state = to;
    c.decided_by = Some(by.to_owned());
    c.decided_at = Some(at);
    Ok(c)
}

pub(super) fn policies(cat: &SqliteCatalog) -> Result<Vec<LifecyclePolicy>> {
    cat.with_reader(|conn| {
        let mut policies = cat.rows(conn, sql::LIFECYCLE_POLICIES.sqlite, [], |r| {
            rows::lifecycle_policy(r)
        })?;
        for (policy, version) in cat.rows(conn, sql::LIFECYCLE_VERSIONS.sqlite, [], |r| {
            rows::lifecycle_version(r)
        })? {
            if let Some(p) = policies.iter_mut().find(|p| p.name == policy) {
                p.versions.push(version);
            }
        }
        Ok(policies)
    })
}

/// What a due query binds: its fixed parameters, `?1` to `?3`, then those of the clause of
/// what a hold covers (the record's legal_hold flag or an active hold), numbered so that it
/// can appear more than once, then the required export policy's, and, when asked for, those of
/// the set of what each matter with an active hold covers.
struct Due {
    params: Vec<Value>,
    /// How many of `params` the query and `held` take (the rest are `exported`'s and the
    /// set's).
    bound: usize,
    held: String,
    /// Whether the required export policy exported the artifact (TRUE when none is).
    exported: String,
    /// The matters with an active hold, and the common table expressions of what they cover
    /// (see [`sql::held_set`]; None without matters).
    matters: Vec<String>,
    held_set: Option<String>,
}

fn due_params(
    cat: &SqliteCatalog,
    conn: &rusqlite::Connection,
    q: &DueQuery,
    per_matter: bool,
) -> Result<Due> {
    let standing = holds::standing(cat, conn)?;
    let mut hold_params = Vec::new();
    let held = sql::numbered(&sql::held(
        Dialect::Postgres,
        None,
        &standing,
        3,
        &mut hold_params,
    ));
    let bound = 3 + hold_params.len();
    let exported = sql::numbered(&sql::exported(
        Dialect::Sqlite,
        q.require_export.as_deref(),
        3,
        &mut hold_params,
    ));
    let matters: Vec<String> = if per_matter {
        cat.rows(conn, sql::ACTIVE_MATTERS.sqlite, [], |r| r.text(0))?
    } else {
        Vec::new()
    };
    let held_set = sql::held_set(&matters, &standing, 3, &mut hold_params);
    let mut params = vec![
        Value::Integer(q.cutoff.timestamp_millis()),
        Value::Text(q.artifact_type.as_str().into()),
        q.audio_type
            .map_or(Value::Null, |a| Value::Text(a.as_str().into())),
    ];
    params.extend(hold_params.iter().map(to_sql));
    Ok(Due {
        params,
        bound,
        held: format!("(c.legal_hold = 1 OR {held})"),
        exported,
        matters,
        held_set: held_set.map(|s| sql::numbered(&s)),
    })
}

/// Artifacts of the query's type not deleted, not in quarantine, and not restored from the
/// quarantine of the policy version now active (docs/operations.md, "Quarantine"); `?1` is the
/// cutoff, `?2` and `?3` the type.
pub(super) const LIVE: &str = "a.kind = ?2 AND a.audio_type IS ?3 \
     AND NOT EXISTS (SELECT 1 FROM artifact_deletions d WHERE d.conversation = c.pk AND d.file = a.file) \
     AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.conversation = c.pk AND q.file = a.file) \
     AND NOT EXISTS (SELECT 1 FROM restore_exemptions r JOIN lifecycle_policies p \
     ON p.name = r.policy AND p.active_version = r.version WHERE r.conversation = c.pk AND r.file = a.file)";

pub(super) fn due_artifacts(
    cat: &SqliteCatalog,
    q: &DueQuery,
    after: (i64, i64),
    limit: usize,
) -> Result<Vec<DueArtifact>> {
    cat.with_reader(|conn| {
        let Due {
            mut params,
            held,
            exported,
            ..
        } = due_params(cat, conn, q, false)?;
        let first = params.len() + 1;
        params.extend([
            Value::Integer(after.0),
            Value::Integer(after.1),
            Value::Integer(limit as i64),
        ]);
        cat.rows(
            conn,
            &due_page(&held, &exported, first),
            params_from_iter(params),
            |r| rows::due_artifact(r, q),
        )
    })
}

/// A page of the due artifacts that `held` does not cover and that `exported`, after the
/// cursor `?first`, `?first + 1` (a conversation and an ordinal), at most `?first + 2`. The
/// page is read in the order of the artifacts' own columns, which both their primary key and
/// the index on their type (`artifacts_kind`) keep: ordered by `c.pk`, SQLite reads every due
/// artifact after the cursor through that index and sorts them, for each page
/// (docs/performance.md, "`plan lifecycle` under ten standing holds").
pub(super) fn due_page(held: &str, exported: &str, first: usize) -> String {
    let (a0, a1, lim) = (first, first + 1, first + 2);
    format!(
        "SELECT c.pk, a.ordinal, c.tenant, c.id, c.rel_dir, a.file, a.size, c.start_ms + c.duration_ms, \
         c.json_mtime_ns, c.json_size \
         FROM conversations c JOIN artifacts a ON a.conversation = c.pk \
         WHERE c.start_ms + c.duration_ms <= ?1 AND {LIVE} AND NOT {held} AND {exported} \
         AND (a.conversation, a.ordinal) > (?{a0}, ?{a1}) ORDER BY a.conversation, a.ordinal LIMIT ?{lim}"
    )
}

/// The end of the next artifact to come due after the cutoff `?1` that `held` does not cover:
/// read in the order of the end-time index from the cutoff, up to the first that no hold
/// covers. `CROSS JOIN` keeps SQLite to that order; left to itself, it scans every artifact of
/// the type and sorts them, evaluating the hold clauses on each (docs/performance.md,
/// "Lifecycle").
pub(super) fn next_due(held: &str) -> String {
    format!(
        "SELECT c.start_ms + c.duration_ms FROM conversations c CROSS JOIN artifacts a ON a.conversation = c.pk \
         WHERE c.start_ms + c.duration_ms > ?1 AND {LIVE} AND NOT {held} \
         ORDER BY c.start_ms + c.duration_ms LIMIT 1"
    )
}

pub(super) fn due_summary(cat: &SqliteCatalog, q: &DueQuery) -> Result<DueCount> {
    cat.with_reader(|conn| {
        let Due {
            params,
            bound,
            held,
            exported,
            matters,
            held_set,
        } = due_params(cat, conn, q, true)?;
        let summary = sql::numbered(&sql::due_summary(
            Dialect::Sqlite,
            LIVE,
            &exported,
            held_set.as_deref().map(|set| (set, matters.len())),
        ));
        let counts: Vec<i64> = conn
            .prepare_cached(&summary)
            .and_then(|mut s| {
                s.query_row(params_from_iter(&params), |r| {
                    (0..4 + matters.len()).map(|i| r.get(i)).collect()
                })
            })
            .map_err(|e| cat.err(e))?;
        let next: Option<i64> = conn
            .prepare_cached(&next_due(&held))
            .and_then(|mut s| {
                s.query_row(params_from_iter(&params[..bound]), |r| r.get(0))
                    .optional()
            })
            .map_err(|e| cat.err(e))?;
        let n = |i: usize| counts[i].max(0) as u64;
        Ok(DueCount {
            artifacts: n(0),
            bytes: n(1),
            held: n(2),
            held_by_matter: matters
                .into_iter()
                .enumerate()
                .map(|(i, m)| (m, n(4 + i)))
                .collect(),
            not_exported: n(3),
            next_end: next.and_then(DateTime::from_timestamp_millis),
        })
    })
}

pub(super) fn live_artifact_count(cat: &SqliteCatalog) -> Result<u64> {
    cat.with_reader(|conn| {
        conn.query_row(sql::LIVE_ARTIFACT_COUNT.sqlite, [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(|e| cat.err(e))
    })
}

pub(super) fn begin_deletes(cat: &SqliteCatalog, intents: &[DueArtifact]) -> Result<()> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    {
        let mut ins = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO delete_intents (conversation, ordinal, tenant, conversation_id, rel_dir, file, size, policy, version, due) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .map_err(|e| cat.err(e))?;
        for a in intents {
            ins.execute(params![
                a.conversation_pk,
                a.ordinal,
                a.tenant,
                a.conversation_id,
                a.rel_dir,
                a.file,
                a.size,
                a.policy,
                a.version,
                ts(a.due)
            ])
            .map_err(|e| cat.err(e))?;
        }
    }
    tx.commit().map_err(|e| cat.err(e))
}

pub(super) fn pending_deletes(cat: &SqliteCatalog) -> Result<Vec<DueArtifact>> {
    cat.with_reader(|conn| {
        cat.rows(conn, sql::PENDING_DELETES.sqlite, [], |r| {
            rows::pending_delete(r)
        })
    })
}

pub(super) fn finish_deletes(
    cat: &SqliteCatalog,
    outcomes: &[(DueArtifact, DeleteOutcome)],
    actor: &str,
    run: Option<RunId>,
) -> Result<()> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    let now = Utc::now();
    let mut chain = cat.chain();
    for (a, outcome) in outcomes {
        if let DeleteOutcome::Deleted { was_missing } = outcome {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO artifact_deletions (conversation, file, deleted_at, policy, version) VALUES (?, ?, ?, ?, ?)",
            )
            .and_then(|mut s| s.execute(params![a.conversation_pk, a.file, ts(now), a.policy, a.version]))
            .map_err(|e| cat.err(e))?;
            chain
                .append(&tx, &deletion_event(a, *was_missing, now, actor, run))
                .map_err(|e| cat.err(e))?;
        }
        tx.prepare_cached("DELETE FROM delete_intents WHERE conversation = ? AND ordinal = ?")
            .and_then(|mut s| s.execute(params![a.conversation_pk, a.ordinal]))
            .map_err(|e| cat.err(e))?;
    }
    tx.commit().map_err(|e| cat.err(e))
}

pub(super) fn begin_quarantine(
    cat: &SqliteCatalog,
    intents: &[(DueArtifact, String)],
    run: Option<RunId>,
) -> Result<()> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    {
        let mut ins = tx
            .prepare_cached(
                "INSERT INTO quarantine (conversation, file, ordinal, tenant, conversation_id, rel_dir, size, policy, \
                 version, due_ms, name, state, exempt, run, quarantined_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'moving', 0, ?, NULL)",
            )
            .map_err(|e| cat.err(e))?;
        for (a, name) in intents {
            ins.execute(params![
                a.conversation_pk,
                a.file,
                a.ordinal,
                a.tenant,
                a.conversation_id,
                a.rel_dir,
                a.size,
                a.policy,
                a.version,
                a.due.timestamp_millis(),
                name,
                run.map(|r| r.0),
            ])
            .map_err(|e| cat.err(e))?;
        }
    }
    tx.commit().map_err(|e| cat.err(e))
}

pub(super) fn quarantined(
    cat: &SqliteCatalog,
    select: &QuarantineSelect,
) -> Result<Vec<Quarantined>> {
    let (text, values) = sql::quarantine_entries(select);
    cat.with_reader(|conn| {
        cat.rows(
            conn,
            &sql::numbered(&text),
            params_from_iter(values.iter().map(to_sql)),
            |r| rows::quarantined(r),
        )
    })
}

pub(super) fn mark_quarantine(
    cat: &SqliteCatalog,
    entries: &[Quarantined],
    state: QuarantineState,
    exempt: bool,
) -> Result<()> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    for q in entries {
        tx.prepare_cached(
            "UPDATE quarantine SET state = ?, exempt = ? WHERE conversation = ? AND file = ?",
        )
        .and_then(|mut s| {
            s.execute(params![
                state.as_str(),
                exempt,
                q.artifact.conversation_pk,
                q.artifact.file
            ])
        })
        .map_err(|e| cat.err(e))?;
    }
    tx.commit().map_err(|e| cat.err(e))
}

pub(super) fn finish_quarantine(
    cat: &SqliteCatalog,
    outcomes: &[(Quarantined, QuarantineOutcome)],
    actor: &str,
    run: Option<RunId>,
) -> Result<()> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    let now = Utc::now();
    let mut chain = cat.chain();
    for (q, outcome) in outcomes {
        let a = &q.artifact;
        let key = params![a.conversation_pk, a.file];
        let forget = |tx: &rusqlite::Transaction<'_>| {
            tx.prepare_cached("DELETE FROM quarantine WHERE conversation = ? AND file = ?")
                .and_then(|mut s| s.execute(key))
        };
        match outcome {
            QuarantineOutcome::Quarantined => tx
                .prepare_cached(
                    "UPDATE quarantine SET state = 'quarantined', quarantined_ms = ? WHERE conversation = ? AND file = ?",
                )
                .and_then(|mut s| s.execute(params![now.timestamp_millis(), a.conversation_pk, a.file])),
            QuarantineOutcome::Restored { .. } => forget(&tx).and_then(|n| {
                if q.exempt {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO restore_exemptions (conversation, file, policy, version, restored_at, restored_by) \
                         VALUES (?, ?, ?, ?, ?, ?)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![a.conversation_pk, a.file, a.policy, a.version, ts(now), actor])
                    })
                } else {
                    Ok(n)
                }
            }),
            QuarantineOutcome::Purged { .. } => forget(&tx).and_then(|_| {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO artifact_deletions (conversation, file, deleted_at, policy, version) VALUES (?, ?, ?, ?, ?)",
                )
                .and_then(|mut s| s.execute(params![a.conversation_pk, a.file, ts(now), a.policy, a.version]))
            }),
            QuarantineOutcome::Kept if q.state == QuarantineState::Moving => forget(&tx),
            QuarantineOutcome::Kept => tx
                .prepare_cached(
                    "UPDATE quarantine SET state = 'quarantined', exempt = 0 WHERE conversation = ? AND file = ?",
                )
                .and_then(|mut s| s.execute(key)),
        }
        .map_err(|e| cat.err(e))?;
        if let Some(event) = quarantine_event(q, outcome, now, actor, run) {
            chain.append(&tx, &event).map_err(|e| cat.err(e))?;
        }
    }
    tx.commit().map_err(|e| cat.err(e))
}

pub(super) fn quarantine_counts(
    cat: &SqliteCatalog,
    purge_cutoff: DateTime<Utc>,
) -> Result<Vec<QuarantineCount>> {
    cat.with_reader(|conn| {
        cat.rows(
            conn,
            sql::QUARANTINE_COUNTS.sqlite,
            [purge_cutoff.timestamp_millis()],
            |r| rows::quarantine_count(r),
        )
    })
}
