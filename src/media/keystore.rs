//! The keystore: a JSON file mapping key ids to 32-byte AES keys (DESIGN.md §3).
//!
//! It holds secrets, so like ssh with a private key we refuse a file that group or others can
//! read, and no error message ever contains key material.

use std::collections::HashMap;
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
        "keystore {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
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

impl Keystore {
    /// Loads a keystore, refusing one readable by group or others.
    pub fn load(path: &Path) -> Result<Keystore, KeystoreError> {
        use std::os::unix::fs::PermissionsExt;
        let read_err = |source| KeystoreError::Read {
            path: path.to_owned(),
            source,
        };
        let mode = std::fs::metadata(path)
            .map_err(read_err)?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeystoreError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        let text = std::fs::read(path).map_err(read_err)?;
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
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn short_key_is_refused_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), r#"{"keys":{"k1":"c2VjcmV0"}}"#, 0o600);
        let err = Keystore::load(&p).unwrap_err().to_string();
        assert!(err.contains("`k1`") && !err.contains("c2VjcmV0"), "{err}");
    }
}
