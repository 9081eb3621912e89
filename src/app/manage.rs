//! The management commands (`lifecycle …`, `hold …`) as values: a [`Request`] says what to
//! do, [`execute`] does it with the same `app` functions and permission checks whoever asks,
//! and an [`Outcome`] says what was done. The command line executes requests itself, or, when
//! the config names a socket, hands them to `custodian serve`, which executes them acting as
//! the peer the kernel named (docs/operations.md, "The service and its socket"). Both print
//! the outcome with the same code, so an answer reads the same whichever way it came.

use serde::{Deserialize, Serialize};

use super::Loaded;
use super::holds::{self, HoldError, Placed, SyncReport};
use super::lifecycle::{self, LifecycleError, Published, Switch, SwitchOutcome};
use crate::catalog::holds::{ConversationRef, Matter, MatterState};
use crate::catalog::lifecycle::{LifecyclePolicy, PendingChange};
use crate::filter::Criteria;
use crate::policy::quarantine::RestoreReport;
use crate::repository::record::{ArtifactType, AudioRecordingType};

/// A `lifecycle …` command and its arguments.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LifecycleRequest {
    Create {
        name: String,
        artifact_type: ArtifactType,
        audio_type: Option<AudioRecordingType>,
        description: String,
    },
    Version {
        name: String,
        version: String,
        keep_forever: bool,
        delete_after_days: Option<u64>,
        require_export: Option<String>,
    },
    Enable {
        name: String,
        acknowledge: Vec<String>,
    },
    Disable {
        name: String,
        acknowledge: Vec<String>,
    },
    Activate {
        name: String,
        version: String,
        acknowledge: Vec<String>,
    },
    Pending {
        all: bool,
    },
    Approve {
        change: i64,
        acknowledge: Vec<String>,
    },
    Reject {
        change: i64,
    },
    List,
    Show {
        name: String,
    },
    Restore {
        conversation: Option<String>,
        run: Option<i64>,
    },
}

/// A `hold …` command and its arguments.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HoldRequest {
    Create {
        matter: String,
        description: String,
    },
    Add {
        matter: String,
        conversations: Vec<ConversationRef>,
        criteria: Box<Criteria>,
    },
    Release {
        matter: String,
        acknowledge: Vec<String>,
    },
    List,
    Show {
        matter: String,
    },
    Sync,
}

/// A management command.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Lifecycle(LifecycleRequest),
    Hold(HoldRequest),
}

impl Request {
    /// Whether the command changes the catalog (or the repository): every one but those that
    /// list and show (`lifecycle pending` records the changes that expired). A command that writes is refused a catalog its user does not own
    /// ([`Loaded::load_to_write`]).
    pub fn writes(&self) -> bool {
        !matches!(
            self,
            Request::Lifecycle(LifecycleRequest::List | LifecycleRequest::Show { .. })
                | Request::Hold(HoldRequest::List | HoldRequest::Show { .. })
        )
    }
}

/// What a `lifecycle …` command did.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleOutcome {
    Created(LifecyclePolicy),
    Published(Published),
    Switched(SwitchOutcome),
    Pending(Vec<PendingChange>),
    Approved(PendingChange),
    Rejected(PendingChange),
    List(Vec<LifecyclePolicy>),
    Show(LifecyclePolicy),
    Restored(RestoreReport),
}

/// What a `hold …` command did.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldOutcome {
    Created(Matter),
    Placed(Placed),
    Released {
        matter: String,
        released: u64,
        sync: SyncReport,
    },
    Synced(SyncReport),
    List(Vec<MatterState>),
    Show(MatterState),
}

/// What a management command did.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Lifecycle(LifecycleOutcome),
    Hold(HoldOutcome),
}

/// Why a management command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Hold(#[from] HoldError),
}

/// Does what `request` asks, checked against the roles file for `l`'s acting user.
pub fn execute(l: &Loaded, request: &Request) -> Result<Outcome, ManageError> {
    Ok(match request {
        Request::Lifecycle(r) => Outcome::Lifecycle(execute_lifecycle(l, r)?),
        Request::Hold(r) => Outcome::Hold(execute_hold(l, r)?),
    })
}

fn execute_lifecycle(
    l: &Loaded,
    request: &LifecycleRequest,
) -> Result<LifecycleOutcome, LifecycleError> {
    use LifecycleOutcome as Done;
    use LifecycleRequest as Do;
    Ok(match request {
        Do::Create {
            name,
            artifact_type,
            audio_type,
            description,
        } => Done::Created(lifecycle::create(
            l,
            name,
            *artifact_type,
            *audio_type,
            description,
        )?),
        Do::Version {
            name,
            version,
            keep_forever,
            delete_after_days,
            require_export,
        } => Done::Published(lifecycle::publish(
            l,
            name,
            version,
            *keep_forever,
            *delete_after_days,
            require_export.as_deref(),
        )?),
        Do::Enable { name, acknowledge } => {
            Done::Switched(lifecycle::switch(l, name, Switch::Enable, acknowledge)?)
        }
        Do::Disable { name, acknowledge } => {
            Done::Switched(lifecycle::switch(l, name, Switch::Disable, acknowledge)?)
        }
        Do::Activate {
            name,
            version,
            acknowledge,
        } => Done::Switched(lifecycle::switch(
            l,
            name,
            Switch::Activate(version),
            acknowledge,
        )?),
        Do::Pending { all } => Done::Pending(lifecycle::pending(l, *all)?),
        Do::Approve {
            change,
            acknowledge,
        } => Done::Approved(lifecycle::approve(l, *change, acknowledge)?),
        Do::Reject { change } => Done::Rejected(lifecycle::reject(l, *change)?),
        Do::List => Done::List(lifecycle::list(l)?),
        Do::Show { name } => Done::Show(lifecycle::show(l, name)?),
        Do::Restore { conversation, run } => {
            Done::Restored(lifecycle::restore(l, conversation.as_deref(), *run)?)
        }
    })
}

fn execute_hold(l: &Loaded, request: &HoldRequest) -> Result<HoldOutcome, HoldError> {
    Ok(match request {
        HoldRequest::Create {
            matter,
            description,
        } => HoldOutcome::Created(holds::create(l, matter, description)?),
        HoldRequest::Add {
            matter,
            conversations,
            criteria,
        } => HoldOutcome::Placed(holds::add(
            l,
            matter,
            conversations.clone(),
            (**criteria).clone(),
        )?),
        HoldRequest::Release {
            matter,
            acknowledge,
        } => {
            let (released, sync) = holds::release(l, matter, acknowledge)?;
            HoldOutcome::Released {
                matter: matter.clone(),
                released,
                sync,
            }
        }
        HoldRequest::Sync => HoldOutcome::Synced(holds::sync(l)?),
        HoldRequest::List => HoldOutcome::List(holds::list(l)?),
        HoldRequest::Show { matter } => HoldOutcome::Show(holds::show(l, matter)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back_from_what_it_writes() {
        let add = Request::Hold(HoldRequest::Add {
            matter: "m".into(),
            conversations: vec!["acme/c1".parse().unwrap()],
            criteria: Box::new(Criteria {
                tenants: vec!["acme".into()],
                min_duration: Some(std::time::Duration::from_secs(90)),
                ..Criteria::default()
            }),
        });
        let text = serde_json::to_string(&add).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), add);
    }

    #[test]
    fn a_request_with_a_malformed_conversation_or_an_unknown_key_is_refused() {
        let bad = r#"{"hold":{"add":{"matter":"m","conversations":[{"tenant":"a/b","id":"c"}],"criteria":{}}}}"#;
        let e = serde_json::from_str::<Request>(bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds no `/`"), "{e}");
        let bad = r#"{"hold":{"add":{"matter":"m","conversations":[{"tenant":"","id":"c"}],"criteria":{}}}}"#;
        assert!(serde_json::from_str::<Request>(bad).is_err());
        let bad = r#"{"lifecycle":{"reject":{"change":1,"as":"root"}}}"#;
        let e = serde_json::from_str::<Request>(bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `as`"), "{e}");
    }

    /// What the service answers prints as the value it came from: `--json` over the socket is
    /// the same document as in process.
    #[test]
    fn an_outcome_reads_back_as_the_same_document() {
        use crate::catalog::holds::{Hold, HoldScope, Release};
        use crate::catalog::lifecycle::{LifecycleVersion, RetentionAction};
        let at: chrono::DateTime<chrono::Utc> = "2026-03-01T10:00:00.123456789Z".parse().unwrap();
        let mut policy =
            LifecyclePolicy::new("p", "d", ArtifactType::AudioRecording, None, "alice");
        policy.versions.push(LifecycleVersion {
            require_export: Some("archive".into()),
            ..LifecycleVersion::new("v1", RetentionAction::Delete { days: 30 }, "alice")
        });
        policy.active_version = Some("v1".into());
        let matter = MatterState {
            matter: Matter {
                name: "m".into(),
                description: String::new(),
                created_at: at,
                created_by: "bob".into(),
            },
            holds: vec![Hold {
                id: 1,
                matter: "m".into(),
                scope: HoldScope::Standing(Box::new(Criteria {
                    users: vec!["jsmith".into()],
                    start_after: Some("2026-01-01T00:00:00+01:00".parse().unwrap()),
                    max_duration: Some(std::time::Duration::from_secs(5400)),
                    ..Criteria::default()
                })),
                placed_at: at,
                placed_by: "bob".into(),
                released: Some(Release {
                    at,
                    by: "carol".into(),
                }),
            }],
            conversations: 3,
            artifacts: 7,
        };
        let outcomes = [
            Outcome::Lifecycle(LifecycleOutcome::List(vec![policy])),
            Outcome::Hold(HoldOutcome::Show(matter)),
        ];
        for outcome in outcomes {
            let sent = serde_json::to_string(&outcome).unwrap();
            let back: Outcome = serde_json::from_str(&sent).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), sent);
        }
    }

    #[test]
    fn only_lists_and_shows_leave_the_catalog_as_it_is() {
        assert!(!Request::Lifecycle(LifecycleRequest::List).writes());
        assert!(!Request::Hold(HoldRequest::Show { matter: "m".into() }).writes());
        assert!(Request::Lifecycle(LifecycleRequest::Reject { change: 1 }).writes());
        assert!(Request::Lifecycle(LifecycleRequest::Pending { all: true }).writes());
        assert!(
            Request::Hold(HoldRequest::Release {
                matter: "m".into(),
                acknowledge: vec![]
            })
            .writes()
        );
    }
}
