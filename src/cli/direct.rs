//! `custodian direct POLICY`: its arguments, each run as it ends, and what the session did
//! when it stops, with the latency from a conversation's completion to its export.

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use custodian::app::direct::{self, DirectObserver, DirectOptions};
use custodian::policy::export::RunSummary;
use custodian::schedule::runlog::RunLog;
use custodian::target::manifest::ManifestError;

use super::args::Cli;
use super::out::{errln, outln, print_json};

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

/// Prints what direct export says as it goes (runs on stdout, the rest on stderr), and keeps
/// the first failed write to stdout, which stops the session.
struct Printer {
    json: bool,
    failed: RefCell<Option<anyhow::Error>>,
}

impl Printer {
    fn run_lines(
        &self,
        run: &RunSummary,
        latency: Option<(f64, f64)>,
        stopped: Option<&str>,
    ) -> Result<()> {
        let latency = latency
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
        if let Some(why) = stopped {
            outln!("  {why}")?;
        }
        Ok(())
    }
}

impl DirectObserver for Printer {
    fn watching(&self, root: &Path, policy: &str, state: &Path) {
        if !self.json {
            errln!(
                "direct: watching {} for policy `{policy}` (state {}); Ctrl-C to stop",
                root.display(),
                state.display()
            );
        }
    }

    fn exported(
        &self,
        run: &RunSummary,
        latency: Option<(f64, f64)>,
        stopped: Option<&str>,
    ) -> ControlFlow<()> {
        if self.json {
            return ControlFlow::Continue(());
        }
        match self.run_lines(run, latency, stopped) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                *self.failed.borrow_mut() = Some(e);
                ControlFlow::Break(())
            }
        }
    }

    fn manifest_failed(&self, error: &ManifestError) {
        errln!("error: {error}");
        errln!("the run stays open: a later cycle resumes it");
    }
}

pub fn direct(cli: &Cli, args: &DirectArgs, log: &RunLog) -> Result<u8> {
    let printer = Printer {
        json: cli.json,
        failed: RefCell::new(None),
    };
    let options = DirectOptions {
        policy: &args.policy,
        interval: args.interval,
        patience: args.patience,
        once: args.once,
    };
    let summary = direct::direct(&cli.config, &options, &printer, log)?;
    if let Some(e) = printer.failed.into_inner() {
        return Err(e);
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
