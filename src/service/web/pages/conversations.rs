//! `/conversations` (a search by tenant, id, user and start time, newest first, a page at a
//! time) and `/conversations/<tenant>/<id>` (the record, each artifact and what became of it,
//! exports with keys and checksums, deletions, flags and holds). Both need
//! CONVERSATIONS_READ.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use chrono::{DateTime, NaiveDate, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::{component, page};
use crate::app::conversations::{self, ConversationsError, SearchPage, SearchRequest};
use crate::catalog::conversations::{ArtifactState, ConversationDetail};
use crate::policy::roles::Permission;
use crate::repository::record::Participant;
use crate::service::web::auth::Authed;
use crate::service::web::{AppState, PageError};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/conversations", get(search))
        .route("/conversations/{tenant}/{id}", get(show))
}

impl From<ConversationsError> for PageError {
    fn from(e: ConversationsError) -> PageError {
        match e {
            ConversationsError::Access(a) => a.into(),
            ConversationsError::NotFound { .. } => PageError::NotFound(e.to_string()),
            ConversationsError::BadSearch { .. } => PageError::BadRequest(e.to_string()),
            ConversationsError::Catalog(c) => PageError::Internal(c.to_string()),
        }
    }
}

/// The search form's fields, as the browser sends them (an empty field is no criterion).
#[derive(Deserialize, Default, Clone)]
struct SearchForm {
    tenant: Option<String>,
    id: Option<String>,
    user: Option<String>,
    start_from: Option<String>,
    start_before: Option<String>,
    after: Option<String>,
}

/// An instant the form names: RFC 3339, or a day (its midnight, UTC).
fn instant(field: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, PageError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .map(|d| Some(d.and_time(chrono::NaiveTime::MIN).and_utc()))
        .map_err(|_| {
            PageError::BadRequest(format!(
                "{field}: `{v}` is neither a day (2026-01-31) nor an instant (2026-01-31T08:00:00Z)"
            ))
        })
}

impl SearchForm {
    fn request(&self) -> Result<SearchRequest, PageError> {
        let text = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        Ok(SearchRequest {
            tenant: text(&self.tenant),
            id: text(&self.id),
            user: text(&self.user),
            start_from: instant("start_from", self.start_from.as_deref())?,
            start_before: instant("start_before", self.start_before.as_deref())?,
            after: text(&self.after),
            limit: None,
        })
    }

    /// The link to the page after `next`, with the same criteria.
    fn next_link(&self, next: &str) -> String {
        let mut link = format!("/conversations?after={}", component(next));
        for (name, value) in [
            ("tenant", &self.tenant),
            ("id", &self.id),
            ("user", &self.user),
            ("start_from", &self.start_from),
            ("start_before", &self.start_before),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                link.push_str(&format!("&{name}={}", component(v)));
            }
        }
        link
    }
}

async fn search(
    State(state): State<AppState>,
    who: Authed,
    Query(form): Query<SearchForm>,
) -> Result<Markup, PageError> {
    let request = form.request()?;
    let found = state
        .run_as(&who, &[Permission::ConversationsRead], move |l| {
            conversations::search(l, request)
        })
        .await?;
    Ok(page("Conversations", Some(&who), results(&form, &found)))
}

/// Who took part, as one line.
fn people(participants: &[Participant]) -> String {
    participants
        .iter()
        .map(|p| match (&p.user, &p.extension) {
            (Some(u), Some(e)) => format!("{u} ({e})"),
            (Some(u), None) => u.clone(),
            (None, Some(e)) => e.clone(),
            (None, None) => String::new(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The search form, the conversations found, and the link to the next page.
fn results(form: &SearchForm, found: &SearchPage) -> Markup {
    html! {
        form.filter method="get" action="/conversations" {
            label { "Tenant " input name="tenant" value=[form.tenant.as_deref()]; }
            label { "Id " input name="id" value=[form.id.as_deref()]; }
            label { "User " input name="user" value=[form.user.as_deref()]; }
            label { "Started from " input name="start_from" placeholder="2026-01-31" value=[form.start_from.as_deref()]; }
            label { "before " input name="start_before" placeholder="2026-02-01T00:00:00Z" value=[form.start_before.as_deref()]; }
            button type="submit" { "Search" }
        }
        @if found.conversations.is_empty() {
            p { "No conversations." }
        } @else {
            table {
                tr { th { "Tenant" } th { "Id" } th { "Start" } th { "Type" } th { "Direction" } th { "Participants" } th.num { "Artifacts" } th { "Flags" } }
                @for c in &found.conversations {
                    tr {
                        td { (c.tenant) }
                        td { a href={ "/conversations/" (component(&c.tenant)) "/" (component(&c.id)) } { (c.id) } }
                        td { (c.start.to_rfc3339()) }
                        td { (c.kind.as_str()) }
                        td { (c.direction.as_str()) }
                        td { (people(&c.participants)) }
                        td.num { (c.artifacts) }
                        td { (flags(c.flags)) }
                    }
                }
            }
        }
        @if let Some(next) = &found.next {
            p { a href=(form.next_link(next)) { "Older conversations →" } }
        }
    }
}

/// The flags that are set, as one line.
fn flags(f: crate::repository::record::Flags) -> String {
    [
        (f.confidential, "confidential"),
        (f.legal_hold, "legal hold (record)"),
        (f.cdr_only, "CDR only"),
        (f.imported, "imported"),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| *name)
    .collect::<Vec<_>>()
    .join(", ")
}

async fn show(
    State(state): State<AppState>,
    who: Authed,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Markup, PageError> {
    for (what, v) in [("tenant", &tenant), ("id", &id)] {
        if v.is_empty() || v.chars().any(char::is_control) {
            return Err(PageError::BadRequest(format!(
                "{what}: give non-empty printable text"
            )));
        }
    }
    let title = format!("Conversation {tenant}/{id}");
    let c = state
        .run_as(&who, &[Permission::ConversationsRead], move |l| {
            conversations::show(l, &tenant, &id)
        })
        .await?;
    Ok(page(&title, Some(&who), detail(&c)))
}

fn state_name(s: &ArtifactState) -> &'static str {
    match s {
        ArtifactState::Live => "live",
        ArtifactState::Quarantined => "quarantined",
        ArtifactState::Deleted => "deleted",
    }
}

/// One conversation's page.
fn detail(c: &ConversationDetail) -> Markup {
    html! {
        table {
            tr { th { "Type" } td { (c.kind.as_str()) } }
            tr { th { "Source platform" } td { (c.source_platform) } }
            tr { th { "Direction" } td { (c.direction.as_str()) } }
            tr { th { "Start" } td { (c.start.to_rfc3339()) } }
            tr { th { "End" } td { (c.end.to_rfc3339()) } }
            @if let Some(ch) = &c.channel { tr { th { "Channel" } td { (ch) } } }
            tr { th { "Directory" } td { code { (c.directory) } } }
            tr { th { "Participants" } td { (people(&c.participants)) } }
            tr { th { "Flags" } td { (flags(c.flags)) } }
            tr { th { "Confidential flag set by" } td {
                @if let Some(f) = &c.confidential_flag {
                    "policy " (f.policy) ", " a href={ "/runs/" (f.run) } { "run " (f.run) } " at " (f.at.to_rfc3339())
                    @if !f.value { " (cleared)" }
                } @else { "—" }
            } }
            tr { th { "Legal holds" } td {
                @if c.holds.is_empty() { "none" } @else { (c.holds.join(", ")) }
            } }
        }
        h2 { "Artifacts" }
        table {
            tr { th { "File" } th { "Type" } th.num { "Size" } th { "SHA-256" } th { "Key" } th { "State" } }
            @for a in &c.artifacts {
                tr {
                    td { (a.file) }
                    td { (a.kind.as_str()) @if let Some(t) = a.audio_type { " / " (t.as_str()) } }
                    td.num { (a.size) }
                    td { code { (a.sha256) } }
                    td { @if let Some(k) = &a.key_id { (k) } @else { "—" } }
                    td class=(if a.state == ArtifactState::Live { "good" } else { "bad" }) { (state_name(&a.state)) }
                }
            }
        }
        h2 { "Exports" }
        @if c.exports.is_empty() { p { "Not exported." } } @else {
            table {
                tr { th { "Policy" } th { "File" } th { "Target" } th { "Key" } th.num { "Size" } th { "SHA-256 (object)" } th { "Run" } }
                @for e in &c.exports {
                    tr {
                        td { (e.policy) }
                        td { (e.file) }
                        td { @if let Some(t) = &e.target { (t) } @else { "—" } }
                        td { @if let Some(k) = &e.key { code { (k) } } @else { "—" } }
                        td.num { @if let Some(s) = e.size { (s) } @else { "—" } }
                        td { @if let Some(s) = &e.object_sha256 { code { (s) } } @else { "—" } }
                        td { a href={ "/runs/" (e.run) } { (e.run) } }
                    }
                }
            }
        }
        h2 { "Deletions" }
        @if c.deletions.is_empty() { p { "Nothing deleted." } } @else {
            table {
                tr { th { "File" } th { "Deleted at" } th { "Policy" } th { "Version" } }
                @for d in &c.deletions {
                    tr { td { (d.file) } td { (d.deleted_at.to_rfc3339()) } td { (d.policy) } td { (d.version) } }
                }
            }
        }
        @if !c.quarantine.is_empty() {
            h2 { "Quarantine" }
            table {
                tr { th { "File" } th { "State" } th { "Since" } th { "Policy" } th { "Version" } }
                @for q in &c.quarantine {
                    tr {
                        td { (q.file) }
                        td { (q.state.as_str()) }
                        td { @if let Some(t) = q.quarantined_at { (t.to_rfc3339()) } @else { "—" } }
                        td { (q.policy) }
                        td { (q.version) }
                    }
                }
            }
        }
        p { a href={ "/audit?conversation=" (component(&c.id)) } { "Its audit events" } }
    }
}
