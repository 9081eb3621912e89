//! `/metrics` in the Prometheus (OpenMetrics) text format, rendered with `prometheus-client`
//! from one [`Snapshot`] per scrape, and `/healthz` (docs/operations.md, "Metrics"). The run
//! totals come from the catalog, so they survive restarts and history pruning and only grow.
//! `/metrics` needs JOBS_READ (Prometheus sends an API token as a bearer token); `/healthz`
//! needs nothing and says only whether the catalog answers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::api::{ApiError, ApiUser, call};
use super::web::AppState;
use crate::app::metrics::{self, Snapshot};
use crate::app::serve::SchedulerStatus;
use crate::catalog::Catalog;
use crate::catalog::totals::RunTotals;
use crate::policy::roles::Permission;

/// The media type of what [`render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What `/metrics` and `/healthz` read besides the request: the catalog, and the scheduler
/// serve runs beside the portal. Added to the router as an extension.
#[derive(Clone)]
pub struct Sources {
    pub catalog: Arc<dyn Catalog>,
    pub scheduler: Arc<SchedulerStatus>,
}

/// `/metrics` and `/healthz`; the router must carry [`Sources`] as an extension.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(healthz))
}

async fn scrape(
    State(state): State<AppState>,
    who: ApiUser,
    Extension(sources): Extension<Sources>,
) -> Result<Response, ApiError> {
    let snapshot = call(&state, &who, &[Permission::JobsRead], move |_| {
        Ok(metrics::gather(
            sources.catalog.as_ref(),
            Some(&sources.scheduler),
        ))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], render(snapshot)).into_response())
}

/// What `/healthz` answers.
#[derive(serde::Serialize)]
struct Health {
    /// `ok`, or `unavailable` when the catalog does not answer.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

async fn healthz(Extension(sources): Extension<Sources>) -> Response {
    let checked =
        tokio::task::spawn_blocking(move || metrics::health(sources.catalog.as_ref())).await;
    let (status, body) = match checked {
        Ok(Ok(())) => (
            StatusCode::OK,
            Health {
                status: "ok",
                error: None,
            },
        ),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Health {
                status: "unavailable",
                error: Some(e.to_string()),
            },
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Health {
                status: "unavailable",
                error: Some(format!("the check's task failed: {e}")),
            },
        ),
    };
    (status, Json(body)).into_response()
}

/// The snapshot as the text a scrape receives.
pub fn render(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(snapshot)));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    text
}

#[derive(Debug)]
struct Scrape(Snapshot);

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// One metric family: its name, help, type, and a sample per label set.
fn family<'a, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: impl IntoIterator<Item = (Labels<'a>, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Each policy's sum of `field` over its outcomes.
fn per_policy(totals: &[RunTotals], field: impl Fn(&RunTotals) -> u64) -> BTreeMap<&str, u64> {
    let mut out = BTreeMap::new();
    for t in totals {
        *out.entry(t.policy.as_str()).or_default() += field(t);
    }
    out
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        family(
            &mut encoder,
            "custodian_catalog_up",
            "Whether the catalog answered this scrape (1) or not (0).",
            MetricType::Gauge,
            [(Vec::new(), ConstGauge::new(i64::from(s.runs.is_ok())))],
        )?;
        if let Ok(runs) = &s.runs {
            encode_runs(&mut encoder, runs)?;
        }
        if let Some(sched) = &s.scheduler {
            family(
                &mut encoder,
                "custodian_scheduler_lag_seconds",
                "How long the earliest occurrence not yet started has been due (0 when none is).",
                MetricType::Gauge,
                [(Vec::new(), ConstGauge::new(sched.lag_seconds(s.at)))],
            )?;
            family(
                &mut encoder,
                "custodian_scheduler_skipped",
                "Occurrences skipped because the policy's previous run was still going, since serve started.",
                MetricType::Counter,
                sched
                    .skipped
                    .iter()
                    .map(|(p, n)| (vec![("policy", p.as_str())], ConstCounter::new(*n))),
            )?;
            family(
                &mut encoder,
                "custodian_scheduler_start_latency_seconds",
                "How late the policy's last run started after it was due.",
                MetricType::Gauge,
                sched
                    .start_latency
                    .iter()
                    .map(|(p, v)| (vec![("policy", p.as_str())], ConstGauge::new(*v))),
            )?;
        }
        Ok(())
    }
}

/// A policy's totals of one outcome, labelled.
fn by_outcome(t: &RunTotals) -> Labels<'_> {
    vec![
        ("policy", t.policy.as_str()),
        ("outcome", t.outcome.as_str()),
    ]
}

/// The families made from the catalog's run totals and running runs.
fn encode_runs(
    encoder: &mut DescriptorEncoder,
    runs: &crate::catalog::totals::RunMetrics,
) -> Result<(), std::fmt::Error> {
    family(
        encoder,
        "custodian_runs",
        "Finished runs, by policy and outcome.",
        MetricType::Counter,
        runs.totals
            .iter()
            .map(|t| (by_outcome(t), ConstCounter::new(t.runs))),
    )?;
    let mut durations = encoder.encode_descriptor(
        "custodian_run_duration_seconds",
        "Durations of finished runs, start to finish, by policy and outcome.",
        None,
        MetricType::Histogram,
    )?;
    for t in &runs.totals {
        let labels = by_outcome(t);
        // The encoder adds up what each bucket is given: the runs above the bound below it.
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = t
            .durations
            .iter()
            .map(|&(le_ms, n)| (seconds(le_ms), n))
            .chain([(f64::INFINITY, t.runs)])
            .map(|(le, n)| (le, n.saturating_sub(std::mem::replace(&mut below, n))))
            .collect();
        durations
            .encode_family(&labels)?
            .encode_histogram::<Labels<'_>>(seconds(t.duration_ms), t.runs, &buckets, None)?;
    }
    for (name, help, field) in [
        (
            "custodian_exported_conversations",
            "Conversations exported by finished runs, by policy.",
            (|t: &RunTotals| t.exported) as fn(&RunTotals) -> u64,
        ),
        (
            "custodian_exported_objects",
            "Objects written to targets by finished runs, by policy.",
            |t| t.objects,
        ),
        (
            "custodian_exported_bytes",
            "Bytes written to targets by finished runs, by policy.",
            |t| t.bytes,
        ),
        (
            "custodian_failed_items",
            "Items that failed in finished runs, by policy.",
            |t| t.failed,
        ),
        (
            "custodian_artifacts_deleted",
            "Artifacts deleted by finished lifecycle sweeps.",
            |t| t.deleted,
        ),
    ] {
        family(
            encoder,
            name,
            help,
            MetricType::Counter,
            per_policy(&runs.totals, field)
                .into_iter()
                .map(|(p, n)| (vec![("policy", p)], ConstCounter::new(n))),
        )?;
    }
    family(
        encoder,
        "custodian_last_success_timestamp_seconds",
        "When the policy's last successful run finished (Unix time).",
        MetricType::Gauge,
        runs.totals
            .iter()
            .filter(|t| t.outcome == crate::catalog::RunStatus::Succeeded)
            .map(|t| {
                (
                    vec![("policy", t.policy.as_str())],
                    ConstGauge::new(t.last_finished_at.timestamp_millis() as f64 / 1000.0),
                )
            }),
    )?;
    family(
        encoder,
        "custodian_runs_running",
        "Runs going now (or left running by a process that died), by policy.",
        MetricType::Gauge,
        runs.running
            .iter()
            .map(|(p, n)| (vec![("policy", p.as_str())], ConstGauge::new(*n as i64))),
    )
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::app::serve::SchedulerState;
    use crate::catalog::RunStatus;
    use crate::catalog::totals::RunMetrics;

    fn totals(policy: &str, outcome: RunStatus, runs: u64) -> RunTotals {
        RunTotals {
            policy: policy.into(),
            outcome,
            runs,
            duration_ms: 1500 * runs,
            durations: vec![(1000, 0), (10_000, runs)],
            exported: 2 * runs,
            objects: 3 * runs,
            bytes: 100 * runs,
            failed: u64::from(outcome != RunStatus::Succeeded),
            deleted: 0,
            last_finished_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn totals_become_counters_histograms_and_gauges() {
        let at = Utc.timestamp_opt(1_700_000_100, 0).unwrap();
        let text = render(Snapshot {
            at,
            runs: Ok(RunMetrics {
                totals: vec![
                    totals("daily \"x\"", RunStatus::Succeeded, 2),
                    totals("daily \"x\"", RunStatus::Failed, 1),
                ],
                running: vec![("daily \"x\"".into(), 1)],
            }),
            scheduler: Some(SchedulerState {
                earliest_pending: Some(at - chrono::Duration::seconds(30)),
                ..SchedulerState::default()
            }),
        });
        let p = r#"policy="daily \"x\"""#;
        for line in [
            "custodian_catalog_up 1".to_string(),
            format!(r#"custodian_runs_total{{{p},outcome="succeeded"}} 2"#),
            format!(r#"custodian_runs_total{{{p},outcome="failed"}} 1"#),
            format!(r#"custodian_run_duration_seconds_sum{{{p},outcome="succeeded"}} 3.0"#),
            format!(r#"custodian_run_duration_seconds_count{{{p},outcome="succeeded"}} 2"#),
            format!(
                r#"custodian_run_duration_seconds_bucket{{le="1.0",{p},outcome="succeeded"}} 0"#
            ),
            format!(
                r#"custodian_run_duration_seconds_bucket{{le="10.0",{p},outcome="succeeded"}} 2"#
            ),
            format!(
                r#"custodian_run_duration_seconds_bucket{{le="+Inf",{p},outcome="succeeded"}} 2"#
            ),
            format!(r#"custodian_exported_bytes_total{{{p}}} 300"#),
            format!(r#"custodian_failed_items_total{{{p}}} 1"#),
            format!(r#"custodian_last_success_timestamp_seconds{{{p}}} 1700000000.0"#),
            format!(r#"custodian_runs_running{{{p}}} 1"#),
            "custodian_scheduler_lag_seconds 30.0".to_string(),
            "# EOF".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }

    #[test]
    fn an_unreachable_catalog_is_down_with_no_run_metrics() {
        let text = render(Snapshot {
            at: Utc::now(),
            runs: Err("connection refused".into()),
            scheduler: None,
        });
        assert!(
            text.lines().any(|l| l == "custodian_catalog_up 0"),
            "{text}"
        );
        assert!(!text.contains("custodian_runs_total"), "{text}");
    }
}
