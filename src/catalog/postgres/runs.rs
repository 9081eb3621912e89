//! Job history: runs, the items and objects they record (each batch in a few `unnest`
//! statements), the object keys they claim, and the per-policy run lock.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use postgres::Client;
use postgres::types::ToSql;

use super::audit::{append_audit, lock_chain};
use super::pool::{Params, Tx};
use super::{Fallible, PostgresCatalog, connect, int, last_of_each, micros};
use crate::catalog::rows;
use crate::catalog::sql::{self, Sql};
use crate::catalog::{
    CatalogError, Claimed, Counters, ExportedArtifact, FailedItem, Fingerprint, ItemOutcome,
    JobRun, KeyClaim, Mode, ObjectRecord, PolicyLock, Result, RunId, RunPage, RunStatus,
};

/// Conversations (tenant, id) handled by a policy, with the record version each was at.
#[derive(Default)]
pub(super) struct Handled<'a> {
    tenants: Vec<&'a str>,
    ids: Vec<&'a str>,
    mtimes: Vec<i64>,
    sizes: Vec<i64>,
}

impl<'a> Handled<'a> {
    pub(super) fn push(&mut self, tenant: &'a str, id: &'a str, fp: Fingerprint) -> Fallible<()> {
        self.tenants.push(tenant);
        self.ids.push(id);
        self.mtimes.push(fp.mtime_ns);
        self.sizes.push(int(fp.size)?);
        Ok(())
    }
}

/// Records conversations as handled by `policy` at their record version (incremental state),
/// replacing older marks.
pub(super) fn remember(
    s: &mut Tx<'_, '_>,
    policy: &str,
    run: RunId,
    at: DateTime<Utc>,
    handled: &Handled<'_>,
) -> Fallible<()> {
    if handled.tenants.is_empty() {
        return Ok(());
    }
    s.execute(
        "INSERT INTO export_state (policy, tenant, conversation_id, run, at, json_mtime_ns, json_size) \
         SELECT $1, u.tenant, u.id, $2, $3, u.mtime, u.size \
         FROM unnest($4::text[], $5::text[], $6::int8[], $7::int8[]) AS u(tenant, id, mtime, size) \
         ON CONFLICT (policy, tenant, conversation_id) DO UPDATE SET run = EXCLUDED.run, at = EXCLUDED.at, \
         json_mtime_ns = EXCLUDED.json_mtime_ns, json_size = EXCLUDED.json_size",
        &[
            &policy,
            &run.0,
            &at,
            &handled.tenants,
            &handled.ids,
            &handled.mtimes,
            &handled.sizes,
        ],
    )?;
    Ok(())
}

/// Artifacts a policy exported, as the arrays `unnest` reads.
#[derive(Default)]
struct ExportedRows<'a> {
    tenants: Vec<&'a str>,
    ids: Vec<&'a str>,
    files: Vec<&'a str>,
    shas: Vec<&'a str>,
    keys: Vec<Option<&'a str>>,
    sizes: Vec<Option<i64>>,
    out_shas: Vec<Option<&'a str>>,
}

impl<'a> ExportedRows<'a> {
    fn push(&mut self, tenant: &'a str, id: &'a str, a: &'a ExportedArtifact) -> Fallible<()> {
        self.tenants.push(tenant);
        self.ids.push(id);
        self.files.push(&a.file);
        self.shas.push(&a.sha256);
        self.keys.push(a.output.as_ref().map(|o| o.key.as_str()));
        self.sizes
            .push(a.output.as_ref().map(|o| int(o.size)).transpose()?);
        self.out_shas
            .push(a.output.as_ref().map(|o| o.sha256.as_str()));
        Ok(())
    }

    /// Records them as `policy`'s per-artifact incremental state, replacing older marks.
    fn write(&self, s: &mut Tx<'_, '_>, policy: &str, run: RunId) -> Fallible<()> {
        if self.files.is_empty() {
            return Ok(());
        }
        s.execute(
            "INSERT INTO export_artifacts (policy, tenant, conversation_id, file, sha256, key, size, out_sha256, run) \
             SELECT $1, u.tenant, u.id, u.file, u.sha256, u.key, u.size, u.out_sha256, $2 \
             FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[], $9::text[]) \
             AS u(tenant, id, file, sha256, key, size, out_sha256) \
             ON CONFLICT (policy, tenant, conversation_id, file) DO UPDATE SET sha256 = EXCLUDED.sha256, \
             key = EXCLUDED.key, size = EXCLUDED.size, out_sha256 = EXCLUDED.out_sha256, run = EXCLUDED.run",
            &[
                &policy,
                &run.0,
                &self.tenants,
                &self.ids,
                &self.files,
                &self.shas,
                &self.keys,
                &self.sizes,
                &self.out_shas,
            ],
        )?;
        Ok(())
    }
}

/// A session advisory lock, held by a connection of its own until dropped.
struct AdvisoryLock {
    client: Client,
    key: i64,
}

impl PolicyLock for AdvisoryLock {}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        // Closing the connection releases the lock too, but only once the server has noticed;
        // unlocking first lets the next run start at once. If it fails, the close still frees it.
        let _ = self
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&self.key]);
    }
}

fn query_runs(cat: &PostgresCatalog, sql: Sql, params: &Params<'_>) -> Result<Vec<JobRun>> {
    cat.autocommit(|s| cat.rows(s.query(sql.postgres, params)?, |r| rows::job_run(r)))
}

pub(super) fn claim_keys(
    cat: &PostgresCatalog,
    target: &str,
    run: RunId,
    batch: &[Vec<KeyClaim>],
) -> Result<Vec<Claimed>> {
    let now = micros(Utc::now());
    cat.transaction(|s| {
        // The whole batch at once first, two statements: when no conversation is refused
        // (nearly always), that is every answer. Otherwise it is undone and each conversation
        // claims in a savepoint of its own, in order, so a refused one claims nothing and the
        // others stand.
        let all: Vec<&KeyClaim> = batch.iter().flatten().collect();
        s.client.batch_execute("SAVEPOINT claims")?;
        let claimed = claim_in(s, target, run, now, &all)?;
        if claimed.held.is_empty() {
            s.client.batch_execute("RELEASE SAVEPOINT claims")?;
            let fresh: HashSet<&str> = claimed.fresh.iter().map(String::as_str).collect();
            return Ok(batch
                .iter()
                .map(|claims| {
                    let mut mine: Vec<String> = Vec::new();
                    for c in claims {
                        if fresh.contains(c.key.as_str()) && !mine.contains(&c.key) {
                            mine.push(c.key.clone());
                        }
                    }
                    Claimed {
                        held: Vec::new(),
                        fresh: mine,
                    }
                })
                .collect());
        }
        s.client
            .batch_execute("ROLLBACK TO SAVEPOINT claims; RELEASE SAVEPOINT claims")?;
        batch
            .iter()
            .map(|claims| {
                s.client.batch_execute("SAVEPOINT claim")?;
                let mine: Vec<&KeyClaim> = claims.iter().collect();
                let claimed = claim_in(s, target, run, now, &mine)?;
                s.client.batch_execute(if claimed.held.is_empty() {
                    "RELEASE SAVEPOINT claim"
                } else {
                    "ROLLBACK TO SAVEPOINT claim; RELEASE SAVEPOINT claim"
                })?;
                Ok(claimed)
            })
            .collect()
    })
}

/// Claims one conversation's `claims` in `s`'s transaction; when any key is held by another
/// file, returns its holders and no fresh keys, for the caller to roll back.
fn claim_in(
    s: &mut Tx<'_, '_>,
    target: &str,
    run: RunId,
    now: DateTime<Utc>,
    claims: &[&KeyClaim],
) -> Fallible<Claimed> {
    if claims.is_empty() {
        return Ok(Claimed::default());
    }
    let keys: Vec<&str> = claims.iter().map(|c| c.key.as_str()).collect();
    let tenants: Vec<&str> = claims.iter().map(|c| c.tenant.as_str()).collect();
    let ids: Vec<&str> = claims.iter().map(|c| c.conversation_id.as_str()).collect();
    let files: Vec<&str> = claims.iter().map(|c| c.file.as_str()).collect();
    // An insert racing another node's uncommitted claim of the same key waits for it, then
    // does nothing; the holder is read by a statement of its own, whose snapshot sees the
    // claim that won.
    let mut fresh = Vec::new();
    for r in s.query(
        "INSERT INTO object_keys (target, key, tenant, conversation_id, file, run, at) \
         SELECT $1, u.key, u.tenant, u.id, u.file, $2, $3 \
         FROM unnest($4::text[], $5::text[], $6::text[], $7::text[]) AS u(key, tenant, id, file) \
         ON CONFLICT (target, key) DO NOTHING RETURNING key",
        &[&target, &run.0, &now, &keys, &tenants, &ids, &files],
    )? {
        fresh.push(r.try_get(0)?);
    }
    let mut held = Vec::new();
    for r in s.query(
        "SELECT key, tenant, conversation_id, file FROM object_keys \
         WHERE target = $1 AND key = ANY($2)",
        &[&target, &keys],
    )? {
        let h = KeyClaim {
            key: r.try_get(0)?,
            tenant: r.try_get(1)?,
            conversation_id: r.try_get(2)?,
            file: r.try_get(3)?,
        };
        if claims.iter().any(|c| c.key == h.key && !c.same_holder(&h)) {
            held.push(h);
        }
    }
    if !held.is_empty() {
        fresh.clear();
    }
    Ok(Claimed { held, fresh })
}

pub(super) fn lock_policy(cat: &PostgresCatalog, policy: &str) -> Result<Box<dyn PolicyLock>> {
    let mut client = connect(&cat.config).map_err(|message| CatalogError::Open {
        location: cat.location.clone(),
        message,
    })?;
    let key = cat.lock_key("policy", policy);
    let taken: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .and_then(|r| r.try_get(0))
        .map_err(|e| cat.fail(e.into()))?;
    if taken {
        Ok(Box::new(AdvisoryLock { client, key }))
    } else {
        Err(CatalogError::Busy {
            policy: policy.to_owned(),
            lock: format!("advisory lock {key} in {}", cat.location),
        })
    }
}

pub(super) fn interrupted_run(cat: &PostgresCatalog, policy: &str) -> Result<Option<JobRun>> {
    Ok(query_runs(cat, sql::INTERRUPTED_RUN, &[&policy])?.pop())
}

pub(super) fn begin_run(
    cat: &PostgresCatalog,
    policy: &str,
    mode: Mode,
    target: &str,
) -> Result<RunId> {
    let now = micros(Utc::now());
    cat.autocommit(|s| {
        Ok(RunId(
            s.query_one(
                "INSERT INTO job_runs (policy, mode, target, status, started_at) \
                 VALUES ($1, $2, $3, 'running', $4) RETURNING id",
                &[&policy, &mode.as_str(), &target, &now],
            )?
            .try_get(0)?,
        ))
    })
}

pub(super) fn resume_run(cat: &PostgresCatalog, run: RunId) -> Result<()> {
    cat.autocommit(|s| s.execute(sql::RESUME_RUN.postgres, &[&run.0]).map(drop))
}

pub(super) fn record_outcomes(
    cat: &PostgresCatalog,
    run: RunId,
    policy: &str,
    outcomes: &[ItemOutcome],
) -> Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let now = micros(Utc::now());
    let exports = outcomes
        .iter()
        .any(|o| matches!(o, ItemOutcome::Exported { .. }));
    cat.transaction(|s| {
        let mut head = if exports { Some(lock_chain(s, cat.audit_key.as_ref())?) } else { None };
        // A conversation another node already recorded in this run (its unit was redone
        // after a lease expired) is not recorded again: one export and one audit event
        // per conversation and run. Appends are serialized by the chain lock above.
        let recorded: HashSet<(String, String)> = if exports {
            let (tenants, ids): (Vec<&str>, Vec<&str>) = outcomes
                .iter()
                .filter_map(|o| match o {
                    ItemOutcome::Exported {
                        tenant,
                        conversation_id,
                        ..
                    } => Some((tenant.as_str(), conversation_id.as_str())),
                    ItemOutcome::Failed { .. } => None,
                })
                .unzip();
            s.query(
                "SELECT u.tenant, u.conversation_id \
                 FROM unnest($2::text[], $3::text[]) AS u(tenant, conversation_id) \
                 WHERE EXISTS (SELECT 1 FROM run_items r WHERE r.run = $1 AND r.outcome = 'exported' \
                 AND r.tenant = u.tenant AND r.conversation_id = u.conversation_id OFFSET 0)",
                &[&run.0, &tenants, &ids],
            )?
            .into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Fallible<_>>()?
        } else {
            HashSet::new()
        };
        let mut subject = Vec::with_capacity(outcomes.len());
        let mut tenant = Vec::with_capacity(outcomes.len());
        let mut conversation = Vec::with_capacity(outcomes.len());
        let mut outcome = Vec::with_capacity(outcomes.len());
        let mut error = Vec::with_capacity(outcomes.len());
        let mut object_count = Vec::with_capacity(outcomes.len());
        let mut bytes = Vec::with_capacity(outcomes.len());
        let mut objects = Vec::new();
        let mut exported = Vec::new();
        let mut events = Vec::new();
        for o in outcomes {
            match o {
                ItemOutcome::Exported {
                    tenant: t,
                    conversation_id,
                    fingerprint,
                    artifacts,
                    objects: written,
                    audit,
                } => {
                    if recorded.contains(&(t.clone(), conversation_id.clone())) {
                        continue;
                    }
                    subject.push(format!("{t}/{conversation_id}"));
                    tenant.push(Some(t.as_str()));
                    conversation.push(Some(conversation_id.as_str()));
                    outcome.push("exported");
                    error.push(None);
                    object_count.push(written.len() as i64);
                    bytes.push(int(written.iter().map(|o| o.size).sum())?);
                    objects.extend(written);
                    exported.push((
                        (t.as_str(), conversation_id.as_str()),
                        *fingerprint,
                        artifacts,
                    ));
                    events.push(audit);
                }
                ItemOutcome::Failed {
                    subject: sub,
                    error: e,
                } => {
                    subject.push(sub.clone());
                    tenant.push(None);
                    conversation.push(None);
                    outcome.push("failed");
                    error.push(Some(e.as_str()));
                    object_count.push(0);
                    bytes.push(0);
                }
            }
        }
        let objects = last_of_each(objects, |o| o.key.as_str());
        let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
        let sizes = objects
            .iter()
            .map(|o| int(o.size))
            .collect::<Fallible<Vec<_>>>()?;
        let shas: Vec<&str> = objects.iter().map(|o| o.sha256.as_str()).collect();
        let mut handled = Handled::default();
        let mut done = ExportedRows::default();
        for ((t, id), fingerprint, artifacts) in last_of_each(exported, |e| e.0) {
            handled.push(t, id, fingerprint)?;
            for a in artifacts {
                done.push(t, id, a)?;
            }
        }
        s.execute(
            "INSERT INTO run_items (run, subject, tenant, conversation_id, outcome, error, objects, bytes, at) \
             SELECT $1, u.subject, u.tenant, u.conversation_id, u.outcome, u.error, u.objects, u.bytes, $2 \
             FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[], $9::int8[]) \
             WITH ORDINALITY AS u(subject, tenant, conversation_id, outcome, error, objects, bytes, n) \
             ORDER BY u.n",
            &[
                &run.0,
                &now,
                &subject,
                &tenant,
                &conversation,
                &outcome,
                &error,
                &object_count,
                &bytes,
            ],
        )?;
        if !keys.is_empty() {
            s.execute(
                "INSERT INTO run_objects (run, key, size, sha256) \
                 SELECT $1, u.key, u.size, u.sha256 FROM unnest($2::text[], $3::int8[], $4::text[]) \
                 AS u(key, size, sha256) \
                 ON CONFLICT (run, key) DO UPDATE SET size = EXCLUDED.size, sha256 = EXCLUDED.sha256",
                &[&run.0, &keys, &sizes, &shas],
            )?;
        }
        remember(s, policy, run, now, &handled)?;
        done.write(s, policy, run)?;
        if let Some(head) = &mut head {
            append_audit(s, head, events)?;
        }
        Ok(())
    })
}

pub(super) fn run_counters(cat: &PostgresCatalog, run: RunId) -> Result<Counters> {
    cat.autocommit(|s| {
        let r = s.query_one(
            "SELECT \
               (SELECT count(*) FROM run_items WHERE run = $1 AND outcome = 'exported'), \
               (SELECT count(*) FROM (SELECT 1 FROM run_items WHERE run = $1 GROUP BY subject \
                  HAVING bool_and(outcome = 'failed')) f), \
               (SELECT count(*) FROM run_objects WHERE run = $1), \
               (SELECT coalesce(sum(size), 0)::int8 FROM run_objects WHERE run = $1), \
               (SELECT count(*) FROM audit_events WHERE run = $1 AND kind = 'artifact_deleted')",
            &[&run.0],
        )?;
        Ok(rows::run_counters(&cat.columns(&r))?)
    })
}

pub(super) fn finish_run(
    cat: &PostgresCatalog,
    run: RunId,
    status: RunStatus,
    c: &Counters,
    manifest_key: Option<&str>,
    error_summary: Option<&str>,
) -> Result<()> {
    let finished = (status != RunStatus::Running).then(|| micros(Utc::now()));
    let counts = [
        c.selected,
        c.exported,
        c.flagged,
        c.deleted,
        c.failed,
        c.objects,
        c.bytes,
        c.index_errors,
    ]
    .map(int);
    cat.autocommit(|s| {
        let [
            selected,
            exported,
            flagged,
            deleted,
            failed,
            objects,
            bytes,
            index_errors,
        ] = counts;
        s.execute(
            sql::FINISH_RUN.postgres,
            &[
                &status.as_str(),
                &finished,
                &selected?,
                &exported?,
                &flagged?,
                &failed?,
                &objects?,
                &bytes?,
                &index_errors?,
                &manifest_key,
                &error_summary,
                &deleted?,
                &run.0,
            ],
        )
        .map(drop)
    })
}

pub(super) fn run_objects(
    cat: &PostgresCatalog,
    run: RunId,
    each: &mut dyn FnMut(ObjectRecord) -> std::io::Result<()>,
) -> Result<std::io::Result<()>> {
    cat.autocommit(|s| {
        let statement = s.prepared(sql::RUN_OBJECTS.postgres)?;
        let params: [&(dyn ToSql + Sync); 1] = [&run.0];
        let mut found = s.client.query_raw(&statement, params)?;
        while let Some(r) = postgres::fallible_iterator::FallibleIterator::next(&mut found)? {
            let obj = rows::object(&cat.columns(&r))?;
            if let Err(e) = each(obj) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    })
}

pub(super) fn job_runs(
    cat: &PostgresCatalog,
    policy: Option<&str>,
    limit: usize,
) -> Result<Vec<JobRun>> {
    let limit = limit as i64;
    match policy {
        Some(p) => query_runs(cat, sql::JOB_RUNS_OF_POLICY, &[&p, &limit]),
        None => query_runs(cat, sql::JOB_RUNS, &[&limit]),
    }
}

pub(super) fn job_runs_page(cat: &PostgresCatalog, page: &RunPage) -> Result<Vec<JobRun>> {
    let before = page.before.map_or(i64::MAX, |r| r.0);
    let limit = page.limit as i64;
    match (&page.policy, page.status.map(RunStatus::as_str)) {
        (None, None) => query_runs(cat, sql::JOB_RUNS_PAGE, &[&before, &limit]),
        (Some(p), None) => query_runs(cat, sql::JOB_RUNS_PAGE_OF_POLICY, &[&before, &limit, p]),
        (None, Some(s)) => query_runs(cat, sql::JOB_RUNS_PAGE_OF_STATUS, &[&before, &limit, &s]),
        (Some(p), Some(s)) => {
            query_runs(cat, sql::JOB_RUNS_PAGE_OF_BOTH, &[&before, &limit, p, &s])
        }
    }
}

pub(super) fn set_run_log(cat: &PostgresCatalog, run: RunId, path: &str) -> Result<()> {
    cat.autocommit(|s| {
        s.execute(sql::SET_RUN_LOG.postgres, &[&path, &run.0])
            .map(drop)
    })
}

pub(super) fn set_run_notification(cat: &PostgresCatalog, run: RunId, text: &str) -> Result<()> {
    cat.autocommit(|s| {
        s.execute(sql::SET_RUN_NOTIFICATION.postgres, &[&text, &run.0])
            .map(drop)
    })
}

pub(super) fn set_run_held_back(cat: &PostgresCatalog, run: RunId, text: &str) -> Result<()> {
    cat.autocommit(|s| {
        s.execute(sql::SET_RUN_HELD_BACK.postgres, &[&text, &run.0])
            .map(drop)
    })
}

pub(super) fn prune_runs(
    cat: &PostgresCatalog,
    policy: &str,
    before: DateTime<Utc>,
) -> Result<u64> {
    cat.autocommit(|s| s.execute(sql::PRUNE_RUNS.postgres, &[&policy, &before]))
}

pub(super) fn job_run(cat: &PostgresCatalog, run: RunId) -> Result<Option<JobRun>> {
    Ok(query_runs(cat, sql::JOB_RUN, &[&run.0])?.pop())
}

pub(super) fn failed_items(
    cat: &PostgresCatalog,
    run: RunId,
    limit: usize,
) -> Result<Vec<FailedItem>> {
    cat.autocommit(|s| {
        let found = s.query(
            "SELECT subject, error, at FROM run_items f WHERE f.run = $1 AND f.outcome = 'failed' \
             AND NOT EXISTS (SELECT 1 FROM run_items x WHERE x.run = $1 AND x.outcome = 'exported' \
                             AND x.subject = f.subject OFFSET 0) \
             ORDER BY f.id LIMIT $2",
            &[&run.0, &(limit as i64)],
        )?;
        cat.rows(found, |r| rows::failed_item(r))
    })
}
