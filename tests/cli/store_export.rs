//! Exports from a repository in an S3 bucket (docs/operations.md, "Exporting from a store"):
//! artifacts and channel segments read with ranged GETs and checked like files on disk, or,
//! when the target is a bucket at the same S3 endpoint, copied inside the store. Against
//! s3s-fs (tests/cli/s3.rs), whose CopyObject computes no checksum, so custodian reads each
//! copy back, and moto (tests/cli/worm.rs), which returns the copy's SHA-256, so no artifact
//! byte passes through custodian.
//!
//! The moto test indexes the bucket itself; the s3s-fs tests fill the catalog by indexing the
//! same repository on disk, lay it into the bucket and export with `--no-index`, so a test can
//! then change an object behind its record.

use std::path::Path;
use std::process::Output;

use crate::common::{Art, Env, encrypt, sha256, text};
use crate::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use crate::stitch::{RATE, cdr_only, channel_with_gap, read_wav, sample};
use crate::worm::Moto;

fn run_with(env: &Env, args: &[&str], key: &str, secret: &str) -> Output {
    env.command(args)
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(out)))
}

/// Indexes the repository under `repo/` into the catalog, as a directory.
fn index_on_disk(env: &Env) {
    let saved = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(
        "[catalog]\nurl = \"sqlite:catalog.db\"\n\n[repository]\nroot = \"repo\"\n\n\
         [targets.a]\nkind = \"filesystem\"\npath = \"unused\"\n",
    );
    let out = env.run(&["index"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    env.write_config(&saved);
}

/// Copies every file under `from` to `to`, keeping the layout.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.retain(|f| !f.starts_with("_custodian/") && !f.contains("/.") && !f.starts_with('.'));
    out.sort();
    out
}

/// The `[repository]` table of the bucket `bucket` at `endpoint`.
fn repository(endpoint: &str, bucket: &str) -> String {
    format!(
        "[repository]\nkind = \"s3\"\nbucket = \"{bucket}\"\nregion = \"us-east-1\"\n\
         endpoint = \"{endpoint}\"\npath_style = true\n"
    )
}

/// An S3 target `s3` at `endpoint`.
fn s3_target(endpoint: &str, bucket: &str, extra: &str) -> String {
    format!(
        "[targets.s3]\nkind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"exports\"\n\
         region = \"us-east-1\"\nendpoint = \"{endpoint}\"\npath_style = true\n{extra}\n"
    )
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
        .collect()
}

fn tone(rate: u32, channels: u16, frames: i32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for i in 0..frames {
        for _ in 0..channels {
            w.write_sample(((i as f32 * 0.05).sin() * 8000.0) as i16)
                .unwrap();
        }
    }
    w.finalize().unwrap();
    out.into_inner()
}

#[test]
fn an_s3_repository_is_copied_decrypted_transcoded_zipped_and_stitched() {
    let server = S3Server::start(Some("recordings"));
    let env = Env::new("");
    env.keystore(&["k1"]);
    let plain = pattern(300_000, 1);
    let secret = tone(8000, 1, 8000);
    let sealed = encrypt(&secret, "k1", 4096);
    let stereo = tone(16000, 2, 16000);
    env.record(
        "acme",
        1,
        "c1",
        "voice",
        &[
            Art::plain("call.bin", "audio_recording", &plain),
            Art {
                file: "sealed.wav",
                bytes: &sealed,
                kind: "audio_recording",
                key_id: Some("k1"),
            },
        ],
    );
    env.record(
        "acme",
        2,
        "v1",
        "voice",
        &[Art::plain("stereo.wav", "audio_recording", &stereo)],
    );
    channel_with_gap(&env.root().join("acme/channels/turret-1"));
    cdr_only(
        &env,
        "tv1",
        "2026-01-01T10:00:08Z",
        "2026-01-01T10:00:14.5Z",
    );
    index_on_disk(&env);
    copy_tree(&env.root(), &server.root.join("recordings"));
    std::fs::remove_dir_all(env.root()).unwrap();
    let target =
        |name: &str| format!("[targets.{name}]\nkind = \"filesystem\"\npath = \"{name}\"\n");
    env.write_config(&format!(
        "[catalog]\nurl = \"sqlite:catalog.db\"\n\n{}\n{}\n{}\n{}\n\
         [policies.copy]\naction = \"export\"\ntarget = \"copy\"\ndecrypt = true\n\
         stitch_cdr_only = true\n\n\
         [policies.voice]\naction = \"export\"\ntarget = \"voice\"\nvoice_format = \"wav-ulaw\"\n\
         voice_rate = 8000\nvoice_channels = 1\nfile_extensions = [\"wav\"]\n\n\
         [policies.zip]\naction = \"export\"\ntarget = \"zip\"\nzip = true\n\n\
         [media]\nkeystore = \"keystore.json\"\n",
        repository(&server.endpoint, "recordings"),
        target("copy"),
        target("voice"),
        target("zip"),
    ));
    for policy in ["copy", "voice", "zip"] {
        let out = run_with(
            &env,
            &["--json", "run", policy, "--no-index"],
            ACCESS_KEY,
            SECRET_KEY,
        );
        assert_eq!(out.status.code(), Some(0), "{policy}: {}", text(&out));
        assert_eq!(
            json(&out)["counters"]["exported"],
            3,
            "{policy}: {}",
            text(&out)
        );
    }
    let day1 = "acme/2026/01/01";
    let copy = env.path().join("copy");
    assert_eq!(
        std::fs::read(copy.join(format!("{day1}/c1/call.bin"))).unwrap(),
        plain
    );
    assert_eq!(
        std::fs::read(copy.join(format!("{day1}/c1/sealed.wav"))).unwrap(),
        secret,
        "decrypted"
    );

    let (spec, samples) = read_wav(&copy.join(format!("{day1}/tv1/tv1.wav")));
    assert_eq!(spec.sample_rate, RATE);
    assert_eq!(samples.len(), 6 * RATE as usize + RATE as usize / 2);
    assert_eq!(
        samples[0],
        sample(1, 8 * RATE as usize),
        "cut at the sample"
    );

    let voice = env.path().join("voice");
    let ulaw = std::fs::read(voice.join("acme/2026/01/02/v1/stereo.wav")).unwrap();
    assert_eq!(u16::from_le_bytes([ulaw[20], ulaw[21]]), 7, "µ-law");
    assert_eq!(u16::from_le_bytes([ulaw[22], ulaw[23]]), 1, "mono");

    let zip = std::fs::read(env.path().join(format!("zip/{day1}/c1/c1.zip"))).unwrap();
    assert_eq!(&zip[..2], b"PK");
    let names = String::from_utf8_lossy(&zip);
    assert!(names.contains("call.bin") && names.contains("sealed.wav"));
}

#[test]
fn copies_inside_the_store_are_checked_and_a_record_that_does_not_match_leaves_nothing() {
    let server = S3Server::start(Some("recordings"));
    std::fs::create_dir(server.root.join("archive")).unwrap();
    let env = Env::new("");
    let good = pattern(400_000, 2);
    let swapped = pattern(400_000, 3);
    let longer = pattern(100_000, 4);
    env.conversation("acme", 1, "ok", &[("call.wav", &good)]);
    env.conversation("acme", 2, "bad", &[("call.wav", &good)]);
    env.conversation("acme", 3, "long", &[("call.wav", &longer)]);
    index_on_disk(&env);
    let bucket = server.root.join("recordings");
    copy_tree(&env.root(), &bucket);
    // Same size, other bytes: only the SHA-256 tells.
    std::fs::write(
        bucket.join(Env::rel_dir("acme", 2, "bad")).join("call.wav"),
        &swapped,
    )
    .unwrap();
    // Longer than its record: 10 MB where the record lists 100,000 bytes.
    std::fs::write(
        bucket
            .join(Env::rel_dir("acme", 3, "long"))
            .join("call.wav"),
        pattern(10_000_000, 4),
    )
    .unwrap();
    env.write_config(&format!(
        "[catalog]\nurl = \"sqlite:catalog.db\"\n\n{}\n{}\n\
         [policies.export]\naction = \"export\"\ntarget = \"s3\"\nmetadata_file = false\n",
        repository(&server.endpoint, "recordings"),
        s3_target(&server.endpoint, "archive", ""),
    ));
    let out = run_with(
        &env,
        &["--json", "run", "export", "--no-index"],
        ACCESS_KEY,
        SECRET_KEY,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let summary = json(&out);
    assert_eq!(summary["counters"]["exported"], 1, "{}", text(&out));
    let failures = summary["failures"].as_array().unwrap();
    let error = |id: &str| {
        failures
            .iter()
            .find(|f| f["subject"] == format!("acme/{id}"))
            .unwrap_or_else(|| panic!("{id}: {}", text(&out)))["error"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        error("bad").contains("content does not match the sha256 its record lists"),
        "{}",
        error("bad")
    );
    assert!(
        error("long").contains("is longer than the 100000 bytes its record lists"),
        "{}",
        error("long")
    );
    let archive = server.root.join("archive/exports");
    assert_eq!(files(&archive), ["acme/2026/01/01/ok/call.wav"]);
    assert_eq!(
        std::fs::read(archive.join("acme/2026/01/01/ok/call.wav")).unwrap(),
        good
    );
    assert!(
        !text(&out).contains(&sha256(&swapped)),
        "the hash found is never told"
    );

    // The same objects streamed to a directory: the longer object is refused after one byte
    // past its record, never read to its end.
    let served = server.served();
    env.write_config(&format!(
        "[catalog]\nurl = \"sqlite:catalog.db\"\n\n{}\n\
         [targets.dir]\nkind = \"filesystem\"\npath = \"dir\"\n\n\
         [policies.stream]\naction = \"export\"\ntarget = \"dir\"\nmetadata_file = false\n",
        repository(&server.endpoint, "recordings"),
    ));
    let out = run_with(
        &env,
        &["--json", "run", "stream", "--no-index"],
        ACCESS_KEY,
        SECRET_KEY,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is longer than the 100000 bytes its record lists"),
        "{}",
        text(&out)
    );
    let read = server.served() - served;
    assert!(
        read <= 2 * 400_001 + 100_001 + 64 * 1024,
        "{read} bytes read: the 10 MB object was read past its record's size"
    );
    assert_eq!(
        files(&env.path().join("dir")),
        ["acme/2026/01/01/ok/call.wav"]
    );
}

#[test]
fn a_killed_multipart_copy_is_aborted_by_the_next_run_and_leaves_nothing_partial() {
    let server = S3Server::start(Some("recordings"));
    std::fs::create_dir(server.root.join("archive")).unwrap();
    let env = Env::new("");
    let big = pattern(12_000_000, 5);
    env.conversation("acme", 1, "a1", &[("big.wav", &big)]);
    index_on_disk(&env);
    copy_tree(&env.root(), &server.root.join("recordings"));
    env.write_config(&format!(
        "[catalog]\nurl = \"sqlite:catalog.db\"\n\n{}\n{}\n\
         [policies.export]\naction = \"export\"\ntarget = \"s3\"\n",
        repository(&server.endpoint, "recordings"),
        s3_target(&server.endpoint, "archive", "copy_part_size_mib = 5"),
    ));
    server.hang_second_part();
    let mut child = env
        .command(&["run", "export", "--no-index"])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    server.wait_for_hung_part("aws_sdk");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(server.open_uploads(), 1);
    let final_key = server
        .root
        .join("archive/exports/acme/2026/01/01/a1/big.wav");
    assert!(!final_key.exists(), "nothing under the final key");

    server.pass_all();
    let out = run_with(
        &env,
        &["--json", "run", "export", "--no-index"],
        ACCESS_KEY,
        SECRET_KEY,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("aborted 1 unfinished upload"),
        "{}",
        text(&out)
    );
    assert_eq!(server.open_uploads(), 0);
    assert_eq!(std::fs::read(&final_key).unwrap(), big);
    let verify = run_with(
        &env,
        &["verify", &json(&out)["run"].to_string()],
        ACCESS_KEY,
        SECRET_KEY,
    );
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}

#[test]
fn a_store_that_checksums_copies_exports_without_any_artifact_byte_through_the_node() {
    let moto = Moto::start();
    moto.bucket("recordings", false);
    moto.bucket("worm", true);
    let env = Env::new("");
    let calls: Vec<(String, Vec<u8>)> = (1..=3)
        .map(|i| (format!("c{i}"), pattern(200_000 + i as usize, i)))
        .collect();
    for (i, (id, bytes)) in calls.iter().enumerate() {
        env.conversation("acme", i as u32 + 1, id, &[("call.wav", bytes)]);
    }
    upload_tree(&moto, "recordings", &env.root(), "");
    std::fs::remove_dir_all(env.root()).unwrap();
    env.write_config(&worm_export(&moto, ""));
    // Indexed from the bucket itself, then exported.
    let out = run_with(&env, &["--json", "run", "export"], "testing", "testing");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["counters"]["exported"], 3, "{}", text(&out));
    let requests = moto.requests();
    assert!(
        requests
            .iter()
            .any(|l| l.contains("\"PUT /worm/exports/acme/2026/01/01/c1/call.wav")),
        "the copy is one request to the store: {requests:?}"
    );
    let artifact_reads: Vec<String> = requests
        .into_iter()
        .filter(|l| l.contains("\"GET ") && l.contains("call.wav"))
        .collect();
    assert!(artifact_reads.is_empty(), "{artifact_reads:?}");
    for (i, (id, bytes)) in calls.iter().enumerate() {
        let key = format!("exports/acme/2026/01/{:02}/{id}/call.wav", i + 1);
        let head = moto.head("worm", &key);
        assert_eq!(head.content_length(), Some(bytes.len() as i64), "{key}");
        assert_eq!(
            head.metadata().unwrap().get("sha256").map(String::as_str),
            Some(sha256(bytes).as_str())
        );
        assert!(
            head.object_lock_retain_until_date().is_some(),
            "{key} retained"
        );
        assert!(head.object_lock_mode().is_some(), "{key} locked");
    }
    let verify = run_with(
        &env,
        &["verify", &json(&out)["run"].to_string()],
        "testing",
        "testing",
    );
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}

#[test]
fn a_multipart_copy_of_a_source_unlike_its_record_is_never_made_even_in_a_locked_bucket() {
    let moto = Moto::start();
    moto.bucket("recordings", false);
    moto.bucket("worm", true);
    let env = Env::new("");
    let big = pattern(12_000_000, 5);
    env.conversation("acme", 1, "a1", &[("big.wav", &big)]);
    upload_tree(&moto, "recordings", &env.root(), "");
    std::fs::remove_dir_all(env.root()).unwrap();
    // Same size, other bytes behind the record: only the SHA-256 tells.
    let key = "acme/2026/01/01/a1/big.wav";
    moto.runtime
        .block_on(
            moto.client
                .put_object()
                .bucket("recordings")
                .key(key)
                .body(pattern(12_000_000, 6).into())
                .send(),
        )
        .unwrap();
    env.write_config(&worm_export(&moto, "copy_part_size_mib = 5\n"));
    for attempt in 0..2 {
        let out = run_with(&env, &["--json", "run", "export"], "testing", "testing");
        assert_eq!(out.status.code(), Some(1), "{attempt}: {}", text(&out));
        assert!(
            text(&out).contains("content does not match the sha256 its record lists"),
            "{attempt}: {}",
            text(&out)
        );
        assert_eq!(json(&out)["counters"]["exported"], 0, "{}", text(&out));
    }
    // A copy checked only once made would stay locked under the final key, claiming the
    // record's SHA-256, and a rerun would take it for the export.
    assert_eq!(
        moto.versions("worm")
            .into_iter()
            .filter(|(k, _)| k.ends_with("big.wav"))
            .count(),
        0,
        "nothing written under the final key"
    );
    let copies: Vec<String> = moto
        .requests()
        .into_iter()
        .filter(|l| l.contains("uploads") || l.contains("partNumber"))
        .collect();
    assert!(copies.is_empty(), "no multipart copy begun: {copies:?}");
}

/// A config exporting moto's bucket `recordings` to its locked bucket `worm` (governance, 30
/// days), the target's table given `extra` keys.
fn worm_export(moto: &Moto, extra: &str) -> String {
    format!(
        "[catalog]\nurl = \"sqlite:catalog.db\"\n\n{}\n{}\n\
         [policies.export]\naction = \"export\"\ntarget = \"s3\"\n",
        repository(&moto.endpoint, "recordings"),
        s3_target(
            &moto.endpoint,
            "worm",
            &format!("{extra}object_lock = {{ mode = \"governance\", retain_days = 30 }}")
        ),
    )
}

/// Puts every file under `dir` into `bucket` under `prefix`, keeping the layout.
fn upload_tree(moto: &Moto, bucket: &str, dir: &Path, prefix: &str) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let key = format!("{prefix}{}", e.file_name().to_string_lossy());
        if p.is_dir() {
            upload_tree(moto, bucket, &p, &format!("{key}/"));
        } else {
            moto.runtime
                .block_on(
                    moto.client
                        .put_object()
                        .bucket(bucket)
                        .key(&key)
                        .body(std::fs::read(&p).unwrap().into())
                        .send(),
                )
                .unwrap();
        }
    }
}

/// A repository of two conversations with the same recording, laid into a bucket by `put` (a
/// key and its bytes), the second's recording then replaced by other bytes of the same size:
/// only the SHA-256 tells them from the record's.
#[cfg(any(feature = "azure", feature = "gcs"))]
struct SwappedRepository {
    env: Env,
    good: Vec<u8>,
    swapped: Vec<u8>,
    bad_key: String,
}

#[cfg(any(feature = "azure", feature = "gcs"))]
fn swapped_repository(put: impl Fn(&str, &[u8])) -> SwappedRepository {
    let env = Env::new("");
    let good = pattern(300_000, 5);
    env.conversation("acme", 1, "ok", &[("call.wav", &good)]);
    env.conversation("acme", 2, "bad", &[("call.wav", &good)]);
    for key in files(&env.root()) {
        put(&key, &std::fs::read(env.root().join(&key)).unwrap());
    }
    let swapped = pattern(300_000, 6);
    let bad_key = format!("{}/call.wav", Env::rel_dir("acme", 2, "bad"));
    put(&bad_key, &swapped);
    SwappedRepository {
        env,
        good,
        swapped,
        bad_key,
    }
}

/// A full rerun of a [`SwappedRepository`]'s export (logging at debug), which found the good
/// recording's checked copy and copied nothing again.
#[cfg(any(feature = "azure", feature = "gcs"))]
fn the_rerun_skipped_the_good_copy(again: &Output) {
    assert_eq!(again.status.code(), Some(1), "{}", text(again));
    assert!(
        text(again).contains("identical object already stored; skipped")
            && text(again).contains("ok/call.wav"),
        "{}",
        text(again)
    );
}

/// The summary of the first export of a [`SwappedRepository`]: the good recording exported,
/// the swapped one failed by its SHA-256, the hash found never told.
#[cfg(any(feature = "azure", feature = "gcs"))]
fn only_the_swapped_recording_failed(out: &Output, swapped: &[u8]) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    let summary = json(out);
    assert_eq!(summary["counters"]["exported"], 1, "{}", text(out));
    let error = summary["failures"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("content does not match the sha256 its record lists"),
        "{error}"
    );
    assert!(
        !text(out).contains(&sha256(swapped)),
        "the hash found is never told"
    );
    summary
}

#[cfg(feature = "azure")]
#[test]
fn an_azure_repository_is_copied_inside_the_account_checked_and_sealed() {
    use crate::azure::{Azurite, KEY, run};
    let azurite = Azurite::start();
    azurite.create_container("recordings");
    azurite.create_container("archive");
    let SwappedRepository {
        env,
        good,
        swapped,
        bad_key,
    } = swapped_repository(|key, body| azurite.put_blob("recordings", key, body));
    env.write_config(&format!(
        "[catalog]\nurl = \"sqlite:catalog.db\"\n\n\
         [repository]\nkind = \"azure\"\ncontainer = \"recordings\"\nendpoint = \"{endpoint}\"\n\n\
         [targets.blob]\nkind = \"azure\"\ncontainer = \"archive\"\nprefix = \"exports\"\n\
         endpoint = \"{endpoint}\"\n\n\
         [policies.export]\naction = \"export\"\ntarget = \"blob\"\nmode = \"full\"\n",
        endpoint = azurite.endpoint()
    ));
    let out = run(&env, &["--json", "run", "export"], KEY);
    let summary = only_the_swapped_recording_failed(&out, &swapped);

    // The exported blob is the store's copy of the repository's, carrying the recording's
    // SHA-256 and nothing of the source's metadata; the mismatched copy was removed.
    let ok_key = format!("exports/{}/call.wav", Env::rel_dir("acme", 1, "ok"));
    let props = azurite.blob_properties("archive", &ok_key);
    assert!(props.starts_with("http/1.1 200"), "{props}");
    assert!(props.contains("x-ms-copy-status: success"), "{props}");
    assert!(
        props.contains("x-ms-copy-source: ")
            && props.contains("/recordings/acme/2026/01/01/ok/call.wav"),
        "{props}"
    );
    assert!(
        props.contains(&format!("x-ms-meta-sha256: {}", sha256(&good))),
        "{props}"
    );
    assert!(!props.contains("unchecked"), "{props}");
    let gone = azurite.blob_properties("archive", &format!("exports/{bad_key}"));
    assert!(gone.starts_with("http/1.1 404"), "{gone}");
    let verify = run(&env, &["verify", &summary["run"].to_string()], KEY);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));

    // A full rerun finds the checked copy's SHA-256 and copies nothing again.
    let again = env
        .command(&["--json", "run", "export"])
        .env("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1")
        .env("AZURE_STORAGE_ACCOUNT_KEY", KEY)
        .env("CUSTODIAN_LOG", "custodian::target=debug")
        .output()
        .unwrap();
    the_rerun_skipped_the_good_copy(&again);
}

/// A config exporting from the bucket `recordings` to `exports/` of the bucket `archive`, both
/// at the GCS `endpoint`.
#[cfg(feature = "gcs")]
fn gcs_to_gcs(endpoint: &str) -> String {
    format!(
        "[catalog]\nurl = \"sqlite:catalog.db\"\n\n\
         [repository]\nkind = \"gcs\"\nbucket = \"recordings\"\nendpoint = \"{endpoint}\"\n\n\
         [targets.gcs]\nkind = \"gcs\"\nbucket = \"archive\"\nprefix = \"exports\"\n\
         endpoint = \"{endpoint}\"\n\n\
         [policies.export]\naction = \"export\"\ntarget = \"gcs\"\nmode = \"full\"\n"
    )
}

/// GCS computes no SHA-256: the rewrite's copy is read back, and sealed with its `sha256`
/// (tied to its CRC32C) only once it matches; the repository's bytes are never read.
#[cfg(feature = "gcs")]
#[test]
fn a_gcs_repository_is_copied_inside_the_store_checked_and_sealed() {
    use crate::gcs::{FakeGcs, Proxy, run};
    let gcs = FakeGcs::start();
    gcs.create_bucket("recordings");
    gcs.create_bucket("archive");
    let proxy = Proxy::start(gcs.port());
    let SwappedRepository {
        env,
        good,
        swapped,
        bad_key,
    } = swapped_repository(|key, body| {
        gcs.overwrite("recordings", key, body, &serde_json::json!({}));
    });
    env.write_config(&gcs_to_gcs(&proxy.endpoint()));
    let out = run(&env, &["--json", "run", "export"]);
    let summary = only_the_swapped_recording_failed(&out, &swapped);

    // Both recordings were rewritten inside the store; neither was read from the repository.
    let seen = proxy.seen();
    for id in ["ok", "bad"] {
        assert!(
            seen.iter()
                .any(|l| l.starts_with("POST /storage/v1/b/recordings/o/")
                    && l.contains(&format!("{id}%2Fcall.wav/rewriteTo/b/archive/o/exports%2F"))),
            "{seen:#?}"
        );
    }
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("/b/recordings/o/") && l.contains("call.wav?alt=media")),
        "{seen:#?}"
    );

    // The copy holds the recording and carries its SHA-256 and CRC32C, no longer marked
    // unchecked; the mismatched copy was removed.
    let ok_key = format!("exports/{}/call.wav", Env::rel_dir("acme", 1, "ok"));
    assert_eq!(gcs.object("archive", &ok_key).as_deref(), Some(&good[..]));
    let metadata = gcs.metadata("archive", &ok_key);
    assert_eq!(metadata["sha256"], sha256(&good), "{metadata}");
    assert!(metadata["crc32c"].is_string(), "{metadata}");
    assert!(
        metadata["custodian_unchecked"]
            .as_str()
            .is_none_or(str::is_empty),
        "{metadata}"
    );
    assert_eq!(gcs.object("archive", &format!("exports/{bad_key}")), None);
    let verify = run(&env, &["verify", &summary["run"].to_string()]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));

    // A full rerun finds the sealed copy's SHA-256 and copies nothing again.
    let again = env
        .command(&["--json", "run", "export"])
        .env("CUSTODIAN_LOG", "custodian::target=debug")
        .output()
        .unwrap();
    the_rerun_skipped_the_good_copy(&again);

    // A copy a killed run left unchecked (other bytes here) is never taken for the recording:
    // the next full run copies it again and seals the good one.
    gcs.overwrite(
        "archive",
        &ok_key,
        &swapped,
        &serde_json::json!({ "custodian_unchecked": "true" }),
    );
    let repaired = run(&env, &["--json", "run", "export"]);
    assert_eq!(repaired.status.code(), Some(1), "{}", text(&repaired));
    assert_eq!(gcs.object("archive", &ok_key).as_deref(), Some(&good[..]));
    assert_eq!(gcs.metadata("archive", &ok_key)["sha256"], sha256(&good));
}

/// An object written under a copy's key between the rewrite and its read-back is not the
/// copy: it is never read as the copy, sealed with the recording's SHA-256 or removed, and
/// the item fails saying so.
#[cfg(feature = "gcs")]
#[test]
fn a_gcs_copy_replaced_before_its_check_is_neither_sealed_nor_removed() {
    use crate::gcs::{FakeGcs, Proxy, overwrite_at, run};
    let gcs = FakeGcs::start();
    gcs.create_bucket("recordings");
    gcs.create_bucket("archive");
    let proxy = Proxy::start(gcs.port());
    let SwappedRepository { env, good, .. } = swapped_repository(|key, body| {
        gcs.overwrite("recordings", key, body, &serde_json::json!({}));
    });
    env.write_config(&gcs_to_gcs(&proxy.endpoint()));
    let ok_key = format!("exports/{}/call.wav", Env::rel_dir("acme", 1, "ok"));
    let intruder = pattern(300_000, 7);
    let (port, key, bytes) = (gcs.port(), ok_key.clone(), intruder.clone());
    let read_back = format!(
        "GET /storage/v1/b/archive/o/{}?alt=media",
        ok_key.replace('/', "%2F")
    );
    proxy.before(move |line| {
        if line.starts_with(&read_back) {
            overwrite_at(port, "archive", &key, &bytes, &serde_json::json!({}));
        }
    });
    let out = run(&env, &["--json", "run", "export"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let summary = json(&out);
    assert_eq!(summary["counters"]["exported"], 0, "{}", text(&out));
    let failures = summary["failures"].as_array().unwrap();
    assert!(
        failures.iter().any(|f| f["error"]
            .as_str()
            .unwrap()
            .contains("replaced in the store by another object before it was checked")),
        "{}",
        text(&out)
    );
    assert!(
        proxy
            .seen()
            .iter()
            .any(|l| l.starts_with("GET ") && l.contains("ok%2Fcall.wav?alt=media&generation=")),
        "the read-back names the copy's generation: {:#?}",
        proxy.seen()
    );
    // The other writer's object stays, as it wrote it: not removed, not sealed.
    assert_eq!(
        gcs.object("archive", &ok_key).as_deref(),
        Some(&intruder[..])
    );
    assert!(gcs.metadata("archive", &ok_key)["sha256"].is_null());
    assert_ne!(intruder, good);
}
