//! `custodian index`: a parallel walk of the repository into the catalog.
//!
//! The layout's depth is fixed (tenant/YYYY/MM/DD/conversation), so the walk lists day
//! directories first and then works on days in parallel: each day compares the fingerprint
//! (mtime, size) of every conversation.json with the catalog's and reads only what changed.
//! Changes flow through a bounded channel to one writer that commits them in batches, so
//! memory stays flat whatever the repository's size.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use super::record::{Conversation, RECORD_FILE};
use crate::catalog::{Catalog, CatalogError, Fingerprint, IndexChange};

/// Changes committed per catalog transaction.
const BATCH: usize = 2000;

/// A record that could not be indexed.
#[derive(Clone, Debug, Serialize)]
pub struct RecordFailure {
    pub path: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for RecordFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// What an index pass did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IndexReport {
    /// Conversation directories seen.
    pub seen: u64,
    /// Records read and (re)indexed.
    pub indexed: u64,
    /// Records whose fingerprint had not changed.
    pub unchanged: u64,
    /// Conversations dropped from the catalog (gone, or no longer readable).
    pub removed: u64,
    pub failures: Vec<RecordFailure>,
}

/// Why an index pass could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("repository {path}: {source}")]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

enum Found {
    Change(IndexChange),
    Failure(RecordFailure, Option<IndexChange>),
}

fn is_digits(name: &str, len: usize) -> bool {
    name.len() == len && name.bytes().all(|b| b.is_ascii_digit())
}

/// The names of the directories in `dir`, sorted.
pub fn subdirs(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir()
            && let Ok(name) = entry.file_name().into_string()
        {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Day directories (`tenant/YYYY/MM/DD`, relative to `root`).
pub fn day_dirs(root: &Path) -> std::io::Result<Vec<String>> {
    let mut days = Vec::new();
    for tenant in subdirs(root)? {
        for year in subdirs(&root.join(&tenant))?
            .into_iter()
            .filter(|y| is_digits(y, 4))
        {
            let year_rel = format!("{tenant}/{year}");
            for month in subdirs(&root.join(&year_rel))?
                .into_iter()
                .filter(|m| is_digits(m, 2))
            {
                let month_rel = format!("{year_rel}/{month}");
                for day in subdirs(&root.join(&month_rel))?
                    .into_iter()
                    .filter(|d| is_digits(d, 2))
                {
                    days.push(format!("{month_rel}/{day}"));
                }
            }
        }
    }
    Ok(days)
}

/// Reads and checks one conversation.json against where it is stored.
pub fn read_record(root: &Path, rel_dir: &str) -> Result<Conversation, String> {
    let path = root.join(rel_dir).join(RECORD_FILE);
    let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
    let record = Conversation::from_json(&bytes)?;
    let (tenant, rest) = rel_dir.split_once('/').unwrap_or((rel_dir, ""));
    let dir_name = rest.rsplit('/').next().unwrap_or("");
    if record.tenant != tenant {
        return Err(format!(
            "tenant `{}` does not match its tenant directory `{tenant}`",
            record.tenant
        ));
    }
    if record.id != dir_name {
        return Err(format!(
            "id `{}` does not match its directory name `{dir_name}`",
            record.id
        ));
    }
    Ok(record)
}

fn scan_day(
    root: &Path,
    day: &str,
    catalog: &dyn Catalog,
    tx: &crossbeam_channel::Sender<Found>,
    unchanged: &AtomicU64,
    seen: &AtomicU64,
    progress: &indicatif::ProgressBar,
) -> Result<(), IndexError> {
    let mut known: HashMap<String, Fingerprint> =
        catalog.fingerprints_under(day)?.into_iter().collect();
    let day_path = root.join(day);
    let entries = match subdirs(&day_path) {
        Ok(e) => e,
        Err(e) => {
            let _ = tx.send(Found::Failure(
                RecordFailure {
                    path: day_path,
                    reason: e.to_string(),
                },
                None,
            ));
            return Ok(());
        }
    };
    for name in entries {
        seen.fetch_add(1, Ordering::Relaxed);
        progress.inc(1);
        let rel_dir = format!("{day}/{name}");
        let previous = known.remove(&rel_dir);
        let path = day_path.join(&name).join(RECORD_FILE);
        let fingerprint = match std::fs::metadata(&path) {
            Ok(m) => Fingerprint {
                mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                size: m.size(),
            },
            Err(e) => {
                let reason = if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "missing {RECORD_FILE}; the conversation is skipped until it is written"
                    )
                } else {
                    e.to_string()
                };
                let remove = previous.map(|_| IndexChange::Remove { rel_dir });
                let _ = tx.send(Found::Failure(RecordFailure { path, reason }, remove));
                continue;
            }
        };
        if previous == Some(fingerprint) {
            unchanged.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let found = match read_record(root, &rel_dir) {
            Ok(record) => Found::Change(IndexChange::Upsert {
                rel_dir,
                fingerprint,
                conversation: Box::new(record),
            }),
            Err(reason) => Found::Failure(
                RecordFailure { path, reason },
                previous.map(|_| IndexChange::Remove { rel_dir }),
            ),
        };
        if tx.send(found).is_err() {
            return Ok(());
        }
    }
    for rel_dir in known.into_keys() {
        let _ = tx.send(Found::Change(IndexChange::Remove { rel_dir }));
    }
    Ok(())
}

/// Brings the catalog up to date with the repository at `root`.
pub fn index(
    root: &Path,
    catalog: &dyn Catalog,
    progress: &indicatif::ProgressBar,
) -> Result<IndexReport, IndexError> {
    let days = day_dirs(root).map_err(|source| IndexError::Root {
        path: root.to_owned(),
        source,
    })?;
    let on_disk: HashSet<&str> = days.iter().map(String::as_str).collect();
    let vanished: Vec<String> = catalog
        .indexed_days()?
        .into_iter()
        .filter(|d| !on_disk.contains(d.as_str()))
        .collect();
    let (tx, rx) = crossbeam_channel::bounded::<Found>(4 * BATCH);
    let unchanged = AtomicU64::new(0);
    let seen = AtomicU64::new(0);
    let mut report = IndexReport::default();
    std::thread::scope(|scope| -> Result<(), IndexError> {
        let writer = scope.spawn(|| -> Result<IndexReport, IndexError> {
            let mut report = IndexReport::default();
            let mut batch: Vec<IndexChange> = Vec::with_capacity(BATCH);
            let flush = |batch: &mut Vec<IndexChange>,
                         report: &mut IndexReport|
             -> Result<(), IndexError> {
                let outcomes = catalog.apply_index(batch)?;
                for (change, outcome) in batch.drain(..).zip(outcomes) {
                    match (change, outcome) {
                        (IndexChange::Upsert { rel_dir, .. }, Some(reason)) => {
                            report.failures.push(RecordFailure {
                                path: root.join(rel_dir).join(RECORD_FILE),
                                reason,
                            })
                        }
                        (IndexChange::Upsert { .. }, None) => report.indexed += 1,
                        (IndexChange::Remove { .. }, _) => report.removed += 1,
                    }
                }
                Ok(())
            };
            for found in rx {
                match found {
                    Found::Change(c) => batch.push(c),
                    Found::Failure(f, remove) => {
                        report.failures.push(f);
                        batch.extend(remove);
                    }
                }
                if batch.len() >= BATCH {
                    flush(&mut batch, &mut report)?;
                }
            }
            flush(&mut batch, &mut report)?;
            Ok(report)
        });
        for day in &vanished {
            for (rel_dir, _) in catalog.fingerprints_under(day)? {
                let _ = tx.send(Found::Change(IndexChange::Remove { rel_dir }));
            }
        }
        let walked = days
            .par_iter()
            .try_for_each(|day| scan_day(root, day, catalog, &tx, &unchanged, &seen, progress));
        drop(tx);
        let written = writer.join().expect("index writer thread panicked");
        walked?;
        report = written?;
        Ok(())
    })?;
    report.unchanged = unchanged.into_inner();
    report.seen = seen.into_inner();
    report.failures.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}
