//! Stitching CDR-only trader voice, from the command line and inside exports: exact length,
//! exact cut, silence for recorder gaps, encrypted segments, and clear per-item errors.

use std::path::Path;

use crate::common::{Art, Env, encrypt, sha256, text};

pub(crate) const RATE: u32 = 8000;

/// Sample `i` of the segment numbered `n`: distinct per segment and position.
pub(crate) fn sample(n: i32, i: usize) -> i16 {
    (n * 1000 + (i % 997) as i32) as i16
}

fn wav(n: i32, frames: usize) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for i in 0..frames {
        w.write_sample(sample(n, i)).unwrap();
    }
    w.finalize().unwrap();
    out.into_inner()
}

/// Writes segment `n` of `channel` under `dir`: `seconds` long from `start`, optionally
/// encrypted with key `k1`.
fn segment(dir: &Path, channel: &str, n: i32, start: &str, seconds: usize, encrypted: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let frames = seconds * RATE as usize;
    let plain = wav(n, frames);
    let stored = if encrypted {
        encrypt(&plain, "k1", 4096)
    } else {
        plain
    };
    let file = format!("{channel}_{n}.wav");
    std::fs::write(dir.join(&file), &stored).unwrap();
    let mut record = serde_json::json!({
        "schema": 1, "channel": channel, "file": file, "start": start,
        "sample_rate": RATE, "channels": 1, "frames": frames,
        "size": stored.len(), "sha256": sha256(&stored)
    });
    if encrypted {
        record["encryption"] = serde_json::json!({ "key_id": "k1" });
    }
    std::fs::write(dir.join(format!("{channel}_{n}.json")), record.to_string()).unwrap();
}

pub(crate) fn read_wav(path: &Path) -> (hound::WavSpec, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    (spec, r.samples::<i16>().map(Result::unwrap).collect())
}

/// Segment 1: 10:00:00–10:00:10; a 2 s recorder gap; segment 2 (encrypted): 10:00:12–10:00:20.
pub(crate) fn channel_with_gap(dir: &Path) {
    segment(dir, "turret-1", 1, "2026-01-01T10:00:00Z", 10, false);
    segment(dir, "turret-1", 2, "2026-01-01T10:00:12Z", 8, true);
}

#[test]
fn stitch_cuts_at_the_sample_and_fills_gaps_with_silence() {
    let env = Env::new("");
    let channel = env.path().join("turret-1");
    channel_with_gap(&channel);
    let ks = env.keystore(&["k1"]);
    let out = env.path().join("call.wav");
    let run = env.run(&[
        "stitch",
        "--channel",
        channel.to_str().unwrap(),
        "--start",
        "2026-01-01T11:00:05+01:00",
        "--end",
        "2026-01-01T10:00:15Z",
        "--keystore",
        ks.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let (spec, samples) = read_wav(&out);
    assert_eq!(spec.sample_rate, RATE);
    assert_eq!(
        samples.len(),
        10 * RATE as usize,
        "end - start to the sample"
    );
    let r = RATE as usize;
    for (i, &s) in samples[..5 * r].iter().enumerate() {
        assert_eq!(s, sample(1, 5 * r + i), "segment 1 at output frame {i}");
    }
    assert!(
        samples[5 * r..7 * r].iter().all(|&s| s == 0),
        "the gap is silence"
    );
    for (i, &s) in samples[7 * r..].iter().enumerate() {
        assert_eq!(s, sample(2, i), "segment 2 at frame {i}");
    }
    assert!(
        text(&run).contains(&format!("{} of silence", 2 * r)),
        "{}",
        text(&run)
    );
}

#[test]
fn stitch_with_no_recording_in_range_fails_and_writes_nothing() {
    let env = Env::new("");
    let channel = env.path().join("turret-1");
    channel_with_gap(&channel);
    let out = env.path().join("call.wav");
    let run = env.run(&[
        "stitch",
        "--channel",
        channel.to_str().unwrap(),
        "--start",
        "2026-01-01T12:00:00Z",
        "--end",
        "2026-01-01T12:01:00Z",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(
        text(&run).contains("channel turret-1 has no recording between"),
        "{}",
        text(&run)
    );
    assert!(!out.exists());
    let left: Vec<_> = std::fs::read_dir(env.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".custodian-tmp-")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A CDR-only trader-voice record on `turret-1` from `start` to `end` (10:00 UTC on day 1).
pub(crate) fn cdr_only(env: &Env, id: &str, start: &str, end: &str) {
    let dir = env.root().join(Env::rel_dir("acme", 1, id));
    std::fs::create_dir_all(&dir).unwrap();
    let record = serde_json::json!({
        "schema": 1, "id": id, "tenant": "acme", "type": "trader_voice",
        "source_platform": "ipc", "direction": "outbound", "start": start, "end": end,
        "participants": [{"user": "grace", "role": "trader"}],
        "flags": {"cdr_only": true}, "channel": "turret-1", "artifacts": []
    });
    std::fs::write(dir.join("conversation.json"), record.to_string()).unwrap();
}

#[test]
fn export_stitches_cdr_only_calls_and_fails_one_without_recording_alone() {
    let env = Env::new(
        "stitch_cdr_only = true\nvoice_format = \"wav-pcm16\"\n\n[media]\nkeystore = \"keystore.json\"\n",
    );
    env.keystore(&["k1"]);
    channel_with_gap(&env.root().join("acme/channels/turret-1"));
    cdr_only(
        &env,
        "tv1",
        "2026-01-01T10:00:08Z",
        "2026-01-01T10:00:14.5Z",
    );
    cdr_only(&env, "tv2", "2026-01-01T13:00:00Z", "2026-01-01T13:00:30Z");
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(summary["counters"]["exported"], 1);
    let error = summary["failures"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("acme/tv2") && error.contains("turret-1 has no recording"),
        "{error}"
    );
    let (_, samples) = read_wav(&env.archive().join("acme/2026/01/01/tv1/tv1.wav"));
    assert_eq!(samples.len(), 6 * RATE as usize + RATE as usize / 2);
    assert_eq!(samples[0], sample(1, 8 * RATE as usize));
    assert_eq!(
        env.archive_files(),
        [
            "acme/2026/01/01/tv1/conversation.json",
            "acme/2026/01/01/tv1/tv1.wav"
        ]
    );
}

#[test]
fn cdr_only_without_stitching_exports_the_metadata_only() {
    let env = Env::new("");
    channel_with_gap(&env.root().join("acme/channels/turret-1"));
    cdr_only(&env, "tv1", "2026-01-01T10:00:08Z", "2026-01-01T10:00:14Z");
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(
        env.archive_files(),
        ["acme/2026/01/01/tv1/conversation.json"]
    );
}

#[test]
fn voice_is_transcoded_in_exports_and_bad_audio_fails_alone() {
    let env = Env::new("voice_format = \"wav-ulaw\"\nvoice_rate = 8000\nvoice_channels = 1");
    let mut stereo = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut stereo, spec).unwrap();
    for i in 0..32000i32 {
        let v = ((i as f32 * 0.05).sin() * 8000.0) as i16;
        w.write_sample(v).unwrap();
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();
    let stereo = stereo.into_inner();
    env.record(
        "acme",
        1,
        "v1",
        "voice",
        &[Art::plain("call.wav", "audio_recording", &stereo)],
    );
    env.record(
        "acme",
        2,
        "v2",
        "voice",
        &[Art::plain(
            "broken.mp3",
            "audio_recording",
            b"this is not audio at all, not even close",
        )],
    );
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 1, "{summary}");
    let error = summary["failures"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("broken.mp3") && error.contains("audio"),
        "{error}"
    );
    let out = std::fs::read(env.archive().join("acme/2026/01/01/v1/call.wav")).unwrap();
    assert_eq!(&out[..4], b"RIFF");
    assert_eq!(
        u16::from_le_bytes([out[20], out[21]]),
        7,
        "WAVE format tag 7 (µ-law)"
    );
    assert_eq!(u16::from_le_bytes([out[22], out[23]]), 1, "mono");
    assert_eq!(
        u32::from_le_bytes([out[24], out[25], out[26], out[27]]),
        8000
    );
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.archive().join("acme/2026/01/01/v1/conversation.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["export"]["files"][0]["how"], "transcode");
    assert_eq!(meta["export"]["files"][0]["format"], "wav-ulaw");
    assert!(!env.archive().join("acme/2026/01/02").exists());
}
