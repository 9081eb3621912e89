//! A `[targets.NAME]` table: what kind of store, where, and how to upload to it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    AzureConfig, Durability, GcsConfig, LockMode, ObjectLock, S3Client, S3Config, Uploads,
};
use crate::repository::record::is_safe_name;
use crate::settings::{Invalid, resolve};

/// A configured storage target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetConfig {
    Filesystem {
        path: PathBuf,
        durability: Durability,
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

impl TargetConfig {
    /// Whether the target is an object store reached over the network.
    pub fn is_remote(&self) -> bool {
        !matches!(self, TargetConfig::Filesystem { .. })
    }

    /// The S3 Object Lock the target writes under, if any.
    pub fn object_lock(&self) -> Option<ObjectLock> {
        match self {
            TargetConfig::S3(s3, _) => s3.object_lock,
            _ => None,
        }
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum TargetKind {
    Filesystem,
    S3,
    Azure,
    Gcs,
}

/// A `[targets.NAME]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSettings {
    kind: TargetKind,
    path: Option<PathBuf>,
    /// Replaced by `durability`; kept only to say so.
    fsync: Option<bool>,
    durability: Option<Durability>,
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
    copy_part_size_mib: Option<u64>,
    object_lock: Option<ObjectLockSettings>,
}

/// `object_lock = { mode = "…", retain_days = N }` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectLockSettings {
    mode: LockMode,
    retain_days: i64,
}

impl ObjectLockSettings {
    fn validate(&self) -> Result<ObjectLock, Invalid> {
        let days = u32::try_from(self.retain_days)
            .ok()
            .filter(|d| (1..=ObjectLock::MAX_DAYS).contains(d))
            .ok_or_else(|| {
                Invalid::at(
                    "retain_days",
                    format!(
                        "retain objects 1 to {} days (100 years, S3's limit), not {}",
                        ObjectLock::MAX_DAYS,
                        self.retain_days
                    ),
                )
                .under("object_lock")
            })?;
        Ok(ObjectLock {
            mode: self.mode,
            retain_days: days,
        })
    }
}

impl TargetSettings {
    /// The target called `name`; a filesystem path is relative to `base`, the config's
    /// directory.
    pub fn validate(&self, name: &str, base: &Path) -> Result<TargetConfig, Invalid> {
        if !is_safe_name(name) {
            return Err(Invalid::table("target names must be safe path components"));
        }
        if self.fsync.is_some() {
            return Err(Invalid::at(
                "fsync",
                "`fsync` is gone: filesystem targets are durable by default; remove the key (or, to give up durability, set `durability = \"unsafe_no_sync\"`)",
            ));
        }
        if self.durability.is_some() && self.kind != TargetKind::Filesystem {
            return Err(Invalid::at(
                "durability",
                "`durability` belongs to filesystem targets; an object store's upload counts once the store confirms it",
            ));
        }
        if self.file_mode.is_some() && self.kind != TargetKind::Filesystem {
            return Err(Invalid::at(
                "file_mode",
                "`file_mode` belongs to filesystem targets; an object store's access is set by its own policies",
            ));
        }
        self.check_object_lock()?;
        Ok(match self.kind {
            TargetKind::Filesystem => {
                let path = self
                    .path
                    .as_ref()
                    .ok_or_else(|| Invalid::at("kind", "a filesystem target needs `path`"))?;
                TargetConfig::Filesystem {
                    path: resolve(base, path),
                    durability: self.durability.unwrap_or(Durability::Durable),
                    file_mode: match &self.file_mode {
                        Some(text) => file_mode(text).map_err(|m| Invalid::at("file_mode", m))?,
                        None => super::fs::DEFAULT_FILE_MODE,
                    },
                }
            }
            TargetKind::S3 => TargetConfig::S3(
                S3Config {
                    bucket: required("s3", "bucket", &self.bucket)?,
                    prefix: key_prefix(&self.prefix),
                    region: self.region.clone(),
                    endpoint: self.endpoint.clone(),
                    path_style: self.path_style,
                    client: self.client.unwrap_or(S3Client::AwsSdk),
                    object_lock: self
                        .object_lock
                        .as_ref()
                        .map(ObjectLockSettings::validate)
                        .transpose()?,
                },
                self.uploads()?,
            ),
            TargetKind::Azure => TargetConfig::Azure(
                AzureConfig {
                    container: required("azure", "container", &self.container)?,
                    prefix: key_prefix(&self.prefix),
                    account: self.account.clone(),
                    endpoint: self.endpoint.clone(),
                },
                self.uploads()?,
            ),
            TargetKind::Gcs => TargetConfig::Gcs(
                GcsConfig {
                    bucket: required("gcs", "bucket", &self.bucket)?,
                    prefix: key_prefix(&self.prefix),
                    endpoint: self.endpoint.clone(),
                },
                self.uploads()?,
            ),
        })
    }

    /// `object_lock` belongs to S3 targets written through the AWS SDK, the client that sets
    /// Object Lock retention.
    fn check_object_lock(&self) -> Result<(), Invalid> {
        if self.object_lock.is_none() {
            return Ok(());
        }
        if self.kind == TargetKind::Azure {
            return Err(Invalid::at(
                "object_lock",
                "`object_lock` belongs to S3 targets (S3 Object Lock); an Azure container is made immutable on the storage account instead: enable version-level immutability on the container with a time-based retention policy, and set legal holds there (docs/operations.md, \"WORM exports on Azure\"); then remove `object_lock`",
            ));
        }
        if self.kind != TargetKind::S3 {
            return Err(Invalid::at(
                "object_lock",
                "`object_lock` belongs to S3 targets (S3 Object Lock); remove it, or use a bucket of kind `s3` with Object Lock enabled",
            ));
        }
        if self.client == Some(S3Client::ObjectStore) {
            return Err(Invalid::at(
                "object_lock",
                "`object_lock` needs the AWS SDK client, which sets Object Lock retention; remove `client = \"object_store\"`",
            ));
        }
        Ok(())
    }

    /// How a remote target uploads, from its optional keys.
    fn uploads(&self) -> Result<Uploads, Invalid> {
        let mut u = Uploads::default();
        if let Some(mib) = self.part_size_mib {
            if !(5..=5120).contains(&mib) {
                return Err(Invalid::at(
                    "part_size_mib",
                    "parts are 5 to 5120 MiB (S3's limits)",
                ));
            }
            u.part_size = mib as usize * 1024 * 1024;
        }
        if let Some(n) = self.part_concurrency {
            if !(1..=64).contains(&n) {
                return Err(Invalid::at(
                    "part_concurrency",
                    "upload 1 to 64 parts of an object at once",
                ));
            }
            u.part_concurrency = n;
        }
        if let Some(secs) = self.request_timeout_secs {
            if secs == 0 {
                return Err(Invalid::at(
                    "request_timeout_secs",
                    "must be at least 1 second",
                ));
            }
            u.request_timeout = std::time::Duration::from_secs(secs);
        }
        if let Some(mib) = self.copy_part_size_mib {
            if self.kind != TargetKind::S3 {
                return Err(Invalid::at(
                    "copy_part_size_mib",
                    "`copy_part_size_mib` belongs to S3 targets, the ones that copy inside the store in parts",
                ));
            }
            if !(5..=5120).contains(&mib) {
                return Err(Invalid::at(
                    "copy_part_size_mib",
                    "copy parts are 5 to 5120 MiB (S3's limits)",
                ));
            }
            u.copy_part_size = mib * 1024 * 1024;
        }
        Ok(u)
    }
}

/// A key a target of `kind` cannot do without; also refuses kinds this build leaves out.
fn required(kind: &str, key: &str, value: &Option<String>) -> Result<String, Invalid> {
    #[allow(
        clippy::match_like_matches_macro,
        reason = "which arms are true depends on the features built"
    )]
    let built = match kind {
        "s3" => cfg!(feature = "s3"),
        "azure" => cfg!(feature = "azure"),
        _ => cfg!(feature = "gcs"),
    };
    if !built {
        return Err(Invalid::at(
            "kind",
            format!(
                "this build of custodian leaves out {kind} targets; build it with `--features {kind}`"
            ),
        ));
    }
    match value {
        Some(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(Invalid::at(
            "kind",
            format!("a target of kind `{kind}` needs `{key}`"),
        )),
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
/// A key prefix as written, as keys are built from it: empty, or ending in one `/`.
pub fn key_prefix(prefix: &str) -> String {
    match prefix.trim_matches('/') {
        "" => String::new(),
        p => format!("{p}/"),
    }
}
