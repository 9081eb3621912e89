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

use super::{Headway, ObjectKey, ObjectWriter, Target, TargetError, Uploads, WriteContext};
use crate::catalog::RunId;
use crate::catalog::uploads::UploadJournal;

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

/// An object's bytes as they arrive.
pub type ByteStream = BoxStream<'static, BackendResult<Bytes>>;

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
}

/// A bucket or container (and key prefix) exports are written to.
pub struct RemoteTarget {
    name: String,
    backend: Arc<dyn Backend>,
    uploads: Uploads,
    journal: Option<Arc<dyn UploadJournal>>,
    runtime: Arc<tokio::runtime::Runtime>,
    parts: Arc<Semaphore>,
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
        (backend, runtime): (Arc<dyn Backend>, Arc<tokio::runtime::Runtime>),
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
        }
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.backend.prefix())
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
            })
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

    /// Sends the buffer as the next part, starting the upload first if needed, and waits while
    /// too many parts are in flight. The error is the cause alone; callers name the object.
    fn send_part(&mut self) -> Result<(), String> {
        if self.upload.is_none() {
            let id = self
                .runtime
                .block_on(self.backend.begin(&self.full_key, self.sha256.as_deref()))
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
        self.runtime
            .block_on(self.backend.complete(&self.full_key, &id, parts))
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
        if self.upload.is_some() {
            return self.finish_multipart();
        }
        let body = self.buffer.split().freeze();
        self.runtime
            .block_on(self.backend.put(&self.full_key, body, sha256))
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
