//! Storage targets: where exports are written.
//!
//! The export side needs a little more than put/get: objects are streamed in, become visible
//! under their final key only when complete ([`ObjectWriter::commit`]; dropping a writer
//! aborts it), and are hashed on the way ([`HashingWriter`]), so the manifest and the audit
//! trail carry checksums of exactly the bytes written.

#[cfg(feature = "s3")]
mod aws;
#[cfg(feature = "azure")]
mod azure_copy;
pub mod fs;
#[cfg(feature = "gcs")]
mod gcs;
pub mod manifest;
#[cfg(any(feature = "s3", feature = "azure"))]
mod objstore;
#[cfg(feature = "remote")]
pub mod remote;
mod settings;

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::catalog::uploads::UploadJournal;
use crate::catalog::{ObjectRecord, RunId};

pub use settings::{TargetConfig, TargetSettings, key_prefix};

/// Why a target operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// `cause` is shown in the message, so it is deliberately not the error's `source()`:
    /// a chain printer would repeat it.
    #[error("target `{target}`: {key}: {cause}")]
    Io {
        target: String,
        key: String,
        cause: io::Error,
    },
    #[error("target `{target}` is not usable: {message}")]
    Unusable { target: String, message: String },
    #[error("target `{target}`: object {key} not found")]
    NotFound { target: String, key: String },
}

impl TargetError {
    /// The target is out of space (or over its quota): every further write fails alike.
    pub fn is_full(&self) -> bool {
        matches!(self, TargetError::Io { cause, .. }
            if matches!(cause.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded))
    }
}

/// A validated object key: relative, `/`-separated, no empty, `.` or `..` components.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn new(key: impl Into<String>) -> Result<ObjectKey, String> {
        let key = key.into();
        if key.is_empty() || key.len() > 1024 {
            return Err(format!("object key `{key}` must be 1..=1024 bytes"));
        }
        if key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.chars().any(char::is_control))
        {
            return Err(format!(
                "object key `{key}` has an empty, `.`, `..` or control-character component"
            ));
        }
        Ok(ObjectKey(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object being written. Bytes are invisible under the key until `commit`; dropping the
/// writer without committing removes what was written.
pub trait ObjectWriter: Write + Send {
    /// The key being written.
    fn key(&self) -> &str;

    /// The local file being written, when the target is a directory: a copy from a local file
    /// then runs in the kernel (`copy_file_range`) instead of through user space.
    fn local_file(&mut self) -> Option<&mut std::fs::File> {
        None
    }

    /// Makes the object visible under its key. `sha256` is the hex SHA-256 of every byte
    /// written; remote targets store it with the object.
    fn commit(self: Box<Self>, sha256: &str) -> Result<(), TargetError>;
}

/// A place exports are written to.
pub trait Target: Send + Sync {
    /// The target's name in the config.
    fn name(&self) -> &str;

    /// Checks that the target exists and accepts writes, before any work starts.
    fn check(&self) -> Result<(), TargetError>;

    /// Starts writing an object for the run `cx` names. `sha256`, when the caller knows it
    /// before writing, is stored with the object from the start (a multipart upload can take
    /// metadata only then).
    fn create(
        &self,
        key: &ObjectKey,
        sha256: Option<&str>,
        cx: &WriteContext,
    ) -> Result<Box<dyn ObjectWriter>, TargetError>;

    /// Reads an object back.
    fn open(&self, key: &ObjectKey) -> Result<Box<dyn Read + Send>, TargetError>;

    /// The SHA-256 stored with the object at `key`, when it exists and carries one. Puts
    /// whose checksum matches are skipped. A directory keeps no checksums: its puts overwrite.
    fn stored_sha256(&self, _key: &ObjectKey) -> Result<Option<String>, TargetError> {
        Ok(None)
    }

    /// Aborts the multipart uploads that killed processes left open (their bytes are gone
    /// with the process, so completing them is impossible; their items are redone): those of
    /// runs no longer running, and those of `run`, a run the caller now holds alone. Uploads
    /// of other runs still going are left alone. Returns how many were aborted.
    fn recover(&self, _run: Option<RunId>) -> Result<usize, TargetError> {
        Ok(0)
    }

    /// What is wrong with the retention of the object at `key`, when the target writes under
    /// Object Lock and the object is not retained as it was written to be; None otherwise.
    fn retention_problem(&self, _key: &ObjectKey) -> Result<Option<String>, TargetError> {
        Ok(None)
    }

    /// Sets the Object Lock legal-hold status of the object at `key` (docs/operations.md,
    /// "WORM exports"); false when no object is stored there. Only a target writing under
    /// Object Lock can.
    fn set_legal_hold(&self, _key: &ObjectKey, _on: bool) -> Result<bool, TargetError> {
        Err(TargetError::Unusable {
            target: self.name().to_owned(),
            message: "the target does not write under Object Lock (`object_lock` in its table)"
                .into(),
        })
    }

    /// Copies the object at the full key `source_key` of the bucket `source_bucket`, in the
    /// same store as this target, to `key` inside the store, so its bytes need not pass
    /// through this process to be written (docs/operations.md, "Server-side copy"). The copy
    /// must have `expect`'s size and SHA-256 (the store's checksum of the copy, or the copy
    /// read back), or it is removed and the put fails; a multipart copy is only begun once
    /// the source, read and hashed, has them. None when this target cannot copy inside its
    /// store: the caller streams the object instead.
    fn copy_in_store(
        &self,
        _source_bucket: &str,
        _source_key: &str,
        _key: &ObjectKey,
        _expect: Expected<'_>,
        _cx: &WriteContext,
    ) -> Option<Result<ObjectRecord, PutError>> {
        None
    }

    /// Makes every object committed so far durable: callers record objects (in the catalog,
    /// in a manifest) only once this returns (docs/operations.md, "Durability"). A completed
    /// upload is durable once the store confirms it, so only a directory has work here.
    fn settle(&self) -> Result<(), TargetError> {
        Ok(())
    }
}

/// Whether a filesystem target syncs what it writes (docs/operations.md, "Durability").
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Each file's bytes are on disk before it is renamed into place, and its directory
    /// before the catalog records it: an exported object survives a power cut.
    Durable,
    /// Nothing is synced: after a power cut, files the catalog records as exported may be
    /// missing or empty, and an incremental policy never exports them again.
    UnsafeNoSync,
}

/// Which client an S3 target uploads with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum S3Client {
    /// The AWS SDK (`aws-sdk-s3`): the default, measured faster (docs/performance.md).
    AwsSdk,
    /// `object_store`'s S3 client.
    ObjectStore,
}

/// Where an S3 target writes and how it connects. Credentials come from the standard chain
/// (environment, profile files, instance metadata), never from the config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix: empty or ending in `/`.
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub client: S3Client,
    /// Write every object under S3 Object Lock (docs/operations.md, "WORM exports").
    pub object_lock: Option<ObjectLock>,
}

/// A target's S3 Object Lock: every object it writes is retained in `mode` until `retain_days`
/// after the end of its conversation (`object_lock` in docs/configuration.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectLock {
    pub mode: LockMode,
    /// 1 to [`ObjectLock::MAX_DAYS`].
    pub retain_days: u32,
}

impl ObjectLock {
    /// The longest retention a target may ask for: 100 years, as S3 allows.
    pub const MAX_DAYS: u32 = 36_500;
}

/// S3 Object Lock retention modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// No one, the account's root user included, can delete or shorten it before its date.
    Compliance,
    /// Users granted `s3:BypassGovernanceRetention` can delete or shorten it.
    Governance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Compliance => "compliance",
            LockMode::Governance => "governance",
        }
    }
}

/// An Azure Blob Storage container. The account and its key or token come from the
/// environment (`AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, …) unless `account`
/// is set; `endpoint` points at another host, such as Azurite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureConfig {
    pub container: String,
    pub prefix: String,
    pub account: Option<String>,
    pub endpoint: Option<String>,
}

/// A Google Cloud Storage bucket; credentials from `GOOGLE_SERVICE_ACCOUNT` or the
/// application-default chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcsConfig {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<String>,
}

/// The largest object S3 copies in one `CopyObject` request, and the largest part of a
/// multipart copy: 5 GiB.
pub const MAX_COPY_PART: u64 = 5 * 1024 * 1024 * 1024;

/// How a remote target uploads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uploads {
    /// Bytes per part; an object no larger is sent in one request.
    pub part_size: usize,
    /// Parts of one object uploading at once.
    pub part_concurrency: usize,
    /// Longest one request may take before it is retried.
    pub request_timeout: std::time::Duration,
    /// A copy inside the store of an object larger than this is made of parts this size
    /// (S3 `UploadPartCopy`); one no larger is one `CopyObject` (docs/operations.md,
    /// "Server-side copy").
    pub copy_part_size: u64,
}

impl Default for Uploads {
    fn default() -> Uploads {
        Uploads {
            part_size: 8 * 1024 * 1024,
            part_concurrency: 4,
            request_timeout: std::time::Duration::from_secs(120),
            copy_part_size: MAX_COPY_PART,
        }
    }
}

/// Grows whenever a target makes headway for a run: bytes accepted by a writer or copied in
/// the kernel, and parts uploaded. Run control watches it beside the items recorded, so an
/// object that takes longer than the keep-alive timeout to write is not taken for a stall.
/// Clones share one count; only its growth means anything.
#[derive(Clone, Debug, Default)]
pub struct Headway(Arc<AtomicU64>);

impl Headway {
    pub fn advance(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a run hands the target with each object it writes: the run the object belongs to
/// (remote targets journal each multipart upload with it; None outside any run), the
/// headway its control watches, and what a locked target retains it for.
#[derive(Clone, Debug, Default)]
pub struct WriteContext {
    pub run: Option<RunId>,
    pub headway: Headway,
    /// What a target under Object Lock keeps the object for.
    pub keep: Keep,
    /// Keys the catalog claimed for this write for the first time: no run of it has written
    /// there, so the target is not asked whether an identical object is already stored (a
    /// request per object saved on every first export; docs/operations.md, "Remote targets").
    pub fresh_keys: std::collections::HashSet<String>,
}

/// What a target under Object Lock needs to know of the conversation an object belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keep {
    /// When the conversation ended, by the recording platform's clock; None for a run's own
    /// files (manifests), retained from when they are written, by this node's clock.
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether a legal hold covers the conversation (its record's flag or a matter's hold).
    pub legal_hold: bool,
    /// A pointer every run rewrites (a policy's `latest.json`), not a record: written without
    /// Object Lock, and overwritten.
    pub pointer: bool,
}

/// Wraps a writer, counting and hashing the bytes that pass through.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
    headway: Headway,
}

impl<W: Write> HashingWriter<W> {
    /// Counts what passes in `headway` too.
    pub fn new(inner: W, headway: Headway) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
            headway,
        }
    }

    /// The inner writer, the byte count and the hex SHA-256.
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.size, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        self.headway.advance(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Size of the buffer objects are streamed through.
pub const COPY_BUFFER: usize = 1024 * 1024;

/// What the source of a put must turn out to be; checked before the object is committed.
pub struct Expected<'a> {
    pub size: u64,
    pub sha256: &'a str,
}

impl Expected<'_> {
    /// The most bytes read from a source checked against this: one past its size, enough to
    /// tell that it is longer without reading the rest (a file that grows, a link to a device).
    pub fn read_limit(&self) -> u64 {
        self.size.saturating_add(1)
    }

    /// How a source of `size` bytes hashing to `sha256` differs from this, if it does.
    pub fn check(&self, size: u64, sha256: &str) -> Option<Mismatch> {
        if size > self.size {
            Some(Mismatch::Longer {
                expected: self.size,
            })
        } else if size < self.size {
            Some(Mismatch::Shorter {
                expected: self.size,
                found: size,
            })
        } else if sha256 != self.sha256 {
            Some(Mismatch::Content)
        } else {
            None
        }
    }
}

/// How a source differed from its record. Only sizes are told, never the SHA-256 found: the
/// hash of a file that is not the recorded one (a link to a secret, a replaced file) would let
/// a record written with it export that file on the next run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// It ended after `found` bytes, short of `expected`.
    Shorter { expected: u64, found: u64 },
    /// It has more than `expected` bytes; reading stopped one byte past them.
    Longer { expected: u64 },
    /// Its size is right but its content does not hash to the recorded SHA-256.
    Content,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Shorter { expected, found } => {
                write!(f, "is {found} bytes but its record lists {expected}")
            }
            Mismatch::Longer { expected } => {
                write!(f, "is longer than the {expected} bytes its record lists")
            }
            Mismatch::Content => f.write_str("content does not match the sha256 its record lists"),
        }
    }
}

/// Writes everything `source` yields to `key` and commits it; returns what was written.
/// With `expect`, a source whose size or SHA-256 differ is refused and nothing is committed.
/// `buffer` is reused between calls to keep the hot path allocation-free.
pub fn put_stream(
    target: &dyn Target,
    key: &ObjectKey,
    source: &mut dyn Read,
    buffer: &mut Vec<u8>,
    expect: Option<Expected<'_>>,
    cx: &WriteContext,
) -> Result<ObjectRecord, PutError> {
    if let Some(stored) = already_stored(target, key, expect.as_ref(), cx)? {
        return Ok(stored);
    }
    let writer = target.create(key, expect.as_ref().map(|e| e.sha256), cx)?;
    stream_into(target, key, writer, source, buffer, expect, &cx.headway)
}

/// The record of an identical object already at `key`, when the target keeps checksums and
/// the one stored there is the expected one: writing it again would only duplicate work. Not
/// asked for a key `cx` holds fresh.
fn already_stored(
    target: &dyn Target,
    key: &ObjectKey,
    expect: Option<&Expected<'_>>,
    cx: &WriteContext,
) -> Result<Option<ObjectRecord>, PutError> {
    let Some(e) = expect.filter(|_| !cx.fresh_keys.contains(key.as_str())) else {
        return Ok(None);
    };
    Ok(match target.stored_sha256(key)? {
        Some(sha) if sha == e.sha256 => {
            tracing::debug!(target = target.name(), %key, "identical object already stored; skipped");
            Some(ObjectRecord {
                key: key.to_string(),
                size: e.size,
                sha256: sha,
            })
        }
        _ => None,
    })
}

/// Streams `source` through `buffer` into an open writer, hashing, then commits it checked.
fn stream_into(
    target: &dyn Target,
    key: &ObjectKey,
    writer: Box<dyn ObjectWriter>,
    source: &mut dyn Read,
    buffer: &mut Vec<u8>,
    expect: Option<Expected<'_>>,
    headway: &Headway,
) -> Result<ObjectRecord, PutError> {
    buffer.resize(COPY_BUFFER, 0);
    let mut writer = HashingWriter::new(writer, headway.clone());
    let limit = expect.as_ref().map_or(u64::MAX, Expected::read_limit);
    let mut source = Read::take(source, limit);
    loop {
        let n = match source.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(PutError::Source(e)),
        };
        write_chunk(target, key, &mut writer, &buffer[..n])?;
    }
    commit_checked(writer, expect)
}

fn write_chunk(
    target: &dyn Target,
    key: &ObjectKey,
    writer: &mut HashingWriter<Box<dyn ObjectWriter>>,
    chunk: &[u8],
) -> Result<(), PutError> {
    writer.write_all(chunk).map_err(|source| {
        PutError::Target(TargetError::Io {
            target: target.name().to_owned(),
            key: key.to_string(),
            cause: source,
        })
    })
}

fn commit_checked(
    writer: HashingWriter<Box<dyn ObjectWriter>>,
    expect: Option<Expected<'_>>,
) -> Result<ObjectRecord, PutError> {
    let (inner, size, sha256) = writer.finish();
    commit_verified(inner, size, sha256, expect)
}

/// Bytes copied in the kernel, then hashed, per step of [`put_file`]: small enough that the
/// hash reads them back from CPU cache.
const FILE_CHUNK: u64 = 1024 * 1024;

/// Copies a local file to `key` and commits it like [`put_stream`]. When the target is a local
/// directory the bytes are copied in the kernel, and each chunk is hashed right after it is
/// copied, reading it back from the source while it is still in cache. With `expect`, at most
/// one byte past its size is copied, so a file longer than its record (or one that grows while
/// it is read) fails without filling the target.
pub fn put_file(
    target: &dyn Target,
    key: &ObjectKey,
    source: &std::fs::File,
    buffer: &mut Vec<u8>,
    expect: Option<Expected<'_>>,
    cx: &WriteContext,
) -> Result<ObjectRecord, PutError> {
    use std::os::unix::fs::FileExt;
    if let Some(stored) = already_stored(target, key, expect.as_ref(), cx)? {
        return Ok(stored);
    }
    let mut writer = target.create(key, expect.as_ref().map(|e| e.sha256), cx)?;
    let Some(dest) = writer.local_file() else {
        return stream_into(
            target,
            key,
            writer,
            &mut &*source,
            buffer,
            expect,
            &cx.headway,
        );
    };
    buffer.resize(FILE_CHUNK as usize, 0);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let limit = expect.as_ref().map_or(u64::MAX, Expected::read_limit);
    while size < limit {
        let step = FILE_CHUNK.min(limit - size);
        let copied = io::copy(&mut source.take(step), dest).map_err(|source| TargetError::Io {
            target: target.name().to_owned(),
            key: key.to_string(),
            cause: source,
        })?;
        if copied == 0 {
            break;
        }
        let chunk = &mut buffer[..copied as usize];
        source
            .read_exact_at(chunk, size)
            .map_err(PutError::Source)?;
        hasher.update(&*chunk);
        size += copied;
        cx.headway.advance(copied);
    }
    commit_verified(writer, size, hex::encode(hasher.finalize()), expect)
}

fn commit_verified(
    inner: Box<dyn ObjectWriter>,
    size: u64,
    sha256: String,
    expect: Option<Expected<'_>>,
) -> Result<ObjectRecord, PutError> {
    if let Some(mismatch) = expect.and_then(|e| e.check(size, &sha256)) {
        return Err(PutError::Mismatch(mismatch));
    }
    let key = inner.key().to_owned();
    inner.commit(&sha256)?;
    Ok(ObjectRecord { key, size, sha256 })
}

/// Writes `bytes` to `key` and commits it. Used for files made fresh by each run (the
/// metadata file carries the run and its time), so no stored copy is ever identical and the
/// target is not asked first.
pub fn put_bytes(
    target: &dyn Target,
    key: &ObjectKey,
    bytes: &[u8],
    cx: &WriteContext,
) -> Result<ObjectRecord, PutError> {
    let writer = target.create(key, None, cx)?;
    let mut writer = HashingWriter::new(writer, cx.headway.clone());
    write_chunk(target, key, &mut writer, bytes)?;
    commit_checked(writer, None)
}

/// A put failed reading its source or writing the target.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("reading the source: {0}")]
    Source(io::Error),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("source {0}")]
    Mismatch(Mismatch),
}

/// Builds the target a config names (no I/O; call [`Target::check`] before use). Remote
/// targets note their multipart uploads in `journal`.
pub fn build(
    name: &str,
    config: &TargetConfig,
    journal: Option<std::sync::Arc<dyn UploadJournal>>,
) -> Result<Box<dyn Target>, TargetError> {
    #[cfg(not(feature = "remote"))]
    let _ = journal;
    Ok(match config {
        TargetConfig::Filesystem {
            path,
            durability,
            file_mode,
        } => Box::new(fs::FsTarget::new(name, path, *durability).with_file_mode(*file_mode)),
        #[cfg(feature = "s3")]
        TargetConfig::S3(s3, uploads) => {
            let backend = match s3.client {
                S3Client::AwsSdk => aws::backend(name, s3, uploads)?,
                S3Client::ObjectStore => objstore::s3(name, s3, uploads)?,
            };
            Box::new(
                remote::RemoteTarget::new(name, backend, *uploads, journal)
                    .with_object_lock(s3.object_lock),
            )
        }
        #[cfg(feature = "azure")]
        TargetConfig::Azure(azure, uploads) => {
            let backend = objstore::azure(name, azure, uploads)?;
            Box::new(remote::RemoteTarget::new(name, backend, *uploads, journal))
        }
        #[cfg(feature = "gcs")]
        TargetConfig::Gcs(gcs, uploads) => {
            let backend = gcs::backend(name, gcs, uploads)?;
            Box::new(remote::RemoteTarget::new(name, backend, *uploads, journal))
        }
        #[allow(unreachable_patterns)]
        _ => {
            return Err(TargetError::Unusable {
                target: name.to_owned(),
                message: "this build of custodian leaves out this kind of target".into(),
            });
        }
    })
}

/// The bucket of the repository `source` when a target of `config` copies objects from it
/// inside the store (docs/operations.md, "Server-side copy"): both are S3 buckets written
/// through the AWS SDK at the same endpoint and region, Azure containers of the same account
/// and endpoint, or GCS buckets at the same endpoint, so one client, with the same
/// credentials, reaches both. None
/// otherwise: the target streams what it exports.
pub fn copies_from<'a>(config: &TargetConfig, source: &'a TargetConfig) -> Option<&'a str> {
    match (config, source) {
        (TargetConfig::S3(t, _), TargetConfig::S3(s, _))
            if t.client == S3Client::AwsSdk
                && s.client == S3Client::AwsSdk
                && t.endpoint == s.endpoint
                && t.region == s.region =>
        {
            Some(&s.bucket)
        }
        (TargetConfig::Azure(t, _), TargetConfig::Azure(s, _))
            if t.endpoint == s.endpoint && t.account == s.account =>
        {
            Some(&s.container)
        }
        (TargetConfig::Gcs(t, _), TargetConfig::Gcs(s, _)) if t.endpoint == s.endpoint => {
            Some(&s.bucket)
        }
        _ => None,
    }
}

/// The client of the object store `config` names, and the runtime its calls run on: what a
/// repository in object storage reads and deletes through (`source`). None for a directory.
#[cfg(feature = "remote")]
pub fn store_client(
    name: &str,
    config: &TargetConfig,
) -> Result<Option<remote::Client>, TargetError> {
    Ok(Some(match config {
        TargetConfig::Filesystem { .. } => return Ok(None),
        #[cfg(feature = "s3")]
        TargetConfig::S3(s3, uploads) => match s3.client {
            S3Client::AwsSdk => aws::backend(name, s3, uploads)?,
            S3Client::ObjectStore => objstore::s3(name, s3, uploads)?,
        },
        #[cfg(feature = "azure")]
        TargetConfig::Azure(azure, uploads) => objstore::azure(name, azure, uploads)?,
        #[cfg(feature = "gcs")]
        TargetConfig::Gcs(gcs, uploads) => gcs::backend(name, gcs, uploads)?,
        #[allow(unreachable_patterns)]
        _ => {
            return Err(TargetError::Unusable {
                target: name.to_owned(),
                message: "this build of custodian leaves out this kind of store".into(),
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        assert!(ObjectKey::new("acme/2026/a.wav").is_ok());
        for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/", "a/\u{7}"] {
            assert!(ObjectKey::new(bad).is_err(), "{bad:?}");
        }
    }

    /// A directory target that hides its local files, like a remote target would.
    struct Remote(fs::FsTarget);

    struct RemoteWriter(Box<dyn ObjectWriter>);

    impl Write for RemoteWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0.flush()
        }
    }

    impl ObjectWriter for RemoteWriter {
        fn key(&self) -> &str {
            self.0.key()
        }
        fn commit(self: Box<Self>, sha256: &str) -> Result<(), TargetError> {
            self.0.commit(sha256)
        }
    }

    impl Target for Remote {
        fn name(&self) -> &str {
            self.0.name()
        }
        fn check(&self) -> Result<(), TargetError> {
            self.0.check()
        }
        fn create(
            &self,
            key: &ObjectKey,
            sha256: Option<&str>,
            cx: &WriteContext,
        ) -> Result<Box<dyn ObjectWriter>, TargetError> {
            Ok(Box::new(RemoteWriter(self.0.create(key, sha256, cx)?)))
        }
        fn open(&self, key: &ObjectKey) -> Result<Box<dyn Read + Send>, TargetError> {
            self.0.open(key)
        }
        fn settle(&self) -> Result<(), TargetError> {
            self.0.settle()
        }
    }

    #[test]
    fn put_file_copies_and_hashes_in_kernel_and_streamed_paths_alike() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(3 * FILE_CHUNK as usize + 17))
            .map(|i| (i % 253) as u8)
            .collect();
        let src = dir.path().join("src.bin");
        std::fs::write(&src, &data).unwrap();
        let sha = hex::encode(Sha256::digest(&data));
        let local = fs::FsTarget::new("local", &dir.path().join("a"), Durability::Durable);
        let remote = Remote(fs::FsTarget::new(
            "remote",
            &dir.path().join("b"),
            Durability::Durable,
        ));
        for t in [&local as &dyn Target, &remote] {
            let key = ObjectKey::new("x/y.bin").unwrap();
            let file = std::fs::File::open(&src).unwrap();
            let expect = Expected {
                size: data.len() as u64,
                sha256: &sha,
            };
            let rec = put_file(
                t,
                &key,
                &file,
                &mut Vec::new(),
                Some(expect),
                &WriteContext::default(),
            )
            .unwrap();
            assert_eq!(
                (rec.size, rec.sha256.as_str()),
                (data.len() as u64, sha.as_str())
            );
            t.settle().unwrap();
            let mut back = Vec::new();
            t.open(&key).unwrap().read_to_end(&mut back).unwrap();
            assert_eq!(back, data);
            let file = std::fs::File::open(&src).unwrap();
            let wrong = Expected {
                size: data.len() as u64,
                sha256: "00",
            };
            let other = ObjectKey::new("x/z.bin").unwrap();
            assert!(matches!(
                put_file(
                    t,
                    &other,
                    &file,
                    &mut Vec::new(),
                    Some(wrong),
                    &WriteContext::default()
                ),
                Err(PutError::Mismatch(Mismatch::Content))
            ));
            assert!(matches!(t.open(&other), Err(TargetError::NotFound { .. })));
        }
    }

    /// A target whose one object is a file the test keeps, copied into in the kernel or
    /// streamed, so what a put wrote shows even when it was not committed. It says it holds
    /// `stored` under every key, and counts how often it is asked.
    struct Capture {
        path: std::path::PathBuf,
        kernel: bool,
        stored: Option<String>,
        asked: std::sync::atomic::AtomicUsize,
    }

    impl Capture {
        fn new(path: std::path::PathBuf, kernel: bool) -> Capture {
            Capture {
                path,
                kernel,
                stored: None,
                asked: Default::default(),
            }
        }
    }

    struct CaptureWriter {
        file: std::fs::File,
        kernel: bool,
    }

    impl Write for CaptureWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.file.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.file.flush()
        }
    }

    impl ObjectWriter for CaptureWriter {
        fn key(&self) -> &str {
            "captured"
        }
        fn local_file(&mut self) -> Option<&mut std::fs::File> {
            self.kernel.then_some(&mut self.file)
        }
        fn commit(self: Box<Self>, _sha256: &str) -> Result<(), TargetError> {
            Ok(())
        }
    }

    impl Target for Capture {
        fn name(&self) -> &str {
            "capture"
        }
        fn check(&self) -> Result<(), TargetError> {
            Ok(())
        }
        fn create(
            &self,
            _key: &ObjectKey,
            _sha256: Option<&str>,
            _cx: &WriteContext,
        ) -> Result<Box<dyn ObjectWriter>, TargetError> {
            Ok(Box::new(CaptureWriter {
                file: std::fs::File::create(&self.path).unwrap(),
                kernel: self.kernel,
            }))
        }
        fn open(&self, _key: &ObjectKey) -> Result<Box<dyn Read + Send>, TargetError> {
            unreachable!("puts never read back")
        }
        fn stored_sha256(&self, _key: &ObjectKey) -> Result<Option<String>, TargetError> {
            self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(self.stored.clone())
        }
    }

    #[test]
    fn a_key_claimed_for_the_first_time_is_written_without_asking_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"recording".to_vec();
        let sha = hex::encode(Sha256::digest(&data));
        let t = Capture {
            stored: Some(sha.clone()),
            ..Capture::new(dir.path().join("captured"), false)
        };
        let key = ObjectKey::new("acme/x.wav").unwrap();
        let put = |cx: &WriteContext| {
            let expect = Expected {
                size: data.len() as u64,
                sha256: &sha,
            };
            put_stream(&t, &key, &mut &data[..], &mut Vec::new(), Some(expect), cx).unwrap()
        };
        let rerun = WriteContext::default();
        let rec = put(&rerun);
        assert_eq!(rec.sha256, sha);
        assert_eq!(t.asked.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(
            !t.path.exists(),
            "an identical object already stored is not written again"
        );
        let first = WriteContext {
            fresh_keys: [key.to_string()].into(),
            ..WriteContext::default()
        };
        let rec = put(&first);
        assert_eq!(rec.sha256, sha);
        assert_eq!(
            t.asked.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "a fresh key is not asked about"
        );
        assert_eq!(std::fs::read(&t.path).unwrap(), data);
    }

    #[test]
    fn a_source_longer_than_its_record_is_read_one_byte_past_it_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 3 * FILE_CHUNK as usize];
        let src = dir.path().join("long.bin");
        std::fs::write(&src, &data).unwrap();
        let sha = hex::encode(Sha256::digest(&data[..10]));
        for kernel in [true, false] {
            let t = Capture::new(dir.path().join(format!("captured-{kernel}")), kernel);
            let file = std::fs::File::open(&src).unwrap();
            let expect = Expected {
                size: 10,
                sha256: &sha,
            };
            let key = ObjectKey::new("x.bin").unwrap();
            let err = put_file(
                &t,
                &key,
                &file,
                &mut Vec::new(),
                Some(expect),
                &WriteContext::default(),
            )
            .unwrap_err();
            assert!(
                matches!(err, PutError::Mismatch(Mismatch::Longer { expected: 10 })),
                "{err}"
            );
            assert_eq!(
                std::fs::metadata(&t.path).unwrap().len(),
                11,
                "kernel {kernel}"
            );
        }
    }

    #[test]
    fn a_mismatch_tells_sizes_but_never_the_hash_found() {
        let dir = tempfile::tempdir().unwrap();
        let t = fs::FsTarget::new("t", dir.path(), Durability::Durable);
        let secret = b"root:$6$salt$hash:19000:0:99999:7:::";
        let found = hex::encode(Sha256::digest(secret));
        let key = ObjectKey::new("x").unwrap();
        let recorded = "0".repeat(64);
        for (size, says) in [
            (
                secret.len() as u64,
                "content does not match the sha256 its record lists",
            ),
            (10, "is longer than the 10 bytes its record lists"),
            (
                100,
                &format!("is {} bytes but its record lists 100", secret.len()),
            ),
        ] {
            let expect = Expected {
                size,
                sha256: &recorded,
            };
            let err = put_stream(
                &t,
                &key,
                &mut &secret[..],
                &mut Vec::new(),
                Some(expect),
                &WriteContext::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(says), "{err}");
            assert!(!err.contains(&found), "{err}");
        }
    }

    #[test]
    fn hashing_writer_hashes_what_passes() {
        let mut w = HashingWriter::new(Vec::new(), Headway::default());
        w.write_all(b"abc").unwrap();
        let (inner, size, sha) = w.finish();
        assert_eq!(inner, b"abc");
        assert_eq!(size, 3);
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn puts_make_headway_in_the_context_they_are_given_only() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        std::fs::write(&src, vec![1u8; 3000]).unwrap();
        let t = fs::FsTarget::new("t", &dir.path().join("out"), Durability::Durable);
        let (mine, other) = (WriteContext::default(), WriteContext::default());
        put_bytes(&t, &ObjectKey::new("a").unwrap(), b"hello", &mine).unwrap();
        assert_eq!(mine.headway.get(), 5);
        let file = std::fs::File::open(&src).unwrap();
        put_file(
            &t,
            &ObjectKey::new("b").unwrap(),
            &file,
            &mut Vec::new(),
            None,
            &mine,
        )
        .unwrap();
        assert_eq!(mine.headway.get(), 3005, "copied in the kernel");
        let file = std::fs::File::open(&src).unwrap();
        let remote = Remote(fs::FsTarget::new(
            "r",
            &dir.path().join("r"),
            Durability::Durable,
        ));
        put_file(
            &remote,
            &ObjectKey::new("c").unwrap(),
            &file,
            &mut Vec::new(),
            None,
            &mine,
        )
        .unwrap();
        assert_eq!(mine.headway.get(), 6005, "streamed");
        assert_eq!(other.headway.get(), 0);
    }
}
