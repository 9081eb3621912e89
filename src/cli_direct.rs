//! `custodian direct POLICY`: direct export on a recording server. Watches the repository,
//! and each time conversations become complete exports them with the policy's settings (one
//! run each time, with its manifest and audit events). Its state is the config's catalog, which
//! must be a local SQLite file: `jobs` and `audit` read it as usual. Runs until SIGTERM or
//! SIGINT (or one look with `--once`), then prints what it did and the latency from a
//! conversation's completion to its export.

use crate::cli_out::{errln, outln};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use serde::Serialize;

use custodian::audit::AuditKind;
use custodian::catalog::sqlite::SqliteCatalog;
use custodian::catalog::{AuditQuery, Catalog, CatalogConfig, Exclude, RunStatus};
use custodian::config::Config;
use custodian::filter::Filter;
use custodian::pipeline::Control;
use custodian::policy::Policy;
use custodian::policy::direct::{self, DIRECT_CRITERIA, Latencies, Watcher};
use custodian::policy::export::{Export, RunError};
use custodian::policy::produce::{self, MediaTools};
use custodian::schedule::runlog::RunLog;

use super::{Cli, Loaded, export_io, load_keystore, open_target, print_json};

/// The first pause before conversations a stopped run left are retried, and the longest.
const STOPPED_RETRY_FIRST: Duration = Duration::from_secs(1);
const STOPPED_RETRY_MAX: Duration = Duration::from_secs(300);

#[derive(clap::Args)]
pub struct DirectArgs {
    /// The export policy whose target and settings to use.
    policy: String,
    /// How often the repository is looked at.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Warn about a conversation still incomplete after this long (it is still waited for).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    patience: Duration,
    /// Look once, export what is complete, and exit.
    #[arg(long)]
    once: bool,
}

/// What a direct-export session did.
#[derive(Serialize)]
struct DirectSummary {
    policy: String,
    state: PathBuf,
    runs: u64,
    exported: u64,
    failed: u64,
    /// Conversations still incomplete when it stopped.
    waiting: usize,
    /// Completion-to-export latencies measured (conversations completed while it watched).
    measured: u64,
    latency_median_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
}

pub fn direct(cli: &Cli, args: &DirectArgs, log: &RunLog) -> Result<u8> {
    let config = Config::load(&cli.config)?;
    let policy = match config.policy(&args.policy)? {
        Policy::Export(p) => p.clone(),
        Policy::Confidential(_) => bail!(
            "policy `{}` sets confidential flags; direct export runs an export policy",
            args.policy
        ),
    };
    if let Some(key) = direct::unsupported_criterion(&policy.criteria) {
        bail!(
            "{}: policies.{}.filter.{key}: direct export cannot apply this criterion; it filters by {} only (a scheduled export policy can)",
            config.file.display(),
            policy.name,
            DIRECT_CRITERIA.join(", ")
        );
    }
    let state_path = match &config.catalog {
        CatalogConfig::Sqlite { path } => path.clone(),
        CatalogConfig::Postgres { .. } => bail!(
            "{}: catalog.url: direct export keeps its state on the recording server; give it a config with catalog.url = \"sqlite:PATH\"",
            config.file.display()
        ),
    };
    let state: Arc<dyn Catalog> = Arc::new(SqliteCatalog::open(&state_path)?.with_audit_key(Some(
        custodian::audit::KeySource::new(&config.audit.key_file),
    )));
    let l = Loaded {
        config,
        catalog: state.clone(),
    };
    let target = open_target(&l, &policy.target)?;
    let keystore = load_keystore(&l, &policy)?;
    let ffmpeg = l.config.media.ffmpeg.as_deref();
    if let (Some(ffmpeg), Some(_)) = (ffmpeg, &policy.video_format) {
        produce::check_ffmpeg(ffmpeg).map_err(anyhow::Error::msg)?;
    }
    let _lock = state.lock_policy(&policy.name)?;
    let mut criteria = policy.criteria.clone();
    criteria.imported = Some(false);
    let filter = Filter::resolve(&criteria, Utc::now(), policy.job.timezone);
    let (repo, scratch) = export_io(&l)?;
    let export = Export {
        policy: &policy,
        repo,
        scratch,
        target: target.as_ref(),
        catalog: state.as_ref(),
        filter: filter.clone(),
        tools: MediaTools {
            keystore: keystore.as_ref(),
            ffmpeg,
        },
    };
    let quit = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, quit.clone())?;
    }
    let mut watcher = Watcher::new(
        &l.config.repository_root,
        l.config.max_record_bytes,
        state.as_ref(),
        args.patience,
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
    if !cli.json {
        errln!(
            "direct: watching {} for policy `{}` (state {}); Ctrl-C to stop",
            l.config.repository_root.display(),
            policy.name,
            state_path.display()
        );
    }
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
        let found = watcher
            .scan()
            .with_context(|| format!("cannot read {}", l.config.repository_root.display()))?;
        if !found.is_empty() {
            let changes = direct::changes(&found);
            for (change, error) in changes.iter().zip(state.apply_index(&changes)?) {
                if let (Some(e), custodian::catalog::IndexChange::Upsert { rel_dir, .. }) =
                    (error, change)
                {
                    tracing::warn!("{rel_dir}: {e}");
                }
            }
        }
        // Only newly complete conversations the filter takes start a run; the whole state is
        // counted only on the first cycle and after a failed manifest.
        let pause_over = stopped_retry.is_some_and(|(at, _)| Instant::now() >= at);
        let due = found.iter().any(|f| filter.matches(&f.conversation))
            || ((retry || pause_over)
                && (state.count_selection(&filter, &exclude)? > 0
                    || state.interrupted_run(&policy.name)?.is_some()));
        if due {
            let control = Control::new();
            match export.run(None, &indicatif::ProgressBar::hidden(), &control, log) {
                Err(RunError::Manifest(e)) => {
                    errln!("error: {e}");
                    errln!("the run stays open: a later cycle resumes it");
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
                    record_run(
                        cli,
                        &state,
                        &filter,
                        &found,
                        &run,
                        &mut latencies,
                        &mut summary,
                    )?;
                }
            }
        }
        if args.once || quit.load(Ordering::Relaxed) {
            break;
        }
        let until = Instant::now() + args.interval;
        while Instant::now() < until && !quit.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20).min(args.interval));
        }
    }
    summary.waiting = watcher.waiting();
    summary.measured = latencies.count;
    if let Some((p50, p99)) = latencies.percentiles() {
        summary.latency_median_ms = Some(p50);
        summary.latency_p99_ms = Some(p99);
    }
    if cli.json {
        print_json(&summary)?;
    } else {
        outln!(
            "direct: stopped: {} run(s), {} exported, {} failed, {} conversation(s) still incomplete{}",
            summary.runs,
            summary.exported,
            summary.failed,
            summary.waiting,
            match (summary.latency_median_ms, summary.latency_p99_ms) {
                (Some(p50), Some(p99)) => format!(
                    "; completion to export over {} conversation(s): median {p50:.0} ms, p99 {p99:.0} ms",
                    summary.measured
                ),
                _ => String::new(),
            }
        )?;
    }
    Ok(u8::from(summary.failed > 0))
}

/// Counts a finished run and the latency of each conversation it exported that completed
/// while the watcher looked (a run stopped early did not reach them all).
fn record_run(
    cli: &Cli,
    state: &Arc<dyn Catalog>,
    filter: &Filter,
    found: &[direct::Found],
    run: &custodian::policy::export::RunSummary,
    latencies: &mut Latencies,
    summary: &mut DirectSummary,
) -> Result<()> {
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
    if !cli.json {
        let latency = latencies
            .percentiles()
            .map(|(p50, p99)| {
                format!("; completion to export so far: median {p50:.0} ms, p99 {p99:.0} ms")
            })
            .unwrap_or_default();
        outln!(
            "direct: run {}: {} exported, {} failed{latency}",
            run.run,
            run.counters.exported,
            run.counters.failed
        )?;
        for f in &run.failures {
            outln!("  failed: {}: {}", f.subject, f.error)?;
        }
        if let Some(why) = state
            .job_run(run.run)?
            .and_then(|r| r.error_summary)
            .filter(|_| {
                matches!(
                    run.status,
                    RunStatus::Failed | RunStatus::TimedOut | RunStatus::Stalled
                )
            })
        {
            outln!("  {why}")?;
        }
    }
    Ok(())
}
