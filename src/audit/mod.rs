//! Audit events: the append-only record of what was done to data, hash-chained.
//!
//! Each event carries a hash of the previous event's hash and its own canonical content, so
//! removing or editing any stored event breaks the chain from that point on
//! ([`ChainVerifier`]). Events appended before the chain had a key are hashed with plain
//! SHA-256; from the first event that names a key id on, every hash is an HMAC-SHA-256 under
//! the key kept outside the catalog ([`key`]), so whoever can write the catalog but not read
//! the key cannot recompute the chain after an edit, and an unkeyed event after a keyed one
//! breaks the chain. Truncation and a re-chaining of the whole trail are caught against the
//! heads anchored in run manifests ([`Anchor`]; the catalog's `trail` module checks them).

pub mod key;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use key::{AuditConfig, AuditSettings, ChainKey, KeyError, KeySource};

/// What an audit event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A conversation's objects were written to a target by an export policy.
    ConversationExported,
    /// A lifecycle policy deleted an artifact (the lifecycle history trail).
    ArtifactDeleted,
    /// The sweep moved a due artifact into the quarantine area instead of deleting it.
    ArtifactQuarantined,
    /// A quarantined artifact was put back in its conversation directory.
    ArtifactRestored,
    /// A user acknowledged what a lifecycle policy change means (the acknowledgments trail).
    LifecycleAcknowledged,
    /// A lifecycle policy was created, versioned, enabled, disabled or re-pointed.
    LifecyclePolicyChanged,
    /// A confidential-flag policy set or cleared a conversation's confidential flag.
    ConfidentialFlagChanged,
    /// A legal matter was created (the legal-hold trail).
    MatterCreated,
    /// A legal hold was placed under a matter: its criteria or its conversations.
    LegalHoldPlaced,
    /// A matter's holds were released.
    LegalHoldReleased,
    /// A change making a delete version take effect was requested, to be approved by another
    /// user (`[lifecycle] approvals = 2`).
    LifecycleChangeRequested,
    /// A second user approved a requested change, which was applied with this event.
    LifecycleChangeApproved,
    /// A requested change was rejected.
    LifecycleChangeRejected,
    /// A requested change expired before anyone decided it.
    LifecycleChangeExpired,
    /// A portal and API account was added (`user add`), with its groups.
    AccountAdded,
    /// An account was removed, its sessions ended and its tokens revoked (`user remove`).
    AccountRemoved,
    /// A new API token of an account was issued (`user token`; the token is never recorded).
    AccountTokenIssued,
    /// Someone verified the whole trail through the portal or the API, with what it found.
    TrailVerified,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::ConversationExported => "conversation_exported",
            AuditKind::ArtifactDeleted => "artifact_deleted",
            AuditKind::ArtifactQuarantined => "artifact_quarantined",
            AuditKind::ArtifactRestored => "artifact_restored",
            AuditKind::LifecycleAcknowledged => "lifecycle_acknowledged",
            AuditKind::LifecyclePolicyChanged => "lifecycle_policy_changed",
            AuditKind::ConfidentialFlagChanged => "confidential_flag_changed",
            AuditKind::MatterCreated => "matter_created",
            AuditKind::LegalHoldPlaced => "legal_hold_placed",
            AuditKind::LegalHoldReleased => "legal_hold_released",
            AuditKind::LifecycleChangeRequested => "lifecycle_change_requested",
            AuditKind::LifecycleChangeApproved => "lifecycle_change_approved",
            AuditKind::LifecycleChangeRejected => "lifecycle_change_rejected",
            AuditKind::LifecycleChangeExpired => "lifecycle_change_expired",
            AuditKind::AccountAdded => "account_added",
            AuditKind::AccountRemoved => "account_removed",
            AuditKind::AccountTokenIssued => "account_token_issued",
            AuditKind::TrailVerified => "trail_verified",
        }
    }

    pub fn parse(s: &str) -> Option<AuditKind> {
        match s {
            "conversation_exported" => Some(AuditKind::ConversationExported),
            "artifact_deleted" => Some(AuditKind::ArtifactDeleted),
            "artifact_quarantined" => Some(AuditKind::ArtifactQuarantined),
            "artifact_restored" => Some(AuditKind::ArtifactRestored),
            "lifecycle_acknowledged" => Some(AuditKind::LifecycleAcknowledged),
            "lifecycle_policy_changed" => Some(AuditKind::LifecyclePolicyChanged),
            "confidential_flag_changed" => Some(AuditKind::ConfidentialFlagChanged),
            "matter_created" => Some(AuditKind::MatterCreated),
            "legal_hold_placed" => Some(AuditKind::LegalHoldPlaced),
            "legal_hold_released" => Some(AuditKind::LegalHoldReleased),
            "lifecycle_change_requested" => Some(AuditKind::LifecycleChangeRequested),
            "lifecycle_change_approved" => Some(AuditKind::LifecycleChangeApproved),
            "lifecycle_change_rejected" => Some(AuditKind::LifecycleChangeRejected),
            "lifecycle_change_expired" => Some(AuditKind::LifecycleChangeExpired),
            "account_added" => Some(AuditKind::AccountAdded),
            "account_removed" => Some(AuditKind::AccountRemoved),
            "account_token_issued" => Some(AuditKind::AccountTokenIssued),
            "trail_verified" => Some(AuditKind::TrailVerified),
            _ => None,
        }
    }
}

/// An event to append; the catalog assigns its sequence number and hashes.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
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
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub seq: i64,
    #[serde(flatten)]
    pub event: NewEvent,
    pub prev_hash: String,
    pub hash: String,
    /// The id of the key `hash` is an HMAC under; None for the plain events appended before
    /// the chain was keyed.
    pub key_id: Option<String>,
}

/// Hash of the chain's first predecessor.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The audit chain's head at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

/// An anchor of the audit chain, as found at a target.
#[derive(Clone, Debug, Serialize)]
pub struct Anchor {
    pub target: String,
    pub policy: String,
    pub run: i64,
    pub manifest: String,
    #[serde(flatten)]
    pub head: AuditHead,
}

impl NewEvent {
    /// Feeds the canonical content of this event stored at `seq` after `prev_hash`: each
    /// field length-prefixed, so no two events feed the same bytes.
    fn feed(&self, seq: i64, prev_hash: &str, update: &mut dyn FnMut(&[u8])) {
        let mut field = |v: &str| {
            update(&(v.len() as u64).to_le_bytes());
            update(v.as_bytes());
        };
        field(prev_hash);
        field(&seq.to_string());
        field(&self.at.to_rfc3339_opts(SecondsFormat::Micros, true));
        field(self.kind.as_str());
        field(&self.actor);
        field(self.policy.as_deref().unwrap_or(""));
        field(&self.run.map(|r| r.to_string()).unwrap_or_default());
        field(self.tenant.as_deref().unwrap_or(""));
        field(self.conversation_id.as_deref().unwrap_or(""));
        field(&self.details.to_string());
    }

    /// The plain chained hash of this event stored at `seq` after an event hashed
    /// `prev_hash`: SHA-256, as events before the chain was keyed have it.
    pub fn chain_hash(&self, seq: i64, prev_hash: &str) -> String {
        let mut h = Sha256::new();
        self.feed(seq, prev_hash, &mut |b| h.update(b));
        hex::encode(h.finalize())
    }

    /// The keyed chained hash: HMAC-SHA-256 under `key` of the same content.
    pub fn keyed_hash(&self, key: &ChainKey, seq: i64, prev_hash: &str) -> String {
        let mut ctx = key.context();
        self.feed(seq, prev_hash, &mut |b| ctx.update(b));
        hex::encode(ctx.sign().as_ref())
    }

    /// The hash under `key` when the chain is keyed, else the plain one.
    pub fn hash_with(&self, key: Option<&ChainKey>, seq: i64, prev_hash: &str) -> String {
        match key {
            Some(k) => self.keyed_hash(k, seq, prev_hash),
            None => self.chain_hash(seq, prev_hash),
        }
    }
}

/// Why the chain breaks at an event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainProblem {
    #[error("events {after}..{seq} are missing (the previous event is {after})")]
    Gap { after: i64, seq: i64 },
    #[error("prev_hash does not match the previous event")]
    PrevHash,
    #[error("content does not match its hash")]
    Content,
    #[error("content does not match its keyed hash (HMAC-SHA-256 under key {key_id})")]
    KeyedContent { key_id: String },
    #[error(
        "the event is not keyed, but the chain is keyed from event {keyed_from} on; a keyed chain never goes back to plain hashes"
    )]
    Unkeyed { keyed_from: i64 },
    #[error("the event names key {key_id}, but the chain is keyed with key {chain_id}")]
    KeyChanged { key_id: String, chain_id: String },
    #[error("the chain is keyed from here with key {key_id}, but no audit key was given")]
    NoKey { key_id: String },
    #[error("the chain is keyed from here with key {chain_id}, not with the given key {key_id}")]
    OtherKey { chain_id: String, key_id: String },
}

/// The first event that breaks the chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit trail broken at event {seq}: {problem}")]
pub struct ChainBreak {
    pub seq: i64,
    pub problem: ChainProblem,
}

impl Serialize for ChainBreak {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ChainBreak", 2)?;
        st.serialize_field("seq", &self.seq)?;
        st.serialize_field("problem", &self.problem.to_string())?;
        st.end()
    }
}

/// Checks events in order, from the chain's start: plain SHA-256 up to the first keyed
/// event, the HMAC under `key` from there on.
pub struct ChainVerifier<'k> {
    key: Option<&'k ChainKey>,
    seq: i64,
    hash: String,
    keyed_from: Option<i64>,
    events: u64,
}

impl<'k> ChainVerifier<'k> {
    pub fn new(key: Option<&'k ChainKey>) -> ChainVerifier<'k> {
        ChainVerifier {
            key,
            seq: 0,
            hash: GENESIS.to_owned(),
            keyed_from: None,
            events: 0,
        }
    }

    /// Checks the next event.
    pub fn check(&mut self, e: &AuditEvent) -> Result<(), ChainBreak> {
        let fail = |problem| ChainBreak {
            seq: e.seq,
            problem,
        };
        if e.seq != self.seq + 1 {
            return Err(fail(ChainProblem::Gap {
                after: self.seq,
                seq: e.seq,
            }));
        }
        if e.prev_hash != self.hash {
            return Err(fail(ChainProblem::PrevHash));
        }
        let key = match (&e.key_id, self.keyed_from) {
            (None, None) => None,
            (None, Some(keyed_from)) => return Err(fail(ChainProblem::Unkeyed { keyed_from })),
            (Some(id), keyed) => {
                let key = self
                    .key
                    .ok_or_else(|| fail(ChainProblem::NoKey { key_id: id.clone() }))?;
                if key.id() != id {
                    return Err(fail(match keyed {
                        Some(_) => ChainProblem::KeyChanged {
                            key_id: id.clone(),
                            chain_id: key.id().to_owned(),
                        },
                        None => ChainProblem::OtherKey {
                            chain_id: id.clone(),
                            key_id: key.id().to_owned(),
                        },
                    }));
                }
                self.keyed_from.get_or_insert(e.seq);
                Some(key)
            }
        };
        if e.event.hash_with(key, e.seq, &self.hash) != e.hash {
            return Err(fail(match key {
                Some(k) => ChainProblem::KeyedContent {
                    key_id: k.id().to_owned(),
                },
                None => ChainProblem::Content,
            }));
        }
        self.seq = e.seq;
        self.hash.clone_from(&e.hash);
        self.events += 1;
        Ok(())
    }

    /// Sequence and hash of the last event checked (0 and [`GENESIS`] before any).
    pub fn head(&self) -> (i64, &str) {
        (self.seq, &self.hash)
    }

    /// The first keyed event's sequence number, once checked.
    pub fn keyed_from(&self) -> Option<i64> {
        self.keyed_from
    }

    pub fn events(&self) -> u64 {
        self.events
    }
}

/// Checks a whole chain from its start; the head's hash when it holds.
pub fn verify_chain<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
    key: Option<&ChainKey>,
) -> Result<String, ChainBreak> {
    let mut v = ChainVerifier::new(key);
    for e in events {
        v.check(e)?;
    }
    Ok(v.head().1.to_owned())
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

    fn key(byte: u8) -> ChainKey {
        ChainKey::from_bytes(&[byte; 32])
    }

    /// Appends `e` as a catalog does.
    fn push(chain: &mut Vec<AuditEvent>, e: NewEvent, key: Option<&ChainKey>) {
        let (seq, prev) = chain
            .last()
            .map_or((1, GENESIS.to_owned()), |l| (l.seq + 1, l.hash.clone()));
        let hash = e.hash_with(key, seq, &prev);
        chain.push(AuditEvent {
            seq,
            event: e,
            prev_hash: prev,
            hash,
            key_id: key.map(|k| k.id().to_owned()),
        });
    }

    /// `plain` unkeyed events, then (with a key) `keyed` keyed ones.
    fn chain(plain: i64, keyed: Option<(&ChainKey, i64)>) -> Vec<AuditEvent> {
        let mut events = Vec::new();
        for n in 1..=plain {
            push(&mut events, event(n), None);
        }
        if let Some((k, count)) = keyed {
            for n in 1..=count {
                push(&mut events, event(plain + n), Some(k));
            }
        }
        events
    }

    /// Recomputes every hash from `from` on with plain SHA-256, as someone without the key
    /// would after an edit.
    fn rechain_plain(events: &mut [AuditEvent], from: usize) {
        let mut prev = if from == 0 {
            GENESIS.to_owned()
        } else {
            events[from - 1].hash.clone()
        };
        for e in &mut events[from..] {
            e.prev_hash = prev.clone();
            e.hash = e.event.chain_hash(e.seq, &prev);
            prev = e.hash.clone();
        }
    }

    #[test]
    fn actor_is_the_process_user() {
        let actor = current_actor();
        assert!(!actor.is_empty() && actor != "unknown", "{actor}");
    }

    #[test]
    fn intact_plain_chain_verifies() {
        let events = chain(5, None);
        assert_eq!(verify_chain(&events, None).unwrap(), events[4].hash);
        assert_eq!(
            verify_chain(&events, Some(&key(1))).unwrap(),
            events[4].hash
        );
    }

    #[test]
    fn edited_or_removed_events_break_the_chain() {
        let mut events = chain(5, None);
        events[2].event.details = serde_json::json!({"n": 99});
        assert_eq!(
            verify_chain(&events, None).unwrap_err(),
            ChainBreak {
                seq: 3,
                problem: ChainProblem::Content
            }
        );
        let mut events = chain(5, None);
        events.remove(1);
        assert_eq!(
            verify_chain(&events, None).unwrap_err(),
            ChainBreak {
                seq: 3,
                problem: ChainProblem::Gap { after: 1, seq: 3 }
            }
        );
    }

    #[test]
    fn keyed_hash_depends_on_the_key() {
        let e = event(1);
        assert_ne!(
            e.keyed_hash(&key(1), 1, GENESIS),
            e.keyed_hash(&key(2), 1, GENESIS)
        );
        assert_ne!(e.keyed_hash(&key(1), 1, GENESIS), e.chain_hash(1, GENESIS));
        assert_eq!(key(1).id().len(), 16);
        assert_ne!(key(1).id(), key(2).id());
    }

    #[test]
    fn keyed_chain_verifies_only_with_its_key() {
        let k = key(7);
        let events = chain(0, Some((&k, 4)));
        assert_eq!(verify_chain(&events, Some(&k)).unwrap(), events[3].hash);
        assert_eq!(
            verify_chain(&events, Some(&key(8))).unwrap_err().problem,
            ChainProblem::OtherKey {
                chain_id: k.id().into(),
                key_id: key(8).id().into()
            }
        );
        assert_eq!(
            verify_chain(&events, None).unwrap_err(),
            ChainBreak {
                seq: 1,
                problem: ChainProblem::NoKey {
                    key_id: k.id().into()
                }
            }
        );
    }

    #[test]
    fn mixed_chain_checks_plain_events_before_the_first_keyed_one_and_keyed_ones_after() {
        let k = key(3);
        let events = chain(3, Some((&k, 3)));
        let mut v = ChainVerifier::new(Some(&k));
        for e in &events {
            v.check(e).unwrap();
        }
        assert_eq!(v.keyed_from(), Some(4));
        assert_eq!(v.events(), 6);
        assert_eq!(v.head(), (6, events[5].hash.as_str()));
    }

    #[test]
    fn editing_a_keyed_event_and_rechaining_without_the_key_is_caught() {
        let k = key(3);
        let mut events = chain(3, Some((&k, 3)));
        events[4].event.details = serde_json::json!({"n": "forged"});
        rechain_plain(&mut events, 4);
        assert_eq!(
            verify_chain(&events, Some(&k)).unwrap_err(),
            ChainBreak {
                seq: 5,
                problem: ChainProblem::KeyedContent {
                    key_id: k.id().into()
                }
            }
        );
    }

    #[test]
    fn a_keyed_chain_cannot_go_back_to_plain_events() {
        let k = key(3);
        let mut events = chain(2, Some((&k, 1)));
        push(&mut events, event(9), None);
        assert_eq!(
            verify_chain(&events, Some(&k)).unwrap_err(),
            ChainBreak {
                seq: 4,
                problem: ChainProblem::Unkeyed { keyed_from: 3 }
            }
        );
        // Marking the last keyed events plain and recomputing them is the same.
        let mut events = chain(2, Some((&k, 3)));
        for e in &mut events[3..] {
            e.key_id = None;
        }
        rechain_plain(&mut events, 3);
        assert_eq!(
            verify_chain(&events, Some(&k)).unwrap_err().problem,
            ChainProblem::Unkeyed { keyed_from: 3 }
        );
    }

    #[test]
    fn an_event_keyed_with_another_key_is_caught() {
        let k = key(3);
        let mut events = chain(1, Some((&k, 1)));
        push(&mut events, event(9), Some(&key(4)));
        assert_eq!(
            verify_chain(&events, Some(&k)).unwrap_err(),
            ChainBreak {
                seq: 3,
                problem: ChainProblem::KeyChanged {
                    key_id: key(4).id().into(),
                    chain_id: k.id().into()
                }
            }
        );
    }
}
