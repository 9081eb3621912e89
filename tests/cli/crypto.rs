//! `custodian encrypt` and `custodian decrypt` as a user sees them: round trips, and bad
//! input that fails with exit 1 (or a bad keystore with exit 2), a message naming the file and
//! the key id, and nothing left under the output's name or as a temporary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine;

use crate::common::{Env, sha256, text};

/// Header length of files encrypted with key id `k1`.
const HEADER: usize = 21 + 2;
const TAG: usize = 16;

/// Writes a keystore (mode 600 unless told) with the given keys.
fn keystore(env: &Env, name: &str, keys: &[(&str, [u8; 32])], mode: u32) -> PathBuf {
    let keys: serde_json::Map<_, _> = keys
        .iter()
        .map(|(id, key)| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(key);
            (id.to_string(), serde_json::Value::String(b64))
        })
        .collect();
    let path = env.path().join(name);
    std::fs::write(&path, serde_json::json!({ "keys": keys }).to_string()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// An environment with keystore `keys.json` holding `k1`, and `plain.bin` encrypted with it to
/// `sealed.enc` in chunks of `chunk_size`.
fn sealed(plain: &[u8], chunk_size: u32) -> (Env, PathBuf, PathBuf) {
    let env = Env::new("");
    let ks = keystore(&env, "keys.json", &[("k1", [1; 32])], 0o600);
    std::fs::write(env.path().join("plain.bin"), plain).unwrap();
    let enc = env.path().join("sealed.enc");
    let out = crypt(
        &env,
        &[
            "encrypt",
            "--keystore",
            ks.to_str().unwrap(),
            "--key-id",
            "k1",
            "--chunk-size",
            &chunk_size.to_string(),
            "plain.bin",
            "sealed.enc",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    (env, ks, enc)
}

/// Runs custodian in the environment's directory.
fn crypt(env: &Env, args: &[&str]) -> Output {
    env.command(args).current_dir(env.path()).output().unwrap()
}

fn decrypt(env: &Env, ks: &Path) -> Output {
    crypt(
        env,
        &[
            "decrypt",
            "--keystore",
            ks.to_str().unwrap(),
            "sealed.enc",
            "out.bin",
        ],
    )
}

/// Asserts a failed run: its exit code, that its message contains each of `names`, and that
/// neither `out.bin` nor any temporary file exists.
fn assert_failed(env: &Env, out: &Output, code: i32, names: &[&str]) {
    let msg = text(out);
    assert_eq!(out.status.code(), Some(code), "{msg}");
    for name in names {
        assert!(msg.contains(name), "message does not name {name}: {msg}");
    }
    assert!(!env.path().join("out.bin").exists(), "output exists: {msg}");
    let temps: Vec<_> = std::fs::read_dir(env.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".custodian-tmp-"))
        .collect();
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
}

fn edit(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    change(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn round_trip_of_a_multi_megabyte_file_over_several_batches() {
    // 64 KiB chunks make batches of 31 (2 MiB): this is four batches, the last one short.
    let plain = pattern(6 * 1024 * 1024 + 12_345);
    let (env, ks, enc) = sealed(&plain, 65536);
    let chunks = plain.len().div_ceil(65536);
    assert_eq!(
        std::fs::metadata(&enc).unwrap().len() as usize,
        HEADER + plain.len() + chunks * TAG
    );
    let (code, report) = env.json(&[
        "decrypt",
        "--keystore",
        ks.to_str().unwrap(),
        enc.to_str().unwrap(),
        env.path().join("out.bin").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["key_id"], "k1");
    assert_eq!(report["bytes"], plain.len());
    assert_eq!(report["chunks"], chunks);
    let back = std::fs::read(env.path().join("out.bin")).unwrap();
    assert_eq!(sha256(&back), sha256(&plain));
}

#[test]
fn round_trip_of_an_exact_multiple_of_the_chunk_size() {
    // 93 chunks of 64 KiB: three full batches of 31, and a full last chunk.
    let plain = pattern(93 * 65536);
    let (env, ks, _) = sealed(&plain, 65536);
    let out = decrypt(&env, &ks);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("in 93 chunks, key `k1`"),
        "{}",
        text(&out)
    );
    let back = std::fs::read(env.path().join("out.bin")).unwrap();
    assert_eq!(sha256(&back), sha256(&plain));
}

#[test]
fn truncated_inside_the_header_fails() {
    let (env, ks, enc) = sealed(&pattern(10_000), 4096);
    edit(&enc, |b| b.truncate(HEADER - 3));
    assert_failed(
        &env,
        &decrypt(&env, &ks),
        1,
        &["sealed.enc", "truncated inside its header"],
    );
}

#[test]
fn truncated_at_a_chunk_boundary_fails() {
    let (env, ks, enc) = sealed(&pattern(3 * 4096), 4096);
    edit(&enc, |b| b.truncate(HEADER + 2 * (4096 + TAG)));
    assert_failed(
        &env,
        &decrypt(&env, &ks),
        1,
        &["sealed.enc", "chunk 1 failed authentication", "`k1`"],
    );
}

#[test]
fn truncated_mid_chunk_fails() {
    let (env, ks, enc) = sealed(&pattern(3 * 4096), 4096);
    edit(&enc, |b| b.truncate(HEADER + 4096 + TAG + 1000));
    assert_failed(
        &env,
        &decrypt(&env, &ks),
        1,
        &["sealed.enc", "chunk 1 failed authentication", "`k1`"],
    );
}

#[test]
fn truncated_inside_a_tag_fails_naming_truncation() {
    let (env, ks, enc) = sealed(&pattern(3 * 4096), 4096);
    edit(&enc, |b| b.truncate(HEADER + 2 * (4096 + TAG) + 7));
    assert_failed(
        &env,
        &decrypt(&env, &ks),
        1,
        &["sealed.enc", "file is truncated: chunk 2", "`k1`"],
    );
}

#[test]
fn swapped_chunks_fail() {
    let (env, ks, enc) = sealed(&pattern(3 * 4096), 4096);
    let c = 4096 + TAG;
    edit(&enc, |b| {
        let first: Vec<u8> = b[HEADER..HEADER + c].to_vec();
        b.copy_within(HEADER + c..HEADER + 2 * c, HEADER);
        b[HEADER + c..HEADER + 2 * c].copy_from_slice(&first);
    });
    assert_failed(
        &env,
        &decrypt(&env, &ks),
        1,
        &["sealed.enc", "chunk 0 failed authentication", "`k1`"],
    );
}

#[test]
fn a_flipped_byte_in_a_chunk_fails() {
    let (env, ks, enc) = sealed(&pattern(3 * 4096), 4096);
    edit(&enc, |b| b[HEADER + 2 * (4096 + TAG) + 100] ^= 1);
    assert_failed(
        &env,
        &decrypt(&env, &ks),
        1,
        &["sealed.enc", "chunk 2 failed authentication", "`k1`"],
    );
}

#[test]
fn a_flipped_byte_in_the_header_fails() {
    let (env, ks, enc) = sealed(&pattern(3 * 4096), 4096);
    // The last byte of the nonce prefix: the header still parses, every chunk fails.
    edit(&enc, |b| b[HEADER - 1] ^= 1);
    assert_failed(
        &env,
        &decrypt(&env, &ks),
        1,
        &["sealed.enc", "chunk 0 failed authentication", "`k1`"],
    );
}

#[test]
fn a_wrong_key_under_the_same_id_fails() {
    let (env, _, _) = sealed(&pattern(5000), 4096);
    let wrong = keystore(&env, "wrong.json", &[("k1", [2; 32])], 0o600);
    assert_failed(
        &env,
        &decrypt(&env, &wrong),
        1,
        &[
            "sealed.enc",
            "chunk 0 failed authentication",
            "`k1`",
            "key is wrong",
        ],
    );
}

#[test]
fn a_key_id_missing_from_the_keystore_fails_saying_what_to_do() {
    let (env, _, _) = sealed(&pattern(5000), 4096);
    let other = keystore(&env, "other.json", &[("k2", [1; 32])], 0o600);
    assert_failed(
        &env,
        &decrypt(&env, &other),
        1,
        &[
            "sealed.enc",
            "key id `k1` is not in keystore",
            "other.json",
            "add the key to the keystore or use the right keystore",
        ],
    );
}

#[test]
fn bad_magic_fails() {
    let (env, ks, enc) = sealed(&pattern(5000), 4096);
    edit(&enc, |b| b[0] = b'X');
    assert_failed(&env, &decrypt(&env, &ks), 1, &["sealed.enc", "bad magic"]);
}

#[test]
fn a_group_readable_keystore_is_refused_with_exit_2() {
    let (env, ks, _) = sealed(&pattern(5000), 4096);
    std::fs::set_permissions(&ks, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_failed(
        &env,
        &decrypt(&env, &ks),
        2,
        &[
            "sealed.enc",
            "keys.json",
            "readable or writable by group or others",
            "chmod 600",
        ],
    );
}

#[test]
fn encrypting_with_a_key_id_missing_from_the_keystore_exits_2() {
    let (env, ks, _) = sealed(&pattern(5000), 4096);
    let out = crypt(
        &env,
        &[
            "encrypt",
            "--keystore",
            ks.to_str().unwrap(),
            "--key-id",
            "nope",
            "plain.bin",
            "out.bin",
        ],
    );
    assert_failed(
        &env,
        &out,
        2,
        &["plain.bin", "key id `nope` is not in keystore", "keys.json"],
    );
}
