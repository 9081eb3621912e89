//! `/runs` (the job history, filtered by policy and outcome, a page at a time) and
//! `/runs/<id>` (one run: counters, failed items, manifest, log, notification and audit
//! events; the page notification emails link to). Both need JOBS_READ.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;

use super::page;
use crate::app::audit::AuditError;
use crate::app::jobs::{self, JobsError};
use crate::audit::AuditEvent;
use crate::catalog::{AuditQuery, FailedItem, JobRun, RunId, RunPage, RunStatus};
use crate::policy::roles::Permission;
use crate::service::web::auth::Authed;
use crate::service::web::{AppState, PageError};

/// Runs a page of `/runs` shows.
const PAGE: usize = 50;
/// Audit events a run's page shows.
const RUN_EVENTS: usize = 500;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { axum::response::Redirect::to("/runs") }))
        .route("/runs", get(list))
        .route("/runs/{id}", get(show))
}

impl From<JobsError> for PageError {
    fn from(e: JobsError) -> PageError {
        match e {
            JobsError::NoSuchRun { run, .. } => PageError::NotFound(format!("no job run {run}")),
            other => PageError::Internal(other.to_string()),
        }
    }
}

impl From<AuditError> for PageError {
    fn from(e: AuditError) -> PageError {
        PageError::Internal(e.to_string())
    }
}

/// `/runs`' query: each part optional; an empty one is no filter.
#[derive(Deserialize, Default)]
struct ListQuery {
    policy: Option<String>,
    outcome: Option<String>,
    /// The page starts after this run id (the last one of the page before).
    before: Option<i64>,
}

impl ListQuery {
    fn page(&self) -> Result<RunPage, PageError> {
        let status = match self.outcome.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
                PageError::BadRequest(format!(
                    "outcome `{s}` is not one of {}",
                    RunStatus::ALL.map(RunStatus::as_str).join(", ")
                ))
            })?),
        };
        Ok(RunPage {
            policy: self.policy.clone().filter(|p| !p.is_empty()),
            status,
            before: self.before.map(RunId),
            limit: PAGE,
        })
    }
}

async fn list(
    State(state): State<AppState>,
    who: Authed,
    Query(q): Query<ListQuery>,
) -> Result<Markup, PageError> {
    let wanted = q.page()?;
    let query = wanted.clone();
    let runs = state
        .run_as(&who, &[Permission::JobsRead], move |l| {
            l.catalog.job_runs_page(&query).map_err(JobsError::from)
        })
        .await?;
    Ok(page("Runs", Some(&who), runs_table(&wanted, &runs)))
}

/// The filter form, the runs, and the link to the next page.
fn runs_table(wanted: &RunPage, runs: &[JobRun]) -> Markup {
    let next = (runs.len() == wanted.limit)
        .then(|| runs.last())
        .flatten()
        .map(|last| {
            let mut link = format!("/runs?before={}", last.id);
            if let Some(p) = &wanted.policy {
                link.push_str(&format!("&policy={}", super::component(p)));
            }
            if let Some(s) = wanted.status {
                link.push_str(&format!("&outcome={}", s.as_str()));
            }
            link
        });
    html! {
        form.filter method="get" action="/runs" {
            label { "Policy " input name="policy" value=[wanted.policy.as_deref()]; }
            label { "Outcome "
                select name="outcome" {
                    option value="" { "any" }
                    @for s in RunStatus::ALL {
                        option value=(s.as_str()) selected[wanted.status == Some(s)] { (s.as_str()) }
                    }
                }
            }
            button type="submit" { "Show" }
        }
        @if runs.is_empty() {
            p { "No runs." }
        } @else {
            table {
                tr { th { "Run" } th { "Policy" } th { "Outcome" } th { "Started" } th { "Finished" }
                     th.num { "Selected" } th.num { "Exported" } th.num { "Failed" } th.num { "Bytes" } }
                @for r in runs {
                    tr {
                        td { a href={ "/runs/" (r.id) } { (r.id) } }
                        td { (r.policy) }
                        td class=(outcome_class(r.status)) { (r.status.as_str()) }
                        td { (r.started_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                        td { @if let Some(f) = r.finished_at { (f.format("%Y-%m-%d %H:%M:%S UTC")) } }
                        td.num { (r.counters.selected) }
                        td.num { (r.counters.exported) }
                        td.num { (r.counters.failed) }
                        td.num { (r.counters.bytes) }
                    }
                }
            }
        }
        @if let Some(link) = next {
            p { a href=(link) { "Older runs →" } }
        }
    }
}

fn outcome_class(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Succeeded => "good",
        RunStatus::Running => "",
        _ => "bad",
    }
}

/// What `/runs/<id>` shows.
struct RunView {
    run: JobRun,
    failures: Vec<FailedItem>,
    events: Vec<AuditEvent>,
}

async fn show(
    State(state): State<AppState>,
    who: Authed,
    Path(id): Path<String>,
) -> Result<Markup, PageError> {
    let id: i64 = id
        .parse()
        .map_err(|_| PageError::NotFound(format!("no job run `{id}`: a run id is a number")))?;
    let view = state
        .run_as(&who, &[Permission::JobsRead], move |l| {
            let (run, failures) = jobs::show(l, RunId(id))?;
            let events = l
                .catalog
                .audit_events(&AuditQuery {
                    run: Some(RunId(id)),
                    limit: RUN_EVENTS,
                    ..AuditQuery::default()
                })
                .map_err(JobsError::from)?;
            Ok::<_, JobsError>(RunView {
                run,
                failures,
                events,
            })
        })
        .await?;
    Ok(page(
        &format!("Run {}", view.run.id),
        Some(&who),
        run_page(&view),
    ))
}

fn run_page(v: &RunView) -> Markup {
    let r = &v.run;
    let c = &r.counters;
    html! {
        table {
            tr { th { "Policy" } td { (r.policy) } }
            tr { th { "Outcome" } td class=(outcome_class(r.status)) { (r.status.as_str()) } }
            tr { th { "Mode" } td { (format!("{:?}", r.mode).to_lowercase()) } }
            tr { th { "Target" } td { (r.target) } }
            tr { th { "Started" } td { (r.started_at.to_rfc3339()) } }
            tr { th { "Finished" } td { @if let Some(f) = r.finished_at { (f.to_rfc3339()) } @else { "still running" } } }
            tr { th { "Resumed" } td { (r.resumed) " time(s)" } }
            tr { th { "Manifest" } td { @if let Some(m) = &r.manifest_key { code { (m) } } @else { "none" } } }
            tr { th { "Log file" } td { @if let Some(p) = &r.log_path { code { (p) } } @else { "none" } } }
            tr { th { "Notification" } td { @if let Some(n) = &r.notification { (n) } @else { "none sent" } } }
            @if let Some(e) = &r.error_summary { tr { th { "Error" } td.bad { (e) } } }
            @if let Some(h) = &r.held_back { tr { th { "Held back" } td { pre { (h) } } } }
        }
        h2 { "Counters" }
        table {
            tr { th { "Selected" } th { "Exported" } th { "Flagged" } th { "Deleted" } th { "Failed" }
                 th { "Objects" } th { "Bytes" } th { "Index errors" } }
            tr { td.num { (c.selected) } td.num { (c.exported) } td.num { (c.flagged) } td.num { (c.deleted) }
                 td.num { (c.failed) } td.num { (c.objects) } td.num { (c.bytes) } td.num { (c.index_errors) } }
        }
        h2 { "Failed items" }
        @if v.failures.is_empty() {
            p { "None." }
        } @else {
            table {
                tr { th { "Item" } th { "Reason" } th { "At" } }
                @for f in &v.failures {
                    tr { td { (f.subject) } td.bad { (f.error) } td { (f.at.to_rfc3339()) } }
                }
            }
        }
        h2 { "Audit events" }
        (events_table(&v.events))
    }
}

/// Audit events as a table (shared by the run page and `/audit`).
pub(super) fn events_table(events: &[AuditEvent]) -> Markup {
    html! {
        @if events.is_empty() {
            p { "None." }
        } @else {
            table {
                tr { th { "Seq" } th { "At" } th { "Kind" } th { "Actor" } th { "Conversation" } th { "Details" } }
                @for e in events {
                    tr {
                        td.num { (e.seq) }
                        td { (e.event.at.to_rfc3339()) }
                        td { (e.event.kind.as_str()) }
                        td { (e.event.actor) }
                        td {
                            @if let (Some(t), Some(c)) = (&e.event.tenant, &e.event.conversation_id) { (t) "/" (c) }
                        }
                        td { code { (e.event.details.to_string()) } }
                    }
                }
            }
        }
    }
}
