//! Work units: a run shared by several nodes, split into ranges of rowids that nodes claim
//! under a lease (`FOR UPDATE SKIP LOCKED`), redo when a lease runs out, and finish one by one.

use std::time::Duration;

use chrono::Utc;

use super::{Fallible, PostgresCatalog, int, micros, sql_params};
use crate::catalog::{Counters, Exclude, Mode, Result, RunId, sql};
use crate::filter::{Dialect, Filter, SqlValue};

impl crate::catalog::units::WorkUnits for PostgresCatalog {
    fn join_or_split(
        &self,
        policy: &str,
        mode: Mode,
        target: &str,
        filter: &Filter,
        exclude: &Exclude,
        unit_size: usize,
    ) -> Result<(RunId, bool)> {
        let key = self.lock_key("cluster-run", policy);
        let (boundaries_sql, mut params) = sql::selection(
            Dialect::Postgres,
            "SELECT c.pk FROM conversations c WHERE c.pk > $1",
            filter,
            exclude,
            0,
            None,
        );
        params.push(SqlValue::Int(unit_size.max(1) as i64));
        let split_sql = format!(
            "SELECT pk, n, total FROM (SELECT c.pk, row_number() OVER (ORDER BY c.pk) AS n, \
             count(*) OVER () AS total FROM ({boundaries_sql}) c) t \
             WHERE n % ${} = 0 OR n = total ORDER BY pk",
            params.len()
        );
        let now = micros(Utc::now());
        self.transaction(|s| {
            s.execute("SELECT pg_advisory_xact_lock($1)", &[&key])?;
            if let Some(row) = s.query_opt(
                "SELECT id FROM job_runs j WHERE policy = $1 AND status = 'running' \
                 AND EXISTS (SELECT 1 FROM work_units w WHERE w.run = j.id) ORDER BY id DESC LIMIT 1",
                &[&policy],
            )? {
                return Ok((RunId(row.try_get(0)?), false));
            }
            let rows = s.query(&split_sql, &sql_params(&params))?;
            let mut lo = Vec::with_capacity(rows.len());
            let mut hi = Vec::with_capacity(rows.len());
            let mut last = 0i64;
            let mut total = 0i64;
            for r in &rows {
                let pk: i64 = r.try_get(0)?;
                total = r.try_get(2)?;
                lo.push(last);
                hi.push(pk);
                last = pk;
            }
            let run: i64 = s
                .query_one(
                    "INSERT INTO job_runs (policy, mode, target, status, started_at, selected) \
                     VALUES ($1, $2, $3, 'running', $4, $5) RETURNING id",
                    &[&policy, &mode.as_str(), &target, &now, &total],
                )?
                .try_get(0)?;
            if lo.is_empty() {
                // Nothing selected: one empty unit, so the run is a cluster run others can
                // join and the first node ends it.
                lo.push(0);
                hi.push(0);
            }
            s.execute(
                "INSERT INTO work_units (run, lo, hi) SELECT $1, u.lo, u.hi \
                 FROM unnest($2::int8[], $3::int8[]) AS u(lo, hi)",
                &[&run, &lo, &hi],
            )?;
            Ok((RunId(run), true))
        })
    }

    fn claim_unit(
        &self,
        run: RunId,
        node: &str,
        lease: Duration,
    ) -> Result<Option<crate::catalog::units::Unit>> {
        let ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self.transaction(|s| {
            let row = s.query_opt(
                "UPDATE work_units SET state = 'claimed', node = $2, \
                 lease_until = now() + $3::int8 * interval '1 millisecond', claims = claims + 1 \
                 WHERE id = (SELECT id FROM work_units WHERE run = $1 AND (state = 'pending' \
                   OR (state = 'claimed' AND lease_until < now())) ORDER BY id LIMIT 1 \
                   FOR UPDATE SKIP LOCKED) \
                 RETURNING id, lo, hi, claims",
                &[&run.0, &node, &ms],
            )?;
            row.map(|r| {
                Ok(crate::catalog::units::Unit {
                    id: r.try_get(0)?,
                    lo: r.try_get(1)?,
                    hi: r.try_get(2)?,
                    reclaimed: r.try_get::<_, i64>(3)? > 1,
                })
            })
            .transpose()
        })
    }

    fn renew_lease(&self, unit: i64, node: &str, lease: Duration) -> Result<bool> {
        let ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self.transaction(|s| {
            Ok(s.execute(
                "UPDATE work_units SET lease_until = now() + $3::int8 * interval '1 millisecond' \
                 WHERE id = $1 AND node = $2 AND state = 'claimed'",
                &[&unit, &node, &ms],
            )? == 1)
        })
    }

    fn complete_unit(&self, unit: i64, node: &str, done: &Counters) -> Result<bool> {
        let now = micros(Utc::now());
        self.transaction(|s| {
            Ok(s.execute(
                "UPDATE work_units SET state = 'done', exported = $3, failed = $4, objects = $5, \
                 bytes = $6, finished_at = $7 WHERE id = $1 AND node = $2 AND state = 'claimed'",
                &[
                    &unit,
                    &node,
                    &int(done.exported)?,
                    &int(done.failed)?,
                    &int(done.objects)?,
                    &int(done.bytes)?,
                    &now,
                ],
            )? == 1)
        })
    }

    fn open_units(&self, run: RunId) -> Result<u64> {
        self.autocommit(|s| {
            let n: i64 = s
                .query_one(
                    "SELECT count(*) FROM work_units WHERE run = $1 AND state <> 'done'",
                    &[&run.0],
                )?
                .try_get(0)?;
            self.unsigned("work_units.count", n)
        })
    }

    fn selected(&self, run: RunId) -> Result<u64> {
        self.autocommit(|s| {
            let n: i64 = s
                .query_one("SELECT selected FROM job_runs WHERE id = $1", &[&run.0])?
                .try_get(0)?;
            self.unsigned("job_runs.selected", n)
        })
    }

    fn take_finish(&self, run: RunId, node: &str, lease: Duration) -> Result<bool> {
        let ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self.transaction(|s| {
            Ok(s.execute(
                "UPDATE job_runs SET finisher = $2, finisher_since = now() WHERE id = $1 \
                 AND status = 'running' AND (finisher IS NULL OR finisher = $2 \
                 OR finisher_since < now() - $3::int8 * interval '1 millisecond')",
                &[&run.0, &node, &ms],
            )? == 1)
        })
    }

    fn node_counters(&self, run: RunId) -> Result<Vec<crate::catalog::units::NodeCounters>> {
        self.autocommit(|s| {
            s.query(
                "SELECT node, count(*), count(*) FILTER (WHERE claims > 1), sum(exported)::int8, \
                 sum(failed)::int8, sum(objects)::int8, sum(bytes)::int8 FROM work_units WHERE run = $1 AND state = 'done' \
                 GROUP BY node ORDER BY node",
                &[&run.0],
            )?
            .into_iter()
            .map(|r| {
                let num = |i: usize| -> Fallible<u64> {
                    self.unsigned("work_units", r.try_get::<_, i64>(i)?)
                };
                Ok(crate::catalog::units::NodeCounters {
                    node: r.try_get::<_, Option<String>>(0)?.unwrap_or_default(),
                    units: num(1)?,
                    reclaimed: num(2)?,
                    exported: num(3)?,
                    failed: num(4)?,
                    objects: num(5)?,
                    bytes: num(6)?,
                })
            })
            .collect()
        })
    }
}
