//! The JSON API under `/api/v1` (docs/operations.md, "The JSON API"): the same reads and
//! actions as the portal's pages, for scripts and other systems. Requests authenticate as the
//! portal's do (an API token in `Authorization: Bearer …`, or a session; [`ApiUser`]) and run
//! the same `app` functions acting as that user, so the roles file decides exactly as it does
//! on the command line. Every error is a JSON body `{"error": …}` with its status: 400 for bad
//! input, 401 without credentials, 403 naming the missing permission (`"permission"`), 404,
//! 409 when the catalog's rules refuse a change. The OpenAPI document is served at
//! `/api/v1/openapi.json`.

mod routes;

use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::web::auth::{AuthRejection, Authed};
use super::web::{AppState, PageError};
use crate::app::Loaded;
use crate::app::access::{AccessError, authorize};
use crate::catalog::CatalogError;
use crate::policy::roles::{Permission, RolesError};

/// The API's routes, to merge into the portal's router.
pub fn routes() -> Router<AppState> {
    routes::routes()
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::ApiDoc::openapi()
}

/// The body of every error the API returns.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong and what to do about it.
    pub error: String,
    /// The permission the user lacks (403 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
}

/// An error as the API answers it: a status and a JSON body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                permission: None,
            },
        }
    }

    fn bad_request(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error)
    }

    fn not_found(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, error)
    }

    fn conflict(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, error)
    }

    /// Something on the server's side: logged, and answered without its detail.
    fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!("API request failed: {detail}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server could not answer this request; its log says why",
        )
    }
}

/// A JSON response whose strings carry `<`, `>` and `&` escaped (`\u003c`, …): the same JSON
/// to any parser, but never markup, even to a browser led to render the response as HTML (a
/// CDR field holding `<script>` comes back as data). Sent with `nosniff`.
pub struct Body<T>(pub T);

impl<T: Serialize> IntoResponse for Body<T> {
    fn into_response(self) -> Response {
        let mut text = Vec::new();
        let mut serializer = serde_json::Serializer::with_formatter(&mut text, HtmlSafe);
        if let Err(e) = self.0.serialize(&mut serializer) {
            return ApiError::internal(format!("cannot write a response: {e}")).into_response();
        }
        (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            text,
        )
            .into_response()
    }
}

/// serde_json's compact output with `<`, `>` and `&` in strings written as `\u` escapes.
struct HtmlSafe;

impl serde_json::ser::Formatter for HtmlSafe {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let bytes = fragment.as_bytes();
        let mut from = 0;
        for (i, b) in bytes.iter().enumerate() {
            let escaped: &[u8] = match b {
                b'<' => b"\\u003c",
                b'>' => b"\\u003e",
                b'&' => b"\\u0026",
                _ => continue,
            };
            writer.write_all(&bytes[from..i])?;
            writer.write_all(escaped)?;
            from = i + 1;
        }
        writer.write_all(&bytes[from..])
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut response = (self.status, Body(self.body)).into_response();
        if unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"custodian\""),
            );
        }
        response
    }
}

impl From<PageError> for ApiError {
    fn from(e: PageError) -> ApiError {
        let status = match &e {
            PageError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Conflict(_) => StatusCode::CONFLICT,
            PageError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::TooManyLogins(_) => StatusCode::TOO_MANY_REQUESTS,
            PageError::Internal(detail) => return ApiError::internal(detail),
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> ApiError {
        match e {
            AccessError::Roles(denied @ RolesError::Denied { permission, .. }) => ApiError {
                status: StatusCode::FORBIDDEN,
                body: ErrorBody {
                    error: denied.to_string(),
                    permission: Some(permission.to_owned()),
                },
            },
            no_roles @ AccessError::NoRoles(_) => {
                ApiError::new(StatusCode::FORBIDDEN, no_roles.to_string())
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> ApiError {
        match e {
            CatalogError::Refused(_) | CatalogError::Busy { .. } => {
                ApiError::conflict(e.to_string())
            }
            other => ApiError::internal(other),
        }
    }
}

/// The authenticated user of an API request. Without credentials the request is answered
/// 401 (the portal's pages send the browser to `/login` instead).
pub struct ApiUser(Authed);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<ApiUser, ApiError> {
        match Authed::from_request_parts(parts, state).await {
            Ok(who) => Ok(ApiUser(who)),
            Err(AuthRejection::Login { .. }) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authenticate with `Authorization: Bearer TOKEN` (an API token from `custodian user token NAME`) or a portal session",
            )),
            Err(AuthRejection::Refused(e)) => Err(e.into()),
        }
    }
}

impl ApiUser {
    /// A change made with a session cookie must carry the session's CSRF token in
    /// `X-CSRF-Token` (a browser could be made to send the cookie); one made with an API token
    /// needs none.
    fn check_csrf(&self, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
        let given = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Ok(self.0.check_csrf(given)?)
    }
}

impl ApiUser {
    /// A run of `policy` now, as this user (serve checks the permissions it needs).
    async fn run_now(
        &self,
        state: &AppState,
        policy: String,
    ) -> Result<crate::app::serve::Started, ApiError> {
        let answered = state.run_now(&self.0, policy).await?;
        answered.map_err(|e| match e {
            crate::app::serve::RunNowError::Access(e) => ApiError::from(e),
            other => ApiError::from(PageError::from(other)),
        })
    }
}

/// Query parameters, refused as JSON (400) when they do not parse.
pub struct ApiQuery<T>(T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ApiQuery<T>, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::bad_request(e.body_text()))
    }
}

/// Path parameters, refused as JSON (400) when they do not parse.
pub struct ApiPath<T>(T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ApiPath<T>, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiError::bad_request(e.body_text()))
    }
}

/// A JSON body, refused as JSON (400) when it is missing or does not parse.
pub struct ApiJson<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<ApiJson<T>, ApiError> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|j| ApiJson(j.0))
            .map_err(|e: JsonRejection| ApiError::bad_request(e.body_text()))
    }
}

/// Runs `f` on a blocking thread acting as the request's user, once the roles file grants the
/// user every one of `permissions` (the `app` function `f` calls may check more).
pub(super) async fn call<T: Send + 'static>(
    state: &AppState,
    who: &ApiUser,
    permissions: &'static [Permission],
    f: impl FnOnce(&Loaded) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    state
        .run_as(&who.0, &[], move |l| {
            Ok::<_, PageError>(
                authorize(l, permissions)
                    .map_err(ApiError::from)
                    .and_then(|_| f(l)),
            )
        })
        .await?
}

/// Text a client gave for a name or id: printable, so that it can reach the catalog.
fn printable(what: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{what}: give non-empty printable text"
        )));
    }
    Ok(())
}

/// The bearer-token security scheme the document names.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
