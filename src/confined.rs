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
            match rustix::fs::mkdirat(&dir.fd, name, Mode::from_raw_mode(mode)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(ConfinedError::from_errno(self.display_path(&so_far), e)),
            }
            dir = dir.open_dir(name)?;
        }
        Ok(dir)
    }

    /// Creates a new file `name` in this directory with `mode` (before the umask), failing
    /// if anything (a link included) already has that name.
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

/// True when `name` is one plain path component: not empty, not `.` or `..`, without `/`
/// or control characters (NUL among them).
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.as_bytes().contains(&b'/')
        && !name.chars().any(char::is_control)
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

    #[test]
    fn plain_names() {
        assert!(is_plain_name("turret-0042"));
        for bad in ["", ".", "..", "a/b", "../x", "/abs", "a\u{1b}b", "a\0b"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }
}
