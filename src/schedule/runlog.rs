//! The detailed log file of a run: `<log_dir>/<policy>-<run>.log`, written by a tracing layer
//! that is silent until a run opens its file. One process runs one policy at a time (`custodian
//! run`, or one child of `custodian serve`), so the file is process-wide.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterFn, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;

use crate::catalog::{Catalog, RunId};

static OPEN: AtomicBool = AtomicBool::new(false);
static FILE: Mutex<Option<File>> = Mutex::new(None);

/// Opens (appending: a resumed run continues its file) the log of `run` and records its path
/// in the run's history row. A log that cannot be opened is reported and the run goes on.
pub fn open(dir: &Path, catalog: &dyn Catalog, policy: &str, run: RunId) -> Option<PathBuf> {
    let path = dir.join(format!("{policy}-{run}.log"));
    let opened = std::fs::create_dir_all(dir)
        .and_then(|()| File::options().create(true).append(true).open(&path));
    match opened {
        Ok(file) => {
            *FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
            OPEN.store(true, Ordering::SeqCst);
            if let Err(e) = catalog.set_run_log(run, &path.display().to_string()) {
                tracing::warn!("cannot record the log file of run {run}: {e}");
            }
            tracing::info!(policy, run = run.0, "run log opened");
            Some(path)
        }
        Err(e) => {
            tracing::warn!(
                "cannot open the run log {}: {e}; the run goes on without it (check the policy's log_dir)",
                path.display()
            );
            None
        }
    }
}

/// Flushes and closes the open log.
pub fn close() {
    OPEN.store(false, Ordering::SeqCst);
    if let Some(mut f) = FILE.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = f.flush();
    }
}

/// Writes to the open log, if any.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(f) => f.write_all(buf).map(|()| buf.len()),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

/// The tracing layer that writes info and above to the open run log (and nothing when none is).
pub fn layer<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'l> tracing_subscriber::registry::LookupSpan<'l>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(LogWriter)
        .with_ansi(false)
        .fmt_fields(crate::display::EscapedFields)
        // A log file that cannot be written is not worth a message on a stderr that may be
        // closed too: printing that would panic the run.
        .log_internal_errors(false)
        .with_filter(LevelFilter::INFO)
        .with_filter(FilterFn::new(|_| OPEN.load(Ordering::Relaxed)))
}
