//! Exports of a hostile repository: artifacts and channel audio are read only inside the
//! repository, only from regular files and never past the size their record lists; mismatch
//! errors never show the hash of what was found; ffmpeg reads the checked bytes; scratch space
//! is private and what a killed run left there is swept.

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Art, Env, sha256, text};

/// Bytes standing for a secret outside the repository.
const SECRET: &[u8] = b"root:$6$rounds=5000$salt$hash:19000:0:99999:7:::\n";

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o777
}

/// Rewrites the record in `dir` so its first artifact lists `size` and `sha256`.
fn relist(dir: &Path, size: u64, sha256: &str) {
    let path = dir.join("conversation.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    record["artifacts"][0]["size"] = size.into();
    record["artifacts"][0]["sha256"] = sha256.into();
    std::fs::write(&path, record.to_string()).unwrap();
}

fn failures(summary: &serde_json::Value) -> Vec<String> {
    summary["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["error"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_symlinked_artifact_fails_unread_and_its_error_shows_no_hash() {
    let env = Env::new("");
    let secret = env.path().join("shadow");
    std::fs::write(&secret, SECRET).unwrap();
    // c1's record lists the secret's own size and hash, as a second run would after an error
    // that printed them; c2's lists other bytes.
    for (id, listed) in [("c1", SECRET), ("c2", &b"RIFF-call"[..])] {
        let dir = env.conversation("acme", 1, id, &[("call.wav", listed)]);
        std::fs::remove_file(dir.join("call.wav")).unwrap();
        symlink(&secret, dir.join("call.wav")).unwrap();
    }
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(summary["counters"]["failed"], 2, "{summary}");
    for error in failures(&summary) {
        assert!(
            error.contains("/call.wav") && error.contains("symbolic link"),
            "{error}"
        );
        assert!(!error.contains(&sha256(SECRET)), "{error}");
    }
    assert!(env.archive_files().is_empty(), "{:?}", env.archive_files());
}

#[test]
fn an_artifact_behind_a_swapped_conversation_directory_is_never_read() {
    let env = Env::new("");
    let dir = env.conversation("acme", 1, "c1", &[("call.wav", SECRET)]);
    let out = env.run(&["index"]);
    assert!(out.status.success(), "{}", text(&out));
    // Another tenant's conversation with the same file, swapped in after indexing.
    let other = env.conversation("globex", 1, "g1", &[("call.wav", SECRET)]);
    std::fs::remove_dir_all(&dir).unwrap();
    symlink(&other, &dir).unwrap();
    let (code, summary) = env.json(&["run", "export", "--no-index"]);
    assert_eq!(code, 1, "{summary}");
    let error = &failures(&summary)[0];
    assert!(
        error.contains("acme/2026/01/01/c1/call.wav") && error.contains("symbolic link"),
        "{error}"
    );
    assert!(env.archive_files().is_empty(), "{:?}", env.archive_files());
}

#[test]
fn a_fifo_or_device_artifact_fails_without_blocking_or_filling_the_target() {
    let env = Env::new("");
    let fifo = env.conversation("acme", 1, "fifo", &[("call.wav", b"0123456789")]);
    std::fs::remove_file(fifo.join("call.wav")).unwrap();
    nix::unistd::mkfifo(&fifo.join("call.wav"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let zero = env.conversation("acme", 1, "zero", &[("call.wav", &[0u8; 10])]);
    std::fs::remove_file(zero.join("call.wav")).unwrap();
    symlink("/dev/zero", zero.join("call.wav")).unwrap();
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 1, "{summary}");
    let errors = failures(&summary).join("\n");
    assert!(
        errors.contains("fifo/call.wav is a FIFO, not a regular file"),
        "{errors}"
    );
    assert!(
        errors.contains("zero/call.wav is a symbolic link"),
        "{errors}"
    );
    assert!(env.archive_files().is_empty(), "{:?}", env.archive_files());
}

/// A 1 s 8 kHz mono 16-bit WAV of a tone.
fn tone_wav() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for i in 0..8000 {
        w.write_sample(((i % 40) * 500) as i16).unwrap();
    }
    w.finalize().unwrap();
    out.into_inner()
}

#[test]
fn a_file_longer_than_its_record_fails_in_every_way_of_exporting_it() {
    for extra in ["", "zip = true", "voice_format = \"wav-ulaw\""] {
        let env = Env::new(extra);
        let wav = tone_wav();
        let dir = env.conversation("acme", 1, "c1", &[("call.wav", &wav)]);
        // The file grew by 4 MiB after it was recorded.
        let mut longer = wav.clone();
        longer.extend(std::iter::repeat_n(1u8, 4 << 20));
        std::fs::write(dir.join("call.wav"), &longer).unwrap();
        let (code, summary) = env.json(&["run", "export"]);
        assert_eq!(code, 1, "{extra}: {summary}");
        let error = &failures(&summary)[0];
        assert!(
            error.contains("call.wav")
                && error.contains(&format!("is longer than the {} bytes", wav.len())),
            "{extra}: {error}"
        );
        assert!(!error.contains(&sha256(&longer)), "{error}");
        assert!(
            env.archive_files().is_empty(),
            "{extra}: {:?}",
            env.archive_files()
        );
    }
}

#[test]
fn a_replaced_file_of_the_recorded_size_is_refused_without_its_hash() {
    let env = Env::new("");
    let dir = env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-call-0")]);
    std::fs::write(dir.join("call.wav"), b"RIFF-call-1").unwrap();
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 1, "{summary}");
    let error = &failures(&summary)[0];
    assert!(
        error.contains("content does not match the sha256 its record lists"),
        "{error}"
    );
    assert!(!error.contains(&sha256(b"RIFF-call-1")), "{error}");
    relist(&dir, 11, &sha256(b"RIFF-call-1"));
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(
        code, 0,
        "a record that lists the file's own hash exports it: {summary}"
    );
}

/// A CDR-only trader call of tenant `acme` on `channel`, 10:00:00–10:00:01 on day 1.
fn cdr_only(env: &Env, id: &str, channel: &str) {
    let dir = env.root().join(Env::rel_dir("acme", 1, id));
    std::fs::create_dir_all(&dir).unwrap();
    let record = serde_json::json!({
        "schema": 1, "id": id, "tenant": "acme", "type": "trader_voice",
        "source_platform": "ipc", "direction": "outbound",
        "start": "2026-01-01T10:00:00Z", "end": "2026-01-01T10:00:01Z",
        "participants": [{"user": "grace", "role": "trader"}],
        "flags": {"cdr_only": true}, "channel": channel, "artifacts": []
    });
    std::fs::write(dir.join("conversation.json"), record.to_string()).unwrap();
}

/// A 1 s segment of `channel` in `dir`, starting 10:00:00 on day 1; returns its audio.
fn segment(dir: &Path, channel: &str) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let wav = tone_wav();
    std::fs::write(dir.join("s1.wav"), &wav).unwrap();
    let record = serde_json::json!({
        "schema": 1, "channel": channel, "file": "s1.wav", "start": "2026-01-01T10:00:00Z",
        "sample_rate": 8000, "channels": 1, "frames": 8000,
        "size": wav.len(), "sha256": sha256(&wav)
    });
    std::fs::write(dir.join("s1.json"), record.to_string()).unwrap();
    wav
}

const STITCH: &str = "stitch_cdr_only = true";

#[test]
fn a_channel_that_climbs_into_another_tenant_is_refused() {
    let env = Env::new(STITCH);
    segment(&env.root().join("globex/channels/X"), "X");
    let absolute = env.root().join("globex/channels/X");
    cdr_only(&env, "up", "../../globex/channels/X");
    cdr_only(&env, "abs", absolute.to_str().unwrap());
    let (code, summary) = env.json(&["run", "export"]);
    assert_ne!(code, 0, "{summary}");
    let wavs: Vec<_> = env
        .archive_files()
        .into_iter()
        .filter(|f| f.ends_with(".wav"))
        .collect();
    assert!(wavs.is_empty(), "globex audio exported: {wavs:?}");
    let errors = failures(&summary).join("\n");
    assert!(
        errors.contains("../../globex/channels/X") && errors.contains(absolute.to_str().unwrap()),
        "{errors}"
    );
}

#[test]
fn a_channel_folder_or_segment_linked_elsewhere_is_refused() {
    let env = Env::new(STITCH);
    segment(&env.root().join("globex/channels/X"), "turret-1");
    segment(&env.root().join("globex/channels/Y"), "turret-2");
    std::fs::create_dir_all(env.root().join("acme/channels")).unwrap();
    // turret-1's folder is a link to globex's; turret-2's segment record and audio are links.
    symlink(
        env.root().join("globex/channels/X"),
        env.root().join("acme/channels/turret-1"),
    )
    .unwrap();
    let own = env.root().join("acme/channels/turret-2");
    std::fs::create_dir_all(&own).unwrap();
    let record = std::fs::read(env.root().join("globex/channels/Y/s1.json")).unwrap();
    std::fs::write(own.join("s1.json"), record).unwrap();
    symlink(
        env.root().join("globex/channels/Y/s1.wav"),
        own.join("s1.wav"),
    )
    .unwrap();
    cdr_only(&env, "t1", "turret-1");
    cdr_only(&env, "t2", "turret-2");
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(summary["counters"]["failed"], 2, "{summary}");
    let errors = failures(&summary).join("\n");
    assert!(
        errors.contains("channels/turret-1 is a symbolic link")
            && errors.contains("turret-2/s1.wav is a symbolic link"),
        "{errors}"
    );
    assert!(env.archive_files().is_empty(), "{:?}", env.archive_files());
}

#[test]
fn a_segment_of_another_channel_in_a_folder_is_refused() {
    let env = Env::new(STITCH);
    segment(&env.root().join("acme/channels/turret-1"), "turret-9");
    cdr_only(&env, "t1", "turret-1");
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 1, "{summary}");
    let error = &failures(&summary)[0];
    assert!(
        error.contains("s1.json") && error.contains("names channel `turret-9`"),
        "{error}"
    );
    assert!(env.archive_files().is_empty(), "{:?}", env.archive_files());
}

/// A short video; `container` picks the muxer (mp4 puts its index, the moov, at the end).
fn small_video(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=duration=1:size=32x32:rate=5")
        .args(["-c:v", "mpeg4"])
        .arg(path)
        .output()
        .expect("ffmpeg is needed by this test: apt-get install ffmpeg");
    assert!(out.status.success(), "{}", text(&out));
}

/// Writes an executable shell script.
fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A video conversation `v1` whose one screen recording is `file` with `bytes`.
fn video_call(env: &Env, file: &str, bytes: &[u8]) -> PathBuf {
    env.record(
        "acme",
        1,
        "v1",
        "video",
        &[Art::plain(file, "screen_recording", bytes)],
    )
}

fn media(ffmpeg: &Path, scratch: &Path) -> String {
    format!(
        "video_format = \"mkv\"\n\n[media]\nffmpeg = \"{}\"\nscratch_dir = \"{}\"\n",
        ffmpeg.display(),
        scratch.display()
    )
}

#[test]
fn ffmpeg_reads_the_checked_bytes_even_when_the_artifact_is_swapped_after_the_check() {
    let tmp = tempfile::tempdir().unwrap();
    let video = tmp.path().join("screen.mp4");
    small_video(&video);
    let bytes = std::fs::read(&video).unwrap();
    let wrapper = tmp.path().join("ffmpeg-swapping");
    let env = Env::new(&media(&wrapper, &tmp.path().join("scratch")));
    let artifact = video_call(&env, "screen.mp4", &bytes).join("screen.mp4");
    // Replaces the repository's file, after custodian checked it, just before ffmpeg runs.
    script(
        &wrapper,
        &format!(
            "[ \"$1\" = -version ] || printf 'not a video' > '{}'\nexec ffmpeg \"$@\"\n",
            artifact.display()
        ),
    );
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(std::fs::read(&artifact).unwrap(), b"not a video");
    let out = std::fs::read(env.archive().join("acme/2026/01/01/v1/screen.mkv")).unwrap();
    assert_eq!(&out[..4], b"\x1a\x45\xdf\xa3", "a Matroska file");
}

#[test]
fn scratch_is_private_and_what_a_killed_run_left_is_swept() {
    let tmp = tempfile::tempdir().unwrap();
    let video = tmp.path().join("screen.mp4");
    small_video(&video);
    let bytes = std::fs::read(&video).unwrap();
    let scratch = tmp.path().join("scratch");
    let mark = tmp.path().join("mark");
    // Notes its pid and arguments, then waits to be killed, standing for a long ffmpeg.
    let hanging = tmp.path().join("ffmpeg-hanging");
    script(
        &hanging,
        &format!(
            "[ \"$1\" = -version ] && exec ffmpeg -version\nprintf '%s\\n' \"$$\" \"$@\" > '{m}.tmp' && mv '{m}.tmp' '{m}'\nexec sleep 600\n",
            m = mark.display()
        ),
    );
    let env = Env::new(&media(&hanging, &scratch));
    video_call(&env, "screen.mp4", &bytes);
    let mut run = env.command(&["run", "export"]).spawn().unwrap();
    while !mark.exists() {
        if let Some(status) = run.try_wait().unwrap() {
            panic!("custodian ended ({status}) before ffmpeg ran");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let noted = std::fs::read_to_string(&mark).unwrap();
    let lines: Vec<&str> = noted.lines().collect();
    let input = PathBuf::from(lines[lines.iter().position(|l| *l == "-i").unwrap() + 1]);
    let output = PathBuf::from(lines.last().unwrap());
    let process_dir = input.parent().unwrap().parent().unwrap().to_owned();
    assert_eq!(process_dir.parent().unwrap(), scratch);
    assert_eq!(
        std::fs::read(&input).unwrap(),
        bytes,
        "ffmpeg reads a staged copy"
    );
    assert_eq!(mode(&scratch), 0o700);
    assert_eq!(mode(&process_dir), 0o700);
    assert_eq!(mode(input.parent().unwrap()), 0o700);
    assert_eq!(mode(&input), 0o600);
    assert_eq!(mode(&output), 0o600);

    run.kill().unwrap();
    run.wait().unwrap();
    let sleeper = nix::unistd::Pid::from_raw(lines[0].parse().unwrap());
    let _ = nix::sys::signal::kill(sleeper, nix::sys::signal::Signal::SIGKILL);
    assert!(input.exists(), "kill -9 leaves the scratch behind");

    let ffmpeg = Path::new("ffmpeg");
    env.write_config(&std::fs::read_to_string(env.config()).unwrap().replace(
        &hanging.display().to_string(),
        &ffmpeg.display().to_string(),
    ));
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    assert!(!process_dir.exists(), "the dead run's scratch is swept");
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().collect();
    assert!(left.is_empty(), "a finished run removes its own: {left:?}");
}

#[test]
fn a_scratch_root_open_to_others_stops_the_run_before_any_work() {
    let env = Env::new("\n[media]\nscratch_dir = \"scratch\"\n");
    let scratch = env.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF")]);
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("scratch") && msg.contains("0755") && msg.contains("chmod 700"),
        "{msg}"
    );
    assert!(env.archive_files().is_empty());
}
