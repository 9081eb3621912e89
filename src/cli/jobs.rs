//! `custodian jobs`, `verify RUN` and `schedules`: the job history, a run checked against its
//! target, and when each job is next due.

use anyhow::Result;
use chrono::Utc;
use clap::Subcommand;
use serde::Serialize;

use custodian::app::Loaded;
use custodian::app::jobs;
use custodian::catalog::{FailedItem, JobRun, RunId};
use custodian::config::Config;

use super::args::Cli;
use super::out::{Bar, human_bytes, outln, print_json};

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Recent runs, newest first.
    #[command(after_help = "Examples:
  custodian jobs list
  custodian jobs list --policy demo-export --limit 5")]
    List {
        #[arg(long)]
        policy: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One run with its failed items.
    #[command(after_help = "Examples:
  custodian jobs show 1
  custodian --json jobs show 1")]
    Show { run: i64 },
}

/// `custodian jobs …`.
pub fn jobs(cli: &Cli, command: &JobsCommand) -> Result<u8> {
    let l = Loaded::load(&cli.config)?;
    match command {
        JobsCommand::List { policy, limit } => {
            let runs = jobs::list(&l, policy.as_deref(), *limit)?;
            if cli.json {
                print_json(&runs)?;
            } else {
                for r in &runs {
                    print_run_line(r)?;
                }
            }
        }
        JobsCommand::Show { run } => {
            let (r, failures) = jobs::show(&l, RunId(*run))?;
            if cli.json {
                #[derive(Serialize)]
                struct Shown<'a> {
                    #[serde(flatten)]
                    run: &'a JobRun,
                    failures: &'a [FailedItem],
                }
                print_json(&Shown {
                    run: &r,
                    failures: &failures,
                })?;
            } else {
                outln!("run {} of policy {} ({})", r.id, r.policy, r.mode.as_str())?;
                outln!("  status:   {}", r.status.as_str())?;
                outln!("  target:   {}", r.target)?;
                outln!("  started:  {}", r.started_at.to_rfc3339())?;
                if let Some(f) = r.finished_at {
                    outln!("  finished: {}", f.to_rfc3339())?;
                }
                if r.resumed > 0 {
                    outln!("  resumed:  {} time(s) after an interruption", r.resumed)?;
                }
                let c = &r.counters;
                outln!(
                    "  counters: {} selected, {} exported, {} flagged, {} deleted, {} failed, {} objects, {}, {} index errors",
                    c.selected,
                    c.exported,
                    c.flagged,
                    c.deleted,
                    c.failed,
                    c.objects,
                    human_bytes(c.bytes),
                    c.index_errors
                )?;
                if let Some(m) = &r.manifest_key {
                    outln!("  manifest: {m}")?;
                }
                if let Some(e) = &r.error_summary {
                    outln!("  errors:   {e}")?;
                }
                if let Some(h) = &r.held_back {
                    outln!("  held back: {h}")?;
                }
                if let Some(log) = &r.log_path {
                    outln!("  log:      {log}")?;
                }
                if let Some(n) = &r.notification {
                    outln!("  notified: {n}")?;
                }
                for f in &failures {
                    outln!("  failed:   {}: {}", f.subject, f.error)?;
                }
            }
        }
    }
    Ok(0)
}

/// A row of `jobs list`.
fn print_run_line(r: &JobRun) -> Result<()> {
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

/// `custodian schedules`.
pub fn schedules(cli: &Cli) -> Result<u8> {
    #[derive(Serialize)]
    struct Row<'a> {
        policy: &'a str,
        enabled: bool,
        schedule: String,
        timezone: String,
        next_due: Option<chrono::DateTime<Utc>>,
        #[serde(skip)]
        tz: chrono_tz::Tz,
    }
    let config = Config::load(&cli.config)?;
    let rows: Vec<Row<'_>> = jobs::schedules(&config, Utc::now())
        .into_iter()
        .map(|s| Row {
            policy: s.policy,
            enabled: s.enabled,
            schedule: s.job.schedule.to_string(),
            timezone: s.job.timezone.name().to_owned(),
            tz: s.job.timezone,
            next_due: s.next_due,
        })
        .collect();
    if cli.json {
        print_json(&rows)?;
        return Ok(0);
    }
    outln!(
        "{:<24} {:<8} {:<32} {:<20} NEXT DUE",
        "POLICY",
        "ENABLED",
        "SCHEDULE",
        "TIMEZONE"
    )?;
    for r in &rows {
        outln!(
            "{:<24} {:<8} {:<32} {:<20} {}",
            r.policy,
            if r.enabled { "yes" } else { "no" },
            r.schedule,
            r.timezone,
            r.next_due
                .map_or("-".into(), |t| t.with_timezone(&r.tz).to_rfc3339())
        )?;
    }
    Ok(0)
}

/// `custodian verify RUN`.
pub fn verify(cli: &Cli, run: RunId) -> Result<u8> {
    let l = Loaded::load(&cli.config)?;
    let jobs::Verified {
        manifest: key,
        report,
    } = jobs::verify(&l, run, &Bar::new(cli.json))?;
    if cli.json {
        print_json(&report)?;
    } else {
        outln!(
            "verify run {run}: {} objects, {} checked against {key}: {}",
            report.objects,
            human_bytes(report.bytes),
            if report.mismatches.is_empty() {
                "all match".to_string()
            } else {
                format!("{} mismatched", report.mismatches.len())
            }
        )?;
        for m in &report.mismatches {
            outln!("  {}: {}", m.key, m.problem)?;
        }
    }
    Ok(u8::from(!report.mismatches.is_empty()))
}
