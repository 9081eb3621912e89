//! The audit chain's key: 32 random bytes kept in a file outside the catalog (`[audit]
//! key_file`), so that whoever can write the catalog but cannot read the key cannot compute the
//! HMAC of an edited or re-chained event.
//!
//! The file holds 64 hex digits. It is refused unless it is a regular file (not a link), owned
//! by the user custodian runs as and neither readable nor writable by others, as ssh treats a
//! private key. It is created (mode 0600) by `custodian audit init-key`, or on the first append
//! to a catalog whose chain is not keyed yet; never when the chain is already keyed, since a
//! new key cannot continue it.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ring::hmac;
use ring::rand::SecureRandom;
use serde::Deserialize;

use crate::confined::{ConfinedError, Dir};
use crate::settings::{Invalid, resolve};

/// What a key file's bytes are tagged with to derive its public id.
const ID_LABEL: &[u8] = b"custodian audit key id";

/// Why the audit key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "audit key file {path} does not exist, and the catalog's audit chain is keyed with key {key_id}: restore that key file (copy it from another node of this catalog or from your backup); a new key cannot continue the chain"
    )]
    Missing { path: PathBuf, key_id: String },
    #[error(
        "the catalog's audit chain is keyed with key {key_id}, but no audit key was given; set `[audit] key_file` to that key's file"
    )]
    NotConfigured { key_id: String },
    #[error(
        "audit key file {path} holds key {file_id}, but the catalog's audit chain is keyed with key {chain_id}: point `[audit] key_file` at the key the chain was keyed with"
    )]
    Mismatch {
        path: PathBuf,
        file_id: String,
        chain_id: String,
    },
    #[error(
        "audit key file {path} is readable or writable by others (mode {mode:o}); `chmod 600` it and keep it from anyone who can write the catalog"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "audit key file {path} is owned by uid {owner}, not by the user custodian runs as (uid {uid}); only that user's own key is trusted"
    )]
    Owner { path: PathBuf, owner: u32, uid: u32 },
    #[error(
        "audit key file {path} does not hold a key: it must hold 64 hex digits (32 bytes); create one with `custodian audit init-key`"
    )]
    Malformed { path: PathBuf },
    #[error(
        "audit key file {path} already exists; it keys the audit chain, so it is kept (remove it yourself only if no catalog is keyed with it)"
    )]
    Exists { path: PathBuf },
    #[error("audit key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit key file: {0}")]
    Confined(#[from] ConfinedError),
}

/// The HMAC-SHA-256 key of the audit chain, with its public id (a tag of a fixed label, so
/// the id tells keys apart without revealing them).
pub struct ChainKey {
    key: hmac::Key,
    id: String,
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainKey").field("id", &self.id).finish()
    }
}

impl ChainKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> ChainKey {
        let key = hmac::Key::new(hmac::HMAC_SHA256, bytes);
        let id = hex::encode(&hmac::sign(&key, ID_LABEL).as_ref()[..8]);
        ChainKey { key, id }
    }

    /// The key's public id, as recorded in the event that starts the keyed chain.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn context(&self) -> hmac::Context {
        hmac::Context::with_key(&self.key)
    }
}

/// Where the audit key is kept; it is read (or created) once, when first needed.
#[derive(Debug)]
pub struct KeySource {
    path: PathBuf,
    key: OnceLock<Arc<ChainKey>>,
}

impl KeySource {
    pub fn new(path: impl Into<PathBuf>) -> KeySource {
        KeySource {
            path: path.into(),
            key: OnceLock::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key, if its file exists.
    pub fn load(&self) -> Result<Option<Arc<ChainKey>>, KeyError> {
        if let Some(k) = self.key.get() {
            return Ok(Some(k.clone()));
        }
        match read_key(&self.path)? {
            Some(k) => Ok(Some(self.key.get_or_init(|| Arc::new(k)).clone())),
            None => Ok(None),
        }
    }

    /// The key to append with to a chain keyed with `chain_id` (None: not keyed yet). The file
    /// is created when missing only if the chain is not keyed yet; a key whose id differs from
    /// the chain's is refused.
    pub fn for_append(&self, chain_id: Option<&str>) -> Result<Arc<ChainKey>, KeyError> {
        let key = match (self.load()?, chain_id) {
            (Some(k), _) => k,
            (None, Some(id)) => {
                return Err(KeyError::Missing {
                    path: self.path.clone(),
                    key_id: id.to_owned(),
                });
            }
            (None, None) => {
                let k = match create_key(&self.path) {
                    Ok(k) => k,
                    // Another process created it first: use that one.
                    Err(KeyError::Exists { .. }) => {
                        read_key(&self.path)?.ok_or_else(|| KeyError::Malformed {
                            path: self.path.clone(),
                        })?
                    }
                    Err(e) => return Err(e),
                };
                self.key.get_or_init(|| Arc::new(k)).clone()
            }
        };
        self.check(&key, chain_id)?;
        Ok(key)
    }

    /// Refuses `key` for a chain keyed with another key.
    pub fn check(&self, key: &ChainKey, chain_id: Option<&str>) -> Result<(), KeyError> {
        match chain_id {
            Some(id) if id != key.id() => Err(KeyError::Mismatch {
                path: self.path.clone(),
                file_id: key.id().to_owned(),
                chain_id: id.to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

/// The parent directory and file name of `path`.
fn split(path: &Path) -> Result<(Dir, String), KeyError> {
    let malformed = || KeyError::Malformed {
        path: path.to_owned(),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(malformed)?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((Dir::open_root(parent)?, name.to_owned()))
}

/// Reads the key at `path`: None when there is no file.
pub fn read_key(path: &Path) -> Result<Option<ChainKey>, KeyError> {
    let (dir, name) = match split(path) {
        Err(KeyError::Confined(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None);
        }
        other => other?,
    };
    let file = match dir.open_file(&name) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = file.metadata().map_err(io)?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(KeyError::Owner {
            path: path.to_owned(),
            owner: meta.uid(),
            uid,
        });
    }
    // 64 digits and a line end; anything longer is not a key file, and is not read further.
    let mut text = Vec::with_capacity(67);
    file.take(67).read_to_end(&mut text).map_err(io)?;
    let digits = std::str::from_utf8(&text).map(str::trim).unwrap_or("");
    let bytes = hex::decode(digits)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| KeyError::Malformed {
            path: path.to_owned(),
        })?;
    Ok(Some(ChainKey::from_bytes(&bytes)))
}

/// Creates a new random key at `path`, mode 0600. The key is written and synced under a
/// temporary name and then linked into place, which fails if anything (a link included) has
/// the name: a reader never sees half a key, and an existing key is never replaced.
pub fn create_key(path: &Path) -> Result<ChainKey, KeyError> {
    let (dir, name) = split(path)?;
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| io(std::io::Error::other("no random bytes from the system")))?;
    let mut tag = [0u8; 6];
    ring::rand::SystemRandom::new()
        .fill(&mut tag)
        .map_err(|_| io(std::io::Error::other("no random bytes from the system")))?;
    let temp = format!(".custodian-key-{}", hex::encode(tag));
    let mut file = dir.create_new(&temp, 0o600)?;
    let linked = (|| {
        file.write_all(format!("{}\n", hex::encode(bytes)).as_bytes())?;
        file.sync_all()?;
        rustix::fs::linkat(
            dir.as_fd(),
            temp.as_str(),
            dir.as_fd(),
            name.as_str(),
            rustix::fs::AtFlags::empty(),
        )
        .map_err(std::io::Error::from)
    })();
    dir.unlink(&temp)?;
    match linked {
        Ok(()) => {
            dir.sync()?;
            Ok(ChainKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(KeyError::Exists {
            path: path.to_owned(),
        }),
        Err(e) => Err(io(e)),
    }
}

/// Default audit key file, beside the config file.
const DEFAULT_KEY_FILE: &str = "audit.key";

/// Where the audit chain's key lives: outside the catalog, so that write access to the
/// catalog is not enough to recompute the chain after an edit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    pub key_file: PathBuf,
}

/// The `[audit]` table as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    key_file: Option<PathBuf>,
}

impl AuditSettings {
    /// The key file, relative to `base`, the config's directory (default: beside the config).
    pub fn validate(self, base: &Path) -> Result<AuditConfig, Invalid> {
        let key_file = self
            .key_file
            .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_FILE));
        if key_file.file_name().is_none() {
            return Err(Invalid::at(
                "key_file",
                "must name a file (the audit key, 64 hex digits), not a directory",
            ));
        }
        Ok(AuditConfig {
            key_file: resolve(base, &key_file),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_created_key_is_private_and_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let made = create_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_key(&path).unwrap().unwrap().id(), made.id());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_existing_key_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let first = create_key(&path).unwrap();
        assert!(matches!(create_key(&path), Err(KeyError::Exists { .. })));
        assert_eq!(read_key(&path).unwrap().unwrap().id(), first.id());
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        create_key(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_key(&path).unwrap_err();
        assert!(
            matches!(err, KeyError::Permissions { mode: 0o640, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_key_behind_a_symlink_or_a_fifo_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.key");
        create_key(&real).unwrap();
        let link = dir.path().join("audit.key");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(
            read_key(&link),
            Err(KeyError::Confined(ConfinedError::Symlink { .. }))
        ));
        let fifo = dir.path().join("fifo.key");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(
            read_key(&fifo),
            Err(KeyError::Confined(ConfinedError::NotRegular { .. }))
        ));
    }

    #[test]
    fn a_file_without_64_hex_digits_is_not_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        for text in ["", "zz", &"ab".repeat(31), &"ab".repeat(64)] {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert!(
                matches!(read_key(&path), Err(KeyError::Malformed { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_missing_key_is_created_only_for_an_unkeyed_chain() {
        let dir = tempfile::tempdir().unwrap();
        let source = KeySource::new(dir.path().join("audit.key"));
        let err = source.for_append(Some("0123456789abcdef")).unwrap_err();
        assert!(matches!(err, KeyError::Missing { .. }), "{err}");
        assert!(!source.path().exists());
        let key = source.for_append(None).unwrap();
        assert!(source.path().exists());
        assert_eq!(source.for_append(Some(key.id())).unwrap().id(), key.id());
        let err = source.for_append(Some("0123456789abcdef")).unwrap_err();
        assert!(matches!(err, KeyError::Mismatch { .. }), "{err}");
    }
}
