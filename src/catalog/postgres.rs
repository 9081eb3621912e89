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
//! Every `[NOT] EXISTS` against a table that a run grows (`run_items`, `export_state`,
//! `artifact_deletions`) ends in `OFFSET 0`, which keeps it a per-row probe of that table's
//! index. Those rows arrive faster than autovacuum's statistics follow, and a join planned from
//! statistics that still say "a handful of rows" rescans all of them for every row it is
//! checked against: 9 s instead of 24 ms for a page of 512 at 20,000 rows.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use postgres::config::{Host, SslMode};
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Statement, Transaction};
use sha2::{Digest, Sha256};

use super::lifecycle::{
    DeleteOutcome, DueArtifact, DueQuery, LifecyclePolicy, LifecycleVersion, RetentionAction,
};
use super::uploads::{OpenUpload, UploadJournal};
use super::{
    AuditQuery, Catalog, CatalogError, ConfidentialPage, Counters, Exclude, ExportedArtifact,
    FailedItem, Fingerprint, IndexChange, ItemOutcome, JobRun, KeyClaim, Mode, ObjectRecord,
    PolicyLock, Result, RunId, RunStatus, Selected, deletion_event, duplicate_id, flag_event,
    other_enabled, policy_exists, redact_url, unknown_policy, unstorable, version_exists,
};
use crate::audit::{AuditEvent, AuditHead, AuditKind, ChainKey, KeyError, KeySource, NewEvent};
use crate::filter::{Dialect, Filter, SqlValue};
use crate::repository::record::{
    Artifact, Conversation, Encryption, Flags, Participant, SCHEMA_VERSION,
};

/// Schema migrations; entry `i` is version `i + 1` in `custodian_schema`. The uniqueness of
/// (tenant, id) is DEFERRABLE so that it is checked at the end of each statement, not row by
/// row: one UPDATE of an index batch may hand an id from one directory to another.
/// Participants and artifacts have no foreign key to their conversation, unlike in SQLite: only
/// an index batch writes them, always with their conversation and deleting them with it, and a
/// key check (and lock) of the parent for every child row made indexing half again slower.
/// Instants are
/// TIMESTAMPTZ; a conversation's start and end also keep their RFC 3339 text, whose offset is
/// part of the record. Text that is ranged over or sorted (directories, object keys, policy
/// names) is `COLLATE "C"`, so it orders by bytes as in SQLite whatever the database's locale.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE conversations (
    pk BIGSERIAL PRIMARY KEY,
    rel_dir TEXT COLLATE "C" NOT NULL UNIQUE,
    day TEXT COLLATE "C" NOT NULL,
    json_mtime_ns BIGINT NOT NULL,
    json_size BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_platform TEXT NOT NULL,
    direction TEXT NOT NULL,
    start_text TEXT NOT NULL,
    end_text TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    confidential BOOLEAN NOT NULL,
    cdr_only BOOLEAN NOT NULL,
    imported BOOLEAN NOT NULL,
    legal_hold BOOLEAN NOT NULL,
    channel TEXT,
    CONSTRAINT conversations_tenant_id UNIQUE (tenant, id) DEFERRABLE INITIALLY IMMEDIATE
);
CREATE INDEX conversations_start ON conversations (start_ms);
CREATE INDEX conversations_day ON conversations (day);
CREATE INDEX conversations_end ON conversations ((start_ms + duration_ms));
CREATE TABLE participants (
    conversation BIGINT NOT NULL,
    ordinal BIGINT NOT NULL,
    user_name TEXT,
    extension TEXT,
    role TEXT NOT NULL,
    PRIMARY KEY (conversation, ordinal)
);
CREATE TABLE artifacts (
    conversation BIGINT NOT NULL,
    ordinal BIGINT NOT NULL,
    file TEXT NOT NULL,
    kind TEXT NOT NULL,
    audio_type TEXT,
    extension TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    key_id TEXT,
    PRIMARY KEY (conversation, ordinal)
);
CREATE TABLE job_runs (
    id BIGSERIAL PRIMARY KEY,
    policy TEXT NOT NULL,
    mode TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    resumed BIGINT NOT NULL DEFAULT 0,
    selected BIGINT NOT NULL DEFAULT 0,
    exported BIGINT NOT NULL DEFAULT 0,
    flagged BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    objects BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    index_errors BIGINT NOT NULL DEFAULT 0,
    manifest_key TEXT,
    error_summary TEXT,
    log_path TEXT,
    notification TEXT
);
CREATE INDEX job_runs_policy ON job_runs (policy, id);
CREATE TABLE run_items (
    id BIGSERIAL PRIMARY KEY,
    run BIGINT NOT NULL REFERENCES job_runs (id) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    tenant TEXT,
    conversation_id TEXT,
    outcome TEXT NOT NULL,
    error TEXT,
    objects BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    at TIMESTAMPTZ NOT NULL
);
CREATE INDEX run_items_run ON run_items (run, tenant, conversation_id);
CREATE TABLE run_objects (
    run BIGINT NOT NULL REFERENCES job_runs (id) ON DELETE CASCADE,
    key TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (run, key)
);
CREATE TABLE export_state (
    policy TEXT NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    run BIGINT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (policy, tenant, conversation_id)
);
CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    policy TEXT,
    run BIGINT,
    tenant TEXT,
    conversation_id TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_events_run ON audit_events (run);
CREATE INDEX audit_events_conversation ON audit_events (conversation_id);
CREATE TABLE audit_head (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (seq, hash)
    VALUES (0, '0000000000000000000000000000000000000000000000000000000000000000');
CREATE TABLE open_uploads (
    target TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    key TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (target, upload_id)
);
CREATE TABLE lifecycle_policies (
    name TEXT COLLATE "C" PRIMARY KEY,
    description TEXT NOT NULL,
    artifact_type TEXT NOT NULL,
    audio_type TEXT,
    enabled BOOLEAN NOT NULL DEFAULT FALSE,
    active_version TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE lifecycle_versions (
    policy TEXT COLLATE "C" NOT NULL REFERENCES lifecycle_policies (name),
    name TEXT NOT NULL,
    seq BIGINT NOT NULL,
    action TEXT NOT NULL,
    days BIGINT,
    published_at TIMESTAMPTZ NOT NULL,
    published_by TEXT NOT NULL,
    PRIMARY KEY (policy, name)
);
CREATE TABLE artifact_deletions (
    conversation BIGINT NOT NULL REFERENCES conversations (pk) ON DELETE CASCADE,
    file TEXT NOT NULL,
    deleted_at TIMESTAMPTZ NOT NULL,
    policy TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (conversation, file)
);
CREATE TABLE delete_intents (
    conversation BIGINT NOT NULL,
    ordinal BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    rel_dir TEXT NOT NULL,
    file TEXT NOT NULL,
    size BIGINT NOT NULL,
    policy TEXT NOT NULL,
    version TEXT NOT NULL,
    due TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation, ordinal)
);
CREATE TABLE confidential_flags (
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    value BOOLEAN NOT NULL,
    policy TEXT NOT NULL,
    run BIGINT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant, conversation_id)
);
"#,
    r#"
ALTER TABLE job_runs ADD COLUMN finisher TEXT;
ALTER TABLE job_runs ADD COLUMN finisher_since TIMESTAMPTZ;
CREATE TABLE work_units (
    id BIGSERIAL PRIMARY KEY,
    run BIGINT NOT NULL REFERENCES job_runs (id) ON DELETE CASCADE,
    lo BIGINT NOT NULL,
    hi BIGINT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    node TEXT,
    lease_until TIMESTAMPTZ,
    claims BIGINT NOT NULL DEFAULT 0,
    exported BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    objects BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    finished_at TIMESTAMPTZ
);
CREATE INDEX work_units_open ON work_units (run, id) WHERE state <> 'done';
"#,
    r#"
ALTER TABLE open_uploads ADD COLUMN run BIGINT;
"#,
    r#"
ALTER TABLE job_runs ADD COLUMN deleted BIGINT NOT NULL DEFAULT 0;
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
ALTER TABLE export_state ADD COLUMN json_mtime_ns BIGINT;
ALTER TABLE export_state ADD COLUMN json_size BIGINT;
UPDATE export_state s SET json_mtime_ns = c.json_mtime_ns, json_size = c.json_size
    FROM conversations c WHERE c.tenant = s.tenant AND c.id = s.conversation_id;
CREATE TABLE export_artifacts (
    policy TEXT NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    key TEXT,
    size BIGINT,
    out_sha256 TEXT,
    run BIGINT NOT NULL,
    PRIMARY KEY (policy, tenant, conversation_id, file)
);
INSERT INTO export_artifacts (policy, tenant, conversation_id, file, sha256, run)
    SELECT s.policy, s.tenant, s.conversation_id, a.file, a.sha256, s.run FROM export_state s
    JOIN conversations c ON c.tenant = s.tenant AND c.id = s.conversation_id
    JOIN artifacts a ON a.conversation = c.pk;
CREATE TABLE object_keys (
    target TEXT NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    file TEXT NOT NULL,
    run BIGINT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (target, key)
);
"#,
    r#"
ALTER TABLE audit_head ADD COLUMN key_id TEXT;
ALTER TABLE audit_events ADD COLUMN key_id TEXT;
"#,
];

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

/// A pooled connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// A connection or one of its transactions, with the connection's statement cache.
struct Session<'a, C> {
    client: &'a mut C,
    statements: &'a mut HashMap<String, Statement>,
}

type Params<'a> = [&'a (dyn ToSql + Sync)];

impl<C: GenericClient> Session<'_, C> {
    fn prepared(&mut self, sql: &str) -> std::result::Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        if self.statements.len() >= STATEMENTS {
            self.statements.clear();
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    fn execute(&mut self, sql: &str, params: &Params<'_>) -> Fallible<u64> {
        let s = self.prepared(sql)?;
        Ok(self.client.execute(&s, params)?)
    }

    fn query(&mut self, sql: &str, params: &Params<'_>) -> Fallible<Vec<Row>> {
        let s = self.prepared(sql)?;
        Ok(self.client.query(&s, params)?)
    }

    fn query_one(&mut self, sql: &str, params: &Params<'_>) -> Fallible<Row> {
        let s = self.prepared(sql)?;
        Ok(self.client.query_one(&s, params)?)
    }

    fn query_opt(&mut self, sql: &str, params: &Params<'_>) -> Fallible<Option<Row>> {
        let s = self.prepared(sql)?;
        Ok(self.client.query_opt(&s, params)?)
    }
}

type Tx<'s, 't> = Session<'s, Transaction<'t>>;

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

fn connect(config: &postgres::Config) -> std::result::Result<Client, String> {
    config.connect(NoTls).map_err(|e| {
        format!(
            "cannot connect to PostgreSQL at {}: {}; check that the server is running and accepts connections there, and the user, password (in the URL or PGPASSWORD) and database in catalog.url",
            servers(config),
            describe(&e)
        )
    })
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

const SELECT_CONVERSATION: &str = "SELECT c.pk, c.rel_dir, c.tenant, c.id, c.kind, c.source_platform, \
     c.direction, c.start_text, c.end_text, c.confidential, c.cdr_only, c.imported, c.legal_hold, \
     c.channel, c.json_mtime_ns, c.json_size FROM conversations c WHERE c.pk > $1";

/// The rows of an index batch, as the arrays `unnest` reads ($1..$18, in `CONVERSATION_ROWS`'
/// column order).
#[derive(Default)]
struct ConversationColumns<'a> {
    rel_dir: Vec<&'a str>,
    day: Vec<&'a str>,
    mtime_ns: Vec<i64>,
    json_size: Vec<i64>,
    tenant: Vec<&'a str>,
    id: Vec<&'a str>,
    kind: Vec<&'static str>,
    source_platform: Vec<&'a str>,
    direction: Vec<&'static str>,
    start_text: Vec<String>,
    end_text: Vec<String>,
    start_ms: Vec<i64>,
    duration_ms: Vec<i64>,
    confidential: Vec<bool>,
    cdr_only: Vec<bool>,
    imported: Vec<bool>,
    legal_hold: Vec<bool>,
    channel: Vec<Option<&'a str>>,
}

/// The conversations of `ConversationColumns`, with the confidential flag a policy set (kept
/// across reindexing) in place of the record's.
const CONVERSATION_ROWS: &str = "SELECT u.rel_dir, u.day, u.json_mtime_ns, u.json_size, u.tenant, u.id, \
     u.kind, u.source_platform, u.direction, u.start_text, u.end_text, u.start_ms, u.duration_ms, \
     COALESCE(f.value, u.confidential) AS confidential, u.cdr_only, u.imported, u.legal_hold, u.channel, u.n \
     FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[], $7::text[], \
     $8::text[], $9::text[], $10::text[], $11::text[], $12::int8[], $13::int8[], $14::bool[], \
     $15::bool[], $16::bool[], $17::bool[], $18::text[]) WITH ORDINALITY AS u(rel_dir, day, \
     json_mtime_ns, json_size, tenant, id, kind, source_platform, direction, start_text, end_text, \
     start_ms, duration_ms, confidential, cdr_only, imported, legal_hold, channel, n) \
     LEFT JOIN confidential_flags f ON f.tenant = u.tenant AND f.conversation_id = u.id";

impl<'a> ConversationColumns<'a> {
    fn push(&mut self, rel_dir: &'a str, fp: Fingerprint, c: &'a Conversation) -> Fallible<()> {
        self.rel_dir.push(rel_dir);
        self.day
            .push(rel_dir.rsplit_once('/').map_or("", |(day, _)| day));
        self.mtime_ns.push(fp.mtime_ns);
        self.json_size.push(int(fp.size)?);
        self.tenant.push(&c.tenant);
        self.id.push(&c.id);
        self.kind.push(c.kind.as_str());
        self.source_platform.push(&c.source_platform);
        self.direction.push(c.direction.as_str());
        self.start_text.push(c.start.to_rfc3339());
        self.end_text.push(c.end.to_rfc3339());
        self.start_ms.push(c.start.timestamp_millis());
        self.duration_ms.push(c.duration_ms());
        self.confidential.push(c.flags.confidential);
        self.cdr_only.push(c.flags.cdr_only);
        self.imported.push(c.flags.imported);
        self.legal_hold.push(c.flags.legal_hold);
        self.channel.push(c.channel.as_deref());
        Ok(())
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 18] {
        [
            &self.rel_dir,
            &self.day,
            &self.mtime_ns,
            &self.json_size,
            &self.tenant,
            &self.id,
            &self.kind,
            &self.source_platform,
            &self.direction,
            &self.start_text,
            &self.end_text,
            &self.start_ms,
            &self.duration_ms,
            &self.confidential,
            &self.cdr_only,
            &self.imported,
            &self.legal_hold,
            &self.channel,
        ]
    }
}

/// What becomes of one directory an index batch touches.
#[derive(Clone, Copy)]
enum Fate {
    Untouched,
    Removed,
    /// Written by change `i`; `fresh` when a removal came first (the row is recreated).
    Upserted {
        change: usize,
        fresh: bool,
    },
}

struct Dir<'a> {
    /// The row before the batch.
    pk: Option<i64>,
    /// The tenant and id the directory holds at this point of the batch.
    key: Option<(&'a str, &'a str)>,
    fate: Fate,
}

/// The net effect of an index batch applied change by change, as SQLite applies it: an
/// error per refused change, rows to delete, rows to update (pk, change) and changes to insert.
#[derive(Default)]
struct IndexPlan {
    outcomes: Vec<Option<String>>,
    delete: Vec<i64>,
    update: Vec<(i64, usize)>,
    insert: Vec<usize>,
}

/// Plans `changes` over `existing` rows (pk, rel_dir, tenant, id): every row whose directory
/// the batch names, and every row holding a tenant and id it upserts.
fn plan_index<'a>(
    changes: &'a [IndexChange],
    existing: &'a [(i64, String, String, String)],
) -> IndexPlan {
    let mut dirs: HashMap<&str, Dir<'_>> = HashMap::new();
    let mut owner: HashMap<(&str, &str), &str> = HashMap::new();
    for (pk, rel_dir, tenant, id) in existing {
        dirs.insert(
            rel_dir.as_str(),
            Dir {
                pk: Some(*pk),
                key: Some((tenant.as_str(), id.as_str())),
                fate: Fate::Untouched,
            },
        );
        owner.insert((tenant.as_str(), id.as_str()), rel_dir.as_str());
    }
    let mut plan = IndexPlan::default();
    for (i, change) in changes.iter().enumerate() {
        let outcome = match change {
            IndexChange::Remove { rel_dir } => {
                if let Some(dir) = dirs.get_mut(rel_dir.as_str()) {
                    if let Some(key) = dir.key.take() {
                        owner.remove(&key);
                    }
                    dir.fate = Fate::Removed;
                }
                None
            }
            IndexChange::Upsert {
                rel_dir,
                conversation,
                fingerprint,
            } => {
                let key = (conversation.tenant.as_str(), conversation.id.as_str());
                if let Some(reason) = unstorable(conversation, *fingerprint) {
                    plan.outcomes.push(Some(reason));
                    continue;
                }
                match owner.get(&key) {
                    Some(&other) if other != rel_dir.as_str() => {
                        Some(duplicate_id(conversation, Some(other)))
                    }
                    _ => {
                        let dir = dirs.entry(rel_dir.as_str()).or_insert(Dir {
                            pk: None,
                            key: None,
                            fate: Fate::Untouched,
                        });
                        if let Some(old) = dir.key.replace(key)
                            && old != key
                        {
                            owner.remove(&old);
                        }
                        owner.insert(key, rel_dir.as_str());
                        let fresh = match dir.fate {
                            Fate::Removed => true,
                            Fate::Upserted { fresh, .. } => fresh,
                            Fate::Untouched => false,
                        };
                        dir.fate = Fate::Upserted { change: i, fresh };
                        None
                    }
                }
            }
        };
        plan.outcomes.push(outcome);
    }
    for dir in dirs.values() {
        match (dir.pk, dir.fate) {
            (Some(pk), Fate::Removed) => plan.delete.push(pk),
            (
                Some(pk),
                Fate::Upserted {
                    change,
                    fresh: true,
                },
            ) => {
                plan.delete.push(pk);
                plan.insert.push(change);
            }
            (Some(pk), Fate::Upserted { change, .. }) => plan.update.push((pk, change)),
            (None, Fate::Upserted { change, .. }) => plan.insert.push(change),
            (_, Fate::Untouched) | (None, Fate::Removed) => {}
        }
    }
    plan.insert.sort_unstable();
    plan
}

/// The head of the audit chain, locked by the transaction that read it, and the key the
/// transaction appends with.
struct ChainHead {
    seq: i64,
    hash: String,
    key: Option<Arc<ChainKey>>,
}

/// Locks the chain head for the rest of the transaction. Every transaction that appends audit
/// events takes it before anything else, so they run one at a time and never deadlock. The
/// head row also says which key the chain is keyed with, so checking the key costs no round
/// trip.
fn lock_chain(s: &mut Tx<'_, '_>, source: Option<&KeySource>) -> Fallible<ChainHead> {
    let row = s.query_one("SELECT seq, hash, key_id FROM audit_head FOR UPDATE", &[])?;
    let chain_id: Option<String> = row.try_get(2)?;
    let key = match (source, &chain_id) {
        (None, None) => None,
        (None, Some(key_id)) => {
            return Err(CatalogError::AuditKey(KeyError::NotConfigured {
                key_id: key_id.clone(),
            })
            .into());
        }
        (Some(source), chain_id) => Some(
            source
                .for_append(chain_id.as_deref())
                .map_err(CatalogError::AuditKey)?,
        ),
    };
    Ok(ChainHead {
        seq: row.try_get(0)?,
        hash: row.try_get(1)?,
        key,
    })
}

/// Appends `events` after `head` in one statement and moves the head.
fn append_audit<'e>(
    s: &mut Tx<'_, '_>,
    head: &mut ChainHead,
    events: impl IntoIterator<Item = &'e NewEvent>,
) -> Fallible<()> {
    let mut seq = Vec::new();
    let mut at = Vec::new();
    let mut kind = Vec::new();
    let mut actor = Vec::new();
    let mut policy = Vec::new();
    let mut run = Vec::new();
    let mut tenant = Vec::new();
    let mut conversation = Vec::new();
    let mut details = Vec::new();
    let mut prev = Vec::new();
    let mut hash = Vec::new();
    let key_id = head.key.as_ref().map(|k| k.id().to_owned());
    for e in events {
        let n = head.seq + 1;
        let h = e.hash_with(head.key.as_deref(), n, &head.hash);
        seq.push(n);
        at.push(micros(e.at));
        kind.push(e.kind.as_str());
        actor.push(e.actor.as_str());
        policy.push(e.policy.as_deref());
        run.push(e.run);
        tenant.push(e.tenant.as_deref());
        conversation.push(e.conversation_id.as_deref());
        details.push(e.details.to_string());
        prev.push(std::mem::replace(&mut head.hash, h.clone()));
        hash.push(h);
        head.seq = n;
    }
    if seq.is_empty() {
        return Ok(());
    }
    s.execute(
        "INSERT INTO audit_events (seq, at, kind, actor, policy, run, tenant, conversation_id, details, prev_hash, hash, key_id) \
         SELECT *, $12::text FROM unnest($1::int8[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::int8[], \
         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])",
        &[
            &seq,
            &at,
            &kind,
            &actor,
            &policy,
            &run,
            &tenant,
            &conversation,
            &details,
            &prev,
            &hash,
            &key_id,
        ],
    )?;
    s.execute(
        "UPDATE audit_head SET seq = $1, hash = $2, key_id = $3",
        &[&head.seq, &head.hash, &key_id],
    )?;
    Ok(())
}

/// Conversations (tenant, id) handled by a policy, with the record version each was at.
#[derive(Default)]
struct Handled<'a> {
    tenants: Vec<&'a str>,
    ids: Vec<&'a str>,
    mtimes: Vec<i64>,
    sizes: Vec<i64>,
}

impl<'a> Handled<'a> {
    fn push(&mut self, tenant: &'a str, id: &'a str, fp: Fingerprint) -> Fallible<()> {
        self.tenants.push(tenant);
        self.ids.push(id);
        self.mtimes.push(fp.mtime_ns);
        self.sizes.push(int(fp.size)?);
        Ok(())
    }
}

/// Records conversations as handled by `policy` at their record version (incremental state),
/// replacing older marks.
fn remember(
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

    fn corrupt(&self, column: &'static str, value: impl ToString) -> Failure {
        Failure::Catalog(CatalogError::Corrupt {
            location: self.location.clone(),
            column,
            value: value.to_string(),
        })
    }

    fn unsigned(&self, column: &'static str, v: i64) -> Fallible<u64> {
        u64::try_from(v).map_err(|_| self.corrupt(column, v))
    }

    fn parse<T: std::str::FromStr>(&self, column: &'static str, v: String) -> Fallible<T> {
        v.parse().map_err(|_| self.corrupt(column, v))
    }

    fn with_conn<T>(&self, f: impl FnOnce(&mut Conn) -> Fallible<T>) -> Result<T> {
        let pooled = self.idle.lock().expect("catalog pool lock").pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => Conn {
                client: connect(&self.config).map_err(|message| CatalogError::Open {
                    location: self.location.clone(),
                    message,
                })?,
                statements: HashMap::new(),
            },
        };
        let out = f(&mut conn);
        if !conn.client.is_closed() {
            let mut idle = self.idle.lock().expect("catalog pool lock");
            if idle.len() < IDLE {
                idle.push(conn);
            }
        }
        out.map_err(|f| self.fail(f))
    }

    /// Runs `f` on a pooled connection outside a transaction: each statement commits alone
    /// (reads, and writes of one statement).
    fn autocommit<T>(&self, f: impl FnOnce(&mut Session<'_, Client>) -> Fallible<T>) -> Result<T> {
        self.with_conn(|conn| {
            f(&mut Session {
                client: &mut conn.client,
                statements: &mut conn.statements,
            })
        })
    }

    /// Runs `f` in a transaction on a pooled connection, committed when it succeeds.
    fn transaction<T>(&self, f: impl FnOnce(&mut Tx<'_, '_>) -> Fallible<T>) -> Result<T> {
        self.with_conn(|conn| {
            let mut tx = conn.client.transaction()?;
            let out = f(&mut Session {
                client: &mut tx,
                statements: &mut conn.statements,
            })?;
            tx.commit()?;
            Ok(out)
        })
    }

    /// Runs `f` in a transaction on a pooled connection, committed only when it succeeds and
    /// asks for it; otherwise rolled back.
    fn transaction_unless<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_, '_>) -> Fallible<(T, bool)>,
    ) -> Result<T> {
        self.with_conn(|conn| {
            let mut tx = conn.client.transaction()?;
            let (out, commit) = f(&mut Session {
                client: &mut tx,
                statements: &mut conn.statements,
            })?;
            if commit {
                tx.commit()?;
            } else {
                tx.rollback()?;
            }
            Ok(out)
        })
    }

    /// A selection over `conversations c` after `$1` (a rowid), leaving out `exclude`.
    fn selection(
        &self,
        head: &str,
        filter: &Filter,
        exclude: &Exclude,
        after_rowid: i64,
    ) -> (String, Vec<SqlValue>) {
        let mut params = vec![SqlValue::Int(after_rowid)];
        let clause = filter.to_sql(Dialect::Postgres, params.len());
        params.extend(clause.params);
        let exclude_sql = match exclude {
            Exclude::Nothing => String::new(),
            Exclude::ExportedBy(policy) => {
                params.push(SqlValue::Text(policy.clone()));
                format!(
                    " AND NOT EXISTS (SELECT 1 FROM export_state s WHERE s.policy = ${} \
                     AND s.tenant = c.tenant AND s.conversation_id = c.id \
                     AND s.json_mtime_ns = c.json_mtime_ns AND s.json_size = c.json_size OFFSET 0)",
                    params.len()
                )
            }
            Exclude::DoneIn(run) => {
                params.push(SqlValue::Int(run.0));
                format!(
                    " AND NOT EXISTS (SELECT 1 FROM run_items r WHERE r.run = ${} \
                     AND r.outcome = 'exported' AND r.tenant = c.tenant AND r.conversation_id = c.id OFFSET 0)",
                    params.len()
                )
            }
        };
        (format!("{head} AND ({}){exclude_sql}", clause.sql), params)
    }

    /// A page of `selection` in rowid order, at most `limit` long.
    fn page_sql(
        &self,
        head: &str,
        filter: &Filter,
        exclude: &Exclude,
        after_rowid: i64,
        limit: usize,
    ) -> (String, Vec<SqlValue>) {
        let (sql, mut params) = self.selection(head, filter, exclude, after_rowid);
        params.push(SqlValue::Int(limit as i64));
        (
            format!("{sql} ORDER BY c.pk LIMIT ${}", params.len()),
            params,
        )
    }

    fn job_run_from_row(&self, r: &Row) -> Fallible<JobRun> {
        let mode: String = r.try_get("mode")?;
        let status: String = r.try_get("status")?;
        let count = |column: &'static str| -> Fallible<u64> {
            self.unsigned(column, r.try_get::<_, i64>(column)?)
        };
        let resumed: i64 = r.try_get("resumed")?;
        Ok(JobRun {
            id: RunId(r.try_get("id")?),
            policy: r.try_get("policy")?,
            mode: match mode.as_str() {
                "full" => Mode::Full,
                "incremental" => Mode::Incremental,
                _ => return Err(self.corrupt("job_runs.mode", mode)),
            },
            target: r.try_get("target")?,
            status: RunStatus::parse(&status)
                .ok_or_else(|| self.corrupt("job_runs.status", &status))?,
            started_at: r.try_get("started_at")?,
            finished_at: r.try_get("finished_at")?,
            resumed: u32::try_from(resumed)
                .map_err(|_| self.corrupt("job_runs.resumed", resumed))?,
            counters: Counters {
                selected: count("selected")?,
                exported: count("exported")?,
                flagged: count("flagged")?,
                deleted: count("deleted")?,
                failed: count("failed")?,
                objects: count("objects")?,
                bytes: count("bytes")?,
                index_errors: count("index_errors")?,
            },
            manifest_key: r.try_get("manifest_key")?,
            error_summary: r.try_get("error_summary")?,
            log_path: r.try_get("log_path")?,
            notification: r.try_get("notification")?,
        })
    }

    fn query_runs(&self, sql: &str, params: &Params<'_>) -> Result<Vec<JobRun>> {
        self.autocommit(|s| {
            s.query(sql, params)?
                .iter()
                .map(|r| self.job_run_from_row(r))
                .collect()
        })
    }

    fn conversation_from_row(&self, r: &Row) -> Fallible<Selected> {
        let time = |column: &'static str| -> Fallible<_> {
            let v: String = r.try_get(column)?;
            DateTime::parse_from_rfc3339(&v).map_err(|_| self.corrupt(column, &v))
        };
        Ok(Selected {
            rowid: r.try_get("pk")?,
            rel_dir: r.try_get("rel_dir")?,
            fingerprint: Fingerprint {
                mtime_ns: r.try_get("json_mtime_ns")?,
                size: self.unsigned("conversations.json_size", r.try_get("json_size")?)?,
            },
            exported: Vec::new(),
            conversation: Conversation {
                schema: SCHEMA_VERSION,
                id: r.try_get("id")?,
                tenant: r.try_get("tenant")?,
                kind: self.parse("kind", r.try_get("kind")?)?,
                source_platform: r.try_get("source_platform")?,
                direction: self.parse("direction", r.try_get("direction")?)?,
                start: time("start_text")?,
                end: time("end_text")?,
                participants: Vec::new(),
                flags: Flags {
                    cdr_only: r.try_get("cdr_only")?,
                    imported: r.try_get("imported")?,
                    confidential: r.try_get("confidential")?,
                    legal_hold: r.try_get("legal_hold")?,
                },
                channel: r.try_get("channel")?,
                artifacts: Vec::new(),
            },
        })
    }

    /// Fills participants and artifacts of a page of conversations (two queries a page), and
    /// what `exported_by` (a policy) exported of them before (a third).
    fn fill_children(
        &self,
        s: &mut Session<'_, Client>,
        page: &mut [Selected],
        exported_by: Option<&str>,
    ) -> Fallible<()> {
        if page.is_empty() {
            return Ok(());
        }
        let pks: Vec<i64> = page.iter().map(|p| p.rowid).collect();
        let index: HashMap<i64, usize> = pks.iter().enumerate().map(|(i, pk)| (*pk, i)).collect();
        for r in s.query(
            "SELECT conversation, user_name, extension, role FROM participants \
             WHERE conversation = ANY($1) ORDER BY conversation, ordinal",
            &[&pks],
        )? {
            let i = index[&r.try_get::<_, i64>(0)?];
            page[i].conversation.participants.push(Participant {
                user: r.try_get(1)?,
                extension: r.try_get(2)?,
                role: self.parse("participants.role", r.try_get(3)?)?,
            });
        }
        for r in s.query(
            "SELECT conversation, file, kind, audio_type, size, sha256, key_id FROM artifacts a \
             WHERE conversation = ANY($1) AND NOT EXISTS (SELECT 1 FROM artifact_deletions d \
             WHERE d.conversation = a.conversation AND d.file = a.file OFFSET 0) ORDER BY conversation, ordinal",
            &[&pks],
        )? {
            let i = index[&r.try_get::<_, i64>(0)?];
            let audio_type: Option<String> = r.try_get(3)?;
            let key_id: Option<String> = r.try_get(6)?;
            page[i].conversation.artifacts.push(Artifact {
                file: r.try_get(1)?,
                kind: self.parse("artifacts.kind", r.try_get(2)?)?,
                audio_type: match audio_type {
                    Some(t) => Some(self.parse("artifacts.audio_type", t)?),
                    None => None,
                },
                size: self.unsigned("artifacts.size", r.try_get(4)?)?,
                sha256: r.try_get(5)?,
                encryption: key_id.map(|key_id| Encryption { key_id }),
            });
        }
        let Some(policy) = exported_by else {
            return Ok(());
        };
        for r in s.query(
            "SELECT c.pk, e.file, e.sha256, e.key, e.size, e.out_sha256 FROM conversations c \
             CROSS JOIN LATERAL (SELECT * FROM export_artifacts e WHERE e.policy = $1 \
             AND e.tenant = c.tenant AND e.conversation_id = c.id OFFSET 0) e WHERE c.pk = ANY($2)",
            &[&policy, &pks],
        )? {
            let i = index[&r.try_get::<_, i64>(0)?];
            let key: Option<String> = r.try_get(3)?;
            let size: Option<i64> = r.try_get(4)?;
            let sha256: Option<String> = r.try_get(5)?;
            let output = match (key, size, sha256) {
                (Some(key), Some(size), Some(sha256)) => Some(ObjectRecord {
                    key,
                    size: self.unsigned("export_artifacts.size", size)?,
                    sha256,
                }),
                _ => None,
            };
            page[i].exported.push(ExportedArtifact {
                file: r.try_get(1)?,
                sha256: r.try_get(2)?,
                output,
            });
        }
        Ok(())
    }

    /// Writes the participants and artifacts of conversations stored at the given pks.
    fn insert_children(s: &mut Tx<'_, '_>, rows: &[(i64, &Conversation)]) -> Fallible<()> {
        let mut p_conv = Vec::new();
        let mut p_ord = Vec::new();
        let mut p_user = Vec::new();
        let mut p_ext = Vec::new();
        let mut p_role = Vec::new();
        let mut a_conv = Vec::new();
        let mut a_ord = Vec::new();
        let mut a_file = Vec::new();
        let mut a_kind = Vec::new();
        let mut a_audio = Vec::new();
        let mut a_ext = Vec::new();
        let mut a_size = Vec::new();
        let mut a_sha = Vec::new();
        let mut a_key = Vec::new();
        for (pk, c) in rows {
            for (i, p) in c.participants.iter().enumerate() {
                p_conv.push(*pk);
                p_ord.push(i as i64);
                p_user.push(p.user.as_deref());
                p_ext.push(p.extension.as_deref());
                p_role.push(p.role.as_str());
            }
            for (i, a) in c.artifacts.iter().enumerate() {
                a_conv.push(*pk);
                a_ord.push(i as i64);
                a_file.push(a.file.as_str());
                a_kind.push(a.kind.as_str());
                a_audio.push(a.audio_type.map(|t| t.as_str()));
                a_ext.push(a.extension());
                a_size.push(int(a.size)?);
                a_sha.push(a.sha256.as_str());
                a_key.push(a.encryption.as_ref().map(|e| e.key_id.as_str()));
            }
        }
        if !p_conv.is_empty() {
            s.execute(
                "INSERT INTO participants (conversation, ordinal, user_name, extension, role) \
                 SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[])",
                &[&p_conv, &p_ord, &p_user, &p_ext, &p_role],
            )?;
        }
        if !a_conv.is_empty() {
            s.execute(
                "INSERT INTO artifacts (conversation, ordinal, file, kind, audio_type, extension, size, sha256, key_id) \
                 SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::int8[], $8::text[], $9::text[])",
                &[
                    &a_conv, &a_ord, &a_file, &a_kind, &a_audio, &a_ext, &a_size, &a_sha, &a_key,
                ],
            )?;
        }
        Ok(())
    }

    fn due_from_row(&self, r: &Row, q: &DueQuery) -> Fallible<DueArtifact> {
        let end_ms: i64 = r.try_get(7)?;
        Ok(DueArtifact {
            conversation_pk: r.try_get(0)?,
            ordinal: r.try_get(1)?,
            tenant: r.try_get(2)?,
            conversation_id: r.try_get(3)?,
            rel_dir: r.try_get(4)?,
            file: r.try_get(5)?,
            size: self.unsigned("artifacts.size", r.try_get(6)?)?,
            policy: q.policy.clone(),
            version: q.version.clone(),
            due: DateTime::from_timestamp_millis(end_ms + i64::from(q.days) * 86_400_000)
                .unwrap_or_default(),
            record: Some(Fingerprint {
                mtime_ns: r.try_get(8)?,
                size: self.unsigned("conversations.json_size", r.try_get(9)?)?,
            }),
        })
    }
}

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
        let (boundaries_sql, mut params) = self.selection(
            "SELECT c.pk FROM conversations c WHERE c.pk > $1",
            filter,
            exclude,
            0,
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

impl Catalog for PostgresCatalog {
    fn work_units(&self) -> Option<&dyn crate::catalog::units::WorkUnits> {
        Some(self)
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn fingerprints_under(&self, rel_prefix: &str) -> Result<Vec<(String, Fingerprint)>> {
        let lo = format!("{rel_prefix}/");
        let hi = format!("{rel_prefix}0");
        self.autocommit(|s| {
            s.query(
                "SELECT rel_dir, json_mtime_ns, json_size FROM conversations \
                 WHERE rel_dir >= $1 AND rel_dir < $2",
                &[&lo, &hi],
            )?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    Fingerprint {
                        mtime_ns: r.try_get(1)?,
                        size: self.unsigned("conversations.json_size", r.try_get(2)?)?,
                    },
                ))
            })
            .collect()
        })
    }

    fn indexed_days(&self) -> Result<Vec<String>> {
        self.autocommit(|s| {
            s.query("SELECT DISTINCT day FROM conversations ORDER BY day", &[])?
                .iter()
                .map(|r| Ok(r.try_get(0)?))
                .collect()
        })
    }

    fn apply_index(&self, changes: &[IndexChange]) -> Result<Vec<Option<String>>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let mut dirs = Vec::with_capacity(changes.len());
        let mut tenants = Vec::new();
        let mut ids = Vec::new();
        for change in changes {
            match change {
                IndexChange::Upsert {
                    rel_dir,
                    conversation,
                    ..
                } => {
                    dirs.push(rel_dir.as_str());
                    tenants.push(conversation.tenant.as_str());
                    ids.push(conversation.id.as_str());
                }
                IndexChange::Remove { rel_dir } => dirs.push(rel_dir.as_str()),
            }
        }
        self.transaction(|s| {
            // One index batch at a time, so the rows read below stay as read until commit.
            s.execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[&self.lock_key("index", "")],
            )?;
            let existing: Vec<(i64, String, String, String)> = s
                .query(
                    "SELECT pk, rel_dir, tenant, id FROM conversations WHERE rel_dir = ANY($1) \
                     UNION SELECT c.pk, c.rel_dir, c.tenant, c.id FROM conversations c \
                     JOIN unnest($2::text[], $3::text[]) AS k(tenant, id) \
                     ON c.tenant = k.tenant AND c.id = k.id",
                    &[&dirs, &tenants, &ids],
                )?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
                .collect::<Fallible<_>>()?;
            let plan = plan_index(changes, &existing);
            let upsert = |i: usize| match &changes[i] {
                IndexChange::Upsert {
                    rel_dir,
                    fingerprint,
                    conversation,
                } => Some((rel_dir.as_str(), *fingerprint, conversation.as_ref())),
                IndexChange::Remove { .. } => None,
            };
            let stale: Vec<i64> = plan
                .delete
                .iter()
                .copied()
                .chain(plan.update.iter().map(|(pk, _)| *pk))
                .collect();
            if !stale.is_empty() {
                s.execute(
                    "DELETE FROM participants WHERE conversation = ANY($1)",
                    &[&stale],
                )?;
                s.execute(
                    "DELETE FROM artifacts WHERE conversation = ANY($1)",
                    &[&stale],
                )?;
            }
            if !plan.delete.is_empty() {
                s.execute(
                    "DELETE FROM conversations WHERE pk = ANY($1)",
                    &[&plan.delete],
                )?;
            }
            let mut children: Vec<(i64, &Conversation)> = Vec::new();
            if !plan.update.is_empty() {
                let mut rows = ConversationColumns::default();
                for &(pk, i) in &plan.update {
                    if let Some((rel_dir, fp, c)) = upsert(i) {
                        rows.push(rel_dir, fp, c)?;
                        children.push((pk, c));
                    }
                }
                s.execute(
                    &format!(
                        "UPDATE conversations c SET day = u.day, json_mtime_ns = u.json_mtime_ns, \
                         json_size = u.json_size, tenant = u.tenant, id = u.id, kind = u.kind, \
                         source_platform = u.source_platform, direction = u.direction, \
                         start_text = u.start_text, end_text = u.end_text, start_ms = u.start_ms, \
                         duration_ms = u.duration_ms, confidential = u.confidential, \
                         cdr_only = u.cdr_only, imported = u.imported, legal_hold = u.legal_hold, \
                         channel = u.channel FROM ({CONVERSATION_ROWS}) AS u \
                         WHERE c.rel_dir = u.rel_dir"
                    ),
                    &rows.params(),
                )?;
            }
            if !plan.insert.is_empty() {
                let mut rows = ConversationColumns::default();
                for &i in &plan.insert {
                    if let Some((rel_dir, fp, c)) = upsert(i) {
                        rows.push(rel_dir, fp, c)?;
                    }
                }
                let inserted = s.query(
                    &format!(
                        "INSERT INTO conversations (rel_dir, day, json_mtime_ns, json_size, tenant, id, \
                         kind, source_platform, direction, start_text, end_text, start_ms, duration_ms, \
                         confidential, cdr_only, imported, legal_hold, channel) \
                         SELECT rel_dir, day, json_mtime_ns, json_size, tenant, id, kind, source_platform, \
                         direction, start_text, end_text, start_ms, duration_ms, confidential, cdr_only, \
                         imported, legal_hold, channel FROM ({CONVERSATION_ROWS}) AS u ORDER BY u.n \
                         RETURNING pk, rel_dir"
                    ),
                    &rows.params(),
                )?;
                let at: HashMap<&str, usize> = plan
                    .insert
                    .iter()
                    .filter_map(|&i| upsert(i).map(|(rel_dir, _, _)| (rel_dir, i)))
                    .collect();
                for r in &inserted {
                    let rel_dir: &str = r.try_get(1)?;
                    if let Some((_, _, c)) = at.get(rel_dir).and_then(|&i| upsert(i)) {
                        children.push((r.try_get(0)?, c));
                    }
                }
            }
            Self::insert_children(s, &children)?;
            Ok(plan.outcomes)
        })
    }

    fn conversation_count(&self) -> Result<u64> {
        self.autocommit(|s| {
            let n: i64 = s
                .query_one("SELECT count(*) FROM conversations", &[])?
                .try_get(0)?;
            self.unsigned("count", n)
        })
    }

    fn count_selection(&self, filter: &Filter, exclude: &Exclude) -> Result<u64> {
        let (sql, params) = self.selection(
            "SELECT count(*) FROM conversations c WHERE c.pk > $1",
            filter,
            exclude,
            i64::MIN,
        );
        self.autocommit(|s| {
            let n: i64 = s.query_one(&sql, &sql_params(&params))?.try_get(0)?;
            self.unsigned("count", n)
        })
    }

    fn select_page(
        &self,
        filter: &Filter,
        exclude: &Exclude,
        after_rowid: i64,
        limit: usize,
    ) -> Result<Vec<Selected>> {
        let (sql, params) = self.page_sql(SELECT_CONVERSATION, filter, exclude, after_rowid, limit);
        self.autocommit(|s| {
            let mut page = s
                .query(&sql, &sql_params(&params))?
                .iter()
                .map(|r| self.conversation_from_row(r))
                .collect::<Fallible<Vec<_>>>()?;
            let exported_by = match exclude {
                Exclude::ExportedBy(policy) => Some(policy.as_str()),
                _ => None,
            };
            self.fill_children(s, &mut page, exported_by)?;
            Ok(page)
        })
    }

    fn claim_keys(&self, target: &str, run: RunId, claims: &[KeyClaim]) -> Result<Vec<KeyClaim>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = claims.iter().map(|c| c.key.as_str()).collect();
        let tenants: Vec<&str> = claims.iter().map(|c| c.tenant.as_str()).collect();
        let ids: Vec<&str> = claims.iter().map(|c| c.conversation_id.as_str()).collect();
        let files: Vec<&str> = claims.iter().map(|c| c.file.as_str()).collect();
        let now = micros(Utc::now());
        self.transaction_unless(|s| {
            // An insert racing another node's uncommitted claim of the same key waits for it,
            // then does nothing; the holder is read by a statement of its own, whose snapshot
            // sees the claim that won.
            s.execute(
                "INSERT INTO object_keys (target, key, tenant, conversation_id, file, run, at) \
                 SELECT $1, u.key, u.tenant, u.id, u.file, $2, $3 \
                 FROM unnest($4::text[], $5::text[], $6::text[], $7::text[]) AS u(key, tenant, id, file) \
                 ON CONFLICT (target, key) DO NOTHING",
                &[&target, &run.0, &now, &keys, &tenants, &ids, &files],
            )?;
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
            let commit = held.is_empty();
            Ok((held, commit))
        })
    }

    fn lock_policy(&self, policy: &str) -> Result<Box<dyn PolicyLock>> {
        let mut client = connect(&self.config).map_err(|message| CatalogError::Open {
            location: self.location.clone(),
            message,
        })?;
        let key = self.lock_key("policy", policy);
        let taken: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.fail(e.into()))?;
        if taken {
            Ok(Box::new(AdvisoryLock { client, key }))
        } else {
            Err(CatalogError::Busy {
                policy: policy.to_owned(),
                lock: format!("advisory lock {key} in {}", self.location),
            })
        }
    }

    fn interrupted_run(&self, policy: &str) -> Result<Option<JobRun>> {
        Ok(self
            .query_runs(
                "SELECT * FROM job_runs WHERE policy = $1 AND status = 'running' ORDER BY id DESC LIMIT 1",
                &[&policy],
            )?
            .pop())
    }

    fn begin_run(&self, policy: &str, mode: Mode, target: &str) -> Result<RunId> {
        let now = micros(Utc::now());
        self.autocommit(|s| {
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

    fn resume_run(&self, run: RunId) -> Result<()> {
        self.autocommit(|s| {
            s.execute(
                "UPDATE job_runs SET resumed = resumed + 1 WHERE id = $1",
                &[&run.0],
            )
            .map(drop)
        })
    }

    fn record_outcomes(&self, run: RunId, policy: &str, outcomes: &[ItemOutcome]) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let now = micros(Utc::now());
        let exports = outcomes
            .iter()
            .any(|o| matches!(o, ItemOutcome::Exported { .. }));
        self.transaction(|s| {
            let mut head = if exports { Some(lock_chain(s, self.audit_key.as_ref())?) } else { None };
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

    fn run_counters(&self, run: RunId) -> Result<Counters> {
        self.autocommit(|s| {
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
            Ok(Counters {
                exported: self.unsigned("count", r.try_get(0)?)?,
                failed: self.unsigned("count", r.try_get(1)?)?,
                objects: self.unsigned("count", r.try_get(2)?)?,
                bytes: self.unsigned("run_objects.size", r.try_get(3)?)?,
                deleted: self.unsigned("count", r.try_get(4)?)?,
                ..Counters::default()
            })
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
        self.autocommit(|s| {
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
                "UPDATE job_runs SET status = $1, finished_at = $2, selected = $3, exported = $4, \
                 flagged = $5, failed = $6, objects = $7, bytes = $8, index_errors = $9, \
                 manifest_key = $10, error_summary = $11, deleted = $12 WHERE id = $13",
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

    fn run_objects(
        &self,
        run: RunId,
        each: &mut dyn FnMut(ObjectRecord) -> std::io::Result<()>,
    ) -> Result<std::io::Result<()>> {
        self.autocommit(|s| {
            let statement = s.prepared(
                "SELECT key, size, sha256 FROM run_objects WHERE run = $1 ORDER BY key",
            )?;
            let params: [&(dyn ToSql + Sync); 1] = [&run.0];
            let mut rows = s.client.query_raw(&statement, params)?;
            while let Some(r) = postgres::fallible_iterator::FallibleIterator::next(&mut rows)? {
                let obj = ObjectRecord {
                    key: r.try_get(0)?,
                    size: self.unsigned("run_objects.size", r.try_get(1)?)?,
                    sha256: r.try_get(2)?,
                };
                if let Err(e) = each(obj) {
                    return Ok(Err(e));
                }
            }
            Ok(Ok(()))
        })
    }

    fn job_runs(&self, policy: Option<&str>, limit: usize) -> Result<Vec<JobRun>> {
        let limit = limit as i64;
        match policy {
            Some(p) => self.query_runs(
                "SELECT * FROM job_runs WHERE policy = $1 ORDER BY id DESC LIMIT $2",
                &[&p, &limit],
            ),
            None => self.query_runs(
                "SELECT * FROM job_runs ORDER BY id DESC LIMIT $1",
                &[&limit],
            ),
        }
    }

    fn set_run_log(&self, run: RunId, path: &str) -> Result<()> {
        self.autocommit(|s| {
            s.execute(
                "UPDATE job_runs SET log_path = $1 WHERE id = $2",
                &[&path, &run.0],
            )
            .map(drop)
        })
    }

    fn set_run_notification(&self, run: RunId, text: &str) -> Result<()> {
        self.autocommit(|s| {
            s.execute(
                "UPDATE job_runs SET notification = $1 WHERE id = $2",
                &[&text, &run.0],
            )
            .map(drop)
        })
    }

    fn set_confidential_page(
        &self,
        page: &ConfidentialPage<'_>,
        after_rowid: i64,
    ) -> Result<(u64, u64, i64)> {
        let (sql, params) = self.page_sql(
            "SELECT c.pk, c.tenant, c.id, c.confidential, c.json_mtime_ns, c.json_size \
             FROM conversations c WHERE c.pk > $1",
            page.filter,
            page.exclude,
            after_rowid,
            page.limit,
        );
        let now = micros(Utc::now());
        self.transaction(|s| {
            let mut head = lock_chain(s, self.audit_key.as_ref())?;
            let rows = s.query(&sql, &sql_params(&params))?;
            let mut tenants = Vec::with_capacity(rows.len());
            let mut ids = Vec::with_capacity(rows.len());
            let mut handled = Handled::default();
            let mut changed = Vec::new();
            let mut events = Vec::new();
            for r in &rows {
                let pk: i64 = r.try_get(0)?;
                let tenant: &str = r.try_get(1)?;
                let id: &str = r.try_get(2)?;
                let was: bool = r.try_get(3)?;
                if was != page.value {
                    changed.push(pk);
                    events.push(flag_event(page, tenant, id, was, now));
                }
                tenants.push(tenant);
                ids.push(id);
                let fingerprint = Fingerprint {
                    mtime_ns: r.try_get(4)?,
                    size: self.unsigned("conversations.json_size", r.try_get(5)?)?,
                };
                handled.push(tenant, id, fingerprint)?;
            }
            if !changed.is_empty() {
                s.execute(
                    "UPDATE conversations SET confidential = $1 WHERE pk = ANY($2)",
                    &[&page.value, &changed],
                )?;
            }
            if !tenants.is_empty() {
                s.execute(
                    "INSERT INTO confidential_flags (tenant, conversation_id, value, policy, run, at) \
                     SELECT u.tenant, u.id, $1, $2, $3, $4 FROM unnest($5::text[], $6::text[]) AS u(tenant, id) \
                     ON CONFLICT (tenant, conversation_id) DO UPDATE SET value = EXCLUDED.value, \
                     policy = EXCLUDED.policy, run = EXCLUDED.run, at = EXCLUDED.at",
                    &[&page.value, &page.policy, &page.run.0, &now, &tenants, &ids],
                )?;
            }
            if page.remember {
                remember(s, page.policy, page.run, now, &handled)?;
            }
            append_audit(s, &mut head, &events)?;
            let last = match rows.last() {
                Some(r) => r.try_get(0)?,
                None => after_rowid,
            };
            Ok((rows.len() as u64, changed.len() as u64, last))
        })
    }

    fn prune_runs(&self, policy: &str, before: DateTime<Utc>) -> Result<u64> {
        self.autocommit(|s| {
            s.execute(
                "DELETE FROM job_runs WHERE policy = $1 AND status = 'succeeded' AND finished_at < $2",
                &[&policy, &before],
            )
        })
    }

    fn job_run(&self, run: RunId) -> Result<Option<JobRun>> {
        Ok(self
            .query_runs("SELECT * FROM job_runs WHERE id = $1", &[&run.0])?
            .pop())
    }

    fn failed_items(&self, run: RunId, limit: usize) -> Result<Vec<FailedItem>> {
        self.autocommit(|s| {
            s.query(
                "SELECT subject, error, at FROM run_items f WHERE f.run = $1 AND f.outcome = 'failed' \
                 AND NOT EXISTS (SELECT 1 FROM run_items x WHERE x.run = $1 AND x.outcome = 'exported' \
                                 AND x.subject = f.subject OFFSET 0) \
                 ORDER BY f.id LIMIT $2",
                &[&run.0, &(limit as i64)],
            )?
            .iter()
            .map(|r| {
                Ok(FailedItem {
                    subject: r.try_get(0)?,
                    error: r.try_get::<_, Option<String>>(1)?.unwrap_or_default(),
                    at: r.try_get(2)?,
                })
            })
            .collect()
        })
    }

    fn audit_events(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        self.autocommit(|s| {
            s.query(
                "SELECT seq, at, kind, actor, policy, run, tenant, conversation_id, details, prev_hash, hash, key_id \
                 FROM audit_events WHERE seq > $1 AND ($2::int8 IS NULL OR run = $2) \
                 AND ($3::text IS NULL OR conversation_id = $3) AND ($4::text IS NULL OR kind = $4) \
                 ORDER BY seq LIMIT $5",
                &[
                    &q.after_seq,
                    &q.run.map(|r| r.0),
                    &q.conversation_id,
                    &q.kind.map(|k| k.as_str()),
                    &(q.limit as i64),
                ],
            )?
            .iter()
            .map(|r| {
                let kind: String = r.try_get(2)?;
                let details: String = r.try_get(8)?;
                Ok(AuditEvent {
                    seq: r.try_get(0)?,
                    event: NewEvent {
                        at: r.try_get(1)?,
                        kind: AuditKind::parse(&kind)
                            .ok_or_else(|| self.corrupt("audit_events.kind", &kind))?,
                        actor: r.try_get(3)?,
                        policy: r.try_get(4)?,
                        run: r.try_get(5)?,
                        tenant: r.try_get(6)?,
                        conversation_id: r.try_get(7)?,
                        details: serde_json::from_str(&details)
                            .map_err(|_| self.corrupt("audit_events.details", &details))?,
                    },
                    prev_hash: r.try_get(9)?,
                    hash: r.try_get(10)?,
                    key_id: r.try_get(11)?,
                })
            })
            .collect()
        })
    }

    fn audit_head(&self) -> Result<AuditHead> {
        self.autocommit(|s| {
            Ok(s.query_opt(
                "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
                &[],
            )?
            .map(|r| -> Fallible<AuditHead> {
                Ok(AuditHead {
                    seq: r.try_get(0)?,
                    hash: r.try_get(1)?,
                })
            })
            .transpose()?
            .unwrap_or_else(|| AuditHead {
                seq: 0,
                hash: crate::audit::GENESIS.to_owned(),
            }))
        })
    }

    fn create_lifecycle_policy(&self, p: &LifecyclePolicy, event: &NewEvent) -> Result<()> {
        self.transaction(|s| {
            let mut head = lock_chain(s, self.audit_key.as_ref())?;
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

    fn publish_lifecycle_version(
        &self,
        policy: &str,
        v: &LifecycleVersion,
        event: &NewEvent,
    ) -> Result<()> {
        self.transaction(|s| {
            let mut head = lock_chain(s, self.audit_key.as_ref())?;
            let Some(active) = s.query_opt(
                "SELECT active_version FROM lifecycle_policies WHERE name = $1",
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
                "INSERT INTO lifecycle_versions (policy, name, seq, action, days, published_at, published_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &policy,
                    &v.name,
                    &(count + 1),
                    &action,
                    &days,
                    &micros(v.published_at),
                    &v.published_by,
                ],
            )?;
            if active.is_none() {
                s.execute(
                    "UPDATE lifecycle_policies SET active_version = $1 WHERE name = $2",
                    &[&v.name, &policy],
                )?;
            }
            append_audit(s, &mut head, [event])
        })
    }

    fn update_lifecycle_policy(
        &self,
        policy: &str,
        enabled: bool,
        active_version: &str,
        events: &[NewEvent],
    ) -> Result<()> {
        self.transaction(|s| {
            // The chain lock also makes the check below and the update one step for every writer.
            let mut head = lock_chain(s, self.audit_key.as_ref())?;
            let Some(scope) = s.query_opt(
                "SELECT artifact_type, audio_type FROM lifecycle_policies WHERE name = $1",
                &[&policy],
            )?
            else {
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
                "UPDATE lifecycle_policies SET enabled = $1, active_version = $2 WHERE name = $3",
                &[&enabled, &active_version, &policy],
            )?;
            append_audit(s, &mut head, events)
        })
    }

    fn lifecycle_policies(&self) -> Result<Vec<LifecyclePolicy>> {
        self.autocommit(|s| {
            let mut policies = Vec::new();
            for r in s.query(
                "SELECT name, description, artifact_type, audio_type, enabled, active_version, created_at, created_by \
                 FROM lifecycle_policies ORDER BY name",
                &[],
            )? {
                let audio: Option<String> = r.try_get(3)?;
                policies.push(LifecyclePolicy {
                    name: r.try_get(0)?,
                    description: r.try_get(1)?,
                    artifact_type: self.parse("lifecycle_policies.artifact_type", r.try_get(2)?)?,
                    audio_type: match audio {
                        Some(a) => Some(self.parse("lifecycle_policies.audio_type", a)?),
                        None => None,
                    },
                    enabled: r.try_get(4)?,
                    active_version: r.try_get(5)?,
                    versions: Vec::new(),
                    created_at: r.try_get(6)?,
                    created_by: r.try_get(7)?,
                });
            }
            for r in s.query(
                "SELECT policy, name, action, days, published_at, published_by FROM lifecycle_versions \
                 ORDER BY policy, seq",
                &[],
            )? {
                let policy: &str = r.try_get(0)?;
                let action: String = r.try_get(2)?;
                let days: Option<i64> = r.try_get(3)?;
                let version = LifecycleVersion {
                    name: r.try_get(1)?,
                    action: match (action.as_str(), days.map(u16::try_from)) {
                        ("keep_forever", _) => RetentionAction::KeepForever,
                        ("delete", Some(Ok(days))) => RetentionAction::Delete { days },
                        _ => return Err(self.corrupt("lifecycle_versions.action", &action)),
                    },
                    published_at: r.try_get(4)?,
                    published_by: r.try_get(5)?,
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
        self.autocommit(|s| {
            s.query(
                "SELECT c.pk, a.ordinal, c.tenant, c.id, c.rel_dir, a.file, a.size, c.start_ms + c.duration_ms, \
                 c.json_mtime_ns, c.json_size \
                 FROM conversations c JOIN artifacts a ON a.conversation = c.pk \
                 WHERE (c.pk, a.ordinal) > ($1, $2) AND c.start_ms + c.duration_ms <= $3 AND NOT c.legal_hold \
                 AND a.kind = $4 AND a.audio_type IS NOT DISTINCT FROM $5::text \
                 AND NOT EXISTS (SELECT 1 FROM artifact_deletions d WHERE d.conversation = c.pk AND d.file = a.file OFFSET 0) \
                 ORDER BY c.pk, a.ordinal LIMIT $6",
                &[
                    &after.0,
                    &after.1,
                    &q.cutoff.timestamp_millis(),
                    &q.artifact_type.as_str(),
                    &q.audio_type.map(|a| a.as_str()),
                    &(limit as i64),
                ],
            )?
            .iter()
            .map(|r| self.due_from_row(r, q))
            .collect()
        })
    }

    fn due_summary(&self, q: &DueQuery) -> Result<(u64, u64, Option<DateTime<Utc>>)> {
        let live = "NOT c.legal_hold AND a.kind = $2 AND a.audio_type IS NOT DISTINCT FROM $3::text \
             AND NOT EXISTS (SELECT 1 FROM artifact_deletions d WHERE d.conversation = c.pk AND d.file = a.file OFFSET 0)";
        let cutoff = q.cutoff.timestamp_millis();
        let audio_type = q.audio_type.map(|a| a.as_str());
        let params: [&(dyn ToSql + Sync); 3] = [&cutoff, &q.artifact_type.as_str(), &audio_type];
        self.autocommit(|s| {
            let r = s.query_one(
                &format!(
                    "SELECT count(*), coalesce(sum(a.size), 0)::int8 FROM conversations c \
                     JOIN artifacts a ON a.conversation = c.pk WHERE c.start_ms + c.duration_ms <= $1 AND {live}"
                ),
                &params,
            )?;
            let count = self.unsigned("count", r.try_get(0)?)?;
            let bytes = self.unsigned("artifacts.size", r.try_get(1)?)?;
            let next: Option<i64> = s
                .query_opt(
                    &format!(
                        "SELECT c.start_ms + c.duration_ms FROM conversations c JOIN artifacts a \
                         ON a.conversation = c.pk WHERE c.start_ms + c.duration_ms > $1 AND {live} \
                         ORDER BY c.start_ms + c.duration_ms LIMIT 1"
                    ),
                    &params,
                )?
                .map(|r| r.try_get(0))
                .transpose()?;
            Ok((count, bytes, next.and_then(DateTime::from_timestamp_millis)))
        })
    }

    fn live_artifact_count(&self) -> Result<u64> {
        self.autocommit(|s| {
            let n: i64 = s
                .query_one(
                    "SELECT (SELECT count(*) FROM artifacts) - (SELECT count(*) FROM artifact_deletions)",
                    &[],
                )?
                .try_get(0)?;
            Ok(n.max(0) as u64)
        })
    }

    fn begin_deletes(&self, intents: &[DueArtifact]) -> Result<()> {
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
            .map_err(|f| self.fail(f))?;
        let policy: Vec<&str> = intents.iter().map(|a| a.policy.as_str()).collect();
        let version: Vec<&str> = intents.iter().map(|a| a.version.as_str()).collect();
        let due: Vec<DateTime<Utc>> = intents.iter().map(|a| micros(a.due)).collect();
        self.autocommit(|s| {
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

    fn pending_deletes(&self) -> Result<Vec<DueArtifact>> {
        self.autocommit(|s| {
            s.query(
                "SELECT d.conversation, d.ordinal, d.tenant, d.conversation_id, d.rel_dir, d.file, d.size, \
                 d.policy, d.version, d.due, c.json_mtime_ns, c.json_size \
                 FROM delete_intents d LEFT JOIN conversations c ON c.pk = d.conversation \
                 ORDER BY d.conversation, d.ordinal",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(DueArtifact {
                    conversation_pk: r.try_get(0)?,
                    ordinal: r.try_get(1)?,
                    tenant: r.try_get(2)?,
                    conversation_id: r.try_get(3)?,
                    rel_dir: r.try_get(4)?,
                    file: r.try_get(5)?,
                    size: self.unsigned("delete_intents.size", r.try_get(6)?)?,
                    policy: r.try_get(7)?,
                    version: r.try_get(8)?,
                    due: r.try_get(9)?,
                    record: match (r.try_get::<_, Option<i64>>(10)?, r.try_get(11)?) {
                        (Some(mtime_ns), Some(size)) => Some(Fingerprint {
                            mtime_ns,
                            size: self.unsigned("conversations.json_size", size)?,
                        }),
                        _ => None,
                    },
                })
            })
            .collect()
        })
    }

    fn finish_deletes(
        &self,
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
        self.transaction(|s| {
            if !events.is_empty() {
                let mut head = lock_chain(s, self.audit_key.as_ref())?;
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
}

impl UploadJournal for PostgresCatalog {
    fn upload_started(
        &self,
        target: &str,
        key: &str,
        upload_id: &str,
        run: Option<RunId>,
    ) -> Result<()> {
        let now = micros(Utc::now());
        let run = run.map(|r| r.0);
        self.autocommit(|s| {
            s.execute(
                "INSERT INTO open_uploads (target, upload_id, key, started_at, run) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (target, upload_id) DO UPDATE SET key = EXCLUDED.key, \
                 started_at = EXCLUDED.started_at, run = EXCLUDED.run",
                &[&target, &upload_id, &key, &now, &run],
            )
            .map(drop)
        })
    }

    fn upload_ended(&self, target: &str, upload_id: &str) -> Result<()> {
        self.autocommit(|s| {
            s.execute(
                "DELETE FROM open_uploads WHERE target = $1 AND upload_id = $2",
                &[&target, &upload_id],
            )
            .map(drop)
        })
    }

    fn abandoned_uploads(&self, target: &str, run: Option<RunId>) -> Result<Vec<OpenUpload>> {
        let run = run.map(|r| r.0);
        self.autocommit(|s| {
            s.query(
                "SELECT key, upload_id FROM open_uploads u WHERE target = $1 \
                 AND (u.run IS NULL OR u.run IS NOT DISTINCT FROM $2 OR NOT EXISTS \
                      (SELECT 1 FROM job_runs j WHERE j.id = u.run AND j.status = 'running')) \
                 ORDER BY started_at, upload_id",
                &[&target, &run],
            )?
            .iter()
            .map(|r| {
                Ok(OpenUpload {
                    key: r.try_get(0)?,
                    upload_id: r.try_get(1)?,
                })
            })
            .collect()
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::audit::{GENESIS, verify_chain};
    use crate::catalog::conformance;

    /// The server the tests use: `CUSTODIAN_TEST_POSTGRES`, else the local one.
    fn server() -> String {
        std::env::var("CUSTODIAN_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    /// A schema of its own on the test server, dropped with everything in it when the test
    /// ends, passed or failed.
    pub(crate) struct Scratch {
        server: String,
        schema: String,
        /// The server's URL with this schema as the search path.
        pub url: String,
    }

    impl Scratch {
        pub(crate) fn new() -> Scratch {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let server = server();
            let schema = format!(
                "custodian_test_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let mut client = Client::connect(&server, NoTls).unwrap_or_else(|e| {
                panic!(
                    "the PostgreSQL catalog tests need a server, and {} cannot be reached ({}); \
                     start PostgreSQL there or set CUSTODIAN_TEST_POSTGRES to a URL such as \
                     postgres://USER@HOST:5432/DATABASE",
                    redact_url(&server),
                    describe(&e)
                )
            });
            client
                .batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
                ))
                .unwrap();
            let separator = if server.contains('?') { '&' } else { '?' };
            let url = format!("{server}{separator}options=-c%20search_path%3D{schema}");
            Scratch {
                server,
                schema,
                url,
            }
        }

        pub(crate) fn open(&self) -> PostgresCatalog {
            PostgresCatalog::open(&self.url).unwrap()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            if let Ok(mut client) = Client::connect(&self.server, NoTls) {
                let _ =
                    client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
            }
        }
    }

    fn fresh() -> (Scratch, PostgresCatalog) {
        let scratch = Scratch::new();
        let cat = scratch.open();
        (scratch, cat)
    }

    conformance::conformance_suite!(fresh);

    #[test]
    fn keyed_chain() {
        let scratch = Scratch::new();
        conformance::keyed_chain(&|key| Box::new(scratch.open().with_audit_key(key)));
    }

    #[test]
    fn sql_agrees_with_predicate() {
        let schemas = Mutex::new(Vec::new());
        conformance::sql_agrees_with_predicate(&|| {
            let scratch = Scratch::new();
            let cat = scratch.open();
            schemas.lock().unwrap().push(scratch);
            Box::new(cat)
        });
    }

    #[test]
    fn exclusions_probe_an_index_whatever_the_statistics_say() {
        let (_scratch, cat) = fresh();
        for (exclude, index) in [
            (Exclude::DoneIn(RunId(1)), "run_items_run"),
            (Exclude::ExportedBy("p".into()), "export_state_pkey"),
        ] {
            let (sql, params) = cat.page_sql(SELECT_CONVERSATION, &Filter::all(), &exclude, 0, 512);
            let plan: Vec<String> = cat
                .autocommit(|s| {
                    s.query(&format!("EXPLAIN {sql}"), &sql_params(&params))?
                        .iter()
                        .map(|r| Ok(r.try_get(0)?))
                        .collect()
                })
                .unwrap();
            let plan = plan.join("\n");
            assert!(
                !plan.contains("Anti Join") && plan.contains("SubPlan") && plan.contains(index),
                "{exclude:?}:\n{plan}"
            );
        }
    }

    #[test]
    fn processes_opening_a_new_catalog_at_once_migrate_it_once() {
        let scratch = Scratch::new();
        let barrier = std::sync::Barrier::new(6);
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    barrier.wait();
                    scratch.open();
                });
            }
        });
        let cat = scratch.open();
        assert_eq!(cat.conversation_count().unwrap(), 0);
        let versions: Vec<i64> = cat
            .autocommit(|s| {
                s.query("SELECT version FROM custodian_schema ORDER BY version", &[])?
                    .iter()
                    .map(|r| Ok(r.try_get(0)?))
                    .collect()
            })
            .unwrap();
        assert_eq!(versions, (1..=MIGRATIONS.len() as i64).collect::<Vec<_>>());
    }

    #[test]
    fn newer_schema_is_refused() {
        let scratch = Scratch::new();
        scratch
            .open()
            .autocommit(|s| s.execute("INSERT INTO custodian_schema (version) VALUES (99)", &[]))
            .unwrap();
        let err = PostgresCatalog::open(&scratch.url)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("schema version 99") && err.contains("upgrade custodian"),
            "{err}"
        );
    }

    #[test]
    fn two_catalogs_writing_at_once_keep_one_audit_chain() {
        let scratch = Scratch::new();
        let (a, b) = (scratch.open(), scratch.open());
        let convs: Vec<Conversation> = (0..20)
            .map(|i| {
                serde_json::from_value(serde_json::json!({
                    "schema": 1, "id": format!("c{i}"), "tenant": "acme", "type": "im",
                    "source_platform": "teams", "direction": "internal",
                    "start": "2026-01-02T10:00:00+00:00", "end": "2026-01-02T10:01:00+00:00",
                    "participants": [{"user": "a", "role": "participant"}], "artifacts": []
                }))
                .unwrap()
            })
            .collect();
        let changes: Vec<IndexChange> = convs
            .iter()
            .map(|c| IndexChange::Upsert {
                rel_dir: format!("acme/2026/01/02/{}", c.id),
                fingerprint: Fingerprint {
                    mtime_ns: 1,
                    size: 1,
                },
                conversation: Box::new(c.clone()),
            })
            .collect();
        a.apply_index(&changes).unwrap();
        let rounds = 25;
        std::thread::scope(|s| {
            for (cat, policy) in [(&a, "one"), (&b, "two")] {
                let convs = &convs;
                s.spawn(move || {
                    for round in 0..rounds {
                        // A run records a conversation once, so each round is a run.
                        let run = cat.begin_run(policy, Mode::Full, "t").unwrap();
                        let outcomes: Vec<ItemOutcome> = convs
                            .iter()
                            .skip(round % 5)
                            .step_by(5)
                            .map(|c| ItemOutcome::Exported {
                                tenant: c.tenant.clone(),
                                conversation_id: c.id.clone(),
                                fingerprint: Fingerprint {
                                    mtime_ns: 1,
                                    size: 1,
                                },
                                artifacts: Vec::new(),
                                objects: vec![ObjectRecord {
                                    key: format!("{policy}/{round}/{}", c.id),
                                    size: 1,
                                    sha256: GENESIS.into(),
                                }],
                                audit: NewEvent {
                                    at: Utc::now(),
                                    kind: AuditKind::ConversationExported,
                                    actor: policy.into(),
                                    policy: Some(policy.into()),
                                    run: Some(run.0),
                                    tenant: Some(c.tenant.clone()),
                                    conversation_id: Some(c.id.clone()),
                                    details: serde_json::json!({ "round": round }),
                                },
                            })
                            .collect();
                        cat.record_outcomes(run, policy, &outcomes).unwrap();
                    }
                });
            }
        });
        let events = a
            .audit_events(&AuditQuery {
                limit: 10_000,
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(events.len(), 2 * rounds * 4);
        assert!(events.iter().zip(1..).all(|(e, seq)| e.seq == seq));
        verify_chain(&events, None).unwrap();
        for policy in ["one", "two"] {
            assert!(events.iter().any(|e| e.event.actor == policy));
        }
    }

    #[test]
    fn an_unreachable_server_is_named_without_the_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgres://custodian:s3cret@127.0.0.1:{port}/records");
        let err = PostgresCatalog::open(&url).err().unwrap();
        assert!(matches!(err, CatalogError::Open { .. }), "{err:?}");
        let err = err.to_string();
        assert!(
            err.starts_with(&format!(
                "catalog postgres://custodian@127.0.0.1:{port}/records: "
            )) && err.contains(&format!("cannot connect to PostgreSQL at 127.0.0.1:{port}"))
                && err.contains("check that the server is running")
                && !err.contains("s3cret"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_schema_is_explained() {
        let scratch = Scratch::new();
        let url = scratch.url.replace(&scratch.schema, "no_such_schema");
        let err = PostgresCatalog::open(&url).err().unwrap().to_string();
        assert!(
            err.contains("search_path `no_such_schema` names no schema that exists")
                && err.contains("CREATE SCHEMA"),
            "{err}"
        );
    }

    #[test]
    fn a_held_policy_lock_is_released_when_its_process_dies() {
        let (_scratch, cat) = fresh();
        let held = cat.lock_policy("p").unwrap();
        let err = cat.lock_policy("p").err().unwrap().to_string();
        assert!(err.contains("policy `p` is already running"), "{err}");
        // A process that dies closes its connection without unlocking.
        std::mem::forget(held);
        let key = cat.lock_key("policy", "p");
        cat.autocommit(|s| {
            s.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
                 AND classid = (($1::int8 >> 32) & 4294967295)::oid \
                 AND objid = ($1::int8 & 4294967295)::oid AND objsubid = 1",
                &[&key],
            )
        })
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while cat.lock_policy("p").is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the lock outlived its connection"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn index_plans_follow_the_order_of_changes() {
        let conv = |id: &str| -> Conversation {
            serde_json::from_value(serde_json::json!({
                "schema": 1, "id": id, "tenant": "t", "type": "im", "source_platform": "x",
                "direction": "internal", "start": "2026-01-02T10:00:00+00:00",
                "end": "2026-01-02T10:01:00+00:00", "participants": [{"user": "a", "role": "participant"}]
            }))
            .unwrap()
        };
        let up = |dir: &str, id: &str| IndexChange::Upsert {
            rel_dir: dir.into(),
            fingerprint: Fingerprint {
                mtime_ns: 0,
                size: 0,
            },
            conversation: Box::new(conv(id)),
        };
        let existing = vec![
            (1, "d1".to_string(), "t".to_string(), "a".to_string()),
            (2, "d2".to_string(), "t".to_string(), "b".to_string()),
        ];
        let changes = [
            IndexChange::Remove {
                rel_dir: "d1".into(),
            },
            up("d1", "a"),
            up("d3", "b"),
            up("d2", "c"),
            up("d4", "c"),
            IndexChange::Remove {
                rel_dir: "d4".into(),
            },
        ];
        let plan = plan_index(&changes, &existing);
        assert!(plan.outcomes[2].as_ref().unwrap().contains("d2"));
        assert!(plan.outcomes[4].as_ref().unwrap().contains("d2"));
        assert_eq!(
            plan.outcomes
                .iter()
                .map(Option::is_some)
                .collect::<Vec<_>>(),
            [false, false, true, false, true, false]
        );
        assert_eq!(plan.delete, [1]);
        assert_eq!(plan.insert, [1]);
        assert_eq!(plan.update, [(2, 3)]);
    }
}
