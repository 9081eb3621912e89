//! What the service's metrics read from the catalog (docs/operations.md, "Metrics"): each
//! policy's finished runs totalled by outcome, and the runs going now.
//!
//! The totals are kept in `run_totals`, which a trigger on `job_runs` adds each run to as its
//! status leaves `running` (once: a run ends once), so a scrape reads a row per policy and
//! outcome whatever the length of the history, and pruning old runs leaves the totals whole:
//! they only grow, as Prometheus counters must.

use chrono::{DateTime, Utc};

use super::RunStatus;

/// A policy's finished runs that ended one way, totalled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunTotals {
    pub policy: String,
    pub outcome: RunStatus,
    pub runs: u64,
    /// Their durations, start to finish, summed.
    pub duration_ms: u64,
    /// Conversations exported (export runs) and the objects and bytes written.
    pub exported: u64,
    pub objects: u64,
    pub bytes: u64,
    /// Items that failed.
    pub failed: u64,
    /// Artifacts deleted (lifecycle sweeps).
    pub deleted: u64,
    /// When the last of them finished.
    pub last_finished_at: DateTime<Utc>,
}

/// Every policy's totals, and the runs going now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunMetrics {
    /// By policy, then outcome.
    pub totals: Vec<RunTotals>,
    /// Runs with status `running`, by policy (a run a killed process left counts until it is
    /// resumed or recorded).
    pub running: Vec<(String, u64)>,
}
