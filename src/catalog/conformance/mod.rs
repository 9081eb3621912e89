//! The catalog conformance suite: behaviour every [`Catalog`] implementation must show, written
//! against the trait and run against each implementation (`conformance_suite!` makes one test
//! per function for an implementation's fresh catalogs). The checks are grouped by concern, as
//! the trait and the implementations are.

pub(super) mod accounts;
pub(super) mod audit;
pub(super) mod conversations;
pub(super) mod holds;
pub(super) mod index;
pub(super) mod lifecycle;
pub(super) mod quarantine;
pub(super) mod runs;
pub(super) mod select;

use chrono::{DateTime, Duration, FixedOffset, SubsecRound, TimeZone, Utc};
use proptest::prelude::*;

use super::lifecycle::RetentionAction;
use super::*;
use crate::audit::{AuditKind, KeyError, KeySource, verify_chain};
use crate::filter::Criteria;
use crate::repository::record::{
    Artifact, ArtifactType, AudioRecordingType, ConversationType, Direction, Encryption, Flags,
    Participant, Role,
};

/// The run-duration buckets (bound in ms, runs no longer) of a policy's one run, 120 s long.
pub const BUCKETS_OF_ONE_120_S_RUN: [(u64, u64); 8] = [
    (1000, 0),
    (10_000, 0),
    (60_000, 0),
    (300_000, 1),
    (900_000, 1),
    (3_600_000, 1),
    (14_400_000, 1),
    (86_400_000, 1),
];

/// One `#[test]` per conformance function, each on a catalog from `$fresh()`, which returns
/// whatever owns the catalog's storage (dropped after the test) and the catalog.
macro_rules! conformance_suite {
    ($fresh:path) => {
        $crate::catalog::conformance::conformance_suite!(
            @each $fresh;
            index::round_trip,
            index::duplicate_ids_are_reported,
            index::a_record_the_catalog_cannot_store_fails_alone,
            index::index_batches_apply_in_order,
            runs::runs_and_audit,
            runs::run_history,
            runs::run_pages,
            audit::audit_queries,
            audit::the_newest_verification_is_found_among_other_events,
            runs::policy_lock_is_exclusive,
            lifecycle::lifecycle_policies_and_versions,
            lifecycle::due_artifacts_and_summary,
            lifecycle::deletes_are_recorded_once,
            lifecycle::pending_changes_need_a_second_user,
            quarantine::quarantine_intents_and_outcomes,
            lifecycle::export_before_delete,
            holds::holds_keep_conversations_from_the_sweep,
            holds::many_matters_are_counted_apart,
            holds::hold_changes_queue_legal_hold_syncs,
            holds::a_recorder_legal_hold_flag_change_queues_a_sync,
            select::confidential_pages,
            runs::upload_journal,
            runs::object_keys_are_held_by_one_file,
            runs::object_key_claims_race_to_one_winner,
            runs::a_batch_of_claims_is_answered_each_on_its_own,
            select::incremental_state_is_per_record_version_and_artifact,
            accounts::accounts_tokens_and_sessions,
            conversations::conversation_search_pages_newest_first,
            conversations::a_search_by_user_lists_each_conversation_once_by_its_current_start,
            conversations::conversation_detail_tells_what_became_of_it,
            conversations::run_totals_count_each_run_once,
        );
    };
    (@each $fresh:path; $($concern:ident::$name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (_storage, cat) = $fresh();
                $crate::catalog::conformance::$concern::$name(&cat);
            }
        )+
    };
}
pub(crate) use conformance_suite;

const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn rel_dir(c: &Conversation) -> String {
    format!("{}/{}/{}", c.tenant, c.start.format("%Y/%m/%d"), c.id)
}

fn upsert(c: &Conversation) -> IndexChange {
    upsert_at(&rel_dir(c), c)
}

/// The fingerprint `upsert` indexes records with.
const FP: Fingerprint = Fingerprint {
    mtime_ns: 1,
    size: 2,
};

fn upsert_at(dir: &str, c: &Conversation) -> IndexChange {
    IndexChange::Upsert {
        rel_dir: dir.into(),
        fingerprint: FP,
        conversation: Box::new(c.clone()),
    }
}

fn all_events(cat: &dyn Catalog) -> Vec<crate::audit::AuditEvent> {
    cat.audit_events(&AuditQuery {
        limit: 10_000,
        ..AuditQuery::default()
    })
    .unwrap()
}

fn refused<T: std::fmt::Debug>(result: Result<T>, needle: &str) {
    match result {
        Err(CatalogError::Refused(m)) => assert!(m.contains(needle), "{m}"),
        other => panic!("expected a refusal naming {needle:?}, got {other:?}"),
    }
}

fn select_all(cat: &dyn Catalog, filter: &Filter, exclude: &Exclude) -> Vec<Conversation> {
    let mut out = Vec::new();
    let mut after = i64::MIN;
    loop {
        let page = cat.select_page(filter, exclude, after, 7).unwrap();
        let Some(last) = page.last() else { break };
        after = last.rowid;
        out.extend(page.into_iter().map(|s| s.conversation));
    }
    out
}

fn base(id: &str, tenant: &str) -> Conversation {
    let start: DateTime<FixedOffset> = "2026-01-02T10:00:00+01:00".parse().unwrap();
    Conversation {
        schema: 1,
        id: id.into(),
        tenant: tenant.into(),
        kind: ConversationType::Voice,
        source_platform: "cisco".into(),
        direction: Direction::Inbound,
        start,
        end: start + Duration::seconds(90),
        participants: vec![Participant {
            user: Some("alice".into()),
            extension: Some("1001".into()),
            role: Role::Agent,
        }],
        flags: Flags::default(),
        channel: None,
        artifacts: vec![Artifact {
            file: "a.wav".into(),
            kind: ArtifactType::AudioRecording,
            audio_type: Some(AudioRecordingType::ConferenceAgent),
            size: 10,
            sha256: SHA.into(),
            encryption: Some(Encryption {
                key_id: "k1".into(),
            }),
        }],
    }
}

fn exported(run: RunId, c: &Conversation, keys: &[&str]) -> ItemOutcome {
    ItemOutcome::Exported {
        tenant: c.tenant.clone(),
        conversation_id: c.id.clone(),
        fingerprint: FP,
        artifacts: Vec::new(),
        objects: keys
            .iter()
            .map(|k| ObjectRecord {
                key: (*k).into(),
                size: 7,
                sha256: SHA.into(),
            })
            .collect(),
        audit: NewEvent {
            at: Utc::now(),
            kind: AuditKind::ConversationExported,
            actor: "tester".into(),
            policy: Some("p".into()),
            run: Some(run.0),
            tenant: Some(c.tenant.clone()),
            conversation_id: Some(c.id.clone()),
            details: serde_json::json!({ "keys": keys, "n": 1.5, "nested": { "b": [1, 2], "a": null } }),
        },
    }
}

fn changed(what: &str) -> NewEvent {
    NewEvent {
        at: Utc::now(),
        kind: AuditKind::LifecyclePolicyChanged,
        actor: "tester".into(),
        policy: Some(what.into()),
        run: None,
        tenant: None,
        conversation_id: None,
        details: serde_json::json!({ "change": what }),
    }
}
