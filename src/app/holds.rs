//! The `custodian hold …` commands: matters and legal holds kept in the catalog
//! (docs/operations.md, "Legal holds"). Each change is checked against the roles file
//! (LEGAL_HOLD_MANAGE; reading takes LEGAL_HOLD_READ) and committed with its audit event.
//!
//! A change also queues, in its transaction, a legal-hold sync of the conversations it covers
//! that have exported objects; [`sync`] then sets the Object Lock legal-hold status of their
//! objects on locked targets and takes them off the queue with an audit event per object
//! (docs/operations.md, "WORM exports"). What a crash or a failing store leaves queued, the
//! next sync finishes.

use std::collections::HashMap;

use chrono::Utc;

use super::Loaded;
use super::access::{AccessError, authorize};
use crate::audit::{AuditKind, NewEvent};
use crate::catalog::CatalogError;
use crate::catalog::holds::{HoldScope, HoldSync, Matter, MatterState};
use crate::policy::roles::Permission;
use crate::target::{ObjectKey, Target};
use crate::users::Actor;

/// What a user types after `--acknowledge` to release a matter's holds.
pub const RELEASE_ACKNOWLEDGMENT: &str = "hold-release";

/// What releasing means, recorded with the release's audit event.
const RELEASE_TEXT: &str = "Once released, the conversations these holds kept are deleted by the lifecycle sweep as soon as a policy makes them due, and cannot be retrieved.";

/// Why a hold command was refused or could not be done.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("a matter name must be non-empty printable text")]
    MatterName,
    #[error("no matter named `{0}` (see `custodian hold list`)")]
    NoSuchMatter(String),
    #[error(
        "say what to hold: --conversation TENANT/ID (repeatable) for an explicit hold, or at least one criterion (--tenant, --user, --extension, --start-after, …) for a standing hold; see `custodian hold add --help`"
    )]
    NothingToHold,
    #[error(
        "a hold is either explicit (--conversation) or standing (criteria), not both: place two holds"
    )]
    ConversationsAndCriteria,
    #[error(
        "a standing hold takes absolute instants (--start-after, --start-before), not {0}: days counted from today would move what it holds"
    )]
    RelativeDays(&'static str),
    #[error("--{}: {}", .0.replace('_', "-"), .1)]
    Criteria(&'static str, String),
    #[error(
        "releasing the holds of matter `{matter}` lets the lifecycle sweep delete what they kept; rerun with:\n  --acknowledge {ack}   ({text})",
        ack = RELEASE_ACKNOWLEDGMENT,
        text = RELEASE_TEXT
    )]
    NotAcknowledged { matter: String },
}

/// A hold just placed.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct Placed {
    pub id: i64,
    pub matter: String,
    pub scope: HoldScope,
    /// The legal-hold sync run right after.
    pub sync: SyncReport,
}

/// What a legal-hold sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct SyncReport {
    /// Conversations whose objects are now as their holds say, taken off the queue.
    pub conversations: u64,
    /// Objects whose legal-hold status was set ON.
    pub on: u64,
    /// Objects whose legal-hold status was set OFF.
    pub off: u64,
    /// Objects recorded but not in the store (a write that failed after its key was claimed).
    pub missing: u64,
    /// Why conversations were left queued, one line each: the next sync tries them again.
    pub left: Vec<String>,
}

/// Conversations read from the sync queue at once.
const SYNC_PAGE: usize = 500;

fn event(actor: &Actor, kind: AuditKind, details: serde_json::Value) -> NewEvent {
    NewEvent {
        at: Utc::now(),
        kind,
        actor: actor.user.clone(),
        policy: None,
        run: None,
        tenant: None,
        conversation_id: None,
        details,
    }
}

fn check_name(name: &str) -> Result<(), HoldError> {
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err(HoldError::MatterName);
    }
    Ok(())
}

/// `hold create`: a matter, holding nothing yet.
pub fn create(l: &Loaded, name: &str, description: &str) -> Result<Matter, HoldError> {
    let actor = authorize(l, &[Permission::LegalHoldManage])?;
    check_name(name)?;
    let matter = Matter {
        name: name.to_owned(),
        description: description.to_owned(),
        created_at: Utc::now(),
        created_by: actor.user.clone(),
    };
    let e = event(
        &actor,
        AuditKind::MatterCreated,
        serde_json::json!({"matter": name, "description": description}),
    );
    l.catalog.create_matter(&matter, &e)?;
    Ok(matter)
}

/// What `hold add` holds: conversations, or criteria (a standing hold). Exactly one of them
/// must say something.
fn scope(scope: HoldScope) -> Result<HoldScope, HoldError> {
    match scope {
        HoldScope::Conversations(mut list) => {
            if list.is_empty() {
                return Err(HoldError::NothingToHold);
            }
            list.sort();
            list.dedup();
            Ok(HoldScope::Conversations(list))
        }
        HoldScope::Standing(criteria) => {
            if *criteria == Default::default() {
                return Err(HoldError::NothingToHold);
            }
            if criteria.older_than_days.is_some() {
                return Err(HoldError::RelativeDays("older_than_days"));
            }
            if criteria.newer_than_days.is_some() {
                return Err(HoldError::RelativeDays("newer_than_days"));
            }
            criteria
                .validate()
                .map_err(|(key, message)| HoldError::Criteria(key, message))?;
            Ok(HoldScope::Standing(criteria))
        }
    }
}

/// `hold add`: places a hold under a matter. `conversations` and `criteria` are what the
/// command line gave; one of them, and only one, must say what to hold.
pub fn add(
    l: &Loaded,
    matter: &str,
    conversations: Vec<crate::catalog::holds::ConversationRef>,
    criteria: crate::filter::Criteria,
) -> Result<Placed, HoldError> {
    let actor = authorize(l, &[Permission::LegalHoldManage])?;
    let held = match (conversations.is_empty(), criteria == Default::default()) {
        (false, false) => return Err(HoldError::ConversationsAndCriteria),
        (false, true) => scope(HoldScope::Conversations(conversations))?,
        (true, _) => scope(HoldScope::Standing(Box::new(criteria)))?,
    };
    let details = match &held {
        HoldScope::Standing(c) => serde_json::json!({"matter": matter, "criteria": c}),
        HoldScope::Conversations(list) => serde_json::json!({
            "matter": matter,
            "conversations": list.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }),
    };
    let e = event(&actor, AuditKind::LegalHoldPlaced, details);
    let id = l
        .catalog
        .place_hold(matter, &held, e.at, &actor.user, &e, &locked(l))?;
    Ok(Placed {
        id,
        matter: matter.to_owned(),
        scope: held,
        sync: drain(l, &actor)?,
    })
}

/// `hold release`: releases every active hold of a matter, once acknowledged; returns how
/// many were released, and the legal-hold sync run right after.
pub fn release(l: &Loaded, matter: &str, given: &[String]) -> Result<(u64, SyncReport), HoldError> {
    let actor = authorize(l, &[Permission::LegalHoldManage])?;
    if !given.iter().any(|g| g == RELEASE_ACKNOWLEDGMENT) {
        return Err(HoldError::NotAcknowledged {
            matter: matter.to_owned(),
        });
    }
    let e = event(
        &actor,
        AuditKind::LegalHoldReleased,
        serde_json::json!({
            "matter": matter,
            "acknowledgment": RELEASE_ACKNOWLEDGMENT,
            "text": RELEASE_TEXT,
        }),
    );
    let released = l
        .catalog
        .release_holds(matter, e.at, &actor.user, &e, &locked(l))?;
    Ok((released, drain(l, &actor)?))
}

/// The targets writing under Object Lock, whose objects a hold change queues for a sync.
fn locked(l: &Loaded) -> Vec<String> {
    l.config
        .targets
        .iter()
        .filter(|(_, t)| t.object_lock().is_some())
        .map(|(name, _)| name.clone())
        .collect()
}

/// `hold sync`: sets the legal-hold status of the objects of every queued conversation.
pub fn sync(l: &Loaded) -> Result<SyncReport, HoldError> {
    let actor = authorize(l, &[Permission::LegalHoldManage])?;
    drain(l, &actor)
}

/// The locked targets a sync has opened (and checked), or why one cannot be used.
type Opened = HashMap<String, Result<Box<dyn Target>, String>>;

/// Works through the sync queue once, page by page.
pub(super) fn drain(l: &Loaded, actor: &Actor) -> Result<SyncReport, HoldError> {
    let mut report = SyncReport::default();
    let mut opened = Opened::new();
    let mut after = None;
    loop {
        let page = l.catalog.hold_syncs(after.as_ref(), SYNC_PAGE)?;
        let Some(last) = page.last() else {
            return Ok(report);
        };
        after = Some(last.conversation.clone());
        let mut done = Vec::new();
        let mut events = Vec::new();
        for queued in page {
            match apply(l, &mut opened, &queued) {
                Ok(set) => {
                    for (target, key, found) in set {
                        if !found {
                            report.missing += 1;
                            continue;
                        }
                        if queued.held {
                            report.on += 1;
                        } else {
                            report.off += 1;
                        }
                        events.push(status_event(actor, &queued, &target, &key));
                    }
                    report.conversations += 1;
                    done.push(queued);
                }
                Err(why) => report.left.push(format!("{}: {why}", queued.conversation)),
            }
        }
        l.catalog.finish_hold_syncs(&done, &events)?;
    }
}

/// Sets the status of every object of `queued` on a locked target; returns each as (target,
/// key, whether the store had it), or why one could not be set.
fn apply(
    l: &Loaded,
    opened: &mut Opened,
    queued: &HoldSync,
) -> Result<Vec<(String, String, bool)>, String> {
    let mut set = Vec::new();
    for (name, key) in &queued.objects {
        let Some(config) = l.config.targets.get(name) else {
            continue;
        };
        if config.object_lock().is_none() {
            continue;
        }
        let target = opened
            .entry(name.clone())
            .or_insert_with(|| {
                let target = crate::target::build(name, config, None).map_err(|e| e.to_string())?;
                target.check().map_err(|e| e.to_string())?;
                Ok(target)
            })
            .as_ref()
            .map_err(Clone::clone)?;
        let object = ObjectKey::new(key.as_str()).map_err(|e| format!("target `{name}`: {e}"))?;
        let found = target
            .set_legal_hold(&object, queued.held)
            .map_err(|e| e.to_string())?;
        set.push((name.clone(), key.clone(), found));
    }
    Ok(set)
}

/// The audit event of one object's legal-hold status set.
fn status_event(actor: &Actor, queued: &HoldSync, target: &str, key: &str) -> NewEvent {
    NewEvent {
        tenant: Some(queued.conversation.tenant.clone()),
        conversation_id: Some(queued.conversation.id.clone()),
        ..event(
            actor,
            AuditKind::LegalHoldStatusSet,
            serde_json::json!({
                "target": target,
                "key": key,
                "legal_hold": if queued.held { "ON" } else { "OFF" },
            }),
        )
    }
}

/// `hold list`: every matter, with what its active holds cover.
pub fn list(l: &Loaded) -> Result<Vec<MatterState>, HoldError> {
    authorize(l, &[Permission::LegalHoldRead])?;
    Ok(l.catalog.matters(None)?)
}

/// `hold show`: one matter with its holds.
pub fn show(l: &Loaded, name: &str) -> Result<MatterState, HoldError> {
    authorize(l, &[Permission::LegalHoldRead])?;
    l.catalog
        .matters(Some(name))?
        .pop()
        .ok_or_else(|| HoldError::NoSuchMatter(name.to_owned()))
}
