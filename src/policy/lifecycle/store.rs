//! The sweep's deletes from a repository in an object store (docs/operations.md, "A
//! repository in an object store"). The steps are the directory's: the intents are committed
//! before this runs, and the deletions with their events after it returns. In between, the
//! batch's conversations are listed to see what each holds now: only one whose
//! `conversation.json` has the fingerprint (ETag and size) indexed clears its artifacts. The
//! store sets an ETag anew whenever an object's bytes change, so that record is the one the
//! index read, whose `legal_hold` flag kept it from being selected if set; unlike a file's
//! modification time, no writer can set an ETag back, so the record is not read again (the
//! index trusts the same fingerprint to skip it). Then the artifacts of every cleared
//! conversation of the batch go to the store together, up to 1,000 keys a request.
//! A completed delete request is durable in the store, so nothing needs syncing before the
//! catalog records it.
//!
//! The conversations of a batch come in the order they were indexed, a day's together, so
//! each day's are listed in one pass over the day's keys from the first of them to the last
//! (S3's `start-after`): a listing request covers up to a thousand keys, where listing each
//! conversation on its own costs a request each. A page that holds none of the batch's
//! conversations ends the pass, and those after it are listed one by one, so that a few
//! conversations due among many kept never cost more than twice the one-by-one listings.
//!
//! In a bucket that keeps versions, deleting a key only adds a delete marker and the data stays
//! in the older versions: there every version of each due key, and its delete markers, are
//! deleted, so the data is gone. A version Object Lock protects is refused by the store; that
//! artifact fails with the store's reason and stays due.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{DeleteOutcome, DueArtifact, RECORD_FILE};
use crate::confined::{in_parallel, is_plain_name};
use crate::source::{SourceError, Store, Stored};

/// A repository in a store, ready to be swept.
pub(super) struct Sweeper<'a> {
    store: &'a Store,
    /// The bucket keeps old versions: delete every version of a due key.
    versions: bool,
}

/// What listing a conversation said.
enum Recheck {
    /// Nothing is stored under the conversation any more.
    Gone,
    /// Its record clears it: delete its due artifacts; these names are stored now.
    Clear(HashSet<String>),
    /// Keep its artifacts, for this reason.
    HeldBack(String),
    /// Its listing or record cannot be used.
    Failed(String),
}

/// The batch's conversations of one day directory, in path order.
struct Day<'b> {
    dir: &'b str,
    conversations: Vec<&'b [DueArtifact]>,
}

impl<'a> Sweeper<'a> {
    /// Checks that the store answers, and asks once whether the bucket keeps versions.
    pub(super) fn open(store: &'a Store) -> Result<Sweeper<'a>, SourceError> {
        store.check()?;
        let versions = store.keeps_versions()?;
        Ok(Sweeper { store, versions })
    }

    /// Deletes the due artifacts of `conversations` (each slice one conversation's) whose
    /// records still allow it: the outcome of every artifact.
    pub(super) fn remove(
        &self,
        conversations: &[&[DueArtifact]],
    ) -> Vec<(DueArtifact, DeleteOutcome)> {
        let mut by_day: BTreeMap<&str, Vec<&[DueArtifact]>> = BTreeMap::new();
        for artifacts in conversations {
            let dir = artifacts[0].rel_dir.as_str();
            by_day
                .entry(dir.rsplit_once('/').map_or("", |(day, _)| day))
                .or_default()
                .push(artifacts);
        }
        let days: Vec<Day<'_>> = by_day
            .into_iter()
            .map(|(dir, mut conversations)| {
                conversations.sort_by(|a, b| a[0].rel_dir.cmp(&b[0].rel_dir));
                Day { dir, conversations }
            })
            .collect();
        // Each listing waits on the store: many days at once.
        let checked = in_parallel(&days, |day| self.recheck_day(day));
        let mut outcomes = Vec::new();
        // What to delete, and whether a listing found it stored.
        let mut doomed: Vec<(&DueArtifact, bool)> = Vec::new();
        let listed = days
            .iter()
            .flat_map(|d| d.conversations.iter())
            .zip(checked.into_iter().flatten());
        for (artifacts, check) in listed {
            let all = |o: DeleteOutcome| artifacts.iter().map(move |a| (a.clone(), o.clone()));
            match check {
                Recheck::HeldBack(why) => outcomes.extend(all(DeleteOutcome::HeldBack(why))),
                Recheck::Failed(why) => outcomes.extend(all(DeleteOutcome::Failed(why))),
                Recheck::Gone if !self.versions => {
                    outcomes.extend(all(DeleteOutcome::Deleted { was_missing: true }))
                }
                Recheck::Gone => doomed.extend(artifacts.iter().map(|a| (a, false))),
                Recheck::Clear(stored) => {
                    for a in artifacts.iter() {
                        let listed = stored.contains(&a.file);
                        if !is_plain_name(&a.file) {
                            outcomes.push((
                                a.clone(),
                                DeleteOutcome::Failed(format!(
                                    "artifact `{}` of conversation `{}` is not a plain file name; nothing was deleted for it",
                                    a.file.escape_debug(),
                                    a.conversation_id
                                )),
                            ));
                        } else if listed || self.versions {
                            // Versions may outlive the object a listing shows.
                            doomed.push((a, listed));
                        } else {
                            outcomes
                                .push((a.clone(), DeleteOutcome::Deleted { was_missing: true }));
                        }
                    }
                }
            }
        }
        let paths: Vec<String> = doomed
            .iter()
            .map(|(a, _)| format!("{}/{}", a.rel_dir, a.file))
            .collect();
        let answers = self.store.delete(&paths, self.versions);
        for (((a, listed), path), answer) in doomed.into_iter().zip(&paths).zip(answers) {
            let outcome = match answer {
                Ok(()) => DeleteOutcome::Deleted {
                    was_missing: !listed,
                },
                Err(why) => DeleteOutcome::Failed(format!(
                    "cannot delete {}{path}: {why}; it stays due, and the next sweep tries again",
                    self.store.location()
                )),
            };
            outcomes.push((a.clone(), outcome));
        }
        outcomes
    }

    /// Lists the conversations of `day` in one pass where it pays (see the module's
    /// documentation): what each holds now, in the day's order.
    fn recheck_day(&self, day: &Day<'_>) -> Vec<Recheck> {
        let wanted: HashSet<&str> = day
            .conversations
            .iter()
            .map(|c| c[0].rel_dir.as_str())
            .collect();
        let mut found: HashMap<&str, Vec<Stored>> = HashMap::new();
        let first = &day.conversations[0][0].rel_dir;
        let last = &day.conversations[day.conversations.len() - 1][0].rel_dir;
        // Every key of the conversation `c` sorts before `c0` ('0' follows '/').
        let end = format!("{last}0");
        // The pass starts just before the first conversation's keys.
        let mut after = first.clone();
        let mut complete = false;
        while !complete {
            // A listing that fails leaves the conversations not yet passed to their own.
            let Ok((objects, more)) = self.store.page(day.dir, &after) else {
                break;
            };
            let mut useful = false;
            for object in objects {
                if object.path >= end {
                    complete = true;
                    break;
                }
                after.clone_from(&object.path);
                let Some((dir, name)) = conversation_of(day.dir, &object.path) else {
                    continue;
                };
                let Some(&dir) = wanted.get(dir) else {
                    continue;
                };
                useful = true;
                // Below a subdirectory of the conversation: no artifact of it.
                if !name.contains('/') {
                    found.entry(dir).or_default().push(object);
                }
            }
            complete |= !more;
            if !useful && !complete {
                break;
            }
        }
        day.conversations
            .iter()
            .map(|c| {
                let a = &c[0];
                if complete || after >= format!("{}0", a.rel_dir) {
                    self.judge(a, found.remove(a.rel_dir.as_str()).unwrap_or_default())
                } else {
                    self.recheck(a)
                }
            })
            .collect()
    }

    /// Lists the conversation of `a` on its own.
    fn recheck(&self, a: &DueArtifact) -> Recheck {
        match self.store.files(&a.rel_dir) {
            Ok(stored) => self.judge(a, stored),
            Err(e) => Recheck::Failed(format!(
                "conversation `{}`: {e}; nothing in it was deleted, it stays due, and the next sweep tries again",
                a.conversation_id
            )),
        }
    }

    /// What the objects `stored` directly in the conversation of `a` say of its artifacts.
    fn judge(&self, a: &DueArtifact, stored: Vec<Stored>) -> Recheck {
        let record_path = format!("{}/{RECORD_FILE}", a.rel_dir);
        let shown = format!("{}{record_path}", self.store.location());
        if stored.is_empty() {
            return Recheck::Gone;
        }
        let Some(record) = stored.iter().find(|s| s.path == record_path) else {
            return Recheck::Failed(format!(
                "{shown}: not found; without its record custodian cannot tell whether conversation `{}` is on hold, so nothing in it was deleted (run `custodian index`, then sweep again)",
                a.conversation_id
            ));
        };
        if a.record != Some(record.fingerprint()) {
            return Recheck::HeldBack(format!(
                "{shown} changed since it was indexed; its artifacts are kept until `custodian index` reads it again"
            ));
        }
        let dir = format!("{}/", a.rel_dir);
        Recheck::Clear(
            stored
                .into_iter()
                .filter_map(|s| s.path.strip_prefix(&dir).map(str::to_owned))
                .collect(),
        )
    }
}

/// The conversation directory (under `day`) of the object at `path`, and its name there when
/// it lies directly in it.
fn conversation_of<'p>(day: &str, path: &'p str) -> Option<(&'p str, &'p str)> {
    let rest = path.strip_prefix(day)?.strip_prefix('/')?;
    let (id, name) = rest.split_once('/')?;
    let dir = &path[..day.len() + 1 + id.len()];
    Some((dir, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_belongs_to_the_conversation_directory_below_its_day() {
        let day = "acme/2026/01/05";
        assert_eq!(
            conversation_of(day, "acme/2026/01/05/c1/a.wav"),
            Some(("acme/2026/01/05/c1", "a.wav"))
        );
        assert_eq!(
            conversation_of(day, "acme/2026/01/05/c1/ch/seg.wav"),
            Some(("acme/2026/01/05/c1", "ch/seg.wav"))
        );
        assert_eq!(conversation_of(day, "acme/2026/01/05/stray"), None);
        assert_eq!(conversation_of(day, "acme/2026/01/050/c1/a.wav"), None);
    }
}
