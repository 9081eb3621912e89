//! Lifecycle (retention) policies as the catalog keeps them: versioned policies, the query that
//! selects what an active version makes due, and how each pending delete ended. The sweep that
//! acts on them is `policy::lifecycle`.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::Fingerprint;
use crate::repository::record::{ArtifactType, AudioRecordingType};

/// What a version does with the artifacts of its type in active storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
