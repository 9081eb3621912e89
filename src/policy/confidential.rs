//! The confidential-flag action: sets or clears the confidential flag of every conversation a
//! policy's filter matches, page by page in the catalog, with one audit event per conversation
//! whose flag changed. Full mode processes every match each run; incremental mode remembers
//! what it has processed. The flag is kept across reindexing, is what filters see, and is what
//! exported metadata files carry.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::index::IndexReport;
use crate::audit::current_actor;
use crate::catalog::{
    Catalog, CatalogError, ConfidentialPage, Counters, Exclude, Mode, RunId, RunStatus,
};
use crate::filter::{Criteria, Filter};
use crate::pipeline::Control;
use crate::progress::Progress;
use crate::schedule::JobSettings;
use crate::schedule::runlog::RunLog;
use crate::settings::Invalid;

use super::PolicySettings;

/// Conversations handled per catalog transaction.
const PAGE: usize = 2_000;

/// What a confidential-flag policy does to the flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagAction {
    Set,
    Clear,
}

impl FlagAction {
    pub fn value(self) -> bool {
        self == FlagAction::Set
    }
}

/// A confidential-flag policy: sets or clears the flag on the conversations its filter matches.
#[derive(Clone, Debug)]
pub struct ConfidentialPolicy {
    pub name: String,
    pub enabled: bool,
    pub mode: Mode,
    pub flag: FlagAction,
    pub job: JobSettings,
    pub criteria: Criteria,
}

impl ConfidentialPolicy {
    /// Policy `name`'s flag, with its checked `job` settings; the keys of exports are refused.
    pub(super) fn from_settings(
        name: &str,
        p: &PolicySettings,
        job: JobSettings,
    ) -> Result<ConfidentialPolicy, Invalid> {
        if let Some(key) = p.export_key() {
            return Err(Invalid::at(
                key,
                "a confidential-flag policy only sets or clears the flag; export settings do not apply",
            ));
        }
        let flag = p.flag.ok_or_else(|| {
            Invalid::at(
                "action",
                "a confidential policy needs `flag = \"set\"` or `flag = \"clear\"`",
            )
        })?;
        Ok(ConfidentialPolicy {
            name: name.to_owned(),
            enabled: p.enabled,
            mode: p.mode.unwrap_or(Mode::Incremental),
            flag,
            job,
            criteria: p.filter.clone(),
        })
    }
}

/// The end state of a confidential-flag run.
#[derive(Debug, Serialize)]
pub struct FlagSummary {
    pub run: RunId,
    pub policy: String,
    pub mode: Mode,
    pub flag: FlagAction,
    pub status: RunStatus,
    pub resumed: bool,
    pub index: Option<IndexReport>,
    /// Conversations the run went through.
    pub processed: u64,
    pub counters: Counters,
    pub error_summary: Option<String>,
    pub seconds: f64,
}

/// Runs `policy` over the catalog.
pub fn run(
    policy: &ConfidentialPolicy,
    catalog: &dyn Catalog,
    filter: &Filter,
    index: Option<IndexReport>,
    progress: &dyn Progress,
    control: &Control,
    log: &RunLog,
) -> Result<FlagSummary, CatalogError> {
    let started = Instant::now();
    let name = policy.name.as_str();
    let (run, resumed) = super::start_run(
        catalog,
        name,
        policy.mode,
        "catalog",
        &policy.job,
        control,
        log,
    )?;
    tracing::info!(
        policy = name,
        run = run.0,
        mode = policy.mode.as_str(),
        flag = ?policy.flag,
        resumed,
        "confidential-flag run started"
    );
    let index_failures = super::index_failures(index.as_ref());
    catalog.record_outcomes(run, name, &index_failures)?;
    let exclude = Exclude::for_mode(policy.mode, name, None);
    let selected = catalog.count_selection(filter, &exclude)?;
    progress.set_length(selected);
    let actor = current_actor();
    let page = ConfidentialPage {
        run,
        policy: name,
        filter,
        exclude: &exclude,
        value: policy.flag.value(),
        remember: policy.mode == Mode::Incremental,
        actor: &actor,
        limit: PAGE,
    };
    let (mut processed, mut changed, mut after) = (0u64, 0u64, 0i64);
    while !control.is_stopped() {
        let (n, c, last) = catalog.set_confidential_page(&page, after)?;
        if n == 0 {
            break;
        }
        processed += n;
        changed += c;
        after = last;
        progress.advance(n);
        tracing::info!(
            processed,
            changed,
            "page of {n} conversation(s) done, {c} flag(s) changed"
        );
    }
    let mut counters = catalog.run_counters(run)?;
    counters.selected = selected;
    counters.flagged = changed;
    counters.index_errors = index_failures.len() as u64;
    let stopped = control.stopped();
    let status = super::outcome(stopped, counters.failed);
    let error_summary = match stopped {
        Some(why) => Some(format!(
            "{}; {processed} of {selected} conversation(s) done",
            why.describe(policy.job.time_limit, policy.job.keep_alive)
        )),
        None => super::index_failure_summary(&index_failures),
    };
    catalog.finish_run(run, status, &counters, None, error_summary.as_deref())?;
    tracing::info!(
        status = status.as_str(),
        processed,
        changed,
        "confidential-flag run finished"
    );
    Ok(FlagSummary {
        run,
        policy: name.to_owned(),
        mode: policy.mode,
        flag: policy.flag,
        status,
        resumed,
        index,
        processed,
        counters,
        error_summary,
        seconds: started.elapsed().as_secs_f64(),
    })
}
