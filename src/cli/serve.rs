//! `custodian serve`: its arguments; what its runs write to stderr is passed on, each line
//! marked with its policy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use custodian::app::serve::{ServeObserver, ServeOptions};
use custodian::service;
use custodian::service::web::{TlsFiles, TrustedHeader, WebOptions};

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
    /// Serve the web portal on this address (such as 127.0.0.1:8080, or [::1]:8080; port 0
    /// picks a free one, logged at start).
    #[arg(long, value_name = "ADDR", help_heading = "Web portal")]
    listen: Option<SocketAddr>,
    /// The portal's TLS certificate chain (PEM); with --tls-key.
    #[arg(
        long,
        requires = "tls_key",
        requires = "listen",
        help_heading = "Web portal"
    )]
    tls_cert: Option<PathBuf>,
    /// The portal's TLS private key (PEM); with --tls-cert.
    #[arg(long, requires = "tls_cert", help_heading = "Web portal")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an address that is not loopback (passwords and cookies cross the
    /// network in clear: only behind a TLS-terminating proxy on a trusted network).
    #[arg(
        long,
        requires = "listen",
        conflicts_with = "tls_cert",
        help_heading = "Web portal"
    )]
    insecure_http: bool,
    /// Single sign-on: believe this request header as the user's name when it comes from a
    /// trusted proxy (docs/operations.md, "Behind a single sign-on proxy").
    #[arg(
        long,
        value_name = "NAME",
        requires = "listen",
        help_heading = "Web portal"
    )]
    trusted_header: Option<axum::http::HeaderName>,
    /// An address --trusted-header is believed from (repeatable; loopback when none is given).
    #[arg(
        long = "trusted-proxy",
        value_name = "IP",
        requires = "trusted_header",
        help_heading = "Web portal"
    )]
    trusted_proxies: Vec<IpAddr>,
}

impl ServeArgs {
    /// The portal's options, when --listen asks for it.
    fn web(&self) -> Option<WebOptions> {
        let listen = self.listen?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        let trusted_header = self.trusted_header.clone().map(|name| TrustedHeader {
            name,
            proxies: if self.trusted_proxies.is_empty() {
                vec![
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                ]
            } else {
                self.trusted_proxies.clone()
            },
        });
        Some(WebOptions {
            listen,
            tls,
            insecure_http: self.insecure_http,
            trusted_header,
        })
    }
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
    service::serve(&cli.config, &options, args.web().as_ref(), &RunOutput)?;
    Ok(0)
}
