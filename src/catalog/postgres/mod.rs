//! The shared catalog: PostgreSQL, for several nodes working on one repository. Same tables and
//! rules as the SQLite catalog, in the schema the connection's `search_path` names (set it with
//! `?options=-c%20search_path%3DNAME` in the URL), with migrations numbered in a table and
//! applied under an advisory lock.
//!
//! Connections come from a small pool, each with its own prepared statements. Batches (index
//! changes, item outcomes, flag pages, deletions) are written with a few statements over array
//! parameters (`unnest`), not one round trip per row. Every transaction that appends audit
//! events first locks the chain-head row, so writers in any number of processes extend one
//! unbroken hash chain. A policy lock is a session advisory lock held by a connection of its
//! own, which the server releases if the process dies.
//!
//! The statements both catalogs agree on are in `catalog/sql.rs`, and rows become records in
//! `catalog/rows.rs`; what is written here is PostgreSQL's own.
//!
//! Every `[NOT] EXISTS` against a table that a run grows (`run_items`, `export_state`,
//! `artifact_deletions`) ends in `OFFSET 0`, which keeps it a per-row probe of that table's
//! index. Those rows arrive faster than autovacuum's statistics follow, and a join planned from
//! statistics that still say "a handful of rows" rescans all of them for every row it is
//! checked against: 9 s instead of 24 ms for a page of 512 at 20,000 rows.

mod accounts;
mod audit;
mod conversations;
mod holds;
mod index;
mod lifecycle;
mod pool;
mod runs;
mod schema;
mod select;
#[cfg(test)]
pub(crate) mod tests;
mod units;
mod uploads;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use postgres::config::{Host, SslMode};
use postgres::row::RowIndex;
use postgres::types::{FromSql, ToSql};
use postgres::{Client, NoTls, Row};
use sha2::{Digest, Sha256};

use super::rows::Fields;
use super::{
    AuditQuery, Catalog, CatalogError, Claimed, ConfidentialPage, Counters, Exclude, FailedItem,
    Fingerprint, IndexChange, ItemOutcome, JobRun, KeyClaim, Mode, ObjectRecord, PolicyLock,
    Result, RunId, RunPage, RunStatus, Selected, redact_url,
};
use crate::audit::{AuditEvent, AuditHead, KeySource, NewEvent};
use crate::catalog::conversations::{ConversationDetail, ConversationSearch, ConversationSummary};
use crate::catalog::holds::{ConversationRef, HoldScope, HoldSync, Matter, MatterState};
use crate::catalog::lifecycle::{
    ChangeState, DeleteOutcome, DueArtifact, DueCount, DueQuery, LifecyclePolicy, LifecycleVersion,
    PendingChange, QuarantineCount, QuarantineOutcome, QuarantineSelect, QuarantineState,
    Quarantined,
};
use crate::catalog::totals::RunMetrics;
use crate::filter::{Filter, SqlValue};
use pool::Conn;
use schema::MIGRATIONS;

/// Idle connections the pool keeps; more are opened while more threads need one.
const IDLE: usize = 8;

/// Prepared statements a connection keeps before its cache starts over (selection SQL
/// varies with each policy's criteria).
const STATEMENTS: usize = 256;

/// How long to wait for the server when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL catalog.
pub struct PostgresCatalog {
    config: postgres::Config,
    location: String,
    schema: String,
    idle: Mutex<Vec<Conn>>,
    audit_key: Option<KeySource>,
}

/// Why an operation failed, before the catalog's location is attached.
enum Failure {
    Db(postgres::Error),
    Catalog(CatalogError),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Failure {
        Failure::Db(e)
    }
}

impl From<CatalogError> for Failure {
    fn from(e: CatalogError) -> Failure {
        Failure::Catalog(e)
    }
}

type Fallible<T> = std::result::Result<T, Failure>;

/// A postgres error with its causes (the server's message, the OS error), on one line.
pub(crate) fn describe(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string().replace('\n', "; "));
        cause = c.source();
    }
    text
}

/// Parses a catalog URL without connecting; the message never shows its password.
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    parse_url(url).map(drop)
}

fn parse_url(url: &str) -> std::result::Result<postgres::Config, String> {
    let config: postgres::Config = url.parse().map_err(|e| {
        format!(
            "`{}` is not a PostgreSQL URL: {}",
            redact_url(url),
            describe(&e)
        )
    })?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err(format!(
            "`{}` requires TLS (sslmode=require), and custodian connects to PostgreSQL without it; reach the server over a trusted network or a TLS tunnel and drop sslmode",
            redact_url(url)
        ));
    }
    Ok(config)
}

/// `host:port` of each server the config names.
fn servers(config: &postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
            }
        })
        .collect();
    if hosts.is_empty() {
        "(no host in the URL)".into()
    } else {
        hosts.join(", ")
    }
}

/// A connection whose commits are durable before they return: a role or database set to
/// `synchronous_commit = off` is overruled for custodian's sessions, since a commit here may
/// authorize an irreversible step (docs/operations.md, "Durability"). Stronger settings
/// (`remote_apply`, …) are kept.
fn connect(config: &postgres::Config) -> std::result::Result<Client, String> {
    let failed = |e: postgres::Error| {
        format!(
            "cannot connect to PostgreSQL at {}: {}; check that the server is running and accepts connections there, and the user, password (in the URL or PGPASSWORD) and database in catalog.url",
            servers(config),
            describe(&e)
        )
    };
    let mut client = config.connect(NoTls).map_err(failed)?;
    let setting: String = client
        .query_one("SELECT current_setting('synchronous_commit')", &[])
        .map_err(failed)?
        .get(0);
    if setting == "off" {
        client
            .batch_execute("SET synchronous_commit = on")
            .map_err(failed)?;
    }
    Ok(client)
}

fn int(v: u64) -> Fallible<i64> {
    i64::try_from(v).map_err(|_| {
        Failure::Catalog(CatalogError::Refused(format!(
            "{v} is too large for the catalog (at most {})",
            i64::MAX
        )))
    })
}

/// An instant as stored: TIMESTAMPTZ keeps microseconds, and so does the audit hash's text.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

fn sql_params(values: &[SqlValue]) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|v| match v {
            SqlValue::Int(i) => i as &(dyn ToSql + Sync),
            SqlValue::Text(s) => s as &(dyn ToSql + Sync),
        })
        .collect()
}

/// Keeps the last of the items that share a key, in the order the survivors came (what a
/// series of `INSERT OR REPLACE` leaves, and one `ON CONFLICT DO UPDATE` cannot take twice).
fn last_of_each<T, K: std::hash::Hash + Eq>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut last: HashMap<K, usize> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        last.insert(key(item), i);
    }
    items
        .into_iter()
        .enumerate()
        .filter(|(i, item)| last.get(&key(item)) == Some(i))
        .map(|(_, item)| item)
        .collect()
}

impl PostgresCatalog {
    /// Appends audit events keyed with the key at `key` (None: unkeyed, refused once the
    /// chain is keyed).
    pub fn with_audit_key(mut self, key: Option<KeySource>) -> PostgresCatalog {
        self.audit_key = key;
        self
    }

    /// Connects, checks the schema to work in, and brings the catalog's tables up to date.
    /// Credentials come from the URL, else `PGUSER` and `PGPASSWORD`.
    pub fn open(url: &str) -> Result<PostgresCatalog> {
        let location = redact_url(url);
        let open_err = |message: String| CatalogError::Open {
            location: location.clone(),
            message,
        };
        let mut config = parse_url(url).map_err(open_err)?;
        if config.get_user().is_none()
            && let Ok(user) = std::env::var("PGUSER")
        {
            config.user(&user);
        }
        if config.get_password().is_none()
            && let Ok(password) = std::env::var("PGPASSWORD")
        {
            config.password(password.as_bytes());
        }
        if config.get_application_name().is_none() {
            config.application_name("custodian");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let mut client = connect(&config).map_err(open_err)?;
        let db = |e: postgres::Error| CatalogError::Postgres {
            location: location.clone(),
            error: e,
        };
        let schema: Option<String> = client
            .query_one("SELECT current_schema()", &[])
            .and_then(|r| r.try_get(0))
            .map_err(db)?;
        let Some(schema) = schema else {
            let path: String = client
                .query_one("SHOW search_path", &[])
                .and_then(|r| r.try_get(0))
                .map_err(db)?;
            return Err(open_err(format!(
                "search_path `{path}` names no schema that exists; create the schema (CREATE SCHEMA …) or change `options=-c search_path=…` in catalog.url"
            )));
        };
        let this = PostgresCatalog {
            config,
            location,
            schema,
            idle: Mutex::new(Vec::new()),
            audit_key: None,
        };
        let mut conn = Conn {
            client,
            statements: HashMap::new(),
        };
        this.migrate(&mut conn.client).map_err(|f| this.fail(f))?;
        this.idle.lock().expect("catalog pool lock").push(conn);
        Ok(this)
    }

    /// Brings the schema up to date in one transaction, under an advisory lock on this schema,
    /// so processes opening a new catalog at the same moment apply each migration once.
    fn migrate(&self, client: &mut Client) -> Fallible<()> {
        let mut tx = client.transaction()?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&self.lock_key("migrate", "")],
        )?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS custodian_schema (version BIGINT PRIMARY KEY, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )?;
        let version: i64 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM custodian_schema",
                &[],
            )?
            .try_get(0)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(Failure::Catalog(CatalogError::Open {
                location: self.location.clone(),
                message: format!(
                    "schema version {version} is newer than this build knows ({known}); upgrade custodian"
                ),
            }));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO custodian_schema (version) VALUES ($1)",
                &[&(i as i64 + 1)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// An advisory-lock key for `what` on `name` in this catalog's schema (locks are per
    /// database, and tests share one database between many schemas).
    fn lock_key(&self, what: &str, name: &str) -> i64 {
        let digest = Sha256::new()
            .chain_update(b"custodian\0")
            .chain_update(what)
            .chain_update(b"\0")
            .chain_update(&self.schema)
            .chain_update(b"\0")
            .chain_update(name)
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(first)
    }

    fn fail(&self, f: Failure) -> CatalogError {
        match f {
            Failure::Db(error) => CatalogError::Postgres {
                location: self.location.clone(),
                error,
            },
            Failure::Catalog(e) => e,
        }
    }

    fn corrupt(&self, column: &'static str, value: impl ToString) -> CatalogError {
        CatalogError::Corrupt {
            location: self.location.clone(),
            column,
            value: value.to_string(),
        }
    }

    fn unsigned(&self, column: &'static str, v: i64) -> Fallible<u64> {
        Ok(u64::try_from(v).map_err(|_| self.corrupt(column, v))?)
    }
}

// Each operation lives in the module of its concern.
impl Catalog for PostgresCatalog {
    fn work_units(&self) -> Option<&dyn crate::catalog::units::WorkUnits> {
        Some(self)
    }

    fn location(&self) -> String {
        self.location.clone()
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

impl PostgresCatalog {
    /// Makes a value of each row.
    fn rows<T>(
        &self,
        rows: Vec<Row>,
        mut each: impl FnMut(&Columns<'_>) -> Result<T>,
    ) -> Fallible<Vec<T>> {
        rows.iter()
            .map(|row| Ok(each(&self.columns(row))?))
            .collect()
    }

    fn columns<'a>(&'a self, row: &'a Row) -> Columns<'a> {
        Columns { row, cat: self }
    }
}

/// A result row, read the way PostgreSQL stores each kind of value.
struct Columns<'a> {
    row: &'a Row,
    cat: &'a PostgresCatalog,
}

impl<'a> Columns<'a> {
    fn get<T: FromSql<'a>>(&self, k: impl RowIndex + std::fmt::Display) -> Result<T> {
        self.row.try_get(k).map_err(|e| self.cat.fail(e.into()))
    }
}

impl<K: RowIndex + std::fmt::Display + Copy> Fields<K> for Columns<'_> {
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

    fn unsigned(&self, k: K, column: &'static str) -> Result<u64> {
        let v: i64 = self.get(k)?;
        u64::try_from(v).map_err(|_| self.cat.corrupt(column, v))
    }

    fn opt_unsigned(&self, k: K, column: &'static str) -> Result<Option<u64>> {
        let v: Option<i64> = self.get(k)?;
        v.map(|v| u64::try_from(v).map_err(|_| self.cat.corrupt(column, v)))
            .transpose()
    }

    fn instant(&self, k: K, _column: &'static str) -> Result<DateTime<Utc>> {
        self.get(k)
    }

    fn opt_instant(&self, k: K) -> Result<Option<DateTime<Utc>>> {
        self.get(k)
    }

    fn corrupt(&self, column: &'static str, value: &str) -> CatalogError {
        self.cat.corrupt(column, value)
    }
}
