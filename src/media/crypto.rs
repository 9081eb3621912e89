//! Encrypted media format v1 (DESIGN.md §3): a STREAM construction over AES-256-GCM.
//!
//! Each chunk is sealed with a nonce made of a random prefix, the chunk index and a last-chunk
//! flag, and the whole header is the associated data of every chunk. So a chunk cannot be
//! moved, the stream cannot be cut at a chunk boundary, and the header cannot be edited without
//! the tag check failing. Reading and writing are streaming: memory is two chunks whatever the
//! file size. The AES-GCM primitive itself lives in [`super::aead`].

use std::io::{self, Read, Write};

use super::aead::{ChunkKey, NONCE_LEN, fill_random};

pub use super::aead::TAG_LEN;

/// First bytes of every encrypted file.
pub const MAGIC: &[u8; 8] = b"CSTDNENC";
/// Format version byte.
pub const VERSION: u8 = 1;
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
    #[error(
        "file is truncated: chunk {index} is shorter than its {TAG_LEN}-byte tag (key `{key_id}`)"
    )]
    Truncated { index: u32, key_id: String },
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

    /// A header for new output, after checking the key id and chunk size.
    fn new(
        key_id: &str,
        chunk_size: u32,
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
    ) -> Result<Header, CryptoError> {
        if key_id.is_empty() || key_id.len() > 255 {
            return Err(CryptoError::Header("key id must be 1..=255 bytes"));
        }
        if !CHUNK_SIZE_RANGE.contains(&chunk_size) {
            return Err(CryptoError::ChunkSize(chunk_size));
        }
        Ok(Header {
            key_id: key_id.to_owned(),
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

fn random_nonce_prefix() -> Result<[u8; NONCE_PREFIX_LEN], CryptoError> {
    let mut prefix = [0u8; NONCE_PREFIX_LEN];
    fill_random(&mut prefix)?;
    Ok(prefix)
}

/// Seals and opens the chunks of one file: its key, its header (every chunk's associated
/// data) and its nonce prefix. Shared by reference between the threads that work on a file.
pub struct ChunkCipher {
    key: ChunkKey,
    header: Header,
    aad: Vec<u8>,
}

impl ChunkCipher {
    pub fn new(key: &[u8; 32], header: Header) -> ChunkCipher {
        ChunkCipher {
            key: ChunkKey::new(key),
            aad: header.encode(),
            header,
        }
    }

    /// The header of the file.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The encoded header: the first bytes of the file.
    pub fn header_bytes(&self) -> &[u8] {
        &self.aad
    }

    fn nonce(&self, index: u32, last: bool) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        n[..NONCE_PREFIX_LEN].copy_from_slice(&self.header.nonce_prefix);
        n[NONCE_PREFIX_LEN..11].copy_from_slice(&index.to_be_bytes());
        n[11] = u8::from(last);
        n
    }

    /// Seals chunk `index` in place: `chunk` is the plaintext followed by [`TAG_LEN`] bytes of
    /// room, which receive the tag. Panics if `chunk` is shorter than a tag.
    pub fn seal(&self, index: u32, last: bool, chunk: &mut [u8]) {
        let (plain, tag) = chunk.split_at_mut(chunk.len() - TAG_LEN);
        tag.copy_from_slice(
            &self
                .key
                .seal_in_place(self.nonce(index, last), &self.aad, plain),
        );
    }

    /// Checks and decrypts sealed chunk `index` in place; returns its plaintext.
    pub fn open<'a>(
        &self,
        index: u32,
        last: bool,
        sealed: &'a mut [u8],
    ) -> Result<&'a mut [u8], CryptoError> {
        if sealed.len() < TAG_LEN {
            return Err(CryptoError::Truncated {
                index,
                key_id: self.header.key_id.clone(),
            });
        }
        self.key
            .open_in_place(self.nonce(index, last), &self.aad, sealed)
            .map_err(|_| CryptoError::Authentication {
                index,
                key_id: self.header.key_id.clone(),
            })
    }
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
    encrypt_stream_with_prefix(
        key,
        key_id,
        chunk_size,
        random_nonce_prefix()?,
        input,
        output,
    )
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
    let cipher = ChunkCipher::new(key, Header::new(key_id, chunk_size, nonce_prefix)?);
    output.write_all(cipher.header_bytes())?;
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
        cipher.seal(index, last, &mut current[..len + TAG_LEN]);
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
    cipher: ChunkCipher,
    /// The chunk being handed out: after opening, its plaintext is `current[pos..end]`.
    current: Vec<u8>,
    pos: usize,
    end: usize,
    /// The next sealed chunk, read ahead to learn whether `current` is the last one.
    next: Vec<u8>,
    next_len: usize,
    /// Index of the chunk in `next`.
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
        let mut next = vec![0; sealed_cap];
        let next_len = fill(&mut inner, &mut next).map_err(|e| DecryptorError::Crypto(e.into()))?;
        Ok(Decryptor {
            inner,
            cipher: ChunkCipher::new(&key, header),
            current: vec![0; sealed_cap],
            pos: 0,
            end: 0,
            next,
            next_len,
            index: 0,
            done: false,
        })
    }

    /// The header of the file being read.
    pub fn header(&self) -> &Header {
        self.cipher.header()
    }

    fn next_chunk(&mut self) -> Result<(), CryptoError> {
        std::mem::swap(&mut self.current, &mut self.next);
        let len = self.next_len;
        self.next_len = if len == self.current.len() {
            fill(&mut self.inner, &mut self.next)?
        } else {
            0
        };
        let last = self.next_len == 0;
        self.end = self
            .cipher
            .open(self.index, last, &mut self.current[..len])?
            .len();
        self.pos = 0;
        if last {
            self.done = true;
        } else {
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
        while self.pos == self.end {
            if self.done {
                return Ok(0);
            }
            self.next_chunk().map_err(io::Error::other)?;
        }
        let n = buf.len().min(self.end - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
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
