//! Run control: why a run stops early, and the watchdog that stops it at its execution time
//! limit or when it has made no progress for its keep-alive timeout.
//!
//! Stopping is cooperative: the stages see [`Control::is_stopped`], stop taking new items and
//! let the ones in flight finish, so everything recorded stays consistent. A run that does not
//! wind down within a grace period after being stopped (a worker stuck in a system call) is
//! handed to an `overdue` callback, which records the outcome and ends the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::catalog::{RunId, RunStatus};
use crate::target::Headway;

/// The keep-alive timeout of a job that sets none.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15 * 60);

/// Why a run was stopped before it finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// A stage failed (the catalog, the selection); the error says why.
    Failed,
    /// The execution time limit passed.
    TimedOut,
    /// No progress for the keep-alive timeout.
    Stalled,
    /// A signal asked the run to stop.
    Cancelled,
    /// The target ran out of space (or over its quota): every further write would fail.
    TargetFull,
}

impl Stop {
    const ALL: [Stop; 5] = [
        Stop::Failed,
        Stop::TimedOut,
        Stop::Stalled,
        Stop::Cancelled,
        Stop::TargetFull,
    ];

    fn code(self) -> u8 {
        Stop::ALL.iter().position(|s| *s == self).expect("listed") as u8 + 1
    }

    /// The outcome a run stopped this way ends with.
    pub fn status(self) -> RunStatus {
        match self {
            Stop::Failed | Stop::TargetFull => RunStatus::Failed,
            Stop::TimedOut => RunStatus::TimedOut,
            Stop::Stalled => RunStatus::Stalled,
            Stop::Cancelled => RunStatus::Cancelled,
        }
    }

    /// Why, for the job history, given the run's time limit and keep-alive timeout.
    pub fn describe(self, time_limit: Option<Duration>, keep_alive: Duration) -> String {
        match self {
            Stop::Failed => "stopped by an error".into(),
            Stop::TimedOut => format!(
                "stopped at the execution time limit ({})",
                humantime::format_duration(time_limit.unwrap_or_default())
            ),
            Stop::Stalled => format!(
                "stopped after no progress for the keep-alive timeout ({})",
                humantime::format_duration(keep_alive)
            ),
            Stop::Cancelled => "cancelled by a signal".into(),
            Stop::TargetFull => "stopped because the target is out of space: free space on it (or point the policy at another target) and run it again".into(),
        }
    }
}

/// Shared between a run's stages, its watchdog and its signal handlers.
#[derive(Debug, Default)]
pub struct Control {
    stop: AtomicU8,
    run: AtomicI64,
    headway: Headway,
}

impl Control {
    pub fn new() -> Arc<Control> {
        Arc::new(Control::default())
    }

    /// The control of one part of the run (a cluster work unit): stopped on its own, while
    /// the headway its writes make counts in the run's.
    pub fn part(&self) -> Control {
        Control {
            headway: self.headway.clone(),
            ..Control::default()
        }
    }

    /// What the run's targets advance as they write; the watchdog counts it as progress.
    pub fn headway(&self) -> &Headway {
        &self.headway
    }

    /// Notes the job-run row the run writes to.
    pub fn begin(&self, run: RunId) {
        self.run.store(run.0, Ordering::SeqCst);
    }

    /// The job-run row, once the run has begun.
    pub fn run(&self) -> Option<RunId> {
        match self.run.load(Ordering::SeqCst) {
            0 => None,
            id => Some(RunId(id)),
        }
    }

    /// Stops the run; the first reason given is the one that counts. True if this call
    /// stopped it.
    pub fn stop(&self, why: Stop) -> bool {
        self.stop
            .compare_exchange(0, why.code(), Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    pub fn stopped(&self) -> Option<Stop> {
        match self.stop.load(Ordering::SeqCst) {
            0 => None,
            c => Some(Stop::ALL[usize::from(c) - 1]),
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) != 0
    }
}

/// When the watchdog stops a run.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub time_limit: Option<Duration>,
    pub keep_alive: Duration,
    /// How long a stopped run has to wind down before it is overdue.
    pub grace: Duration,
}

/// A running watchdog; dropping it (when the run ends) stops it.
pub struct Watchdog {
    done: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            // The watchdog only sleeps and reads counters; it cannot have panicked in a way
            // that leaves anything to clean up.
            let _ = t.join();
        }
    }
}

/// Starts a watchdog over `control`. `progress` returns a count that grows while the run makes
/// progress (items recorded, records indexed, bytes and parts written to a target). `overdue`
/// runs once if the run is still going
/// `limits.grace` after being stopped.
pub fn watch(
    control: Arc<Control>,
    limits: Limits,
    progress: impl Fn() -> u64 + Send + 'static,
    overdue: impl FnOnce(Stop) + Send + 'static,
) -> Watchdog {
    let (done, rx) = crossbeam_channel::bounded::<()>(0);
    let tick = limits
        .keep_alive
        .min(limits.time_limit.unwrap_or(Duration::MAX))
        .min(limits.grace)
        .div_f64(4.0)
        .clamp(Duration::from_millis(20), Duration::from_secs(1));
    let thread = std::thread::Builder::new()
        .name("custodian-watchdog".into())
        .spawn(move || {
            let started = Instant::now();
            let mut last = progress();
            let mut last_at = started;
            let mut stopped_at: Option<Instant> = None;
            let mut overdue = Some(overdue);
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = rx.recv_timeout(tick) {
                let now = Instant::now();
                let seen = progress();
                if seen != last {
                    last = seen;
                    last_at = now;
                }
                if limits
                    .time_limit
                    .is_some_and(|limit| now - started >= limit)
                    && control.stop(Stop::TimedOut)
                {
                    tracing::warn!(
                        "execution time limit of {} reached; stopping the run",
                        humantime::format_duration(limits.time_limit.unwrap_or_default())
                    );
                }
                if now - last_at >= limits.keep_alive && control.stop(Stop::Stalled) {
                    tracing::warn!(
                        "no progress for {} (keep-alive timeout); stopping the run",
                        humantime::format_duration(limits.keep_alive)
                    );
                }
                match (control.stopped(), stopped_at) {
                    (Some(_), None) => stopped_at = Some(now),
                    (Some(why), Some(at)) if now - at >= limits.grace => {
                        if let Some(f) = overdue.take() {
                            f(why);
                        }
                    }
                    _ => {}
                }
            }
        })
        .expect("spawn the watchdog thread");
    Watchdog {
        done: Some(done),
        thread: Some(thread),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn limits(time_limit: Option<u64>, keep_alive: u64) -> Limits {
        Limits {
            time_limit: time_limit.map(Duration::from_millis),
            keep_alive: Duration::from_millis(keep_alive),
            grace: Duration::from_millis(100),
        }
    }

    #[test]
    fn the_first_reason_wins() {
        let c = Control::new();
        assert_eq!(c.stopped(), None);
        assert!(c.stop(Stop::Cancelled));
        assert!(!c.stop(Stop::TimedOut));
        assert_eq!(c.stopped(), Some(Stop::Cancelled));
    }

    #[test]
    fn a_part_is_stopped_on_its_own_and_its_headway_is_the_runs() {
        let run = Control::new();
        let part = run.part();
        part.headway().advance(7);
        assert_eq!(run.headway().get(), 7);
        assert!(part.stop(Stop::Failed));
        assert_eq!(run.stopped(), None);
        assert_eq!(Control::default().headway().get(), 0);
    }

    #[test]
    fn a_run_without_progress_is_stalled_then_overdue() {
        let c = Control::new();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let _w = watch(
            c.clone(),
            limits(None, 200),
            || 0,
            move |why| tx.send(why).unwrap(),
        );
        let why = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(why, Stop::Stalled);
        assert_eq!(c.stopped(), Some(Stop::Stalled));
    }

    #[test]
    fn progress_keeps_a_run_alive_until_its_time_limit() {
        let c = Control::new();
        let count = Arc::new(AtomicU64::new(0));
        let counter = count.clone();
        let _w = watch(
            c.clone(),
            limits(Some(600), 150),
            move || counter.load(Ordering::Relaxed),
            |_| {},
        );
        let started = Instant::now();
        while !c.is_stopped() && started.elapsed() < Duration::from_secs(10) {
            count.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(c.stopped(), Some(Stop::TimedOut));
    }

    #[test]
    fn a_finished_run_is_left_alone() {
        let c = Control::new();
        drop(watch(
            c.clone(),
            limits(Some(50), 50),
            || 0,
            |_| panic!("not overdue"),
        ));
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(c.stopped(), None);
    }
}
