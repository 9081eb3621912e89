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
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream as SdkStream;
use aws_sdk_s3::types::{ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;

use super::remote::{Aborted, Backend, BackendError, BackendResult, ByteStream, runtime};
use super::{S3Config, TargetError, Uploads};

/// What to check when an S3 target cannot be used.
pub const HINT: &str = "check the bucket, the endpoint and the AWS credentials \
    (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or instance metadata)";

/// Attempts per request: the first and 5 retries, with exponential backoff from 100 ms, for
/// 5xx, SlowDown, timeouts and dropped connections.
const ATTEMPTS: u32 = 6;

const SHA256_KEY: &str = "sha256";

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
    out.checksum_sha256()
        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
        .filter(|raw| raw.len() == 32)
        .map(hex::encode)
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
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(body.len() as i64)
            .set_checksum_sha256(base64_of_hex(sha256))
            .metadata(SHA256_KEY, sha256)
            .body(SdkStream::from(body))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map(|_| ())
            .map_err(other)
    }

    async fn begin(&self, key: &str, sha256: Option<&str>) -> BackendResult<String> {
        let mut request = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key);
        if let Some(sha) = sha256 {
            request = request.metadata(SHA256_KEY, sha);
        }
        let out = request.send().await.map_err(other)?;
        out.upload_id
            .ok_or_else(|| BackendError::Other("the store returned no upload id".into()))
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
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(out) => Ok(trusted_sha256(&out)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(other(e)),
        }
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
        let stream = futures::stream::unfold(out.body, |mut body| async move {
            body.next()
                .await
                .map(|r| (r.map_err(|e| BackendError::Other(e.to_string())), body))
        });
        Ok(stream.boxed())
    }
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
