//! S3-compatible targets (AWS, MinIO, Ceph, …) over `object_store`'s S3 client.
//!
//! Objects are streamed as multipart uploads: bytes are cut into parts that upload in the
//! background while the next part fills, with at most `PARTS_IN_FLIGHT` parts buffered, so a
//! large recording is never held in memory. Nothing is visible under a key until the upload
//! completes on `commit`; an upload dropped before that is aborted. The export side stays
//! synchronous: each call waits on a small tokio runtime owned by the target.

use std::io::{self, Read, Write};
use std::sync::Arc;

use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as StorePath;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart};

use super::{ObjectKey, ObjectWriter, Target, TargetError};

/// Bytes per uploaded part (S3's minimum is 5 MiB).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one object uploading at once.
const PARTS_IN_FLIGHT: usize = 4;
/// Retries of a request that failed with a 5xx, SlowDown or a dropped connection (with
/// exponential backoff from 100 ms), and the time after which a request is not retried.
const RETRIES: usize = 5;
const RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Where an S3 target writes and how it connects. Credentials come from the standard
/// environment variables (`AWS_ACCESS_KEY_ID`, …), never from the config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: bool,
}

/// An S3 bucket (and key prefix) exports are written to.
pub struct S3Target {
    name: String,
    config: S3Config,
    store: Arc<AmazonS3>,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl S3Target {
    /// Builds the client (no I/O; [`Target::check`] connects).
    pub fn new(name: &str, config: &S3Config) -> Result<S3Target, TargetError> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: RETRIES,
                retry_timeout: RETRY_TIMEOUT,
            });
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder.build().map_err(|e| invalid(name, e))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| invalid(name, e))?;
        Ok(S3Target {
            name: name.to_owned(),
            config: config.clone(),
            store: Arc::new(store),
            runtime: Arc::new(runtime),
        })
    }

    fn path(&self, key: &str) -> StorePath {
        StorePath::from(format!("{}{key}", self.config.prefix))
    }

    fn error(&self, key: &str, e: object_store::Error) -> TargetError {
        TargetError::Io {
            target: self.name.clone(),
            key: key.to_owned(),
            source: io::Error::other(e.to_string()),
        }
    }
}

fn invalid(name: &str, e: impl std::fmt::Display) -> TargetError {
    TargetError::Io {
        target: name.to_owned(),
        key: String::new(),
        source: io::Error::other(e.to_string()),
    }
}

impl Target for S3Target {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> Result<(), TargetError> {
        let prefix = StorePath::from(self.config.prefix.trim_end_matches('/'));
        self.runtime
            .block_on(self.store.list_with_delimiter(Some(&prefix)))
            .map(|_| ())
            .map_err(|e| TargetError::Io {
                target: self.name.clone(),
                key: format!("s3://{}/{}", self.config.bucket, self.config.prefix),
                source: io::Error::other(format!(
                    "{e}; check the bucket, endpoint and the AWS_* credentials in the environment"
                )),
            })
    }

    fn create(&self, key: &ObjectKey) -> Result<Box<dyn ObjectWriter>, TargetError> {
        let upload = self
            .runtime
            .block_on(self.store.put_multipart(&self.path(key.as_str())))
            .map_err(|e| self.error(key.as_str(), e))?;
        Ok(Box::new(S3Writer {
            key: key.to_string(),
            target: self.name.clone(),
            runtime: self.runtime.clone(),
            upload: Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)),
        }))
    }

    fn open(&self, key: &ObjectKey) -> Result<Box<dyn Read + Send>, TargetError> {
        let result = self
            .runtime
            .block_on(self.store.get(&self.path(key.as_str())))
            .map_err(|e| self.error(key.as_str(), e))?;
        Ok(Box::new(S3Reader {
            runtime: self.runtime.clone(),
            stream: result.into_stream(),
            chunk: bytes::Bytes::new(),
        }))
    }
}

/// An object being uploaded in parts.
struct S3Writer {
    key: String,
    target: String,
    runtime: Arc<tokio::runtime::Runtime>,
    upload: Option<WriteMultipart>,
}

impl Write for S3Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let upload = self.upload.as_mut().expect("not committed");
        let _entered = self.runtime.enter();
        upload.write(buf);
        self.runtime
            .block_on(upload.wait_for_capacity(PARTS_IN_FLIGHT))
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Writer {
    fn key(&self) -> &str {
        &self.key
    }

    fn commit(mut self: Box<Self>) -> Result<(), TargetError> {
        let upload = self.upload.take().expect("committed once");
        let _entered = self.runtime.enter();
        self.runtime
            .block_on(upload.finish())
            .map(|_| ())
            .map_err(|e| TargetError::Io {
                target: self.target.clone(),
                key: self.key.clone(),
                source: io::Error::other(e.to_string()),
            })
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            let _entered = self.runtime.enter();
            // Best effort: an upload that cannot be aborted now is left to the bucket's
            // lifecycle rule for incomplete uploads; it is never visible as an object.
            let _ = self.runtime.block_on(upload.abort());
        }
    }
}

/// An object read back as a byte stream.
struct S3Reader {
    runtime: Arc<tokio::runtime::Runtime>,
    stream: futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl Read for S3Reader {
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
