//! The run pipeline: a select stage, a pool of workers, and one recorder, joined by bounded
//! channels so memory stays flat whatever the size of the selection.
//!
//! ```text
//! select (pages) ──bounded──▶ workers (rayon, N threads) ──bounded──▶ record (batches)
//! ```
//!
//! The recorder commits results in batches (up to `batch`, or whatever arrived within `linger`
//! of the first), which keeps catalog transactions few: each commit writes every touched page
//! of the catalog once. Any stage failing stops the others, and so does the run's
//! [`Control`] (time limit, keep-alive, a signal): items already taken finish and are recorded.

pub mod control;

pub use control::{Control, Stop};

/// Sizes of the pipeline.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Worker threads.
    pub concurrency: usize,
    /// Capacity of each channel.
    pub queue: usize,
    /// Most results committed together.
    pub batch: usize,
    /// Longest a result waits for others to share its commit.
    pub linger: std::time::Duration,
}

impl Options {
    pub fn with_concurrency(concurrency: usize) -> Options {
        Options {
            concurrency: concurrency.max(1),
            queue: 64 * concurrency.max(1),
            batch: 512,
            linger: std::time::Duration::from_millis(200),
        }
    }
}

/// Hands items from the select stage to the workers.
pub struct Emitter<'a, T> {
    tx: &'a crossbeam_channel::Sender<T>,
    control: &'a Control,
}

impl<T> Emitter<'_, T> {
    /// Queues an item; false when the pipeline is shutting down and the stage should stop.
    pub fn emit(&self, item: T) -> bool {
        !self.control.is_stopped() && self.tx.send(item).is_ok()
    }
}

/// Runs `select` → `work` → `record` and returns the first error of any stage.
/// `work` gets a per-thread scratch value made by `scratch`. When `control` is stopped the
/// select stage ends, queued items are dropped, and items in flight are still recorded.
pub fn run<T, R, S, E>(
    options: Options,
    control: &Control,
    select: impl FnOnce(&Emitter<'_, T>) -> Result<(), E> + Send,
    scratch: impl Fn() -> S + Sync + Send,
    work: impl Fn(&mut S, T) -> R + Sync + Send,
    mut record: impl FnMut(Vec<R>) -> Result<(), E>,
) -> Result<(), E>
where
    T: Send,
    R: Send,
    E: Send,
{
    let (work_tx, work_rx) = crossbeam_channel::bounded::<T>(options.queue);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<R>(options.queue);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.concurrency)
        .thread_name(|i| format!("custodian-worker-{i}"))
        .build()
        .expect("worker pool");
    std::thread::scope(|scope| {
        let selector = scope.spawn(move || {
            let result = select(&Emitter {
                tx: &work_tx,
                control,
            });
            if result.is_err() {
                control.stop(Stop::Failed);
            }
            result
        });
        let scratch = &scratch;
        let work = &work;
        let workers = options.concurrency;
        // Each worker blocks on the channel itself. (`par_bridge` would have idle workers spin
        // on `sched_yield` while the select stage waits on the catalog, taking the CPU the
        // catalog server needs.) Work a worker runs in parallel (rayon) stays on this pool.
        scope.spawn(move || {
            pool.install(|| {
                rayon::scope(|s| {
                    for _ in 0..workers {
                        let (work_rx, done_tx) = (work_rx.clone(), done_tx.clone());
                        s.spawn(move |_| {
                            let mut state = scratch();
                            for item in work_rx {
                                if !control.is_stopped() {
                                    let _ = done_tx.send(work(&mut state, item));
                                }
                            }
                        });
                    }
                });
                drop(done_tx);
            });
        });
        let mut recorded = Ok(());
        let mut batch = Vec::with_capacity(options.batch);
        while let Ok(first) = done_rx.recv() {
            batch.push(first);
            let deadline = std::time::Instant::now() + options.linger;
            while batch.len() < options.batch {
                match done_rx.recv_deadline(deadline) {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if let Err(e) = record(std::mem::replace(
                &mut batch,
                Vec::with_capacity(options.batch),
            )) {
                control.stop(Stop::Failed);
                recorded = Err(e);
                break;
            }
        }
        drop(done_rx);
        let selected = selector.join().expect("select stage panicked");
        recorded.and(selected)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_worked_and_recorded_once() {
        let mut seen = Vec::new();
        run::<u32, u32, (), ()>(
            Options::with_concurrency(3),
            &Control::default(),
            |e| {
                for i in 0..10_000 {
                    assert!(e.emit(i));
                }
                Ok(())
            },
            || (),
            |_, i| i * 2,
            |batch| {
                seen.extend(batch);
                Ok(())
            },
        )
        .unwrap();
        seen.sort();
        assert_eq!(seen, (0..10_000).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_recorder_error_stops_the_select_stage() {
        let result = run::<u32, u32, (), &str>(
            Options::with_concurrency(2),
            &Control::default(),
            |e| {
                let mut i = 0;
                while e.emit(i) {
                    i += 1;
                }
                Ok(())
            },
            || (),
            |_, i| i,
            |_| Err("catalog gone"),
        );
        assert_eq!(result, Err("catalog gone"));
    }

    #[test]
    fn a_select_error_is_returned() {
        let result = run::<u32, u32, (), &str>(
            Options::with_concurrency(2),
            &Control::default(),
            |e| {
                e.emit(1);
                Err("query failed")
            },
            || (),
            |_, i| i,
            |_| Ok(()),
        );
        assert_eq!(result, Err("query failed"));
    }

    #[test]
    fn a_stopped_run_records_what_it_took_and_takes_no_more() {
        let control = Control::default();
        let mut recorded = 0u32;
        let result = run::<u32, u32, (), ()>(
            Options::with_concurrency(2),
            &control,
            |e| {
                let mut i = 0;
                while e.emit(i) {
                    i += 1;
                }
                Ok(())
            },
            || (),
            |_, i| {
                if i == 1000 {
                    control.stop(Stop::TimedOut);
                }
                i
            },
            |batch| {
                recorded += batch.len() as u32;
                Ok(())
            },
        );
        assert_eq!(result, Ok(()));
        assert!((1..1_000_000).contains(&recorded), "{recorded}");
        assert_eq!(control.stopped(), Some(Stop::TimedOut));
    }
}
