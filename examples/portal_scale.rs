//! A catalog the size the service's figures are measured at (docs/performance.md, "The web
//! portal"): N conversations (as `lifecycle_scale` makes them) and M job runs of ten policies
//! with every outcome, one in ten with a failed item. Built once; rerunning on a built catalog
//! only reports its size.
//!
//! The first runs are made through the catalog as a run makes them; the rest copy those rows
//! in one statement per doubling (a million begin/finish transactions, each synced, would take
//! hours and measure nothing the figures are about).
//!
//! ```text
//! cargo run --release --example portal_scale -- CATALOG.db [--conversations N] [--runs M]
//! ```

#[path = "common/scale.rs"]
mod scale;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Parser;
use custodian::catalog::sqlite::SqliteCatalog;
use custodian::catalog::{Catalog, Counters, ItemOutcome, Mode, RunStatus};

#[derive(Parser)]
struct Args {
    catalog: PathBuf,
    #[arg(long, default_value_t = 1_000_000)]
    conversations: usize,
    #[arg(long, default_value_t = 1_000_000)]
    runs: u64,
}

const POLICIES: usize = 10;
const OUTCOMES: [RunStatus; 6] = [
    RunStatus::Succeeded,
    RunStatus::CompletedWithFailures,
    RunStatus::Failed,
    RunStatus::TimedOut,
    RunStatus::Stalled,
    RunStatus::Cancelled,
];

fn main() -> Result<()> {
    let args = Args::parse();
    let cat = SqliteCatalog::open(&args.catalog)?;
    if cat.conversation_count()? == 0 {
        scale::conversations(&cat, args.conversations)?;
    }
    if cat.job_runs(None, 1)?.is_empty() {
        template_runs(&cat)?;
        drop(cat);
        copy_runs(&args.catalog, args.runs)?;
    }
    let db = rusqlite::Connection::open(&args.catalog)?;
    let (runs, conversations): (i64, i64) = db.query_row(
        "SELECT (SELECT count(*) FROM job_runs), (SELECT count(*) FROM conversations)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    println!(
        "catalog {}: {runs} job runs, {conversations} conversations",
        args.catalog.display()
    );
    Ok(())
}

/// Sixty runs, each policy with each outcome; the `Failed` and `CompletedWithFailures` ones
/// with a failed item.
fn template_runs(cat: &SqliteCatalog) -> Result<()> {
    for p in 0..POLICIES {
        let policy = format!("policy-{p}");
        for status in OUTCOMES {
            let run = cat.begin_run(&policy, Mode::Incremental, "archive")?;
            let failed = matches!(status, RunStatus::Failed | RunStatus::CompletedWithFailures);
            if failed {
                let item = ItemOutcome::Failed {
                    subject: format!("acme/c{p}"),
                    error: "reading customer.wav: size 4800000 expected, 12 found".into(),
                };
                cat.record_outcomes(run, &policy, &[item])?;
            }
            let counters = Counters {
                selected: 2_000,
                exported: 2_000 - u64::from(failed),
                failed: u64::from(failed),
                objects: 8_000,
                bytes: 77_000_000_000,
                ..Counters::default()
            };
            cat.finish_run(
                run,
                status,
                &counters,
                Some("_custodian/manifests/x.json"),
                None,
            )?;
        }
    }
    Ok(())
}

/// Doubles the job history until it holds at least `runs` rows.
fn copy_runs(catalog: &PathBuf, runs: u64) -> Result<()> {
    let started = Instant::now();
    let db = rusqlite::Connection::open(catalog)?;
    db.pragma_update(None, "synchronous", "OFF")?;
    let columns: Vec<String> = db
        .prepare("SELECT name FROM pragma_table_info('job_runs') WHERE name <> 'id'")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if columns.is_empty() {
        bail!("{} has no job_runs table", catalog.display());
    }
    let columns = columns.join(", ");
    loop {
        let have: u64 = db.query_row("SELECT count(*) FROM job_runs", [], |r| r.get(0))?;
        if have >= runs {
            break;
        }
        db.execute(
            &format!(
                "INSERT INTO job_runs ({columns}) SELECT {columns} FROM job_runs ORDER BY id LIMIT ?1"
            ),
            [runs - have],
        )?;
    }
    eprintln!(
        "made {runs} job runs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
