//! The catalog: conversations and artifacts indexed from the repository, job runs, incremental
//! export state and audit events, behind one trait so SQLite (one file, the default) and
//! PostgreSQL (a catalog shared by several nodes) can stand in for each other. What both
//! implementations must say the same way (refusals, audit events they write) lives here.

pub mod accounts;
#[cfg(test)]
mod conformance;
pub mod conversations;
pub mod holds;
pub mod lifecycle;
#[cfg(feature = "postgres")]
pub mod postgres;
mod rows;
mod settings;
mod sql;
pub mod sqlite;
pub mod totals;
pub mod trail;
pub mod units;
pub mod uploads;

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::audit::{AuditEvent, AuditHead, NewEvent};
use crate::filter::Filter;
use crate::repository::record::Conversation;
use conversations::{ConversationDetail, ConversationSearch, ConversationSummary};
use holds::{ConversationRef, HoldScope, HoldSync, Matter, MatterState};
use lifecycle::{
    ChangeState, DeleteOutcome, DueArtifact, DueCount, DueQuery, LifecyclePolicy, LifecycleVersion,
    PendingChange, QuarantineCount, QuarantineOutcome, QuarantineSelect, QuarantineState,
    Quarantined,
};

pub use settings::{CatalogConfig, CatalogSettings};

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {location}: {source}")]
    Sqlite {
        location: String,
        source: rusqlite::Error,
    },
    /// A PostgreSQL error; the message carries the server's own text (its cause is not
    /// chained again, so `{:#}` prints it once).
    #[cfg(feature = "postgres")]
    #[error("catalog {location}: {}", postgres::describe(error))]
    Postgres {
        location: String,
        error: ::postgres::Error,
    },
    #[error("catalog {location}: {message}")]
    Open { location: String, message: String },
    #[error(
        "catalog {location}: the disk holding it is full; free space there and run the command again (what was committed is kept)"
    )]
    Full { location: String },
    /// A change the catalog's rules forbid (a duplicate name, a second enabled policy, …).
    #[error("{0}")]
    Refused(String),
    #[error("policy `{policy}` is already running (lock {lock}); wait for it to finish")]
    Busy { policy: String, lock: String },
    /// The audit key cannot be used to append to this catalog's chain.
    #[error(transparent)]
    AuditKey(#[from] crate::audit::KeyError),
    #[error(
        "catalog {location}: stored value {value:?} in {column} is not valid; was the catalog written by a newer custodian?"
    )]
    Corrupt {
        location: String,
        column: &'static str,
        value: String,
    },
}

pub type Result<T> = std::result::Result<T, CatalogError>;

/// What identifies the version of a conversation.json that was indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub mtime_ns: i64,
    pub size: u64,
}

/// One change found by an index pass.
#[derive(Debug)]
pub enum IndexChange {
    /// A new or changed record at `rel_dir` (its conversation directory, relative to the root).
    Upsert {
        rel_dir: String,
        fingerprint: Fingerprint,
        conversation: Box<Conversation>,
    },
    /// The conversation directory is gone from the repository.
    Remove { rel_dir: String },
}

/// A conversation selected from the catalog.
#[derive(Clone, Debug)]
pub struct Selected {
    pub rowid: i64,
    pub rel_dir: String,
    /// The version of the record selected; an incremental policy has handled the
    /// conversation once it has recorded this version.
    pub fingerprint: Fingerprint,
    pub conversation: Conversation,
    /// What the policy exported of this conversation before (filled for
    /// [`Exclude::ExportedBy`] only): a record that gained an artifact is selected again and
    /// only what is new or changed needs writing.
    pub exported: Vec<ExportedArtifact>,
    /// The matters whose active holds cover the conversation, by name (its exported metadata
    /// lists them).
    pub holds: Vec<String>,
}

/// An artifact a policy exported, as its record stated it then, and the file made from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedArtifact {
    pub file: String,
    /// The SHA-256 of the artifact (a changed one is exported again).
    pub sha256: String,
    /// Where it went, with the exported file's size and SHA-256; None for conversations
    /// exported before the catalog kept per-artifact state.
    pub output: Option<ObjectRecord>,
}

/// One object key an item is about to write, and the file of which conversation it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyClaim {
    pub key: String,
    pub tenant: String,
    pub conversation_id: String,
    /// The exported file's name (an output name, `conversation.json`, or `<id>.zip`).
    pub file: String,
}

/// What a claim of object keys found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claimed {
    /// The holders of the keys another file holds; when there is any, nothing was claimed.
    pub held: Vec<KeyClaim>,
    /// The keys claimed for the first time (empty when any key is held): no run of this
    /// catalog has written under them, so a writer need not ask the target what is there.
    pub fresh: Vec<String>,
}

impl KeyClaim {
    /// True when `other` holds the same file of the same conversation (a rerun).
    pub fn same_holder(&self, other: &KeyClaim) -> bool {
        self.tenant == other.tenant
            && self.conversation_id == other.conversation_id
            && self.file == other.file
    }
}

/// Which already-handled conversations a selection leaves out.
#[derive(Clone, Debug)]
pub enum Exclude {
    Nothing,
    /// Conversations whose current record version the policy has exported before
    /// (incremental mode); a record that changed since (a late transcript) is selected again.
    ExportedBy(String),
    /// Conversations already finished by this run (resuming a full-mode run).
    DoneIn(RunId),
}

impl Exclude {
    /// What a run of `policy` in `mode` leaves out: in incremental mode what the policy has
    /// exported before; in full mode what run `done_in` already finished (a resumed or shared
    /// run), or nothing.
    pub fn for_mode(mode: Mode, policy: &str, done_in: Option<RunId>) -> Exclude {
        match (mode, done_in) {
            (Mode::Incremental, _) => Exclude::ExportedBy(policy.to_owned()),
            (Mode::Full, Some(run)) => Exclude::DoneIn(run),
            (Mode::Full, None) => Exclude::Nothing,
        }
    }
}

/// A job run's identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    CompletedWithFailures,
    Failed,
    /// Stopped at the policy's execution time limit; what it finished is kept.
    TimedOut,
    /// Stopped after reporting no progress for the keep-alive timeout.
    Stalled,
    /// Stopped by a signal (`custodian serve` shutting down, Ctrl-C).
    Cancelled,
}

impl RunStatus {
    /// The exit code of a run that ended this way (docs/operations.md, "Exit codes"): 0 only
    /// for success.
    pub fn exit_code(self) -> u8 {
        u8::from(self != RunStatus::Succeeded)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::CompletedWithFailures => "completed_with_failures",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Stalled => "stalled",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Every outcome, in the order lists offer them.
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::CompletedWithFailures,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::Stalled,
        RunStatus::Cancelled,
    ];

    /// The outcome named `s` (as [`RunStatus::as_str`] names it).
    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Counters of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Counters {
    /// Conversations the run selected (including any resumed remainder).
    pub selected: u64,
    pub exported: u64,
    /// Conversations whose confidential flag a confidential-flag run changed.
    pub flagged: u64,
    /// Artifacts a lifecycle sweep deleted.
    pub deleted: u64,
    pub failed: u64,
    pub objects: u64,
    pub bytes: u64,
    /// Records the index pass could not read.
    pub index_errors: u64,
}

/// How an export policy tracks what it has done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every matching conversation every run.
    Full,
    /// Each conversation once per policy.
    Incremental,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Incremental => "incremental",
        }
    }
}

/// A job-run row.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct JobRun {
    pub id: RunId,
    pub policy: String,
    pub mode: Mode,
    pub target: String,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// How many times an interrupted run was picked up again.
    pub resumed: u32,
    pub counters: Counters,
    pub manifest_key: Option<String>,
    pub error_summary: Option<String>,
    /// The run's detailed log file, when the policy keeps one.
    pub log_path: Option<String>,
    /// What became of the email notification (sent, or why not).
    pub notification: Option<String>,
    /// What a lifecycle sweep held back because its required export policy had not exported
    /// it, a line per lifecycle policy (docs/operations.md, "Export before delete").
    pub held_back: Option<String>,
}

/// Which page of the job history to read: runs before `before` (all when None), of one
/// policy and one outcome when given, at most `limit` of them. Keyset paging by run id stays
/// as fast on the millionth run as on the first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunPage {
    pub policy: Option<String>,
    pub status: Option<RunStatus>,
    pub before: Option<RunId>,
    pub limit: usize,
}

/// One object written to a target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ObjectRecord {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

/// What happened to one item of a run.
// One outcome per item is made and moved into its batch once; boxing the large variant
// would add an allocation per exported conversation for no saving.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ItemOutcome {
    Exported {
        tenant: String,
        conversation_id: String,
        /// The record version exported (incremental state).
        fingerprint: Fingerprint,
        /// The artifacts written (per-artifact incremental state).
        artifacts: Vec<ExportedArtifact>,
        objects: Vec<ObjectRecord>,
        audit: NewEvent,
    },
    Failed {
        /// `tenant/conversation-id`, or the record's path when it could not be read.
        subject: String,
        error: String,
    },
}

/// A failed item of a run, for `jobs show`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct FailedItem {
    pub subject: String,
    pub error: String,
    pub at: DateTime<Utc>,
}

/// Filters for listing audit events.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub run: Option<RunId>,
    pub conversation_id: Option<String>,
    /// Only events of this kind (a trail: exports, lifecycle deletions, acknowledgments, …).
    pub kind: Option<crate::audit::AuditKind>,
    pub after_seq: i64,
    pub limit: usize,
}

/// What one page of a confidential-flag run does.
pub struct ConfidentialPage<'a> {
    pub run: RunId,
    pub policy: &'a str,
    pub filter: &'a Filter,
    pub exclude: &'a Exclude,
    pub value: bool,
    /// Incremental mode: record each conversation so later runs leave it out.
    pub remember: bool,
    pub actor: &'a str,
    pub limit: usize,
}

/// Held while a policy runs; dropping it lets another run of the policy start.
pub trait PolicyLock: Send {}

/// The catalog operations the engine needs. Implementations are safe to share between threads.
///
/// One trait, its methods grouped by concern: callers hold a `&dyn Catalog` and call any of
/// them with no other import, which sub-traits (each needing its own `use`) would not allow.
pub trait Catalog: uploads::UploadJournal + accounts::Accounts + Send + Sync {
    /// Human-readable location (a path or a URL without credentials) for messages.
    fn location(&self) -> String;

    /// Work units for runs shared by several nodes; None for a catalog one machine owns.
    fn work_units(&self) -> Option<&dyn units::WorkUnits> {
        None
    }

    // The index: what the repository holds.

    /// Fingerprints of indexed conversations whose directory lies under `rel_prefix/`.
    fn fingerprints_under(&self, rel_prefix: &str) -> Result<Vec<(String, Fingerprint)>>;

    /// Day directories (`tenant/YYYY/MM/DD`) that hold indexed conversations.
    fn indexed_days(&self) -> Result<Vec<String>>;

    /// Applies index changes in one transaction; returns an error text per change that could
    /// not be applied (e.g. a conversation id already indexed from another directory).
    fn apply_index(&self, changes: &[IndexChange]) -> Result<Vec<Option<String>>>;

    /// Number of indexed conversations.
    fn conversation_count(&self) -> Result<u64>;

    // Selections: what a policy's filter picks.

    /// How many conversations a selection yields.
    fn count_selection(&self, filter: &Filter, exclude: &Exclude) -> Result<u64>;

    /// The next page of a selection, ordered by rowid, after `after_rowid`.
    fn select_page(
        &self,
        filter: &Filter,
        exclude: &Exclude,
        after_rowid: i64,
        limit: usize,
    ) -> Result<Vec<Selected>>;

    /// Sets the confidential flag of the next page of conversations `filter` selects (after
    /// `after_rowid`, leaving out `exclude`) to `value`, in one transaction: the flag (kept
    /// across reindexing), one audit event per conversation whose flag changed, and the
    /// policy's incremental state. Returns the page's size, how many changed, and its last
    /// rowid.
    fn set_confidential_page(
        &self,
        page: &ConfidentialPage<'_>,
        after_rowid: i64,
    ) -> Result<(u64, u64, i64)>;

    // Job history: runs, their items and objects, the keys they claim.

    /// Takes the per-policy run lock.
    fn lock_policy(&self, policy: &str) -> Result<Box<dyn PolicyLock>>;

    /// The policy's run left `running` by a process that died, if any.
    fn interrupted_run(&self, policy: &str) -> Result<Option<JobRun>>;

    /// Creates a `running` job-run row.
    fn begin_run(&self, policy: &str, mode: Mode, target: &str) -> Result<RunId>;

    /// Marks an interrupted run as picked up again.
    fn resume_run(&self, run: RunId) -> Result<()>;

    /// Claims object keys of `target` before anything is written under them, for a batch of
    /// conversations (each one's claims a slice) in one transaction committed before it
    /// returns: each key is held by one file of one conversation for good, and the holder
    /// claiming it again (a rerun) keeps it. A conversation's claims stand or fall together:
    /// when any of its keys is held by another file (an earlier conversation of the batch
    /// among them), none of its keys is claimed and its answer names the holders; otherwise
    /// its answer has the keys claimed for the first time. One answer per conversation, in
    /// order.
    fn claim_keys(&self, target: &str, run: RunId, batch: &[Vec<KeyClaim>])
    -> Result<Vec<Claimed>>;

    /// Records item outcomes in one transaction: run items, objects, incremental state (the
    /// record version and each artifact written) and one audit event per exported
    /// conversation.
    fn record_outcomes(&self, run: RunId, policy: &str, outcomes: &[ItemOutcome]) -> Result<()>;

    /// Recomputes a run's counters from its recorded items (and, for a lifecycle sweep, its
    /// `artifact_deleted` events).
    fn run_counters(&self, run: RunId) -> Result<Counters>;

    /// Ends a run.
    fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        counters: &Counters,
        manifest_key: Option<&str>,
        error_summary: Option<&str>,
    ) -> Result<()>;

    /// Records where a run's log file is.
    fn set_run_log(&self, run: RunId, path: &str) -> Result<()>;

    /// Records what became of a run's notification.
    fn set_run_notification(&self, run: RunId, text: &str) -> Result<()>;

    /// Records what a sweep held back for export before delete, for its notification.
    fn set_run_held_back(&self, run: RunId, text: &str) -> Result<()>;

    /// Streams the objects a run wrote, in key order.
    fn run_objects(
        &self,
        run: RunId,
        each: &mut dyn FnMut(ObjectRecord) -> std::io::Result<()>,
    ) -> Result<std::io::Result<()>>;

    fn job_runs(&self, policy: Option<&str>, limit: usize) -> Result<Vec<JobRun>>;

    fn job_run(&self, run: RunId) -> Result<Option<JobRun>>;
    /// A page of the job history, newest first, as `page` filters it.
    fn job_runs_page(&self, page: &RunPage) -> Result<Vec<JobRun>>;

    fn failed_items(&self, run: RunId, limit: usize) -> Result<Vec<FailedItem>>;

    /// Drops the history (items, objects) of a policy's succeeded runs that finished before
    /// `before`; failed, partly failed and running ones are kept. Returns how many went.
    fn prune_runs(&self, policy: &str, before: DateTime<Utc>) -> Result<u64>;

    // The audit trail.

    fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;

    /// The audit chain's head: the last event's sequence number and hash (0 and the genesis
    /// hash when there is none), which run manifests anchor outside the catalog.
    fn audit_head(&self) -> Result<AuditHead>;

    /// Appends `event` alone, for what is recorded without changing anything else (a
    /// verification of the trail).
    fn append_audit_event(&self, event: &NewEvent) -> Result<()>;

    /// The newest event of a kind few events have (`trail_verified`, which an index covers).
    fn newest_verification(&self) -> Result<Option<AuditEvent>>;

    // Lifecycle policies and the deletions they make.

    /// Creates a lifecycle policy (disabled, no versions); refused if the name is taken.
    fn create_lifecycle_policy(&self, policy: &LifecyclePolicy, event: &NewEvent) -> Result<()>;

    /// Publishes a version; refused if the policy already has one of that name. The first
    /// version becomes the active one.
    fn publish_lifecycle_version(
        &self,
        policy: &str,
        version: &LifecycleVersion,
        event: &NewEvent,
    ) -> Result<()> {
        self.publish_lifecycle_version_activating(policy, version, true, event)
            .map(|_| ())
    }

    /// Publishes a version, as [`Catalog::publish_lifecycle_version`]; the first version
    /// becomes the active one only if `activate_first` (under four eyes a delete version
    /// becomes active only by an approved change). Returns whether it is the policy's first.
    fn publish_lifecycle_version_activating(
        &self,
        policy: &str,
        version: &LifecycleVersion,
        activate_first: bool,
        event: &NewEvent,
    ) -> Result<bool>;

    /// Sets whether a policy is enabled and its active version, with the audit events that
    /// record the change and its acknowledgments, in one transaction. Refused when another
    /// enabled policy covers the same artifact (and audio recording) type.
    fn update_lifecycle_policy(
        &self,
        policy: &str,
        enabled: bool,
        active_version: &str,
        events: &[NewEvent],
    ) -> Result<()>;

    /// Every lifecycle policy with its versions, by name.
    fn lifecycle_policies(&self) -> Result<Vec<LifecyclePolicy>>;

    /// The next page of artifacts `query` makes due, after `(conversation pk, ordinal)`:
    /// not deleted, their conversation neither under legal hold in its record nor covered by
    /// an active hold (left out inside the query).
    fn due_artifacts(
        &self,
        query: &DueQuery,
        after: (i64, i64),
        limit: usize,
    ) -> Result<Vec<DueArtifact>>;

    /// How many artifacts `query` makes due and their bytes, how many more would be due but
    /// for a hold, and the end instant of the earliest matching interaction not yet due.
    fn due_summary(&self, query: &DueQuery) -> Result<DueCount>;

    /// Artifacts in the catalog not deleted by a lifecycle policy.
    fn live_artifact_count(&self) -> Result<u64>;

    /// Records the intent to delete these artifacts (before their files are removed).
    fn begin_deletes(&self, intents: &[DueArtifact]) -> Result<()>;

    /// Intents a killed run left.
    fn pending_deletes(&self) -> Result<Vec<DueArtifact>>;

    /// Ends intents: a deleted artifact is recorded as deleted with its audit event (of `run`,
    /// the sweep's job run); a failed one is only forgotten (its file is still there; the next
    /// run tries again).
    fn finish_deletes(
        &self,
        outcomes: &[(DueArtifact, DeleteOutcome)],
        actor: &str,
        run: Option<RunId>,
    ) -> Result<()>;

    // Four eyes: changes that make a delete version take effect, applied once a second user
    // approves them (docs/operations.md, "Four eyes").

    /// Records a pending change with its events (the requester's acknowledgments and the
    /// request), whose details gain the change's id (`pending_change`); returns the id.
    /// Refused when the policy is not in the state the change was made from, or already has
    /// a pending change.
    fn request_lifecycle_change(&self, change: &PendingChange, events: &[NewEvent]) -> Result<i64>;

    /// Every change, or only the pending ones, by id.
    fn lifecycle_changes(&self, pending_only: bool) -> Result<Vec<PendingChange>>;

    /// Records every pending change that expired by `at` as expired, each with its
    /// `lifecycle_change_expired` event (by `actor`, who noticed), in one transaction;
    /// returns them.
    fn expire_lifecycle_changes(
        &self,
        at: DateTime<Utc>,
        actor: &str,
    ) -> Result<Vec<PendingChange>>;

    /// Decides change `id`: `to` is Approved or Rejected, by `by` at `at`. An approval applies
    /// the change to its policy; the change, the policy and `events` (whose details gain the
    /// change's id) are committed together. Refused, changing nothing, unless the change is
    /// pending and not expired, and, to approve it, unless `by` did not request it, the policy
    /// is as it was when it was requested, and no other enabled policy covers its type.
    fn decide_lifecycle_change(
        &self,
        id: i64,
        to: ChangeState,
        by: &str,
        at: DateTime<Utc>,
        events: &[NewEvent],
    ) -> Result<PendingChange>;

    // The quarantine window (docs/operations.md, "Quarantine"): intents before each move,
    // restore or purge, and what each did with its audit event after.

    /// Records the intent to move these due artifacts into the quarantine area under `names`
    /// (one each), for the sweep `run`, before any is moved.
    fn begin_quarantine(&self, intents: &[(DueArtifact, String)], run: Option<RunId>)
    -> Result<()>;

    /// The quarantine entries `select` picks, by conversation and file.
    fn quarantined(&self, select: &QuarantineSelect) -> Result<Vec<Quarantined>>;

    /// Records the intent to restore (`exempt` when a user restores) or purge these
    /// quarantined artifacts, before any file is moved or removed.
    fn mark_quarantine(
        &self,
        entries: &[Quarantined],
        state: QuarantineState,
        exempt: bool,
    ) -> Result<()>;

    /// Ends intents with what happened to each, and their audit events (of `run` when a sweep
    /// did it), in one transaction.
    fn finish_quarantine(
        &self,
        outcomes: &[(Quarantined, QuarantineOutcome)],
        actor: &str,
        run: Option<RunId>,
    ) -> Result<()>;

    /// What each policy version has in quarantine, and how much of it was quarantined at or
    /// before `purge_cutoff`.
    fn quarantine_counts(&self, purge_cutoff: DateTime<Utc>) -> Result<Vec<QuarantineCount>>;

    // Legal holds: matters and the holds placed under them (`holds`), each change committed
    // with its audit event.

    /// Creates a matter; refused if the name is taken.
    fn create_matter(&self, matter: &Matter, event: &NewEvent) -> Result<()>;

    /// Places a hold under `matter`, placed `at` by `by`, with `event` (which gains the hold's
    /// id as `hold`); returns its id. Refused when the
    /// matter does not exist, or an explicit hold names a conversation the catalog does not
    /// hold (nothing is placed). In the same transaction, queues a legal-hold sync of each
    /// conversation it covers that has an object key on one of `sync_targets` (the targets
    /// writing under Object Lock).
    fn place_hold(
        &self,
        matter: &str,
        scope: &HoldScope,
        at: DateTime<Utc>,
        by: &str,
        event: &NewEvent,
        sync_targets: &[String],
    ) -> Result<i64>;

    /// Releases every active hold of `matter`; returns how many. Refused when the matter does
    /// not exist or has no active hold. Queues syncs as [`Catalog::place_hold`] does.
    fn release_holds(
        &self,
        matter: &str,
        at: DateTime<Utc>,
        by: &str,
        event: &NewEvent,
        sync_targets: &[String],
    ) -> Result<u64>;

    /// Every matter (or only the one named `only`) with its holds and what its active holds
    /// cover now, by name. Counting what a matter's holds cover reads every conversation its
    /// standing holds could match, so `only` spares the others.
    fn matters(&self, only: Option<&str>) -> Result<Vec<MatterState>>;

    /// The matters whose active holds cover each of these conversations (by catalog pk), in
    /// one statement; conversations no hold covers are left out.
    fn holding_matters(&self, pks: &[i64]) -> Result<HashMap<i64, Vec<String>>>;

    /// Up to `limit` conversations queued for a legal-hold sync, after `after` in (tenant, id)
    /// order, with whether a hold covers each now and their objects.
    fn hold_syncs(&self, after: Option<&ConversationRef>, limit: usize) -> Result<Vec<HoldSync>>;

    /// Takes `done` off the legal-hold sync queue (an entry queued again since it was read
    /// stays) and appends `events`, in one transaction.
    fn finish_hold_syncs(&self, done: &[HoldSync], events: &[NewEvent]) -> Result<()>;

    // Conversations as the service shows them (`conversations`).

    /// A page of the conversations `search` finds, newest first, with their participants.
    fn search_conversations(&self, search: &ConversationSearch)
    -> Result<Vec<ConversationSummary>>;

    /// The conversation `tenant`/`id` with its artifacts and what became of each, its exports,
    /// deletions, quarantine entries, the origin of its confidential flag and the matters
    /// holding it; None when the catalog has no such conversation.
    fn conversation_detail(&self, tenant: &str, id: &str) -> Result<Option<ConversationDetail>>;

    // Metrics (`totals`).

    /// Every policy's finished runs totalled by outcome, and the runs going now.
    fn run_metrics(&self) -> Result<totals::RunMetrics>;
}

/// Opens the catalog a config names, appending audit events without a key: enough for
/// commands that only read, or that record a run's end. Appending to a keyed chain through
/// it is refused; open with [`open_keyed`] to append.
pub fn open(config: &CatalogConfig) -> Result<Box<dyn Catalog>> {
    open_with(config, None)
}

/// Opens the catalog a config names as [`open`] does, for `custodian serve`: a SQLite catalog it
/// creates is mode 0600, its own (docs/operations.md, "The service and its socket").
pub fn open_private(config: &CatalogConfig) -> Result<Box<dyn Catalog>> {
    match config {
        CatalogConfig::Sqlite { path } => Ok(Box::new(sqlite::SqliteCatalog::open_private(path)?)),
        _ => open(config),
    }
}

/// Opens the catalog a config names, appending audit events keyed with the key at `key`.
pub fn open_keyed(
    config: &CatalogConfig,
    key: crate::audit::KeySource,
) -> Result<Box<dyn Catalog>> {
    open_with(config, Some(key))
}

fn open_with(
    config: &CatalogConfig,
    key: Option<crate::audit::KeySource>,
) -> Result<Box<dyn Catalog>> {
    match config {
        CatalogConfig::Sqlite { path } => Ok(Box::new(
            sqlite::SqliteCatalog::open(path)?.with_audit_key(key),
        )),
        #[cfg(feature = "postgres")]
        CatalogConfig::Postgres { url } => Ok(Box::new(
            postgres::PostgresCatalog::open(url)?.with_audit_key(key),
        )),
        #[cfg(not(feature = "postgres"))]
        CatalogConfig::Postgres { url } => Err(CatalogError::Open {
            location: redact_url(url),
            message: POSTGRES_LEFT_OUT.into(),
        }),
    }
}

/// Why a build without the `postgres` feature cannot open a PostgreSQL catalog.
pub const POSTGRES_LEFT_OUT: &str = "this build of custodian leaves out the PostgreSQL catalog; build it with `--features postgres`";

/// `url` without its password (in the user info or a `password=` parameter), for messages.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let rest = match rest.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
            format!("{user}@{host}")
        }
        None => rest.to_owned(),
    };
    let query = query.map(|q| {
        q.split('&')
            .filter(|kv| {
                !kv.split('=')
                    .next()
                    .unwrap_or("")
                    .eq_ignore_ascii_case("password")
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    let mut out = if scheme.is_empty() {
        rest
    } else {
        format!("{scheme}://{rest}")
    };
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        out.push_str(&q);
    }
    out
}

/// An instant as audit details and SQLite store it: RFC 3339, microseconds, `Z`.
pub(crate) fn rfc3339_micros(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The refusal of a record whose tenant and id another directory already holds.
/// Why a record cannot go into any catalog, if it cannot: a catalog stores only records that
/// validate (numbers in range, no NUL in text), so one record's content fails that record and
/// never the batch it came in.
fn unstorable(conversation: &Conversation, fingerprint: Fingerprint) -> Option<String> {
    if fingerprint.size > crate::repository::record::MAX_SIZE {
        return Some(format!(
            "the record file's size {} is out of range",
            fingerprint.size
        ));
    }
    conversation.validate().err().map(|e| e.to_string())
}

fn duplicate_id(conversation: &Conversation, other: Option<&str>) -> String {
    format!(
        "conversation id `{}` of tenant `{}` is already indexed from {}; ids must be unique per tenant",
        conversation.id,
        conversation.tenant,
        other.unwrap_or("another directory")
    )
}

fn unknown_policy(policy: &str) -> CatalogError {
    CatalogError::Refused(format!(
        "no lifecycle policy named `{policy}` (see `custodian lifecycle list`)"
    ))
}

fn policy_exists(policy: &str) -> CatalogError {
    CatalogError::Refused(format!(
        "a lifecycle policy named `{policy}` already exists"
    ))
}

fn version_exists(policy: &str, version: &str) -> CatalogError {
    CatalogError::Refused(format!(
        "policy `{policy}` already has a version named `{version}`; versions are immutable, publish a new name"
    ))
}

fn other_enabled(other: &str, artifact_type: &str, audio_type: Option<&str>) -> CatalogError {
    let scope = match audio_type {
        Some(a) => format!("{artifact_type}/{a}"),
        None => artifact_type.to_owned(),
    };
    CatalogError::Refused(format!(
        "policy `{other}` is already enabled for {scope}; disable it first (at most one enabled policy per type)"
    ))
}

/// The lifecycle-history event of one deleted artifact.
fn deletion_event(
    a: &DueArtifact,
    was_missing: bool,
    now: DateTime<Utc>,
    actor: &str,
    run: Option<RunId>,
) -> NewEvent {
    NewEvent {
        at: now,
        kind: crate::audit::AuditKind::ArtifactDeleted,
        actor: actor.to_owned(),
        policy: Some(a.policy.clone()),
        run: run.map(|r| r.0),
        tenant: Some(a.tenant.clone()),
        conversation_id: Some(a.conversation_id.clone()),
        details: serde_json::json!({
            "artifact": a.file,
            "path": format!("{}/{}", a.rel_dir, a.file),
            "size": a.size,
            "version": a.version,
            "due": rfc3339_micros(a.due),
            "deleted_at": rfc3339_micros(now),
            "file_was_missing": was_missing,
        }),
    }
}

/// The audit event of one ended quarantine intent at `now`, if it did anything.
fn quarantine_event(
    q: &Quarantined,
    outcome: &QuarantineOutcome,
    now: DateTime<Utc>,
    actor: &str,
    run: Option<RunId>,
) -> Option<NewEvent> {
    let a = &q.artifact;
    let (kind, details) = match outcome {
        QuarantineOutcome::Kept => return None,
        QuarantineOutcome::Purged { was_missing } => {
            let mut e = deletion_event(a, *was_missing, now, actor, run);
            e.details["quarantine_name"] = serde_json::json!(q.name);
            e.details["quarantined_at"] = serde_json::json!(q.quarantined_at.map(rfc3339_micros));
            return Some(e);
        }
        QuarantineOutcome::Quarantined => (
            crate::audit::AuditKind::ArtifactQuarantined,
            serde_json::json!({
                "artifact": a.file,
                "path": format!("{}/{}", a.rel_dir, a.file),
                "size": a.size,
                "version": a.version,
                "due": rfc3339_micros(a.due),
                "quarantine_name": q.name,
                "quarantined_at": rfc3339_micros(now),
            }),
        ),
        QuarantineOutcome::Restored { reason } => (
            crate::audit::AuditKind::ArtifactRestored,
            serde_json::json!({
                "artifact": a.file,
                "path": format!("{}/{}", a.rel_dir, a.file),
                "size": a.size,
                "version": a.version,
                "quarantine_name": q.name,
                "quarantined_at": q.quarantined_at.map(rfc3339_micros),
                "restored_at": rfc3339_micros(now),
                "reason": reason,
                "exempt_from_version": q.exempt,
            }),
        ),
    };
    Some(NewEvent {
        at: now,
        kind,
        actor: actor.to_owned(),
        policy: Some(a.policy.clone()),
        run: run.map(|r| r.0),
        tenant: Some(a.tenant.clone()),
        conversation_id: Some(a.conversation_id.clone()),
        details,
    })
}

/// The event of one conversation whose confidential flag a page changed.
fn flag_event(
    page: &ConfidentialPage<'_>,
    tenant: &str,
    id: &str,
    was: bool,
    now: DateTime<Utc>,
) -> NewEvent {
    NewEvent {
        at: now,
        kind: crate::audit::AuditKind::ConfidentialFlagChanged,
        actor: page.actor.to_owned(),
        policy: Some(page.policy.to_owned()),
        run: Some(page.run.0),
        tenant: Some(tenant.to_owned()),
        conversation_id: Some(id.to_owned()),
        details: serde_json::json!({ "confidential": page.value, "was": was }),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn urls_are_shown_without_passwords() {
        for (url, shown) in [
            (
                "postgres://alice:s3cret@db:5432/custodian",
                "postgres://alice@db:5432/custodian",
            ),
            (
                "postgresql://alice@db/custodian?password=s3cret&options=-c%20search_path%3Dx",
                "postgresql://alice@db/custodian?options=-c%20search_path%3Dx",
            ),
            ("postgres://db/custodian", "postgres://db/custodian"),
            ("postgres://a:b:c@db/x?PASSWORD=y", "postgres://a@db/x"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
    }
}
