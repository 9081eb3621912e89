//! Lifecycle policies and their versions, the artifacts they make due, and the deletions they
//! record (an intent before the file goes, the deletion and its audit event after).

use chrono::{DateTime, Utc};
use postgres::types::ToSql;

use super::audit::{append_audit, lock_chain};
use super::{Fallible, PostgresCatalog, holds, int, last_of_each, micros, sql_params};
use crate::audit::NewEvent;
use crate::catalog::holds::Standing;
use crate::catalog::lifecycle::{
    DeleteOutcome, DueArtifact, DueCount, DueQuery, LifecyclePolicy, LifecycleVersion,
    RetentionAction,
};
use crate::catalog::rows::{self, Fields};
use crate::catalog::{
    Result, RunId, deletion_event, other_enabled, policy_exists, sql, unknown_policy,
    version_exists,
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
    event: &NewEvent,
) -> Result<()> {
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
        if active.is_none() {
            s.execute(
                sql::SET_ACTIVE_VERSION.postgres,
                &[&v.name, &policy],
            )?;
        }
        append_audit(s, &mut head, [event])
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
        append_audit(s, &mut head, events)
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

/// Artifacts of the query's type not deleted; `$1` is the cutoff, `$2` and `$3` the type.
const LIVE: &str = "a.kind = $2 AND a.audio_type IS NOT DISTINCT FROM $3::text \
     AND NOT EXISTS (SELECT 1 FROM artifact_deletions d WHERE d.conversation = c.pk AND d.file = a.file OFFSET 0)";

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
        let matters: Vec<String> = cat.rows(s.query(sql::ACTIVE_MATTERS.postgres, &[])?, |r| {
            r.text(0)
        })?;
        // The counts take the export's clause and the matters' columns, not `held`.
        let mut counted = Vec::new();
        let exported = sql::exported(
            Dialect::Postgres,
            q.require_export.as_deref(),
            3,
            &mut counted,
        );
        let columns: String = sql::held_by_each(&matters, &standing, 3, &mut counted)
            .iter()
            .enumerate()
            .map(|(i, column)| format!(", {column} AS m{i}"))
            .collect();
        let sums: String = (0..matters.len())
            .map(|i| format!(", coalesce(sum(m{i}), 0)::int8"))
            .collect();
        let kind = q.artifact_type.as_str();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&cutoff, &kind, &audio_type];
        params.extend(sql_params(&counted));
        // Each due artifact's state: 0 deletable, 1 held back for its export, 2 held. What
        // holds cover is one boolean column per matter, evaluated once per row: held is the
        // record's flag or any of them (every active hold is some matter's), so the hold
        // clauses run once, not twice. `OFFSET 0` keeps each subquery from being pulled up
        // into the aggregate, which would copy each column's expression into every count that
        // reads it (docs/performance.md, "Lifecycle").
        let any: String = if matters.is_empty() {
            "FALSE".into()
        } else {
            (0..matters.len())
                .map(|i| format!("m{i} = 1"))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        let column_names: String = (0..matters.len()).map(|i| format!(", m{i}")).collect();
        let r = s.query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE s = 0), coalesce(sum(size) FILTER (WHERE s = 0), 0)::int8, \
                 count(*) FILTER (WHERE s = 2), count(*) FILTER (WHERE s = 1){sums} FROM (SELECT size{column_names}, \
                 CASE WHEN legal_hold OR {any} THEN 2 WHEN x THEN 0 ELSE 1 END AS s FROM \
                 (SELECT a.size, c.legal_hold, {exported} AS x{columns} FROM conversations c \
                 JOIN artifacts a ON a.conversation = c.pk WHERE c.start_ms + c.duration_ms <= $1 AND {LIVE} \
                 OFFSET 0) flags OFFSET 0) due"
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
