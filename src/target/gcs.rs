//! The Google Cloud Storage [`Backend`] over GCS's JSON API, with `reqwest`.
//!
//! `object_store`'s GCS client uploads through the XML API (a single PUT, XML multipart
//! uploads), which GCS emulators such as fake-gcs-server do not understand; the JSON API is
//! what every GCS server speaks. So uploads go through it here:
//!
//! - an object no larger than a part is one multipart upload (`uploadType=multipart`: the
//!   object's metadata and its bytes in one request);
//! - a larger one is a resumable upload (`uploadType=resumable`): `begin` opens a session,
//!   each part is a chunk sent at its offset (`Content-Range: bytes A-B/*`), and `complete`
//!   declares the total size (`bytes */TOTAL`), which makes the object visible. A session
//!   takes its chunks in order, so a part waits for the one before it to be stored; the next
//!   parts still fill and queue meanwhile. `abort` cancels the session (DELETE).
//!
//! Each object carries its SHA-256 as the custom metadata `sha256` (GCS itself keeps CRC32C and
//! MD5, which cannot be compared with a recording's SHA-256), read back for the
//! skip-if-identical check. CRC32C guards the bytes: the store checks an object against the
//! CRC32C sent with it (in the resource, or `X-Goog-Hash` when a resumable upload completes),
//! and the CRC32C it reports must be ours.
//!
//! For a repository in the same store, an unchanged artifact is copied inside it with
//! `rewriteTo` (any size; a rewrite the store has not finished is asked again with its
//! `rewriteToken`). GCS computes no SHA-256, so the copy carries only the metadata
//! `custodian_unchecked` until it has been read back and hashed; `seal_copy` then gives it its
//! `sha256`, tied to the copy's CRC32C and generation like a put's (docs/operations.md,
//! "Server-side copy"). Tokens come from `object_store`'s GCS credential chain (a service
//! account key file or key, application-default credentials, instance metadata); a target with
//! an `endpoint` and none of those configured sends no token, as emulators expect.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use object_store::gcp::{GcpCredentialProvider, GoogleCloudStorageBuilder, GoogleConfigKey};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use tokio::sync::watch;

use super::remote::{
    Aborted, Backend, BackendError, BackendResult, ByteStream, Copied, CopySource, CopyVersion,
    Listed, Retention, runtime,
};
use super::{GcsConfig, TargetError, Uploads};

/// Google's endpoint, when the target names none.
const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// What to check when a GCS target cannot be used.
const HINT: &str = "check the bucket, the endpoint and GOOGLE_SERVICE_ACCOUNT (a service \
    account key file; or GOOGLE_SERVICE_ACCOUNT_KEY, or the application-default credentials)";

/// Retries of a request that failed with a 5xx, 408 or 429, a timeout or a dropped connection,
/// with exponential backoff from 100 ms; a request is not retried after `RETRY_TIMEOUT`.
const RETRIES: u32 = 5;
const RETRY_TIMEOUT: Duration = Duration::from_secs(300);

/// The custom-metadata key objects carry their SHA-256 under.
const SHA256_KEY: &str = "sha256";
/// The custom-metadata key an object sent in one request carries its bytes' CRC32C under.
const CRC32C_KEY: &str = "crc32c";

/// The custom-metadata key a copy carries instead of a SHA-256 until it has been read back:
/// a rewrite given metadata takes none of the source's (`sha256` included), so a copy left
/// unchecked by a killed process is never taken for an identical object.
const UNCHECKED_KEY: &str = "custodian_unchecked";

/// Rewrite calls in a row that may copy nothing before a copy is given up.
const REWRITE_STALLS: u32 = 10;

/// At most this much of an error response's body goes into a message.
const ERROR_BODY_LIMIT: usize = 300;

type Built = (Arc<dyn Backend>, Arc<tokio::runtime::Runtime>);

struct GcsBackend {
    http: reqwest::Client,
    /// The endpoint, without a trailing `/`.
    base: Url,
    bucket: String,
    prefix: String,
    /// None: requests go unauthenticated (an emulator).
    credentials: Option<GcpCredentialProvider>,
    request_timeout: Duration,
    /// Bytes in every part but an upload's last: part `i` starts at `i * part_size`.
    part_size: u64,
    sessions: Sessions,
}

/// The resumable sessions this process is uploading, each with whose turn it is.
#[derive(Default)]
struct Sessions(Mutex<std::collections::HashMap<String, watch::Sender<Turn>>>);

/// Which part of a session may send its chunk next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Turn {
    Part(usize),
    /// A part failed: the session cannot be completed, later parts give up.
    Broken,
}

impl Sessions {
    fn open(&self, id: &str) {
        let (turn, _) = watch::channel(Turn::Part(0));
        self.0
            .lock()
            .expect("sessions lock")
            .insert(id.to_owned(), turn);
    }

    fn turn(&self, id: &str) -> Option<watch::Sender<Turn>> {
        self.0.lock().expect("sessions lock").get(id).cloned()
    }

    fn close(&self, id: &str) {
        if let Some(turn) = self.0.lock().expect("sessions lock").remove(id) {
            turn.send_replace(Turn::Broken);
        }
    }
}

fn unusable(name: &str, message: impl std::fmt::Display) -> TargetError {
    TargetError::Unusable {
        target: name.to_owned(),
        message: message.to_string(),
    }
}

/// Builds the client (reads the key file or key the environment names; connects nowhere yet).
pub fn backend(name: &str, c: &GcsConfig, uploads: &Uploads) -> Result<Built, TargetError> {
    let builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(&c.bucket);
    let key_file = builder.get_config_value(&GoogleConfigKey::ServiceAccount);
    let configured = key_file.is_some()
        || builder
            .get_config_value(&GoogleConfigKey::ServiceAccountKey)
            .is_some()
        || builder
            .get_config_value(&GoogleConfigKey::ApplicationCredentials)
            .is_some();
    let credentials = if c.endpoint.is_some() && !configured {
        None
    } else {
        let store = builder.build().map_err(|e| match &key_file {
            Some(path) => unusable(name, format!("service account key file {path}: {e}")),
            None => unusable(name, format!("GCS credentials: {e}")),
        })?;
        Some(store.credentials().clone())
    };
    let endpoint = c.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
    let base = Url::parse(endpoint.trim_end_matches('/'))
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            unusable(
                name,
                format!("endpoint `{endpoint}` is not an http:// or https:// URL"),
            )
        })?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(uploads.request_timeout)
        // The JSON API never redirects these calls; a 308 is a resumable session's progress.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| unusable(name, e))?;
    let runtime = runtime().map_err(|e| unusable(name, e))?;
    let backend = GcsBackend {
        http,
        base,
        bucket: c.bucket.clone(),
        prefix: c.prefix.clone(),
        credentials,
        request_timeout: uploads.request_timeout,
        part_size: uploads.part_size as u64,
        sessions: Sessions::default(),
    };
    Ok((Arc::new(backend), Arc::new(runtime)))
}

/// A failed response as an error: `NotFound` for 404, else the status and what the server
/// said (GCS's JSON error message when there is one).
async fn failure(response: Response) -> BackendError {
    let status = response.status();
    if status == StatusCode::NOT_FOUND {
        return BackendError::NotFound;
    }
    let said = server_said(&response.text().await.unwrap_or_default());
    BackendError::Other(format!("HTTP {status}: {said}"))
}

/// What an error response says: GCS's JSON error message, else its body, cut short and
/// without control characters (a server's words end up on a terminal).
fn server_said(body: &str) -> String {
    let said = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned());
    said.trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(ERROR_BODY_LIMIT)
        .collect()
}

fn transport(e: reqwest::Error) -> BackendError {
    BackendError::Other(format!("{e}: {}", cause_chain(&e)))
}

/// reqwest's message names the URL only; the cause says what went wrong (refused, timed out).
fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut causes = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        causes.push(cause.to_string());
        next = cause.source();
    }
    causes.join(": ")
}

/// A response's body as JSON (an object resource).
async fn json(response: Response) -> BackendResult<serde_json::Value> {
    let body = response.bytes().await.map_err(transport)?;
    serde_json::from_slice(&body).map_err(|e| {
        BackendError::Other(format!("the store sent an unreadable object resource: {e}"))
    })
}

fn retriable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

fn retriable_error(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 << attempt.min(6))
}

/// The end (exclusive) of what a resumable session has stored, from a 308 response's
/// `Range: bytes=0-N` (nothing yet without the header).
fn persisted(response: &Response) -> BackendResult<u64> {
    let range = response.headers().get(reqwest::header::RANGE);
    stored_end(range.map(|r| r.to_str().unwrap_or("(not text)")))
}

fn stored_end(range: Option<&str>) -> BackendResult<u64> {
    let Some(range) = range else {
        return Ok(0);
    };
    range
        .strip_prefix("bytes=0-")
        .and_then(|n| n.parse::<u64>().ok())
        .and_then(|last| last.checked_add(1))
        .ok_or_else(|| BackendError::Other(format!("the store sent a malformed Range {range:?}")))
}

/// The `upload_id` of a resumable session, from the `Location` its start returned.
fn session_id(response: &Response) -> BackendResult<String> {
    let location = response.headers().get(reqwest::header::LOCATION);
    upload_id(location.and_then(|l| l.to_str().ok()))
}

/// Only the id is kept: chunks go to this target's own endpoint, never to a URL a server
/// names, so neither a server nor the upload journal can send the token elsewhere.
fn upload_id(location: Option<&str>) -> BackendResult<String> {
    location
        .and_then(|l| Url::parse(l).ok())
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "upload_id")
                .map(|(_, v)| v.into_owned())
        })
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            BackendError::Other("the store started a resumable upload without an upload_id".into())
        })
}

/// An int64 field of a JSON API resource: a string, as GCS writes them, or a number.
fn int64(field: &serde_json::Value) -> Option<u64> {
    match field {
        serde_json::Value::String(s) => s.parse().ok(),
        other => other.as_u64(),
    }
}

/// A CRC32C as GCS writes it: base64 of its 4 big-endian bytes.
fn crc32c_text(crc: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// What a part's upload hands `complete`: its length and CRC32C, as `LEN:CRC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PartToken {
    len: u64,
    crc: u32,
}

impl PartToken {
    fn parse(token: &str) -> BackendResult<PartToken> {
        token
            .split_once(':')
            .and_then(|(len, crc)| Some((len.parse().ok()?, crc.parse().ok()?)))
            .map(|(len, crc)| PartToken { len, crc })
            .ok_or_else(|| BackendError::Other(format!("a malformed part token `{token}`")))
    }

    /// The whole object's length and CRC32C from its parts' in order.
    fn whole(parts: &[String]) -> BackendResult<PartToken> {
        parts
            .iter()
            .try_fold(PartToken { len: 0, crc: 0 }, |whole, token| {
                let part = PartToken::parse(token)?;
                Ok(PartToken {
                    len: whole.len + part.len,
                    crc: crc32c::crc32c_combine(whole.crc, part.crc, part.len as usize),
                })
            })
    }
}

impl std::fmt::Display for PartToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.len, self.crc)
    }
}

/// The object resource a new object starts with: its name, type and SHA-256. With the bytes'
/// CRC32C (an object sent in one request), the store checks the bytes against it, and the
/// metadata `crc32c` ties the SHA-256 to those bytes for [`trusted_sha256`].
fn resource(key: &str, sha256: Option<&str>, crc32c: Option<u32>) -> Vec<u8> {
    let mut object = serde_json::json!({
        "name": key,
        "contentType": "application/octet-stream",
    });
    if let Some(sha) = sha256 {
        object["metadata"] = serde_json::json!({ SHA256_KEY: sha });
    }
    if let (Some(crc), Some(_)) = (crc32c, sha256) {
        object["crc32c"] = crc32c_text(crc).into();
        object["metadata"][CRC32C_KEY] = crc32c_text(crc).into();
    }
    object.to_string().into_bytes()
}

/// The SHA-256 an object's metadata claims, if the store vouches for it. Metadata is only what
/// a writer claimed; an object sent in one request also carries, as metadata `crc32c`, the
/// CRC32C of the bytes it was sent with, which must equal the store's own CRC32C of the bytes
/// it holds, so an object overwritten with other bytes under the same metadata is not taken
/// for identical. An object uploaded in parts carries no such metadata (its CRC32C is known
/// only at the end, after the metadata is set): its `sha256` is all there is, as for S3.
fn trusted_sha256(object: &serde_json::Value) -> Option<String> {
    let sha = object["metadata"][SHA256_KEY]
        .as_str()
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))?;
    let vouched = match object["metadata"][CRC32C_KEY].as_str() {
        Some(claimed) => object["crc32c"].as_str() == Some(claimed),
        None => true,
    };
    vouched.then(|| sha.to_ascii_lowercase())
}

/// Checks that the store holds the bytes sent: its CRC32C and size against ours.
fn check_stored(object: &serde_json::Value, sent: PartToken) -> BackendResult<()> {
    let size = object["size"].as_str().and_then(|s| s.parse::<u64>().ok());
    let crc = object["crc32c"].as_str();
    if size == Some(sent.len) && crc == Some(&crc32c_text(sent.crc)) {
        return Ok(());
    }
    Err(BackendError::Other(format!(
        "the store holds other bytes than were sent ({} bytes with CRC32C {}, sent {} with {})",
        object["size"],
        object["crc32c"],
        sent.len,
        crc32c_text(sent.crc)
    )))
}

/// A `multipart/related` body: the object resource, then the bytes. The boundary holds the
/// bytes' SHA-256, which the bytes cannot contain without knowing their own hash.
fn related(key: &str, body: &[u8], sha256: &str) -> (String, Vec<u8>) {
    let boundary = format!("custodian-{sha256}");
    let mut out = Vec::with_capacity(body.len() + 512);
    out.extend_from_slice(
        format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n").as_bytes(),
    );
    out.extend_from_slice(&resource(key, Some(sha256), Some(crc32c::crc32c(body))));
    out.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    out.extend_from_slice(body);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/related; boundary={boundary}"), out)
}

impl GcsBackend {
    /// `{endpoint}/{segments…}`, each segment percent-encoded (an object's `/` too).
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http(s) URL has a path")
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    fn object_url(&self, key: &str, query: &[(&str, &str)]) -> Url {
        self.url(&["storage", "v1", "b", &self.bucket, "o", key], query)
    }

    /// The rewrite of `source` (in this store) to `key` of this bucket.
    fn rewrite_url(&self, source: &CopySource, key: &str) -> Url {
        let to = ["rewriteTo", "b", &self.bucket, "o", key];
        let from = ["storage", "v1", "b", &source.bucket, "o", &source.key];
        self.url(&[&from[..], &to[..]].concat(), &[])
    }

    fn upload_url(&self, query: &[(&str, &str)]) -> Url {
        self.url(&["upload", "storage", "v1", "b", &self.bucket, "o"], query)
    }

    fn session_url(&self, id: &str) -> Url {
        self.upload_url(&[("uploadType", "resumable"), ("upload_id", id)])
    }

    /// The bytes in `range` of the object `key`, of its generation `generation` when given
    /// (`NotFound` once another has replaced it).
    async fn read(
        &self,
        key: &str,
        generation: Option<&str>,
        range: std::ops::Range<u64>,
    ) -> BackendResult<ByteStream> {
        if range.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        let url = match generation {
            Some(g) => self.object_url(key, &[("alt", "media"), ("generation", g)]),
            None => self.object_url(key, &[("alt", "media")]),
        };
        let bytes = format!("bytes={}-{}", range.start, range.end - 1);
        let response = match self
            .send(|| self.http.get(url.clone()).header("Range", &bytes))
            .await
        {
            Ok(r) => r,
            // A range starting at the object's end: nothing there to read.
            Err(BackendError::Other(m)) if m.starts_with("HTTP 416") => {
                return Ok(futures::stream::empty().boxed());
            }
            Err(e) => return Err(e),
        };
        Ok(response
            .bytes_stream()
            .map(|r| r.map_err(transport))
            .boxed())
    }

    /// Deletes what `url` names; what is already gone counts as deleted.
    async fn delete_at(&self, url: Url) -> BackendResult<()> {
        match self.send(|| self.call(Method::DELETE, url.clone())).await {
            Ok(_) | Err(BackendError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A request that must finish within `request_timeout` (a download need not: the client's
    /// read timeout catches a stalled one, however large the object).
    fn call(&self, method: Method, url: Url) -> RequestBuilder {
        self.http.request(method, url).timeout(self.request_timeout)
    }

    async fn authorize(&self, request: RequestBuilder) -> BackendResult<RequestBuilder> {
        let Some(credentials) = &self.credentials else {
            return Ok(request);
        };
        let token = credentials
            .get_credential()
            .await
            .map_err(|e| BackendError::Other(format!("GCS credentials: {e}")))?;
        Ok(request.bearer_auth(&token.bearer))
    }

    /// Sends one request once; the outer error is a failure to get a token.
    async fn send_once(
        &self,
        request: RequestBuilder,
    ) -> BackendResult<Result<Response, reqwest::Error>> {
        Ok(self.authorize(request).await?.send().await)
    }

    /// Sends a request, again after a transient failure; `make` builds each attempt.
    async fn send(&self, make: impl Fn() -> RequestBuilder) -> BackendResult<Response> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let request = self.authorize(make()).await?;
            let outcome = request.send().await;
            let again = match &outcome {
                Ok(r) => retriable_status(r.status()),
                Err(e) => retriable_error(e),
            };
            if !again || attempt >= RETRIES || started.elapsed() >= RETRY_TIMEOUT {
                return match outcome {
                    Ok(r) if r.status().is_success() => Ok(r),
                    Ok(r) => Err(failure(r).await),
                    Err(e) => Err(transport(e)),
                };
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// Sends the chunk `body` at `offset` of session `id`, resuming after a transient failure
    /// from what the session says it stored, so no byte is stored twice.
    async fn chunk(&self, id: &str, offset: u64, body: Bytes) -> BackendResult<()> {
        let end = offset + body.len() as u64;
        let started = Instant::now();
        let mut from = offset;
        let mut attempt = 0;
        while from < end {
            let rest = body.slice((from - offset) as usize..);
            let request = self
                .call(Method::PUT, self.session_url(id))
                .header(
                    reqwest::header::CONTENT_RANGE,
                    format!("bytes {from}-{}/*", end - 1),
                )
                .body(rest);
            let outcome = self.send_once(request).await?;
            let transient = match outcome {
                Ok(r) if r.status().as_u16() == 308 => {
                    let stored = persisted(&r)?;
                    if stored > from {
                        from = stored;
                        attempt = 0;
                        continue;
                    }
                    BackendError::Other(format!("the store kept none of the bytes from {from}"))
                }
                Ok(r) if retriable_status(r.status()) => failure(r).await,
                Ok(r) if r.status().is_success() => {
                    return Err(BackendError::Other(
                        "the store finished the upload before its last part".into(),
                    ));
                }
                Ok(r) => return Err(failure(r).await),
                Err(e) if retriable_error(&e) => transport(e),
                Err(e) => return Err(transport(e)),
            };
            if attempt >= RETRIES || started.elapsed() >= RETRY_TIMEOUT {
                return Err(transient);
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
            from = self.progress(id).await?;
            if from < offset {
                return Err(BackendError::Other(format!(
                    "the store lost bytes before this part (it holds {from}, the part starts at {offset})"
                )));
            }
        }
        Ok(())
    }

    /// How much session `id` has stored, from a status request's 308.
    async fn progress(&self, id: &str) -> BackendResult<u64> {
        let request = self
            .call(Method::PUT, self.session_url(id))
            .header(reqwest::header::CONTENT_RANGE, "bytes */*")
            .body(Bytes::new());
        let response = self.send_once(request).await?.map_err(transport)?;
        match response.status().as_u16() {
            308 => persisted(&response),
            _ => Err(failure(response).await),
        }
    }
}

#[async_trait::async_trait]
impl Backend for GcsBackend {
    fn location(&self) -> String {
        format!("gs://{}/{}", self.bucket, self.prefix)
    }

    fn hint(&self) -> &'static str {
        HINT
    }

    fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn probe(&self) -> BackendResult<()> {
        let url = self.url(
            &["storage", "v1", "b", &self.bucket, "o"],
            &[("prefix", &self.prefix), ("maxResults", "1")],
        );
        self.send(|| self.call(Method::GET, url.clone()))
            .await
            .map(|_| ())
    }

    async fn put(&self, key: &str, body: Bytes, sha256: &str) -> BackendResult<()> {
        let sent = PartToken {
            len: body.len() as u64,
            crc: crc32c::crc32c(&body),
        };
        let (content_type, body) = related(key, &body, sha256);
        let body = Bytes::from(body);
        let url = self.upload_url(&[("uploadType", "multipart")]);
        let response = self
            .send(|| {
                self.call(Method::POST, url.clone())
                    .header(reqwest::header::CONTENT_TYPE, &content_type)
                    .body(body.clone())
            })
            .await?;
        // GCS refuses bytes that do not match the resource's CRC32C; this catches a store that
        // does not check. What it holds is not trusted by `trusted_sha256` either.
        check_stored(&json(response).await?, sent)
    }

    async fn begin(&self, key: &str, sha256: Option<&str>) -> BackendResult<String> {
        let url = self.upload_url(&[("uploadType", "resumable"), ("name", key)]);
        let body = Bytes::from(resource(key, sha256, None));
        let response = self
            .send(|| {
                self.call(Method::POST, url.clone())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/json; charset=UTF-8",
                    )
                    .header("X-Upload-Content-Type", "application/octet-stream")
                    .body(body.clone())
            })
            .await?;
        let id = session_id(&response)?;
        self.sessions.open(&id);
        Ok(id)
    }

    async fn part(
        &self,
        _key: &str,
        upload: &str,
        index: usize,
        body: Bytes,
    ) -> BackendResult<String> {
        let turn = self.sessions.turn(upload).ok_or(BackendError::NotFound)?;
        let mut watching = turn.subscribe();
        let now = *watching
            .wait_for(|t| *t == Turn::Part(index) || *t == Turn::Broken)
            .await
            .map_err(|_| BackendError::NotFound)?;
        if now == Turn::Broken {
            return Err(BackendError::Other(
                "an earlier part of the upload failed".into(),
            ));
        }
        let token = PartToken {
            len: body.len() as u64,
            crc: crc32c::crc32c(&body),
        };
        match self
            .chunk(upload, index as u64 * self.part_size, body)
            .await
        {
            Ok(()) => {
                turn.send_replace(Turn::Part(index + 1));
                Ok(token.to_string())
            }
            Err(e) => {
                turn.send_replace(Turn::Broken);
                Err(e)
            }
        }
    }

    async fn complete(&self, key: &str, upload: &str, parts: Vec<String>) -> BackendResult<()> {
        self.sessions.close(upload);
        let sent = PartToken::whole(&parts)?;
        let url = self.session_url(upload);
        // GCS checks the whole object against X-Goog-Hash before it finalizes it.
        let response = self
            .send(|| {
                self.call(Method::PUT, url.clone())
                    .header(
                        reqwest::header::CONTENT_RANGE,
                        format!("bytes */{}", sent.len),
                    )
                    .header("X-Goog-Hash", format!("crc32c={}", crc32c_text(sent.crc)))
                    .body(Bytes::new())
            })
            .await?;
        let object = json(response).await?;
        if let Err(e) = check_stored(&object, sent) {
            // Its metadata would vouch for bytes it does not hold: take it away.
            let generation = object["generation"].as_str().unwrap_or("0");
            let url = self.object_url(key, &[("ifGenerationMatch", generation)]);
            return match self.send(|| self.call(Method::DELETE, url.clone())).await {
                Ok(_) | Err(BackendError::NotFound) => Err(e),
                Err(d) => Err(BackendError::Other(format!(
                    "{e}; and it could not be deleted: {d}"
                ))),
            };
        }
        Ok(())
    }

    async fn abort(&self, _key: &str, upload: &str) -> BackendResult<Aborted> {
        self.sessions.close(upload);
        let url = self.session_url(upload);
        let response = self
            .send_once(self.call(Method::DELETE, url))
            .await?
            .map_err(transport)?;
        // GCS answers a cancelled session with 499; 404 and 410 when it no longer knows it.
        match response.status().as_u16() {
            499 | 200..=299 => Ok(Aborted::Discarded),
            404 | 410 => Err(BackendError::NotFound),
            _ => Err(failure(response).await),
        }
    }

    async fn stored_sha256(&self, key: &str) -> BackendResult<Option<String>> {
        let url = self.object_url(key, &[("fields", "metadata,crc32c")]);
        let response = match self.send(|| self.call(Method::GET, url.clone())).await {
            Ok(r) => r,
            Err(BackendError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(trusted_sha256(&json(response).await?))
    }

    async fn get(&self, key: &str) -> BackendResult<ByteStream> {
        let url = self.object_url(key, &[("alt", "media")]);
        let response = self.send(|| self.http.get(url.clone())).await?;
        Ok(response
            .bytes_stream()
            .map(|r| r.map_err(transport))
            .boxed())
    }

    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> BackendResult<ByteStream> {
        self.read(key, None, range).await
    }

    async fn list_prefixes(&self, prefix: &str) -> BackendResult<Vec<String>> {
        let mut prefixes = Vec::new();
        self.list_pages(prefix, true, |page| {
            prefixes.extend(
                page["prefixes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_str().map(str::to_owned)),
            );
            Ok(())
        })
        .await?;
        Ok(prefixes)
    }

    async fn list(&self, prefix: &str) -> BackendResult<Vec<Listed>> {
        self.objects(prefix, false).await
    }

    async fn list_level(&self, prefix: &str) -> BackendResult<Vec<Listed>> {
        self.objects(prefix, true).await
    }

    async fn keeps_versions(&self) -> BackendResult<bool> {
        let url = self.url(
            &["storage", "v1", "b", &self.bucket],
            &[("fields", "versioning")],
        );
        let bucket = json(self.send(|| self.call(Method::GET, url.clone())).await?).await?;
        if bucket["versioning"]["enabled"].as_bool() == Some(true) {
            return Err(BackendError::Other(
                "the bucket has Object Versioning enabled: a delete would keep the data as a noncurrent version, and custodian does not remove GCS generations; turn versioning off (`gcloud storage buckets update --no-versioning`) before a retention sweep".into(),
            ));
        }
        Ok(false)
    }

    fn copies(&self) -> bool {
        true
    }

    fn copies_whole(&self) -> bool {
        true
    }

    async fn copy(
        &self,
        source: &CopySource,
        key: &str,
        _sha256: &str,
        retention: Option<Retention>,
    ) -> BackendResult<Copied> {
        if retention.is_some() || source.etag.is_some() {
            return Err(BackendError::Other(
                "a GCS copy takes neither Object Lock retention nor a source entity tag".into(),
            ));
        }
        let url = self.rewrite_url(source, key);
        let body = Bytes::from(
            serde_json::json!({
                "contentType": "application/octet-stream",
                "metadata": { UNCHECKED_KEY: "true" },
            })
            .to_string(),
        );
        let (mut token, mut rewritten, mut stalls) = (None::<String>, 0u64, 0);
        let object = loop {
            let mut url = url.clone();
            if let Some(token) = &token {
                url.query_pairs_mut().append_pair("rewriteToken", token);
            }
            let response = self
                .send(|| {
                    self.call(Method::POST, url.clone())
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                })
                .await?;
            let answer = json(response).await?;
            if answer["done"].as_bool() == Some(true) {
                break answer["resource"].clone();
            }
            let now = int64(&answer["totalBytesRewritten"]).unwrap_or(0);
            stalls = if now > rewritten { 0 } else { stalls + 1 };
            rewritten = rewritten.max(now);
            token = answer["rewriteToken"]
                .as_str()
                .filter(|t| !t.is_empty() && stalls < REWRITE_STALLS)
                .map(str::to_owned);
            if token.is_none() {
                return Err(BackendError::Other(format!(
                    "the store's rewrite of {} stopped at {rewritten} bytes without finishing",
                    source.key
                )));
            }
        };
        let (Some(generation), Some(crc32c)) =
            (int64(&object["generation"]), object["crc32c"].as_str())
        else {
            return Err(BackendError::Other(
                "the store's rewrite returned no generation or CRC32C of the copy".into(),
            ));
        };
        // The generation pins the copy's read, seal and removal; the CRC32C is what the seal
        // records beside the SHA-256, as a put does.
        Ok(Copied::Unhashed(CopyVersion {
            tag: generation.to_string(),
            checksum: Some(crc32c.to_owned()),
        }))
    }

    async fn get_copy(
        &self,
        key: &str,
        version: &CopyVersion,
        range: std::ops::Range<u64>,
    ) -> BackendResult<ByteStream> {
        self.read(key, Some(&version.tag), range).await
    }

    async fn seal_copy(&self, key: &str, sha256: &str, version: &CopyVersion) -> BackendResult<()> {
        let url = self.object_url(key, &[("ifGenerationMatch", &version.tag)]);
        let body = Bytes::from(
            serde_json::json!({
                "metadata": {
                    SHA256_KEY: sha256,
                    CRC32C_KEY: version.checksum,
                    UNCHECKED_KEY: null,
                },
            })
            .to_string(),
        );
        let sealed = self
            .send(|| {
                self.call(Method::PATCH, url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await;
        match sealed {
            Ok(_) => Ok(()),
            Err(BackendError::Other(m)) if m.starts_with("HTTP 412") => Err(BackendError::NotFound),
            Err(e) => Err(e),
        }
    }

    async fn remove_copy(&self, key: &str, version: &CopyVersion) -> BackendResult<()> {
        // `generation` deletes that generation alone: not one written under the key since.
        self.delete_at(self.object_url(key, &[("generation", &version.tag)]))
            .await
    }

    async fn delete(&self, key: &str) -> BackendResult<()> {
        self.delete_at(self.object_url(key, &[])).await
    }

    async fn delete_many(
        &self,
        keys: &[String],
        _all_versions: bool,
    ) -> BackendResult<Vec<Result<(), String>>> {
        // The JSON API deletes one object a request: a few at once.
        let urls: Vec<Url> = keys.iter().map(|key| self.object_url(key, &[])).collect();
        Ok(futures::stream::iter(urls)
            .map(|url| async move { self.delete_at(url).await.map_err(|e| e.to_string()) })
            .buffered(DELETES_IN_FLIGHT)
            .collect()
            .await)
    }
}

/// Requests deleting objects in flight at once.
const DELETES_IN_FLIGHT: usize = 16;

impl GcsBackend {
    /// The objects under `prefix` (only one level below it when `delimited`).
    async fn objects(&self, prefix: &str, delimited: bool) -> BackendResult<Vec<Listed>> {
        let mut listed = Vec::new();
        self.list_pages(prefix, delimited, |page| {
            for item in page["items"].as_array().into_iter().flatten() {
                let (Some(key), Some(size)) = (
                    item["name"].as_str(),
                    item["size"].as_str().and_then(|s| s.parse().ok()),
                ) else {
                    return Err(BackendError::Other(
                        "the store listed an object without a name or size".into(),
                    ));
                };
                listed.push(Listed {
                    key: key.to_owned(),
                    size,
                    etag: item["etag"].as_str().unwrap_or_default().to_owned(),
                });
            }
            Ok(())
        })
        .await?;
        Ok(listed)
    }
}

impl GcsBackend {
    /// Lists under `prefix` (one level with `delimited`), handing each page's resource to
    /// `each`, following `nextPageToken`.
    async fn list_pages(
        &self,
        prefix: &str,
        delimited: bool,
        mut each: impl FnMut(&serde_json::Value) -> BackendResult<()>,
    ) -> BackendResult<()> {
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("prefix", prefix), ("maxResults", "1000")];
            if delimited {
                query.push(("delimiter", "/"));
            }
            if let Some(t) = &token {
                query.push(("pageToken", t));
            }
            let url = self.url(&["storage", "v1", "b", &self.bucket, "o"], &query);
            let page = json(self.send(|| self.call(Method::GET, url.clone())).await?).await?;
            each(&page)?;
            match page["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_int64_field_is_read_from_a_string_or_a_number_and_nothing_else() {
        let rewrite = serde_json::json!({
            "totalBytesRewritten": "5368709120",
            "objectSize": 5368709120u64,
            "generation": "-1",
            "rewriteToken": true,
        });
        assert_eq!(int64(&rewrite["totalBytesRewritten"]), Some(5 << 30));
        assert_eq!(int64(&rewrite["objectSize"]), Some(5 << 30));
        assert_eq!(int64(&rewrite["generation"]), None);
        assert_eq!(int64(&rewrite["rewriteToken"]), None);
        assert_eq!(int64(&rewrite["absent"]), None);
    }

    #[test]
    fn a_sessions_progress_is_read_from_its_range() {
        assert_eq!(stored_end(None).unwrap(), 0);
        assert_eq!(stored_end(Some("bytes=0-5242879")).unwrap(), 5_242_880);
        for bad in [
            "bytes=10-20",
            "bytes=0-",
            "0-5",
            "bytes=0-18446744073709551615",
        ] {
            let e = stored_end(Some(bad)).unwrap_err().to_string();
            assert!(e.contains("malformed Range"), "{bad}: {e}");
        }
    }

    #[test]
    fn only_the_upload_id_of_a_session_location_is_kept() {
        let id = upload_id(Some(
            "https://elsewhere.example/upload/storage/v1/b/x/o?uploadType=resumable&name=a%2Fb&upload_id=AbC-123",
        ))
        .unwrap();
        assert_eq!(id, "AbC-123");
        for bad in [
            None,
            Some("not a url"),
            Some("http://h/o?upload_id="),
            Some("http://h/o"),
        ] {
            assert!(upload_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn session_and_rewrite_urls_go_to_the_endpoint_with_every_name_encoded() {
        let backend = GcsBackend {
            http: reqwest::Client::new(),
            base: Url::parse("http://127.0.0.1:4443/").unwrap(),
            bucket: "archive".into(),
            prefix: String::new(),
            credentials: None,
            request_timeout: Duration::from_secs(1),
            part_size: 5 << 20,
            sessions: Sessions::default(),
        };
        let source = CopySource {
            bucket: "recordings".into(),
            key: "acme/2026/01/01/c 1/call.wav".into(),
            etag: None,
        };
        assert_eq!(
            backend
                .rewrite_url(&source, "exports/acme/a?b.wav")
                .as_str(),
            "http://127.0.0.1:4443/storage/v1/b/recordings/o/acme%2F2026%2F01%2F01%2Fc%201%2Fcall.wav/rewriteTo/b/archive/o/exports%2Facme%2Fa%3Fb.wav"
        );
        assert_eq!(
            backend.session_url("a&b=c").as_str(),
            "http://127.0.0.1:4443/upload/storage/v1/b/archive/o?uploadType=resumable&upload_id=a%26b%3Dc"
        );
        assert_eq!(
            backend
                .object_url("exports/a b.wav", &[("alt", "media")])
                .as_str(),
            "http://127.0.0.1:4443/storage/v1/b/archive/o/exports%2Fa%20b.wav?alt=media"
        );
    }

    #[test]
    fn a_small_object_is_one_related_body_with_its_sha256_in_the_metadata() {
        let sha = "ab".repeat(32);
        let (content_type, body) = related("exports/k.wav", b"RIFF", &sha);
        assert_eq!(
            content_type,
            format!("multipart/related; boundary=custodian-{sha}")
        );
        let body = String::from_utf8(body).unwrap();
        let parts: Vec<&str> = body.split(&format!("--custodian-{sha}")).collect();
        assert_eq!(parts.len(), 4, "{body}");
        let json = parts[1].split("\r\n\r\n").nth(1).unwrap().trim_end();
        let resource: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(resource["name"], "exports/k.wav");
        assert_eq!(resource["metadata"]["sha256"], sha);
        let crc = crc32c_text(crc32c::crc32c(b"RIFF"));
        assert_eq!(
            (&resource["crc32c"], &resource["metadata"]["crc32c"]),
            (&crc.clone().into(), &crc.into())
        );
        assert!(parts[2].ends_with("\r\n\r\nRIFF\r\n"), "{body}");
        assert_eq!(parts[3], "--\r\n");
    }

    #[test]
    fn parts_tokens_combine_into_the_whole_objects_length_and_crc32c() {
        let parts: Vec<String> = [&b"RIFF----"[..], b"data", b"!"]
            .iter()
            .map(|p| {
                PartToken {
                    len: p.len() as u64,
                    crc: crc32c::crc32c(p),
                }
                .to_string()
            })
            .collect();
        assert_eq!(
            PartToken::whole(&parts).unwrap(),
            PartToken {
                len: 13,
                crc: crc32c::crc32c(b"RIFF----data!")
            }
        );
        for bad in ["12", "x:1", "1:x", "1:99999999999"] {
            assert!(PartToken::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_sha256_is_trusted_only_when_the_stores_crc32c_vouches_for_it() {
        let sha = "AB".repeat(32);
        let object = |crc: Option<&str>, claimed: Option<&str>| {
            let mut o = serde_json::json!({ "metadata": { "sha256": sha } });
            if let Some(c) = crc {
                o["crc32c"] = c.into();
            }
            if let Some(c) = claimed {
                o["metadata"]["crc32c"] = c.into();
            }
            o
        };
        let lower = Some("ab".repeat(32));
        assert_eq!(
            trusted_sha256(&object(Some("AAAAAQ=="), Some("AAAAAQ=="))),
            lower
        );
        assert_eq!(
            trusted_sha256(&object(Some("AAAAAg=="), Some("AAAAAQ=="))),
            None
        );
        assert_eq!(trusted_sha256(&object(None, Some("AAAAAQ=="))), None);
        // Uploaded in parts: the metadata is all there is.
        assert_eq!(trusted_sha256(&object(Some("AAAAAg=="), None)), lower);
        let short = serde_json::json!({ "metadata": { "sha256": "abc" } });
        assert_eq!(trusted_sha256(&short), None);
    }

    #[test]
    fn a_stored_object_must_have_the_size_and_crc32c_sent() {
        let sent = PartToken {
            len: 4,
            crc: crc32c::crc32c(b"RIFF"),
        };
        let stored =
            |size: &str, crc: u32| serde_json::json!({ "size": size, "crc32c": crc32c_text(crc) });
        assert!(check_stored(&stored("4", sent.crc), sent).is_ok());
        let e = check_stored(&stored("4", 7), sent).unwrap_err().to_string();
        assert!(e.contains("other bytes than were sent"), "{e}");
        assert!(check_stored(&stored("5", sent.crc), sent).is_err());
    }

    #[test]
    fn what_a_server_says_is_its_message_short_and_without_control_characters() {
        let json = r#"{"error": {"code": 403, "message": "no access to\u001b[2J bucket"}}"#;
        assert_eq!(server_said(json), "no access to [2J bucket");
        assert_eq!(server_said(" plain\ntext "), "plain text");
        assert_eq!(server_said(&"x".repeat(1000)).len(), ERROR_BODY_LIMIT);
    }
}
