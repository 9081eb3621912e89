//! Copies inside one Azure storage account with Copy Blob, for a repository and a target in
//! the same account (docs/operations.md, "Server-side copy"), and lists a container's blobs.
//! object_store's own copy takes the source's metadata and cannot set the copy's, and its
//! listing fails over one blob name it cannot parse, so these requests are built here:
//! authorized through object_store's credential chain and signer, sent over the reqwest it
//! builds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::azure::{AzureAuthorizer, AzureCredential, MicrosoftAzure};
use object_store::client::{HttpRequest, HttpRequestBody};
use reqwest::header::{CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Response, StatusCode, Url};

use super::remote::{BackendError, BackendResult, CopySource, Listed};

/// Metadata a copy carries until it has been read back. Any metadata header replaces what the
/// source carries, so a copy never holds a `sha256` it was not checked against, not even when
/// the process is killed before the check.
const UNCHECKED: &str = "x-ms-meta-custodian_unchecked";

/// The first wait before asking again about a copy the store has not finished, doubled up to
/// `POLL_MAX`; a copy whose progress stands still for `STALLED` is aborted.
const POLL_FIRST: Duration = Duration::from_millis(100);
const POLL_MAX: Duration = Duration::from_secs(5);
const STALLED: Duration = Duration::from_secs(300);

/// Tries of a request the store answered with a 5xx or that lost its connection, the waits
/// between them doubling from `RETRY_FIRST` (each request here may be sent again: a Copy Blob
/// sent twice copies the same source to the same blob).
const TRIES: u32 = 4;
const RETRY_FIRST: Duration = Duration::from_millis(200);

/// What Copy Blob says of a copy (`x-ms-copy-status`).
#[derive(Debug, PartialEq, Eq)]
enum CopyState {
    Success,
    /// Not finished; the progress it gives (`x-ms-copy-progress`, "copied/total").
    Pending(String),
    /// Failed or aborted, with the store's description.
    Failed(String),
}

impl CopyState {
    fn of(headers: &HeaderMap) -> CopyState {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        match header("x-ms-copy-status").as_str() {
            "success" => CopyState::Success,
            "pending" => CopyState::Pending(header("x-ms-copy-progress")),
            "" => CopyState::Failed("the store did not say how the copy went".into()),
            other => CopyState::Failed(format!(
                "the store's copy ended `{other}`: {}",
                header("x-ms-copy-status-description")
            )),
        }
    }
}

/// The `ETag` a response names.
fn etag_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Headers that make a request apply only to the blob whose entity tag is `etag`.
fn if_match(etag: &str) -> BackendResult<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::IF_MATCH,
        HeaderValue::from_str(etag).map_err(|e| BackendError::Other(e.to_string()))?,
    );
    Ok(headers)
}

/// Copy Blob for one target container.
pub(super) struct AzureCopier {
    store: Arc<MicrosoftAzure>,
    http: reqwest::Client,
    account: String,
    /// The account's blob service: the configured endpoint, or
    /// `https://ACCOUNT.blob.core.windows.net`.
    service: Url,
    /// The container the target writes to.
    container: String,
}

impl AzureCopier {
    pub(super) fn new(
        store: Arc<MicrosoftAzure>,
        account: String,
        service: &str,
        container: &str,
        timeout: Duration,
    ) -> Result<AzureCopier, String> {
        let service = Url::parse(service)
            .map_err(|e| format!("the endpoint `{service}` is not a URL: {e}"))?;
        if service.cannot_be_a_base() {
            return Err(format!(
                "the endpoint `{service}` is not a URL objects live under"
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(AzureCopier {
            store,
            http,
            account,
            service,
            container: container.to_owned(),
        })
    }

    fn url(&self, container: &str, key: &str) -> Url {
        let mut url = self.service.clone();
        url.path_segments_mut()
            .expect("checked to be a base")
            .pop_if_empty()
            .push(container)
            .extend(key.split('/'));
        url
    }

    async fn credential(&self) -> BackendResult<Arc<AzureCredential>> {
        self.store
            .credentials()
            .get_credential()
            .await
            .map_err(|e| BackendError::Other(e.to_string()))
    }

    /// Sends a request without a body to `url`, authorized by `credential`; one the store
    /// answers with a 5xx, or that loses its connection, is sent again, up to `TRIES` times.
    async fn send(
        &self,
        credential: &AzureCredential,
        method: Method,
        url: &Url,
        headers: HeaderMap,
    ) -> BackendResult<Response> {
        let mut wait = RETRY_FIRST;
        for _ in 1..TRIES {
            match self
                .send_once(credential, method.clone(), url, headers.clone())
                .await
            {
                Ok(r) if !r.status().is_server_error() => return Ok(r),
                Ok(r) => tracing::debug!("the store answered {}; trying again", r.status()),
                Err(e) => tracing::debug!("{e}; trying again"),
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        self.send_once(credential, method, url, headers).await
    }

    async fn send_once(
        &self,
        credential: &AzureCredential,
        method: Method,
        url: &Url,
        mut headers: HeaderMap,
    ) -> BackendResult<Response> {
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let mut request = HttpRequest::new(HttpRequestBody::empty());
        *request.method_mut() = method;
        *request.uri_mut() = url
            .as_str()
            .parse()
            .map_err(|e| BackendError::Other(format!("{e}")))?;
        *request.headers_mut() = headers;
        AzureAuthorizer::new(credential, &self.account)
            .try_authorize(&mut request)
            .map_err(|e| BackendError::Other(e.to_string()))?;
        let (parts, _) = request.into_parts();
        self.http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .send()
            .await
            .map_err(|e| BackendError::Other(e.without_url().to_string()))
    }

    /// Copies `source` (a full key of another container, or this one) to the full key `key`
    /// of the target's container, waits until the store has finished, and returns the copy's
    /// entity tag. The copy carries none of the source's metadata; `seal` gives it its SHA-256
    /// once it has been checked. A copy the store fails, or whose progress stands still, is
    /// removed.
    pub(super) async fn copy(&self, source: &CopySource, key: &str) -> BackendResult<String> {
        let credential = self.credential().await?;
        let mut from = self.url(&source.bucket, &source.key);
        if let AzureCredential::SASToken(pairs) = credential.as_ref() {
            from.query_pairs_mut().extend_pairs(pairs);
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-ms-copy-source"),
            HeaderValue::from_str(from.as_str()).map_err(|e| BackendError::Other(e.to_string()))?,
        );
        headers.insert(
            HeaderName::from_static(UNCHECKED),
            HeaderValue::from_static("true"),
        );
        if let Some(etag) = &source.etag {
            headers.insert(
                HeaderName::from_static("x-ms-source-if-match"),
                HeaderValue::from_str(etag).map_err(|e| BackendError::Other(e.to_string()))?,
            );
        }
        let to = self.url(&self.container, key);
        let response = self.send(&credential, Method::PUT, &to, headers).await?;
        match response.status() {
            StatusCode::ACCEPTED | StatusCode::CREATED => {}
            StatusCode::NOT_FOUND if source_missing(response.headers()) => {
                return Err(BackendError::NotFound);
            }
            _ => return Err(refused(response).await),
        }
        let mut state = CopyState::of(response.headers());
        let mut etag = etag_of(response.headers());
        let (mut wait, mut moved) = (POLL_FIRST, Instant::now());
        while let CopyState::Pending(progress) = &state {
            if moved.elapsed() > STALLED {
                self.discard(&credential, &to).await;
                return Err(BackendError::Other(format!(
                    "the store's copy made no progress for {} s (at {progress}); it was aborted",
                    STALLED.as_secs()
                )));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(POLL_MAX);
            let response = self
                .send(&credential, Method::HEAD, &to, HeaderMap::new())
                .await?;
            if !response.status().is_success() {
                return Err(refused(response).await);
            }
            let next = CopyState::of(response.headers());
            etag = etag_of(response.headers());
            if next != state {
                moved = Instant::now();
            }
            state = next;
        }
        match state {
            CopyState::Success => {
                etag.ok_or_else(|| BackendError::Other("the store's copy has no entity tag".into()))
            }
            CopyState::Failed(why) | CopyState::Pending(why) => {
                self.discard(&credential, &to).await;
                Err(BackendError::Other(why))
            }
        }
    }

    /// Aborts a copy under way at `url` and removes what it left, as far as the store allows.
    async fn discard(&self, credential: &AzureCredential, url: &Url) {
        if let Ok(r) = self
            .send(credential, Method::HEAD, url, HeaderMap::new())
            .await
            && let Some(id) = r.headers().get("x-ms-copy-id").cloned()
        {
            let mut abort = url.clone();
            abort
                .query_pairs_mut()
                .append_pair("comp", "copy")
                .append_pair("copyid", id.to_str().unwrap_or_default());
            let mut headers = HeaderMap::new();
            headers.insert(
                HeaderName::from_static("x-ms-copy-action"),
                HeaderValue::from_static("abort"),
            );
            let _ = self.send(credential, Method::PUT, &abort, headers).await;
        }
        let _ = self
            .send(credential, Method::DELETE, url, HeaderMap::new())
            .await;
    }

    /// Gives the copy with entity tag `etag` at the full key `key` its SHA-256, once read back
    /// and found to match: Set Blob Metadata replaces the unchecked mark. `NotFound` when the
    /// key holds another blob now.
    pub(super) async fn seal(&self, key: &str, sha256: &str, etag: &str) -> BackendResult<()> {
        let credential = self.credential().await?;
        let mut url = self.url(&self.container, key);
        url.query_pairs_mut().append_pair("comp", "metadata");
        let mut headers = if_match(etag)?;
        headers.insert(
            HeaderName::from_static("x-ms-meta-sha256"),
            HeaderValue::from_str(sha256).map_err(|e| BackendError::Other(e.to_string()))?,
        );
        let response = self.send(&credential, Method::PUT, &url, headers).await?;
        match response.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND | StatusCode::PRECONDITION_FAILED => Err(BackendError::NotFound),
            _ => Err(refused(response).await),
        }
    }

    /// Removes the copy with entity tag `etag` at the full key `key`; a blob written under the
    /// key since is left.
    pub(super) async fn remove(&self, key: &str, etag: &str) -> BackendResult<()> {
        let credential = self.credential().await?;
        let url = self.url(&self.container, key);
        let response = self
            .send(&credential, Method::DELETE, &url, if_match(etag)?)
            .await?;
        match response.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND | StatusCode::PRECONDITION_FAILED => Ok(()),
            _ => Err(refused(response).await),
        }
    }
    /// The blobs of the container whose names start with the full prefix `prefix` and, with
    /// `level`, the names one level below it that more blobs share (each ending in `/`), as
    /// List Blobs gives them, page after page. Names come as the store has them, whatever
    /// they hold: object_store's listing refuses a whole page over one name that is not a
    /// path it accepts (a `..` segment, say), which would hide every conversation of a day
    /// behind one stray blob; the index judges each name on its own.
    pub(super) async fn list(
        &self,
        prefix: &str,
        level: bool,
    ) -> BackendResult<(Vec<Listed>, Vec<String>)> {
        let credential = self.credential().await?;
        let (mut blobs, mut prefixes) = (Vec::new(), Vec::new());
        let mut marker: Option<String> = None;
        loop {
            let mut url = self.service.clone();
            url.path_segments_mut()
                .expect("checked to be a base")
                .pop_if_empty()
                .push(&self.container);
            {
                let mut query = url.query_pairs_mut();
                query
                    .append_pair("restype", "container")
                    .append_pair("comp", "list")
                    .append_pair("prefix", prefix);
                if level {
                    query.append_pair("delimiter", "/");
                }
                if let Some(m) = &marker {
                    query.append_pair("marker", m);
                }
            }
            let response = self
                .send(&credential, Method::GET, &url, HeaderMap::new())
                .await?;
            if !response.status().is_success() {
                return Err(refused(response).await);
            }
            let body = response
                .text()
                .await
                .map_err(|e| BackendError::Other(e.without_url().to_string()))?;
            let page: ListPage = quick_xml::de::from_str(&body)
                .map_err(|e| BackendError::Other(format!("a listing the store sent: {e}")))?;
            for entry in page.blobs.entries {
                match entry {
                    ListEntry::Blob(b) => blobs.push(Listed {
                        key: b.name,
                        size: b.properties.content_length,
                        etag: b.properties.etag.trim_matches('"').to_owned(),
                    }),
                    ListEntry::BlobPrefix(p) => prefixes.push(p.name),
                }
            }
            match page.next_marker.filter(|m| !m.is_empty()) {
                Some(m) => marker = Some(m),
                None => return Ok((blobs, prefixes)),
            }
        }
    }
}

/// One page of a List Blobs answer (what of it is read).
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListPage {
    #[serde(default)]
    blobs: ListBlobs,
    #[serde(default)]
    next_marker: Option<String>,
}

#[derive(Default, serde::Deserialize)]
struct ListBlobs {
    #[serde(default, rename = "$value")]
    entries: Vec<ListEntry>,
}

#[derive(serde::Deserialize)]
enum ListEntry {
    Blob(ListedBlob),
    BlobPrefix(ListedPrefix),
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedBlob {
    name: String,
    properties: BlobProperties,
}

#[derive(serde::Deserialize)]
struct BlobProperties {
    #[serde(rename = "Content-Length")]
    content_length: u64,
    #[serde(rename = "Etag")]
    etag: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedPrefix {
    name: String,
}

/// Whether a 404 to Copy Blob means its source is not there (rather than the container).
fn source_missing(headers: &HeaderMap) -> bool {
    matches!(
        headers.get("x-ms-error-code").and_then(|v| v.to_str().ok()),
        Some("CannotVerifyCopySource" | "BlobNotFound")
    )
}

/// The store's refusal: its status and error code (never the request's URL, which may carry a
/// shared access signature).
async fn refused(response: Response) -> BackendError {
    let status = response.status();
    let code = response
        .headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no error code")
        .to_owned();
    BackendError::Other(format!("the store answered {status} ({code})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_copy_state_is_read_from_the_store_headers() {
        assert_eq!(
            CopyState::of(&headers(&[("x-ms-copy-status", "success")])),
            CopyState::Success
        );
        assert_eq!(
            CopyState::of(&headers(&[
                ("x-ms-copy-status", "pending"),
                ("x-ms-copy-progress", "10/200")
            ])),
            CopyState::Pending("10/200".into())
        );
        let failed = CopyState::of(&headers(&[
            ("x-ms-copy-status", "failed"),
            ("x-ms-copy-status-description", "500 InternalError"),
        ]));
        assert_eq!(
            failed,
            CopyState::Failed("the store's copy ended `failed`: 500 InternalError".into())
        );
        assert!(matches!(
            CopyState::of(&HeaderMap::new()),
            CopyState::Failed(_)
        ));
    }

    fn copier(service: &str) -> AzureCopier {
        let store = object_store::azure::MicrosoftAzureBuilder::new()
            .with_account("acct")
            .with_access_key("a2V5")
            .with_container_name("archive")
            .build()
            .unwrap();
        AzureCopier::new(
            Arc::new(store),
            "acct".into(),
            service,
            "archive",
            Duration::from_secs(5),
        )
        .unwrap()
    }

    /// Answers the requests it accepts on a loopback port with `answers` in turn; returns its
    /// address and the request lines it saw.
    fn answering(answers: Vec<&'static str>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = format!("http://{}/acct", listener.local_addr().unwrap());
        let seen = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for answer in answers {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                seen.push(line.trim_end().to_owned());
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    if header.trim_end().is_empty() {
                        break;
                    }
                }
                let mut stream = stream;
                write!(
                    stream,
                    "{answer}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
                .unwrap();
            }
            seen
        });
        (at, seen)
    }

    /// The object `key` of the repository's container.
    fn recording(key: &str) -> CopySource {
        CopySource {
            bucket: "recordings".into(),
            key: key.into(),
            etag: None,
        }
    }

    #[tokio::test]
    async fn a_copy_the_store_answers_with_a_5xx_is_sent_again() {
        let (at, seen) = answering(vec![
            "HTTP/1.1 503 Server Busy\r\nx-ms-error-code: ServerBusy",
            "HTTP/1.1 202 Accepted\r\nx-ms-copy-status: success\r\nETag: \"0x8DC\"",
        ]);
        let source = recording("acme/a.wav");
        let etag = copier(&at).copy(&source, "exports/a.wav").await.unwrap();
        assert_eq!(
            etag, "\"0x8DC\"",
            "the copy's entity tag, as the store named it"
        );
        let seen = seen.join().unwrap();
        assert_eq!(
            seen, ["PUT /acct/archive/exports/a.wav HTTP/1.1"; 2],
            "the same Copy Blob twice"
        );
    }

    #[tokio::test]
    async fn a_pending_copy_is_named_by_the_entity_tag_it_has_once_finished() {
        let (at, seen) = answering(vec![
            "HTTP/1.1 202 Accepted\r\nx-ms-copy-status: pending\r\nx-ms-copy-progress: 0/9\r\nETag: \"0x1\"",
            "HTTP/1.1 200 OK\r\nx-ms-copy-status: success\r\nETag: \"0x2\"",
        ]);
        let etag = copier(&at)
            .copy(&recording("acme/a.wav"), "exports/a.wav")
            .await
            .unwrap();
        assert_eq!(
            etag, "\"0x2\"",
            "the finished copy's, not the pending one's"
        );
        assert_eq!(
            seen.join().unwrap(),
            [
                "PUT /acct/archive/exports/a.wav HTTP/1.1",
                "HEAD /acct/archive/exports/a.wav HTTP/1.1"
            ]
        );
    }

    #[tokio::test]
    async fn a_source_that_is_not_there_is_told_from_other_refusals() {
        let (at, _) = answering(vec![
            "HTTP/1.1 404 Not Found\r\nx-ms-error-code: CannotVerifyCopySource",
            "HTTP/1.1 404 Not Found\r\nx-ms-error-code: ContainerNotFound",
        ]);
        let source = recording("gone.wav");
        let c = copier(&at);
        assert!(matches!(
            c.copy(&source, "x.wav").await,
            Err(BackendError::NotFound)
        ));
        match c.copy(&source, "x.wav").await {
            Err(BackendError::Other(m)) => assert!(m.contains("ContainerNotFound"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_list_blobs_page_gives_its_blobs_prefixes_and_marker_whatever_the_names() {
        let page: ListPage = quick_xml::de::from_str(
            r#"<?xml version="1.0" encoding="utf-8"?>
            <EnumerationResults ServiceEndpoint="http://127.0.0.1/" ContainerName="c">
              <Prefix>site/acme/</Prefix><Delimiter>/</Delimiter>
              <Blobs>
                <BlobPrefix><Name>site/acme/../</Name></BlobPrefix>
                <Blob><Name>site/acme/a.json</Name><Properties>
                  <Creation-Time>Tue, 01 Dec 2026 06:00:00 GMT</Creation-Time>
                  <Content-Length>12</Content-Length><Etag>"0x8D"</Etag>
                  <BlobType>BlockBlob</BlobType></Properties><Metadata /></Blob>
                <BlobPrefix><Name>site/acme/c1/</Name></BlobPrefix>
              </Blobs>
              <NextMarker>m2</NextMarker>
            </EnumerationResults>"#,
        )
        .unwrap();
        let mut blobs = Vec::new();
        let mut prefixes = Vec::new();
        for entry in page.blobs.entries {
            match entry {
                ListEntry::Blob(b) => {
                    blobs.push((b.name, b.properties.content_length, b.properties.etag))
                }
                ListEntry::BlobPrefix(p) => prefixes.push(p.name),
            }
        }
        assert_eq!(
            blobs,
            [("site/acme/a.json".to_owned(), 12, "\"0x8D\"".to_owned())]
        );
        assert_eq!(prefixes, ["site/acme/../", "site/acme/c1/"]);
        assert_eq!(page.next_marker.as_deref(), Some("m2"));
        let last: ListPage = quick_xml::de::from_str(
            "<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>",
        )
        .unwrap();
        assert!(last.blobs.entries.is_empty());
        assert!(last.next_marker.unwrap_or_default().is_empty());
    }

    #[test]
    fn keys_become_path_segments_of_the_service() {
        let c = copier("http://127.0.0.1:10000/devstoreaccount1/");
        assert_eq!(
            c.url("recordings", "p/a b/#1.wav").as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/recordings/p/a%20b/%231.wav"
        );
        let c = copier("https://acct.blob.core.windows.net");
        assert_eq!(
            c.url("archive", "x.wav").as_str(),
            "https://acct.blob.core.windows.net/archive/x.wav"
        );
    }
}
