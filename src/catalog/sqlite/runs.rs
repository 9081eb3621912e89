//! Job history: runs, the items and objects they record, the object keys they claim, and the
//! per-policy run lock.

use std::fs::File;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::{Columns, FileLock, SqliteCatalog};
use crate::catalog::rows;
use crate::catalog::sql::{self, Sql};
use crate::catalog::{
    Catalog, CatalogError, Claimed, Counters, FailedItem, ItemOutcome, JobRun, KeyClaim, Mode,
    ObjectRecord, PolicyLock, Result, RunId, RunPage, RunStatus, rfc3339_micros as ts,
};

pub(super) fn claim_keys(
    cat: &SqliteCatalog,
    target: &str,
    run: RunId,
    batch: &[Vec<KeyClaim>],
) -> Result<Vec<Claimed>> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    claim_batch(&mut conn, target, run, batch).map_err(|e| cat.err(e))
}

/// Claims each conversation's keys of `batch` in a savepoint of one transaction (one refused
/// claims nothing and leaves the others be), and commits it: one fsync for the batch.
fn claim_batch(
    conn: &mut Connection,
    target: &str,
    run: RunId,
    batch: &[Vec<KeyClaim>],
) -> rusqlite::Result<Vec<Claimed>> {
    let mut tx = conn.transaction()?;
    let mut answers = Vec::with_capacity(batch.len());
    for claims in batch {
        let sp = tx.savepoint()?;
        let claimed = claim_in(&sp, target, run, claims)?;
        if claimed.held.is_empty() {
            sp.commit()?;
        }
        answers.push(claimed);
    }
    tx.commit()?;
    Ok(answers)
}

/// Claims `claims` in `conn`'s transaction; when any key is held by another file, returns
/// its holders and no fresh keys, for the caller to roll back.
fn claim_in(
    conn: &Connection,
    target: &str,
    run: RunId,
    claims: &[KeyClaim],
) -> rusqlite::Result<Claimed> {
    let now = ts(Utc::now());
    let mut insert = conn.prepare_cached(
        "INSERT INTO object_keys (target, key, tenant, conversation_id, file, run, at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (target, key) DO NOTHING",
    )?;
    let mut holder = conn.prepare_cached(
        "SELECT tenant, conversation_id, file FROM object_keys WHERE target = ? AND key = ?",
    )?;
    let mut claimed = Claimed::default();
    for c in claims {
        let inserted = insert.execute(params![
            target,
            c.key,
            c.tenant,
            c.conversation_id,
            c.file,
            run.0,
            now
        ])?;
        if inserted == 1 {
            claimed.fresh.push(c.key.clone());
        }
        let h = holder.query_row(params![target, c.key], |r| {
            Ok(KeyClaim {
                key: c.key.clone(),
                tenant: r.get(0)?,
                conversation_id: r.get(1)?,
                file: r.get(2)?,
            })
        })?;
        if !h.same_holder(c) {
            claimed.held.push(h);
        }
    }
    if !claimed.held.is_empty() {
        claimed.fresh.clear();
    }
    Ok(claimed)
}

pub(super) fn lock_policy(cat: &SqliteCatalog, policy: &str) -> Result<Box<dyn PolicyLock>> {
    let dir = cat.path.with_extension("locks");
    let lock_path = dir.join(format!("{policy}.lock"));
    let open_err = |e: std::io::Error| CatalogError::Open {
        location: cat.location(),
        message: format!("cannot open lock file {}: {e}", lock_path.display()),
    };
    std::fs::create_dir_all(&dir).map_err(open_err)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(open_err)?;
    match file.try_lock() {
        Ok(()) => Ok(Box::new(FileLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Err(CatalogError::Busy {
            policy: policy.to_owned(),
            lock: lock_path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(open_err(e)),
    }
}

pub(super) fn interrupted_run(cat: &SqliteCatalog, policy: &str) -> Result<Option<JobRun>> {
    Ok(query_runs(cat, sql::INTERRUPTED_RUN, params![policy])?.pop())
}

pub(super) fn begin_run(
    cat: &SqliteCatalog,
    policy: &str,
    mode: Mode,
    target: &str,
) -> Result<RunId> {
    let conn = cat.writer.lock().expect("catalog writer lock");
    // Not `RETURNING` through `query_row`: in autocommit the insert commits when the
    // statement is reset, and an error there (a full disk) would go unreported, leaving an
    // id with no row behind it.
    conn.execute(
        "INSERT INTO job_runs (policy, mode, target, status, started_at) VALUES (?, ?, ?, 'running', ?)",
        params![policy, mode.as_str(), target, ts(Utc::now())],
    )
    .map(|_| RunId(conn.last_insert_rowid()))
    .map_err(|e| cat.err(e))
}

pub(super) fn resume_run(cat: &SqliteCatalog, run: RunId) -> Result<()> {
    let conn = cat.writer.lock().expect("catalog writer lock");
    conn.execute(sql::RESUME_RUN.sqlite, [run.0])
        .map(drop)
        .map_err(|e| cat.err(e))
}

pub(super) fn record_outcomes(
    cat: &SqliteCatalog,
    run: RunId,
    policy: &str,
    outcomes: &[ItemOutcome],
) -> Result<()> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    let now = ts(Utc::now());
    let mut chain = cat.chain();
    let mut write = || -> rusqlite::Result<()> {
        for o in outcomes {
            match o {
                ItemOutcome::Exported {
                    tenant,
                    conversation_id,
                    fingerprint,
                    artifacts,
                    objects,
                    audit,
                } => {
                    let bytes: u64 = objects.iter().map(|o| o.size).sum();
                    tx.prepare_cached(
                        "INSERT INTO run_items (run, subject, tenant, conversation_id, outcome, objects, bytes, at) \
                         VALUES (?, ?, ?, ?, 'exported', ?, ?, ?)",
                    )?
                    .execute(params![
                        run.0,
                        format!("{tenant}/{conversation_id}"),
                        tenant,
                        conversation_id,
                        objects.len(),
                        bytes,
                        now
                    ])?;
                    let mut ins = tx.prepare_cached(
                        "INSERT OR REPLACE INTO run_objects (run, key, size, sha256) VALUES (?, ?, ?, ?)",
                    )?;
                    for obj in objects {
                        ins.execute(params![run.0, obj.key, obj.size, obj.sha256])?;
                    }
                    tx.prepare_cached(REMEMBER)?.execute(params![
                        policy,
                        tenant,
                        conversation_id,
                        run.0,
                        now,
                        fingerprint.mtime_ns,
                        fingerprint.size
                    ])?;
                    let mut ins = tx.prepare_cached(
                        "INSERT OR REPLACE INTO export_artifacts \
                         (policy, tenant, conversation_id, file, sha256, key, size, out_sha256, run) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    )?;
                    for a in artifacts {
                        let o = a.output.as_ref();
                        ins.execute(params![
                            policy,
                            tenant,
                            conversation_id,
                            a.file,
                            a.sha256,
                            o.map(|o| &o.key),
                            o.map(|o| o.size),
                            o.map(|o| &o.sha256),
                            run.0
                        ])?;
                    }
                    chain.append(&tx, audit)?;
                }
                ItemOutcome::Failed { subject, error } => {
                    tx.prepare_cached(
                        "INSERT INTO run_items (run, subject, outcome, error, at) VALUES (?, ?, 'failed', ?, ?)",
                    )?
                    .execute(params![run.0, subject, error, now])?;
                }
            }
        }
        Ok(())
    };
    write().map_err(|e| cat.err(e))?;
    tx.commit().map_err(|e| cat.err(e))
}

pub(super) fn run_counters(cat: &SqliteCatalog, run: RunId) -> Result<Counters> {
    cat.with_reader(|conn| {
        conn.query_row(RUN_COUNTERS, [run.0], |row| {
            Ok(rows::run_counters(&Columns { row, cat }))
        })
        .map_err(|e| cat.err(e))?
    })
}

pub(super) fn finish_run(
    cat: &SqliteCatalog,
    run: RunId,
    status: RunStatus,
    c: &Counters,
    manifest_key: Option<&str>,
    error_summary: Option<&str>,
) -> Result<()> {
    let conn = cat.writer.lock().expect("catalog writer lock");
    conn.execute(
        sql::FINISH_RUN.sqlite,
        params![
            status.as_str(),
            (status != RunStatus::Running).then(|| ts(Utc::now())),
            c.selected,
            c.exported,
            c.flagged,
            c.failed,
            c.objects,
            c.bytes,
            c.index_errors,
            manifest_key,
            error_summary,
            c.deleted,
            run.0
        ],
    )
    .map(drop)
    .map_err(|e| cat.err(e))
}

pub(super) fn run_objects(
    cat: &SqliteCatalog,
    run: RunId,
    each: &mut dyn FnMut(ObjectRecord) -> std::io::Result<()>,
) -> Result<std::io::Result<()>> {
    cat.with_reader(|conn| {
        let mut stmt = conn
            .prepare_cached(sql::RUN_OBJECTS.sqlite)
            .map_err(|e| cat.err(e))?;
        let mut found = stmt.query([run.0]).map_err(|e| cat.err(e))?;
        while let Some(row) = found.next().map_err(|e| cat.err(e))? {
            let obj = rows::object(&Columns { row, cat })?;
            if let Err(e) = each(obj) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    })
}

pub(super) fn prune_runs(cat: &SqliteCatalog, policy: &str, before: DateTime<Utc>) -> Result<u64> {
    let conn = cat.writer.lock().expect("catalog writer lock");
    conn.execute(sql::PRUNE_RUNS.sqlite, params![policy, ts(before)])
        .map(|n| n as u64)
        .map_err(|e| cat.err(e))
}

pub(super) fn job_runs(
    cat: &SqliteCatalog,
    policy: Option<&str>,
    limit: usize,
) -> Result<Vec<JobRun>> {
    let limit = limit as i64;
    match policy {
        Some(p) => query_runs(cat, sql::JOB_RUNS_OF_POLICY, params![p, limit]),
        None => query_runs(cat, sql::JOB_RUNS, params![limit]),
    }
}

pub(super) fn job_runs_page(cat: &SqliteCatalog, page: &RunPage) -> Result<Vec<JobRun>> {
    let before = page.before.map_or(i64::MAX, |r| r.0);
    let limit = page.limit as i64;
    match (&page.policy, page.status.map(RunStatus::as_str)) {
        (None, None) => query_runs(cat, sql::JOB_RUNS_PAGE, params![before, limit]),
        (Some(p), None) => query_runs(cat, sql::JOB_RUNS_PAGE_OF_POLICY, params![before, limit, p]),
        (None, Some(s)) => query_runs(cat, sql::JOB_RUNS_PAGE_OF_STATUS, params![before, limit, s]),
        (Some(p), Some(s)) => query_runs(
            cat,
            sql::JOB_RUNS_PAGE_OF_BOTH,
            params![before, limit, p, s],
        ),
    }
}

pub(super) fn set_run_log(cat: &SqliteCatalog, run: RunId, path: &str) -> Result<()> {
    let conn = cat.writer.lock().expect("catalog writer lock");
    conn.execute(sql::SET_RUN_LOG.sqlite, params![path, run.0])
        .map(drop)
        .map_err(|e| cat.err(e))
}

pub(super) fn set_run_notification(cat: &SqliteCatalog, run: RunId, text: &str) -> Result<()> {
    let conn = cat.writer.lock().expect("catalog writer lock");
    conn.execute(sql::SET_RUN_NOTIFICATION.sqlite, params![text, run.0])
        .map(drop)
        .map_err(|e| cat.err(e))
}

pub(super) fn set_run_held_back(cat: &SqliteCatalog, run: RunId, text: &str) -> Result<()> {
    let conn = cat.writer.lock().expect("catalog writer lock");
    conn.execute(sql::SET_RUN_HELD_BACK.sqlite, params![text, run.0])
        .map(drop)
        .map_err(|e| cat.err(e))
}

pub(super) fn job_run(cat: &SqliteCatalog, run: RunId) -> Result<Option<JobRun>> {
    Ok(query_runs(cat, sql::JOB_RUN, [run.0])?.pop())
}

pub(super) fn failed_items(
    cat: &SqliteCatalog,
    run: RunId,
    limit: usize,
) -> Result<Vec<FailedItem>> {
    cat.with_reader(|conn| {
        cat.rows(conn, FAILED_ITEMS, params![run.0, limit as i64], |r| {
            rows::failed_item(r)
        })
    })
}

fn query_runs(cat: &SqliteCatalog, sql: Sql, params: impl rusqlite::Params) -> Result<Vec<JobRun>> {
    cat.with_reader(|conn| cat.rows(conn, sql.sqlite, params, |r| rows::job_run(r)))
}

/// A run's counters. A subject counts as failed only if the run never exported it; that
/// probe is one lookup in `run_items_subject` per failed item.
pub(super) const RUN_COUNTERS: &str = "SELECT \
       (SELECT COUNT(*) FROM run_items WHERE run = ?1 AND outcome = 'exported'), \
       (SELECT COUNT(DISTINCT f.subject) FROM run_items f WHERE f.run = ?1 AND f.outcome = 'failed' \
          AND NOT EXISTS (SELECT 1 FROM run_items x WHERE x.run = ?1 AND x.outcome = 'exported' \
                          AND x.subject = f.subject)), \
       (SELECT COUNT(*) FROM run_objects WHERE run = ?1), \
       (SELECT COALESCE(SUM(size), 0) FROM run_objects WHERE run = ?1), \
       (SELECT COUNT(*) FROM audit_events WHERE run = ?1 AND kind = 'artifact_deleted')";

/// Records a conversation as handled by a policy at its record version (incremental state).
pub(super) const REMEMBER: &str = "INSERT OR REPLACE INTO export_state \
     (policy, tenant, conversation_id, run, at, json_mtime_ns, json_size) VALUES (?, ?, ?, ?, ?, ?, ?)";

/// The failed items of a run whose subject it never exported, oldest first.
pub(super) const FAILED_ITEMS: &str = "SELECT subject, error, at FROM run_items f WHERE f.run = ?1 AND f.outcome = 'failed' \
     AND NOT EXISTS (SELECT 1 FROM run_items x WHERE x.run = ?1 AND x.outcome = 'exported' \
                     AND x.subject = f.subject) \
     ORDER BY f.rowid LIMIT ?2";
