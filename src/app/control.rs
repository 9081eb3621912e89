//! Run control around one run of a job (`custodian run`, each run `custodian serve` starts):
//! SIGTERM and SIGINT cancel it, the watchdog enforces its execution time limit and keep-alive,
//! a panic is caught and recorded as the run's failure, and its outcome is notified by email
//! when the job asks for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::Utc;

use super::{Loaded, SetupError};
use crate::catalog::{self, Catalog, CatalogError, RunId, RunStatus};
use crate::config::Config;
use crate::pipeline::control::{self, Control, Limits, Stop};
use crate::progress::Progress;
use crate::schedule::runlog::RunLog;
use crate::schedule::{JobSettings, notify};

/// A stopped run that has not wound down after this long (or its keep-alive, if shorter) is
/// recorded and its process ended.
const MAX_GRACE: Duration = Duration::from_secs(60);

/// Why a controlled run failed beyond its own errors.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// It panicked before its run began.
    #[error("policy `{policy}`: {message}")]
    PanickedEarly { policy: String, message: String },
    #[error(
        "run {run} of policy `{policy}` failed: {message}; this is a bug, please report it with the run's log"
    )]
    Panicked {
        run: RunId,
        policy: String,
        message: String,
    },
}

/// What run control has to tell the user while a run goes.
pub trait RunObserver: Send + Sync {
    /// A stopped run did not wind down within its grace period: said before its end is
    /// recorded and its process ended.
    fn overdue(&self, policy: &str, message: &str);
    /// The end of `run` could not be recorded.
    fn unrecorded(&self, run: RunId, error: &CatalogError);
}

/// Who watches a controlled run: its index pass, its work, run control itself, and the run's
/// log file.
#[derive(Clone, Copy)]
pub struct Watchers<'a> {
    pub index: &'a dyn Progress,
    pub work: &'a dyn Progress,
    pub run: &'static dyn RunObserver,
    pub log: &'a RunLog,
}

/// What a controlled run produced, and the notification its outcome sent.
pub struct Controlled<T> {
    pub outcome: T,
    pub notification: Option<String>,
}

/// SIGTERM and SIGINT stop `control`; `what` says what stops, and what becomes of the work.
pub fn cancel_on_signals(control: &Arc<Control>, what: &'static str) -> Result<(), SetupError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(SetupError::Signals)?;
    let control = control.clone();
    std::thread::Builder::new()
        .name("custodian-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if control.stop(Stop::Cancelled) {
                    tracing::warn!("signal {signal}: stopping {what}");
                }
            }
        })
        .map_err(SetupError::Signals)?;
    Ok(())
}

/// Forwards to a watcher and counts what was done: the watchdog's measure of progress.
struct Counted<'a> {
    inner: &'a dyn Progress,
    done: Arc<AtomicU64>,
}

impl Progress for Counted<'_> {
    fn set_length(&self, len: u64) {
        self.inner.set_length(len);
    }
    fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        self.inner.advance(n);
    }
    fn message(&self, text: &'static str) {
        self.inner.message(text);
    }
    fn finish(&self) {
        self.inner.finish();
    }
}

/// Runs `body`, one run of job `name` with settings `job`, under run control: SIGTERM and
/// SIGINT cancel it, the watchdog enforces its time limit and keep-alive (progress is what
/// `body` reports to the two watchers it is given), a panic is recorded as the run's failure,
/// and its outcome is notified.
pub fn controlled<T, E: From<ControlError>>(
    l: &Loaded,
    name: &str,
    job: &JobSettings,
    watchers: Watchers<'_>,
    body: impl FnOnce(&Control, [&dyn Progress; 2]) -> Result<T, E>,
) -> Result<Controlled<T>, E> {
    let control = Control::new();
    cancel_on_signals(&control, "the run; items in flight finish and are recorded")
        .map_err(ControlError::from)?;
    let first_panic = capture_panics();
    let limits = Limits {
        time_limit: job.time_limit,
        keep_alive: job.keep_alive,
        grace: job.keep_alive.min(MAX_GRACE),
    };
    let index = Counted {
        inner: watchers.index,
        done: Arc::default(),
    };
    let work = Counted {
        inner: watchers.work,
        done: Arc::default(),
    };
    let counted = [index.done.clone(), work.done.clone()];
    let headway = control.headway().clone();
    let config = l.config.clone();
    let overdue_control = control.clone();
    let overdue_log = watchers.log.clone();
    let policy_name = name.to_owned();
    let observer = watchers.run;
    let _watchdog = control::watch(
        control.clone(),
        limits,
        move || {
            counted
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<u64>()
                + headway.get()
        },
        move |why| {
            end_overdue(
                &config,
                &policy_name,
                &overdue_control,
                &overdue_log,
                why,
                observer,
            )
        },
    );
    let log = watchers.log;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        body(&control, [&index, &work])
    }));
    index.finish();
    work.finish();
    let result = match outcome {
        Ok(result) => result,
        Err(_) => {
            let message = format!(
                "the run panicked: {}",
                first_panic.get().map_or("no message", String::as_str)
            );
            let Some(run) = control.run() else {
                log.close();
                return Err(ControlError::PanickedEarly {
                    policy: name.to_owned(),
                    message,
                }
                .into());
            };
            let counters = l.catalog.run_counters(run).unwrap_or_default();
            l.catalog
                .finish_run(run, RunStatus::Failed, &counters, None, Some(&message))
                .map_err(ControlError::from)?;
            tracing::error!("run {run} of policy `{name}`: {message}");
            notify_run(&l.config, l.catalog.as_ref(), job, run);
            log.close();
            return Err(ControlError::Panicked {
                run,
                policy: name.to_owned(),
                message,
            }
            .into());
        }
    };
    let notification = control
        .run()
        .and_then(|run| notify_run(&l.config, l.catalog.as_ref(), job, run));
    log.close();
    Ok(Controlled {
        outcome: result?,
        notification,
    })
}

/// Keeps the first panic of the run with where it happened (a panic in a worker thread
/// reaches the run as "a scoped thread panicked", which says nothing), then lets the hook
/// before it report the panic as usual.
fn capture_panics() -> Arc<OnceLock<String>> {
    let first = Arc::new(OnceLock::new());
    let keep = first.clone();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let _ = keep.set(format!("{message}{at}"));
        default(info);
    }));
    first
}

/// Records a run that did not stop within its grace period, notifies, and ends the process.
fn end_overdue(
    config: &Config,
    policy: &str,
    control: &Control,
    log: &RunLog,
    why: Stop,
    observer: &dyn RunObserver,
) -> ! {
    let message = format!(
        "{}; the run did not wind down within its grace period and its process was ended",
        match config.job(policy) {
            Some(job) => why.describe(job.time_limit, job.keep_alive),
            None => format!("{why:?}"),
        }
    );
    observer.overdue(policy, &message);
    if let Some(run) = control.run() {
        match catalog::open(&config.catalog) {
            Ok(cat) => {
                let counters = cat.run_counters(run).unwrap_or_default();
                if let Err(e) = cat.finish_run(run, why.status(), &counters, None, Some(&message)) {
                    observer.unrecorded(run, &e);
                }
                if let Some(job) = config.job(policy) {
                    notify_run(config, cat.as_ref(), job, run);
                }
            }
            Err(e) => observer.unrecorded(run, &e),
        }
    }
    log.close();
    std::process::exit(1)
}

/// Sends the notification `run`'s outcome calls for and records what became of it; returns it.
pub fn notify_run(
    config: &Config,
    catalog: &dyn Catalog,
    job: &JobSettings,
    run: RunId,
) -> Option<String> {
    let (Some(n), Some(email)) = (&job.notify, &config.email) else {
        return None;
    };
    let (this, previous) = match catalog.job_run(run) {
        Ok(Some(r)) => {
            let previous = catalog
                .job_runs(Some(&r.policy), 50)
                .ok()
                .and_then(|runs| {
                    runs.into_iter()
                        .find(|p| p.id < run && p.status != RunStatus::Running)
                })
                .map(|p| p.status);
            (r, previous)
        }
        _ => return None,
    };
    if !n.wants(this.status, previous) {
        return None;
    }
    let text = match notify::send(email, &n.to, &this) {
        Ok(()) => format!(
            "sent to {} at {}",
            n.to.iter()
                .map(|m| m.email.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            Utc::now().to_rfc3339()
        ),
        Err(e) => {
            tracing::warn!("notification of run {run} not sent: {e}");
            format!("failed: {e}")
        }
    };
    if let Err(e) = catalog.set_run_notification(run, &text) {
        tracing::warn!("cannot record the notification of run {run}: {e}");
    }
    Some(text)
}
