//! Direct export: on a recording server, watch the local repository and hand each conversation
//! to the export once it is complete — its `conversation.json` parses and every artifact it
//! lists is on disk at its recorded size. A half-written directory is waited for, never
//! exported early. Only day directories whose listing changed are re-read, so a cycle costs a
//! stat per day directory plus a look at each conversation not yet complete.
//!
//! What was found complete goes into a local catalog (SQLite), and the export runs from there
//! in incremental mode: after a restart nothing complete is skipped, and nothing exported
//! is exported again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::FileType;

use super::index::{day_dirs, mtime_ns, read_record, reason, stat_record};
use crate::catalog::{Catalog, CatalogError, Fingerprint, IndexChange};
use crate::confined::{ConfinedError, Dir, kind_name};
use crate::filter::Criteria;
use crate::repository::record::{Conversation, RECORD_FILE};

/// The criteria direct export can apply: what a recording server knows of a conversation on
/// its own.
pub const DIRECT_CRITERIA: [&str; 4] = [
    "conversation_types",
    "source_platforms",
    "users",
    "extensions",
];

/// The first criterion set in `c` that direct export cannot apply, if any.
pub fn unsupported_criterion(c: &Criteria) -> Option<&'static str> {
    let allowed = Criteria {
        conversation_types: c.conversation_types.clone(),
        source_platforms: c.source_platforms.clone(),
        users: c.users.clone(),
        extensions: c.extensions.clone(),
        ..Criteria::default()
    };
    if *c == allowed {
        return None;
    }
    [
        ("tenants", !c.tenants.is_empty()),
        ("directions", !c.directions.is_empty()),
        ("start_after", c.start_after.is_some()),
        ("start_before", c.start_before.is_some()),
        ("older_than_days", c.older_than_days.is_some()),
        ("newer_than_days", c.newer_than_days.is_some()),
        ("min_duration", c.min_duration.is_some()),
        ("max_duration", c.max_duration.is_some()),
        ("confidential", c.confidential.is_some()),
        ("cdr_only", c.cdr_only.is_some()),
        ("imported", c.imported.is_some()),
        ("legal_hold", c.legal_hold.is_some()),
        ("artifact_types", !c.artifact_types.is_empty()),
        ("audio_recording_types", !c.audio_recording_types.is_empty()),
        ("file_extensions", !c.file_extensions.is_empty()),
    ]
    .into_iter()
    .find_map(|(key, set)| set.then_some(key))
}

/// Where one conversation directory stands.
#[derive(Debug)]
pub enum Check {
    /// Complete: its record, the fingerprint of its conversation.json, and when its last file
    /// was written.
    Complete {
        conversation: Box<Conversation>,
        fingerprint: Fingerprint,
        completed: SystemTime,
    },
    /// Not yet, and why.
    Waiting(String),
}

/// An instant given in nanoseconds since the epoch.
fn instant(ns: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

/// Whether the conversation at `rel_dir` is complete. Everything is looked at through `root`
/// without following a link: a record or artifact that is a link or a special file is never
/// complete, and no record larger than `max_record_bytes` is read.
pub fn check(root: &Dir, rel_dir: &str, max_record_bytes: u64) -> Check {
    match stat_record(root, &format!("{rel_dir}/{RECORD_FILE}")) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::Waiting(format!("no {RECORD_FILE} yet"));
        }
        Err(e) => return Check::Waiting(format!("{RECORD_FILE} {}", reason(&e))),
    }
    let (conversation, fingerprint) = match read_record(root, rel_dir, max_record_bytes) {
        Ok(c) => c,
        Err(e) => return Check::Waiting(format!("{RECORD_FILE} is not final yet: {e}")),
    };
    let mut completed = instant(fingerprint.mtime_ns);
    for a in &conversation.artifacts {
        let st = match root.stat(format!("{rel_dir}/{}", a.file)) {
            Ok(st) => st,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Check::Waiting(format!("{} is not there yet", a.file));
            }
            Err(e) => return Check::Waiting(format!("{} {}", a.file, reason(&e))),
        };
        let file_type = FileType::from_raw_mode(st.st_mode);
        let size = st.st_size as u64;
        if file_type != FileType::RegularFile {
            return Check::Waiting(format!(
                "{} is a {}, not a regular file; custodian never follows links in the repository",
                a.file,
                kind_name(file_type)
            ));
        }
        if size != a.size {
            return Check::Waiting(format!("{} has {size} of its {} bytes", a.file, a.size));
        }
        completed = completed.max(instant(mtime_ns(&st)));
    }
    Check::Complete {
        conversation: Box::new(conversation),
        fingerprint,
        completed,
    }
}

/// A conversation waiting to be complete.
struct Pending {
    since: SystemTime,
    warned: bool,
}

/// A conversation found complete in this cycle.
pub struct Found {
    pub rel_dir: String,
    pub conversation: Box<Conversation>,
    pub fingerprint: Fingerprint,
    pub completed: SystemTime,
}

/// Watches a repository for conversations becoming complete.
pub struct Watcher {
    root: PathBuf,
    max_record_bytes: u64,
    /// Links met in place of directories, each warned about once.
    links: HashSet<PathBuf>,
    /// Day directories and the modification time their listing was read at.
    days: HashMap<String, SystemTime>,
    /// Conversations seen but not complete yet.
    pending: BTreeMap<String, Pending>,
    /// Conversations already complete (in the state catalog).
    known: HashSet<String>,
    /// How long a conversation may stay incomplete before a warning.
    patience: Duration,
}

impl Watcher {
    /// A watcher that knows what the state catalog already holds.
    pub fn new(
        root: &Path,
        max_record_bytes: u64,
        state: &dyn Catalog,
        patience: Duration,
    ) -> Result<Watcher, CatalogError> {
        let mut known = HashSet::new();
        for day in state.indexed_days()? {
            known.extend(state.fingerprints_under(&day)?.into_iter().map(|(d, _)| d));
        }
        Ok(Watcher {
            root: root.to_owned(),
            max_record_bytes,
            links: HashSet::new(),
            days: HashMap::new(),
            pending: BTreeMap::new(),
            known,
            patience,
        })
    }

    /// Conversations seen but not yet complete.
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }

    /// Looks for new conversation directories and re-checks the incomplete ones; returns those
    /// complete now (each once).
    pub fn scan(&mut self) -> Result<Vec<Found>, ConfinedError> {
        let now = SystemTime::now();
        let root = Dir::open_root(&self.root)?;
        let walked = day_dirs(&root)?;
        let mut skipped = walked.failures;
        for day in walked.days {
            let Ok(st) = root.stat(&day) else {
                continue;
            };
            let modified = instant(mtime_ns(&st));
            if self.days.get(&day) == Some(&modified) {
                continue;
            }
            for entry in root.entries(&day).unwrap_or_default() {
                let rel_dir = format!("{day}/{}", entry.name);
                match entry.file_type {
                    FileType::Directory if !self.known.contains(&rel_dir) => {
                        self.pending.entry(rel_dir).or_insert(Pending {
                            since: now,
                            warned: false,
                        });
                    }
                    FileType::Symlink => skipped.push(super::index::RecordFailure {
                        path: root.display_path(&rel_dir),
                        reason: "is a symbolic link; custodian never follows links in the repository, so it is skipped".into(),
                    }),
                    _ => {}
                }
            }
            self.days.insert(day, modified);
        }
        for f in skipped {
            if self.links.insert(f.path.clone()) {
                tracing::warn!("{f}");
            }
        }
        let mut found = Vec::new();
        let patience = self.patience;
        self.pending.retain(
            |rel_dir, p| match check(&root, rel_dir, self.max_record_bytes) {
                Check::Complete {
                    conversation,
                    completed,
                    fingerprint,
                } => {
                    found.push(Found {
                        rel_dir: rel_dir.clone(),
                        conversation,
                        fingerprint,
                        completed,
                    });
                    false
                }
                Check::Waiting(why) => {
                    if !p.warned && now.duration_since(p.since).unwrap_or_default() >= patience {
                        tracing::warn!(
                            "{rel_dir}: incomplete for {}: {why}; still waiting",
                            humantime::format_duration(patience)
                        );
                        p.warned = true;
                    }
                    true
                }
            },
        );
        self.known.extend(found.iter().map(|f| f.rel_dir.clone()));
        Ok(found)
    }
}

/// The index changes that put `found` into the state catalog.
pub fn changes(found: &[Found]) -> Vec<IndexChange> {
    found
        .iter()
        .map(|f| IndexChange::Upsert {
            rel_dir: f.rel_dir.clone(),
            fingerprint: f.fingerprint,
            conversation: f.conversation.clone(),
        })
        .collect()
}

/// Latencies from completion to export, the most recent `capacity` kept for percentiles.
pub struct Latencies {
    recent: std::collections::VecDeque<f64>,
    capacity: usize,
    pub count: u64,
}

impl Latencies {
    pub fn new(capacity: usize) -> Latencies {
        Latencies {
            recent: std::collections::VecDeque::with_capacity(capacity),
            capacity,
            count: 0,
        }
    }

    pub fn add(&mut self, ms: f64) {
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back(ms);
        self.count += 1;
    }

    /// The median and 99th percentile, in milliseconds, of the kept latencies.
    pub fn percentiles(&self) -> Option<(f64, f64)> {
        if self.recent.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.recent.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5), at(0.99)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_four_direct_criteria_are_accepted() {
        let c: Criteria =
            toml_edit::de::from_str("users = ['a']\nconversation_types = ['voice']").unwrap();
        assert_eq!(unsupported_criterion(&c), None);
        let c: Criteria = toml_edit::de::from_str("users = ['a']\nolder_than_days = 3").unwrap();
        assert_eq!(unsupported_criterion(&c), Some("older_than_days"));
        let c: Criteria = toml_edit::de::from_str("imported = true").unwrap();
        assert_eq!(unsupported_criterion(&c), Some("imported"));
    }

    #[test]
    fn percentiles_of_the_kept_latencies() {
        let mut l = Latencies::new(100);
        for i in 0..1000 {
            l.add(f64::from(i));
        }
        assert_eq!(l.count, 1000);
        assert_eq!(l.percentiles(), Some((950.0, 998.0)));
    }
}
