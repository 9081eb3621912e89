//! Lifecycle planning at catalog scale: builds (once) a SQLite catalog of N conversations with
//! four artifacts each (two audio legs, a transcript, a screen recording) ending over the two
//! years before 2026-11-01, enables a policy deleting transcripts a year after the end, then
//! times `plan` (count, bytes and next due date, the indexed queries) and listing every due
//! artifact page by page, and prints peak memory.
//!
//! Each conversation has one participant, user `u{i % 100}` at extension `{1000 + i % 100}`.
//! With `--standing-holds K` (up to 10), K matters each get a standing hold (docs/operations.md,
//! "Legal holds") covering 3 % of the conversations, by three users (the first five) or three
//! extensions (the others), disjoint: ten cover 30 %. They stay, so `custodian plan lifecycle`
//! with a config naming the catalog sees them.
//!
//! With `--hold`, it then places a standing legal hold over the conversations of the middle
//! year (half of them, half of those due), times placing it, `plan` and the listing again with
//! the hold in place, and the matter's counts (`hold list`), and releases it.
//!
//! ```text
//! cargo run --release --example lifecycle_scale -- CATALOG.db [--conversations N] \
//!     [--standing-holds K] [--hold]
//! ```

#[path = "common/scale.rs"]
mod scale;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Parser;
use custodian::audit::{AuditKind, NewEvent};
use custodian::catalog::Catalog;
use custodian::catalog::holds::{HoldScope, Matter};
use custodian::catalog::lifecycle::{DueQuery, LifecyclePolicy, LifecycleVersion, RetentionAction};
use custodian::catalog::sqlite::SqliteCatalog;
use custodian::filter::Criteria;
use custodian::policy::lifecycle;
use custodian::repository::record::ArtifactType;

#[derive(Parser)]
struct Args {
    catalog: PathBuf,
    #[arg(long, default_value_t = 2_500_000)]
    conversations: usize,
    /// Also place a standing hold over the middle year's conversations and time what it costs.
    #[arg(long)]
    hold: bool,
    /// Standing holds to place (each over 3 % of the conversations, by user or extension).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=10))]
    standing_holds: u8,
}

fn event() -> NewEvent {
    NewEvent {
        at: Utc::now(),
        kind: AuditKind::LifecyclePolicyChanged,
        actor: "lifecycle_scale".into(),
        policy: Some("transcripts-1y".into()),
        run: None,
        tenant: None,
        conversation_id: None,
        details: serde_json::json!({}),
    }
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn populate(cat: &SqliteCatalog, n: usize) -> Result<()> {
    scale::conversations(cat, n)?;
    let policy = LifecyclePolicy::new(
        "transcripts-1y",
        "transcripts a year after the interaction",
        ArtifactType::Transcript,
        None,
        "lifecycle_scale",
    );
    cat.create_lifecycle_policy(&policy, &event())?;
    let version = LifecycleVersion::new(
        "v1",
        RetentionAction::Delete { days: 365 },
        "lifecycle_scale",
    );
    cat.publish_lifecycle_version("transcripts-1y", &version, &event())?;
    cat.update_lifecycle_policy("transcripts-1y", true, "v1", &[event()])?;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let cat = SqliteCatalog::open(&args.catalog)?;
    if cat.conversation_count()? == 0 {
        populate(&cat, args.conversations)?;
    }
    standing_holds(&cat, args.standing_holds)?;
    let artifacts = cat.live_artifact_count()?;
    let now: DateTime<Utc> = "2026-11-01T00:00:00Z".parse()?;
    let started = Instant::now();
    let plan = lifecycle::plan(&cat, now, None)?;
    let plan_secs = started.elapsed().as_secs_f64();
    let policy = cat.lifecycle_policies()?.remove(0);
    let query = DueQuery::of(&policy, now).expect("enabled delete policy");
    let (listed, list_secs) = list_due(&cat, &query)?;
    println!(
        "catalog: {artifacts} artifacts; plan: {} due ({} bytes, next due {}) in {plan_secs:.2} s; \
         listing all {listed} due in pages of 2000: {list_secs:.2} s; peak RSS {} KB",
        plan[0].artifacts,
        plan[0].bytes,
        plan[0].next_due.map_or("never".into(), |t| t.to_rfc3339()),
        peak_rss_kb()
    );
    if args.hold {
        hold(&cat, now, &query)?;
    }
    Ok(())
}

/// Lists every artifact `query` makes due, page by page: how many, and the seconds it took.
fn list_due(cat: &SqliteCatalog, query: &DueQuery) -> Result<(usize, f64)> {
    let started = Instant::now();
    let (mut listed, mut after) = (0usize, (0, -1));
    loop {
        let page = cat.due_artifacts(query, after, 2000)?;
        let Some(last) = page.last() else { break };
        after = (last.conversation_pk, last.ordinal);
        listed += page.len();
    }
    Ok((listed, started.elapsed().as_secs_f64()))
}

/// Matters `standing-0` … `standing-{k-1}`, each with a standing hold over three of the users
/// (the first five) or three of the extensions (the others) no other covers; placed once.
fn standing_holds(cat: &SqliteCatalog, k: u8) -> Result<()> {
    let event = |kind| NewEvent { kind, ..event() };
    for m in 0..u32::from(k) {
        let name = format!("standing-{m}");
        if !cat.matters(Some(&name))?.is_empty() {
            continue;
        }
        let matter = Matter {
            name: name.clone(),
            description: "lifecycle_scale".into(),
            created_at: Utc::now(),
            created_by: "lifecycle_scale".into(),
        };
        cat.create_matter(&matter, &event(AuditKind::MatterCreated))?;
        let three = (3 * m..3 * m + 3).collect::<Vec<_>>();
        let criteria = if m < 5 {
            Criteria {
                users: three.iter().map(|u| format!("u{u}")).collect(),
                ..Criteria::default()
            }
        } else {
            Criteria {
                extensions: three.iter().map(|u| format!("{}", 1000 + u)).collect(),
                ..Criteria::default()
            }
        };
        let started = Instant::now();
        cat.place_hold(
            &name,
            &HoldScope::Standing(Box::new(criteria)),
            Utc::now(),
            "lifecycle_scale",
            &event(AuditKind::LegalHoldPlaced),
            &[],
        )?;
        eprintln!(
            "placed standing hold {name} in {:.1} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

/// Places a standing hold over the middle year's conversations, times what it costs the
/// commands, and releases it.
fn hold(cat: &SqliteCatalog, now: DateTime<Utc>, query: &DueQuery) -> Result<()> {
    let event = |kind| NewEvent { kind, ..event() };
    if cat.matters(Some("scale"))?.is_empty() {
        let matter = Matter {
            name: "scale".into(),
            description: "lifecycle_scale".into(),
            created_at: Utc::now(),
            created_by: "lifecycle_scale".into(),
        };
        cat.create_matter(&matter, &event(AuditKind::MatterCreated))?;
    }
    let criteria = Criteria {
        tenants: vec!["acme".into()],
        start_after: Some("2025-05-01T00:00:00Z".parse()?),
        start_before: Some("2026-05-01T00:00:00Z".parse()?),
        ..Criteria::default()
    };
    let started = Instant::now();
    cat.place_hold(
        "scale",
        &HoldScope::Standing(Box::new(criteria)),
        Utc::now(),
        "lifecycle_scale",
        &event(AuditKind::LegalHoldPlaced),
        &[],
    )?;
    let place_ms = started.elapsed().as_secs_f64() * 1000.0;
    let started = Instant::now();
    let plan = lifecycle::plan(cat, now, None)?;
    let plan_secs = started.elapsed().as_secs_f64();
    let (listed, list_secs) = list_due(cat, query)?;
    let started = Instant::now();
    let matter = cat
        .matters(Some("scale"))?
        .pop()
        .expect("the matter just made");
    let counts_secs = started.elapsed().as_secs_f64();
    cat.release_holds(
        "scale",
        Utc::now(),
        "lifecycle_scale",
        &event(AuditKind::LegalHoldReleased),
        &[],
    )?;
    println!(
        "standing hold over {} conversations ({} artifacts): placed in {place_ms:.1} ms; \
         plan: {} due, {} held, in {plan_secs:.2} s; listing all {listed} due: {list_secs:.2} s; \
         the matter's counts: {counts_secs:.2} s; peak RSS {} KB",
        matter.conversations,
        matter.artifacts,
        plan[0].artifacts,
        plan[0].held,
        peak_rss_kb()
    );
    Ok(())
}
