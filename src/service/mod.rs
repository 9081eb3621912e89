//! `custodian serve`'s boundaries, the one place permissions are enforced across a process
//! boundary: the management socket, whose peers the kernel names, and the web portal, JSON API
//! and metrics. Each request runs an `app` command acting as the user it authenticated
//! (`app::Acting::As`), so every path applies the same roles file.

pub mod metrics;

use std::path::Path;

use crate::app::serve::{self, ServeError, ServeObserver, ServeOptions};

/// Serves the config at `config` until SIGTERM or SIGINT: the scheduler, and the boundaries the
/// config and `options` ask for.
pub fn serve(
    config: &Path,
    options: &ServeOptions,
    observer: &'static dyn ServeObserver,
) -> Result<(), ServeError> {
    serve::serve(config, options, observer)
}
