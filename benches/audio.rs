//! Audio hot paths: a 60 s 8 kHz mono 16-bit WAV transcoded to G.711 µ-law (the common export
//! of a recorded call), the same to PCM 16-bit through a resampler, MP3 decode throughput, and
//! the G.711 encode loop alone. Inputs are built before the timed loops.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use custodian::media::audio::{
    Decoder, Encoder, VoiceFormat, VoiceSpec, g711::Law, transcode_file,
};

/// `seconds` of a 440 Hz + 1 kHz tone at 8 kHz mono, 16-bit.
fn tone(seconds: usize) -> Vec<i16> {
    (0..8000 * seconds)
        .map(|n| {
            let t = n as f64 / 8000.0;
            let v = 0.25 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + 0.15 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin();
            (v * 32767.0) as i16
        })
        .collect()
}

fn write_wav(path: &std::path::Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

fn transcode_wav(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.wav");
    write_wav(&input, &tone(60));
    let bytes = std::fs::metadata(&input).unwrap().len();
    let mut group = c.benchmark_group("transcode_60s_8k_wav");
    group.throughput(Throughput::Bytes(bytes));
    for (name, spec) in [
        (
            "to_ulaw",
            VoiceSpec {
                format: VoiceFormat::WavUlaw,
                rate: None,
                channels: None,
            },
        ),
        (
            "to_pcm16_16k",
            VoiceSpec {
                format: VoiceFormat::WavPcm16,
                rate: Some(16000),
                channels: None,
            },
        ),
    ] {
        let output = dir.path().join(format!("{name}.wav"));
        // Each run writes a new file, as an export does: truncating the last run's output would
        // time ext4 discarding its pages and flushing on close (auto_da_alloc), about 0.4 ms.
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_batched(
                || {
                    let _ = std::fs::remove_file(&output);
                },
                |()| {
                    let mut out = std::fs::File::create_new(&output).unwrap();
                    let input = std::fs::File::open(&input).unwrap();
                    transcode_file(input, Some("wav"), &spec, &mut out).unwrap()
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn decode_mp3(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mp3 = dir.path().join("in.mp3");
    let mut enc = Encoder::new(
        VoiceFormat::Mp3,
        8000,
        1,
        std::fs::File::create(&mp3).unwrap(),
    )
    .unwrap();
    let samples = tone(60);
    enc.write_i16(&samples).unwrap();
    enc.finish().unwrap();
    let mut group = c.benchmark_group("decode_mp3");
    group.throughput(Throughput::Elements(samples.len() as u64));
    group.bench_function("60s_8k_mono_32kbps_frames", |b| {
        b.iter(|| {
            let file = std::fs::File::open(&mp3).unwrap();
            let mut d = Decoder::open_file(file, Some("mp3")).unwrap();
            let mut frames = 0;
            while let Some(block) = d.next_block().unwrap() {
                frames += block.len();
            }
            frames
        })
    });
    group.finish();
}

fn g711_encode(c: &mut Criterion) {
    let samples = tone(60);
    let mut out = Vec::new();
    let mut group = c.benchmark_group("g711_encode");
    group.throughput(Throughput::Elements(samples.len() as u64));
    group.bench_function("ulaw_from_i16_60s_8k", |b| {
        b.iter(|| Law::Ulaw.encode(&samples, &mut out))
    });
    group.finish();
}

criterion_group!(benches, transcode_wav, decode_mp3, g711_encode);
criterion_main!(benches);
