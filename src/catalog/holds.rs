//! Legal holds as the catalog keeps them (docs/operations.md, "Legal holds"): matters, and the
//! holds placed under them. A hold is standing (criteria, stored as one row, that cover every
//! conversation matching them, indexed now or later) or explicit (a list of conversations).
//! Releasing a matter releases all of its holds; a released hold holds nothing.
//!
//! The sweep never selects what an active hold covers: its due-artifact queries leave held
//! conversations out inside the query ([`super::sql::held`]), whatever the number of
//! conversations a standing hold covers.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::CatalogError;
use crate::audit::NewEvent;
use crate::filter::{Criteria, Filter};

/// A legal matter, under which holds are placed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Matter {
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// A conversation as the CLI names it: `TENANT/ID`.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, utoipa::ToSchema,
)]
#[serde(try_from = "RefFields")]
pub struct ConversationRef {
    pub tenant: String,
    pub id: String,
}

impl std::str::FromStr for ConversationRef {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<ConversationRef, String> {
        match s.split_once('/') {
            Some((tenant, id))
                if !tenant.trim().is_empty()
                    && !id.trim().is_empty()
                    && !s.chars().any(char::is_control) =>
            {
                Ok(ConversationRef {
                    tenant: tenant.to_owned(),
                    id: id.to_owned(),
                })
            }
            _ => Err(format!(
                "`{s}` is not a conversation: write TENANT/ID, such as acme/c-1001"
            )),
        }
    }
}

/// A conversation reference as a request spells it, checked as the command line checks
/// TENANT/ID: a peer of the service's socket sends fields, not text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefFields {
    tenant: String,
    id: String,
}

impl TryFrom<RefFields> for ConversationRef {
    type Error = String;

    fn try_from(r: RefFields) -> std::result::Result<ConversationRef, String> {
        if r.tenant.contains('/') {
            return Err(format!(
                "`{}` is not a tenant: a tenant holds no `/`",
                r.tenant
            ));
        }
        format!("{}/{}", r.tenant, r.id).parse()
    }
}

impl std::fmt::Display for ConversationRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.tenant, self.id)
    }
}

/// What a hold covers.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HoldScope {
    /// Every conversation matching these criteria, now and indexed later.
    Standing(Box<Criteria>),
    /// These conversations.
    Conversations(Vec<ConversationRef>),
}

/// Who released a hold, and when.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Release {
    pub at: DateTime<Utc>,
    pub by: String,
}

/// A hold placed under a matter.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Hold {
    pub id: i64,
    pub matter: String,
    pub scope: HoldScope,
    pub placed_at: DateTime<Utc>,
    pub placed_by: String,
    pub released: Option<Release>,
}

/// A matter with its holds and what its active holds hold now.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct MatterState {
    #[serde(flatten)]
    pub matter: Matter,
    /// Every hold placed under it, released ones included, in the order placed.
    pub holds: Vec<Hold>,
    /// Conversations its active holds cover.
    pub conversations: u64,
    /// Artifacts of those conversations not deleted.
    pub artifacts: u64,
}

/// A conversation queued for a legal-hold sync (docs/operations.md, "WORM exports"): what its
/// objects' legal-hold status must be now, and where they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldSync {
    pub conversation: ConversationRef,
    /// The queue entry's generation: taking it off the queue leaves a newer one in place.
    pub generation: i64,
    /// Whether its record's flag or an active hold covers it now; false for a conversation
    /// that has left the catalog.
    pub held: bool,
    /// Its recorded objects, as (target, key), on every target.
    pub objects: Vec<(String, String)>,
}

/// An active standing hold, resolved for its SQL translation.
pub(super) struct Standing {
    pub matter: String,
    pub filter: Filter,
}

/// Puts each `(hold id, conversation)` row of [`super::sql::HOLD_CONVERSATIONS`] into its
/// explicit hold in `holds`.
pub(super) fn attach_conversations(
    holds: &mut [Hold],
    rows: impl IntoIterator<Item = (i64, ConversationRef)>,
) {
    let index: HashMap<i64, usize> = holds.iter().enumerate().map(|(i, h)| (h.id, i)).collect();
    for (hold, c) in rows {
        if let Some(HoldScope::Conversations(list)) = index.get(&hold).map(|&i| &mut holds[i].scope)
        {
            list.push(c);
        }
    }
}

/// Criteria as stored in `legal_holds.criteria`.
pub(super) fn criteria_text(criteria: &Criteria) -> String {
    serde_json::to_string(criteria).expect("criteria serialize")
}

/// The audit event of a hold just placed, with the hold's id (`hold` in its details), known
/// only once its row is inserted in the same transaction.
pub(super) fn placed_event(event: &NewEvent, id: i64) -> NewEvent {
    let mut event = event.clone();
    if let Some(details) = event.details.as_object_mut() {
        details.insert("hold".into(), id.into());
    }
    event
}

/// Resolves stored criteria. A hold's criteria hold no relative days (they are refused when
/// it is placed), so the clock they are resolved against does not matter.
pub(super) fn standing(matter: String, criteria: &Criteria) -> Standing {
    Standing {
        matter,
        filter: Filter::resolve(criteria, Utc::now(), Tz::UTC),
    }
}

/// The refusal of a hold or release under a matter that does not exist.
pub(super) fn unknown_matter(matter: &str) -> CatalogError {
    CatalogError::Refused(format!(
        "no matter named `{matter}` (see `custodian hold list`; create it with `custodian hold create {matter}`)"
    ))
}

pub(super) fn matter_exists(matter: &str) -> CatalogError {
    CatalogError::Refused(format!("a matter named `{matter}` already exists"))
}

/// The refusal of an explicit hold naming conversations the catalog does not hold.
pub(super) fn unknown_conversations(missing: &[ConversationRef]) -> CatalogError {
    let shown: Vec<String> = missing.iter().take(10).map(ToString::to_string).collect();
    let more = if missing.len() > shown.len() {
        format!(" and {} more", missing.len() - shown.len())
    } else {
        String::new()
    };
    CatalogError::Refused(format!(
        "not in the catalog: {}{more}; check the TENANT/ID, or run `custodian index` if the recording is new; no hold was placed",
        shown.join(", ")
    ))
}

pub(super) fn nothing_to_release(matter: &str) -> CatalogError {
    CatalogError::Refused(format!(
        "matter `{matter}` has no active hold to release (see `custodian hold show {matter}`)"
    ))
}

/// Matters holding each conversation, sorted and each once, from (pk, matter) rows.
pub(super) fn by_conversation(rows: Vec<(i64, String)>) -> HashMap<i64, Vec<String>> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    for (pk, matter) in rows {
        out.entry(pk).or_default().push(matter);
    }
    for matters in out.values_mut() {
        matters.sort();
        matters.dedup();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversations_are_named_tenant_slash_id() {
        let c: ConversationRef = "acme/c-1/x".parse().unwrap();
        assert_eq!((c.tenant.as_str(), c.id.as_str()), ("acme", "c-1/x"));
        for bad in ["acme", "/c1", "acme/", " /c1", "acme/c\n1"] {
            let err = bad.parse::<ConversationRef>().unwrap_err();
            assert!(err.contains("TENANT/ID"), "{err}");
        }
    }
}
