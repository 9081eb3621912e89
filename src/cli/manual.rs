//! `custodian completions SHELL` and `custodian man`: shell completion scripts and man pages,
//! generated from the grammar in [`super::args`]. They read no config, so they work before
//! one exists.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use super::args::Cli;
use super::out;

/// `custodian completions SHELL`: the script on stdout.
pub fn completions(shell: Shell) -> Result<u8> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "custodian", &mut script);
    out::raw(&script)?;
    Ok(0)
}

/// `custodian man`: custodian(1) on stdout, or with `--dir DIR` one page per command written
/// into DIR, named after the command (`custodian-lifecycle-create.1`).
pub fn man(dir: Option<&Path>) -> Result<u8> {
    match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            out::raw(&page)?;
        }
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), dir))
            .with_context(|| format!("cannot write the man pages into {}", dir.display()))?,
    }
    Ok(0)
}
