//! The quarantine window (docs/operations.md, "Quarantine"): with `quarantine_days` in
//! `[lifecycle]`, the sweep moves due artifacts into a quarantine area on the repository's
//! filesystem instead of deleting them, restores those a hold covers, and purges the rest once
//! they have been there that many days; `lifecycle restore` puts them back by hand.
//!
//! Every move, restore and purge is crash-safe like a delete: its intent is committed first,
//! then the file is renamed (or removed) through directory handles, never through a link and
//! never over an existing entry, then both directories are synced, then the outcome and its
//! audit event are committed together. A rerun completes every intent a killed process left
//! before doing anything new, so each artifact gets exactly one event per step.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::lifecycle::{Deleter, Recheck, SweepReport, recheck};
use crate::catalog::lifecycle::{
    DueArtifact, LifecyclePolicy, QuarantineOutcome, QuarantineSelect, QuarantineState,
    Quarantined, RetentionAction,
};
use crate::catalog::{Catalog, CatalogError, RunId};
use crate::confined::{ConfinedError, Dir, in_parallel};

/// The quarantine area's name under the repository root when `quarantine_dir` is not set; the
/// index never reads it.
pub const QUARANTINE_DIR: &str = ".custodian-quarantine";

/// Mode of a quarantine area custodian creates beside a root of mode `root_mode`: its owner,
/// and its group as far as the root lets the group in (so that the users sharing a repository
/// share its quarantine, and the setgid bit keeps files in the group), never others.
fn area_mode(root_mode: u32) -> u32 {
    0o700 | (root_mode & 0o2070)
}

/// Quarantine entries handled per catalog transaction.
const BATCH: usize = 2000;

/// The quarantine window's settings from `[lifecycle]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantineConfig {
    /// Days an artifact stays in quarantine before the sweep purges it.
    pub days: u16,
    /// Where the area is; None is [`QUARANTINE_DIR`] under the repository root.
    pub dir: Option<PathBuf>,
}

/// The quarantine area, open.
pub struct Area {
    dir: Dir,
    days: u16,
}

impl Area {
    /// Opens (creating it, closed to others, if missing) the area `config` names beside `root`. It
    /// must be a real directory (not a link) on the repository's filesystem, outside what the
    /// index reads, and let no one in whom the repository root keeps out.
    pub fn open(root: &Dir, config: &QuarantineConfig) -> Result<Area, String> {
        let io = |e: ConfinedError| e.to_string();
        let create = area_mode(root.mode().map_err(io)?);
        let dir = match &config.dir {
            None => {
                let dir = root.create_dir_all(QUARANTINE_DIR, create).map_err(io)?;
                root.sync().map_err(io)?;
                dir
            }
            Some(path) => open_configured(root.path(), path, create)?,
        };
        let path = dir.path().display().to_string();
        if dir.device().map_err(io)? != root.device().map_err(io)? {
            return Err(format!(
                "{path} is on another filesystem than the repository root {}; a move there would be a copy, so choose a directory on the repository's filesystem",
                root.path().display()
            ));
        }
        let (mode, root_mode) = (dir.mode().map_err(io)?, root.mode().map_err(io)?);
        if mode & 0o077 & !root_mode != 0 {
            return Err(format!(
                "{path} (mode {mode:03o}) lets group or others in more than the repository root (mode {root_mode:03o}) does; run `chmod go-rwx {path}`"
            ));
        }
        Ok(Area {
            dir,
            days: config.days,
        })
    }

    fn holds(&self, name: &str) -> bool {
        self.dir.stat(name).is_ok()
    }
}

/// A configured area: created if missing, refused when it is a link or lies inside the
/// repository root (where the index would walk it).
fn open_configured(root: &Path, path: &Path, mode: u32) -> Result<Dir, String> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(format!(
                "{shown} is a symbolic link; name the directory itself"
            ));
        }
        Ok(m) if !m.is_dir() => return Err(format!("{shown} is not a directory")),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(path)
                .and_then(|()| {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                })
                .map_err(|e| format!("{shown}: cannot create it: {e}"))?;
            if let Some(parent) = path.parent() {
                Dir::open_root(parent)
                    .and_then(|p| p.sync())
                    .map_err(|e| e.to_string())?;
            }
        }
        Err(e) => return Err(format!("{shown}: {e}")),
    }
    let real = std::fs::canonicalize(path).map_err(|e| format!("{shown}: {e}"))?;
    let real_root = std::fs::canonicalize(root).map_err(|e| format!("{}: {e}", root.display()))?;
    if real.starts_with(&real_root) {
        return Err(format!(
            "{shown} lies inside the repository root {}; leave quarantine_dir unset (the default, `{QUARANTINE_DIR}` under the root, is never indexed) or choose a directory outside the root on its filesystem",
            root.display()
        ));
    }
    Dir::open_root(path).map_err(|e| e.to_string())
}

/// The name an artifact gets in the area: its conversation's and its own place in the catalog.
fn name_of(a: &DueArtifact) -> String {
    format!("{}-{}", a.conversation_pk, a.ordinal)
}

/// What happened to one entry.
enum Step {
    /// Record this outcome.
    Record(QuarantineOutcome),
    /// Nothing was done, and why: a hold, or a record changed since indexed.
    HeldBack(String),
    /// Nothing was done, and why: it failed (the next sweep tries again).
    Failed(String),
    /// Half done, and why: the intent stays for the next sweep to complete.
    Pending(String),
}

/// One conversation's entries, what happened to each, and the directories to sync before any
/// of it is recorded.
struct Handled {
    steps: Vec<(Quarantined, Step)>,
    /// The conversation directory a file was moved from or to.
    dir: Option<Dir>,
    /// A file was moved into, out of or removed from the area.
    changed: bool,
}

impl Handled {
    fn all(entries: &[Quarantined], step: impl Fn() -> Step) -> Handled {
        Handled {
            steps: entries.iter().map(|q| (q.clone(), step())).collect(),
            dir: None,
            changed: false,
        }
    }
}

/// What a batch did, to count in a report.
#[derive(Default)]
struct Tally {
    quarantined: u64,
    restored: u64,
    purged: u64,
    already_missing: u64,
    bytes: u64,
    held_back: Vec<String>,
    failures: Vec<String>,
}

impl Tally {
    fn add_to(self, report: &mut SweepReport) {
        report.quarantined += self.quarantined;
        report.restored += self.restored;
        report.purged += self.purged;
        report.already_missing += self.already_missing;
        report.bytes += self.bytes;
        report.held_back += self.held_back.len() as u64;
        report.failed += self.failures.len() as u64;
        for (reasons, more) in [
            (&mut report.held_back_reasons, self.held_back),
            (&mut report.failures, self.failures),
        ] {
            let room = 50usize.saturating_sub(reasons.len());
            reasons.extend(more.into_iter().take(room));
        }
    }
}

/// Syncs every directory the batch changed (the area once), then records what is durable. A
/// step whose directory could not be synced is left as its intent, for the next sweep; it
/// counts as failed.
fn sync_and_record(
    catalog: &dyn Catalog,
    area: &Area,
    handled: Vec<Handled>,
    into_area: bool,
    by: Deleter<'_>,
) -> Result<Tally, CatalogError> {
    // The directory a file went to is synced before the one it left: a power cut between the
    // two keeps both names of the file (which the rerun resolves), never neither.
    let sync_area = || {
        if handled.iter().any(|h| h.changed) {
            area.dir.sync().map_err(|e| e.to_string())
        } else {
            Ok(())
        }
    };
    let sync_dirs = || {
        in_parallel(&handled, |h| {
            h.dir
                .as_ref()
                .map_or(Ok(()), Dir::sync)
                .map_err(|e| e.to_string())
        })
    };
    // A first sync that failed leaves the second undone: nothing of it is recorded anyway.
    let skipped = || Err("not synced after an earlier sync failed".to_owned());
    let (synced, area_synced) = if into_area {
        let area_synced = sync_area();
        let synced = match area_synced {
            Ok(()) => sync_dirs(),
            Err(_) => handled.iter().map(|_| skipped()).collect(),
        };
        (synced, area_synced)
    } else {
        let synced = sync_dirs();
        let area_synced = if synced.iter().all(Result::is_ok) {
            sync_area()
        } else {
            skipped()
        };
        (synced, area_synced)
    };
    let mut tally = Tally::default();
    let mut outcomes = Vec::new();
    for (h, synced) in handled.into_iter().zip(synced) {
        let unsynced = synced.and(area_synced.clone()).err();
        let moved_files = h.changed;
        for (q, step) in h.steps {
            match step {
                Step::Record(o) if moved_files && unsynced.is_some() => {
                    tally.failures.push(format!(
                        "cannot make the {} of {}/{} durable: {}; the next sweep completes it",
                        verb(&o),
                        q.artifact.rel_dir,
                        q.artifact.file,
                        unsynced.as_deref().unwrap_or_default()
                    ));
                }
                Step::Record(o) => {
                    match &o {
                        QuarantineOutcome::Quarantined => tally.quarantined += 1,
                        QuarantineOutcome::Restored { .. } => tally.restored += 1,
                        QuarantineOutcome::Purged { was_missing } => {
                            tally.purged += 1;
                            tally.bytes += q.artifact.size;
                            tally.already_missing += u64::from(*was_missing);
                        }
                        QuarantineOutcome::Kept => {}
                    }
                    outcomes.push((q, o));
                }
                Step::HeldBack(why) => {
                    tally.held_back.push(why);
                    outcomes.push((q, QuarantineOutcome::Kept));
                }
                Step::Failed(why) => {
                    tally.failures.push(why);
                    outcomes.push((q, QuarantineOutcome::Kept));
                }
                Step::Pending(why) => tally.failures.push(why),
            }
        }
    }
    #[cfg(feature = "failpoints")]
    fail::fail_point!("quarantine-record");
    catalog.finish_quarantine(&outcomes, by.actor, by.run)?;
    Ok(tally)
}

fn verb(o: &QuarantineOutcome) -> &'static str {
    match o {
        QuarantineOutcome::Quarantined => "move into quarantine",
        QuarantineOutcome::Restored { .. } => "restore",
        QuarantineOutcome::Purged { .. } | QuarantineOutcome::Kept => "purge",
    }
}

/// Records the intents to move `due` into the area, then moves them and records each.
pub(super) fn quarantine_batch(
    catalog: &dyn Catalog,
    root: &Dir,
    area: &Area,
    due: &[DueArtifact],
    by: Deleter<'_>,
    report: &mut SweepReport,
) -> Result<(), CatalogError> {
    let intents: Vec<(DueArtifact, String)> = due.iter().map(|a| (a.clone(), name_of(a))).collect();
    catalog.begin_quarantine(&intents, by.run)?;
    let entries: Vec<Quarantined> = intents
        .into_iter()
        .map(|(artifact, name)| Quarantined {
            artifact,
            name,
            state: QuarantineState::Moving,
            exempt: false,
            run: by.run,
            quarantined_at: None,
            legal_hold: false,
        })
        .collect();
    move_in(catalog, root, area, &entries, by)?.add_to(report);
    Ok(())
}

/// Moves entries whose intent is `Moving` into the area, conversation by conversation, once
/// the catalog's holds and each record read again allow it. An entry already in the area (a
/// killed run moved it) is recorded as moved; the pass that follows restores it if a hold now
/// covers it.
fn move_in(
    catalog: &dyn Catalog,
    root: &Dir,
    area: &Area,
    entries: &[Quarantined],
    by: Deleter<'_>,
) -> Result<Tally, CatalogError> {
    let conversations: Vec<&[Quarantined]> = entries
        .chunk_by(|a, b| a.artifact.conversation_pk == b.artifact.conversation_pk)
        .collect();
    let pks: Vec<i64> = conversations
        .iter()
        .map(|c| c[0].artifact.conversation_pk)
        .collect();
    let held = catalog.holding_matters(&pks)?;
    let handled = in_parallel(&conversations, |entries| {
        let (done, todo): (Vec<Quarantined>, Vec<Quarantined>) =
            entries.iter().cloned().partition(|q| area.holds(&q.name));
        let mut out = Handled::all(&done, || Step::Record(QuarantineOutcome::Quarantined));
        if !done.is_empty() {
            // A killed run may have moved them without syncing: sync before recording. A power
            // cut may have kept the new name and the old: the old one goes.
            out.changed = true;
            out.dir = root.open_dir(&done[0].artifact.rel_dir).ok();
            if let Some(dir) = &out.dir {
                for (q, step) in &mut out.steps {
                    if dir.same_file(&q.artifact.file, &area.dir, &q.name)
                        && let Err(e) = dir.remove_file(&q.artifact.file)
                    {
                        *step = Step::Pending(format!(
                            "cannot remove the old name of {} after its move into quarantine: {e}; the next sweep completes the move",
                            dir.display_path(&q.artifact.file).display()
                        ));
                    }
                }
            }
        }
        if todo.is_empty() {
            return out;
        }
        let a = &todo[0].artifact;
        let rest = match held.get(&a.conversation_pk) {
            Some(matters) => {
                let why = format!(
                    "conversation `{}/{}` is under legal hold (matter {}); its artifacts are kept",
                    a.tenant,
                    a.conversation_id,
                    matters.join(", ")
                );
                Handled::all(&todo, || Step::HeldBack(why.clone()))
            }
            None => match recheck(root, a) {
                Recheck::Gone => Handled::all(&todo, || {
                    Step::Record(QuarantineOutcome::Purged { was_missing: true })
                }),
                Recheck::OnHold(why) | Recheck::HeldBack(why) => {
                    Handled::all(&todo, || Step::HeldBack(why.clone()))
                }
                Recheck::Failed(why) => Handled::all(&todo, || Step::Failed(why.clone())),
                Recheck::Clear(dir) => move_files(area, dir, &todo),
            },
        };
        out.steps.extend(rest.steps);
        out.dir = rest.dir.or(out.dir);
        out.changed |= rest.changed;
        out
    });
    sync_and_record(catalog, area, handled, true, by)
}

/// Moves each entry's file from its conversation directory `dir` into the area.
fn move_files(area: &Area, dir: Dir, entries: &[Quarantined]) -> Handled {
    let mut moved = false;
    let steps = entries
        .iter()
        .map(|q| {
            let step = match dir.move_file(&q.artifact.file, &area.dir, &q.name) {
                Ok(()) => {
                    moved = true;
                    Step::Record(QuarantineOutcome::Quarantined)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Step::Record(QuarantineOutcome::Purged { was_missing: true })
                }
                Err(e) => Step::Failed(format!(
                    "cannot move {} into quarantine: {e}; it stays due, and the next sweep tries again",
                    dir.display_path(&q.artifact.file).display()
                )),
            };
            (q.clone(), step)
        })
        .collect();
    Handled {
        steps,
        dir: moved.then_some(dir),
        changed: moved,
    }
}

/// Moves entries whose intent is `Restoring` back to their conversation directories, never
/// over an entry there. An entry no longer in the area but back in place (a killed process
/// moved it) is recorded restored.
fn move_back(
    catalog: &dyn Catalog,
    root: &Dir,
    area: &Area,
    entries: &[Quarantined],
    reason: &(dyn Fn(&Quarantined) -> String + Sync),
    by: Deleter<'_>,
) -> Result<Tally, CatalogError> {
    let conversations: Vec<&[Quarantined]> = entries
        .chunk_by(|a, b| a.artifact.conversation_pk == b.artifact.conversation_pk)
        .collect();
    let handled = in_parallel(&conversations, |entries| {
        let a = &entries[0].artifact;
        let dir = match root.open_dir(&a.rel_dir) {
            Ok(dir) => dir,
            Err(e) => {
                let why = format!(
                    "cannot restore into conversation `{}/{}`: {e}; its artifacts stay in quarantine",
                    a.tenant, a.conversation_id
                );
                return Handled::all(entries, || Step::Failed(why.clone()));
            }
        };
        let mut moved = false;
        let steps = entries
            .iter()
            .map(|q| {
                let restored = Step::Record(QuarantineOutcome::Restored { reason: reason(q) });
                // A power cut may have kept both names of a restore: the one in the area goes.
                if dir.same_file(&q.artifact.file, &area.dir, &q.name) {
                    moved = true;
                    let step = match area.dir.remove_file(&q.name) {
                        Ok(()) => restored,
                        Err(e) => Step::Pending(format!(
                            "cannot remove the quarantined name of restored {}: {e}; the next restore or sweep completes the restore",
                            dir.display_path(&q.artifact.file).display()
                        )),
                    };
                    return (q.clone(), step);
                }
                let step = match area.dir.move_file(&q.name, &dir, &q.artifact.file) {
                    Ok(()) => {
                        moved = true;
                        restored
                    }
                    Err(e)
                        if e.kind() == std::io::ErrorKind::NotFound
                            && dir.stat(&q.artifact.file).is_ok() =>
                    {
                        // A killed process moved it, maybe without syncing.
                        moved = true;
                        restored
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Step::Failed(format!(
                        "{} is occupied; the quarantined artifact was not put over it and stays in quarantine as {}",
                        dir.display_path(&q.artifact.file).display(),
                        area.dir.display_path(&q.name).display()
                    )),
                    Err(e) => Step::Failed(format!(
                        "cannot restore {}: {e}; it stays in quarantine",
                        dir.display_path(&q.artifact.file).display()
                    )),
                };
                (q.clone(), step)
            })
            .collect();
        Handled {
            steps,
            dir: moved.then_some(dir),
            changed: moved,
        }
    });
    sync_and_record(catalog, area, handled, false, by)
}

/// Removes entries whose intent is `Purging` from the area. `resumed`: a killed process may
/// have removed the file already, which is not a missing file.
fn purge(
    catalog: &dyn Catalog,
    area: &Area,
    entries: &[Quarantined],
    resumed: bool,
    by: Deleter<'_>,
) -> Result<Tally, CatalogError> {
    let mut removed = false;
    let steps = entries
        .iter()
        .map(|q| {
            let step = match area.dir.remove_file(&q.name) {
                Ok(()) => {
                    removed = true;
                    Step::Record(QuarantineOutcome::Purged { was_missing: false })
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // A killed process may have removed it without syncing.
                    removed |= resumed;
                    Step::Record(QuarantineOutcome::Purged {
                        was_missing: !resumed,
                    })
                }
                Err(e) => Step::Failed(format!(
                    "cannot purge {} (quarantined {}/{}): {e}; it stays in quarantine, and the next sweep tries again",
                    area.dir.display_path(&q.name).display(),
                    q.artifact.rel_dir,
                    q.artifact.file
                )),
            };
            (q.clone(), step)
        })
        .collect();
    // A purge changes the area only: syncing it once makes the removals durable.
    let handled = vec![Handled {
        steps,
        dir: None,
        changed: removed,
    }];
    sync_and_record(catalog, area, handled, false, by)
}

/// Marks `entries` with the intent `state` (durably), then returns them as marked.
fn intend(
    catalog: &dyn Catalog,
    entries: Vec<Quarantined>,
    state: QuarantineState,
    exempt: bool,
) -> Result<Vec<Quarantined>, CatalogError> {
    catalog.mark_quarantine(&entries, state, exempt)?;
    Ok(entries
        .into_iter()
        .map(|q| Quarantined { state, exempt, ..q })
        .collect())
}

/// Completes every intent a killed process left: moves, restores and purges. Returns how many.
pub(super) fn resume(
    catalog: &dyn Catalog,
    root: &Dir,
    area: &Area,
    by: Deleter<'_>,
    report: &mut SweepReport,
) -> Result<u64, CatalogError> {
    let pending = catalog.quarantined(&QuarantineSelect::Pending)?;
    let of = |state| -> Vec<Quarantined> {
        pending
            .iter()
            .filter(|q| q.state == state)
            .cloned()
            .collect()
    };
    for chunk in of(QuarantineState::Moving).chunks(BATCH) {
        move_in(catalog, root, area, chunk, by)?.add_to(report);
    }
    for chunk in of(QuarantineState::Restoring).chunks(BATCH) {
        move_back(catalog, root, area, chunk, &completed_restore, by)?.add_to(report);
    }
    for chunk in of(QuarantineState::Purging).chunks(BATCH) {
        purge(catalog, area, chunk, true, by)?.add_to(report);
    }
    Ok(pending.len() as u64)
}

fn completed_restore(q: &Quarantined) -> String {
    if q.exempt {
        "a restore a killed process left, completed".into()
    } else {
        "a restore for a legal hold a killed process left, completed".into()
    }
}

/// Goes through everything in quarantine: what a hold covers now (a matter's, or its record's
/// legal_hold flag, as indexed or read again) goes back; what has been there `days` and its
/// quarantining version still makes due is purged. Stops between batches once `by.control`
/// is stopped.
pub(super) fn pass(
    catalog: &dyn Catalog,
    root: &Dir,
    area: &Area,
    now: DateTime<Utc>,
    policies: &[LifecyclePolicy],
    by: Deleter<'_>,
    report: &mut SweepReport,
) -> Result<(), CatalogError> {
    let cutoff = now - TimeDelta::days(i64::from(area.days));
    let active = purging_versions(policies);
    let mut after = (0, String::new());
    while !by.control.is_stopped() {
        let page = catalog.quarantined(&QuarantineSelect::Page {
            after: after.clone(),
            limit: BATCH,
        })?;
        let Some(last) = page.last() else { break };
        after = (last.artifact.conversation_pk, last.artifact.file.clone());
        let mut pks: Vec<i64> = page.iter().map(|q| q.artifact.conversation_pk).collect();
        pks.dedup();
        let held = catalog.holding_matters(&pks)?;
        let mut restore = Vec::new();
        let mut reasons = HashMap::new();
        let mut ripe = Vec::new();
        for q in page {
            let a = &q.artifact;
            if let Some(matters) = held.get(&a.conversation_pk) {
                reasons.insert(
                    a.conversation_pk,
                    format!("legal hold (matter {})", matters.join(", ")),
                );
                restore.push(q);
            } else if q.legal_hold {
                reasons.insert(a.conversation_pk, "legal hold (its record)".into());
                restore.push(q);
            } else if q.quarantined_at.is_some_and(|t| t <= cutoff)
                && active.get(a.policy.as_str()) == Some(&a.version.as_str())
            {
                ripe.push(q);
            }
        }
        // Read each ripe conversation's record again: a hold set since it was indexed sends
        // it back; a record changed since keeps it in quarantine until indexed again.
        let conversations: Vec<&[Quarantined]> = ripe
            .chunk_by(|a, b| a.artifact.conversation_pk == b.artifact.conversation_pk)
            .collect();
        let checked = in_parallel(&conversations, |c| recheck(root, &c[0].artifact));
        let mut purgeable = Vec::new();
        let mut kept = Tally::default();
        for (c, check) in conversations.into_iter().zip(checked) {
            match check {
                Recheck::Clear(_) | Recheck::Gone => purgeable.extend_from_slice(c),
                Recheck::OnHold(why) => {
                    reasons.insert(c[0].artifact.conversation_pk, why);
                    restore.extend_from_slice(c);
                }
                Recheck::HeldBack(why) => kept
                    .held_back
                    .extend(c.iter().map(|_| format!("{why} (in quarantine)"))),
                Recheck::Failed(why) => kept.failures.extend(c.iter().map(|_| why.clone())),
            }
        }
        kept.add_to(report);
        restore.sort_by(|a, b| {
            (a.artifact.conversation_pk, &a.artifact.file)
                .cmp(&(b.artifact.conversation_pk, &b.artifact.file))
        });
        if !restore.is_empty() {
            let restore = intend(catalog, restore, QuarantineState::Restoring, false)?;
            let reason = |q: &Quarantined| {
                reasons
                    .get(&q.artifact.conversation_pk)
                    .cloned()
                    .unwrap_or_default()
            };
            move_back(catalog, root, area, &restore, &reason, by)?.add_to(report);
        }
        if !purgeable.is_empty() {
            let purgeable = intend(catalog, purgeable, QuarantineState::Purging, false)?;
            purge(catalog, area, &purgeable, false, by)?.add_to(report);
        }
    }
    Ok(())
}

/// Each enabled policy's active delete version: what it quarantined is purged when ripe.
fn purging_versions(policies: &[LifecyclePolicy]) -> BTreeMap<&str, &str> {
    policies
        .iter()
        .filter(|p| p.enabled)
        .filter_map(|p| {
            let v = p.active()?;
            matches!(v.action, RetentionAction::Delete { .. })
                .then_some((p.name.as_str(), v.name.as_str()))
        })
        .collect()
}

/// What `lifecycle restore` puts back.
#[derive(Clone, Debug)]
pub enum RestoreWhat {
    Conversation { tenant: String, id: String },
    Run(RunId),
}

impl RestoreWhat {
    fn describe(&self) -> String {
        match self {
            RestoreWhat::Conversation { tenant, id } => format!("conversation `{tenant}/{id}`"),
            RestoreWhat::Run(r) => format!("run {}", r.0),
        }
    }
}

/// What a restore did.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct RestoreReport {
    /// Restores a killed process left, completed first.
    pub resumed: u64,
    pub restored: u64,
    pub failed: u64,
    pub failures: Vec<String>,
}

/// Why a restore was refused; nothing was changed (but restores a killed process left).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("repository root {path}: {source}; check `root` in [repository] of the config")]
    Root {
        path: PathBuf,
        source: ConfinedError,
    },
    #[error(
        "the quarantine window is off: set `quarantine_days` in [lifecycle] of the config (restore reads the quarantine area it names)"
    )]
    Off,
    #[error("quarantine area: {0}; check `quarantine_dir` in [lifecycle] of the config")]
    Area(String),
    #[error(
        "{0} has nothing in quarantine: never quarantined, already restored, or purged (`custodian audit list --kind artifact_deleted --conversation ID` shows purges); nothing was changed"
    )]
    Nothing(String),
    #[error("{0}; nothing was restored")]
    Refused(String),
}

/// `lifecycle restore`: puts back what a conversation or a sweep has in quarantine, each
/// restored artifact exempt from the version that quarantined it (docs/operations.md,
/// "Quarantine"). Refused as a whole, changing nothing, when any artifact's place is
/// occupied, its conversation directory is gone or reached through a link, or its quarantined
/// file is not a regular file.
pub fn restore(
    catalog: &dyn Catalog,
    root: &Path,
    config: Option<&QuarantineConfig>,
    what: &RestoreWhat,
    by: Deleter<'_>,
) -> Result<RestoreReport, RestoreError> {
    let config = config.ok_or(RestoreError::Off)?;
    let root = Dir::open_root(root).map_err(|source| RestoreError::Root {
        path: root.to_owned(),
        source,
    })?;
    let area = Area::open(&root, config).map_err(RestoreError::Area)?;
    let mut report = SweepReport::default();
    let pending = catalog.quarantined(&QuarantineSelect::Restoring)?;
    for chunk in pending.chunks(BATCH) {
        move_back(catalog, &root, &area, chunk, &completed_restore, by)?.add_to(&mut report);
    }
    let select = match what {
        RestoreWhat::Conversation { tenant, id } => QuarantineSelect::Conversation {
            tenant: tenant.clone(),
            id: id.clone(),
        },
        RestoreWhat::Run(r) => QuarantineSelect::Run(*r),
    };
    let entries = catalog.quarantined(&select)?;
    // Completing what a killed restore left is a restore done.
    if entries.is_empty() && pending.is_empty() {
        return Err(RestoreError::Nothing(what.describe()));
    }
    for q in &entries {
        check_restorable(&root, &area, q).map_err(RestoreError::Refused)?;
    }
    for chunk in entries.chunks(BATCH) {
        let marked = intend(catalog, chunk.to_vec(), QuarantineState::Restoring, true)?;
        let reason = |_: &Quarantined| format!("restored by {}", by.actor);
        move_back(catalog, &root, &area, &marked, &reason, by)?.add_to(&mut report);
    }
    Ok(RestoreReport {
        resumed: pending.len() as u64,
        restored: report.restored,
        failed: report.failed,
        failures: report.failures,
    })
}

/// Why `q` cannot be put back now, if it cannot.
fn check_restorable(root: &Dir, area: &Area, q: &Quarantined) -> Result<(), String> {
    let a = &q.artifact;
    let dir = root.open_dir(&a.rel_dir).map_err(|e| {
        format!(
            "cannot restore into conversation `{}/{}`: {e}",
            a.tenant, a.conversation_id
        )
    })?;
    match dir.stat(&a.file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Ok(_) => {
            return Err(format!(
                "{} is occupied; custodian never replaces it: move it away first",
                dir.display_path(&a.file).display()
            ));
        }
        Err(e) => return Err(e.to_string()),
    }
    let st = area.dir.stat(&q.name).map_err(|e| {
        format!(
            "the quarantined copy of {}/{} ({e}) cannot be restored",
            a.rel_dir, a.file
        )
    })?;
    let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
    if kind != rustix::fs::FileType::RegularFile {
        return Err(format!(
            "{} is a {}, not the quarantined file of {}/{}; custodian does not follow or move it",
            area.dir.display_path(&q.name).display(),
            crate::confined::kind_name(kind),
            a.rel_dir,
            a.file
        ));
    }
    Ok(())
}
