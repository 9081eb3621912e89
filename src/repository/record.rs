//! `conversation.json` schema v1: the CDR of one conversation and the list of its artifacts.
//!
//! This is untrusted input written by recorders, so parsing is strict (unknown fields are
//! refused, so a typo never silently drops a flag such as `legal_hold`) and [`Conversation::validate`]
//! checks every invariant the rest of custodian relies on (safe file names, end after start, …).

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// The only schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// File name of the record inside a conversation directory.
pub const RECORD_FILE: &str = "conversation.json";

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as written in conversation.json, the config and the catalog.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        /// The API's schema: one of the texts (utoipa's derive cannot read the renames a
        /// macro writes).
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} `{other}` (expected one of: {})",
                        stringify!($name),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

string_enum!(
    /// What kind of interaction a conversation is.
    ConversationType {
        Voice => "voice",
        Video => "video",
        ScreenShare => "screen_share",
        Im => "im",
        FileTransfer => "file_transfer",
        TraderVoice => "trader_voice",
    }
);

string_enum!(
    /// Direction of the interaction relative to the recorded organisation.
    Direction {
        Inbound => "inbound",
        Outbound => "outbound",
        Internal => "internal",
        Unknown => "unknown",
    }
);

string_enum!(
    /// What one stored file of a conversation is.
    ArtifactType {
        Email => "email",
        MessagingTranscript => "messaging_transcript",
        Script => "script",
        PartialAudioRecording => "partial_audio_recording",
        AudioRecording => "audio_recording",
        QmAudioRecording => "qm_audio_recording",
        QmScreenRecording => "qm_screen_recording",
        VideoRecording => "video_recording",
        ScreenRecording => "screen_recording",
        Attachment => "attachment",
        Transcript => "transcript",
        Metadata => "metadata",
    }
);

string_enum!(
    /// Which leg or purpose an `audio_recording` artifact records.
    AudioRecordingType {
        ConferenceCustomer => "conference_customer",
        ConferenceAgent => "conference_agent",
        ConferenceExternal => "conference_external",
        IvrSnippet => "ivr_snippet",
        QualityManagement => "quality_management",
    }
);

string_enum!(
    /// The part a participant plays in a conversation.
    Role {
        Caller => "caller",
        Callee => "callee",
        Agent => "agent",
        Customer => "customer",
        Organizer => "organizer",
        Participant => "participant",
        Trader => "trader",
        Counterparty => "counterparty",
    }
);

/// One party of a conversation. At least one of `user` and `extension` is present.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Participant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    pub role: Role,
}

/// Boolean flags of a conversation; all default to false.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Flags {
    #[serde(default)]
    pub cdr_only: bool,
    #[serde(default)]
    pub imported: bool,
    #[serde(default)]
    pub confidential: bool,
    #[serde(default)]
    pub legal_hold: bool,
}

/// How an artifact file is encrypted at rest (format v1, see `media::crypto`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    pub key_id: String,
}

/// One stored file of a conversation, beside its conversation.json.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// File name inside the conversation directory (no path separators).
    pub file: String,
    #[serde(rename = "type")]
    pub kind: ArtifactType,
    /// Present exactly when `kind` is `audio_recording`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_type: Option<AudioRecordingType>,
    /// Size in bytes of the file as stored (encrypted size when encrypted).
    pub size: u64,
    /// Lower-case hex SHA-256 of the file as stored.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

impl Artifact {
    /// Lower-case file extension without the dot, or "" when the file has none.
    pub fn extension(&self) -> String {
        extension_of(&self.file)
    }
}

/// Lower-case extension of a file name, without the dot ("" when none).
pub fn extension_of(file: &str) -> String {
    match file.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// A conversation record: the CDR and its artifacts (conversation.json, schema 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conversation {
    pub schema: u32,
    pub id: String,
    pub tenant: String,
    #[serde(rename = "type")]
    pub kind: ConversationType,
    pub source_platform: String,
    pub direction: Direction,
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
    #[serde(default)]
    pub participants: Vec<Participant>,
    #[serde(default)]
    pub flags: Flags,
    /// Turret channel whose continuous recordings hold the audio of a trader-voice call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
}

/// Why a record is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("unsupported schema {0} (this build reads schema {SCHEMA_VERSION})")]
    Schema(u32),
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} `{value}` is not a safe name (no `/`, `\\`, `..`, control characters)")]
    UnsafeName { field: &'static str, value: String },
    #[error("end {end} is before start {start}")]
    EndBeforeStart { start: String, end: String },
    #[error("artifact `{file}`: audio_type is required for audio_recording and only allowed there")]
    AudioType { file: String },
    #[error("artifact `{file}`: sha256 must be 64 lower-case hex digits")]
    Sha256 { file: String },
    #[error("artifact `{file}` is listed twice")]
    DuplicateFile { file: String },
    #[error("participant {index} has neither user nor extension")]
    Participant { index: usize },
    #[error("cdr_only record has no channel")]
    CdrOnlyWithoutChannel,
    #[error(
        "channel `{value}` is not a plain name: it names a folder of the record's own tenant (`<tenant>/channels/<channel>`), without `/`, `..` or control characters"
    )]
    Channel { value: String },
    #[error("artifact `{file}`: size {size} is out of range (at most {MAX_SIZE} bytes)")]
    Size { file: String, size: u64 },
    #[error("{field} contains a NUL character")]
    Nul { field: &'static str },
}

/// The largest size a record may state: what the catalog can store (a signed 64-bit integer).
pub const MAX_SIZE: u64 = i64::MAX as u64;

/// True when `name` can be used as one path component without escaping its directory.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

impl Conversation {
    /// Parses and validates a conversation.json document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let record: Conversation = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        record.validate().map_err(|e| e.to_string())?;
        Ok(record)
    }

    /// Checks the invariants serde cannot express.
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.schema != SCHEMA_VERSION {
            return Err(RecordError::Schema(self.schema));
        }
        for (field, value) in [("id", &self.id), ("tenant", &self.tenant)] {
            if !is_safe_name(value) {
                return Err(RecordError::UnsafeName {
                    field,
                    value: value.clone(),
                });
            }
        }
        if self.source_platform.is_empty() {
            return Err(RecordError::Empty {
                field: "source_platform",
            });
        }
        if self.end < self.start {
            return Err(RecordError::EndBeforeStart {
                start: self.start.to_rfc3339(),
                end: self.end.to_rfc3339(),
            });
        }
        for (index, p) in self.participants.iter().enumerate() {
            if p.user.is_none() && p.extension.is_none() {
                return Err(RecordError::Participant { index });
            }
        }
        if self.flags.cdr_only && self.channel.is_none() {
            return Err(RecordError::CdrOnlyWithoutChannel);
        }
        if let Some(channel) = &self.channel
            && !crate::confined::is_plain_name(channel)
        {
            return Err(RecordError::Channel {
                value: channel.clone(),
            });
        }
        self.check_text()?;
        let mut seen = std::collections::HashSet::new();
        for a in &self.artifacts {
            if !is_safe_name(&a.file) || a.file == RECORD_FILE {
                return Err(RecordError::UnsafeName {
                    field: "artifact file",
                    value: a.file.clone(),
                });
            }
            if (a.kind == ArtifactType::AudioRecording) != a.audio_type.is_some() {
                return Err(RecordError::AudioType {
                    file: a.file.clone(),
                });
            }
            if a.sha256.len() != 64
                || !a
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(RecordError::Sha256 {
                    file: a.file.clone(),
                });
            }
            if a.size > MAX_SIZE {
                return Err(RecordError::Size {
                    file: a.file.clone(),
                    size: a.size,
                });
            }
            if !seen.insert(a.file.as_str()) {
                return Err(RecordError::DuplicateFile {
                    file: a.file.clone(),
                });
            }
        }
        Ok(())
    }

    /// No free-text field holds a NUL, which no catalog can store (PostgreSQL refuses it in
    /// text and would fail the whole batch the record came in).
    fn check_text(&self) -> Result<(), RecordError> {
        let nul = |field, value: &str| {
            if value.contains('\0') {
                Err(RecordError::Nul { field })
            } else {
                Ok(())
            }
        };
        nul("source_platform", &self.source_platform)?;
        for p in &self.participants {
            nul("participant user", p.user.as_deref().unwrap_or(""))?;
            nul(
                "participant extension",
                p.extension.as_deref().unwrap_or(""),
            )?;
        }
        for a in &self.artifacts {
            nul(
                "artifact key_id",
                a.encryption.as_ref().map_or("", |e| e.key_id.as_str()),
            )?;
        }
        Ok(())
    }

    /// Length of the interaction in milliseconds.
    pub fn duration_ms(&self) -> i64 {
        (self.end - self.start).num_milliseconds()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Conversation {
        serde_json::from_str(
            r#"{"schema":1,"id":"c1","tenant":"acme","type":"voice","source_platform":"cisco",
            "direction":"inbound","start":"2026-01-02T10:00:00+01:00","end":"2026-01-02T10:01:00+01:00",
            "participants":[{"user":"alice","extension":"1001","role":"agent"}],
            "artifacts":[{"file":"a.wav","type":"audio_recording","audio_type":"conference_agent",
            "size":10,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn sample_is_valid() {
        let c = sample();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.duration_ms(), 60_000);
        assert_eq!(c.artifacts[0].extension(), "wav");
    }

    #[test]
    fn unknown_field_is_refused() {
        let err = Conversation::from_json(br#"{"schema":1,"legalhold":true}"#).unwrap_err();
        assert!(err.contains("unknown field `legalhold`"), "{err}");
    }

    #[test]
    fn path_escape_in_artifact_name_is_refused() {
        let mut c = sample();
        c.artifacts[0].file = "../../etc/passwd".into();
        assert!(matches!(c.validate(), Err(RecordError::UnsafeName { .. })));
    }

    #[test]
    fn audio_type_must_match_artifact_type() {
        let mut c = sample();
        c.artifacts[0].audio_type = None;
        assert!(matches!(c.validate(), Err(RecordError::AudioType { .. })));
        let mut c = sample();
        c.artifacts[0].kind = ArtifactType::Transcript;
        assert!(matches!(c.validate(), Err(RecordError::AudioType { .. })));
    }

    #[test]
    fn end_before_start_is_refused() {
        let mut c = sample();
        std::mem::swap(&mut c.start, &mut c.end);
        assert!(matches!(
            c.validate(),
            Err(RecordError::EndBeforeStart { .. })
        ));
    }

    #[test]
    fn future_schema_is_refused() {
        let mut c = sample();
        c.schema = 2;
        assert_eq!(c.validate(), Err(RecordError::Schema(2)));
    }

    #[test]
    fn a_size_the_catalog_cannot_store_fails_the_record() {
        let json = serde_json::to_string(&sample())
            .unwrap()
            .replace(r#""size":10"#, r#""size":9223372036854775808"#);
        let err = Conversation::from_json(json.as_bytes()).unwrap_err();
        assert!(
            err.contains("artifact `a.wav`: size 9223372036854775808 is out of range"),
            "{err}"
        );
        let mut c = sample();
        c.artifacts[0].size = MAX_SIZE;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn a_channel_that_is_a_path_is_refused() {
        for bad in [
            "../../globex/channels/X",
            "/srv/other/channels/X",
            "a/b",
            "..",
            "",
        ] {
            let mut c = sample();
            c.channel = Some(bad.into());
            let err = c.validate().unwrap_err();
            assert!(matches!(err, RecordError::Channel { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("not a plain name"), "{err}");
        }
        let mut c = sample();
        c.channel = Some("turret-0042".into());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn a_nul_in_free_text_is_refused() {
        let mut c = sample();
        c.participants[0].user = Some("al\0ice".into());
        assert_eq!(
            c.validate(),
            Err(RecordError::Nul {
                field: "participant user"
            })
        );
        let mut c = sample();
        c.source_platform = "cis\0co".into();
        assert!(matches!(c.validate(), Err(RecordError::Nul { .. })));
    }

    #[test]
    fn extension_rules() {
        assert_eq!(extension_of("x.WAV"), "wav");
        assert_eq!(extension_of(".hidden"), "");
        assert_eq!(extension_of("noext"), "");
        assert_eq!(extension_of("a.tar.gz"), "gz");
    }
}
