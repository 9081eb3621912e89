//! `/policies`: each policy (and the scheduled lifecycle sweep) with its schedule, timezone,
//! when it is next due and how its last run ended; JOBS_READ. Starting a run from here waits
//! for the scheduler to take run-now requests.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::Utc;
use maud::{Markup, html};

use super::page;
use crate::app::jobs::{self, JobsError};
use crate::catalog::JobRun;
use crate::policy::roles::Permission;
use crate::service::web::auth::Authed;
use crate::service::web::{AppState, PageError};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/policies", get(list))
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
                tr { th { "Policy" } th { "Enabled" } th { "Schedule" } th { "Timezone" } th { "Next due" } th { "Last run" } }
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
                    }
                }
            }
        },
    ))
}
