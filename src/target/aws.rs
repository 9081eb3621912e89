//! The native S3 [`Backend`] over the AWS SDK (`aws-sdk-s3`), the default S3 client.
//!
//! Credentials and region come from the SDK's standard chains (environment, profile files,
//! web identity, instance metadata). An object sent in one request carries its SHA-256 both as
//! the `x-amz-checksum-sha256` header, which the store checks against the bytes it receives,
//! and as the user metadata `sha256`, which HEAD returns for the skip-if-identical check.
//! Multipart parts carry the SDK's CRC32 checksums. Payloads are not signed: the checksum the
//! store verifies already covers the bytes, and signing would hash every byte once more on
//! each side (measured: see the README's S3 table).

use std::sync::Arc;
use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;

use super::remote::{Backend, BackendError, BackendResult, ByteStream, runtime};
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

    async fn abort(&self, key: &str, upload: &str) -> BackendResult<()> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload)
            .send()
            .await
        {
            Ok(_) => Ok(()),
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
            .send()
            .await
        {
            Ok(out) => Ok(out
                .metadata
                .and_then(|mut m| m.remove(SHA256_KEY))
                .filter(|s| s.len() == 64)),
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
