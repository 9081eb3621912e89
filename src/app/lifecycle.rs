//! The `custodian lifecycle …` commands, `plan lifecycle` and `run lifecycle`: retention policy
//! administration, each change checked against the roles file and committed with its audit
//! events (acknowledgments included), and the sweep as a controlled job run.

use chrono::{DateTime, TimeDelta, Utc};

use super::access::{AccessError, authorize};
use super::control::{self, ControlError, Controlled, Watchers};
use super::{Loaded, SetupError};
use crate::audit::{AuditKind, NewEvent};
use crate::catalog::CatalogError;
use crate::catalog::lifecycle::{
    ChangeKind, ChangeState, LifecyclePolicy, LifecycleVersion, PendingChange, RetentionAction,
};
use crate::pipeline::Control;
use crate::policy::Policy;
use crate::policy::index::IndexError;
use crate::policy::lifecycle::{
    self, Acknowledgment, DueSummary, LIFECYCLE_RUN, Limits, Repo, SweepError, SweepSummary,
};
use crate::policy::quarantine::{self, RestoreError, RestoreReport, RestoreWhat};
use crate::policy::roles::Permission;
use crate::progress::Progress;
use crate::repository::record::{ArtifactType, AudioRecordingType};
use crate::source::RepositoryConfig;
#[cfg(feature = "remote")]
use crate::source::Store;
use crate::users::Actor;

/// Why a lifecycle command was refused or could not be done.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("--conversation takes TENANT/ID, such as acme/c1, not `{0}`")]
    ConversationRef(String),
    #[error("give either --conversation TENANT/ID or --run R: what to restore")]
    RestoreWhat,
    #[error("no lifecycle policy named `{0}` (see `custodian lifecycle list`)")]
    NoSuchPolicy(String),
    #[error("an audio_recording policy covers one audio recording type: add --audio-type ({0})")]
    NeedsAudioType(String),
    #[error("--audio-type applies only to --artifact-type audio_recording")]
    AudioTypeNotApplicable,
    #[error("a policy name must be non-empty printable text")]
    PolicyName,
    #[error("a version name must be non-empty printable text")]
    VersionName,
    #[error("give --keep-forever or --delete-after-days N")]
    NoAction,
    #[error(
        "--require-export applies to a version that deletes: a version that keeps forever deletes nothing; drop --require-export or give --delete-after-days N"
    )]
    RequireExportKeepsForever,
    /// `--require-export` names no export policy of the config.
    #[error("--require-export {name}: {what}; name an export policy of the config ({known})")]
    NotAnExportPolicy {
        name: String,
        what: String,
        known: String,
    },
    /// A retention action or acknowledgments that do not hold.
    #[error("{0}")]
    Refused(String),
    #[error(
        "policy `{0}` has no version yet: publish one with `custodian lifecycle version {0} VERSION …`"
    )]
    NoVersionToEnable(String),
    #[error(
        "policy `{0}` has no active version: make one active with `custodian lifecycle activate {0} VERSION …`"
    )]
    NoActiveVersion(String),
    #[error("policy `{0}` has no version and is not enabled")]
    NoVersionToDisable(String),
    #[error("no change {0} (see `custodian lifecycle pending --all`)")]
    NoSuchChange(i64),
    #[error("policy `{name}` has no version `{version}` (published: {published})")]
    NoSuchVersion {
        name: String,
        version: String,
        published: String,
    },
}

/// An enable, disable or activate.
pub enum Switch<'a> {
    Enable,
    Disable,
    /// Make this published version the active one.
    Activate(&'a str),
}

/// A policy after an enable, disable or activate.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct Switched {
    pub policy: String,
    pub enabled: bool,
    pub version: LifecycleVersion,
}

/// What an enable, disable or activate did: applied it, or, under four eyes, requested it
/// for another user's approval.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchOutcome {
    Applied(Switched),
    Requested(PendingChange),
}

/// A version just published.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct Published {
    /// The policy's name.
    pub policy: String,
    pub version: LifecycleVersion,
    /// The policy's first version, which under four eyes did not become active because it
    /// deletes: an approved `activate` makes it active.
    pub awaits_activation: bool,
}

/// What `run lifecycle` did.
pub enum Sweep {
    Done(SweepSummary),
    /// The repository root could not be opened, or more is due than the limits allow.
    Refused(SweepError),
}

fn event(actor: &Actor, kind: AuditKind, policy: &str, details: serde_json::Value) -> NewEvent {
    NewEvent {
        at: Utc::now(),
        kind,
        actor: actor.user.clone(),
        policy: Some(policy.to_owned()),
        run: None,
        tenant: None,
        conversation_id: None,
        details,
    }
}

fn find(l: &Loaded, name: &str) -> Result<LifecyclePolicy, LifecycleError> {
    l.catalog
        .lifecycle_policies()?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| LifecycleError::NoSuchPolicy(name.to_owned()))
}

/// `lifecycle create`: a disabled policy without versions for an artifact type.
pub fn create(
    l: &Loaded,
    name: &str,
    artifact_type: ArtifactType,
    audio_type: Option<AudioRecordingType>,
    description: &str,
) -> Result<LifecyclePolicy, LifecycleError> {
    let actor = authorize(l, &[Permission::Create])?;
    match (artifact_type, audio_type) {
        (ArtifactType::AudioRecording, None) => {
            return Err(LifecycleError::NeedsAudioType(
                AudioRecordingType::ALL
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        (t, Some(_)) if t != ArtifactType::AudioRecording => {
            return Err(LifecycleError::AudioTypeNotApplicable);
        }
        _ => {}
    }
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(LifecycleError::PolicyName);
    }
    let policy = LifecyclePolicy::new(name, description, artifact_type, audio_type, &actor.user);
    let e = event(
        &actor,
        AuditKind::LifecyclePolicyChanged,
        name,
        serde_json::json!({"change": "created", "scope": policy.scope(), "description": description}),
    );
    l.catalog.create_lifecycle_policy(&policy, &e)?;
    Ok(policy)
}

/// `lifecycle version`: publishes an immutable version. A policy's first version becomes its
/// active one, unless it deletes under four eyes. With `require_export`, a delete version
/// deletes an artifact only once that export policy of the config exported it
/// (docs/operations.md, "Export before delete").
pub fn publish(
    l: &Loaded,
    name: &str,
    version: &str,
    keep_forever: bool,
    delete_after_days: Option<u64>,
    require_export: Option<&str>,
) -> Result<Published, LifecycleError> {
    let actor = authorize(l, &[Permission::Create])?;
    let action = match (keep_forever, delete_after_days) {
        (true, _) => RetentionAction::KeepForever,
        (false, Some(days)) => {
            RetentionAction::delete_after(days).map_err(LifecycleError::Refused)?
        }
        (false, None) => return Err(LifecycleError::NoAction),
    };
    if version.is_empty() || version.chars().any(char::is_control) {
        return Err(LifecycleError::VersionName);
    }
    if let Some(export) = require_export {
        if action == RetentionAction::KeepForever {
            return Err(LifecycleError::RequireExportKeepsForever);
        }
        export_policy(l, export)?;
    }
    let v = LifecycleVersion {
        require_export: require_export.map(str::to_owned),
        ..LifecycleVersion::new(version, action, &actor.user)
    };
    let e = event(
        &actor,
        AuditKind::LifecyclePolicyChanged,
        name,
        serde_json::json!({"change": "version_published", "version": v}),
    );
    let withhold = four_eyes(l, action);
    let first = l
        .catalog
        .publish_lifecycle_version_activating(name, &v, !withhold, &e)?;
    Ok(Published {
        policy: name.to_owned(),
        version: v,
        awaits_activation: first && withhold,
    })
}

/// Whether, under the config's `approvals`, making a version with `action` active needs a
/// second user's approval (docs/operations.md, "Four eyes").
fn four_eyes(l: &Loaded, action: RetentionAction) -> bool {
    l.config.lifecycle.approvals == 2 && matches!(action, RetentionAction::Delete { .. })
}

/// Refuses `name` unless it is an export policy of the config, naming those there are.
fn export_policy(l: &Loaded, name: &str) -> Result<(), LifecycleError> {
    let what = match l.config.policies.get(name) {
        Some(Policy::Export(_)) => return Ok(()),
        Some(Policy::Confidential(_)) => "a confidential-flag policy, which exports nothing",
        None => "the config has no policy of that name",
    };
    let known: Vec<&str> = l
        .config
        .policies
        .values()
        .filter(|p| matches!(p, Policy::Export(_)))
        .map(Policy::name)
        .collect();
    Err(LifecycleError::NotAnExportPolicy {
        name: name.to_owned(),
        what: what.into(),
        known: if known.is_empty() {
            "it has none".into()
        } else {
            format!("export policies: {}", known.join(", "))
        },
    })
}

/// `lifecycle enable`, `disable` and `activate`, once the acknowledgments the version needs
/// are `given`; each acknowledgment is an audit event committed with the change. Under four
/// eyes an enable or activate that makes a delete version active or enables a policy whose
/// active version deletes is not applied but requested, for another user to approve.
pub fn switch(
    l: &Loaded,
    name: &str,
    switch: Switch<'_>,
    given: &[String],
) -> Result<SwitchOutcome, LifecycleError> {
    let permission = match switch {
        Switch::Disable => Permission::Delete,
        Switch::Enable | Switch::Activate(_) => Permission::Create,
    };
    let actor = authorize(l, &[permission])?;
    let p = find(l, name)?;
    let (enabled, version, what) = match switch {
        Switch::Enable => {
            let v = p.active().ok_or_else(|| {
                if p.versions.is_empty() {
                    LifecycleError::NoVersionToEnable(name.to_owned())
                } else {
                    LifecycleError::NoActiveVersion(name.to_owned())
                }
            })?;
            (true, v, "enable")
        }
        Switch::Disable => {
            let v = p
                .active()
                .ok_or_else(|| LifecycleError::NoVersionToDisable(name.to_owned()))?;
            (false, v, "disable")
        }
        Switch::Activate(version) => {
            let v = p
                .version(version)
                .ok_or_else(|| LifecycleError::NoSuchVersion {
                    name: name.to_owned(),
                    version: version.to_owned(),
                    published: p
                        .versions
                        .iter()
                        .map(|v| v.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            (p.enabled, v, "activate")
        }
    };
    let needed = Acknowledgment::needed_for(version);
    Acknowledgment::check(&needed, given).map_err(LifecycleError::Refused)?;
    let mut events = acknowledged(&actor, &p.name, what, &version.name, &needed);
    let changes = (enabled, Some(&version.name)) != (p.enabled, p.active_version.as_ref());
    let kind = match switch {
        Switch::Enable => Some(ChangeKind::Enable),
        Switch::Activate(_) => Some(ChangeKind::Activate),
        Switch::Disable => None,
    };
    if let Some(kind) = kind.filter(|_| changes && four_eyes(l, version.action)) {
        return request(l, &actor, &p, kind, version, &needed, events);
    }
    events.push(event(
        &actor,
        AuditKind::LifecyclePolicyChanged,
        &p.name,
        serde_json::json!({"change": what, "version": version.name, "enabled": enabled}),
    ));
    l.catalog
        .update_lifecycle_policy(&p.name, enabled, &version.name, &events)?;
    Ok(SwitchOutcome::Applied(Switched {
        policy: p.name.clone(),
        enabled,
        version: version.clone(),
    }))
}

/// One `lifecycle_acknowledged` event per acknowledgment of a change.
fn acknowledged(
    actor: &Actor,
    policy: &str,
    what: &str,
    version: &str,
    acknowledgments: &[Acknowledgment],
) -> Vec<NewEvent> {
    acknowledgments
        .iter()
        .map(|a| {
            event(
                actor,
                AuditKind::LifecycleAcknowledged,
                policy,
                serde_json::json!({
                    "change": what,
                    "version": version,
                    "acknowledgment": a.token(),
                    "text": a.text(),
                }),
            )
        })
        .collect()
}

/// Records an enable or activate as a pending change, with the requester's acknowledgments
/// (`events`) and the request's own event; expired changes are recorded first, so that one
/// that expired no longer blocks the policy.
fn request(
    l: &Loaded,
    actor: &Actor,
    p: &LifecyclePolicy,
    kind: ChangeKind,
    version: &LifecycleVersion,
    acknowledgments: &[Acknowledgment],
    mut events: Vec<NewEvent>,
) -> Result<SwitchOutcome, LifecycleError> {
    let now = Utc::now();
    l.catalog.expire_lifecycle_changes(now, &actor.user)?;
    let expiry = TimeDelta::from_std(l.config.lifecycle.approval_expiry).unwrap_or(TimeDelta::MAX);
    let mut change = PendingChange {
        id: 0,
        policy: p.name.clone(),
        change: kind,
        version: version.name.clone(),
        enabled_before: p.enabled,
        version_before: p.active_version.clone(),
        acknowledgments: acknowledgments
            .iter()
            .map(|a| a.token().to_owned())
            .collect(),
        requested_by: actor.user.clone(),
        requested_at: now,
        expires_at: now
            .checked_add_signed(expiry)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
        state: ChangeState::Pending,
        decided_by: None,
        decided_at: None,
    };
    events.push(event(
        actor,
        AuditKind::LifecycleChangeRequested,
        &p.name,
        serde_json::json!({
            "change": kind.as_str(),
            "version": version.name,
            "enabled": change.enabled_after(),
            "expires_at": change.expires_at,
        }),
    ));
    change.id = l.catalog.request_lifecycle_change(&change, &events)?;
    Ok(SwitchOutcome::Requested(change))
}

/// The change `id` after recording what expired (noticed by `actor`).
fn noticed(l: &Loaded, actor: &Actor, id: i64) -> Result<PendingChange, LifecycleError> {
    l.catalog
        .expire_lifecycle_changes(Utc::now(), &actor.user)?;
    l.catalog
        .lifecycle_changes(false)?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or(LifecycleError::NoSuchChange(id))
}

/// `lifecycle approve`: another user than the requester, holding the approve permission and
/// giving the acknowledgments the change needs, applies it with its audit events.
pub fn approve(l: &Loaded, id: i64, given: &[String]) -> Result<PendingChange, LifecycleError> {
    let actor = authorize(l, &[Permission::Approve])?;
    let c = noticed(l, &actor, id)?;
    let p = find(l, &c.policy)?;
    let now = Utc::now();
    c.check_decision(
        ChangeState::Approved,
        &actor.user,
        now,
        (p.enabled, p.active_version.as_deref()),
    )?;
    let version = p
        .version(&c.version)
        .ok_or_else(|| LifecycleError::NoSuchVersion {
            name: p.name.clone(),
            version: c.version.clone(),
            published: p
                .versions
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let needed = Acknowledgment::needed_for(version);
    Acknowledgment::check(&needed, given).map_err(LifecycleError::Refused)?;
    let what = c.change.as_str();
    let mut events = acknowledged(&actor, &p.name, what, &version.name, &needed);
    events.push(event(
        &actor,
        AuditKind::LifecycleChangeApproved,
        &p.name,
        serde_json::json!({
            "change": what,
            "version": version.name,
            "requested_by": c.requested_by,
            "requested_at": c.requested_at,
        }),
    ));
    events.push(event(
        &actor,
        AuditKind::LifecyclePolicyChanged,
        &p.name,
        serde_json::json!({"change": what, "version": version.name, "enabled": c.enabled_after()}),
    ));
    Ok(l.catalog
        .decide_lifecycle_change(id, ChangeState::Approved, &actor.user, now, &events)?)
}

/// `lifecycle reject`: closes a pending change without applying it. It needs the approve
/// permission and no acknowledgment: a rejection leaves the policy as it is.
pub fn reject(l: &Loaded, id: i64) -> Result<PendingChange, LifecycleError> {
    let actor = authorize(l, &[Permission::Approve])?;
    let c = noticed(l, &actor, id)?;
    let now = Utc::now();
    c.check_decision(ChangeState::Rejected, &actor.user, now, (false, None))?;
    let e = event(
        &actor,
        AuditKind::LifecycleChangeRejected,
        &c.policy,
        serde_json::json!({
            "change": c.change.as_str(),
            "version": c.version,
            "requested_by": c.requested_by,
            "requested_at": c.requested_at,
        }),
    );
    Ok(l.catalog
        .decide_lifecycle_change(id, ChangeState::Rejected, &actor.user, now, &[e])?)
}

/// `lifecycle pending`: the changes waiting for approval (with `all`, decided ones too), after
/// recording those that expired.
pub fn pending(l: &Loaded, all: bool) -> Result<Vec<PendingChange>, LifecycleError> {
    let actor = authorize(l, &[Permission::Read])?;
    l.catalog
        .expire_lifecycle_changes(Utc::now(), &actor.user)?;
    Ok(l.catalog.lifecycle_changes(!all)?)
}

/// `lifecycle list`: every policy.
pub fn list(l: &Loaded) -> Result<Vec<LifecyclePolicy>, LifecycleError> {
    authorize(l, &[Permission::Read])?;
    Ok(l.catalog.lifecycle_policies()?)
}

/// `lifecycle show`: one policy with its versions.
pub fn show(l: &Loaded, name: &str) -> Result<LifecyclePolicy, LifecycleError> {
    authorize(l, &[Permission::Read])?;
    find(l, name)
}

/// `plan lifecycle` / `run lifecycle --dry-run`: what is due now, per policy, after indexing
/// (unless `no_index`).
pub fn plan(
    l: &Loaded,
    no_index: bool,
    index_progress: &dyn Progress,
) -> Result<Vec<DueSummary>, LifecycleError> {
    if !no_index {
        l.index(index_progress, &Control::default())?;
    }
    Ok(lifecycle::plan(
        l.catalog.as_ref(),
        Utc::now(),
        l.config.lifecycle.quarantine.as_ref().map(|q| q.days),
    )?)
}

/// `run lifecycle`: the sweep, as a job run under the `[lifecycle]` job settings. It needs a
/// permission of its own, and `force` (past the safety limits) another.
pub fn run(
    l: &Loaded,
    no_index: bool,
    force: bool,
    watchers: Watchers<'_>,
) -> Result<Controlled<Sweep>, LifecycleError> {
    let needed: &[Permission] = if force {
        &[Permission::Run, Permission::Force]
    } else {
        &[Permission::Run]
    };
    let actor = authorize(l, needed)?;
    let job = l.config.lifecycle.job.clone();
    let log = watchers.log;
    control::controlled(
        l,
        LIFECYCLE_RUN,
        &job,
        watchers,
        |control, [index, work]| {
            let _lock = l.catalog.lock_policy(LIFECYCLE_RUN)?;
            let index = if no_index {
                None
            } else {
                Some(l.index(index, control)?)
            };
            let limits = Limits {
                max_count: l.config.lifecycle.max_deletes_per_run,
                max_share: l.config.lifecycle.max_delete_share,
                force,
            };
            work.message("delete");
            #[cfg(feature = "remote")]
            let store;
            let repo = match &l.config.repository {
                RepositoryConfig::Filesystem { root } => Repo::Dir {
                    root,
                    quarantine: l.config.lifecycle.quarantine.as_ref(),
                },
                #[cfg(feature = "remote")]
                RepositoryConfig::Store(target) => {
                    store = Store::connect(target).map_err(SetupError::from)?;
                    Repo::Store(&store)
                }
                // A build without object stores refuses it, naming why.
                #[cfg(not(feature = "remote"))]
                RepositoryConfig::Store(_) => Repo::Dir {
                    root: l
                        .local_root("the lifecycle sweep")
                        .map_err(SetupError::from)?,
                    quarantine: None,
                },
            };
            match lifecycle::run(
                l.catalog.as_ref(),
                repo,
                Utc::now(),
                &job,
                &format!("{} (lifecycle)", actor.user),
                limits,
                index,
                work,
                control,
                log,
            ) {
                Ok(summary) => Ok(Sweep::Done(summary)),
                Err(SweepError::Catalog(e)) => Err(e.into()),
                Err(e) => Ok(Sweep::Refused(e)),
            }
        },
    )
}

/// `lifecycle restore`: puts back what `conversation` (TENANT/ID) or the sweep `run` has in
/// quarantine in their conversation directories, under the sweep's lock (no sweep runs
/// meanwhile), each restore audited (docs/operations.md, "Quarantine").
pub fn restore(
    l: &Loaded,
    conversation: Option<&str>,
    run: Option<i64>,
) -> Result<RestoreReport, LifecycleError> {
    let actor = authorize(l, &[Permission::Restore])?;
    let what = match (conversation, run) {
        (Some(r), None) => match r.split_once('/') {
            Some((tenant, id)) if !tenant.is_empty() && !id.is_empty() && !id.contains('/') => {
                RestoreWhat::Conversation {
                    tenant: tenant.to_owned(),
                    id: id.to_owned(),
                }
            }
            _ => return Err(LifecycleError::ConversationRef(r.to_owned())),
        },
        (None, Some(r)) => RestoreWhat::Run(crate::catalog::RunId(r)),
        _ => return Err(LifecycleError::RestoreWhat),
    };
    let _lock = l.catalog.lock_policy(LIFECYCLE_RUN)?;
    let control = Control::default();
    let by = lifecycle::Deleter {
        actor: &actor.user,
        run: None,
        control: &control,
    };
    Ok(quarantine::restore(
        l.catalog.as_ref(),
        l.local_root("restoring from quarantine")
            .map_err(SetupError::from)?,
        l.config.lifecycle.quarantine.as_ref(),
        &what,
        by,
    )?)
}
