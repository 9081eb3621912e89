//! The upload engine every object-store target shares (S3 through either client, Azure Blob,
//! Google Cloud Storage), over a small [`Backend`] trait each client implements.
//!
//! An object no larger than one part is buffered and sent in one request that carries its
//! SHA-256. A larger one becomes a multipart upload: parts of `part_size` upload in the
//! background, at most `part_concurrency` of them at once (and twice that across the target),
//! while the next part fills, so memory is bounded whatever the recordings' sizes. Nothing is visible under the key until the upload
//! completes on commit; a writer dropped before that aborts it. Each multipart upload is noted
//! in the [`UploadJournal`] from start to end with the run it belongs to, so one cut off by a
//! crash is aborted by the process that next holds that run, or by any run once that run has
//! ended ([`Target::recover`]). The export side stays synchronous: calls wait on a small tokio
//! runtime owned by the target.

use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use chrono::{DateTime, Duration, DurationRound, Utc};

use sha2::{Digest, Sha256};

use super::{
    Expected, Headway, Keep, LockMode, Mismatch, ObjectKey, ObjectLock, ObjectWriter, PutError,
    Target, TargetError, Uploads, WriteContext,
};
use crate::catalog::uploads::UploadJournal;
use crate::catalog::{ObjectRecord, RunId};

/// Why a backend call failed. Messages never carry credentials.
#[derive(Debug)]
pub enum BackendError {
    NotFound,
    Other(String),
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendError::NotFound => f.write_str("not found"),
            BackendError::Other(m) => f.write_str(m),
        }
    }
}

pub type BackendResult<T> = Result<T, BackendError>;

/// What aborting an unfinished multipart upload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aborted {
    /// The store discarded the parts uploaded so far.
    Discarded,
    /// The store cannot delete them (Azure has no API to delete uncommitted blocks): they stay
    /// staged, invisible under the key, until the store garbage-collects them.
    LeftToExpire,
}

/// How an upload that could not be discarded is described in the logs.
const LEFT_TO_EXPIRE: &str = "its staged blocks were never committed, so nothing is visible \
    under the key; Azure has no API to delete uncommitted blocks and discards them 7 days \
    after they were staged (or when another upload commits the same key)";

/// Why an object is not written where a locked one with other bytes is stored.
const LOCKED_ELSEWHERE: &str = "another object (another SHA-256) is already stored under this key in the bucket under Object Lock, \
    and custodian never overwrites a locked object; export to another prefix or target, \
    or remove the object once its retention has ended";

fn record(key: &ObjectKey, expect: Expected<'_>) -> ObjectRecord {
    ObjectRecord {
        key: key.to_string(),
        size: expect.size,
        sha256: expect.sha256.to_owned(),
    }
}

/// The Object Lock retention one object is written with (docs/operations.md, "WORM exports").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub mode: LockMode,
    /// Whole seconds: the store keeps no finer.
    pub until: DateTime<Utc>,
    pub legal_hold: bool,
}

impl Retention {
    /// Retention under `lock` for an object of `keep`, written at `now`: until `retain_days`
    /// after the conversation ended (after `now` for a run's own files). S3 takes only dates
    /// to come, so a conversation whose retention has already run out is kept one day.
    pub fn new(lock: ObjectLock, keep: Keep, now: DateTime<Utc>) -> Retention {
        let from = keep.from.unwrap_or(now);
        let until = (from + Duration::days(lock.retain_days.into())).max(now + Duration::days(1));
        Retention {
            mode: lock.mode,
            until: until
                .duration_trunc(Duration::seconds(1))
                .expect("a date within 100 years truncates to seconds"),
            legal_hold: keep.legal_hold,
        }
    }
}

/// What a bucket under Object Lock holds at a key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockState {
    /// The SHA-256 of the object's bytes as far as the store vouches for it.
    pub sha256: Option<String>,
    /// The retention the store enforces now.
    pub retention: Option<(LockMode, DateTime<Utc>)>,
    /// The retain-until date the object was written with (its metadata): retention shortened
    /// since (governance mode, with bypass) falls short of it.
    pub written_until: Option<DateTime<Utc>>,
}

impl LockState {
    /// What is wrong with this object's retention under `lock`, if anything.
    pub fn problem(&self, lock: ObjectLock) -> Option<String> {
        let Some((mode, until)) = self.retention else {
            return Some("the object has no Object Lock retention".into());
        };
        if mode != lock.mode {
            return Some(format!(
                "retained in {} mode, but the target's object_lock mode is {}",
                mode.as_str(),
                lock.mode.as_str()
            ));
        }
        match self.written_until {
            None => Some(format!(
                "retained until {until}, but carries no retain-until date of its own: custodian did not write it under Object Lock"
            )),
            Some(written) if until < written => Some(format!(
                "retained only until {until}, short of the {written} it was written with: its retention was shortened"
            )),
            Some(_) => None,
        }
    }
}

pub(super) fn no_copy() -> BackendError {
    BackendError::Other("this store client cannot copy inside the store".into())
}

/// An object of the same store a copy is made from, as its HEAD found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopySource {
    pub bucket: String,
    /// The full key in `bucket`.
    pub key: String,
    /// Its entity tag, when asked before: a copy of an object replaced since is refused by
    /// the store.
    pub etag: Option<String>,
}

/// What a one-request copy made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Copied {
    /// The store computed the copy's SHA-256 (hex) and returned it: nothing to read back.
    Hashed(String),
    /// The store returned no SHA-256: the copy is read back, then sealed or removed, each
    /// pinned to this version of it.
    Unhashed(CopyVersion),
}

/// The store's name for the version of an object a copy made (an entity tag, a GCS
/// generation). A read, a seal or a removal pinned to it touches that copy or nothing: an
/// object written under the key since is neither taken for the copy nor removed in its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyVersion {
    pub tag: String,
    /// The store's own checksum of the copy where the seal records one (GCS's CRC32C).
    pub checksum: Option<String>,
}

/// Why a copy is neither sealed nor removed when its key holds another object by the time it
/// is read back or sealed.
const REPLACED: &str = "the copy was replaced in the store by another object before it was checked; it was neither sealed nor removed";

/// The error of a copy whose source is not in the store.
fn source_missing() -> PutError {
    PutError::Source(io::Error::new(io::ErrorKind::NotFound, "not found"))
}

fn no_object_lock() -> BackendError {
    BackendError::Other("this store client cannot use S3 Object Lock".into())
}

/// An object's bytes as they arrive.
pub type ByteStream = BoxStream<'static, BackendResult<Bytes>>;

/// An object a listing found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The full key (prefix included).
    pub key: String,
    pub size: u64,
    /// The store's entity tag, quotes removed: it changes whenever the object's bytes do.
    pub etag: String,
}

/// What one store client does for the engine. Keys are full keys (prefix included).
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Where the target points, for messages (`s3://bucket/prefix/`).
    fn location(&self) -> String;
    /// What to check when the store cannot be used (bucket, endpoint, which credentials).
    fn hint(&self) -> &'static str;
    /// The key prefix every object is written under.
    fn prefix(&self) -> &str;
    /// Lists under the prefix: the store exists and the credentials are accepted.
    async fn probe(&self) -> BackendResult<()>;
    /// Stores a whole object in one request, with its SHA-256.
    async fn put(&self, key: &str, body: Bytes, sha256: &str) -> BackendResult<()>;
    /// Starts a multipart upload; returns its id.
    async fn begin(&self, key: &str, sha256: Option<&str>) -> BackendResult<String>;
    /// Uploads part `index` (from 0); returns the token `complete` needs.
    async fn part(
        &self,
        key: &str,
        upload: &str,
        index: usize,
        body: Bytes,
    ) -> BackendResult<String>;
    /// Completes an upload from its parts' tokens in order.
    async fn complete(&self, key: &str, upload: &str, parts: Vec<String>) -> BackendResult<()>;
    /// Aborts an upload; `NotFound` when the store no longer knows it.
    async fn abort(&self, key: &str, upload: &str) -> BackendResult<Aborted>;
    /// The SHA-256 stored with an object; None when it is absent or carries none.
    async fn stored_sha256(&self, key: &str) -> BackendResult<Option<String>>;
    /// Reads an object.
    async fn get(&self, key: &str) -> BackendResult<ByteStream>;
    /// Reads the bytes of an object in `range` (the end past the object's end reads to its
    /// end): a reader never fetches more than it may read.
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> BackendResult<ByteStream>;
    /// The key prefixes one level below `prefix` (empty or ending in `/`), each ending in
    /// `/`: the "directories" of a listing with the delimiter `/`.
    async fn list_prefixes(&self, prefix: &str) -> BackendResult<Vec<String>>;
    /// Every object whose key starts with `prefix` (empty or ending in `/`), at any depth.
    async fn list(&self, prefix: &str) -> BackendResult<Vec<Listed>>;
    /// The objects whose key starts with `prefix` (at any depth) and sorts after `after` (all
    /// of them when it is empty), in key order, as far as one request of the store's listing
    /// goes, and whether more follow. A client whose store cannot start a listing at a key
    /// lists the whole prefix at once (and says no more follow).
    async fn list_page(&self, prefix: &str, after: &str) -> BackendResult<(Vec<Listed>, bool)> {
        let mut listed = self.list(prefix).await?;
        listed.retain(|l| l.key.as_str() > after);
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok((listed, false))
    }
    /// Whether this client copies inside the store (`copy`, `part_copy`, `head_in`,
    /// `get_source`, `delete`).
    fn copies(&self) -> bool {
        false
    }
    /// Whether `copy` takes an object of any size in one request (Azure's Copy Blob), so no
    /// multipart copy is made (`part_copy`, `head_in`, `get_source` unused).
    fn copies_whole(&self) -> bool {
        false
    }
    /// The size and entity tag of the object at the full key `key` of `bucket`, in the same
    /// store; None when there is none.
    async fn head_in(&self, _bucket: &str, _key: &str) -> BackendResult<Option<(u64, String)>> {
        Err(no_copy())
    }
    /// Reads the bytes of `source` (in the same store) in `range`; `NotFound` when it is not
    /// there, or has another entity tag than the one given (the object asked about is gone).
    async fn get_source(
        &self,
        _source: &CopySource,
        _range: std::ops::Range<u64>,
    ) -> BackendResult<ByteStream> {
        Err(no_copy())
    }
    /// Copies `source` to `key` inside the store in one request, storing `sha256` with it as
    /// `put` does (under `retention` when given), or only once `seal_copy` is called.
    /// `NotFound` when the source is not there.
    async fn copy(
        &self,
        _source: &CopySource,
        _key: &str,
        _sha256: &str,
        _retention: Option<Retention>,
    ) -> BackendResult<Copied> {
        Err(no_copy())
    }
    /// Reads the bytes in `range` of the copy `version` at `key`; `NotFound` when `key` holds
    /// another object now.
    async fn get_copy(
        &self,
        _key: &str,
        _version: &CopyVersion,
        _range: std::ops::Range<u64>,
    ) -> BackendResult<ByteStream> {
        Err(no_copy())
    }
    /// Called once the copy `version`, read back, matches `sha256`: a client whose copies
    /// carry no `sha256` until they are checked stores it now, so one left unchecked by a
    /// killed process is never taken for an identical object. Refused when `key` holds
    /// another object now.
    async fn seal_copy(
        &self,
        _key: &str,
        _sha256: &str,
        _version: &CopyVersion,
    ) -> BackendResult<()> {
        Ok(())
    }
    /// Removes the copy `version` at `key`, which does not match its record; an object written
    /// under `key` since is left where the store can tell them apart.
    async fn remove_copy(&self, key: &str, _version: &CopyVersion) -> BackendResult<()> {
        self.delete(key).await
    }
    /// Copies the bytes of `source` in `range` into part `index` (from 0) of the multipart
    /// upload `upload`; returns the token `complete` needs.
    async fn part_copy(
        &self,
        _source: &CopySource,
        _key: &str,
        _upload: &str,
        _index: usize,
        _range: std::ops::Range<u64>,
    ) -> BackendResult<String> {
        Err(no_copy())
    }
    /// Removes the object at `key`.
    async fn delete(&self, _key: &str) -> BackendResult<()> {
        Err(no_copy())
    }
    /// The objects directly below `prefix` (ending in `/`), as a listing with the delimiter
    /// `/` gives them: what a directory read gives of its files.
    async fn list_level(&self, prefix: &str) -> BackendResult<Vec<Listed>>;
    /// Whether the bucket keeps old versions of an object (versioning enabled, or suspended
    /// with versions kept from before): a plain delete then only hides the data.
    async fn keeps_versions(&self) -> BackendResult<bool> {
        Ok(false)
    }
    /// Deletes the objects at `keys`, in as few requests as the store allows (S3's
    /// `DeleteObjects` takes 1,000 keys), a few requests at once. With `all_versions`, every
    /// version of each key and its delete markers go too, so the data is gone, not hidden.
    /// One answer per key, in order: `Ok` once the key holds nothing (also when it held
    /// nothing before), or the store's reason it refused that key. An `Err` means the store
    /// could not be asked at all.
    async fn delete_many(
        &self,
        keys: &[String],
        all_versions: bool,
    ) -> BackendResult<Vec<Result<(), String>>>;
    /// Whether the bucket has Object Lock enabled.
    async fn object_lock_enabled(&self) -> BackendResult<bool> {
        Err(no_object_lock())
    }
    /// Stores a whole object in one request like `put`, under Object Lock `retention`.
    async fn put_locked(
        &self,
        _key: &str,
        _body: Bytes,
        _sha256: &str,
        _retention: Retention,
    ) -> BackendResult<()> {
        Err(no_object_lock())
    }
    /// Starts a multipart upload like `begin`, the object to be under Object Lock `retention`.
    async fn begin_locked(
        &self,
        _key: &str,
        _sha256: Option<&str>,
        _retention: Retention,
    ) -> BackendResult<String> {
        Err(no_object_lock())
    }
    /// Completes an upload begun with `begin_locked`, then sets `retention` on the object
    /// again: some stores apply Object Lock headers to single-request writes only.
    async fn complete_locked(
        &self,
        _key: &str,
        _upload: &str,
        _parts: Vec<String>,
        _retention: Retention,
    ) -> BackendResult<()> {
        Err(no_object_lock())
    }
    /// What the bucket holds at `key`; None when nothing.
    async fn lock_state(&self, _key: &str) -> BackendResult<Option<LockState>> {
        Err(no_object_lock())
    }
    /// Sets the legal-hold status of the object at `key`; false when nothing is there.
    async fn set_legal_hold(&self, _key: &str, _on: bool) -> BackendResult<bool> {
        Err(no_object_lock())
    }
}

/// A store's client and the runtime its calls run on.
pub type Client = (Arc<dyn Backend>, Arc<tokio::runtime::Runtime>);

/// A bucket or container (and key prefix) exports are written to.
pub struct RemoteTarget {
    name: String,
    backend: Arc<dyn Backend>,
    uploads: Uploads,
    journal: Option<Arc<dyn UploadJournal>>,
    runtime: Arc<tokio::runtime::Runtime>,
    parts: Arc<Semaphore>,
    lock: Option<ObjectLock>,
}

/// Parts in flight across all objects of a target, in units of `part_concurrency`: with the
/// defaults, 8 parts of 8 MiB, so memory stays bounded however many workers upload at once.
const TARGET_PARTS_FACTOR: usize = 2;

/// The runtime remote targets run their I/O on: two threads drive every upload of the process.
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("custodian-io")
        .enable_all()
        .build()
}

impl RemoteTarget {
    pub fn new(
        name: &str,
        (backend, runtime): Client,
        uploads: Uploads,
        journal: Option<Arc<dyn UploadJournal>>,
    ) -> RemoteTarget {
        RemoteTarget {
            name: name.to_owned(),
            backend,
            uploads,
            journal,
            runtime,
            parts: Arc::new(Semaphore::new(
                uploads.part_concurrency * TARGET_PARTS_FACTOR,
            )),
            lock: None,
        }
    }

    /// Writes every object under S3 Object Lock `lock`, when given.
    pub fn with_object_lock(mut self, lock: Option<ObjectLock>) -> RemoteTarget {
        self.lock = lock;
        self
    }

    /// A target under Object Lock refuses a bucket without it: its objects would be mutable.
    fn check_object_lock(&self) -> Result<(), TargetError> {
        if self.lock.is_none() {
            return Ok(());
        }
        let unusable = |message: String| TargetError::Unusable {
            target: self.name.clone(),
            message: format!("{}: {message}", self.backend.location()),
        };
        match self.runtime.block_on(self.backend.object_lock_enabled()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(unusable(
                "the bucket does not have Object Lock enabled, which the target's `object_lock` needs; enable it on the bucket (for example `aws s3api put-object-lock-configuration`) or write to a bucket created with Object Lock".into(),
            )),
            Err(e) => Err(unusable(format!(
                "cannot read the bucket's Object Lock configuration: {e}; {}",
                self.backend.hint()
            ))),
        }
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.backend.prefix())
    }

    fn retention(&self, keep: Keep) -> Option<Retention> {
        self.lock
            .filter(|_| !keep.pointer)
            .map(|lock| Retention::new(lock, keep, Utc::now()))
    }

    /// A copy inside the store, checked (see [`Target::copy_in_store`]).
    fn copy_checked(
        &self,
        bucket: &str,
        source_key: &str,
        key: &ObjectKey,
        expect: Expected<'_>,
        cx: &WriteContext,
    ) -> Result<ObjectRecord, PutError> {
        if let Some(stored) = super::already_stored(self, key, Some(&expect), cx)? {
            return Ok(stored);
        }
        let full_key = self.full_key(key.as_str());
        let retention = self.retention(cx.keep);
        if retention.is_some()
            && let Some(stored) = self
                .runtime
                .block_on(self.backend.lock_state(&full_key))
                .map_err(|e| self.io(key.as_str(), e))?
        {
            if stored.sha256.as_deref() == Some(expect.sha256) {
                return Ok(record(key, expect));
            }
            return Err(self.io(key.as_str(), LOCKED_ELSEWHERE).into());
        }
        if expect.size > self.uploads.copy_part_size && !self.backend.copies_whole() {
            return self.copy_large(bucket, source_key, key, expect, retention, cx);
        }
        // One request: what the copy holds is checked after it (the store's checksum, or the
        // copy read back), so the source needs no request of its own before.
        let source = CopySource {
            bucket: bucket.to_owned(),
            key: source_key.to_owned(),
            etag: None,
        };
        let copied = match self.runtime.block_on(self.backend.copy(
            &source,
            &full_key,
            expect.sha256,
            retention,
        )) {
            Ok(copied) => copied,
            Err(BackendError::NotFound) => return Err(source_missing()),
            Err(e) => return Err(self.io(key.as_str(), e).into()),
        };
        cx.headway.advance(expect.size);
        let version = match copied {
            Copied::Hashed(sha) if sha == expect.sha256 => return Ok(record(key, expect)),
            // The store's SHA-256 says the bytes differ, which removes the copy whatever else
            // happens; reading it back only tells a longer or shorter source from one with
            // other bytes (taken for other bytes when the read fails).
            Copied::Hashed(_) => {
                let found = self
                    .hash_back(&full_key, key, &expect, &cx.headway)
                    .ok()
                    .flatten()
                    .unwrap_or(Mismatch::Content);
                self.remove(&full_key, key, None);
                return Err(PutError::Mismatch(found));
            }
            Copied::Unhashed(version) => version,
        };
        let read = self
            .backend
            .get_copy(&full_key, &version, 0..expect.size.saturating_add(1));
        let io = |e| -> PutError {
            match e {
                BackendError::NotFound => self.io(key.as_str(), REPLACED).into(),
                e => self.io(key.as_str(), e).into(),
            }
        };
        if let Some(mismatch) = self.hash_read(&expect, read, &cx.headway, io)? {
            self.remove(&full_key, key, Some(&version));
            return Err(PutError::Mismatch(mismatch));
        }
        match self
            .runtime
            .block_on(self.backend.seal_copy(&full_key, expect.sha256, &version))
        {
            Ok(()) => Ok(record(key, expect)),
            Err(BackendError::NotFound) => Err(self.io(key.as_str(), REPLACED).into()),
            Err(e) => Err(self.io(key.as_str(), e).into()),
        }
    }

    /// A copy larger than one copy part: the source's size and entity tag are asked first, so
    /// that each part copies from that object (a source replaced since is refused by the
    /// store), and the source is read and checked against its record before anything is
    /// written. A multipart copy has no SHA-256 of the store's (only one of its parts'), and
    /// it carries the recording's in its metadata from the moment it exists, which a later run
    /// trusts (or, under Object Lock, cannot remove): checked after the copy, a process killed
    /// before the check, or a mismatch in a locked bucket, would leave a claim nobody checked.
    fn copy_large(
        &self,
        bucket: &str,
        source_key: &str,
        key: &ObjectKey,
        expect: Expected<'_>,
        retention: Option<Retention>,
        cx: &WriteContext,
    ) -> Result<ObjectRecord, PutError> {
        let (size, etag) = self
            .runtime
            .block_on(self.backend.head_in(bucket, source_key))
            .map_err(|e| match e {
                BackendError::NotFound => source_missing(),
                BackendError::Other(m) => PutError::Source(io::Error::other(m)),
            })?
            .ok_or_else(source_missing)?;
        if let Some(mismatch) = expect.check(size, expect.sha256) {
            return Err(PutError::Mismatch(mismatch));
        }
        let source = CopySource {
            bucket: bucket.to_owned(),
            key: source_key.to_owned(),
            etag: Some(etag),
        };
        let read = self.backend.get_source(&source, 0..size.saturating_add(1));
        if let Some(mismatch) = self.hash_read(&expect, read, &cx.headway, |e| match e {
            BackendError::NotFound => source_missing(),
            BackendError::Other(m) => PutError::Source(io::Error::other(m)),
        })? {
            return Err(PutError::Mismatch(mismatch));
        }
        self.copy_parts(&source, size, key, expect.sha256, retention, cx)?;
        Ok(record(key, expect))
    }

    /// Removes a copy that does not match its record: the copy `version` when the store named
    /// one.
    fn remove(&self, full_key: &str, key: &ObjectKey, version: Option<&CopyVersion>) {
        let removed = match version {
            Some(v) => self.runtime.block_on(self.backend.remove_copy(full_key, v)),
            None => self.runtime.block_on(self.backend.delete(full_key)),
        };
        if let Err(e) = removed {
            tracing::warn!(target = self.name, %key, "could not remove a copy that does not match its record: {e}");
        }
    }

    /// How the object at `full_key` differs from `expect`, read back (at most one byte past
    /// its size).
    fn hash_back(
        &self,
        full_key: &str,
        key: &ObjectKey,
        expect: &Expected<'_>,
        headway: &Headway,
    ) -> Result<Option<Mismatch>, PutError> {
        let read = self
            .backend
            .get_range(full_key, 0..expect.size.saturating_add(1));
        self.hash_read(expect, read, headway, |e| self.io(key.as_str(), e).into())
    }

    /// How the bytes `read` streams differ from `expect`; each chunk read is `headway`.
    fn hash_read(
        &self,
        expect: &Expected<'_>,
        read: impl Future<Output = BackendResult<ByteStream>>,
        headway: &Headway,
        io: impl Fn(BackendError) -> PutError,
    ) -> Result<Option<Mismatch>, PutError> {
        self.runtime.block_on(async {
            let mut stream = read.await.map_err(&io)?;
            let mut hasher = Sha256::new();
            let mut read = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(&io)?;
                read += chunk.len() as u64;
                headway.advance(chunk.len() as u64);
                hasher.update(&chunk);
            }
            Ok(expect.check(read, &hex::encode(hasher.finalize())))
        })
    }

    /// Copies `source` (of `size` bytes) to `key` as a multipart upload of parts of
    /// `copy_part_size`, journaled like any multipart upload, so one a killed process left open
    /// is aborted by the next run; any failure aborts it here. Each part copied is headway.
    fn copy_parts(
        &self,
        source: &CopySource,
        size: u64,
        key: &ObjectKey,
        sha256: &str,
        retention: Option<Retention>,
        cx: &WriteContext,
    ) -> Result<(), TargetError> {
        let run = cx.run;
        let full_key = self.full_key(key.as_str());
        let err = |e: String| self.io(key.as_str(), e);
        let id = match retention {
            Some(r) => self
                .runtime
                .block_on(self.backend.begin_locked(&full_key, Some(sha256), r)),
            None => self
                .runtime
                .block_on(self.backend.begin(&full_key, Some(sha256))),
        }
        .map_err(|e| err(e.to_string()))?;
        if let Some(journal) = &self.journal
            && let Err(e) = journal.upload_started(&self.name, &full_key, &id, run)
        {
            let _ = self.runtime.block_on(self.backend.abort(&full_key, &id));
            return Err(err(format!("upload journal: {e}")));
        }
        let copied = self.runtime.block_on(self.copy_all_parts(
            source,
            size,
            &full_key,
            &id,
            retention,
            &cx.headway,
        ));
        let ended = match copied {
            Ok(()) => Ok(()),
            Err(e) => match self.runtime.block_on(self.backend.abort(&full_key, &id)) {
                Ok(_) | Err(BackendError::NotFound) => Err(err(e)),
                Err(a) => {
                    // Left in the journal: the next run aborts it.
                    tracing::warn!(target = self.name, %key, "could not abort an unfinished copy ({a}); the next run will");
                    return Err(err(e));
                }
            },
        };
        if let Some(journal) = &self.journal {
            journal
                .upload_ended(&self.name, &id)
                .map_err(|e| err(format!("upload journal: {e}")))?;
        }
        ended
    }

    async fn copy_all_parts(
        &self,
        source: &CopySource,
        size: u64,
        full_key: &str,
        id: &str,
        retention: Option<Retention>,
        headway: &Headway,
    ) -> Result<(), String> {
        let part = self.uploads.copy_part_size;
        let count = size.div_ceil(part).max(1) as usize;
        let mut running = JoinSet::new();
        let mut tokens = vec![String::new(); count];
        let mut next = 0;
        while next < count || !running.is_empty() {
            while next < count && running.len() < self.uploads.part_concurrency {
                let (backend, source, key, id) = (
                    self.backend.clone(),
                    source.clone(),
                    full_key.to_owned(),
                    id.to_owned(),
                );
                let start = next as u64 * part;
                let range = start..(start + part).min(size);
                let index = next;
                running.spawn(async move {
                    let len = range.end - range.start;
                    let copied = backend.part_copy(&source, &key, &id, index, range).await;
                    (index, len, copied)
                });
                next += 1;
            }
            match running.join_next().await {
                Some(Ok((index, len, Ok(token)))) => {
                    headway.advance(len);
                    tokens[index] = token;
                }
                Some(Ok((index, _, Err(e)))) => {
                    return Err(format!("copying part {}: {e}", index + 1));
                }
                Some(Err(e)) => return Err(format!("copy task: {e}")),
                None => {}
            }
        }
        match retention {
            Some(r) => self.backend.complete_locked(full_key, id, tokens, r).await,
            None => self.backend.complete(full_key, id, tokens).await,
        }
        .map_err(|e| e.to_string())
    }

    fn io(&self, key: &str, e: impl std::fmt::Display) -> TargetError {
        TargetError::Io {
            target: self.name.clone(),
            key: key.to_owned(),
            cause: io::Error::other(e.to_string()),
        }
    }
}

impl Target for RemoteTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> Result<(), TargetError> {
        self.runtime
            .block_on(self.backend.probe())
            .map_err(|e| TargetError::Unusable {
                target: self.name.clone(),
                message: format!("{}: {e}; {}", self.backend.location(), self.backend.hint()),
            })?;
        self.check_object_lock()
    }

    fn create(
        &self,
        key: &ObjectKey,
        sha256: Option<&str>,
        cx: &WriteContext,
    ) -> Result<Box<dyn ObjectWriter>, TargetError> {
        Ok(Box::new(RemoteWriter {
            key: key.to_string(),
            full_key: self.full_key(key.as_str()),
            target: self.name.clone(),
            backend: self.backend.clone(),
            runtime: self.runtime.clone(),
            journal: self.journal.clone(),
            run: cx.run,
            headway: cx.headway.clone(),
            parts: self.parts.clone(),
            uploads: self.uploads,
            sha256: sha256.map(str::to_owned),
            buffer: BytesMut::new(),
            upload: None,
            retention: self.retention(cx.keep),
        }))
    }

    fn open(&self, key: &ObjectKey) -> Result<Box<dyn Read + Send>, TargetError> {
        let stream = self
            .runtime
            .block_on(self.backend.get(&self.full_key(key.as_str())))
            .map_err(|e| match e {
                BackendError::NotFound => TargetError::NotFound {
                    target: self.name.clone(),
                    key: key.to_string(),
                },
                e => self.io(key.as_str(), e),
            })?;
        Ok(Box::new(RemoteReader {
            runtime: self.runtime.clone(),
            stream,
            chunk: Bytes::new(),
        }))
    }

    fn stored_sha256(&self, key: &ObjectKey) -> Result<Option<String>, TargetError> {
        self.runtime
            .block_on(self.backend.stored_sha256(&self.full_key(key.as_str())))
            .map_err(|e| self.io(key.as_str(), e))
    }

    fn retention_problem(&self, key: &ObjectKey) -> Result<Option<String>, TargetError> {
        let Some(lock) = self.lock else {
            return Ok(None);
        };
        let state = self
            .runtime
            .block_on(self.backend.lock_state(&self.full_key(key.as_str())))
            .map_err(|e| self.io(key.as_str(), e))?;
        Ok(match state {
            Some(state) => state.problem(lock),
            None => Some("the object is missing".into()),
        })
    }

    fn set_legal_hold(&self, key: &ObjectKey, on: bool) -> Result<bool, TargetError> {
        if self.lock.is_none() {
            return Err(TargetError::Unusable {
                target: self.name.clone(),
                message: "the target does not write under Object Lock (`object_lock` in its table)"
                    .into(),
            });
        }
        self.runtime
            .block_on(
                self.backend
                    .set_legal_hold(&self.full_key(key.as_str()), on),
            )
            .map_err(|e| self.io(key.as_str(), e))
    }

    fn copy_in_store(
        &self,
        source_bucket: &str,
        source_key: &str,
        key: &ObjectKey,
        expect: Expected<'_>,
        cx: &WriteContext,
    ) -> Option<Result<ObjectRecord, PutError>> {
        self.backend
            .copies()
            .then(|| self.copy_checked(source_bucket, source_key, key, expect, cx))
    }

    fn recover(&self, run: Option<RunId>) -> Result<usize, TargetError> {
        let Some(journal) = &self.journal else {
            return Ok(0);
        };
        let journal_err = |e: crate::catalog::CatalogError| TargetError::Unusable {
            target: self.name.clone(),
            message: format!("upload journal: {e}"),
        };
        let open = journal
            .abandoned_uploads(&self.name, run)
            .map_err(journal_err)?;
        let mut discarded = 0;
        for upload in &open {
            match self
                .runtime
                .block_on(self.backend.abort(&upload.key, &upload.upload_id))
            {
                Ok(Aborted::Discarded) | Err(BackendError::NotFound) => {
                    discarded += 1;
                    tracing::warn!(
                        target = self.name,
                        key = upload.key,
                        "aborted a multipart upload left open by an interrupted run"
                    );
                }
                Ok(Aborted::LeftToExpire) => tracing::warn!(
                    target = self.name,
                    key = upload.key,
                    "an upload left unfinished by an interrupted run: {LEFT_TO_EXPIRE}"
                ),
                Err(e) => {
                    return Err(TargetError::Unusable {
                        target: self.name.clone(),
                        message: format!(
                            "cannot abort the upload of {} left open by an interrupted run: {e}",
                            upload.key
                        ),
                    });
                }
            }
            journal
                .upload_ended(&self.name, &upload.upload_id)
                .map_err(journal_err)?;
        }
        Ok(discarded)
    }
}

/// A multipart upload under way.
struct Upload {
    id: String,
    next: usize,
    running: JoinSet<(usize, BackendResult<String>)>,
    done: Vec<(usize, String)>,
}

/// An object being written: one request when it fits in a part, else a multipart upload.
struct RemoteWriter {
    key: String,
    full_key: String,
    target: String,
    backend: Arc<dyn Backend>,
    runtime: Arc<tokio::runtime::Runtime>,
    journal: Option<Arc<dyn UploadJournal>>,
    run: Option<RunId>,
    /// Grows by each part uploaded.
    headway: Headway,
    parts: Arc<Semaphore>,
    uploads: Uploads,
    sha256: Option<String>,
    buffer: BytesMut,
    upload: Option<Upload>,
    /// The Object Lock retention the object is written with, when the target has one.
    retention: Option<Retention>,
}

fn io_err(target: &str, key: &str, e: impl std::fmt::Display) -> TargetError {
    TargetError::Io {
        target: target.to_owned(),
        key: key.to_owned(),
        cause: io::Error::other(e.to_string()),
    }
}

impl RemoteWriter {
    fn error(&self, e: impl std::fmt::Display) -> TargetError {
        io_err(&self.target, &self.key, e)
    }

    /// Under Object Lock nothing is ever overwritten: true when an object with this SHA-256
    /// is already stored under the key (nothing to write), an error naming the key when
    /// another one is.
    fn already_locked(&self, sha256: &str) -> Result<bool, TargetError> {
        match self
            .runtime
            .block_on(self.backend.lock_state(&self.full_key))
            .map_err(|e| self.error(e))?
        {
            None => Ok(false),
            Some(stored) if stored.sha256.as_deref() == Some(sha256) => Ok(true),
            Some(_) => Err(self.error(LOCKED_ELSEWHERE)),
        }
    }

    /// Sends the buffer as the next part, starting the upload first if needed, and waits while
    /// too many parts are in flight. The error is the cause alone; callers name the object.
    fn send_part(&mut self) -> Result<(), String> {
        if self.upload.is_none() {
            let (key, sha256) = (&self.full_key, self.sha256.as_deref());
            let id = match self.retention {
                Some(r) => self
                    .runtime
                    .block_on(self.backend.begin_locked(key, sha256, r)),
                None => self.runtime.block_on(self.backend.begin(key, sha256)),
            }
            .map_err(|e| e.to_string())?;
            if let Some(journal) = &self.journal
                && let Err(e) = journal.upload_started(&self.target, &self.full_key, &id, self.run)
            {
                let _ = self
                    .runtime
                    .block_on(self.backend.abort(&self.full_key, &id));
                return Err(format!("upload journal: {e}"));
            }
            self.upload = Some(Upload {
                id,
                next: 0,
                running: JoinSet::new(),
                done: Vec::new(),
            });
        }
        let body = self.buffer.split().freeze();
        let upload = self.upload.as_mut().expect("started above");
        let (backend, key, id, index, headway) = (
            self.backend.clone(),
            self.full_key.clone(),
            upload.id.clone(),
            upload.next,
            self.headway.clone(),
        );
        upload.next += 1;
        let permit = self
            .runtime
            .block_on(self.parts.clone().acquire_owned())
            .expect("the semaphore is never closed");
        upload.running.spawn_on(
            async move {
                let len = body.len() as u64;
                let result = backend.part(&key, &id, index, body).await;
                drop(permit);
                if result.is_ok() {
                    headway.advance(len);
                }
                (index, result)
            },
            self.runtime.handle(),
        );
        while upload.running.len() >= self.uploads.part_concurrency {
            let joined = self.runtime.block_on(upload.running.join_next());
            Self::collect(upload, joined)?;
        }
        Ok(())
    }

    fn collect(
        upload: &mut Upload,
        joined: Option<Result<(usize, BackendResult<String>), tokio::task::JoinError>>,
    ) -> Result<(), String> {
        match joined {
            Some(Ok((index, Ok(token)))) => {
                upload.done.push((index, token));
                Ok(())
            }
            Some(Ok((index, Err(e)))) => Err(format!("part {}: {e}", index + 1)),
            Some(Err(e)) => Err(format!("upload task: {e}")),
            None => Ok(()),
        }
    }

    fn finish_multipart(&mut self) -> Result<(), TargetError> {
        if !self.buffer.is_empty() {
            self.send_part().map_err(|e| self.error(e))?;
        }
        let upload = self.upload.as_mut().expect("multipart");
        while !upload.running.is_empty() {
            let joined = self.runtime.block_on(upload.running.join_next());
            Self::collect(upload, joined).map_err(|e| io_err(&self.target, &self.key, e))?;
        }
        upload.done.sort_unstable_by_key(|(i, _)| *i);
        let parts = upload.done.iter().map(|(_, t)| t.clone()).collect();
        let id = upload.id.clone();
        let key = &self.full_key;
        match self.retention {
            Some(r) => self
                .runtime
                .block_on(self.backend.complete_locked(key, &id, parts, r)),
            None => self
                .runtime
                .block_on(self.backend.complete(key, &id, parts)),
        }
        .map_err(|e| self.error(e))?;
        self.upload = None;
        if let Some(journal) = &self.journal {
            journal
                .upload_ended(&self.target, &id)
                .map_err(|e| self.error(format!("upload journal: {e}")))?;
        }
        Ok(())
    }
}

impl Write for RemoteWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let part = self.uploads.part_size;
        if self.buffer.capacity() == 0 {
            self.buffer.reserve(part.min(buf.len().max(64 * 1024)));
        }
        let n = buf.len().min(part - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == part {
            self.send_part().map_err(io::Error::other)?;
            self.buffer.reserve(part);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for RemoteWriter {
    fn key(&self) -> &str {
        &self.key
    }

    fn commit(mut self: Box<Self>, sha256: &str) -> Result<(), TargetError> {
        if self.retention.is_some() && self.already_locked(sha256)? {
            // Dropping the writer aborts the multipart upload, if one was started.
            return Ok(());
        }
        if self.upload.is_some() {
            return self.finish_multipart();
        }
        let body = self.buffer.split().freeze();
        let key = &self.full_key;
        match self.retention {
            Some(r) => self
                .runtime
                .block_on(self.backend.put_locked(key, body, sha256, r)),
            None => self.runtime.block_on(self.backend.put(key, body, sha256)),
        }
        .map_err(|e| self.error(e))
    }
}

impl Drop for RemoteWriter {
    fn drop(&mut self) {
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        upload.running.abort_all();
        let _entered = self.runtime.enter();
        self.runtime
            .block_on(async { while upload.running.join_next().await.is_some() {} });
        // An upload that cannot be aborted now stays in the journal; the next run aborts it.
        match self
            .runtime
            .block_on(self.backend.abort(&self.full_key, &upload.id))
        {
            Ok(outcome) => {
                if outcome == Aborted::LeftToExpire {
                    tracing::warn!(
                        target = self.target,
                        key = self.key,
                        "the unfinished upload was abandoned: {LEFT_TO_EXPIRE}"
                    );
                }
                if let Some(journal) = &self.journal {
                    let _ = journal.upload_ended(&self.target, &upload.id);
                }
            }
            Err(BackendError::NotFound) => {
                if let Some(journal) = &self.journal {
                    let _ = journal.upload_ended(&self.target, &upload.id);
                }
            }
            Err(e) => tracing::warn!(
                target = self.target,
                key = self.key,
                "could not abort an unfinished upload ({e}); the next run will"
            ),
        }
    }
}

/// An object read back as a byte stream.
struct RemoteReader {
    runtime: Arc<tokio::runtime::Runtime>,
    stream: ByteStream,
    chunk: Bytes,
}

impl Read for RemoteReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(io::Error::other(e.to_string())),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    const LOCK: ObjectLock = ObjectLock {
        mode: LockMode::Governance,
        retain_days: 10,
    };

    #[test]
    fn retention_runs_from_the_conversations_end_or_from_now_for_a_runs_own_files() {
        let now = at("2026-03-01T12:00:00.750Z");
        let ended = Keep {
            from: Some(at("2026-02-25T10:05:00Z")),
            legal_hold: true,
            pointer: false,
        };
        let r = Retention::new(LOCK, ended, now);
        assert_eq!(r.until, at("2026-03-07T10:05:00Z"));
        assert!(r.legal_hold);
        assert_eq!(r.mode, LockMode::Governance);
        let own = Retention::new(LOCK, Keep::default(), now);
        assert_eq!(own.until, at("2026-03-11T12:00:00Z"), "whole seconds");
        assert!(!own.legal_hold);
    }

    #[test]
    fn a_retention_already_run_out_keeps_the_object_one_day() {
        let now = at("2026-03-01T12:00:00Z");
        let old = Keep {
            from: Some(at("2020-01-01T00:00:00Z")),
            legal_hold: false,
            pointer: false,
        };
        assert_eq!(
            Retention::new(LOCK, old, now).until,
            at("2026-03-02T12:00:00Z")
        );
    }

    #[test]
    fn a_retention_shorter_than_written_or_in_another_mode_is_a_problem() {
        let written = at("2030-01-01T00:00:00Z");
        let state = |mode, until| LockState {
            sha256: None,
            retention: Some((mode, until)),
            written_until: Some(written),
        };
        assert_eq!(state(LockMode::Governance, written).problem(LOCK), None);
        let short = state(LockMode::Governance, at("2029-12-31T00:00:00Z"))
            .problem(LOCK)
            .unwrap();
        assert!(short.contains("its retention was shortened"), "{short}");
        let mode = state(LockMode::Compliance, written).problem(LOCK).unwrap();
        assert!(mode.contains("retained in compliance mode"), "{mode}");
        let none = LockState::default().problem(LOCK).unwrap();
        assert!(none.contains("no Object Lock retention"), "{none}");
        let foreign = LockState {
            written_until: None,
            ..state(LockMode::Governance, written)
        };
        assert!(foreign.problem(LOCK).unwrap().contains("did not write it"));
    }
}
