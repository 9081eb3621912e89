//! Private scratch space for media work: the transcode and stitch outputs an export stages
//! before writing them, and ffmpeg's input and output. Their bytes are often decrypted
//! recordings, so they live in one directory per process, mode 0700, inside a scratch root that
//! must be ours and closed to group and others; files are 0600.
//!
//! A process killed with `kill -9` cannot remove its directory, so each process sweeps, when
//! it opens the root, the directories of processes no longer alive. A directory is named for
//! its process's pid and start time, so a pid reused by a later process is not taken for the
//! one that made it.

use std::fs::{DirBuilder, File, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};

/// Why the scratch root cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error(
        "scratch directory {path}: {reason}; fix it or set `scratch_dir` in the [media] table to a private directory"
    )]
    Unsafe { path: PathBuf, reason: String },
    #[error("scratch directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Prefix of each process's directory under the scratch root.
const PROCESS_PREFIX: &str = "run-";

/// This process's private scratch directory, removed when dropped.
#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
    swept: usize,
}

impl Scratch {
    /// The scratch root used when the config names none: a directory of this user's own under
    /// the system's temporary directory.
    pub fn default_root() -> PathBuf {
        std::env::temp_dir().join(format!("custodian-{}", nix::unistd::geteuid().as_raw()))
    }

    /// Opens (creating it 0700 if missing) the scratch root at `root`, refusing one that is a
    /// link, not ours, or open to group or others; sweeps what dead processes left there;
    /// makes this process's directory.
    pub fn open(root: &Path) -> Result<Scratch, ScratchError> {
        let io_err = |source: io::Error| ScratchError::Io {
            path: root.to_owned(),
            source,
        };
        match DirBuilder::new().recursive(true).mode(0o700).create(root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(e)),
        }
        check_private(root)?;
        let swept = sweep(root).map_err(io_err)?;
        let (pid, start) = process_identity(std::process::id() as i32).map_err(io_err)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{PROCESS_PREFIX}{pid}-{start}-"))
            .permissions(Permissions::from_mode(0o700))
            .tempdir_in(root)
            .map_err(io_err)?;
        Ok(Scratch { dir, swept })
    }

    /// This process's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// How many directories of dead processes opening the root removed.
    pub fn swept(&self) -> usize {
        self.swept
    }

    /// An anonymous file (mode 0600, no name), gone when closed or when the process dies.
    pub fn file(&self) -> Result<File, ScratchError> {
        let io_err = |source| ScratchError::Io {
            path: self.path().to_owned(),
            source,
        };
        let file = tempfile::tempfile_in(self.path()).map_err(io_err)?;
        // An unnamed file is created with the umask's mode; it is set to the owner's alone
        // like every other scratch file.
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(io_err)?;
        Ok(file)
    }

    /// A directory of its own (mode 0700) for a tool that needs named files, removed when
    /// dropped.
    pub fn dir(&self, prefix: &str) -> Result<tempfile::TempDir, ScratchError> {
        tempfile::Builder::new()
            .prefix(prefix)
            .permissions(Permissions::from_mode(0o700))
            .tempdir_in(self.path())
            .map_err(|source| ScratchError::Io {
                path: self.path().to_owned(),
                source,
            })
    }
}

/// Checks the root through a handle opened without following a link, so what is checked is
/// what is used.
fn check_private(root: &Path) -> Result<(), ScratchError> {
    let refuse = |reason: String| ScratchError::Unsafe {
        path: root.to_owned(),
        reason,
    };
    let fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
            refuse("it is a symbolic link or not a directory".to_owned())
        }
        e => ScratchError::Io {
            path: root.to_owned(),
            source: e.into(),
        },
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| ScratchError::Io {
        path: root.to_owned(),
        source: e.into(),
    })?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Err(refuse("it is not a directory".to_owned()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if st.st_uid != me {
        return Err(refuse(format!(
            "it belongs to uid {}, not to this user (uid {me}), so its owner could read the plaintext staged there",
            st.st_uid
        )));
    }
    let mode = st.st_mode & 0o777;
    if mode & 0o077 != 0 {
        return Err(refuse(format!(
            "its mode is {mode:04o}, open to group or others (chmod 700 it)"
        )));
    }
    Ok(())
}

/// Removes the directories of processes no longer alive; returns how many.
fn sweep(root: &Path) -> io::Result<usize> {
    let mut swept = 0;
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some((pid, start)) = parse_name(&name) else {
            continue;
        };
        if process_identity(pid).is_ok_and(|(_, s)| s == start) {
            continue;
        }
        // remove_dir_all neither follows links nor leaves the directory it was given.
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => swept += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "removing {} left by a dead process: {e}",
                        entry.path().display()
                    ),
                ));
            }
        }
    }
    Ok(swept)
}

/// The pid and start time a process directory's name holds: `run-<pid>-<start>-<random>`.
fn parse_name(name: &str) -> Option<(i32, u64)> {
    let mut parts = name.strip_prefix(PROCESS_PREFIX)?.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((pid, start))
}

/// `pid` and its start time (clock ticks after boot, field 22 of `/proc/<pid>/stat`); an
/// error when no such process is alive.
fn process_identity(pid: i32) -> io::Result<(i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces and parentheses; fields after its closing
    // parenthesis start at field 3.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::other("unreadable /proc stat"))?;
    let start = after
        .split_whitespace()
        .nth(22 - 3)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("unreadable /proc stat"))?;
    Ok((pid, start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn the_process_directory_and_its_files_are_private() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("scratch");
        let scratch = Scratch::open(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(scratch.path()), 0o700);
        let dir = scratch.dir("ffmpeg-").unwrap();
        assert_eq!(mode(dir.path()), 0o700);
        let f = scratch.file().unwrap();
        assert_eq!(f.metadata().unwrap().mode() & 0o777, 0o600);
        let path = scratch.path().to_owned();
        drop(dir);
        drop(scratch);
        assert!(!path.exists(), "a process's directory goes when it is done");
    }

    #[test]
    fn a_root_open_to_others_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("scratch");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, Permissions::from_mode(0o750)).unwrap();
        let err = Scratch::open(&root).unwrap_err().to_string();
        assert!(
            err.contains("mode is 0750") && err.contains("chmod 700"),
            "{err}"
        );
        assert!(err.contains("scratch_dir"), "{err}");
    }

    #[test]
    fn a_root_of_another_user_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("scratch");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, Permissions::from_mode(0o700)).unwrap();
        let other = nix::unistd::geteuid().as_raw() + 1;
        std::os::unix::fs::chown(&root, Some(other), None)
            .expect("changing the owner needs root, which the tests run as");
        let err = Scratch::open(&root).unwrap_err().to_string();
        assert!(err.contains(&format!("belongs to uid {other}")), "{err}");
    }

    #[test]
    fn a_linked_root_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&real, t.path().join("link")).unwrap();
        let err = Scratch::open(&t.path().join("link"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }

    #[test]
    fn directories_of_dead_processes_are_swept_and_live_ones_kept() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("scratch");
        let first = Scratch::open(&root).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id() as i32;
        child.wait().unwrap();
        let dead = root.join(format!("{PROCESS_PREFIX}{dead_pid}-1-abc"));
        std::fs::create_dir_all(dead.join("ffmpeg-x")).unwrap();
        std::fs::write(dead.join("ffmpeg-x/in.mp4"), b"plaintext").unwrap();
        let (me, start) = process_identity(std::process::id() as i32).unwrap();
        let reused = root.join(format!("{PROCESS_PREFIX}{me}-{}-abc", start + 1));
        std::fs::create_dir(&reused).unwrap();
        let other = root.join("not-ours");
        std::fs::create_dir(&other).unwrap();
        let second = Scratch::open(&root).unwrap();
        assert_eq!(second.swept(), 2);
        assert!(!dead.exists() && !reused.exists());
        assert!(first.path().exists(), "a live process's directory is kept");
        assert!(
            other.exists(),
            "what is not a process directory is left alone"
        );
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_name("run-42-123-xYz"), Some((42, 123)));
        assert_eq!(parse_name("run-42-123"), None);
        assert_eq!(parse_name("run-x-1-a"), None);
        assert_eq!(parse_name("other"), None);
    }
}
