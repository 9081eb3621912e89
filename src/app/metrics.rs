//! What the service's `/metrics` and `/healthz` report (docs/operations.md, "Metrics"): the
//! catalog's run totals and the runs going now, whether the catalog answers, and how far
//! behind the scheduler is. Gathering reads a row per policy and outcome (`run_totals`, kept
//! as runs end) and the partial index of running runs, so a scrape costs the same with ten
//! runs or a million in the history.

use chrono::{DateTime, Utc};

use super::serve::{SchedulerState, SchedulerStatus};
use crate::catalog::totals::RunMetrics;
use crate::catalog::{Catalog, CatalogError};

/// One scrape's worth of metrics.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: DateTime<Utc>,
    /// The run totals, or why the catalog could not give them (it is then unreachable).
    pub runs: Result<RunMetrics, String>,
    /// None when no scheduler runs in this process.
    pub scheduler: Option<SchedulerState>,
}

/// Gathers a snapshot from `catalog` and the scheduler's `status`.
pub fn gather(catalog: &dyn Catalog, status: Option<&SchedulerStatus>) -> Snapshot {
    Snapshot {
        at: Utc::now(),
        runs: catalog.run_metrics().map_err(|e| e.to_string()),
        scheduler: status.and_then(SchedulerStatus::snapshot),
    }
}

/// Whether the catalog answers: it reads the audit chain's head, one indexed row.
pub fn health(catalog: &dyn Catalog) -> Result<(), CatalogError> {
    catalog.audit_head().map(drop)
}
