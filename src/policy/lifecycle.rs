//! Artifact lifecycle (retention): versioned policies kept in the catalog, and the sweep that
//! deletes what their active versions make due, with one audit event per deleted artifact.
//!
//! A delete is crash-safe in three steps: the intent is committed to the catalog (durably),
//! the file is removed and its directory synced, then the deletion and its audit event are
//! committed together and the intent dropped. A rerun first completes every intent left by a killed run, so every deleted
//! artifact has exactly one event, and nothing is recorded deleted that is still on disk.
//!
//! Each delete goes through directory handles under the repository root, opened once per sweep,
//! and never through a link: a conversation directory swapped for a symlink fails its artifacts
//! instead of deleting what the link points to. What a legal hold covers (docs/operations.md,
//! "Legal holds") is never selected, and just before a batch's files are removed the catalog's
//! holds are checked again for its conversations, in one statement: a hold placed since the
//! batch was selected holds them back. Then each conversation's `conversation.json` is read
//! again, once per conversation and batch, through the same handle: a record that now puts it
//! under legal hold, or that changed since it was indexed, holds its artifacts back.
//!
//! A sweep is a job run of its own ([`run`]), under the `[lifecycle]` job settings: its
//! deletions' audit events carry the run, a stopped sweep (signal, time limit, keep-alive)
//! ends after the batch in flight, and a killed one is resumed by the next.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::index::IndexReport;
use super::quarantine::{self, Area, QuarantineConfig};
use crate::catalog::lifecycle::{
    DeleteOutcome, DueArtifact, DueQuery, LifecyclePolicy, LifecycleVersion, RetentionAction,
};
use crate::catalog::{Catalog, CatalogError, Fingerprint, Mode, RunId, RunStatus};
use crate::confined::{ConfinedError, Dir, in_parallel};
use crate::pipeline::Control;
use crate::repository::record::{Conversation, RECORD_FILE};
use crate::schedule::JobSettings;
use crate::schedule::notify::NotifySettings;
use crate::schedule::runlog::RunLog;
use crate::settings::{Invalid, positive_duration, resolve};
#[cfg(feature = "remote")]
use crate::source::{SourceError, Store};

#[cfg(feature = "remote")]
mod store;

/// Name `custodian run` and `plan` give the lifecycle sweep; no config policy may take it.
pub const LIFECYCLE_RUN: &str = "lifecycle";

/// What the job history names as the lifecycle sweep's target: it deletes from the repository.
pub const LIFECYCLE_TARGET: &str = "repository";

/// Settings of the lifecycle sweep and of lifecycle policy management.
#[derive(Clone, Debug)]
pub struct LifecycleConfig {
    /// The roles file granting lifecycle permissions to users and groups.
    pub roles: Option<PathBuf>,
    /// Most artifacts one `run lifecycle` may delete without `--force`.
    pub max_deletes_per_run: u64,
    /// Largest share (0..=1) of the catalog's artifacts one run may delete without `--force`.
    pub max_delete_share: f64,
    /// When `custodian serve` runs the sweep, and its run control, log and notifications.
    pub job: JobSettings,
    /// How many users a change that makes a delete version take effect needs: 1 (its
    /// requester) or 2 (four eyes: another user approves it; docs/operations.md, "Four eyes").
    pub approvals: u8,
    /// How long a change waits for its approval before it expires.
    pub approval_expiry: std::time::Duration,
    /// The quarantine window, if due artifacts are quarantined before they are deleted.
    pub quarantine: Option<QuarantineConfig>,
}

/// How long a change waits for a second user's approval unless `approval_expiry` says.
const DEFAULT_APPROVAL_EXPIRY: std::time::Duration = std::time::Duration::from_secs(72 * 3600);

/// The `[lifecycle]` table as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSettings {
    roles: Option<PathBuf>,
    max_deletes_per_run: Option<u64>,
    max_delete_share: Option<f64>,
    quarantine_days: Option<u64>,
    quarantine_dir: Option<PathBuf>,
    schedule: Option<String>,
    timezone: Option<String>,
    keep_job_history_days: Option<u32>,
    time_limit: Option<String>,
    keep_alive: Option<String>,
    log_dir: Option<PathBuf>,
    notify: Option<NotifySettings>,
    approvals: Option<u8>,
    approval_expiry: Option<String>,
}

crate::schedule::job_keys!(LifecycleSettings);

impl LifecycleSettings {
    /// The sweep's settings, paths relative to `base`, the config's directory.
    pub fn validate(&self, base: &Path) -> Result<LifecycleConfig, Invalid> {
        let mut lifecycle = LifecycleConfig {
            roles: self.roles.as_ref().map(|r| resolve(base, r)),
            max_deletes_per_run: 100_000,
            max_delete_share: 0.10,
            job: self.job().validate(base)?,
            quarantine: None,
            approvals: 1,
            approval_expiry: DEFAULT_APPROVAL_EXPIRY,
        };
        match self.approvals {
            None => {}
            Some(n @ (1 | 2)) => lifecycle.approvals = n,
            Some(n) => {
                return Err(Invalid::at(
                    "approvals",
                    format!(
                        "must be 1 (a change takes effect when its requester makes it) or 2 (a second user approves it), not {n}"
                    ),
                ));
            }
        }
        if let Some(text) = &self.approval_expiry {
            if lifecycle.approvals != 2 {
                return Err(Invalid::at(
                    "approval_expiry",
                    "applies only with `approvals = 2`: set that too, or remove this key",
                ));
            }
            lifecycle.approval_expiry =
                positive_duration(text).map_err(|m| Invalid::at("approval_expiry", m))?;
        }
        match (self.quarantine_days, &self.quarantine_dir) {
            (Some(days), dir) => {
                let days = u16::try_from(days)
                    .ok()
                    .filter(|d| (1..=crate::catalog::lifecycle::MAX_DAYS).contains(d))
                    .ok_or_else(|| {
                        Invalid::at(
                            "quarantine_days",
                            "days a due artifact stays in quarantine before it is purged: 1..=9999",
                        )
                    })?;
                lifecycle.quarantine = Some(QuarantineConfig {
                    days,
                    dir: dir.as_ref().map(|d| resolve(base, d)),
                });
            }
            (None, Some(_)) => {
                return Err(Invalid::at(
                    "quarantine_dir",
                    "applies only with quarantine_days; add `quarantine_days = N` or remove it",
                ));
            }
            (None, None) => {}
        }
        if let Some(n) = self.max_deletes_per_run {
            if n == 0 {
                return Err(Invalid::at("max_deletes_per_run", "must be at least 1"));
            }
            lifecycle.max_deletes_per_run = n;
        }
        if let Some(share) = self.max_delete_share {
            if !(share > 0.0 && share <= 1.0) {
                return Err(Invalid::at(
                    "max_delete_share",
                    "a share of the catalog between 0 (exclusive) and 1, such as 0.1 for 10%",
                ));
            }
            lifecycle.max_delete_share = share;
        }
        Ok(lifecycle)
    }
}

/// What a user must acknowledge before enabling, disabling or re-pointing a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acknowledgment {
    StorageOverage,
    IrreversibleDelete,
}

impl Acknowledgment {
    /// What the user types after `--acknowledge`.
    pub fn token(self) -> &'static str {
        match self {
            Acknowledgment::StorageOverage => "storage-overage",
            Acknowledgment::IrreversibleDelete => "irreversible-delete",
        }
    }

    /// What the user acknowledges, recorded in the acknowledgments audit trail.
    pub fn text(self) -> &'static str {
        match self {
            Acknowledgment::StorageOverage => {
                "Artifacts kept in active storage count against the storage allowance; keeping them longer may exceed it and incur overage charges."
            }
            Acknowledgment::IrreversibleDelete => {
                "Artifacts deleted by this policy cannot be retrieved."
            }
        }
    }

    /// The acknowledgments a change to a policy whose (new) active version is `version` needs.
    pub fn needed_for(version: &LifecycleVersion) -> Vec<Acknowledgment> {
        let mut needed = vec![Acknowledgment::StorageOverage];
        if matches!(version.action, RetentionAction::Delete { .. }) {
            needed.push(Acknowledgment::IrreversibleDelete);
        }
        needed
    }

    /// Checks that every needed acknowledgment was given; the refusal quotes what to type and
    /// what it means.
    pub fn check(needed: &[Acknowledgment], given: &[String]) -> Result<(), String> {
        let missing: Vec<_> = needed
            .iter()
            .filter(|a| !given.iter().any(|g| g == a.token()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = missing
            .iter()
            .map(|a| format!("  --acknowledge {}   ({})", a.token(), a.text()))
            .collect();
        Err(format!(
            "this change needs explicit acknowledgment; rerun with:\n{}",
            lines.join("\n")
        ))
    }
}

/// What a policy makes due now.
#[derive(Clone, Debug, Serialize)]
pub struct DueSummary {
    pub policy: String,
    pub version: String,
    pub scope: String,
    pub days: u16,
    pub artifacts: u64,
    pub bytes: u64,
    /// Artifacts that would be due but for a hold: a matter's (docs/operations.md, "Legal
    /// holds") or their record's legal_hold flag.
    pub held: u64,
    /// Of those, how many each matter's active holds cover, by matter (a conversation two
    /// matters hold counts for both; one only its record holds counts for none).
    pub held_by_matter: BTreeMap<String, u64>,
    /// The export policy the version requires before it deletes (docs/operations.md, "Export
    /// before delete").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_export: Option<String>,
    /// Due artifacts no hold covers that `require_export` has not exported yet: held back.
    pub not_exported: u64,
    /// When the next artifact not yet due becomes due.
    pub next_due: Option<DateTime<Utc>>,
    /// Artifacts this policy moved into quarantine (docs/operations.md, "Quarantine") that are
    /// there still, and their bytes.
    pub in_quarantine: u64,
    pub quarantined_bytes: u64,
    /// Of those, how many the next sweep purges (their time in quarantine is up and the
    /// version that quarantined them is still active), unless a hold covers them.
    pub purgeable: u64,
}

/// Safety limits of one sweep.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_count: u64,
    /// Share of the catalog's live artifacts, 0..=1.
    pub max_share: f64,
    /// Go on even when a limit is exceeded.
    pub force: bool,
}

/// What a sweep did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SweepReport {
    /// Deletes a killed run left half done, completed first.
    pub resumed: u64,
    pub deleted: u64,
    /// Deleted artifacts whose file was already gone (recorded with that fact).
    pub already_missing: u64,
    pub bytes: u64,
    /// Due artifacts kept just before deleting: a hold placed since they were selected covers
    /// them, or their record, read again, holds them (legal hold set, or changed since
    /// indexed). What holds kept out of the selection is each policy's `held`.
    pub held_back: u64,
    /// Why, for the first 50 of them.
    pub held_back_reasons: Vec<String>,
    /// Due artifacts moved into quarantine instead of deleted (docs/operations.md,
    /// "Quarantine").
    pub quarantined: u64,
    /// Quarantined artifacts put back because a hold covers them.
    pub restored: u64,
    /// Quarantined artifacts removed for good (each an `artifact_deleted` event).
    pub purged: u64,
    pub failed: u64,
    pub failures: Vec<String>,
    pub policies: Vec<DueSummary>,
}

impl SweepReport {
    /// Adds the deletions counted in `other`.
    #[cfg(feature = "remote")]
    fn absorb(&mut self, other: SweepReport) {
        self.deleted += other.deleted;
        self.already_missing += other.already_missing;
        self.bytes += other.bytes;
        self.held_back += other.held_back;
        let room = 50usize.saturating_sub(self.held_back_reasons.len());
        self.held_back_reasons
            .extend(other.held_back_reasons.into_iter().take(room));
        self.failed += other.failed;
        let room = 50usize.saturating_sub(self.failures.len());
        self.failures.extend(other.failures.into_iter().take(room));
    }
}

/// Why a sweep could not run: the catalog failed (its run stays open, and the next sweep
/// resumes it unless `serve` records it failed), or the repository root cannot be opened or
/// more is due than its limits allow (its run is recorded `failed`, and nothing was deleted
/// but, in the second case, what a killed run had left half done).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("repository root {path}: {source}; check `root` in [repository] of the config")]
    Root {
        path: PathBuf,
        source: ConfinedError,
    },
    #[error(
        "{due} artifacts are due, more than this run may delete ({reason}); check the policies (`custodian plan lifecycle`), raise the limit in [lifecycle] of the config, or rerun with --force"
    )]
    OverLimit { due: u64, reason: String },
    #[error("quarantine area: {0}; check `quarantine_dir` in [lifecycle] of the config")]
    Quarantine(String),
    /// The repository's store cannot be swept: it does not answer, or keeps versions a delete
    /// would leave behind.
    #[cfg(feature = "remote")]
    #[error(transparent)]
    Store(#[from] SourceError),
}

impl SweepError {
    /// Whether the sweep refused before deleting anything new (its run is recorded failed),
    /// rather than losing the catalog.
    pub fn refused(&self) -> bool {
        !matches!(self, SweepError::Catalog(_))
    }
}

/// Where a sweep deletes.
#[derive(Clone, Copy)]
pub enum Repo<'a> {
    /// A directory tree, with the quarantine window if there is one.
    Dir {
        root: &'a Path,
        quarantine: Option<&'a QuarantineConfig>,
    },
    /// A bucket or container (docs/operations.md, "A repository in an object store").
    #[cfg(feature = "remote")]
    Store(&'a Store),
}

/// Deletes handled per catalog transaction.
const BATCH: usize = 2000;
/// Artifacts deleted from a store per batch: enough for several delete requests of 1,000
/// keys at once, so that the store works on them side by side.
#[cfg(feature = "remote")]
const STORE_BATCH: usize = 8000;

/// Every enabled policy's due summary at `now`, with what it has in quarantine and how much of
/// that is purgeable after `quarantine_days` (none without a quarantine window).
pub fn plan(
    catalog: &dyn Catalog,
    now: DateTime<Utc>,
    quarantine_days: Option<u16>,
) -> Result<Vec<DueSummary>, CatalogError> {
    summarize(
        catalog,
        &catalog.lifecycle_policies()?,
        now,
        quarantine_days,
    )
}

fn summarize(
    catalog: &dyn Catalog,
    policies: &[LifecyclePolicy],
    now: DateTime<Utc>,
    quarantine_days: Option<u16>,
) -> Result<Vec<DueSummary>, CatalogError> {
    // Without a window nothing is purgeable: the cutoff lies before any quarantine.
    let cutoff = quarantine_days.map_or(DateTime::<Utc>::MIN_UTC, |d| {
        now - TimeDelta::days(i64::from(d))
    });
    let quarantined = catalog.quarantine_counts(cutoff)?;
    let mut out = Vec::new();
    for p in policies {
        if let Some(q) = DueQuery::of(p, now) {
            let due = catalog.due_summary(&q)?;
            let mine = quarantined.iter().filter(|c| c.policy == q.policy);
            out.push(DueSummary {
                policy: q.policy.clone(),
                version: q.version.clone(),
                scope: p.scope(),
                days: q.days,
                artifacts: due.artifacts,
                bytes: due.bytes,
                held: due.held,
                held_by_matter: due.held_by_matter.into_iter().collect(),
                require_export: q.require_export.clone(),
                not_exported: due.not_exported,
                next_due: due
                    .next_end
                    .map(|end| end + TimeDelta::days(i64::from(q.days))),
                in_quarantine: mine.clone().map(|c| c.artifacts).sum(),
                quarantined_bytes: mine.clone().map(|c| c.bytes).sum(),
                purgeable: mine
                    .filter(|c| c.version == q.version)
                    .map(|c| c.purgeable)
                    .sum(),
            });
        }
    }
    Ok(out)
}

/// What `policies` held back for export before delete, a clause per policy that did
/// (`voice-7y: 12 due artifact(s) held back: not exported by archive`); None when none did.
pub fn not_exported(policies: &[DueSummary]) -> Option<String> {
    let lines: Vec<String> = policies
        .iter()
        .filter(|p| p.not_exported > 0)
        .filter_map(|p| {
            let export = p.require_export.as_deref()?;
            Some(format!(
                "{}: {} due artifact(s) held back: not exported by {export}",
                p.policy, p.not_exported
            ))
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}

/// Who deletes: the actor and job run each audit event records, and the run's control (a
/// stopped sweep ends after the batch in flight).
#[derive(Clone, Copy)]
pub struct Deleter<'a> {
    pub actor: &'a str,
    pub run: Option<RunId>,
    pub control: &'a Control,
}

/// The end state of a sweep's job run.
#[derive(Debug, Serialize)]
pub struct SweepSummary {
    pub run: RunId,
    pub status: RunStatus,
    /// The run picks up one a killed process left.
    pub resumed_run: bool,
    pub index: Option<IndexReport>,
    #[serde(flatten)]
    pub report: SweepReport,
    pub error_summary: Option<String>,
    pub seconds: f64,
}

/// One sweep as a job run of its own: starts (or resumes) the run, records the index
/// failures, deletes what is due at `now` and records the outcome.
#[allow(clippy::too_many_arguments)]
pub fn run(
    catalog: &dyn Catalog,
    repo: Repo<'_>,
    now: DateTime<Utc>,
    job: &JobSettings,
    actor: &str,
    limits: Limits,
    index: Option<IndexReport>,
    progress: &dyn crate::progress::Progress,
    control: &Control,
    log: &RunLog,
) -> Result<SweepSummary, SweepError> {
    let started = Instant::now();
    let (run, resumed_run) = super::start_run(
        catalog,
        LIFECYCLE_RUN,
        Mode::Full,
        LIFECYCLE_TARGET,
        job,
        control,
        log,
    )?;
    tracing::info!(run = run.0, resumed_run, "lifecycle sweep started");
    let index_failures = super::index_failures(index.as_ref());
    catalog.record_outcomes(run, LIFECYCLE_RUN, &index_failures)?;
    let by = Deleter {
        actor,
        run: Some(run),
        control,
    };
    let report = |p| match p {
        Progress::Due(n) => progress.set_length(n),
        Progress::Done(n) => progress.advance(n),
    };
    let swept = match repo {
        Repo::Dir { root, quarantine } => {
            sweep(catalog, root, now, by, limits, quarantine, &report)
        }
        #[cfg(feature = "remote")]
        Repo::Store(store) => sweep_store(catalog, store, now, by, limits, &report),
    };
    // Counted from what the sweep recorded, with the deletions of a killed process this run
    // resumes (the index failures are recorded as failed items).
    let mut counters = catalog.run_counters(run)?;
    counters.index_errors = index_failures.len() as u64;
    let report = match swept {
        Ok(report) => report,
        Err(e) if e.refused() => {
            if let SweepError::OverLimit { due, .. } = e {
                counters.selected = due;
            }
            catalog.finish_run(
                run,
                RunStatus::Failed,
                &counters,
                None,
                Some(&e.to_string()),
            )?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if let Some(text) = not_exported(&report.policies) {
        catalog.set_run_held_back(run, &text)?;
    }
    // The half-done deletes it completed were due too.
    counters.selected = report.resumed + report.policies.iter().map(|p| p.artifacts).sum::<u64>();
    counters.failed += report.failed;
    counters.bytes = report.bytes;
    let stopped = control.stopped();
    let status = super::outcome(stopped, counters.failed);
    let error_summary = match (stopped, report.failures.first()) {
        (Some(why), _) => Some(format!(
            "{}; {} of {} due artifact(s) deleted or quarantined",
            why.describe(job.time_limit, job.keep_alive),
            report.deleted + report.quarantined,
            counters.selected
        )),
        (None, Some(first)) => Some(format!(
            "{} artifact(s) could not be deleted; first: {first}",
            report.failed
        )),
        (None, None) => super::index_failure_summary(&index_failures),
    };
    catalog.finish_run(run, status, &counters, None, error_summary.as_deref())?;
    tracing::info!(
        status = status.as_str(),
        deleted = report.deleted,
        failed = report.failed,
        "lifecycle sweep finished"
    );
    Ok(SweepSummary {
        run,
        status,
        resumed_run,
        index,
        report,
        error_summary,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What a sweep reports as it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// This many artifacts are due, once the limits are checked.
    Due(u64),
    /// A batch of this many was deleted (or failed) and recorded.
    Done(u64),
}

/// Deletes everything due at `now` under `root`, completing the deletes a killed run left
/// first; stops after the batch in flight once `by.control` is stopped.
pub fn sweep(
    catalog: &dyn Catalog,
    root: &Path,
    now: DateTime<Utc>,
    by: Deleter<'_>,
    limits: Limits,
    quarantine: Option<&QuarantineConfig>,
    progress: &dyn Fn(Progress),
) -> Result<SweepReport, SweepError> {
    let root = Dir::open_root(root).map_err(|source| SweepError::Root {
        path: root.to_owned(),
        source,
    })?;
    let area = quarantine
        .map(|c| Area::open(&root, c).map(|area| (area, c)))
        .transpose()
        .map_err(SweepError::Quarantine)?;
    let place = Place::Dir {
        root: &root,
        area: area.as_ref().map(|(area, c)| (area, *c)),
    };
    sweep_in(catalog, &place, now, by, limits, progress)
}

/// Deletes everything due at `now` from the repository in `store`, in batches of requests
/// that each delete up to 1,000 keys, and every version of each key when the bucket keeps
/// versions; otherwise as [`sweep`] does.
#[cfg(feature = "remote")]
pub fn sweep_store(
    catalog: &dyn Catalog,
    store: &Store,
    now: DateTime<Utc>,
    by: Deleter<'_>,
    limits: Limits,
    progress: &dyn Fn(Progress),
) -> Result<SweepReport, SweepError> {
    let sweeper = store::Sweeper::open(store)?;
    sweep_in(catalog, &Place::Store(&sweeper), now, by, limits, progress)
}

/// Where a sweep, once started, removes files.
enum Place<'a> {
    /// Through directory handles under the root, into the quarantine area if there is one.
    Dir {
        root: &'a Dir,
        area: Option<(&'a Area, &'a QuarantineConfig)>,
    },
    #[cfg(feature = "remote")]
    Store(&'a store::Sweeper<'a>),
}

fn sweep_in(
    catalog: &dyn Catalog,
    place: &Place<'_>,
    now: DateTime<Utc>,
    by: Deleter<'_>,
    limits: Limits,
    progress: &dyn Fn(Progress),
) -> Result<SweepReport, SweepError> {
    let mut report = SweepReport::default();
    let (root, area) = match place {
        Place::Dir { root, area } => (Some(*root), *area),
        #[cfg(feature = "remote")]
        Place::Store(_) => (None, None),
    };
    let pending = catalog.pending_deletes()?;
    report.resumed = pending.len() as u64;
    for chunk in pending.chunks(BATCH) {
        remove_and_record(catalog, place, chunk, by, &mut report)?;
    }
    if let (Some(root), Some((area, _))) = (root, area) {
        report.resumed += quarantine::resume(catalog, root, area, by, &mut report)?;
    }
    let policies = catalog.lifecycle_policies()?;
    report.policies = summarize(catalog, &policies, now, area.map(|(_, c)| c.days))?;
    let due: u64 = report.policies.iter().map(|p| p.artifacts).sum();
    if !limits.force && due > 0 {
        let live = catalog.live_artifact_count()?;
        let share = due as f64 / live.max(1) as f64;
        if due > limits.max_count {
            return Err(SweepError::OverLimit {
                due,
                reason: format!("at most {} per run", limits.max_count),
            });
        }
        if share > limits.max_share {
            return Err(SweepError::OverLimit {
                due,
                reason: format!(
                    "{:.1}% of the catalog's {live} artifacts, above the limit of {:.1}%",
                    share * 100.0,
                    limits.max_share * 100.0
                ),
            });
        }
    }
    progress(Progress::Due(due));
    for q in policies.iter().filter_map(|p| DueQuery::of(p, now)) {
        #[cfg(feature = "remote")]
        if let Place::Store(_) = place {
            delete_overlapped(catalog, place, &q, by, &mut report, progress)?;
            continue;
        }
        let mut after = (0, -1);
        while !by.control.is_stopped() {
            let batch = catalog.due_artifacts(&q, after, BATCH)?;
            let Some(last) = batch.last() else { break };
            after = (last.conversation_pk, last.ordinal);
            match (root, area) {
                (Some(root), Some((area, _))) => {
                    quarantine::quarantine_batch(catalog, root, area, &batch, by, &mut report)?
                }
                _ => {
                    catalog.begin_deletes(&batch)?;
                    remove_and_record(catalog, place, &batch, by, &mut report)?;
                }
            }
            progress(Progress::Done(batch.len() as u64));
            #[cfg(feature = "failpoints")]
            fail::fail_point!("lifecycle-batch");
        }
    }
    if let (Some(root), Some((area, _))) = (root, area) {
        quarantine::pass(catalog, root, area, now, &policies, by, &mut report)?;
    }
    Ok(report)
}

/// Deletes what `q` selects from a store a batch at a time, the catalog's work on one batch
/// overlapping the store's on the next: while one batch's deletions are committed with their
/// events (on a thread of their own), the next batch's intents are committed and its objects
/// deleted. Each batch's intents are still durable before any of its deletes, and each
/// deletion is recorded only after the store answered it (docs/operations.md, "A repository
/// in an object store"); a stop ends after the batches in flight.
#[cfg(feature = "remote")]
fn delete_overlapped(
    catalog: &dyn Catalog,
    place: &Place<'_>,
    q: &DueQuery,
    by: Deleter<'_>,
    report: &mut SweepReport,
    progress: &dyn Fn(Progress),
) -> Result<(), CatalogError> {
    type Outcomes = Vec<(DueArtifact, DeleteOutcome)>;
    std::thread::scope(|scope| {
        let (send, batches) = std::sync::mpsc::sync_channel::<Outcomes>(1);
        let recorder = scope.spawn(move || -> Result<SweepReport, CatalogError> {
            let mut counted = SweepReport::default();
            for outcomes in batches {
                record(catalog, &outcomes, by, &mut counted)?;
            }
            Ok(counted)
        });
        let selected = (|| {
            let mut after = (0, -1);
            while !by.control.is_stopped() {
                let batch = catalog.due_artifacts(q, after, STORE_BATCH)?;
                let Some(last) = batch.last() else { break };
                after = (last.conversation_pk, last.ordinal);
                catalog.begin_deletes(&batch)?;
                let outcomes = remove_intents(catalog, place, &batch)?;
                // The recorder stopped on an error, which it returns.
                if send.send(outcomes).is_err() {
                    break;
                }
                progress(Progress::Done(batch.len() as u64));
                #[cfg(feature = "failpoints")]
                fail::fail_point!("lifecycle-batch");
            }
            Ok(())
        })();
        drop(send);
        let counted = recorder.join().expect("the sweep's recorder panicked")?;
        report.absorb(counted);
        selected
    })
}

/// Removes the files of recorded intents, then commits what happened to each.
fn remove_and_record(
    catalog: &dyn Catalog,
    place: &Place<'_>,
    intents: &[DueArtifact],
    by: Deleter<'_>,
    report: &mut SweepReport,
) -> Result<(), CatalogError> {
    let outcomes = remove_intents(catalog, place, intents)?;
    record(catalog, &outcomes, by, report)
}

/// What became of each recorded intent: held back by a hold placed since it was selected, or
/// what removing its file did.
fn remove_intents(
    catalog: &dyn Catalog,
    place: &Place<'_>,
    intents: &[DueArtifact],
) -> Result<Vec<(DueArtifact, DeleteOutcome)>, CatalogError> {
    // Intents come ordered by conversation, so each conversation's record is read once.
    let conversations: Vec<&[DueArtifact]> = intents
        .chunk_by(|a, b| a.conversation_pk == b.conversation_pk)
        .collect();
    // A hold placed since the batch was selected (or since a killed run recorded its intents)
    // holds its conversations back, checked in one statement per batch.
    let pks: Vec<i64> = conversations.iter().map(|c| c[0].conversation_pk).collect();
    let held = catalog.holding_matters(&pks)?;
    let mut outcomes: Vec<(DueArtifact, DeleteOutcome)> = Vec::with_capacity(intents.len());
    let mut free: Vec<&[DueArtifact]> = Vec::with_capacity(conversations.len());
    for artifacts in conversations {
        let Some(matters) = held.get(&artifacts[0].conversation_pk) else {
            free.push(artifacts);
            continue;
        };
        let why = format!(
            "conversation `{}/{}` is under legal hold (matter {}); its artifacts are kept",
            artifacts[0].tenant,
            artifacts[0].conversation_id,
            matters.join(", ")
        );
        outcomes.extend(
            artifacts
                .iter()
                .map(|a| (a.clone(), DeleteOutcome::HeldBack(why.clone()))),
        );
    }
    outcomes.extend(match place {
        Place::Dir { root, .. } => remove_from_dir(root, &free),
        #[cfg(feature = "remote")]
        Place::Store(sweeper) => sweeper.remove(&free),
    });
    Ok(outcomes)
}

/// Counts `outcomes` into `report` and commits them, each deletion with its event.
fn record(
    catalog: &dyn Catalog,
    outcomes: &[(DueArtifact, DeleteOutcome)],
    by: Deleter<'_>,
    report: &mut SweepReport,
) -> Result<(), CatalogError> {
    for (a, o) in outcomes {
        match o {
            DeleteOutcome::Deleted { was_missing } => {
                report.deleted += 1;
                report.bytes += a.size;
                report.already_missing += u64::from(*was_missing);
            }
            DeleteOutcome::HeldBack(why) => {
                report.held_back += 1;
                if report.held_back_reasons.len() < 50 {
                    report.held_back_reasons.push(why.clone());
                }
            }
            DeleteOutcome::Failed(why) => {
                report.failed += 1;
                if report.failures.len() < 50 {
                    report.failures.push(why.clone());
                }
            }
        }
    }
    catalog.finish_deletes(outcomes, by.actor, by.run)
}

/// Removes the due artifacts of `conversations` from their directories under `root`, each
/// once its record still allows it, and makes the removals durable.
fn remove_from_dir(
    root: &Dir,
    conversations: &[&[DueArtifact]],
) -> Vec<(DueArtifact, DeleteOutcome)> {
    // Reading each record again and removing files waits on the disk more than it works a
    // core: many at once, like the syncs after them.
    let removed: Vec<Removed> = in_parallel(conversations, |artifacts| {
        remove_conversation(root, artifacts)
    });
    // Write-ahead: the removals are on disk before the catalog records them, or a power cut
    // could bring back a file recorded deleted. One sync per conversation directory, many at
    // once.
    let synced = in_parallel(&removed, |r| r.dir.as_ref().map_or(Ok(()), Dir::sync));
    removed
        .into_iter()
        .zip(synced)
        .flat_map(|(r, synced)| r.synced(synced))
        .collect()
}

/// What the record of a conversation, read again just before deleting, says.
pub(super) enum Recheck {
    /// Its directory is gone: every artifact is already missing.
    Gone,
    /// Delete its due artifacts through this handle.
    Clear(Dir),
    /// Keep them: the record puts the conversation under legal hold.
    OnHold(String),
    /// Keep them, for this reason.
    HeldBack(String),
    /// Its directory or record cannot be used (a link, a special file, unreadable).
    Failed(String),
}

/// What removing one conversation's due artifacts did.
struct Removed {
    outcomes: Vec<(DueArtifact, DeleteOutcome)>,
    /// The conversation directory when files were removed from it: to sync before anything
    /// is recorded.
    dir: Option<Dir>,
}

impl Removed {
    /// The outcomes once the directory's sync returned `synced`: removals that could not be
    /// made durable fail (they stay due, and the next sweep records them as already missing).
    fn synced(mut self, synced: Result<(), ConfinedError>) -> Vec<(DueArtifact, DeleteOutcome)> {
        if let (Err(e), Some(dir)) = (synced, &self.dir) {
            let why = format!(
                "cannot make the deletion durable in {}: {e}; it stays due, and the next sweep records it",
                dir.path().display()
            );
            for (_, o) in &mut self.outcomes {
                if matches!(o, DeleteOutcome::Deleted { was_missing: false }) {
                    *o = DeleteOutcome::Failed(why.clone());
                }
            }
        }
        self.outcomes
    }
}

/// Deletes the due artifacts of one conversation (all of `artifacts` share it) once its record
/// still allows it.
fn remove_conversation(root: &Dir, artifacts: &[DueArtifact]) -> Removed {
    let all = |o: DeleteOutcome| Removed {
        outcomes: artifacts.iter().map(|a| (a.clone(), o.clone())).collect(),
        dir: None,
    };
    let dir = match recheck(root, &artifacts[0]) {
        Recheck::Gone => return all(DeleteOutcome::Deleted { was_missing: true }),
        Recheck::OnHold(why) | Recheck::HeldBack(why) => {
            return all(DeleteOutcome::HeldBack(why));
        }
        Recheck::Failed(why) => return all(DeleteOutcome::Failed(why)),
        Recheck::Clear(dir) => dir,
    };
    let outcomes: Vec<(DueArtifact, DeleteOutcome)> = artifacts
        .iter()
        .map(|a| {
            let outcome = match dir.remove_file(&a.file) {
                Ok(()) => DeleteOutcome::Deleted { was_missing: false },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    DeleteOutcome::Deleted { was_missing: true }
                }
                Err(e) => DeleteOutcome::Failed(format!(
                    "cannot delete {}: {e}; it stays due, and the next sweep tries again",
                    dir.display_path(&a.file).display()
                )),
            };
            (a.clone(), outcome)
        })
        .collect();
    let removed_any = outcomes
        .iter()
        .any(|(_, o)| matches!(o, DeleteOutcome::Deleted { was_missing: false }));
    Removed {
        outcomes,
        dir: removed_any.then_some(dir),
    }
}

/// Opens the conversation directory of `a` under `root` without following a link, and reads
/// its record again: only a record identical to the one indexed (same modification time and
/// size) and not under legal hold clears its artifacts for deletion.
pub(super) fn recheck(root: &Dir, a: &DueArtifact) -> Recheck {
    let dir = match root.open_dir(&a.rel_dir) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Recheck::Gone,
        Err(e) => {
            return Recheck::Failed(format!(
                "conversation `{}`: {e}; nothing in it was deleted, it stays due, and the next sweep tries again",
                a.conversation_id
            ));
        }
    };
    let path = dir.display_path(RECORD_FILE);
    let changed = || {
        Recheck::HeldBack(format!(
            "{} changed since it was indexed; its artifacts are kept until `custodian index` reads it again",
            path.display()
        ))
    };
    let unusable = |why: String| {
        Recheck::Failed(format!(
            "{why}; without its record custodian cannot tell whether conversation `{}` is on hold, so nothing in it was deleted (run `custodian index`, then sweep again)",
            a.conversation_id
        ))
    };
    let file = match dir.open_file(RECORD_FILE) {
        Ok(file) => file,
        Err(e) => return unusable(e.to_string()),
    };
    let Some(indexed) = a.record else {
        return changed();
    };
    let found = match file.metadata() {
        Ok(m) => Fingerprint {
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            size: m.size(),
        },
        Err(e) => return unusable(format!("{}: {e}", path.display())),
    };
    if found != indexed {
        return changed();
    }
    // Never read past the size indexed: one byte more shows the file grew.
    let mut bytes = Vec::new();
    if let Err(e) = file.take(indexed.size + 1).read_to_end(&mut bytes) {
        return unusable(format!("{}: {e}", path.display()));
    }
    if bytes.len() as u64 != indexed.size {
        return changed();
    }
    match Conversation::from_json(&bytes) {
        Ok(record) if record.flags.legal_hold => Recheck::OnHold(format!(
            "{} puts conversation `{}` under legal hold; its artifacts are kept",
            path.display(),
            a.conversation_id
        )),
        Ok(_) => Recheck::Clear(dir),
        Err(why) => unusable(format!("{}: {why}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<LifecycleConfig, Invalid> {
        toml_edit::de::from_str::<LifecycleSettings>(text)
            .unwrap()
            .validate(Path::new("/etc/custodian"))
    }

    #[test]
    fn four_eyes_takes_one_or_two_approvals_and_an_expiry_only_with_two() {
        let one = settings("").unwrap();
        assert_eq!(one.approvals, 1);
        let two = settings("approvals = 2").unwrap();
        assert_eq!(
            (two.approvals, two.approval_expiry),
            (2, std::time::Duration::from_secs(72 * 3600))
        );
        let short = settings("approvals = 2\napproval_expiry = \"90m\"").unwrap();
        assert_eq!(short.approval_expiry, std::time::Duration::from_secs(5400));
        for (text, key, message) in [
            ("approvals = 3", "approvals", "must be 1"),
            ("approvals = 0", "approvals", "must be 1"),
            (
                "approval_expiry = \"1h\"",
                "approval_expiry",
                "applies only with `approvals = 2`",
            ),
            (
                "approvals = 2\napproval_expiry = \"soon\"",
                "approval_expiry",
                "is not a duration",
            ),
        ] {
            let e = settings(text).unwrap_err();
            assert_eq!(e.key, [key], "{text}");
            assert!(e.message.contains(message), "{text}: {}", e.message);
        }
    }

    /// One unlimited sweep, now, by a tester whose run is never stopped.
    fn sweep_now(cat: &dyn Catalog, root: &Path) -> Result<SweepReport, SweepError> {
        sweep_at(cat, root, Utc::now())
    }

    /// A sweep without limits or quarantine at `now`.
    fn sweep_at(
        cat: &dyn Catalog,
        root: &Path,
        now: DateTime<Utc>,
    ) -> Result<SweepReport, SweepError> {
        sweep(cat, root, now, by(&Control::new()), NO_LIMIT, None, &|_| {})
    }
    use crate::audit::{AuditKind, NewEvent, verify_chain};
    use crate::catalog::sqlite::SqliteCatalog;
    use crate::catalog::{AuditQuery, Fingerprint, IndexChange};
    use crate::repository::record::ArtifactType;
    use std::os::unix::fs::PermissionsExt;

    /// Runs `check` on a fresh SQLite catalog and, with the feature, a fresh PostgreSQL one.
    fn on_each_catalog(check: impl Fn(&dyn Catalog)) {
        let dir = tempfile::tempdir().unwrap();
        check(&SqliteCatalog::open(&dir.path().join("c.db")).unwrap());
        #[cfg(feature = "postgres")]
        {
            let scratch = crate::catalog::postgres::tests::Scratch::new();
            check(&scratch.open());
        }
    }

    /// Matter `m`, holding conversation acme/c1.
    fn hold_c1(cat: &dyn Catalog, now: DateTime<Utc>) {
        use crate::catalog::holds::{ConversationRef, HoldScope, Matter};
        let matter = Matter {
            name: "m".into(),
            description: String::new(),
            created_at: now,
            created_by: "test".into(),
        };
        cat.create_matter(&matter, &event()).unwrap();
        let c1 = HoldScope::Conversations(vec![ConversationRef {
            tenant: "acme".into(),
            id: "c1".into(),
        }]);
        cat.place_hold("m", &c1, now, "test", &event(), &[])
            .unwrap();
    }

    fn event() -> NewEvent {
        NewEvent {
            at: Utc::now(),
            kind: AuditKind::LifecyclePolicyChanged,
            actor: "test".into(),
            policy: None,
            run: None,
            tenant: None,
            conversation_id: None,
            details: serde_json::json!({}),
        }
    }

    /// The record of conversation `c{i}`: two transcripts, under legal hold when `hold`.
    fn record(i: usize, hold: bool) -> serde_json::Value {
        let sha = "0".repeat(64);
        serde_json::json!({
            "schema": 1, "id": format!("c{i}"), "tenant": "acme", "type": "im",
            "source_platform": "teams", "direction": "internal",
            "start": "2026-01-02T10:00:00+00:00", "end": "2026-01-02T10:01:00+00:00",
            "participants": [{"user": "a", "role": "participant"}],
            "flags": {"legal_hold": hold},
            "artifacts": [{"file": "t.txt", "type": "transcript", "size": 2, "sha256": sha},
                          {"file": "u.txt", "type": "transcript", "size": 2, "sha256": sha}]
        })
    }

    /// The fingerprint the index takes of a record file.
    fn fingerprint_of(path: &Path) -> Fingerprint {
        let m = std::fs::metadata(path).unwrap();
        Fingerprint {
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            size: m.size(),
        }
    }

    /// Indexes the record of `c{i}` as it is on disk under `root`.
    fn index_one(cat: &dyn Catalog, root: &Path, i: usize) {
        let rel_dir = format!("acme/2026/01/02/c{i}");
        let path = root.join(&rel_dir).join(RECORD_FILE);
        let conversation = Conversation::from_json(&std::fs::read(&path).unwrap()).unwrap();
        cat.apply_index(&[IndexChange::Upsert {
            rel_dir,
            fingerprint: fingerprint_of(&path),
            conversation: Box::new(conversation),
        }])
        .unwrap();
    }

    /// Fills `cat` with `n` conversations from January 2026, their records and two transcript
    /// files each on disk under `repo/` of the returned directory (indexed as they are), and an
    /// enabled policy deleting transcripts after 30 days.
    fn setup(cat: &dyn Catalog, n: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let changes: Vec<IndexChange> = (0..n)
            .map(|i| {
                let conv = dir.path().join(format!("repo/acme/2026/01/02/c{i}"));
                std::fs::create_dir_all(&conv).unwrap();
                std::fs::write(conv.join("t.txt"), b"hi").unwrap();
                std::fs::write(conv.join("u.txt"), b"hi").unwrap();
                let path = conv.join(RECORD_FILE);
                std::fs::write(&path, record(i, false).to_string()).unwrap();
                IndexChange::Upsert {
                    rel_dir: format!("acme/2026/01/02/c{i}"),
                    fingerprint: fingerprint_of(&path),
                    conversation: Box::new(serde_json::from_value(record(i, false)).unwrap()),
                }
            })
            .collect();
        for chunk in changes.chunks(500) {
            cat.apply_index(chunk).unwrap();
        }
        let policy = LifecyclePolicy::new("t30", "", ArtifactType::Transcript, None, "test");
        cat.create_lifecycle_policy(&policy, &event()).unwrap();
        let v = LifecycleVersion::new("v1", RetentionAction::Delete { days: 30 }, "test");
        cat.publish_lifecycle_version("t30", &v, &event()).unwrap();
        cat.update_lifecycle_policy("t30", true, "v1", &[event()])
            .unwrap();
        dir
    }

    fn by(control: &Control) -> Deleter<'_> {
        Deleter {
            actor: "test",
            run: None,
            control,
        }
    }

    const NO_LIMIT: Limits = Limits {
        max_count: u64::MAX,
        max_share: 1.0,
        force: false,
    };

    #[test]
    fn a_sweep_killed_between_intent_and_event_is_completed_with_one_event_each() {
        on_each_catalog(killed_sweep_is_completed);
    }

    fn killed_sweep_is_completed(cat: &dyn Catalog) {
        let dir = setup(cat, 10);
        let root = dir.path().join("repo");
        let now = Utc::now();
        let p = cat.lifecycle_policies().unwrap().remove(0);
        let q = DueQuery::of(&p, now).unwrap();
        let due = cat.due_artifacts(&q, (0, -1), 6).unwrap();
        assert_eq!(due.len(), 6);
        // The killed run recorded six intents and removed three files, then died.
        cat.begin_deletes(&due).unwrap();
        for a in &due[..3] {
            std::fs::remove_file(root.join(&a.rel_dir).join(&a.file)).unwrap();
        }
        let report = sweep_at(cat, &root, now).unwrap();
        assert_eq!(report.resumed, 6);
        assert_eq!(report.deleted, 20);
        assert_eq!(report.already_missing, 3);
        assert_eq!((report.held_back, report.failed), (0, 0), "{report:?}");
        assert!(cat.pending_deletes().unwrap().is_empty());
        let events = cat
            .audit_events(&AuditQuery {
                limit: 1000,
                ..AuditQuery::default()
            })
            .unwrap();
        verify_chain(&events, None).unwrap();
        let mut deleted: Vec<_> = events
            .iter()
            .filter(|e| e.event.kind == AuditKind::ArtifactDeleted)
            .map(|e| e.event.conversation_id.clone().unwrap())
            .collect();
        deleted.sort();
        deleted.dedup();
        assert_eq!(deleted.len(), 10, "one event per artifact, none twice");
        assert_eq!(
            events
                .iter()
                .filter(|e| e.event.kind == AuditKind::ArtifactDeleted)
                .count(),
            20
        );
        for i in 0..10 {
            assert!(!root.join(format!("acme/2026/01/02/c{i}/t.txt")).exists());
            assert!(!root.join(format!("acme/2026/01/02/c{i}/u.txt")).exists());
        }
        let again = sweep_at(cat, &root, now).unwrap();
        assert_eq!((again.resumed, again.deleted), (0, 0));
    }

    #[test]
    fn a_stopped_sweep_ends_after_the_batch_in_flight_and_the_next_finishes() {
        let cat_dir = tempfile::tempdir().unwrap();
        let cat = SqliteCatalog::open(&cat_dir.path().join("c.db")).unwrap();
        // Two artifacts each: one batch and a hundred more.
        let n = BATCH / 2 + 50;
        let dir = setup(&cat, n);
        let root = dir.path().join("repo");
        let now = Utc::now();
        let control = Control::new();
        let stop = |p| {
            if let Progress::Done(_) = p {
                control.stop(crate::pipeline::control::Stop::Cancelled);
            }
        };
        let first = sweep(&cat, &root, now, by(&control), NO_LIMIT, None, &stop).unwrap();
        assert_eq!(first.deleted, BATCH as u64);
        assert!(cat.pending_deletes().unwrap().is_empty());
        let rest = sweep_at(&cat, &root, now).unwrap();
        assert_eq!(rest.deleted, 100);
        assert_eq!(cat.live_artifact_count().unwrap(), 0);
    }

    #[test]
    fn plan_counts_what_is_due_and_when_the_next_is() {
        on_each_catalog(plan_counts);
    }

    fn plan_counts(cat: &dyn Catalog) {
        let _dir = setup(cat, 3);
        let jan = DateTime::parse_from_rfc3339("2026-01-20T00:00:00Z")
            .unwrap()
            .to_utc();
        let none = plan(cat, jan, None).unwrap();
        assert_eq!(none[0].artifacts, 0);
        assert_eq!(
            none[0].next_due.unwrap(),
            DateTime::parse_from_rfc3339("2026-02-01T10:01:00Z")
                .unwrap()
                .to_utc()
        );
        let all = plan(cat, Utc::now(), None).unwrap();
        assert_eq!((all[0].artifacts, all[0].bytes), (6, 12));
    }

    fn events_of(cat: &dyn Catalog, kind: AuditKind) -> Vec<crate::audit::AuditEvent> {
        cat.audit_events(&AuditQuery {
            limit: 10_000,
            ..AuditQuery::default()
        })
        .unwrap()
        .into_iter()
        .filter(|e| e.event.kind == kind)
        .collect()
    }

    fn deleted_ids(cat: &dyn Catalog) -> Vec<String> {
        events_of(cat, AuditKind::ArtifactDeleted)
            .into_iter()
            .map(|e| e.event.conversation_id.unwrap())
            .collect()
    }

    #[test]
    fn a_conversation_directory_swapped_for_a_link_is_not_deleted_through() {
        on_each_catalog(swapped_directory_is_not_followed);
    }

    fn swapped_directory_is_not_followed(cat: &dyn Catalog) {
        let dir = setup(cat, 2);
        let root = dir.path().join("repo");
        // c0's directory is moved out of the repository and a link put in its place.
        let outside = dir.path().join("outside");
        std::fs::rename(root.join("acme/2026/01/02/c0"), &outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("acme/2026/01/02/c0")).unwrap();
        let report = sweep_now(cat, &root).unwrap();
        assert!(outside.join("t.txt").exists() && outside.join("u.txt").exists());
        assert_eq!((report.deleted, report.failed), (2, 2), "{report:?}");
        assert!(
            report.failures[0].contains("acme/2026/01/02/c0")
                && report.failures[0].contains("symbolic link")
                && report.failures[0].contains("next sweep tries again"),
            "{report:?}"
        );
        assert_eq!(
            deleted_ids(cat),
            ["c1", "c1"],
            "no deletion recorded for c0"
        );
        assert!(cat.pending_deletes().unwrap().is_empty());
        // Still due: once the directory is back, the next sweep deletes it.
        std::fs::remove_file(root.join("acme/2026/01/02/c0")).unwrap();
        std::fs::rename(&outside, root.join("acme/2026/01/02/c0")).unwrap();
        let next = sweep_now(cat, &root).unwrap();
        assert_eq!((next.deleted, next.failed), (2, 0), "{next:?}");
        assert!(!root.join("acme/2026/01/02/c0/t.txt").exists());
    }

    #[test]
    fn an_artifact_replaced_by_a_link_is_not_removed_nor_its_target() {
        let cat_dir = tempfile::tempdir().unwrap();
        let cat = SqliteCatalog::open(&cat_dir.path().join("c.db")).unwrap();
        let dir = setup(&cat, 1);
        let root = dir.path().join("repo");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"keep").unwrap();
        let link = root.join("acme/2026/01/02/c0/t.txt");
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let report = sweep_now(&cat, &root).unwrap();
        assert_eq!((report.deleted, report.failed), (1, 1), "{report:?}");
        assert!(report.failures[0].contains("c0/t.txt"), "{report:?}");
        assert!(secret.exists() && link.symlink_metadata().is_ok());
        assert_eq!(deleted_ids(&cat), ["c0"], "only u.txt was deleted");
    }

    #[test]
    fn a_record_put_on_hold_after_indexing_is_held_back() {
        on_each_catalog(late_hold_is_held_back);
    }

    fn late_hold_is_held_back(cat: &dyn Catalog) {
        let dir = setup(cat, 3);
        let root = dir.path().join("repo");
        let c1 = root.join("acme/2026/01/02/c1");
        std::fs::write(c1.join(RECORD_FILE), record(1, true).to_string()).unwrap();
        // Indexed again with the hold: the catalog knows, and nothing of c1 is due.
        index_one(cat, &root, 1);
        // Then the hold is set on c2 after indexing, keeping the size and modification time
        // its fingerprint saw, so only the record's content tells.
        let c2 = root.join("acme/2026/01/02/c2/conversation.json");
        let before = std::fs::metadata(&c2).unwrap();
        let held = record(2, true).to_string();
        let padded = format!("{held:<width$}", width = before.len() as usize);
        assert_eq!(padded.len() as u64, before.len());
        std::fs::write(&c2, padded).unwrap();
        let mtime = std::fs::FileTimes::new().set_modified(before.modified().unwrap());
        std::fs::File::options()
            .write(true)
            .open(&c2)
            .unwrap()
            .set_times(mtime)
            .unwrap();
        let report = sweep_now(cat, &root).unwrap();
        assert_eq!(
            (report.deleted, report.held_back, report.failed),
            (2, 2, 0),
            "{report:?}"
        );
        assert!(
            report.held_back_reasons[0].contains("legal hold")
                && report.held_back_reasons[0].contains("`c2`"),
            "{report:?}"
        );
        assert!(c1.join("t.txt").exists());
        assert!(root.join("acme/2026/01/02/c2/t.txt").exists());
        assert!(root.join("acme/2026/01/02/c2/u.txt").exists());
        assert_eq!(deleted_ids(cat), ["c0", "c0"]);
        assert!(cat.pending_deletes().unwrap().is_empty());
    }

    #[test]
    fn a_hold_placed_after_the_intents_were_recorded_holds_them_back() {
        on_each_catalog(hold_after_intents_is_held_back);
    }

    fn hold_after_intents_is_held_back(cat: &dyn Catalog) {
        let dir = setup(cat, 2);
        let root = dir.path().join("repo");
        let now = Utc::now();
        let p = cat.lifecycle_policies().unwrap().remove(0);
        let due = cat
            .due_artifacts(&DueQuery::of(&p, now).unwrap(), (0, -1), 10)
            .unwrap();
        // A killed run recorded its intents; then c1 was put on hold.
        cat.begin_deletes(&due).unwrap();
        hold_c1(cat, now);
        let report = sweep_now(cat, &root).unwrap();
        assert_eq!(
            (report.resumed, report.deleted, report.held_back),
            (4, 2, 2),
            "{report:?}"
        );
        assert!(
            report.held_back_reasons[0].contains("`acme/c1` is under legal hold (matter m)"),
            "{report:?}"
        );
        assert!(root.join("acme/2026/01/02/c1/t.txt").exists());
        assert_eq!(deleted_ids(cat), ["c0", "c0"]);
        assert!(cat.pending_deletes().unwrap().is_empty());
        assert_eq!(plan(cat, now, None).unwrap()[0].held, 2);
    }

    #[test]
    fn a_record_changed_since_indexing_is_skipped_until_reindexed() {
        let cat_dir = tempfile::tempdir().unwrap();
        let cat = SqliteCatalog::open(&cat_dir.path().join("c.db")).unwrap();
        let dir = setup(&cat, 1);
        let root = dir.path().join("repo");
        let path = root.join("acme/2026/01/02/c0").join(RECORD_FILE);
        let mut changed = record(0, false);
        changed["source_platform"] = "zoom".into();
        std::fs::write(&path, changed.to_string()).unwrap();
        let report = sweep_now(&cat, &root).unwrap();
        assert_eq!((report.deleted, report.held_back), (0, 2), "{report:?}");
        assert!(
            report.held_back_reasons[0].contains("changed since it was indexed"),
            "{report:?}"
        );
        assert!(root.join("acme/2026/01/02/c0/t.txt").exists());
        index_one(&cat, &root, 0);
        let next = sweep_now(&cat, &root).unwrap();
        assert_eq!((next.deleted, next.held_back), (2, 0), "{next:?}");
    }

    #[test]
    fn a_missing_or_special_record_fails_its_conversation_without_deleting() {
        let cat_dir = tempfile::tempdir().unwrap();
        let cat = SqliteCatalog::open(&cat_dir.path().join("c.db")).unwrap();
        let dir = setup(&cat, 2);
        let root = dir.path().join("repo");
        std::fs::remove_file(root.join("acme/2026/01/02/c0").join(RECORD_FILE)).unwrap();
        let fifo = root.join("acme/2026/01/02/c1").join(RECORD_FILE);
        std::fs::remove_file(&fifo).unwrap();
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let report = sweep_now(&cat, &root).unwrap();
        assert_eq!((report.deleted, report.failed), (0, 4), "{report:?}");
        assert!(
            report.failures[0].contains("cannot tell whether conversation `c0` is on hold"),
            "{report:?}"
        );
        assert!(report.failures[2].contains("FIFO"), "{report:?}");
        for c in ["c0", "c1"] {
            assert!(root.join(format!("acme/2026/01/02/{c}/t.txt")).exists());
        }
        assert!(deleted_ids(&cat).is_empty());
    }

    /// A quarantine window of `days` in the default area.
    fn window(days: u16) -> QuarantineConfig {
        QuarantineConfig { days, dir: None }
    }

    /// One unlimited sweep at `now` with the quarantine window `q`.
    fn sweep_q(
        cat: &dyn Catalog,
        root: &Path,
        now: DateTime<Utc>,
        q: &QuarantineConfig,
    ) -> Result<SweepReport, SweepError> {
        sweep(
            cat,
            root,
            now,
            by(&Control::new()),
            NO_LIMIT,
            Some(q),
            &|_| {},
        )
    }

    /// Names of the files in the default quarantine area under `root`, sorted.
    fn in_area(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root.join(quarantine::QUARANTINE_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn restore_by(
        cat: &dyn Catalog,
        root: &Path,
        q: &QuarantineConfig,
        what: &quarantine::RestoreWhat,
    ) -> Result<quarantine::RestoreReport, quarantine::RestoreError> {
        quarantine::restore(cat, root, Some(q), what, by(&Control::new()))
    }

    fn conversation(id: &str) -> quarantine::RestoreWhat {
        quarantine::RestoreWhat::Conversation {
            tenant: "acme".into(),
            id: id.into(),
        }
    }

    #[test]
    fn a_quarantine_sweep_moves_restores_what_a_hold_covers_and_purges_after_its_days() {
        on_each_catalog(quarantine_moves_restores_and_purges);
    }

    fn quarantine_moves_restores_and_purges(cat: &dyn Catalog) {
        let dir = setup(cat, 3);
        let root = dir.path().join("repo");
        let q = window(7);
        let now = Utc::now();
        let first = sweep_q(cat, &root, now, &q).unwrap();
        assert_eq!(
            (first.quarantined, first.deleted, first.purged, first.failed),
            (6, 0, 0, 0),
            "{first:?}"
        );
        for i in 0..3 {
            assert!(!root.join(format!("acme/2026/01/02/c{i}/t.txt")).exists());
        }
        assert_eq!(in_area(&root).len(), 6);
        let mode = std::fs::metadata(root.join(quarantine::QUARANTINE_DIR))
            .unwrap()
            .mode();
        let root_mode = std::fs::metadata(&root).unwrap().mode();
        assert_eq!(
            mode & 0o7777,
            0o700 | (root_mode & 0o070),
            "the owner, the group as the root allows, never others"
        );
        assert_eq!(events_of(cat, AuditKind::ArtifactQuarantined).len(), 6);
        assert!(deleted_ids(cat).is_empty());
        let plan_now = plan(cat, now, Some(7)).unwrap();
        assert_eq!(
            (
                plan_now[0].artifacts,
                plan_now[0].in_quarantine,
                plan_now[0].purgeable
            ),
            (0, 6, 0)
        );
        let later = now + TimeDelta::days(8);
        assert_eq!(plan(cat, later, Some(7)).unwrap()[0].purgeable, 6);
        // Not yet ripe: a rerun moves nothing and purges nothing.
        let again = sweep_q(cat, &root, now, &q).unwrap();
        assert_eq!((again.quarantined, again.purged, again.restored), (0, 0, 0));

        // A matter's hold on c1, placed after the move: c1 goes back, not purged.
        hold_c1(cat, now);
        let purge = sweep_q(cat, &root, later, &q).unwrap();
        assert_eq!(
            (
                purge.restored,
                purge.purged,
                purge.quarantined,
                purge.failed
            ),
            (2, 4, 0, 0),
            "{purge:?}"
        );
        assert!(root.join("acme/2026/01/02/c1/t.txt").exists());
        assert!(root.join("acme/2026/01/02/c1/u.txt").exists());
        assert!(in_area(&root).is_empty());
        let restored = events_of(cat, AuditKind::ArtifactRestored);
        assert_eq!(restored.len(), 2);
        assert!(
            restored[0].event.details["reason"]
                .as_str()
                .unwrap()
                .contains("legal hold (matter m)"),
            "{:?}",
            restored[0].event.details
        );
        let mut purged = deleted_ids(cat);
        purged.sort();
        assert_eq!(purged, ["c0", "c0", "c2", "c2"]);
        assert_eq!(plan(cat, later, Some(7)).unwrap()[0].in_quarantine, 0);
        verify_chain(
            &cat.audit_events(&AuditQuery {
                limit: 1000,
                ..AuditQuery::default()
            })
            .unwrap(),
            None,
        )
        .unwrap();
    }

    #[test]
    fn a_record_put_on_hold_while_quarantined_brings_its_artifacts_back() {
        let cat_dir = tempfile::tempdir().unwrap();
        let cat = SqliteCatalog::open(&cat_dir.path().join("c.db")).unwrap();
        let dir = setup(&cat, 1);
        let root = dir.path().join("repo");
        let q = window(1);
        assert_eq!(sweep_q(&cat, &root, Utc::now(), &q).unwrap().quarantined, 2);
        let c0 = root.join("acme/2026/01/02/c0");
        std::fs::write(c0.join(RECORD_FILE), record(0, true).to_string()).unwrap();
        index_one(&cat, &root, 0);
        let report = sweep_q(&cat, &root, Utc::now() + TimeDelta::days(2), &q).unwrap();
        assert_eq!((report.restored, report.purged), (2, 0), "{report:?}");
        assert!(c0.join("t.txt").exists() && c0.join("u.txt").exists());
    }

    #[test]
    fn a_quarantine_move_killed_before_its_event_is_completed_once() {
        on_each_catalog(killed_move_is_completed);
    }

    fn killed_move_is_completed(cat: &dyn Catalog) {
        let dir = setup(cat, 2);
        let root = dir.path().join("repo");
        let q = window(7);
        let area = root.join(quarantine::QUARANTINE_DIR);
        std::fs::create_dir(&area).unwrap();
        std::fs::set_permissions(&area, std::fs::Permissions::from_mode(0o700)).unwrap();
        let p = cat.lifecycle_policies().unwrap().remove(0);
        let due = cat
            .due_artifacts(&DueQuery::of(&p, Utc::now()).unwrap(), (0, -1), 10)
            .unwrap();
        // The killed run recorded its intents and moved one file, then died.
        let intents: Vec<(DueArtifact, String)> = due
            .iter()
            .map(|a| (a.clone(), format!("{}-{}", a.conversation_pk, a.ordinal)))
            .collect();
        cat.begin_quarantine(&intents, None).unwrap();
        std::fs::rename(
            root.join(&due[0].rel_dir).join(&due[0].file),
            area.join(&intents[0].1),
        )
        .unwrap();
        let report = sweep_q(cat, &root, Utc::now(), &q).unwrap();
        assert_eq!(
            (report.resumed, report.quarantined, report.failed),
            (4, 4, 0),
            "{report:?}"
        );
        assert_eq!(in_area(&root).len(), 4);
        assert_eq!(events_of(cat, AuditKind::ArtifactQuarantined).len(), 4);
        let next = sweep_q(cat, &root, Utc::now(), &q).unwrap();
        assert_eq!((next.resumed, next.quarantined), (0, 0));
    }

    #[test]
    fn a_restore_puts_back_exempt_from_its_version_and_refuses_what_it_cannot() {
        on_each_catalog(restore_and_its_refusals);
    }

    fn restore_and_its_refusals(cat: &dyn Catalog) {
        let dir = setup(cat, 2);
        let root = dir.path().join("repo");
        let q = window(7);
        sweep_q(cat, &root, Utc::now(), &q).unwrap();
        // Something now occupies c0's t.txt: the whole restore is refused, nothing changed.
        let c0 = root.join("acme/2026/01/02/c0");
        std::fs::write(c0.join("t.txt"), b"new").unwrap();
        let err = restore_by(cat, &root, &q, &conversation("c0")).unwrap_err();
        assert!(
            matches!(err, quarantine::RestoreError::Refused(_))
                && err.to_string().contains("c0/t.txt is occupied"),
            "{err}"
        );
        assert_eq!(std::fs::read(c0.join("t.txt")).unwrap(), b"new");
        assert!(!c0.join("u.txt").exists());
        assert_eq!(in_area(&root).len(), 4);
        std::fs::remove_file(c0.join("t.txt")).unwrap();
        // A link planted in the area in place of a quarantined file is not moved.
        let names = in_area(&root);
        let planted = root.join(quarantine::QUARANTINE_DIR).join(&names[0]);
        let kept = dir.path().join("kept");
        std::fs::rename(&planted, &kept).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &planted).unwrap();
        let err = restore_by(cat, &root, &q, &conversation("c0")).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!c0.join("t.txt").exists());
        std::fs::remove_file(&planted).unwrap();
        std::fs::rename(&kept, &planted).unwrap();

        let done = restore_by(cat, &root, &q, &conversation("c0")).unwrap();
        assert_eq!((done.restored, done.failed), (2, 0), "{done:?}");
        assert_eq!(std::fs::read(c0.join("t.txt")).unwrap(), b"hi");
        assert_eq!(events_of(cat, AuditKind::ArtifactRestored).len(), 2);
        // Still due by its dates, but exempt from the version that quarantined it.
        let next = sweep_q(cat, &root, Utc::now(), &q).unwrap();
        assert_eq!(next.quarantined, 0, "{next:?}");
        assert!(c0.join("t.txt").exists());
        // Nothing left to restore for c0, nor for an unknown conversation.
        for what in [conversation("c0"), conversation("nope")] {
            let err = restore_by(cat, &root, &q, &what).unwrap_err();
            assert!(
                matches!(err, quarantine::RestoreError::Nothing(_))
                    && err.to_string().contains("has nothing in quarantine"),
                "{err}"
            );
        }
        // Purged artifacts cannot be restored either.
        sweep_q(cat, &root, Utc::now() + TimeDelta::days(8), &q).unwrap();
        let err = restore_by(cat, &root, &q, &conversation("c1")).unwrap_err();
        assert!(matches!(err, quarantine::RestoreError::Nothing(_)), "{err}");
        assert_eq!(deleted_ids(cat), ["c1", "c1"]);
    }

    #[test]
    fn a_quarantine_area_elsewhere_behind_a_link_or_too_open_is_refused() {
        let cat_dir = tempfile::tempdir().unwrap();
        let cat = SqliteCatalog::open(&cat_dir.path().join("c.db")).unwrap();
        let dir = setup(&cat, 1);
        let root = dir.path().join("repo");
        let refused = |q: &QuarantineConfig, needle: &str| {
            let err = sweep_q(&cat, &root, Utc::now(), q).unwrap_err();
            assert!(
                matches!(err, SweepError::Quarantine(_)) && err.to_string().contains(needle),
                "{err}"
            );
            assert!(root.join("acme/2026/01/02/c0/t.txt").exists());
        };
        // Another filesystem: /dev/shm is a tmpfs, the repository is not.
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        assert_ne!(
            std::fs::metadata(shm.path()).unwrap().dev(),
            std::fs::metadata(&root).unwrap().dev()
        );
        refused(
            &QuarantineConfig {
                days: 1,
                dir: Some(shm.path().join("q")),
            },
            "on another filesystem",
        );
        // Inside the repository, where the index reads.
        refused(
            &QuarantineConfig {
                days: 1,
                dir: Some(root.join("acme/q")),
            },
            "inside the repository root",
        );
        // The default area swapped for a link.
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join(quarantine::QUARANTINE_DIR)).unwrap();
        refused(&window(1), "symbolic link");
        std::fs::remove_file(root.join(quarantine::QUARANTINE_DIR)).unwrap();
        // An area others may enter while the repository root keeps them out.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::create_dir(root.join(quarantine::QUARANTINE_DIR)).unwrap();
        std::fs::set_permissions(
            root.join(quarantine::QUARANTINE_DIR),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        refused(&window(1), "chmod go-rwx");
        assert!(events_of(&cat, AuditKind::ArtifactQuarantined).is_empty());
    }

    #[test]
    fn quarantine_settings_are_checked() {
        let parse = |text: &str| -> Result<LifecycleConfig, Invalid> {
            toml_edit::de::from_str::<LifecycleSettings>(text)
                .unwrap()
                .validate(Path::new("/etc/custodian"))
        };
        assert_eq!(parse("").unwrap().quarantine, None);
        assert_eq!(
            parse("quarantine_days = 30").unwrap().quarantine,
            Some(QuarantineConfig {
                days: 30,
                dir: None
            })
        );
        assert_eq!(
            parse("quarantine_days = 1\nquarantine_dir = \"q\"")
                .unwrap()
                .quarantine
                .unwrap()
                .dir,
            Some(PathBuf::from("/etc/custodian/q"))
        );
        for (text, key) in [
            ("quarantine_days = 0", "quarantine_days"),
            ("quarantine_days = 10000", "quarantine_days"),
            ("quarantine_dir = \"q\"", "quarantine_dir"),
        ] {
            let err = parse(text)
                .err()
                .unwrap_or_else(|| panic!("{text} is accepted"));
            assert_eq!(err.key, [key], "{text}");
        }
    }

    #[test]
    fn missing_acknowledgments_are_quoted() {
        let v = LifecycleVersion::new("v1", RetentionAction::Delete { days: 30 }, "alice");
        let needed = Acknowledgment::needed_for(&v);
        let err = Acknowledgment::check(&needed, &["storage-overage".into()]).unwrap_err();
        assert!(err.contains("--acknowledge irreversible-delete"), "{err}");
        assert!(!err.contains("--acknowledge storage-overage"), "{err}");
        assert!(
            Acknowledgment::check(
                &needed,
                &["storage-overage".into(), "irreversible-delete".into()]
            )
            .is_ok()
        );
        let keep = LifecycleVersion {
            action: RetentionAction::KeepForever,
            ..v
        };
        assert_eq!(
            Acknowledgment::needed_for(&keep),
            vec![Acknowledgment::StorageOverage]
        );
    }
}
