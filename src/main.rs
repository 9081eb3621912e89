//! The `custodian` command line: turns arguments into a validated plan, runs it, prints a
//! summary (or `--json`), and exits 0 (all done), 1 (some items failed) or 2 (could not run).

use std::io::IsTerminal;
use std::process::ExitCode;

mod cli;

use anyhow::Result;
use clap::Parser;

use custodian::catalog::RunId;
use custodian::policy::lifecycle::LIFECYCLE_RUN;
use custodian::schedule::runlog::RunLog;

use cli::args::{Cli, Command};
use cli::out::{StdoutClosed, errln};

fn main() -> ExitCode {
    use tracing_subscriber::prelude::*;
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Serve { .. } => "warn,custodian=info,symphonia=error",
        _ => "warn,symphonia=error",
    };
    let run_log = RunLog::default();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .fmt_fields(custodian::display::EscapedFields)
                // A stderr closed early must not panic the run: tracing would report the
                // failed write with `eprintln!`.
                .log_internal_errors(false)
                .with_filter(
                    tracing_subscriber::EnvFilter::try_from_env("CUSTODIAN_LOG")
                        .unwrap_or_else(|_| default_filter.into()),
                ),
        )
        .with(run_log.layer())
        .init();
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    match dispatch(&cli, &run_log) {
        Ok(code) => ExitCode::from(code),
        // The reader of stdout went away once the work was done and recorded: end quietly.
        Err(e) if e.chain().any(|c| c.is::<StdoutClosed>()) => ExitCode::SUCCESS,
        Err(e) => {
            // Some causes (a TOML parse error) show the offending line on lines of their own.
            for (i, line) in format!("{e:#}").lines().enumerate() {
                if i == 0 {
                    errln!("error: {line}");
                } else {
                    errln!("{line}");
                }
            }
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: &Cli, run_log: &RunLog) -> Result<u8> {
    match &cli.command {
        Command::Index => cli::run::index(cli),
        Command::Run {
            policy,
            dry_run,
            no_index,
            force,
            cluster,
        } => match (policy.as_str(), dry_run) {
            (LIFECYCLE_RUN, true) => cli::lifecycle::plan(cli, *no_index),
            (LIFECYCLE_RUN, false) => cli::lifecycle::run(cli, *no_index, *force, run_log),
            (_, true) => cli::run::plan(cli, policy, *no_index),
            (_, false) => cli::run::run(cli, policy, *no_index, cluster, run_log),
        },
        Command::Plan { policy, no_index } if policy == LIFECYCLE_RUN => {
            cli::lifecycle::plan(cli, *no_index)
        }
        Command::Plan { policy, no_index } => cli::run::plan(cli, policy, *no_index),
        Command::Lifecycle { command } => cli::lifecycle::command(cli, command),
        Command::Hold { command } => cli::holds::command(cli, command),
        Command::User { command } => cli::users::command(cli, command),
        Command::Schedules => cli::jobs::schedules(cli),
        Command::Serve(args) => cli::serve::serve(cli, args),
        Command::Direct(args) => cli::direct::direct(cli, args, run_log),
        Command::Jobs { command } => cli::jobs::jobs(cli, command),
        Command::Audit { command } => cli::audit::audit(cli, command),
        Command::Verify { run } => cli::jobs::verify(cli, RunId(*run)),
        Command::Transcode(args) => cli::media::transcode(cli, args),
        Command::Stitch(args) => cli::media::stitch(cli, args),
        Command::Encrypt {
            keystore,
            key_id,
            chunk_size,
            input,
            output,
        } => cli::media::encrypt(cli, keystore, key_id, *chunk_size, input, output),
        Command::Decrypt {
            keystore,
            input,
            output,
        } => cli::media::decrypt(cli, keystore, input, output),
        Command::Completions { shell } => cli::manual::completions(*shell),
        Command::Man { dir } => cli::manual::man(dir.as_deref()),
    }
}
