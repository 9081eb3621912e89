//! The native S3 [`Backend`] over the AWS SDK (`aws-sdk-s3`), the default S3 client.
//!
//! Credentials and region come from the SDK's standard chains (environment, profile files,
//! web identity, instance metadata). An object sent in one request carries its SHA-256 both as
//! the `x-amz-checksum-sha256` header, which the store checks against the bytes it receives,
//! and as the user metadata `sha256`, which HEAD returns for the skip-if-identical check.
//! Multipart parts carry the SDK's CRC32 checksums. Payloads are not signed: the checksum the
//! store verifies already covers the bytes, and signing would hash every byte once more on
//! each side (measured: see the storage-target table in docs/performance.md).

use std::sync::Arc;
use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::primitives::{ByteStream as SdkStream, DateTime as SdkDateTime};
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, ChecksumMode, ChecksumType,
    CompletedMultipartUpload, CompletedPart, Delete, MetadataDirective, ObjectIdentifier,
    ObjectLockEnabled, ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockMode,
    ObjectLockRetention, ObjectLockRetentionMode,
};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;

use super::remote::{
    Aborted, Backend, BackendError, BackendResult, ByteStream, Copied, CopySource, CopyVersion,
    Listed, LockState, Retention, runtime,
};
use super::{LockMode, S3Config, TargetError, Uploads};

/// What to check when an S3 target cannot be used.
pub const HINT: &str = "check the bucket, the endpoint and the AWS credentials \
    (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or instance metadata)";

/// Attempts per request: the first and 5 retries, with exponential backoff from 100 ms, for
/// 5xx, SlowDown, timeouts and dropped connections.
const ATTEMPTS: u32 = 6;

const SHA256_KEY: &str = "sha256";

/// Keys one `DeleteObjects` request takes (S3's limit).
const DELETE_BATCH: usize = 1000;

/// `DeleteObjects` requests, or version listings, in flight at once.
const DELETES_IN_FLIGHT: usize = 8;

/// The user-metadata key a locked object carries its retain-until date under (RFC 3339): the
/// store's own date can be shortened later (governance mode), this one cannot.
const RETAIN_UNTIL_KEY: &str = "retain-until";

struct AwsBackend {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

/// Builds the SDK client (reads the credential and region chains; connects nowhere yet).
pub fn backend(
    name: &str,
    c: &S3Config,
    uploads: &Uploads,
) -> Result<(Arc<dyn Backend>, Arc<tokio::runtime::Runtime>), TargetError> {
    let runtime = runtime().map_err(|e| TargetError::Unusable {
        target: name.to_owned(),
        message: e.to_string(),
    })?;
    let region = RegionProviderChain::first_try(c.region.clone().map(aws_config::Region::new))
        .or_default_provider()
        .or_else("us-east-1");
    let shared = runtime.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(region)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(100)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(uploads.request_timeout)
                    .build(),
            )
            .load(),
    );
    let mut config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(c.path_style);
    if let Some(endpoint) = &c.endpoint {
        config = config.endpoint_url(endpoint);
    }
    let backend = AwsBackend {
        client: aws_sdk_s3::Client::from_conf(config.build()),
        bucket: c.bucket.clone(),
        prefix: c.prefix.clone(),
    };
    Ok((Arc::new(backend), Arc::new(runtime)))
}

/// The SDK's error with its causes and the service's code, never its credentials.
fn message<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(s) => format!(
            "{}: {}",
            s.code().unwrap_or("error"),
            s.message().unwrap_or("(no message)")
        ),
        None => DisplayErrorContext(e).to_string(),
    }
}

fn other<E, R>(e: SdkError<E, R>) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    BackendError::Other(message(&e))
}

fn base64_of_hex(sha256: &str) -> Option<String> {
    hex::decode(sha256)
        .ok()
        .map(|raw| base64::engine::general_purpose::STANDARD.encode(raw))
}

/// `x-amz-copy-source` of `source`: its bucket and key, the key percent-encoded except for
/// `/` and the characters URLs leave as they are.
fn copy_source(source: &CopySource) -> String {
    let mut out = format!("{}/", source.bucket);
    for b in source.key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex_of_base64(checksum: &str) -> Option<String> {
    base64::engine::general_purpose::STANDARD
        .decode(checksum)
        .ok()
        .filter(|raw| raw.len() == 32)
        .map(hex::encode)
}

/// The SHA-256 of an object's bytes as far as the store vouches for it. Metadata is only what
/// a writer claimed, so an object overwritten with other bytes and the same `sha256` metadata
/// would look identical; the store's own checksum of a single-request object (which every put
/// here sends) is of the bytes it holds. A single-request object without one was not written
/// by this client as it is now, so nothing is trusted. A multipart object has at most a
/// composite SHA-256 (of its parts' checksums; S3 offers full-object checksums for CRCs only),
/// which cannot be compared with the recording's: its metadata is all there is.
fn trusted_sha256(out: &HeadObjectOutput) -> Option<String> {
    let multipart = out
        .e_tag()
        .is_some_and(|t| t.trim_matches('"').contains('-'))
        || out.checksum_type() == Some(&ChecksumType::Composite);
    if multipart {
        return out
            .metadata()
            .and_then(|m| m.get(SHA256_KEY))
            .filter(|s| s.len() == 64)
            .cloned();
    }
    out.checksum_sha256().and_then(hex_of_base64)
}

impl AwsBackend {
    /// The bytes in `range` of the object `key` of `bucket` (in this store), only while its
    /// entity tag is `if_match` when one is given: `NotFound` when there is no object, or not
    /// that one.
    async fn get_in(
        &self,
        bucket: &str,
        key: &str,
        if_match: Option<String>,
        range: std::ops::Range<u64>,
    ) -> BackendResult<ByteStream> {
        if range.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_if_match(if_match)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
        {
            Ok(out) => out,
            // No object, or (`if_match`) not the one named any more.
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_no_such_key() || s.code() == Some("PreconditionFailed")
                }) =>
            {
                return Err(BackendError::NotFound);
            }
            // A range starting at the object's end: nothing there to read.
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("InvalidRange") => {
                return Ok(futures::stream::empty().boxed());
            }
            Err(e) => return Err(other(e)),
        };
        Ok(body_stream(out.body))
    }

    /// A one-request upload carrying its SHA-256 as the checksum the store verifies (which
    /// also satisfies Object Lock's demand for an integrity header) and as metadata.
    fn put_request(&self, key: &str, body: &Bytes, sha256: &str) -> PutObjectFluentBuilder {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(body.len() as i64)
            .set_checksum_sha256(base64_of_hex(sha256))
            .metadata(SHA256_KEY, sha256)
    }

    fn begin_request(&self, key: &str, sha256: Option<&str>) -> CreateMultipartUploadFluentBuilder {
        let request = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key);
        match sha256 {
            Some(sha) => request.metadata(SHA256_KEY, sha),
            None => request,
        }
    }

    /// Every version of exactly `key`, delete markers included (a listing by prefix also
    /// finds longer keys, which are left out).
    async fn versions_of(&self, key: &str) -> Result<Vec<Option<String>>, String> {
        let mut found = Vec::new();
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(key)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| message(&e))?;
            let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
            let markers = page
                .delete_markers()
                .iter()
                .map(|m| (m.key(), m.version_id()));
            found.extend(
                versions
                    .chain(markers)
                    .filter(|(k, _)| *k == Some(key))
                    .map(|(_, v)| v.map(str::to_owned)),
            );
            if page.is_truncated() != Some(true) {
                return Ok(found);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                return Ok(found);
            }
        }
    }

    /// One `DeleteObjects` request in quiet mode (the answer lists only what failed): the
    /// reason for each identifier of `batch` the store refused, by its place in `batch`.
    async fn delete_batch(
        &self,
        batch: &[(String, Option<String>)],
    ) -> Result<Vec<(usize, String)>, String> {
        let objects = batch
            .iter()
            .map(|(key, version)| {
                ObjectIdentifier::builder()
                    .key(key)
                    .set_version_id(version.clone())
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, String>>()?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| e.to_string())?;
        let out = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| message(&e))?;
        let mut refused = Vec::new();
        for e in out.errors() {
            let reason = format!(
                "{}: {}",
                e.code().unwrap_or("error"),
                e.message().unwrap_or("(no message)")
            );
            // The store names the key (and version) it refused; an error naming nothing the
            // request held fails the whole request.
            let at = batch
                .iter()
                .position(|(k, v)| Some(k.as_str()) == e.key() && v.as_deref() == e.version_id())
                .or_else(|| batch.iter().position(|(k, _)| Some(k.as_str()) == e.key()));
            match at {
                Some(i) => refused.push((i, reason)),
                None => return Err(reason),
            }
        }
        Ok(refused)
    }

    /// HEAD of the object at `key` with its checksum; None when there is none.
    async fn head(&self, key: &str) -> BackendResult<Option<HeadObjectOutput>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(other(e)),
        }
    }
}

async fn send_put(request: PutObjectFluentBuilder, body: Bytes) -> BackendResult<()> {
    request
        .body(SdkStream::from(body))
        .customize()
        .disable_payload_signing()
        .send()
        .await
        .map(|_| ())
        .map_err(other)
}

async fn send_begin(request: CreateMultipartUploadFluentBuilder) -> BackendResult<String> {
    let out = request.send().await.map_err(other)?;
    out.upload_id
        .ok_or_else(|| BackendError::Other("the store returned no upload id".into()))
}

fn sdk_mode(mode: LockMode) -> ObjectLockMode {
    match mode {
        LockMode::Compliance => ObjectLockMode::Compliance,
        LockMode::Governance => ObjectLockMode::Governance,
    }
}

fn sdk_retention_mode(mode: LockMode) -> ObjectLockRetentionMode {
    match mode {
        LockMode::Compliance => ObjectLockRetentionMode::Compliance,
        LockMode::Governance => ObjectLockRetentionMode::Governance,
    }
}

fn legal_hold(on: bool) -> ObjectLockLegalHoldStatus {
    if on {
        ObjectLockLegalHoldStatus::On
    } else {
        ObjectLockLegalHoldStatus::Off
    }
}

/// An object's Object Lock as HEAD reports it.
fn lock_state(out: &HeadObjectOutput) -> LockState {
    let mode = match out.object_lock_mode() {
        Some(ObjectLockMode::Compliance) => Some(LockMode::Compliance),
        Some(ObjectLockMode::Governance) => Some(LockMode::Governance),
        _ => None,
    };
    let until = out
        .object_lock_retain_until_date()
        .and_then(|d| chrono::DateTime::from_timestamp(d.secs(), 0));
    LockState {
        sha256: trusted_sha256(out),
        retention: mode.zip(until),
        written_until: out
            .metadata()
            .and_then(|m| m.get(RETAIN_UNTIL_KEY))
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.to_utc()),
    }
}

#[async_trait::async_trait]
impl Backend for AwsBackend {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn hint(&self) -> &'static str {
        HINT
    }

    fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn probe(&self) -> BackendResult<()> {
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .max_keys(1)
            .send()
            .await
            .map(|_| ())
            .map_err(other)
    }

    async fn put(&self, key: &str, body: Bytes, sha256: &str) -> BackendResult<()> {
        send_put(self.put_request(key, &body, sha256), body).await
    }

    async fn begin(&self, key: &str, sha256: Option<&str>) -> BackendResult<String> {
        send_begin(self.begin_request(key, sha256)).await
    }

    async fn object_lock_enabled(&self) -> BackendResult<bool> {
        match self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                == Some(&ObjectLockEnabled::Enabled)),
            Err(e)
                if e.as_service_error().and_then(|s| s.code())
                    == Some("ObjectLockConfigurationNotFoundError") =>
            {
                Ok(false)
            }
            Err(e) => Err(other(e)),
        }
    }

    async fn put_locked(
        &self,
        key: &str,
        body: Bytes,
        sha256: &str,
        retention: Retention,
    ) -> BackendResult<()> {
        // A locked bucket takes a write only with Content-MD5 or x-amz-sdk-checksum-algorithm;
        // the SHA-256 given is sent as is (the SDK computes none when one is set).
        let request = self
            .put_request(key, &body, sha256)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .object_lock_mode(sdk_mode(retention.mode))
            .object_lock_retain_until_date(SdkDateTime::from_secs(retention.until.timestamp()))
            .object_lock_legal_hold_status(legal_hold(retention.legal_hold))
            .metadata(RETAIN_UNTIL_KEY, retention.until.to_rfc3339());
        send_put(request, body).await
    }

    async fn begin_locked(
        &self,
        key: &str,
        sha256: Option<&str>,
        retention: Retention,
    ) -> BackendResult<String> {
        let request = self
            .begin_request(key, sha256)
            .object_lock_mode(sdk_mode(retention.mode))
            .object_lock_retain_until_date(SdkDateTime::from_secs(retention.until.timestamp()))
            .object_lock_legal_hold_status(legal_hold(retention.legal_hold))
            .metadata(RETAIN_UNTIL_KEY, retention.until.to_rfc3339());
        send_begin(request).await
    }

    async fn complete_locked(
        &self,
        key: &str,
        upload: &str,
        parts: Vec<String>,
        retention: Retention,
    ) -> BackendResult<()> {
        self.complete(key, upload, parts).await?;
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(key)
            .retention(
                ObjectLockRetention::builder()
                    .mode(sdk_retention_mode(retention.mode))
                    .retain_until_date(SdkDateTime::from_secs(retention.until.timestamp()))
                    .build(),
            )
            .send()
            .await
            .map_err(other)?;
        self.client
            .put_object_legal_hold()
            .bucket(&self.bucket)
            .key(key)
            .legal_hold(
                ObjectLockLegalHold::builder()
                    .status(legal_hold(retention.legal_hold))
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(other)
    }

    async fn set_legal_hold(&self, key: &str, on: bool) -> BackendResult<bool> {
        let sent = self
            .client
            .put_object_legal_hold()
            .bucket(&self.bucket)
            .key(key)
            .legal_hold(
                ObjectLockLegalHold::builder()
                    .status(legal_hold(on))
                    .build(),
            )
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchKey") => Ok(false),
            Err(e) => Err(other(e)),
        }
    }

    fn copies(&self) -> bool {
        true
    }

    async fn head_in(&self, bucket: &str, key: &str) -> BackendResult<Option<(u64, String)>> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some((
                out.content_length().map_or(0, |n| n.max(0) as u64),
                out.e_tag().unwrap_or_default().to_owned(),
            ))),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(other(e)),
        }
    }

    async fn get_source(
        &self,
        source: &CopySource,
        range: std::ops::Range<u64>,
    ) -> BackendResult<ByteStream> {
        self.get_in(&source.bucket, &source.key, source.etag.clone(), range)
            .await
    }

    async fn copy(
        &self,
        source: &CopySource,
        key: &str,
        sha256: &str,
        retention: Option<Retention>,
    ) -> BackendResult<Copied> {
        // The store computes the copy's SHA-256 (x-amz-checksum-algorithm) and returns it; the
        // metadata is replaced so the copy carries the recording's SHA-256 like any put.
        let mut request = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(key)
            .copy_source(copy_source(source))
            .set_copy_source_if_match(source.etag.clone())
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .metadata_directive(MetadataDirective::Replace)
            .metadata(SHA256_KEY, sha256);
        if let Some(r) = retention {
            request = request
                .object_lock_mode(sdk_mode(r.mode))
                .object_lock_retain_until_date(SdkDateTime::from_secs(r.until.timestamp()))
                .object_lock_legal_hold_status(legal_hold(r.legal_hold))
                .metadata(RETAIN_UNTIL_KEY, r.until.to_rfc3339());
        }
        let sent = if retention.is_some() {
            // Some stores take a write under Object Lock only with an integrity header, even
            // a copy, whose bytes the store checks itself (as it does here).
            request
                .customize()
                .mutate_request(|r| {
                    r.headers_mut()
                        .insert("x-amz-sdk-checksum-algorithm", "SHA256");
                })
                .send()
                .await
        } else {
            // Without a per-request override: the SDK layers none over its config.
            request.send().await
        };
        let out = sent.map_err(|e| match e.as_service_error().and_then(|s| s.code()) {
            Some("NoSuchKey") => BackendError::NotFound,
            _ => other(e),
        })?;
        let result = out.copy_object_result();
        if let Some(sha) = result
            .and_then(|r| r.checksum_sha256())
            .and_then(hex_of_base64)
        {
            return Ok(Copied::Hashed(sha));
        }
        // A store without S3's checksums: the copy is read back by its entity tag.
        let tag = result.and_then(|r| r.e_tag()).ok_or_else(|| {
            BackendError::Other(
                "the store's copy returned neither a SHA-256 nor an entity tag".into(),
            )
        })?;
        Ok(Copied::Unhashed(CopyVersion {
            tag: tag.to_owned(),
            checksum: None,
        }))
    }

    async fn get_copy(
        &self,
        key: &str,
        version: &CopyVersion,
        range: std::ops::Range<u64>,
    ) -> BackendResult<ByteStream> {
        self.get_in(&self.bucket, key, Some(version.tag.clone()), range)
            .await
    }

    async fn part_copy(
        &self,
        source: &CopySource,
        key: &str,
        upload: &str,
        index: usize,
        range: std::ops::Range<u64>,
    ) -> BackendResult<String> {
        let out = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload)
            .part_number(index as i32 + 1)
            .copy_source(copy_source(source))
            .set_copy_source_if_match(source.etag.clone())
            .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(other)?;
        out.copy_part_result()
            .and_then(|r| r.e_tag())
            .map(str::to_owned)
            .ok_or_else(|| {
                BackendError::Other("the store returned no ETag for a copied part".into())
            })
    }

    async fn delete(&self, key: &str) -> BackendResult<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(other)
    }

    async fn lock_state(&self, key: &str) -> BackendResult<Option<LockState>> {
        Ok(self.head(key).await?.map(|out| lock_state(&out)))
    }

    async fn part(
        &self,
        key: &str,
        upload: &str,
        index: usize,
        body: Bytes,
    ) -> BackendResult<String> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload)
            .part_number(index as i32 + 1)
            .content_length(body.len() as i64)
            .body(SdkStream::from(body))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(other)?;
        out.e_tag
            .ok_or_else(|| BackendError::Other("the store returned no ETag for a part".into()))
    }

    async fn complete(&self, key: &str, upload: &str, parts: Vec<String>) -> BackendResult<()> {
        let parts = parts
            .into_iter()
            .enumerate()
            .map(|(i, e_tag)| {
                CompletedPart::builder()
                    .part_number(i as i32 + 1)
                    .e_tag(e_tag)
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(other)
    }

    async fn abort(&self, key: &str, upload: &str) -> BackendResult<Aborted> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload)
            .send()
            .await
        {
            Ok(_) => Ok(Aborted::Discarded),
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchUpload") => {
                Err(BackendError::NotFound)
            }
            Err(e) => Err(other(e)),
        }
    }

    async fn stored_sha256(&self, key: &str) -> BackendResult<Option<String>> {
        Ok(self.head(key).await?.and_then(|out| trusted_sha256(&out)))
    }

    async fn get(&self, key: &str) -> BackendResult<ByteStream> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(BackendError::NotFound);
            }
            Err(e) => return Err(other(e)),
        };
        Ok(body_stream(out.body))
    }

    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> BackendResult<ByteStream> {
        self.get_in(&self.bucket, key, None, range).await
    }

    async fn list_prefixes(&self, prefix: &str) -> BackendResult<Vec<String>> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut prefixes = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(other)?;
            prefixes.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_owned)),
            );
        }
        Ok(prefixes)
    }

    async fn list(&self, prefix: &str) -> BackendResult<Vec<Listed>> {
        self.listing(prefix, None).await
    }

    async fn list_level(&self, prefix: &str) -> BackendResult<Vec<Listed>> {
        self.listing(prefix, Some("/")).await
    }

    async fn list_page(&self, prefix: &str, after: &str) -> BackendResult<(Vec<Listed>, bool)> {
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after((!after.is_empty()).then(|| after.to_owned()))
            .send()
            .await
            .map_err(other)?;
        let listed = page.contents().iter().filter_map(listed).collect();
        Ok((listed, page.is_truncated() == Some(true)))
    }

    async fn keeps_versions(&self) -> BackendResult<bool> {
        let out = match self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => out,
            // A store without versioning at all (some S3-compatible servers) keeps no versions.
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("NotImplemented") => {
                return Ok(false);
            }
            // An answer this client cannot read (moto names its root element otherwise): sweep
            // the thorough way, every version of each key, which also empties a key of a
            // bucket without versions.
            Err(SdkError::ServiceError(s)) if s.err().code().is_none() => return Ok(true),
            Err(SdkError::ResponseError(_)) => return Ok(true),
            Err(e) => return Err(other(e)),
        };
        // Suspended versioning still keeps the versions made while it was enabled.
        Ok(matches!(
            out.status(),
            Some(BucketVersioningStatus::Enabled | BucketVersioningStatus::Suspended)
        ))
    }

    async fn delete_many(
        &self,
        keys: &[String],
        all_versions: bool,
    ) -> BackendResult<Vec<Result<(), String>>> {
        let mut answers: Vec<Result<(), String>> = vec![Ok(()); keys.len()];
        // What to delete, each with the place of its key in `keys`.
        let mut doomed: Vec<(usize, (String, Option<String>))> = Vec::new();
        if all_versions {
            let found: Vec<(usize, Result<Vec<Option<String>>, String>)> =
                futures::stream::iter(keys.iter().cloned().enumerate())
                    .map(|(i, key)| async move { (i, self.versions_of(&key).await) })
                    .buffer_unordered(DELETES_IN_FLIGHT)
                    .collect()
                    .await;
            for (i, versions) in found {
                match versions {
                    Ok(versions) => {
                        doomed.extend(versions.into_iter().map(|v| (i, (keys[i].clone(), v))))
                    }
                    Err(why) => {
                        answers[i] = Err(format!("cannot list the versions of {}: {why}", keys[i]))
                    }
                }
            }
            doomed.sort_by_key(|(i, _)| *i);
        } else {
            doomed.extend(
                keys.iter()
                    .cloned()
                    .enumerate()
                    .map(|(i, k)| (i, (k, None))),
            );
        }
        let batches: Vec<&[(usize, (String, Option<String>))]> =
            doomed.chunks(DELETE_BATCH).collect();
        let requests: Vec<(usize, Vec<(String, Option<String>)>)> = batches
            .iter()
            .enumerate()
            .map(|(b, batch)| (b, batch.iter().map(|(_, id)| id.clone()).collect()))
            .collect();
        let done: Vec<(usize, Result<Vec<(usize, String)>, String>)> =
            futures::stream::iter(requests)
                .map(|(b, ids)| async move { (b, self.delete_batch(&ids).await) })
                .buffer_unordered(DELETES_IN_FLIGHT)
                .collect()
                .await;
        for (b, outcome) in done {
            let batch = batches[b];
            match outcome {
                Ok(refused) => {
                    for (at, why) in refused {
                        let (i, (_, version)) = &batch[at];
                        answers[*i] = Err(match version {
                            Some(v) => format!("version {v}: {why}"),
                            None => why,
                        });
                    }
                }
                Err(why) => {
                    for (i, _) in batch.iter() {
                        answers[*i] = Err(why.clone());
                    }
                }
            }
        }
        Ok(answers)
    }
}

impl AwsBackend {
    /// Every object under `prefix`, or with `delimiter` only those one level below it.
    async fn listing(&self, prefix: &str, delimiter: Option<&str>) -> BackendResult<Vec<Listed>> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_owned))
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(other)?;
            found.extend(page.contents().iter().filter_map(listed));
        }
        Ok(found)
    }
}

/// A listed object as the engine keeps it; None without a key.
fn listed(object: &aws_sdk_s3::types::Object) -> Option<Listed> {
    Some(Listed {
        key: object.key()?.to_owned(),
        size: object.size().map_or(0, |s| s.max(0) as u64),
        etag: object
            .e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned(),
    })
}

/// An SDK body as the engine's byte stream.
fn body_stream(body: SdkStream) -> ByteStream {
    futures::stream::unfold(body, |mut body| async move {
        body.next()
            .await
            .map(|r| (r.map_err(|e| BackendError::Other(e.to_string())), body))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0f343b0931126a20f133d67c2b018a3b5b4d5fc2ab0d3ac6da91f5ff52b5e6ee";

    fn head(e_tag: &str, checksum: Option<&str>) -> HeadObjectOutput {
        HeadObjectOutput::builder()
            .e_tag(e_tag)
            .set_checksum_sha256(checksum.map(str::to_owned))
            .metadata(SHA256_KEY, SHA)
            .build()
    }

    #[test]
    fn a_single_request_object_is_judged_by_the_stores_checksum_not_its_metadata() {
        let other = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(
            trusted_sha256(&head("\"abc\"", Some(&other))),
            Some(hex::encode([7u8; 32]))
        );
        let same = base64_of_hex(SHA).unwrap();
        assert_eq!(
            trusted_sha256(&head("\"abc\"", Some(&same))).as_deref(),
            Some(SHA)
        );
    }

    #[test]
    fn a_single_request_object_without_a_stored_checksum_is_not_trusted() {
        assert_eq!(trusted_sha256(&head("\"abc\"", None)), None);
    }

    #[test]
    fn a_multipart_object_falls_back_to_its_metadata() {
        assert_eq!(
            trusted_sha256(&head("\"abc-3\"", Some("AAAA-3"))).as_deref(),
            Some(SHA)
        );
    }
}
