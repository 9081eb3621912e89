//! How each exported file is made and where it goes.
//!
//! An export turns every artifact it selects into one output file through a [`Transform`]
//! (copy, decrypt, voice transcode, ffmpeg) and writes the outputs to a [`Sink`]: loose objects
//! at the target, or the entries of one streamed zip per conversation. Every read of an
//! original is checked against the size and SHA-256 its record lists before anything it fed is
//! committed, so a corrupt or replaced file never reaches the target under a final name.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::catalog::ObjectRecord;
use crate::media::audio::VoiceSpec;
use crate::media::crypto::{Decryptor, DecryptorError};
use crate::media::keystore::Keystore;
use crate::repository::record::{Artifact, ArtifactType};
use crate::target::{
    COPY_BUFFER, Expected, HashingWriter, Mismatch, ObjectKey, ObjectWriter, PutError, Target,
    TargetError, WriteContext, put_bytes, put_file, put_stream,
};

/// Media tools and secrets an export run uses.
#[derive(Clone, Copy, Default)]
pub struct MediaTools<'a> {
    pub keystore: Option<&'a Keystore>,
    pub ffmpeg: Option<&'a Path>,
}

/// How one output file is made from its artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum Transform {
    /// The stored bytes, unchanged (encrypted files stay encrypted).
    Copy,
    /// The plaintext of an encrypted artifact.
    Decrypt { key_id: String },
    /// A voice recording decoded and encoded again in the policy's voice format.
    Transcode {
        #[serde(flatten)]
        voice: VoiceSpec,
        decrypt: bool,
    },
    /// A video or screen recording converted by ffmpeg to another container.
    Ffmpeg { format: String, decrypt: bool },
    /// A CDR-only call cut from its turret channel's continuous recording.
    Stitch {
        channel: String,
        #[serde(flatten)]
        voice: VoiceSpec,
    },
}

/// Artifact types that hold voice audio.
pub fn is_voice(kind: ArtifactType) -> bool {
    matches!(
        kind,
        ArtifactType::AudioRecording
            | ArtifactType::PartialAudioRecording
            | ArtifactType::QmAudioRecording
    )
}

/// Artifact types that hold video or screen media.
pub fn is_video(kind: ArtifactType) -> bool {
    matches!(
        kind,
        ArtifactType::VideoRecording
            | ArtifactType::ScreenRecording
            | ArtifactType::QmScreenRecording
    )
}

/// `file` with its extension replaced by `ext`.
pub fn with_extension(file: &str, ext: &str) -> String {
    let stem = match file.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => file,
    };
    format!("{stem}.{ext}")
}

/// Where an output goes inside a sink.
pub enum Place {
    /// An object of its own at the target.
    Object(ObjectKey),
    /// An entry of the conversation's zip.
    Entry(String),
}

/// One output as written: where it went, its size and SHA-256.
#[derive(Clone, Debug)]
pub struct Written {
    pub at: String,
    pub size: u64,
    pub sha256: String,
}

/// The destination of one conversation's outputs.
pub enum Sink<'t> {
    Loose {
        target: &'t dyn Target,
        cx: &'t WriteContext,
        objects: Vec<ObjectRecord>,
    },
    Zip(Box<ZipSink<'t>>),
}

/// A zip streamed straight to its object: entries are stored (media rarely compresses) with
/// data descriptors, so nothing is held in memory and the target need not seek.
pub struct ZipSink<'t> {
    target: &'t dyn Target,
    cx: &'t WriteContext,
    key: ObjectKey,
    archive: rawzip::ZipArchiveWriter<HashingWriter<Box<dyn ObjectWriter>>>,
    modified: rawzip::time::UtcDateTime,
}

/// Why an output could not be made: a message naming the file, and whether it was because
/// the target is out of space (then every further item would fail alike).
#[derive(Debug)]
pub struct ItemError {
    pub message: String,
    pub target_full: bool,
}

impl From<String> for ItemError {
    fn from(message: String) -> ItemError {
        ItemError {
            message,
            target_full: false,
        }
    }
}

impl From<TargetError> for ItemError {
    fn from(e: TargetError) -> ItemError {
        ItemError {
            target_full: e.is_full(),
            message: e.to_string(),
        }
    }
}

fn target_io(target: &dyn Target, key: &str, source: io::Error) -> ItemError {
    TargetError::Io {
        target: target.name().to_owned(),
        key: key.to_owned(),
        cause: source,
    }
    .into()
}

/// The message of a source that is not what its record lists.
fn mismatch_message(what: &str, mismatch: Mismatch) -> String {
    format!("{what}: {mismatch}; the file is corrupt or was replaced; nothing was written")
}

fn put_error(e: PutError, what: &str) -> ItemError {
    match e {
        PutError::Mismatch(m) => mismatch_message(what, m).into(),
        PutError::Source(e) => format!("{what}: {e}").into(),
        PutError::Target(e) => e.into(),
    }
}

/// The bytes of an original as [`Sink::put_original`] takes them.
pub enum Original<'a> {
    /// A local file.
    File(&'a File),
    /// Read from anywhere else (a store).
    Stream(&'a mut dyn Read),
}

impl<'t> Sink<'t> {
    /// Loose objects at `target`, written for the run `cx` names.
    pub fn loose(target: &'t dyn Target, cx: &'t WriteContext) -> Sink<'t> {
        Sink::Loose {
            target,
            cx,
            objects: Vec::new(),
        }
    }

    /// One zip object at `key`, its entries stamped with `modified` (Unix seconds).
    pub fn zip(
        target: &'t dyn Target,
        cx: &'t WriteContext,
        key: ObjectKey,
        modified: i64,
    ) -> Result<Sink<'t>, ItemError> {
        let writer = target.create(&key, None, cx)?;
        Ok(Sink::Zip(Box::new(ZipSink {
            target,
            cx,
            key,
            archive: rawzip::ZipArchiveWriter::new(HashingWriter::new(writer, cx.headway.clone())),
            modified: rawzip::time::UtcDateTime::from_unix(modified),
        })))
    }

    /// Writes an original, checked against `expect` (no more than one byte past its size is
    /// read): a local file is copied in the kernel into a loose object. A loose object already
    /// stored with this SHA-256 is not written again.
    pub fn put_original(
        &mut self,
        place: Place,
        original: Original<'_>,
        expect: Expected<'_>,
        what: &str,
        buffer: &mut Vec<u8>,
    ) -> Result<Written, ItemError> {
        match (self, place) {
            (
                Sink::Loose {
                    target,
                    cx,
                    objects,
                },
                Place::Object(key),
            ) => {
                let o = match original {
                    Original::File(file) => put_file(*target, &key, file, buffer, Some(expect), cx),
                    Original::Stream(source) => {
                        put_stream(*target, &key, source, buffer, Some(expect), cx)
                    }
                }
                .map_err(|e| put_error(e, what))?;
                Ok(record(objects, o))
            }
            (sink, place) => {
                let mut file;
                let reader: &mut dyn Read = match original {
                    Original::File(f) => {
                        file = f;
                        &mut file
                    }
                    Original::Stream(source) => source,
                };
                let mut source = Verified::new(reader, expect, what);
                sink.put_reader(place, &mut source, what, buffer)
            }
        }
    }

    /// Copies the object at the full key `source_key` of `bucket` inside the store, when this
    /// is a loose object and the target can (`Target::copy_in_store`); None otherwise.
    pub fn copy_in_store(
        &mut self,
        place: &Place,
        bucket: &str,
        source_key: &str,
        expect: Expected<'_>,
        what: &str,
    ) -> Option<Result<Written, ItemError>> {
        let (
            Sink::Loose {
                target,
                cx,
                objects,
            },
            Place::Object(key),
        ) = (self, place)
        else {
            return None;
        };
        let copied = target.copy_in_store(bucket, source_key, key, expect, cx)?;
        Some(
            copied
                .map(|o| record(objects, o))
                .map_err(|e| put_error(e, what)),
        )
    }

    /// Streams everything `source` yields. A source error (a failed check, a bad chunk)
    /// abandons the output: nothing is committed under its name.
    pub fn put_reader(
        &mut self,
        place: Place,
        source: &mut dyn Read,
        what: &str,
        buffer: &mut Vec<u8>,
    ) -> Result<Written, ItemError> {
        match (self, place) {
            (
                Sink::Loose {
                    target,
                    cx,
                    objects,
                },
                Place::Object(key),
            ) => {
                let o = put_stream(*target, &key, source, buffer, None, cx)
                    .map_err(|e| put_error(e, what))?;
                Ok(record(objects, o))
            }
            (Sink::Zip(zip), Place::Entry(name)) => zip.entry(&name, source, what, buffer),
            _ => unreachable!("a loose sink takes objects and a zip sink takes entries"),
        }
    }

    /// Writes bytes made in memory by this run (the metadata file).
    pub fn put_bytes(
        &mut self,
        place: Place,
        bytes: &[u8],
        what: &str,
    ) -> Result<Written, ItemError> {
        match (self, place) {
            (
                Sink::Loose {
                    target,
                    cx,
                    objects,
                },
                Place::Object(key),
            ) => {
                let o = put_bytes(*target, &key, bytes, cx).map_err(|e| put_error(e, what))?;
                Ok(record(objects, o))
            }
            (sink, place) => sink.put_reader(place, &mut &bytes[..], what, &mut Vec::new()),
        }
    }

    /// Finishes the sink; returns the objects committed at the target.
    pub fn finish(self) -> Result<Vec<ObjectRecord>, ItemError> {
        match self {
            Sink::Loose { objects, .. } => Ok(objects),
            Sink::Zip(zip) => zip.finish().map(|o| vec![o]),
        }
    }
}

fn record(objects: &mut Vec<ObjectRecord>, o: ObjectRecord) -> Written {
    let w = Written {
        at: o.key.clone(),
        size: o.size,
        sha256: o.sha256.clone(),
    };
    objects.push(o);
    w
}

impl ZipSink<'_> {
    fn entry(
        &mut self,
        name: &str,
        source: &mut dyn Read,
        what: &str,
        buffer: &mut Vec<u8>,
    ) -> Result<Written, ItemError> {
        let zip_err = |e: rawzip::Error| format!("zip {}: entry {name}: {e}", self.key);
        let (mut entry, config) = self
            .archive
            .new_file(name)
            .last_modified(self.modified)
            .unix_permissions(0o644)
            .start()
            .map_err(zip_err)?;
        let mut data = config.wrap(HashingWriter::new(&mut entry, self.cx.headway.clone()));
        copy_through(source, &mut data, buffer).map_err(|e| match e {
            Copy::Read(e) => format!("{what}: {e}").into(),
            Copy::Write(e) => target_io(self.target, self.key.as_str(), e),
        })?;
        let (hashing, descriptor) = data.finish().map_err(zip_err)?;
        let (_, size, sha256) = hashing.finish();
        entry.finish(descriptor).map_err(zip_err)?;
        Ok(Written {
            at: name.to_owned(),
            size,
            sha256,
        })
    }

    fn finish(self) -> Result<ObjectRecord, ItemError> {
        let key = self.key.to_string();
        let hashing = self
            .archive
            .finish()
            .map_err(|e| format!("zip {key}: {e}"))?;
        let (writer, size, sha256) = hashing.finish();
        writer.commit(&sha256)?;
        Ok(ObjectRecord { key, size, sha256 })
    }
}

enum Copy {
    Read(io::Error),
    Write(io::Error),
}

fn copy_through(
    source: &mut dyn Read,
    dest: &mut dyn Write,
    buffer: &mut Vec<u8>,
) -> Result<u64, Copy> {
    buffer.resize(COPY_BUFFER, 0);
    let mut total = 0u64;
    loop {
        let n = match source.read(buffer) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Read(e)),
        };
        dest.write_all(&buffer[..n]).map_err(Copy::Write)?;
        total += n as u64;
    }
}

/// Reads an original, hashing what passes; at its end the size and SHA-256 must be the
/// record's, or the read fails, so whatever consumed it is not committed. It never reads more
/// than one byte past the recorded size: a longer file (or one that grows) fails right there.
pub struct Verified<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    expect_size: u64,
    expect_sha256: String,
    what: String,
    state: State,
}

enum State {
    Reading,
    Done,
    Failed(Mismatch),
}

impl<R: Read> Verified<R> {
    pub fn new(inner: R, expect: Expected<'_>, what: &str) -> Self {
        Verified {
            inner,
            hasher: Sha256::new(),
            size: 0,
            expect_size: expect.size,
            expect_sha256: expect.sha256.to_owned(),
            what: what.to_owned(),
            state: State::Reading,
        }
    }

    fn expected(&self) -> Expected<'_> {
        Expected {
            size: self.expect_size,
            sha256: &self.expect_sha256,
        }
    }

    fn fail(&mut self, mismatch: Mismatch) -> io::Error {
        self.state = State::Failed(mismatch);
        io::Error::new(
            io::ErrorKind::InvalidData,
            mismatch_message(&self.what, mismatch),
        )
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.state {
            State::Reading => {}
            State::Done => return Ok(0),
            State::Failed(m) => return Err(self.fail(m)),
        }
        let room = self.expected().read_limit() - self.size;
        let take = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..take])?;
        if n == 0 && !buf.is_empty() {
            let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
            if let Some(m) = self.expected().check(self.size, &sha256) {
                return Err(self.fail(m));
            }
            self.state = State::Done;
            return Ok(0);
        }
        self.size += n as u64;
        if self.size > self.expect_size {
            return Err(self.fail(Mismatch::Longer {
                expected: self.expect_size,
            }));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A reader shared between a consumer that takes ownership (a decoder) and its owner, which
/// reads what the consumer left once it is done, so the original is read, and checked, to its end.
#[derive(Clone)]
pub struct Shared(Arc<Mutex<Box<dyn Read + Send>>>);

impl Shared {
    pub fn new(inner: Box<dyn Read + Send>) -> Shared {
        Shared(Arc::new(Mutex::new(inner)))
    }

    /// Reads the rest of the stream, discarding it.
    pub fn drain(&self) -> io::Result<u64> {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        io::copy(&mut *inner, &mut io::sink())
    }
}

impl Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).read(buf)
    }
}

/// Opens an artifact's plaintext: the verified file wrapped in a decryptor.
pub fn open_decrypted<R: Read>(
    source: Verified<R>,
    keystore: &Keystore,
    what: &str,
) -> Result<Decryptor<Verified<R>>, String> {
    Decryptor::new(source, |id| keystore.key(id)).map_err(|e| match e {
        DecryptorError::Key(e) => format!("{what}: {e}"),
        DecryptorError::Crypto(e) => format!("{what}: {e}"),
    })
}

/// Runs ffmpeg on `input`, writing `output` (whose extension names the container). `output`
/// may exist already (created private by the caller): ffmpeg overwrites it in place, keeping
/// its mode.
pub fn run_ffmpeg(ffmpeg: &Path, input: &Path, output: &Path) -> Result<(), String> {
    let result = Command::new(ffmpeg)
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(input)
        .arg(output)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", ffmpeg.display()))?;
    if !result.status.success() {
        let stderr = String::from_utf8_lossy(&result.stderr);
        return Err(format!(
            "{} failed ({}): {}",
            ffmpeg.display(),
            result.status,
            stderr.trim()
        ));
    }
    Ok(())
}

/// Checks that `ffmpeg` runs, before any work starts.
pub fn check_ffmpeg(ffmpeg: &Path) -> Result<(), String> {
    match Command::new(ffmpeg).arg("-version").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "ffmpeg {} does not run ({}); fix [media] ffmpeg or remove it to copy video unchanged",
            ffmpeg.display(),
            o.status
        )),
        Err(e) => Err(format!(
            "ffmpeg {}: {e}; install ffmpeg, fix [media] ffmpeg, or remove it to copy video unchanged",
            ffmpeg.display()
        )),
    }
}

/// The transform an export applies to `a`, given the policy's switches and the tools at hand.
pub fn transform_for(
    a: &Artifact,
    decrypt: bool,
    voice: Option<VoiceSpec>,
    video_format: Option<&str>,
    tools: MediaTools<'_>,
) -> Transform {
    let decrypting = decrypt && a.encryption.is_some();
    if a.encryption.is_some() && !decrypting {
        return Transform::Copy;
    }
    if let Some(v) = voice
        && is_voice(a.kind)
    {
        return Transform::Transcode {
            voice: v,
            decrypt: decrypting,
        };
    }
    if is_video(a.kind)
        && let (Some(format), Some(_)) = (video_format, tools.ffmpeg)
    {
        return Transform::Ffmpeg {
            format: format.to_owned(),
            decrypt: decrypting,
        };
    }
    match &a.encryption {
        Some(e) if decrypting => Transform::Decrypt {
            key_id: e.key_id.clone(),
        },
        _ => Transform::Copy,
    }
}

impl Transform {
    /// The name of the file this transform makes from `source` (an artifact's file name, or
    /// the conversation id for a stitch).
    pub fn output_name(&self, source: &str) -> String {
        match self {
            Transform::Ffmpeg { format, .. } => with_extension(source, format),
            Transform::Transcode { voice, .. } => with_extension(source, voice.format.extension()),
            Transform::Stitch { voice, .. } => format!("{source}.{}", voice.format.extension()),
            Transform::Copy | Transform::Decrypt { .. } => source.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_reader_refuses_a_mismatch_at_the_end() {
        let data = b"hello world".to_vec();
        let sha = hex::encode(Sha256::digest(&data));
        let mut ok = Verified::new(
            &data[..],
            Expected {
                size: 11,
                sha256: &sha,
            },
            "a.wav",
        );
        let mut out = Vec::new();
        ok.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        let mut bad = Verified::new(
            &b"hello worle"[..],
            Expected {
                size: 11,
                sha256: &sha,
            },
            "a.wav",
        );
        let err = bad.read_to_end(&mut Vec::new()).unwrap_err().to_string();
        assert!(
            err.contains("a.wav: content does not match the sha256 its record lists"),
            "{err}"
        );
        assert!(
            !err.contains(&hex::encode(Sha256::digest(b"hello worle"))),
            "{err}"
        );
    }

    /// A megabyte of zeros that counts how much of it was read.
    struct Counting(u64);

    impl Read for Counting {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min((1 << 20) - self.0 as usize);
            buf[..n].fill(0);
            self.0 += n as u64;
            Ok(n)
        }
    }

    #[test]
    fn verified_reader_stops_one_byte_past_the_recorded_size() {
        let sha = hex::encode(Sha256::digest([0u8; 10]));
        let expect = Expected {
            size: 10,
            sha256: &sha,
        };
        let mut source = Counting(0);
        let mut v = Verified::new(&mut source, expect, "zero.wav");
        let mut out = Vec::new();
        let err = v.read_to_end(&mut out).unwrap_err().to_string();
        assert!(
            err.contains("zero.wav: is longer than the 10 bytes its record lists"),
            "{err}"
        );
        assert!(
            v.read(&mut [0u8; 64]).is_err(),
            "a failed read stays failed"
        );
        assert!(
            out.len() <= 10,
            "nothing past the recorded size is handed on"
        );
        assert_eq!(
            source.0, 11,
            "one byte past the recorded size is read, no more"
        );
    }

    #[test]
    fn verified_reader_tells_a_short_file_by_its_size() {
        let sha = hex::encode(Sha256::digest(b"hello world"));
        let expect = Expected {
            size: 11,
            sha256: &sha,
        };
        let err = Verified::new(&b"hello"[..], expect, "a.wav")
            .read_to_end(&mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.wav: is 5 bytes but its record lists 11"),
            "{err}"
        );
    }

    #[test]
    fn extension_replacement() {
        assert_eq!(with_extension("call.mp3", "wav"), "call.wav");
        assert_eq!(with_extension("call", "wav"), "call.wav");
        assert_eq!(with_extension(".hidden", "wav"), ".hidden.wav");
        assert_eq!(with_extension("a.b.webm", "mp4"), "a.b.mp4");
    }
}
