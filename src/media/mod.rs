//! Media transforms: the encrypted format v1, its AEAD primitive and its keystore, and audio
//! decode, resample, encode and stitching for exports, and the private scratch space they use.
pub mod aead;
pub mod audio;
pub mod crypto;
pub mod keystore;
pub mod scratch;
pub mod stitch;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::settings::resolve;

/// Media tools and secrets shared by all policies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaConfig {
    /// The keystore (docs/format-v1.md, "The keystore"), needed to decrypt.
    pub keystore: Option<PathBuf>,
    /// Whether custodian makes the keystore owner-only before reading it when group or others
    /// can open it, instead of refusing it (for a keystore whose keys are public, such as the
    /// demo's: git checks files out readable by everyone).
    pub tighten_keystore: bool,
    /// The ffmpeg program used for video and screen formats: a bare name is looked up in
    /// `PATH`, a path is resolved against the config file's directory.
    pub ffmpeg: Option<PathBuf>,
    /// Where exports stage transcoded, stitched and ffmpeg files (a private directory per
    /// process inside it); None for the per-user default under the system temporary directory.
    pub scratch_dir: Option<PathBuf>,
}

/// The `[media]` table as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MediaSettings {
    keystore: Option<PathBuf>,
    #[serde(default)]
    tighten_keystore: bool,
    ffmpeg: Option<PathBuf>,
    scratch_dir: Option<PathBuf>,
}

impl MediaSettings {
    /// The table with its paths resolved against `base`, the config's directory (nothing in
    /// it can be wrong before the files are opened).
    pub fn resolve(self, base: &Path) -> MediaConfig {
        MediaConfig {
            keystore: self.keystore.map(|k| resolve(base, &k)),
            tighten_keystore: self.tighten_keystore,
            ffmpeg: self.ffmpeg.map(|f| {
                if f.components().count() > 1 {
                    resolve(base, &f)
                } else {
                    f
                }
            }),
            scratch_dir: self.scratch_dir.map(|d| resolve(base, &d)),
        }
    }
}
