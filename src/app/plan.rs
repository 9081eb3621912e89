//! `custodian plan POLICY` (and `run POLICY --dry-run`): what a policy would do now, without
//! doing it.

use std::ops::ControlFlow;

use chrono::Utc;

use super::{Loaded, SetupError};
use crate::catalog::{CatalogError, Exclude, Mode};
use crate::filter::Filter;
use crate::pipeline::Control;
use crate::policy::Policy;
use crate::policy::confidential::{ConfidentialPolicy, FlagAction};
use crate::policy::export::PlannedConversation;
use crate::progress::Progress;

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// What a policy would do.
pub enum Plan {
    Export(ExportPlan),
    Flags(FlagPlan),
}

/// The totals of an export policy's plan; each conversation's objects went to the caller as
/// they were planned.
pub struct ExportPlan {
    pub policy: String,
    pub mode: Mode,
    pub target: String,
    pub conversations: u64,
    pub objects: u64,
    pub bytes: u64,
    /// Index failures, and conversations that could not be planned.
    pub errors: Vec<String>,
}

/// How many conversations a confidential-flag policy matches, and how many of them it would
/// change.
pub struct FlagPlan {
    pub policy: String,
    pub mode: Mode,
    pub flag: FlagAction,
    pub conversations: u64,
    pub changes: u64,
}

/// Plans policy `name` after indexing (unless `no_index`); `each` receives every planned
/// conversation of an export policy and may stop the listing.
pub fn plan(
    l: &Loaded,
    name: &str,
    no_index: bool,
    index_progress: &dyn Progress,
    mut each: impl FnMut(PlannedConversation) -> ControlFlow<()>,
) -> Result<Plan, PlanError> {
    if let Policy::Confidential(p) = l.config.policy(name).map_err(SetupError::from)? {
        return Ok(Plan::Flags(flags(l, p, no_index, index_progress)?));
    }
    let policy = l.export_policy(name)?;
    let target = l.build_target(&policy.target)?;
    let (index, export) = l.prepare_export(
        policy,
        target.as_ref(),
        None,
        no_index,
        index_progress,
        &Control::default(),
    )?;
    let exclude = Exclude::for_mode(policy.mode, name, None);
    let mut plan = ExportPlan {
        policy: name.to_owned(),
        mode: policy.mode,
        target: policy.target.clone(),
        conversations: 0,
        objects: 0,
        bytes: 0,
        errors: index
            .iter()
            .flat_map(|r| &r.failures)
            .map(|f| f.to_string())
            .collect(),
    };
    export.for_each_selected(&exclude, |s| match export.plan(&s) {
        Ok(p) => {
            plan.conversations += 1;
            plan.objects += p.objects.len() as u64;
            plan.bytes += p.objects.iter().map(|o| o.size).sum::<u64>();
            each(p).is_continue()
        }
        Err(e) => {
            plan.errors.push(format!(
                "{}/{}: {e}",
                s.conversation.tenant, s.conversation.id
            ));
            true
        }
    })?;
    Ok(Plan::Export(plan))
}

fn flags(
    l: &Loaded,
    policy: &ConfidentialPolicy,
    no_index: bool,
    index_progress: &dyn Progress,
) -> Result<FlagPlan, SetupError> {
    if !no_index {
        l.index(index_progress, &Control::default())?;
    }
    let now = Utc::now();
    let exclude = Exclude::for_mode(policy.mode, &policy.name, None);
    let conversations = l.catalog.count_selection(
        &Filter::resolve(&policy.criteria, now, policy.job.timezone),
        &exclude,
    )?;
    let mut differing = policy.criteria.clone();
    differing.confidential = Some(!policy.flag.value());
    let changes = l.catalog.count_selection(
        &Filter::resolve(&differing, now, policy.job.timezone),
        &exclude,
    )?;
    Ok(FlagPlan {
        policy: policy.name.clone(),
        mode: policy.mode,
        flag: policy.flag,
        conversations,
        changes,
    })
}
