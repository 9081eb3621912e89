//! Policies: what each action does to the conversations it selects.
pub mod confidential;
pub mod direct;
pub mod export;
pub mod index;
pub mod lifecycle;
pub mod produce;
pub mod roles;
pub mod template;

use chrono::{TimeDelta, Utc};

use crate::catalog::{Catalog, CatalogError, ItemOutcome, Mode, RunId};
use crate::config::JobSettings;
use crate::pipeline::Control;
use crate::schedule::runlog::RunLog;
use index::IndexReport;

/// Starts a run of `policy`: drops its succeeded runs past `keep_job_history_days`, picks up
/// the run a killed process left (true) or begins a new one, notes it in `control` and opens
/// its file in `log` when the policy keeps one.
pub fn start_run(
    catalog: &dyn Catalog,
    policy: &str,
    mode: Mode,
    target: &str,
    job: &JobSettings,
    control: &Control,
    log: &RunLog,
) -> Result<(RunId, bool), CatalogError> {
    let keep = TimeDelta::days(i64::from(job.keep_job_history_days));
    let pruned = catalog.prune_runs(policy, Utc::now() - keep)?;
    if pruned > 0 {
        tracing::info!(
            policy,
            pruned,
            "succeeded runs past keep_job_history_days pruned"
        );
    }
    let (run, resumed) = match catalog.interrupted_run(policy)? {
        Some(r) => {
            catalog.resume_run(r.id)?;
            (r.id, true)
        }
        None => (catalog.begin_run(policy, mode, target)?, false),
    };
    control.begin(run);
    if let Some(dir) = &job.log_dir {
        log.open(dir, catalog, policy, run);
    }
    Ok((run, resumed))
}

/// How a run ended: as it was stopped, else succeeded unless items failed.
pub fn outcome(stopped: Option<crate::pipeline::Stop>, failed: u64) -> crate::catalog::RunStatus {
    use crate::catalog::RunStatus;
    match stopped {
        Some(why) => why.status(),
        None if failed == 0 => RunStatus::Succeeded,
        None => RunStatus::CompletedWithFailures,
    }
}

/// The error summary line of a run whose index pass could not read some records.
pub fn index_failure_summary(failures: &[ItemOutcome]) -> Option<String> {
    match failures.first() {
        Some(ItemOutcome::Failed { subject, error }) => Some(format!(
            "{} record(s) could not be indexed; first: {subject}: {error}",
            failures.len()
        )),
        _ => None,
    }
}

/// The records an index pass could not read, as failed items of a run.
pub fn index_failures(index: Option<&IndexReport>) -> Vec<ItemOutcome> {
    index
        .iter()
        .flat_map(|r| &r.failures)
        .map(|f| ItemOutcome::Failed {
            subject: f.path.display().to_string(),
            error: f.reason.clone(),
        })
        .collect()
}
