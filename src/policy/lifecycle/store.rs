//! The sweep's deletes from a repository in an object store (docs/operations.md, "A
//! repository in an object store"). The steps are the directory's: the intents are committed
//! before this runs, and the deletions with their events after it returns. In between, each
//! conversation is listed (one level, as a directory read) and its record read again: only a
//! record whose fingerprint (ETag and size) is the one indexed, and that does not set
//! `legal_hold`, clears its artifacts. Then the artifacts of every cleared conversation of the
//! batch go to the store together, up to 1,000 keys a request. A completed delete request is
//! durable in the store, so nothing needs syncing before the catalog records it.
//!
//! In a bucket that keeps versions, deleting a key only adds a delete marker and the data stays
//! in the older versions: there every version of each due key, and its delete markers, are
//! deleted, so the data is gone. A version Object Lock protects is refused by the store; that
//! artifact fails with the store's reason and stays due.

use std::collections::HashSet;

use super::{Conversation, DeleteOutcome, DueArtifact, RECORD_FILE};
use crate::confined::{in_parallel, is_plain_name};
use crate::source::{SourceError, Store};

/// A repository in a store, ready to be swept.
pub(super) struct Sweeper<'a> {
    store: &'a Store,
    /// The bucket keeps old versions: delete every version of a due key.
    versions: bool,
}

/// What listing a conversation and reading its record again said.
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
        // Each check waits on the store: many at once.
        let checked = in_parallel(conversations, |artifacts| self.recheck(&artifacts[0]));
        let mut outcomes = Vec::new();
        // What to delete, and whether a listing found it stored.
        let mut doomed: Vec<(&DueArtifact, bool)> = Vec::new();
        for (artifacts, check) in conversations.iter().zip(checked) {
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

    /// Lists the conversation of `a` and reads its record again.
    fn recheck(&self, a: &DueArtifact) -> Recheck {
        let record_path = format!("{}/{RECORD_FILE}", a.rel_dir);
        let shown = format!("{}{record_path}", self.store.location());
        let changed = || {
            Recheck::HeldBack(format!(
                "{shown} changed since it was indexed; its artifacts are kept until `custodian index` reads it again"
            ))
        };
        let unusable = |why: String| {
            Recheck::Failed(format!(
                "{why}; without its record custodian cannot tell whether conversation `{}` is on hold, so nothing in it was deleted (run `custodian index`, then sweep again)",
                a.conversation_id
            ))
        };
        let stored = match self.store.files(&a.rel_dir) {
            Ok(stored) => stored,
            Err(e) => {
                return Recheck::Failed(format!(
                    "conversation `{}`: {e}; nothing in it was deleted, it stays due, and the next sweep tries again",
                    a.conversation_id
                ));
            }
        };
        if stored.is_empty() {
            return Recheck::Gone;
        }
        let Some(record) = stored.iter().find(|s| s.path == record_path) else {
            return unusable(format!("{shown}: not found"));
        };
        let Some(indexed) = a.record else {
            return changed();
        };
        if record.fingerprint() != indexed {
            return changed();
        }
        // Never read past the size indexed: one byte more shows the record grew.
        let bytes = match self.store.read(&record_path, indexed.size) {
            Ok(bytes) => bytes,
            Err(SourceError::TooLarge { .. }) => return changed(),
            Err(e) => return unusable(e.to_string()),
        };
        if bytes.len() as u64 != indexed.size {
            return changed();
        }
        match Conversation::from_json(&bytes) {
            Ok(record) if record.flags.legal_hold => Recheck::HeldBack(format!(
                "{shown} puts conversation `{}` under legal hold; its artifacts are kept",
                a.conversation_id
            )),
            Ok(_) => {
                let dir = format!("{}/", a.rel_dir);
                Recheck::Clear(
                    stored
                        .into_iter()
                        .filter_map(|s| s.path.strip_prefix(&dir).map(str::to_owned))
                        .collect(),
                )
            }
            Err(why) => unusable(format!("{shown}: {why}")),
        }
    }
}
