//! `custodian serve`'s boundaries, the one place permissions are enforced across a process
//! boundary: the management socket, whose peers the kernel names, and the web portal, JSON API
//! and metrics. Each request runs an `app` command acting as the user it authenticated
//! (`app::Acting::As`), so every path applies the same roles file.

pub mod api;
pub mod metrics;
pub mod socket;
pub mod web;

use std::path::Path;

use crate::app::serve::{ServeError, ServeObserver, ServeOptions, Supervisor};
use crate::app::{Loaded, SetupError};

/// Why the service could not start, or its portal failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Socket(#[from] socket::ListenError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Web(#[from] web::WebError),
    #[error("the web portal stopped with an error: {0}")]
    WebStopped(std::io::Error),
}

/// Serves the config at `config` until SIGTERM or SIGINT: the scheduler, and the boundaries the
/// config and the options ask for (the web portal when `web` is given). A portal that cannot
/// listen is an error before the scheduler starts; stopping the scheduler stops the portal.
pub fn serve(
    config: &Path,
    options: &ServeOptions,
    web: Option<&web::WebOptions>,
    observer: &'static dyn ServeObserver,
) -> Result<(), ServiceError> {
    if let Some(w) = web {
        w.validate()?;
    }
    let supervisor = Supervisor::start(config, options, observer)?;
    let portal = match web {
        Some(w) => {
            let portal = web::start(
                Loaded::load(config)?,
                w,
                options.status.clone(),
                supervisor.runner(),
            )?;
            tracing::info!("web portal listening on {}", portal.url());
            Some(portal)
        }
        None => None,
    };
    let _socket = match &supervisor.config().serve.socket {
        Some(s) => Some(socket::listen(
            s,
            &supervisor.config().file,
            supervisor.runner(),
        )?),
        None => None,
    };
    let served = supervisor.run();
    if let Some(portal) = portal {
        portal.stop().map_err(ServiceError::WebStopped)?;
    }
    Ok(served?)
}
