//! Who a request comes from: the [`Authed`] extractor (a trusted proxy's header, an API token
//! or a session cookie, in that order), the CSRF check of form posts, and the routes that log
//! in and out (docs/operations.md, "The web portal").

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{AppState, PageError, pages};
use crate::app::accounts;
use crate::users::Actor;

/// The session cookie: a random 256-bit id, stored in the catalog as its SHA-256.
pub const SESSION_COOKIE: &str = "custodian_session";
/// The login form's CSRF cookie (double submit: the form carries the same value).
const LOGIN_COOKIE: &str = "custodian_login";
/// How long a session lasts.
const SESSION_TTL: chrono::Duration = chrono::Duration::hours(8);

/// How a request authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// A session cookie; the value is its id.
    Session(String),
    /// `Authorization: Bearer TOKEN`: not sent by a browser on its own, so no CSRF check.
    Token,
    /// The trusted proxy's header.
    Header,
}

/// An authenticated request: who it acts as, how it authenticated, and the CSRF token its
/// forms must carry.
#[derive(Clone, Debug)]
pub struct Authed {
    pub actor: Actor,
    pub via: Via,
    csrf: String,
}

impl Authed {
    /// The CSRF token to put in every form this user posts.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Refuses a form post whose CSRF token is not this user's (token requests need none).
    pub fn check_csrf(&self, given: &str) -> Result<(), PageError> {
        if self.via == Via::Token || same(given.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(PageError::Forbidden(
                "the form's CSRF token is missing or wrong; reload the page and submit it again"
                    .into(),
            ))
        }
    }
}

/// Equal byte strings, compared in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a request could not be authenticated.
pub enum AuthRejection {
    /// No credentials: log in first, then come back to `next`.
    Login {
        next: String,
    },
    Refused(PageError),
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        match self {
            AuthRejection::Login { next } => {
                Redirect::to(&format!("/login?next={}", query_escape(&next))).into_response()
            }
            AuthRejection::Refused(e) => e.into_response(),
        }
    }
}

impl From<accounts::AccountError> for AuthRejection {
    fn from(e: accounts::AccountError) -> AuthRejection {
        AuthRejection::Refused(e.into())
    }
}

impl From<PageError> for AuthRejection {
    fn from(e: PageError) -> AuthRejection {
        AuthRejection::Refused(e)
    }
}

/// `s` percent-encoded for a query value.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The client's address as the listener saw it.
fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Authed, AuthRejection> {
        if let Some(found) = by_header(parts, state).await? {
            return Ok(found);
        }
        if let Some(found) = by_token(parts, state).await? {
            return Ok(found);
        }
        if let Some(id) = cookie(&parts.headers, SESSION_COOKIE) {
            let id = id.to_owned();
            let lookup = id.clone();
            if let Some((account, csrf)) = state
                .blocking(move |l| accounts::session(l, &lookup))
                .await??
            {
                return Ok(Authed {
                    actor: accounts::actor(&account),
                    via: Via::Session(id),
                    csrf,
                });
            }
        }
        let next = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        Err(AuthRejection::Login { next })
    }
}

/// The trusted proxy's header, when the portal trusts one and the request carries it; refused
/// from a peer that is not one of the proxies.
async fn by_header(parts: &Parts, state: &AppState) -> Result<Option<Authed>, PageError> {
    let Some(trusted) = &state.0.trusted_header else {
        return Ok(None);
    };
    let Some(value) = parts.headers.get(&trusted.name) else {
        return Ok(None);
    };
    let from = peer(parts);
    if !from.is_some_and(|ip| trusted.proxies.contains(&ip)) {
        return Err(PageError::Forbidden(format!(
            "header {} is believed only from the trusted proxies; this request came from elsewhere",
            trusted.name
        )));
    }
    let user = value
        .to_str()
        .ok()
        .filter(|u| accounts::valid_name(u))
        .ok_or_else(|| {
            PageError::BadRequest(format!("header {} names no valid user", trusted.name))
        })?
        .to_owned();
    let lookup = user.clone();
    let account = state
        .blocking(move |l| accounts::find(l, &lookup))
        .await??;
    let csrf = hex::encode(
        Sha256::new()
            .chain_update(state.0.csrf_key)
            .chain_update(user.as_bytes())
            .finalize(),
    );
    Ok(Some(Authed {
        actor: Actor {
            groups: account.map(|a| a.groups).unwrap_or_default(),
            user,
        },
        via: Via::Header,
        csrf,
    }))
}

/// `Authorization: Bearer TOKEN`, when given; a token no account has is refused.
async fn by_token(parts: &Parts, state: &AppState) -> Result<Option<Authed>, PageError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            PageError::Unauthorized("the Authorization header takes `Bearer TOKEN`".into())
        })?
        .to_owned();
    match state
        .blocking(move |l| accounts::token_account(l, &token))
        .await??
    {
        Some(account) => Ok(Some(Authed {
            actor: accounts::actor(&account),
            via: Via::Token,
            csrf: String::new(),
        })),
        None => Err(PageError::Unauthorized(
            "the API token is not valid (revoked, or its account removed); ask for a new one (`custodian user token NAME`)".into(),
        )),
    }
}

/// Logging in and out.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

#[derive(Deserialize)]
struct Next {
    next: Option<String>,
}

/// Where to go after logging in: a path of this site, never another site (`//host`), and
/// only visible ASCII (a `Location` header cannot carry a line break).
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && p.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            p
        }
        _ => "/runs",
    }
}

/// A cookie header value with the portal's attributes.
fn set_cookie(state: &AppState, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if state.0.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("cookie values are hex")
}

async fn login_page(
    State(state): State<AppState>,
    Query(q): Query<Next>,
) -> Result<Response, PageError> {
    let token = accounts::new_secret()?;
    let next = local_path(q.next.as_deref()).to_owned();
    Ok((
        [(
            header::SET_COOKIE,
            set_cookie(&state, LOGIN_COOKIE, &token, 3600),
        )],
        pages::login(&token, &next, None),
    )
        .into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same(expected.as_bytes(), form.csrf.as_bytes()) {
        return Err(PageError::Forbidden(
            "the login form's CSRF token is missing or wrong; open /login again and log in from there"
                .into(),
        ));
    }
    let next = local_path(form.next.as_deref()).to_owned();
    let ip = client.ip();
    // Only a name an account could have is remembered by the throttle: any other (of any
    // length) fails the same way, and all of them count as one.
    let throttled = if accounts::valid_name(&form.name) {
        form.name.clone()
    } else {
        String::new()
    };
    if let Some(wait) = state.0.logins.refusal(&throttled, ip, Instant::now()) {
        return Err(PageError::TooManyLogins(wait.as_secs().max(1)));
    }
    // Each check holds about 19 MiB for argon2id; at most a few run at once, the rest wait.
    let _checking = state
        .0
        .password_checks
        .acquire()
        .await
        .map_err(|e| PageError::Internal(format!("password checks: {e}")))?;
    let (name, password) = (form.name.clone(), form.password);
    let checked = state
        .blocking(move |l| {
            let Some(account) = accounts::check_login(l, &name, &password)? else {
                return Ok(None);
            };
            accounts::start_session(l, &account, SESSION_TTL).map(Some)
        })
        .await?;
    match checked.map_err(PageError::from)? {
        Some(started) => {
            state.0.logins.succeeded(&throttled);
            let mut response = Redirect::to(&next).into_response();
            let h = response.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(
                    &state,
                    SESSION_COOKIE,
                    &started.id,
                    SESSION_TTL.num_seconds(),
                ),
            );
            h.append(header::SET_COOKIE, set_cookie(&state, LOGIN_COOKIE, "", 0));
            Ok(response)
        }
        None => {
            state.0.logins.failed(&throttled, ip, Instant::now());
            Ok((
                StatusCode::UNAUTHORIZED,
                pages::login(expected, &next, Some("wrong account name or password")),
            )
                .into_response())
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    who: Authed,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&form.csrf)?;
    if let Via::Session(id) = who.via {
        state
            .blocking(move |l| accounts::end_session(l, &id))
            .await??;
    }
    Ok((
        [(
            header::SET_COOKIE,
            set_cookie(&state, SESSION_COOKIE, "", 0),
        )],
        Redirect::to("/login"),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(local_path(Some("/runs/7?x=1")), "/runs/7?x=1");
        for away in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "runs",
            "/runs\r\nSet-Cookie: x=1",
            "/runs/é",
        ] {
            assert_eq!(local_path(Some(away)), "/runs", "{away}");
        }
        assert_eq!(local_path(None), "/runs");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; custodian_session=abc".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn comparison_is_exact() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"", b"x"));
    }
}
