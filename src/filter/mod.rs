//! Filtering criteria (docs/configuration.md, the `filter` table): what a policy selects.
//!
//! One set of criteria has two compiled forms that must agree: SQL for catalog selection
//! ([`Filter::to_sql`]) and an in-memory predicate for directory scans ([`Filter::matches`]).
//! The catalog tests check the two against each other on random data.
//!
//! Semantics: all criteria combine with AND, a list matches any of its values, an empty list
//! or absent value does not constrain. Artifact-level criteria (artifact type, audio recording
//! type, file extension) select the conversations that have at least one matching artifact,
//! and only the matching artifacts are acted on.

use std::time::Duration;

use chrono::{DateTime, Days, FixedOffset, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::repository::record::{
    Artifact, ArtifactType, AudioRecordingType, Conversation, ConversationType, Direction,
};

/// Criteria as written in a policy's `[filter]` table. They serialize to what they
/// deserialize from (instants as RFC 3339 text, durations as humantime text), leaving out
/// what does not constrain: a legal hold's criteria are stored so in the catalog.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Criteria {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conversation_types: Vec<ConversationType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_platforms: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directions: Vec<Direction>,
    /// Matches when any participant has one of these users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Matches when any participant has one of these extensions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
    /// Start at or after this instant.
    #[serde(
        default,
        deserialize_with = "timestamp",
        skip_serializing_if = "Option::is_none",
        serialize_with = "timestamp_text"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start_after: Option<DateTime<FixedOffset>>,
    /// Start strictly before this instant.
    #[serde(
        default,
        deserialize_with = "timestamp",
        skip_serializing_if = "Option::is_none",
        serialize_with = "timestamp_text"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start_before: Option<DateTime<FixedOffset>>,
    /// Start more than N days before the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than_days: Option<u32>,
    /// Start at most N days before the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_than_days: Option<u32>,
    /// Duration at least this long (humantime: "90s", "2h 30m").
    #[serde(
        default,
        deserialize_with = "duration",
        skip_serializing_if = "Option::is_none",
        serialize_with = "duration_text"
    )]
    #[schema(value_type = Option<String>)]
    pub min_duration: Option<Duration>,
    /// Duration at most this long.
    #[serde(
        default,
        deserialize_with = "duration",
        skip_serializing_if = "Option::is_none",
        serialize_with = "duration_text"
    )]
    #[schema(value_type = Option<String>)]
    pub max_duration: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidential: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdr_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_hold: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifact_types: Vec<ArtifactType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audio_recording_types: Vec<AudioRecordingType>,
    /// File extensions without the dot, compared case-insensitively.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_extensions: Vec<String>,
}

fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<FixedOffset>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Native(toml_edit::Datetime),
        Text(String),
    }
    let text = match Written::deserialize(d)? {
        Written::Native(t) => t.to_string(),
        Written::Text(t) => t,
    };
    DateTime::parse_from_rfc3339(&text).map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` needs a date, a time and an offset, e.g. 2026-01-31T00:00:00Z"
        ))
    })
}

fn timestamp_text<S: Serializer>(
    t: &Option<DateTime<FixedOffset>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339()),
        None => s.serialize_none(),
    }
}

fn duration_text<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        None => s.serialize_none(),
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map(Some).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration like \"90s\" or \"2h 30m\": {e}"
        ))
    })
}

/// A contradiction or impossible value in criteria: (key, message).
pub type CriteriaError = (&'static str, String);

impl Criteria {
    /// Checks values that parse but cannot be meant (empty names, empty ranges).
    pub fn validate(&self) -> Result<(), CriteriaError> {
        for (key, list) in [
            ("tenants", &self.tenants),
            ("source_platforms", &self.source_platforms),
            ("users", &self.users),
            ("extensions", &self.extensions),
            ("file_extensions", &self.file_extensions),
        ] {
            if list.iter().any(|v| v.trim().is_empty()) {
                return Err((key, "values must not be empty".into()));
            }
        }
        if let (Some(a), Some(b)) = (self.start_after, self.start_before)
            && a >= b
        {
            return Err(("start_before", format!("{b} is not after start_after {a}")));
        }
        if let (Some(min), Some(max)) = (self.min_duration, self.max_duration)
            && min > max
        {
            return Err(("max_duration", "is shorter than min_duration".into()));
        }
        if let (Some(older), Some(newer)) = (self.older_than_days, self.newer_than_days)
            && older >= newer
        {
            return Err((
                "newer_than_days",
                format!("must be greater than older_than_days ({older}), or nothing matches"),
            ));
        }
        Ok(())
    }
}

/// Criteria resolved against a run's clock, ready to evaluate.
#[derive(Clone, Debug)]
pub struct Filter {
    criteria: Criteria,
    extensions: Vec<String>,
    start_min_ms: Option<i64>,
    start_max_ms: Option<i64>,
    duration_min_ms: Option<i64>,
    duration_max_ms: Option<i64>,
}

/// Placeholder style of the SQL engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `?` placeholders, numbered by position.
    Sqlite,
    /// `$1`, `$2`, … placeholders.
    Postgres,
}

/// A bound SQL parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    Int(i64),
    Text(String),
}

/// A WHERE-clause fragment over `conversations c` with its parameters.
#[derive(Clone, Debug, Default)]
pub struct SqlClause {
    pub sql: String,
    pub params: Vec<SqlValue>,
}

struct SqlBuilder {
    dialect: Dialect,
    first_param: usize,
    clause: SqlClause,
}

impl SqlBuilder {
    fn param(&mut self, v: SqlValue) -> String {
        self.clause.params.push(v);
        match self.dialect {
            Dialect::Sqlite => "?".into(),
            Dialect::Postgres => format!("${}", self.first_param + self.clause.params.len()),
        }
    }

    fn list<T: ToString>(&mut self, column: &str, values: &[T]) -> Option<String> {
        if values.is_empty() {
            return None;
        }
        let marks: Vec<String> = values
            .iter()
            .map(|v| self.param(SqlValue::Text(v.to_string())))
            .collect();
        Some(format!("{column} IN ({})", marks.join(", ")))
    }

    fn cmp(&mut self, column: &str, op: &str, v: Option<i64>) -> Option<String> {
        v.map(|v| format!("{column} {op} {}", self.param(SqlValue::Int(v))))
    }

    /// SQLite keeps flags as 0/1 and PostgreSQL as BOOLEAN; both read TRUE and FALSE.
    fn flag(&mut self, column: &str, v: Option<bool>) -> Option<String> {
        v.map(|v| format!("{column} = {}", if v { "TRUE" } else { "FALSE" }))
    }
}

/// The first instant of local day `day` in `tz`, in Unix milliseconds: its midnight, or the
/// end of a daylight-saving gap that swallows midnight.
fn local_day_start(day: NaiveDate, tz: Tz) -> i64 {
    let midnight = day.and_time(NaiveTime::MIN);
    (0..=4)
        .find_map(|h| {
            tz.from_local_datetime(&(midnight + TimeDelta::hours(h)))
                .earliest()
        })
        .map_or_else(
            || midnight.and_utc().timestamp_millis(),
            |t| t.timestamp_millis(),
        )
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Filter {
    /// Resolves relative criteria against `now` in the policy's timezone `tz`. Days are
    /// calendar days there: "older than N days" means started before the local midnight that
    /// began the day N days before today, and "newer than N days" started at or after it, so
    /// every run on the same local day selects the same conversations.
    pub fn resolve(criteria: &Criteria, now: DateTime<Utc>, tz: Tz) -> Filter {
        let day_start = |days_back: u32| -> i64 {
            let day = now.with_timezone(&tz).date_naive() - Days::new(u64::from(days_back));
            local_day_start(day, tz)
        };
        let mins = [
            criteria.start_after.map(|t| t.timestamp_millis()),
            criteria.newer_than_days.map(day_start),
        ];
        let maxs = [
            criteria.start_before.map(|t| t.timestamp_millis()),
            criteria.older_than_days.map(day_start),
        ];
        Filter {
            extensions: criteria
                .file_extensions
                .iter()
                .map(|e| normalize_extension(e))
                .collect(),
            criteria: criteria.clone(),
            start_min_ms: mins.into_iter().flatten().max(),
            start_max_ms: maxs.into_iter().flatten().min(),
            duration_min_ms: criteria.min_duration.map(ms),
            duration_max_ms: criteria.max_duration.map(ms),
        }
    }

    /// A filter that matches everything.
    pub fn all() -> Filter {
        Filter::resolve(&Criteria::default(), Utc::now(), Tz::UTC)
    }

    /// True when artifact-level criteria are present.
    pub fn has_artifact_criteria(&self) -> bool {
        let c = &self.criteria;
        !(c.artifact_types.is_empty()
            && c.audio_recording_types.is_empty()
            && self.extensions.is_empty())
    }

    /// The artifact-level criteria alone.
    pub fn artifact_matches(&self, a: &Artifact) -> bool {
        let c = &self.criteria;
        (c.artifact_types.is_empty() || c.artifact_types.contains(&a.kind))
            && (c.audio_recording_types.is_empty()
                || a.audio_type
                    .is_some_and(|t| c.audio_recording_types.contains(&t)))
            && (self.extensions.is_empty() || self.extensions.contains(&a.extension()))
    }

    /// The whole predicate, evaluated in memory on one record.
    pub fn matches(&self, conv: &Conversation) -> bool {
        let c = &self.criteria;
        let any = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        let flag = |want: Option<bool>, have: bool| want.is_none_or(|w| w == have);
        let start = conv.start.timestamp_millis();
        let duration = conv.duration_ms();
        any(&c.tenants, &conv.tenant)
            && (c.conversation_types.is_empty() || c.conversation_types.contains(&conv.kind))
            && any(&c.source_platforms, &conv.source_platform)
            && (c.directions.is_empty() || c.directions.contains(&conv.direction))
            && (c.users.is_empty()
                || conv
                    .participants
                    .iter()
                    .any(|p| p.user.as_ref().is_some_and(|u| c.users.contains(u))))
            && (c.extensions.is_empty()
                || conv.participants.iter().any(|p| {
                    p.extension
                        .as_ref()
                        .is_some_and(|e| c.extensions.contains(e))
                }))
            && self.start_min_ms.is_none_or(|m| start >= m)
            && self.start_max_ms.is_none_or(|m| start < m)
            && self.duration_min_ms.is_none_or(|m| duration >= m)
            && self.duration_max_ms.is_none_or(|m| duration <= m)
            && flag(c.confidential, conv.flags.confidential)
            && flag(c.cdr_only, conv.flags.cdr_only)
            && flag(c.imported, conv.flags.imported)
            && flag(c.legal_hold, conv.flags.legal_hold)
            && (!self.has_artifact_criteria()
                || conv.artifacts.iter().any(|a| self.artifact_matches(a)))
    }

    /// The predicate as SQL over `conversations c` (joined tables `participants`,
    /// `artifacts`); `first_param` is the number of parameters already bound before it. Each
    /// participant criterion is a probe of the conversation's participants, for statements
    /// that read a page of conversations.
    pub fn to_sql(&self, dialect: Dialect, first_param: usize) -> SqlClause {
        self.sql(dialect, first_param, false)
    }

    /// [`Filter::to_sql`] for a statement that finds every conversation the filter matches:
    /// each participant criterion is the set of conversations whose participants match it,
    /// made once per statement through the indexes on `participants (user_name)` and
    /// `(extension)`, so that the selection starts from it rather than reading every
    /// conversation (docs/performance.md, "Lifecycle").
    pub fn to_set_sql(&self, dialect: Dialect, first_param: usize) -> SqlClause {
        self.sql(dialect, first_param, true)
    }

    fn sql(&self, dialect: Dialect, first_param: usize, sets: bool) -> SqlClause {
        let c = &self.criteria;
        let mut b = SqlBuilder {
            dialect,
            first_param,
            clause: SqlClause::default(),
        };
        let mut parts: Vec<Option<String>> = vec![
            b.list("c.tenant", &c.tenants),
            b.list("c.kind", &c.conversation_types),
            b.list("c.source_platform", &c.source_platforms),
            b.list("c.direction", &c.directions),
        ];
        let participants = |list: String| {
            if sets {
                format!("c.pk IN (SELECT p.conversation FROM participants p WHERE {list})")
            } else {
                format!(
                    "EXISTS (SELECT 1 FROM participants p WHERE p.conversation = c.pk AND {list})"
                )
            }
        };
        if let Some(users) = b.list("p.user_name", &c.users) {
            parts.push(Some(participants(users)));
        }
        if let Some(exts) = b.list("p.extension", &c.extensions) {
            parts.push(Some(participants(exts)));
        }
        parts.extend([
            b.cmp("c.start_ms", ">=", self.start_min_ms),
            b.cmp("c.start_ms", "<", self.start_max_ms),
            b.cmp("c.duration_ms", ">=", self.duration_min_ms),
            b.cmp("c.duration_ms", "<=", self.duration_max_ms),
            b.flag("c.confidential", c.confidential),
            b.flag("c.cdr_only", c.cdr_only),
            b.flag("c.imported", c.imported),
            b.flag("c.legal_hold", c.legal_hold),
        ]);
        if self.has_artifact_criteria() {
            let inner: Vec<String> = [
                b.list("a.kind", &c.artifact_types),
                b.list("a.audio_type", &c.audio_recording_types),
                b.list("a.extension", &self.extensions),
            ]
            .into_iter()
            .flatten()
            .collect();
            parts.push(Some(format!(
                "EXISTS (SELECT 1 FROM artifacts a WHERE a.conversation = c.pk AND {})",
                inner.join(" AND ")
            )));
        }
        let parts: Vec<String> = parts.into_iter().flatten().collect();
        b.clause.sql = if parts.is_empty() {
            "1 = 1".into()
        } else {
            parts.join(" AND ")
        };
        b.clause
    }
}

/// Lower-case extension without a leading dot.
pub fn normalize_extension(e: &str) -> String {
    e.trim().trim_start_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::record::{Flags, Participant, Role};

    fn conv() -> Conversation {
        serde_json::from_str(
            r#"{"schema":1,"id":"c1","tenant":"acme","type":"voice","source_platform":"cisco",
            "direction":"inbound","start":"2026-01-02T10:00:00+01:00","end":"2026-01-02T12:30:00+01:00",
            "participants":[{"user":"alice","extension":"1001","role":"agent"},{"extension":"555","role":"customer"}],
            "artifacts":[{"file":"a.WAV","type":"audio_recording","audio_type":"conference_agent",
            "size":10,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"},
            {"file":"t.txt","type":"transcript","size":1,
            "sha256":"0000000000000000000000000000000000000000000000000000000000000000"}]}"#,
        )
        .unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-01-12T00:00:00Z".parse().unwrap()
    }

    fn check(toml: &str, expected: bool) {
        let criteria: Criteria = toml_edit::de::from_str(toml).unwrap();
        criteria.validate().unwrap();
        let f = Filter::resolve(&criteria, now(), Tz::UTC);
        assert_eq!(f.matches(&conv()), expected, "{toml}");
    }

    #[test]
    fn empty_criteria_match_everything() {
        check("", true);
    }

    #[test]
    fn each_criterion_selects_and_rejects() {
        let cases = [
            ("tenants = ['acme', 'x']", "tenants = ['globex']"),
            (
                "conversation_types = ['voice']",
                "conversation_types = ['im', 'video']",
            ),
            (
                "source_platforms = ['cisco']",
                "source_platforms = ['teams']",
            ),
            ("directions = ['inbound']", "directions = ['outbound']"),
            ("users = ['alice']", "users = ['bob']"),
            ("extensions = ['555']", "extensions = ['1002']"),
            (
                "start_after = 2026-01-02T09:00:00Z",
                "start_after = 2026-01-02T09:00:01Z",
            ),
            (
                "start_before = '2026-01-02T09:00:01Z'",
                "start_before = 2026-01-02T09:00:00Z",
            ),
            ("older_than_days = 9", "older_than_days = 10"),
            ("newer_than_days = 10", "newer_than_days = 9"),
            ("min_duration = '2h 30m'", "min_duration = '2h 30m 1s'"),
            ("max_duration = '2h 30m'", "max_duration = '2h'"),
            ("confidential = false", "confidential = true"),
            ("cdr_only = false", "cdr_only = true"),
            ("imported = false", "imported = true"),
            ("legal_hold = false", "legal_hold = true"),
            (
                "artifact_types = ['transcript']",
                "artifact_types = ['email']",
            ),
            (
                "audio_recording_types = ['conference_agent']",
                "audio_recording_types = ['ivr_snippet']",
            ),
            ("file_extensions = ['.wav']", "file_extensions = ['mp3']"),
        ];
        for (yes, no) in cases {
            check(yes, true);
            check(no, false);
        }
    }

    #[test]
    fn relative_days_are_calendar_days_in_the_policy_timezone() {
        let criteria: Criteria = toml_edit::de::from_str("older_than_days = 1").unwrap();
        // 2026-07-01 10:00 UTC is 12:00 in Paris (UTC+2) and 06:00 in New York (UTC-4).
        let now: DateTime<Utc> = "2026-07-01T10:00:00Z".parse().unwrap();
        let cutoff = |tz: Tz| Filter::resolve(&criteria, now, tz).start_max_ms.unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap().timestamp_millis();
        assert_eq!(cutoff(Tz::UTC), at("2026-06-30T00:00:00Z"));
        assert_eq!(cutoff(chrono_tz::Europe::Paris), at("2026-06-29T22:00:00Z"));
        assert_eq!(
            cutoff(chrono_tz::America::New_York),
            at("2026-06-30T04:00:00Z")
        );
        // Midnight does not exist in Santiago on 2026-09-06 (clocks go from 00:00 to 01:00).
        let newer: Criteria = toml_edit::de::from_str("newer_than_days = 0").unwrap();
        let now: DateTime<Utc> = "2026-09-06T15:00:00Z".parse().unwrap();
        let santiago = Filter::resolve(&newer, now, chrono_tz::America::Santiago);
        assert_eq!(santiago.start_min_ms, Some(at("2026-09-06T04:00:00Z")));
    }

    #[test]
    fn artifact_criteria_pick_artifacts() {
        let criteria: Criteria = toml_edit::de::from_str("file_extensions = ['WAV']").unwrap();
        let f = Filter::resolve(&criteria, now(), Tz::UTC);
        let c = conv();
        let picked: Vec<_> = c
            .artifacts
            .iter()
            .filter(|a| f.artifact_matches(a))
            .collect();
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].file, "a.WAV");
    }

    #[test]
    fn flags_and_participants_need_all() {
        let mut c = conv();
        c.flags = Flags {
            confidential: true,
            ..Flags::default()
        };
        c.participants = vec![Participant {
            user: None,
            extension: Some("9".into()),
            role: Role::Trader,
        }];
        let criteria: Criteria =
            toml_edit::de::from_str("confidential = true\nusers = ['alice']").unwrap();
        assert!(!Filter::resolve(&criteria, now(), Tz::UTC).matches(&c));
    }

    #[test]
    fn contradictions_are_reported() {
        for (toml, key) in [
            (
                "start_after = 2026-02-01T00:00:00Z\nstart_before = 2026-01-01T00:00:00Z",
                "start_before",
            ),
            ("min_duration = '2h'\nmax_duration = '1h'", "max_duration"),
            (
                "older_than_days = 5\nnewer_than_days = 5",
                "newer_than_days",
            ),
            ("users = ['']", "users"),
        ] {
            let criteria: Criteria = toml_edit::de::from_str(toml).unwrap();
            assert_eq!(criteria.validate().unwrap_err().0, key, "{toml}");
        }
    }

    #[test]
    fn bad_values_name_the_problem() {
        let err = toml_edit::de::from_str::<Criteria>("min_duration = 'soon'").unwrap_err();
        assert!(err.to_string().contains("not a duration"), "{err}");
        let err = toml_edit::de::from_str::<Criteria>("start_after = 2026-01-01").unwrap_err();
        assert!(
            err.to_string()
                .contains("needs a date, a time and an offset"),
            "{err}"
        );
        let err = toml_edit::de::from_str::<Criteria>("tenant = ['a']").unwrap_err();
        assert!(err.to_string().contains("unknown field `tenant`"), "{err}");
    }

    #[test]
    fn criteria_serialize_to_what_they_read_from() {
        let toml = "tenants = ['acme']\nusers = ['alice']\nstart_after = 2026-01-02T09:00:00+01:00\n\
                    start_before = '2026-02-01T00:00:00Z'\nmin_duration = '2h 30m'\n\
                    artifact_types = ['transcript']\nconfidential = false";
        let criteria: Criteria = toml_edit::de::from_str(toml).unwrap();
        let json = serde_json::to_value(&criteria).unwrap();
        assert_eq!(json["start_after"], "2026-01-02T09:00:00+01:00", "{json}");
        assert_eq!(json["min_duration"], "2h 30m", "{json}");
        assert!(json.get("extensions").is_none(), "{json}");
        assert_eq!(serde_json::from_value::<Criteria>(json).unwrap(), criteria);
    }

    #[test]
    fn postgres_placeholders_are_numbered() {
        let criteria: Criteria = toml_edit::de::from_str(
            "tenants = ['a', 'b']\nmin_duration = '1s'\nlegal_hold = false",
        )
        .unwrap();
        let sql = Filter::resolve(&criteria, now(), Tz::UTC).to_sql(Dialect::Postgres, 2);
        assert_eq!(
            sql.sql,
            "c.tenant IN ($3, $4) AND c.duration_ms >= $5 AND c.legal_hold = FALSE"
        );
        assert_eq!(sql.params.len(), 3);
    }
}
