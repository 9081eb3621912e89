//! The audit chain's last verification, kept by the portal: `/audit` and
//! `GET /api/v1/audit/verification` show it with its time, and a verification is run only when
//! a user asks for one (docs/operations.md, "The web portal"). Every verification walks the
//! whole chain and reads every anchor, as `audit verify` does: an event edited before the
//! point an earlier verification reached is caught by the next one. Walking a million events
//! takes seconds, so a page load never does it, and verifications run one at a time.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::auth::Authed;
use super::{AppState, PageError};
use crate::app::audit::{self, TrailCheck};
use crate::policy::roles::Permission;

/// One verification of the whole trail: who asked, when it ran, what it found.
pub struct Verified {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub by: String,
    pub check: TrailCheck,
}

impl Verified {
    /// Nothing found wrong: the chain holds and every anchor was read and matches.
    pub fn intact(&self) -> bool {
        self.check.report.intact() && self.check.unreadable.is_empty()
    }
}

/// The last verification since serve started, and the lock that runs them one at a time.
#[derive(Default)]
pub(super) struct Verifications {
    last: Mutex<Option<Arc<Verified>>>,
    running: tokio::sync::Mutex<()>,
}

impl AppState {
    /// The last verification since serve started, if any (no permission check: the caller
    /// checks AUDIT_READ).
    pub fn last_verification(&self) -> Option<Arc<Verified>> {
        self.0
            .verifications
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Verifies the whole trail for `who` (AUDIT_READ) and keeps the result as the last one.
    /// One runs at a time; a request that waited while another ran gets that one's result if
    /// it started after the request came, since it saw everything the request could ask about.
    pub async fn verify_audit(&self, who: &Authed) -> Result<Arc<Verified>, PageError> {
        let asked_at = Utc::now();
        let v = &self.0.verifications;
        let _running = v.running.lock().await;
        if let Some(last) = self
            .last_verification()
            .filter(|l| l.started_at >= asked_at)
        {
            return Ok(last);
        }
        let by = who.actor.user.clone();
        let verified = self
            .run_as(who, &[Permission::AuditRead], move |l| {
                let started_at = Utc::now();
                let check = audit::verify(l)?;
                Ok::<_, audit::AuditError>(Arc::new(Verified {
                    started_at,
                    finished_at: Utc::now(),
                    by,
                    check,
                }))
            })
            .await?;
        *v.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(verified.clone());
        Ok(verified)
    }
}
