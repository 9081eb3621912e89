//! The web portal (`serve --listen ADDR`): server-rendered pages over axum, each request
//! authenticated as an account (session cookie), an API token, or a trusted proxy's header,
//! and run as that user (`app::Acting::As`) so the roles file applies exactly as on the
//! command line (docs/operations.md, "The web portal").
//!
//! # Extending the router
//!
//! [`router`] merges one route function per area; another area adds its own function
//! returning `Router<AppState>` and merges it there. A handler:
//!
//! - takes [`AppState`] (`State<AppState>`) and [`auth::Authed`], the extractor that
//!   authenticates the request (a request with no credentials is sent to `/login`; a bad
//!   token or a header from an untrusted peer is refused);
//! - does its work with [`AppState::run_as`], which checks the permissions it names against
//!   the roles file for that user and then runs the closure on a blocking thread (the catalog
//!   is synchronous) with a `Loaded` acting as the user;
//! - checks [`auth::Authed::check_csrf`] first on every POST from a form;
//! - returns `Result<_, PageError>`: an error is a page with the status it calls for (403 for
//!   a missing permission, 404 for an unknown id).
//!
//! The SQLite catalog serves concurrent requests from its pool of reader connections (one per
//! blocking task that needs one) beside its one writer; PostgreSQL from its connection pool.

pub mod auth;
mod limit;
mod pages;
pub mod verified;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;

use crate::app::Loaded;
use crate::app::access::AccessError;
use crate::app::accounts::AccountError;
use crate::app::serve::{RunNowError, Runner};
use crate::policy::roles::{Permission, RolesError};

/// Password checks at once: each argon2id check holds 19 MiB, so a burst of logins cannot
/// take the machine's memory.
const PASSWORD_CHECKS: usize = 4;

/// How long requests in flight get to finish when serve stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Where and how the portal listens (`serve --listen`, `--tls-cert`, `--tls-key`,
/// `--insecure-http`, `--trusted-header`, `--trusted-proxy`).
#[derive(Clone, Debug)]
pub struct WebOptions {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// Serve plain HTTP on an address other than loopback.
    pub insecure_http: bool,
    pub trusted_header: Option<TrustedHeader>,
}

/// The certificate chain and private key, PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Single sign-on through a proxy: the header naming the authenticated user, believed only
/// from the proxies' addresses.
#[derive(Clone, Debug)]
pub struct TrustedHeader {
    pub name: axum::http::HeaderName,
    pub proxies: Vec<IpAddr>,
}

/// Why the portal could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(
        "refusing to serve plain HTTP on {0}, which is not a loopback address: passwords and session cookies would cross the network in clear; give --tls-cert and --tls-key, listen on 127.0.0.1, or force it with --insecure-http"
    )]
    PlainHttp(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS certificate {cert} or key {key}: {message}")]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("cannot start the web portal's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot make the web portal's CSRF key")]
    Key(#[source] AccountError),
}

impl WebOptions {
    /// Checks the options without I/O: plain HTTP only on loopback unless forced.
    pub fn validate(&self) -> Result<(), WebError> {
        if self.tls.is_none() && !self.listen.ip().is_loopback() && !self.insecure_http {
            return Err(WebError::PlainHttp(self.listen));
        }
        Ok(())
    }
}

/// What every handler shares: the config and catalog, serve's runner of runs on demand, and
/// the portal's settings and login throttle. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

struct Shared {
    loaded: Loaded,
    /// Where a run asked for from the portal goes: serve's loop, which keeps one run per
    /// policy for scheduled and asked-for runs alike.
    runner: Runner,
    /// Cookies carry `Secure` (the portal is served over TLS).
    secure_cookies: bool,
    trusted_header: Option<TrustedHeader>,
    logins: limit::LoginLimiter,
    /// Password checks allowed at once (each argon2id check holds its memory cost).
    password_checks: tokio::sync::Semaphore,
    /// A random key of this process: CSRF tokens of trusted-header users are derived from it.
    csrf_key: [u8; 32],
    /// The audit trail's last verification, shown until a user asks for another.
    verifications: verified::Verifications,
}

impl AppState {
    /// The state of a portal over `loaded` asking `runner` for runs on demand, served over TLS
    /// when `tls`.
    pub fn new(
        loaded: Loaded,
        runner: Runner,
        tls: bool,
        trusted_header: Option<TrustedHeader>,
    ) -> Result<AppState, AccountError> {
        let key = crate::app::accounts::new_secret()?;
        let mut csrf_key = [0u8; 32];
        hex::decode_to_slice(key, &mut csrf_key).expect("64 hex digits");
        Ok(AppState(Arc::new(Shared {
            loaded,
            runner,
            secure_cookies: tls,
            trusted_header,
            logins: limit::LoginLimiter::default(),
            password_checks: tokio::sync::Semaphore::new(PASSWORD_CHECKS),
            csrf_key,
            verifications: verified::Verifications::default(),
        })))
    }

    /// The config and catalog, acting as the process (for what needs no user: login).
    fn loaded(&self) -> &Loaded {
        &self.0.loaded
    }

    /// A run of `policy` now, asked for by `who`: serve checks JOBS_RUN (and, for the lifecycle
    /// sweep, ARTIFACTS_LIFECYCLE_POLICY_RUN) against the roles file and starts it as it starts
    /// a scheduled one. Logged with the user, as the socket logs its requests.
    pub async fn run_now(
        &self,
        who: &auth::Authed,
        policy: String,
    ) -> Result<Result<crate::app::serve::Started, RunNowError>, PageError> {
        tracing::info!("web portal: {} asks run {policy:?}", who.actor.user);
        let runner = self.0.runner.clone();
        let actor = who.actor.clone();
        self.blocking(move |l| runner.run_now(&l.acting_as(actor), &policy))
            .await
    }

    /// Runs `f` on a blocking thread with the config and catalog, as the process: only for
    /// authentication itself.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Loaded) -> T + Send + 'static,
    ) -> Result<T, PageError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || f(state.loaded()))
            .await
            .map_err(|e| PageError::Internal(format!("a request's task failed: {e}")))
    }

    /// Checks that `who` holds every one of `permissions` in the roles file, then runs `f` on
    /// a blocking thread with the config and catalog acting as `who`.
    pub async fn run_as<T, E>(
        &self,
        who: &auth::Authed,
        permissions: &[Permission],
        f: impl FnOnce(&Loaded) -> Result<T, E> + Send + 'static,
    ) -> Result<T, PageError>
    where
        T: Send + 'static,
        E: Into<PageError> + Send + 'static,
    {
        let actor = who.actor.clone();
        let permissions = permissions.to_vec();
        self.blocking(move |l| {
            let as_user = l.acting_as(actor);
            crate::app::access::authorize(&as_user, &permissions)?;
            f(&as_user).map_err(Into::into)
        })
        .await?
    }
}

/// The portal's routes over `state`: each area's routes merged, the JSON API's and metrics'
/// among them (which read `sources`), a 404 page for any other path, and the security headers
/// on every response.
pub fn router(state: AppState, sources: crate::service::metrics::Sources) -> Router {
    Router::new()
        .merge(auth::routes())
        .merge(pages::routes())
        .merge(crate::service::api::routes())
        .merge(crate::service::metrics::routes())
        .fallback(|| async { PageError::NotFound("no such page".into()) })
        .layer(axum::Extension(sources))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// What the pages need and no more: no script at all, the inline style sheet, forms posting
/// only here, no framing (clickjacking), and nothing cached (pages show what the user may see).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the headers that keep a page from running script, being framed or cached, even if a
/// page held markup it should not.
async fn security_headers(mut response: Response) -> Response {
    use axum::http::{HeaderValue, header};
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    response
}

/// An error a request ends in, shown as a page with its status.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// Credentials that do not authenticate (a bad API token).
    #[error("{0}")]
    Unauthorized(String),
    /// The user lacks a permission the request needs.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with what is going on (a run of the policy already running).
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong (a bad parameter, a refused change).
    #[error("{0}")]
    BadRequest(String),
    /// The service cannot take the request now (serve is stopping).
    #[error("{0}")]
    Unavailable(String),
    /// Too many failed logins; retry after this many seconds.
    #[error("too many failed logins; try again in {0} seconds")]
    TooManyLogins(u64),
    /// Something on the server's side; logged, and shown without detail.
    #[error("{0}")]
    Internal(String),
}

impl PageError {
    fn status(&self) -> StatusCode {
        match self {
            PageError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Conflict(_) => StatusCode::CONFLICT,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            PageError::TooManyLogins(_) => StatusCode::TOO_MANY_REQUESTS,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.status();
        let shown = match &self {
            PageError::Internal(detail) => {
                tracing::error!("web request failed: {detail}");
                "the server could not answer this request; its log says why".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = (status, pages::error_page(status, &shown)).into_response();
        if let PageError::TooManyLogins(seconds) = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

impl From<AccessError> for PageError {
    fn from(e: AccessError) -> PageError {
        match e {
            AccessError::Roles(denied @ RolesError::Denied { .. }) => {
                PageError::Forbidden(denied.to_string())
            }
            no_roles @ AccessError::NoRoles(_) => PageError::Forbidden(no_roles.to_string()),
            other => PageError::Internal(other.to_string()),
        }
    }
}

impl From<RunNowError> for PageError {
    fn from(e: RunNowError) -> PageError {
        match e {
            RunNowError::Access(e) => e.into(),
            e @ RunNowError::NoSuchPolicy { .. } => PageError::NotFound(e.to_string()),
            e @ (RunNowError::AlreadyRunning { .. } | RunNowError::AlreadyWaiting(_)) => {
                PageError::Conflict(e.to_string())
            }
            e @ RunNowError::Stopping => PageError::Unavailable(e.to_string()),
            e @ RunNowError::NotStarted(_) => PageError::Internal(e.to_string()),
        }
    }
}

impl From<AccountError> for PageError {
    fn from(e: AccountError) -> PageError {
        PageError::Internal(e.to_string())
    }
}

/// The portal, listening: stop it with [`Portal::stop`].
pub struct Portal {
    runtime: tokio::runtime::Runtime,
    handle: Handle<SocketAddr>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    addr: SocketAddr,
    tls: bool,
}

/// Binds `options.listen` and starts serving `loaded` on a runtime of its own, asking
/// `runner` for runs on demand. A bind or TLS failure is returned before anything is served.
pub fn start(
    loaded: Loaded,
    options: &WebOptions,
    scheduler: Arc<crate::app::serve::SchedulerStatus>,
    runner: Runner,
) -> Result<Portal, WebError> {
    options.validate()?;
    let tls = options.tls.as_ref().map(tls_config).transpose()?;
    let listener = TcpListener::bind(options.listen).map_err(|source| WebError::Bind {
        addr: options.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| WebError::Bind {
        addr: options.listen,
        source,
    })?;
    let serves_tls = tls.is_some();
    let state = AppState::new(loaded, runner, serves_tls, options.trusted_header.clone())
        .map_err(WebError::Key)?;
    let sources = crate::service::metrics::Sources {
        catalog: state.loaded().catalog.clone(),
        scheduler,
    };
    let app = router(state, sources).into_make_service_with_connect_info::<SocketAddr>();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("custodian-web")
        .enable_all()
        .build()
        .map_err(WebError::Runtime)?;
    let handle = Handle::new();
    let server = {
        let _entered = runtime.enter();
        let bind_err = |source| WebError::Bind {
            addr: options.listen,
            source,
        };
        match tls {
            Some(config) => {
                let server = axum_server::from_tcp_rustls(listener, config)
                    .map_err(bind_err)?
                    .handle(handle.clone());
                runtime.spawn(server.serve(app))
            }
            None => {
                let server = axum_server::from_tcp(listener)
                    .map_err(bind_err)?
                    .handle(handle.clone());
                runtime.spawn(server.serve(app))
            }
        }
    };
    Ok(Portal {
        runtime,
        handle,
        server,
        addr,
        tls: serves_tls,
    })
}

/// The rustls server config of the certificate and key files (ring's provider, the safe
/// default protocol versions).
fn tls_config(files: &TlsFiles) -> Result<RustlsConfig, WebError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = |message: String| WebError::Tls {
        cert: files.cert.clone(),
        key: files.key.clone(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err(format!("reading the certificate: {e}")))?;
    if certs.is_empty() {
        return Err(err("the certificate file holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| err(format!("reading the private key: {e}")))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| err(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| err(e.to_string()))?;
    Ok(RustlsConfig::from_config(Arc::new(config)))
}

impl Portal {
    /// The address it listens on (the port chosen when `--listen` gave port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its URL: `https://ADDR` over TLS, else `http://ADDR`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// Stops accepting, lets requests in flight finish (up to a grace period), and returns
    /// what the server ended with.
    pub fn stop(self) -> std::io::Result<()> {
        self.handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        self.runtime
            .block_on(self.server)
            .map_err(std::io::Error::other)?
    }
}
