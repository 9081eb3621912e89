//! The media repository (docs/repository.md): layout and records.
pub mod record;
pub mod segment;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::settings::{Invalid, resolve};

/// Default of `[repository] max_record_bytes`: far above any real record (a thousand
/// participants and artifacts take some 200 KiB), far below what would strain memory.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 16 << 20;
const MIN_RECORD_BYTES: u64 = 1024;
/// Each indexing thread may hold one record this large, and its parsed form, at once.
const MAX_RECORD_BYTES: u64 = 1 << 30;

/// The `[repository]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySettings {
    root: PathBuf,
    max_record_bytes: Option<u64>,
}

impl RepositorySettings {
    /// The repository's root directory, relative to `base`, the config's directory.
    pub fn root(&self, base: &Path) -> PathBuf {
        resolve(base, &self.root)
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
