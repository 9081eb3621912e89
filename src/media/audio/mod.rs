//! Audio for exports: decode whatever the recorder wrote, convert the rate and channels, and
//! encode to the policy's voice format, all streaming with constant memory.
//!
//! [`transcode`] is the one-call path. The pieces it is made of, [`Decoder`], [`Resampler`] and
//! [`Encoder`], are public for callers that assemble audio themselves (the stitcher that cuts
//! CDR-only calls out of channel recordings). Every failure is an [`AudioError`]; bad input is
//! `Unsupported` or `Corrupt` with the codec's reason, meaning "fail this item and go on".
//!
//! 16-bit PCM WAV, what recorders write most, skips symphonia in [`transcode`] (`wav`): its data
//! chunk is read in large blocks and encoded from `i16`, with output identical to the general
//! path's.

mod decode;
mod encode;
pub mod g711;
mod resample;
#[cfg(test)]
pub(crate) mod tests;
mod wav;

use std::io::{Cursor, Read, Seek, SeekFrom};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use decode::Decoder;
pub use encode::{Encoder, f32_to_i16};
pub use resample::Resampler;
use wav::Peeked;

/// Output voice format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VoiceFormat {
    /// WAV, linear PCM, 16-bit.
    #[serde(rename = "wav-pcm16")]
    WavPcm16,
    /// WAV, G.711 µ-law, 8-bit (WAVE format tag 7).
    #[serde(rename = "wav-ulaw")]
    WavUlaw,
    /// WAV, G.711 A-law, 8-bit (WAVE format tag 6).
    #[serde(rename = "wav-alaw")]
    WavAlaw,
    /// FLAC, 16-bit.
    #[serde(rename = "flac")]
    Flac,
    /// MP3 (LAME, constant bit rate).
    #[serde(rename = "mp3")]
    Mp3,
}

impl VoiceFormat {
    /// Every format, in the order of the documentation.
    pub const ALL: [VoiceFormat; 5] = [
        VoiceFormat::WavPcm16,
        VoiceFormat::WavUlaw,
        VoiceFormat::WavAlaw,
        VoiceFormat::Flac,
        VoiceFormat::Mp3,
    ];

    /// The name used in configs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            VoiceFormat::WavPcm16 => "wav-pcm16",
            VoiceFormat::WavUlaw => "wav-ulaw",
            VoiceFormat::WavAlaw => "wav-alaw",
            VoiceFormat::Flac => "flac",
            VoiceFormat::Mp3 => "mp3",
        }
    }

    /// File extension of the output, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            VoiceFormat::WavPcm16 | VoiceFormat::WavUlaw | VoiceFormat::WavAlaw => "wav",
            VoiceFormat::Flac => "flac",
            VoiceFormat::Mp3 => "mp3",
        }
    }
}

impl std::fmt::Display for VoiceFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VoiceFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<VoiceFormat, String> {
        VoiceFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = VoiceFormat::ALL.iter().map(|f| f.as_str()).collect();
                format!(
                    "unknown voice format `{s}` (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// What to produce: a format, and a sample rate and channel count (`None` keeps the input's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct VoiceSpec {
    pub format: VoiceFormat,
    pub rate: Option<u32>,
    pub channels: Option<u16>,
}

/// The input's format and what was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AudioReport {
    pub input_rate: u32,
    pub input_channels: u16,
    pub rate: u32,
    pub channels: u16,
    /// Frames (samples per channel) written.
    pub frames: u64,
}

/// Why audio could not be transcoded.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// Input in a container, codec or layout we do not read, or a conversion we do not do:
    /// fail this item and go on.
    #[error("unsupported audio: {reason}")]
    Unsupported { reason: String },
    /// Input that is damaged or not audio at all: fail this item and go on.
    #[error("corrupt audio: {reason}")]
    Corrupt { reason: String },
    /// The encoder refused the audio: fail this item and go on.
    #[error("cannot encode: {reason}")]
    Encode { reason: String },
    /// Reading the input or writing the output failed: the item may succeed on a retry.
    #[error("audio I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Highest channel count we produce (7.1).
const MAX_CHANNELS: u16 = 8;

/// Streaming decode → (resample) → (channel mix or spread) → encode of `input` into `out`, which
/// must be a new, empty file. `ext_hint` is the input's file extension, without the dot.
///
/// `input` is read once, front to back; for files prefer [`transcode_file`], which also reads
/// MP4/M4A files whose index follows the audio. A 16-bit PCM WAV takes the fast path of
/// [`wav`], with the same output.
pub fn transcode<R: Read + Send + Sync + 'static>(
    input: R,
    ext_hint: Option<&str>,
    spec: &VoiceSpec,
    out: &mut std::fs::File,
) -> Result<AudioReport, AudioError> {
    match wav::peek(input)? {
        Peeked::Pcm(reader) => run_pcm(reader, spec, out),
        Peeked::Other { prefix, rest } => run(
            Decoder::open(Cursor::new(prefix).chain(rest), ext_hint)?,
            spec,
            out,
        ),
    }
}

/// [`transcode`] from a file, which the demuxer may seek in.
pub fn transcode_file(
    mut input: std::fs::File,
    ext_hint: Option<&str>,
    spec: &VoiceSpec,
    out: &mut std::fs::File,
) -> Result<AudioReport, AudioError> {
    // A pipe or device cannot go back: its peeked bytes are replayed instead.
    let start = input.stream_position().ok();
    match wav::peek(input)? {
        Peeked::Pcm(reader) => run_pcm(reader, spec, out),
        Peeked::Other {
            prefix,
            rest: mut file,
        } => {
            let decoder = match start {
                Some(at) if file.seek(SeekFrom::Start(at)).is_ok() => {
                    Decoder::open_file(file, ext_hint)?
                }
                _ => Decoder::open(Cursor::new(prefix).chain(file), ext_hint)?,
            };
            run(decoder, spec, out)
        }
    }
}

/// The conversion and encoder for an input of `input_rate` Hz and `input_channels`.
fn plan(
    input_rate: u32,
    input_channels: u16,
    spec: &VoiceSpec,
    out: &std::fs::File,
) -> Result<(Resampler, Encoder, AudioReport), AudioError> {
    let rate = spec.rate.unwrap_or(input_rate);
    let channels = spec.channels.unwrap_or(input_channels);
    if channels > MAX_CHANNELS {
        return Err(AudioError::Unsupported {
            reason: format!("{channels} channels (at most {MAX_CHANNELS})"),
        });
    }
    let convert = Resampler::new(input_rate, input_channels, rate, channels)?;
    let encoder = Encoder::new(spec.format, rate, channels, out.try_clone()?)?;
    let report = AudioReport {
        input_rate,
        input_channels,
        rate,
        channels,
        frames: 0,
    };
    Ok((convert, encoder, report))
}

fn run(
    mut decoder: Decoder,
    spec: &VoiceSpec,
    out: &mut std::fs::File,
) -> Result<AudioReport, AudioError> {
    let (mut convert, mut encoder, report) = plan(decoder.rate(), decoder.channels(), spec, out)?;
    while let Some(block) = decoder.next_block()? {
        encoder.write(convert.process(block)?)?;
    }
    encoder.write(convert.flush()?)?;
    let frames = encoder.finish()?;
    if decoder.bad_packets() > 0 {
        tracing::warn!(
            bad_packets = decoder.bad_packets(),
            "skipped undecodable packets"
        );
    }
    Ok(AudioReport { frames, ..report })
}

/// [`run`] for a 16-bit PCM WAV: samples go to the encoder as `i16` when nothing changes, and
/// otherwise through the resampler as the same `f32` the general path makes.
fn run_pcm<A: Read, B: Read>(
    mut reader: wav::PcmReader<A, B>,
    spec: &VoiceSpec,
    out: &mut std::fs::File,
) -> Result<AudioReport, AudioError> {
    let header = reader.header;
    let (mut convert, mut encoder, report) = plan(header.rate, header.channels, spec, out)?;
    if convert.is_identity() {
        let mut samples = Vec::new();
        while let Some(block) = reader.next_block()? {
            wav::s16le_to_i16(block, &mut samples);
            encoder.write_i16(&samples)?;
        }
    } else {
        let mut samples = Vec::new();
        while let Some(block) = reader.next_block()? {
            wav::s16le_to_f32(block, &mut samples);
            encoder.write(convert.process(&samples)?)?;
        }
        encoder.write(convert.flush()?)?;
    }
    let frames = encoder.finish()?;
    Ok(AudioReport { frames, ..report })
}
