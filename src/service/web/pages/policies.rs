//! `/policies`: each policy (and the scheduled lifecycle sweep) with its schedule, timezone,
//! when it is next due and how its last run ended; JOBS_READ. Each has a Run now form, which
//! asks serve's loop for a run as `custodian run POLICY` does over the socket (JOBS_RUN).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use chrono::Utc;
use maud::{Markup, html};

use super::page;
use crate::app::jobs::{self, JobsError};
use crate::app::serve::Started;
use crate::catalog::JobRun;
use crate::policy::roles::Permission;
use crate::service::web::auth::Authed;
use crate::service::web::{AppState, PageError};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/policies", get(list))
        .route("/policies/{name}/run", post(run_now))
}

/// One row of `/policies`.
struct Row {
    policy: String,
    enabled: bool,
    schedule: String,
    timezone: String,
    next_due: Option<chrono::DateTime<Utc>>,
    last: Option<JobRun>,
}

async fn list(State(state): State<AppState>, who: Authed) -> Result<Markup, PageError> {
    let rows = state
        .run_as(&who, &[Permission::JobsRead], |l| {
            jobs::schedules(&l.config, Utc::now())
                .into_iter()
                .map(|s| {
                    Ok(Row {
                        policy: s.policy.to_owned(),
                        enabled: s.enabled,
                        schedule: s.job.schedule.to_string(),
                        timezone: s.job.timezone.name().to_owned(),
                        next_due: s.next_due,
                        last: l.catalog.job_runs(Some(s.policy), 1)?.pop(),
                    })
                })
                .collect::<Result<Vec<Row>, JobsError>>()
        })
        .await?;
    Ok(page(
        "Policies",
        Some(&who),
        html! {
            table {
                tr { th { "Policy" } th { "Enabled" } th { "Schedule" } th { "Timezone" } th { "Next due" } th { "Last run" } th {} }
                @for r in &rows {
                    tr {
                        td { a href={ "/runs?policy=" (super::component(&r.policy)) } { (r.policy) } }
                        td { @if r.enabled { "yes" } @else { "no" } }
                        td { code { (r.schedule) } }
                        td { (r.timezone) }
                        td { @if let Some(d) = r.next_due { (d.to_rfc3339()) } @else { "—" } }
                        td {
                            @if let Some(run) = &r.last {
                                a href={ "/runs/" (run.id) } { (run.status.as_str()) } " (" (run.started_at.to_rfc3339()) ")"
                            } @else { "never run" }
                        }
                        td {
                            form method="post" action={ "/policies/" (super::component(&r.policy)) "/run" } {
                                input type="hidden" name="csrf" value=(who.csrf());
                                button type="submit" { "Run now" }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// The Run now form: the run started (its process, and its policy's runs to follow it), or
/// waiting for a free slot; a policy already running or waiting is a 409 page saying since
/// when, a user without JOBS_RUN a 403 page.
async fn run_now(
    State(state): State<AppState>,
    who: Authed,
    Path(policy): Path<String>,
    body: Bytes,
) -> Result<Markup, PageError> {
    let csrf = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    who.check_csrf(&csrf)?;
    let started = state.run_now(&who, policy).await??;
    let (said, policy) = match &started {
        Started::Running {
            policy,
            process,
            at,
        } => (
            format!(
                "Run of {policy} started at {} (process {process}).",
                at.to_rfc3339()
            ),
            policy,
        ),
        Started::Queued { policy } => (
            format!(
                "A run of {policy} waits for a free slot (serve's --max-concurrent); it starts when a run ends."
            ),
            policy,
        ),
    };
    Ok(page(
        "Policies",
        Some(&who),
        html! {
            p.good { (said) }
            p { a href={ "/runs?policy=" (super::component(policy)) } { "Follow it in the runs of " (policy) } }
            p { a href="/policies" { "Back to policies" } }
        },
    ))
}
