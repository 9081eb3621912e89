//! `/audit`: the audit trail filtered by kind, run or conversation id, a page at a time, under
//! the chain's last verification (the chain in the catalog, and the newest anchor of each
//! export policy at its target) with its time, and a form to verify it now; AUDIT_READ.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Redirect;
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;

use super::page;
use crate::app::audit;
use crate::app::audit::Verification;
use crate::audit::{AuditEvent, AuditKind};
use crate::catalog::{AuditQuery, RunId};
use crate::policy::roles::Permission;
use crate::service::web::auth::Authed;
use crate::service::web::{AppState, PageError};

/// Events a page shows.
const PAGE: usize = 100;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit", get(list))
        .route("/audit/verify", post(verify))
}

#[derive(Deserialize, Default)]
struct Filter {
    kind: Option<String>,
    run: Option<String>,
    conversation: Option<String>,
    /// The page starts after this sequence number.
    after: Option<i64>,
}

impl Filter {
    fn query(&self) -> Result<AuditQuery, PageError> {
        let kind = match self.kind.as_deref().filter(|k| !k.is_empty()) {
            None => None,
            Some(k) => Some(AuditKind::parse(k).ok_or_else(|| {
                PageError::BadRequest(format!("`{k}` is not a kind of audit event"))
            })?),
        };
        let run = match self.run.as_deref().filter(|r| !r.is_empty()) {
            None => None,
            Some(r) => Some(RunId(r.parse().map_err(|_| {
                PageError::BadRequest(format!("run `{r}` is not a run id (a number)"))
            })?)),
        };
        Ok(AuditQuery {
            run,
            conversation_id: self.conversation.clone().filter(|c| !c.is_empty()),
            kind,
            after_seq: self.after.unwrap_or(0),
            limit: PAGE,
        })
    }
}

async fn list(
    State(state): State<AppState>,
    who: Authed,
    Query(filter): Query<Filter>,
) -> Result<Markup, PageError> {
    let query = filter.query()?;
    let events = state
        .run_as(&who, &[Permission::AuditRead], move |l| {
            audit::events(l, &query)
        })
        .await?;
    let last = state.last_verification(&who).await?;
    Ok(page(
        "Audit trail",
        Some(&who),
        audit_page(&who, &filter, last.as_ref(), &events),
    ))
}

/// The Verify now form: walks the whole chain (AUDIT_READ), then shows `/audit` with the result.
async fn verify(
    State(state): State<AppState>,
    who: Authed,
    body: Bytes,
) -> Result<Redirect, PageError> {
    let csrf = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    who.check_csrf(&csrf)?;
    state.verify_audit(&who).await?;
    Ok(Redirect::to("/audit"))
}

/// The last verification's result and time, and the form to verify now.
fn verification(who: &Authed, last: Option<&Verification>) -> Markup {
    html! {
        @match last {
            None => p { "The chain has not been verified from the portal or the API yet." },
            Some(v) => {
                p { "Last verified at " (v.finished_at.to_rfc3339()) " by " (v.verified_by) " (started " (v.started_at.to_rfc3339()) "):" }
                @if v.intact {
                    p.good { "The chain verifies: " (v.events) " events up to " (v.head_seq) ", every anchor matches." }
                } @else {
                    @if let Some(b) = &v.broken {
                        p.error { "The chain is broken at event " (b.seq) ": " (b.problem) }
                    }
                    @for a in &v.anchors {
                        p.error { "Anchor of " (a.policy) " at " (a.target) " (run " (a.run) ") does not match: " (a.problem) }
                    }
                    @for u in &v.unreadable {
                        p.error { "Anchor of " (u.policy) " at " (u.target) " could not be read: " (u.error) }
                    }
                }
            },
        }
        form method="post" action="/audit/verify" {
            input type="hidden" name="csrf" value=(who.csrf());
            button type="submit" { "Verify the whole chain now" }
        }
    }
}

fn audit_page(
    who: &Authed,
    filter: &Filter,
    last: Option<&Verification>,
    events: &[AuditEvent],
) -> Markup {
    let next = (events.len() == PAGE)
        .then(|| events.last())
        .flatten()
        .map(|last| {
            let mut link = format!("/audit?after={}", last.seq);
            for (k, v) in [
                ("kind", &filter.kind),
                ("run", &filter.run),
                ("conversation", &filter.conversation),
            ] {
                if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                    link.push_str(&format!("&{k}={}", super::component(v)));
                }
            }
            link
        });
    html! {
        (verification(who, last))
        form.filter method="get" action="/audit" {
            label { "Kind " input name="kind" value=[filter.kind.as_deref()]; }
            label { "Run " input name="run" value=[filter.run.as_deref()]; }
            label { "Conversation id " input name="conversation" value=[filter.conversation.as_deref()]; }
            button type="submit" { "Show" }
        }
        (super::runs::events_table(events))
        @if let Some(link) = next {
            p { a href=(link) { "Later events →" } }
        }
    }
}
