//! `custodian transcode`: every output format decodes back to the asked rate, channels and
//! length; bad input fails with exit 1, names the file and leaves nothing under OUT.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use custodian::media::audio::Decoder;

fn custodian(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custodian"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// One second of a 440 Hz tone, 16-bit, written as a WAV in `dir`.
fn tone_wav(dir: &Path, rate: u32, channels: u16) -> PathBuf {
    let path = dir.join(format!("tone-{rate}-{channels}.wav"));
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for n in 0..rate {
        let v = (2.0 * std::f64::consts::PI * 440.0 * f64::from(n) / f64::from(rate)).sin();
        for _ in 0..channels {
            w.write_sample((v * 10_000.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
    path
}

/// Rate, channels and frames of an audio file, decoded by our own decoder.
fn probe(path: &Path) -> (u32, u16, u64) {
    let ext = path.extension().and_then(|e| e.to_str());
    let mut d = Decoder::open_file(std::fs::File::open(path).unwrap(), ext).unwrap();
    let mut samples = 0u64;
    while let Some(block) = d.next_block().unwrap() {
        samples += block.len() as u64;
    }
    (d.rate(), d.channels(), samples / u64::from(d.channels()))
}

/// Files in `dir` whose names start with a dot (our temporaries).
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn every_format_decodes_back_with_the_asked_rate_channels_and_length() {
    let dir = tempfile::tempdir().unwrap();
    let input = tone_wav(dir.path(), 8000, 1);
    for (format, ext, rate, channels, frames) in [
        ("wav-pcm16", "wav", None, None, (8000, 1, 8000)),
        ("wav-ulaw", "wav", None, None, (8000, 1, 8000)),
        ("wav-alaw", "wav", None, Some("2"), (8000, 2, 8000)),
        ("flac", "flac", Some("16000"), None, (16000, 1, 16000)),
        ("mp3", "mp3", Some("16000"), Some("2"), (16000, 2, 16000)),
    ] {
        let out = dir.path().join(format!("out-{format}.{ext}"));
        let mut args = vec!["transcode", "--format", format];
        if let Some(r) = rate {
            args.extend(["--rate", r]);
        }
        if let Some(c) = channels {
            args.extend(["--channels", c]);
        }
        args.extend([input.to_str().unwrap(), out.to_str().unwrap()]);
        let result = custodian(dir.path(), &args);
        assert!(result.status.success(), "{format}: {result:?}");
        let summary = String::from_utf8_lossy(&result.stdout);
        assert!(summary.contains(format), "{format}: {summary}");
        assert_eq!(probe(&out), frames, "{format}");
    }
    assert!(temporaries(dir.path()).is_empty());
}

#[test]
fn json_reports_the_input_and_output_formats() {
    let dir = tempfile::tempdir().unwrap();
    let input = tone_wav(dir.path(), 16000, 2);
    let out = dir.path().join("out.wav");
    let result = custodian(
        dir.path(),
        &[
            "--json",
            "transcode",
            "--format",
            "wav-ulaw",
            "--rate",
            "8000",
            "--channels",
            "1",
            input.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    assert!(result.status.success(), "{result:?}");
    let v: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["format"], "wav-ulaw");
    assert_eq!(v["input_rate"], 16000);
    assert_eq!(v["input_channels"], 2);
    assert_eq!(v["rate"], 8000);
    assert_eq!(v["channels"], 1);
    assert_eq!(v["frames"], 8000);
    assert_eq!(probe(&out), (8000, 1, 8000));
}

#[test]
fn bad_audio_exits_1_names_the_file_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut truncated = std::fs::read(tone_wav(dir.path(), 8000, 1)).unwrap();
    truncated.truncate(30);
    for (name, bytes) in [
        ("noise.wav", &garbage[..]),
        ("noise.mp3", &garbage[..]),
        ("short.wav", &truncated[..]),
    ] {
        std::fs::write(dir.path().join(name), bytes).unwrap();
        let out = dir.path().join(format!("out-{name}"));
        let result = custodian(
            dir.path(),
            &[
                "transcode",
                "--format",
                "wav-ulaw",
                name,
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(result.status.code(), Some(1), "{name}: {result:?}");
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(stderr.contains(name), "{name}: {stderr}");
        assert!(
            stderr.contains("corrupt audio") || stderr.contains("unsupported audio"),
            "{name}: {stderr}"
        );
        assert!(!out.exists(), "{name}: output left behind");
    }
    assert!(
        temporaries(dir.path()).is_empty(),
        "{:?}",
        temporaries(dir.path())
    );
}

#[test]
fn a_missing_input_exits_1_and_json_carries_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.flac");
    let result = custodian(
        dir.path(),
        &[
            "--json",
            "transcode",
            "--format",
            "flac",
            "absent.wav",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(result.status.code(), Some(1), "{result:?}");
    let v: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("absent.wav"), "{v}");
    assert!(!out.exists());
    assert!(temporaries(dir.path()).is_empty());
}

#[test]
fn an_unknown_format_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let result = custodian(
        dir.path(),
        &["transcode", "--format", "ogg", "a.wav", "b.ogg"],
    );
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("wav-pcm16"));
}

/// A WAV that is not audio: the header of a tone, then the `fmt ` chunk garbled.
fn corrupt_wav(dir: &Path, name: &str) -> PathBuf {
    let mut bytes = std::fs::read(tone_wav(dir, 8000, 1)).unwrap();
    bytes[20..36].fill(0xEE);
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn batch_writes_every_input_into_the_directory_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let mono = tone_wav(dir.path(), 8000, 1);
    let stereo = tone_wav(dir.path(), 16000, 2);
    let result = custodian(
        dir.path(),
        &[
            "transcode",
            "--format",
            "flac",
            "--jobs",
            "2",
            "--out-dir",
            "out",
            mono.to_str().unwrap(),
            stereo.to_str().unwrap(),
        ],
    );
    assert!(result.status.success(), "{result:?}");
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert_eq!(stdout.lines().count(), 1, "one summary line: {stdout}");
    assert!(stdout.contains("2 files"), "{stdout}");
    assert!(stdout.contains("0 failed"), "{stdout}");
    assert!(stdout.contains("2.0s of audio"), "{stdout}");
    let out = dir.path().join("out");
    assert_eq!(probe(&out.join("tone-8000-1.flac")), (8000, 1, 8000));
    assert_eq!(probe(&out.join("tone-16000-2.flac")), (16000, 2, 16000));
    assert!(temporaries(&out).is_empty());
}

#[test]
fn batch_with_one_corrupt_file_writes_the_others_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let good = tone_wav(dir.path(), 8000, 1);
    let bad = corrupt_wav(dir.path(), "broken.wav");
    let other = dir.path().join("other.wav");
    std::fs::copy(&good, &other).unwrap();
    let out = dir.path().join("out");
    let args = |json: bool| {
        let mut a = vec![];
        if json {
            a.push("--json");
        }
        a.extend([
            "transcode",
            "--format",
            "wav-ulaw",
            "--out-dir",
            out.to_str().unwrap(),
            good.to_str().unwrap(),
            bad.to_str().unwrap(),
            other.to_str().unwrap(),
        ]);
        a
    };
    let result = custodian(dir.path(), &args(false));
    assert_eq!(result.status.code(), Some(1), "{result:?}");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("broken.wav"), "{stderr}");
    assert!(
        stderr.contains("corrupt audio") || stderr.contains("unsupported audio"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&result.stdout).contains("1 failed"));
    assert_eq!(probe(&out.join("tone-8000-1.wav")), (8000, 1, 8000));
    assert_eq!(probe(&out.join("other.wav")), (8000, 1, 8000));
    assert!(!out.join("broken.wav").exists());
    assert!(temporaries(&out).is_empty(), "{:?}", temporaries(&out));

    let result = custodian(dir.path(), &args(true));
    assert_eq!(result.status.code(), Some(1), "{result:?}");
    let v: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    let files = v.as_array().unwrap();
    assert_eq!(files.len(), 3);
    assert_eq!(
        files.iter().map(|f| f["ok"] == true).collect::<Vec<_>>(),
        [true, false, true]
    );
    assert!(files[1]["error"].as_str().unwrap().contains("broken.wav"));
    assert_eq!(files[0]["frames"], 8000);
    assert_eq!(files[2]["output"], out.join("other.wav").to_str().unwrap());
}

#[test]
fn batch_refuses_two_inputs_with_the_same_output_name_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let first = tone_wav(dir.path(), 8000, 1);
    std::fs::create_dir(dir.path().join("b")).unwrap();
    let second = dir.path().join("b").join("tone-8000-1.mp3");
    std::fs::copy(&first, &second).unwrap();
    let result = custodian(
        dir.path(),
        &[
            "transcode",
            "--format",
            "wav-pcm16",
            "--out-dir",
            "out",
            first.to_str().unwrap(),
            second.to_str().unwrap(),
        ],
    );
    assert_eq!(result.status.code(), Some(2), "{result:?}");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("out/tone-8000-1.wav"), "{stderr}");
    assert!(!dir.path().join("out").exists(), "nothing is started");
}

#[test]
fn without_out_dir_exactly_two_paths_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let input = tone_wav(dir.path(), 8000, 1);
    let input = input.to_str().unwrap();
    for args in [
        vec!["transcode", "--format", "wav-ulaw", input],
        vec!["transcode", "--format", "wav-ulaw", input, "a.wav", "b.wav"],
        vec![
            "transcode",
            "--format",
            "wav-ulaw",
            "--jobs",
            "2",
            input,
            "a.wav",
        ],
    ] {
        let result = custodian(dir.path(), &args);
        assert_eq!(result.status.code(), Some(2), "{args:?}: {result:?}");
        assert!(!dir.path().join("a.wav").exists());
    }
}
