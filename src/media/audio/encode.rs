//! Streaming encoders for the export voice formats, each writing to a file as blocks arrive:
//! WAV PCM 16-bit (hound), WAV G.711 µ-law and A-law (our RIFF writer and [`super::g711`]),
//! FLAC (flacenc, one frame at a time) and MP3 (LAME).
//!
//! Samples arrive as interleaved `f32` and are quantised to 16 bits by rounding `x * 32768`,
//! which is exact for audio that came from 16-bit PCM; or as `i16` ([`Encoder::write_i16`], the
//! fast path for 16-bit WAV input), which gives the same bytes without the float round trip.
//! Headers whose sizes are only known at the
//! end (RIFF, `fact`, FLAC STREAMINFO, LAME's Info tag) are patched in place by `finish`, which
//! is why the output is a `File`.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};

use flacenc::bitsink::ByteSink;
use flacenc::component::{BitRepr, Stream, StreamInfo};
use flacenc::error::Verify;
use flacenc::source::{Context, Fill, FrameBuf};

use super::g711::Law;
use super::{AudioError, VoiceFormat};

/// Output buffer in front of the file.
const WRITE_BUFFER: usize = 256 * 1024;
/// FLAC block size in frames (flacenc's default).
const FLAC_BLOCK: usize = 4096;
/// Sample rates an MP3 (MPEG-1, 2 and 2.5 layer III) can carry.
const MP3_RATES: [u32; 9] = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000];

/// Rounds `x * 32768` to the nearest integer (ties to even) and saturates to `i16`; exact for
/// audio that came from 16-bit PCM. A (quiet) NaN becomes 0.
#[inline]
pub fn f32_to_i16(x: f32) -> i16 {
    // Adding 1.5 * 2^23 leaves round(v) in the low mantissa bits (the spacing of floats there is
    // exactly 1), so the integer is read from the bits: no float-to-int conversion and its
    // saturation checks, and the loop vectorises. Valid because v is first clamped to 16 bits.
    const MAGIC: f32 = 12_582_912.0;
    let v = (x * 32768.0).clamp(-32768.0, 32767.0);
    ((v + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32) as i16
}

/// Converts a block to 16-bit samples in `out` (replaced).
fn quantise(samples: &[f32], out: &mut Vec<i16>) {
    out.clear();
    out.extend(samples.iter().map(|&x| f32_to_i16(x)));
}

/// A streaming encoder for one output file.
///
/// `write` takes interleaved samples with the channel count given to [`Encoder::new`] (a block
/// may hold any whole number of frames); `finish` completes the headers and returns the frame
/// count. Dropping an encoder without `finish` leaves an incomplete file for the caller to remove.
pub struct Encoder {
    sink: Sink,
    channels: usize,
    frames: u64,
    /// 16-bit samples of the block being written (FLAC).
    pcm: Vec<i16>,
    /// Float samples of the block being written (MP3 from 16-bit).
    float: Vec<f32>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("channels", &self.channels)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

enum Sink {
    Pcm16(hound::WavWriter<BufWriter<File>>),
    G711(G711Writer),
    Flac(Box<FlacWriter>),
    Mp3(Mp3Writer),
}

impl Encoder {
    /// Starts a `format` file of `rate` Hz and `channels` channels, written from the start of
    /// `out` (a new, empty file).
    pub fn new(
        format: VoiceFormat,
        rate: u32,
        channels: u16,
        out: File,
    ) -> Result<Encoder, AudioError> {
        if rate == 0 || channels == 0 {
            return Err(AudioError::Unsupported {
                reason: format!("cannot encode {rate} Hz with {channels} channels"),
            });
        }
        let out = BufWriter::with_capacity(WRITE_BUFFER, out);
        let sink = match format {
            VoiceFormat::WavPcm16 => {
                wav_byte_rate(rate, channels, 2)?;
                let spec = hound::WavSpec {
                    channels,
                    sample_rate: rate,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                };
                Sink::Pcm16(hound::WavWriter::new(out, spec).map_err(hound_error)?)
            }
            VoiceFormat::WavUlaw => Sink::G711(G711Writer::new(Law::Ulaw, rate, channels, out)?),
            VoiceFormat::WavAlaw => Sink::G711(G711Writer::new(Law::Alaw, rate, channels, out)?),
            VoiceFormat::Flac => Sink::Flac(Box::new(FlacWriter::new(rate, channels, out)?)),
            VoiceFormat::Mp3 => Sink::Mp3(Mp3Writer::new(rate, channels, out)?),
        };
        Ok(Encoder {
            sink,
            channels: channels.into(),
            frames: 0,
            pcm: Vec::new(),
            float: Vec::new(),
        })
    }

    /// Checks that `samples` are whole frames and counts them; false when there are none.
    fn count(&mut self, samples: usize) -> Result<bool, AudioError> {
        if !samples.is_multiple_of(self.channels) {
            return Err(AudioError::Encode {
                reason: format!(
                    "a block of {samples} samples is not whole frames of {} channels",
                    self.channels
                ),
            });
        }
        self.frames += (samples / self.channels) as u64;
        Ok(samples > 0)
    }

    /// Encodes interleaved samples in [-1, 1] (values outside are clipped).
    pub fn write(&mut self, interleaved: &[f32]) -> Result<(), AudioError> {
        if !self.count(interleaved.len())? {
            return Ok(());
        }
        if let Sink::Mp3(w) = &mut self.sink {
            return w.write(interleaved);
        }
        let mut pcm = std::mem::take(&mut self.pcm);
        quantise(interleaved, &mut pcm);
        let written = self.encode_i16(&pcm);
        self.pcm = pcm;
        written
    }

    /// Encodes interleaved 16-bit samples: the same output as [`Encoder::write`] with
    /// `x / 32768`, without the float round trip for WAV, G.711 and FLAC.
    pub fn write_i16(&mut self, interleaved: &[i16]) -> Result<(), AudioError> {
        if !self.count(interleaved.len())? {
            return Ok(());
        }
        self.encode_i16(interleaved)
    }

    /// The one encoding step of both entry points, for whole frames already counted.
    fn encode_i16(&mut self, interleaved: &[i16]) -> Result<(), AudioError> {
        match &mut self.sink {
            Sink::Pcm16(w) => {
                let mut samples = w.get_i16_writer(interleaved.len() as u32);
                for &x in interleaved {
                    samples.write_sample(x);
                }
                samples.flush().map_err(hound_error)
            }
            Sink::G711(w) => w.write_i16(interleaved),
            Sink::Flac(w) => w.write(interleaved),
            // LAME scales 16-bit input differently from float input: keep to floats so both
            // entry points give the same MP3.
            Sink::Mp3(w) => {
                self.float.clear();
                self.float
                    .extend(interleaved.iter().map(|&x| f32::from(x) / 32768.0));
                w.write(&self.float)
            }
        }
    }

    /// Completes the file (headers, trailing frames) and returns the frames written.
    pub fn finish(self) -> Result<u64, AudioError> {
        match self.sink {
            Sink::Pcm16(w) => w.finalize().map_err(hound_error)?,
            Sink::G711(w) => w.finish()?,
            Sink::Flac(w) => w.finish()?,
            Sink::Mp3(w) => w.finish()?,
        }
        Ok(self.frames)
    }
}

/// A WAV header's bytes per second (`rate × channels × bytes per sample`), refused when it does
/// not fit the header's 32-bit field: the rate comes from the input file, and a wrapped value
/// would be a header that lies (or, with overflow checks, a panic).
fn wav_byte_rate(rate: u32, channels: u16, bytes_per_sample: u32) -> Result<u32, AudioError> {
    rate.checked_mul(u32::from(channels) * bytes_per_sample)
        .ok_or_else(|| AudioError::Unsupported {
            reason: format!(
                "{rate} Hz with {channels} channels does not fit a WAV header (bytes per second \
                 over 2^32); set voice_rate"
            ),
        })
}

fn hound_error(e: hound::Error) -> AudioError {
    match e {
        hound::Error::IoError(io) => AudioError::Io(io),
        other => AudioError::Encode {
            reason: format!("wav: {other}"),
        },
    }
}

/// WAVE file with G.711 samples: `RIFF`, `fmt ` (18 bytes, cbSize 0), `fact`, `data`.
struct G711Writer {
    law: Law,
    out: BufWriter<File>,
    channels: u32,
    data_bytes: u64,
    codes: Vec<u8>,
}

/// Byte offsets of the fields patched at the end.
const RIFF_SIZE_AT: u64 = 4;
const FACT_FRAMES_AT: u64 = 46;
const DATA_SIZE_AT: u64 = 54;
const G711_HEADER_LEN: u32 = 58;

impl G711Writer {
    fn new(
        law: Law,
        rate: u32,
        channels: u16,
        mut out: BufWriter<File>,
    ) -> Result<Self, AudioError> {
        let tag: u16 = match law {
            Law::Ulaw => 7,
            Law::Alaw => 6,
        };
        let byte_rate = wav_byte_rate(rate, channels, 1)?;
        let mut h = Vec::with_capacity(G711_HEADER_LEN as usize);
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&(G711_HEADER_LEN - 8).to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&18u32.to_le_bytes());
        h.extend_from_slice(&tag.to_le_bytes());
        h.extend_from_slice(&channels.to_le_bytes());
        h.extend_from_slice(&rate.to_le_bytes());
        h.extend_from_slice(&byte_rate.to_le_bytes());
        h.extend_from_slice(&channels.to_le_bytes()); // block align
        h.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
        h.extend_from_slice(&0u16.to_le_bytes()); // cbSize
        h.extend_from_slice(b"fact");
        h.extend_from_slice(&4u32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&0u32.to_le_bytes());
        debug_assert_eq!(h.len(), G711_HEADER_LEN as usize);
        out.write_all(&h)?;
        Ok(G711Writer {
            law,
            out,
            channels: channels.into(),
            data_bytes: 0,
            codes: Vec::new(),
        })
    }

    fn write_i16(&mut self, samples: &[i16]) -> Result<(), AudioError> {
        self.law.encode(samples, &mut self.codes);
        self.out.write_all(&self.codes)?;
        self.data_bytes += self.codes.len() as u64;
        Ok(())
    }

    fn finish(mut self) -> Result<(), AudioError> {
        let too_big = || AudioError::Encode {
            reason: "more than 4 GiB of G.711 data does not fit a WAV file".into(),
        };
        let data = u32::try_from(self.data_bytes).map_err(|_| too_big())?;
        let pad = data % 2;
        if pad == 1 {
            self.out.write_all(&[0])?;
        }
        let riff = (G711_HEADER_LEN - 8)
            .checked_add(data + pad)
            .ok_or_else(too_big)?;
        let frames = data / self.channels;
        for (at, value) in [
            (RIFF_SIZE_AT, riff),
            (FACT_FRAMES_AT, frames),
            (DATA_SIZE_AT, data),
        ] {
            self.out.seek(SeekFrom::Start(at))?;
            self.out.write_all(&value.to_le_bytes())?;
        }
        self.out.flush()?;
        Ok(())
    }
}

/// FLAC, 16-bit, fixed blocks of [`FLAC_BLOCK`] frames, encoded and written one frame at a time;
/// STREAMINFO (frame sizes, total samples, MD5) is rewritten at the end.
struct FlacWriter {
    config: flacenc::error::Verified<flacenc::config::Encoder>,
    info: StreamInfo,
    out: BufWriter<File>,
    channels: usize,
    /// Interleaved samples waiting for a whole block.
    pending: Vec<i16>,
    bytes: Vec<u8>,
    framebuf: FrameBuf,
    md5: Context,
    frame_number: usize,
    sink: ByteSink,
}

fn flac_error(e: impl std::fmt::Display) -> AudioError {
    AudioError::Encode {
        reason: format!("flac: {e}"),
    }
}

impl FlacWriter {
    fn new(rate: u32, channels: u16, out: BufWriter<File>) -> Result<Self, AudioError> {
        let channels = usize::from(channels);
        let config = flacenc::config::Encoder::default()
            .into_verified()
            .map_err(|(_, e)| flac_error(e))?;
        let info = StreamInfo::new(rate as usize, channels, 16).map_err(flac_error)?;
        let mut writer = FlacWriter {
            config,
            info,
            out,
            channels,
            pending: Vec::with_capacity(FLAC_BLOCK * channels),
            bytes: Vec::new(),
            framebuf: FrameBuf::with_size(channels, FLAC_BLOCK).map_err(flac_error)?,
            md5: Context::new(16, channels),
            frame_number: 0,
            sink: ByteSink::new(),
        };
        writer.write_header()?;
        Ok(writer)
    }

    /// `fLaC` and the STREAMINFO block (a fixed 42 bytes, so it can be rewritten in place).
    fn write_header(&mut self) -> Result<(), AudioError> {
        self.sink.clear();
        Stream::with_stream_info(self.info.clone())
            .write(&mut self.sink)
            .map_err(flac_error)?;
        self.out.write_all(self.sink.as_slice())?;
        Ok(())
    }

    fn write(&mut self, pcm: &[i16]) -> Result<(), AudioError> {
        let block = FLAC_BLOCK * self.channels;
        let mut rest = pcm;
        while !rest.is_empty() {
            let take = (block - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == block {
                self.encode_pending()?;
            }
        }
        Ok(())
    }

    fn encode_pending(&mut self) -> Result<(), AudioError> {
        self.bytes.clear();
        self.bytes
            .extend(self.pending.iter().flat_map(|s| s.to_le_bytes()));
        self.pending.clear();
        self.framebuf
            .fill_le_bytes(&self.bytes, 2)
            .map_err(flac_error)?;
        self.md5.fill_le_bytes(&self.bytes, 2).map_err(flac_error)?;
        let frame = flacenc::encode_fixed_size_frame(
            &self.config,
            &self.framebuf,
            self.frame_number,
            &self.info,
        )
        .map_err(flac_error)?;
        self.frame_number += 1;
        self.info.update_frame_info(&frame);
        self.sink.clear();
        frame.write(&mut self.sink).map_err(flac_error)?;
        self.out.write_all(self.sink.as_slice())?;
        Ok(())
    }

    fn finish(mut self) -> Result<(), AudioError> {
        if !self.pending.is_empty() {
            self.encode_pending()?;
        }
        self.info.set_md5_digest(&self.md5.md5_digest());
        // As the reference encoder does: a fixed-block stream declares its block size as both
        // minimum and maximum (the shorter last block does not count). symphonia refuses a
        // stream whose minimum is the last block's size.
        self.info
            .set_block_sizes(FLAC_BLOCK, FLAC_BLOCK)
            .map_err(flac_error)?;
        self.out.seek(SeekFrom::Start(0))?;
        self.write_header()?;
        self.out.flush()?;
        Ok(())
    }
}

/// MP3 through LAME at a constant bit rate fit for speech, with a LAME Info tag so decoders can
/// trim the encoder delay and padding (gapless: the decoded length equals the input length).
struct Mp3Writer {
    lame: mp3lame_encoder::Encoder,
    out: BufWriter<File>,
    channels: usize,
    bytes: Vec<u8>,
}

fn mp3_error(e: impl std::fmt::Display) -> AudioError {
    AudioError::Encode {
        reason: format!("mp3: {e}"),
    }
}

/// Constant bit rate for speech at `rate` Hz: 32 kbit/s for 8 kHz mono up to 128 kbit/s for
/// 44.1/48 kHz stereo.
fn mp3_bitrate(rate: u32, channels: usize) -> mp3lame_encoder::Bitrate {
    use mp3lame_encoder::Bitrate::*;
    match (rate, channels) {
        (..=12_000, 1) => Kbps32,
        (..=12_000, _) => Kbps48,
        (..=24_000, 1) => Kbps48,
        (..=24_000, _) => Kbps64,
        (_, 1) => Kbps64,
        _ => Kbps128,
    }
}

impl Mp3Writer {
    fn new(rate: u32, channels: u16, out: BufWriter<File>) -> Result<Self, AudioError> {
        if !MP3_RATES.contains(&rate) {
            return Err(AudioError::Unsupported {
                reason: format!("MP3 cannot carry {rate} Hz (use one of {MP3_RATES:?})"),
            });
        }
        if channels > 2 {
            return Err(AudioError::Unsupported {
                reason: format!("MP3 carries 1 or 2 channels, not {channels}"),
            });
        }
        let mut b = mp3lame_encoder::Builder::new().ok_or_else(|| AudioError::Encode {
            reason: "mp3: cannot start LAME".into(),
        })?;
        b.set_num_channels(channels as u8).map_err(mp3_error)?;
        b.set_sample_rate(rate).map_err(mp3_error)?;
        b.set_output_sample_rate(std::num::NonZeroU32::new(rate))
            .map_err(mp3_error)?;
        b.set_brate(mp3_bitrate(rate, channels.into()))
            .map_err(mp3_error)?;
        b.set_vbr_mode(mp3lame_encoder::VbrMode::Off)
            .map_err(mp3_error)?;
        b.set_mode(if channels == 1 {
            mp3lame_encoder::Mode::Mono
        } else {
            mp3lame_encoder::Mode::JointStereo
        })
        .map_err(mp3_error)?;
        b.set_quality(mp3lame_encoder::Quality::Good)
            .map_err(mp3_error)?;
        b.set_to_write_vbr_tag(true).map_err(mp3_error)?;
        Ok(Mp3Writer {
            lame: b.build().map_err(mp3_error)?,
            out,
            channels: channels.into(),
            bytes: Vec::new(),
        })
    }

    fn write(&mut self, interleaved: &[f32]) -> Result<(), AudioError> {
        self.bytes.clear();
        self.bytes
            .reserve(mp3lame_encoder::max_required_buffer_size(
                interleaved.len() / self.channels,
            ));
        if self.channels == 1 {
            self.lame
                .encode_to_vec(mp3lame_encoder::MonoPcm(interleaved), &mut self.bytes)
        } else {
            self.lame.encode_to_vec(
                mp3lame_encoder::InterleavedPcm(interleaved),
                &mut self.bytes,
            )
        }
        .map_err(mp3_error)?;
        self.out.write_all(&self.bytes)?;
        Ok(())
    }

    fn finish(mut self) -> Result<(), AudioError> {
        self.bytes.clear();
        self.bytes.reserve(7200);
        self.lame
            .flush_to_vec::<mp3lame_encoder::FlushGap>(&mut self.bytes)
            .map_err(mp3_error)?;
        self.out.write_all(&self.bytes)?;
        self.bytes.clear();
        self.bytes.reserve(self.lame.lame_tag_size());
        if self.lame.lame_tag_encode_to_vec(&mut self.bytes).is_some() {
            self.out.seek(SeekFrom::Start(0))?;
            self.out.write_all(&self.bytes)?;
        }
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_16_bit_value_survives_the_float_round_trip() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(f32_to_i16(f32::from(x) / 32768.0), x);
        }
    }

    #[test]
    fn out_of_range_and_nan_saturate() {
        assert_eq!(f32_to_i16(1.0), i16::MAX);
        assert_eq!(f32_to_i16(7.5), i16::MAX);
        assert_eq!(f32_to_i16(-3.0), i16::MIN);
        assert_eq!(f32_to_i16(f32::NAN), 0);
        assert_eq!(f32_to_i16(-f32::NAN), 0);
        assert_eq!(f32_to_i16(1.5 / 32768.0), 2, "ties to even");
        assert_eq!(f32_to_i16(-2.5 / 32768.0), -2, "ties to even");
        assert_eq!(f32_to_i16(0.4 / 32768.0), 0);
        assert_eq!(f32_to_i16(0.6 / 32768.0), 1);
    }

    #[test]
    fn g711_header_is_patched_with_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.wav");
        let mut e =
            Encoder::new(VoiceFormat::WavUlaw, 8000, 1, File::create(&path).unwrap()).unwrap();
        e.write(&[0.0; 3]).unwrap();
        assert_eq!(e.finish().unwrap(), 3);
        let b = std::fs::read(&path).unwrap();
        assert_eq!(b.len(), 58 + 4, "3 data bytes and a pad byte");
        assert_eq!(&b[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 54);
        assert_eq!(u16::from_le_bytes(b[20..22].try_into().unwrap()), 7);
        assert_eq!(u32::from_le_bytes(b[46..50].try_into().unwrap()), 3);
        assert_eq!(&b[50..54], b"data");
        assert_eq!(u32::from_le_bytes(b[54..58].try_into().unwrap()), 3);
    }

    #[test]
    fn partial_frames_and_bad_formats_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = || File::create(dir.path().join("x")).unwrap();
        let mut e = Encoder::new(VoiceFormat::WavPcm16, 8000, 2, file()).unwrap();
        assert!(matches!(e.write(&[0.0; 3]), Err(AudioError::Encode { .. })));
        assert!(matches!(
            Encoder::new(VoiceFormat::Mp3, 7000, 1, file()),
            Err(AudioError::Unsupported { .. })
        ));
        assert!(matches!(
            Encoder::new(VoiceFormat::Mp3, 8000, 3, file()),
            Err(AudioError::Unsupported { .. })
        ));
        assert!(Encoder::new(VoiceFormat::Flac, 0, 1, file()).is_err());
    }
}
