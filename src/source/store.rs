//! A repository in a bucket or container, read through the store's client. Every call waits
//! on the client's runtime, so the jobs above stay synchronous; none may be made from inside
//! that runtime.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use super::SourceError;
use crate::catalog::Fingerprint;
use crate::media::stitch::ChannelFolder;
use crate::target::TargetConfig;
use crate::target::remote::{Backend, BackendError, ByteStream, Client, Listed};

/// A repository in an object store. Paths handed in and out are relative to the repository
/// (the configured prefix left off), `/`-separated, as on disk.
pub struct Store {
    backend: Arc<dyn Backend>,
    runtime: Arc<tokio::runtime::Runtime>,
}

/// An object under the repository, as a listing found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Relative to the repository.
    pub path: String,
    pub size: u64,
    /// Changes whenever the object's bytes do.
    pub etag: String,
}

impl Stored {
    /// What the catalog keeps to tell this version of the object from another: its size, and
    /// in place of a modification time the first 8 bytes of the SHA-256 of its ETag
    /// (docs/repository.md, "In an object store"). An object rewritten with the same bytes
    /// may keep its ETag, and then it is rightly unchanged.
    pub fn fingerprint(&self) -> Fingerprint {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.etag.as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        Fingerprint {
            mtime_ns: i64::from_be_bytes(head),
            size: self.size,
        }
    }
}

impl Store {
    /// The client of the store `config` describes.
    pub fn connect(config: &TargetConfig) -> Result<Store, SourceError> {
        let unusable = |message: String| SourceError::Unusable {
            location: "[repository]".into(),
            message,
        };
        let client: Option<Client> = crate::target::store_client("repository", config)
            .map_err(|e| unusable(e.to_string()))?;
        let (backend, runtime) =
            client.ok_or_else(|| unusable("a directory is not an object store".into()))?;
        Ok(Store { backend, runtime })
    }

    /// Where the repository is (`s3://bucket/prefix/`).
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// The store's full key of `path`.
    pub fn key(&self, path: &str) -> String {
        format!("{}{path}", self.backend.prefix())
    }

    /// Checks that the store answers and the credentials are accepted, before any work.
    pub fn check(&self) -> Result<(), SourceError> {
        self.runtime
            .block_on(self.backend.probe())
            .map_err(|e| SourceError::Unusable {
                location: self.location(),
                message: format!("{e}; {}", self.backend.hint()),
            })
    }

    fn error(&self, path: &str, e: BackendError) -> SourceError {
        match e {
            BackendError::NotFound => SourceError::NotFound {
                location: self.location(),
                key: path.to_owned(),
            },
            BackendError::Other(message) => SourceError::Store {
                location: self.location(),
                key: path.to_owned(),
                message,
            },
        }
    }

    /// The names one level below the directory `dir` ("" for the repository's top), as a
    /// listing with the delimiter `/` gives them, without the trailing `/`. Names are the
    /// store's: callers check them as they would a directory entry's.
    pub fn dirs(&self, dir: &str) -> Result<Vec<String>, SourceError> {
        let prefix = self.dir_key(dir);
        let found = self
            .runtime
            .block_on(self.backend.list_prefixes(&prefix))
            .map_err(|e| self.error(dir, e))?;
        Ok(found
            .into_iter()
            .filter_map(|p| {
                p.strip_prefix(&prefix)
                    .and_then(|name| name.strip_suffix('/'))
                    .map(str::to_owned)
            })
            .collect())
    }

    /// Every object below the directory `dir`, at any depth.
    pub fn objects(&self, dir: &str) -> Result<Vec<Stored>, SourceError> {
        let found = self
            .runtime
            .block_on(self.backend.list(&self.dir_key(dir)))
            .map_err(|e| self.error(dir, e))?;
        Ok(self.stored(found))
    }

    /// The objects below the directory `dir` (at any depth) whose paths sort after `after`
    /// (from the first when it is empty), in path order, as far as one listing request goes,
    /// and whether more follow.
    pub fn page(&self, dir: &str, after: &str) -> Result<(Vec<Stored>, bool), SourceError> {
        let after = if after.is_empty() {
            String::new()
        } else {
            self.key(after)
        };
        let (found, more) = self
            .runtime
            .block_on(self.backend.list_page(&self.dir_key(dir), &after))
            .map_err(|e| self.error(dir, e))?;
        Ok((self.stored(found), more))
    }

    /// The objects directly in the directory `dir` (not below its subdirectories): what a
    /// directory read gives of its files.
    pub fn files(&self, dir: &str) -> Result<Vec<Stored>, SourceError> {
        let found = self
            .runtime
            .block_on(self.backend.list_level(&self.dir_key(dir)))
            .map_err(|e| self.error(dir, e))?;
        Ok(self.stored(found))
    }

    /// Listed objects by their paths in the repository; a key outside the repository's prefix
    /// (which a store should never list) is left out.
    fn stored(&self, found: Vec<Listed>) -> Vec<Stored> {
        let top = self.backend.prefix();
        found
            .into_iter()
            .filter_map(|l| {
                let path = l.key.strip_prefix(top).filter(|p| !p.is_empty())?;
                Some(Stored {
                    path: path.to_owned(),
                    size: l.size,
                    etag: l.etag,
                })
            })
            .collect()
    }

    /// Whether the store keeps old versions of what is deleted (docs/operations.md, "A
    /// repository in an object store"); an error when it cannot tell, or keeps versions this
    /// client cannot remove.
    pub fn keeps_versions(&self) -> Result<bool, SourceError> {
        self.runtime
            .block_on(self.backend.keeps_versions())
            .map_err(|e| SourceError::Unusable {
                location: self.location(),
                message: e.to_string(),
            })
    }

    /// Deletes the objects at `paths` in batches, every version of each with `all_versions`:
    /// per path, in order, `Ok` once it holds nothing or the store's reason it refused. When
    /// the store cannot be asked at all, every path fails with that reason.
    pub fn delete(&self, paths: &[String], all_versions: bool) -> Vec<Result<(), String>> {
        let keys: Vec<String> = paths.iter().map(|p| self.key(p)).collect();
        match self
            .runtime
            .block_on(self.backend.delete_many(&keys, all_versions))
        {
            Ok(answers) => answers,
            Err(e) => vec![Err(e.to_string()); paths.len()],
        }
    }

    fn dir_key(&self, dir: &str) -> String {
        match dir.trim_matches('/') {
            "" => self.backend.prefix().to_owned(),
            d => format!("{}{d}/", self.backend.prefix()),
        }
    }

    /// The whole object at `path`, refused when it holds more than `max` bytes (no more than
    /// `max + 1` are fetched).
    pub fn read(&self, path: &str, max: u64) -> Result<Vec<u8>, SourceError> {
        let mut out = Vec::new();
        self.open(path, max)?
            .take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| SourceError::Store {
                location: self.location(),
                key: path.to_owned(),
                message: e.to_string(),
            })?;
        if out.len() as u64 > max {
            return Err(SourceError::TooLarge {
                location: self.location(),
                key: path.to_owned(),
                max,
            });
        }
        Ok(out)
    }

    /// A reader of the object at `path` that a record lists at `size` bytes: it fetches at
    /// most `size + 1` bytes, the one past the end only to tell that the object is longer.
    pub fn open(&self, path: &str, size: u64) -> Result<StoreReader, SourceError> {
        let stream = self
            .runtime
            .block_on(
                self.backend
                    .get_range(&self.key(path), 0..size.saturating_add(1)),
            )
            .map_err(|e| self.error(path, e))?;
        Ok(StoreReader {
            stream: std::sync::Mutex::new(stream),
            runtime: self.runtime.clone(),
            chunk: Bytes::new(),
        })
    }
}

/// An object's bytes as a blocking reader. The stream sits behind a lock only so the reader
/// is `Sync`, as the audio decoders that read segments ask.
pub struct StoreReader {
    stream: std::sync::Mutex<ByteStream>,
    runtime: Arc<tokio::runtime::Runtime>,
    chunk: Bytes,
}

impl Read for StoreReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let stream = self.stream.get_mut().unwrap_or_else(|p| p.into_inner());
        while self.chunk.is_empty() {
            match self.runtime.block_on(stream.next()) {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(io::Error::other(e.to_string())),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// A folder of a repository in a store (one level of keys below a prefix), as a stitch lists
/// and reads a channel's segments.
pub struct StoreFolder<'a> {
    store: &'a Store,
    /// Relative to the repository, without a trailing `/`.
    dir: String,
}

impl Store {
    /// The folder `dir` (relative to the repository).
    pub fn folder(&self, dir: &str) -> StoreFolder<'_> {
        StoreFolder {
            store: self,
            dir: dir.trim_matches('/').to_owned(),
        }
    }
}

impl StoreFolder<'_> {
    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.dir)
    }
}

impl ChannelFolder for StoreFolder<'_> {
    fn location(&self) -> PathBuf {
        PathBuf::from(format!("{}{}", self.store.location(), self.dir))
    }

    fn display(&self, name: &str) -> PathBuf {
        self.location().join(name)
    }

    fn names(&self) -> Result<Vec<String>, String> {
        let below = format!("{}/", self.dir);
        Ok(self
            .store
            .objects(&self.dir)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|o| {
                o.path
                    .strip_prefix(&below)
                    .filter(|name| !name.contains('/'))
                    .map(str::to_owned)
            })
            .collect())
    }

    fn read_head(&self, name: &str, limit: u64) -> Result<Vec<u8>, String> {
        let path = self.path(name);
        let mut bytes = Vec::new();
        self.store
            .open(&path, limit.saturating_sub(1))
            .map_err(|e| e.to_string())?
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{path}: {e}"))?;
        Ok(bytes)
    }
}
