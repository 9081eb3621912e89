//! Several nodes, one run: the first node to start a policy's run splits its selection into
//! work units (ranges of conversation rowids) stored in the shared catalog; every node claims
//! units (`FOR UPDATE SKIP LOCKED`), holds a lease it renews while working, and records
//! completion. A unit whose lease expires is claimed again by another node. Target writes are
//! idempotent and the catalog records one export (and one audit event) per conversation and
//! run, so a unit done twice changes nothing. The node that sees the last unit done writes the
//! manifest and ends the run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::catalog::units::{NodeCounters, WorkUnits};
use crate::catalog::{CatalogError, Counters, Exclude, RunId};
use crate::pipeline::{Control, Stop};
use crate::policy::export::{Export, RunError};
use crate::progress::Progress;

/// Why a node stopped taking part before the run ended.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(
        "the catalog stayed unreachable for {} while {what}, so node `{node}` stops; the other nodes take over its unit when its lease expires, and running this command again rejoins the run",
        humantime::format_duration(*patience)
    )]
    CatalogLost {
        node: String,
        what: &'static str,
        patience: Duration,
        source: Box<CatalogError>,
    },
    #[error(transparent)]
    Run(#[from] RunError),
}

impl From<CatalogError> for NodeError {
    fn from(e: CatalogError) -> Self {
        NodeError::Run(RunError::Catalog(e))
    }
}

/// Runs `f` until it succeeds, retrying with backoff for up to the node's catalog patience.
fn retrying<T>(
    options: &NodeOptions,
    what: &'static str,
    mut f: impl FnMut() -> Result<T, CatalogError>,
) -> Result<T, NodeError> {
    let started = std::time::Instant::now();
    let mut wait = Duration::from_millis(200);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if started.elapsed() < options.catalog_patience => {
                let pause = wait.min(options.catalog_patience - started.elapsed());
                tracing::warn!(
                    "{what}: {e}; retrying in {}",
                    humantime::format_duration(pause)
                );
                std::thread::sleep(pause);
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(source) => {
                return Err(NodeError::CatalogLost {
                    node: options.node.clone(),
                    what,
                    patience: options.catalog_patience,
                    source: Box::new(source),
                });
            }
        }
    }
}

/// How a node takes part.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub node: String,
    pub unit_size: usize,
    pub lease: Duration,
    /// How long the node retries a catalog that went away (a restart, the network) before it
    /// gives up; its unit is then reclaimed by the others when its lease expires.
    pub catalog_patience: Duration,
}

/// What one node did.
#[derive(Debug, Serialize)]
pub struct NodeReport {
    pub run: RunId,
    pub node: String,
    /// This node began the run (and split it).
    pub began: bool,
    pub units: u64,
    pub reclaimed: u64,
    pub renewals: u64,
    /// Units it lost to another node when its lease expired.
    pub lost: u64,
    pub exported: u64,
    pub failed: u64,
    /// Set on the node that ended the run: the run's outcome and manifest.
    pub finished: Option<crate::policy::export::RunSummary>,
    /// Why this node stopped before the run ended (a signal, a limit, a full target).
    pub stopped: Option<String>,
    pub per_node: Vec<NodeCounters>,
}

/// Takes part in a cluster run of `export` until no unit is left, then, if this node is the
/// last, ends the run.
pub fn run_node(
    export: &Export<'_>,
    units: &dyn WorkUnits,
    options: &NodeOptions,
    progress: &dyn Progress,
    control: &Control,
) -> Result<NodeReport, NodeError> {
    let started = std::time::Instant::now();
    let policy = &export.policy.name;
    let split_exclude = Exclude::for_mode(export.policy.mode, policy, None);
    let (run, began) = units.join_or_split(
        policy,
        export.policy.mode,
        export.target.name(),
        &export.filter,
        &split_exclude,
        options.unit_size,
    )?;
    control.begin(run);
    // Uploads of runs that ended; this run's belong to nodes that may still be writing them.
    export.abort_abandoned_uploads(None)?;
    tracing::info!(
        policy,
        run = run.0,
        node = options.node,
        began,
        "joined cluster run"
    );
    // A unit redone after a lease expired leaves out what is already recorded.
    let exclude = Exclude::for_mode(export.policy.mode, policy, Some(run));
    let mut report = NodeReport {
        run,
        node: options.node.clone(),
        began,
        units: 0,
        reclaimed: 0,
        renewals: 0,
        lost: 0,
        exported: 0,
        failed: 0,
        finished: None,
        stopped: None,
        per_node: Vec::new(),
    };
    let renewals = AtomicU64::new(0);
    let poll = (options.lease / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    while !control.is_stopped() {
        let claimed = retrying(options, "claiming a unit", || {
            units.claim_unit(run, &options.node, options.lease)
        })?;
        let Some(unit) = claimed else {
            if retrying(options, "counting open units", || units.open_units(run))? > 0 {
                // Other nodes hold the rest; one may die and its lease expire.
                std::thread::sleep(poll);
                continue;
            }
            if retrying(options, "ending the run", || {
                units.take_finish(run, &options.node, options.lease)
            })? {
                let selected = retrying(options, "ending the run", || units.selected(run))?;
                // Every unit is done: an upload of this run still open belongs to a node
                // that died (or lost its lease) mid-object.
                export.abort_abandoned_uploads(Some(run))?;
                let (status, counters, key, failures) = export.finish(run, selected, 0, control)?;
                report.finished = Some(crate::policy::export::RunSummary {
                    run,
                    policy: policy.clone(),
                    mode: export.policy.mode,
                    target: export.target.name().to_owned(),
                    status,
                    resumed: false,
                    index: None,
                    counters,
                    manifest: key.to_string(),
                    failures,
                    media: Vec::new(),
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
            break;
        };
        // Stopped when the lease is lost, or when the run itself is stopped (signal, limit).
        let held = control.part();
        let worked = std::thread::scope(|scope| -> Result<Counters, RunError> {
            let (stop_renewing, renew_rx) = crossbeam_channel::bounded::<()>(0);
            let held = &held;
            let renewals = &renewals;
            scope.spawn(move || {
                let mut renewed = std::time::Instant::now();
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    renew_rx.recv_timeout(Duration::from_millis(100))
                {
                    if let Some(why) = control.stopped() {
                        held.stop(why);
                        return;
                    }
                    if renewed.elapsed() < options.lease / 3 {
                        continue;
                    }
                    match units.renew_lease(unit.id, &options.node, options.lease) {
                        Ok(true) => {
                            renewed = std::time::Instant::now();
                            renewals.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => {
                            tracing::warn!(
                                unit = unit.id,
                                "lease lost to another node; leaving the unit"
                            );
                            held.stop(Stop::Failed);
                            return;
                        }
                        Err(e) => tracing::warn!(unit = unit.id, "cannot renew the lease: {e}"),
                    }
                }
            });
            let done = export.export_selected(run, &exclude, unit.lo, unit.hi, progress, held);
            drop(stop_renewing);
            done
        });
        let worked = match worked {
            Ok(w) => w,
            Err(e) => {
                // What it recorded stays; its lease runs out and the rest is redone.
                tracing::warn!(unit = unit.id, "unit abandoned: {e}");
                report.lost += 1;
                continue;
            }
        };
        if held.stopped() == Some(Stop::TargetFull) {
            // Every node writes to the same target: the run waits for room, with this unit's
            // lease left to expire. Running the node again rejoins it.
            control.stop(Stop::TargetFull);
            report.lost += 1;
        }
        if control.is_stopped() {
            break;
        }
        if held.is_stopped() {
            report.lost += 1;
            continue;
        }
        if retrying(options, "completing a unit", || {
            units.complete_unit(unit.id, &options.node, &worked)
        })? {
            report.units += 1;
            report.reclaimed += u64::from(unit.reclaimed);
            report.exported += worked.exported;
            report.failed += worked.failed;
        } else {
            report.lost += 1;
        }
    }
    report.renewals = renewals.load(Ordering::Relaxed);
    report.stopped = control
        .stopped()
        .filter(|_| report.finished.is_none())
        .map(|why| {
            let job = &export.policy.job;
            why.describe(job.time_limit, job.keep_alive)
        });
    report.per_node = units.node_counters(run)?;
    Ok(report)
}
