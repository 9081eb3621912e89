//! Stitching CDR-only trader voice: one audio file for a call that has a record but no media,
//! cut from the continuous recording of its turret channel.
//!
//! The channel's segments that overlap [start, end] are decoded in time order (each converted
//! to the output rate and channel count), cut at the sample nearest to each instant, and written
//! one after another; recorder gaps become silence and overlaps are played once. The output has
//! exactly `round((end - start) × rate)` frames. Everything streams block by block, so memory
//! does not depend on the length of the call or of the segments.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::confined::{Dir, is_plain_name};
use crate::media::audio::{AudioError, Decoder, Encoder, Resampler, VoiceSpec};
use crate::repository::segment::Segment;

/// One segment record of a channel and the audio file beside it.
#[derive(Clone, Debug)]
pub struct ChannelSegment {
    pub record: Segment,
    /// Where the audio file is, for messages; it is opened by `record.file` through the
    /// channel folder's handle.
    pub path: PathBuf,
}

impl ChannelSegment {
    /// Instant just after the segment's last sample, in nanoseconds since the epoch.
    fn end_ns(&self) -> i128 {
        nanos(&self.record.start)
            + i128::from(self.record.frames) * 1_000_000_000 / i128::from(self.record.sample_rate)
    }
}

/// Why a stitch could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StitchError {
    #[error("channel {dir}: {reason}")]
    Channel { dir: PathBuf, reason: String },
    #[error("segment record {path}: {reason}")]
    Record { path: PathBuf, reason: String },
    #[error(
        "channel {channel} has no recording between {start} and {end}: the recorder was not running or its segments are missing"
    )]
    NoSegments {
        channel: String,
        start: DateTime<FixedOffset>,
        end: DateTime<FixedOffset>,
    },
    #[error("segment {path}: {reason}")]
    Segment { path: PathBuf, reason: String },
    #[error("end {end} is not after start {start}")]
    EmptyRange {
        start: DateTime<FixedOffset>,
        end: DateTime<FixedOffset>,
    },
    #[error("stitched output: {0}")]
    Output(AudioError),
}

/// What a stitch produced.
#[derive(Clone, Debug, Serialize)]
pub struct StitchReport {
    pub rate: u32,
    pub channels: u16,
    pub frames: u64,
    /// Frames of silence filled in where the channel has no recording.
    pub silence_frames: u64,
    /// Segment files read.
    pub segments: Vec<String>,
}

/// Largest segment record read; a real one is a few hundred bytes, and a larger file is
/// refused without being read into memory.
pub const SEGMENT_RECORD_CAP: u64 = 64 * 1024;

/// A channel's folder, `<tenant>/channels/<channel>/`, wherever the repository is: a directory
/// handle, or a key prefix in an object store.
pub trait ChannelFolder {
    /// Where the folder is, for messages.
    fn location(&self) -> PathBuf;
    /// `name` in the folder, for messages.
    fn display(&self, name: &str) -> PathBuf;
    /// The names of the files in the folder (one level).
    fn names(&self) -> Result<Vec<String>, String>;
    /// The first `limit` bytes of the file `name` at most: no more are read.
    fn read_head(&self, name: &str, limit: u64) -> Result<Vec<u8>, String>;
}

impl ChannelFolder for Dir {
    fn location(&self) -> PathBuf {
        self.path().to_owned()
    }

    fn display(&self, name: &str) -> PathBuf {
        self.display_path(name)
    }

    fn names(&self) -> Result<Vec<String>, String> {
        self.entries("")
            .map(|entries| entries.into_iter().map(|e| e.name).collect())
            .map_err(|e| e.to_string())
    }

    /// Through the handle, never through a link; only a regular file is read.
    fn read_head(&self, name: &str, limit: u64) -> Result<Vec<u8>, String> {
        let file = self.open_file(name).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        file.take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        Ok(bytes)
    }
}

/// Reads the segment records of the channel `channel` in its folder `dir`, ordered by start.
/// Every record is read up to [`SEGMENT_RECORD_CAP`], names this channel, and names its audio
/// file as a plain name in this folder; a record that is not is an error naming it.
pub fn load_channel(
    dir: &dyn ChannelFolder,
    channel: &str,
) -> Result<Vec<ChannelSegment>, StitchError> {
    let names = dir.names().map_err(|reason| StitchError::Channel {
        dir: dir.location(),
        reason,
    })?;
    let mut segments = Vec::new();
    for name in names {
        if !name.ends_with(".json") {
            continue;
        }
        let path = dir.display(&name);
        let failed = |reason: String| StitchError::Record {
            path: path.clone(),
            reason,
        };
        let bytes = dir
            .read_head(&name, SEGMENT_RECORD_CAP + 1)
            .map_err(&failed)?;
        if bytes.len() as u64 > SEGMENT_RECORD_CAP {
            return Err(failed(format!(
                "larger than {SEGMENT_RECORD_CAP} bytes; a segment record is a few hundred"
            )));
        }
        let record = Segment::from_json(&bytes).map_err(&failed)?;
        if record.channel != channel {
            return Err(failed(format!(
                "it names channel `{}` but lies in the folder of channel `{}`",
                record.channel.escape_debug(),
                channel.escape_debug()
            )));
        }
        if !is_plain_name(&record.file) {
            return Err(failed(format!(
                "its file `{}` is not a plain name in the channel's folder",
                record.file.escape_debug()
            )));
        }
        segments.push(ChannelSegment {
            path: dir.display(&record.file),
            record,
        });
    }
    segments.sort_by_key(|s| nanos(&s.record.start));
    Ok(segments)
}

fn nanos(t: &DateTime<FixedOffset>) -> i128 {
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

/// The frame index at `rate` of an instant `ns` nanoseconds after the origin, rounded to the
/// nearest sample.
fn frames_at(ns: i128, rate: u32) -> i64 {
    let scaled = ns * i128::from(rate);
    let frames = if scaled >= 0 {
        (scaled + 500_000_000) / 1_000_000_000
    } else {
        (scaled - 500_000_000) / 1_000_000_000
    };
    frames as i64
}

/// Where segments are cut. The call's start is rounded once, to the channel's sample grid at
/// the output rate (anchored at the first overlapping segment's start), and every segment is
/// placed against that frame: rounding each segment's distance to the call on its own sends
/// the segments before and during the call opposite ways at an exact half-sample instant,
/// leaving a one-frame gap (a zero sample) between two adjacent segments.
struct Cuts {
    origin_ns: i128,
    start_frame: i64,
    rate: u32,
}

impl Cuts {
    fn new(origin_ns: i128, start_ns: i128, rate: u32) -> Cuts {
        Cuts {
            origin_ns,
            start_frame: frames_at(start_ns - origin_ns, rate),
            rate,
        }
    }

    /// The output frame where a segment whose first sample is at `ns` begins.
    fn offset(&self, ns: i128) -> i64 {
        frames_at(ns - self.origin_ns, self.rate) - self.start_frame
    }
}

/// Opens a segment's audio bytes (decrypting it when it is encrypted).
pub type OpenSegment<'a> =
    dyn Fn(&ChannelSegment) -> Result<Box<dyn Read + Send + Sync>, String> + 'a;

/// Stitches the part of `segments` between `start` and `end` into `out` (a new, empty file).
/// `spec`'s rate and channels default to those of the first overlapping segment.
pub fn stitch(
    channel: &str,
    segments: &[ChannelSegment],
    start: DateTime<FixedOffset>,
    end: DateTime<FixedOffset>,
    spec: &VoiceSpec,
    open: &OpenSegment<'_>,
    out: File,
) -> Result<StitchReport, StitchError> {
    let (start_ns, end_ns) = (nanos(&start), nanos(&end));
    if end_ns <= start_ns {
        return Err(StitchError::EmptyRange { start, end });
    }
    let overlapping: Vec<&ChannelSegment> = segments
        .iter()
        .filter(|s| nanos(&s.record.start) < end_ns && s.end_ns() > start_ns)
        .collect();
    let Some(first) = overlapping.first() else {
        return Err(StitchError::NoSegments {
            channel: channel.to_owned(),
            start,
            end,
        });
    };
    let rate = spec.rate.unwrap_or(first.record.sample_rate);
    let channels = spec.channels.unwrap_or(first.record.channels);
    let total = frames_at(end_ns - start_ns, rate) as u64;
    let cuts = Cuts::new(nanos(&first.record.start), start_ns, rate);
    let mut encoder =
        Encoder::new(spec.format, rate, channels, out).map_err(StitchError::Output)?;
    let mut writer = Timeline {
        encoder: &mut encoder,
        channels: usize::from(channels),
        written: 0,
        total,
        silence: 0,
        zeros: Vec::new(),
    };
    let mut used = Vec::new();
    for s in overlapping {
        if writer.written >= total {
            break;
        }
        let failed = |reason: String| StitchError::Segment {
            path: s.path.clone(),
            reason,
        };
        let offset = cuts.offset(nanos(&s.record.start));
        writer.silence_until(offset)?;
        let reader = open(s).map_err(failed)?;
        let ext = s.path.extension().and_then(|e| e.to_str());
        let mut decoder = Decoder::open(reader, ext).map_err(|e| failed(e.to_string()))?;
        if decoder.rate() != s.record.sample_rate || decoder.channels() != s.record.channels {
            return Err(failed(format!(
                "the audio is {} Hz, {} channels but its record says {} Hz, {} channels",
                decoder.rate(),
                decoder.channels(),
                s.record.sample_rate,
                s.record.channels
            )));
        }
        let mut convert = Resampler::new(decoder.rate(), decoder.channels(), rate, channels)
            .map_err(|e| failed(e.to_string()))?;
        let mut position = offset;
        while let Some(block) = decoder.next_block().map_err(|e| failed(e.to_string()))? {
            let converted = convert.process(block).map_err(|e| failed(e.to_string()))?;
            position = writer.place(position, converted)?;
            if writer.written >= total {
                break;
            }
        }
        if writer.written < total {
            let tail = convert.flush().map_err(|e| failed(e.to_string()))?;
            writer.place(position, tail)?;
        }
        used.push(s.record.file.clone());
    }
    writer.silence_until(total as i64)?;
    let silence = writer.silence;
    let frames = encoder.finish().map_err(StitchError::Output)?;
    Ok(StitchReport {
        rate,
        channels,
        frames,
        silence_frames: silence,
        segments: used,
    })
}

/// The output being filled in time order: frames before what is written are dropped (overlap),
/// frames past the end are cut, and gaps are filled with silence.
struct Timeline<'e> {
    encoder: &'e mut Encoder,
    channels: usize,
    written: u64,
    total: u64,
    silence: u64,
    zeros: Vec<f32>,
}

/// Frames of silence written per block.
const SILENCE_BLOCK: usize = 4096;

impl Timeline<'_> {
    /// Writes silence up to frame `to` (bounded by the end).
    fn silence_until(&mut self, to: i64) -> Result<(), StitchError> {
        let to = (to.max(0) as u64).min(self.total);
        while self.written < to {
            let n = ((to - self.written) as usize).min(SILENCE_BLOCK);
            self.zeros.resize(SILENCE_BLOCK * self.channels, 0.0);
            self.encoder
                .write(&self.zeros[..n * self.channels])
                .map_err(StitchError::Output)?;
            self.written += n as u64;
            self.silence += n as u64;
        }
        Ok(())
    }

    /// Places `block`, whose first frame belongs at frame `at`; returns the frame after it.
    fn place(&mut self, at: i64, block: &[f32]) -> Result<i64, StitchError> {
        let frames = (block.len() / self.channels) as i64;
        let end = at + frames;
        let from = (self.written as i64).max(at);
        let to = end.min(self.total as i64);
        if to > from {
            self.silence_until(from)?;
            let skip = (from - at) as usize * self.channels;
            let take = (to - from) as usize * self.channels;
            self.encoder
                .write(&block[skip..skip + take])
                .map_err(StitchError::Output)?;
            self.written = to as u64;
        }
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(channel: &str, file: &str) -> String {
        serde_json::json!({
            "schema": 1, "channel": channel, "file": file, "start": "2026-01-01T10:00:00Z",
            "sample_rate": 8000, "channels": 1, "frames": 8000, "size": 16044,
            "sha256": "0".repeat(64)
        })
        .to_string()
    }

    fn channel_dir(records: &[(&str, String)]) -> (tempfile::TempDir, Dir) {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("acme/channels/turret-1");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in records {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let handle = Dir::open_root(&dir).unwrap();
        (t, handle)
    }

    #[test]
    fn a_channel_loads_its_own_segments_in_time_order() {
        let (_t, dir) = channel_dir(&[("a.json", record("turret-1", "a.wav"))]);
        let segments = load_channel(&dir, "turret-1").unwrap();
        assert_eq!(segments.len(), 1);
        assert!(segments[0].path.ends_with("turret-1/a.wav"));
    }

    #[test]
    fn a_segment_naming_another_channel_is_refused() {
        let (_t, dir) = channel_dir(&[("a.json", record("turret-9", "a.wav"))]);
        let err = load_channel(&dir, "turret-1").unwrap_err().to_string();
        assert!(
            err.contains("a.json") && err.contains("names channel `turret-9`"),
            "{err}"
        );
    }

    #[test]
    fn a_segment_file_outside_its_folder_is_refused() {
        let (_t, dir) = channel_dir(&[("a.json", record("turret-1", "../../globex/x.wav"))]);
        assert!(load_channel(&dir, "turret-1").is_err());
    }

    #[test]
    fn an_oversized_segment_record_is_refused() {
        let big = format!(
            "{}{}",
            " ".repeat(SEGMENT_RECORD_CAP as usize),
            record("turret-1", "a.wav")
        );
        let (_t, dir) = channel_dir(&[("a.json", big)]);
        let err = load_channel(&dir, "turret-1").unwrap_err().to_string();
        assert!(err.contains("larger than 65536 bytes"), "{err}");
    }

    #[test]
    fn a_linked_segment_record_is_refused() {
        let (t, dir) = channel_dir(&[]);
        std::fs::create_dir_all(t.path().join("globex")).unwrap();
        std::fs::write(t.path().join("globex/s.json"), record("turret-1", "a.wav")).unwrap();
        std::os::unix::fs::symlink(
            t.path().join("globex/s.json"),
            t.path().join("acme/channels/turret-1/s.json"),
        )
        .unwrap();
        let err = load_channel(&dir, "turret-1").unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }

    #[test]
    fn frames_round_to_the_nearest_sample() {
        assert_eq!(frames_at(1_000_000_000, 8000), 8000);
        assert_eq!(frames_at(62_500, 8000), 1);
        assert_eq!(frames_at(62_499, 8000), 0);
        assert_eq!(frames_at(-62_500, 8000), -1);
        assert_eq!(frames_at(20_000_000_000, 44_100), 882_000);
    }

    /// A segment of `frames` samples of a constant non-zero level at 8 kHz, starting
    /// `start_ns` nanoseconds after a fixed instant.
    fn segment(file: &str, start_ns: i64, frames: u64) -> (ChannelSegment, Vec<u8>) {
        let mut wav = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(
            &mut wav,
            hound::WavSpec {
                channels: 1,
                sample_rate: 8000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            },
        )
        .unwrap();
        for _ in 0..frames {
            w.write_sample(10_000i16).unwrap();
        }
        w.finalize().unwrap();
        let start =
            DateTime::from_timestamp_nanos(1_772_436_600_000_000_000 + start_ns).fixed_offset();
        let bytes = wav.into_inner();
        let record = Segment {
            schema: crate::repository::record::SCHEMA_VERSION,
            channel: "line-1".into(),
            file: file.into(),
            start,
            sample_rate: 8000,
            channels: 1,
            frames,
            size: bytes.len() as u64,
            sha256: String::new(),
            encryption: None,
        };
        (
            ChannelSegment {
                record,
                path: PathBuf::from(file),
            },
            bytes,
        )
    }

    #[test]
    fn adjacent_segments_meet_without_a_zero_sample_at_a_half_sample_start() {
        // Two adjacent one-second segments; the call starts 3.5 samples (437.5 µs) into the
        // first, so the first segment lies 3.5 samples before the call and the second 7996.5
        // samples after it: rounding those apart puts them 7996 + 1 frames apart.
        let (a, a_bytes) = segment("a.wav", 0, 8000);
        let (b, b_bytes) = segment("b.wav", 1_000_000_000, 8000);
        let origin = a.record.start;
        let start = origin + chrono::Duration::nanoseconds(437_500);
        let end = origin + chrono::Duration::milliseconds(1500);
        let open = |s: &ChannelSegment| -> Result<Box<dyn Read + Send + Sync>, String> {
            let bytes = if s.record.file == "a.wav" {
                &a_bytes
            } else {
                &b_bytes
            };
            Ok(Box::new(std::io::Cursor::new(bytes.clone())))
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.wav");
        let report = stitch(
            "line-1",
            &[a, b],
            start,
            end,
            &VoiceSpec {
                format: crate::media::audio::VoiceFormat::WavPcm16,
                rate: None,
                channels: None,
            },
            &open,
            File::create(&path).unwrap(),
        )
        .unwrap();
        assert_eq!(report.silence_frames, 0, "{report:?}");
        let samples: Vec<i16> = hound::WavReader::open(&path)
            .unwrap()
            .into_samples()
            .map(Result::unwrap)
            .collect();
        assert_eq!(samples.len() as u64, report.frames);
        assert!(
            samples.iter().all(|&s| s == 10_000),
            "a zero sample at frame {:?}",
            samples.iter().position(|&s| s != 10_000)
        );
    }
}
