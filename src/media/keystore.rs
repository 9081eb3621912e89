//! The keystore: a JSON file mapping key ids to 32-byte AES keys (docs/format-v1.md).
//!
//! It holds secrets, so like ssh with a private key we refuse a file that group or others can
//! read or write, or that is owned by anyone but the user running custodian (or root), and no
//! error message ever contains key material. A config may instead let custodian make its own
//! keystore owner-only before reading it ([`Keystore::load_tightening`]): keys are never read
//! while anyone but their owner can open the file.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use base64::Engine;

/// Why a keystore could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("keystore {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "keystore {path} (owner {owner}, mode {mode:03o}) is readable or writable by group or others; run `chmod 600 {path}`"
    )]
    Permissions {
        path: PathBuf,
        owner: String,
        mode: u32,
    },
    #[error(
        "keystore {path} (owner {owner}, mode {mode:03o}) is owned by another user than the one running custodian, {me}; run `chown {me} {path}` (and `chmod 600 {path}`)"
    )]
    Owner {
        path: PathBuf,
        owner: String,
        mode: u32,
        me: String,
    },
    #[error("keystore {path} (mode {mode:03o}) could not be made owner-only: {source}")]
    Tighten {
        path: PathBuf,
        mode: u32,
        source: std::io::Error,
    },
    #[error("keystore {path} is not a regular file")]
    NotRegular { path: PathBuf },
    #[error("keystore {path} is larger than {max} bytes; a keystore holds a few keys")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("keystore {path}: invalid JSON: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("keystore {path}: key `{key_id}` is not base64 of exactly 32 bytes")]
    BadKey { path: PathBuf, key_id: String },
    #[error("key id `{key_id}` is not in keystore {path}")]
    UnknownKey { path: PathBuf, key_id: String },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeystoreFile {
    keys: HashMap<String, String>,
}

/// What loading does with a keystore of the running user that group or others can open.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Exposed {
    Refuse,
    Tighten,
}

/// Keys by id, loaded from a keystore file.
pub struct Keystore {
    path: PathBuf,
    keys: HashMap<String, [u8; 32]>,
}

impl std::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystore")
            .field("path", &self.path)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Largest keystore read: thousands of keys fit in far less.
const MAX_KEYSTORE_BYTES: u64 = 16 << 20;

impl Keystore {
    /// Loads a keystore, refusing one that group or others can read or write, or that is
    /// owned by another user than the one running custodian (root's is accepted).
    pub fn load(path: &Path) -> Result<Keystore, KeystoreError> {
        Keystore::open(path, Exposed::Refuse)
    }

    /// Loads a keystore like [`Keystore::load`], except that one owned by the user running
    /// custodian that group or others can read or write is first made owner-only (`chmod
    /// go-rwx` on the opened file, logged with both modes) instead of refused. For a keystore
    /// whose exposure is known and harmless, such as the demo's, which git checks out mode 644.
    pub fn load_tightening(path: &Path) -> Result<Keystore, KeystoreError> {
        Keystore::open(path, Exposed::Tighten)
    }

    fn open(path: &Path, exposed: Exposed) -> Result<Keystore, KeystoreError> {
        let read_err = |source| KeystoreError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        // Checked on the open file, so the bytes read are those of the file checked.
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(KeystoreError::NotRegular {
                path: path.to_owned(),
            });
        }
        let mode = meta.mode() & 0o7777;
        let owner = meta.uid();
        let me = nix::unistd::getuid().as_raw();
        if owner != me && owner != 0 {
            return Err(KeystoreError::Owner {
                path: path.to_owned(),
                owner: crate::users::describe_uid(owner),
                mode,
                me: nix::unistd::User::from_uid(me.into())
                    .ok()
                    .flatten()
                    .map_or_else(|| me.to_string(), |u| u.name),
            });
        }
        if mode & 0o077 != 0 {
            if exposed == Exposed::Refuse || owner != me {
                return Err(KeystoreError::Permissions {
                    path: path.to_owned(),
                    owner: crate::users::describe_uid(owner),
                    mode,
                });
            }
            let private = mode & !0o077;
            rustix::fs::fchmod(&file, rustix::fs::Mode::from_raw_mode(private)).map_err(|e| {
                KeystoreError::Tighten {
                    path: path.to_owned(),
                    mode,
                    source: e.into(),
                }
            })?;
            tracing::warn!(
                "keystore {} was mode {mode:03o}, open to group or others: made it owner-only, mode {private:03o}",
                path.display()
            );
        }
        let mut text = Vec::new();
        file.take(MAX_KEYSTORE_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_KEYSTORE_BYTES {
            return Err(KeystoreError::TooLarge {
                path: path.to_owned(),
                max: MAX_KEYSTORE_BYTES,
            });
        }
        let file: KeystoreFile =
            serde_json::from_slice(&text).map_err(|e| KeystoreError::Parse {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        let mut keys = HashMap::with_capacity(file.keys.len());
        for (key_id, b64) in file.keys {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| KeystoreError::BadKey {
                    path: path.to_owned(),
                    key_id: key_id.clone(),
                })?;
            keys.insert(key_id, bytes);
        }
        Ok(Keystore {
            path: path.to_owned(),
            keys,
        })
    }

    /// The key for `key_id`.
    pub fn key(&self, key_id: &str) -> Result<[u8; 32], KeystoreError> {
        self.keys
            .get(key_id)
            .copied()
            .ok_or_else(|| KeystoreError::UnknownKey {
                path: self.path.clone(),
                key_id: key_id.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let p = dir.join("keys.json");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn loads_and_finds_keys() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let p = write(
            dir.path(),
            &format!(r#"{{"keys":{{"k1":"{b64}"}}}}"#),
            0o600,
        );
        let ks = Keystore::load(&p).unwrap();
        assert_eq!(ks.key("k1").unwrap(), [9u8; 32]);
        let err = ks.key("k2").unwrap_err().to_string();
        assert!(err.contains("`k2`"), "{err}");
    }

    #[test]
    fn group_readable_keystore_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), r#"{"keys":{}}"#, 0o640);
        let err = Keystore::load(&p).unwrap_err().to_string();
        assert!(
            err.contains("chmod 600") && err.contains("mode 640"),
            "{err}"
        );
    }

    #[test]
    fn a_keystore_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o602, 0o620, 0o601] {
            let p = write(dir.path(), r#"{"keys":{}}"#, mode);
            let err = Keystore::load(&p).unwrap_err().to_string();
            assert!(
                err.contains("chmod 600") && err.contains(&format!("mode {mode:03o}")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_keystore_owned_by_another_user_is_refused_even_at_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), r#"{"keys":{}}"#, 0o600);
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
        std::os::unix::fs::chown(&p, Some(nobody.as_raw()), None).unwrap();
        let err = Keystore::load(&p).unwrap_err().to_string();
        assert!(
            err.contains("owner nobody")
                && err.contains("mode 600")
                && err.contains("chown ")
                && err.contains(&p.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn tightening_makes_an_open_keystore_owner_only_before_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        for (mode, private) in [(0o644, 0o600), (0o666, 0o600), (0o755, 0o700)] {
            let p = write(dir.path(), &format!(r#"{{"keys":{{"k1":"{b64}"}}}}"#), mode);
            let ks = Keystore::load_tightening(&p).unwrap();
            assert_eq!(ks.key("k1").unwrap(), [9u8; 32]);
            let now = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
            assert_eq!(now, private, "mode {mode:03o}");
        }
    }

    #[test]
    fn tightening_never_touches_a_keystore_of_another_user() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), r#"{"keys":{}}"#, 0o644);
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
        std::os::unix::fs::chown(&p, Some(nobody.as_raw()), None).unwrap();
        let err = Keystore::load_tightening(&p).unwrap_err().to_string();
        assert!(
            err.contains("owner nobody") && err.contains("chown "),
            "{err}"
        );
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn short_key_is_refused_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), r#"{"keys":{"k1":"c2VjcmV0"}}"#, 0o600);
        let err = Keystore::load(&p).unwrap_err().to_string();
        assert!(err.contains("`k1`") && !err.contains("c2VjcmV0"), "{err}");
    }
}
