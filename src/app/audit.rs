//! `custodian audit verify` and `audit init-key`: the audit trail checked against its key and
//! the anchors export runs left at their targets, and the key created.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};

use super::{Loaded, SetupError, with_sources};
use crate::audit::key::{self, ChainKey, KeyError};
use crate::audit::{AuditEvent, AuditKind, ChainProblem, KeySource, NewEvent};
use crate::catalog::trail::{AnchorStatus, TrailReport, check_trail};
use crate::catalog::{AuditQuery, CatalogError};
use crate::policy::Policy;
use crate::target::manifest::{self, AnchorError};

/// Why the trail could not be checked, or the key not created.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Why a policy's newest anchor could not be read.
#[derive(Debug, thiserror::Error)]
enum AnchorUnread {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Anchor(#[from] AnchorError),
}

/// An export policy whose newest anchor could not be read.
pub struct Unreadable {
    pub policy: String,
    pub target: String,
    /// Why, with its causes.
    pub error: String,
}

/// The trail as checked.
pub struct TrailCheck {
    pub report: TrailReport,
    /// The key the chain was checked with.
    pub key: Option<Arc<ChainKey>>,
    pub unreadable: Vec<Unreadable>,
}

/// A verification of the whole trail asked of the service, as its `trail_verified` event
/// records it (docs/operations.md, "The web portal"): who asked, when it ran, what it found.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Verification {
    /// When the verification started and ended, and who asked for it.
    pub started_at: DateTime<Utc>,
    #[serde(skip_deserializing)]
    pub finished_at: DateTime<Utc>,
    #[serde(skip_deserializing)]
    pub verified_by: String,
    /// Nothing found wrong: the chain holds and every anchor was read and matches.
    pub intact: bool,
    /// Events checked, and the last one's sequence number.
    pub events: u64,
    pub head_seq: i64,
    /// The first event that breaks the chain, and how.
    pub broken: Option<Broken>,
    /// Each export policy's newest anchor that does not match the chain, and how.
    pub anchors: Vec<AnchorMismatch>,
    /// Each export policy whose newest anchor could not be read, and why.
    pub unreadable: Vec<UnreadableAnchor>,
}

/// Where and how the chain breaks.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Broken {
    pub seq: i64,
    pub problem: String,
}

/// An anchor that does not match the chain.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AnchorMismatch {
    pub policy: String,
    pub target: String,
    pub run: i64,
    pub problem: String,
}

/// An export policy whose newest anchor could not be read.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct UnreadableAnchor {
    pub policy: String,
    pub target: String,
    pub error: String,
}

impl Verification {
    fn of(check: &TrailCheck, started_at: DateTime<Utc>, by: &str) -> Verification {
        let r = &check.report;
        Verification {
            started_at,
            // The catalog keeps an event's time to the microsecond.
            finished_at: Utc::now().trunc_subsecs(6),
            verified_by: by.to_owned(),
            intact: r.intact() && check.unreadable.is_empty(),
            events: r.events,
            head_seq: r.head.seq,
            broken: r.broken.as_ref().map(|b| Broken {
                seq: b.seq,
                problem: b.problem.to_string(),
            }),
            anchors: r
                .anchors
                .iter()
                .filter_map(|a| {
                    let problem = match &a.status {
                        AnchorStatus::Matches => return None,
                        AnchorStatus::Truncated { chain_ends_at } => format!(
                            "anchors event {}, but the chain ends at {chain_ends_at}: events were cut off",
                            a.anchor.head.seq
                        ),
                        AnchorStatus::Differs { changed_from, .. } => format!(
                            "anchors event {} with another hash: an event from {changed_from} on was edited or removed",
                            a.anchor.head.seq
                        ),
                    };
                    Some(AnchorMismatch {
                        policy: a.anchor.policy.clone(),
                        target: a.anchor.target.clone(),
                        run: a.anchor.run,
                        problem,
                    })
                })
                .collect(),
            unreadable: check
                .unreadable
                .iter()
                .map(|u| UnreadableAnchor {
                    policy: u.policy.clone(),
                    target: u.target.clone(),
                    error: u.error.clone(),
                })
                .collect(),
        }
    }

    /// The verification its `trail_verified` event records; None for an event this build
    /// cannot read.
    fn from_event(e: &AuditEvent) -> Option<Verification> {
        let mut v: Verification = serde_json::from_value(e.event.details.clone()).ok()?;
        v.finished_at = e.event.at;
        v.verified_by = e.event.actor.clone();
        Some(v)
    }
}

/// Verifies the whole trail as `audit verify` does, for `by`, and records what it found as a
/// `trail_verified` event, so the portal shows it after a restart and the trail keeps it.
pub fn verify_recorded(l: &Loaded, by: &str) -> Result<Verification, AuditError> {
    let started_at = Utc::now();
    let check = verify(l)?;
    let verification = Verification::of(&check, started_at, by);
    let mut details =
        serde_json::to_value(&verification).expect("a verification serializes to JSON");
    if let Some(fields) = details.as_object_mut() {
        fields.remove("finished_at");
        fields.remove("verified_by");
    }
    l.catalog.append_audit_event(&NewEvent {
        at: verification.finished_at,
        kind: AuditKind::TrailVerified,
        actor: by.to_owned(),
        policy: None,
        run: None,
        tenant: None,
        conversation_id: None,
        details,
    })?;
    Ok(verification)
}

/// The last verification recorded in the trail, if any.
pub fn last_verification(l: &Loaded) -> Result<Option<Verification>, AuditError> {
    Ok(l.catalog
        .newest_verification()?
        .as_ref()
        .and_then(Verification::from_event))
}

/// `audit list`: the events `query` selects, oldest first.
pub fn events(l: &Loaded, query: &AuditQuery) -> Result<Vec<AuditEvent>, AuditError> {
    Ok(l.catalog.audit_events(query)?)
}

/// `audit verify`: the chain, then the newest anchor of each export policy at its target.
pub fn verify(l: &Loaded) -> Result<TrailCheck, AuditError> {
    let key_source = KeySource::new(&l.config.audit.key_file);
    let key = key_source.load()?;
    let mut anchors = Vec::new();
    let mut unreadable = Vec::new();
    for policy in l.config.policies.values() {
        let Policy::Export(p) = policy else {
            continue;
        };
        let found = l
            .build_target(&p.target)
            .map_err(AnchorUnread::from)
            .and_then(|t| Ok(manifest::newest_anchor(t.as_ref(), &p.name)?));
        match found {
            Ok(Some(anchor)) => anchors.push(anchor),
            Ok(None) => {}
            Err(e) => unreadable.push(Unreadable {
                policy: p.name.clone(),
                target: p.target.clone(),
                error: with_sources(&e),
            }),
        }
    }
    let report = check_trail(l.catalog.as_ref(), key.as_deref(), anchors)?;
    if let Some(b) = &report.broken
        && let ChainProblem::NoKey { key_id } = &b.problem
    {
        return Err(KeyError::Missing {
            path: key_source.path().to_owned(),
            key_id: key_id.clone(),
        }
        .into());
    }
    Ok(TrailCheck {
        report,
        key,
        unreadable,
    })
}

/// `audit init-key`: creates the audit key file; returns where, and the key.
pub fn init_key(l: &Loaded) -> Result<(PathBuf, ChainKey), AuditError> {
    let path = &l.config.audit.key_file;
    // A catalog keyed with a key whose file is gone needs that file back: a new key could
    // not continue its chain.
    let head = l.catalog.audit_head()?;
    let last = l.catalog.audit_events(&AuditQuery {
        after_seq: head.seq - 1,
        limit: 1,
        ..AuditQuery::default()
    })?;
    if let Some(key_id) = last.first().and_then(|e| e.key_id.clone())
        && key::read_key(path)?.is_none()
    {
        return Err(KeyError::Missing {
            path: path.clone(),
            key_id,
        }
        .into());
    }
    let key = key::create_key(path)?;
    Ok((path.clone(), key))
}
