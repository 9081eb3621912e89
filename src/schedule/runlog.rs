//! The detailed log file of a run: `<log_dir>/<policy>-<run>.log`, written by a tracing layer
//! that is silent until a run opens its file. The process makes one [`RunLog`] with its tracing
//! subscriber and hands it to what starts runs; one process runs one policy at a time
//! (`custodian run`, or one child of `custodian serve`), so one file is open at a time.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterFn, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;

use crate::catalog::{Catalog, RunId};
use crate::confined::PRIVATE_FILE_MODE;

/// Mode of a missing log directory: the logs name conversations and participants.
const LOG_DIR_MODE: u32 = 0o700;

/// The run log of the process: what its tracing layer ([`RunLog::layer`]) writes through.
/// Clones share the open file.
#[derive(Clone, Debug, Default)]
pub struct RunLog(Arc<Open>);

#[derive(Debug, Default)]
struct Open {
    /// A file is open: the layer passes events on (checked before any formatting).
    open: AtomicBool,
    file: Mutex<Option<File>>,
}

impl Open {
    fn file(&self) -> std::sync::MutexGuard<'_, Option<File>> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RunLog {
    /// Opens (appending: a resumed run continues its file) the log of `run`, readable by the
    /// owner alone, and records its path in the run's history row. A log that cannot be
    /// opened is reported and the run goes on.
    pub fn open(
        &self,
        dir: &Path,
        catalog: &dyn Catalog,
        policy: &str,
        run: RunId,
    ) -> Option<PathBuf> {
        let path = dir.join(format!("{policy}-{run}.log"));
        match open_private(dir, &path) {
            Ok(file) => {
                *self.0.file() = Some(file);
                self.0.open.store(true, Ordering::SeqCst);
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
    pub fn close(&self) {
        self.0.open.store(false, Ordering::SeqCst);
        if let Some(mut f) = self.0.file().take() {
            let _ = f.flush();
        }
    }

    /// The tracing layer that writes info and above to the open log (and nothing when none
    /// is).
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'l> tracing_subscriber::registry::LookupSpan<'l>,
    {
        let open = self.0.clone();
        tracing_subscriber::fmt::layer()
            .with_writer(self.clone())
            .with_ansi(false)
            .fmt_fields(crate::display::EscapedFields)
            // A log file that cannot be written is not worth a message on a stderr that may be
            // closed too: printing that would panic the run.
            .log_internal_errors(false)
            .with_filter(LevelFilter::INFO)
            .with_filter(FilterFn::new(move |_| open.open.load(Ordering::Relaxed)))
    }
}

/// Opens `path` for appending, creating it (and `dir`, 0700) when missing. The file gets mode
/// 0600 on its handle before anything is written, whatever the umask, and a log a former
/// version left readable by others is narrowed too; a link in its place is refused rather
/// than followed.
fn open_private(dir: &Path, path: &Path) -> std::io::Result<File> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(LOG_DIR_MODE)
        .create(dir)?;
    let file = File::options()
        .create(true)
        .append(true)
        .mode(PRIVATE_FILE_MODE)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
    Ok(file)
}

/// Writes to the open log, if any.
pub struct LogWriter<'a>(&'a Open);

impl Write for LogWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.file().as_mut() {
            Some(f) => f.write_all(buf).map(|()| buf.len()),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.0.file().as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for RunLog {
    type Writer = LogWriter<'a>;

    fn make_writer(&'a self) -> LogWriter<'a> {
        LogWriter(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confined::mode_of;

    #[test]
    fn run_logs_and_their_directory_are_private() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("logs");
        let path = dir.join("export-1.log");
        open_private(&dir, &path).unwrap();
        assert_eq!(mode_of(&dir), 0o700);
        assert_eq!(mode_of(&path), 0o600);

        let old = dir.join("export-2.log");
        std::fs::write(&old, b"earlier\n").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        open_private(&dir, &old)
            .unwrap()
            .write_all(b"resumed\n")
            .unwrap();
        assert_eq!(mode_of(&old), 0o600);
        assert_eq!(std::fs::read(&old).unwrap(), b"earlier\nresumed\n");
    }

    #[test]
    fn a_run_log_holds_what_is_traced_while_it_is_open_and_nothing_of_another_log() {
        use crate::catalog::Mode;
        use crate::catalog::sqlite::SqliteCatalog;
        use tracing_subscriber::prelude::*;
        let t = tempfile::tempdir().unwrap();
        let catalog = SqliteCatalog::open(&t.path().join("c.db")).unwrap();
        let run = catalog.begin_run("p", Mode::Full, "t").unwrap();
        let (log, other) = (RunLog::default(), RunLog::default());
        let traced = tracing_subscriber::registry()
            .with(log.layer())
            .with(other.layer());
        let path = tracing::subscriber::with_default(traced, || {
            tracing::info!("before");
            let path = log
                .open(&t.path().join("logs"), &catalog, "p", run)
                .unwrap();
            tracing::info!("during");
            tracing::debug!("too fine");
            log.close();
            tracing::info!("after");
            path
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("run log opened") && text.contains("during"),
            "{text}"
        );
        for absent in ["before", "too fine", "after"] {
            assert!(!text.contains(absent), "{text}");
        }
        assert_eq!(
            catalog.job_run(run).unwrap().unwrap().log_path.as_deref(),
            Some(path.to_str().unwrap())
        );
        assert_eq!(std::fs::read_dir(t.path().join("logs")).unwrap().count(), 1);
    }

    #[test]
    fn a_link_in_place_of_a_run_log_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("logs");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(t.path().join("victim"), b"keep").unwrap();
        let path = dir.join("export-1.log");
        std::os::unix::fs::symlink(t.path().join("victim"), &path).unwrap();
        let before = mode_of(&t.path().join("victim"));
        assert!(open_private(&dir, &path).is_err());
        assert_eq!(std::fs::read(t.path().join("victim")).unwrap(), b"keep");
        assert_eq!(mode_of(&t.path().join("victim")), before);
    }
}
