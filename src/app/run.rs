//! `custodian index` and `custodian run POLICY` (not `lifecycle`): one index pass, or one run of
//! an export or confidential-flag policy under run control, alone or as one of several nodes.

use chrono::Utc;

use super::control::{self, ControlError, Controlled, Watchers};
use super::{Loaded, SetupError};
use crate::catalog::{CatalogError, RunStatus};
use crate::cluster::{self, NodeError, NodeOptions, NodeReport};
use crate::filter::Filter;
use crate::pipeline::Control;
use crate::policy::Policy;
use crate::policy::confidential::{self, ConfidentialPolicy, FlagSummary};
use crate::policy::export::{self, ExportPolicy, RunSummary};
use crate::policy::index::{IndexError, IndexReport};
use crate::progress::Progress;
use crate::schedule::runlog::RunLog;
use crate::target::manifest::ManifestError;

/// Why a run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Export(#[from] export::RunError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("policy `{0}` sets confidential flags; only export policies run on several nodes")]
    FlagsOnNodes(String),
    #[error(
        "--node needs a catalog the nodes share: set catalog.url = \"postgres://…\" (this one is {0})"
    )]
    NotShared(String),
}

/// What one run did.
pub enum Outcome {
    /// An export run ended; `error_summary` is the run's, when it did not succeed.
    Exported {
        summary: RunSummary,
        error_summary: Option<String>,
    },
    /// The export's manifest could not be written: the run stays open.
    ManifestFailed {
        policy: String,
        error: ManifestError,
    },
    /// This node's part of a cluster run.
    Node {
        policy: String,
        report: NodeReport,
    },
    Flagged(FlagSummary),
}

/// `custodian index`: one pass that SIGTERM or SIGINT cut short, with what it found committed.
pub fn index(l: &Loaded, progress: &dyn Progress) -> Result<IndexReport, RunError> {
    let control = Control::new();
    control::cancel_on_signals(
        &control,
        "the index; what it has found is committed, and the next `custodian index` goes on",
    )?;
    Ok(l.index(progress, &control)?)
}

/// `custodian run POLICY`, as one of several nodes when `node` is given.
pub fn run(
    l: &Loaded,
    name: &str,
    no_index: bool,
    node: Option<NodeOptions>,
    watchers: Watchers<'_>,
) -> Result<Controlled<Outcome>, RunError> {
    let policy = l.config.policy(name).map_err(SetupError::from)?.clone();
    let log = watchers.log;
    control::controlled(
        l,
        name,
        policy.job(),
        watchers,
        |control, [index, work]| match (&policy, node) {
            (Policy::Export(p), Some(node)) => export_node(l, p, &node, work, control),
            (Policy::Confidential(_), Some(_)) => Err(RunError::FlagsOnNodes(name.to_owned())),
            (Policy::Export(p), None) => export(l, p, no_index, [index, work], control, log),
            (Policy::Confidential(p), None) => flags(l, p, no_index, [index, work], control, log),
        },
    )
}

fn export(
    l: &Loaded,
    policy: &ExportPolicy,
    no_index: bool,
    [index_progress, progress]: [&dyn Progress; 2],
    control: &Control,
    log: &RunLog,
) -> Result<Outcome, RunError> {
    let target = l.open_target(&policy.target)?;
    let keystore = l.keystore(policy)?;
    let _lock = l.catalog.lock_policy(&policy.name)?;
    let (index, export) = l.prepare_export(
        policy,
        target.as_ref(),
        keystore.as_ref(),
        no_index,
        index_progress,
        control,
    )?;
    progress.message("export");
    let summary = match export.run(index, progress, control, log) {
        Err(export::RunError::Manifest(error)) => {
            return Ok(Outcome::ManifestFailed {
                policy: policy.name.clone(),
                error,
            });
        }
        result => result?,
    };
    let error_summary = l
        .catalog
        .job_run(summary.run)?
        .and_then(|r| r.error_summary)
        .filter(|_| summary.status != RunStatus::Succeeded);
    Ok(Outcome::Exported {
        summary,
        error_summary,
    })
}

/// `run POLICY --node NAME`.
fn export_node(
    l: &Loaded,
    policy: &ExportPolicy,
    options: &NodeOptions,
    progress: &dyn Progress,
    control: &Control,
) -> Result<Outcome, RunError> {
    let Some(units) = l.catalog.work_units() else {
        return Err(RunError::NotShared(l.catalog.location()));
    };
    let target = l.open_target(&policy.target)?;
    let keystore = l.keystore(policy)?;
    let (_, export) = l.prepare_export(
        policy,
        target.as_ref(),
        keystore.as_ref(),
        true,
        &crate::progress::Silent,
        control,
    )?;
    progress.message("export");
    let report = cluster::run_node(&export, units, options, progress, control)?;
    Ok(Outcome::Node {
        policy: policy.name.clone(),
        report,
    })
}

fn flags(
    l: &Loaded,
    policy: &ConfidentialPolicy,
    no_index: bool,
    [index_progress, progress]: [&dyn Progress; 2],
    control: &Control,
    log: &RunLog,
) -> Result<Outcome, RunError> {
    let _lock = l.catalog.lock_policy(&policy.name)?;
    let index = if no_index {
        None
    } else {
        Some(l.index(index_progress, control)?)
    };
    let filter = Filter::resolve(&policy.criteria, Utc::now(), policy.job.timezone);
    progress.message("flag");
    let summary = confidential::run(
        policy,
        l.catalog.as_ref(),
        &filter,
        index,
        progress,
        control,
        log,
    )?;
    Ok(Outcome::Flagged(summary))
}
