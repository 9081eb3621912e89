//! The embedded catalog: one SQLite file in WAL mode. One writer connection, a small pool of
//! reader connections (WAL lets them read while the writer commits), and migrations numbered by
//! `PRAGMA user_version`. A batch is written row by row in one transaction (an index batch
//! with a savepoint per record); the statements both catalogs share are in `catalog/sql.rs`.

mod accounts;
mod audit;
mod conversations;
mod holds;
mod index;
mod lifecycle;
mod runs;
mod schema;
mod select;
#[cfg(test)]
mod tests;
mod uploads;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::types::FromSql;
use rusqlite::{Connection, Row, RowIndex};

use super::rows::Fields;
use super::{
    AuditQuery, Catalog, CatalogError, Claimed, ConfidentialPage, Counters, Exclude, FailedItem,
    Fingerprint, IndexChange, ItemOutcome, JobRun, KeyClaim, Mode, ObjectRecord, PolicyLock,
    Result, RunId, RunPage, RunStatus, Selected,
};
use crate::audit::{AuditEvent, AuditHead, KeyError, KeySource, NewEvent};
use crate::catalog::conversations::{ConversationDetail, ConversationSearch, ConversationSummary};
use crate::catalog::holds::{ConversationRef, HoldScope, HoldSync, Matter, MatterState};
use crate::catalog::lifecycle::{
    ChangeState, DeleteOutcome, DueArtifact, DueCount, DueQuery, LifecyclePolicy, LifecycleVersion,
    PendingChange, QuarantineCount, QuarantineOutcome, QuarantineSelect, QuarantineState,
    Quarantined,
};
use crate::catalog::totals::RunMetrics;
use crate::filter::{Filter, SqlValue};
use schema::MIGRATIONS;

/// Creates an empty catalog file that others cannot read: `mode` (0660, or 0600 for a service's
/// own catalog) less the umask, and never a bit for others whatever the umask. SQLite gives its WAL and shared-memory files the mode
/// of the database file, so they stay closed too; a group of users sharing the catalog gets
/// read and write through the group (docs/operations.md, "Several users on one SQLite
/// catalog"). A file another process created meanwhile is left as it is.
fn create_closed(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |e: std::io::Error| CatalogError::Open {
        location: path.display().to_string(),
        message: format!("cannot create the catalog file: {e}"),
    };
    let file = match File::options()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    let mode = file.metadata().map_err(err)?.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & !0o007))
            .map_err(err)?;
    }
    Ok(())
}

/// The SQLite catalog.
pub struct SqliteCatalog {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    audit_key: Option<KeySource>,
}

impl SqliteCatalog {
    /// Opens (creating if needed, mode 0660 less the umask) the catalog file and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<SqliteCatalog> {
        SqliteCatalog::open_creating(path, 0o660)
    }

    /// Opens the catalog file as [`SqliteCatalog::open`] does, creating a missing one 0600: a
    /// service's own catalog, which only its user writes.
    pub fn open_private(path: &Path) -> Result<SqliteCatalog> {
        SqliteCatalog::open_creating(path, 0o600)
    }

    fn open_creating(path: &Path, mode: u32) -> Result<SqliteCatalog> {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // The directories whose entries a new catalog adds to: its own, and those of the
        // directories created for it, up to the first that existed. A relative path's last
        // ancestor is "", the working directory.
        let mut new_entries_in: Vec<&Path> = Vec::new();
        if !path.exists() {
            for dir in parent.ancestors() {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                new_entries_in.push(dir);
                if dir.exists() {
                    break;
                }
            }
        }
        std::fs::create_dir_all(parent).map_err(|e| CatalogError::Open {
            location: path.display().to_string(),
            message: format!("cannot create directory {}: {e}", parent.display()),
        })?;
        if !new_entries_in.is_empty() {
            create_closed(path, mode)?;
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
            // Every transaction of the writer writes, most after reading what they check (a
            // change still pending, a hold still active). Begun deferred, one that reads while
            // another connection commits cannot take the write lock and fails at once with
            // SQLITE_BUSY, past the busy handler: two approvals of one change racing (over the
            // service's socket, or from two processes) saw "database is locked". Begun
            // IMMEDIATE, it waits for the lock and then reads what the other committed.
            conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
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
        // SQLite syncs its WAL's directory entry itself, not the database file's: a new
        // catalog's entries are made durable here, before anything is recorded in it.
        for dir in new_entries_in {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| CatalogError::Open {
                    location: path.display().to_string(),
                    message: format!("cannot sync directory {}: {e}", dir.display()),
                })?;
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

    /// `synchronous = FULL`: under NORMAL a WAL commit can roll back after a power cut, and
    /// commits here authorize or record irreversible steps (a delete intent, an export, a
    /// deletion's event; docs/operations.md, "Durability").
    fn configure(&self, conn: &Connection) -> Result<()> {
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
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

    /// Runs `sql` on `conn` and makes a value of each row.
    fn rows<T>(
        &self,
        conn: &Connection,
        sql: &str,
        params: impl rusqlite::Params,
        mut each: impl FnMut(&Columns<'_, '_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut stmt = conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let mut rows = stmt.query(params).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            out.push(each(&Columns { row, cat: self })?);
        }
        Ok(out)
    }
}

// Each operation lives in the module of its concern.
impl Catalog for SqliteCatalog {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn fingerprints_under(&self, rel_prefix: &str) -> Result<Vec<(String, Fingerprint)>> {
        index::fingerprints_under(self, rel_prefix)
    }

    fn indexed_days(&self) -> Result<Vec<String>> {
        index::indexed_days(self)
    }

    fn apply_index(&self, changes: &[IndexChange]) -> Result<Vec<Option<String>>> {
        index::apply_index(self, changes)
    }

    fn conversation_count(&self) -> Result<u64> {
        index::conversation_count(self)
    }

    fn count_selection(&self, filter: &Filter, exclude: &Exclude) -> Result<u64> {
        select::count_selection(self, filter, exclude)
    }

    fn select_page(
        &self,
        filter: &Filter,
        exclude: &Exclude,
        after_rowid: i64,
        limit: usize,
    ) -> Result<Vec<Selected>> {
        select::select_page(self, filter, exclude, after_rowid, limit)
    }

    fn set_confidential_page(
        &self,
        page: &ConfidentialPage<'_>,
        after_rowid: i64,
    ) -> Result<(u64, u64, i64)> {
        select::set_confidential_page(self, page, after_rowid)
    }

    fn lock_policy(&self, policy: &str) -> Result<Box<dyn PolicyLock>> {
        runs::lock_policy(self, policy)
    }

    fn interrupted_run(&self, policy: &str) -> Result<Option<JobRun>> {
        runs::interrupted_run(self, policy)
    }

    fn begin_run(&self, policy: &str, mode: Mode, target: &str) -> Result<RunId> {
        runs::begin_run(self, policy, mode, target)
    }

    fn resume_run(&self, run: RunId) -> Result<()> {
        runs::resume_run(self, run)
    }

    fn claim_keys(
        &self,
        target: &str,
        run: RunId,
        batch: &[Vec<KeyClaim>],
    ) -> Result<Vec<Claimed>> {
        runs::claim_keys(self, target, run, batch)
    }

    fn record_outcomes(&self, run: RunId, policy: &str, outcomes: &[ItemOutcome]) -> Result<()> {
        runs::record_outcomes(self, run, policy, outcomes)
    }

    fn run_counters(&self, run: RunId) -> Result<Counters> {
        runs::run_counters(self, run)
    }

    fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        counters: &Counters,
        manifest_key: Option<&str>,
        error_summary: Option<&str>,
    ) -> Result<()> {
        runs::finish_run(self, run, status, counters, manifest_key, error_summary)
    }

    fn set_run_log(&self, run: RunId, path: &str) -> Result<()> {
        runs::set_run_log(self, run, path)
    }

    fn set_run_notification(&self, run: RunId, text: &str) -> Result<()> {
        runs::set_run_notification(self, run, text)
    }

    fn set_run_held_back(&self, run: RunId, text: &str) -> Result<()> {
        runs::set_run_held_back(self, run, text)
    }

    fn run_objects(
        &self,
        run: RunId,
        each: &mut dyn FnMut(ObjectRecord) -> std::io::Result<()>,
    ) -> Result<std::io::Result<()>> {
        runs::run_objects(self, run, each)
    }

    fn job_runs(&self, policy: Option<&str>, limit: usize) -> Result<Vec<JobRun>> {
        runs::job_runs(self, policy, limit)
    }

    fn job_run(&self, run: RunId) -> Result<Option<JobRun>> {
        runs::job_run(self, run)
    }

    fn job_runs_page(&self, page: &RunPage) -> Result<Vec<JobRun>> {
        runs::job_runs_page(self, page)
    }

    fn failed_items(&self, run: RunId, limit: usize) -> Result<Vec<FailedItem>> {
        runs::failed_items(self, run, limit)
    }

    fn prune_runs(&self, policy: &str, before: DateTime<Utc>) -> Result<u64> {
        runs::prune_runs(self, policy, before)
    }

    fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        audit::audit_events(self, query)
    }

    fn audit_head(&self) -> Result<AuditHead> {
        audit::audit_head(self)
    }

    fn append_audit_event(&self, event: &NewEvent) -> Result<()> {
        audit::append_audit_event(self, event)
    }

    fn newest_verification(&self) -> Result<Option<AuditEvent>> {
        audit::newest_verification(self)
    }

    fn create_lifecycle_policy(&self, policy: &LifecyclePolicy, event: &NewEvent) -> Result<()> {
        lifecycle::create_policy(self, policy, event)
    }

    fn publish_lifecycle_version_activating(
        &self,
        policy: &str,
        version: &LifecycleVersion,
        activate_first: bool,
        event: &NewEvent,
    ) -> Result<bool> {
        lifecycle::publish_version(self, policy, version, activate_first, event)
    }

    fn update_lifecycle_policy(
        &self,
        policy: &str,
        enabled: bool,
        active_version: &str,
        events: &[NewEvent],
    ) -> Result<()> {
        lifecycle::update_policy(self, policy, enabled, active_version, events)
    }

    fn lifecycle_policies(&self) -> Result<Vec<LifecyclePolicy>> {
        lifecycle::policies(self)
    }

    fn due_artifacts(
        &self,
        query: &DueQuery,
        after: (i64, i64),
        limit: usize,
    ) -> Result<Vec<DueArtifact>> {
        lifecycle::due_artifacts(self, query, after, limit)
    }

    fn due_summary(&self, query: &DueQuery) -> Result<DueCount> {
        lifecycle::due_summary(self, query)
    }

    fn live_artifact_count(&self) -> Result<u64> {
        lifecycle::live_artifact_count(self)
    }

    fn begin_deletes(&self, intents: &[DueArtifact]) -> Result<()> {
        lifecycle::begin_deletes(self, intents)
    }

    fn pending_deletes(&self) -> Result<Vec<DueArtifact>> {
        lifecycle::pending_deletes(self)
    }

    fn finish_deletes(
        &self,
        outcomes: &[(DueArtifact, DeleteOutcome)],
        actor: &str,
        run: Option<RunId>,
    ) -> Result<()> {
        lifecycle::finish_deletes(self, outcomes, actor, run)
    }

    fn request_lifecycle_change(&self, change: &PendingChange, events: &[NewEvent]) -> Result<i64> {
        lifecycle::request_change(self, change, events)
    }

    fn lifecycle_changes(&self, pending_only: bool) -> Result<Vec<PendingChange>> {
        lifecycle::changes(self, pending_only)
    }

    fn expire_lifecycle_changes(
        &self,
        at: DateTime<Utc>,
        actor: &str,
    ) -> Result<Vec<PendingChange>> {
        lifecycle::expire_changes(self, at, actor)
    }

    fn decide_lifecycle_change(
        &self,
        id: i64,
        to: ChangeState,
        by: &str,
        at: DateTime<Utc>,
        events: &[NewEvent],
    ) -> Result<PendingChange> {
        lifecycle::decide_change(self, id, to, by, at, events)
    }

    fn begin_quarantine(
        &self,
        intents: &[(DueArtifact, String)],
        run: Option<RunId>,
    ) -> Result<()> {
        lifecycle::begin_quarantine(self, intents, run)
    }

    fn quarantined(&self, select: &QuarantineSelect) -> Result<Vec<Quarantined>> {
        lifecycle::quarantined(self, select)
    }

    fn mark_quarantine(
        &self,
        entries: &[Quarantined],
        state: QuarantineState,
        exempt: bool,
    ) -> Result<()> {
        lifecycle::mark_quarantine(self, entries, state, exempt)
    }

    fn finish_quarantine(
        &self,
        outcomes: &[(Quarantined, QuarantineOutcome)],
        actor: &str,
        run: Option<RunId>,
    ) -> Result<()> {
        lifecycle::finish_quarantine(self, outcomes, actor, run)
    }

    fn quarantine_counts(&self, purge_cutoff: DateTime<Utc>) -> Result<Vec<QuarantineCount>> {
        lifecycle::quarantine_counts(self, purge_cutoff)
    }

    fn create_matter(&self, matter: &Matter, event: &NewEvent) -> Result<()> {
        holds::create_matter(self, matter, event)
    }

    fn place_hold(
        &self,
        matter: &str,
        scope: &HoldScope,
        at: DateTime<Utc>,
        by: &str,
        event: &NewEvent,
        sync_targets: &[String],
    ) -> Result<i64> {
        holds::place_hold(self, matter, scope, at, by, event, sync_targets)
    }

    fn release_holds(
        &self,
        matter: &str,
        at: DateTime<Utc>,
        by: &str,
        event: &NewEvent,
        sync_targets: &[String],
    ) -> Result<u64> {
        holds::release_holds(self, matter, at, by, event, sync_targets)
    }

    fn matters(&self, only: Option<&str>) -> Result<Vec<MatterState>> {
        holds::matters(self, only)
    }

    fn holding_matters(&self, pks: &[i64]) -> Result<HashMap<i64, Vec<String>>> {
        holds::holding_matters(self, pks)
    }

    fn hold_syncs(&self, after: Option<&ConversationRef>, limit: usize) -> Result<Vec<HoldSync>> {
        holds::hold_syncs(self, after, limit)
    }

    fn finish_hold_syncs(&self, done: &[HoldSync], events: &[NewEvent]) -> Result<()> {
        holds::finish_hold_syncs(self, done, events)
    }

    fn search_conversations(
        &self,
        search: &ConversationSearch,
    ) -> Result<Vec<ConversationSummary>> {
        conversations::search(self, search)
    }

    fn conversation_detail(&self, tenant: &str, id: &str) -> Result<Option<ConversationDetail>> {
        conversations::detail(self, tenant, id)
    }

    fn run_metrics(&self) -> Result<RunMetrics> {
        conversations::run_metrics(self)
    }
}

/// A result row, read the way SQLite stores each kind of value.
struct Columns<'a, 'r> {
    row: &'a Row<'r>,
    cat: &'a SqliteCatalog,
}

impl Columns<'_, '_> {
    fn get<T: FromSql>(&self, k: impl RowIndex) -> Result<T> {
        self.row.get(k).map_err(|e| self.cat.err(e))
    }
}

impl<K: RowIndex + Copy> Fields<K> for Columns<'_, '_> {
    fn text(&self, k: K) -> Result<String> {
        self.get(k)
    }

    fn opt_text(&self, k: K) -> Result<Option<String>> {
        self.get(k)
    }

    fn int(&self, k: K) -> Result<i64> {
        self.get(k)
    }

    fn opt_int(&self, k: K) -> Result<Option<i64>> {
        self.get(k)
    }

    fn flag(&self, k: K) -> Result<bool> {
        self.get(k)
    }

    fn unsigned(&self, k: K, _column: &'static str) -> Result<u64> {
        self.get(k)
    }

    fn opt_unsigned(&self, k: K, _column: &'static str) -> Result<Option<u64>> {
        self.get(k)
    }

    fn instant(&self, k: K, column: &'static str) -> Result<DateTime<Utc>> {
        let v: String = self.get(k)?;
        parse_ts(&v).ok_or_else(|| self.cat.corrupt(column, &v))
    }

    fn opt_instant(&self, k: K) -> Result<Option<DateTime<Utc>>> {
        Ok(self.get::<Option<String>>(k)?.as_deref().and_then(parse_ts))
    }

    fn corrupt(&self, column: &'static str, value: &str) -> CatalogError {
        self.cat.corrupt(column, value)
    }
}

/// A policy lock: an exclusive lock on a file of its own next to the catalog.
struct FileLock {
    _file: File,
}

impl PolicyLock for FileLock {}

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
