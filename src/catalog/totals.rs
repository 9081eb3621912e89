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
    /// How many of them took no longer than each bound (in ms), by bound.
    pub durations: Vec<(u64, u64)>,
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

/// One bucket of a policy's run durations: of its runs that ended `outcome` (as the catalog
/// spells it), `runs` took no longer than `le_ms`.
pub(super) struct DurationBucket {
    pub policy: String,
    pub outcome: String,
    pub le_ms: u64,
    pub runs: u64,
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

impl RunMetrics {
    /// These metrics with each total's duration buckets from `buckets` (in bound order).
    pub(super) fn with_durations(mut self, buckets: Vec<DurationBucket>) -> RunMetrics {
        let mut by_total: std::collections::HashMap<(String, String), Vec<(u64, u64)>> =
            std::collections::HashMap::new();
        for b in buckets {
            by_total
                .entry((b.policy, b.outcome))
                .or_default()
                .push((b.le_ms, b.runs));
        }
        for t in &mut self.totals {
            t.durations = by_total
                .remove(&(t.policy.clone(), t.outcome.as_str().to_owned()))
                .unwrap_or_default();
        }
        self
    }
}
