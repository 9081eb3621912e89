//! The format v1 reader: for any bytes, the streaming `Decryptor` and the parallel
//! `decrypt_file` agree. Both refuse the file, or both give the same plaintext; and nothing but
//! the output is left behind (no temporary, and no output when the file is refused). The keys
//! are those of the known-answer vectors in fixtures/crypto/kat, so seeds made of those vectors
//! decrypt.
#![no_main]

use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;

use custodian::media::crypto::{Decryptor, decrypt_file};
use custodian::media::keystore::Keystore;
use libfuzzer_sys::fuzz_target;

/// Key ids and hex keys of the known-answer vectors.
const KEYS: &[(&str, &str)] = &[
    (
        "k",
        "11181f262d343b424950575e656c737a81888f969da4abb2b9c0c7ced5dce3ea",
    ),
    (
        "kat-key-2",
        "222930373e454c535a61686f767d848b9299a0a7aeb5bcc3cad1d8dfe6edf4fb",
    ),
    (
        "kat-key-3",
        "333a41484f565d646b727980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c",
    ),
    (
        "clé-€-鍵",
        "888f969da4abb2b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61",
    ),
];

fn key(hex: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
    }
    key
}

/// A private directory holding the keystore (mode 0600, as the keystore requires).
struct Setup {
    dir: tempfile::TempDir,
    keystore: Keystore,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temporary directory");
        let keys: serde_json::Map<String, serde_json::Value> = KEYS
            .iter()
            .map(|(id, hex)| {
                let b64 = base64_of(&key(hex));
                ((*id).to_owned(), serde_json::Value::String(b64))
            })
            .collect();
        let path = dir.path().join("keystore.json");
        std::fs::write(&path, serde_json::json!({ "keys": keys }).to_string()).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let keystore = Keystore::load(&path).expect("keystore");
        Setup { dir, keystore }
    })
}

fn base64_of(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let setup = setup();
    let streamed = Decryptor::new(data, |id: &str| setup.keystore.key(id))
        .map_err(|e| e.to_string())
        .and_then(|mut d| {
            let mut plain = Vec::new();
            d.read_to_end(&mut plain).map_err(|e| e.to_string())?;
            Ok(plain)
        });

    let src: PathBuf = setup.dir.path().join("in.enc");
    let dst: PathBuf = setup.dir.path().join("out");
    std::fs::write(&src, data).expect("write input");
    let _ = std::fs::remove_file(&dst);
    let parallel = decrypt_file(&src, &setup.keystore, &dst).map_err(|e| e.to_string());

    match (&streamed, &parallel) {
        (Ok(plain), Ok(report)) => {
            assert_eq!(report.bytes, plain.len() as u64);
            assert!(
                std::fs::read(&dst).expect("output") == *plain,
                "outputs differ"
            );
        }
        (Err(_), Err(_)) => {}
        _ => panic!("streaming {streamed:?} but parallel {parallel:?}"),
    }
    let mut names: Vec<_> = std::fs::read_dir(setup.dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    let expected: &[&str] = match parallel {
        Ok(_) => &["in.enc", "keystore.json", "out"],
        Err(_) => &["in.enc", "keystore.json"],
    };
    assert_eq!(
        names, expected,
        "a temporary or a refused output was left behind"
    );
});
