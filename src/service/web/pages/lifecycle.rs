//! `/lifecycle`: retention policies with their versions and active version, the
//! acknowledgments trail, the changes pending approval and the legal holds; and the forms that
//! enable, disable and activate policies and approve or reject pending changes, each with the
//! exact acknowledgment texts as checkboxes. Every action runs `app::lifecycle` as the user, so
//! the roles file and four eyes apply as on the command line (docs/operations.md, "The web
//! portal").

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use maud::{Markup, html};

use super::page;
use crate::app::access::AccessError;
use crate::app::holds::{self, HoldError};
use crate::app::lifecycle::{self, LifecycleError, Switch, SwitchOutcome};
use crate::audit::{AuditEvent, AuditKind};
use crate::catalog::holds::MatterState;
use crate::catalog::lifecycle::{LifecyclePolicy, LifecycleVersion, PendingChange};
use crate::catalog::{AuditQuery, CatalogError};
use crate::policy::lifecycle::Acknowledgment;
use crate::policy::roles::{Permission, RolesError};
use crate::service::web::auth::Authed;
use crate::service::web::{AppState, PageError};

/// Acknowledgment events the trail shows, newest last.
const TRAIL: usize = 200;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/lifecycle", get(overview))
        .route("/lifecycle/policies/{name}/{action}", post(switch))
        .route("/lifecycle/changes/{id}/{decision}", post(decide))
}

impl From<LifecycleError> for PageError {
    fn from(e: LifecycleError) -> PageError {
        match e {
            LifecycleError::Access(a) => a.into(),
            e @ (LifecycleError::NoSuchPolicy(_)
            | LifecycleError::NoSuchChange(_)
            | LifecycleError::NoSuchVersion { .. }) => PageError::NotFound(e.to_string()),
            LifecycleError::Catalog(CatalogError::Refused(m)) => PageError::BadRequest(m),
            e @ (LifecycleError::Catalog(_)
            | LifecycleError::Setup(_)
            | LifecycleError::Control(_)
            | LifecycleError::Index(_)
            | LifecycleError::Restore(_)) => PageError::Internal(e.to_string()),
            other => PageError::BadRequest(other.to_string()),
        }
    }
}

/// What `/lifecycle` shows.
struct Overview {
    policies: Vec<LifecyclePolicy>,
    pending: Vec<PendingChange>,
    trail: Vec<AuditEvent>,
    /// The matters, or why they are not shown (no LEGAL_HOLD_READ).
    holds: Result<Vec<MatterState>, String>,
}

async fn overview(State(state): State<AppState>, who: Authed) -> Result<Markup, PageError> {
    let view = state
        .run_as(&who, &[Permission::Read], |l| {
            let policies = lifecycle::list(l)?;
            let pending = lifecycle::pending(l, false)?;
            let trail = l.catalog.audit_events(&AuditQuery {
                kind: Some(AuditKind::LifecycleAcknowledged),
                limit: TRAIL,
                ..AuditQuery::default()
            })?;
            let holds = match holds::list(l) {
                Ok(m) => Ok(m),
                Err(HoldError::Access(AccessError::Roles(denied @ RolesError::Denied { .. }))) => {
                    Err(denied.to_string())
                }
                Err(e) => return Err(LifecycleError::Refused(e.to_string())),
            };
            Ok::<_, LifecycleError>(Overview {
                policies,
                pending,
                trail,
                holds,
            })
        })
        .await?;
    Ok(page("Lifecycle", Some(&who), overview_page(&who, &view)))
}

fn overview_page(who: &Authed, v: &Overview) -> Markup {
    html! {
        h2 { "Policies" }
        @if v.policies.is_empty() {
            p { "No lifecycle policies (create one with " code { "custodian lifecycle create" } ")." }
        }
        @for p in &v.policies {
            (policy_section(who, p))
        }
        h2 { "Pending approvals" }
        @if v.pending.is_empty() {
            p { "None." }
        }
        @for c in &v.pending {
            (pending_section(who, v, c))
        }
        h2 { "Acknowledgments trail" }
        (super::runs::events_table(&v.trail))
        h2 { "Legal holds" }
        @match &v.holds {
            Err(why) => p { (why) },
            Ok(matters) if matters.is_empty() => p { "No matters." },
            Ok(matters) => table {
                tr { th { "Matter" } th { "Description" } th.num { "Active holds" } th.num { "Conversations" } th.num { "Artifacts" } }
                @for m in matters {
                    tr {
                        td { (m.matter.name) }
                        td { (m.matter.description) }
                        td.num { (m.holds.iter().filter(|h| h.released.is_none()).count()) }
                        td.num { (m.conversations) }
                        td.num { (m.artifacts) }
                    }
                }
            },
        }
    }
}

fn policy_section(who: &Authed, p: &LifecyclePolicy) -> Markup {
    let base = format!("/lifecycle/policies/{}", super::component(&p.name));
    html! {
        h3 { (p.name) " " small { @if p.enabled { span.good { "enabled" } } @else { "disabled" } } }
        @if !p.description.is_empty() { p { (p.description) } }
        p {
            "Artifact type " code { (p.artifact_type.as_str()) }
            @if let Some(a) = p.audio_type { " (" code { (a.as_str()) } ")" }
            "; active version: "
            @if let Some(v) = &p.active_version { strong { (v) } } @else { "none" }
        }
        table {
            tr { th { "Version" } th { "Action" } th { "Requires export" } th { "Published" } th { "" } }
            @for v in &p.versions {
                tr {
                    td { (v.name) }
                    td { (v.action.describe()) }
                    td { @if let Some(e) = &v.require_export { (e) } }
                    td { (v.published_at.to_rfc3339()) " by " (v.published_by) }
                    td {
                        @if p.active_version.as_deref() != Some(v.name.as_str()) {
                            (action_form(who, &format!("{base}/activate"), "Make active", Some(&v.name), v))
                        }
                    }
                }
            }
        }
        @if let Some(active) = p.active() {
            @if p.enabled {
                (action_form(who, &format!("{base}/disable"), "Disable", None, active))
            } @else {
                (action_form(who, &format!("{base}/enable"), "Enable", None, active))
            }
        }
    }
}

fn pending_section(who: &Authed, v: &Overview, c: &PendingChange) -> Markup {
    let version = v
        .policies
        .iter()
        .find(|p| p.name == c.policy)
        .and_then(|p| p.version(&c.version));
    html! {
        p {
            "Change " (c.id) ": " (c.change.as_str()) " " code { (c.version) } " of " strong { (c.policy) }
            ", requested by " (c.requested_by) " at " (c.requested_at.to_rfc3339())
            ", expires " (c.expires_at.to_rfc3339())
        }
        @if let Some(version) = version {
            (action_form(who, &format!("/lifecycle/changes/{}/approve", c.id), "Approve", None, version))
        }
        form method="post" action={ "/lifecycle/changes/" (c.id) "/reject" } {
            input type="hidden" name="csrf" value=(who.csrf());
            button type="submit" { "Reject" }
        }
    }
}

/// A form posting to `action` with the acknowledgments a change to `version` needs, each a
/// required checkbox with its exact text.
fn action_form(
    who: &Authed,
    action: &str,
    label: &str,
    version_field: Option<&str>,
    version: &LifecycleVersion,
) -> Markup {
    html! {
        form.change method="post" action=(action) {
            input type="hidden" name="csrf" value=(who.csrf());
            @if let Some(v) = version_field { input type="hidden" name="version" value=(v); }
            @for ack in Acknowledgment::needed_for(version) {
                label { input type="checkbox" name="ack" value=(ack.token()) required; " " (ack.text()) } br;
            }
            button type="submit" { (label) }
        }
    }
}

/// A posted form: its CSRF token, the version named, and the acknowledgments checked.
struct Posted {
    csrf: String,
    version: Option<String>,
    acks: Vec<String>,
}

impl Posted {
    fn parse(body: &[u8]) -> Posted {
        let mut posted = Posted {
            csrf: String::new(),
            version: None,
            acks: Vec::new(),
        };
        for (k, v) in form_urlencoded::parse(body) {
            match k.as_ref() {
                "csrf" => posted.csrf = v.into_owned(),
                "version" => posted.version = Some(v.into_owned()),
                "ack" => posted.acks.push(v.into_owned()),
                _ => {}
            }
        }
        posted
    }
}

async fn switch(
    State(state): State<AppState>,
    who: Authed,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Markup, PageError> {
    let posted = Posted::parse(&body);
    who.check_csrf(&posted.csrf)?;
    if !matches!(action.as_str(), "enable" | "disable" | "activate") {
        return Err(PageError::NotFound(format!(
            "no action `{action}`: enable, disable or activate"
        )));
    }
    let permission = if action == "disable" {
        Permission::Delete
    } else {
        Permission::Create
    };
    let policy = name.clone();
    let outcome = state
        .run_as(&who, &[permission], move |l| {
            let switch = match (action.as_str(), posted.version.as_deref()) {
                ("enable", _) => Switch::Enable,
                ("disable", _) => Switch::Disable,
                (_, Some(v)) => Switch::Activate(v),
                (_, None) => {
                    return Err(LifecycleError::Refused(
                        "activate needs the version to make active".into(),
                    ));
                }
            };
            lifecycle::switch(l, &policy, switch, &posted.acks)
        })
        .await?;
    let said = match outcome {
        SwitchOutcome::Applied(s) => format!(
            "Policy {} is now {} with active version {}.",
            s.policy,
            if s.enabled { "enabled" } else { "disabled" },
            s.version.name
        ),
        SwitchOutcome::Requested(c) => format!(
            "Change {} ({} {} of {}) awaits approval by another user until {}.",
            c.id,
            c.change.as_str(),
            c.version,
            c.policy,
            c.expires_at.to_rfc3339()
        ),
    };
    Ok(done(&who, &said))
}

async fn decide(
    State(state): State<AppState>,
    who: Authed,
    Path((id, decision)): Path<(i64, String)>,
    body: Bytes,
) -> Result<Markup, PageError> {
    let posted = Posted::parse(&body);
    who.check_csrf(&posted.csrf)?;
    let approve = match decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(PageError::NotFound(format!(
                "no decision `{other}`: approve or reject"
            )));
        }
    };
    let c = state
        .run_as(&who, &[Permission::Approve], move |l| {
            if approve {
                lifecycle::approve(l, id, &posted.acks)
            } else {
                lifecycle::reject(l, id)
            }
        })
        .await?;
    Ok(done(
        &who,
        &format!(
            "Change {} ({} {} of {}) is {}.",
            c.id,
            c.change.as_str(),
            c.version,
            c.policy,
            c.state.as_str()
        ),
    ))
}

/// The page after an action: what it did, and the way back.
fn done(who: &Authed, said: &str) -> Markup {
    page(
        "Lifecycle",
        Some(who),
        html! {
            p.good { (said) }
            p { a href="/lifecycle" { "Back to lifecycle" } }
        },
    )
}
