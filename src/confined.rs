//! Confined file access: every path under the repository or a filesystem target is resolved
//! relative to a directory handle with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so a
//! symlink anywhere on the way (a swapped conversation directory, a planted link in a target)
//! is an error instead of a way out, and `..` cannot climb above the handle.
//!
//! Files are opened without blocking (a FIFO never hangs a walk) and only regular files are
//! handed out; removals go through the parent's handle and never through a link. This module
//! is the only place that turns a relative path into an open file or a removal under a root.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};

/// How a confined path may not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfinedError {
    #[error(
        "{path} is a symbolic link or lies behind one; custodian never follows links under a repository or target"
    )]
    Symlink { path: PathBuf },
    #[error("{path} leaves its root directory")]
    Escape { path: PathBuf },
    #[error("{path} is a {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl ConfinedError {
    /// The underlying I/O error's kind (`NotFound` for a missing file), for callers that
    /// treat a missing entry differently from a refused one.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            ConfinedError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::InvalidInput,
        }
    }

    /// As a plain I/O error, for callers whose message names the path already: the
    /// underlying error when there is one, this error's message otherwise.
    pub fn into_io(self) -> io::Error {
        match self {
            ConfinedError::Io { source, .. } => source,
            e => io::Error::new(e.kind(), e),
        }
    }

    fn from_errno(path: PathBuf, e: rustix::io::Errno) -> ConfinedError {
        match e {
            rustix::io::Errno::LOOP => ConfinedError::Symlink { path },
            rustix::io::Errno::XDEV => ConfinedError::Escape { path },
            e => ConfinedError::Io {
                path,
                source: e.into(),
            },
        }
    }
}

/// Walking through links, magic links and mount points above the handle is refused.
fn resolve() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

/// What kind of entry a `stat` found.
pub fn kind_name(file_type: FileType) -> &'static str {
    match file_type {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "special file",
    }
}

/// An open directory under which every path is resolved without following links.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// One entry of a directory listing, typed without following it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub file_type: FileType,
}

impl Dir {
    /// Opens `path` itself (named by configuration, so a link to the root is allowed) as the
    /// root everything else is resolved under.
    pub fn open_root(path: &Path) -> Result<Dir, ConfinedError> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ConfinedError::from_errno(path.to_owned(), e))?;
        Ok(Dir {
            fd,
            path: path.to_owned(),
        })
    }

    /// The path this directory was opened at, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` shown under this directory's path, for messages.
    pub fn display_path(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        if rel.as_os_str().is_empty() {
            self.path.clone()
        } else {
            self.path.join(rel)
        }
    }

    fn open_raw(&self, rel: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, ConfinedError> {
        let rel_os: &OsStr = if rel.as_os_str().is_empty() {
            OsStr::new(".")
        } else {
            rel.as_os_str()
        };
        rustix::fs::openat2(
            &self.fd,
            rel_os,
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            mode,
            resolve(),
        )
        .map_err(|e| {
            // A link in the last place of a directory is reported as "not a directory";
            // look at the entry itself to say what it is.
            let e = match e {
                rustix::io::Errno::NOTDIR if self.is_link(rel_os) => rustix::io::Errno::LOOP,
                e => e,
            };
            ConfinedError::from_errno(self.display_path(rel), e)
        })
    }

    /// True when the last component of `rel` (reached without links) is a symbolic link.
    fn is_link(&self, rel: &OsStr) -> bool {
        rustix::fs::openat2(
            &self.fd,
            rel,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            resolve(),
        )
        .and_then(rustix::fs::fstat)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
    }

    /// The directory at `rel` (`""` is this one), as a handle of its own.
    pub fn open_dir(&self, rel: impl AsRef<Path>) -> Result<Dir, ConfinedError> {
        let rel = rel.as_ref();
        let fd = self.open_raw(rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        Ok(Dir {
            fd,
            path: self.display_path(rel),
        })
    }

    /// The regular file at `rel`, open for reading. A FIFO or device is refused without
    /// blocking on it.
    pub fn open_file(&self, rel: impl AsRef<Path>) -> Result<File, ConfinedError> {
        let rel = rel.as_ref();
        let fd = self.open_raw(rel, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())?;
        let io_err = |e: rustix::io::Errno| ConfinedError::Io {
            path: self.display_path(rel),
            source: e.into(),
        };
        let stat = rustix::fs::fstat(&fd).map_err(io_err)?;
        let file_type = FileType::from_raw_mode(stat.st_mode);
        if file_type != FileType::RegularFile {
            return Err(ConfinedError::NotRegular {
                path: self.display_path(rel),
                kind: kind_name(file_type),
            });
        }
        rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(io_err)?;
        Ok(File::from(fd))
    }

    /// Metadata of the entry at `rel`, without following it (a link in the last component
    /// is reported as a link, one on the way is an error).
    pub fn stat(&self, rel: impl AsRef<Path>) -> Result<Stat, ConfinedError> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        rustix::fs::statat(&parent.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ConfinedError::from_errno(self.display_path(rel), e))
    }

    /// The entries of the directory at `rel`, sorted by name; names that are not UTF-8
    /// are left out (no record can name them).
    pub fn entries(&self, rel: impl AsRef<Path>) -> Result<Vec<Entry>, ConfinedError> {
        let rel = rel.as_ref();
        let dir = self.open_dir(rel)?;
        let io_err = |e: rustix::io::Errno| ConfinedError::Io {
            path: self.display_path(rel),
            source: e.into(),
        };
        let mut listing = rustix::fs::Dir::read_from(&dir.fd).map_err(io_err)?;
        let mut out = Vec::new();
        while let Some(entry) = listing.read() {
            let entry = entry.map_err(io_err)?;
            let bytes = entry.file_name().to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            let Ok(name) = std::str::from_utf8(bytes) else {
                continue;
            };
            let file_type = match entry.file_type() {
                FileType::Unknown => {
                    match rustix::fs::statat(&dir.fd, bytes, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) => FileType::from_raw_mode(st.st_mode),
                        Err(_) => FileType::Unknown,
                    }
                }
                t => t,
            };
            out.push(Entry {
                name: name.to_owned(),
                file_type,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The names of the real directories (not links to them) in the directory at `rel`.
    pub fn subdirs(&self, rel: impl AsRef<Path>) -> Result<Vec<String>, ConfinedError> {
        Ok(self
            .entries(rel)?
            .into_iter()
            .filter(|e| e.file_type == FileType::Directory)
            .map(|e| e.name)
            .collect())
    }

    /// The directory holding `rel` and `rel`'s last component.
    fn parent_of<'p>(&self, rel: &'p Path) -> Result<(Dir, &'p OsStr), ConfinedError> {
        let name = rel.file_name().ok_or_else(|| ConfinedError::Escape {
            path: self.display_path(rel),
        })?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        Ok((self.open_dir(parent)?, name))
    }

    /// Removes the regular file at `rel` through its parent's handle. A link, a directory
    /// or a special file in its place is refused and left alone.
    pub fn remove_file(&self, rel: impl AsRef<Path>) -> Result<(), ConfinedError> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        let stat = rustix::fs::statat(&parent.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ConfinedError::from_errno(self.display_path(rel), e))?;
        let file_type = FileType::from_raw_mode(stat.st_mode);
        if file_type == FileType::Symlink {
            return Err(ConfinedError::Symlink {
                path: self.display_path(rel),
            });
        }
        if file_type != FileType::RegularFile {
            return Err(ConfinedError::NotRegular {
                path: self.display_path(rel),
                kind: kind_name(file_type),
            });
        }
        rustix::fs::unlinkat(&parent.fd, name, AtFlags::empty())
            .map_err(|e| ConfinedError::from_errno(self.display_path(rel), e))
    }

    /// Moves the regular file at `rel` to `name` in the directory `to` (on the same filesystem)
    /// through both parents' handles, never replacing what is already there: a link, a
    /// directory or a special file at `rel` is refused and left alone, and an entry named `name`
    /// in `to` fails the move with `AlreadyExists`.
    pub fn move_file(
        &self,
        rel: impl AsRef<Path>,
        to: &Dir,
        name: &str,
    ) -> Result<(), ConfinedError> {
        let rel = rel.as_ref();
        let (parent, from) = self.parent_of(rel)?;
        let stat = rustix::fs::statat(&parent.fd, from, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ConfinedError::from_errno(self.display_path(rel), e))?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => {}
            FileType::Symlink => {
                return Err(ConfinedError::Symlink {
                    path: self.display_path(rel),
                });
            }
            kind => {
                return Err(ConfinedError::NotRegular {
                    path: self.display_path(rel),
                    kind: kind_name(kind),
                });
            }
        }
        rustix::fs::renameat_with(
            &parent.fd,
            from,
            &to.fd,
            name,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(|e| ConfinedError::from_errno(to.display_path(name), e))
    }

    /// True when `rel` here and `other_rel` under `other` are two names of one file (a rename
    /// a power cut left half durable: the new name kept, the old not yet removed).
    pub fn same_file(
        &self,
        rel: impl AsRef<Path>,
        other: &Dir,
        other_rel: impl AsRef<Path>,
    ) -> bool {
        match (self.stat(rel), other.stat(other_rel)) {
            (Ok(a), Ok(b)) => {
                FileType::from_raw_mode(a.st_mode) == FileType::RegularFile
                    && (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
            }
            _ => false,
        }
    }

    /// The filesystem (device) this directory lies on.
    pub fn device(&self) -> Result<u64, ConfinedError> {
        rustix::fs::fstat(&self.fd)
            .map(|st| st.st_dev)
            .map_err(|e| ConfinedError::from_errno(self.path.clone(), e))
    }

    /// The permission bits of this directory.
    pub fn mode(&self) -> Result<u32, ConfinedError> {
        rustix::fs::fstat(&self.fd)
            .map(|st| st.st_mode & 0o7777)
            .map_err(|e| ConfinedError::from_errno(self.path.clone(), e))
    }

    /// Creates the directory `rel` and its missing parents, one component at a time, each
    /// opened without following a link (a link in place of a directory is an error).
    pub fn create_dir_all(&self, rel: impl AsRef<Path>, mode: u32) -> Result<Dir, ConfinedError> {
        let rel = rel.as_ref();
        let mut dir = self.open_dir("")?;
        let mut so_far = PathBuf::new();
        for component in rel.components() {
            let std::path::Component::Normal(name) = component else {
                return Err(ConfinedError::Escape {
                    path: self.display_path(rel),
                });
            };
            so_far.push(name);
            let created = match rustix::fs::mkdirat(&dir.fd, name, Mode::from_raw_mode(mode)) {
                Ok(()) => true,
                Err(rustix::io::Errno::EXIST) => false,
                Err(e) => return Err(ConfinedError::from_errno(self.display_path(&so_far), e)),
            };
            dir = dir.open_dir(name)?;
            if created {
                // The umask may have narrowed `mode` (an archive group would lose its read)
                // or a lenient one left it as asked: either way the new directory gets
                // exactly `mode`. Existing directories keep the mode their owner chose.
                rustix::fs::fchmod(&dir.fd, Mode::from_raw_mode(mode))
                    .map_err(|e| ConfinedError::from_errno(self.display_path(&so_far), e))?;
            }
        }
        Ok(dir)
    }

    /// Creates a new file `name` in this directory with exactly `mode` (whatever the umask),
    /// failing if anything (a link included) already has that name.
    pub fn create_new(&self, name: &str, mode: u32) -> Result<File, ConfinedError> {
        let fd = rustix::fs::openat2(
            &self.fd,
            name,
            OFlags::WRONLY
                | OFlags::CREATE
                | OFlags::EXCL
                | OFlags::NOFOLLOW
                | OFlags::CLOEXEC
                | OFlags::NOCTTY,
            Mode::from_raw_mode(mode),
            resolve(),
        )
        .map_err(|e| ConfinedError::from_errno(self.display_path(name), e))?;
        // Set before any byte is written, so the file is never readable more widely.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
            .map_err(|e| ConfinedError::from_errno(self.display_path(name), e))?;
        Ok(File::from(fd))
    }

    /// Renames `from` to `to`, both names in this directory; `to` is replaced if it exists.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), ConfinedError> {
        rustix::fs::renameat(&self.fd, from, &self.fd, to)
            .map_err(|e| ConfinedError::from_errno(self.display_path(to), e))
    }

    /// Removes the entry `name` of this directory (a file or a link, never followed).
    pub fn unlink(&self, name: &str) -> Result<(), ConfinedError> {
        rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())
            .map_err(|e| ConfinedError::from_errno(self.display_path(name), e))
    }

    /// Flushes this directory's entries (creations, renames, removals) to disk.
    pub fn sync(&self) -> Result<(), ConfinedError> {
        rustix::fs::fsync(&self.fd).map_err(|e| ConfinedError::Io {
            path: self.path.clone(),
            source: e.into(),
        })
    }

    /// The raw handle, for calls this module does not wrap.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Syncs [`in_parallel`] runs at once.
const SYNC_THREADS: usize = 16;

/// Runs `f` on every item, [`SYNC_THREADS`] threads at a time, and returns the results in the
/// items' order. For syncs: they wait on the disk, not on a core, and a journaling filesystem
/// commits concurrent ones together (500 file or directory syncs took a tenth of the time 16
/// at once as one after another here; docs/performance.md#durability).
pub fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.is_empty() {
        return Vec::new();
    }
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(items.len().div_ceil(SYNC_THREADS))
            .map(|chunk| scope.spawn(move || chunk.iter().map(f).collect::<Vec<R>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a sync thread panicked"))
            .collect()
    })
}

/// True when `name` is one plain path component: not empty, not `.` or `..`, without `/`
/// or control characters (NUL among them).
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.as_bytes().contains(&b'/')
        && !name.chars().any(char::is_control)
}

/// Mode of the files custodian writes outside a target (decrypted or transcoded output, run
/// logs): they hold recordings or traces of them, so only the owner reads them.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Prefix of every temporary file custodian writes; no committed file has it, so one a crash
/// left behind is recognisable.
pub const TEMP_PREFIX: &str = ".custodian-tmp-";

/// A fresh temporary name: the prefix and 16 random hex digits. Short and of fixed length
/// whatever the final name (a 255-byte final name still fits), and it says nothing of the
/// file's contents.
pub fn temp_name() -> Result<String, io::Error> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| io::Error::other("the system random source failed"))?;
    Ok(format!("{TEMP_PREFIX}{}", hex::encode(bytes)))
}

/// A file written under a temporary name in the directory it belongs in, and renamed to its
/// final name only by [`Staged::commit`]; dropped uncommitted, the temporary is removed. So
/// no reader ever sees a partial file under the final name, and a crash leaves at most a
/// temporary.
///
/// The temporary is created exclusively, never through a link, with exactly the mode asked
/// for before any byte is written; the rename goes through the directory's handle, so a link
/// at the final name is replaced, never written through.
#[derive(Debug)]
pub struct Staged {
    dir: Dir,
    temp: String,
    name: std::ffi::OsString,
    file: File,
    committed: bool,
}

impl Staged {
    /// Starts writing `name` (one plain path component) in `dir`.
    pub fn new(dir: Dir, name: &OsStr, mode: u32) -> Result<Staged, ConfinedError> {
        let bytes = name.as_encoded_bytes();
        if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
            return Err(ConfinedError::Escape {
                path: dir.display_path(name),
            });
        }
        // Random names collide only by chance or by a planted file; either way, draw again.
        let mut attempts = 0;
        let (temp, file) = loop {
            let temp = temp_name().map_err(|source| ConfinedError::Io {
                path: dir.path.clone(),
                source,
            })?;
            match dir.create_new(&temp, mode) {
                Ok(file) => break (temp, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        };
        Ok(Staged {
            dir,
            temp,
            name: name.to_owned(),
            file,
            committed: false,
        })
    }

    /// Starts writing `path`, a path the user named on the command line: its directory is
    /// opened as given (links on the way there are the user's choice), the file itself is
    /// staged as in [`Staged::new`].
    pub fn beside(path: &Path, mode: u32) -> Result<Staged, ConfinedError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path.file_name().ok_or_else(|| ConfinedError::Io {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "does not name a file"),
        })?;
        Staged::new(Dir::open_root(dir)?, name, mode)
    }

    /// The temporary file, to write the contents to.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The directory the file is committed to.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Renames the temporary to the final name, first flushing to disk what `persist` asks
    /// ([`Persist`]).
    pub fn commit(mut self, persist: Persist) -> Result<(), ConfinedError> {
        let final_path = self.dir.display_path(&self.name);
        if persist == Persist::Full {
            // The bytes are on disk before the name points at them: a power cut leaves the
            // old file or the whole new one under the final name, never an empty one.
            self.file.sync_data().map_err(|source| ConfinedError::Io {
                path: final_path.clone(),
                source,
            })?;
        }
        rustix::fs::renameat(&self.dir.fd, self.temp.as_str(), &self.dir.fd, &self.name)
            .map_err(|e| ConfinedError::from_errno(final_path, e))?;
        self.committed = true;
        if persist == Persist::Full {
            self.dir.sync()?;
        }
        Ok(())
    }

    /// Keeps the temporary file (closed, not renamed) for a caller that renames it later
    /// through its directory; returns its name.
    pub fn keep(mut self) -> String {
        self.committed = true;
        std::mem::take(&mut self.temp)
    }
}

/// How much of a [`Staged::commit`] reaches the disk before it returns (docs/operations.md,
/// "Durability").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persist {
    /// The file's bytes, then its directory entry: the file survives a power cut once
    /// committed.
    Full,
    /// Nothing: after a power cut the file may be missing or empty (the unsafe mode).
    Nothing,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a temporary that cannot be removed is recognisable by its prefix.
            let _ = self.dir.unlink(&self.temp);
        }
    }
}

/// The permission bits of `path` itself (not what a link points at), for the tests of the
/// modes files and directories are created with.
#[cfg(test)]
pub(crate) fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, Dir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root/a/b")).unwrap();
        std::fs::write(dir.path().join("root/a/b/file"), b"inside").unwrap();
        std::fs::write(dir.path().join("secret"), b"outside").unwrap();
        let root = Dir::open_root(&dir.path().join("root")).unwrap();
        (dir, root)
    }

    #[test]
    fn a_regular_file_under_the_root_opens() {
        let (_t, root) = tree();
        let mut s = String::new();
        root.open_file("a/b/file")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "inside");
    }

    #[test]
    fn a_symlinked_file_is_never_opened() {
        let (t, root) = tree();
        symlink(t.path().join("secret"), t.path().join("root/a/b/link")).unwrap();
        let err = root.open_file("a/b/link").unwrap_err();
        assert!(matches!(err, ConfinedError::Symlink { .. }), "{err}");
        assert!(err.to_string().contains("a/b/link"), "{err}");
    }

    #[test]
    fn a_symlinked_directory_on_the_way_is_never_walked() {
        let (t, root) = tree();
        std::fs::create_dir(t.path().join("elsewhere")).unwrap();
        std::fs::write(t.path().join("elsewhere/file"), b"x").unwrap();
        symlink(t.path().join("elsewhere"), t.path().join("root/a/swapped")).unwrap();
        assert!(matches!(
            root.open_file("a/swapped/file"),
            Err(ConfinedError::Symlink { .. })
        ));
        assert!(matches!(
            root.remove_file("a/swapped/file"),
            Err(ConfinedError::Symlink { .. })
        ));
        assert!(t.path().join("elsewhere/file").exists());
        assert_eq!(root.subdirs("a").unwrap(), vec!["b".to_owned()]);
    }

    #[test]
    fn dot_dot_cannot_leave_the_root() {
        let (_t, root) = tree();
        assert!(matches!(
            root.open_file("a/../../secret"),
            Err(ConfinedError::Escape { .. })
        ));
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let (t, root) = tree();
        nix::unistd::mkfifo(&t.path().join("root/a/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = root.open_file("a/fifo").unwrap_err();
        assert!(
            err.to_string().contains("FIFO, not a regular file"),
            "{err}"
        );
    }

    #[test]
    fn a_link_to_a_device_is_refused() {
        let (_t, root) = tree();
        std::os::unix::fs::symlink("/dev/zero", root.path().join("a/zero")).unwrap();
        assert!(root.open_file("a/zero").is_err());
        assert!(root.remove_file("a/zero").is_err());
        assert!(root.path().join("a/zero").symlink_metadata().is_ok());
    }

    #[test]
    fn create_dir_all_refuses_a_planted_link() {
        let (t, root) = tree();
        std::fs::create_dir(t.path().join("out")).unwrap();
        symlink(t.path().join("out"), t.path().join("root/planted")).unwrap();
        assert!(matches!(
            root.create_dir_all("planted/x", 0o755),
            Err(ConfinedError::Symlink { .. })
        ));
        assert!(!t.path().join("out/x").exists());
        let made = root.create_dir_all("new/deeper", 0o755).unwrap();
        made.create_new("f", 0o600).unwrap();
        assert!(root.path().join("new/deeper/f").is_file());
        assert!(made.create_new("f", 0o600).is_err(), "exclusive create");
    }

    fn names_in(path: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn new_files_and_directories_get_exactly_the_mode_asked_for() {
        // 0o660 and 0o770 carry group write, which the usual umask (022) strips: only a mode
        // set on the handle keeps it.
        let (t, root) = tree();
        let dir = root.create_dir_all("shared/deeper", 0o770).unwrap();
        assert_eq!(mode_of(&t.path().join("root/shared")), 0o770);
        assert_eq!(mode_of(&t.path().join("root/shared/deeper")), 0o770);
        dir.create_new("f", 0o660).unwrap();
        assert_eq!(mode_of(&t.path().join("root/shared/deeper/f")), 0o660);
        std::fs::set_permissions(
            t.path().join("root/a"),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )
        .unwrap();
        root.create_dir_all("a/b", 0o700).unwrap();
        assert_eq!(
            mode_of(&t.path().join("root/a")),
            0o711,
            "an existing directory keeps its mode"
        );
    }

    #[test]
    fn a_staged_file_appears_under_its_name_only_when_committed() {
        let (t, root) = tree();
        let dir = root.open_dir("a").unwrap();
        let mut staged = Staged::new(dir, OsStr::new("out.wav"), 0o600).unwrap();
        std::io::Write::write_all(staged.file(), b"partial").unwrap();
        let names = names_in(&t.path().join("root/a"));
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            names.iter().any(|n| n.starts_with(TEMP_PREFIX)),
            "{names:?}"
        );
        drop(staged);
        assert_eq!(names_in(&t.path().join("root/a")), vec!["b"]);

        let mut staged =
            Staged::new(root.open_dir("a").unwrap(), OsStr::new("out.wav"), 0o640).unwrap();
        std::io::Write::write_all(staged.file(), b"whole").unwrap();
        staged.commit(Persist::Full).unwrap();
        assert_eq!(
            std::fs::read(t.path().join("root/a/out.wav")).unwrap(),
            b"whole"
        );
        assert_eq!(mode_of(&t.path().join("root/a/out.wav")), 0o640);
        assert_eq!(names_in(&t.path().join("root/a")), vec!["b", "out.wav"]);
    }

    #[test]
    fn in_parallel_returns_every_result_in_the_items_order() {
        assert!(in_parallel(&[] as &[u32], |i| *i).is_empty());
        for n in [1, 15, 16, 17, 1000] {
            let items: Vec<u32> = (0..n).collect();
            let threads = std::sync::Mutex::new(std::collections::HashSet::new());
            let doubled = in_parallel(&items, |i| {
                threads.lock().unwrap().insert(std::thread::current().id());
                i * 2
            });
            assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
            let used = threads.lock().unwrap().len();
            assert!(
                used <= SYNC_THREADS && used <= n as usize,
                "{n} items on {used} threads"
            );
        }
    }

    #[test]
    fn temporary_names_are_short_whatever_the_final_name() {
        let (t, root) = tree();
        let long = "x".repeat(251) + ".wav";
        assert_eq!(long.len(), 255);
        let staged = Staged::new(root.open_dir("a").unwrap(), OsStr::new(&long), 0o600).unwrap();
        let temp = names_in(&t.path().join("root/a"))
            .into_iter()
            .find(|n| n.starts_with(TEMP_PREFIX))
            .unwrap();
        assert_eq!(temp.len(), TEMP_PREFIX.len() + 16, "{temp}");
        assert!(
            !temp.contains('x'),
            "the temporary carries no part of the name: {temp}"
        );
        staged.commit(Persist::Nothing).unwrap();
        assert!(t.path().join("root/a").join(&long).is_file());
    }

    #[test]
    fn committing_over_a_link_replaces_the_link_and_leaves_its_target_alone() {
        let (t, root) = tree();
        symlink(t.path().join("secret"), t.path().join("root/a/out")).unwrap();
        let mut staged =
            Staged::new(root.open_dir("a").unwrap(), OsStr::new("out"), 0o600).unwrap();
        std::io::Write::write_all(staged.file(), b"new").unwrap();
        staged.commit(Persist::Nothing).unwrap();
        assert_eq!(std::fs::read(t.path().join("secret")).unwrap(), b"outside");
        let out = t.path().join("root/a/out");
        assert!(out.symlink_metadata().unwrap().is_file());
        assert_eq!(std::fs::read(out).unwrap(), b"new");
    }

    #[test]
    fn a_staged_name_is_one_component() {
        let (_t, root) = tree();
        for bad in ["", ".", "..", "b/file", "../escape"] {
            assert!(
                matches!(
                    Staged::new(root.open_dir("a").unwrap(), OsStr::new(bad), 0o600),
                    Err(ConfinedError::Escape { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn plain_names() {
        assert!(is_plain_name("turret-0042"));
        for bad in ["", ".", "..", "a/b", "../x", "/abs", "a\u{1b}b", "a\0b"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }
}
