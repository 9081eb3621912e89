//! Decryption of encrypted media: the decrypt stage alone on one core (opening 1 MiB chunks
//! in memory, the AES-GCM floor), and whole files through the parallel file pipeline.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use custodian::media::crypto::{
    ChunkCipher, DEFAULT_CHUNK_SIZE, Header, TAG_LEN, decrypt_file, encrypt_stream,
};
use custodian::media::keystore::Keystore;

const KEY: [u8; 32] = [3; 32];
const LEN: usize = 64 * 1024 * 1024;

fn sealed() -> Vec<u8> {
    let plain: Vec<u8> = (0..LEN).map(|i| (i * 31 % 251) as u8).collect();
    let mut sealed = Vec::with_capacity(LEN + LEN / 1024);
    encrypt_stream(
        &KEY,
        "bench",
        DEFAULT_CHUNK_SIZE,
        &mut &plain[..],
        &mut sealed,
    )
    .unwrap();
    sealed
}

fn decrypt_stage_one_core(c: &mut Criterion) {
    let sealed = sealed();
    let header = Header::read(&mut &sealed[..]).unwrap();
    let cipher = ChunkCipher::new(&KEY, header);
    let body = sealed[cipher.header_bytes().len()..].to_vec();
    let stride = DEFAULT_CHUNK_SIZE as usize + TAG_LEN;
    let chunks = body.len().div_ceil(stride);
    let mut group = c.benchmark_group("decrypt_stage");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.sample_size(30);
    group.bench_function("one_core_64MiB_in_1MiB_chunks", |b| {
        b.iter_batched_ref(
            || body.clone(),
            |body| {
                for (i, chunk) in body.chunks_mut(stride).enumerate() {
                    cipher.open(i as u32, i + 1 == chunks, chunk).unwrap();
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn decrypt_whole_file(c: &mut Criterion) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.enc");
    let dst = dir.path().join("out.bin");
    std::fs::write(&src, sealed()).unwrap();
    let ks = dir.path().join("keys.json");
    std::fs::write(
        &ks,
        serde_json::json!({"keys": {"bench": base64_key()}}).to_string(),
    )
    .unwrap();
    std::fs::set_permissions(&ks, std::fs::Permissions::from_mode(0o600)).unwrap();
    let keystore = Keystore::load(&ks).unwrap();
    let mut group = c.benchmark_group("decrypt_file");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.sample_size(30);
    // The previous output is removed outside the timed part: freeing its pages is not decryption.
    group.bench_function("parallel_64MiB_in_1MiB_chunks", |b| {
        b.iter_batched(
            || {
                let _ = std::fs::remove_file(&dst);
            },
            |()| decrypt_file(&src, &keystore, &dst).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(KEY)
}

criterion_group!(benches, decrypt_stage_one_core, decrypt_whole_file);
criterion_main!(benches);
