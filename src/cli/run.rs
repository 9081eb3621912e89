//! `custodian index`, `run POLICY` and `plan POLICY` (not `lifecycle`): their arguments, and
//! their reports as text or `--json`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;

use custodian::app::Loaded;
use custodian::app::control::{Controlled, RunObserver, Watchers};
use custodian::app::plan::{self, Plan};
use custodian::app::run::{self as app_run, Outcome};
use custodian::app::serve::Started;
use custodian::catalog::{CatalogError, Mode, RunId};
use custodian::cluster::{NodeOptions, NodeReport};
use custodian::config::Config;
use custodian::policy::confidential::{FlagAction, FlagSummary};
use custodian::policy::export::{PlannedConversation, RunSummary};
use custodian::policy::index::IndexReport;
use custodian::schedule::runlog::RunLog;

use super::args::Cli;
use super::out::{self, Bar, errln, human_bytes, outln, print_json};
use super::remote;

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

impl ClusterArgs {
    /// Whether the run takes part as a node.
    pub fn is_node(&self) -> bool {
        self.node.is_some()
    }
}

/// Run control's messages, on stderr.
pub struct RunMessages;

impl RunObserver for RunMessages {
    fn overdue(&self, policy: &str, message: &str) {
        errln!("error: policy `{policy}`: {message}");
    }
    fn unrecorded(&self, run: RunId, error: &CatalogError) {
        errln!("error: cannot record the end of run {run}: {error}");
    }
}

/// Prints the notification a controlled run's outcome sent, after its report.
pub fn print_notification<T>(cli: &Cli, done: &Controlled<T>) -> Result<()> {
    if let Some(text) = &done.notification
        && !cli.json
    {
        outln!("  notification: {text}")?;
    }
    Ok(())
}

/// The config and catalog for a plan, which writes the catalog when it indexes first.
pub fn load_to_plan(cli: &Cli, no_index: bool) -> Result<Loaded> {
    Ok(if no_index {
        Loaded::load(&cli.config)?
    } else {
        Loaded::load_to_write(&cli.config)?
    })
}

/// The service's socket, when the config names one: `run POLICY` is asked of it.
pub fn service(cli: &Cli) -> Result<Option<PathBuf>> {
    Ok(Config::load(&cli.config)?.serve.socket.map(|s| s.path))
}

/// `custodian run POLICY` at the service listening on `socket`, which starts the run as it
/// starts scheduled ones; says which process runs it and how to follow it. `unsent` are the
/// flags given, which a run at the service does not take.
pub fn at_service(cli: &Cli, socket: &Path, policy: &str, unsent: &[(&str, bool)]) -> Result<u8> {
    if let Some((flag, _)) = unsent.iter().find(|(_, given)| *given) {
        bail!(
            "{flag} is not sent to the service at {}: its runs index first and take no --force or --node; as the catalog's owner, run it in this process: `custodian run {policy} {flag} --in-process`",
            socket.display()
        );
    }
    let started = remote::run(socket, policy)?;
    if cli.json {
        print_json(&started)?;
        return Ok(0);
    }
    match &started {
        Started::Running {
            policy,
            process,
            at,
        } => outln!(
            "run of `{policy}` started by the service at {} (process {process}); follow it with `custodian jobs list --policy {policy}`",
            at.to_rfc3339()
        )?,
        Started::Queued { policy } => outln!(
            "run of `{policy}` waits for a free slot at the service (serve --max-concurrent) and starts when a run ends; follow it with `custodian jobs list --policy {policy}`"
        )?,
    }
    Ok(0)
}

/// `custodian index`.
pub fn index(cli: &Cli) -> Result<u8> {
    let l = Loaded::load_to_write(&cli.config)?;
    let report = app_run::index(&l, &Bar::new(cli.json))?;
    if cli.json {
        print_json(&report)?;
    } else {
        print_index(&report)?;
    }
    Ok(u8::from(!report.failures.is_empty() || report.stopped))
}

/// `custodian run POLICY` (not `lifecycle`).
pub fn run(
    cli: &Cli,
    name: &str,
    no_index: bool,
    cluster: &ClusterArgs,
    log: &RunLog,
) -> Result<u8> {
    let l = Loaded::load_to_write(&cli.config)?;
    let node = cluster.node.as_ref().map(|node| NodeOptions {
        node: node.clone(),
        unit_size: cluster.unit_size as usize,
        lease: cluster.lease,
        catalog_patience: cluster.catalog_patience,
    });
    let (index, work) = (Bar::new(cli.json), Bar::new(cli.json));
    let watchers = Watchers {
        index: &index,
        work: &work,
        run: &RunMessages,
        log,
    };
    let done = app_run::run(&l, name, no_index, node, watchers)?;
    let code = match &done.outcome {
        Outcome::Exported {
            summary,
            error_summary,
        } => {
            if cli.json {
                print_json(summary)?;
            } else {
                print_summary(summary)?;
                if let Some(e) = error_summary {
                    outln!("  {e}")?;
                }
            }
            summary.status.exit_code()
        }
        Outcome::ManifestFailed { policy, error } => {
            errln!("error: {error}");
            errln!(
                "the run stays open: the next run of `{policy}` resumes it, redoes what failed and writes its manifest"
            );
            1
        }
        Outcome::Node { policy, report } => {
            if cli.json {
                print_json(report)?;
            } else {
                print_node(policy, report)?;
            }
            match &report.finished {
                Some(s) => s.status.exit_code(),
                None => u8::from(report.failed > 0 || report.stopped.is_some()),
            }
        }
        Outcome::Flagged(summary) => {
            if cli.json {
                print_json(summary)?;
            } else {
                print_flag_summary(summary)?;
            }
            summary.status.exit_code()
        }
    };
    print_notification(cli, &done)?;
    Ok(code)
}

pub fn print_index(r: &IndexReport) -> Result<()> {
    outln!(
        "index: {} conversations seen, {} indexed, {} unchanged, {} removed, {} failed",
        r.seen,
        r.indexed,
        r.unchanged,
        r.removed,
        r.failures.len()
    )?;
    for f in &r.failures {
        outln!("  failed: {f}")?;
    }
    if r.stopped {
        outln!(
            "index: stopped before it saw every conversation; what it found is committed, and the next index goes on from there"
        )?;
    }
    if r.legal_hold_statuses_set > 0 {
        outln!(
            "index: set the legal-hold status of {} locked object(s) as their recorder's flag now says",
            r.legal_hold_statuses_set
        )?;
    }
    for left in &r.legal_hold_syncs_left {
        outln!("  legal-hold status not set: {left}; `custodian hold sync` tries again")?;
    }
    Ok(())
}

/// "run R of policy P (mode[, resumed …])", the start of every run summary.
pub fn run_heading(run: RunId, policy: &str, mode: Mode, resumed: bool) -> String {
    format!(
        "run {run} of policy {policy} ({}{})",
        mode.as_str(),
        if resumed {
            ", resumed an interrupted run"
        } else {
            ""
        }
    )
}

fn print_summary(s: &RunSummary) -> Result<()> {
    if let Some(index) = &s.index {
        print_index(index)?;
    }
    let c = &s.counters;
    outln!(
        "{} to target {}: {}",
        run_heading(s.run, &s.policy, s.mode, s.resumed),
        s.target,
        s.status.as_str()
    )?;
    outln!(
        "  {} selected, {} exported, {} failed; {} objects, {} in {:.2}s ({}/s)",
        c.selected,
        c.exported,
        c.failed,
        c.objects,
        human_bytes(c.bytes),
        s.seconds,
        human_bytes((c.bytes as f64 / s.seconds.max(1e-9)) as u64)
    )?;
    outln!("  manifest: {}", s.manifest)?;
    for note in &s.media {
        outln!("  media: {note}")?;
    }
    for f in &s.failures {
        outln!("  failed: {}: {}", f.subject, f.error)?;
    }
    Ok(())
}

fn print_node(policy: &str, report: &NodeReport) -> Result<()> {
    outln!(
        "node {} in run {} of policy {}{}: {} unit(s) ({} reclaimed from expired leases, {} lost), {} exported, {} failed, {} lease renewal(s)",
        report.node,
        report.run,
        policy,
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
    Ok(())
}

fn print_flag_summary(s: &FlagSummary) -> Result<()> {
    if let Some(index) = &s.index {
        print_index(index)?;
    }
    outln!(
        "{}, {} the confidential flag: {}",
        run_heading(s.run, &s.policy, s.mode, s.resumed),
        match s.flag {
            FlagAction::Set => "set",
            FlagAction::Clear => "clear",
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

/// An export policy's plan in `--json`.
#[derive(Serialize)]
struct PlanReport<'a> {
    policy: &'a str,
    mode: Mode,
    target: &'a str,
    conversations: u64,
    objects: u64,
    bytes: u64,
    plan: Vec<PlannedConversation>,
    errors: &'a [String],
}

/// `custodian plan POLICY` (not `lifecycle`): an export policy's objects, a line each, then
/// its totals; or how many conversations a confidential-flag policy would change.
pub fn plan(cli: &Cli, name: &str, no_index: bool) -> Result<u8> {
    let l = load_to_plan(cli, no_index)?;
    let mut planned = Vec::new();
    // A closed stdout stops the listing; the error is returned once the walk has stopped.
    let mut printed = Ok(());
    let made = plan::plan(&l, name, no_index, &Bar::new(cli.json), |p| {
        if cli.json {
            planned.push(p);
            return ControlFlow::Continue(());
        }
        let object = format!("{}/{}", p.tenant, p.id);
        for o in &p.objects {
            printed = out::fields(&[&object, &o.key, &human_bytes(o.size)]);
            if printed.is_err() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    printed?;
    match made {
        Plan::Export(p) => {
            if cli.json {
                print_json(&PlanReport {
                    policy: &p.policy,
                    mode: p.mode,
                    target: &p.target,
                    conversations: p.conversations,
                    objects: p.objects,
                    bytes: p.bytes,
                    plan: planned,
                    errors: &p.errors,
                })?;
            } else {
                outln!(
                    "plan for {} ({}) to target {}: {} conversations, {} objects, {} (metadata files not counted)",
                    p.policy,
                    p.mode.as_str(),
                    p.target,
                    p.conversations,
                    p.objects,
                    human_bytes(p.bytes)
                )?;
                for e in &p.errors {
                    outln!("  error: {e}")?;
                }
            }
            Ok(u8::from(!p.errors.is_empty()))
        }
        Plan::Flags(p) => {
            if cli.json {
                print_json(&serde_json::json!({
                    "policy": p.policy, "mode": p.mode, "flag": p.flag,
                    "conversations": p.conversations, "changes": p.changes,
                }))?;
            } else {
                outln!(
                    "plan for {} ({}): {} conversation(s) match, {} of them would have their confidential flag {}",
                    p.policy,
                    p.mode.as_str(),
                    p.conversations,
                    p.changes,
                    if p.flag.value() { "set" } else { "cleared" }
                )?;
            }
            Ok(0)
        }
    }
}
