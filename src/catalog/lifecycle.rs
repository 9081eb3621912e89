//! Lifecycle (retention) policies as the catalog keeps them: versioned policies, the query that
//! selects what an active version makes due, and how each pending delete ended. The sweep that
//! acts on them is `policy::lifecycle`.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::{CatalogError, Fingerprint, RunId};
use crate::audit::{AuditKind, NewEvent};
use crate::repository::record::{ArtifactType, AudioRecordingType};

/// What a version does with the artifacts of its type in active storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RetentionAction {
    KeepForever,
    /// Delete once this many days (1..=9999) have passed since the interaction's end.
    Delete {
        days: u16,
    },
}

/// Longest retention a delete version may set.
pub const MAX_DAYS: u16 = 9999;

impl RetentionAction {
    /// A delete action, if `days` is within 1..=9999.
    pub fn delete_after(days: u64) -> Result<RetentionAction, String> {
        match u16::try_from(days) {
            Ok(d) if (1..=MAX_DAYS).contains(&d) => Ok(RetentionAction::Delete { days: d }),
            _ => Err(format!(
                "--delete-after-days must be 1..={MAX_DAYS}, not {days}"
            )),
        }
    }

    pub fn describe(self) -> String {
        match self {
            RetentionAction::KeepForever => "keep forever".into(),
            RetentionAction::Delete { days } => format!("delete {days} days after the end"),
        }
    }
}

/// A published, immutable version of a policy.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct LifecycleVersion {
    pub name: String,
    #[serde(flatten)]
    pub action: RetentionAction,
    pub published_at: DateTime<Utc>,
    pub published_by: String,
    /// The export policy that must have exported an artifact before this version deletes it
    /// (docs/operations.md, "Export before delete").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_export: Option<String>,
}

/// A lifecycle policy: one per artifact type (and audio recording type for audio recordings).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct LifecyclePolicy {
    pub name: String,
    pub description: String,
    pub artifact_type: ArtifactType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_type: Option<AudioRecordingType>,
    pub enabled: bool,
    pub active_version: Option<String>,
    pub versions: Vec<LifecycleVersion>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

impl LifecycleVersion {
    /// A version published now by `actor`.
    pub fn new(name: &str, action: RetentionAction, actor: &str) -> LifecycleVersion {
        LifecycleVersion {
            name: name.to_owned(),
            action,
            published_at: Utc::now(),
            published_by: actor.to_owned(),
            require_export: None,
        }
    }
}

impl LifecyclePolicy {
    /// A policy as created: disabled, without versions, created now by `actor`.
    pub fn new(
        name: &str,
        description: &str,
        artifact_type: ArtifactType,
        audio_type: Option<AudioRecordingType>,
        actor: &str,
    ) -> LifecyclePolicy {
        LifecyclePolicy {
            name: name.to_owned(),
            description: description.to_owned(),
            artifact_type,
            audio_type,
            enabled: false,
            active_version: None,
            versions: Vec::new(),
            created_at: Utc::now(),
            created_by: actor.to_owned(),
        }
    }

    pub fn active(&self) -> Option<&LifecycleVersion> {
        let name = self.active_version.as_deref()?;
        self.versions.iter().find(|v| v.name == name)
    }

    pub fn version(&self, name: &str) -> Option<&LifecycleVersion> {
        self.versions.iter().find(|v| v.name == name)
    }

    /// `audio_recording/conference_agent`, or the artifact type alone.
    pub fn scope(&self) -> String {
        match self.audio_type {
            Some(a) => format!("{}/{a}", self.artifact_type),
            None => self.artifact_type.to_string(),
        }
    }
}

/// What a change waiting for a second user's approval does to its policy (docs/operations.md,
/// "Four eyes").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Enable the policy with its active version.
    Enable,
    /// Make the change's version the active one.
    Activate,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Enable => "enable",
            ChangeKind::Activate => "activate",
        }
    }
}

impl std::str::FromStr for ChangeKind {
    type Err = ();

    fn from_str(s: &str) -> Result<ChangeKind, ()> {
        match s {
            "enable" => Ok(ChangeKind::Enable),
            "activate" => Ok(ChangeKind::Activate),
            _ => Err(()),
        }
    }
}

/// Where a change waiting for approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeState {
    Pending,
    Approved,
    Rejected,
    Expired,
}

impl ChangeState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeState::Pending => "pending",
            ChangeState::Approved => "approved",
            ChangeState::Rejected => "rejected",
            ChangeState::Expired => "expired",
        }
    }
}

impl std::str::FromStr for ChangeState {
    type Err = ();

    fn from_str(s: &str) -> Result<ChangeState, ()> {
        [
            ChangeState::Pending,
            ChangeState::Approved,
            ChangeState::Rejected,
            ChangeState::Expired,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
        .ok_or(())
    }
}

/// A change to a policy that makes a delete version take effect, requested by one user and
/// applied only once another approves it (`[lifecycle] approvals = 2`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct PendingChange {
    pub id: i64,
    pub policy: String,
    pub change: ChangeKind,
    pub version: String,
    /// The policy's state when the change was requested; it must be the same when approved.
    pub enabled_before: bool,
    pub version_before: Option<String>,
    /// The acknowledgments the requester gave.
    pub acknowledgments: Vec<String>,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub state: ChangeState,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
}

impl PendingChange {
    /// Whether the policy is enabled once the change applies.
    pub fn enabled_after(&self) -> bool {
        match self.change {
            ChangeKind::Enable => true,
            ChangeKind::Activate => self.enabled_before,
        }
    }

    /// `enabled with v1 active`, for messages about the policy's state.
    fn describe_state(enabled: bool, version: Option<&str>) -> String {
        format!(
            "{} with {}",
            if enabled { "enabled" } else { "disabled" },
            version.map_or("no version".into(), |v| format!("`{v}` active"))
        )
    }

    /// Refuses to decide this change (`to` approved or rejected, by `by` at `at`) unless it is
    /// still pending and not expired, and, to approve it, unless it was requested by someone
    /// else and the policy is as it was when it was requested (`now`: enabled, active version).
    pub fn check_decision(
        &self,
        to: ChangeState,
        by: &str,
        at: DateTime<Utc>,
        now: (bool, Option<&str>),
    ) -> Result<(), CatalogError> {
        let id = self.id;
        let expired = || {
            CatalogError::Refused(format!(
                "change {id} expired at {} before anyone decided it; request the change again",
                self.expires_at.to_rfc3339()
            ))
        };
        match (self.state, &self.decided_by, self.decided_at) {
            (ChangeState::Pending, ..) => {}
            (ChangeState::Expired, ..) => return Err(expired()),
            (state, Some(who), Some(when)) => {
                return Err(CatalogError::Refused(format!(
                    "change {id} was {} already, by {who} at {}",
                    state.as_str(),
                    when.to_rfc3339()
                )));
            }
            (state, ..) => {
                return Err(CatalogError::Refused(format!(
                    "change {id} was {} already",
                    state.as_str()
                )));
            }
        }
        if at >= self.expires_at {
            return Err(expired());
        }
        if to != ChangeState::Approved {
            return Ok(());
        }
        if by == self.requested_by {
            return Err(CatalogError::Refused(format!(
                "change {id} was requested by {by}: another user holding ARTIFACTS_LIFECYCLE_POLICY_APPROVE must approve it (four eyes)"
            )));
        }
        if now != (self.enabled_before, self.version_before.as_deref()) {
            return Err(CatalogError::Refused(format!(
                "policy `{}` changed since change {id} was requested: it was {}, it is {}; reject the change (`custodian lifecycle reject {id}`) and request it again",
                self.policy,
                Self::describe_state(self.enabled_before, self.version_before.as_deref()),
                Self::describe_state(now.0, now.1)
            )));
        }
        Ok(())
    }
}

/// The refusal of a second pending change for a policy.
pub(super) fn already_pending(policy: &str, other: &PendingChange) -> CatalogError {
    CatalogError::Refused(format!(
        "policy `{policy}` already has a pending change ({}, {} `{}`, requested by {}); approve or reject it first (`custodian lifecycle approve|reject {}`)",
        other.id,
        other.change.as_str(),
        other.version,
        other.requested_by,
        other.id
    ))
}

/// The refusal of a request made while the policy changed under it.
pub(super) fn changed_meanwhile(policy: &str) -> CatalogError {
    CatalogError::Refused(format!(
        "policy `{policy}` changed while the change was being requested; look at it again (`custodian lifecycle show {policy}`)"
    ))
}

pub(super) fn unknown_change(id: i64) -> CatalogError {
    CatalogError::Refused(format!(
        "no change {id} (see `custodian lifecycle pending --all`)"
    ))
}

/// The event recording that `c` expired, noticed by `actor` at `at`.
pub(super) fn expiry_event(c: &PendingChange, at: DateTime<Utc>, actor: &str) -> NewEvent {
    NewEvent {
        at,
        kind: AuditKind::LifecycleChangeExpired,
        actor: actor.to_owned(),
        policy: Some(c.policy.clone()),
        run: None,
        tenant: None,
        conversation_id: None,
        details: serde_json::json!({
            "pending_change": c.id,
            "change": c.change.as_str(),
            "version": c.version,
            "requested_by": c.requested_by,
            "expired_at": super::rfc3339_micros(c.expires_at),
        }),
    }
}

/// `events` with the id of the change they record in their details (`pending_change`), which
/// the catalog assigns in the transaction that appends them.
pub(super) fn stamped(events: &[NewEvent], id: i64) -> Vec<NewEvent> {
    events
        .iter()
        .cloned()
        .map(|mut e| {
            if let Some(details) = e.details.as_object_mut() {
                details.insert("pending_change".into(), id.into());
            }
            e
        })
        .collect()
}

/// One artifact a policy's active version makes due (or a pending delete of one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DueArtifact {
    #[serde(skip)]
    pub conversation_pk: i64,
    #[serde(skip)]
    pub ordinal: i64,
    pub tenant: String,
    pub conversation_id: String,
    /// The conversation directory, relative to the repository root.
    pub rel_dir: String,
    pub file: String,
    pub size: u64,
    pub policy: String,
    pub version: String,
    pub due: DateTime<Utc>,
    /// The fingerprint of the conversation.json the catalog indexed (None once the
    /// conversation left the catalog), checked against the file just before deleting.
    #[serde(skip)]
    pub record: Option<Fingerprint>,
}

/// What selects the due artifacts of one policy.
#[derive(Clone, Debug)]
pub struct DueQuery {
    pub policy: String,
    pub version: String,
    pub artifact_type: ArtifactType,
    pub audio_type: Option<AudioRecordingType>,
    pub days: u16,
    /// Interactions that ended at or before this instant are due.
    pub cutoff: DateTime<Utc>,
    /// An artifact is deletable only once this export policy has exported it at its current
    /// SHA-256 in an ended run.
    pub require_export: Option<String>,
}

impl DueQuery {
    /// The query of an enabled policy whose active version deletes; None otherwise.
    pub fn of(policy: &LifecyclePolicy, now: DateTime<Utc>) -> Option<DueQuery> {
        if !policy.enabled {
            return None;
        }
        let v = policy.active()?;
        let RetentionAction::Delete { days } = v.action else {
            return None;
        };
        Some(DueQuery {
            policy: policy.name.clone(),
            version: v.name.clone(),
            artifact_type: policy.artifact_type,
            audio_type: policy.audio_type,
            days,
            cutoff: now - TimeDelta::days(i64::from(days)),
            require_export: v.require_export.clone(),
        })
    }
}

/// What one policy makes due now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DueCount {
    /// Artifacts deletable now (due, not held, exported when the version requires it).
    pub artifacts: u64,
    pub bytes: u64,
    /// Artifacts that would be due but for a hold (a matter's, or their record's legal_hold).
    pub held: u64,
    /// Of those, how many each matter with an active hold covers (a conversation two matters
    /// hold counts for both), by matter.
    pub held_by_matter: Vec<(String, u64)>,
    /// Due artifacts no hold covers that the version's required export policy has not
    /// exported yet (0 when it requires none): held back until it has.
    pub not_exported: u64,
    /// The end instant of the earliest matching interaction not yet due.
    pub next_end: Option<DateTime<Utc>>,
}

/// How a pending delete ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The file was removed (or was already gone, recorded as such).
    Deleted { was_missing: bool },
    /// The file is held back just before deleting: a hold placed since it was selected covers
    /// its conversation, or its record, read again, is under legal hold or changed since it
    /// was indexed (kept until the next index reads it). Nothing is removed or recorded, and
    /// it is not a failure.
    HeldBack(String),
    /// The file could not be removed; nothing is recorded and the next run tries again.
    Failed(String),
}

/// Where a quarantined artifact stands (docs/operations.md, "Quarantine"). Every state but
/// `Quarantined` is an intent a killed process may have left half done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineState {
    /// To be moved from its conversation directory into the quarantine area.
    Moving,
    /// In the quarantine area.
    Quarantined,
    /// To be moved back to its conversation directory.
    Restoring,
    /// To be removed from the quarantine area for good.
    Purging,
}

impl QuarantineState {
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineState::Moving => "moving",
            QuarantineState::Quarantined => "quarantined",
            QuarantineState::Restoring => "restoring",
            QuarantineState::Purging => "purging",
        }
    }

    pub fn parse(s: &str) -> Option<QuarantineState> {
        [
            QuarantineState::Moving,
            QuarantineState::Quarantined,
            QuarantineState::Restoring,
            QuarantineState::Purging,
        ]
        .into_iter()
        .find(|q| q.as_str() == s)
    }
}

/// One artifact in quarantine, or on its way in or out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Quarantined {
    /// The artifact as it was due, with where it came from.
    #[serde(flatten)]
    pub artifact: DueArtifact,
    /// Its file's name in the quarantine area.
    pub name: String,
    pub state: QuarantineState,
    /// A restore by a user: the version that quarantined it no longer makes it due.
    pub exempt: bool,
    /// The sweep that quarantined it.
    pub run: Option<RunId>,
    /// When it was moved in (None while moving).
    pub quarantined_at: Option<DateTime<Utc>>,
    /// Its conversation's record is under legal hold (as last indexed).
    pub legal_hold: bool,
}

/// Which quarantine entries to list.
#[derive(Clone, Debug)]
pub enum QuarantineSelect {
    /// Intents left by a killed process (every state but `Quarantined`).
    Pending,
    /// Pending restores only.
    Restoring,
    /// The next page of quarantined artifacts after `(conversation pk, file)`.
    Page { after: (i64, String), limit: usize },
    /// The quarantined artifacts of one conversation.
    Conversation { tenant: String, id: String },
    /// The quarantined artifacts a sweep moved in.
    Run(RunId),
}

/// How a quarantine intent ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuarantineOutcome {
    /// Moved into the quarantine area: recorded with its `artifact_quarantined` event.
    Quarantined,
    /// Back in its conversation directory: its `artifact_restored` event, and, when the entry
    /// is `exempt`, its exemption from the version that quarantined it.
    Restored { reason: String },
    /// Gone for good (or already gone when it was to be moved): recorded deleted with its
    /// `artifact_deleted` event.
    Purged { was_missing: bool },
    /// Nothing was done: a move is forgotten (the artifact stays where it was, due), a restore
    /// or purge leaves it quarantined.
    Kept,
}

/// What one version of a policy has in quarantine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuarantineCount {
    pub policy: String,
    pub version: String,
    pub artifacts: u64,
    pub bytes: u64,
    /// Of those, quarantined at or before the purge cutoff asked for.
    pub purgeable: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_days_are_bounded() {
        assert!(RetentionAction::delete_after(0).is_err());
        assert!(RetentionAction::delete_after(10_000).is_err());
        assert_eq!(
            RetentionAction::delete_after(9999).unwrap(),
            RetentionAction::Delete { days: 9999 }
        );
    }
}
