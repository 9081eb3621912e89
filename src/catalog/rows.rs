//! Rows as values, written once for both catalogs: each backend reads a column through
//! [`Fields`], the way it stores that kind of value (SQLite keeps instants as RFC 3339 text and
//! reads counts as unsigned; PostgreSQL keeps TIMESTAMPTZ and BIGINT), and the functions here
//! make the catalog's records from the columns.

use chrono::{DateTime, FixedOffset, Utc};

use super::conversations::{
    ConversationSummary, Cursor, Deletion, ExportEntry, FlagOrigin, QuarantineEntry,
};
use super::holds::{Hold, HoldScope, Matter, Release};
use super::lifecycle::{
    DueArtifact, DueQuery, LifecyclePolicy, LifecycleVersion, PendingChange, QuarantineCount,
    QuarantineState, Quarantined, RetentionAction,
};
use super::totals::{DurationBucket, RunTotals};
use super::uploads::OpenUpload;
use super::{
    CatalogError, Counters, ExportedArtifact, FailedItem, Fingerprint, JobRun, Mode, ObjectRecord,
    Result, RunId, RunStatus, Selected,
};
use crate::audit::{AuditEvent, AuditHead, AuditKind, NewEvent};
use crate::repository::record::{
    Artifact, Conversation, Encryption, Flags, Participant, SCHEMA_VERSION,
};

/// The columns of one result row, by position (`usize`) or name (`&str`). A driver's error
/// carries the catalog's location; a value outside what the column may hold is
/// [`CatalogError::Corrupt`] naming `column`.
pub(super) trait Fields<K: Copy> {
    fn text(&self, k: K) -> Result<String>;
    fn opt_text(&self, k: K) -> Result<Option<String>>;
    fn int(&self, k: K) -> Result<i64>;
    fn opt_int(&self, k: K) -> Result<Option<i64>>;
    fn flag(&self, k: K) -> Result<bool>;
    /// A count or size: SQLite's driver refuses a negative one; PostgreSQL's is corrupt.
    fn unsigned(&self, k: K, column: &'static str) -> Result<u64>;
    fn opt_unsigned(&self, k: K, column: &'static str) -> Result<Option<u64>>;
    fn instant(&self, k: K, column: &'static str) -> Result<DateTime<Utc>>;
    /// An instant that may be missing; SQLite reads text that is not an instant as missing.
    fn opt_instant(&self, k: K) -> Result<Option<DateTime<Utc>>>;
    fn corrupt(&self, column: &'static str, value: &str) -> CatalogError;
}

/// A text column parsed as `T`.
fn parsed<K: Copy, T: std::str::FromStr>(
    r: &impl Fields<K>,
    k: K,
    column: &'static str,
) -> Result<T> {
    let v = r.text(k)?;
    v.parse().map_err(|_| r.corrupt(column, &v))
}

fn opt_parsed<K: Copy, T: std::str::FromStr>(
    r: &impl Fields<K>,
    k: K,
    column: &'static str,
) -> Result<Option<T>> {
    match r.opt_text(k)? {
        Some(v) => v.parse().map(Some).map_err(|_| r.corrupt(column, &v)),
        None => Ok(None),
    }
}

/// A record's instant, kept as the RFC 3339 text of the record (its offset is part of it).
fn record_time<K: Copy>(
    r: &impl Fields<K>,
    k: K,
    column: &'static str,
) -> Result<DateTime<FixedOffset>> {
    let v = r.text(k)?;
    DateTime::parse_from_rfc3339(&v).map_err(|_| r.corrupt(column, &v))
}

/// The record version at `mtime` and `size`.
pub(super) fn fingerprint<K: Copy>(r: &impl Fields<K>, mtime: K, size: K) -> Result<Fingerprint> {
    Ok(Fingerprint {
        mtime_ns: r.int(mtime)?,
        size: r.unsigned(size, "conversations.json_size")?,
    })
}

/// A row of [`super::sql::FINGERPRINTS_UNDER`].
pub(super) fn dir_fingerprint(r: &impl Fields<usize>) -> Result<(String, Fingerprint)> {
    Ok((r.text(0)?, fingerprint(r, 1, 2)?))
}

/// A row of [`super::sql::SELECT_CONVERSATION`], without its participants and artifacts.
pub(super) fn conversation(r: &impl Fields<&'static str>) -> Result<Selected> {
    Ok(Selected {
        rowid: r.int("pk")?,
        rel_dir: r.text("rel_dir")?,
        fingerprint: fingerprint(r, "json_mtime_ns", "json_size")?,
        exported: Vec::new(),
        holds: Vec::new(),
        conversation: Conversation {
            schema: SCHEMA_VERSION,
            id: r.text("id")?,
            tenant: r.text("tenant")?,
            kind: parsed(r, "kind", "kind")?,
            source_platform: r.text("source_platform")?,
            direction: parsed(r, "direction", "direction")?,
            start: record_time(r, "start_text", "start_text")?,
            end: record_time(r, "end_text", "end_text")?,
            participants: Vec::new(),
            flags: Flags {
                cdr_only: r.flag("cdr_only")?,
                imported: r.flag("imported")?,
                confidential: r.flag("confidential")?,
                legal_hold: r.flag("legal_hold")?,
            },
            channel: r.opt_text("channel")?,
            artifacts: Vec::new(),
        },
    })
}

/// `conversation, user_name, extension, role` of `participants`, after the conversation.
pub(super) fn participant(r: &impl Fields<usize>) -> Result<Participant> {
    Ok(Participant {
        user: r.opt_text(1)?,
        extension: r.opt_text(2)?,
        role: parsed(r, 3, "participants.role")?,
    })
}

/// `conversation, file, kind, audio_type, size, sha256, key_id` of `artifacts`, after the
/// conversation.
pub(super) fn artifact(r: &impl Fields<usize>) -> Result<Artifact> {
    Ok(Artifact {
        file: r.text(1)?,
        kind: parsed(r, 2, "artifacts.kind")?,
        audio_type: opt_parsed(r, 3, "artifacts.audio_type")?,
        size: r.unsigned(4, "artifacts.size")?,
        sha256: r.text(5)?,
        encryption: r.opt_text(6)?.map(|key_id| Encryption { key_id }),
    })
}

/// `pk, file, sha256, key, size, out_sha256` of a policy's `export_artifacts`, after the
/// conversation.
pub(super) fn exported_artifact(r: &impl Fields<usize>) -> Result<ExportedArtifact> {
    let output = match (
        r.opt_text(3)?,
        r.opt_unsigned(4, "export_artifacts.size")?,
        r.opt_text(5)?,
    ) {
        (Some(key), Some(size), Some(sha256)) => Some(ObjectRecord { key, size, sha256 }),
        _ => None,
    };
    Ok(ExportedArtifact {
        file: r.text(1)?,
        sha256: r.text(2)?,
        output,
    })
}

/// A `job_runs` row, by column name.
pub(super) fn job_run(r: &impl Fields<&'static str>) -> Result<JobRun> {
    let mode = r.text("mode")?;
    let status = r.text("status")?;
    let resumed = r.int("resumed")?;
    Ok(JobRun {
        id: RunId(r.int("id")?),
        policy: r.text("policy")?,
        mode: match mode.as_str() {
            "full" => Mode::Full,
            "incremental" => Mode::Incremental,
            _ => return Err(r.corrupt("job_runs.mode", &mode)),
        },
        target: r.text("target")?,
        status: RunStatus::parse(&status).ok_or_else(|| r.corrupt("job_runs.status", &status))?,
        started_at: r.instant("started_at", "job_runs.started_at")?,
        finished_at: r.opt_instant("finished_at")?,
        resumed: u32::try_from(resumed)
            .map_err(|_| r.corrupt("job_runs.resumed", &resumed.to_string()))?,
        counters: Counters {
            selected: r.unsigned("selected", "selected")?,
            exported: r.unsigned("exported", "exported")?,
            flagged: r.unsigned("flagged", "flagged")?,
            deleted: r.unsigned("deleted", "deleted")?,
            failed: r.unsigned("failed", "failed")?,
            objects: r.unsigned("objects", "objects")?,
            bytes: r.unsigned("bytes", "bytes")?,
            index_errors: r.unsigned("index_errors", "index_errors")?,
        },
        manifest_key: r.opt_text("manifest_key")?,
        error_summary: r.opt_text("error_summary")?,
        log_path: r.opt_text("log_path")?,
        notification: r.opt_text("notification")?,
        held_back: r.opt_text("held_back")?,
    })
}

/// A run's counters as its items and events give them: exported, failed, objects, bytes and
/// deleted, in that order.
pub(super) fn run_counters(r: &impl Fields<usize>) -> Result<Counters> {
    Ok(Counters {
        exported: r.unsigned(0, "count")?,
        failed: r.unsigned(1, "count")?,
        objects: r.unsigned(2, "count")?,
        bytes: r.unsigned(3, "run_objects.size")?,
        deleted: r.unsigned(4, "count")?,
        ..Counters::default()
    })
}

/// A row of [`super::sql::RUN_OBJECTS`].
pub(super) fn object(r: &impl Fields<usize>) -> Result<ObjectRecord> {
    Ok(ObjectRecord {
        key: r.text(0)?,
        size: r.unsigned(1, "run_objects.size")?,
        sha256: r.text(2)?,
    })
}

/// `subject, error, at` of a failed run item.
pub(super) fn failed_item(r: &impl Fields<usize>) -> Result<FailedItem> {
    Ok(FailedItem {
        subject: r.text(0)?,
        error: r.opt_text(1)?.unwrap_or_default(),
        at: r.instant(2, "run_items.at")?,
    })
}

/// An `audit_events` row: seq, at, kind, actor, policy, run, tenant, conversation_id, details,
/// prev_hash, hash, key_id.
pub(super) fn audit_event(r: &impl Fields<usize>) -> Result<AuditEvent> {
    let kind = r.text(2)?;
    let details = r.text(8)?;
    Ok(AuditEvent {
        seq: r.int(0)?,
        event: NewEvent {
            at: r.instant(1, "audit_events.at")?,
            kind: AuditKind::parse(&kind).ok_or_else(|| r.corrupt("audit_events.kind", &kind))?,
            actor: r.text(3)?,
            policy: r.opt_text(4)?,
            run: r.opt_int(5)?,
            tenant: r.opt_text(6)?,
            conversation_id: r.opt_text(7)?,
            details: serde_json::from_str(&details)
                .map_err(|_| r.corrupt("audit_events.details", &details))?,
        },
        prev_hash: r.text(9)?,
        hash: r.text(10)?,
        key_id: r.opt_text(11)?,
    })
}

/// A row of [`super::sql::AUDIT_HEAD`].
pub(super) fn audit_head(r: &impl Fields<usize>) -> Result<AuditHead> {
    Ok(AuditHead {
        seq: r.int(0)?,
        hash: r.text(1)?,
    })
}

/// A row of [`super::sql::LIFECYCLE_POLICIES`], without its versions.
pub(super) fn lifecycle_policy(r: &impl Fields<usize>) -> Result<LifecyclePolicy> {
    Ok(LifecyclePolicy {
        name: r.text(0)?,
        description: r.text(1)?,
        artifact_type: parsed(r, 2, "lifecycle_policies.artifact_type")?,
        audio_type: opt_parsed(r, 3, "lifecycle_policies.audio_type")?,
        enabled: r.flag(4)?,
        active_version: r.opt_text(5)?,
        versions: Vec::new(),
        created_at: r.instant(6, "lifecycle_policies.created_at")?,
        created_by: r.text(7)?,
    })
}

/// A row of [`super::sql::LIFECYCLE_VERSIONS`]: the policy's name and the version.
pub(super) fn lifecycle_version(r: &impl Fields<usize>) -> Result<(String, LifecycleVersion)> {
    let action = r.text(2)?;
    let days = r.opt_int(3)?;
    let version = LifecycleVersion {
        name: r.text(1)?,
        action: match (action.as_str(), days.map(u16::try_from)) {
            ("keep_forever", _) => RetentionAction::KeepForever,
            ("delete", Some(Ok(days))) => RetentionAction::Delete { days },
            _ => return Err(r.corrupt("lifecycle_versions.action", &action)),
        },
        published_at: r.instant(4, "lifecycle_versions.published_at")?,
        published_by: r.text(5)?,
        require_export: r.opt_text(6)?,
    };
    Ok((r.text(0)?, version))
}

/// An artifact `q` makes due: conversation pk, ordinal, tenant, id, rel_dir, file, size, the
/// interaction's end (ms), and the record version.
pub(super) fn due_artifact(r: &impl Fields<usize>, q: &DueQuery) -> Result<DueArtifact> {
    let end_ms = r.int(7)?;
    Ok(DueArtifact {
        conversation_pk: r.int(0)?,
        ordinal: r.int(1)?,
        tenant: r.text(2)?,
        conversation_id: r.text(3)?,
        rel_dir: r.text(4)?,
        file: r.text(5)?,
        size: r.unsigned(6, "artifacts.size")?,
        policy: q.policy.clone(),
        version: q.version.clone(),
        due: DateTime::from_timestamp_millis(end_ms + i64::from(q.days) * 86_400_000)
            .unwrap_or_default(),
        record: Some(fingerprint(r, 8, 9)?),
    })
}

/// A row of [`super::sql::MATTERS`].
pub(super) fn matter(r: &impl Fields<usize>) -> Result<Matter> {
    Ok(Matter {
        name: r.text(0)?,
        description: r.text(1)?,
        created_at: r.instant(2, "matters.created_at")?,
        created_by: r.text(3)?,
    })
}

/// Stored criteria of a standing hold.
pub(super) fn criteria<K: Copy>(r: &impl Fields<K>, k: K) -> Result<crate::filter::Criteria> {
    let v = r.text(k)?;
    serde_json::from_str(&v).map_err(|_| r.corrupt("legal_holds.criteria", &v))
}

/// Stored criteria of a hold, None for an explicit one.
pub(super) fn opt_criteria<K: Copy>(
    r: &impl Fields<K>,
    k: K,
) -> Result<Option<crate::filter::Criteria>> {
    r.opt_text(k)?
        .map(|v| serde_json::from_str(&v).map_err(|_| r.corrupt("legal_holds.criteria", &v)))
        .transpose()
}

/// A row of [`super::sql::HOLD_CONVERSATIONS`]: the hold's id and one conversation it names.
pub(super) fn hold_conversation(
    r: &impl Fields<usize>,
) -> Result<(i64, super::holds::ConversationRef)> {
    Ok((
        r.int(0)?,
        super::holds::ConversationRef {
            tenant: r.text(1)?,
            id: r.text(2)?,
        },
    ))
}

/// A row of [`super::sql::HOLDS`]; an explicit hold without its conversations yet.
pub(super) fn hold(r: &impl Fields<usize>) -> Result<Hold> {
    let scope = match r.opt_text(2)? {
        Some(_) => HoldScope::Standing(Box::new(criteria(r, 2)?)),
        None => HoldScope::Conversations(Vec::new()),
    };
    let released = match (r.opt_instant(5)?, r.opt_text(6)?) {
        (Some(at), Some(by)) => Some(Release { at, by }),
        _ => None,
    };
    Ok(Hold {
        id: r.int(0)?,
        matter: r.text(1)?,
        scope,
        placed_at: r.instant(3, "legal_holds.placed_at")?,
        placed_by: r.text(4)?,
        released,
    })
}

/// A row of [`super::sql::LIFECYCLE_CHANGES`].
pub(super) fn lifecycle_change(r: &impl Fields<usize>) -> Result<PendingChange> {
    let acknowledgments = r.text(6)?;
    Ok(PendingChange {
        id: r.int(0)?,
        policy: r.text(1)?,
        change: parsed(r, 2, "lifecycle_changes.change")?,
        version: r.text(3)?,
        enabled_before: r.flag(4)?,
        version_before: r.opt_text(5)?,
        acknowledgments: serde_json::from_str(&acknowledgments)
            .map_err(|_| r.corrupt("lifecycle_changes.acknowledgments", &acknowledgments))?,
        requested_by: r.text(7)?,
        requested_at: r.instant(8, "lifecycle_changes.requested_at")?,
        expires_at: r.instant(9, "lifecycle_changes.expires_at")?,
        state: parsed(r, 10, "lifecycle_changes.state")?,
        decided_by: r.opt_text(11)?,
        decided_at: r.opt_instant(12)?,
    })
}

/// A row of [`super::sql::PENDING_DELETES`].
pub(super) fn pending_delete(r: &impl Fields<usize>) -> Result<DueArtifact> {
    Ok(DueArtifact {
        conversation_pk: r.int(0)?,
        ordinal: r.int(1)?,
        tenant: r.text(2)?,
        conversation_id: r.text(3)?,
        rel_dir: r.text(4)?,
        file: r.text(5)?,
        size: r.unsigned(6, "delete_intents.size")?,
        policy: r.text(7)?,
        version: r.text(8)?,
        due: r.instant(9, "delete_intents.due")?,
        record: match (
            r.opt_int(10)?,
            r.opt_unsigned(11, "conversations.json_size")?,
        ) {
            (Some(mtime_ns), Some(size)) => Some(Fingerprint { mtime_ns, size }),
            _ => None,
        },
    })
}

/// A row of [`super::sql::quarantine_entries`].
pub(super) fn quarantined(r: &impl Fields<usize>) -> Result<Quarantined> {
    let instant = |ms: i64, column: &'static str| {
        DateTime::from_timestamp_millis(ms).ok_or_else(|| r.corrupt(column, &ms.to_string()))
    };
    let state = r.text(13)?;
    Ok(Quarantined {
        artifact: DueArtifact {
            conversation_pk: r.int(0)?,
            ordinal: r.int(1)?,
            tenant: r.text(2)?,
            conversation_id: r.text(3)?,
            rel_dir: r.text(4)?,
            file: r.text(5)?,
            size: r.unsigned(6, "quarantine.size")?,
            policy: r.text(7)?,
            version: r.text(8)?,
            due: instant(r.int(9)?, "quarantine.due_ms")?,
            record: match (
                r.opt_int(10)?,
                r.opt_unsigned(11, "conversations.json_size")?,
            ) {
                (Some(mtime_ns), Some(size)) => Some(Fingerprint { mtime_ns, size }),
                _ => None,
            },
        },
        name: r.text(12)?,
        state: QuarantineState::parse(&state)
            .ok_or_else(|| r.corrupt("quarantine.state", &state))?,
        exempt: r.flag(14)?,
        run: r.opt_int(15)?.map(RunId),
        quarantined_at: match r.opt_int(16)? {
            Some(ms) => Some(instant(ms, "quarantine.quarantined_ms")?),
            None => None,
        },
        legal_hold: r.flag(17)?,
    })
}

/// A row of [`super::sql::QUARANTINE_COUNTS`].
pub(super) fn quarantine_count(r: &impl Fields<usize>) -> Result<QuarantineCount> {
    Ok(QuarantineCount {
        policy: r.text(0)?,
        version: r.text(1)?,
        artifacts: r.unsigned(2, "quarantine count")?,
        bytes: r.unsigned(3, "quarantine.size")?,
        purgeable: r.unsigned(4, "quarantine count")?,
    })
}

/// A row of [`super::sql::CONVERSATION_DELETIONS`].
pub(super) fn deletion(r: &impl Fields<usize>) -> Result<Deletion> {
    Ok(Deletion {
        file: r.text(0)?,
        deleted_at: r.instant(1, "artifact_deletions.deleted_at")?,
        policy: r.text(2)?,
        version: r.text(3)?,
    })
}

/// A row of [`super::sql::CONVERSATION_QUARANTINE`].
pub(super) fn quarantine_entry(r: &impl Fields<usize>) -> Result<QuarantineEntry> {
    let state = r.text(3)?;
    Ok(QuarantineEntry {
        file: r.text(0)?,
        policy: r.text(1)?,
        version: r.text(2)?,
        state: QuarantineState::parse(&state)
            .ok_or_else(|| r.corrupt("quarantine.state", &state))?,
        quarantined_at: match r.opt_int(4)? {
            Some(ms) => Some(
                DateTime::from_timestamp_millis(ms)
                    .ok_or_else(|| r.corrupt("quarantine.quarantined_ms", &ms.to_string()))?,
            ),
            None => None,
        },
    })
}

/// A row of [`super::sql::CONVERSATION_EXPORTS`].
pub(super) fn export_entry(r: &impl Fields<usize>) -> Result<ExportEntry> {
    Ok(ExportEntry {
        policy: r.text(0)?,
        file: r.text(1)?,
        sha256: r.text(2)?,
        target: r.opt_text(3)?,
        key: r.opt_text(4)?,
        size: r.opt_unsigned(5, "export_artifacts.size")?,
        object_sha256: r.opt_text(6)?,
        run: r.int(7)?,
    })
}

/// A row of [`super::sql::CONVERSATION_FLAG`].
pub(super) fn flag_origin(r: &impl Fields<usize>) -> Result<FlagOrigin> {
    Ok(FlagOrigin {
        value: r.flag(0)?,
        policy: r.text(1)?,
        run: r.int(2)?,
        at: r.instant(3, "confidential_flags.at")?,
    })
}

/// A row of [`super::conversations::search_sql`], without its participants.
pub(super) fn conversation_summary(r: &impl Fields<&'static str>) -> Result<ConversationSummary> {
    let found = conversation(r)?;
    let c = found.conversation;
    Ok(ConversationSummary {
        tenant: c.tenant,
        id: c.id,
        kind: c.kind,
        source_platform: c.source_platform,
        direction: c.direction,
        start: c.start,
        end: c.end,
        flags: c.flags,
        participants: Vec::new(),
        artifacts: r.unsigned("artifacts", "count")?,
        cursor: Cursor {
            start_ms: r.int("start_ms")?,
            pk: found.rowid,
        },
    })
}

/// A row of [`super::sql::RUN_TOTALS`].
pub(super) fn run_totals(r: &impl Fields<usize>) -> Result<RunTotals> {
    let status = r.text(1)?;
    Ok(RunTotals {
        policy: r.text(0)?,
        outcome: RunStatus::parse(&status)
            .ok_or_else(|| r.corrupt("run_totals.status", &status))?,
        runs: r.unsigned(2, "run_totals.runs")?,
        duration_ms: r.unsigned(3, "run_totals.duration_ms")?,
        durations: Vec::new(),
        exported: r.unsigned(4, "run_totals.exported")?,
        objects: r.unsigned(5, "run_totals.objects")?,
        bytes: r.unsigned(6, "run_totals.bytes")?,
        failed: r.unsigned(7, "run_totals.failed")?,
        deleted: r.unsigned(8, "run_totals.deleted")?,
        last_finished_at: r.instant(9, "run_totals.last_finished_at")?,
    })
}

/// `policy, status, le_ms, runs` of [`super::sql::RUN_DURATIONS`].
pub(super) fn duration_bucket(r: &impl Fields<usize>) -> Result<DurationBucket> {
    Ok(DurationBucket {
        policy: r.text(0)?,
        outcome: r.text(1)?,
        le_ms: r.unsigned(2, "run_duration_buckets.le_ms")?,
        runs: r.unsigned(3, "run_duration_buckets.runs")?,
    })
}

/// `key, upload_id` of an open upload.
pub(super) fn open_upload(r: &impl Fields<usize>) -> Result<OpenUpload> {
    Ok(OpenUpload {
        key: r.text(0)?,
        upload_id: r.text(1)?,
    })
}
