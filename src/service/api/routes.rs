//! The API's endpoints, each with its OpenAPI description (docs/operations.md, "The JSON API").

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    ApiError, ApiJson, ApiPath, ApiQuery, ApiUser, BearerAuth, Body, ErrorBody, call, printable,
};
use crate::app::audit::{self, AuditError, Verification};
use crate::app::conversations::{self, ConversationsError, SearchPage, SearchRequest};
use crate::app::holds::{self, HoldError};
use crate::app::jobs::{self, JobsError};
use crate::app::lifecycle::{self, LifecycleError, Switch, SwitchOutcome};
use crate::app::serve::Started;
use crate::audit::{AuditEvent, AuditKind};
use crate::catalog::conversations::ConversationDetail;
use crate::catalog::holds::MatterState;
use crate::catalog::lifecycle::{LifecyclePolicy, LifecycleVersion, PendingChange};
use crate::catalog::{AuditQuery, FailedItem, JobRun, RunId, RunPage, RunStatus};
use crate::policy::roles::Permission;
use crate::service::web::AppState;

/// Rows a list returns unless `limit` asks for fewer, and the most it may ask for.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "custodian",
        description = "The JSON API of custodian's service: job runs, policies, lifecycle policies and their approvals, legal holds, the audit trail and conversations. Authenticate with `Authorization: Bearer TOKEN`."
    ),
    paths(
        list_runs,
        show_run,
        list_policies,
        run_policy,
        list_lifecycle,
        show_lifecycle,
        list_changes,
        enable,
        disable,
        activate,
        approve,
        reject,
        list_holds,
        show_hold,
        list_audit,
        last_verification,
        verify_audit,
        search_conversations,
        show_conversation,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub(super) struct ApiDoc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/runs", get(list_runs))
        .route("/api/v1/runs/{id}", get(show_run))
        .route("/api/v1/policies", get(list_policies))
        .route("/api/v1/policies/{name}/run", post(run_policy))
        .route("/api/v1/lifecycle/policies", get(list_lifecycle))
        .route("/api/v1/lifecycle/policies/{name}", get(show_lifecycle))
        .route("/api/v1/lifecycle/policies/{name}/enable", post(enable))
        .route("/api/v1/lifecycle/policies/{name}/disable", post(disable))
        .route("/api/v1/lifecycle/policies/{name}/activate", post(activate))
        .route("/api/v1/lifecycle/changes", get(list_changes))
        .route("/api/v1/lifecycle/changes/{id}/approve", post(approve))
        .route("/api/v1/lifecycle/changes/{id}/reject", post(reject))
        .route("/api/v1/holds", get(list_holds))
        .route("/api/v1/holds/{matter}", get(show_hold))
        .route("/api/v1/audit/events", get(list_audit))
        .route(
            "/api/v1/audit/verification",
            get(last_verification).post(verify_audit),
        )
        .route("/api/v1/conversations", get(search_conversations))
        .route(
            "/api/v1/conversations/{tenant}/{id}",
            get(show_conversation),
        )
        .route("/api/v1/{*rest}", axum::routing::any(no_such_endpoint))
}

async fn openapi_json() -> Body<utoipa::openapi::OpenApi> {
    Body(super::openapi())
}

async fn no_such_endpoint() -> ApiError {
    ApiError::not_found("no such endpoint; /api/v1/openapi.json lists them")
}

/// A page size: `limit` or the default, within 1..=500.
fn page_size(given: Option<usize>) -> Result<usize, ApiError> {
    let n = given.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&n) {
        Ok(n)
    } else {
        Err(ApiError::bad_request(format!(
            "limit: give a number from 1 to {MAX_LIMIT}"
        )))
    }
}

impl From<JobsError> for ApiError {
    fn from(e: JobsError) -> ApiError {
        match e {
            JobsError::NoSuchRun { run, .. } => ApiError::not_found(format!("no job run {run}")),
            JobsError::Catalog(c) => c.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> ApiError {
        match e {
            LifecycleError::Access(a) => a.into(),
            LifecycleError::Catalog(c) => c.into(),
            LifecycleError::NoSuchPolicy(_)
            | LifecycleError::NoSuchChange(_)
            | LifecycleError::NoSuchVersion { .. } => ApiError::not_found(e.to_string()),
            // The acknowledgments the change needs were not all given.
            LifecycleError::Refused(_) => ApiError::bad_request(e.to_string()),
            LifecycleError::NoVersionToEnable(_)
            | LifecycleError::NoActiveVersion(_)
            | LifecycleError::NoVersionToDisable(_) => ApiError::conflict(e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl From<HoldError> for ApiError {
    fn from(e: HoldError) -> ApiError {
        match e {
            HoldError::Access(a) => a.into(),
            HoldError::Catalog(c) => c.into(),
            HoldError::NoSuchMatter(_) => ApiError::not_found(e.to_string()),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> ApiError {
        match e {
            AuditError::Catalog(c) => c.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<ConversationsError> for ApiError {
    fn from(e: ConversationsError) -> ApiError {
        match e {
            ConversationsError::Access(a) => a.into(),
            ConversationsError::Catalog(c) => c.into(),
            ConversationsError::NotFound { .. } => ApiError::not_found(e.to_string()),
            ConversationsError::BadSearch { .. } => ApiError::bad_request(e.to_string()),
        }
    }
}

// Job runs and policies (JOBS_READ).

/// `/api/v1/runs`' query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RunsQuery {
    /// Only runs of this policy.
    policy: Option<String>,
    /// Only runs that ended this way (`running`, `succeeded`, `completed_with_failures`,
    /// `failed`, `timed_out`, `stalled`, `cancelled`).
    outcome: Option<String>,
    /// The page starts after this run id: the `next_before` of the previous page.
    before: Option<i64>,
    /// Rows in the page (1 to 500, default 50).
    limit: Option<usize>,
}

/// A page of the job history, newest first.
#[derive(Serialize, utoipa::ToSchema)]
struct RunsPage {
    runs: Vec<JobRun>,
    /// Pass as `before` for the next page; absent on the last page.
    next_before: Option<i64>,
}

/// The job history, newest first, by policy and outcome.
#[utoipa::path(get, path = "/api/v1/runs", params(RunsQuery), tag = "runs",
    responses((status = 200, body = RunsPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_runs(
    State(state): State<AppState>,
    who: ApiUser,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> Result<Body<RunsPage>, ApiError> {
    let limit = page_size(q.limit)?;
    let policy = q.policy.filter(|p| !p.is_empty());
    if let Some(p) = &policy {
        printable("policy", p)?;
    }
    let status = match q.outcome.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "outcome `{s}` is not one of {}",
                RunStatus::ALL.map(RunStatus::as_str).join(", ")
            ))
        })?),
    };
    let page = RunPage {
        policy,
        status,
        before: q.before.map(RunId),
        limit: limit + 1,
    };
    let mut runs = call(&state, &who, &[Permission::JobsRead], move |l| {
        Ok(l.catalog.job_runs_page(&page)?)
    })
    .await?;
    let next_before = (runs.len() > limit).then(|| {
        runs.truncate(limit);
        runs.last().map(|r| r.id.0)
    });
    Ok(Body(RunsPage {
        runs,
        next_before: next_before.flatten(),
    }))
}

/// One run with its failed items.
#[derive(Serialize, utoipa::ToSchema)]
struct RunDetail {
    run: JobRun,
    /// Its failed items with their reasons (the first 1,000).
    failed_items: Vec<FailedItem>,
}

/// One job run: counters, outcome, manifest, log file, notification and failed items.
#[utoipa::path(get, path = "/api/v1/runs/{id}", params(("id" = i64, Path, description = "The run's id")),
    tag = "runs", responses((status = 200, body = RunDetail), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show_run(
    State(state): State<AppState>,
    who: ApiUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Body<RunDetail>, ApiError> {
    let (run, failed_items) = call(&state, &who, &[Permission::JobsRead], move |l| {
        Ok(jobs::show(l, RunId(id))?)
    })
    .await?;
    Ok(Body(RunDetail { run, failed_items }))
}

/// A policy of the config (or the lifecycle sweep) and when it runs.
#[derive(Serialize, utoipa::ToSchema)]
struct PolicyView {
    name: String,
    enabled: bool,
    /// A cron pattern, or `manual`.
    schedule: String,
    timezone: String,
    /// When `custodian serve` next runs it, if it is enabled and scheduled.
    next_due: Option<DateTime<Utc>>,
    /// Its latest run.
    last_run: Option<JobRun>,
}

/// Every policy with its schedule, timezone, next due time and latest run.
#[utoipa::path(get, path = "/api/v1/policies", tag = "runs",
    responses((status = 200, body = Vec<PolicyView>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn list_policies(
    State(state): State<AppState>,
    who: ApiUser,
) -> Result<Body<Vec<PolicyView>>, ApiError> {
    let views = call(&state, &who, &[Permission::JobsRead], |l| {
        jobs::schedules(&l.config, Utc::now())
            .into_iter()
            .map(|s| {
                Ok(PolicyView {
                    name: s.policy.to_owned(),
                    enabled: s.enabled,
                    schedule: s.job.schedule.to_string(),
                    timezone: s.job.timezone.name().to_owned(),
                    next_due: s.next_due,
                    last_run: l.catalog.job_runs(Some(s.policy), 1)?.pop(),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await?;
    Ok(Body(views))
}

/// Whether a run asked for started or waits.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum RunState {
    /// Its process is going.
    Running,
    /// Every slot is taken (serve's `--max-concurrent`): it starts when a run ends.
    Queued,
}

/// A run asked for on demand, as serve took it.
#[derive(Serialize, utoipa::ToSchema)]
struct RunStarted {
    policy: String,
    state: RunState,
    /// The run's process (running only).
    process: Option<u32>,
    /// When its process started (running only).
    started_at: Option<DateTime<Utc>>,
    /// Where to follow it: the policy's job history.
    runs: String,
}

impl From<Started> for RunStarted {
    fn from(started: Started) -> RunStarted {
        let (policy, state, process, started_at) = match started {
            Started::Running {
                policy,
                process,
                at,
            } => (policy, RunState::Running, Some(process), Some(at)),
            Started::Queued { policy } => (policy, RunState::Queued, None, None),
        };
        RunStarted {
            runs: format!(
                "/api/v1/runs?policy={}",
                form_urlencoded::byte_serialize(policy.as_bytes()).collect::<String>()
            ),
            policy,
            state,
            process,
            started_at,
        }
    }
}

/// Runs a policy now, as `custodian serve` runs a scheduled one (JOBS_RUN; for `lifecycle`,
/// ARTIFACTS_LIFECYCLE_POLICY_RUN too): 202 once started or queued, 409 while a run of the
/// policy is going or waiting, 503 once serve is stopping.
#[utoipa::path(post, path = "/api/v1/policies/{name}/run",
    params(("name" = String, Path, description = "The policy's name (`lifecycle` for the sweep)")),
    tag = "runs", responses((status = 202, body = RunStarted), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn run_policy(
    State(state): State<AppState>,
    who: ApiUser,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    who.check_csrf(&headers)?;
    printable("policy", &name)?;
    let started = who.run_now(&state, name).await?;
    Ok((StatusCode::ACCEPTED, Body(RunStarted::from(started))).into_response())
}

// Lifecycle policies and their approvals (the lifecycle permissions, checked by `app`).

/// Every lifecycle policy with its versions.
#[utoipa::path(get, path = "/api/v1/lifecycle/policies", tag = "lifecycle",
    responses((status = 200, body = Vec<LifecyclePolicy>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn list_lifecycle(
    State(state): State<AppState>,
    who: ApiUser,
) -> Result<Body<Vec<LifecyclePolicy>>, ApiError> {
    Ok(Body(
        call(&state, &who, &[], |l| Ok(lifecycle::list(l)?)).await?,
    ))
}

/// One lifecycle policy with its versions.
#[utoipa::path(get, path = "/api/v1/lifecycle/policies/{name}",
    params(("name" = String, Path, description = "The policy's name")), tag = "lifecycle",
    responses((status = 200, body = LifecyclePolicy), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show_lifecycle(
    State(state): State<AppState>,
    who: ApiUser,
    ApiPath(name): ApiPath<String>,
) -> Result<Body<LifecyclePolicy>, ApiError> {
    Ok(Body(
        call(&state, &who, &[], move |l| Ok(lifecycle::show(l, &name)?)).await?,
    ))
}

/// `/api/v1/lifecycle/changes`' query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ChangesQuery {
    /// Decided and expired changes too, not only pending ones.
    all: Option<bool>,
}

/// Changes waiting for a second user's approval (with `all`, decided ones too).
#[utoipa::path(get, path = "/api/v1/lifecycle/changes", params(ChangesQuery), tag = "lifecycle",
    responses((status = 200, body = Vec<PendingChange>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_changes(
    State(state): State<AppState>,
    who: ApiUser,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> Result<Body<Vec<PendingChange>>, ApiError> {
    let all = q.all.unwrap_or(false);
    Ok(Body(
        call(&state, &who, &[], move |l| Ok(lifecycle::pending(l, all)?)).await?,
    ))
}

/// The acknowledgments a change needs, each by its token (`lifecycle show` and the 400 answer
/// name them).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Acknowledged {
    #[serde(default)]
    acknowledgments: Vec<String>,
}

/// An activation: the version to make active, and the acknowledgments it needs.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Activation {
    version: String,
    #[serde(default)]
    acknowledgments: Vec<String>,
}

/// What an enable, disable or activate did.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum SwitchResult {
    /// Applied at once.
    Applied {
        policy: String,
        enabled: bool,
        version: LifecycleVersion,
    },
    /// Under four eyes: requested, for another user to approve.
    Requested { change: PendingChange },
}

/// 200 with what was applied, or 202 with the change requested for approval.
fn switched(outcome: SwitchOutcome) -> Response {
    match outcome {
        SwitchOutcome::Applied(s) => (
            StatusCode::OK,
            Body(SwitchResult::Applied {
                policy: s.policy,
                enabled: s.enabled,
                version: s.version,
            }),
        )
            .into_response(),
        SwitchOutcome::Requested(change) => (
            StatusCode::ACCEPTED,
            Body(SwitchResult::Requested { change }),
        )
            .into_response(),
    }
}

/// Enables (or, unless `enable`, disables) policy `name` with the acknowledgments given.
async fn enable_or_disable(
    state: AppState,
    who: ApiUser,
    headers: &HeaderMap,
    name: String,
    enable: bool,
    given: Vec<String>,
) -> Result<Response, ApiError> {
    who.check_csrf(headers)?;
    let outcome = call(&state, &who, &[], move |l| {
        let what = if enable {
            Switch::Enable
        } else {
            Switch::Disable
        };
        Ok(lifecycle::switch(l, &name, what, &given)?)
    })
    .await?;
    Ok(switched(outcome))
}

/// Enables a lifecycle policy with its active version (ARTIFACTS_LIFECYCLE_POLICY_CREATE).
#[utoipa::path(post, path = "/api/v1/lifecycle/policies/{name}/enable",
    params(("name" = String, Path, description = "The policy's name")), request_body = Acknowledged,
    tag = "lifecycle", responses((status = 200, body = SwitchResult), (status = 202, body = SwitchResult),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn enable(
    State(state): State<AppState>,
    who: ApiUser,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<Acknowledged>,
) -> Result<Response, ApiError> {
    enable_or_disable(state, who, &headers, name, true, body.acknowledgments).await
}

/// Disables a lifecycle policy (ARTIFACTS_LIFECYCLE_POLICY_DELETE).
#[utoipa::path(post, path = "/api/v1/lifecycle/policies/{name}/disable",
    params(("name" = String, Path, description = "The policy's name")), request_body = Acknowledged,
    tag = "lifecycle", responses((status = 200, body = SwitchResult), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn disable(
    State(state): State<AppState>,
    who: ApiUser,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<Acknowledged>,
) -> Result<Response, ApiError> {
    enable_or_disable(state, who, &headers, name, false, body.acknowledgments).await
}

/// Makes a published version the active one (ARTIFACTS_LIFECYCLE_POLICY_CREATE).
#[utoipa::path(post, path = "/api/v1/lifecycle/policies/{name}/activate",
    params(("name" = String, Path, description = "The policy's name")), request_body = Activation,
    tag = "lifecycle", responses((status = 200, body = SwitchResult), (status = 202, body = SwitchResult),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn activate(
    State(state): State<AppState>,
    who: ApiUser,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<Activation>,
) -> Result<Response, ApiError> {
    who.check_csrf(&headers)?;
    let Activation {
        version,
        acknowledgments,
    } = body;
    let outcome = call(&state, &who, &[], move |l| {
        Ok(lifecycle::switch(
            l,
            &name,
            Switch::Activate(&version),
            &acknowledgments,
        )?)
    })
    .await?;
    Ok(switched(outcome))
}

/// Approves another user's pending change with the acknowledgments it needs
/// (ARTIFACTS_LIFECYCLE_POLICY_APPROVE; never the requester's own).
#[utoipa::path(post, path = "/api/v1/lifecycle/changes/{id}/approve",
    params(("id" = i64, Path, description = "The change's id")), request_body = Acknowledged,
    tag = "lifecycle", responses((status = 200, body = PendingChange), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn approve(
    State(state): State<AppState>,
    who: ApiUser,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Acknowledged>,
) -> Result<Body<PendingChange>, ApiError> {
    who.check_csrf(&headers)?;
    let change = call(&state, &who, &[], move |l| {
        Ok(lifecycle::approve(l, id, &body.acknowledgments)?)
    })
    .await?;
    Ok(Body(change))
}

/// Rejects a pending change (ARTIFACTS_LIFECYCLE_POLICY_APPROVE).
#[utoipa::path(post, path = "/api/v1/lifecycle/changes/{id}/reject",
    params(("id" = i64, Path, description = "The change's id")), tag = "lifecycle",
    responses((status = 200, body = PendingChange), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn reject(
    State(state): State<AppState>,
    who: ApiUser,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
) -> Result<Body<PendingChange>, ApiError> {
    who.check_csrf(&headers)?;
    let change = call(&state, &who, &[], move |l| Ok(lifecycle::reject(l, id)?)).await?;
    Ok(Body(change))
}

// Legal holds (LEGAL_HOLD_READ, checked by `app`).

/// Every matter with its holds and what its active holds cover.
#[utoipa::path(get, path = "/api/v1/holds", tag = "holds",
    responses((status = 200, body = Vec<MatterState>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn list_holds(
    State(state): State<AppState>,
    who: ApiUser,
) -> Result<Body<Vec<MatterState>>, ApiError> {
    Ok(Body(
        call(&state, &who, &[], |l| Ok(holds::list(l)?)).await?,
    ))
}

/// One matter with its holds.
#[utoipa::path(get, path = "/api/v1/holds/{matter}",
    params(("matter" = String, Path, description = "The matter's name")), tag = "holds",
    responses((status = 200, body = MatterState), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show_hold(
    State(state): State<AppState>,
    who: ApiUser,
    ApiPath(matter): ApiPath<String>,
) -> Result<Body<MatterState>, ApiError> {
    Ok(Body(
        call(&state, &who, &[], move |l| Ok(holds::show(l, &matter)?)).await?,
    ))
}

// The audit trail (AUDIT_READ).

/// `/api/v1/audit/events`' query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditEventsQuery {
    /// Only events of this kind (`conversation_exported`, `artifact_deleted`, …).
    kind: Option<String>,
    /// Only events of this run.
    run: Option<i64>,
    /// Only events of conversations with this id.
    conversation: Option<String>,
    /// The page starts after this sequence number: the `next_after` of the previous page.
    after: Option<i64>,
    /// Rows in the page (1 to 500, default 50).
    limit: Option<usize>,
}

/// A page of the audit trail, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
struct AuditPage {
    events: Vec<AuditEvent>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<i64>,
}

/// Audit events by kind, run or conversation, oldest first.
#[utoipa::path(get, path = "/api/v1/audit/events", params(AuditEventsQuery), tag = "audit",
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_audit(
    State(state): State<AppState>,
    who: ApiUser,
    ApiQuery(q): ApiQuery<AuditEventsQuery>,
) -> Result<Body<AuditPage>, ApiError> {
    let limit = page_size(q.limit)?;
    let kind = match q.kind.as_deref().filter(|k| !k.is_empty()) {
        None => None,
        Some(k) => Some(AuditKind::parse(k).ok_or_else(|| {
            ApiError::bad_request(format!(
                "kind `{k}` is not a kind of audit event (see `custodian audit list --help`)"
            ))
        })?),
    };
    let conversation_id = q.conversation.filter(|c| !c.is_empty());
    if let Some(c) = &conversation_id {
        printable("conversation", c)?;
    }
    let query = AuditQuery {
        run: q.run.map(RunId),
        conversation_id,
        kind,
        after_seq: q.after.unwrap_or(0),
        limit: limit + 1,
    };
    let mut events = call(&state, &who, &[Permission::AuditRead], move |l| {
        Ok(audit::events(l, &query)?)
    })
    .await?;
    let next_after = (events.len() > limit).then(|| {
        events.truncate(limit);
        events.last().map(|e| e.seq)
    });
    Ok(Body(AuditPage {
        events,
        next_after: next_after.flatten(),
    }))
}

/// The last verification recorded in the trail; null until someone asks for one.
#[derive(Serialize, utoipa::ToSchema)]
struct LastVerification {
    last: Option<Verification>,
}

/// The audit trail's last verification with its time (reads nothing of the chain; POST to
/// verify it now).
#[utoipa::path(get, path = "/api/v1/audit/verification", tag = "audit",
    responses((status = 200, body = LastVerification), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn last_verification(
    State(state): State<AppState>,
    who: ApiUser,
) -> Result<Body<LastVerification>, ApiError> {
    let last = call(&state, &who, &[Permission::AuditRead], |l| {
        Ok(audit::last_verification(l)?)
    })
    .await?;
    Ok(Body(LastVerification { last }))
}

/// Verifies the whole audit trail now, as `audit verify` does (walks the whole chain and reads
/// every anchor; one verification at a time), and records the result in the trail as a
/// `trail_verified` event, the last verification from then on.
#[utoipa::path(post, path = "/api/v1/audit/verification", tag = "audit",
    responses((status = 200, body = Verification), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn verify_audit(
    State(state): State<AppState>,
    who: ApiUser,
    headers: HeaderMap,
) -> Result<Body<Verification>, ApiError> {
    who.check_csrf(&headers)?;
    call(&state, &who, &[Permission::AuditRead], |_| Ok(())).await?;
    Ok(Body(state.verify_audit(&who.0).await?))
}

// Conversations (CONVERSATIONS_READ, checked by `app`).

/// `/api/v1/conversations`' query; every criterion given must hold.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ConversationsQuery {
    tenant: Option<String>,
    /// The conversation's id, exactly.
    id: Option<String>,
    /// A participant's user name, exactly.
    user: Option<String>,
    /// Started at or after this instant (RFC 3339).
    start_from: Option<DateTime<Utc>>,
    /// Started before this instant (RFC 3339).
    start_before: Option<DateTime<Utc>>,
    /// The page starts after this token: the `next` of the previous page.
    after: Option<String>,
    /// Rows in the page (1 to 500, default 50).
    limit: Option<usize>,
}

/// Conversations by tenant, id, user and start time, newest first.
#[utoipa::path(get, path = "/api/v1/conversations", params(ConversationsQuery), tag = "conversations",
    responses((status = 200, body = SearchPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn search_conversations(
    State(state): State<AppState>,
    who: ApiUser,
    ApiQuery(q): ApiQuery<ConversationsQuery>,
) -> Result<Body<SearchPage>, ApiError> {
    let empty_is_none = |v: Option<String>| v.filter(|s| !s.is_empty());
    let request = SearchRequest {
        tenant: empty_is_none(q.tenant),
        id: empty_is_none(q.id),
        user: empty_is_none(q.user),
        start_from: q.start_from,
        start_before: q.start_before,
        after: empty_is_none(q.after),
        limit: q.limit,
    };
    Ok(Body(
        call(&state, &who, &[], move |l| {
            Ok(conversations::search(l, request)?)
        })
        .await?,
    ))
}

/// One conversation: its record, artifacts and what became of each, exports with keys and
/// checksums, deletions, flags and the matters holding it.
#[utoipa::path(get, path = "/api/v1/conversations/{tenant}/{id}",
    params(("tenant" = String, Path, description = "The conversation's tenant"),
        ("id" = String, Path, description = "The conversation's id")),
    tag = "conversations", responses((status = 200, body = ConversationDetail),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show_conversation(
    State(state): State<AppState>,
    who: ApiUser,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> Result<Body<ConversationDetail>, ApiError> {
    printable("tenant", &tenant)?;
    printable("id", &id)?;
    Ok(Body(
        call(&state, &who, &[], move |l| {
            Ok(conversations::show(l, &tenant, &id)?)
        })
        .await?,
    ))
}
