//! The `custodian user …` commands: accounts of the web portal and JSON API, and their API
//! tokens. A password is prompted for twice on a terminal and read from stdin otherwise.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use custodian::app::Loaded;
use custodian::app::accounts;

use super::args::Cli;
use super::out::{outln, print_json};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add an account; its password is prompted for (twice) on a terminal, or read as the
    /// first line of stdin.
    #[command(after_help = "Examples:
  custodian user add alice --group compliance
  printf '%s\\n' \"$PASSWORD\" | custodian user add ci-reader")]
    Add {
        name: String,
        /// A group the account is in, for the roles file's [groups] (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Every account with its groups.
    #[command(after_help = "Examples:
  custodian user list
  custodian --json user list")]
    List,
    /// Remove an account, ending its sessions and revoking its API tokens.
    #[command(after_help = "Examples:
  custodian user remove alice")]
    Remove { name: String },
    /// Print a new API token of an account (shown once; only its SHA-256 is kept).
    #[command(after_help = "Examples:
  custodian user token ci-reader")]
    Token { name: String },
}

pub fn command(cli: &Cli, command: &UserCommand) -> Result<u8> {
    let l = Loaded::load(&cli.config)?;
    match command {
        UserCommand::Add { name, groups } => {
            let password = read_password(name)?;
            let a = accounts::add(&l, name, groups, &password)?;
            if cli.json {
                print_json(&serde_json::json!({"name": a.name, "groups": a.groups}))?;
            } else {
                outln!("added account `{}`", a.name)?;
            }
        }
        UserCommand::List => {
            let list = accounts::list(&l)?;
            if cli.json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|a| serde_json::json!({"name": a.name, "groups": a.groups, "created_at": a.created_at}))
                    .collect();
                print_json(&rows)?;
            } else if list.is_empty() {
                outln!("no accounts (add one with `custodian user add NAME`)")?;
            } else {
                outln!("{:<24} GROUPS", "ACCOUNT")?;
                for a in &list {
                    outln!("{:<24} {}", a.name, a.groups.join(", "))?;
                }
            }
        }
        UserCommand::Remove { name } => {
            accounts::remove(&l, name)?;
            if cli.json {
                print_json(&serde_json::json!({"removed": name}))?;
            } else {
                outln!("removed account `{name}` with its sessions and API tokens")?;
            }
        }
        UserCommand::Token { name } => {
            let token = accounts::token(&l, name)?;
            if cli.json {
                print_json(&serde_json::json!({"account": name, "token": token}))?;
            } else {
                outln!("{token}")?;
            }
        }
    }
    Ok(0)
}

/// The new account's password: prompted for twice on a terminal (the two must agree), else the
/// first line of stdin without its line ending.
fn read_password(name: &str) -> Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("password for `{name}`: "))
            .context("cannot read the password from the terminal")?;
        let again = rpassword::prompt_password("the same password again: ")
            .context("cannot read the password from the terminal")?;
        if first != again {
            bail!("the two passwords differ; nothing was added, run the command again");
        }
        return Ok(first);
    }
    first_line(std::io::stdin().lock()).context("cannot read the password from stdin")
}

/// The first line of `input` (read up to a little more than the longest password), without
/// `\n` or `\r\n`.
fn first_line(input: impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    input
        .take(accounts::MAX_PASSWORD as u64 + 2)
        .read_line(&mut line)?;
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    Ok(line)
}
