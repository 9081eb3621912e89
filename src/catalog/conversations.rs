//! Conversations as the service shows them (docs/operations.md, "The JSON API"): a search by
//! tenant, id, user and start time, newest first in keyset pages, and one conversation's detail
//! (its record, artifacts and what became of each, exports with their keys and checksums,
//! deletions, the confidential flag's origin, and the matters holding it).
//!
//! A page starts after a [`Cursor`] (the last row's start and catalog key), so reading page
//! 1,000 costs what reading page 1 does: the statement walks the `start_ms` index from the
//! cursor down and stops at the page's end.

use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

use super::lifecycle::QuarantineState;
use crate::filter::{Dialect, SqlValue};
use crate::repository::record::{
    ArtifactType, AudioRecordingType, ConversationType, Direction, Flags, Participant,
};

/// Where a page of a search starts: after the conversation that started at `start_ms` with
/// catalog key `pk` (the last of the previous page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub start_ms: i64,
    pub pk: i64,
}

impl Cursor {
    /// The cursor as the API hands it out: opaque to clients, `START.PK`.
    pub fn token(self) -> String {
        format!("{}.{}", self.start_ms, self.pk)
    }

    /// A token made by [`Cursor::token`]; None for anything else.
    pub fn parse(token: &str) -> Option<Cursor> {
        let (start, pk) = token.split_once('.')?;
        Some(Cursor {
            start_ms: start.parse().ok()?,
            pk: pk.parse().ok()?,
        })
    }
}

/// What a conversation search looks for; every criterion given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConversationSearch {
    pub tenant: Option<String>,
    /// The conversation's id, exactly.
    pub id: Option<String>,
    /// A participant's user name, exactly.
    pub user: Option<String>,
    /// Started at or after this instant.
    pub start_from: Option<DateTime<Utc>>,
    /// Started before this instant.
    pub start_before: Option<DateTime<Utc>>,
    /// The page starts after this conversation (None: the newest first).
    pub after: Option<Cursor>,
    pub limit: usize,
}

/// One conversation a search found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConversationSummary {
    pub tenant: String,
    pub id: String,
    pub kind: ConversationType,
    pub source_platform: String,
    pub direction: Direction,
    #[schema(value_type = String, format = DateTime)]
    pub start: DateTime<FixedOffset>,
    #[schema(value_type = String, format = DateTime)]
    pub end: DateTime<FixedOffset>,
    pub flags: Flags,
    pub participants: Vec<Participant>,
    /// Artifacts its record lists (deleted ones included).
    pub artifacts: u64,
    /// Where the next page starts if this is a page's last row.
    #[serde(skip)]
    pub cursor: Cursor,
}

/// What became of an artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactState {
    /// In the repository.
    Live,
    /// Moved into the lifecycle sweep's quarantine area (docs/operations.md, "Quarantine").
    Quarantined,
    /// Deleted by a lifecycle policy.
    Deleted,
}

/// An artifact of a conversation and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ArtifactEntry {
    pub file: String,
    pub kind: ArtifactType,
    pub audio_type: Option<AudioRecordingType>,
    pub size: u64,
    pub sha256: String,
    /// The key its file is encrypted with, if it is.
    pub key_id: Option<String>,
    pub state: ArtifactState,
}

/// An artifact an export policy wrote to its target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ExportEntry {
    pub policy: String,
    /// The artifact (or `conversation.json`) exported.
    pub file: String,
    /// The artifact's SHA-256 when it was exported.
    pub sha256: String,
    /// Where the run that exported it wrote: from the run's history, or, once that run is
    /// pruned, from the object key's claim when one target holds it; None otherwise.
    pub target: Option<String>,
    /// The object key, its size and SHA-256 (None for exports recorded before the catalog
    /// kept them per artifact).
    pub key: Option<String>,
    pub size: Option<u64>,
    pub object_sha256: Option<String>,
    pub run: i64,
}

/// An artifact a lifecycle policy deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Deletion {
    pub file: String,
    pub deleted_at: DateTime<Utc>,
    pub policy: String,
    pub version: String,
}

/// An artifact in (or on its way into or out of) the quarantine area.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QuarantineEntry {
    pub file: String,
    pub policy: String,
    pub version: String,
    /// `quarantined`, or an intent (`moving`, `restoring`, `purging`).
    pub state: QuarantineState,
    pub quarantined_at: Option<DateTime<Utc>>,
}

/// The confidential-flag policy run that last set or cleared the flag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FlagOrigin {
    pub value: bool,
    pub policy: String,
    pub run: i64,
    pub at: DateTime<Utc>,
}

/// One conversation with everything the catalog knows about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConversationDetail {
    pub tenant: String,
    pub id: String,
    pub kind: ConversationType,
    pub source_platform: String,
    pub direction: Direction,
    #[schema(value_type = String, format = DateTime)]
    pub start: DateTime<FixedOffset>,
    #[schema(value_type = String, format = DateTime)]
    pub end: DateTime<FixedOffset>,
    pub channel: Option<String>,
    /// Its directory, relative to the repository root.
    pub directory: String,
    /// The record's flags as indexed (`legal_hold` is the record's own; `holds` lists the
    /// matters holding it).
    pub flags: Flags,
    pub participants: Vec<Participant>,
    pub artifacts: Vec<ArtifactEntry>,
    pub exports: Vec<ExportEntry>,
    pub deletions: Vec<Deletion>,
    pub quarantine: Vec<QuarantineEntry>,
    /// Set when a confidential-flag policy set or cleared the flag.
    pub confidential_flag: Option<FlagOrigin>,
    /// The matters whose active legal holds cover it, by name.
    pub holds: Vec<String>,
}

/// The search as one statement in the dialect's placeholders, with its parameters, read by
/// `rows::conversation` (plus `artifacts`, the count): newest first, by start and then catalog
/// key, after the cursor. With a user, a walk of that user's participant rows down
/// `participants_user_start` from the cursor (each carries its conversation's start), stopping
/// after a page whatever the user's history; with an id, the `conversations_id` index; else a
/// walk of the conversations' start index from the cursor.
pub(super) fn search_sql(dialect: Dialect, s: &ConversationSearch) -> (String, Vec<SqlValue>) {
    let mut params = Vec::new();
    let mut param = |v: SqlValue| {
        params.push(v);
        match dialect {
            Dialect::Sqlite => format!("?{}", params.len()),
            Dialect::Postgres => format!("${}", params.len()),
        }
    };
    let mut clauses = Vec::new();
    if let Some(t) = &s.tenant {
        clauses.push(format!("c.tenant = {}", param(SqlValue::Text(t.clone()))));
    }
    if let Some(id) = &s.id {
        clauses.push(format!("c.id = {}", param(SqlValue::Text(id.clone()))));
    }
    // By user, the page is read from that user's participant rows in start order (its own
    // index), each conversation once however often the user takes part in it; otherwise from
    // the conversations' start index. Both carry the conversation's start and pk.
    let (from, start, pk) = match &s.user {
        Some(u) => {
            clauses.push(format!(
                "p.user_name = {} AND NOT EXISTS (SELECT 1 FROM participants q \
                 WHERE q.conversation = p.conversation AND q.user_name = p.user_name \
                 AND q.ordinal < p.ordinal)",
                param(SqlValue::Text(u.clone()))
            ));
            (
                "participants p JOIN conversations c ON c.pk = p.conversation",
                "p.start_ms",
                "p.conversation",
            )
        }
        None => ("conversations c", "c.start_ms", "c.pk"),
    };
    if let Some(t) = s.start_from {
        clauses.push(format!(
            "{start} >= {}",
            param(SqlValue::Int(t.timestamp_millis()))
        ));
    }
    if let Some(t) = s.start_before {
        clauses.push(format!(
            "{start} < {}",
            param(SqlValue::Int(t.timestamp_millis()))
        ));
    }
    if let Some(c) = s.after {
        let at = param(SqlValue::Int(c.start_ms));
        let below = param(SqlValue::Int(c.pk));
        clauses.push(format!(
            "{start} <= {at} AND ({start} < {at} OR {pk} < {below})"
        ));
    }
    let limit = param(SqlValue::Int(i64::try_from(s.limit).unwrap_or(i64::MAX)));
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    (
        format!(
            "SELECT c.pk, c.rel_dir, c.tenant, c.id, c.kind, c.source_platform, c.direction, \
             c.start_text, c.end_text, c.start_ms, c.confidential, c.cdr_only, c.imported, \
             c.legal_hold, c.channel, c.json_mtime_ns, c.json_size, \
             (SELECT count(*) FROM artifacts a WHERE a.conversation = c.pk) AS artifacts \
             FROM {from}{filter} ORDER BY {start} DESC, {pk} DESC LIMIT {limit}"
        ),
        params,
    )
}

/// What a backend read of one conversation, each part by its own statement.
pub(super) struct DetailParts {
    pub found: super::Selected,
    pub participants: Vec<Participant>,
    pub artifacts: Vec<crate::repository::record::Artifact>,
    pub deletions: Vec<Deletion>,
    pub quarantine: Vec<QuarantineEntry>,
    pub exports: Vec<ExportEntry>,
    pub confidential_flag: Option<FlagOrigin>,
    pub holds: Vec<String>,
}

/// The detail made of its parts: each artifact's state is its deletion, else its quarantine
/// entry's (an artifact on its way into quarantine is still live), else live.
pub(super) fn detail(p: DetailParts) -> ConversationDetail {
    let state = |file: &str| {
        if p.deletions.iter().any(|d| d.file == file) {
            ArtifactState::Deleted
        } else if p
            .quarantine
            .iter()
            .any(|q| q.file == file && !matches!(q.state, QuarantineState::Moving))
        {
            ArtifactState::Quarantined
        } else {
            ArtifactState::Live
        }
    };
    let artifacts = p
        .artifacts
        .iter()
        .map(|a| ArtifactEntry {
            file: a.file.clone(),
            kind: a.kind,
            audio_type: a.audio_type,
            size: a.size,
            sha256: a.sha256.clone(),
            key_id: a.encryption.as_ref().map(|e| e.key_id.clone()),
            state: state(&a.file),
        })
        .collect();
    let c = p.found.conversation;
    ConversationDetail {
        tenant: c.tenant,
        id: c.id,
        kind: c.kind,
        source_platform: c.source_platform,
        direction: c.direction,
        start: c.start,
        end: c.end,
        channel: c.channel,
        directory: p.found.rel_dir,
        flags: c.flags,
        participants: p.participants,
        artifacts,
        exports: p.exports,
        deletions: p.deletions,
        quarantine: p.quarantine,
        confidential_flag: p.confidential_flag,
        holds: p.holds,
    }
}
