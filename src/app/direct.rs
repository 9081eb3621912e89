//! `custodian direct POLICY`: direct export on a recording server. Watches the repository, and
//! each time conversations become complete exports them with the policy's settings (one run
//! each time, with its manifest and audit events). Its state is the config's catalog, which
//! must be a local SQLite file. Runs until SIGTERM or SIGINT (or one look with `once`), and
//! measures the latency from a conversation's completion to its export.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use chrono::Utc;
use serde::Serialize;

use super::{Loaded, SetupError};
use crate::audit::{AuditKind, KeySource};
use crate::catalog::sqlite::SqliteCatalog;
use crate::catalog::{
    AuditQuery, Catalog, CatalogConfig, CatalogError, Exclude, IndexChange, RunStatus,
};
use crate::config::Config;
use crate::confined::ConfinedError;
use crate::filter::Filter;
use crate::pipeline::Control;
use crate::policy::Policy;
use crate::policy::direct::{self, DIRECT_CRITERIA, Found, Latencies, Watcher};
use crate::policy::export::{RunError, RunSummary};
use crate::progress::Silent;
use crate::schedule::runlog::RunLog;
use crate::target::manifest::ManifestError;

/// The first pause before conversations a stopped run left are retried, and the longest.
const STOPPED_RETRY_FIRST: Duration = Duration::from_secs(1);
const STOPPED_RETRY_MAX: Duration = Duration::from_secs(300);

/// Why direct export could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Export(#[from] RunError),
    #[error("policy `{0}` sets confidential flags; direct export runs an export policy")]
    NotExport(String),
    #[error(
        "{file}: policies.{policy}.filter.{key}: direct export cannot apply this criterion; it filters by {} only (a scheduled export policy can)",
        DIRECT_CRITERIA.join(", ")
    )]
    Criterion {
        file: PathBuf,
        policy: String,
        key: &'static str,
    },
    #[error(
        "{0}: catalog.url: direct export keeps its state on the recording server; give it a config with catalog.url = \"sqlite:PATH\""
    )]
    NotLocal(PathBuf),
    #[error("cannot read {root}")]
    Scan {
        root: PathBuf,
        source: ConfinedError,
    },
}

/// How to watch.
pub struct DirectOptions<'a> {
    /// The export policy whose target and settings to use.
    pub policy: &'a str,
    /// How often the repository is looked at.
    pub interval: Duration,
    /// Warn about a conversation still incomplete after this long.
    pub patience: Duration,
    /// Look once, export what is complete, and stop.
    pub once: bool,
}

/// What direct export has to say while it watches.
pub trait DirectObserver {
    /// Watching has begun.
    fn watching(&self, root: &Path, policy: &str, state: &Path);
    /// A run ended, with the completion-to-export latencies so far (median, p99, in ms) and
    /// why it stopped early, if it did; `Break` stops watching.
    fn exported(
        &self,
        run: &RunSummary,
        latency: Option<(f64, f64)>,
        stopped: Option<&str>,
    ) -> ControlFlow<()>;
    /// A run's manifest could not be written: the run stays open and a later cycle resumes it.
    fn manifest_failed(&self, error: &ManifestError);
}

/// What a direct-export session did.
#[derive(Serialize)]
pub struct DirectSummary {
    pub policy: String,
    pub state: PathBuf,
    pub runs: u64,
    pub exported: u64,
    pub failed: u64,
    /// Conversations still incomplete when it stopped.
    pub waiting: usize,
    /// Completion-to-export latencies measured (conversations completed while it watched).
    pub measured: u64,
    pub latency_median_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

/// Watches and exports with the config at `config`, until a signal (or one look); each run
/// opens its file in `log` when the policy keeps one.
pub fn direct(
    config: &Path,
    options: &DirectOptions<'_>,
    observer: &dyn DirectObserver,
    log: &RunLog,
) -> Result<DirectSummary, DirectError> {
    let config = Config::load(config).map_err(SetupError::from)?;
    super::access::own_catalog(&config).map_err(SetupError::from)?;
    let policy = match config.policy(options.policy).map_err(SetupError::from)? {
        Policy::Export(p) => p.clone(),
        Policy::Confidential(_) => return Err(DirectError::NotExport(options.policy.to_owned())),
    };
    if let Some(key) = direct::unsupported_criterion(&policy.criteria) {
        return Err(DirectError::Criterion {
            file: config.file.clone(),
            policy: policy.name.clone(),
            key,
        });
    }
    let state_path = match &config.catalog {
        CatalogConfig::Sqlite { path } => path.clone(),
        CatalogConfig::Postgres { .. } => return Err(DirectError::NotLocal(config.file.clone())),
    };
    let state: Arc<dyn Catalog> = Arc::new(
        SqliteCatalog::open(&state_path)?
            .with_audit_key(Some(KeySource::new(&config.audit.key_file))),
    );
    let l = Loaded {
        config,
        catalog: state.clone(),
        acting: super::Acting::Process,
    };
    let target = l.open_target(&policy.target)?;
    let keystore = l.keystore(&policy)?;
    let mut criteria = policy.criteria.clone();
    criteria.imported = Some(false);
    let filter = Filter::resolve(&criteria, Utc::now(), policy.job.timezone);
    let export = l.export(&policy, target.as_ref(), keystore.as_ref(), filter)?;
    let _lock = state.lock_policy(&policy.name)?;
    let quit = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, quit.clone()).map_err(SetupError::Signals)?;
    }
    let root = l.local_root("direct export").map_err(SetupError::from)?;
    let mut watcher = Watcher::new(
        root,
        l.config.max_record_bytes,
        state.as_ref(),
        options.patience,
    )?;
    let mut latencies = Latencies::new(100_000);
    let mut summary = DirectSummary {
        policy: policy.name.clone(),
        state: state_path.clone(),
        runs: 0,
        exported: 0,
        failed: 0,
        waiting: 0,
        measured: 0,
        latency_median_ms: None,
        latency_p99_ms: None,
    };
    observer.watching(root, &policy.name, &state_path);
    let exclude = Exclude::ExportedBy(policy.name.clone());
    // The first cycle also exports what the state holds from before a restart. A run whose
    // manifest could not be written (it stays open), or one stopped early (a full target),
    // leaves work no new arrival may come to pick up: it is retried after a pause that
    // doubles while runs keep ending that way.
    let mut retry = true;
    let mut stopped_retry: Option<(Instant, Duration)> = None;
    let pause_after = |last: Option<(Instant, Duration)>| {
        let pause = last
            .map_or(STOPPED_RETRY_FIRST, |(_, p)| p * 2)
            .min(STOPPED_RETRY_MAX);
        Some((Instant::now() + pause, pause))
    };
    loop {
        let found = watcher.scan().map_err(|source| DirectError::Scan {
            root: root.to_owned(),
            source,
        })?;
        if !found.is_empty() {
            let changes = direct::changes(&found);
            for (change, error) in changes.iter().zip(state.apply_index(&changes)?) {
                if let (Some(e), IndexChange::Upsert { rel_dir, .. }) = (error, change) {
                    tracing::warn!("{rel_dir}: {e}");
                }
            }
        }
        // Only newly complete conversations the filter takes start a run; the whole state is
        // counted only on the first cycle and after a failed manifest.
        let pause_over = stopped_retry.is_some_and(|(at, _)| Instant::now() >= at);
        let due = found.iter().any(|f| export.filter.matches(&f.conversation))
            || ((retry || pause_over)
                && (state.count_selection(&export.filter, &exclude)? > 0
                    || state.interrupted_run(&policy.name)?.is_some()));
        if due {
            let control = Control::new();
            match export.run(None, &Silent, &control, log) {
                Err(RunError::Manifest(e)) => {
                    observer.manifest_failed(&e);
                    retry = false;
                    stopped_retry = pause_after(stopped_retry);
                    summary.failed += 1;
                }
                result => {
                    retry = false;
                    let run = result?;
                    stopped_retry = match run.status {
                        RunStatus::Failed | RunStatus::TimedOut | RunStatus::Stalled => {
                            pause_after(stopped_retry)
                        }
                        _ => None,
                    };
                    count_run(
                        state.as_ref(),
                        &export.filter,
                        &found,
                        &run,
                        &mut latencies,
                        &mut summary,
                    )?;
                    let stopped = state
                        .job_run(run.run)?
                        .and_then(|r| r.error_summary)
                        .filter(|_| {
                            matches!(
                                run.status,
                                RunStatus::Failed | RunStatus::TimedOut | RunStatus::Stalled
                            )
                        });
                    let told = observer.exported(&run, latencies.percentiles(), stopped.as_deref());
                    if told.is_break() {
                        break;
                    }
                }
            }
        }
        if options.once || quit.load(Ordering::Relaxed) {
            break;
        }
        let until = Instant::now() + options.interval;
        while Instant::now() < until && !quit.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20).min(options.interval));
        }
    }
    summary.waiting = watcher.waiting();
    summary.measured = latencies.count;
    if let Some((p50, p99)) = latencies.percentiles() {
        summary.latency_median_ms = Some(p50);
        summary.latency_p99_ms = Some(p99);
    }
    Ok(summary)
}

/// Counts a finished run and the latency of each conversation it exported that completed
/// while the watcher looked (a run stopped early did not reach them all).
fn count_run(
    state: &dyn Catalog,
    filter: &Filter,
    found: &[Found],
    run: &RunSummary,
    latencies: &mut Latencies,
    summary: &mut DirectSummary,
) -> Result<(), CatalogError> {
    let exported: HashSet<(String, String)> = state
        .audit_events(&AuditQuery {
            run: Some(run.run),
            kind: Some(AuditKind::ConversationExported),
            limit: usize::MAX,
            ..AuditQuery::default()
        })?
        .into_iter()
        .filter_map(|e| Some((e.event.tenant?, e.event.conversation_id?)))
        .collect();
    let now = SystemTime::now();
    for f in found.iter().filter(|f| {
        filter.matches(&f.conversation)
            && exported.contains(&(f.conversation.tenant.clone(), f.conversation.id.clone()))
    }) {
        let ms = now.duration_since(f.completed).unwrap_or_default();
        latencies.add(ms.as_secs_f64() * 1000.0);
    }
    summary.runs += 1;
    summary.exported += run.counters.exported;
    summary.failed += run.counters.failed;
    Ok(())
}
