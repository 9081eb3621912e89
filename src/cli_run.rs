//! `custodian run POLICY`: one run of an export or confidential-flag policy (or, through
//! [`controlled`], of the lifecycle sweep) under run control (execution time limit, keep-alive,
//! SIGTERM/SIGINT), with its panic caught and recorded, and the email notification its outcome
//! calls for. `custodian serve` starts runs this way too.

use crate::cli_out::{errln, outln};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::Utc;

use custodian::catalog::{self, Catalog, JobRun, RunId, RunStatus};
use custodian::config::Config;
use custodian::filter::Filter;
use custodian::pipeline::control::{self, Control, Limits, Stop};
use custodian::policy::Policy;
use custodian::policy::confidential::{self, FlagSummary};
use custodian::schedule::runlog::RunLog;
use custodian::schedule::{JobSettings, notify};

use custodian::cluster::{self, NodeOptions};

use super::{
    Cli, Loaded, human_bytes, load, load_keystore, open_target, prepare_export, print_index,
    print_json, print_summary, progress_bar, run_heading, run_index,
};

/// A stopped run that has not wound down after this long (or its keep-alive, if shorter) is
/// recorded and its process ended.
const MAX_GRACE: Duration = Duration::from_secs(60);

/// Stops `control` as cancelled on SIGTERM or SIGINT.
/// SIGTERM and SIGINT stop `control`; `what` says what stops, and what becomes of the work.
pub fn cancel_on_signals(control: &Arc<Control>, what: &'static str) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    let control = control.clone();
    std::thread::Builder::new()
        .name("custodian-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if control.stop(Stop::Cancelled) {
                    tracing::warn!("signal {signal}: stopping {what}");
                }
            }
        })?;
    Ok(())
}

/// Records a run that did not stop within its grace period, notifies, and ends the process.
fn end_overdue(config: &Config, policy: &str, control: &Control, log: &RunLog, why: Stop) -> ! {
    let message = format!(
        "{}; the run did not wind down within its grace period and its process was ended",
        match config.job(policy) {
            Some(job) => why.describe(job.time_limit, job.keep_alive),
            None => format!("{why:?}"),
        }
    );
    errln!("error: policy `{policy}`: {message}");
    if let Some(run) = control.run() {
        match catalog::open(&config.catalog) {
            Ok(cat) => {
                let counters = cat.run_counters(run).unwrap_or_default();
                if let Err(e) = cat.finish_run(run, why.status(), &counters, None, Some(&message)) {
                    errln!("error: cannot record the end of run {run}: {e}");
                }
                if let Some(job) = config.job(policy) {
                    notify_run(config, cat.as_ref(), job, run);
                }
            }
            Err(e) => errln!("error: cannot record the end of run {run}: {e}"),
        }
    }
    log.close();
    std::process::exit(1)
}

/// Sends the notification `run`'s outcome calls for and records what became of it; returns it.
pub fn notify_run(
    config: &Config,
    catalog: &dyn Catalog,
    job: &JobSettings,
    run: RunId,
) -> Option<String> {
    let (Some(n), Some(email)) = (&job.notify, &config.email) else {
        return None;
    };
    let (this, previous) = match catalog.job_run(run) {
        Ok(Some(r)) => {
            let previous = catalog
                .job_runs(Some(&r.policy), 50)
                .ok()
                .and_then(|runs| {
                    runs.into_iter()
                        .find(|p| p.id < run && p.status != RunStatus::Running)
                })
                .map(|p| p.status);
            (r, previous)
        }
        _ => return None,
    };
    if !n.wants(this.status, previous) {
        return None;
    }
    let text = match notify::send(email, &n.to, &this) {
        Ok(()) => format!(
            "sent to {} at {}",
            n.to.iter()
                .map(|m| m.email.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            Utc::now().to_rfc3339()
        ),
        Err(e) => {
            tracing::warn!("notification of run {run} not sent: {e}");
            format!("failed: {e}")
        }
    };
    if let Err(e) = catalog.set_run_notification(run, &text) {
        tracing::warn!("cannot record the notification of run {run}: {e}");
    }
    Some(text)
}

/// The first panic of the run, with where it happened: a panic in a worker thread reaches
/// the run as "a scoped thread panicked", which says nothing.
static FIRST_PANIC: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn record_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let _ = FIRST_PANIC.set(format!("{message}{at}"));
        default(info);
    }));
}

/// `run POLICY --node NAME`: one of several nodes sharing the run.
#[derive(clap::Args)]
pub struct ClusterArgs {
    /// Take part in the policy's run as this node, with the other nodes that share its
    /// PostgreSQL catalog (the repository is not indexed: run `custodian index` once first).
    #[arg(long)]
    node: Option<String>,
    /// Conversations per work unit.
    #[arg(long, default_value_t = 500, requires = "node",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    unit_size: u32,
    /// How long a claimed unit stays this node's without a renewal (renewed every third).
    #[arg(long, default_value = "30s", requires = "node", value_parser = humantime::parse_duration)]
    lease: Duration,
    /// How long to retry a catalog that went away before this node gives up (the other nodes
    /// then take over its unit when its lease expires).
    #[arg(long, default_value = "2m", requires = "node", value_parser = humantime::parse_duration)]
    catalog_patience: Duration,
}

/// `custodian run POLICY` (not `lifecycle`).
pub fn run(
    cli: &Cli,
    name: &str,
    no_index: bool,
    cluster: &ClusterArgs,
    log: &RunLog,
) -> Result<u8> {
    let l = load(cli)?;
    let policy = l.config.policy(name)?.clone();
    let index_bar = progress_bar(cli, "index");
    let bar = progress_bar(
        cli,
        match policy {
            Policy::Export(_) => "export",
            Policy::Confidential(_) => "flag",
        },
    );
    controlled(
        cli,
        &l,
        name,
        policy.job(),
        [&index_bar, &bar],
        log,
        |control| match (&policy, &cluster.node) {
            (Policy::Export(p), Some(node)) => {
                let options = NodeOptions {
                    node: node.clone(),
                    unit_size: cluster.unit_size as usize,
                    lease: cluster.lease,
                    catalog_patience: cluster.catalog_patience,
                };
                run_export_node(cli, &l, p, &options, &bar, control)
            }
            (Policy::Confidential(_), Some(_)) => {
                anyhow::bail!(
                    "policy `{name}` sets confidential flags; only export policies run on several nodes"
                )
            }
            (Policy::Export(p), None) => {
                run_export(cli, &l, p, no_index, &index_bar, &bar, control, log)
            }
            (Policy::Confidential(p), None) => {
                run_confidential(cli, &l, p, no_index, &index_bar, &bar, control, log)
            }
        },
    )
}

/// Runs `body`, one run of job `name` with settings `job`, under run control: SIGTERM and
/// SIGINT cancel it, the watchdog enforces its time limit and keep-alive (progress is the
/// `bars`' positions), a panic is recorded as the run's failure, and its outcome is notified.
pub fn controlled(
    cli: &Cli,
    l: &Loaded,
    name: &str,
    job: &JobSettings,
    bars: [&indicatif::ProgressBar; 2],
    log: &RunLog,
    body: impl FnOnce(&Control) -> Result<u8>,
) -> Result<u8> {
    let control = Control::new();
    cancel_on_signals(&control, "the run; items in flight finish and are recorded")?;
    record_panics();
    let limits = Limits {
        time_limit: job.time_limit,
        keep_alive: job.keep_alive,
        grace: job.keep_alive.min(MAX_GRACE),
    };
    let watched = bars.map(|b| b.clone());
    let headway = control.headway().clone();
    let config = l.config.clone();
    let overdue_control = control.clone();
    let overdue_log = log.clone();
    let policy_name = name.to_owned();
    let _watchdog = control::watch(
        control.clone(),
        limits,
        move || {
            watched
                .iter()
                .map(indicatif::ProgressBar::position)
                .sum::<u64>()
                + headway.get()
        },
        move |why| end_overdue(&config, &policy_name, &overdue_control, &overdue_log, why),
    );
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&control)));
    for bar in bars {
        bar.finish_and_clear();
    }
    let result = match outcome {
        Ok(result) => result,
        Err(_) => {
            let message = format!(
                "the run panicked: {}",
                FIRST_PANIC.get().map_or("no message", String::as_str)
            );
            let Some(run) = control.run() else {
                log.close();
                anyhow::bail!("policy `{name}`: {message}");
            };
            let counters = l.catalog.run_counters(run).unwrap_or_default();
            l.catalog
                .finish_run(run, RunStatus::Failed, &counters, None, Some(&message))?;
            tracing::error!("run {run} of policy `{name}`: {message}");
            notify_run(&l.config, l.catalog.as_ref(), job, run);
            log.close();
            anyhow::bail!(
                "run {run} of policy `{name}` failed: {message}; this is a bug, please report it with the run's log"
            );
        }
    };
    let notification = control
        .run()
        .and_then(|run| notify_run(&l.config, l.catalog.as_ref(), job, run));
    log.close();
    let code = result?;
    if let Some(text) = notification
        && !cli.json
    {
        outln!("  notification: {text}")?;
    }
    Ok(code)
}

#[allow(clippy::too_many_arguments)]
fn run_export(
    cli: &Cli,
    l: &Loaded,
    policy: &custodian::policy::export::ExportPolicy,
    no_index: bool,
    index_bar: &indicatif::ProgressBar,
    bar: &indicatif::ProgressBar,
    control: &Control,
    log: &RunLog,
) -> Result<u8> {
    let name = &policy.name;
    let target = open_target(l, &policy.target)?;
    let keystore = load_keystore(l, policy)?;
    let _lock = l.catalog.lock_policy(name)?;
    let (index, export) = prepare_export(
        l,
        policy,
        target.as_ref(),
        keystore.as_ref(),
        no_index,
        index_bar,
        control,
    )?;
    let summary = match export.run(index, bar, control, log) {
        Err(custodian::policy::export::RunError::Manifest(e)) => {
            bar.finish_and_clear();
            errln!("error: {e}");
            errln!(
                "the run stays open: the next run of `{name}` resumes it, redoes what failed and writes its manifest"
            );
            return Ok(1);
        }
        result => result?,
    };
    bar.finish_and_clear();
    if cli.json {
        print_json(&summary)?;
    } else {
        print_summary(&summary)?;
        if let Some(e) = l
            .catalog
            .job_run(summary.run)?
            .and_then(|r| r.error_summary)
            .filter(|_| summary.status != RunStatus::Succeeded)
        {
            outln!("  {e}")?;
        }
    }
    Ok(summary.status.exit_code())
}

/// `run POLICY --node NAME`.
fn run_export_node(
    cli: &Cli,
    l: &Loaded,
    policy: &custodian::policy::export::ExportPolicy,
    options: &NodeOptions,
    bar: &indicatif::ProgressBar,
    control: &Control,
) -> Result<u8> {
    let Some(units) = l.catalog.work_units() else {
        anyhow::bail!(
            "--node needs a catalog the nodes share: set catalog.url = \"postgres://…\" (this one is {})",
            l.catalog.location()
        );
    };
    let target = open_target(l, &policy.target)?;
    let keystore = load_keystore(l, policy)?;
    let (_, export) = prepare_export(
        l,
        policy,
        target.as_ref(),
        keystore.as_ref(),
        true,
        &indicatif::ProgressBar::hidden(),
        control,
    )?;
    let report = cluster::run_node(&export, units, options, bar, control)?;
    bar.finish_and_clear();
    if cli.json {
        print_json(&report)?;
    } else {
        outln!(
            "node {} in run {} of policy {}{}: {} unit(s) ({} reclaimed from expired leases, {} lost), {} exported, {} failed, {} lease renewal(s)",
            report.node,
            report.run,
            policy.name,
            if report.began {
                " (began and split it)"
            } else {
                ""
            },
            report.units,
            report.reclaimed,
            report.lost,
            report.exported,
            report.failed,
            report.renewals
        )?;
        if let Some(why) = &report.stopped {
            outln!("  {why}; running this command again rejoins the run")?;
        }
        if let Some(summary) = &report.finished {
            print_summary(summary)?;
            for n in &report.per_node {
                outln!(
                    "  node {}: {} unit(s), {} reclaimed, {} exported, {} failed, {}",
                    n.node,
                    n.units,
                    n.reclaimed,
                    n.exported,
                    n.failed,
                    human_bytes(n.bytes)
                )?;
            }
        }
    }
    Ok(match &report.finished {
        Some(s) => s.status.exit_code(),
        None => u8::from(report.failed > 0 || report.stopped.is_some()),
    })
}

#[allow(clippy::too_many_arguments)]
fn run_confidential(
    cli: &Cli,
    l: &Loaded,
    policy: &custodian::policy::confidential::ConfidentialPolicy,
    no_index: bool,
    index_bar: &indicatif::ProgressBar,
    bar: &indicatif::ProgressBar,
    control: &Control,
    log: &RunLog,
) -> Result<u8> {
    let _lock = l.catalog.lock_policy(&policy.name)?;
    let index = if no_index {
        None
    } else {
        Some(run_index(l, index_bar, control)?)
    };
    let filter = Filter::resolve(&policy.criteria, Utc::now(), policy.job.timezone);
    let summary = confidential::run(
        policy,
        l.catalog.as_ref(),
        &filter,
        index,
        bar,
        control,
        log,
    )?;
    bar.finish_and_clear();
    if cli.json {
        print_json(&summary)?;
    } else {
        print_flag_summary(&summary)?;
    }
    Ok(summary.status.exit_code())
}

/// `custodian plan POLICY` for a confidential-flag policy: how many conversations it matches
/// and how many of them it would change.
pub fn plan_confidential(
    cli: &Cli,
    l: &Loaded,
    policy: &custodian::policy::confidential::ConfidentialPolicy,
    no_index: bool,
) -> Result<u8> {
    if !no_index {
        run_index(l, &progress_bar(cli, "index"), &Control::default())?;
    }
    let now = Utc::now();
    let exclude = match policy.mode {
        custodian::catalog::Mode::Incremental => {
            custodian::catalog::Exclude::ExportedBy(policy.name.clone())
        }
        custodian::catalog::Mode::Full => custodian::catalog::Exclude::Nothing,
    };
    let matches = l.catalog.count_selection(
        &Filter::resolve(&policy.criteria, now, policy.job.timezone),
        &exclude,
    )?;
    let mut differing = policy.criteria.clone();
    differing.confidential = Some(!policy.flag.value());
    let changes = l.catalog.count_selection(
        &Filter::resolve(&differing, now, policy.job.timezone),
        &exclude,
    )?;
    if cli.json {
        print_json(&serde_json::json!({
            "policy": policy.name, "mode": policy.mode, "flag": policy.flag,
            "conversations": matches, "changes": changes,
        }))?;
    } else {
        outln!(
            "plan for {} ({}): {matches} conversation(s) match, {changes} of them would have their confidential flag {}",
            policy.name,
            policy.mode.as_str(),
            if policy.flag.value() {
                "set"
            } else {
                "cleared"
            }
        )?;
    }
    Ok(0)
}

fn print_flag_summary(s: &FlagSummary) -> Result<()> {
    if let Some(index) = &s.index {
        print_index(index)?;
    }
    outln!(
        "{}, {} the confidential flag: {}",
        run_heading(s.run, &s.policy, s.mode, s.resumed),
        match s.flag {
            confidential::FlagAction::Set => "set",
            confidential::FlagAction::Clear => "clear",
        },
        s.status.as_str()
    )?;
    outln!(
        "  {} selected, {} processed, {} changed, {} failed in {:.2}s ({:.0} conversations/s)",
        s.counters.selected,
        s.processed,
        s.counters.flagged,
        s.counters.failed,
        s.seconds,
        s.processed as f64 / s.seconds.max(1e-9)
    )?;
    if let Some(e) = &s.error_summary {
        outln!("  {e}")?;
    }
    Ok(())
}

/// A row of `jobs list`.
pub fn print_run_line(r: &JobRun) -> Result<()> {
    outln!(
        "{:>6}  {:<20} {:<11} {:<24} {}  {:>6} exported {:>6} flagged {:>6} deleted {:>5} failed  {}",
        r.id,
        r.policy,
        r.mode.as_str(),
        r.status.as_str(),
        r.started_at.format("%Y-%m-%d %H:%M:%S"),
        r.counters.exported,
        r.counters.flagged,
        r.counters.deleted,
        r.counters.failed,
        human_bytes(r.counters.bytes)
    )?;
    Ok(())
}
