//! Encrypted media format v1 (DESIGN.md §3): a STREAM construction over AES-256-GCM.
//!
//! Each chunk is sealed with a nonce made of a random prefix, the chunk index and a last-chunk
//! flag, and the whole header is the associated data of every chunk. So a chunk cannot be
//! moved, the stream cannot be cut at a chunk boundary, and the header cannot be edited without
//! the tag check failing. Reading and writing are streaming: memory is two chunks whatever the
//! file size.

use std::io::{self, Read, Write};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// First bytes of every encrypted file.
pub const MAGIC: &[u8; 8] = b"CSTDNENC";
/// Format version byte.
pub const VERSION: u8 = 1;
/// Tag bytes appended to each chunk's ciphertext.
pub const TAG_LEN: usize = 16;
/// Length of the random nonce prefix.
pub const NONCE_PREFIX_LEN: usize = 7;
/// Smallest and largest allowed plaintext chunk sizes.
pub const CHUNK_SIZE_RANGE: std::ops::RangeInclusive<u32> = 4096..=16 * 1024 * 1024;
/// Chunk size used when none is given.
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;

/// Why an encrypted stream could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("not a custodian encrypted file (bad magic)")]
    BadMagic,
    #[error("unsupported encrypted format version {0} (this build reads version {VERSION})")]
    Version(u8),
    #[error("invalid header: {0}")]
    Header(&'static str),
    #[error("chunk size {0} is outside 4096..=16777216")]
    ChunkSize(u32),
    #[error(
        "chunk {index} failed authentication (key `{key_id}`): the file is tampered, reordered, truncated or the key is wrong"
    )]
    Authentication { index: u32, key_id: String },
    #[error("file is truncated inside its header")]
    TruncatedHeader,
    #[error("file has more than 2^32 chunks")]
    TooManyChunks,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The plaintext header of an encrypted file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub key_id: String,
    pub chunk_size: u32,
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl Header {
    /// Encodes the header exactly as it is stored (and authenticated).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(21 + self.key_id.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(self.key_id.len() as u8);
        out.extend_from_slice(self.key_id.as_bytes());
        out.extend_from_slice(&self.chunk_size.to_le_bytes());
        out.extend_from_slice(&self.nonce_prefix);
        out
    }

    /// Reads and checks a header from the start of `r`.
    pub fn read(r: &mut dyn Read) -> Result<Header, CryptoError> {
        let mut fixed = [0u8; 10];
        read_header_bytes(r, &mut fixed)?;
        if &fixed[..8] != MAGIC {
            return Err(CryptoError::BadMagic);
        }
        if fixed[8] != VERSION {
            return Err(CryptoError::Version(fixed[8]));
        }
        let len = fixed[9] as usize;
        if len == 0 {
            return Err(CryptoError::Header("empty key id"));
        }
        let mut rest = vec![0u8; len + 4 + NONCE_PREFIX_LEN];
        read_header_bytes(r, &mut rest)?;
        let key_id = String::from_utf8(rest[..len].to_vec())
            .map_err(|_| CryptoError::Header("key id is not UTF-8"))?;
        let chunk_size = u32::from_le_bytes(rest[len..len + 4].try_into().expect("4 bytes"));
        if !CHUNK_SIZE_RANGE.contains(&chunk_size) {
            return Err(CryptoError::ChunkSize(chunk_size));
        }
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        nonce_prefix.copy_from_slice(&rest[len + 4..]);
        Ok(Header {
            key_id,
            chunk_size,
            nonce_prefix,
        })
    }
}

fn read_header_bytes(r: &mut dyn Read, buf: &mut [u8]) -> Result<(), CryptoError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => CryptoError::TruncatedHeader,
        _ => CryptoError::Io(e),
    })
}

fn nonce(prefix: &[u8; NONCE_PREFIX_LEN], index: u32, last: bool) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[..NONCE_PREFIX_LEN].copy_from_slice(prefix);
    n[NONCE_PREFIX_LEN..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::assume_unique_for_key(n)
}

fn aead_key(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key"))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Encrypts `input` to `output` in format v1 with a fresh random nonce prefix.
/// Returns the number of plaintext bytes.
pub fn encrypt_stream(
    key: &[u8; 32],
    key_id: &str,
    chunk_size: u32,
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> Result<u64, CryptoError> {
    let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce_prefix)
        .map_err(|_| CryptoError::Io(io::Error::other("system random source failed")))?;
    encrypt_stream_with_prefix(key, key_id, chunk_size, nonce_prefix, input, output)
}

/// [`encrypt_stream`] with a given nonce prefix (for known-answer tests; never reuse a prefix
/// with the same key in production).
pub fn encrypt_stream_with_prefix(
    key: &[u8; 32],
    key_id: &str,
    chunk_size: u32,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> Result<u64, CryptoError> {
    if key_id.is_empty() || key_id.len() > 255 {
        return Err(CryptoError::Header("key id must be 1..=255 bytes"));
    }
    if !CHUNK_SIZE_RANGE.contains(&chunk_size) {
        return Err(CryptoError::ChunkSize(chunk_size));
    }
    let header = Header {
        key_id: key_id.to_owned(),
        chunk_size,
        nonce_prefix,
    }
    .encode();
    output.write_all(&header)?;
    let key = aead_key(key);
    let size = chunk_size as usize;
    let mut current = vec![0u8; size + TAG_LEN];
    let mut next = vec![0u8; size + TAG_LEN];
    let mut len = fill(input, &mut current[..size])?;
    let mut total = 0u64;
    let mut index: u32 = 0;
    loop {
        let next_len = if len == size {
            fill(input, &mut next[..size])?
        } else {
            0
        };
        let last = next_len == 0;
        let tag = key
            .seal_in_place_separate_tag(
                nonce(&nonce_prefix, index, last),
                Aad::from(&header[..]),
                &mut current[..len],
            )
            .expect("chunk within AES-GCM limits");
        current[len..len + TAG_LEN].copy_from_slice(tag.as_ref());
        output.write_all(&current[..len + TAG_LEN])?;
        total += len as u64;
        if last {
            return Ok(total);
        }
        std::mem::swap(&mut current, &mut next);
        len = next_len;
        index = index.checked_add(1).ok_or(CryptoError::TooManyChunks)?;
    }
}

/// A streaming reader of the plaintext of a format v1 file.
pub struct Decryptor<R> {
    inner: R,
    header: Header,
    aad: Vec<u8>,
    key: LessSafeKey,
    sealed: Vec<u8>,
    sealed_len: usize,
    lookahead: Vec<u8>,
    lookahead_len: usize,
    plain: Vec<u8>,
    plain_pos: usize,
    index: u32,
    done: bool,
}

impl<R: Read> Decryptor<R> {
    /// Reads the header of `inner`; `key_for` returns the key for its key id.
    pub fn new<F, E>(mut inner: R, key_for: F) -> Result<Self, DecryptorError<E>>
    where
        F: FnOnce(&str) -> Result<[u8; 32], E>,
    {
        let header = Header::read(&mut inner).map_err(DecryptorError::Crypto)?;
        let key = key_for(&header.key_id).map_err(DecryptorError::Key)?;
        let sealed_cap = header.chunk_size as usize + TAG_LEN;
        let mut this = Decryptor {
            aad: header.encode(),
            header,
            inner,
            key: aead_key(&key),
            sealed: vec![0; sealed_cap],
            sealed_len: 0,
            lookahead: vec![0; sealed_cap],
            lookahead_len: 0,
            plain: Vec::new(),
            plain_pos: 0,
            index: 0,
            done: false,
        };
        this.sealed_len = fill(&mut this.inner, &mut this.sealed)
            .map_err(|e| DecryptorError::Crypto(e.into()))?;
        Ok(this)
    }

    /// The header of the file being read.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn next_chunk(&mut self) -> Result<(), CryptoError> {
        let full = self.sealed.len();
        self.lookahead_len = if self.sealed_len == full {
            fill(&mut self.inner, &mut self.lookahead)?
        } else {
            0
        };
        let last = self.lookahead_len == 0;
        let auth_error = || CryptoError::Authentication {
            index: self.index,
            key_id: self.header.key_id.clone(),
        };
        if self.sealed_len < TAG_LEN {
            return Err(auth_error());
        }
        let plain = self
            .key
            .open_in_place(
                nonce(&self.header.nonce_prefix, self.index, last),
                Aad::from(&self.aad[..]),
                &mut self.sealed[..self.sealed_len],
            )
            .map_err(|_| auth_error())?;
        self.plain.clear();
        self.plain.extend_from_slice(plain);
        self.plain_pos = 0;
        if last {
            self.done = true;
        } else {
            std::mem::swap(&mut self.sealed, &mut self.lookahead);
            self.sealed_len = self.lookahead_len;
            self.index = self
                .index
                .checked_add(1)
                .ok_or(CryptoError::TooManyChunks)?;
        }
        Ok(())
    }
}

/// A decryptor could not start: bad header, or no key for its key id.
#[derive(Debug, thiserror::Error)]
pub enum DecryptorError<E> {
    #[error(transparent)]
    Crypto(CryptoError),
    #[error(transparent)]
    Key(E),
}

impl<R: Read> Read for Decryptor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.plain_pos == self.plain.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk().map_err(io::Error::other)?;
        }
        let n = buf.len().min(self.plain.len() - self.plain_pos);
        buf[..n].copy_from_slice(&self.plain[self.plain_pos..self.plain_pos + n]);
        self.plain_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn encrypt(plain: &[u8], chunk: u32) -> Vec<u8> {
        let mut out = Vec::new();
        encrypt_stream(&KEY, "k1", chunk, &mut &plain[..], &mut out).unwrap();
        out
    }

    fn decrypt(data: &[u8], key: [u8; 32]) -> io::Result<Vec<u8>> {
        let mut d = Decryptor::new(data, |_| Ok::<_, ()>(key)).map_err(|e| match e {
            DecryptorError::Crypto(c) => io::Error::other(c),
            DecryptorError::Key(()) => io::Error::other("no key"),
        })?;
        let mut out = Vec::new();
        d.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trips_at_every_boundary() {
        for len in [0usize, 1, 4095, 4096, 4097, 8192, 10_000] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let enc = encrypt(&plain, 4096);
            let chunks = len.div_ceil(4096).max(1);
            assert_eq!(enc.len(), 23 + len + chunks * TAG_LEN, "len {len}");
            assert_eq!(decrypt(&enc, KEY).unwrap(), plain, "len {len}");
        }
    }

    #[test]
    fn truncation_at_a_chunk_boundary_is_detected() {
        let enc = encrypt(&[1u8; 8192], 4096);
        let cut = &enc[..23 + 4096 + TAG_LEN];
        let err = decrypt(cut, KEY).unwrap_err();
        assert!(
            err.to_string().contains("chunk 0 failed authentication"),
            "{err}"
        );
    }

    #[test]
    fn tampering_and_wrong_key_are_detected() {
        let mut enc = encrypt(&[1u8; 5000], 4096);
        assert!(decrypt(&enc, [8; 32]).is_err());
        let last = enc.len() - 1;
        enc[last] ^= 1;
        assert!(decrypt(&enc, KEY).is_err());
    }

    #[test]
    fn reordered_chunks_are_detected() {
        let enc = encrypt(&[3u8; 8192 + 4096], 4096);
        let h = 23;
        let c = 4096 + TAG_LEN;
        let mut swapped = enc[..h].to_vec();
        swapped.extend_from_slice(&enc[h + c..h + 2 * c]);
        swapped.extend_from_slice(&enc[h..h + c]);
        swapped.extend_from_slice(&enc[h + 2 * c..]);
        assert!(decrypt(&swapped, KEY).is_err());
    }

    #[test]
    fn header_errors_are_named() {
        assert!(matches!(
            Header::read(&mut &b"NOTMAGIC\x01"[..]),
            Err(CryptoError::TruncatedHeader)
        ));
        assert!(matches!(
            Header::read(&mut &b"NOTMAGIC\x01\x01"[..]),
            Err(CryptoError::BadMagic)
        ));
        assert!(matches!(
            Header::read(&mut &b"CSTDNENC\x02\x01"[..]),
            Err(CryptoError::Version(2))
        ));
    }
}
