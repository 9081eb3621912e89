//! Where a management command runs: at the service, through the socket the config's `[serve]`
//! table names, or in this process when it names none (docs/operations.md, "The service and
//! its socket"). Either way the outcome comes back as the same value, printed by the same code,
//! and a refusal as the same error text with the same exit code.

use std::path::Path;

use anyhow::{Result, anyhow};

use custodian::app::Loaded;
use custodian::app::manage::{self, Outcome, Request};
use custodian::app::serve::Started;
use custodian::config::Config;
use custodian::service::socket::{self, Response};

use super::args::Cli;

/// Does `request` at the service when the config names its socket, else here (a command that
/// writes refused a catalog its user does not own).
pub fn manage(cli: &Cli, request: Request) -> Result<Outcome> {
    let config = Config::load(&cli.config)?;
    if let Some(s) = &config.serve.socket {
        return match socket::send(&s.path, &socket::Request::Manage(request))? {
            Response::Done(outcome) => Ok(outcome),
            other => Err(unexpected(&s.path, other)),
        };
    }
    let l = if request.writes() {
        Loaded::open_to_write(config)?
    } else {
        Loaded::open(config)?
    };
    Ok(manage::execute(&l, &request)?)
}

/// Asks the service listening at `path` to run `policy` now.
pub fn run(path: &Path, policy: &str) -> Result<Started> {
    let request = socket::Request::Run {
        policy: policy.to_owned(),
    };
    match socket::send(path, &request)? {
        Response::Run(started) => Ok(started),
        other => Err(unexpected(path, other)),
    }
}

/// A refusal as the error the command line prints, or an answer to another question.
fn unexpected(path: &Path, response: Response) -> anyhow::Error {
    match response {
        Response::Refused { error } => anyhow!(error),
        _ => anyhow!(
            "the custodian service at {} answered another command than the one sent; is it the same version as this custodian?",
            path.display()
        ),
    }
}
