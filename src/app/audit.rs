//! `custodian audit verify` and `audit init-key`: the audit trail checked against its key and
//! the anchors export runs left at their targets, and the key created.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Loaded, SetupError, with_sources};
use crate::audit::key::{self, ChainKey, KeyError};
use crate::audit::{AuditEvent, ChainProblem, KeySource};
use crate::catalog::trail::{TrailReport, check_trail};
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
