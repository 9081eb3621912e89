//! AES-256-GCM for one chunk at a time, and the random source for nonce prefixes: the only
//! module that touches `ring`.
//!
//! Why ring: its AES-GCM (BoringSSL's VAES/AVX2 and AES-NI assembly) is the fastest we have.
//! When it was chosen it ran about 7 GB/s per core, against about 1.2 GB/s for the RustCrypto
//! `aes-gcm` crate and about 3.2 GB/s for `openssl speed -evp aes-256-gcm`; on the shared
//! 2-core development VM, `benches/crypto.rs` opens 5.2-6.0 GB/s on one core where
//! `openssl speed` gives 2.5 GB/s. Decryption is the hot step of an export of encrypted media;
//! keeping ring behind this small API lets us swap it, if a faster or better-audited
//! implementation appears, without touching the format code.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

/// Bytes of a nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of the authentication tag.
pub const TAG_LEN: usize = 16;

/// A chunk failed authentication: tampered, misplaced, truncated, or the key is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct Unauthentic;

/// An AES-256-GCM key, ready to seal and open chunks (cheap to share between threads).
pub struct ChunkKey(LessSafeKey);

impl ChunkKey {
    pub fn new(key: &[u8; 32]) -> ChunkKey {
        ChunkKey(LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, key).expect("AES-256 takes a 32-byte key"),
        ))
    }

    /// Encrypts `plaintext` in place and returns its tag. The caller guarantees the nonce is
    /// never reused with this key.
    pub fn seal_in_place(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let tag: Tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                plaintext,
            )
            .expect("chunks are at most 16 MiB, far below the AES-GCM limit");
        tag.as_ref().try_into().expect("AES-GCM tags are 16 bytes")
    }

    /// Checks and decrypts `sealed` (ciphertext followed by its tag) in place; returns the
    /// plaintext, which is `sealed` without its last [`TAG_LEN`] bytes.
    pub fn open_in_place<'a>(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        sealed: &'a mut [u8],
    ) -> Result<&'a mut [u8], Unauthentic> {
        self.0
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), sealed)
            .map_err(|_| Unauthentic)
    }
}

/// Fills `buf` from the operating system's secure random source.
pub fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), buf)
        .map_err(|_| std::io::Error::other("the system's secure random source failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_rejects_changes() {
        let key = ChunkKey::new(&[1; 32]);
        let nonce = [2; NONCE_LEN];
        let mut buf = b"hello chunk".to_vec();
        let tag = key.seal_in_place(nonce, b"aad", &mut buf);
        assert_ne!(&buf[..], b"hello chunk");
        buf.extend_from_slice(&tag);
        let mut copy = buf.clone();
        assert_eq!(
            key.open_in_place(nonce, b"aad", &mut copy).unwrap(),
            b"hello chunk"
        );
        let mut copy = buf.clone();
        assert_eq!(
            key.open_in_place(nonce, b"aaD", &mut copy),
            Err(Unauthentic)
        );
        let mut other_nonce = nonce;
        other_nonce[11] ^= 1;
        assert_eq!(
            key.open_in_place(other_nonce, b"aad", &mut buf),
            Err(Unauthentic)
        );
    }
}
