//! Streaming sample-rate and channel-count conversion of interleaved `f32` blocks.
//!
//! Rates change through rubato's FFT resampler (a windowed-sinc low-pass applied in the frequency
//! domain, about 1,000 taps): synchronous, exact for any integer rate pair, and fast. Its latency is
//! removed, so output frame `n` lines up with input time `n / out_rate`, and the output holds
//! exactly `round(in_frames * out_rate / in_rate)` frames. Channels are mixed before resampling
//! when there are fewer out than in (less to resample) and spread after it otherwise.
//!
//! Channel rules: to mono, the average of all input channels; from mono, the one channel copied
//! to every output channel; otherwise output channel `c` is input channel `c mod in_channels`.

use rubato::{FftFixedIn, Resampler as _};

use super::AudioError;

/// Input frames per FFT chunk, at least; also sets the low-pass filter length.
const CHUNK_FRAMES: usize = 1024;

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The chunk for `in_rate` to `out_rate`: a multiple of `in_rate / gcd` (so every chunk maps to
/// whole output frames) by an even factor. rubato centres its filter on the middle of the chunk,
/// and only an even factor puts that middle on a whole output frame; an odd one would shift the
/// output by a fraction of a frame (measured: 44.1 to 8 kHz fell from 65 dB to 27 dB against sox).
fn chunk_frames(in_rate: u32, out_rate: u32) -> usize {
    let step = in_rate as usize / gcd(in_rate as usize, out_rate as usize);
    let factor = CHUNK_FRAMES.div_ceil(step);
    (factor + factor % 2) * step
}

/// Sample rates a conversion accepts. A rate comes from a file's header, so it is hostile: a
/// header claiming gigahertz would size the rate stage's filters by the ratio and exhaust
/// memory (found by the `wav` fuzz target). Recordings and the config's `voice_rate` stay well
/// inside this range.
pub const RATES: std::ops::RangeInclusive<u32> = 1..=768_000;

/// Converts interleaved blocks from one rate and channel count to another, keeping state between
/// blocks. Feed every block to [`Resampler::process`], then call [`Resampler::flush`] once for the
/// tail. When nothing changes, `process` hands the input back untouched.
pub struct Resampler {
    in_channels: usize,
    out_channels: usize,
    rate: Option<RateStage>,
    /// Channel-converted samples, before the rate stage or as the final output.
    mixed: Vec<f32>,
    /// Output of the rate stage, interleaved, before channels are spread.
    resampled: Vec<f32>,
    /// The block handed back to the caller.
    out: Vec<f32>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("in_channels", &self.in_channels)
            .field("out_channels", &self.out_channels)
            .field("resamples", &self.rate.is_some())
            .finish_non_exhaustive()
    }
}

/// The rubato resampler and the bookkeeping that makes it a stream with no latency.
struct RateStage {
    inner: FftFixedIn<f32>,
    in_rate: u64,
    out_rate: u64,
    channels: usize,
    /// Planar input waiting for a full chunk.
    pending: Vec<Vec<f32>>,
    /// Planar output of one chunk.
    chunk_out: Vec<Vec<f32>>,
    /// Output frames still to drop at the start (the resampler's delay).
    skip: usize,
    frames_in: u64,
    frames_out: u64,
}

impl RateStage {
    fn new(in_rate: u32, out_rate: u32, channels: usize) -> Result<RateStage, AudioError> {
        let inner = FftFixedIn::new(
            in_rate as usize,
            out_rate as usize,
            chunk_frames(in_rate, out_rate),
            1,
            channels,
        )
        .map_err(|e| AudioError::Unsupported {
            reason: format!("resampling {in_rate} Hz to {out_rate} Hz: {e}"),
        })?;
        let chunk = inner.input_frames_max();
        Ok(RateStage {
            skip: inner.output_delay(),
            chunk_out: inner.output_buffer_allocate(true),
            pending: (0..channels).map(|_| Vec::with_capacity(chunk)).collect(),
            inner,
            in_rate: in_rate.into(),
            out_rate: out_rate.into(),
            channels,
            frames_in: 0,
            frames_out: 0,
        })
    }

    /// Frames the whole input so far should become.
    fn frames_due(&self) -> u64 {
        (self.frames_in * self.out_rate + self.in_rate / 2) / self.in_rate
    }

    /// Resamples interleaved `input`, appending interleaved output to `out`.
    fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        let chunk = self.inner.input_frames_next();
        let channels = self.channels;
        let mut frames = input.chunks_exact(channels);
        self.frames_in += frames.len() as u64;
        loop {
            let room = chunk - self.pending[0].len();
            let mut taken = 0;
            for frame in frames.by_ref().take(room) {
                for (plane, &s) in self.pending.iter_mut().zip(frame) {
                    plane.push(s);
                }
                taken += 1;
            }
            if taken < room {
                return Ok(());
            }
            self.run_chunk(out, u64::MAX)?;
        }
    }

    /// Pushes the buffered input and the filter's tail through, up to the frames due.
    fn flush(&mut self, out: &mut Vec<f32>) -> Result<(), AudioError> {
        let due = self.frames_due();
        while self.frames_out < due {
            let chunk = self.inner.input_frames_next();
            for plane in &mut self.pending {
                plane.resize(chunk, 0.0);
            }
            self.run_chunk(out, due)?;
        }
        Ok(())
    }

    /// Resamples the full pending chunk, writing at most up to output frame `limit`.
    fn run_chunk(&mut self, out: &mut Vec<f32>, limit: u64) -> Result<(), AudioError> {
        let (_, produced) = self
            .inner
            .process_into_buffer(&self.pending, &mut self.chunk_out, None)
            .map_err(|e| AudioError::Unsupported {
                reason: format!("resampler: {e}"),
            })?;
        for plane in &mut self.pending {
            plane.clear();
        }
        let start = self.skip.min(produced);
        self.skip -= start;
        let wanted = (limit - self.frames_out).min((produced - start) as u64) as usize;
        let end = start + wanted;
        out.reserve(wanted * self.channels);
        for i in start..end {
            out.extend(self.chunk_out.iter().map(|plane| plane[i]));
        }
        self.frames_out += wanted as u64;
        Ok(())
    }
}

impl Resampler {
    /// A converter from `in_rate` Hz, `in_channels` to `out_rate` Hz, `out_channels`.
    pub fn new(
        in_rate: u32,
        in_channels: u16,
        out_rate: u32,
        out_channels: u16,
    ) -> Result<Resampler, AudioError> {
        if !RATES.contains(&in_rate)
            || !RATES.contains(&out_rate)
            || in_channels == 0
            || out_channels == 0
        {
            return Err(AudioError::Unsupported {
                reason: format!(
                    "cannot convert {in_rate} Hz {in_channels} ch to {out_rate} Hz {out_channels} ch"
                ),
            });
        }
        let (in_channels, out_channels) = (usize::from(in_channels), usize::from(out_channels));
        let rate = if in_rate == out_rate {
            None
        } else {
            Some(RateStage::new(
                in_rate,
                out_rate,
                in_channels.min(out_channels),
            )?)
        };
        Ok(Resampler {
            in_channels,
            out_channels,
            rate,
            mixed: Vec::new(),
            resampled: Vec::new(),
            out: Vec::new(),
        })
    }

    /// True when blocks pass through unchanged.
    pub fn is_identity(&self) -> bool {
        self.rate.is_none() && self.in_channels == self.out_channels
    }

    /// Converts one interleaved block. The result (possibly empty while the resampler fills its
    /// first chunk) is valid until the next call.
    pub fn process<'a>(&'a mut self, input: &'a [f32]) -> Result<&'a [f32], AudioError> {
        if self.is_identity() {
            return Ok(input);
        }
        let shrink = self.out_channels < self.in_channels;
        let source: &[f32] = if shrink {
            map_channels(input, self.in_channels, self.out_channels, &mut self.mixed);
            &self.mixed
        } else {
            input
        };
        let Some(rate) = &mut self.rate else {
            if shrink {
                return Ok(&self.mixed);
            }
            map_channels(input, self.in_channels, self.out_channels, &mut self.out);
            return Ok(&self.out);
        };
        self.resampled.clear();
        rate.process(source, &mut self.resampled)?;
        Ok(self.spread())
    }

    /// The remaining output at the end of the stream. Call once, after the last `process`.
    pub fn flush(&mut self) -> Result<&[f32], AudioError> {
        let Some(rate) = &mut self.rate else {
            return Ok(&[]);
        };
        self.resampled.clear();
        rate.flush(&mut self.resampled)?;
        Ok(self.spread())
    }

    /// Resampled frames to the output channel count.
    fn spread(&mut self) -> &[f32] {
        if self.out_channels <= self.in_channels {
            return &self.resampled;
        }
        map_channels(
            &self.resampled,
            self.in_channels,
            self.out_channels,
            &mut self.out,
        );
        &self.out
    }
}

/// Converts interleaved `input` from `from` to `to` channels into `out` (replaced).
fn map_channels(input: &[f32], from: usize, to: usize, out: &mut Vec<f32>) {
    out.clear();
    let frames = input.chunks_exact(from);
    out.reserve(frames.len() * to);
    if to == 1 {
        let scale = 1.0 / from as f32;
        out.extend(frames.map(|f| f.iter().sum::<f32>() * scale));
    } else if from == 1 {
        for &s in input {
            out.extend(std::iter::repeat_n(s, to));
        }
    } else {
        for f in frames {
            out.extend((0..to).map(|c| f[c % from]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_passes_blocks_through() {
        let mut r = Resampler::new(8000, 2, 8000, 2).unwrap();
        assert!(r.is_identity());
        let block = [0.5, -0.5, 0.25, -0.25];
        assert_eq!(r.process(&block).unwrap(), &block);
        assert!(r.flush().unwrap().is_empty());
    }

    #[test]
    fn channels_mix_to_mono_and_spread_from_mono() {
        let mut down = Resampler::new(8000, 2, 8000, 1).unwrap();
        assert_eq!(
            down.process(&[0.5, 0.25, -1.0, 0.0]).unwrap(),
            &[0.375, -0.5]
        );
        let mut up = Resampler::new(8000, 1, 8000, 2).unwrap();
        assert_eq!(up.process(&[0.5, -0.5]).unwrap(), &[0.5, 0.5, -0.5, -0.5]);
        let mut three = Resampler::new(8000, 2, 8000, 3).unwrap();
        assert_eq!(three.process(&[0.1, 0.2]).unwrap(), &[0.1, 0.2, 0.1]);
    }

    /// Whatever the block sizes, the output has exactly round(frames * out / in) frames.
    #[test]
    fn output_length_is_exact_for_any_block_size() {
        for (from, to, channels_in, channels_out) in [
            (8000, 16000, 1, 1),
            (44100, 8000, 2, 1),
            (16000, 44100, 1, 2),
        ] {
            for block in [1usize, 7, 1000, 5000] {
                let mut r = Resampler::new(from, channels_in, to, channels_out).unwrap();
                let frames = 12_345usize;
                let input = vec![0.1f32; frames * usize::from(channels_in)];
                let mut total = 0;
                for b in input.chunks(block * usize::from(channels_in)) {
                    total += r.process(b).unwrap().len();
                }
                total += r.flush().unwrap().len();
                let due = (frames as u64 * u64::from(to) + u64::from(from) / 2) / u64::from(from);
                assert_eq!(
                    total as u64,
                    due * u64::from(channels_out),
                    "{from}->{to} block {block}"
                );
            }
        }
    }

    #[test]
    fn zero_rate_or_channels_is_refused() {
        assert!(Resampler::new(0, 1, 8000, 1).is_err());
    }

    #[test]
    fn a_header_rate_of_gigahertz_is_refused_before_anything_is_allocated() {
        let err = Resampler::new(0xFFFF_BC80, 2, 16_000, 1).err().unwrap();
        assert!(err.to_string().contains("4294950016 Hz"), "{err}");
        assert!(Resampler::new(768_000, 1, 8000, 1).is_ok());
        assert!(Resampler::new(8000, 1, 8000, 0).is_err());
    }
}
