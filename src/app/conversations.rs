//! Conversation search and detail for the service (docs/operations.md, "The JSON API"): who
//! may read them (CONVERSATIONS_READ), what a search may ask, and its pages.

use chrono::{DateTime, Utc};

use super::Loaded;
use super::access::{AccessError, authorize};
use crate::catalog::CatalogError;
use crate::catalog::conversations::{
    ConversationDetail, ConversationSearch, ConversationSummary, Cursor,
};
use crate::policy::roles::Permission;

/// Rows a page holds unless the search asks for fewer.
pub const DEFAULT_PAGE: usize = 50;
/// Most rows a page holds.
pub const MAX_PAGE: usize = 500;
/// Longest text a search criterion may be (ids and names are short).
const MAX_CRITERION: usize = 256;

/// Why a conversation read was refused or could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ConversationsError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("no conversation `{id}` of tenant `{tenant}` in the catalog")]
    NotFound { tenant: String, id: String },
    /// A search that cannot be run as asked: the parameter and what to give instead.
    #[error("{parameter}: {message}")]
    BadSearch {
        parameter: &'static str,
        message: String,
    },
}

/// A search as a client asks it: criteria, the page size, and where the page starts.
#[derive(Clone, Debug, Default)]
pub struct SearchRequest {
    pub tenant: Option<String>,
    pub id: Option<String>,
    pub user: Option<String>,
    pub start_from: Option<DateTime<Utc>>,
    pub start_before: Option<DateTime<Utc>>,
    /// The `next` token of the previous page.
    pub after: Option<String>,
    pub limit: Option<usize>,
}

/// One page of a search.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SearchPage {
    /// Newest first.
    pub conversations: Vec<ConversationSummary>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

fn bad(parameter: &'static str, message: impl Into<String>) -> ConversationsError {
    ConversationsError::BadSearch {
        parameter,
        message: message.into(),
    }
}

/// A text criterion: given, it must be non-empty printable text of reasonable length.
fn criterion(
    parameter: &'static str,
    value: Option<String>,
) -> Result<Option<String>, ConversationsError> {
    match value {
        Some(v) if v.is_empty() || v.len() > MAX_CRITERION || v.chars().any(char::is_control) => {
            Err(bad(
                parameter,
                format!("give non-empty printable text of at most {MAX_CRITERION} bytes"),
            ))
        }
        other => Ok(other),
    }
}

/// The request checked and made into the catalog's search (one row more than the page, to
/// tell whether another page follows).
fn checked(r: SearchRequest) -> Result<(ConversationSearch, usize), ConversationsError> {
    let limit = r.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(bad("limit", format!("give a number from 1 to {MAX_PAGE}")));
    }
    if let (Some(from), Some(before)) = (r.start_from, r.start_before)
        && from >= before
    {
        return Err(bad(
            "start_from",
            "must be before start_before (the range would be empty)",
        ));
    }
    let after = match r.after.as_deref() {
        Some(token) => Some(Cursor::parse(token).ok_or_else(|| {
            bad(
                "after",
                "not a page token; pass the `next` value of the previous page",
            )
        })?),
        None => None,
    };
    Ok((
        ConversationSearch {
            tenant: criterion("tenant", r.tenant)?,
            id: criterion("id", r.id)?,
            user: criterion("user", r.user)?,
            start_from: r.start_from,
            start_before: r.start_before,
            after,
            limit: limit + 1,
        },
        limit,
    ))
}

/// A page of the conversations a search finds, newest first.
pub fn search(l: &Loaded, request: SearchRequest) -> Result<SearchPage, ConversationsError> {
    authorize(l, &[Permission::ConversationsRead])?;
    let (search, limit) = checked(request)?;
    let mut conversations = l.catalog.search_conversations(&search)?;
    let next = if conversations.len() > limit {
        conversations.truncate(limit);
        conversations.last().map(|c| c.cursor.token())
    } else {
        None
    };
    Ok(SearchPage {
        conversations,
        next,
    })
}

/// One conversation with its artifacts, exports, deletions, flags and holds.
pub fn show(l: &Loaded, tenant: &str, id: &str) -> Result<ConversationDetail, ConversationsError> {
    authorize(l, &[Permission::ConversationsRead])?;
    l.catalog
        .conversation_detail(tenant, id)?
        .ok_or_else(|| ConversationsError::NotFound {
            tenant: tenant.to_owned(),
            id: id.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: SearchRequest, parameter: &str) {
        match checked(r) {
            Err(ConversationsError::BadSearch { parameter: p, .. }) => assert_eq!(p, parameter),
            other => panic!("expected a refusal of {parameter}, got {other:?}"),
        }
    }

    #[test]
    fn a_search_asks_one_row_more_than_its_page() {
        let (search, limit) = checked(SearchRequest {
            tenant: Some("acme".into()),
            after: Some(Cursor { start_ms: 5, pk: 7 }.token()),
            ..SearchRequest::default()
        })
        .unwrap();
        assert_eq!((limit, search.limit), (DEFAULT_PAGE, DEFAULT_PAGE + 1));
        assert_eq!(search.after, Some(Cursor { start_ms: 5, pk: 7 }));
        assert_eq!(search.tenant.as_deref(), Some("acme"));
    }

    #[test]
    fn a_search_that_cannot_be_run_is_refused_naming_its_parameter() {
        refused(
            SearchRequest {
                limit: Some(0),
                ..SearchRequest::default()
            },
            "limit",
        );
        refused(
            SearchRequest {
                limit: Some(MAX_PAGE + 1),
                ..SearchRequest::default()
            },
            "limit",
        );
        refused(
            SearchRequest {
                after: Some("12".into()),
                ..SearchRequest::default()
            },
            "after",
        );
        let t = |s: &str| s.parse::<DateTime<Utc>>().ok();
        refused(
            SearchRequest {
                start_from: t("2026-02-01T00:00:00Z"),
                start_before: t("2026-02-01T00:00:00Z"),
                ..SearchRequest::default()
            },
            "start_from",
        );
        refused(
            SearchRequest {
                user: Some("al\0ice".into()),
                ..SearchRequest::default()
            },
            "user",
        );
        refused(
            SearchRequest {
                id: Some("x".repeat(300)),
                ..SearchRequest::default()
            },
            "id",
        );
    }
}
