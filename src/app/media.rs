//! The media commands, which need no config or catalog: `transcode` (one file, or a batch on
//! a pool of threads), `stitch` (one call cut out of a turret channel's recording), `encrypt`
//! and `decrypt`. Every output file appears only once complete.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, FixedOffset};

use super::with_sources;
use crate::confined::{ConfinedError, Dir, PRIVATE_FILE_MODE, Persist, Staged};
use crate::media::audio::{self, AudioError, AudioReport, VoiceSpec};
use crate::media::crypto::{self, Decryptor, FileError, FileReport};
use crate::media::keystore::{Keystore, KeystoreError};
use crate::media::stitch::{self, ChannelSegment, StitchError, StitchReport};
use crate::policy::produce::Verified;
use crate::target::Expected;

/// Why a media command stopped (one file failing is not this: it is in the command's report).
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: ConfinedError,
    },
    #[error("cannot create {path}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the transcode threads")]
    Threads(#[source] rayon::ThreadPoolBuildError),
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    #[error(transparent)]
    Channel(#[from] ConfinedError),
    #[error(transparent)]
    Stitch(#[from] StitchError),
}

/// What transcode has to say while a batch goes.
pub trait TranscodeObserver: Sync {
    /// A file failed; the others go on.
    fn failed(&self, message: &str);
}

/// Writes `output` through `make` into a temporary file beside it, readable by the owner alone
/// (transcoded and stitched audio is a recording), renamed to `output` only when `make`
/// succeeds; when it fails the temporary file is removed and `output` is untouched. The outer
/// error (the temporary file cannot be made or renamed) stops the command; the inner one is
/// `make`'s.
fn into_place<T, E>(
    output: &Path,
    make: impl FnOnce(&mut File) -> Result<T, E>,
) -> Result<Result<T, E>, MediaError> {
    let failed = |source| MediaError::Write {
        path: output.to_owned(),
        source,
    };
    let mut staged = Staged::beside(output, PRIVATE_FILE_MODE).map_err(failed)?;
    let made = make(staged.file());
    if made.is_ok() {
        staged.commit(Persist::Full).map_err(failed)?;
    }
    Ok(made)
}

/// Transcodes `input` to `output`. The outer error is one to stop on (the temporary file
/// cannot be made); the inner one fails this file, with a message naming it.
pub fn transcode(
    input: &Path,
    output: &Path,
    spec: &VoiceSpec,
) -> Result<Result<AudioReport, String>, MediaError> {
    let made = into_place(output, |out| {
        let file = File::open(input).map_err(AudioError::Io)?;
        let ext = input.extension().and_then(|e| e.to_str());
        audio::transcode_file(file, ext, spec, out)
    })?;
    Ok(made.map_err(|e| format!("{}: {e}", input.display())))
}

/// What a batch did: each item's outcome, in order, and the wall time in seconds.
pub struct Batch {
    pub results: Vec<Result<AudioReport, String>>,
    pub seconds: f64,
}

/// Transcodes every `(input, output)` of `items` into `dir` on a pool of `jobs` threads. A file
/// that fails is told to `observer` as it happens and the others go on.
pub fn transcode_batch(
    dir: &Path,
    jobs: usize,
    items: &[(PathBuf, PathBuf)],
    spec: &VoiceSpec,
    observer: &dyn TranscodeObserver,
) -> Result<Batch, MediaError> {
    use rayon::prelude::*;
    std::fs::create_dir_all(dir).map_err(|source| MediaError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .map_err(MediaError::Threads)?;
    let started = Instant::now();
    let results = pool.install(|| {
        items
            .par_iter()
            .map(|(input, output)| {
                let result =
                    transcode(input, output, spec).unwrap_or_else(|e| Err(with_sources(&e)));
                if let Err(message) = &result {
                    observer.failed(message);
                }
                result
            })
            .collect()
    });
    Ok(Batch {
        results,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Why one stitch failed (the command goes on to report it).
#[derive(Debug, thiserror::Error)]
pub enum StitchFailure {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Stitch(#[from] StitchError),
}

/// What to stitch.
pub struct StitchRequest<'a> {
    /// The channel directory (`<root>/<tenant>/channels/<channel>`).
    pub channel: &'a Path,
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
    pub spec: VoiceSpec,
    /// Keystore for encrypted segments.
    pub keystore: Option<&'a Path>,
    pub output: &'a Path,
}

/// A stitch of the channel named `channel`.
pub struct Stitched {
    pub channel: String,
    pub outcome: Result<StitchReport, StitchFailure>,
}

/// Stitches one call out of a channel directory.
pub fn stitch(request: &StitchRequest<'_>) -> Result<Stitched, MediaError> {
    let keystore = request.keystore.map(Keystore::load).transpose()?;
    let channel = request.channel.file_name().map_or_else(
        || request.channel.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let dir = Dir::open_root(request.channel)?;
    let segments = stitch::load_channel(&dir, &channel)?;
    let open = |s: &ChannelSegment| -> Result<Box<dyn Read + Send + Sync>, String> {
        let file = dir.open_file(&s.record.file).map_err(|e| e.to_string())?;
        let what = format!("segment {}", s.path.display());
        let expect = Expected {
            size: s.record.size,
            sha256: &s.record.sha256,
        };
        let file = Verified::new(file, expect, &what);
        match (&s.record.encryption, &keystore) {
            (None, _) => Ok(Box::new(file)),
            (Some(e), None) => Err(format!(
                "encrypted with key id `{}`: pass --keystore",
                e.key_id
            )),
            (Some(_), Some(ks)) => Decryptor::new(file, |id| ks.key(id))
                .map(|d| Box::new(d) as Box<dyn Read + Send + Sync>)
                .map_err(|e| e.to_string()),
        }
    };
    let outcome = into_place(request.output, |out| -> Result<_, StitchFailure> {
        let out = out.try_clone()?;
        Ok(stitch::stitch(
            &channel,
            &segments,
            request.start,
            request.end,
            &request.spec,
            &open,
            out,
        )?)
    })?;
    Ok(Stitched { channel, outcome })
}

/// What encrypting or decrypting a file did (or why it failed), and how long it took.
pub struct Crypted {
    pub result: Result<FileReport, FileError>,
    pub seconds: f64,
}

/// Encrypts `input` to `output` in format v1 with key `key_id` of the keystore at `keystore`.
/// The outer error is the keystore's.
pub fn encrypt(
    keystore: &Path,
    key_id: &str,
    chunk_size: u32,
    input: &Path,
    output: &Path,
) -> Result<Crypted, KeystoreError> {
    let keystore = Keystore::load(keystore)?;
    let started = Instant::now();
    let result = crypto::encrypt_file(input, &keystore, key_id, chunk_size, output);
    Ok(Crypted {
        result,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Decrypts the format v1 file `input` to `output` with the key its header names.
pub fn decrypt(keystore: &Path, input: &Path, output: &Path) -> Result<Crypted, KeystoreError> {
    let keystore = Keystore::load(keystore)?;
    let started = Instant::now();
    let result = crypto::decrypt_file(input, &keystore, output);
    Ok(Crypted {
        result,
        seconds: started.elapsed().as_secs_f64(),
    })
}
