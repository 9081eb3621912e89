//! Verifying the audit trail from the portal: `/audit` and `GET /api/v1/audit/verification`
//! show the last verification, which each one records in the trail as a `trail_verified`
//! event (so it outlives serve), and a verification runs only when a user asks for one
//! (docs/operations.md, "The web portal"). Every verification walks the whole chain and reads
//! every anchor, as `audit verify` does: an event edited before the point an earlier
//! verification reached is caught by the next one. Walking a million events takes seconds, so
//! a page load never does it, and verifications run one at a time.

use chrono::Utc;

use super::auth::Authed;
use super::{AppState, PageError};
use crate::app::audit::{self, Verification};
use crate::policy::roles::Permission;

/// The lock that runs verifications one at a time.
#[derive(Default)]
pub(super) struct Verifications {
    running: tokio::sync::Mutex<()>,
}

impl AppState {
    /// The last verification recorded, if any, for `who` (AUDIT_READ).
    pub async fn last_verification(&self, who: &Authed) -> Result<Option<Verification>, PageError> {
        self.run_as(who, &[Permission::AuditRead], audit::last_verification)
            .await
    }

    /// Verifies the whole trail for `who` (AUDIT_READ) and records the result. One runs at a
    /// time; a request that waited while another ran gets that one's result if it started
    /// after the request came, since it saw everything the request could ask about.
    pub async fn verify_audit(&self, who: &Authed) -> Result<Verification, PageError> {
        let asked_at = Utc::now();
        let _running = self.0.verifications.running.lock().await;
        if let Some(last) = self
            .last_verification(who)
            .await?
            .filter(|l| l.started_at >= asked_at)
        {
            return Ok(last);
        }
        let by = who.actor.user.clone();
        self.run_as(who, &[Permission::AuditRead], move |l| {
            audit::verify_recorded(l, &by)
        })
        .await
    }
}
