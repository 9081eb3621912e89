//! Streaming decode of any audio file symphonia reads (WAV in every PCM flavour and G.711, MP3,
//! FLAC, Ogg Vorbis, AAC in MP4/M4A) into blocks of interleaved `f32`.
//!
//! Untrusted input is the normal case, so errors follow symphonia's contract: a packet the codec
//! cannot decode is dropped and decoding goes on (a few damaged frames in a long call should not
//! lose the call), a demuxer that asks to be reset gets a fresh decoder, and anything else ends the
//! item with the codec's own reason. Memory is one packet's worth of samples, whatever the length.
//!
//! 16-bit little-endian PCM, what recorders write most, skips symphonia's generic sample path:
//! its packets are converted straight to `f32` (the same `x / 32768` symphonia uses, so the
//! result is identical), which makes decoding such a WAV several times faster.

use std::io::{ErrorKind, Read};

use symphonia::core::audio::{AudioBuffer, AudioBufferRef, Signal, SignalSpec};
use symphonia::core::codecs::{CODEC_TYPE_NULL, CODEC_TYPE_PCM_S16LE, DecoderOptions};
use symphonia::core::conv::IntoSample;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, Track};
use symphonia::core::io::{MediaSource, MediaSourceStream, ReadOnlySource};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use symphonia::core::sample::Sample;

use super::AudioError;

/// More undecodable packets in a row than this means the stream is not audio we can use.
const MAX_CONSECUTIVE_BAD_PACKETS: u32 = 64;

/// A decoder over one audio stream: the first audio track of the container.
///
/// Open it, read [`Decoder::rate`] and [`Decoder::channels`], then call [`Decoder::next_block`]
/// until it returns `None`. Every block has the same rate and channel count; a stream whose
/// format changes midway is reported as [`AudioError::Unsupported`].
pub struct Decoder {
    format: Box<dyn FormatReader>,
    codec: Box<dyn symphonia::core::codecs::Decoder>,
    track_id: u32,
    rate: u32,
    channels: u16,
    /// The block handed out by the last `next_block`, interleaved.
    samples: Vec<f32>,
    /// The track is 16-bit little-endian PCM: convert packets directly.
    pcm_s16: bool,
    /// A block decoded by `open` to learn the format, handed out by the first `next_block`.
    primed: bool,
    /// Packets dropped as undecodable, over the whole stream.
    bad_packets: u64,
    /// Packets decoded, over the whole stream.
    good_packets: u64,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("track_id", &self.track_id)
            .field("rate", &self.rate)
            .field("channels", &self.channels)
            .field("bad_packets", &self.bad_packets)
            .finish_non_exhaustive()
    }
}

/// Translates symphonia's error into ours, keeping its reason text.
pub(super) fn from_symphonia(e: SymphoniaError) -> AudioError {
    match e {
        SymphoniaError::IoError(io) if io.kind() == ErrorKind::UnexpectedEof => {
            AudioError::Corrupt {
                reason: "unexpected end of file".into(),
            }
        }
        SymphoniaError::IoError(io) => AudioError::Io(io),
        SymphoniaError::Unsupported(_) | SymphoniaError::LimitError(_) => AudioError::Unsupported {
            reason: e.to_string(),
        },
        SymphoniaError::DecodeError(_)
        | SymphoniaError::SeekError(_)
        | SymphoniaError::ResetRequired => AudioError::Corrupt {
            reason: e.to_string(),
        },
    }
}

fn audio_track(format: &dyn FormatReader) -> Result<&Track, AudioError> {
    format
        .default_track()
        .filter(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .or_else(|| {
            format
                .tracks()
                .iter()
                .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        })
        .ok_or_else(|| AudioError::Unsupported {
            reason: "no audio track".into(),
        })
}

fn make_codec(track: &Track) -> Result<Box<dyn symphonia::core::codecs::Decoder>, AudioError> {
    symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(from_symphonia)
}

/// What one attempt to decode the next packet gave.
enum Step {
    Block,
    End,
}

impl Decoder {
    /// Opens a stream that can only be read forwards (a pipe, a decrypting reader).
    ///
    /// `ext_hint` is the file extension without the dot (`"wav"`, `"mp3"`); it speeds up and
    /// disambiguates probing but the content decides. An MP4/M4A whose index (`moov`) comes after
    /// the audio needs a seekable source: use [`Decoder::open_file`] for files.
    pub fn open<R: Read + Send + Sync + 'static>(
        input: R,
        ext_hint: Option<&str>,
    ) -> Result<Decoder, AudioError> {
        Decoder::open_source(Box::new(ReadOnlySource::new(input)), ext_hint)
    }

    /// Opens a file, which symphonia may seek in (needed for MP4/M4A with the index at the end).
    pub fn open_file(input: std::fs::File, ext_hint: Option<&str>) -> Result<Decoder, AudioError> {
        Decoder::open_source(Box::new(input), ext_hint)
    }

    fn open_source(
        source: Box<dyn MediaSource>,
        ext_hint: Option<&str>,
    ) -> Result<Decoder, AudioError> {
        let stream = MediaSourceStream::new(source, Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = ext_hint {
            hint.with_extension(ext);
        }
        let options = FormatOptions {
            enable_gapless: true,
            ..FormatOptions::default()
        };
        let probed = symphonia::default::get_probe()
            .format(&hint, stream, &options, &MetadataOptions::default())
            .map_err(from_symphonia)?;
        let format = probed.format;
        let track = audio_track(format.as_ref())?;
        let codec = make_codec(track)?;
        let track_id = track.id;
        let pcm_s16 = is_pcm_s16(track);
        let params_rate = track.codec_params.sample_rate;
        let params_channels = track.codec_params.channels.map(|c| c.count() as u16);
        let mut decoder = Decoder {
            format,
            codec,
            track_id,
            rate: params_rate.unwrap_or(0),
            channels: params_channels.unwrap_or(0),
            samples: Vec::new(),
            pcm_s16,
            primed: false,
            bad_packets: 0,
            good_packets: 0,
        };
        // The codec, not the container, has the last word on the format: decode one block now.
        match decoder.decode_next(true)? {
            Step::Block => decoder.primed = true,
            Step::End if decoder.rate == 0 || decoder.channels == 0 => {
                return Err(AudioError::Unsupported {
                    reason: "no sample rate or channel count in an empty stream".into(),
                });
            }
            Step::End => {}
        }
        Ok(decoder)
    }

    /// Sample rate in Hz.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Channel count.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Packets dropped so far because the codec could not decode them.
    pub fn bad_packets(&self) -> u64 {
        self.bad_packets
    }

    /// The next block of interleaved samples in [-1, 1], or `None` at the end of the stream.
    /// A block is one codec packet (typically 576 to 4,608 frames) and is valid until the next
    /// call.
    pub fn next_block(&mut self) -> Result<Option<&[f32]>, AudioError> {
        if std::mem::take(&mut self.primed) {
            return Ok(Some(&self.samples));
        }
        match self.decode_next(false)? {
            Step::Block => Ok(Some(&self.samples)),
            Step::End => Ok(None),
        }
    }

    /// Reads packets until one decodes (or the stream ends) and leaves it in `self.samples`.
    /// `learn` takes the format from that block instead of checking it.
    fn decode_next(&mut self, learn: bool) -> Result<Step, AudioError> {
        let mut consecutive_bad = 0u32;
        let mut last_reason = String::new();
        loop {
            let packet = match self.format.next_packet() {
                Ok(p) => p,
                Err(SymphoniaError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                    return self.end(&last_reason);
                }
                Err(SymphoniaError::ResetRequired) => {
                    self.reset()?;
                    continue;
                }
                Err(e) => return Err(from_symphonia(e)),
            };
            if packet.track_id() != self.track_id {
                continue;
            }
            if self.pcm_s16 {
                s16_to_f32(&packet.data, self.channels.into(), &mut self.samples);
                if self.samples.is_empty() {
                    continue;
                }
                self.good_packets += 1;
                return Ok(Step::Block);
            }
            match self.codec.decode(&packet) {
                Ok(decoded) => {
                    if decoded.frames() == 0 {
                        continue;
                    }
                    accept(
                        &mut self.samples,
                        (&mut self.rate, &mut self.channels),
                        decoded,
                        learn,
                    )?;
                    self.good_packets += 1;
                    return Ok(Step::Block);
                }
                Err(e @ (SymphoniaError::DecodeError(_) | SymphoniaError::IoError(_))) => {
                    self.bad_packets += 1;
                    consecutive_bad += 1;
                    last_reason = e.to_string();
                    tracing::debug!(reason = %last_reason, "skipping an undecodable packet");
                    if consecutive_bad > MAX_CONSECUTIVE_BAD_PACKETS {
                        return Err(AudioError::Corrupt {
                            reason: format!("{consecutive_bad} packets in a row: {last_reason}"),
                        });
                    }
                }
                Err(SymphoniaError::ResetRequired) => self.reset()?,
                Err(e) => return Err(from_symphonia(e)),
            }
        }
    }

    /// End of stream: fine, unless the stream never produced audio because every packet failed.
    fn end(&self, last_reason: &str) -> Result<Step, AudioError> {
        if self.good_packets == 0 && self.bad_packets > 0 {
            return Err(AudioError::Corrupt {
                reason: format!("no packet could be decoded: {last_reason}"),
            });
        }
        Ok(Step::End)
    }

    /// Re-reads the track list after the demuxer asked for a reset (a chained Ogg stream, say)
    /// and starts a new decoder for it.
    fn reset(&mut self) -> Result<(), AudioError> {
        let track = audio_track(self.format.as_ref())?;
        self.track_id = track.id;
        self.pcm_s16 = is_pcm_s16(track);
        self.codec = make_codec(track)?;
        Ok(())
    }
}

/// Takes a decoded buffer into `samples` as interleaved `f32`, learning the format from it
/// (`learn`) or checking that it has not changed.
fn accept(
    samples: &mut Vec<f32>,
    (rate, channels): (&mut u32, &mut u16),
    decoded: AudioBufferRef<'_>,
    learn: bool,
) -> Result<(), AudioError> {
    let spec: SignalSpec = *decoded.spec();
    let count = spec.channels.count() as u16;
    if learn {
        *rate = spec.rate;
        *channels = count;
    } else if spec.rate != *rate || count != *channels {
        return Err(AudioError::Unsupported {
            reason: format!(
                "the format changes midway, from {rate} Hz {channels} ch to {} Hz {count} ch",
                spec.rate
            ),
        });
    }
    if *rate == 0 || *channels == 0 {
        return Err(AudioError::Unsupported {
            reason: "a sample rate or channel count of zero".into(),
        });
    }
    match decoded {
        AudioBufferRef::U8(b) => interleave(&b, samples),
        AudioBufferRef::U16(b) => interleave(&b, samples),
        AudioBufferRef::U24(b) => interleave(&b, samples),
        AudioBufferRef::U32(b) => interleave(&b, samples),
        AudioBufferRef::S8(b) => interleave(&b, samples),
        AudioBufferRef::S16(b) => interleave(&b, samples),
        AudioBufferRef::S24(b) => interleave(&b, samples),
        AudioBufferRef::S32(b) => interleave(&b, samples),
        AudioBufferRef::F32(b) => interleave(&b, samples),
        AudioBufferRef::F64(b) => interleave(&b, samples),
    }
    Ok(())
}

/// Planar samples of any type to interleaved `f32` in `out` (replaced), with symphonia's
/// conversions.
fn interleave<S: Sample + IntoSample<f32>>(buffer: &AudioBuffer<S>, out: &mut Vec<f32>) {
    let channels = buffer.spec().channels.count();
    out.clear();
    out.resize(buffer.frames() * channels, 0.0);
    for c in 0..channels {
        let plane = buffer.chan(c);
        for (o, &s) in out[c..].iter_mut().step_by(channels).zip(plane) {
            *o = s.into_sample();
        }
    }
}

/// Whether packets of `track` are plain 16-bit little-endian PCM.
fn is_pcm_s16(track: &Track) -> bool {
    track.codec_params.codec == CODEC_TYPE_PCM_S16LE
        && track.codec_params.bits_per_sample.is_none_or(|b| b == 16)
        && track.codec_params.channels.is_some()
        && track.codec_params.sample_rate.is_some()
}

/// Interleaved 16-bit little-endian PCM bytes to `f32` in `out` (replaced); a trailing partial
/// frame is dropped.
fn s16_to_f32(bytes: &[u8], channels: usize, out: &mut Vec<f32>) {
    let whole = bytes.len() / (2 * channels) * (2 * channels);
    out.clear();
    out.extend(
        bytes[..whole]
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0),
    );
}
