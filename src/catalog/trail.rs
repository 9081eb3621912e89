//! Checking the whole audit trail: the chain inside the catalog (plain, then keyed), and the
//! catalog against the heads that run manifests anchored at the targets. The chain alone
//! cannot show that its last events were removed, or that it was recomputed from scratch; an
//! anchor written outside the catalog can, because the chain only ever grows.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{AuditQuery, Catalog, CatalogError};
use crate::audit::{Anchor, AuditHead, ChainBreak, ChainKey, ChainVerifier, GENESIS};

/// Events read per catalog query.
const PAGE: usize = 10_000;

/// How an anchor compares with the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AnchorStatus {
    Matches,
    /// The anchored event no longer exists: the chain was cut at `chain_ends_at`.
    Truncated {
        chain_ends_at: i64,
    },
    /// The anchored event's hash differs (or the event is gone from the middle of the
    /// chain): some event from `changed_from` to the anchored one was edited or removed and
    /// the chain recomputed. `changed_from` is the event after the newest anchor that still
    /// matches.
    Differs {
        catalog_hash: Option<String>,
        changed_from: i64,
    },
}

/// One anchor and what became of it.
#[derive(Clone, Debug, Serialize)]
pub struct AnchorCheck {
    #[serde(flatten)]
    pub anchor: Anchor,
    #[serde(flatten)]
    pub status: AnchorStatus,
}

/// The outcome of checking the trail.
#[derive(Clone, Debug, Serialize)]
pub struct TrailReport {
    pub events: u64,
    /// The catalog's last event (whether or not the chain holds up to it).
    pub head: AuditHead,
    /// The keying event, when the chain is keyed.
    pub keyed_from: Option<i64>,
    /// The first event that breaks the chain inside the catalog.
    pub broken: Option<ChainBreak>,
    pub anchors: Vec<AnchorCheck>,
}

impl TrailReport {
    /// Nothing found wrong.
    pub fn intact(&self) -> bool {
        self.broken.is_none()
            && self
                .anchors
                .iter()
                .all(|a| a.status == AnchorStatus::Matches)
    }
}

/// Walks the whole chain with `key` and compares every anchor with it.
pub fn check_trail(
    catalog: &dyn Catalog,
    key: Option<&ChainKey>,
    anchors: Vec<Anchor>,
) -> Result<TrailReport, CatalogError> {
    let wanted: BTreeSet<i64> = anchors.iter().map(|a| a.head.seq).collect();
    let mut found: BTreeMap<i64, String> = BTreeMap::new();
    let mut verifier = ChainVerifier::new(key);
    let mut broken = None;
    let mut events = 0u64;
    let mut head = AuditHead {
        seq: 0,
        hash: GENESIS.to_owned(),
    };
    loop {
        let page = catalog.audit_events(&AuditQuery {
            after_seq: head.seq,
            limit: PAGE,
            ..AuditQuery::default()
        })?;
        if page.is_empty() {
            break;
        }
        for e in &page {
            if broken.is_none()
                && let Err(b) = verifier.check(e)
            {
                broken = Some(b);
            }
            if wanted.contains(&e.seq) {
                found.insert(e.seq, e.hash.clone());
            }
            events += 1;
            head = AuditHead {
                seq: e.seq,
                hash: e.hash.clone(),
            };
        }
    }
    let matching: BTreeSet<i64> = anchors
        .iter()
        .filter(|a| a.head.seq == 0 || found.get(&a.head.seq) == Some(&a.head.hash))
        .map(|a| a.head.seq)
        .collect();
    let anchors = anchors
        .into_iter()
        .map(|anchor| {
            let seq = anchor.head.seq;
            let status = if matching.contains(&seq) {
                AnchorStatus::Matches
            } else if seq > head.seq {
                AnchorStatus::Truncated {
                    chain_ends_at: head.seq,
                }
            } else {
                AnchorStatus::Differs {
                    catalog_hash: found.get(&seq).cloned(),
                    changed_from: matching.range(..seq).next_back().map_or(1, |m| m + 1),
                }
            };
            AnchorCheck { anchor, status }
        })
        .collect();
    Ok(TrailReport {
        events,
        head,
        keyed_from: verifier.keyed_from(),
        broken,
        anchors,
    })
}
