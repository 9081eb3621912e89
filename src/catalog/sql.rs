//! The SQL both catalogs run where they agree, written once. A statement is written with
//! PostgreSQL's `$N` placeholders; SQLite reads the same numbers as `?N`, a text made from it
//! when the crate compiles. What the backends do differently stays in each backend: SQLite
//! writes a batch row by row, PostgreSQL with `unnest` over arrays, and every PostgreSQL probe
//! of a table a run grows ends in `OFFSET 0` (see `postgres/mod.rs`).

use crate::filter::{Dialect, Filter, SqlValue};

use super::Exclude;
use super::holds::Standing;
use super::lifecycle::QuarantineSelect;

/// One statement, in each backend's placeholder syntax.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sql {
    #[cfg(feature = "postgres")]
    pub postgres: &'static str,
    pub sqlite: &'static str,
}

/// `postgres` with each `$N` placeholder written `?N`; the length is unchanged, so the text is
/// made while the crate compiles. A `?` in `postgres` fails the build: in a shared statement it
/// could only be a placeholder of the wrong syntax.
const fn numbered_question_marks<const N: usize>(postgres: &str) -> [u8; N] {
    let bytes = postgres.as_bytes();
    assert!(bytes.len() == N);
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        assert!(
            bytes[i] != b'?',
            "a shared statement takes `$N` placeholders"
        );
        out[i] = if bytes[i] == b'$' && i + 1 < N && bytes[i + 1].is_ascii_digit() {
            b'?'
        } else {
            bytes[i]
        };
        i += 1;
    }
    out
}

/// A [`Sql`] from its PostgreSQL text.
macro_rules! shared {
    ($postgres:expr) => {{
        const POSTGRES: &str = $postgres;
        const SQLITE: &[u8] = &numbered_question_marks::<{ POSTGRES.len() }>(POSTGRES);
        Sql {
            #[cfg(feature = "postgres")]
            postgres: POSTGRES,
            sqlite: match std::str::from_utf8(SQLITE) {
                Ok(text) => text,
                Err(_) => panic!("placeholders are ASCII"),
            },
        }
    }};
}

// The index.

pub(super) const FINGERPRINTS_UNDER: Sql = shared!(
    "SELECT rel_dir, json_mtime_ns, json_size FROM conversations \
     WHERE rel_dir >= $1 AND rel_dir < $2"
);

pub(super) const INDEXED_DAYS: Sql = shared!("SELECT DISTINCT day FROM conversations ORDER BY day");

pub(super) const CONVERSATION_COUNT: Sql = shared!("SELECT count(*) FROM conversations");

// Selections: each head ends in `c.pk > $1` (the rowid a page starts after), which
// [`selection`] extends with the filter and the exclusion.

/// How many conversations a selection yields.
pub(super) const COUNT_SELECTION: Sql =
    shared!("SELECT count(*) FROM conversations c WHERE c.pk > $1");

/// A page of conversations, read by [`super::rows::conversation`].
pub(super) const SELECT_CONVERSATION: Sql = shared!(
    "SELECT c.pk, c.rel_dir, c.tenant, c.id, c.kind, c.source_platform, \
     c.direction, c.start_text, c.end_text, c.confidential, c.cdr_only, c.imported, c.legal_hold, \
     c.channel, c.json_mtime_ns, c.json_size FROM conversations c WHERE c.pk > $1"
);

/// A page of a confidential-flag run: pk, tenant, id, the flag, and the record version.
pub(super) const FLAG_PAGE: Sql = shared!(
    "SELECT c.pk, c.tenant, c.id, c.confidential, c.json_mtime_ns, c.json_size \
     FROM conversations c WHERE c.pk > $1"
);

// Job history; job runs are read by [`super::rows::job_run`].

pub(super) const INTERRUPTED_RUN: Sql = shared!(
    "SELECT * FROM job_runs WHERE policy = $1 AND status = 'running' ORDER BY id DESC LIMIT 1"
);

pub(super) const JOB_RUN: Sql = shared!("SELECT * FROM job_runs WHERE id = $1");

pub(super) const JOB_RUNS: Sql = shared!("SELECT * FROM job_runs ORDER BY id DESC LIMIT $1");

pub(super) const JOB_RUNS_OF_POLICY: Sql =
    shared!("SELECT * FROM job_runs WHERE policy = $1 ORDER BY id DESC LIMIT $2");

/// Keyset pages of the job history, newest first: runs before `$1` (a run id), `$2` of them,
/// of policy `$3` and outcome `$3` or `$4` as the filter has them.
pub(super) const JOB_RUNS_PAGE: Sql =
    shared!("SELECT * FROM job_runs WHERE id < $1 ORDER BY id DESC LIMIT $2");

pub(super) const JOB_RUNS_PAGE_OF_POLICY: Sql =
    shared!("SELECT * FROM job_runs WHERE policy = $3 AND id < $1 ORDER BY id DESC LIMIT $2");

pub(super) const JOB_RUNS_PAGE_OF_STATUS: Sql =
    shared!("SELECT * FROM job_runs WHERE status = $3 AND id < $1 ORDER BY id DESC LIMIT $2");

pub(super) const JOB_RUNS_PAGE_OF_BOTH: Sql = shared!(
    "SELECT * FROM job_runs WHERE policy = $3 AND status = $4 AND id < $1 ORDER BY id DESC LIMIT $2"
);

pub(super) const RESUME_RUN: Sql =
    shared!("UPDATE job_runs SET resumed = resumed + 1 WHERE id = $1");

pub(super) const FINISH_RUN: Sql = shared!(
    "UPDATE job_runs SET status = $1, finished_at = $2, selected = $3, exported = $4, \
     flagged = $5, failed = $6, objects = $7, bytes = $8, index_errors = $9, \
     manifest_key = $10, error_summary = $11, deleted = $12 WHERE id = $13"
);

pub(super) const SET_RUN_LOG: Sql = shared!("UPDATE job_runs SET log_path = $1 WHERE id = $2");

pub(super) const SET_RUN_NOTIFICATION: Sql =
    shared!("UPDATE job_runs SET notification = $1 WHERE id = $2");

/// What a sweep held back for export before delete, a line per lifecycle policy.
pub(super) const SET_RUN_HELD_BACK: Sql =
    shared!("UPDATE job_runs SET held_back = $1 WHERE id = $2");

pub(super) const PRUNE_RUNS: Sql =
    shared!("DELETE FROM job_runs WHERE policy = $1 AND status = 'succeeded' AND finished_at < $2");

pub(super) const RUN_OBJECTS: Sql =
    shared!("SELECT key, size, sha256 FROM run_objects WHERE run = $1 ORDER BY key");

// The audit trail.

pub(super) const AUDIT_HEAD: Sql =
    shared!("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1");

/// The newest `trail_verified` event, through its partial index.
pub(super) const NEWEST_VERIFICATION: Sql = shared!(
    "SELECT seq, at, kind, actor, policy, run, tenant, conversation_id, details, prev_hash, hash, key_id \
     FROM audit_events WHERE kind = 'trail_verified' ORDER BY seq DESC LIMIT 1"
);

// Lifecycle policies and deletions.

pub(super) const POLICY_ACTIVE_VERSION: Sql =
    shared!("SELECT active_version FROM lifecycle_policies WHERE name = $1");

pub(super) const POLICY_SCOPE: Sql =
    shared!("SELECT artifact_type, audio_type FROM lifecycle_policies WHERE name = $1");

pub(super) const INSERT_VERSION: Sql = shared!(
    "INSERT INTO lifecycle_versions (policy, name, seq, action, days, published_at, published_by, \
     require_export) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
);

pub(super) const SET_ACTIVE_VERSION: Sql =
    shared!("UPDATE lifecycle_policies SET active_version = $1 WHERE name = $2");

pub(super) const SET_POLICY_STATE: Sql =
    shared!("UPDATE lifecycle_policies SET enabled = $1, active_version = $2 WHERE name = $3");

/// Every policy, by name, read by [`super::rows::lifecycle_policy`].
pub(super) const LIFECYCLE_POLICIES: Sql = shared!(
    "SELECT name, description, artifact_type, audio_type, enabled, active_version, created_at, \
     created_by FROM lifecycle_policies ORDER BY name"
);

/// Every version, by policy and publication, read by [`super::rows::lifecycle_version`].
pub(super) const LIFECYCLE_VERSIONS: Sql = shared!(
    "SELECT policy, name, action, days, published_at, published_by, require_export \
     FROM lifecycle_versions ORDER BY policy, seq"
);

pub(super) const POLICY_STATE: Sql =
    shared!("SELECT enabled, active_version FROM lifecycle_policies WHERE name = $1");

/// Changes waiting for approval and decided ones (`$1`: only pending ones), by id, read by
/// [`super::rows::lifecycle_change`].
pub(super) const LIFECYCLE_CHANGES: Sql = shared!(
    "SELECT id, policy, change, version, enabled_before, version_before, acknowledgments, \
     requested_by, requested_at, expires_at, state, decided_by, decided_at FROM lifecycle_changes \
     WHERE state = 'pending' OR NOT $1 ORDER BY id"
);

pub(super) const INSERT_CHANGE: Sql = shared!(
    "INSERT INTO lifecycle_changes (policy, change, version, enabled_before, version_before, \
     acknowledgments, requested_by, requested_at, expires_at, state) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending') RETURNING id"
);

pub(super) const DECIDE_CHANGE: Sql = shared!(
    "UPDATE lifecycle_changes SET state = $1, decided_by = $2, decided_at = $3 WHERE id = $4"
);

pub(super) const LIVE_ARTIFACT_COUNT: Sql = shared!(
    "SELECT (SELECT count(*) FROM artifacts) - (SELECT count(*) FROM artifact_deletions) \
     - (SELECT count(*) FROM quarantine)"
);

/// Intents a killed run left, read by [`super::rows::pending_delete`].
pub(super) const PENDING_DELETES: Sql = shared!(
    "SELECT d.conversation, d.ordinal, d.tenant, d.conversation_id, d.rel_dir, d.file, d.size, \
     d.policy, d.version, d.due, c.json_mtime_ns, c.json_size \
     FROM delete_intents d LEFT JOIN conversations c ON c.pk = d.conversation \
     ORDER BY d.conversation, d.ordinal"
);

// The quarantine window.

/// The quarantine entries `select` picks, in PostgreSQL's placeholders, with their parameters,
/// read by [`super::rows::quarantined`]: each with its conversation's record fingerprint and
/// legal_hold flag as indexed.
pub(super) fn quarantine_entries(select: &QuarantineSelect) -> (String, Vec<SqlValue>) {
    let (filter, params) = match select {
        QuarantineSelect::Pending => ("q.state <> 'quarantined'".to_owned(), Vec::new()),
        QuarantineSelect::Restoring => ("q.state = 'restoring'".to_owned(), Vec::new()),
        QuarantineSelect::Page { after, limit } => (
            format!(
                "q.state = 'quarantined' AND (q.conversation > $1 OR (q.conversation = $1 AND q.file > $2)) \
                 ORDER BY q.conversation, q.file LIMIT {limit}"
            ),
            vec![SqlValue::Int(after.0), SqlValue::Text(after.1.clone())],
        ),
        QuarantineSelect::Conversation { tenant, id } => (
            "q.state = 'quarantined' AND q.tenant = $1 AND q.conversation_id = $2".to_owned(),
            vec![SqlValue::Text(tenant.clone()), SqlValue::Text(id.clone())],
        ),
        QuarantineSelect::Run(run) => (
            "q.state = 'quarantined' AND q.run = $1".to_owned(),
            vec![SqlValue::Int(run.0)],
        ),
    };
    let order = if matches!(select, QuarantineSelect::Page { .. }) {
        ""
    } else {
        " ORDER BY q.conversation, q.file"
    };
    (
        format!(
            "SELECT q.conversation, q.ordinal, q.tenant, q.conversation_id, q.rel_dir, q.file, q.size, \
             q.policy, q.version, q.due_ms, c.json_mtime_ns, c.json_size, q.name, q.state, q.exempt, q.run, \
             q.quarantined_ms, c.legal_hold IS TRUE \
             FROM quarantine q LEFT JOIN conversations c ON c.pk = q.conversation WHERE {filter}{order}"
        ),
        params,
    )
}

/// What each policy version has in quarantine; `$1` is the purge cutoff in milliseconds.
pub(super) const QUARANTINE_COUNTS: Sql = shared!(
    "SELECT policy, version, count(*), CAST(coalesce(sum(size), 0) AS BIGINT), \
     CAST(coalesce(sum(CASE WHEN state = 'quarantined' AND quarantined_ms <= $1 THEN 1 ELSE 0 END), 0) AS BIGINT) \
     FROM quarantine GROUP BY policy, version ORDER BY policy, version"
);

// Legal holds.

/// Every matter, by name, read by [`super::rows::matter`].
pub(super) const MATTERS: Sql =
    shared!("SELECT name, description, created_at, created_by FROM matters ORDER BY name");

pub(super) const MATTER_EXISTS: Sql = shared!("SELECT 1 FROM matters WHERE name = $1");

pub(super) const INSERT_MATTER: Sql = shared!(
    "INSERT INTO matters (name, description, created_at, created_by) VALUES ($1, $2, $3, $4)"
);

/// Every hold, in the order placed, read by [`super::rows::hold`].
pub(super) const HOLDS: Sql = shared!(
    "SELECT id, matter, criteria, placed_at, placed_by, released_at, released_by \
     FROM legal_holds ORDER BY id"
);

/// The conversations of every explicit hold.
pub(super) const HOLD_CONVERSATIONS: Sql = shared!(
    "SELECT hold, tenant, conversation_id FROM hold_conversations \
     ORDER BY hold, tenant, conversation_id"
);

/// The matter and criteria of every active standing hold.
pub(super) const ACTIVE_STANDING: Sql = shared!(
    "SELECT matter, criteria FROM legal_holds WHERE released_at IS NULL AND criteria IS NOT NULL \
     ORDER BY id"
);

/// The matters with an active hold, by name.
pub(super) const ACTIVE_MATTERS: Sql =
    shared!("SELECT DISTINCT matter FROM legal_holds WHERE released_at IS NULL ORDER BY matter");

pub(super) const INSERT_HOLD: Sql = shared!(
    "INSERT INTO legal_holds (matter, criteria, placed_at, placed_by) VALUES ($1, $2, $3, $4) \
     RETURNING id"
);

pub(super) const RELEASE_HOLDS: Sql = shared!(
    "UPDATE legal_holds SET released_at = $1, released_by = $2 \
     WHERE matter = $3 AND released_at IS NULL"
);

/// The active holds of a matter, about to be released, with their criteria (NULL for an
/// explicit hold).
pub(super) const ACTIVE_HOLDS_OF: Sql = shared!(
    "SELECT id, criteria FROM legal_holds WHERE matter = $1 AND released_at IS NULL ORDER BY id"
);

/// Queues a legal-hold sync (docs/operations.md, "WORM exports") for every conversation hold
/// `hold` covers (its list; with `standing`, the conversations its criteria match) that has an
/// object key recorded on one of `targets` (not empty): an object whose legal-hold status may
/// have to change. One already queued gets a new generation. Returns the statement and its
/// parameters.
pub(super) fn queue_hold_sync(
    dialect: Dialect,
    hold: i64,
    standing: Option<&Filter>,
    targets: &[String],
) -> (String, Vec<SqlValue>) {
    let mut params = Vec::new();
    let covered = match standing {
        None => {
            params.push(SqlValue::Int(hold));
            format!(
                "c.pk IN (SELECT x.pk FROM hold_conversations hc JOIN conversations x \
                 ON x.tenant = hc.tenant AND x.id = hc.conversation_id WHERE hc.hold = {})",
                placeholder(dialect, 1)
            )
        }
        Some(filter) => {
            let clause = filter.to_set_sql(dialect, 0);
            params.extend(clause.params);
            format!("coalesce(({}), FALSE)", clause.sql)
        }
    };
    let targets: Vec<String> = targets
        .iter()
        .map(|t| {
            params.push(SqlValue::Text(t.clone()));
            placeholder(dialect, params.len())
        })
        .collect();
    let targets = targets.join(", ");
    (
        format!(
            "INSERT INTO hold_syncs (tenant, conversation_id) SELECT c.tenant, c.id \
             FROM conversations c WHERE {covered} AND EXISTS (SELECT 1 FROM object_keys o \
             WHERE o.tenant = c.tenant AND o.conversation_id = c.id AND o.target IN ({targets})) \
             ON CONFLICT (tenant, conversation_id) DO UPDATE SET generation = hold_syncs.generation + 1"
        ),
        params,
    )
}

/// A page of queued legal-hold syncs after (`$1`, `$2`) in (tenant, id) order, with the
/// conversation's pk and record flag (NULL when it has left the catalog).
pub(super) const HOLD_SYNCS: Sql = shared!(
    "SELECT s.tenant, s.conversation_id, s.generation, c.pk, coalesce(c.legal_hold, FALSE) \
     FROM hold_syncs s \
     LEFT JOIN conversations c ON c.tenant = s.tenant AND c.id = s.conversation_id \
     WHERE s.tenant > $1 OR (s.tenant = $1 AND s.conversation_id > $2) \
     ORDER BY s.tenant, s.conversation_id LIMIT $3"
);

/// The objects recorded for a conversation, on every target.
pub(super) const CONVERSATION_OBJECTS: Sql = shared!(
    "SELECT target, key FROM object_keys WHERE tenant = $1 AND conversation_id = $2 \
     ORDER BY target, key"
);

/// Takes a sync off the queue, unless a hold change queued it again since it was read.
pub(super) const FINISH_HOLD_SYNC: Sql = shared!(
    "DELETE FROM hold_syncs WHERE tenant = $1 AND conversation_id = $2 AND generation = $3"
);

/// Whether an active hold of `matter` (of any matter when None) covers conversation `c`: an
/// explicit hold naming it, or the criteria of a standing hold in `standing` matching it. The
/// explicit holds are one uncorrelated subquery (a set made once per statement); each standing
/// hold is its filter's clause. Never NULL, so `NOT` of it is what is not held. Its parameters
/// are pushed to `params` and numbered after `before` others; with numbered placeholders
/// (PostgreSQL's, or SQLite's through [`numbered`]) the clause can appear more than once in a
/// statement.
pub(super) fn held(
    dialect: Dialect,
    matter: Option<&str>,
    standing: &[Standing],
    before: usize,
    params: &mut Vec<SqlValue>,
) -> String {
    let of_matter = match matter {
        Some(m) => {
            params.push(SqlValue::Text(m.to_owned()));
            format!(
                " AND h.matter = {}",
                placeholder(dialect, before + params.len())
            )
        }
        None => String::new(),
    };
    let mut parts = vec![format!(
        "c.pk IN (SELECT x.pk FROM hold_conversations hc JOIN legal_holds h ON h.id = hc.hold \
         JOIN conversations x ON x.tenant = hc.tenant AND x.id = hc.conversation_id \
         WHERE h.released_at IS NULL{of_matter})"
    )];
    for s in standing
        .iter()
        .filter(|s| matter.is_none_or(|m| s.matter == m))
    {
        let clause = s.filter.to_sql(dialect, before + params.len());
        params.extend(clause.params);
        parts.push(format!("coalesce(({}), FALSE)", clause.sql));
    }
    format!("({})", parts.join(" OR "))
}

/// Whether export policy `policy` has exported artifact `a` of conversation `c`
/// (docs/operations.md, "Export before delete"): its object recorded with the artifact's
/// current SHA-256 (a zip's entry counts) by a run that is not still running (a pruned run had
/// succeeded). TRUE when no export is required. One probe of `export_artifacts`' key; its
/// parameter is pushed to `params` and numbered after `before` others, in PostgreSQL's
/// placeholders.
pub(super) fn exported(
    dialect: Dialect,
    policy: Option<&str>,
    before: usize,
    params: &mut Vec<SqlValue>,
) -> String {
    let Some(policy) = policy else {
        return "TRUE".into();
    };
    params.push(SqlValue::Text(policy.to_owned()));
    let fence = match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => " OFFSET 0",
    };
    format!(
        "EXISTS (SELECT 1 FROM export_artifacts e WHERE e.policy = ${} AND e.tenant = c.tenant \
         AND e.conversation_id = c.id AND e.file = a.file AND e.sha256 = a.sha256 \
         AND e.key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM job_runs r WHERE r.id = e.run \
         AND r.status = 'running'){fence})",
        before + params.len()
    )
}

/// The conversations that the active holds of `matters` cover and that ended by `$1`, as a
/// set made once per statement (docs/performance.md, "Lifecycle"): the common table expression
/// `held(pk, m0, m1, …)` (after `covered(pk, m)`, a row per hold and conversation it covers),
/// one row per held conversation with a 0/1 column per matter, in
/// `matters`' order. Each matter's explicit holds and each standing hold's criteria select
/// their conversations once, driven by the criteria's indexes (a standing hold by users or
/// extensions reads only those participants), instead of being evaluated for every row the
/// statement reads; [`due_summary`] reads the set once, row by row. Its parameters are pushed
/// to `params`, in PostgreSQL's numbered placeholders after `before` others. None without
/// matters.
pub(super) fn held_set(
    matters: &[String],
    standing: &[Standing],
    before: usize,
    params: &mut Vec<SqlValue>,
) -> Option<String> {
    if matters.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    for (i, m) in matters.iter().enumerate() {
        params.push(SqlValue::Text(m.clone()));
        parts.push(format!(
            "SELECT c.pk, {i} FROM legal_holds h JOIN hold_conversations hc ON hc.hold = h.id \
             JOIN conversations c ON c.tenant = hc.tenant AND c.id = hc.conversation_id \
             WHERE h.released_at IS NULL AND h.matter = ${} AND c.start_ms + c.duration_ms <= $1",
            before + params.len()
        ));
        for s in standing.iter().filter(|s| &s.matter == m) {
            let clause = s
                .filter
                .to_set_sql(Dialect::Postgres, before + params.len());
            params.extend(clause.params);
            parts.push(format!(
                "SELECT c.pk, {i} FROM conversations c \
                 WHERE ({}) AND c.start_ms + c.duration_ms <= $1",
                clause.sql
            ));
        }
    }
    let columns: String = (0..matters.len())
        .map(|i| format!(", max(CASE WHEN m = {i} THEN 1 ELSE 0 END)"))
        .collect();
    let names: String = (0..matters.len()).map(|i| format!(", m{i}")).collect();
    Some(format!(
        "covered(pk, m) AS ({}), held(pk{names}) AS MATERIALIZED (SELECT pk{columns} \
         FROM covered GROUP BY pk)",
        parts.join(" UNION ALL ")
    ))
}

/// The due summary of one lifecycle policy, one row (docs/performance.md, "`plan lifecycle`
/// under ten standing holds"): the due artifacts that may go and their bytes, those a hold
/// covers (the record's flag or a matter's), those held back for their export, then one count
/// per matter of `held_set` (its text from [`held_set`], and how many matters it has). `live`
/// is the clause of the due artifacts `a` of conversation `c` of the query's type (`$2`, `$3`)
/// that are still there, `exported` whether one was exported (both of `dialect`); `$1` is the
/// cutoff.
///
/// Two passes, and no lookup of each due artifact in the held set: the scan counts every due
/// artifact by its record's flag and its export, and the artifacts of the held conversations,
/// read from the set, are counted by the same rules and taken off (the held set keeps only
/// conversations that ended by the cutoff). Both passes read artifacts through the index on
/// their type (`artifacts_kind`): the scan only the artifacts of the policy's type, the
/// held pass one seek per held conversation. Each pass ends in a fence (`LIMIT -1`, `OFFSET
/// 0`) so its columns are computed once per row, not copied into every sum that reads them.
pub(super) fn due_summary(
    dialect: Dialect,
    live: &str,
    exported: &str,
    held_set: Option<(&str, usize)>,
) -> String {
    let (fence, flag, join) = match dialect {
        Dialect::Sqlite => ("LIMIT -1", "c.legal_hold = 1", "CROSS JOIN"),
        Dialect::Postgres => ("OFFSET 0", "c.legal_hold", "JOIN"),
    };
    let sum = |when: &str, value: &str| {
        format!("CAST(coalesce(sum(CASE WHEN {when} THEN {value} ELSE 0 END), 0) AS BIGINT)")
    };
    // Over rows (lh: the record's flag, x: exported, size) of artifacts no flag holds: those
    // that may go, their bytes, and those held back for their export.
    let counts = format!(
        "{} AS n, {} AS b, {} AS nx",
        sum("NOT lh AND x", "1"),
        sum("NOT lh AND x", "size"),
        sum("NOT lh AND NOT x", "1")
    );
    let rows = format!("{flag} AS lh, {exported} AS x, a.size AS size");
    let scan = format!(
        "(SELECT {counts}, {} AS lh FROM (SELECT {rows} FROM conversations c JOIN artifacts a \
         ON a.conversation = c.pk WHERE c.start_ms + c.duration_ms <= $1 AND {live} {fence}) due) t",
        sum("lh", "1")
    );
    let Some((set, matters)) = held_set else {
        return format!("SELECT t.n, t.b, t.lh, t.nx FROM {scan}");
    };
    let columns: String = (0..matters).map(|i| format!(", hd.m{i} AS m{i}")).collect();
    let per_matter: String = (0..matters)
        .map(|i| format!(", {} AS m{i}", sum(&format!("m{i} = 1"), "1")))
        .collect();
    let held: String = (0..matters).map(|i| format!(", h.m{i}")).collect();
    format!(
        "WITH {set} SELECT t.n - h.n, t.b - h.b, t.lh + h.n + h.nx, t.nx - h.nx{held} FROM {scan} \
         CROSS JOIN (SELECT {counts}{per_matter} FROM (SELECT {rows}{columns} FROM held hd \
         {join} conversations c ON c.pk = hd.pk {join} artifacts a ON a.conversation = c.pk \
         WHERE {live} {fence}) kept) h"
    )
}

/// A statement written with PostgreSQL's `$N` placeholders in SQLite's `?N`: every value is
/// bound, so each `$` in a statement's text is a placeholder's.
pub(super) fn numbered(postgres: &str) -> String {
    postgres.replace('$', "?")
}

/// `c.pk` is one of `pks`, bound as one text parameter.
fn pk_in(dialect: Dialect, pks: &[i64], params: &mut Vec<SqlValue>) -> String {
    let list: Vec<String> = pks.iter().map(ToString::to_string).collect();
    match dialect {
        Dialect::Sqlite => {
            params.push(SqlValue::Text(format!("[{}]", list.join(","))));
            "c.pk IN (SELECT value FROM json_each(?))".into()
        }
        Dialect::Postgres => {
            params.push(SqlValue::Text(format!("{{{}}}", list.join(","))));
            format!("c.pk = ANY(${}::text::int8[])", params.len())
        }
    }
}

/// (pk, matter) of each of `pks` an active hold covers, one row per hold: the explicit holds,
/// then each standing hold, in one statement.
pub(super) fn holding(
    dialect: Dialect,
    pks: &[i64],
    standing: &[Standing],
    params: &mut Vec<SqlValue>,
) -> String {
    let mut parts = vec![format!(
        "SELECT c.pk, h.matter FROM conversations c JOIN hold_conversations hc \
         ON hc.tenant = c.tenant AND hc.conversation_id = c.id JOIN legal_holds h ON h.id = hc.hold \
         WHERE h.released_at IS NULL AND {}",
        pk_in(dialect, pks, params)
    )];
    for s in standing {
        params.push(SqlValue::Text(s.matter.clone()));
        let matter = placeholder(dialect, params.len());
        let pks = pk_in(dialect, pks, params);
        let clause = s.filter.to_sql(dialect, params.len());
        params.extend(clause.params);
        parts.push(format!(
            "SELECT c.pk, CAST({matter} AS TEXT) FROM conversations c WHERE {pks} AND ({})",
            clause.sql
        ));
    }
    parts.join(" UNION ALL ")
}

/// How many conversations the active holds of `matter` cover, and how many of their artifacts
/// are not deleted: two statements with their parameters.
pub(super) fn matter_counts(
    dialect: Dialect,
    matter: &str,
    standing: &[Standing],
) -> [(String, Vec<SqlValue>); 2] {
    let fence = match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => " OFFSET 0",
    };
    let mut conversations = Vec::new();
    let held_c = held(dialect, Some(matter), standing, 0, &mut conversations);
    let mut artifacts = Vec::new();
    let held_a = held(dialect, Some(matter), standing, 0, &mut artifacts);
    [
        (
            format!("SELECT count(*) FROM conversations c WHERE {held_c}"),
            conversations,
        ),
        (
            format!(
                "SELECT count(*) FROM conversations c JOIN artifacts y ON y.conversation = c.pk \
                 WHERE {held_a} AND NOT EXISTS (SELECT 1 FROM artifact_deletions d \
                 WHERE d.conversation = y.conversation AND d.file = y.file{fence})"
            ),
            artifacts,
        ),
    ]
}

// Conversations as the service shows them (`super::conversations`).

/// One conversation by tenant and id, read by [`super::rows::conversation`].
pub(super) const CONVERSATION: Sql = shared!(
    "SELECT c.pk, c.rel_dir, c.tenant, c.id, c.kind, c.source_platform, \
     c.direction, c.start_text, c.end_text, c.confidential, c.cdr_only, c.imported, c.legal_hold, \
     c.channel, c.json_mtime_ns, c.json_size FROM conversations c WHERE c.tenant = $1 AND c.id = $2"
);

/// A conversation's participants, read by [`super::rows::participant`].
pub(super) const CONVERSATION_PARTICIPANTS: Sql = shared!(
    "SELECT conversation, user_name, extension, role FROM participants \
     WHERE conversation = $1 ORDER BY ordinal"
);

/// A conversation's artifacts, deleted ones included, read by [`super::rows::artifact`].
pub(super) const CONVERSATION_ARTIFACTS: Sql = shared!(
    "SELECT conversation, file, kind, audio_type, size, sha256, key_id FROM artifacts \
     WHERE conversation = $1 ORDER BY ordinal"
);

/// What lifecycle policies deleted of a conversation, read by [`super::rows::deletion`].
pub(super) const CONVERSATION_DELETIONS: Sql = shared!(
    "SELECT file, deleted_at, policy, version FROM artifact_deletions \
     WHERE conversation = $1 ORDER BY deleted_at, file"
);

/// A conversation's quarantine entries, read by [`super::rows::quarantine_entry`].
pub(super) const CONVERSATION_QUARANTINE: Sql = shared!(
    "SELECT file, policy, version, state, quarantined_ms FROM quarantine \
     WHERE conversation = $1 ORDER BY file"
);

/// What export policies wrote of a conversation, read by [`super::rows::export_entry`]: the
/// target is the exporting run's, or, once that run is pruned, the one target whose key claim
/// names the object.
pub(super) const CONVERSATION_EXPORTS: Sql = shared!(
    "SELECT e.policy, e.file, e.sha256, coalesce(r.target, (SELECT CASE WHEN \
     count(DISTINCT o.target) = 1 THEN min(o.target) END FROM object_keys o \
     WHERE o.tenant = e.tenant AND o.conversation_id = e.conversation_id AND o.key = e.key)), \
     e.key, e.size, e.out_sha256, e.run FROM export_artifacts e LEFT JOIN job_runs r ON r.id = e.run \
     WHERE e.tenant = $1 AND e.conversation_id = $2 ORDER BY e.policy, e.file"
);

/// The confidential-flag run that last set a conversation's flag, read by
/// [`super::rows::flag_origin`].
pub(super) const CONVERSATION_FLAG: Sql = shared!(
    "SELECT value, policy, run, at FROM confidential_flags WHERE tenant = $1 AND conversation_id = $2"
);

// Metrics (`super::totals`).

/// Every policy's totals by outcome, read by [`super::rows::run_totals`].
pub(super) const RUN_TOTALS: Sql = shared!(
    "SELECT policy, status, runs, duration_ms, exported, objects, bytes, failed, deleted, \
     last_finished_at FROM run_totals ORDER BY policy, status"
);

/// For each policy and outcome of `run_totals` and each bound, the runs that took no longer
/// (zero where none did), read by [`super::totals::RunMetrics::with_durations`].
pub(super) const RUN_DURATIONS: Sql = shared!(
    "SELECT t.policy, t.status, b.le_ms, coalesce(d.runs, 0) FROM run_totals t \
     CROSS JOIN run_duration_bounds b \
     LEFT JOIN run_duration_buckets d \
     ON d.policy = t.policy AND d.status = t.status AND d.le_ms = b.le_ms \
     ORDER BY t.policy, t.status, b.le_ms"
);

/// Runs going now, by policy (the partial index `job_runs_running`).
pub(super) const RUNNING_RUNS: Sql = shared!(
    "SELECT policy, count(*) FROM job_runs WHERE status = 'running' GROUP BY policy ORDER BY policy"
);

// The upload journal.

pub(super) const UPLOAD_ENDED: Sql =
    shared!("DELETE FROM open_uploads WHERE target = $1 AND upload_id = $2");

/// The `n`th placeholder (from 1) in `dialect`.
fn placeholder(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Sqlite => "?".into(),
        Dialect::Postgres => format!("${n}"),
    }
}

/// A selection over `conversations c`: `head` (ending in `c.pk > ` and the first placeholder,
/// bound to `after_rowid`)
/// with `filter`'s clause and `exclude`'s probe, and when `limit` is given, a page of it in
/// rowid order. PostgreSQL's probes end in `OFFSET 0`, which keeps each a per-row probe of its
/// index whatever the statistics say (see `postgres/mod.rs`).
pub(super) fn selection(
    dialect: Dialect,
    head: &str,
    filter: &Filter,
    exclude: &Exclude,
    after_rowid: i64,
    limit: Option<usize>,
) -> (String, Vec<SqlValue>) {
    let mut params = vec![SqlValue::Int(after_rowid)];
    let clause = filter.to_sql(dialect, params.len());
    params.extend(clause.params);
    let fence = match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => " OFFSET 0",
    };
    let exclude_sql = match exclude {
        Exclude::Nothing => String::new(),
        Exclude::ExportedBy(policy) => {
            params.push(SqlValue::Text(policy.clone()));
            format!(
                " AND NOT EXISTS (SELECT 1 FROM export_state s WHERE s.policy = {} \
                 AND s.tenant = c.tenant AND s.conversation_id = c.id \
                 AND s.json_mtime_ns = c.json_mtime_ns AND s.json_size = c.json_size{fence})",
                placeholder(dialect, params.len())
            )
        }
        Exclude::DoneIn(run) => {
            params.push(SqlValue::Int(run.0));
            format!(
                " AND NOT EXISTS (SELECT 1 FROM run_items r WHERE r.run = {} \
                 AND r.outcome = 'exported' AND r.tenant = c.tenant AND r.conversation_id = c.id{fence})",
                placeholder(dialect, params.len())
            )
        }
    };
    let mut sql = format!("{head} AND ({}){exclude_sql}", clause.sql);
    if let Some(limit) = limit {
        params.push(SqlValue::Int(limit as i64));
        sql.push_str(" ORDER BY c.pk LIMIT ");
        sql.push_str(&placeholder(dialect, params.len()));
    }
    (sql, params)
}

// Accounts of the web portal and JSON API, their tokens and sessions (`catalog/accounts.rs`).

pub(super) const INSERT_ACCOUNT: Sql = shared!(
    "INSERT INTO accounts (name, groups, password_hash, created_at) VALUES ($1, $2, $3, $4)"
);

pub(super) const ACCOUNT: Sql =
    shared!("SELECT name, groups, password_hash, created_at FROM accounts WHERE name = $1");

pub(super) const ACCOUNTS: Sql =
    shared!("SELECT name, groups, password_hash, created_at FROM accounts ORDER BY name");

pub(super) const REMOVE_ACCOUNT: Sql = shared!("DELETE FROM accounts WHERE name = $1");

pub(super) const REMOVE_ACCOUNT_TOKENS: Sql =
    shared!("DELETE FROM account_tokens WHERE account = $1");

pub(super) const REMOVE_ACCOUNT_SESSIONS: Sql =
    shared!("DELETE FROM web_sessions WHERE account = $1");

pub(super) const INSERT_TOKEN: Sql =
    shared!("INSERT INTO account_tokens (hash, account, created_at) VALUES ($1, $2, $3)");

pub(super) const TOKEN_ACCOUNT: Sql = shared!(
    "SELECT a.name, a.groups, a.password_hash, a.created_at FROM account_tokens t \
     JOIN accounts a ON a.name = t.account WHERE t.hash = $1"
);

pub(super) const INSERT_SESSION: Sql =
    shared!("INSERT INTO web_sessions (hash, account, csrf, expires_at) VALUES ($1, $2, $3, $4)");

pub(super) const EXPIRE_SESSIONS: Sql = shared!("DELETE FROM web_sessions WHERE expires_at < $1");

pub(super) const SESSION: Sql = shared!(
    "SELECT a.name, a.groups, a.password_hash, a.created_at, s.csrf, s.expires_at \
     FROM web_sessions s JOIN accounts a ON a.name = s.account \
     WHERE s.hash = $1 AND s.expires_at >= $2"
);

pub(super) const END_SESSION: Sql = shared!("DELETE FROM web_sessions WHERE hash = $1");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_reads_the_same_placeholder_numbers() {
        const S: Sql = shared!("SELECT $1, '$', $12 FROM t WHERE a = $2 -- €");
        assert_eq!(S.sqlite, "SELECT ?1, '$', ?12 FROM t WHERE a = ?2 -- €");
        #[cfg(feature = "postgres")]
        assert_eq!(S.postgres, "SELECT $1, '$', $12 FROM t WHERE a = $2 -- €");
    }

    #[test]
    fn selections_number_their_parameters_in_each_dialect() {
        let filter = Filter::all();
        let exclude = Exclude::ExportedBy("p".into());
        let (pg, params) = selection(
            Dialect::Postgres,
            "SELECT c.pk FROM conversations c WHERE c.pk > $1",
            &filter,
            &exclude,
            7,
            Some(512),
        );
        assert!(
            pg.contains("s.policy = $2") && pg.contains("OFFSET 0)"),
            "{pg}"
        );
        assert!(pg.ends_with(" ORDER BY c.pk LIMIT $3"), "{pg}");
        assert_eq!(
            params,
            [
                SqlValue::Int(7),
                SqlValue::Text("p".into()),
                SqlValue::Int(512)
            ]
        );
        let (lite, _) = selection(
            Dialect::Sqlite,
            COUNT_SELECTION.sqlite,
            &filter,
            &Exclude::DoneIn(super::super::RunId(3)),
            0,
            None,
        );
        assert!(
            lite.starts_with("SELECT count(*) FROM conversations c WHERE c.pk > ?1 AND (")
                && lite.contains("r.run = ? ")
                && !lite.contains("OFFSET")
                && !lite.contains("LIMIT"),
            "{lite}"
        );
    }
}
