//! `custodian serve`'s boundaries, the one place permissions are enforced across a process
//! boundary: the management socket, whose peers the kernel names, and the web portal, JSON API
//! and metrics. Each request runs an `app` command acting as the user it authenticated
//! (`app::Acting::As`), so every path applies the same roles file.

pub mod socket;

use std::path::Path;

use crate::app::serve::{ServeError, ServeObserver, ServeOptions, Supervisor};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Socket(#[from] socket::ListenError),
}

/// Serves the config at `config` until SIGTERM or SIGINT: the scheduler, and the boundaries the
/// config and `options` ask for.
pub fn serve(
    config: &Path,
    options: &ServeOptions,
    observer: &'static dyn ServeObserver,
) -> Result<(), ServiceError> {
    let supervisor = Supervisor::start(config, options, observer)?;
    let _socket = match &supervisor.config().serve.socket {
        Some(s) => Some(socket::listen(
            s,
            &supervisor.config().file,
            supervisor.runner(),
        )?),
        None => None,
    };
    Ok(supervisor.run()?)
}
