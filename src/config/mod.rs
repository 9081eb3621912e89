//! `custodian.toml`: the schema, its validation, and errors that name file, line and key.
//!
//! Parsing goes raw → validated: serde reads [`RawConfig`] with `deny_unknown_fields`
//! everywhere, then [`Config::load`] checks every value and reference without I/O and builds
//! the typed [`Config`] the rest of the engine uses. Nothing is opened before that succeeds.

mod locate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::catalog::Mode;
use crate::filter::{Criteria, normalize_extension};
use crate::media::audio::{VoiceFormat, VoiceSpec};
use crate::policy::template::Template;
use crate::repository::record::is_safe_name;
use std::time::Duration;

use crate::policy::confidential::FlagAction;
use crate::schedule::Schedule;
use crate::schedule::notify::{EmailConfig, Notify, NotifyWhen, SmtpSecurity};
use crate::target::{AzureConfig, GcsConfig, S3Client, S3Config, Uploads};

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error("{file}: {key}: {message}")]
    Missing {
        file: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    catalog: RawCatalog,
    repository: RawRepository,
    #[serde(default)]
    targets: BTreeMap<String, RawTarget>,
    #[serde(default)]
    policies: BTreeMap<String, RawPolicy>,
    #[serde(default)]
    media: RawMedia,
    #[serde(default)]
    lifecycle: RawLifecycle,
    email: Option<RawEmail>,
    #[serde(default)]
    audit: RawAudit,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    key_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    smtp_host: String,
    smtp_port: Option<u16>,
    security: Option<SmtpSecurity>,
    username: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    from: String,
    portal_url: Option<String>,
    timeout_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    to: String,
    on_completion: Option<NotifyWhen>,
    on_failure: Option<NotifyWhen>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLifecycle {
    roles: Option<PathBuf>,
    max_deletes_per_run: Option<u64>,
    max_delete_share: Option<f64>,
    schedule: Option<String>,
    timezone: Option<String>,
    keep_job_history_days: Option<u32>,
    time_limit: Option<String>,
    keep_alive: Option<String>,
    log_dir: Option<PathBuf>,
    notify: Option<RawNotify>,
}

/// The job-setting keys of a policy or of the `[lifecycle]` table, as written.
struct RawJob<'a> {
    schedule: Option<&'a str>,
    timezone: Option<&'a str>,
    keep_job_history_days: Option<u32>,
    time_limit: Option<&'a str>,
    keep_alive: Option<&'a str>,
    log_dir: Option<&'a PathBuf>,
    notify: Option<&'a RawNotify>,
}

/// `RawJob`'s view of each raw table that has the job-setting keys (both deny unknown keys,
/// which serde's `flatten` cannot share).
macro_rules! job_keys {
    ($($table:ty),*) => {$(
        impl $table {
            fn job(&self) -> RawJob<'_> {
                RawJob {
                    schedule: self.schedule.as_deref(),
                    timezone: self.timezone.as_deref(),
                    keep_job_history_days: self.keep_job_history_days,
                    time_limit: self.time_limit.as_deref(),
                    keep_alive: self.keep_alive.as_deref(),
                    log_dir: self.log_dir.as_ref(),
                    notify: self.notify.as_ref(),
                }
            }
        }
    )*};
}

job_keys!(RawLifecycle, RawPolicy);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMedia {
    keystore: Option<PathBuf>,
    ffmpeg: Option<PathBuf>,
    scratch_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    url: String,
}

impl Default for RawCatalog {
    fn default() -> Self {
        RawCatalog {
            url: "sqlite:custodian.db".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    root: PathBuf,
    max_record_bytes: Option<u64>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum TargetKind {
    Filesystem,
    S3,
    Azure,
    Gcs,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    kind: TargetKind,
    path: Option<PathBuf>,
    #[serde(default)]
    fsync: bool,
    file_mode: Option<String>,
    bucket: Option<String>,
    #[serde(default)]
    prefix: String,
    region: Option<String>,
    endpoint: Option<String>,
    #[serde(default)]
    path_style: bool,
    client: Option<S3Client>,
    container: Option<String>,
    account: Option<String>,
    part_size_mib: Option<u64>,
    part_concurrency: Option<usize>,
    request_timeout_secs: Option<u64>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum ActionKind {
    Export,
    Confidential,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    action: ActionKind,
    #[serde(default = "yes")]
    enabled: bool,
    target: Option<String>,
    mode: Option<Mode>,
    schedule: Option<String>,
    timezone: Option<String>,
    keep_job_history_days: Option<u32>,
    time_limit: Option<String>,
    keep_alive: Option<String>,
    log_dir: Option<PathBuf>,
    notify: Option<RawNotify>,
    flag: Option<FlagAction>,
    filename_format: Option<String>,
    #[serde(default = "yes")]
    metadata_file: bool,
    file_extensions: Option<Vec<String>>,
    concurrency: Option<usize>,
    #[serde(default)]
    decrypt: bool,
    #[serde(default)]
    stitch_cdr_only: bool,
    #[serde(default)]
    im_attachments: bool,
    #[serde(default)]
    zip: bool,
    video_format: Option<String>,
    voice_format: Option<VoiceFormat>,
    voice_rate: Option<u32>,
    voice_channels: Option<u16>,
    #[serde(default)]
    filter: Criteria,
}

/// Where the catalog lives.
#[derive(Clone, PartialEq, Eq)]
pub enum CatalogConfig {
    Sqlite {
        path: PathBuf,
    },
    /// A PostgreSQL server; `url` may hold a password, so Debug leaves it out.
    Postgres {
        url: String,
    },
}

impl std::fmt::Debug for CatalogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogConfig::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            CatalogConfig::Postgres { url } => f
                .debug_struct("Postgres")
                .field("url", &crate::catalog::redact_url(url))
                .finish(),
        }
    }
}

/// A configured storage target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetConfig {
    Filesystem {
        path: PathBuf,
        fsync: bool,
        /// Mode of the files written (owner and group bits only).
        file_mode: u32,
    },
    /// An S3-compatible bucket; credentials come from the standard AWS chain.
    S3(S3Config, Uploads),
    /// An Azure Blob Storage container.
    Azure(AzureConfig, Uploads),
    /// A Google Cloud Storage bucket.
    Gcs(GcsConfig, Uploads),
}

/// An export policy's settings.
#[derive(Clone, Debug)]
pub struct ExportPolicy {
    pub name: String,
    pub enabled: bool,
    pub target: String,
    pub mode: Mode,
    pub job: JobSettings,
    pub filename: Template,
    pub metadata_file: bool,
    /// Only files with these extensions are exported (lower case, no dot); `None` = all.
    pub file_extensions: Option<Vec<String>>,
    pub concurrency: usize,
    /// Export encrypted artifacts decrypted (the originals stay encrypted).
    pub decrypt: bool,
    /// Produce a media file for CDR-only trader-voice records by stitching channel segments;
    /// when false only their metadata file is exported.
    pub stitch_cdr_only: bool,
    /// Export the attachment files of IM conversations.
    pub im_attachments: bool,
    /// One zip per conversation (media + metadata) instead of loose files.
    pub zip: bool,
    /// Container (file extension) video and screen recordings are transcoded to by ffmpeg.
    pub video_format: Option<String>,
    /// Voice recordings (and stitched CDR-only calls) are transcoded to this.
    pub voice: Option<VoiceSpec>,
    pub criteria: Criteria,
}

/// The settings every scheduled policy has (docs/configuration.md, "Job settings").
#[derive(Clone, Debug)]
pub struct JobSettings {
    /// When `custodian serve` runs the policy (default: manual).
    pub schedule: Schedule,
    /// The timezone of the schedule, of relative date criteria and of the filename format's
    /// date fields (default: the system's).
    pub timezone: chrono_tz::Tz,
    /// Succeeded runs older than this many days leave the job history (default 60).
    pub keep_job_history_days: u32,
    /// A run still going after this long is stopped as `timed_out` (default: no limit).
    pub time_limit: Option<Duration>,
    /// A run that reports no progress for this long is stopped as `stalled` (default 15 min).
    pub keep_alive: Duration,
    /// Each run writes a detailed log file here (default: none).
    pub log_dir: Option<PathBuf>,
    /// Who hears about completed and failed runs.
    pub notify: Option<Notify>,
}

/// The default keep-alive timeout.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15 * 60);

/// A confidential-flag policy: sets or clears the flag on the conversations its filter matches.
#[derive(Clone, Debug)]
pub struct ConfidentialPolicy {
    pub name: String,
    pub enabled: bool,
    pub mode: Mode,
    pub flag: FlagAction,
    pub job: JobSettings,
    pub criteria: Criteria,
}

/// Media tools and secrets shared by all policies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaConfig {
    /// The keystore (docs/format-v1.md, "The keystore"), needed to decrypt.
    pub keystore: Option<PathBuf>,
    /// The ffmpeg program used for video and screen formats: a bare name is looked up in
    /// `PATH`, a path is resolved against the config file's directory.
    pub ffmpeg: Option<PathBuf>,
    /// Where exports stage transcoded, stitched and ffmpeg files (a private directory per
    /// process inside it); None for the per-user default under the system temporary directory.
    pub scratch_dir: Option<PathBuf>,
}

/// Settings of the lifecycle sweep and of lifecycle policy management.
#[derive(Clone, Debug)]
pub struct LifecycleConfig {
    /// The roles file granting lifecycle permissions to users and groups.
    pub roles: Option<PathBuf>,
    /// Most artifacts one `run lifecycle` may delete without `--force`.
    pub max_deletes_per_run: u64,
    /// Largest share (0..=1) of the catalog's artifacts one run may delete without `--force`.
    pub max_delete_share: f64,
    /// When `custodian serve` runs the sweep, and its run control, log and notifications.
    pub job: JobSettings,
}

/// Name `custodian run` and `plan` give the lifecycle sweep; no config policy may take it.
pub const LIFECYCLE_RUN: &str = "lifecycle";

/// What the job history names as the lifecycle sweep's target: it deletes from the repository.
pub const LIFECYCLE_TARGET: &str = "repository";

/// A configured policy.
#[derive(Clone, Debug)]
pub enum Policy {
    Export(ExportPolicy),
    Confidential(ConfidentialPolicy),
}

impl Policy {
    pub fn name(&self) -> &str {
        match self {
            Policy::Export(p) => &p.name,
            Policy::Confidential(p) => &p.name,
        }
    }

    pub fn enabled(&self) -> bool {
        match self {
            Policy::Export(p) => p.enabled,
            Policy::Confidential(p) => p.enabled,
        }
    }

    pub fn job(&self) -> &JobSettings {
        match self {
            Policy::Export(p) => &p.job,
            Policy::Confidential(p) => &p.job,
        }
    }

    pub fn mode(&self) -> Mode {
        match self {
            Policy::Export(p) => p.mode,
            Policy::Confidential(p) => p.mode,
        }
    }
}

/// A loaded, validated configuration. Relative paths are resolved against the file's directory.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub catalog: CatalogConfig,
    pub repository_root: PathBuf,
    /// A conversation.json larger than this is refused without being read.
    pub max_record_bytes: u64,
    pub targets: BTreeMap<String, TargetConfig>,
    pub policies: BTreeMap<String, Policy>,
    pub media: MediaConfig,
    pub lifecycle: LifecycleConfig,
    /// How notifications are sent; required when a policy has `notify`.
    pub email: Option<EmailConfig>,
    pub audit: AuditConfig,
}

/// Default audit key file, beside the config file.
pub const DEFAULT_AUDIT_KEY_FILE: &str = "audit.key";

/// Where the audit chain's key lives: outside the catalog, so that write access to the
/// catalog is not enough to recompute the chain after an edit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    pub key_file: PathBuf,
}

/// Default of `[repository] max_record_bytes`: far above any real record (a thousand
/// participants and artifacts take some 200 KiB), far below what would strain memory.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 16 << 20;
const MIN_RECORD_BYTES: u64 = 1024;
/// Each indexing thread may hold one record this large, and its parsed form, at once.
const MAX_RECORD_BYTES: u64 = 1 << 30;

/// Default filename format of export policies.
pub const DEFAULT_FILENAME_FORMAT: &str = "{tenant}/{yyyy}/{MM}/{dd}/{id}/{file}";

struct Validator<'a> {
    file: &'a Path,
    doc: toml_edit::ImDocument<&'a str>,
}

impl Validator<'_> {
    fn invalid(&self, path: &[&str], message: impl Into<String>) -> ConfigError {
        let key = path.join(".");
        let message = message.into();
        match locate::line_of_key(&self.doc, path) {
            Some(line) => ConfigError::Invalid {
                file: self.file.to_owned(),
                line,
                key,
                message,
            },
            None => ConfigError::Missing {
                file: self.file.to_owned(),
                key,
                message,
            },
        }
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

/// A filesystem target's `file_mode`: octal digits such as `"0640"`, the owner able to read
/// (verify reads objects back), and nothing for others: exports are recordings.
fn file_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix('0').unwrap_or(text);
    let mode = match digits.len() {
        3 if digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) => {
            u32::from_str_radix(digits, 8).map_err(|e| e.to_string())?
        }
        _ => {
            return Err(format!(
                "`{text}` is not a file mode; write it in octal like \"0600\" or \"0640\""
            ));
        }
    };
    if mode & 0o007 != 0 {
        return Err(format!(
            "`{text}` lets others read or write exported recordings; only owner and group bits are allowed (e.g. \"0640\")"
        ));
    }
    if mode & 0o400 == 0 {
        return Err(format!(
            "`{text}` does not let the owner read its files, so `verify` could not read them back; include 0400 (e.g. \"0600\")"
        ));
    }
    Ok(mode)
}

/// `prefix` as stored: no leading or trailing `/`, then one `/` unless empty.
fn key_prefix(prefix: &str) -> String {
    match prefix.trim_matches('/') {
        "" => String::new(),
        p => format!("{p}/"),
    }
}

/// The catalog `url` names. `postgres_built` says whether this build has the PostgreSQL
/// catalog (a parameter so that both answers are tested in every build).
fn catalog_config(
    v: &Validator<'_>,
    base: &Path,
    url: &str,
    postgres_built: bool,
) -> Result<CatalogConfig, ConfigError> {
    let at = ["catalog", "url"];
    match url.split_once(':') {
        Some(("sqlite", path)) if !path.is_empty() => Ok(CatalogConfig::Sqlite {
            path: resolve(base, Path::new(path)),
        }),
        Some(("postgres" | "postgresql", rest)) if rest.starts_with("//") => {
            if !postgres_built {
                return Err(v.invalid(&at, crate::catalog::POSTGRES_LEFT_OUT));
            }
            #[cfg(feature = "postgres")]
            crate::catalog::postgres::check_url(url).map_err(|m| v.invalid(&at, m))?;
            Ok(CatalogConfig::Postgres {
                url: url.to_owned(),
            })
        }
        _ => Err(v.invalid(
            &at,
            format!(
                "`{}` is not a catalog URL; use `sqlite:PATH` (relative to the config file) or `postgres://USER@HOST:PORT/DATABASE`",
                crate::catalog::redact_url(url)
            ),
        )),
    }
}

/// A key a target of `kind` cannot do without; also refuses kinds this build leaves out.
fn required(
    v: &Validator<'_>,
    name: &str,
    kind: &str,
    key: &str,
    value: &Option<String>,
) -> Result<String, ConfigError> {
    let built = match kind {
        "s3" => cfg!(feature = "s3"),
        "azure" => cfg!(feature = "azure"),
        _ => cfg!(feature = "gcs"),
    };
    if !built {
        return Err(v.invalid(
            &["targets", name, "kind"],
            format!("this build of custodian leaves out {kind} targets; build it with `--features {kind}`"),
        ));
    }
    match value {
        Some(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(v.invalid(
            &["targets", name, "kind"],
            format!("a target of kind `{kind}` needs `{key}`"),
        )),
    }
}

/// How a remote target uploads, from its optional keys.
fn uploads(v: &Validator<'_>, name: &str, t: &RawTarget) -> Result<Uploads, ConfigError> {
    let mut u = Uploads::default();
    if let Some(mib) = t.part_size_mib {
        if !(5..=5120).contains(&mib) {
            return Err(v.invalid(
                &["targets", name, "part_size_mib"],
                "parts are 5 to 5120 MiB (S3's limits)",
            ));
        }
        u.part_size = mib as usize * 1024 * 1024;
    }
    if let Some(n) = t.part_concurrency {
        if !(1..=64).contains(&n) {
            return Err(v.invalid(
                &["targets", name, "part_concurrency"],
                "upload 1 to 64 parts of an object at once",
            ));
        }
        u.part_concurrency = n;
    }
    if let Some(secs) = t.request_timeout_secs {
        if secs == 0 {
            return Err(v.invalid(
                &["targets", name, "request_timeout_secs"],
                "must be at least 1 second",
            ));
        }
        u.request_timeout = std::time::Duration::from_secs(secs);
    }
    Ok(u)
}

/// Default workers of an export to a remote target.
const REMOTE_CONCURRENCY: usize = 16;

/// Sample rates LAME encodes.
const MP3_RATES: [u32; 9] = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000];

/// The voice output of a policy, or the key at fault and why.
fn voice_spec(p: &RawPolicy) -> Result<Option<VoiceSpec>, (&'static str, String)> {
    let Some(format) = p.voice_format else {
        return match (p.voice_rate, p.voice_channels) {
            (None, None) => Ok(None),
            (Some(_), _) => Err(("voice_rate", "set `voice_format` too".into())),
            (None, Some(_)) => Err(("voice_channels", "set `voice_format` too".into())),
        };
    };
    match p.voice_rate {
        Some(r) if !(1000..=384_000).contains(&r) => {
            return Err(("voice_rate", format!("{r} Hz is outside 1000..=384000")));
        }
        Some(r) if format == VoiceFormat::Mp3 && !MP3_RATES.contains(&r) => {
            return Err((
                "voice_rate",
                format!("MP3 cannot be {r} Hz; use one of {MP3_RATES:?}"),
            ));
        }
        _ => {}
    }
    if let Some(c) = p.voice_channels
        && !(1..=8).contains(&c)
    {
        return Err(("voice_channels", format!("{c} channels is outside 1..=8")));
    }
    Ok(Some(VoiceSpec {
        format,
        rate: p.voice_rate,
        channels: p.voice_channels,
    }))
}

/// Keys only an export policy takes.
const EXPORT_ONLY_KEYS: [&str; 13] = [
    "target",
    "filename_format",
    "metadata_file",
    "file_extensions",
    "concurrency",
    "decrypt",
    "stitch_cdr_only",
    "im_attachments",
    "zip",
    "video_format",
    "voice_format",
    "voice_rate",
    "voice_channels",
];

/// A `"90s"`, `"2h 30m"` duration of at least one second.
fn positive_duration(
    v: &Validator<'_>,
    path: &[&str],
    text: &str,
) -> Result<Duration, ConfigError> {
    match humantime::parse_duration(text) {
        Ok(d) if d >= Duration::from_secs(1) => Ok(d),
        Ok(_) => Err(v.invalid(path, "must be at least 1s")),
        Err(e) => Err(v.invalid(
            path,
            format!(
                "`{text}` is not a duration ({e}); write one such as \"90s\", \"15m\" or \"2h 30m\""
            ),
        )),
    }
}

/// The job settings every policy, and the lifecycle sweep, has; `table` is where their keys
/// are (`["policies", NAME]` or `["lifecycle"]`).
fn job_settings(
    v: &Validator<'_>,
    base: &Path,
    table: &[&str],
    p: RawJob<'_>,
    email: Option<&EmailConfig>,
) -> Result<JobSettings, ConfigError> {
    let at = |key: &'static str| -> Vec<&str> { [table, &[key]].concat() };
    let schedule = match p.schedule {
        Some(spec) => spec.parse().map_err(|m| v.invalid(&at("schedule"), m))?,
        None => Schedule::Manual,
    };
    let timezone =
        crate::schedule::timezone(p.timezone).map_err(|m| v.invalid(&at("timezone"), m))?;
    let keep_job_history_days = match p.keep_job_history_days {
        Some(0) => {
            return Err(v.invalid(
                &at("keep_job_history_days"),
                "keep at least 1 day of job history",
            ));
        }
        Some(days) => days,
        None => 60,
    };
    let time_limit = p
        .time_limit
        .map(|t| positive_duration(v, &at("time_limit"), t))
        .transpose()?;
    let keep_alive = match p.keep_alive {
        Some(t) => positive_duration(v, &at("keep_alive"), t)?,
        None => DEFAULT_KEEP_ALIVE,
    };
    let notify = match p.notify {
        None => None,
        Some(n) => {
            if email.is_none() {
                return Err(v.invalid(
                    &at("notify"),
                    "notifications need an [email] table with `smtp_host` and `from`",
                ));
            }
            let to = crate::schedule::notify::parse_addresses(&n.to)
                .map_err(|m| v.invalid(&[table, &["notify", "to"]].concat(), m))?;
            Some(Notify {
                to,
                on_completion: n.on_completion.unwrap_or(NotifyWhen::Never),
                on_failure: n.on_failure.unwrap_or(NotifyWhen::EveryTime),
            })
        }
    };
    Ok(JobSettings {
        schedule,
        timezone,
        keep_job_history_days,
        time_limit,
        keep_alive,
        log_dir: p.log_dir.map(|d| resolve(base, d)),
        notify,
    })
}

/// The `[email]` table.
fn email_config(v: &Validator<'_>, e: &RawEmail) -> Result<EmailConfig, ConfigError> {
    let at = |key: &'static str| -> Vec<&str> { vec!["email", key] };
    if e.smtp_host.is_empty() {
        return Err(v.invalid(&at("smtp_host"), "name the SMTP server"));
    }
    let from = e.from.parse().map_err(|err| {
        v.invalid(
            &at("from"),
            format!("`{}` is not an address: {err}", e.from),
        )
    })?;
    let security = e.security.unwrap_or(SmtpSecurity::Starttls);
    if e.password.is_some() && e.password_env.is_some() {
        return Err(v.invalid(
            &at("password_env"),
            "set `password` or `password_env`, not both",
        ));
    }
    if (e.password.is_some() || e.password_env.is_some()) && e.username.is_none() {
        return Err(v.invalid(&at("username"), "a password needs a `username`"));
    }
    if let Some(url) = &e.portal_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(v.invalid(
            &at("portal_url"),
            "the web portal's address, such as \"https://custodian.example.com\"",
        ));
    }
    let timeout = match e.timeout_secs {
        Some(0) => return Err(v.invalid(&at("timeout_secs"), "must be at least 1 second")),
        Some(s) => Duration::from_secs(s),
        None => Duration::from_secs(30),
    };
    Ok(EmailConfig {
        host: e.smtp_host.clone(),
        port: e.smtp_port.unwrap_or(security.default_port()),
        security,
        username: e.username.clone(),
        password: match (&e.password, &e.password_env) {
            (Some(p), _) => Some(crate::schedule::notify::Secret::Value(p.clone())),
            (None, Some(var)) => Some(crate::schedule::notify::Secret::Env(var.clone())),
            (None, None) => None,
        },
        from,
        portal_url: e
            .portal_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_owned()),
        timeout,
    })
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        Config::parse(file, &text)
    }

    /// Validates config text as if read from `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let doc = toml_edit::ImDocument::parse(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            ConfigError::Invalid {
                file: file.to_owned(),
                line: locate::line_of(text, offset),
                key: "(syntax)".into(),
                message: e.message().trim().to_owned(),
            }
        })?;
        let v = Validator { file, doc };
        let de = toml_edit::de::Deserializer::from(v.doc.clone());
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let line = inner.span().map(|s| locate::line_of(text, s.start));
            match line {
                Some(line) => ConfigError::Invalid {
                    file: file.to_owned(),
                    line,
                    key,
                    message: inner.message().trim().to_owned(),
                },
                None => v.invalid(
                    &key.split('.').filter(|k| *k != "?").collect::<Vec<_>>(),
                    inner.message().trim(),
                ),
            }
        })?;
        let base = file.parent().unwrap_or(Path::new(".")).to_owned();
        let catalog = catalog_config(&v, &base, &raw.catalog.url, cfg!(feature = "postgres"))?;
        let mut targets = BTreeMap::new();
        for (name, t) in &raw.targets {
            if !is_safe_name(name) {
                return Err(v.invalid(
                    &["targets", name],
                    "target names must be safe path components",
                ));
            }
            if t.file_mode.is_some() && t.kind != TargetKind::Filesystem {
                return Err(v.invalid(
                    &["targets", name, "file_mode"],
                    "`file_mode` belongs to filesystem targets; an object store's access is set by its own policies",
                ));
            }
            let built = match t.kind {
                TargetKind::Filesystem => {
                    let path = t.path.as_ref().ok_or_else(|| {
                        v.invalid(
                            &["targets", name, "kind"],
                            "a filesystem target needs `path`",
                        )
                    })?;
                    TargetConfig::Filesystem {
                        path: resolve(&base, path),
                        fsync: t.fsync,
                        file_mode: match &t.file_mode {
                            Some(text) => file_mode(text).map_err(|message| {
                                v.invalid(&["targets", name, "file_mode"], message)
                            })?,
                            None => crate::target::fs::DEFAULT_FILE_MODE,
                        },
                    }
                }
                TargetKind::S3 => {
                    let bucket = required(&v, name, "s3", "bucket", &t.bucket)?;
                    TargetConfig::S3(
                        S3Config {
                            bucket,
                            prefix: key_prefix(&t.prefix),
                            region: t.region.clone(),
                            endpoint: t.endpoint.clone(),
                            path_style: t.path_style,
                            client: t.client.unwrap_or(S3Client::AwsSdk),
                        },
                        uploads(&v, name, t)?,
                    )
                }
                TargetKind::Azure => {
                    let container = required(&v, name, "azure", "container", &t.container)?;
                    TargetConfig::Azure(
                        AzureConfig {
                            container,
                            prefix: key_prefix(&t.prefix),
                            account: t.account.clone(),
                            endpoint: t.endpoint.clone(),
                        },
                        uploads(&v, name, t)?,
                    )
                }
                TargetKind::Gcs => {
                    let bucket = required(&v, name, "gcs", "bucket", &t.bucket)?;
                    TargetConfig::Gcs(
                        GcsConfig {
                            bucket,
                            prefix: key_prefix(&t.prefix),
                            endpoint: t.endpoint.clone(),
                        },
                        uploads(&v, name, t)?,
                    )
                }
            };
            targets.insert(name.clone(), built);
        }
        let email = raw
            .email
            .as_ref()
            .map(|e| email_config(&v, e))
            .transpose()?;
        let mut policies = BTreeMap::new();
        for (name, p) in &raw.policies {
            let at = |key: &'static str| -> Vec<&str> { vec!["policies", name.as_str(), key] };
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(v.invalid(
                    &["policies", name],
                    "policy names may contain only letters, digits, `-` and `_`",
                ));
            }
            if name == LIFECYCLE_RUN {
                return Err(v.invalid(
                    &["policies", name],
                    "`lifecycle` names the retention sweep (`custodian run lifecycle`); pick another name",
                ));
            }
            if let Err((key, message)) = p.filter.validate() {
                return Err(v.invalid(&["policies", name, "filter", key], message));
            }
            let job = job_settings(&v, &base, &["policies", name], p.job(), email.as_ref())?;
            let policy = match p.action {
                ActionKind::Export => {
                    if p.flag.is_some() {
                        return Err(v.invalid(
                            &at("flag"),
                            "`flag` belongs to confidential policies (action = \"confidential\")",
                        ));
                    }
                    let target = p.target.clone().ok_or_else(|| {
                        v.invalid(&at("action"), "an export policy needs `target`")
                    })?;
                    if !targets.contains_key(&target) {
                        return Err(v.invalid(
                            &at("target"),
                            format!(
                                "no target named `{target}` (defined: {})",
                                targets.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                    let filename = Template::parse(
                        p.filename_format
                            .as_deref()
                            .unwrap_or(DEFAULT_FILENAME_FORMAT),
                    )
                    .and_then(|t| t.check_distinct(p.filter.tenants.len() == 1).map(|()| t))
                    .map_err(|m| v.invalid(&at("filename_format"), m))?;
                    let file_extensions = match &p.file_extensions {
                        Some(list)
                            if list.is_empty()
                                || list.iter().any(|e| normalize_extension(e).is_empty()) =>
                        {
                            return Err(v.invalid(
                                &at("file_extensions"),
                                "list extensions such as [\"wav\", \"vtr\"]; leave the key out to export every file",
                            ));
                        }
                        Some(list) => Some(list.iter().map(|e| normalize_extension(e)).collect()),
                        None => None,
                    };
                    let concurrency = match p.concurrency {
                        Some(0) => return Err(v.invalid(&at("concurrency"), "must be at least 1")),
                        Some(n) => n,
                        // Uploads to a remote store mostly wait on the network, so more
                        // workers than cores keep it busy.
                        None if !matches!(targets[&target], TargetConfig::Filesystem { .. }) => {
                            REMOTE_CONCURRENCY
                        }
                        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
                    };
                    if p.decrypt && raw.media.keystore.is_none() {
                        return Err(v.invalid(
                            &at("decrypt"),
                            "decrypting needs a keystore: set `keystore` in the [media] table",
                        ));
                    }
                    let video_format = match &p.video_format {
                        Some(f)
                            if f.is_empty() || !f.chars().all(|c| c.is_ascii_alphanumeric()) =>
                        {
                            return Err(v.invalid(
                                &at("video_format"),
                                "name the container as a file extension, such as \"mp4\" or \"webm\"",
                            ));
                        }
                        f => f.clone(),
                    };
                    let voice = voice_spec(p).map_err(|(key, m)| v.invalid(&at(key), m))?;
                    Policy::Export(ExportPolicy {
                        name: name.clone(),
                        enabled: p.enabled,
                        target,
                        mode: p.mode.unwrap_or(Mode::Incremental),
                        filename,
                        metadata_file: p.metadata_file,
                        file_extensions,
                        concurrency,
                        decrypt: p.decrypt,
                        stitch_cdr_only: p.stitch_cdr_only,
                        im_attachments: p.im_attachments,
                        zip: p.zip,
                        video_format,
                        voice,
                        criteria: p.filter.clone(),
                        job,
                    })
                }
                ActionKind::Confidential => {
                    let written = |key: &str| {
                        v.doc
                            .as_table()
                            .get("policies")
                            .and_then(|p| p.get(name.as_str()))
                            .and_then(|t| t.get(key))
                            .is_some()
                    };
                    if let Some(key) = EXPORT_ONLY_KEYS.into_iter().find(|k| written(k)) {
                        return Err(v.invalid(
                            &at(key),
                            "a confidential-flag policy only sets or clears the flag; export settings do not apply",
                        ));
                    }
                    let flag = p.flag.ok_or_else(|| {
                        v.invalid(
                            &at("action"),
                            "a confidential policy needs `flag = \"set\"` or `flag = \"clear\"`",
                        )
                    })?;
                    Policy::Confidential(ConfidentialPolicy {
                        name: name.clone(),
                        enabled: p.enabled,
                        mode: p.mode.unwrap_or(Mode::Incremental),
                        flag,
                        job,
                        criteria: p.filter.clone(),
                    })
                }
            };
            policies.insert(name.clone(), policy);
        }
        let mut lifecycle = LifecycleConfig {
            roles: raw.lifecycle.roles.as_ref().map(|r| resolve(&base, r)),
            max_deletes_per_run: 100_000,
            max_delete_share: 0.10,
            job: job_settings(
                &v,
                &base,
                &["lifecycle"],
                raw.lifecycle.job(),
                email.as_ref(),
            )?,
        };
        if let Some(n) = raw.lifecycle.max_deletes_per_run {
            if n == 0 {
                return Err(v.invalid(&["lifecycle", "max_deletes_per_run"], "must be at least 1"));
            }
            lifecycle.max_deletes_per_run = n;
        }
        if let Some(share) = raw.lifecycle.max_delete_share {
            if !(share > 0.0 && share <= 1.0) {
                return Err(v.invalid(
                    &["lifecycle", "max_delete_share"],
                    "a share of the catalog between 0 (exclusive) and 1, such as 0.1 for 10%",
                ));
            }
            lifecycle.max_delete_share = share;
        }
        let max_record_bytes = match raw.repository.max_record_bytes {
            None => DEFAULT_MAX_RECORD_BYTES,
            Some(n) if (MIN_RECORD_BYTES..=MAX_RECORD_BYTES).contains(&n) => n,
            Some(_) => {
                return Err(v.invalid(
                    &["repository", "max_record_bytes"],
                    format!(
                        "the largest conversation.json to read, in bytes, between {MIN_RECORD_BYTES} and {MAX_RECORD_BYTES} (default {DEFAULT_MAX_RECORD_BYTES}, 16 MiB)"
                    ),
                ));
            }
        };
        let key_file = raw
            .audit
            .key_file
            .unwrap_or_else(|| PathBuf::from(DEFAULT_AUDIT_KEY_FILE));
        if key_file.file_name().is_none() {
            return Err(v.invalid(
                &["audit", "key_file"],
                "must name a file (the audit key, 64 hex digits), not a directory",
            ));
        }
        Ok(Config {
            email,
            lifecycle,
            max_record_bytes,
            audit: AuditConfig {
                key_file: resolve(&base, &key_file),
            },
            file: file.to_owned(),
            catalog,
            repository_root: resolve(&base, &raw.repository.root),
            targets,
            policies,
            media: MediaConfig {
                keystore: raw.media.keystore.map(|k| resolve(&base, &k)),
                ffmpeg: raw.media.ffmpeg.map(|f| {
                    if f.components().count() > 1 {
                        resolve(&base, &f)
                    } else {
                        f
                    }
                }),
                scratch_dir: raw.media.scratch_dir.map(|d| resolve(&base, &d)),
            },
        })
    }

    /// The job settings of a policy, or of the lifecycle sweep ([`LIFECYCLE_RUN`]).
    pub fn job(&self, name: &str) -> Option<&JobSettings> {
        if name == LIFECYCLE_RUN {
            return Some(&self.lifecycle.job);
        }
        self.policies.get(name).map(Policy::job)
    }

    /// What `custodian serve` runs: every enabled policy with a schedule, and the lifecycle
    /// sweep when `[lifecycle]` has one.
    pub fn scheduled_jobs(&self) -> impl Iterator<Item = (&str, &JobSettings)> {
        self.policies
            .values()
            .filter(|p| p.enabled())
            .map(|p| (p.name(), p.job()))
            .chain(std::iter::once((LIFECYCLE_RUN, &self.lifecycle.job)))
            .filter(|(_, job)| job.schedule != crate::schedule::Schedule::Manual)
    }

    /// The policy called `name`, or an error listing the defined ones.
    pub fn policy(&self, name: &str) -> Result<&Policy, ConfigError> {
        self.policies.get(name).ok_or_else(|| ConfigError::Missing {
            file: self.file.clone(),
            key: format!("policies.{name}"),
            message: format!(
                "no such policy (defined: {})",
                self.policies.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[catalog]
url = "sqlite:state/catalog.db"

[repository]
root = "repo"

[targets.archive]
kind = "filesystem"
path = "/srv/archive"

[policies.nightly]
action = "export"
target = "archive"
mode = "full"
file_extensions = [".WAV", "mp3"]

[policies.nightly.filter]
tenants = ["acme"]
min_duration = "2h"
"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("/etc/custodian/custodian.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn good_config_resolves_paths_and_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(
            c.catalog,
            CatalogConfig::Sqlite {
                path: "/etc/custodian/state/catalog.db".into()
            }
        );
        assert_eq!(c.repository_root, Path::new("/etc/custodian/repo"));
        let Policy::Export(p) = c.policy("nightly").unwrap() else {
            panic!("an export policy")
        };
        assert_eq!(p.mode, Mode::Full);
        assert_eq!(
            p.file_extensions,
            Some(vec!["wav".to_string(), "mp3".to_string()])
        );
        assert!(p.metadata_file);
    }

    #[test]
    fn a_filesystem_target_writes_owner_only_files_unless_file_mode_says() {
        let mode_of = |text: &str| match &parse(text).unwrap().targets["archive"] {
            TargetConfig::Filesystem { file_mode, .. } => *file_mode,
            other => panic!("{other:?}"),
        };
        assert_eq!(mode_of(GOOD), 0o600);
        let with = |mode: &str| {
            GOOD.replace(
                "path = \"/srv/archive\"",
                &format!("path = \"/srv/archive\"\nfile_mode = \"{mode}\""),
            )
        };
        assert_eq!(mode_of(&with("0640")), 0o640);
        assert_eq!(mode_of(&with("440")), 0o440);
    }

    #[test]
    fn a_file_mode_for_others_or_not_octal_is_refused_naming_file_line_and_key() {
        let with = |mode: &str| {
            parse(&GOOD.replace(
                "path = \"/srv/archive\"",
                &format!("path = \"/srv/archive\"\nfile_mode = \"{mode}\""),
            ))
            .unwrap_err()
        };
        for (mode, says) in [
            ("0644", "lets others read"),
            ("0602", "lets others read or write"),
            ("4640", "not a file mode"),
            ("0o640", "not a file mode"),
            ("rw-r-----", "not a file mode"),
            ("0890", "not a file mode"),
            ("", "not a file mode"),
            ("0240", "does not let the owner read"),
        ] {
            let err = with(mode);
            assert!(
                err.starts_with("/etc/custodian/custodian.toml:11: targets.archive.file_mode: "),
                "{mode}: {err}"
            );
            assert!(err.contains(says), "{mode}: {err}");
        }
        let s3 = GOOD.replace(
            "kind = \"filesystem\"\npath = \"/srv/archive\"",
            "kind = \"s3\"\nbucket = \"b\"\nfile_mode = \"0600\"",
        );
        let err = parse(&s3).unwrap_err();
        assert!(
            err.contains("targets.archive.file_mode: `file_mode` belongs to filesystem targets"),
            "{err}"
        );
    }

    #[test]
    fn audit_key_file_defaults_beside_the_config_and_resolves_against_it() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.audit.key_file, Path::new("/etc/custodian/audit.key"));
        let c = parse(&format!("{GOOD}\n[audit]\nkey_file = \"keys/chain.key\"\n")).unwrap();
        assert_eq!(c.audit.key_file, Path::new("/etc/custodian/keys/chain.key"));
        let err = parse(&format!("{GOOD}\n[audit]\nkey = \"x\"\n")).unwrap_err();
        assert!(err.contains("audit.key: unknown field `key`"), "{err}");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err =
            parse(&GOOD.replace("mode = \"full\"", "mode = \"full\"\nretries = 3")).unwrap_err();
        assert!(
            err.starts_with("/etc/custodian/custodian.toml:16: policies.nightly.retries"),
            "{err}"
        );
        assert!(err.contains("unknown field `retries`"), "{err}");
    }

    #[test]
    fn wrong_type_names_file_line_and_key() {
        let err = parse(&GOOD.replace("mode = \"full\"", "mode = 5")).unwrap_err();
        assert!(
            err.starts_with("/etc/custodian/custodian.toml:15: policies.nightly.mode:"),
            "{err}"
        );
    }

    #[test]
    fn nested_filter_errors_are_located() {
        let err =
            parse(&GOOD.replace("min_duration = \"2h\"", "min_duration = \"later\"")).unwrap_err();
        assert!(
            err.starts_with(
                "/etc/custodian/custodian.toml:20: policies.nightly.filter.min_duration:"
            ),
            "{err}"
        );
    }

    #[test]
    fn dangling_target_reference_is_located() {
        let err = parse(&GOOD.replace("target = \"archive\"", "target = \"archiv\"")).unwrap_err();
        assert_eq!(
            err,
            "/etc/custodian/custodian.toml:14: policies.nightly.target: no target named `archiv` (defined: archive)"
        );
    }

    #[test]
    fn bad_template_and_syntax_are_located() {
        let err = parse(&GOOD.replace("mode = \"full\"", "filename_format = \"{tenant}/{file}\""))
            .unwrap_err();
        assert!(
            err.starts_with("/etc/custodian/custodian.toml:15: policies.nightly.filename_format:"),
            "{err}"
        );
        let err = parse("[repository\nroot = 1").unwrap_err();
        assert!(
            err.starts_with("/etc/custodian/custodian.toml:1: (syntax):"),
            "{err}"
        );
    }

    #[test]
    fn media_switches_are_checked() {
        let err = parse(&GOOD.replace("mode = \"full\"", "decrypt = true")).unwrap_err();
        assert!(
            err.starts_with("/etc/custodian/custodian.toml:15: policies.nightly.decrypt:")
                && err.contains("[media]"),
            "{err}"
        );
        let err = parse(&GOOD.replace("mode = \"full\"", "video_format = \".mp4\"")).unwrap_err();
        assert!(
            err.starts_with("/etc/custodian/custodian.toml:15: policies.nightly.video_format:"),
            "{err}"
        );
        let c = parse(&format!(
            "{}\n[media]\nkeystore = \"keys.json\"\nffmpeg = \"ffmpeg\"\nscratch_dir = \"scratch\"\n",
            GOOD.replace("mode = \"full\"", "decrypt = true\nzip = true")
        ))
        .unwrap();
        assert_eq!(
            c.media.keystore.as_deref(),
            Some(Path::new("/etc/custodian/keys.json"))
        );
        assert_eq!(
            c.media.scratch_dir.as_deref(),
            Some(Path::new("/etc/custodian/scratch"))
        );
        let Policy::Export(p) = c.policy("nightly").unwrap() else {
            panic!("an export policy")
        };
        assert!(p.decrypt && p.zip && !p.stitch_cdr_only && !p.im_attachments);
    }

    #[test]
    fn voice_settings_are_checked() {
        let with = |lines: &str| parse(&GOOD.replace("mode = \"full\"", lines));
        let err = with("voice_format = \"ogg\"").unwrap_err();
        assert!(
            err.starts_with("/etc/custodian/custodian.toml:15: policies.nightly.voice_format:"),
            "{err}"
        );
        let err = with("voice_rate = 8000").unwrap_err();
        assert!(
            err.contains("policies.nightly.voice_rate: set `voice_format` too"),
            "{err}"
        );
        let err = with("voice_format = \"mp3\"\nvoice_rate = 9000").unwrap_err();
        assert!(
            err.contains(":16: policies.nightly.voice_rate: MP3 cannot be 9000 Hz"),
            "{err}"
        );
        let err = with("voice_format = \"flac\"\nvoice_channels = 0").unwrap_err();
        assert!(err.contains("policies.nightly.voice_channels:"), "{err}");
        let c = with("voice_format = \"wav-ulaw\"\nvoice_rate = 8000\nvoice_channels = 1").unwrap();
        let Policy::Export(p) = c.policy("nightly").unwrap() else {
            panic!("an export policy")
        };
        assert_eq!(
            p.voice,
            Some(VoiceSpec {
                format: VoiceFormat::WavUlaw,
                rate: Some(8000),
                channels: Some(1)
            })
        );
    }

    #[test]
    fn job_settings_are_checked() {
        let with = |lines: &str| parse(&GOOD.replace("mode = \"full\"", lines));
        let c = with("time_limit = \"2h 30m\"\nkeep_alive = \"90s\"\nlog_dir = \"logs\"").unwrap();
        let job = c.policy("nightly").unwrap().job();
        assert_eq!(job.time_limit, Some(Duration::from_secs(9000)));
        assert_eq!(job.keep_alive, Duration::from_secs(90));
        assert_eq!(
            job.log_dir.as_deref(),
            Some(Path::new("/etc/custodian/logs"))
        );
        let err = with("time_limit = \"soon\"").unwrap_err();
        assert!(err.starts_with("/etc/custodian/custodian.toml:15: policies.nightly.time_limit: `soon` is not a duration"), "{err}");
        let err = with("keep_alive = \"10ms\"").unwrap_err();
        assert!(
            err.contains("policies.nightly.keep_alive: must be at least 1s"),
            "{err}"
        );
        let err = with("notify = { to = \"a@example.com\" }").unwrap_err();
        assert!(
            err.contains("policies.nightly.notify: notifications need an [email] table"),
            "{err}"
        );
        let email = "\n[email]\nsmtp_host = \"mail\"\nfrom = \"c@example.com\"\n";
        let err = parse(&format!(
            "{}{email}",
            GOOD.replace(
                "mode = \"full\"",
                "notify = { to = \"a@example.com, nobody\" }"
            )
        ))
        .unwrap_err();
        assert!(
            err.contains(":15: policies.nightly.notify.to: `nobody` is not an email address"),
            "{err}"
        );
        let c = parse(&format!(
            "{}{email}",
            GOOD.replace("mode = \"full\"", "notify = { to = \"a@example.com\" }")
        ))
        .unwrap();
        let email = c.email.unwrap();
        assert_eq!((email.port, email.security), (587, SmtpSecurity::Starttls));
        let notify = c.policies["nightly"].job().notify.clone().unwrap();
        assert_eq!(notify.on_failure, NotifyWhen::EveryTime);
        assert_eq!(notify.on_completion, NotifyWhen::Never);
    }

    #[test]
    fn confidential_policies_take_only_their_keys() {
        let policy = "[policies.flag]\naction = \"confidential\"\nflag = \"set\"\n";
        let c = parse(&format!("{GOOD}{policy}")).unwrap();
        let Policy::Confidential(p) = c.policy("flag").unwrap() else {
            panic!("a confidential policy")
        };
        assert_eq!((p.flag, p.mode), (FlagAction::Set, Mode::Incremental));
        let err = parse(&format!("{GOOD}{policy}zip = true\n")).unwrap_err();
        assert!(
            err.contains(":24: policies.flag.zip: a confidential-flag policy only sets"),
            "{err}"
        );
        let err = parse(&format!(
            "{GOOD}[policies.flag]\naction = \"confidential\"\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("policies.flag.action: a confidential policy needs `flag"),
            "{err}"
        );
        let err = parse(&GOOD.replace("mode = \"full\"", "flag = \"set\"")).unwrap_err();
        assert!(
            err.contains("policies.nightly.flag: `flag` belongs to confidential policies"),
            "{err}"
        );
    }

    #[test]
    fn catalog_urls_select_the_implementation() {
        let with = |url: &str| GOOD.replace("sqlite:state/catalog.db", url);
        let url = "postgres://custodian:s3cret@db.example.com:5433/records";
        if cfg!(feature = "postgres") {
            assert_eq!(
                parse(&with(url)).unwrap().catalog,
                CatalogConfig::Postgres { url: url.into() }
            );
            let shown = format!("{:?}", parse(&with(url)).unwrap().catalog);
            assert!(
                !shown.contains("s3cret") && shown.contains("db.example.com"),
                "{shown}"
            );
            for (bad, why) in [
                (
                    "postgresql://u:s3cret@db/x?connect_timeout=soon",
                    "connect_timeout",
                ),
                ("postgresql://u:s3cret@db/x?sslmode=require", "requires TLS"),
            ] {
                let err = parse(&with(bad)).unwrap_err();
                assert!(
                    err.starts_with("/etc/custodian/custodian.toml:3: catalog.url: ")
                        && err.contains(why)
                        && !err.contains("s3cret"),
                    "{err}"
                );
            }
        }
        let err = parse(&with("mysql://u:s3cret@db/x")).unwrap_err();
        assert!(
            err.starts_with("/etc/custodian/custodian.toml:3: catalog.url: ")
                && err.contains("`mysql://u@db/x` is not a catalog URL")
                && !err.contains("s3cret"),
            "{err}"
        );
        let text = with(url);
        let doc = toml_edit::ImDocument::parse(text.as_str()).unwrap();
        let v = Validator {
            file: Path::new("/etc/custodian/custodian.toml"),
            doc,
        };
        let err = catalog_config(&v, Path::new("/etc/custodian"), url, false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/etc/custodian/custodian.toml:3: catalog.url: this build of custodian leaves out the PostgreSQL catalog; build it with `--features postgres`"
        );
    }

    #[test]
    fn max_record_bytes_defaults_to_16_mib_and_is_checked() {
        assert_eq!(parse(GOOD).unwrap().max_record_bytes, 16 << 20);
        let with = |value: &str| {
            parse(&GOOD.replace(
                "root = \"repo\"",
                &format!("root = \"repo\"\nmax_record_bytes = {value}"),
            ))
        };
        assert_eq!(with("65536").unwrap().max_record_bytes, 65536);
        for bad in ["0", "1023", "2147483648"] {
            let err = with(bad).unwrap_err();
            assert!(
                err.starts_with("/etc/custodian/custodian.toml:7: repository.max_record_bytes: the largest conversation.json to read"),
                "{err}"
            );
        }
        let err = with("-1").unwrap_err();
        assert!(err.contains(":7: repository.max_record_bytes"), "{err}");
    }

    #[test]
    fn missing_repository_is_reported() {
        let err = parse("[catalog]\nurl = \"sqlite:x.db\"\n").unwrap_err();
        assert!(err.contains("missing field `repository`"), "{err}");
    }
}
