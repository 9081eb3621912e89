//! Export options that transform media as a user sees them: decrypted copies, one zip per
//! conversation, IM attachments, and video through ffmpeg (or copied when there is none).

use std::path::Path;
use std::process::Command;

use crate::common::{Art, Env, encrypt, sha256, text};

const KEYSTORE: &str = "\n[media]\nkeystore = \"keystore.json\"\n";

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn sealed(
    file: &'static str,
    bytes: &[u8],
    key_id: &'static str,
) -> (Vec<u8>, &'static str, &'static str) {
    (encrypt(bytes, key_id, 4096), file, key_id)
}

/// A voice conversation whose one artifact is `file`, stored encrypted with `key_id`.
fn encrypted_call(
    env: &Env,
    day: u32,
    id: &str,
    file: &str,
    stored: &[u8],
    key_id: &str,
) -> std::path::PathBuf {
    env.record(
        "acme",
        day,
        id,
        "voice",
        &[Art {
            file,
            bytes: stored,
            kind: "audio_recording",
            key_id: Some(key_id),
        }],
    )
}

fn no_temp_files(env: &Env) {
    let stray: Vec<_> = env
        .archive_files()
        .into_iter()
        .filter(|f| f.contains(".custodian-tmp"))
        .collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
}

#[test]
fn decrypt_option_exports_plaintext_and_leaves_the_original_encrypted() {
    let env = Env::new(&format!("decrypt = true\n{KEYSTORE}"));
    env.keystore(&["k1"]);
    let plain = plaintext(20_000);
    let (stored, file, key) = sealed("call.wav", &plain, "k1");
    let dir = encrypted_call(&env, 1, "c1", file, &stored, key);
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    let out = std::fs::read(env.archive().join("acme/2026/01/01/c1/call.wav")).unwrap();
    assert_eq!(out, plain);
    assert_eq!(std::fs::read(dir.join("call.wav")).unwrap(), stored);
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.archive().join("acme/2026/01/01/c1/conversation.json")).unwrap(),
    )
    .unwrap();
    let f = &meta["export"]["files"][0];
    assert_eq!(f["how"], "decrypt");
    assert_eq!(f["key_id"], "k1");
    assert_eq!(f["sha256"], sha256(&plain));
    assert!(
        summary["media"].to_string().contains("exported decrypted"),
        "{summary}"
    );
}

#[test]
fn without_decrypt_encrypted_artifacts_are_exported_as_stored() {
    let env = Env::new("");
    let (stored, file, key) = sealed("call.wav", &plaintext(5000), "k1");
    encrypted_call(&env, 1, "c1", file, &stored, key);
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    let out = std::fs::read(env.archive().join("acme/2026/01/01/c1/call.wav")).unwrap();
    assert_eq!(out, stored);
}

#[test]
fn tampered_encrypted_artifact_fails_alone_naming_file_and_key() {
    let env = Env::new(&format!("decrypt = true\n{KEYSTORE}"));
    env.keystore(&["k1"]);
    let (mut bad, file, key) = sealed("call.wav", &plaintext(12_000), "k1");
    let at = bad.len() - 100;
    bad[at] ^= 1;
    encrypted_call(&env, 1, "c1", file, &bad, key);
    let (good, file, key) = sealed("call.wav", &plaintext(3000), "k1");
    encrypted_call(&env, 2, "c2", file, &good, key);
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(summary["counters"]["exported"], 1);
    let error = summary["failures"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("c1/call.wav") && error.contains("`k1`"),
        "{error}"
    );
    assert!(error.contains("chunk 2"), "{error}");
    assert_eq!(
        env.archive_files(),
        [
            "acme/2026/01/02/c2/call.wav",
            "acme/2026/01/02/c2/conversation.json"
        ]
    );
    no_temp_files(&env);
}

#[test]
fn truncated_encrypted_artifact_fails_and_writes_nothing() {
    let env = Env::new(&format!("decrypt = true\n{KEYSTORE}"));
    env.keystore(&["k1"]);
    let (whole, file, key) = sealed("call.wav", &plaintext(3 * 4096), "k1");
    let cut = &whole[..whole.len() - (4096 + 16)];
    encrypted_call(&env, 1, "c1", file, cut, key);
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 1, "{summary}");
    let error = summary["failures"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("call.wav") && error.contains("`k1`"),
        "{error}"
    );
    assert!(env.archive_files().is_empty(), "{:?}", env.archive_files());
}

#[test]
fn missing_key_id_fails_the_item_naming_the_key() {
    let env = Env::new(&format!("decrypt = true\n{KEYSTORE}"));
    env.keystore(&["k1"]);
    let (stored, file, key) = sealed("call.wav", &plaintext(100), "k9");
    encrypted_call(&env, 1, "c1", file, &stored, key);
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 1, "{summary}");
    let error = summary["failures"][0]["error"].as_str().unwrap();
    assert!(error.contains("key id `k9` is not in keystore"), "{error}");
    assert!(error.contains("call.wav"), "{error}");
    assert!(env.archive_files().is_empty());
}

#[test]
fn group_readable_keystore_stops_the_run_before_any_work() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new(&format!("decrypt = true\n{KEYSTORE}"));
    let ks = env.keystore(&["k1"]);
    std::fs::set_permissions(&ks, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.record(
        "acme",
        1,
        "c1",
        "voice",
        &[Art::plain("a.wav", "audio_recording", b"RIFF")],
    );
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("keystore.json") && msg.contains("chmod 600"),
        "{msg}"
    );
    assert!(env.archive_files().is_empty());
}

/// (name, bytes) of every entry of a zip, checked by rawzip and by Python's zipfile.
fn unzip(path: &Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let check = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(len(z.namelist()))",
        ])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(check.status.success(), "{}", text(&check));
    let bytes = std::fs::read(path).unwrap();
    let archive = rawzip::ZipArchive::from_slice(&bytes).unwrap();
    let mut entries = archive.entries();
    let mut out = Vec::new();
    while let Some(e) = entries.next_entry().unwrap() {
        let name = e.file_path().try_normalize().unwrap().as_ref().to_owned();
        let local = archive.get_entry(e.wayfinder()).unwrap();
        let mut data = Vec::new();
        local
            .verifying_reader(local.data())
            .read_to_end(&mut data)
            .unwrap();
        out.push((name, data));
    }
    out
}

#[test]
fn zip_packages_each_conversation_with_its_metadata() {
    let env = Env::new(&format!("zip = true\ndecrypt = true\n{KEYSTORE}"));
    env.keystore(&["k1"]);
    let plain = plaintext(9000);
    let (stored, file, key) = sealed("customer.wav", &plain, "k1");
    env.record(
        "acme",
        1,
        "c1",
        "voice",
        &[
            Art {
                file,
                bytes: &stored,
                kind: "audio_recording",
                key_id: Some(key),
            },
            Art::plain("agent.wav", "audio_recording", b"RIFF-agent"),
        ],
    );
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(env.archive_files(), ["acme/2026/01/01/c1/c1.zip"]);
    assert_eq!(summary["counters"]["objects"], 1);
    let entries = unzip(&env.archive().join("acme/2026/01/01/c1/c1.zip"));
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["customer.wav", "agent.wav", "conversation.json"]);
    assert_eq!(entries[0].1, plain);
    assert_eq!(entries[1].1, b"RIFF-agent");
    let meta: serde_json::Value = serde_json::from_slice(&entries[2].1).unwrap();
    assert_eq!(meta["export"]["files"][0]["key"], "customer.wav");
    assert_eq!(meta["export"]["files"][0]["sha256"], sha256(&plain));
    let manifest =
        std::fs::read_to_string(env.archive().join(summary["manifest"].as_str().unwrap())).unwrap();
    let zip = std::fs::read(env.archive().join("acme/2026/01/01/c1/c1.zip")).unwrap();
    assert!(manifest.contains(&sha256(&zip)), "{manifest}");
}

#[test]
fn zip_of_a_corrupt_conversation_is_not_committed() {
    let env = Env::new("zip = true");
    let dir = env.record(
        "acme",
        1,
        "c1",
        "voice",
        &[
            Art::plain("a.wav", "audio_recording", b"RIFF-a"),
            Art::plain("b.wav", "audio_recording", b"RIFF-b"),
        ],
    );
    std::fs::write(dir.join("b.wav"), b"RIFF-X").unwrap();
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 1, "{summary}");
    let error = summary["failures"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("b.wav") && error.contains("corrupt"),
        "{error}"
    );
    assert!(env.archive_files().is_empty(), "{:?}", env.archive_files());
}

#[test]
fn im_attachments_are_exported_only_when_asked() {
    for (extra, with_attachment) in [("", false), ("im_attachments = true", true)] {
        let env = Env::new(extra);
        env.record(
            "acme",
            1,
            "chat1",
            "im",
            &[
                Art::plain("transcript.txt", "messaging_transcript", b"hello"),
                Art::plain("photo.png", "attachment", b"PNG"),
            ],
        );
        let (code, summary) = env.json(&["run", "export"]);
        assert_eq!(code, 0, "{summary}");
        let mut expected = vec![
            "acme/2026/01/01/chat1/conversation.json",
            "acme/2026/01/01/chat1/transcript.txt",
        ];
        if with_attachment {
            expected.insert(1, "acme/2026/01/01/chat1/photo.png");
        }
        assert_eq!(env.archive_files(), expected, "{extra}");
    }
}

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

#[test]
fn video_is_transcoded_by_ffmpeg_when_configured_and_copied_otherwise() {
    let scratch = tempfile::tempdir().unwrap();
    let video = scratch.path().join("screen.mkv");
    small_video(&video);
    let bytes = std::fs::read(&video).unwrap();
    for ffmpeg in [true, false] {
        let media = if ffmpeg {
            "\n[media]\nffmpeg = \"ffmpeg\"\n"
        } else {
            ""
        };
        let env = Env::new(&format!("video_format = \"mp4\"\n{media}"));
        env.record(
            "acme",
            1,
            "v1",
            "video",
            &[Art::plain("screen.mkv", "screen_recording", &bytes)],
        );
        let (code, summary) = env.json(&["run", "export"]);
        assert_eq!(code, 0, "{summary}");
        let notes = summary["media"].to_string();
        if ffmpeg {
            let mp4 = std::fs::read(env.archive().join("acme/2026/01/01/v1/screen.mp4")).unwrap();
            assert_eq!(&mp4[4..8], b"ftyp");
            assert!(notes.contains("transcoded to mp4 by ffmpeg"), "{notes}");
        } else {
            let copy = std::fs::read(env.archive().join("acme/2026/01/01/v1/screen.mkv")).unwrap();
            assert_eq!(copy, bytes);
            assert!(
                notes.contains("copied unchanged, not transcoded to mp4"),
                "{notes}"
            );
        }
    }
}
