//! Channel segment records (`<segment>.json` beside each segment file): one continuous
//! recording of a turret line, used to stitch CDR-only trader-voice calls.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::record::{Encryption, is_safe_name};

/// One segment of a channel's continuous recording (schema 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub schema: u32,
    /// The channel (turret line) id; equals the channel directory name.
    pub channel: String,
    /// The audio file, beside this record.
    pub file: String,
    /// Instant of the first sample.
    pub start: DateTime<FixedOffset>,
    pub sample_rate: u32,
    pub channels: u16,
    /// Length in frames (samples per channel).
    pub frames: u64,
    pub size: u64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

impl Segment {
    /// Parses and checks a segment record.
    pub fn from_json(bytes: &[u8]) -> Result<Segment, String> {
        let s: Segment = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if s.schema != super::record::SCHEMA_VERSION {
            return Err(format!("unsupported schema {}", s.schema));
        }
        if !is_safe_name(&s.file) || !is_safe_name(&s.channel) {
            return Err("channel and file must be safe names".into());
        }
        if s.sample_rate == 0 || s.channels == 0 {
            return Err("sample_rate and channels must be positive".into());
        }
        Ok(s)
    }
}
