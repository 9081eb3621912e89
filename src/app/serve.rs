//! `custodian serve`: runs every enabled policy on its schedule, each run in its own
//! `custodian run` process (so a panic, a crash or a stuck run takes down only that run), at
//! most one run per policy at a time and a given number in all. SIGHUP reloads the config (a
//! bad one is refused and the running one kept); SIGTERM or SIGINT stop the scheduler and give
//! the runs a grace period to finish or cancel cleanly. A run process that dies leaves its
//! history row to serve, which records its end.

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::access::{AccessError, authorize};
use super::control::notify_run;
use super::{Loaded, SetupError, with_sources};
use crate::catalog::{self, Catalog, CatalogError, Mode, RunId, RunStatus};
use crate::config::Config;
use crate::policy::Policy;
use crate::policy::lifecycle::{LIFECYCLE_RUN, LIFECYCLE_TARGET};
use crate::policy::roles::Permission;
use crate::schedule::serve::{Due, Scheduler};

/// Why serve could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("cannot resolve {path}")]
    Resolve {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find the custodian executable")]
    Executable(#[source] std::io::Error),
}

/// How serve runs its runs.
pub struct ServeOptions {
    /// Most runs going at once (a run of each policy at most).
    pub max_concurrent: usize,
    /// On SIGTERM or SIGINT, how long runs get to finish or cancel before they are killed.
    pub shutdown_grace: Duration,
    /// Where the scheduler tells how far behind it is, for the service's metrics.
    pub status: Arc<SchedulerStatus>,
}

/// What the scheduler last told of itself (docs/operations.md, "Metrics").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchedulerState {
    /// The earliest occurrence not yet started (waiting for a slot, or next due); once it is
    /// past, the scheduler is behind by the time since.
    pub earliest_pending: Option<DateTime<Utc>>,
    /// Occurrences skipped because the policy's previous run was still going, by policy.
    pub skipped: std::collections::BTreeMap<String, u64>,
    /// How late each policy's last run started after it was due, in seconds.
    pub start_latency: std::collections::BTreeMap<String, f64>,
}

impl SchedulerState {
    /// How far behind the scheduler is at `now`, in seconds: 0 unless an occurrence is past
    /// due and not started.
    pub fn lag_seconds(&self, now: DateTime<Utc>) -> f64 {
        self.earliest_pending.map_or(0.0, |t| {
            ((now - t).num_milliseconds().max(0)) as f64 / 1000.0
        })
    }
}

/// The scheduler's state, shared between serve's loop, which updates it, and the service,
/// which reads it; None until the scheduler starts.
#[derive(Debug, Default)]
pub struct SchedulerStatus(Mutex<Option<SchedulerState>>);

impl SchedulerStatus {
    /// What the scheduler last told, if it has started.
    pub fn snapshot(&self) -> Option<SchedulerState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut SchedulerState)) {
        f(self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(SchedulerState::default));
    }
}

/// What serve passes on while it runs.
pub trait ServeObserver: Send + Sync {
    /// A line a run of `policy` wrote to its standard error.
    fn said(&self, policy: &str, line: &str);
}

/// Lines of a run's stderr kept for its history if its process dies.
const TAIL_LINES: usize = 20;
/// How long an exited run's stderr may take to reach its end before the exit is reported.
const STDERR_DRAIN: Duration = Duration::from_secs(5);

enum Event {
    Signal(i32),
    Exited {
        policy: String,
        status: std::io::Result<ExitStatus>,
    },
    /// A user asked for a run of `policy` now (through the service's socket).
    RunNow {
        policy: String,
        by: String,
        reply: crossbeam_channel::Sender<Result<Started, RunNowError>>,
    },
}

/// A run asked for on demand, as serve took it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Started {
    /// Its process is going.
    Running {
        policy: String,
        process: u32,
        at: DateTime<Utc>,
    },
    /// Every slot is taken (`--max-concurrent`): it starts when a run ends.
    Queued { policy: String },
}

/// Why serve did not take a run asked for on demand.
#[derive(Debug, thiserror::Error)]
pub enum RunNowError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("no policy named `{policy}` in {config} (defined: {defined})")]
    NoSuchPolicy {
        policy: String,
        config: PathBuf,
        defined: String,
    },
    #[error(
        "policy `{policy}` is already running since {} (process {process}): one run per policy at a time; follow it with `custodian jobs list --policy {policy}`",
        since.to_rfc3339()
    )]
    AlreadyRunning {
        policy: String,
        since: DateTime<Utc>,
        process: u32,
    },
    #[error(
        "a run of policy `{0}` is already waiting for a free slot (serve's --max-concurrent); it starts when a run ends"
    )]
    AlreadyWaiting(String),
    #[error("serve could not start a run of policy `{0}`; its log says why")]
    NotStarted(String),
    #[error("serve is stopping and starts no more runs")]
    Stopping,
}

/// Asks a running serve for runs on demand; each is one more event of its loop, so the rule of
/// one run per policy is kept by the loop that keeps it for scheduled runs.
#[derive(Clone)]
pub struct Runner(crossbeam_channel::Sender<Event>);

impl Runner {
    /// A run of `policy` now, for `l`'s acting user holding JOBS_RUN (and, for the lifecycle
    /// sweep, ARTIFACTS_LIFECYCLE_POLICY_RUN, as `run lifecycle` needs).
    pub fn run_now(&self, l: &Loaded, policy: &str) -> Result<Started, RunNowError> {
        let needed: &[Permission] = if policy == LIFECYCLE_RUN {
            &[Permission::JobsRun, Permission::Run]
        } else {
            &[Permission::JobsRun]
        };
        let actor = authorize(l, needed)?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.0
            .send(Event::RunNow {
                policy: policy.to_owned(),
                by: actor.user,
                reply,
            })
            .map_err(|_| RunNowError::Stopping)?;
        answer.recv().map_err(|_| RunNowError::Stopping)?
    }
}

/// Why serve killed a run process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kill {
    /// Far past its time limit: it ignored its own.
    Backstop,
    /// Still going at the end of the shutdown grace.
    Shutdown,
}

impl Kill {
    /// What its run's history records.
    fn outcome(self) -> (RunStatus, &'static str) {
        match self {
            Kill::Backstop => (
                RunStatus::TimedOut,
                "the run did not stop at its time limit, so serve killed its process",
            ),
            Kill::Shutdown => (
                RunStatus::Cancelled,
                "serve was stopping and the run did not end within the shutdown grace, so its process was killed",
            ),
        }
    }
}

struct Running {
    pid: Pid,
    due: DateTime<Utc>,
    spawned_at: DateTime<Utc>,
    /// Past this, a run that ignored its own limits is killed.
    backstop: Option<Instant>,
    killed: Option<Kill>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

struct Server {
    exe: PathBuf,
    observer: &'static dyn ServeObserver,
    config_path: PathBuf,
    config: Config,
    catalog: Box<dyn Catalog>,
    scheduler: Scheduler,
    running: HashMap<String, Running>,
    events: crossbeam_channel::Sender<Event>,
    status: Arc<SchedulerStatus>,
}

/// Serves the config at `config` until SIGTERM or SIGINT.
pub fn serve(
    config: &Path,
    options: &ServeOptions,
    observer: &'static dyn ServeObserver,
) -> Result<(), ServeError> {
    Supervisor::start(config, options, observer)?.run()
}

/// Serve's loop, set up (config read, catalog open, signal handlers installed) and not yet
/// going: the service's boundaries take what they need from it before it runs.
pub struct Supervisor {
    server: Server,
    rx: crossbeam_channel::Receiver<Event>,
    max_concurrent: usize,
    shutdown_grace: Duration,
}

impl Supervisor {
    /// Reads the config at `config`, opens its catalog (a SQLite file it creates is 0600, the
    /// service's own) and installs the signal handlers.
    pub fn start(
        config: &Path,
        options: &ServeOptions,
        observer: &'static dyn ServeObserver,
    ) -> Result<Supervisor, ServeError> {
        let (server, rx) = Server::open(config, observer, options.status.clone())?;
        Ok(Supervisor {
            server,
            rx,
            max_concurrent: options.max_concurrent,
            shutdown_grace: options.shutdown_grace,
        })
    }

    /// The config serve runs, as loaded at the start.
    pub fn config(&self) -> &Config {
        &self.server.config
    }

    /// Where serve asks for runs on demand.
    pub fn runner(&self) -> Runner {
        Runner(self.server.events.clone())
    }

    /// Runs every enabled policy on its schedule, and those asked for, until SIGTERM or SIGINT.
    pub fn run(self) -> Result<(), ServeError> {
        let Supervisor {
            mut server,
            rx,
            max_concurrent,
            shutdown_grace,
        } = self;
        tracing::info!(
            "serving {}: {} scheduled jobs, at most {max_concurrent} runs at once; {}",
            server.config_path.display(),
            server.scheduler.scheduled(),
            server.next_text()
        );
        loop {
            let now = Utc::now();
            for skipped in server.scheduler.tick(now) {
                let since = server
                    .running
                    .get(&skipped.policy)
                    .map_or("waiting for a slot".to_string(), |r| {
                        format!("running since {}", r.spawned_at.to_rfc3339())
                    });
                tracing::warn!(
                    "policy `{}` was due at {} but its previous run is still going ({since}); this occurrence is skipped",
                    skipped.policy,
                    skipped.at.to_rfc3339()
                );
                server
                    .status
                    .update(|s| *s.skipped.entry(skipped.policy).or_default() += 1);
            }
            server.start_waiting(max_concurrent);
            let pending = server.scheduler.earliest_pending();
            server.status.update(|s| s.earliest_pending = pending);
            server.enforce_backstops();
            let wake = server.wake_at();
            match rx.recv_deadline(wake) {
                Ok(Event::Signal(signal_hook::consts::SIGHUP)) => server.reload(),
                Ok(Event::Signal(signal)) => {
                    server.shutdown(signal, shutdown_grace, &rx);
                    return Ok(());
                }
                Ok(Event::Exited { policy, status }) => server.exited(&policy, status),
                Ok(Event::RunNow { policy, by, reply }) => {
                    let _ = reply.send(server.run_now(&policy, &by, max_concurrent));
                }
                Err(_) => {}
            }
        }
    }
}

impl Server {
    /// Reads the config, opens its catalog, installs the signal handlers: a server with
    /// nothing running, and the receiver of its events.
    fn open(
        config: &Path,
        observer: &'static dyn ServeObserver,
        status: Arc<SchedulerStatus>,
    ) -> Result<(Server, crossbeam_channel::Receiver<Event>), ServeError> {
        let config_path = std::path::absolute(config).map_err(|source| ServeError::Resolve {
            path: config.to_owned(),
            source,
        })?;
        let config = Config::load(&config_path).map_err(SetupError::from)?;
        super::access::own_catalog(&config).map_err(SetupError::from)?;
        let catalog = catalog::open_private(&config.catalog).map_err(SetupError::from)?;
        let (events, rx) = crossbeam_channel::bounded::<Event>(1024);
        {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
                .map_err(SetupError::Signals)?;
            let events = events.clone();
            std::thread::Builder::new()
                .name("custodian-signals".into())
                .spawn(move || {
                    for s in signals.forever() {
                        if events.send(Event::Signal(s)).is_err() {
                            break;
                        }
                    }
                })
                .map_err(SetupError::Signals)?;
        }
        let now = Utc::now();
        let server = Server {
            exe: std::env::current_exe().map_err(ServeError::Executable)?,
            observer,
            scheduler: Scheduler::new(config.scheduled_jobs(), now),
            config_path,
            config,
            catalog,
            running: HashMap::new(),
            events,
            status,
        };
        Ok((server, rx))
    }

    fn next_text(&self) -> String {
        match self.scheduler.next_wake() {
            Some((p, t)) => format!("next: `{p}` at {}", t.to_rfc3339()),
            None => "nothing is due (every policy is manual or disabled)".into(),
        }
    }

    /// When to look again: the next due instant or backstop, and at least once a minute (the
    /// clock may jump).
    fn wake_at(&self) -> Instant {
        let mut wake = Instant::now() + Duration::from_secs(60);
        if let Some((_, t)) = self.scheduler.next_wake() {
            let until = (t - Utc::now()).to_std().unwrap_or_default();
            wake = wake.min(Instant::now() + until);
        }
        for r in self.running.values().filter(|r| r.killed.is_none()) {
            if let Some(b) = r.backstop {
                wake = wake.min(b);
            }
        }
        wake
    }

    /// Starts waiting runs while slots are free.
    fn start_waiting(&mut self, slots: usize) {
        while let Some(due) = self.scheduler.start_next(slots) {
            self.start(due);
        }
    }

    /// A run of `policy` asked for by `by`: refused while one runs or waits, else queued and
    /// started at once when a slot is free.
    fn run_now(&mut self, policy: &str, by: &str, slots: usize) -> Result<Started, RunNowError> {
        if self.config.job(policy).is_none() {
            return Err(RunNowError::NoSuchPolicy {
                policy: policy.to_owned(),
                config: self.config_path.clone(),
                defined: self
                    .config
                    .policies
                    .keys()
                    .map(String::as_str)
                    .chain([LIFECYCLE_RUN])
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if let Some(r) = self.running.get(policy) {
            return Err(RunNowError::AlreadyRunning {
                policy: policy.to_owned(),
                since: r.spawned_at,
                process: r.pid.as_raw() as u32,
            });
        }
        let now = Utc::now();
        let due = Due {
            policy: policy.to_owned(),
            at: now,
        };
        if !self.scheduler.queue_now(due) {
            return Err(RunNowError::AlreadyWaiting(policy.to_owned()));
        }
        tracing::info!(policy, "run asked for by {by}");
        self.start_waiting(slots);
        match self.running.get(policy) {
            Some(r) => Ok(Started::Running {
                policy: policy.to_owned(),
                process: r.pid.as_raw() as u32,
                at: r.spawned_at,
            }),
            None if self.scheduler.is_waiting(policy) => Ok(Started::Queued {
                policy: policy.to_owned(),
            }),
            None => Err(RunNowError::NotStarted(policy.to_owned())),
        }
    }

    fn start(&mut self, due: Due) {
        let Due { policy, at } = due;
        let Some(job) = self.config.job(&policy).cloned() else {
            self.scheduler.finished(&policy);
            return;
        };
        let spawned = Command::new(&self.exe)
            .arg("--config")
            .arg(&self.config_path)
            .arg("--json")
            .arg("run")
            .arg("--in-process")
            .arg(&policy)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("policy `{policy}`: cannot start its run: {e}");
                self.scheduler.finished(&policy);
                return;
            }
        };
        let spawned_at = Utc::now();
        let latency = (spawned_at - at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
        self.status.update(|s| {
            s.start_latency.insert(policy.clone(), latency / 1000.0);
        });
        tracing::info!(
            policy,
            due = %at.to_rfc3339(),
            latency_ms = latency,
            "run started (process {})",
            child.id()
        );
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        // Told when the reader has read stderr to its end, so that the exit is reported with the
        // run's last lines in its tail.
        let (read_all, stderr_read) = std::sync::mpsc::channel::<()>();
        if let Some(stderr) = child.stderr.take() {
            let tail = tail.clone();
            let observer = self.observer;
            let name = policy.clone();
            let _ = std::thread::Builder::new()
                .name(format!("run-{policy}-stderr"))
                .spawn(move || {
                    for line in std::io::BufReader::new(stderr)
                        .lines()
                        .map_while(|l| l.ok())
                    {
                        observer.said(&name, &line);
                        let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                        if t.len() == TAIL_LINES {
                            t.pop_front();
                        }
                        t.push_back(line);
                    }
                    let _ = read_all.send(());
                });
        }
        let pid = Pid::from_raw(child.id() as i32);
        let events = self.events.clone();
        let name = policy.clone();
        let _ = std::thread::Builder::new()
            .name(format!("run-{policy}-wait"))
            .spawn(move || {
                let status = child.wait();
                // A process the run left behind may hold its stderr open: wait a little, not
                // for ever.
                let _ = stderr_read.recv_timeout(STDERR_DRAIN);
                let _ = events.send(Event::Exited {
                    policy: name,
                    status,
                });
            });
        // The run enforces its own limits; this is for a run process that cannot.
        let grace = job.keep_alive.min(Duration::from_secs(60));
        let backstop = job.time_limit.map(|l| Instant::now() + l + grace * 3);
        self.running.insert(
            policy,
            Running {
                pid,
                due: at,
                spawned_at,
                backstop,
                killed: None,
                tail,
            },
        );
    }

    fn enforce_backstops(&mut self) {
        let now = Instant::now();
        for (policy, r) in &mut self.running {
            if r.killed.is_none() && r.backstop.is_some_and(|b| now >= b) {
                tracing::error!(
                    "policy `{policy}`: run process {} is far past its time limit and did not stop; killing it",
                    r.pid
                );
                let _ = kill(r.pid, Signal::SIGKILL);
                r.killed = Some(Kill::Backstop);
            }
        }
    }

    fn exited(&mut self, policy: &str, status: std::io::Result<ExitStatus>) {
        self.scheduler.finished(policy);
        let Some(r) = self.running.remove(policy) else {
            return;
        };
        let code = status.as_ref().ok().and_then(|s| s.code());
        match code {
            Some(0) => tracing::info!(policy, due = %r.due.to_rfc3339(), "run finished"),
            Some(1) => tracing::warn!(
                policy,
                "run finished with failures or was stopped early; see `custodian jobs list --policy {policy}`"
            ),
            _ => {
                let how = match &status {
                    Ok(s) => s.to_string(),
                    Err(e) => format!("could not be waited for: {e}"),
                };
                let tail: Vec<String> = r
                    .tail
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .cloned()
                    .collect();
                tracing::error!(policy, "run process ended abnormally: {how}");
                self.record_dead_run(policy, &r, &how, &tail);
            }
        }
    }

    /// A run process that died (or could not start its run) leaves its history row running,
    /// or none at all: record its end (failed, or what serve killed it for), with what it last
    /// said, and notify.
    fn record_dead_run(&self, policy: &str, r: &Running, how: &str, tail: &[String]) {
        let Some(job) = self.config.job(policy) else {
            return;
        };
        let last = tail.last().map_or("no output".to_string(), |l| l.clone());
        let (status, message) = match r.killed.map(Kill::outcome) {
            Some((status, why)) => (status, format!("{why}; last output: {last}")),
            None => (
                RunStatus::Failed,
                format!("the run process {how}; last output: {last}"),
            ),
        };
        let recorded = (|| -> Result<Option<RunId>, CatalogError> {
            let latest = self.catalog.job_runs(Some(policy), 1)?.pop();
            match latest {
                Some(run) if run.status == RunStatus::Running && run.started_at >= r.spawned_at => {
                    let counters = self.catalog.run_counters(run.id)?;
                    self.catalog
                        .finish_run(run.id, status, &counters, None, Some(&message))?;
                    Ok(Some(run.id))
                }
                Some(run) if run.started_at >= r.spawned_at => Ok(Some(run.id)),
                _ => {
                    let (mode, target) = match self.config.policy(policy) {
                        Ok(Policy::Export(e)) => (e.mode, e.target.as_str()),
                        Ok(Policy::Confidential(c)) => (c.mode, "catalog"),
                        Err(_) => (Mode::Full, LIFECYCLE_TARGET),
                    };
                    // Ended before its run began: killed (while indexing, say), or unable to.
                    let id = self.catalog.begin_run(policy, mode, target)?;
                    let message = match r.killed {
                        Some(_) => message.clone(),
                        None => format!("the run could not start ({how}): {last}"),
                    };
                    self.catalog.finish_run(
                        id,
                        status,
                        &Default::default(),
                        None,
                        Some(&message),
                    )?;
                    Ok(Some(id))
                }
            }
        })();
        match recorded {
            Ok(Some(run)) => {
                let already = self
                    .catalog
                    .job_run(run)
                    .ok()
                    .flatten()
                    .and_then(|j| j.notification);
                if already.is_none() {
                    notify_run(&self.config, self.catalog.as_ref(), job, run);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!("policy `{policy}`: cannot record its failed run: {e}"),
        }
    }

    fn reload(&mut self) {
        let loaded = Config::load(&self.config_path)
            .map_err(SetupError::from)
            .and_then(|c| {
                let catalog = catalog::open(&c.catalog)?;
                Ok((c, catalog))
            });
        match loaded {
            Ok((config, catalog)) => {
                self.scheduler.reload(config.scheduled_jobs(), Utc::now());
                self.config = config;
                self.catalog = catalog;
                tracing::info!(
                    "config {} reloaded: {} scheduled jobs; {}",
                    self.config_path.display(),
                    self.scheduler.scheduled(),
                    self.next_text()
                );
            }
            Err(e) => tracing::error!(
                "config {} not reloaded, the running one is kept: {}",
                self.config_path.display(),
                with_sources(&e)
            ),
        }
    }

    fn shutdown(&mut self, signal: i32, grace: Duration, rx: &crossbeam_channel::Receiver<Event>) {
        let dropped = self.scheduler.clear_queue();
        tracing::info!(
            "signal {signal}: stopping; {} run(s) going get {} to finish or cancel{}",
            self.running.len(),
            humantime::format_duration(grace),
            if dropped > 0 {
                format!(", {dropped} waiting run(s) not started")
            } else {
                String::new()
            }
        );
        for r in self.running.values() {
            let _ = kill(r.pid, Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while !self.running.is_empty() {
            match rx.recv_deadline(deadline) {
                Ok(Event::Exited { policy, status }) => self.exited(&policy, status),
                // A run asked for now is refused: its reply channel closes unanswered.
                Ok(Event::Signal(_) | Event::RunNow { .. }) => {}
                Err(_) => break,
            }
        }
        for (policy, r) in &mut self.running {
            tracing::error!(
                "policy `{policy}`: run process {} did not stop within {}; killing it",
                r.pid,
                humantime::format_duration(grace)
            );
            let _ = kill(r.pid, Signal::SIGKILL);
            r.killed.get_or_insert(Kill::Shutdown);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.running.is_empty() {
            match rx.recv_deadline(deadline) {
                Ok(Event::Exited { policy, status }) => self.exited(&policy, status),
                // A run asked for now is refused: its reply channel closes unanswered.
                Ok(Event::Signal(_) | Event::RunNow { .. }) => {}
                Err(_) => break,
            }
        }
        tracing::info!("stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheduler_lags_by_the_time_since_its_earliest_pending_occurrence() {
        let due: DateTime<Utc> = "2026-05-01T11:00:00Z".parse().unwrap();
        let state = SchedulerState {
            earliest_pending: Some(due),
            ..SchedulerState::default()
        };
        let later = |ms| due + chrono::Duration::milliseconds(ms);
        assert_eq!(state.lag_seconds(later(-5000)), 0.0);
        assert_eq!(state.lag_seconds(due), 0.0);
        assert_eq!(state.lag_seconds(later(2500)), 2.5);
        assert_eq!(SchedulerState::default().lag_seconds(due), 0.0);
        let status = SchedulerStatus::default();
        assert_eq!(status.snapshot(), None, "not started");
        status.update(|s| s.earliest_pending = Some(due));
        assert_eq!(status.snapshot(), Some(state));
    }
}
