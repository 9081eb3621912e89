//! The `[repository]` table: a directory (`root`), or a bucket or container of an object
//! store with the same keys as a target of that kind (docs/configuration.md, "[repository]").

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::repository::{DEFAULT_MAX_RECORD_BYTES, MAX_RECORD_BYTES, MIN_RECORD_BYTES};
use crate::settings::{Invalid, resolve};
use crate::target::{
    AzureConfig, GcsConfig, S3Client, S3Config, TargetConfig, Uploads, key_prefix,
};

/// Where the repository is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepositoryConfig {
    /// A directory tree on a local (or mounted) filesystem.
    Filesystem { root: PathBuf },
    /// A bucket or container (and key prefix) of an object store, described as the target of
    /// that kind would be.
    Store(TargetConfig),
}

impl RepositoryConfig {
    /// The root directory of a repository on a filesystem; None for one in an object store.
    pub fn local_root(&self) -> Option<&Path> {
        match self {
            RepositoryConfig::Filesystem { root } => Some(root),
            RepositoryConfig::Store(_) => None,
        }
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
enum RepositoryKind {
    #[default]
    Filesystem,
    S3,
    Azure,
    Gcs,
}

impl RepositoryKind {
    fn name(self) -> &'static str {
        match self {
            RepositoryKind::Filesystem => "filesystem",
            RepositoryKind::S3 => "s3",
            RepositoryKind::Azure => "azure",
            RepositoryKind::Gcs => "gcs",
        }
    }
}

/// The `[repository]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySettings {
    #[serde(default)]
    kind: RepositoryKind,
    root: Option<PathBuf>,
    max_record_bytes: Option<u64>,
    bucket: Option<String>,
    container: Option<String>,
    account: Option<String>,
    #[serde(default)]
    prefix: String,
    region: Option<String>,
    endpoint: Option<String>,
    #[serde(default)]
    path_style: bool,
    client: Option<S3Client>,
    request_timeout_secs: Option<u64>,
}

impl RepositorySettings {
    /// Where the repository is; a `root` is relative to `base`, the config's directory.
    pub fn validate(&self, base: &Path) -> Result<RepositoryConfig, Invalid> {
        let kind = self.kind;
        let only = |key: &'static str, set: bool, kinds: &str| {
            if set {
                Err(Invalid::at(
                    key,
                    format!(
                        "`{key}` belongs to a repository of kind {kinds}, not `{}`; remove it",
                        kind.name()
                    ),
                ))
            } else {
                Ok(())
            }
        };
        let store = kind != RepositoryKind::Filesystem;
        only("root", store && self.root.is_some(), "`filesystem`")?;
        only(
            "prefix",
            !store && !self.prefix.is_empty(),
            "`s3`, `azure` or `gcs`",
        )?;
        only(
            "endpoint",
            !store && self.endpoint.is_some(),
            "`s3`, `azure` or `gcs`",
        )?;
        only(
            "request_timeout_secs",
            !store && self.request_timeout_secs.is_some(),
            "`s3`, `azure` or `gcs`",
        )?;
        let s3 = kind == RepositoryKind::S3;
        only("region", !s3 && self.region.is_some(), "`s3`")?;
        only("path_style", !s3 && self.path_style, "`s3`")?;
        only("client", !s3 && self.client.is_some(), "`s3`")?;
        let azure = kind == RepositoryKind::Azure;
        only("container", !azure && self.container.is_some(), "`azure`")?;
        only("account", !azure && self.account.is_some(), "`azure`")?;
        only(
            "bucket",
            azure && self.bucket.is_some() || !store && self.bucket.is_some(),
            "`s3` or `gcs`",
        )?;
        let mut uploads = Uploads::default();
        if let Some(secs) = self.request_timeout_secs {
            if secs == 0 {
                return Err(Invalid::at(
                    "request_timeout_secs",
                    "must be at least 1 second",
                ));
            }
            uploads.request_timeout = std::time::Duration::from_secs(secs);
        }
        let prefix = key_prefix(&self.prefix);
        Ok(match kind {
            RepositoryKind::Filesystem => RepositoryConfig::Filesystem {
                root: resolve(
                    base,
                    self.root.as_ref().ok_or_else(|| {
                        Invalid::table(
                            "a repository needs `root` (a directory), or `kind = \"s3\"`, \"azure\" or \"gcs\" with the bucket or container that holds it",
                        )
                    })?,
                ),
            },
            RepositoryKind::S3 => RepositoryConfig::Store(TargetConfig::S3(
                S3Config {
                    bucket: required(kind, "bucket", &self.bucket)?,
                    prefix,
                    region: self.region.clone(),
                    endpoint: self.endpoint.clone(),
                    path_style: self.path_style,
                    client: self.client.unwrap_or(S3Client::AwsSdk),
                    object_lock: None,
                },
                uploads,
            )),
            RepositoryKind::Azure => RepositoryConfig::Store(TargetConfig::Azure(
                AzureConfig {
                    container: required(kind, "container", &self.container)?,
                    prefix,
                    account: self.account.clone(),
                    endpoint: self.endpoint.clone(),
                },
                uploads,
            )),
            RepositoryKind::Gcs => RepositoryConfig::Store(TargetConfig::Gcs(
                GcsConfig {
                    bucket: required(kind, "bucket", &self.bucket)?,
                    prefix,
                    endpoint: self.endpoint.clone(),
                },
                uploads,
            )),
        })
    }

    /// A conversation.json larger than this is refused without being read.
    pub fn max_record_bytes(&self) -> Result<u64, Invalid> {
        match self.max_record_bytes {
            None => Ok(DEFAULT_MAX_RECORD_BYTES),
            Some(n) if (MIN_RECORD_BYTES..=MAX_RECORD_BYTES).contains(&n) => Ok(n),
            Some(_) => Err(Invalid::at(
                "max_record_bytes",
                format!(
                    "the largest conversation.json to read, in bytes, between {MIN_RECORD_BYTES} and {MAX_RECORD_BYTES} (default {DEFAULT_MAX_RECORD_BYTES}, 16 MiB)"
                ),
            )),
        }
    }
}

/// A key a repository of `kind` cannot do without; also refuses kinds this build leaves out.
fn required(kind: RepositoryKind, key: &str, value: &Option<String>) -> Result<String, Invalid> {
    #[allow(
        clippy::match_like_matches_macro,
        reason = "which arms are true depends on the features built"
    )]
    let built = match kind {
        RepositoryKind::S3 => cfg!(feature = "s3"),
        RepositoryKind::Azure => cfg!(feature = "azure"),
        _ => cfg!(feature = "gcs"),
    };
    let name = kind.name();
    if !built {
        return Err(Invalid::at(
            "kind",
            format!(
                "this build of custodian leaves out {name} repositories; build it with `--features {name}`"
            ),
        ));
    }
    match value {
        Some(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(Invalid::at(
            "kind",
            format!("a repository of kind `{name}` needs `{key}`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RepositoryConfig, Invalid> {
        toml_edit::de::from_str::<RepositorySettings>(text)
            .unwrap()
            .validate(Path::new("/etc/custodian"))
    }

    #[test]
    fn a_root_alone_is_a_directory_relative_to_the_config() {
        assert_eq!(
            parse("root = \"repo\"").unwrap(),
            RepositoryConfig::Filesystem {
                root: PathBuf::from("/etc/custodian/repo")
            }
        );
    }

    #[cfg(feature = "s3")]
    #[test]
    fn an_s3_repository_takes_a_targets_keys() {
        let RepositoryConfig::Store(TargetConfig::S3(c, _)) = parse(
            "kind = \"s3\"\nbucket = \"recordings\"\nprefix = \"/site-a/\"\nendpoint = \"http://127.0.0.1:9000\"\npath_style = true",
        )
        .unwrap() else {
            panic!("not an S3 repository")
        };
        assert_eq!(
            (c.bucket.as_str(), c.prefix.as_str(), c.path_style),
            ("recordings", "site-a/", true)
        );
    }

    #[test]
    fn keys_of_another_kind_are_named() {
        let e = parse("root = \"repo\"\nbucket = \"b\"").unwrap_err();
        assert_eq!(e.key, ["bucket"]);
        let e = parse("kind = \"s3\"\nbucket = \"b\"\nroot = \"repo\"").unwrap_err();
        assert_eq!(e.key, ["root"]);
        assert!(e.message.contains("`filesystem`"), "{}", e.message);
        let e = parse("kind = \"azure\"\ncontainer = \"c\"\nregion = \"eu\"").unwrap_err();
        assert_eq!(e.key, ["region"]);
    }

    #[test]
    fn a_missing_root_or_bucket_is_named() {
        assert!(
            parse("max_record_bytes = 4096")
                .unwrap_err()
                .message
                .contains("`root`")
        );
        if cfg!(feature = "s3") {
            let e = parse("kind = \"s3\"").unwrap_err();
            assert!(e.message.contains("`bucket`"), "{}", e.message);
        }
    }
}
