//! Policies: what each action does to the conversations it selects.
pub mod confidential;
pub mod direct;
pub mod export;
pub mod index;
pub mod lifecycle;
pub mod produce;
pub mod quarantine;
pub mod roles;
pub mod template;

use std::path::{Path, PathBuf};

use chrono::{TimeDelta, Utc};
use serde::Deserialize;

use crate::catalog::{Catalog, CatalogError, ItemOutcome, Mode, RunId};
use crate::filter::Criteria;
use crate::media::audio::VoiceFormat;
use crate::pipeline::Control;
use crate::schedule::JobSettings;
use crate::schedule::notify::NotifySettings;
use crate::schedule::runlog::RunLog;
use crate::settings::Invalid;
use confidential::{ConfidentialPolicy, FlagAction};
use export::ExportPolicy;
use index::IndexReport;

/// A configured policy.
#[derive(Clone, Debug)]
pub enum Policy {
    Export(ExportPolicy),
    Confidential(ConfidentialPolicy),
}

impl Policy {
    pub fn name(&self) -> &str {
        match self {
            Policy::Export(p) => &p.name,
            Policy::Confidential(p) => &p.name,
        }
    }

    pub fn enabled(&self) -> bool {
        match self {
            Policy::Export(p) => p.enabled,
            Policy::Confidential(p) => p.enabled,
        }
    }

    pub fn job(&self) -> &JobSettings {
        match self {
            Policy::Export(p) => &p.job,
            Policy::Confidential(p) => &p.job,
        }
    }

    pub fn mode(&self) -> Mode {
        match self {
            Policy::Export(p) => p.mode,
            Policy::Confidential(p) => p.mode,
        }
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Action {
    Export,
    Confidential,
}

fn yes() -> bool {
    true
}

/// A `[policies.NAME]` table as written: the keys of every action, sorted out by the action's
/// own validation (a serde enum chosen by `action` would lose the lines of the keys in it).
/// The fields keep their order: an unknown key's message lists them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    action: Action,
    #[serde(default = "yes")]
    enabled: bool,
    target: Option<String>,
    mode: Option<Mode>,
    schedule: Option<String>,
    timezone: Option<String>,
    keep_job_history_days: Option<u32>,
    time_limit: Option<String>,
    keep_alive: Option<String>,
    log_dir: Option<PathBuf>,
    notify: Option<NotifySettings>,
    flag: Option<FlagAction>,
    filename_format: Option<String>,
    metadata_file: Option<bool>,
    file_extensions: Option<Vec<String>>,
    concurrency: Option<usize>,
    decrypt: Option<bool>,
    stitch_cdr_only: Option<bool>,
    im_attachments: Option<bool>,
    zip: Option<bool>,
    video_format: Option<String>,
    voice_format: Option<VoiceFormat>,
    voice_rate: Option<u32>,
    voice_channels: Option<u16>,
    #[serde(default)]
    filter: Criteria,
}

crate::schedule::job_keys!(PolicySettings);

impl PolicySettings {
    /// The target an export policy names.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// The first key only an export policy takes that the table sets.
    fn export_key(&self) -> Option<&'static str> {
        [
            ("target", self.target.is_some()),
            ("filename_format", self.filename_format.is_some()),
            ("metadata_file", self.metadata_file.is_some()),
            ("file_extensions", self.file_extensions.is_some()),
            ("concurrency", self.concurrency.is_some()),
            ("decrypt", self.decrypt.is_some()),
            ("stitch_cdr_only", self.stitch_cdr_only.is_some()),
            ("im_attachments", self.im_attachments.is_some()),
            ("zip", self.zip.is_some()),
            ("video_format", self.video_format.is_some()),
            ("voice_format", self.voice_format.is_some()),
            ("voice_rate", self.voice_rate.is_some()),
            ("voice_channels", self.voice_channels.is_some()),
        ]
        .into_iter()
        .find_map(|(key, set)| set.then_some(key))
    }

    /// The policy called `name`; `log_dir` is relative to `base`, the config's directory, and
    /// `remote_target` says whether the target it names is an object store. Whether the
    /// targets, keystore and email server it needs exist is for the caller to check.
    pub fn validate(
        &self,
        name: &str,
        base: &Path,
        remote_target: bool,
    ) -> Result<Policy, Invalid> {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Invalid::table(
                "policy names may contain only letters, digits, `-` and `_`",
            ));
        }
        if name == lifecycle::LIFECYCLE_RUN {
            return Err(Invalid::table(
                "`lifecycle` names the retention sweep (`custodian run lifecycle`); pick another name",
            ));
        }
        if let Err((key, message)) = self.filter.validate() {
            return Err(Invalid::at(key, message).under("filter"));
        }
        let job = self.job().validate(base)?;
        Ok(match self.action {
            Action::Export => {
                Policy::Export(ExportPolicy::from_settings(name, self, job, remote_target)?)
            }
            Action::Confidential => {
                Policy::Confidential(ConfidentialPolicy::from_settings(name, self, job)?)
            }
        })
    }
}

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
