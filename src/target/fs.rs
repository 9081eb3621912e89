//! The filesystem target: objects are files under a root directory.
//!
//! A file is written as a hidden temporary in its final directory and renamed over the final
//! name on commit, so a crash never leaves a partial file under a final name (a stale
//! temporary may stay behind; a later run overwrites the real object and the temporary's name
//! says what it was).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{ObjectKey, ObjectWriter, Target, TargetError};

/// Prefix of temporary files; never used by a committed object.
pub const TEMP_PREFIX: &str = ".custodian-tmp-";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory target.
pub struct FsTarget {
    name: String,
    root: PathBuf,
    fsync: bool,
}

impl FsTarget {
    /// A target writing under `root`; with `fsync`, every object is flushed to disk before it
    /// is renamed into place (durable across power loss, slower).
    pub fn new(name: &str, root: &Path, fsync: bool) -> FsTarget {
        FsTarget {
            name: name.to_owned(),
            root: root.to_owned(),
            fsync,
        }
    }

    fn io(&self, key: &str, source: io::Error) -> TargetError {
        TargetError::Io {
            target: self.name.clone(),
            key: key.to_owned(),
            cause: source,
        }
    }

    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }
}

struct FsWriter {
    file: File,
    temp: PathBuf,
    dest: PathBuf,
    fsync: bool,
    committed: bool,
    target: String,
    key: String,
}

impl Write for FsWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl ObjectWriter for FsWriter {
    fn key(&self) -> &str {
        &self.key
    }

    fn local_file(&mut self) -> Option<&mut File> {
        Some(&mut self.file)
    }

    fn commit(mut self: Box<Self>, _sha256: &str) -> Result<(), TargetError> {
        let result = (|| {
            if self.fsync {
                self.file.sync_all()?;
            }
            std::fs::rename(&self.temp, &self.dest)
        })();
        match result {
            Ok(()) => {
                self.committed = true;
                Ok(())
            }
            Err(source) => Err(TargetError::Io {
                target: self.target.clone(),
                key: self.key.clone(),
                cause: source,
            }),
        }
    }
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
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
        std::fs::create_dir_all(&self.root)
            .map_err(|e| unusable(format!("cannot create {}: {e}", self.root.display())))?;
        let probe = self
            .root
            .join(format!("{TEMP_PREFIX}probe-{}", std::process::id()));
        std::fs::write(&probe, b"probe")
            .map_err(|e| unusable(format!("cannot write in {}: {e}", self.root.display())))?;
        std::fs::remove_file(&probe)
            .map_err(|e| unusable(format!("cannot remove from {}: {e}", self.root.display())))
    }

    fn create(
        &self,
        key: &ObjectKey,
        _sha256: Option<&str>,
    ) -> Result<Box<dyn ObjectWriter>, TargetError> {
        let dest = self.path_of(key);
        let dir = dest.parent().expect("a key has at least one component");
        std::fs::create_dir_all(dir).map_err(|e| self.io(key.as_str(), e))?;
        let file_name = dest
            .file_name()
            .expect("a key's last component is a name")
            .to_string_lossy();
        let temp = dir.join(format!(
            "{TEMP_PREFIX}{}-{}-{file_name}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::create(&temp).map_err(|e| self.io(key.as_str(), e))?;
        Ok(Box::new(FsWriter {
            file,
            temp,
            dest,
            fsync: self.fsync,
            committed: false,
            target: self.name.clone(),
            key: key.to_string(),
        }))
    }

    fn open(&self, key: &ObjectKey) -> Result<Box<dyn io::Read + Send>, TargetError> {
        match File::open(self.path_of(key)) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(TargetError::NotFound {
                target: self.name.clone(),
                key: key.to_string(),
            }),
            Err(e) => Err(self.io(key.as_str(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{put_bytes, put_stream};

    #[test]
    fn committed_objects_appear_and_aborted_ones_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let t = FsTarget::new("t", dir.path(), false);
        t.check().unwrap();
        let key = ObjectKey::new("a/b/c.txt").unwrap();
        let rec = put_bytes(&t, &key, b"hello").unwrap();
        assert_eq!(rec.size, 5);
        assert_eq!(
            std::fs::read(dir.path().join("a/b/c.txt")).unwrap(),
            b"hello"
        );

        let key2 = ObjectKey::new("a/b/d.txt").unwrap();
        let mut w = t.create(&key2, None).unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["c.txt"]);
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
        let t = FsTarget::new("t", dir.path(), true);
        let key = ObjectKey::new("x.bin").unwrap();
        let err = put_stream(&t, &key, &mut Failing, &mut Vec::new(), None).unwrap_err();
        assert!(err.to_string().contains("disk gone"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_blocked_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("acme"), b"not a directory").unwrap();
        let t = FsTarget::new("archive", dir.path(), false);
        let err = put_bytes(&t, &ObjectKey::new("acme/x").unwrap(), b"1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("target `archive`: acme/x"), "{err}");
    }
}
