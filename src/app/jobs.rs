//! The job history (`custodian jobs`), a run's check against its target (`custodian verify`),
//! and when each job is next due (`custodian schedules`).

use chrono::{DateTime, Utc};

use super::{Loaded, SetupError};
use crate::catalog::{CatalogError, FailedItem, JobRun, RunId};
use crate::config::Config;
use crate::policy::lifecycle::LIFECYCLE_RUN;
use crate::progress::Progress;
use crate::schedule::{JobSettings, Schedule};
use crate::target::ObjectKey;
use crate::target::manifest::{self, VerifyError, VerifyReport};

/// Why a job-history command could not be done.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("no job run {run} in catalog {catalog}")]
    NoSuchRun { run: RunId, catalog: String },
    #[error("run {run} has no manifest (status {status}); run the policy again to finish it")]
    NoManifest { run: RunId, status: &'static str },
    /// The run's manifest key is not a valid object key.
    #[error("{0}")]
    ManifestKey(String),
}

/// Most failed items `jobs show` lists.
const SHOWN_FAILURES: usize = 1000;

/// `jobs list`: recent runs, newest first.
pub fn list(l: &Loaded, policy: Option<&str>, limit: usize) -> Result<Vec<JobRun>, JobsError> {
    Ok(l.catalog.job_runs(policy, limit)?)
}

/// `jobs show`: one run with its failed items.
pub fn show(l: &Loaded, run: RunId) -> Result<(JobRun, Vec<FailedItem>), JobsError> {
    let r = job_run(l, run)?;
    let failures = l.catalog.failed_items(r.id, SHOWN_FAILURES)?;
    Ok((r, failures))
}

fn job_run(l: &Loaded, run: RunId) -> Result<JobRun, JobsError> {
    l.catalog.job_run(run)?.ok_or_else(|| JobsError::NoSuchRun {
        run,
        catalog: l.catalog.location(),
    })
}

/// A run's manifest checked against its target.
pub struct Verified {
    /// The manifest's key.
    pub manifest: String,
    pub report: VerifyReport,
}

/// `verify RUN`: re-reads every object of the run's manifest from its target and checks size
/// and SHA-256.
pub fn verify(l: &Loaded, run: RunId, progress: &dyn Progress) -> Result<Verified, JobsError> {
    let r = job_run(l, run)?;
    let Some(key) = r.manifest_key else {
        return Err(JobsError::NoManifest {
            run,
            status: r.status.as_str(),
        });
    };
    let target = l.open_target(&r.target)?;
    progress.message("verify");
    let report = manifest::verify(
        target.as_ref(),
        &ObjectKey::new(&key).map_err(JobsError::ManifestKey)?,
        progress,
    )?;
    progress.finish();
    Ok(Verified {
        manifest: key,
        report,
    })
}

/// A job `custodian serve` would run.
pub struct Scheduled<'a> {
    pub policy: &'a str,
    pub enabled: bool,
    pub job: &'a JobSettings,
    /// When it is next due, if it is enabled and scheduled.
    pub next_due: Option<DateTime<Utc>>,
}

/// `schedules`: every policy, and the lifecycle sweep when `[lifecycle]` schedules it, with
/// when each is next due after `now`.
pub fn schedules(config: &Config, now: DateTime<Utc>) -> Vec<Scheduled<'_>> {
    let sweep = (config.lifecycle.job.schedule != Schedule::Manual).then_some((
        LIFECYCLE_RUN,
        true,
        &config.lifecycle.job,
    ));
    config
        .policies
        .values()
        .map(|p| (p.name(), p.enabled(), p.job()))
        .chain(sweep)
        .map(|(policy, enabled, job)| Scheduled {
            policy,
            enabled,
            job,
            next_due: job
                .schedule
                .next_after(now, job.timezone)
                .filter(|_| enabled),
        })
        .collect()
}
