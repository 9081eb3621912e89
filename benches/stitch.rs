//! Stitching a CDR-only call out of a channel: seconds of audio produced per second, with the
//! channel's segments (one of them encrypted) built outside the timed loop.

use std::io::Read;

use chrono::{DateTime, Duration, FixedOffset};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use custodian::media::audio::{VoiceFormat, VoiceSpec};
use custodian::media::crypto::{Decryptor, encrypt_stream};
use custodian::media::stitch::{ChannelSegment, load_channel, stitch};
use custodian::repository::segment::Segment;

const RATE: u32 = 8000;
const SEGMENT_SECONDS: u32 = 60;
const SEGMENTS: usize = 5;
const KEY: [u8; 32] = [9; 32];

fn wav(seconds: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for i in 0..seconds * RATE {
        w.write_sample(((i as f32 * 0.07).sin() * 9000.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
    out.into_inner()
}

/// Five 60 s segments with a 2 s gap after each; the third is encrypted.
fn channel(dir: &std::path::Path, t0: DateTime<FixedOffset>) {
    use sha2::{Digest, Sha256};
    let plain = wav(SEGMENT_SECONDS);
    for n in 0..SEGMENTS {
        let encrypted = n == 2;
        let bytes = if encrypted {
            let mut out = Vec::new();
            encrypt_stream(&KEY, "bench", 65536, &mut &plain[..], &mut out).unwrap();
            out
        } else {
            plain.clone()
        };
        let file = format!("seg-{n}.wav");
        std::fs::write(dir.join(&file), &bytes).unwrap();
        let record = Segment {
            schema: 1,
            channel: "bench".into(),
            file,
            start: t0 + Duration::seconds(n as i64 * (SEGMENT_SECONDS as i64 + 2)),
            sample_rate: RATE,
            channels: 1,
            frames: u64::from(SEGMENT_SECONDS * RATE),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
            encryption: encrypted.then(|| custodian::repository::record::Encryption {
                key_id: "bench".into(),
            }),
        };
        std::fs::write(
            dir.join(format!("seg-{n}.json")),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
    }
}

fn open(s: &ChannelSegment) -> Result<Box<dyn Read + Send + Sync>, String> {
    let file = std::fs::File::open(&s.path).map_err(|e| e.to_string())?;
    Ok(match s.record.encryption {
        Some(_) => {
            Box::new(Decryptor::new(file, |_| Ok::<_, String>(KEY)).map_err(|e| format!("{e:?}"))?)
        }
        None => Box::new(file),
    })
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let t0 = DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z").unwrap();
    channel(dir.path(), t0);
    let handle = custodian::confined::Dir::open_root(dir.path()).unwrap();
    let segments = load_channel(&handle, "bench").unwrap();
    let (start, end) = (t0 + Duration::seconds(30), t0 + Duration::seconds(300));
    let seconds = (end - start).num_seconds() as u64;
    let mut group = c.benchmark_group("stitch");
    group.sample_size(20);
    group.throughput(Throughput::Elements(seconds * u64::from(RATE)));
    for format in [VoiceFormat::WavPcm16, VoiceFormat::WavUlaw] {
        let spec = VoiceSpec {
            format,
            rate: None,
            channels: None,
        };
        group.bench_function(format!("270s_of_5_segments_to_{format}"), |b| {
            b.iter(|| {
                let out = tempfile::tempfile().unwrap();
                stitch("bench", &segments, start, end, &spec, &open, out).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
