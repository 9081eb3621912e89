//! The index of a repository in a bucket or container (docs/repository.md, "In an object
//! store"): the same pass as on disk, with listings in place of directory reads. Tenants,
//! years, months and days are listed one level at a time with the delimiter `/`; each day is
//! then one listing of every key below it, which gives each conversation.json's size and ETag,
//! so a record is fetched only when its fingerprint changed, and never when the listing says
//! it is over `max_record_bytes`. Days are worked on in parallel, one listing in memory per
//! thread.
//!
//! Keys are hostile input: a name that is not plain (empty, `.`, `..`, control characters)
//! is reported and never indexed, and a conversation.json anywhere but one level below a day
//! is reported and left alone.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use rayon::prelude::*;

use super::{
    Days, Found, IndexError, IndexReport, RecordFailure, Shared, check_record, failed, is_digits,
    join, missing_record, run_pass,
};
use crate::catalog::{Catalog, Fingerprint, IndexChange};
use crate::pipeline::Control;
use crate::progress::Progress;
use crate::repository::record::{Conversation, RECORD_FILE};
use crate::source::{SourceError, Store, Stored};

/// Listings in flight at once: each waits on the store far longer than it works, so there
/// are more of them than cores (docs/performance.md, "Index of a repository in a store").
const LISTING_THREADS: usize = 16;

/// Why a name in the store is not walked.
const NOT_PLAIN: &str = "is not a plain name (empty, `.`, `..` or control characters); it is not indexed (rename the objects below it)";

/// Why a record at the wrong depth is left alone.
const WRONG_DEPTH: &str = "is a conversation.json outside a conversation directory (tenant/YYYY/MM/DD/<id>/conversation.json); it is not indexed";

/// A name a directory entry could have: not empty, not `.` or `..`, no control character.
fn plain(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.chars().any(char::is_control)
}

/// What a day's listing holds, by conversation directory.
#[derive(Debug, PartialEq, Eq)]
enum Listed<'a> {
    /// A conversation directory (some key below `<day>/<id>/`), and its record if listed.
    Conversation {
        id: &'a str,
        record: Option<&'a Stored>,
    },
    /// A key where the layout puts no record, or below a name that is not plain.
    Stray { path: &'a str, reason: &'static str },
}

/// Sorts the keys of `day`'s listing into conversation directories and strays. Keys other
/// than records (artifacts, segments) only make their directory known.
fn conversations<'a>(day: &str, objects: &'a [Stored]) -> Vec<Listed<'a>> {
    let mut dirs: BTreeMap<&'a str, Option<&'a Stored>> = BTreeMap::new();
    let mut strays = Vec::new();
    let mut bad_dirs: BTreeMap<&'a str, &'a str> = BTreeMap::new();
    for object in objects {
        let Some(rest) = object
            .path
            .strip_prefix(day)
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let mut parts = rest.split('/');
        let first = parts.next().unwrap_or("");
        let Some(second) = parts.next() else {
            if first == RECORD_FILE {
                strays.push(Listed::Stray {
                    path: &object.path,
                    reason: WRONG_DEPTH,
                });
            }
            continue;
        };
        let deeper = parts.next().is_some();
        if !plain(first) {
            let dir_len = object.path.len() - rest.len() + first.len();
            bad_dirs.entry(first).or_insert(&object.path[..dir_len]);
            continue;
        }
        let entry = dirs.entry(first).or_default();
        if second == RECORD_FILE && !deeper {
            *entry = Some(object);
        } else if deeper && rest.rsplit('/').next() == Some(RECORD_FILE) {
            strays.push(Listed::Stray {
                path: &object.path,
                reason: WRONG_DEPTH,
            });
        }
    }
    let mut out: Vec<Listed> = dirs
        .into_iter()
        .map(|(id, record)| Listed::Conversation { id, record })
        .collect();
    out.extend(bad_dirs.into_values().map(|path| Listed::Stray {
        path,
        reason: NOT_PLAIN,
    }));
    out.extend(strays);
    out
}

/// What a store's error says about a key, without the location and key it names.
fn store_reason(e: &SourceError) -> String {
    match e {
        SourceError::Store { message, .. } => message.clone(),
        SourceError::NotFound { .. } => missing_record(),
        SourceError::TooLarge { max, .. } => format!(
            "grew past max_record_bytes ({max}) in [repository] while being read; it was not indexed"
        ),
        other => other.to_string(),
    }
}

/// Walks the store down to its day prefixes (`tenant/YYYY/MM/DD`), a level at a time, the
/// listings of a level in parallel. Only an unlistable top is an error.
fn day_prefixes(store: &Store, display: &dyn Fn(&str) -> PathBuf) -> Result<Days, SourceError> {
    let accept: [fn(&str) -> bool; 4] = [
        |_| true,
        |n| is_digits(n, 4),
        |n| is_digits(n, 2),
        |n| is_digits(n, 2),
    ];
    let mut out = Days::default();
    let mut level = vec![String::new()];
    for (depth, accept) in accept.iter().enumerate() {
        let listed: Vec<(String, Result<Vec<String>, SourceError>)> = level
            .into_par_iter()
            .map(|rel| {
                let names = store.dirs(&rel);
                (rel, names)
            })
            .collect();
        let mut next = Vec::new();
        for (rel, names) in listed {
            let names = match names {
                Ok(names) => names,
                Err(e) if depth == 0 => return Err(e),
                Err(e) => {
                    out.failures.push(RecordFailure {
                        path: display(&rel),
                        reason: store_reason(&e),
                    });
                    out.unlisted.push(rel);
                    continue;
                }
            };
            for name in names {
                // The quarantine area under the top holds no conversations
                // (docs/operations.md, "Quarantine"): never walked.
                if depth == 0 && name == super::super::quarantine::QUARANTINE_DIR {
                    continue;
                }
                let child = join(&rel, &name);
                if !plain(&name) {
                    out.failures.push(RecordFailure {
                        path: display(&child),
                        reason: NOT_PLAIN.into(),
                    });
                } else if accept(&name) {
                    next.push(child);
                }
            }
        }
        level = next;
    }
    level.sort();
    out.days = level;
    Ok(out)
}

/// One pass over a repository in a store.
struct StorePass<'a> {
    store: &'a Store,
    max_record_bytes: u64,
    shared: &'a Shared<'a>,
    display: &'a (dyn Fn(&str) -> PathBuf + Sync),
}

impl StorePass<'_> {
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
        let objects = match self.store.objects(day) {
            Ok(objects) => objects,
            Err(e) => {
                // What the catalog holds of the day is kept.
                shared.send(Found::Failure(
                    RecordFailure {
                        path: (self.display)(day),
                        reason: store_reason(&e),
                    },
                    None,
                ));
                return Ok(());
            }
        };
        for listed in conversations(day, &objects) {
            if !shared.going_on() {
                // What was not looked at stays as the catalog has it.
                return Ok(());
            }
            let (id, record) = match listed {
                Listed::Conversation { id, record } => (id, record),
                Listed::Stray { path, reason } => {
                    let stray = RecordFailure {
                        path: (self.display)(path),
                        reason: reason.into(),
                    };
                    if !shared.send(Found::Failure(stray, None)) {
                        return Ok(());
                    }
                    continue;
                }
            };
            shared.saw();
            let rel_dir = format!("{day}/{id}");
            let previous = known.remove(&rel_dir);
            let path = (self.display)(&format!("{rel_dir}/{RECORD_FILE}"));
            let found = match record {
                None => failed(path, missing_record(), &rel_dir, previous.is_some()),
                // A store that lists no ETag is never trusted to be unchanged.
                Some(stored)
                    if !stored.etag.is_empty() && previous == Some(stored.fingerprint()) =>
                {
                    shared.counters.unchanged.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Some(stored) => match self.read(stored, &rel_dir) {
                    Ok(conversation) => Found::Change(IndexChange::Upsert {
                        rel_dir,
                        fingerprint: stored.fingerprint(),
                        conversation: Box::new(conversation),
                    }),
                    Err(why) => failed(path, why, &rel_dir, previous.is_some()),
                },
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

    /// The record `stored`, refused by its listed size when over the cap, and read no
    /// further than the cap (plus the byte that shows it grew) otherwise.
    fn read(&self, stored: &Stored, rel_dir: &str) -> Result<Conversation, String> {
        let max = self.max_record_bytes;
        if stored.size > max {
            return Err(format!(
                "{} bytes, more than max_record_bytes ({max}) in [repository] allows; it was not read (raise the limit if the record is genuine)",
                stored.size
            ));
        }
        let bytes = self
            .store
            .read(&stored.path, max)
            .map_err(|e| store_reason(&e))?;
        let record = Conversation::from_json(&bytes)?;
        check_record(&record, rel_dir)?;
        Ok(record)
    }
}

/// Brings the catalog up to date with the repository in `store`, which [`Store::check`] has
/// found usable, reading no record larger than `max_record_bytes`. A stop asked of `control`
/// ends the pass early as on disk.
pub fn index_store(
    store: &Store,
    max_record_bytes: u64,
    catalog: &dyn Catalog,
    progress: &dyn Progress,
    control: &Control,
) -> Result<IndexReport, IndexError> {
    let location = store.location();
    let display = |rel: &str| PathBuf::from(format!("{location}{rel}"));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(LISTING_THREADS)
        .thread_name(|i| format!("index-list-{i}"))
        .build()
        .map_err(IndexError::Threads)?;
    pool.install(|| {
        let walked = day_prefixes(store, &display)?;
        let record_path = |rel_dir: &str| display(&format!("{rel_dir}/{RECORD_FILE}"));
        run_pass(
            catalog,
            progress,
            control,
            walked,
            &record_path,
            |shared, days| {
                let pass = StorePass {
                    store,
                    max_record_bytes,
                    shared,
                    display: &display,
                };
                days.par_iter().try_for_each(|day| pass.scan_day(day))
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(path: &str) -> Stored {
        Stored {
            path: path.into(),
            size: 1,
            etag: "e".into(),
        }
    }

    const DAY: &str = "acme/2026/01/02";

    fn sort(keys: &[&str]) -> Vec<String> {
        let objects: Vec<Stored> = keys.iter().map(|k| stored(&format!("{DAY}/{k}"))).collect();
        conversations(DAY, &objects)
            .into_iter()
            .map(|l| match l {
                Listed::Conversation { id, record } => format!("{id}:{}", record.is_some()),
                Listed::Stray { path, reason } => format!(
                    "stray {}:{}",
                    path.strip_prefix(DAY).unwrap(),
                    if reason == NOT_PLAIN { "name" } else { "depth" }
                ),
            })
            .collect()
    }

    #[test]
    fn a_day_listing_finds_records_one_level_down_and_directories_without_one() {
        assert_eq!(
            sort(&[
                "c1/conversation.json",
                "c1/a.wav",
                "c2/a.wav",
                "c3/",
                "notes.txt",
            ]),
            ["c1:true", "c2:false", "c3:false"]
        );
    }

    #[test]
    fn records_at_other_depths_are_strays() {
        assert_eq!(
            sort(&[
                "conversation.json",
                "c1/sub/conversation.json",
                "c2/x/y/conversation.json"
            ]),
            [
                "c1:false",
                "c2:false",
                "stray /conversation.json:depth",
                "stray /c1/sub/conversation.json:depth",
                "stray /c2/x/y/conversation.json:depth",
            ]
        );
    }

    #[test]
    fn names_that_are_not_plain_are_strays_once_each() {
        assert_eq!(
            sort(&[
                "../conversation.json",
                "../a.wav",
                "./conversation.json",
                "/conversation.json",
                "c\u{7}/conversation.json",
                "ok/conversation.json",
            ]),
            [
                "ok:true",
                "stray /:name",
                "stray /.:name",
                "stray /..:name",
                "stray /c\u{7}:name",
            ]
        );
    }

    #[test]
    fn keys_of_a_neighbouring_day_are_not_this_days() {
        let objects = [stored("acme/2026/01/020/c1/conversation.json")];
        assert!(conversations(DAY, &objects).is_empty());
    }

    #[test]
    fn plain_names_are_what_a_directory_entry_could_be() {
        for bad in ["", ".", "..", "a\nb", "\u{1b}[31m"] {
            assert!(!plain(bad), "{bad:?}");
        }
        for good in ["c1", "...", "a b", "é"] {
            assert!(plain(good), "{good:?}");
        }
    }

    #[test]
    fn the_fingerprint_follows_the_etag_and_the_size() {
        let a = stored("k");
        let b = Stored {
            etag: "f".into(),
            ..stored("k")
        };
        let c = Stored {
            size: 2,
            ..stored("k")
        };
        assert_eq!(a.fingerprint(), stored("k").fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
