//! The filesystem target: objects are files under a root directory.
//!
//! The root is opened once; every directory under it is created and entered one component at
//! a time through handles that never follow a link, so a link planted in the target (in place
//! of a directory or of a final name) fails the item instead of sending a write outside the
//! root. A file is written as a temporary with a short random name in its final directory
//! (created exclusively, never through a link) and renamed over the final name on commit, so
//! a crash never leaves a partial file under a final name; a stale temporary may stay behind,
//! recognisable by [`TEMP_PREFIX`].
//!
//! Durable by default (docs/operations.md, "Durability"): a committed file waits under its
//! temporary name for [`Target::settle`], which the caller runs once per batch before it
//! records the batch: the bytes of every waiting file are synced (many at once, so the disk
//! writes them together, as `sync` would), each is renamed into place, and every directory that
//! gained an entry is synced, with those above it. A power cut leaves a whole file or none
//! under a final name, and nothing recorded that the disk lacks. [`Durability::UnsafeNoSync`]
//! renames at commit and syncs nothing.
//!
//! Files are created with the target's `file_mode` (0600 unless configured) before any byte
//! is written, and new directories 0700 (0750 when the group may read files).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rustix::fs::FileType;

use super::{Durability, ObjectKey, ObjectWriter, Target, TargetError, WriteContext};
use crate::confined::{ConfinedError, Dir, Persist, Staged, in_parallel};

pub use crate::confined::TEMP_PREFIX;

/// Mode of exported files unless a target sets `file_mode`: nobody but the owner reads
/// recordings.
pub const DEFAULT_FILE_MODE: u32 = 0o600;

/// The mode of directories holding files of `file_mode`: the group may enter them when it may
/// read the files.
pub fn dir_mode(file_mode: u32) -> u32 {
    if file_mode & 0o040 != 0 { 0o750 } else { 0o700 }
}

/// A directory target.
pub struct FsTarget {
    name: String,
    path: PathBuf,
    durability: Durability,
    file_mode: u32,
    /// The root, opened by the first operation; everything after goes through this handle.
    root: OnceLock<Dir>,
    /// Files committed and waiting for [`Target::settle`], in commit order.
    unsettled: Arc<Mutex<Vec<Unsettled>>>,
}

/// A committed file waiting under its temporary name for [`Target::settle`].
#[derive(Debug)]
struct Unsettled {
    /// Its directory, relative to the root (`""` is the root).
    dir: String,
    temp: String,
    name: String,
}

impl FsTarget {
    /// A target writing under `root`, making its files as durable as `durability` says.
    pub fn new(name: &str, root: &Path, durability: Durability) -> FsTarget {
        FsTarget {
            name: name.to_owned(),
            path: root.to_owned(),
            durability,
            file_mode: DEFAULT_FILE_MODE,
            root: OnceLock::new(),
            unsettled: Arc::default(),
        }
    }

    /// The same target creating its files with `mode` (owner and group bits only, checked
    /// by the config).
    pub fn with_file_mode(mut self, mode: u32) -> FsTarget {
        self.file_mode = mode;
        self
    }

    /// The root's handle, opened on first use; with `create`, a missing root is created
    /// first (the configured path itself, so links on the way to it are the operator's).
    fn root(&self, create: bool) -> Result<&Dir, ConfinedError> {
        if let Some(root) = self.root.get() {
            return Ok(root);
        }
        if create && !self.path.exists() {
            // Exactly the directory mode, as for every directory below it: a strict umask
            // would keep the archive group out.
            let mode = dir_mode(self.file_mode);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&self.path)
                .and_then(|()| {
                    std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(mode))
                })
                .map_err(|source| ConfinedError::Io {
                    path: self.path.clone(),
                    source,
                })?;
        }
        let opened = Dir::open_root(&self.path)?;
        Ok(self.root.get_or_init(|| opened))
    }

    fn io(&self, key: &str, source: io::Error) -> TargetError {
        TargetError::Io {
            target: self.name.clone(),
            key: key.to_owned(),
            cause: source,
        }
    }

    /// A refused or failed confined operation, as an error of the item writing `key`; the
    /// message names the path and why (a link, a non-directory), the kind stays (a full disk
    /// is still recognised as one).
    fn confined(&self, key: &ObjectKey, e: ConfinedError) -> TargetError {
        self.io(key.as_str(), io::Error::new(e.kind(), e))
    }

    /// Opens (creating what is missing) the directory `key` goes in and checks that its final
    /// name is free or a regular file.
    fn prepare<'k>(&self, key: &'k ObjectKey) -> Result<(Dir, &'k str), ConfinedError> {
        let (parent, name) = match key.as_str().rsplit_once('/') {
            Some((parent, name)) => (parent, name),
            None => ("", key.as_str()),
        };
        let dir = self
            .root(true)?
            .create_dir_all(parent, dir_mode(self.file_mode))?;
        match dir.stat(name) {
            Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => {}
                FileType::Symlink => {
                    return Err(ConfinedError::Symlink {
                        path: dir.display_path(name),
                    });
                }
                other => {
                    return Err(ConfinedError::NotRegular {
                        path: dir.display_path(name),
                        kind: crate::confined::kind_name(other),
                    });
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok((dir, name))
    }
}

struct FsWriter {
    staged: Staged,
    /// Where the committed file waits for [`Target::settle`]; None when nothing is synced
    /// (the file is renamed at commit).
    unsettled: Option<Arc<Mutex<Vec<Unsettled>>>>,
    target: String,
    key: String,
}

impl Write for FsWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.staged.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.staged.file().flush()
    }
}

impl ObjectWriter for FsWriter {
    fn key(&self) -> &str {
        &self.key
    }

    fn local_file(&mut self) -> Option<&mut File> {
        Some(self.staged.file())
    }

    fn commit(self: Box<Self>, _sha256: &str) -> Result<(), TargetError> {
        let FsWriter {
            staged,
            unsettled,
            target,
            key,
        } = *self;
        let Some(unsettled) = unsettled else {
            return staged
                .commit(Persist::Nothing)
                .map_err(|e| TargetError::Io {
                    target,
                    key,
                    cause: io::Error::new(e.kind(), e),
                });
        };
        let (dir, name) = key.rsplit_once('/').unwrap_or(("", &key));
        let (dir, name) = (dir.to_owned(), name.to_owned());
        let temp = staged.keep();
        unsettled
            .lock()
            .expect("unsettled files lock")
            .push(Unsettled { dir, temp, name });
        Ok(())
    }
}

impl Drop for FsTarget {
    /// Files committed but never settled belong to a batch that was not recorded (its run
    /// failed first): their temporaries are removed, best effort.
    fn drop(&mut self) {
        let files = std::mem::take(&mut *self.unsettled.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(root) = self.root.get() {
            discard(root, &files);
        }
    }
}

impl Target for FsTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> Result<(), TargetError> {
        let unusable = |message: String| TargetError::Unusable {
            target: self.name.clone(),
            message,
        };
        let root = self
            .root(true)
            .map_err(|e| unusable(format!("cannot create or open it: {e}")))?;
        let probe = crate::confined::temp_name()
            .map_err(|e| unusable(format!("cannot name a probe file: {e}")))?;
        let written = root
            .create_new(&probe, self.file_mode)
            .map_err(|e| unusable(format!("cannot write in it: {e}")))?
            .write_all(b"probe");
        let removed = root.unlink(&probe);
        written.map_err(|e| {
            unusable(format!(
                "cannot write in it: {}: {e}",
                root.display_path(&probe).display()
            ))
        })?;
        removed.map_err(|e| unusable(format!("cannot remove from it: {e}")))
    }

    fn create(
        &self,
        key: &ObjectKey,
        _sha256: Option<&str>,
        _cx: &WriteContext,
    ) -> Result<Box<dyn ObjectWriter>, TargetError> {
        let staged = self
            .prepare(key)
            .and_then(|(dir, name)| Staged::new(dir, OsStr::new(name), self.file_mode))
            .map_err(|e| self.confined(key, e))?;
        Ok(Box::new(FsWriter {
            staged,
            unsettled: (self.durability == Durability::Durable).then(|| self.unsettled.clone()),
            target: self.name.clone(),
            key: key.to_string(),
        }))
    }

    /// Syncs the bytes of every file committed since the last call, renames each into place,
    /// then syncs every directory that gained an entry and those above it up to the root (a
    /// directory made for a file is an entry of its parent), each once. On failure the files
    /// not yet in place are removed: the caller records none of them.
    fn settle(&self) -> Result<(), TargetError> {
        let files = std::mem::take(&mut *self.unsettled.lock().expect("unsettled files lock"));
        if files.is_empty() {
            return Ok(());
        }
        let root = self
            .root(false)
            .map_err(|e| self.io(".", io::Error::new(e.kind(), e)))?;
        let path = |f: &Unsettled| match f.dir.as_str() {
            "" => f.temp.clone(),
            dir => format!("{dir}/{}", f.temp),
        };
        let synced = first_error(in_parallel(&files, |f| {
            root.open_file(path(f))
                .and_then(|file| {
                    file.sync_data().map_err(|source| ConfinedError::Io {
                        path: root.display_path(path(f)),
                        source,
                    })
                })
                .map_err(|e| self.io(&path(f), io::Error::new(e.kind(), e)))
        }));
        // Files of one directory come one after another (a conversation's objects): its
        // handle is opened once for them.
        let mut placed = 0;
        let renamed = synced.and_then(|()| {
            for run in files.chunk_by(|a, b| a.dir == b.dir) {
                let dir = root
                    .open_dir(&run[0].dir)
                    .map_err(|e| self.io(&run[0].dir, io::Error::new(e.kind(), e)))?;
                for f in run {
                    dir.rename(&f.temp, &f.name)
                        .map_err(|e| self.io(&path(f), io::Error::new(e.kind(), e)))?;
                    placed += 1;
                }
            }
            Ok(())
        });
        if let Err(e) = renamed {
            discard(root, &files[placed..]);
            return Err(e);
        }
        let mut dirs = BTreeSet::new();
        for f in &files {
            let mut at = f.dir.as_str();
            while dirs.insert(at) && !at.is_empty() {
                at = at.rsplit_once('/').map_or("", |(up, _)| up);
            }
        }
        let dirs: Vec<&str> = dirs.into_iter().collect();
        first_error(in_parallel(&dirs, |rel| {
            root.open_dir(rel)
                .and_then(|dir| dir.sync())
                .map_err(|e| self.io(rel, io::Error::new(e.kind(), e)))
        }))
    }

    fn open(&self, key: &ObjectKey) -> Result<Box<dyn io::Read + Send>, TargetError> {
        match self
            .root(false)
            .and_then(|root| root.open_file(key.as_str()))
        {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(TargetError::NotFound {
                target: self.name.clone(),
                key: key.to_string(),
            }),
            Err(e) => Err(self.confined(key, e)),
        }
    }
}

/// Removes the temporaries of `files`, best effort: one left behind is recognisable by its
/// prefix.
fn discard(root: &Dir, files: &[Unsettled]) {
    for f in files {
        let _ = root.open_dir(&f.dir).and_then(|dir| dir.unlink(&f.temp));
    }
}

fn first_error(results: Vec<Result<(), TargetError>>) -> Result<(), TargetError> {
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confined::mode_of;
    use crate::target::{put_bytes, put_stream};

    #[test]
    fn committed_objects_appear_and_aborted_ones_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let t = FsTarget::new("t", dir.path(), Durability::Durable);
        t.check().unwrap();
        let key = ObjectKey::new("a/b/c.txt").unwrap();
        let rec = put_bytes(&t, &key, b"hello", &WriteContext::default()).unwrap();
        t.settle().unwrap();
        assert_eq!(rec.size, 5);
        assert_eq!(
            std::fs::read(dir.path().join("a/b/c.txt")).unwrap(),
            b"hello"
        );

        let key2 = ObjectKey::new("a/b/d.txt").unwrap();
        let mut w = t.create(&key2, None, &WriteContext::default()).unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["c.txt"]);
    }

    #[test]
    fn settling_places_files_and_reports_a_directory_it_cannot_reach() {
        let dir = tempfile::tempdir().unwrap();
        let t = FsTarget::new("t", dir.path(), Durability::Durable);
        for key in ["a/b/1.txt", "a/b/2.txt", "a/c/3.txt"] {
            put_bytes(
                &t,
                &ObjectKey::new(key).unwrap(),
                b"x",
                &WriteContext::default(),
            )
            .unwrap();
        }
        t.settle().unwrap();
        assert!(t.unsettled.lock().unwrap().is_empty(), "settled once");

        put_bytes(
            &t,
            &ObjectKey::new("a/d/4.txt").unwrap(),
            b"x",
            &WriteContext::default(),
        )
        .unwrap();
        std::fs::rename(dir.path().join("a/d"), dir.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("moved"), dir.path().join("a/d")).unwrap();
        let err = t.settle().unwrap_err().to_string();
        assert!(err.contains("a/d"), "{err}");

        let dropped = FsTarget::new("d", dir.path(), Durability::Durable);
        put_bytes(
            &dropped,
            &ObjectKey::new("f/6.txt").unwrap(),
            b"x",
            &WriteContext::default(),
        )
        .unwrap();
        drop(dropped);
        assert_eq!(
            std::fs::read_dir(dir.path().join("f")).unwrap().count(),
            0,
            "a target dropped unsettled leaves no temporary"
        );

        let unsafe_target = FsTarget::new("u", dir.path(), Durability::UnsafeNoSync);
        put_bytes(
            &unsafe_target,
            &ObjectKey::new("e/5.txt").unwrap(),
            b"x",
            &WriteContext::default(),
        )
        .unwrap();
        assert!(
            unsafe_target.unsettled.lock().unwrap().is_empty(),
            "nothing is noted for a target that syncs nothing"
        );
    }

    #[test]
    fn a_failing_source_leaves_no_object() {
        struct Failing;
        impl io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk gone"))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let t = FsTarget::new("t", dir.path(), Durability::Durable);
        let key = ObjectKey::new("x.bin").unwrap();
        let err = put_stream(
            &t,
            &key,
            &mut Failing,
            &mut Vec::new(),
            None,
            &WriteContext::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("disk gone"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// A target under `<tmp>/root` and a directory `<tmp>/outside` holding `secret`.
    fn beside_outside() -> (tempfile::TempDir, FsTarget) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/secret"), b"untouched").unwrap();
        let t = FsTarget::new("archive", &dir.path().join("root"), Durability::Durable);
        t.check().unwrap();
        (dir, t)
    }

    fn outside_names(dir: &tempfile::TempDir) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join("outside"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_link_in_place_of_a_directory_never_redirects_a_write() {
        let (dir, t) = beside_outside();
        std::os::unix::fs::symlink(dir.path().join("outside"), dir.path().join("root/acme"))
            .unwrap();
        for key in ["acme/x.wav", "acme/deeper/x.wav"] {
            let err = put_bytes(
                &t,
                &ObjectKey::new(key).unwrap(),
                b"payload",
                &WriteContext::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(&format!("target `archive`: {key}")), "{err}");
            assert!(err.contains("root/acme is a symbolic link"), "{err}");
        }
        assert_eq!(outside_names(&dir), vec!["secret"]);
    }

    #[test]
    fn a_link_at_the_final_name_fails_the_item_and_its_target_is_untouched() {
        let (dir, t) = beside_outside();
        std::fs::create_dir(dir.path().join("root/acme")).unwrap();
        let link = dir.path().join("root/acme/x.wav");
        std::os::unix::fs::symlink(dir.path().join("outside/secret"), &link).unwrap();
        let key = ObjectKey::new("acme/x.wav").unwrap();
        let err = put_bytes(&t, &key, b"payload", &WriteContext::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("target `archive`: acme/x.wav"), "{err}");
        assert!(err.contains("is a symbolic link"), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join("outside/secret")).unwrap(),
            b"untouched"
        );
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(outside_names(&dir), vec!["secret"]);
        let err = t
            .open(&key)
            .err()
            .expect("a link is never read")
            .to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
    }

    #[test]
    fn a_directory_at_the_final_name_is_named() {
        let (dir, t) = beside_outside();
        std::fs::create_dir_all(dir.path().join("root/acme/x.wav")).unwrap();
        let err = put_bytes(
            &t,
            &ObjectKey::new("acme/x.wav").unwrap(),
            b"1",
            &WriteContext::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("acme/x.wav is a directory, not a regular file"),
            "{err}"
        );
    }

    #[test]
    fn a_255_byte_name_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let t = FsTarget::new("t", dir.path(), Durability::Durable);
        let name = format!("{}.wav", "n".repeat(251));
        let key = ObjectKey::new(format!("acme/{name}")).unwrap();
        put_bytes(&t, &key, b"long name", &WriteContext::default()).unwrap();
        t.settle().unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("acme").join(&name)).unwrap(),
            b"long name"
        );
    }

    #[test]
    fn files_are_owner_only_unless_a_file_mode_lets_the_group_read() {
        let dir = tempfile::tempdir().unwrap();
        let private = FsTarget::new("p", &dir.path().join("p"), Durability::Durable);
        put_bytes(
            &private,
            &ObjectKey::new("acme/2026/x.wav").unwrap(),
            b"1",
            &WriteContext::default(),
        )
        .unwrap();
        private.settle().unwrap();
        assert_eq!(mode_of(&dir.path().join("p")), 0o700);
        assert_eq!(mode_of(&dir.path().join("p/acme")), 0o700);
        assert_eq!(mode_of(&dir.path().join("p/acme/2026")), 0o700);
        assert_eq!(mode_of(&dir.path().join("p/acme/2026/x.wav")), 0o600);

        let group =
            FsTarget::new("g", &dir.path().join("g"), Durability::Durable).with_file_mode(0o640);
        put_bytes(
            &group,
            &ObjectKey::new("acme/x.wav").unwrap(),
            b"1",
            &WriteContext::default(),
        )
        .unwrap();
        group.settle().unwrap();
        assert_eq!(mode_of(&dir.path().join("g/acme")), 0o750);
        assert_eq!(mode_of(&dir.path().join("g/acme/x.wav")), 0o640);
    }

    #[test]
    fn a_configured_root_may_be_a_link() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("root")).unwrap();
        let t = FsTarget::new("t", &dir.path().join("root"), Durability::Durable);
        t.check().unwrap();
        put_bytes(
            &t,
            &ObjectKey::new("a/x").unwrap(),
            b"1",
            &WriteContext::default(),
        )
        .unwrap();
        t.settle().unwrap();
        assert!(dir.path().join("real/a/x").is_file());
    }

    #[test]
    fn a_blocked_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("acme"), b"not a directory").unwrap();
        let t = FsTarget::new("archive", dir.path(), Durability::Durable);
        let err = put_bytes(
            &t,
            &ObjectKey::new("acme/x").unwrap(),
            b"1",
            &WriteContext::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("target `archive`: acme/x"), "{err}");
    }
}
