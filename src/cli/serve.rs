//! `custodian serve`: its arguments; what its runs write to stderr is passed on, each line
//! marked with its policy.

use std::time::Duration;

use anyhow::Result;

use custodian::app::serve::{ServeObserver, ServeOptions};
use custodian::service;

use super::args::Cli;
use super::out::errln;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Most runs going at once (a run of each policy at most).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    max_concurrent: u32,
    /// On SIGTERM or SIGINT, how long runs get to finish or cancel before they are killed.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
}

/// Passes on the runs' stderr.
struct RunOutput;

impl ServeObserver for RunOutput {
    fn said(&self, policy: &str, line: &str) {
        errln!("[{policy}] {line}");
    }
}

pub fn serve(cli: &Cli, args: &ServeArgs) -> Result<u8> {
    let options = ServeOptions {
        max_concurrent: args.max_concurrent as usize,
        shutdown_grace: args.shutdown_grace,
        status: Default::default(),
    };
    service::serve(&cli.config, &options, &RunOutput)?;
    Ok(0)
}
