//! `custodian index`: a parallel walk of the repository into the catalog.
//!
//! The layout's depth is fixed (tenant/YYYY/MM/DD/conversation), so the walk lists day
//! directories first and then works on days in parallel: each day compares the fingerprint
//! (mtime, size) of every conversation.json with the catalog's and reads only what changed.
//! Changes flow through a bounded channel to one writer that commits them in batches, so
//! memory stays flat whatever the repository's size.
//!
//! The repository is hostile input: every directory and record is reached through
//! [`confined::Dir`] handles, so a symbolic link anywhere (a tenant, a day, a conversation
//! directory, a conversation.json) is reported and skipped, never followed; a FIFO or device
//! in place of a record fails that record without blocking; and a record is read only up to
//! `max_record_bytes`, checked on the open file before reading.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;
use rustix::fs::FileType;
use serde::Serialize;

use crate::catalog::{Catalog, CatalogError, Fingerprint, IndexChange};
use crate::confined::{self, ConfinedError, Dir};
use crate::pipeline::Control;
use crate::progress::Progress;
use crate::repository::record::{Conversation, RECORD_FILE};

#[cfg(feature = "remote")]
mod store;
#[cfg(feature = "remote")]
pub use store::index_store;

/// Changes committed per catalog transaction.
const BATCH: usize = 2000;

/// Why a directory that is a link is not walked.
const LINK_SKIPPED: &str = "is a symbolic link; custodian never follows links in the repository, so it is skipped (put the directory itself in its place)";

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
    /// The pass was stopped (a signal, its run's time limit) before it saw every directory;
    /// what it found was committed, and the next pass goes on from there.
    pub stopped: bool,
    pub failures: Vec<RecordFailure>,
    /// Objects on Object Lock targets whose legal-hold status was set after the pass, as the
    /// `legal_hold` flag the recorder changed on an exported conversation asks
    /// (docs/operations.md, "Legal holds").
    pub legal_hold_statuses_set: u64,
    /// Conversations whose objects' legal-hold status could not be set (the store out of
    /// reach, say), with why, one line each: they stay queued for `custodian hold sync` or the
    /// next pass.
    pub legal_hold_syncs_left: Vec<String>,
}

/// Why an index pass could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("repository {0}")]
    Root(ConfinedError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error("starting the index's listing threads: {0}")]
    Threads(rayon::ThreadPoolBuildError),
}

enum Found {
    Change(IndexChange),
    Failure(RecordFailure, Option<IndexChange>),
}

fn is_digits(name: &str, len: usize) -> bool {
    name.len() == len && name.bytes().all(|b| b.is_ascii_digit())
}

/// Why a confined path could not be used, without the path (messages name it already).
pub fn reason(e: &ConfinedError) -> String {
    match e {
        ConfinedError::Symlink { .. } => {
            "is a symbolic link or lies behind one; custodian never follows links in the repository"
                .into()
        }
        ConfinedError::Escape { .. } => "leaves the repository".into(),
        ConfinedError::NotRegular { kind, .. } => format!("is a {kind}, not a regular file"),
        ConfinedError::Io { source, .. } => source.to_string(),
    }
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_owned()
    } else {
        format!("{rel}/{name}")
    }
}

/// The day directories of a repository, and what the walk to them met.
#[derive(Debug, Default)]
pub struct Days {
    /// `tenant/YYYY/MM/DD`, relative to the root.
    pub days: Vec<String>,
    /// Directories that could not be listed: what the catalog holds under them is kept.
    pub unlisted: Vec<String>,
    /// Links in place of directories (skipped), directories that could not be listed.
    pub failures: Vec<RecordFailure>,
}

impl Days {
    /// True when `day` lies under a directory that could not be listed.
    fn unlisted(&self, day: &str) -> bool {
        self.unlisted.iter().any(|u| {
            day.strip_prefix(u.as_str())
                .is_some_and(|r| r.starts_with('/'))
        })
    }
}

/// Walks `root` down to its day directories (`tenant/YYYY/MM/DD`) without following a link.
/// Only an unreadable root is an error.
pub fn day_dirs(root: &Dir) -> Result<Days, ConfinedError> {
    let accept: [fn(&str) -> bool; 4] = [
        |_| true,
        |n| is_digits(n, 4),
        |n| is_digits(n, 2),
        |n| is_digits(n, 2),
    ];
    let mut out = Days::default();
    let mut level = vec![String::new()];
    for (depth, accept) in accept.iter().enumerate() {
        let mut next = Vec::new();
        for rel in &level {
            let entries = match root.entries(rel) {
                Ok(entries) => entries,
                Err(e) if depth == 0 => return Err(e),
                Err(e) => {
                    out.failures.push(RecordFailure {
                        path: root.display_path(rel),
                        reason: reason(&e),
                    });
                    out.unlisted.push(rel.clone());
                    continue;
                }
            };
            // The quarantine area under the root holds no conversations (docs/operations.md,
            // "Quarantine"): never walked.
            let quarantine = |e: &crate::confined::Entry| {
                depth == 0 && e.name == super::quarantine::QUARANTINE_DIR
            };
            for entry in entries
                .into_iter()
                .filter(|e| accept(&e.name) && !quarantine(e))
            {
                let child = join(rel, &entry.name);
                match entry.file_type {
                    FileType::Directory => next.push(child),
                    FileType::Symlink => out.failures.push(RecordFailure {
                        path: root.display_path(&child),
                        reason: LINK_SKIPPED.into(),
                    }),
                    _ => {}
                }
            }
        }
        level = next;
    }
    out.days = level;
    Ok(out)
}

/// Reads and checks the conversation.json of `rel_dir` against where it is stored, with the
/// fingerprint of the file read. A link, a special file, or a file over `max_bytes` (by its
/// size when opened, or by what a growing file yields) is refused; no more than
/// `max_bytes + 1` bytes are ever read.
pub fn read_record(
    root: &Dir,
    rel_dir: &str,
    max_bytes: u64,
) -> Result<(Conversation, Fingerprint), String> {
    let rel = format!("{rel_dir}/{RECORD_FILE}");
    let file = root.open_file(&rel).map_err(|e| reason(&e))?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if meta.len() > max_bytes {
        return Err(format!(
            "{} bytes, more than max_record_bytes ({max_bytes}) in [repository] allows; it was not read (raise the limit if the record is genuine)",
            meta.len()
        ));
    }
    let bytes = read_capped(file, meta.len(), max_bytes)?;
    let fingerprint = fingerprint_of(&meta);
    let record = Conversation::from_json(&bytes)?;
    check_record(&record, rel_dir)?;
    Ok((record, fingerprint))
}

/// Checks that a record's tenant and id are the names of the directories it is stored in
/// (`rel_dir` is `tenant/YYYY/MM/DD/id`).
pub fn check_record(record: &Conversation, rel_dir: &str) -> Result<(), String> {
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
    Ok(())
}

/// The bytes of `file`, `len` long when opened, read no further than `max_bytes + 1`: a file
/// that grows past the cap while it is read is refused, not read on.
fn read_capped(file: impl Read, len: u64, max_bytes: u64) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(len.min(max_bytes) as usize);
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!(
            "grew past max_record_bytes ({max_bytes}) in [repository] while being read; it was not indexed"
        ));
    }
    Ok(bytes)
}

fn fingerprint_of(meta: &std::fs::Metadata) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    Fingerprint {
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        size: meta.size(),
    }
}

/// The modification time of what `st` describes, in nanoseconds since the epoch.
pub fn mtime_ns(st: &rustix::fs::Stat) -> i64 {
    st.st_mtime * 1_000_000_000 + st.st_mtime_nsec as i64
}

/// The fingerprint of the conversation.json at `rel` (under `dir`), without following a link.
/// Anything but a regular file is refused with the reason.
pub fn stat_record(dir: &Dir, rel: &str) -> Result<Fingerprint, ConfinedError> {
    let st = dir.stat(rel)?;
    let file_type = FileType::from_raw_mode(st.st_mode);
    match file_type {
        FileType::RegularFile => Ok(Fingerprint {
            mtime_ns: mtime_ns(&st),
            size: st.st_size as u64,
        }),
        FileType::Symlink => Err(ConfinedError::Symlink {
            path: dir.display_path(rel),
        }),
        _ => Err(ConfinedError::NotRegular {
            path: dir.display_path(rel),
            kind: confined::kind_name(file_type),
        }),
    }
}

/// What the walk of an index pass counts, beside what its writer commits.
#[derive(Default)]
struct Counters {
    unchanged: AtomicU64,
    seen: AtomicU64,
    /// Set when a day was left unfinished because the pass was stopped.
    cut_short: AtomicBool,
}

/// What every day of a pass shares: where findings go, the counters, and the run's control.
struct Shared<'a> {
    catalog: &'a dyn Catalog,
    tx: crossbeam_channel::Sender<Found>,
    counters: Counters,
    progress: &'a dyn Progress,
    control: &'a Control,
}

impl Shared<'_> {
    /// False (and the pass marked cut short) once the pass is asked to stop.
    fn going_on(&self) -> bool {
        if self.control.is_stopped() {
            self.counters.cut_short.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Counts one conversation seen.
    fn saw(&self) {
        self.counters.seen.fetch_add(1, Ordering::Relaxed);
        self.progress.advance(1);
    }

    /// Sends a finding; false when the writer is gone (it failed, and the pass ends).
    fn send(&self, found: Found) -> bool {
        self.tx.send(found).is_ok()
    }
}

/// A failure of the conversation at `rel_dir`, which leaves the catalog if it was indexed.
fn failed(path: PathBuf, reason: String, rel_dir: &str, indexed: bool) -> Found {
    let remove = indexed.then(|| IndexChange::Remove {
        rel_dir: rel_dir.to_owned(),
    });
    Found::Failure(RecordFailure { path, reason }, remove)
}

/// Why a conversation directory without a record is skipped.
fn missing_record() -> String {
    format!("missing {RECORD_FILE}; the conversation is skipped until it is written")
}

/// One pass over a repository on disk.
struct Pass<'a> {
    root: &'a Dir,
    max_record_bytes: u64,
    shared: &'a Shared<'a>,
}

impl Pass<'_> {
    fn scan_day(&self, day: &str) -> Result<(), IndexError> {
        let shared = self.shared;
        if !shared.going_on() {
            return Ok(());
        }
        let mut known: HashMap<String, Fingerprint> = shared
            .catalog
            .fingerprints_under(day)?
            .into_iter()
            .collect();
        let listed = self
            .root
            .open_dir(day)
            .and_then(|d| Ok((d.entries("")?, d)));
        let (entries, day_dir) = match listed {
            Ok(listed) => listed,
            Err(e) => {
                shared.send(Found::Failure(
                    RecordFailure {
                        path: self.root.display_path(day),
                        reason: reason(&e),
                    },
                    None,
                ));
                return Ok(());
            }
        };
        for entry in entries {
            if !shared.going_on() {
                // What was not looked at stays as the catalog has it.
                return Ok(());
            }
            #[cfg(feature = "failpoints")]
            fail::fail_point!("index-record");
            let is_link = match entry.file_type {
                FileType::Directory => false,
                FileType::Symlink => true,
                _ => continue,
            };
            shared.saw();
            let rel_dir = format!("{day}/{}", entry.name);
            let previous = known.remove(&rel_dir);
            let path = self.root.display_path(format!("{rel_dir}/{RECORD_FILE}"));
            let fail =
                |path: PathBuf, reason: String| failed(path, reason, &rel_dir, previous.is_some());
            let found = if is_link {
                fail(self.root.display_path(&rel_dir), LINK_SKIPPED.into())
            } else {
                match stat_record(&day_dir, &format!("{}/{RECORD_FILE}", entry.name)) {
                    Ok(fp) if previous == Some(fp) => {
                        shared.counters.unchanged.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Ok(_) => match read_record(self.root, &rel_dir, self.max_record_bytes) {
                        Ok((record, fingerprint)) => Found::Change(IndexChange::Upsert {
                            rel_dir: rel_dir.clone(),
                            fingerprint,
                            conversation: Box::new(record),
                        }),
                        Err(why) => fail(path, why),
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        fail(path, missing_record())
                    }
                    Err(e) => fail(path, reason(&e)),
                }
            };
            if !shared.send(found) {
                return Ok(());
            }
        }
        for rel_dir in known.into_keys() {
            shared.send(Found::Change(IndexChange::Remove { rel_dir }));
        }
        Ok(())
    }
}

/// Brings the catalog up to date with the repository at `root`, reading no record larger than
/// `max_record_bytes`. A stop asked of `control` ends the pass early: the days in hand stop at
/// the next directory, what was found is committed, and the report says it was stopped.
pub fn index(
    root: &Path,
    max_record_bytes: u64,
    catalog: &dyn Catalog,
    progress: &dyn Progress,
    control: &Control,
) -> Result<IndexReport, IndexError> {
    let root = Dir::open_root(root).map_err(IndexError::Root)?;
    let walked = day_dirs(&root).map_err(IndexError::Root)?;
    let record_path = |rel_dir: &str| root.display_path(format!("{rel_dir}/{RECORD_FILE}"));
    run_pass(
        catalog,
        progress,
        control,
        walked,
        &record_path,
        |shared, days| {
            let pass = Pass {
                root: &root,
                max_record_bytes,
                shared,
            };
            days.par_iter().try_for_each(|day| pass.scan_day(day))
        },
    )
}

/// Runs one pass: the days `walked` found go to `walk`, which scans them (in parallel) and
/// sends what it finds; one writer commits the findings in batches, and removes what the
/// catalog holds of days that are gone. `record_path` names a conversation's record in
/// failures.
fn run_pass(
    catalog: &dyn Catalog,
    progress: &dyn Progress,
    control: &Control,
    walked: Days,
    record_path: &(dyn Fn(&str) -> PathBuf + Sync),
    walk: impl FnOnce(&Shared<'_>, &[String]) -> Result<(), IndexError>,
) -> Result<IndexReport, IndexError> {
    let listed: HashSet<&str> = walked.days.iter().map(String::as_str).collect();
    let vanished: Vec<String> = catalog
        .indexed_days()?
        .into_iter()
        .filter(|d| !listed.contains(d.as_str()) && !walked.unlisted(d))
        .collect();
    let (tx, rx) = crossbeam_channel::bounded::<Found>(4 * BATCH);
    let shared = Shared {
        catalog,
        tx,
        counters: Counters::default(),
        progress,
        control,
    };
    let mut report = IndexReport {
        failures: walked.failures.clone(),
        ..IndexReport::default()
    };
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
                                path: record_path(&rel_dir),
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
        let walked = (|| {
            for day in &vanished {
                for (rel_dir, _) in catalog.fingerprints_under(day)? {
                    shared.send(Found::Change(IndexChange::Remove { rel_dir }));
                }
            }
            walk(&shared, &walked.days)
        })();
        let Shared { tx, counters, .. } = shared;
        drop(tx);
        let written = writer.join().expect("index writer thread panicked");
        walked?;
        let written = written?;
        report.indexed = written.indexed;
        report.removed = written.removed;
        report.failures.extend(written.failures);
        report.unchanged = counters.unchanged.into_inner();
        report.seen = counters.seen.into_inner();
        report.stopped = counters.cut_short.into_inner();
        Ok(())
    })?;
    report.failures.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::sqlite::SqliteCatalog;
    use crate::progress::Silent;
    use std::os::unix::fs::symlink;

    const CAP: u64 = 16 << 20;

    fn record(tenant: &str, id: &str) -> String {
        format!(
            r#"{{"schema":1,"id":"{id}","tenant":"{tenant}","type":"voice","source_platform":"cisco",
            "direction":"inbound","start":"2026-01-02T10:00:00Z","end":"2026-01-02T10:01:00Z"}}"#
        )
    }

    /// A repository under `repo/` holding `acme/2026/01/02/<id>` for each id, a catalog, and
    /// `outside/` beside the repository for link targets.
    struct Repo {
        dir: tempfile::TempDir,
        catalog: SqliteCatalog,
    }

    impl Repo {
        fn new(ids: &[&str]) -> Repo {
            let dir = tempfile::tempdir().unwrap();
            let catalog = SqliteCatalog::open(&dir.path().join("c.db")).unwrap();
            let repo = Repo { dir, catalog };
            std::fs::create_dir_all(repo.path("repo")).unwrap();
            std::fs::create_dir_all(repo.path("outside")).unwrap();
            for id in ids {
                repo.write("repo/acme/2026/01/02", id);
            }
            repo
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        fn write(&self, day: &str, id: &str) {
            let tenant = day.split('/').nth(1).unwrap_or("acme");
            let dir = self.path(&format!("{day}/{id}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(RECORD_FILE), record(tenant, id)).unwrap();
        }

        fn index_with(&self, cap: u64, control: &Control) -> IndexReport {
            index(&self.path("repo"), cap, &self.catalog, &Silent, control).unwrap()
        }

        fn index(&self) -> IndexReport {
            self.index_with(CAP, &Control::default())
        }

        fn failure(&self, report: &IndexReport, rel: &str) -> String {
            let path = self.path(rel);
            report
                .failures
                .iter()
                .find(|f| f.path == path)
                .unwrap_or_else(|| panic!("no failure for {rel}: {:?}", report.failures))
                .reason
                .clone()
        }
    }

    #[test]
    fn the_quarantine_area_under_the_root_is_never_indexed() {
        let repo = Repo::new(&["c1"]);
        // Laid out like a tenant, with a record, under the default quarantine area's name.
        let area = format!(
            "repo/{}/2026/01/02",
            super::super::quarantine::QUARANTINE_DIR
        );
        repo.write(&area, "q1");
        let report = repo.index();
        assert_eq!((report.seen, report.indexed), (1, 1), "{report:?}");
        assert!(report.failures.is_empty(), "{:?}", report.failures);
    }

    #[test]
    fn a_symlinked_directory_at_any_level_is_skipped_and_reported() {
        let repo = Repo::new(&["c1"]);
        // A complete tenant, year, month, day and conversation outside the repository, each
        // linked in at its level.
        repo.write("outside/globex/2026/01/02", "g1");
        let out = repo.path("outside/globex");
        for (link, to) in [
            ("repo/globex", out.clone()),
            ("repo/acme/2025", out.join("2026")),
            ("repo/acme/2026/02", out.join("2026/01")),
            ("repo/acme/2026/01/03", out.join("2026/01/02")),
            ("repo/acme/2026/01/02/g1", out.join("2026/01/02/g1")),
        ] {
            symlink(to, repo.path(link)).unwrap();
        }
        let report = repo.index();
        assert_eq!(report.indexed, 1, "{:?}", report.failures);
        for link in [
            "repo/globex",
            "repo/acme/2025",
            "repo/acme/2026/02",
            "repo/acme/2026/01/03",
            "repo/acme/2026/01/02/g1",
        ] {
            let reason = repo.failure(&report, link);
            assert!(reason.contains("never follows links"), "{link}: {reason}");
        }
        assert_eq!(repo.catalog.conversation_count().unwrap(), 1);
    }

    #[test]
    fn a_conversation_directory_swapped_for_a_link_leaves_the_catalog() {
        let repo = Repo::new(&["c1", "c2"]);
        assert_eq!(repo.index().indexed, 2);
        let c2 = repo.path("repo/acme/2026/01/02/c2");
        std::fs::rename(&c2, repo.path("outside/c2")).unwrap();
        symlink(repo.path("outside/c2"), &c2).unwrap();
        let report = repo.index();
        assert_eq!(report.removed, 1);
        assert!(
            repo.failure(&report, "repo/acme/2026/01/02/c2")
                .contains("symbolic link")
        );
        assert_eq!(repo.catalog.conversation_count().unwrap(), 1);
    }

    #[test]
    fn a_record_that_is_a_link_fifo_or_directory_fails_alone_without_blocking() {
        let repo = Repo::new(&["good", "link", "fifo", "dir", "zero"]);
        let day = "repo/acme/2026/01/02";
        let json = |id: &str| repo.path(&format!("{day}/{id}/{RECORD_FILE}"));
        std::fs::write(repo.path("outside/record.json"), record("acme", "link")).unwrap();
        std::fs::remove_file(json("link")).unwrap();
        symlink(repo.path("outside/record.json"), json("link")).unwrap();
        std::fs::remove_file(json("fifo")).unwrap();
        nix::unistd::mkfifo(&json("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::fs::remove_file(json("dir")).unwrap();
        std::fs::create_dir(json("dir")).unwrap();
        std::fs::remove_file(json("zero")).unwrap();
        symlink("/dev/zero", json("zero")).unwrap();
        let report = repo.index();
        assert_eq!(report.indexed, 1, "{:?}", report.failures);
        for (id, needle) in [
            ("link", "symbolic link"),
            ("zero", "symbolic link"),
            ("fifo", "is a FIFO, not a regular file"),
            ("dir", "is a directory, not a regular file"),
        ] {
            let reason = repo.failure(&report, &format!("{day}/{id}/{RECORD_FILE}"));
            assert!(reason.contains(needle), "{id}: {reason}");
        }
    }

    #[test]
    fn a_record_over_the_cap_is_refused_without_being_read() {
        let repo = Repo::new(&["small", "big"]);
        let day = "repo/acme/2026/01/02";
        let big = repo.path(&format!("{day}/big/{RECORD_FILE}"));
        std::fs::write(
            &big,
            format!("{}{}", record("acme", "big"), " ".repeat(2000)),
        )
        .unwrap();
        let report = repo.index_with(1024, &Control::default());
        assert_eq!(report.indexed, 1);
        let reason = repo.failure(&report, &format!("{day}/big/{RECORD_FILE}"));
        assert!(
            reason.contains("more than max_record_bytes (1024)") && reason.contains("not read"),
            "{reason}"
        );
    }

    #[test]
    fn a_record_is_never_read_past_the_cap_whatever_it_yields() {
        let endless = std::io::repeat(b' ');
        let err = read_capped(endless, 10, 1024).unwrap_err();
        assert!(err.contains("grew past max_record_bytes (1024)"), "{err}");
        assert_eq!(read_capped(&b"{}"[..], 2, 1024).unwrap(), b"{}");
    }

    #[test]
    fn a_stopped_pass_keeps_what_it_did_not_see_and_the_next_one_completes() {
        let repo = Repo::new(&["c1", "c2"]);
        assert_eq!(repo.index().indexed, 2);
        repo.write("repo/acme/2026/01/03", "c3");
        let stopped = Control::default();
        stopped.stop(crate::pipeline::Stop::Cancelled);
        let report = repo.index_with(CAP, &stopped);
        assert!(report.stopped);
        assert_eq!((report.indexed, report.removed), (0, 0));
        assert_eq!(repo.catalog.conversation_count().unwrap(), 2);
        let report = repo.index();
        assert!(!report.stopped);
        assert_eq!((report.indexed, report.unchanged), (1, 2));
    }
}
