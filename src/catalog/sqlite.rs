//! The embedded catalog: one SQLite file in WAL mode. One writer connection, a small pool of
//! reader connections (WAL lets them read while the writer commits), and migrations numbered by
//! `PRAGMA user_version`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::lifecycle::{
    DeleteOutcome, DueArtifact, DueQuery, LifecyclePolicy, LifecycleVersion, RetentionAction,
};
use super::uploads::{OpenUpload, UploadJournal};

use super::{
    AuditQuery, Catalog, CatalogError, ConfidentialPage, Counters, Exclude, ExportedArtifact,
    FailedItem, Fingerprint, IndexChange, ItemOutcome, JobRun, KeyClaim, Mode, ObjectRecord,
    PolicyLock, Result, RunId, RunStatus, Selected, deletion_event, duplicate_id, flag_event,
    other_enabled, policy_exists, rfc3339_micros as ts, unknown_policy, unstorable, version_exists,
};
use crate::audit::{
    AuditEvent, AuditHead, AuditKind, ChainKey, GENESIS, KeyError, KeySource, NewEvent,
};
use crate::filter::{Dialect, Filter, SqlValue};
use crate::repository::record::{
    Artifact, Conversation, Encryption, Flags, Participant, SCHEMA_VERSION,
};

/// Schema migrations; entry `i` moves `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE conversations (
    pk INTEGER PRIMARY KEY,
    rel_dir TEXT NOT NULL UNIQUE,
    day TEXT NOT NULL,
    json_mtime_ns INTEGER NOT NULL,
    json_size INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_platform TEXT NOT NULL,
    direction TEXT NOT NULL,
    start_text TEXT NOT NULL,
    end_text TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    confidential INTEGER NOT NULL,
    cdr_only INTEGER NOT NULL,
    imported INTEGER NOT NULL,
    legal_hold INTEGER NOT NULL,
    channel TEXT,
    UNIQUE (tenant, id)
);
CREATE INDEX conversations_start ON conversations (start_ms);
CREATE INDEX conversations_day ON conversations (day);
CREATE TABLE participants (
    conversation INTEGER NOT NULL REFERENCES conversations (pk) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    user_name TEXT,
    extension TEXT,
    role TEXT NOT NULL,
    PRIMARY KEY (conversation, ordinal)
) WITHOUT ROWID;
CREATE TABLE artifacts (
    conversation INTEGER NOT NULL REFERENCES conversations (pk) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    file TEXT NOT NULL,
    kind TEXT NOT NULL,
    audio_type TEXT,
    extension TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    key_id TEXT,
    PRIMARY KEY (conversation, ordinal)
) WITHOUT ROWID;
CREATE TABLE job_runs (
    id INTEGER PRIMARY KEY,
    policy TEXT NOT NULL,
    mode TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    resumed INTEGER NOT NULL DEFAULT 0,
    selected INTEGER NOT NULL DEFAULT 0,
    exported INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    objects INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    index_errors INTEGER NOT NULL DEFAULT 0,
    manifest_key TEXT,
    error_summary TEXT
);
CREATE INDEX job_runs_policy ON job_runs (policy, id);
CREATE TABLE run_items (
    run INTEGER NOT NULL REFERENCES job_runs (id) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    tenant TEXT,
    conversation_id TEXT,
    outcome TEXT NOT NULL,
    error TEXT,
    objects INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    at TEXT NOT NULL
);
CREATE INDEX run_items_run ON run_items (run, tenant, conversation_id);
CREATE TABLE run_objects (
    run INTEGER NOT NULL REFERENCES job_runs (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (run, key)
) WITHOUT ROWID;
CREATE TABLE export_state (
    policy TEXT NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    run INTEGER NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (policy, tenant, conversation_id)
) WITHOUT ROWID;
CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    policy TEXT,
    run INTEGER,
    tenant TEXT,
    conversation_id TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_events_run ON audit_events (run);
CREATE INDEX audit_events_conversation ON audit_events (conversation_id);
"#,
    r#"
CREATE TABLE open_uploads (
    target TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    key TEXT NOT NULL,
    started_at TEXT NOT NULL,
    PRIMARY KEY (target, upload_id)
) WITHOUT ROWID;
"#,
    r#"
CREATE INDEX conversations_end ON conversations (start_ms + duration_ms);
CREATE TABLE lifecycle_policies (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    artifact_type TEXT NOT NULL,
    audio_type TEXT,
    enabled INTEGER NOT NULL DEFAULT 0,
    active_version TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE lifecycle_versions (
    policy TEXT NOT NULL REFERENCES lifecycle_policies (name),
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    action TEXT NOT NULL,
    days INTEGER,
    published_at TEXT NOT NULL,
    published_by TEXT NOT NULL,
    PRIMARY KEY (policy, name)
) WITHOUT ROWID;
CREATE TABLE artifact_deletions (
    conversation INTEGER NOT NULL REFERENCES conversations (pk) ON DELETE CASCADE,
    file TEXT NOT NULL,
    deleted_at TEXT NOT NULL,
    policy TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (conversation, file)
) WITHOUT ROWID;
CREATE TABLE delete_intents (
    conversation INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    rel_dir TEXT NOT NULL,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    policy TEXT NOT NULL,
    version TEXT NOT NULL,
    due TEXT NOT NULL,
    PRIMARY KEY (conversation, ordinal)
) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE job_runs ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0;
ALTER TABLE job_runs ADD COLUMN log_path TEXT;
ALTER TABLE job_runs ADD COLUMN notification TEXT;
CREATE TABLE confidential_flags (
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    value INTEGER NOT NULL,
    policy TEXT NOT NULL,
    run INTEGER NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (tenant, conversation_id)
) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE open_uploads ADD COLUMN run INTEGER;
"#,
    r#"
ALTER TABLE job_runs ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
CREATE INDEX audit_events_deletions ON audit_events (run) WHERE kind = 'artifact_deleted';
"#,
    // A run's failed subjects are those it never exported: without this index each failed
    // item's probe for an export of the same subject scanned all of the run's items.
    r#"
CREATE INDEX run_items_subject ON run_items (run, subject, outcome);
"#,
    // Incremental state per record version and per artifact (a transcript added to an exported
    // conversation is exported by the next run), and object keys claimed before they are
    // written (no object replaces another's). Conversations exported before count the record
    // version and the artifacts they have now as exported.
    r#"
ALTER TABLE export_state ADD COLUMN json_mtime_ns INTEGER;
ALTER TABLE export_state ADD COLUMN json_size INTEGER;
UPDATE export_state SET json_mtime_ns = c.json_mtime_ns, json_size = c.json_size
    FROM conversations c WHERE c.tenant = export_state.tenant AND c.id = export_state.conversation_id;
CREATE TABLE export_artifacts (
    policy TEXT NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    key TEXT,
    size INTEGER,
    out_sha256 TEXT,
    run INTEGER NOT NULL,
    PRIMARY KEY (policy, tenant, conversation_id, file)
) WITHOUT ROWID;
INSERT INTO export_artifacts (policy, tenant, conversation_id, file, sha256, run)
    SELECT s.policy, s.tenant, s.conversation_id, a.file, a.sha256, s.run FROM export_state s
    JOIN conversations c ON c.tenant = s.tenant AND c.id = s.conversation_id
    JOIN artifacts a ON a.conversation = c.pk;
CREATE TABLE object_keys (
    target TEXT NOT NULL,
    key TEXT NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    file TEXT NOT NULL,
    run INTEGER NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (target, key)
) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE audit_events ADD COLUMN key_id TEXT;
"#,
];

/// The SQLite catalog.
pub struct SqliteCatalog {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    audit_key: Option<KeySource>,
}

struct FileLock {
    _file: File,
}

impl PolicyLock for FileLock {}

impl SqliteCatalog {
    /// Opens (creating if needed) the catalog file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteCatalog> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| CatalogError::Open {
                location: path.display().to_string(),
                message: format!("cannot create directory {}: {e}", parent.display()),
            })?;
        }
        let this = SqliteCatalog {
            path: path.to_owned(),
            writer: Mutex::new(Connection::open(path).map_err(|e| sql_err(path, e))?),
            readers: Mutex::new(Vec::new()),
            audit_key: None,
        };
        {
            let mut conn = this.writer.lock().expect("catalog writer lock");
            this.configure(&conn)?;
            // Switching a new file to WAL, and reading a WAL file another process is setting
            // up, can fail with SQLITE_BUSY at once rather than through the busy handler: two
            // processes starting on a new catalog (`serve` and a `jobs list`) would see
            // "database is locked". Each step is safe to repeat, so it is retried for as long
            // as the busy timeout.
            let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
            loop {
                let opened = conn
                    .execute_batch("PRAGMA journal_mode = WAL;")
                    .map_err(|e| this.err(e))
                    .and_then(|()| this.migrate(&mut conn));
                match opened {
                    Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    other => break other?,
                }
            }
        }
        Ok(this)
    }

    /// Appends audit events keyed with the key at `key` (None: unkeyed, refused once the
    /// chain is keyed).
    pub fn with_audit_key(mut self, key: Option<KeySource>) -> SqliteCatalog {
        self.audit_key = key;
        self
    }

    fn err(&self, e: rusqlite::Error) -> CatalogError {
        sql_err(&self.path, e)
    }

    fn chain(&self) -> Chain<'_> {
        Chain {
            source: self.audit_key.as_ref(),
            head: None,
        }
    }

    fn configure(&self, conn: &Connection) -> Result<()> {
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
             PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 16384;",
        )
        .and_then(|()| conn.busy_timeout(BUSY_TIMEOUT))
        .map_err(|e| self.err(e))
    }

    /// Brings the schema up to date. Each step takes the write lock first (`BEGIN IMMEDIATE`)
    /// and re-reads the version inside it, so processes opening a new catalog at the same
    /// moment apply each migration once.
    fn migrate(&self, conn: &mut Connection) -> Result<()> {
        loop {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| self.err(e))?;
            let version: usize = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            if version > MIGRATIONS.len() {
                return Err(CatalogError::Open {
                    location: self.location(),
                    message: format!(
                        "schema version {version} is newer than this build knows ({}); upgrade custodian",
                        MIGRATIONS.len()
                    ),
                });
            }
            let Some(sql) = MIGRATIONS.get(version) else {
                return Ok(());
            };
            tx.execute_batch(sql).map_err(|e| self.err(e))?;
            tx.pragma_update(None, "user_version", version + 1)
                .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
        }
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().expect("reader pool lock").pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open(&self.path).map_err(|e| self.err(e))?;
                self.configure(&c)?;
                c
            }
        };
        let out = f(&conn);
        self.readers.lock().expect("reader pool lock").push(conn);
        out
    }

    fn corrupt(&self, column: &'static str, value: &str) -> CatalogError {
        CatalogError::Corrupt {
            location: self.location(),
            column,
            value: value.to_owned(),
        }
    }

    fn selection_sql(
        &self,
        head: &str,
        filter: &Filter,
        exclude: &Exclude,
        tail: &str,
        mut params: Vec<SqlValue>,
    ) -> (String, Vec<SqlValue>) {
        let clause = filter.to_sql(Dialect::Sqlite, params.len());
        params.extend(clause.params);
        let exclude_sql = match exclude {
            Exclude::Nothing => "",
            Exclude::ExportedBy(policy) => {
                params.push(SqlValue::Text(policy.clone()));
                " AND NOT EXISTS (SELECT 1 FROM export_state s WHERE s.policy = ? \
                 AND s.tenant = c.tenant AND s.conversation_id = c.id \
                 AND s.json_mtime_ns = c.json_mtime_ns AND s.json_size = c.json_size)"
            }
            Exclude::DoneIn(run) => {
                params.push(SqlValue::Int(run.0));
                " AND NOT EXISTS (SELECT 1 FROM run_items r WHERE r.run = ? \
                 AND r.outcome = 'exported' AND r.tenant = c.tenant AND r.conversation_id = c.id)"
            }
        };
        (
            format!("{head} AND ({}){exclude_sql}{tail}", clause.sql),
            params,
        )
    }

    fn job_run_from_row(&self, r: &Row<'_>) -> Result<JobRun> {
        let get = |e| self.err(e);
        let mode: String = r.get("mode").map_err(get)?;
        let status: String = r.get("status").map_err(get)?;
        let started: String = r.get("started_at").map_err(get)?;
        let finished: Option<String> = r.get("finished_at").map_err(get)?;
        Ok(JobRun {
            id: RunId(r.get("id").map_err(get)?),
            policy: r.get("policy").map_err(get)?,
            mode: match mode.as_str() {
                "full" => Mode::Full,
                "incremental" => Mode::Incremental,
                _ => return Err(self.corrupt("job_runs.mode", &mode)),
            },
            target: r.get("target").map_err(get)?,
            status: RunStatus::parse(&status)
                .ok_or_else(|| self.corrupt("job_runs.status", &status))?,
            started_at: parse_ts(&started)
                .ok_or_else(|| self.corrupt("job_runs.started_at", &started))?,
            finished_at: finished.as_deref().and_then(parse_ts),
            resumed: r.get("resumed").map_err(get)?,
            counters: Counters {
                selected: r.get("selected").map_err(get)?,
                exported: r.get("exported").map_err(get)?,
                flagged: r.get("flagged").map_err(get)?,
                failed: r.get("failed").map_err(get)?,
                objects: r.get("objects").map_err(get)?,
                bytes: r.get("bytes").map_err(get)?,
                index_errors: r.get("index_errors").map_err(get)?,
                deleted: r.get("deleted").map_err(get)?,
            },
            manifest_key: r.get("manifest_key").map_err(get)?,
            error_summary: r.get("error_summary").map_err(get)?,
            log_path: r.get("log_path").map_err(get)?,
            notification: r.get("notification").map_err(get)?,
        })
    }

    fn query_runs(&self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<Vec<JobRun>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(sql).map_err(|e| self.err(e))?;
            let mut rows = stmt.query(params).map_err(|e| self.err(e))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(|e| self.err(e))? {
                out.push(self.job_run_from_row(r)?);
            }
            Ok(out)
        })
    }

    fn conversation_from_row(&self, r: &Row<'_>) -> Result<Selected> {
        let get = |e| self.err(e);
        let text = |name: &'static str| -> Result<String> { r.get(name).map_err(get) };
        let time = |name: &'static str| -> Result<_> {
            let v = text(name)?;
            chrono::DateTime::parse_from_rfc3339(&v).map_err(|_| self.corrupt(name, &v))
        };
        let flag = |name: &'static str| -> Result<bool> { r.get(name).map_err(get) };
        Ok(Selected {
            rowid: r.get("pk").map_err(get)?,
            rel_dir: text("rel_dir")?,
            fingerprint: Fingerprint {
                mtime_ns: r.get("json_mtime_ns").map_err(get)?,
                size: r.get("json_size").map_err(get)?,
            },
            exported: Vec::new(),
            conversation: Conversation {
                schema: SCHEMA_VERSION,
                id: text("id")?,
                tenant: text("tenant")?,
                kind: parse_column(self, "kind", text("kind")?)?,
                source_platform: text("source_platform")?,
                direction: parse_column(self, "direction", text("direction")?)?,
                start: time("start_text")?,
                end: time("end_text")?,
                participants: Vec::new(),
                flags: Flags {
                    cdr_only: flag("cdr_only")?,
                    imported: flag("imported")?,
                    confidential: flag("confidential")?,
                    legal_hold: flag("legal_hold")?,
                },
                channel: r.get("channel").map_err(get)?,
                artifacts: Vec::new(),
            },
        })
    }

    /// Fills participants and artifacts of a page of conversations ordered by rowid, and
    /// what `exported_by` (a policy) exported of them before.
    fn fill_children(
        &self,
        conn: &Connection,
        page: &mut [Selected],
        exported_by: Option<&str>,
    ) -> Result<()> {
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            return Ok(());
        };
        let (lo, hi) = (first.rowid, last.rowid);
        let index: std::collections::HashMap<i64, usize> =
            page.iter().enumerate().map(|(i, s)| (s.rowid, i)).collect();
        let mut stmt = conn
            .prepare_cached(
                "SELECT conversation, user_name, extension, role FROM participants \
                 WHERE conversation BETWEEN ? AND ? ORDER BY conversation, ordinal",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query(params![lo, hi]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let conv: i64 = r.get(0).map_err(|e| self.err(e))?;
            let Some(&i) = index.get(&conv) else { continue };
            let role: String = r.get(3).map_err(|e| self.err(e))?;
            page[i].conversation.participants.push(Participant {
                user: r.get(1).map_err(|e| self.err(e))?,
                extension: r.get(2).map_err(|e| self.err(e))?,
                role: role
                    .parse()
                    .map_err(|_| self.corrupt("participants.role", &role))?,
            });
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT conversation, file, kind, audio_type, size, sha256, key_id FROM artifacts a \
                 WHERE conversation BETWEEN ? AND ? AND NOT EXISTS (SELECT 1 FROM artifact_deletions d \
                 WHERE d.conversation = a.conversation AND d.file = a.file) ORDER BY conversation, ordinal",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query(params![lo, hi]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let conv: i64 = r.get(0).map_err(|e| self.err(e))?;
            let Some(&i) = index.get(&conv) else { continue };
            let kind: String = r.get(2).map_err(|e| self.err(e))?;
            let audio_type: Option<String> = r.get(3).map_err(|e| self.err(e))?;
            let key_id: Option<String> = r.get(6).map_err(|e| self.err(e))?;
            page[i].conversation.artifacts.push(Artifact {
                file: r.get(1).map_err(|e| self.err(e))?,
                kind: kind
                    .parse()
                    .map_err(|_| self.corrupt("artifacts.kind", &kind))?,
                audio_type: match audio_type {
                    Some(t) => Some(
                        t.parse()
                            .map_err(|_| self.corrupt("artifacts.audio_type", &t))?,
                    ),
                    None => None,
                },
                size: r.get(4).map_err(|e| self.err(e))?,
                sha256: r.get(5).map_err(|e| self.err(e))?,
                encryption: key_id.map(|key_id| Encryption { key_id }),
            });
        }
        let Some(policy) = exported_by else {
            return Ok(());
        };
        let mut stmt = conn
            .prepare_cached(
                "SELECT c.pk, e.file, e.sha256, e.key, e.size, e.out_sha256 FROM conversations c \
                 JOIN export_artifacts e ON e.policy = ? AND e.tenant = c.tenant AND e.conversation_id = c.id \
                 WHERE c.pk BETWEEN ? AND ?",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt
            .query(params![policy, lo, hi])
            .map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let conv: i64 = r.get(0).map_err(|e| self.err(e))?;
            let Some(&i) = index.get(&conv) else { continue };
            let key: Option<String> = r.get(3).map_err(|e| self.err(e))?;
            let size: Option<u64> = r.get(4).map_err(|e| self.err(e))?;
            let sha256: Option<String> = r.get(5).map_err(|e| self.err(e))?;
            page[i].exported.push(ExportedArtifact {
                file: r.get(1).map_err(|e| self.err(e))?,
                sha256: r.get(2).map_err(|e| self.err(e))?,
                output: match (key, size, sha256) {
                    (Some(key), Some(size), Some(sha256)) => {
                        Some(ObjectRecord { key, size, sha256 })
                    }
                    _ => None,
                },
            });
        }
        Ok(())
    }
}

fn upsert(
    tx: &Connection,
    rel_dir: &str,
    fp: Fingerprint,
    c: &Conversation,
) -> rusqlite::Result<()> {
    let start = c.start.to_rfc3339();
    let end = c.end.to_rfc3339();
    let values = params![
        rel_dir,
        fp.mtime_ns,
        fp.size,
        c.tenant,
        c.id,
        c.kind.as_str(),
        c.source_platform,
        c.direction.as_str(),
        start,
        end,
        c.start.timestamp_millis(),
        c.duration_ms(),
        c.flags.confidential,
        c.flags.cdr_only,
        c.flags.imported,
        c.flags.legal_hold,
        c.channel,
        rel_dir.rsplit_once('/').map_or("", |(day, _)| day),
    ];
    // Most upserts of a first index are new rows: try a plain insert, and only for a record
    // that changed fall back to updating it and replacing its children.
    let inserted: Option<i64> = tx
        .prepare_cached(
            "INSERT INTO conversations (rel_dir, json_mtime_ns, json_size, tenant, id, kind, \
             source_platform, direction, start_text, end_text, start_ms, duration_ms, confidential, \
             cdr_only, imported, legal_hold, channel, day) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
             COALESCE((SELECT value FROM confidential_flags WHERE tenant = ?4 AND conversation_id = ?5), ?13), \
             ?14, ?15, ?16, ?17, ?18) \
             ON CONFLICT (rel_dir) DO NOTHING RETURNING pk",
        )?
        .query_row(values, |r| r.get(0))
        .optional()?;
    let pk = match inserted {
        Some(pk) => pk,
        None => {
            let pk: i64 = tx
                .prepare_cached(
                    "UPDATE conversations SET json_mtime_ns = ?2, json_size = ?3, tenant = ?4, \
                     id = ?5, kind = ?6, source_platform = ?7, direction = ?8, start_text = ?9, \
                     end_text = ?10, start_ms = ?11, duration_ms = ?12, \
                     confidential = COALESCE((SELECT value FROM confidential_flags \
                       WHERE tenant = ?4 AND conversation_id = ?5), ?13), \
                     cdr_only = ?14, imported = ?15, legal_hold = ?16, channel = ?17, day = ?18 \
                     WHERE rel_dir = ?1 RETURNING pk",
                )?
                .query_row(values, |r| r.get(0))?;
            tx.prepare_cached("DELETE FROM participants WHERE conversation = ?")?
                .execute([pk])?;
            tx.prepare_cached("DELETE FROM artifacts WHERE conversation = ?")?
                .execute([pk])?;
            pk
        }
    };
    let mut ins = tx.prepare_cached(
        "INSERT INTO participants (conversation, ordinal, user_name, extension, role) VALUES (?, ?, ?, ?, ?)",
    )?;
    for (i, p) in c.participants.iter().enumerate() {
        ins.execute(params![pk, i, p.user, p.extension, p.role.as_str()])?;
    }
    let mut ins = tx.prepare_cached(
        "INSERT INTO artifacts (conversation, ordinal, file, kind, audio_type, extension, size, sha256, key_id) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    for (i, a) in c.artifacts.iter().enumerate() {
        ins.execute(params![
            pk,
            i,
            a.file,
            a.kind.as_str(),
            a.audio_type.map(|t| t.as_str()),
            a.extension(),
            a.size,
            a.sha256,
            a.encryption.as_ref().map(|e| e.key_id.as_str()),
        ])?;
    }
    Ok(())
}

/// The audit chain as one write transaction extends it: the head is read at the first append
/// (the transaction then holds the write lock, so no other writer moves it) and kept here.
struct Chain<'k> {
    source: Option<&'k KeySource>,
    head: Option<ChainHead>,
}

struct ChainHead {
    seq: i64,
    hash: String,
    key: Option<Arc<ChainKey>>,
}

/// A key error carried through rusqlite's error type out of a write closure; [`sql_err`]
/// turns it back into [`CatalogError::AuditKey`].
fn key_err(e: KeyError) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

impl Chain<'_> {
    /// The head, read once. Whether the chain is keyed, and with which key, is the last
    /// event's `key_id`: a keyed chain stays keyed, so no other event needs reading.
    fn head(&mut self, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<&mut ChainHead> {
        if let Some(head) = self.head.take() {
            return Ok(self.head.insert(head));
        }
        let (seq, hash, chain_id): (i64, String, Option<String>) = tx
            .prepare_cached("SELECT seq, hash, key_id FROM audit_events ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?
            .unwrap_or((0, GENESIS.to_string(), None));
        let key = match (self.source, chain_id) {
            (None, None) => None,
            (None, Some(key_id)) => return Err(key_err(KeyError::NotConfigured { key_id })),
            (Some(source), chain_id) => {
                Some(source.for_append(chain_id.as_deref()).map_err(key_err)?)
            }
        };
        Ok(self.head.insert(ChainHead { seq, hash, key }))
    }

    fn append(&mut self, tx: &rusqlite::Transaction<'_>, e: &NewEvent) -> rusqlite::Result<()> {
        let head = self.head(tx)?;
        let seq = head.seq + 1;
        let hash = e.hash_with(head.key.as_deref(), seq, &head.hash);
        tx.prepare_cached(
            "INSERT INTO audit_events (seq, at, kind, actor, policy, run, tenant, conversation_id, details, prev_hash, hash, key_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(params![
            seq,
            ts(e.at),
            e.kind.as_str(),
            e.actor,
            e.policy,
            e.run,
            e.tenant,
            e.conversation_id,
            e.details.to_string(),
            head.hash,
            hash,
            head.key.as_ref().map(|k| k.id())
        ])?;
        head.seq = seq;
        head.hash = hash;
        Ok(())
    }
}

fn parse_column<T: std::str::FromStr>(
    cat: &SqliteCatalog,
    column: &'static str,
    v: String,
) -> Result<T> {
    v.parse().map_err(|_| cat.corrupt(column, &v))
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// SQLITE_BUSY or SQLITE_LOCKED: another connection holds the lock.
fn is_busy(e: &CatalogError) -> bool {
    matches!(
        e,
        CatalogError::Sqlite {
            source: rusqlite::Error::SqliteFailure(f, _),
            ..
        } if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn sql_err(path: &Path, source: rusqlite::Error) -> CatalogError {
    let source = match source {
        rusqlite::Error::ToSqlConversionFailure(e) => match e.downcast::<KeyError>() {
            Ok(key) => return CatalogError::AuditKey(*key),
            Err(e) => rusqlite::Error::ToSqlConversionFailure(e),
        },
        other => other,
    };
    let location = path.display().to_string();
    let full = match source.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => true,
        // SQLite reports a full disk met while growing its WAL index as an I/O error.
        Some(rusqlite::ErrorCode::SystemIoFailure) => disk_nearly_full(path),
        _ => false,
    };
    if full {
        return CatalogError::Full { location };
    }
    CatalogError::Sqlite { location, source }
}

/// Less than 1 MiB is free on the filesystem holding `path`.
fn disk_nearly_full(path: &Path) -> bool {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    nix::sys::statvfs::statvfs(dir.unwrap_or(Path::new(".")))
        .is_ok_and(|s| s.blocks_available() * s.fragment_size() < 1 << 20)
}

fn to_sql(v: &SqlValue) -> rusqlite::types::Value {
    match v {
        SqlValue::Int(i) => rusqlite::types::Value::Integer(*i),
        SqlValue::Text(s) => rusqlite::types::Value::Text(s.clone()),
    }
}

/// A run's counters. A subject counts as failed only if the run never exported it; that
/// probe is one lookup in `run_items_subject` per failed item.
const RUN_COUNTERS: &str = "SELECT \
       (SELECT COUNT(*) FROM run_items WHERE run = ?1 AND outcome = 'exported'), \
       (SELECT COUNT(DISTINCT f.subject) FROM run_items f WHERE f.run = ?1 AND f.outcome = 'failed' \
          AND NOT EXISTS (SELECT 1 FROM run_items x WHERE x.run = ?1 AND x.outcome = 'exported' \
                          AND x.subject = f.subject)), \
       (SELECT COUNT(*) FROM run_objects WHERE run = ?1), \
       (SELECT COALESCE(SUM(size), 0) FROM run_objects WHERE run = ?1), \
       (SELECT COUNT(*) FROM audit_events WHERE run = ?1 AND kind = 'artifact_deleted')";

/// The failed items of a run whose subject it never exported, oldest first.
const FAILED_ITEMS: &str = "SELECT subject, error, at FROM run_items f WHERE f.run = ?1 AND f.outcome = 'failed' \
     AND NOT EXISTS (SELECT 1 FROM run_items x WHERE x.run = ?1 AND x.outcome = 'exported' \
                     AND x.subject = f.subject) \
     ORDER BY f.rowid LIMIT ?2";

const SELECT_CONVERSATION: &str = "SELECT c.pk, c.rel_dir, c.tenant, c.id, c.kind, c.source_platform, \
     c.direction, c.start_text, c.end_text, c.confidential, c.cdr_only, c.imported, c.legal_hold, \
     c.channel, c.json_mtime_ns, c.json_size FROM conversations c WHERE c.pk > ?";

impl Catalog for SqliteCatalog {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn fingerprints_under(&self, rel_prefix: &str) -> Result<Vec<(String, Fingerprint)>> {
        let lo = format!("{rel_prefix}/");
        let hi = format!("{rel_prefix}0");
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT rel_dir, json_mtime_ns, json_size FROM conversations \
                     WHERE rel_dir >= ? AND rel_dir < ?",
                )
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map(params![lo, hi], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Fingerprint {
                            mtime_ns: r.get(1)?,
                            size: r.get(2)?,
                        },
                    ))
                })
                .map_err(|e| self.err(e))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| self.err(e))
        })
    }

    fn indexed_days(&self) -> Result<Vec<String>> {
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT DISTINCT day FROM conversations ORDER BY day")
                .map_err(|e| self.err(e))?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| self.err(e))
        })
    }

    fn apply_index(&self, changes: &[IndexChange]) -> Result<Vec<Option<String>>> {
        let mut conn = self.writer.lock().expect("catalog writer lock");
        let mut tx = conn.transaction().map_err(|e| self.err(e))?;
        let mut outcomes = Vec::with_capacity(changes.len());
        for change in changes {
            let (rel_dir, fingerprint, conversation) = match change {
                IndexChange::Remove { rel_dir } => {
                    tx.prepare_cached("DELETE FROM conversations WHERE rel_dir = ?")
                        .and_then(|mut s| s.execute([rel_dir]))
                        .map_err(|e| self.err(e))?;
                    outcomes.push(None);
                    continue;
                }
                IndexChange::Upsert {
                    rel_dir,
                    fingerprint,
                    conversation,
                } => (rel_dir, *fingerprint, conversation),
            };
            if let Some(reason) = unstorable(conversation, fingerprint) {
                outcomes.push(Some(reason));
                continue;
            }
            // Each record in a savepoint of its own: one that cannot be stored leaves nothing
            // half-written behind and fails alone.
            let sp = tx.savepoint().map_err(|e| self.err(e))?;
            let written = upsert(&sp, rel_dir, fingerprint, conversation);
            let failed = match written {
                Ok(()) => {
                    sp.commit().map_err(|e| self.err(e))?;
                    outcomes.push(None);
                    continue;
                }
                Err(e) => e,
            };
            drop(sp);
            outcomes.push(Some(match failed {
                rusqlite::Error::SqliteFailure(e, _)
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    let other: Option<String> = tx
                        .query_row(
                            "SELECT rel_dir FROM conversations WHERE tenant = ? AND id = ?",
                            params![conversation.tenant, conversation.id],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(|e| self.err(e))?;
                    duplicate_id(conversation, other.as_deref())
                }
                e @ (rusqlite::Error::ToSqlConversionFailure(_)
                | rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error {
                        code: rusqlite::ErrorCode::TooBig,
                        ..
                    },
                    _,
                )) => format!("the catalog cannot store this record: {e}"),
                e => return Err(self.err(e)),
            }));
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(outcomes)
    }

    fn conversation_count(&self) -> Result<u64> {
        self.with_reader(|conn| {
            conn.query_row("SELECT COUNT(*) FROM conversations", [], |r| r.get(0))
                .map_err(|e| self.err(e))
        })
    }

    fn count_selection(&self, filter: &Filter, exclude: &Exclude) -> Result<u64> {
        let (sql, params) = self.selection_sql(
            "SELECT COUNT(*) FROM conversations c WHERE c.pk > ?",
            filter,
            exclude,
            "",
            vec![SqlValue::Int(i64::MIN)],
        );
        self.with_reader(|conn| {
            conn.prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_row(params_from_iter(params.iter().map(to_sql)), |r| r.get(0))
                })
                .map_err(|e| self.err(e))
        })
    }

    fn select_page(
        &self,
        filter: &Filter,
        exclude: &Exclude,
        after_rowid: i64,
        limit: usize,
    ) -> Result<Vec<Selected>> {
        let (sql, mut params) = self.selection_sql(
            SELECT_CONVERSATION,
            filter,
            exclude,
            " ORDER BY c.pk LIMIT ?",
            vec![SqlValue::Int(after_rowid)],
        );
        params.push(SqlValue::Int(limit as i64));
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
            let mut rows = stmt
                .query(params_from_iter(params.iter().map(to_sql)))
                .map_err(|e| self.err(e))?;
            let mut page = Vec::with_capacity(limit);
            while let Some(r) = rows.next().map_err(|e| self.err(e))? {
                page.push(self.conversation_from_row(r)?);
            }
            drop(rows);
            let exported_by = match exclude {
                Exclude::ExportedBy(policy) => Some(policy.as_str()),
                _ => None,
            };
            self.fill_children(conn, &mut page, exported_by)?;
            Ok(page)
        })
    }

    fn claim_keys(&self, target: &str, run: RunId, claims: &[KeyClaim]) -> Result<Vec<KeyClaim>> {
        let mut conn = self.writer.lock().expect("catalog writer lock");
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let now = ts(Utc::now());
        let claim = || -> rusqlite::Result<Vec<KeyClaim>> {
            let mut insert = tx.prepare_cached(
                "INSERT INTO object_keys (target, key, tenant, conversation_id, file, run, at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (target, key) DO NOTHING",
            )?;
            let mut holder = tx.prepare_cached(
                "SELECT tenant, conversation_id, file FROM object_keys WHERE target = ? AND key = ?",
            )?;
            let mut held = Vec::new();
            for c in claims {
                insert.execute(params![
                    target,
                    c.key,
                    c.tenant,
                    c.conversation_id,
                    c.file,
                    run.0,
                    now
                ])?;
                let h = holder.query_row(params![target, c.key], |r| {
                    Ok(KeyClaim {
                        key: c.key.clone(),
                        tenant: r.get(0)?,
                        conversation_id: r.get(1)?,
                        file: r.get(2)?,
                    })
                })?;
                if !h.same_holder(c) {
                    held.push(h);
                }
            }
            Ok(held)
        };
        let held = claim().map_err(|e| self.err(e))?;
        if held.is_empty() {
            tx.commit().map_err(|e| self.err(e))?;
        }
        Ok(held)
    }

    fn lock_policy(&self, policy: &str) -> Result<Box<dyn PolicyLock>> {
        let dir = self.path.with_extension("locks");
        let lock_path = dir.join(format!("{policy}.lock"));
        let open_err = |e: std::io::Error| CatalogError::Open {
            location: self.location(),
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

    fn interrupted_run(&self, policy: &str) -> Result<Option<JobRun>> {
        Ok(self
            .query_runs(
                "SELECT * FROM job_runs WHERE policy = ? AND status = 'running' ORDER BY id DESC LIMIT 1",
                &[&policy],
            )?
            .pop())
    }

    fn begin_run(&self, policy: &str, mode: Mode, target: &str) -> Result<RunId> {
        let conn = self.writer.lock().expect("catalog writer lock");
        // Not `RETURNING` through `query_row`: in autocommit the insert commits when the
        // statement is reset, and an error there (a full disk) would go unreported, leaving an
        // id with no row behind it.
        conn.execute(
            "INSERT INTO job_runs (policy, mode, target, status, started_at) VALUES (?, ?, ?, 'running', ?)",
            params![policy, mode.as_str(), target, ts(Utc::now())],
        )
        .map(|_| RunId(conn.last_insert_rowid()))
        .map_err(|e| self.err(e))
    }

    fn resume_run(&self, run: RunId) -> Result<()> {
        let conn = self.writer.lock().expect("catalog writer lock");
        conn.execute(
            "UPDATE job_runs SET resumed = resumed + 1 WHERE id = ?",
            [run.0],
        )
        .map(drop)
        .map_err(|e| self.err(e))
    }

    fn record_outcomes(&self, run: RunId, policy: &str, outcomes: &[ItemOutcome]) -> Result<()> {
        let mut conn = self.writer.lock().expect("catalog writer lock");
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let now = ts(Utc::now());
        let mut chain = self.chain();
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
                        tx.prepare_cached(
                            "INSERT OR REPLACE INTO export_state \
                             (policy, tenant, conversation_id, run, at, json_mtime_ns, json_size) \
                             VALUES (?, ?, ?, ?, ?, ?, ?)",
                        )?
                        .execute(params![
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
        write().map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    fn run_counters(&self, run: RunId) -> Result<Counters> {
        self.with_reader(|conn| {
            conn.query_row(RUN_COUNTERS, [run.0], |r| {
                Ok(Counters {
                    exported: r.get(0)?,
                    failed: r.get(1)?,
                    objects: r.get(2)?,
                    bytes: r.get(3)?,
                    deleted: r.get(4)?,
                    ..Counters::default()
                })
            })
            .map_err(|e| self.err(e))
        })
    }

    fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        c: &Counters,
        manifest_key: Option<&str>,
        error_summary: Option<&str>,
    ) -> Result<()> {
        let conn = self.writer.lock().expect("catalog writer lock");
        conn.execute(
            "UPDATE job_runs SET status = ?, finished_at = ?, selected = ?, exported = ?, flagged = ?, \
             failed = ?, objects = ?, bytes = ?, index_errors = ?, manifest_key = ?, error_summary = ?, \
             deleted = ? WHERE id = ?",
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
        .map_err(|e| self.err(e))
    }

    fn run_objects(
        &self,
        run: RunId,
        each: &mut dyn FnMut(ObjectRecord) -> std::io::Result<()>,
    ) -> Result<std::io::Result<()>> {
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT key, size, sha256 FROM run_objects WHERE run = ? ORDER BY key",
                )
                .map_err(|e| self.err(e))?;
            let mut rows = stmt.query([run.0]).map_err(|e| self.err(e))?;
            while let Some(r) = rows.next().map_err(|e| self.err(e))? {
                let obj = ObjectRecord {
                    key: r.get(0).map_err(|e| self.err(e))?,
                    size: r.get(1).map_err(|e| self.err(e))?,
                    sha256: r.get(2).map_err(|e| self.err(e))?,
                };
                if let Err(e) = each(obj) {
                    return Ok(Err(e));
                }
            }
            Ok(Ok(()))
        })
    }

    fn prune_runs(&self, policy: &str, before: DateTime<Utc>) -> Result<u64> {
        let conn = self.writer.lock().expect("catalog writer lock");
        conn.execute(
            "DELETE FROM job_runs WHERE policy = ? AND status = 'succeeded' AND finished_at < ?",
            params![policy, ts(before)],
        )
        .map(|n| n as u64)
        .map_err(|e| self.err(e))
    }

    fn job_runs(&self, policy: Option<&str>, limit: usize) -> Result<Vec<JobRun>> {
        let limit = limit as i64;
        match policy {
            Some(p) => self.query_runs(
                "SELECT * FROM job_runs WHERE policy = ? ORDER BY id DESC LIMIT ?",
                &[&p, &limit],
            ),
            None => self.query_runs("SELECT * FROM job_runs ORDER BY id DESC LIMIT ?", &[&limit]),
        }
    }

    fn set_run_log(&self, run: RunId, path: &str) -> Result<()> {
        let conn = self.writer.lock().expect("catalog writer lock");
        conn.execute(
            "UPDATE job_runs SET log_path = ? WHERE id = ?",
            params![path, run.0],
        )
        .map(drop)
        .map_err(|e| self.err(e))
    }

    fn set_run_notification(&self, run: RunId, text: &str) -> Result<()> {
        let conn = self.writer.lock().expect("catalog writer lock");
        conn.execute(
            "UPDATE job_runs SET notification = ? WHERE id = ?",
            params![text, run.0],
        )
        .map(drop)
        .map_err(|e| self.err(e))
    }

    fn set_confidential_page(
        &self,
        page: &ConfidentialPage<'_>,
        after_rowid: i64,
    ) -> Result<(u64, u64, i64)> {
        let (sql, mut params) = self.selection_sql(
            "SELECT c.pk, c.tenant, c.id, c.confidential, c.json_mtime_ns, c.json_size \
             FROM conversations c WHERE c.pk > ?",
            page.filter,
            page.exclude,
            " ORDER BY c.pk LIMIT ?",
            vec![SqlValue::Int(after_rowid)],
        );
        params.push(SqlValue::Int(page.limit as i64));
        let mut conn = self.writer.lock().expect("catalog writer lock");
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let now = Utc::now();
        let at = ts(now);
        let mut chain = self.chain();
        let mut write = || -> rusqlite::Result<(u64, u64, i64)> {
            let rows: Vec<(i64, String, String, bool, i64, i64)> = tx
                .prepare_cached(&sql)?
                .query_map(params_from_iter(params.iter().map(to_sql)), |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut changed = 0;
            let mut set_flag =
                tx.prepare_cached("UPDATE conversations SET confidential = ? WHERE pk = ?")?;
            let mut keep = tx.prepare_cached(
                "INSERT OR REPLACE INTO confidential_flags (tenant, conversation_id, value, policy, run, at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )?;
            let mut state = tx.prepare_cached(
                "INSERT OR REPLACE INTO export_state \
                 (policy, tenant, conversation_id, run, at, json_mtime_ns, json_size) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )?;
            for (pk, tenant, id, was, mtime_ns, size) in &rows {
                if *was != page.value {
                    set_flag.execute(params![page.value, pk])?;
                    chain.append(&tx, &flag_event(page, tenant, id, *was, now))?;
                    changed += 1;
                }
                keep.execute(params![tenant, id, page.value, page.policy, page.run.0, at])?;
                if page.remember {
                    state.execute(params![
                        page.policy,
                        tenant,
                        id,
                        page.run.0,
                        at,
                        mtime_ns,
                        size
                    ])?;
                }
            }
            Ok((
                rows.len() as u64,
                changed,
                rows.last().map_or(after_rowid, |r| r.0),
            ))
        };
        let result = write().map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(result)
    }

    fn job_run(&self, run: RunId) -> Result<Option<JobRun>> {
        Ok(self
            .query_runs("SELECT * FROM job_runs WHERE id = ?", &[&run.0])?
            .pop())
    }

    fn failed_items(&self, run: RunId, limit: usize) -> Result<Vec<FailedItem>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(FAILED_ITEMS).map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map(params![run.0, limit as i64], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(|e| self.err(e))?;
            let mut out = Vec::new();
            for row in rows {
                let (subject, error, at) = row.map_err(|e| self.err(e))?;
                out.push(FailedItem {
                    subject,
                    error,
                    at: parse_ts(&at).ok_or_else(|| self.corrupt("run_items.at", &at))?,
                });
            }
            Ok(out)
        })
    }

    fn audit_events(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        // A run's events are found through its index: `?2 IS NULL OR run = ?2` would have the
        // planner walk the whole trail.
        let run = if q.run.is_some() {
            "run = ?2"
        } else {
            "?2 IS NULL"
        };
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT seq, at, kind, actor, policy, run, tenant, conversation_id, details, prev_hash, hash, key_id \
                     FROM audit_events WHERE seq > ?1 AND {run} \
                     AND (?3 IS NULL OR conversation_id = ?3) AND (?5 IS NULL OR kind = ?5) \
                     ORDER BY seq LIMIT ?4"
                ))
                .map_err(|e| self.err(e))?;
            let mut rows = stmt
                .query(params![
                    q.after_seq,
                    q.run.map(|r| r.0),
                    q.conversation_id,
                    q.limit as i64,
                    q.kind.map(|k| k.as_str())
                ])
                .map_err(|e| self.err(e))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(|e| self.err(e))? {
                let get_text = |i: usize| -> Result<String> { r.get(i).map_err(|e| self.err(e)) };
                let at = get_text(1)?;
                let kind = get_text(2)?;
                let details = get_text(8)?;
                out.push(AuditEvent {
                    seq: r.get(0).map_err(|e| self.err(e))?,
                    event: NewEvent {
                        at: parse_ts(&at).ok_or_else(|| self.corrupt("audit_events.at", &at))?,
                        kind: AuditKind::parse(&kind)
                            .ok_or_else(|| self.corrupt("audit_events.kind", &kind))?,
                        actor: get_text(3)?,
                        policy: r.get(4).map_err(|e| self.err(e))?,
                        run: r.get(5).map_err(|e| self.err(e))?,
                        tenant: r.get(6).map_err(|e| self.err(e))?,
                        conversation_id: r.get(7).map_err(|e| self.err(e))?,
                        details: serde_json::from_str(&details)
                            .map_err(|_| self.corrupt("audit_events.details", &details))?,
                    },
                    prev_hash: get_text(9)?,
                    hash: get_text(10)?,
                    key_id: r.get(11).map_err(|e| self.err(e))?,
                });
            }
            Ok(out)
        })
    }

    fn audit_head(&self) -> Result<AuditHead> {
        self.with_reader(|conn| {
            conn.prepare_cached("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                .and_then(|mut s| {
                    s.query_row([], |r| {
                        Ok(AuditHead {
                            seq: r.get(0)?,
                            hash: r.get(1)?,
                        })
                    })
                    .optional()
                })
                .map_err(|e| self.err(e))
                .map(|head| {
                    head.unwrap_or_else(|| AuditHead {
                        seq: 0,
                        hash: GENESIS.to_owned(),
                    })
                })
        })
    }

    fn create_lifecycle_policy(&self, p: &LifecyclePolicy, event: &NewEvent) -> Result<()> {
        let mut conn = self.writer.lock().expect("catalog writer lock");
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let taken: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM lifecycle_policies WHERE name = ?)",
                [&p.name],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
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
        .map_err(|e| self.err(e))?;
        self.chain().append(&tx, event).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    fn publish_lifecycle_version(
        &self,
        policy: &str,
        v: &LifecycleVersion,
        event: &NewEvent,
    ) -> Result<()> {
        let mut conn = self.writer.lock().expect("catalog writer lock");
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let active: Option<Option<String>> = tx
            .query_row(
                "SELECT active_version FROM lifecycle_policies WHERE name = ?",
                [policy],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some(active) = active else {
            return Err(unknown_policy(policy));
        };
        let (count, taken): (i64, bool) = tx
            .query_row(
                "SELECT count(*), coalesce(sum(name = ?2), 0) > 0 FROM lifecycle_versions WHERE policy = ?1",
                params![policy, v.name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.err(e))?;
        if taken {
            return Err(version_exists(policy, &v.name));
        }
        let (action, days) = match v.action {
            RetentionAction::KeepForever => ("keep_forever", None),
            RetentionAction::Delete { days } => ("delete", Some(days)),
        };
        tx.execute(
            "INSERT INTO lifecycle_versions (policy, name, seq, action, days, published_at, published_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
            params![policy, v.name, count + 1, action, days, ts(v.published_at), v.published_by],
        )
        .map_err(|e| self.err(e))?;
        if active.is_none() {
            tx.execute(
                "UPDATE lifecycle_policies SET active_version = ? WHERE name = ?",
                params![v.name, policy],
            )
            .map_err(|e| self.err(e))?;
        }
        self.chain().append(&tx, event).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    fn update_lifecycle_policy(
        &self,
        policy: &str,
        enabled: bool,
        active_version: &str,
        events: &[NewEvent],
    ) -> Result<()> {
        let mut conn = self.writer.lock().expect("catalog writer lock");
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let scope: Option<(String, Option<String>)> = tx
            .query_row(
                "SELECT artifact_type, audio_type FROM lifecycle_policies WHERE name = ?",
                [policy],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
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
                .map_err(|e| self.err(e))?;
            if let Some(other) = other {
                return Err(other_enabled(&other, &artifact_type, audio_type.as_deref()));
            }
        }
        tx.execute(
            "UPDATE lifecycle_policies SET enabled = ?, active_version = ? WHERE name = ?",
            params![enabled, active_version, policy],
        )
        .map_err(|e| self.err(e))?;
        let mut chain = self.chain();
        for e in events {
            chain.append(&tx, e).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn lifecycle_policies(&self) -> Result<Vec<LifecyclePolicy>> {
        self.with_reader(|conn| {
            let mut policies = Vec::new();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT name, description, artifact_type, audio_type, enabled, active_version, created_at, created_by \
                     FROM lifecycle_policies ORDER BY name",
                )
                .map_err(|e| self.err(e))?;
            let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
            while let Some(r) = rows.next().map_err(|e| self.err(e))? {
                let get = |i| r.get::<_, String>(i).map_err(|e| self.err(e));
                let kind = get(2)?;
                let audio: Option<String> = r.get(3).map_err(|e| self.err(e))?;
                let created = get(6)?;
                policies.push(LifecyclePolicy {
                    name: get(0)?,
                    description: get(1)?,
                    artifact_type: kind
                        .parse()
                        .map_err(|_| self.corrupt("lifecycle_policies.artifact_type", &kind))?,
                    audio_type: match audio {
                        Some(a) => Some(
                            a.parse()
                                .map_err(|_| self.corrupt("lifecycle_policies.audio_type", &a))?,
                        ),
                        None => None,
                    },
                    enabled: r.get(4).map_err(|e| self.err(e))?,
                    active_version: r.get(5).map_err(|e| self.err(e))?,
                    versions: Vec::new(),
                    created_at: parse_ts(&created)
                        .ok_or_else(|| self.corrupt("lifecycle_policies.created_at", &created))?,
                    created_by: get(7)?,
                });
            }
            drop(rows);
            let mut stmt = conn
                .prepare_cached(
                    "SELECT policy, name, action, days, published_at, published_by FROM lifecycle_versions ORDER BY policy, seq",
                )
                .map_err(|e| self.err(e))?;
            let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
            while let Some(r) = rows.next().map_err(|e| self.err(e))? {
                let get = |i| r.get::<_, String>(i).map_err(|e| self.err(e));
                let policy = get(0)?;
                let action = get(2)?;
                let days: Option<u16> = r.get(3).map_err(|e| self.err(e))?;
                let published = get(4)?;
                let version = LifecycleVersion {
                    name: get(1)?,
                    action: match (action.as_str(), days) {
                        ("keep_forever", _) => RetentionAction::KeepForever,
                        ("delete", Some(days)) => RetentionAction::Delete { days },
                        _ => return Err(self.corrupt("lifecycle_versions.action", &action)),
                    },
                    published_at: parse_ts(&published)
                        .ok_or_else(|| self.corrupt("lifecycle_versions.published_at", &published))?,
                    published_by: get(5)?,
                };
                if let Some(p) = policies.iter_mut().find(|p| p.name == policy) {
                    p.versions.push(version);
                }
            }
            Ok(policies)
        })
    }

    fn due_artifacts(
        &self,
        q: &DueQuery,
        after: (i64, i64),
        limit: usize,
    ) -> Result<Vec<DueArtifact>> {
        let due_shift = i64::from(q.days) * 86_400_000;
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT c.pk, a.ordinal, c.tenant, c.id, c.rel_dir, a.file, a.size, c.start_ms + c.duration_ms, \
                     c.json_mtime_ns, c.json_size \
                     FROM conversations c JOIN artifacts a ON a.conversation = c.pk \
                     WHERE (c.pk, a.ordinal) > (?1, ?2) AND c.start_ms + c.duration_ms <= ?3 AND c.legal_hold = 0 \
                     AND a.kind = ?4 AND a.audio_type IS ?5 \
                     AND NOT EXISTS (SELECT 1 FROM artifact_deletions d WHERE d.conversation = c.pk AND d.file = a.file) \
                     ORDER BY c.pk, a.ordinal LIMIT ?6",
                )
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map(
                    params![
                        after.0,
                        after.1,
                        q.cutoff.timestamp_millis(),
                        q.artifact_type.as_str(),
                        q.audio_type.map(|a| a.as_str()),
                        limit as i64
                    ],
                    |r| {
                        let end_ms: i64 = r.get(7)?;
                        Ok(DueArtifact {
                            conversation_pk: r.get(0)?,
                            ordinal: r.get(1)?,
                            tenant: r.get(2)?,
                            conversation_id: r.get(3)?,
                            rel_dir: r.get(4)?,
                            file: r.get(5)?,
                            size: r.get(6)?,
                            policy: q.policy.clone(),
                            version: q.version.clone(),
                            due: DateTime::from_timestamp_millis(end_ms + due_shift)
                                .unwrap_or_default(),
                            record: Some(Fingerprint {
                                mtime_ns: r.get(8)?,
                                size: r.get(9)?,
                            }),
                        })
                    },
                )
                .map_err(|e| self.err(e))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| self.err(e))
        })
    }

    fn due_summary(&self, q: &DueQuery) -> Result<(u64, u64, Option<DateTime<Utc>>)> {
        self.with_reader(|conn| {
            let live = "c.legal_hold = 0 AND a.kind = ?2 AND a.audio_type IS ?3 \
                 AND NOT EXISTS (SELECT 1 FROM artifact_deletions d WHERE d.conversation = c.pk AND d.file = a.file)";
            let args = params![
                q.cutoff.timestamp_millis(),
                q.artifact_type.as_str(),
                q.audio_type.map(|a| a.as_str())
            ];
            let (count, bytes): (i64, i64) = conn
                .prepare_cached(&format!(
                    "SELECT count(*), coalesce(sum(a.size), 0) FROM conversations c JOIN artifacts a ON a.conversation = c.pk \
                     WHERE c.start_ms + c.duration_ms <= ?1 AND {live}"
                ))
                .and_then(|mut s| s.query_row(args, |r| Ok((r.get(0)?, r.get(1)?))))
                .map_err(|e| self.err(e))?;
            let next: Option<i64> = conn
                .prepare_cached(&format!(
                    "SELECT c.start_ms + c.duration_ms FROM conversations c JOIN artifacts a ON a.conversation = c.pk \
                     WHERE c.start_ms + c.duration_ms > ?1 AND {live} ORDER BY c.start_ms + c.duration_ms LIMIT 1"
                ))
                .and_then(|mut s| s.query_row(args, |r| r.get(0)).optional())
                .map_err(|e| self.err(e))?;
            Ok((
                count as u64,
                bytes as u64,
                next.and_then(DateTime::from_timestamp_millis),
            ))
        })
    }

    fn live_artifact_count(&self) -> Result<u64> {
        self.with_reader(|conn| {
            conn.query_row(
                "SELECT (SELECT count(*) FROM artifacts) - (SELECT count(*) FROM artifact_deletions)",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err(e))
        })
    }

    fn begin_deletes(&self, intents: &[DueArtifact]) -> Result<()> {
        let mut conn = self.writer.lock().expect("catalog writer lock");
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO delete_intents (conversation, ordinal, tenant, conversation_id, rel_dir, file, size, policy, version, due) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .map_err(|e| self.err(e))?;
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
                .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn pending_deletes(&self) -> Result<Vec<DueArtifact>> {
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT d.conversation, d.ordinal, d.tenant, d.conversation_id, d.rel_dir, d.file, d.size, \
                     d.policy, d.version, d.due, c.json_mtime_ns, c.json_size \
                     FROM delete_intents d LEFT JOIN conversations c ON c.pk = d.conversation \
                     ORDER BY d.conversation, d.ordinal",
                )
                .map_err(|e| self.err(e))?;
            let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(|e| self.err(e))? {
                let due: String = r.get(9).map_err(|e| self.err(e))?;
                out.push(DueArtifact {
                    conversation_pk: r.get(0).map_err(|e| self.err(e))?,
                    ordinal: r.get(1).map_err(|e| self.err(e))?,
                    tenant: r.get(2).map_err(|e| self.err(e))?,
                    conversation_id: r.get(3).map_err(|e| self.err(e))?,
                    rel_dir: r.get(4).map_err(|e| self.err(e))?,
                    file: r.get(5).map_err(|e| self.err(e))?,
                    size: r.get(6).map_err(|e| self.err(e))?,
                    policy: r.get(7).map_err(|e| self.err(e))?,
                    version: r.get(8).map_err(|e| self.err(e))?,
                    due: parse_ts(&due).ok_or_else(|| self.corrupt("delete_intents.due", &due))?,
                    record: match (
                        r.get::<_, Option<i64>>(10).map_err(|e| self.err(e))?,
                        r.get::<_, Option<u64>>(11).map_err(|e| self.err(e))?,
                    ) {
                        (Some(mtime_ns), Some(size)) => Some(Fingerprint { mtime_ns, size }),
                        _ => None,
                    },
                });
            }
            Ok(out)
        })
    }

    fn finish_deletes(
        &self,
        outcomes: &[(DueArtifact, DeleteOutcome)],
        actor: &str,
        run: Option<RunId>,
    ) -> Result<()> {
        let mut conn = self.writer.lock().expect("catalog writer lock");
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let now = Utc::now();
        let mut chain = self.chain();
        for (a, outcome) in outcomes {
            if let DeleteOutcome::Deleted { was_missing } = outcome {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO artifact_deletions (conversation, file, deleted_at, policy, version) VALUES (?, ?, ?, ?, ?)",
                )
                .and_then(|mut s| s.execute(params![a.conversation_pk, a.file, ts(now), a.policy, a.version]))
                .map_err(|e| self.err(e))?;
                chain
                    .append(&tx, &deletion_event(a, *was_missing, now, actor, run))
                    .map_err(|e| self.err(e))?;
            }
            tx.prepare_cached("DELETE FROM delete_intents WHERE conversation = ? AND ordinal = ?")
                .and_then(|mut s| s.execute(params![a.conversation_pk, a.ordinal]))
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }
}

impl UploadJournal for SqliteCatalog {
    fn upload_started(
        &self,
        target: &str,
        key: &str,
        upload_id: &str,
        run: Option<RunId>,
    ) -> Result<()> {
        let conn = self.writer.lock().expect("catalog writer lock");
        conn.prepare_cached(
            "INSERT OR REPLACE INTO open_uploads (target, upload_id, key, started_at, run) VALUES (?, ?, ?, ?, ?)",
        )
        .and_then(|mut s| {
            s.execute(params![
                target,
                upload_id,
                key,
                ts(Utc::now()),
                run.map(|r| r.0)
            ])
        })
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    fn upload_ended(&self, target: &str, upload_id: &str) -> Result<()> {
        let conn = self.writer.lock().expect("catalog writer lock");
        conn.prepare_cached("DELETE FROM open_uploads WHERE target = ? AND upload_id = ?")
            .and_then(|mut s| s.execute(params![target, upload_id]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn abandoned_uploads(&self, target: &str, run: Option<RunId>) -> Result<Vec<OpenUpload>> {
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT key, upload_id FROM open_uploads u WHERE target = ?1 \
                     AND (u.run IS NULL OR u.run IS ?2 OR NOT EXISTS \
                          (SELECT 1 FROM job_runs j WHERE j.id = u.run AND j.status = 'running')) \
                     ORDER BY started_at, upload_id",
                )
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map(params![target, run.map(|r| r.0)], |r| {
                    Ok(OpenUpload {
                        key: r.get(0)?,
                        upload_id: r.get(1)?,
                    })
                })
                .map_err(|e| self.err(e))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| self.err(e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::conformance;

    fn fresh() -> (tempfile::TempDir, SqliteCatalog) {
        let dir = tempfile::tempdir().unwrap();
        let cat = SqliteCatalog::open(&dir.path().join("c.db")).unwrap();
        (dir, cat)
    }

    conformance::conformance_suite!(fresh);

    #[test]
    fn keyed_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        conformance::keyed_chain(&|key| {
            Box::new(SqliteCatalog::open(&path).unwrap().with_audit_key(key))
        });
    }

    #[test]
    fn sql_agrees_with_predicate() {
        let dir = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicU32::new(0);
        conformance::sql_agrees_with_predicate(&|| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::new(SqliteCatalog::open(&dir.path().join(format!("c{i}.db"))).unwrap())
        });
    }

    #[test]
    fn failed_subjects_are_probed_through_an_index_not_a_scan_of_the_run() {
        let (_dir, cat) = fresh();
        for (sql, n) in [(RUN_COUNTERS, 1), (FAILED_ITEMS, 2)] {
            let plan: Vec<String> = cat
                .with_reader(|conn| {
                    let mut stmt = conn
                        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                        .map_err(|e| cat.err(e))?;
                    let rows = stmt
                        .query_map(params_from_iter([1, 10].into_iter().take(n)), |r| {
                            r.get::<_, String>(3)
                        })
                        .map_err(|e| cat.err(e))?;
                    rows.collect::<rusqlite::Result<_>>()
                        .map_err(|e| cat.err(e))
                })
                .unwrap();
            assert!(
                plan.iter()
                    .any(|l| l.contains("SEARCH x USING COVERING INDEX run_items_subject")),
                "{sql}:\n{}",
                plan.join("\n")
            );
        }
    }

    #[test]
    fn processes_opening_a_new_catalog_at_once_migrate_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let barrier = std::sync::Barrier::new(6);
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    barrier.wait();
                    SqliteCatalog::open(&path).unwrap();
                });
            }
        });
        assert_eq!(
            SqliteCatalog::open(&path)
                .unwrap()
                .conversation_count()
                .unwrap(),
            0
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        drop(SqliteCatalog::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = SqliteCatalog::open(&path).err().unwrap().to_string();
        assert!(err.contains("upgrade custodian"), "{err}");
    }
}
