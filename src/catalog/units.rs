//! The catalog side of cluster runs (several nodes sharing one run): work units, the ranges
//! of a run's selection that nodes claim under a lease, and what each node did. `cluster`
//! drives a node; a catalog shared by several machines stores the units.

use std::time::Duration;

use serde::Serialize;

use super::{CatalogError, Counters, Exclude, Mode, RunId};
use crate::filter::Filter;

/// A range of a run's selection: conversations with `lo < rowid <= hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unit {
    pub id: i64,
    pub lo: i64,
    pub hi: i64,
    /// Claimed before by a node whose lease expired.
    pub reclaimed: bool,
}

/// What a node did in a run, as the catalog records it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeCounters {
    pub node: String,
    pub units: u64,
    /// Units it finished after another node's lease on them expired.
    pub reclaimed: u64,
    pub exported: u64,
    pub failed: u64,
    pub objects: u64,
    pub bytes: u64,
}

/// The catalog side of cluster runs; a catalog shared by several machines implements it.
pub trait WorkUnits: Send + Sync {
    /// Joins the policy's running cluster run, or begins one and splits `filter`'s selection
    /// (leaving out `exclude`) into units of `unit_size` conversations. True when this call
    /// began it. Two nodes starting at once get the same run.
    fn join_or_split(
        &self,
        policy: &str,
        mode: Mode,
        target: &str,
        filter: &Filter,
        exclude: &Exclude,
        unit_size: usize,
    ) -> Result<(RunId, bool), CatalogError>;

    /// Claims the next pending unit, or one whose lease expired, for `lease`.
    fn claim_unit(
        &self,
        run: RunId,
        node: &str,
        lease: Duration,
    ) -> Result<Option<Unit>, CatalogError>;

    /// Extends the lease; false when the node no longer holds the unit.
    fn renew_lease(&self, unit: i64, node: &str, lease: Duration) -> Result<bool, CatalogError>;

    /// Records the unit done with what the node did; false when the node no longer held it.
    fn complete_unit(&self, unit: i64, node: &str, done: &Counters) -> Result<bool, CatalogError>;

    /// Units of the run not done yet.
    fn open_units(&self, run: RunId) -> Result<u64, CatalogError>;

    /// Conversations the run selected when it was split.
    fn selected(&self, run: RunId) -> Result<u64, CatalogError>;

    /// True for the one node that ends the run; another may take over when that node has not
    /// ended it within `lease`.
    fn take_finish(&self, run: RunId, node: &str, lease: Duration) -> Result<bool, CatalogError>;

    /// Per-node counters of the run.
    fn node_counters(&self, run: RunId) -> Result<Vec<NodeCounters>, CatalogError>;
}
