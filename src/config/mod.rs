//! `custodian.toml`: the file as a whole, and errors that name file, line and key.
//!
//! Parsing goes raw → validated: serde reads [`RawConfig`] with `deny_unknown_fields`
//! everywhere, then each section's owner checks its own values without I/O (the catalog its
//! URL, a target its kind and keys, a policy its action's keys, …) and reports a key relative
//! to its table; this module adds the table, the file and the line, and checks what one section
//! names in another (a policy's target, keystore and email server). Nothing is opened before
//! that succeeds.

mod locate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::audit::{AuditConfig, AuditSettings};
use crate::catalog::{CatalogConfig, CatalogSettings};
use crate::media::{MediaConfig, MediaSettings};
use crate::policy::lifecycle::{LIFECYCLE_RUN, LifecycleConfig, LifecycleSettings};
use crate::policy::{Policy, PolicySettings};
use crate::schedule::notify::{EmailConfig, EmailSettings};
use crate::schedule::service::{ServeConfig, ServeSettings};
use crate::schedule::{JobSettings, Schedule};
use crate::settings::Invalid;
use crate::source::{RepositoryConfig, RepositorySettings};
use crate::target::{TargetConfig, TargetSettings};

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

/// The file as written: each section's table is read by its owner's type.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    catalog: CatalogSettings,
    repository: RepositorySettings,
    #[serde(default)]
    targets: BTreeMap<String, TargetSettings>,
    #[serde(default)]
    policies: BTreeMap<String, PolicySettings>,
    #[serde(default)]
    media: MediaSettings,
    #[serde(default)]
    lifecycle: LifecycleSettings,
    email: Option<EmailSettings>,
    #[serde(default)]
    audit: AuditSettings,
    #[serde(default)]
    serve: ServeSettings,
}

/// A loaded, validated configuration. Relative paths are resolved against the file's directory.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub catalog: CatalogConfig,
    /// Where the recordings are: a directory or a bucket.
    pub repository: RepositoryConfig,
    /// A conversation.json larger than this is refused without being read.
    pub max_record_bytes: u64,
    pub targets: BTreeMap<String, TargetConfig>,
    pub policies: BTreeMap<String, Policy>,
    pub media: MediaConfig,
    pub lifecycle: LifecycleConfig,
    /// How notifications are sent; required when a policy has `notify`.
    pub email: Option<EmailConfig>,
    pub audit: AuditConfig,
    /// Where `custodian serve` takes management commands.
    pub serve: ServeConfig,
}

/// The file being validated, to locate the keys errors name.
struct Validator<'a> {
    file: &'a Path,
    doc: toml_edit::ImDocument<&'a str>,
}

impl<'a> Validator<'a> {
    /// Parses `text`, read from `file`, as TOML and then as the raw schema.
    fn read(file: &'a Path, text: &'a str) -> Result<(Validator<'a>, RawConfig), ConfigError> {
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
        let raw = serde_path_to_error::deserialize(de).map_err(|e| {
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
        Ok((v, raw))
    }

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

    /// What the section at `table` made of its settings, or its error located in the file.
    fn section<T>(&self, table: &[&str], checked: Result<T, Invalid>) -> Result<T, ConfigError> {
        checked.map_err(|e| self.invalid(&[table, &e.key].concat(), e.message))
    }

    /// What each section names in another: a policy's target and the keystore it decrypts
    /// with, the email server a job notifies through.
    fn check_references(&self, c: &Config) -> Result<(), ConfigError> {
        for (name, policy) in &c.policies {
            self.check_notify(&["policies", name], policy.job(), c)?;
            let Policy::Export(p) = policy else {
                continue;
            };
            if !c.targets.contains_key(&p.target) {
                return Err(self.invalid(
                    &["policies", name, "target"],
                    format!(
                        "no target named `{}` (defined: {})",
                        p.target,
                        c.targets.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if p.decrypt && c.media.keystore.is_none() {
                return Err(self.invalid(
                    &["policies", name, "decrypt"],
                    "decrypting needs a keystore: set `keystore` in the [media] table",
                ));
            }
        }
        // A store has no rename: a quarantine would be a copy and a delete, which custodian
        // does not do (docs/operations.md, "A repository in an object store").
        if c.lifecycle.quarantine.is_some() && c.repository.local_root().is_none() {
            return Err(self.invalid(
                &["lifecycle", "quarantine_days"],
                "a quarantine window needs a repository in a directory (a move into quarantine is a rename, which an object store has not); remove quarantine_days: the sweep of a store deletes directly",
            ));
        }
        self.check_notify(&["lifecycle"], &c.lifecycle.job, c)
    }

    /// A job that notifies needs the `[email]` table.
    fn check_notify(
        &self,
        table: &[&str],
        job: &JobSettings,
        c: &Config,
    ) -> Result<(), ConfigError> {
        if job.notify.is_some() && c.email.is_none() {
            return Err(self.invalid(
                &[table, &["notify"]].concat(),
                "notifications need an [email] table with `smtp_host` and `from`",
            ));
        }
        Ok(())
    }
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

    /// Validates config text as if read from `file`: each section by its owner, then what
    /// the sections name in each other.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let (v, raw) = Validator::read(file, text)?;
        let base = file.parent().unwrap_or(Path::new("."));
        let catalog = v.section(&["catalog"], raw.catalog.validate(base))?;
        let mut targets = BTreeMap::new();
        for (name, t) in &raw.targets {
            let target = v.section(&["targets", name], t.validate(name, base))?;
            targets.insert(name.clone(), target);
        }
        let email = match &raw.email {
            Some(e) => Some(v.section(&["email"], e.validate())?),
            None => None,
        };
        let mut policies = BTreeMap::new();
        for (name, p) in &raw.policies {
            let target = p.target().and_then(|t| targets.get(t));
            let remote = target.is_some_and(TargetConfig::is_remote);
            let policy = v.section(&["policies", name], p.validate(name, base, remote))?;
            policies.insert(name.clone(), policy);
        }
        let config = Config {
            file: file.to_owned(),
            catalog,
            targets,
            email,
            policies,
            lifecycle: v.section(&["lifecycle"], raw.lifecycle.validate(base))?,
            max_record_bytes: v.section(&["repository"], raw.repository.max_record_bytes())?,
            repository: v.section(&["repository"], raw.repository.validate(base))?,
            audit: v.section(&["audit"], raw.audit.validate(base))?,
            media: raw.media.resolve(base),
            serve: v.section(&["serve"], raw.serve.validate(base))?,
        };
        v.check_references(&config)?;
        Ok(config)
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
            .filter(|(_, job)| job.schedule != Schedule::Manual)
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
    use std::time::Duration;

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::catalog::Mode;
    use crate::media::audio::{VoiceFormat, VoiceSpec};
    use crate::policy::confidential::FlagAction;
    use crate::schedule::notify::{NotifyWhen, SmtpSecurity};
    use crate::schedule::serve::Scheduler;

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
        assert_eq!(
            c.repository.local_root(),
            Some(Path::new("/etc/custodian/repo"))
        );
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
    fn serve_socket_resolves_and_its_errors_name_file_line_and_key() {
        assert_eq!(parse(GOOD).unwrap().serve.socket, None);
        let c = parse(&format!("{GOOD}\n[serve]\nsocket = \"run/c.sock\"\n")).unwrap();
        assert_eq!(
            c.serve.socket.unwrap().path,
            Path::new("/etc/custodian/run/c.sock")
        );
        let text = format!("{GOOD}\n[serve]\nsocket = \"/run/c.sock\"\nsocket_group = \"a:b\"\n");
        let line = text
            .lines()
            .position(|l| l.starts_with("socket_group"))
            .unwrap()
            + 1;
        let err = parse(&text).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "/etc/custodian/custodian.toml:{line}: serve.socket_group: must be the name of a group"
            )),
            "{err}"
        );
        let err = parse(&format!("{GOOD}\n[serve]\npath = \"x\"\n")).unwrap_err();
        assert!(err.contains("serve.path: unknown field `path`"), "{err}");
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
        assert!(
            !c.media.tighten_keystore,
            "a keystore others can open is refused by default"
        );
        assert_eq!(
            c.media.scratch_dir.as_deref(),
            Some(Path::new("/etc/custodian/scratch"))
        );
        let Policy::Export(p) = c.policy("nightly").unwrap() else {
            panic!("an export policy")
        };
        assert!(p.decrypt && p.zip && !p.stitch_cdr_only && !p.im_attachments);
        let tightened = parse(&format!(
            "{GOOD}\n[media]\nkeystore = \"keys.json\"\ntighten_keystore = true\n"
        ))
        .unwrap();
        assert!(tightened.media.tighten_keystore);
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
        let settings = CatalogSettings { url: url.into() };
        let checked = settings.validate_in(Path::new("/etc/custodian"), false);
        let err = v.section(&["catalog"], checked).unwrap_err().to_string();
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
    fn only_enabled_scheduled_policies_are_planned() {
        let config = parse(
            r#"
[repository]
root = "r"
[targets.t]
kind = "filesystem"
path = "/t"
[policies.a]
action = "export"
target = "t"
schedule = "hourly at :00"
timezone = "UTC"
[policies.b]
action = "export"
target = "t"
schedule = "hourly at :30"
timezone = "UTC"
[policies.manual]
action = "export"
target = "t"
[policies.off]
action = "export"
target = "t"
enabled = false
schedule = "hourly at :00"
"#,
        )
        .unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let s = Scheduler::new(config.scheduled_jobs(), at("2026-05-01T10:10:00Z"));
        assert_eq!(s.scheduled(), 2);
        assert_eq!(s.next_wake(), Some(("b", at("2026-05-01T10:30:00Z"))));
    }

    #[test]
    fn missing_repository_is_reported() {
        let err = parse("[catalog]\nurl = \"sqlite:x.db\"\n").unwrap_err();
        assert!(err.contains("missing field `repository`"), "{err}");
    }
}
