//! The [`Backend`] over the `object_store` crate: S3-compatible stores (the alternative S3
//! client) and Azure Blob Storage (GCS has its own JSON-API backend, `gcs.rs`). Each
//! object's SHA-256 travels as the user metadata `sha256`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as StorePath;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, GetOptions, MultipartUpload, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, RetryConfig,
};

use super::remote::{Aborted, Backend, BackendError, BackendResult, ByteStream, Listed, runtime};
use super::{TargetError, Uploads};

/// Retries of a request that failed with a 5xx, SlowDown or a dropped connection, with
/// exponential backoff from 100 ms; a request is not retried after `RETRY_TIMEOUT`.
const RETRIES: usize = 5;
const RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// The user-metadata key objects carry their SHA-256 under.
const SHA256_KEY: &str = "sha256";

trait Store: ObjectStore + MultipartStore {}
impl<T: ObjectStore + MultipartStore> Store for T {}

struct ObjectStoreBackend {
    store: Arc<dyn Store>,
    location: String,
    prefix: String,
    hint: &'static str,
    /// Azure's multipart uploads, when the store is Azure: its low-level multipart API takes
    /// no metadata, so they go through the upload object, which commits the SHA-256 with the
    /// block list.
    azure: Option<AzureUploads>,
    /// Copy Blob inside the Azure account, when its blob service's address is known.
    #[cfg(feature = "azure")]
    copier: Option<super::azure_copy::AzureCopier>,
}

/// Azure multipart uploads under way in this process, by the id `begin` gave them. The upload
/// object numbers blocks in the order `put_part` is called, so each part waits for its turn:
/// parts still upload concurrently, only their numbering is serial.
#[derive(Default)]
struct AzureUploads {
    open: Mutex<HashMap<String, AzureUpload>>,
    turn: tokio::sync::Notify,
    ids: AtomicU64,
}

struct AzureUpload {
    upload: Box<dyn MultipartUpload>,
    next: usize,
}

type Built = (Arc<dyn Backend>, Arc<tokio::runtime::Runtime>);

fn unusable(name: &str, e: impl std::fmt::Display) -> TargetError {
    TargetError::Unusable {
        target: name.to_owned(),
        message: e.to_string(),
    }
}

fn client_options(endpoint: Option<&str>, uploads: &Uploads) -> ClientOptions {
    ClientOptions::new()
        .with_timeout(uploads.request_timeout)
        .with_connect_timeout(std::time::Duration::from_secs(10))
        .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
}

fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: RETRIES,
        retry_timeout: RETRY_TIMEOUT,
    }
}

fn finish(name: &str, backend: ObjectStoreBackend) -> Result<Built, TargetError> {
    let runtime = runtime().map_err(|e| unusable(name, e))?;
    Ok((Arc::new(backend), Arc::new(runtime)))
}

/// An S3-compatible bucket through `object_store` (credentials from the environment or
/// instance metadata).
#[cfg(feature = "s3")]
pub fn s3(name: &str, c: &super::S3Config, uploads: &Uploads) -> Result<Built, TargetError> {
    use object_store::aws::AmazonS3Builder;
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&c.bucket)
        .with_virtual_hosted_style_request(!c.path_style)
        .with_retry(retry())
        .with_client_options(client_options(c.endpoint.as_deref(), uploads));
    if let Some(region) = &c.region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &c.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let store = builder.build().map_err(|e| unusable(name, e))?;
    finish(
        name,
        ObjectStoreBackend {
            store: Arc::new(store),
            location: format!("s3://{}/{}", c.bucket, c.prefix),
            prefix: c.prefix.clone(),
            hint: super::aws::HINT,
            azure: None,
            #[cfg(feature = "azure")]
            copier: None,
        },
    )
}

/// An Azure Blob Storage container.
#[cfg(feature = "azure")]
pub fn azure(name: &str, c: &super::AzureConfig, uploads: &Uploads) -> Result<Built, TargetError> {
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    let mut builder = MicrosoftAzureBuilder::from_env()
        .with_container_name(&c.container)
        .with_retry(retry())
        .with_client_options(client_options(c.endpoint.as_deref(), uploads));
    if let Some(account) = &c.account {
        builder = builder.with_account(account);
    }
    if let Some(endpoint) = &c.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    let setting = |key| builder.get_config_value(&key);
    let on = |key| setting(key).is_some_and(|v| v == "true");
    // The blob service's address as object_store makes it, when it is the account's own: the
    // emulator and Fabric settings make other addresses, and their stores stream copies.
    let service = match (
        setting(AzureConfigKey::AccountName),
        setting(AzureConfigKey::Endpoint),
    ) {
        _ if on(AzureConfigKey::UseEmulator) || on(AzureConfigKey::UseFabricEndpoint) => None,
        (Some(account), Some(endpoint)) => Some((account, endpoint)),
        (Some(account), None) => {
            let endpoint = format!("https://{account}.blob.core.windows.net");
            Some((account, endpoint))
        }
        (None, _) => None,
    };
    let store = Arc::new(builder.build().map_err(|e| unusable(name, e))?);
    let copier = service
        .map(|(account, endpoint)| {
            super::azure_copy::AzureCopier::new(
                store.clone(),
                account,
                &endpoint,
                &c.container,
                uploads.request_timeout,
            )
        })
        .transpose()
        .map_err(|e| unusable(name, e))?;
    finish(
        name,
        ObjectStoreBackend {
            store,
            location: format!("azure container {}/{}", c.container, c.prefix),
            prefix: c.prefix.clone(),
            hint: "check the container, the endpoint and the account and key in \
                   AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_ACCOUNT_KEY (or another Azure credential)",
            azure: Some(AzureUploads::default()),
            copier,
        },
    )
}

fn error(e: object_store::Error) -> BackendError {
    match e {
        object_store::Error::NotFound { .. } => BackendError::NotFound,
        e => BackendError::Other(e.to_string()),
    }
}

fn sha256_attributes(sha256: Option<&str>) -> Attributes {
    let mut attributes = Attributes::new();
    if let Some(sha) = sha256 {
        attributes.insert(
            Attribute::Metadata(SHA256_KEY.into()),
            sha.to_owned().into(),
        );
    }
    attributes
}

impl ObjectStoreBackend {
    /// The bytes in `range` of the object `key`, only while its entity tag is `if_match` when
    /// one is given (`NotFound` once another object has replaced it).
    async fn read(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        if_match: Option<String>,
    ) -> BackendResult<ByteStream> {
        if range.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        let opts = GetOptions {
            range: Some(object_store::GetRange::Bounded(range)),
            if_match,
            ..Default::default()
        };
        let result = match self.store.get_opts(&StorePath::from(key), opts).await {
            Ok(result) => result,
            Err(object_store::Error::Precondition { .. }) => return Err(BackendError::NotFound),
            Err(e) => return Err(error(e)),
        };
        Ok(result.into_stream().map(|r| r.map_err(error)).boxed())
    }
}

#[async_trait::async_trait]
impl Backend for ObjectStoreBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn hint(&self) -> &'static str {
        self.hint
    }

    fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn probe(&self) -> BackendResult<()> {
        let prefix = StorePath::from(self.prefix.trim_end_matches('/'));
        self.store
            .list_with_delimiter(Some(&prefix))
            .await
            .map(|_| ())
            .map_err(|e| BackendError::Other(e.to_string()))
    }

    async fn put(&self, key: &str, body: Bytes, sha256: &str) -> BackendResult<()> {
        let opts = PutOptions {
            attributes: sha256_attributes(Some(sha256)),
            ..Default::default()
        };
        self.store
            .put_opts(&StorePath::from(key), PutPayload::from(body), opts)
            .await
            .map(|_| ())
            .map_err(error)
    }

    async fn begin(&self, key: &str, sha256: Option<&str>) -> BackendResult<String> {
        let opts = PutMultipartOptions {
            attributes: sha256_attributes(sha256),
            ..Default::default()
        };
        if let Some(azure) = &self.azure {
            let upload = self
                .store
                .put_multipart_opts(&StorePath::from(key), opts)
                .await
                .map_err(error)?;
            let id = format!(
                "{}-{}",
                std::process::id(),
                azure.ids.fetch_add(1, Ordering::Relaxed)
            );
            azure
                .open
                .lock()
                .expect("azure uploads lock")
                .insert(id.clone(), AzureUpload { upload, next: 0 });
            return Ok(id);
        }
        self.store
            .create_multipart_opts(&StorePath::from(key), opts)
            .await
            .map_err(error)
    }

    async fn part(
        &self,
        key: &str,
        upload: &str,
        index: usize,
        body: Bytes,
    ) -> BackendResult<String> {
        if let Some(azure) = &self.azure {
            loop {
                // Registered before the check, so a turn passed in between still wakes it.
                let turn = azure.turn.notified();
                let started = {
                    let mut open = azure.open.lock().expect("azure uploads lock");
                    let u = open.get_mut(upload).ok_or(BackendError::NotFound)?;
                    (u.next == index).then(|| {
                        u.next += 1;
                        u.upload.put_part(PutPayload::from(body.clone()))
                    })
                };
                if let Some(part) = started {
                    azure.turn.notify_waiters();
                    return part.await.map(|()| String::new()).map_err(error);
                }
                turn.await;
            }
        }
        let id = upload.to_owned();
        self.store
            .put_part(&StorePath::from(key), &id, index, PutPayload::from(body))
            .await
            .map(|p| p.content_id)
            .map_err(error)
    }

    async fn complete(&self, key: &str, upload: &str, parts: Vec<String>) -> BackendResult<()> {
        if let Some(azure) = &self.azure {
            let taken = azure
                .open
                .lock()
                .expect("azure uploads lock")
                .remove(upload);
            let mut taken = taken.ok_or(BackendError::NotFound)?;
            return taken.upload.complete().await.map(|_| ()).map_err(error);
        }
        let parts = parts
            .into_iter()
            .map(|content_id| PartId { content_id })
            .collect();
        self.store
            .complete_multipart(&StorePath::from(key), &upload.to_owned(), parts)
            .await
            .map(|_| ())
            .map_err(error)
    }

    async fn abort(&self, key: &str, upload: &str) -> BackendResult<Aborted> {
        if let Some(azure) = &self.azure {
            // Azure cannot delete uncommitted blocks (object_store's abort sends nothing), so
            // dropping the upload object is all there is to do.
            azure
                .open
                .lock()
                .expect("azure uploads lock")
                .remove(upload);
            azure.turn.notify_waiters();
            return Ok(Aborted::LeftToExpire);
        }
        self.store
            .abort_multipart(&StorePath::from(key), &upload.to_owned())
            .await
            .map_err(error)?;
        Ok(Aborted::Discarded)
    }

    async fn stored_sha256(&self, key: &str) -> BackendResult<Option<String>> {
        let opts = GetOptions {
            head: true,
            ..Default::default()
        };
        match self.store.get_opts(&StorePath::from(key), opts).await {
            Ok(result) => Ok(result
                .attributes
                .get(&Attribute::Metadata(SHA256_KEY.into()))
                .map(|v| v.to_string())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(BackendError::Other(e.to_string())),
        }
    }

    async fn get(&self, key: &str) -> BackendResult<ByteStream> {
        let result = self.store.get(&StorePath::from(key)).await.map_err(error)?;
        Ok(result.into_stream().map(|r| r.map_err(error)).boxed())
    }

    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> BackendResult<ByteStream> {
        self.read(key, range, None).await
    }

    async fn list_prefixes(&self, prefix: &str) -> BackendResult<Vec<String>> {
        #[cfg(feature = "azure")]
        if let Some(copier) = &self.copier {
            return Ok(copier.list(prefix, true).await?.1);
        }
        let at = store_prefix(prefix);
        let listing = self
            .store
            .list_with_delimiter(at.as_ref())
            .await
            .map_err(error)?;
        Ok(listing
            .common_prefixes
            .into_iter()
            .map(|p| format!("{p}/"))
            .collect())
    }

    async fn list(&self, prefix: &str) -> BackendResult<Vec<Listed>> {
        #[cfg(feature = "azure")]
        if let Some(copier) = &self.copier {
            return Ok(copier.list(prefix, false).await?.0);
        }
        let at = store_prefix(prefix);
        let mut objects = self.store.list(at.as_ref());
        let mut listed = Vec::new();
        while let Some(meta) = objects.next().await {
            let meta = meta.map_err(error)?;
            listed.push(Listed {
                key: meta.location.to_string(),
                size: meta.size,
                etag: meta.e_tag.unwrap_or_default().trim_matches('"').to_owned(),
            });
        }
        Ok(listed)
    }

    async fn list_level(&self, prefix: &str) -> BackendResult<Vec<Listed>> {
        #[cfg(feature = "azure")]
        if let Some(copier) = &self.copier {
            return Ok(copier.list(prefix, true).await?.0);
        }
        let at = store_prefix(prefix);
        let listing = self
            .store
            .list_with_delimiter(at.as_ref())
            .await
            .map_err(error)?;
        Ok(listing
            .objects
            .into_iter()
            .map(|meta| Listed {
                key: meta.location.to_string(),
                size: meta.size,
                etag: meta.e_tag.unwrap_or_default().trim_matches('"').to_owned(),
            })
            .collect())
    }

    fn copies(&self) -> bool {
        #[cfg(feature = "azure")]
        return self.copier.is_some();
        #[cfg(not(feature = "azure"))]
        false
    }

    fn copies_whole(&self) -> bool {
        self.copies()
    }

    #[cfg(feature = "azure")]
    async fn copy(
        &self,
        source: &super::remote::CopySource,
        key: &str,
        _sha256: &str,
        retention: Option<super::remote::Retention>,
    ) -> BackendResult<super::remote::Copied> {
        let copier = self.copier.as_ref().ok_or_else(super::remote::no_copy)?;
        if retention.is_some() {
            return Err(BackendError::Other(
                "Azure copies are not written under Object Lock".into(),
            ));
        }
        Ok(super::remote::Copied::Unhashed(
            super::remote::CopyVersion {
                tag: copier.copy(source, key).await?,
                checksum: None,
            },
        ))
    }

    #[cfg(feature = "azure")]
    async fn get_copy(
        &self,
        key: &str,
        version: &super::remote::CopyVersion,
        range: std::ops::Range<u64>,
    ) -> BackendResult<ByteStream> {
        self.read(key, range, Some(version.tag.clone())).await
    }

    #[cfg(feature = "azure")]
    async fn seal_copy(
        &self,
        key: &str,
        sha256: &str,
        version: &super::remote::CopyVersion,
    ) -> BackendResult<()> {
        let copier = self.copier.as_ref().ok_or_else(super::remote::no_copy)?;
        copier.seal(key, sha256, &version.tag).await
    }

    #[cfg(feature = "azure")]
    async fn remove_copy(
        &self,
        key: &str,
        version: &super::remote::CopyVersion,
    ) -> BackendResult<()> {
        let copier = self.copier.as_ref().ok_or_else(super::remote::no_copy)?;
        copier.remove(key, &version.tag).await
    }

    async fn delete(&self, key: &str) -> BackendResult<()> {
        self.store
            .delete(&StorePath::from(key))
            .await
            .map_err(error)
    }

    async fn keeps_versions(&self) -> BackendResult<bool> {
        match self.azure {
            // Azure's blob versioning is an account setting object_store cannot read; it is
            // documented as unsupported for a repository (docs/operations.md, "A repository in
            // an object store").
            Some(_) => Ok(false),
            None => Err(BackendError::Other(
                "the object_store client cannot tell whether the bucket keeps old versions, so a retention delete could leave the data in them; set `client = \"aws_sdk\"` in [repository] of the config".into(),
            )),
        }
    }

    async fn delete_many(
        &self,
        keys: &[String],
        _all_versions: bool,
    ) -> BackendResult<Vec<Result<(), String>>> {
        let mut answers = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(self.delete_batch()) {
            let paths: Vec<object_store::Result<StorePath>> = chunk
                .iter()
                .map(|k| Ok(StorePath::from(k.as_str())))
                .collect();
            let results: Vec<object_store::Result<StorePath>> = self
                .store
                .delete_stream(futures::stream::iter(paths).boxed())
                .collect()
                .await;
            // One answer per key in order; a failed request answers once for all of them.
            let mut first_failure = None;
            let mut by_key: HashMap<String, Result<(), String>> = HashMap::new();
            for result in results {
                match result {
                    Ok(path) => {
                        by_key.insert(path.to_string(), Ok(()));
                    }
                    Err(object_store::Error::NotFound { path, .. }) => {
                        by_key.insert(path, Ok(()));
                    }
                    Err(e) => {
                        let why = e.to_string();
                        match chunk.iter().find(|k| why.contains(k.as_str())) {
                            Some(k) => {
                                by_key.insert(k.clone(), Err(why));
                            }
                            None => first_failure = first_failure.or(Some(why)),
                        }
                    }
                }
            }
            answers.extend(chunk.iter().map(|k| {
                by_key.remove(k).unwrap_or_else(|| {
                    Err(first_failure
                        .clone()
                        .unwrap_or_else(|| "the store did not answer for this key".into()))
                })
            }));
        }
        Ok(answers)
    }
}

impl ObjectStoreBackend {
    /// Keys object_store deletes in one request: S3's `DeleteObjects` takes 1,000, an Azure
    /// blob batch 256.
    fn delete_batch(&self) -> usize {
        if self.azure.is_some() { 256 } else { 1000 }
    }
}

/// `prefix` (empty or ending in `/`) as object_store lists it: by path segments, no slash.
fn store_prefix(prefix: &str) -> Option<StorePath> {
    let trimmed = prefix.trim_end_matches('/');
    (!trimmed.is_empty()).then(|| StorePath::from(trimmed))
}
