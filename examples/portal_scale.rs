//! A catalog the size the service's figures are measured at (docs/performance.md, "The web
//! portal"): N conversations (as `lifecycle_scale` makes them) and M job runs of ten policies
//! with every outcome, one in three with a failed item (the failed and completed-with-failures
//! ones). Built once; rerunning on a built catalog only reports its size.
//!
//! The first sixty runs are made through the catalog as a run makes them; the rest copy those
//! rows, with their failed items, in one transaction per doubling (a million begin/finish
//! transactions, each synced, would take hours and measure nothing the figures are about).
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

/// Doubles the job history until it holds at least `runs` rows: each copy is a later run with
/// the same policy, outcome and counters, and the same failed items (so a copied run's page
/// shows them as its template's does). A copy is written `running` and then given its
/// template's outcome, so the catalog's own trigger adds it to `run_totals` as it adds a run
/// that ends, and `/metrics` counts every run.
fn copy_runs(catalog: &PathBuf, runs: u64) -> Result<()> {
    let started = Instant::now();
    let mut db = rusqlite::Connection::open(catalog)?;
    db.pragma_update(None, "synchronous", "OFF")?;
    let runs_columns = columns(&db, "job_runs", &["id", "status"])?;
    let items_columns = columns(&db, "run_items", &["run"])?;
    loop {
        let (have, last): (u64, u64) = db.query_row(
            "SELECT count(*), coalesce(max(id), 0) FROM job_runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if have >= runs {
            break;
        }
        if have != last {
            bail!(
                "{}: job run ids are not 1 to {have}; build the catalog afresh",
                catalog.display()
            );
        }
        let copies = (runs - have).min(have);
        let tx = db.transaction()?;
        tx.execute(
            &format!(
                "INSERT INTO job_runs (id, status, {runs_columns}) \
                 SELECT id + ?1, 'running', {runs_columns} FROM job_runs WHERE id <= ?2"
            ),
            [have, copies],
        )?;
        tx.execute(
            &format!(
                "INSERT INTO run_items (run, {items_columns}) \
                 SELECT run + ?1, {items_columns} FROM run_items WHERE run <= ?2"
            ),
            [have, copies],
        )?;
        tx.execute(
            "UPDATE job_runs SET status = \
             (SELECT t.status FROM job_runs t WHERE t.id = job_runs.id - ?1) WHERE id > ?1",
            [have],
        )?;
        tx.commit()?;
    }
    eprintln!(
        "made {runs} job runs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The columns of `table` but those in `except`, comma-separated.
fn columns(db: &rusqlite::Connection, table: &str, except: &[&str]) -> Result<String> {
    let columns: Vec<String> = db
        .prepare("SELECT name FROM pragma_table_info(?1)")?
        .query_map([table], |r| r.get::<_, String>(0))?
        .filter(|name| !matches!(name, Ok(n) if except.contains(&n.as_str())))
        .collect::<rusqlite::Result<_>>()?;
    if columns.is_empty() {
        bail!("the catalog has no {table} table");
    }
    Ok(columns.join(", "))
}
