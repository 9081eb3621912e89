//! Audit events: the append-only record of what was done to data, hash-chained.
//!
//! Each event carries the SHA-256 of the previous event's hash and its own canonical content,
//! so removing or editing any stored event breaks the chain from that point on
//! ([`verify_chain`]).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What an audit event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A conversation's objects were written to a target by an export policy.
    ConversationExported,
    /// A lifecycle policy deleted an artifact (the lifecycle history trail).
    ArtifactDeleted,
    /// A user acknowledged what a lifecycle policy change means (the acknowledgments trail).
    LifecycleAcknowledged,
    /// A lifecycle policy was created, versioned, enabled, disabled or re-pointed.
    LifecyclePolicyChanged,
    /// A confidential-flag policy set or cleared a conversation's confidential flag.
    ConfidentialFlagChanged,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::ConversationExported => "conversation_exported",
            AuditKind::ArtifactDeleted => "artifact_deleted",
            AuditKind::LifecycleAcknowledged => "lifecycle_acknowledged",
            AuditKind::LifecyclePolicyChanged => "lifecycle_policy_changed",
            AuditKind::ConfidentialFlagChanged => "confidential_flag_changed",
        }
    }

    pub fn parse(s: &str) -> Option<AuditKind> {
        match s {
            "conversation_exported" => Some(AuditKind::ConversationExported),
            "artifact_deleted" => Some(AuditKind::ArtifactDeleted),
            "lifecycle_acknowledged" => Some(AuditKind::LifecycleAcknowledged),
            "lifecycle_policy_changed" => Some(AuditKind::LifecyclePolicyChanged),
            "confidential_flag_changed" => Some(AuditKind::ConfidentialFlagChanged),
            _ => None,
        }
    }
}

/// An event to append; the catalog assigns its sequence number and hashes.
#[derive(Clone, Debug, Serialize)]
pub struct NewEvent {
    pub at: DateTime<Utc>,
    pub kind: AuditKind,
    pub actor: String,
    pub policy: Option<String>,
    pub run: Option<i64>,
    pub tenant: Option<String>,
    pub conversation_id: Option<String>,
    pub details: serde_json::Value,
}

/// An event as stored.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEvent {
    pub seq: i64,
    #[serde(flatten)]
    pub event: NewEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// Hash of the chain's first predecessor.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl NewEvent {
    /// The chained hash of this event stored at `seq` after an event hashed `prev_hash`.
    pub fn chain_hash(&self, seq: i64, prev_hash: &str) -> String {
        let mut h = Sha256::new();
        let field = |h: &mut Sha256, v: &str| {
            h.update((v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        };
        field(&mut h, prev_hash);
        field(&mut h, &seq.to_string());
        field(
            &mut h,
            &self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
        );
        field(&mut h, self.kind.as_str());
        field(&mut h, &self.actor);
        field(&mut h, self.policy.as_deref().unwrap_or(""));
        field(&mut h, &self.run.map(|r| r.to_string()).unwrap_or_default());
        field(&mut h, self.tenant.as_deref().unwrap_or(""));
        field(&mut h, self.conversation_id.as_deref().unwrap_or(""));
        field(&mut h, &self.details.to_string());
        hex::encode(h.finalize())
    }
}

/// The first event that breaks the chain, with why.
pub fn verify_chain<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
    mut prev: String,
) -> Result<String, (i64, &'static str)> {
    for e in events {
        if e.prev_hash != prev {
            return Err((e.seq, "prev_hash does not match the previous event"));
        }
        if e.event.chain_hash(e.seq, &prev) != e.hash {
            return Err((e.seq, "content does not match its hash"));
        }
        prev = e.hash.clone();
    }
    Ok(prev)
}

/// Name of the operating-system user the process runs as, for audit records: the account
/// name of the real uid (from /etc/passwd), else `uid:N`. Environment variables such as `USER`
/// are not trusted, since anyone can set them.
pub fn current_actor() -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return "unknown".into();
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| format!("uid:{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: i64) -> NewEvent {
        NewEvent {
            at: "2026-01-01T00:00:00Z".parse().unwrap(),
            kind: AuditKind::ConversationExported,
            actor: "tester".into(),
            policy: Some("p".into()),
            run: Some(1),
            tenant: Some("acme".into()),
            conversation_id: Some(format!("c{n}")),
            details: serde_json::json!({"n": n}),
        }
    }

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let e = event(seq);
                let hash = e.chain_hash(seq, &prev);
                let stored = AuditEvent {
                    seq,
                    event: e,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                stored
            })
            .collect()
    }

    #[test]
    fn actor_is_the_process_user() {
        let actor = current_actor();
        assert!(!actor.is_empty() && actor != "unknown", "{actor}");
    }

    #[test]
    fn intact_chain_verifies() {
        let events = chain(5);
        assert_eq!(
            verify_chain(&events, GENESIS.into()).unwrap(),
            events[4].hash
        );
    }

    #[test]
    fn edited_or_removed_events_break_the_chain() {
        let mut events = chain(5);
        events[2].event.details = serde_json::json!({"n": 99});
        assert_eq!(
            verify_chain(&events, GENESIS.into()),
            Err((3, "content does not match its hash"))
        );
        let mut events = chain(5);
        events.remove(1);
        assert_eq!(verify_chain(&events, GENESIS.into()).unwrap_err().0, 3);
    }
}
