//! Lifecycle policies and their versions, the artifacts they make due, and the deletions they
//! record (an intent before the file goes, the deletion and its audit event after).

use chrono::{DateTime, Utc};
use postgres::GenericClient;
use postgres::types::ToSql;

use super::audit::{append_audit, lock_chain};
use super::pool::{Session, Tx};
use super::{Fallible, PostgresCatalog, holds, int, last_of_each, micros, sql_params};
use crate::audit::NewEvent;
use crate::catalog::holds::Standing;
use crate::catalog::lifecycle::{
    ChangeState, DeleteOutcome, DueArtifact, DueCount, DueQuery, LifecyclePolicy, LifecycleVersion,
    PendingChange, QuarantineCount, QuarantineOutcome, QuarantineSelect, QuarantineState,
    Quarantined, RetentionAction, already_pending, changed_meanwhile, expiry_event, stamped,
    unknown_change,
};
use crate::catalog::rows::{self, Fields};
use crate::catalog::{
    Result, RunId, deletion_event, other_enabled, policy_exists, quarantine_event, sql,
    unknown_policy, version_exists,
};
use crate::filter::{Dialect, SqlValue};

pub(super) fn create_policy(
    cat: &PostgresCatalog,
    p: &LifecyclePolicy,
    event: &NewEvent,
) -> Result<()> {
    cat.transaction(|s| {
        let mut head = lock_chain(s, cat.audit_key.as_ref())?;
        if s.query_opt(
            "SELECT 1 FROM lifecycle_policies WHERE name = $1",
            &[&p.name],
        )?
        .is_some()
        {
            return Err(policy_exists(&p.name).into());
        }
        s.execute(
            "INSERT INTO lifecycle_policies (name, description, artifact_type, audio_type, enabled, \
             active_version, created_at, created_by) VALUES ($1, $2, $3, $4, FALSE, NULL, $5, $6)",
            &[
                &p.name,
                &p.description,
                &p.artifact_type.as_str(),
                &p.audio_type.map(|a| a.as_str()),
                &micros(p.created_at),
                &p.created_by,
            ],
        )?;
        append_audit(s, &mut head, [event])
    })
}

pub(super) fn publish_version(
    cat: &PostgresCatalog,
    policy: &str,
    v: &LifecycleVersion,
    activate_first: bool,
    event: &NewEvent,
) -> Result<bool> {
    cat.transaction(|s| {
        let mut head = lock_chain(s, cat.audit_key.as_ref())?;
        let Some(active) = s.query_opt(
            sql::POLICY_ACTIVE_VERSION.postgres,
            &[&policy],
        )?
        else {
            return Err(unknown_policy(policy).into());
        };
        let active: Option<String> = active.try_get(0)?;
        let r = s.query_one(
            "SELECT count(*), coalesce(bool_or(name = $2), FALSE) FROM lifecycle_versions WHERE policy = $1",
            &[&policy, &v.name],
        )?;
        let (count, taken): (i64, bool) = (r.try_get(0)?, r.try_get(1)?);
        if taken {
            return Err(version_exists(policy, &v.name).into());
        }
        let (action, days) = match v.action {
            RetentionAction::KeepForever => ("keep_forever", None),
            RetentionAction::Delete { days } => ("delete", Some(i64::from(days))),
        };
        s.execute(
            sql::INSERT_VERSION.postgres,
            &[
                &policy,
                &v.name,
                &(count + 1),
                &action,
                &days,
                &micros(v.published_at),
                &v.published_by,
                &v.require_export,
            ],
        )?;
        let first = active.is_none();
        if first && activate_first {
            s.execute(
                sql::SET_ACTIVE_VERSION.postgres,
                &[&v.name, &policy],
            )?;
        }
        append_audit(s, &mut head, [event])?;
        Ok(first)
    })
}

pub(super) fn update_policy(
    cat: &PostgresCatalog,
    policy: &str,
    enabled: bool,
    active_version: &str,
    events: &[NewEvent],
) -> Result<()> {
    cat.transaction(|s| {
        // The chain lock also makes the check below and the update one step for every writer.
        let mut head = lock_chain(s, cat.audit_key.as_ref())?;
        set_state(s, policy, enabled, active_version)?;
        append_audit(s, &mut head, events)
    })
}

/// Sets whether a policy is enabled and its active version, refused when another enabled
/// policy covers the same type. The caller holds the chain lock, which makes the check and the
/// update one step for every writer.
fn set_state(
    s: &mut Tx<'_, '_>,
    policy: &str,
    enabled: bool,
    active_version: &str,
) -> Fallible<()> {
    let Some(scope) = s.query_opt(sql::POLICY_SCOPE.postgres, &[&policy])? else {
        return Err(unknown_policy(policy).into());
    };
    let artifact_type: String = scope.try_get(0)?;
    let audio_type: Option<String> = scope.try_get(1)?;
    if enabled
        && let Some(other) = s.query_opt(
            "SELECT name FROM lifecycle_policies WHERE enabled AND artifact_type = $1 \
                 AND audio_type IS NOT DISTINCT FROM $2::text AND name <> $3",
            &[&artifact_type, &audio_type, &policy],
        )?
    {
        let other: String = other.try_get(0)?;
        return Err(other_enabled(&other, &artifact_type, audio_type.as_deref()).into());
    }
    s.execute(
        sql::SET_POLICY_STATE.postgres,
        &[&enabled, &active_version, &policy],
    )?;
    Ok(())
}

/// A policy's state: whether it is enabled and its active version (None: no such policy).
fn policy_state<C: GenericClient>(
    s: &mut Session<'_, C>,
    policy: &str,
) -> Fallible<Option<(bool, Option<String>)>> {
    match s.query_opt(sql::POLICY_STATE.postgres, &[&policy])? {
        Some(r) => Ok(Some((r.try_get(0)?, r.try_get(1)?))),
        None => Ok(None),
    }
}

fn changes_in<C: GenericClient>(
    cat: &PostgresCatalog,
    s: &mut Session<'_, C>,
    pending_only: bool,
) -> Fallible<Vec<PendingChange>> {
    cat.rows(
        s.query(sql::LIFECYCLE_CHANGES.postgres, &[&pending_only])?,
        |r| rows::lifecycle_change(r),
    )
}

pub(super) fn request_change(
    cat: &PostgresCatalog,
    c: &PendingChange,
    events: &[NewEvent],
) -> Result<i64> {
    cat.transaction(|s| {
        let mut head = lock_chain(s, cat.audit_key.as_ref())?;
        match policy_state(s, &c.policy)? {
            None => return Err(unknown_policy(&c.policy).into()),
            Some(now) if now != (c.enabled_before, c.version_before.clone()) => {
                return Err(changed_meanwhile(&c.policy).into());
            }
            Some(_) => {}
        }
        if let Some(other) = changes_in(cat, s, true)?
            .into_iter()
            .find(|o| o.policy == c.policy)
        {
            return Err(already_pending(&c.policy, &other).into());
        }
        let acknowledgments = serde_json::to_string(&c.acknowledgments).expect("strings serialize");
        let id: i64 = s
            .query_one(
                sql::INSERT_CHANGE.postgres,
                &[
                    &c.policy,
                    &c.change.as_str(),
                    &c.version,
                    &c.enabled_before,
                    &c.version_before,
                    &acknowledgments,
                    &c.requested_by,
                    &micros(c.requested_at),
                    &micros(c.expires_at),
                ],
            )?
            .try_get(0)?;
        append_audit(s, &mut head, &stamped(events, id))?;
        Ok(id)
    })
}

pub(super) fn changes(cat: &PostgresCatalog, pending_only: bool) -> Result<Vec<PendingChange>> {
    cat.autocommit(|s| changes_in(cat, s, pending_only))
}

pub(super) fn expire_changes(
    cat: &PostgresCatalog,
    at: DateTime<Utc>,
    actor: &str,
) -> Result<Vec<PendingChange>> {
    cat.transaction(|s| {
        let mut head = lock_chain(s, cat.audit_key.as_ref())?;
        let mut expired: Vec<PendingChange> = changes_in(cat, s, true)?
            .into_iter()
            .filter(|c| c.expires_at <= at)
            .collect();
        let mut events = Vec::new();
        for c in &mut expired {
            s.execute(
                sql::DECIDE_CHANGE.postgres,
                &[
                    &ChangeState::Expired.as_str(),
                    &None::<String>,
                    &micros(at),
                    &c.id,
                ],
            )?;
            events.push(expiry_event(c, at, actor));
            c.state = ChangeState::Expired;
            c.decided_at = Some(at);
        }
        append_audit(s, &mut head, &events)?;
        Ok(expired)
    })
}

pub(super) fn decide_change(
    cat: &PostgresCatalog,
    id: i64,
    to: ChangeState,
    by: &str,
    at: DateTime<Utc>,
    events: &[NewEvent],
) -> Result<PendingChange> {
    cat.transaction(|s| {
        // The chain lock makes the checks and the change one step for every writer.
        let mut head = lock_chain(s, cat.audit_key.as_ref())?;
        let mut c = changes_in(cat, s, false)?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| unknown_change(id))?;
        let (enabled, active) = policy_state(s, &c.policy)?.unwrap_or((false, None));
        c.check_decision(to, by, at, (enabled, active.as_deref()))?;
        if to == ChangeState::Approved {
            set_state(s, &c.policy, c.enabled_after(), &c.version)?;
        }
        s.execute(
            sql::DECIDE_CHANGE.postgres,
            &[&to.as_str(), &by, &micros(at), &id],
        )?;
        append_audit(s, &mut head, &stamped(events, id))?;
        c.state = to;
        c.decided_by = Some(by.to_owned());
        c.decided_at = Some(at);
        Ok(c)
    })
}

pub(super) fn policies(cat: &PostgresCatalog) -> Result<Vec<LifecyclePolicy>> {
    cat.autocommit(|s| {
        let mut policies = cat.rows(s.query(sql::LIFECYCLE_POLICIES.postgres, &[])?, |r| {
            rows::lifecycle_policy(r)
        })?;
        let versions = cat.rows(s.query(sql::LIFECYCLE_VERSIONS.postgres, &[])?, |r| {
            rows::lifecycle_version(r)
        })?;
        for (policy, version) in versions {
            if let Some(p) = policies.iter_mut().find(|p| p.name == policy) {
                p.versions.push(version);
            }
        }
        Ok(policies)
    })
}

/// Artifacts of the query's type not deleted, not in quarantine, and not restored from the
/// quarantine of the policy version now active (docs/operations.md, "Quarantine"); `$1` is the
/// cutoff, `$2` and `$3` the type.
const LIVE: &str = "a.kind = $2 AND a.audio_type IS NOT DISTINCT FROM $3::text \
     AND NOT EXISTS (SELECT 1 FROM artifact_deletions d WHERE d.conversation = c.pk AND d.file = a.file OFFSET 0) \
     AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.conversation = c.pk AND q.file = a.file OFFSET 0) \
     AND NOT EXISTS (SELECT 1 FROM restore_exemptions r JOIN lifecycle_policies p \
     ON p.name = r.policy AND p.active_version = r.version WHERE r.conversation = c.pk AND r.file = a.file OFFSET 0)";

/// The clauses of a due query after its three fixed parameters.
struct Clauses {
    /// What a hold covers (the record's legal_hold flag or an active hold).
    held: String,
    /// Whether the query's required export policy exported the artifact (TRUE when none is).
    exported: String,
    /// Their parameters, numbered after the query's three: `held`'s first.
    params: Vec<SqlValue>,
    /// How many of `params` are `held`'s.
    held_params: usize,
}

/// The clauses of `q`, `standing` the active standing holds.
fn clauses(standing: &[Standing], q: &DueQuery) -> Clauses {
    let mut params = Vec::new();
    let held = sql::held(Dialect::Postgres, None, standing, 3, &mut params);
    let held_params = params.len();
    let exported = sql::exported(
        Dialect::Postgres,
        q.require_export.as_deref(),
        3,
        &mut params,
    );
    Clauses {
        held: format!("(c.legal_hold OR {held})"),
        exported,
        params,
        held_params,
    }
}

pub(super) fn due_artifacts(
    cat: &PostgresCatalog,
    q: &DueQuery,
    after: (i64, i64),
    limit: usize,
) -> Result<Vec<DueArtifact>> {
    cat.autocommit(|s| {
        let Clauses {
            held,
            exported,
            params: hold_params,
            ..
        } = clauses(&holds::standing(cat, s)?, q);
        let n = 3 + hold_params.len();
        let cutoff = q.cutoff.timestamp_millis();
        let audio_type = q.audio_type.map(|a| a.as_str());
        let limit = limit as i64;
        let kind = q.artifact_type.as_str();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&cutoff, &kind, &audio_type];
        params.extend(sql_params(&hold_params));
        params.extend([&after.0 as &(dyn ToSql + Sync), &after.1, &limit]);
        let found = s.query(
            &format!(
                "SELECT c.pk, a.ordinal, c.tenant, c.id, c.rel_dir, a.file, a.size, c.start_ms + c.duration_ms, \
                 c.json_mtime_ns, c.json_size \
                 FROM conversations c JOIN artifacts a ON a.conversation = c.pk \
                 WHERE c.start_ms + c.duration_ms <= $1 AND {LIVE} AND NOT {held} AND {exported} \
                 AND (c.pk, a.ordinal) > (${}, ${}) ORDER BY c.pk, a.ordinal LIMIT ${}",
                n + 1,
                n + 2,
                n + 3
            ),
            &params,
        )?;
        cat.rows(found, |r| rows::due_artifact(r, q))
    })
}

pub(super) fn due_summary(cat: &PostgresCatalog, q: &DueQuery) -> Result<DueCount> {
    let cutoff = q.cutoff.timestamp_millis();
    let audio_type = q.audio_type.map(|a| a.as_str());
    cat.autocommit(|s| {
        let standing = holds::standing(cat, s)?;
        let Clauses {
            held,
            params: hold_params,
            held_params,
            ..
        } = clauses(&standing, q);
        let matters: Vec<String> =
            cat.rows(s.query(sql::ACTIVE_MATTERS.postgres, &[])?, |r| r.text(0))?;
        // The counts take the export's clause and the set of what the matters' holds cover,
        // not `held`.
        let mut counted = Vec::new();
        let exported = sql::exported(
            Dialect::Postgres,
            q.require_export.as_deref(),
            3,
            &mut counted,
        );
        let held_set = sql::held_set(&matters, &standing, 3, &mut counted);
        let kind = q.artifact_type.as_str();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&cutoff, &kind, &audio_type];
        params.extend(sql_params(&counted));
        let r = s.query_one(
            &sql::due_summary(
                Dialect::Postgres,
                LIVE,
                &exported,
                held_set.as_deref().map(|set| (set, matters.len())),
            ),
            &params,
        )?;
        let count = cat.unsigned("count", r.try_get(0)?)?;
        let bytes = cat.unsigned("artifacts.size", r.try_get(1)?)?;
        let kept = cat.unsigned("count", r.try_get(2)?)?;
        let not_exported = cat.unsigned("count", r.try_get(3)?)?;
        let mut held_by_matter = Vec::with_capacity(matters.len());
        for (i, m) in matters.into_iter().enumerate() {
            held_by_matter.push((m, cat.unsigned("count", r.try_get(4 + i)?)?));
        }
        let mut next_params: Vec<&(dyn ToSql + Sync)> = vec![&cutoff, &kind, &audio_type];
        next_params.extend(sql_params(&hold_params[..held_params]));
        let next: Option<i64> = s
            .query_opt(
                &format!(
                    "SELECT c.start_ms + c.duration_ms FROM conversations c JOIN artifacts a \
                     ON a.conversation = c.pk WHERE c.start_ms + c.duration_ms > $1 AND {LIVE} \
                     AND NOT {held} ORDER BY c.start_ms + c.duration_ms LIMIT 1"
                ),
                &next_params,
            )?
            .map(|r| r.try_get(0))
            .transpose()?;
        Ok(DueCount {
            artifacts: count,
            bytes,
            held: kept,
            held_by_matter,
            not_exported,
            next_end: next.and_then(DateTime::from_timestamp_millis),
        })
    })
}

pub(super) fn live_artifact_count(cat: &PostgresCatalog) -> Result<u64> {
    cat.autocommit(|s| {
        let n: i64 = s
            .query_one(sql::LIVE_ARTIFACT_COUNT.postgres, &[])?
            .try_get(0)?;
        Ok(n.max(0) as u64)
    })
}

pub(super) fn begin_deletes(cat: &PostgresCatalog, intents: &[DueArtifact]) -> Result<()> {
    let intents = last_of_each(intents.iter().collect(), |a| (a.conversation_pk, a.ordinal));
    if intents.is_empty() {
        return Ok(());
    }
    let conversation: Vec<i64> = intents.iter().map(|a| a.conversation_pk).collect();
    let ordinal: Vec<i64> = intents.iter().map(|a| a.ordinal).collect();
    let tenant: Vec<&str> = intents.iter().map(|a| a.tenant.as_str()).collect();
    let id: Vec<&str> = intents.iter().map(|a| a.conversation_id.as_str()).collect();
    let rel_dir: Vec<&str> = intents.iter().map(|a| a.rel_dir.as_str()).collect();
    let file: Vec<&str> = intents.iter().map(|a| a.file.as_str()).collect();
    let size = intents
        .iter()
        .map(|a| int(a.size))
        .collect::<Fallible<Vec<_>>>()
        .map_err(|f| cat.fail(f))?;
    let policy: Vec<&str> = intents.iter().map(|a| a.policy.as_str()).collect();
    let version: Vec<&str> = intents.iter().map(|a| a.version.as_str()).collect();
    let due: Vec<DateTime<Utc>> = intents.iter().map(|a| micros(a.due)).collect();
    cat.autocommit(|s| {
        s.execute(
            "INSERT INTO delete_intents (conversation, ordinal, tenant, conversation_id, rel_dir, file, size, policy, version, due) \
             SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::int8[], $8::text[], $9::text[], $10::timestamptz[]) \
             ON CONFLICT (conversation, ordinal) DO UPDATE SET tenant = EXCLUDED.tenant, \
             conversation_id = EXCLUDED.conversation_id, rel_dir = EXCLUDED.rel_dir, file = EXCLUDED.file, \
             size = EXCLUDED.size, policy = EXCLUDED.policy, version = EXCLUDED.version, due = EXCLUDED.due",
            &[
                &conversation,
                &ordinal,
                &tenant,
                &id,
                &rel_dir,
                &file,
                &size,
                &policy,
                &version,
                &due,
            ],
        )
        .map(drop)
    })
}

pub(super) fn pending_deletes(cat: &PostgresCatalog) -> Result<Vec<DueArtifact>> {
    cat.autocommit(|s| {
        cat.rows(s.query(sql::PENDING_DELETES.postgres, &[])?, |r| {
            rows::pending_delete(r)
        })
    })
}

pub(super) fn finish_deletes(
    cat: &PostgresCatalog,
    outcomes: &[(DueArtifact, DeleteOutcome)],
    actor: &str,
    run: Option<RunId>,
) -> Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let now = micros(Utc::now());
    let mut deleted_pk = Vec::new();
    let mut deleted_file = Vec::new();
    let mut deleted_policy = Vec::new();
    let mut deleted_version = Vec::new();
    let mut events = Vec::new();
    for (a, outcome) in outcomes {
        if let DeleteOutcome::Deleted { was_missing } = outcome {
            deleted_pk.push(a.conversation_pk);
            deleted_file.push(a.file.as_str());
            deleted_policy.push(a.policy.as_str());
            deleted_version.push(a.version.as_str());
            events.push(deletion_event(a, *was_missing, now, actor, run));
        }
    }
    let intent_pk: Vec<i64> = outcomes.iter().map(|(a, _)| a.conversation_pk).collect();
    let intent_ordinal: Vec<i64> = outcomes.iter().map(|(a, _)| a.ordinal).collect();
    cat.transaction(|s| {
        if !events.is_empty() {
            let mut head = lock_chain(s, cat.audit_key.as_ref())?;
            s.execute(
                "INSERT INTO artifact_deletions (conversation, file, deleted_at, policy, version) \
                 SELECT u.conversation, u.file, $1, u.policy, u.version \
                 FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[]) AS u(conversation, file, policy, version) \
                 ON CONFLICT DO NOTHING",
                &[&now, &deleted_pk, &deleted_file, &deleted_policy, &deleted_version],
            )?;
            append_audit(s, &mut head, &events)?;
        }
        s.execute(
            "DELETE FROM delete_intents d USING unnest($1::int8[], $2::int8[]) AS u(conversation, ordinal) \
             WHERE d.conversation = u.conversation AND d.ordinal = u.ordinal",
            &[&intent_pk, &intent_ordinal],
        )
        .map(drop)
    })
}

pub(super) fn begin_quarantine(
    cat: &PostgresCatalog,
    intents: &[(DueArtifact, String)],
    run: Option<RunId>,
) -> Result<()> {
    if intents.is_empty() {
        return Ok(());
    }
    let conversation: Vec<i64> = intents.iter().map(|(a, _)| a.conversation_pk).collect();
    let file: Vec<&str> = intents.iter().map(|(a, _)| a.file.as_str()).collect();
    let ordinal: Vec<i64> = intents.iter().map(|(a, _)| a.ordinal).collect();
    let tenant: Vec<&str> = intents.iter().map(|(a, _)| a.tenant.as_str()).collect();
    let id: Vec<&str> = intents
        .iter()
        .map(|(a, _)| a.conversation_id.as_str())
        .collect();
    let rel_dir: Vec<&str> = intents.iter().map(|(a, _)| a.rel_dir.as_str()).collect();
    let size = intents
        .iter()
        .map(|(a, _)| int(a.size))
        .collect::<Fallible<Vec<_>>>()
        .map_err(|f| cat.fail(f))?;
    let policy: Vec<&str> = intents.iter().map(|(a, _)| a.policy.as_str()).collect();
    let version: Vec<&str> = intents.iter().map(|(a, _)| a.version.as_str()).collect();
    let due: Vec<i64> = intents
        .iter()
        .map(|(a, _)| a.due.timestamp_millis())
        .collect();
    let name: Vec<&str> = intents.iter().map(|(_, n)| n.as_str()).collect();
    let run = run.map(|r| r.0);
    cat.autocommit(|s| {
        s.execute(
            "INSERT INTO quarantine (conversation, file, ordinal, tenant, conversation_id, rel_dir, size, policy, \
             version, due_ms, name, state, exempt, run, quarantined_ms) \
             SELECT u.*, 'moving', false, $12::int8, NULL FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[], \
             $5::text[], $6::text[], $7::int8[], $8::text[], $9::text[], $10::int8[], $11::text[]) AS u",
            &[
                &conversation,
                &file,
                &ordinal,
                &tenant,
                &id,
                &rel_dir,
                &size,
                &policy,
                &version,
                &due,
                &name,
                &run,
            ],
        )
        .map(drop)
    })
}

pub(super) fn quarantined(
    cat: &PostgresCatalog,
    select: &QuarantineSelect,
) -> Result<Vec<Quarantined>> {
    let (text, values) = sql::quarantine_entries(select);
    cat.autocommit(|s| {
        cat.rows(s.query(&text, &sql_params(&values))?, |r| {
            rows::quarantined(r)
        })
    })
}

pub(super) fn mark_quarantine(
    cat: &PostgresCatalog,
    entries: &[Quarantined],
    state: QuarantineState,
    exempt: bool,
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let conversation: Vec<i64> = entries.iter().map(|q| q.artifact.conversation_pk).collect();
    let file: Vec<&str> = entries.iter().map(|q| q.artifact.file.as_str()).collect();
    cat.autocommit(|s| {
        s.execute(
            "UPDATE quarantine q SET state = $1, exempt = $2 FROM unnest($3::int8[], $4::text[]) AS u(conversation, file) \
             WHERE q.conversation = u.conversation AND q.file = u.file",
            &[&state.as_str(), &exempt, &conversation, &file],
        )
        .map(drop)
    })
}

pub(super) fn finish_quarantine(
    cat: &PostgresCatalog,
    outcomes: &[(Quarantined, QuarantineOutcome)],
    actor: &str,
    run: Option<RunId>,
) -> Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let now = micros(Utc::now());
    let events: Vec<NewEvent> = outcomes
        .iter()
        .filter_map(|(q, o)| quarantine_event(q, o, now, actor, run))
        .collect();
    cat.transaction(|s| {
        let mut head = lock_chain(s, cat.audit_key.as_ref())?;
        for (q, outcome) in outcomes {
            let a = &q.artifact;
            let key: [&(dyn ToSql + Sync); 2] = [&a.conversation_pk, &a.file];
            let forget = "DELETE FROM quarantine WHERE conversation = $1 AND file = $2";
            match outcome {
                QuarantineOutcome::Quarantined => {
                    s.execute(
                        "UPDATE quarantine SET state = 'quarantined', quarantined_ms = $3 \
                         WHERE conversation = $1 AND file = $2",
                        &[&a.conversation_pk, &a.file, &now.timestamp_millis()],
                    )?;
                }
                QuarantineOutcome::Restored { .. } => {
                    s.execute(forget, &key)?;
                    if q.exempt {
                        s.execute(
                            "INSERT INTO restore_exemptions (conversation, file, policy, version, restored_at, restored_by) \
                             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (conversation, file) DO UPDATE SET \
                             policy = EXCLUDED.policy, version = EXCLUDED.version, \
                             restored_at = EXCLUDED.restored_at, restored_by = EXCLUDED.restored_by",
                            &[&a.conversation_pk, &a.file, &a.policy, &a.version, &now, &actor],
                        )?;
                    }
                }
                QuarantineOutcome::Purged { .. } => {
                    s.execute(forget, &key)?;
                    s.execute(
                        "INSERT INTO artifact_deletions (conversation, file, deleted_at, policy, version) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                        &[&a.conversation_pk, &a.file, &now, &a.policy, &a.version],
                    )?;
                }
                QuarantineOutcome::Kept if q.state == QuarantineState::Moving => {
                    s.execute(forget, &key)?;
                }
                QuarantineOutcome::Kept => {
                    s.execute(
                        "UPDATE quarantine SET state = 'quarantined', exempt = false \
                         WHERE conversation = $1 AND file = $2",
                        &key,
                    )?;
                }
            }
        }
        append_audit(s, &mut head, &events)
    })
}

pub(super) fn quarantine_counts(
    cat: &PostgresCatalog,
    purge_cutoff: DateTime<Utc>,
) -> Result<Vec<QuarantineCount>> {
    cat.autocommit(|s| {
        cat.rows(
            s.query(
                sql::QUARANTINE_COUNTS.postgres,
                &[&purge_cutoff.timestamp_millis()],
            )?,
            |r| rows::quarantine_count(r),
        )
    })
}
