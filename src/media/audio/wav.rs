//! The fast path for what recorders write most: a RIFF/WAVE file of 16-bit little-endian integer
//! PCM. Its `data` chunk is read in large blocks and handed on as `i16`, without symphonia's
//! probe, packets and `f32` samples; for G.711, PCM 16-bit and FLAC output with the input's rate
//! and channels no sample is ever a float.
//!
//! The output must be byte for byte what the general path (symphonia) gives, so this module only
//! takes files whose header it can read exactly as symphonia 0.5's WAV reader does, and
//! [`peek`] hands everything else back, with the bytes it looked at, to be replayed into
//! symphonia: another codec or sample width, `WAVE_FORMAT_EXTENSIBLE` other than plain 16-bit
//! PCM, an unusual `fmt ` length, a second `fmt `, a malformed `fact` or `LIST`, chunk lengths
//! that overrun the RIFF length, a header longer than [`PEEK`], and `data` sizes of 0 or
//! `0xFFFFFFFF` (streaming writers that never patched the header). What symphonia does with the
//! audio itself is reproduced: whole frames only (a trailing partial frame or odd byte is
//! dropped), up to the end of the `data` chunk or of the input, whichever comes first.
//!
//! Memory is bounded: the peeked prefix plus one read block of [`READ_BLOCK`] bytes.

use std::io::{Cursor, ErrorKind, Read};

/// Bytes read from the start of an input to find the `data` chunk; headers longer than this
/// (large metadata before the audio) take the general path.
pub(super) const PEEK: usize = 64 * 1024;
/// Bytes per read of audio, rounded down to whole frames.
const READ_BLOCK: usize = 64 * 1024;
/// Channel counts symphonia's standard speaker positions cover.
const MAX_FAST_CHANNELS: u16 = 18;
/// `WAVE_FORMAT_EXTENSIBLE` sub-format GUID for integer PCM (ksmedia.h).
const SUBTYPE_PCM: [u8; 16] = [
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71,
];

/// A 16-bit PCM WAV header, as far as the fast path needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    pub rate: u32,
    pub channels: u16,
    /// Offset of the first byte of audio.
    pub data_start: usize,
    /// The `data` chunk's declared length in bytes.
    pub data_len: u32,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads the header of a 16-bit PCM WAV from the first bytes of a file, or `None` when the file
/// is anything else or anything about it is unusual. Walks the chunks exactly as symphonia's
/// `ChunksReader` does (its length accounting starts after `WAVE`, padding to even offsets).
pub(super) fn parse_header(prefix: &[u8]) -> Option<Header> {
    if prefix.get(0..4)? != b"RIFF" || prefix.get(8..12)? != b"WAVE" {
        return None;
    }
    let riff_len = u32_at(prefix, 4)?;
    if riff_len == u32::MAX {
        return None;
    }
    let mut format: Option<(u32, u16)> = None;
    let mut consumed = 0u32;
    let mut at = 12usize;
    loop {
        if consumed & 1 == 1 {
            consumed += 1;
            at += 1;
        }
        if consumed.checked_add(8)? > riff_len {
            return None; // no data chunk: symphonia's error, not ours
        }
        let tag = prefix.get(at..at + 4)?;
        let len = u32_at(prefix, at + 4)?;
        consumed += 8;
        at += 8;
        if riff_len - consumed < len {
            return None;
        }
        consumed += len;
        let end = at.checked_add(len as usize)?;
        match tag {
            b"fmt " if format.is_none() => format = Some(parse_fmt(prefix.get(at..end)?)?),
            b"fmt " => return None,
            b"fact" if len != 4 => return None,
            // symphonia reads an odd-length LIST's pad byte twice.
            b"LIST" if len < 4 || len % 2 == 1 => return None,
            b"LIST" if prefix.get(at..at + 4)? == b"INFO" => {
                info_chunks_fit(prefix.get(at + 4..end)?)?;
            }
            b"data" => {
                let (rate, channels) = format?;
                if len == 0 || len == u32::MAX {
                    return None;
                }
                return Some(Header {
                    rate,
                    channels,
                    data_start: at,
                    data_len: len,
                });
            }
            _ => {}
        }
        at = end;
    }
}

/// The rate and channels of a `fmt ` chunk body if it is 16-bit integer PCM that symphonia
/// reads as such (`CODEC_TYPE_PCM_S16LE`, 16 valid bits, channel mask it maps one to one).
fn parse_fmt(fmt: &[u8]) -> Option<(u32, u16)> {
    let tag = u16_at(fmt, 0)?;
    let channels = u16_at(fmt, 2)?;
    let rate = u32_at(fmt, 4)?;
    let block_align = u16_at(fmt, 12)?;
    let bits = u16_at(fmt, 14)?;
    let plain = match (tag, fmt.len()) {
        (1, 16 | 18 | 40) => true,
        (0xFFFE, 40) => false,
        _ => return None,
    };
    if !plain {
        let mask = u32_at(fmt, 20)?;
        let mask_fits = mask == 0 || (mask.count_ones() == u32::from(channels) && mask < 1 << 18);
        if u16_at(fmt, 16)? != 22 || u16_at(fmt, 18)? != 16 || !mask_fits {
            return None;
        }
        if fmt.get(24..40)? != SUBTYPE_PCM {
            return None;
        }
    }
    let ok = bits == 16
        && (1..=MAX_FAST_CHANNELS).contains(&channels)
        && rate > 0
        && u32::from(block_align) == 2 * u32::from(channels);
    ok.then_some((rate, channels))
}

/// Whether the sub-chunks of a `LIST INFO` body fit it, as symphonia's reader requires.
fn info_chunks_fit(body: &[u8]) -> Option<()> {
    let len = u32::try_from(body.len()).ok()?;
    let mut consumed = 0u32;
    loop {
        consumed += consumed & 1;
        if consumed + 8 > len {
            return Some(());
        }
        let sub = u32_at(body, consumed as usize + 4)?;
        consumed += 8;
        if len - consumed < sub {
            return None;
        }
        consumed += sub;
    }
}

/// What the start of an input turned out to be.
pub(super) enum Peeked<R> {
    /// A 16-bit PCM WAV, positioned at its audio.
    Pcm(PcmReader<Cursor<Vec<u8>>, R>),
    /// Anything else: the bytes read so far and the rest of the input.
    Other { prefix: Vec<u8>, rest: R },
}

/// Reads up to [`PEEK`] bytes of `input` and decides whether the fast path takes it.
pub(super) fn peek<R: Read>(mut input: R) -> std::io::Result<Peeked<R>> {
    let mut prefix = Vec::with_capacity(PEEK);
    (&mut input).take(PEEK as u64).read_to_end(&mut prefix)?;
    match parse_header(&prefix) {
        Some(header) => {
            let mut head = Cursor::new(prefix);
            head.set_position(header.data_start as u64);
            Ok(Peeked::Pcm(PcmReader::new(header, head.chain(input))))
        }
        None => Ok(Peeked::Other {
            prefix,
            rest: input,
        }),
    }
}

/// The audio of a 16-bit PCM WAV in blocks of whole frames.
pub(super) struct PcmReader<A, B> {
    input: std::io::Chain<A, B>,
    pub header: Header,
    /// Bytes of whole frames in the data chunk not yet read.
    remaining: u64,
    /// Bytes per frame.
    frame: usize,
    block: Vec<u8>,
}

impl<A: Read, B: Read> PcmReader<A, B> {
    fn new(header: Header, input: std::io::Chain<A, B>) -> Self {
        let frame = 2 * usize::from(header.channels);
        PcmReader {
            input,
            header,
            remaining: u64::from(header.data_len) / frame as u64 * frame as u64,
            frame,
            block: vec![0; READ_BLOCK / frame * frame],
        }
    }

    /// The next block of interleaved little-endian 16-bit samples (whole frames), or `None` at
    /// the end of the data chunk or of the input.
    pub fn next_block(&mut self) -> std::io::Result<Option<&[u8]>> {
        let want = self.remaining.min(self.block.len() as u64) as usize;
        let mut got = 0;
        while got < want {
            match self.input.read(&mut self.block[got..want]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if got < want {
            // The input ends inside the data chunk: keep its whole frames, as symphonia does.
            got = got / self.frame * self.frame;
            self.remaining = 0;
        } else {
            self.remaining -= want as u64;
        }
        Ok((got > 0).then(|| &self.block[..got]))
    }
}

/// Little-endian 16-bit sample bytes to `i16` in `out` (replaced).
pub(super) fn s16le_to_i16(bytes: &[u8], out: &mut Vec<i16>) {
    out.clear();
    out.extend(
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]])),
    );
}

/// Little-endian 16-bit sample bytes to `f32` in `out` (replaced), as symphonia converts them
/// (`x / 32768`).
pub(super) fn s16le_to_f32(bytes: &[u8], out: &mut Vec<f32>) {
    out.clear();
    out.extend(
        bytes
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAV made of `fmt` (a PCM body) and then `chunks` in order.
    pub(crate) fn wav(fmt: &[u8], chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut body = b"WAVE".to_vec();
        for (tag, data) in std::iter::once((b"fmt ", fmt)).chain(chunks.iter().copied()) {
            body.extend_from_slice(tag);
            body.extend_from_slice(&(data.len() as u32).to_le_bytes());
            body.extend_from_slice(data);
            if data.len() % 2 == 1 {
                body.push(0);
            }
        }
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend(body);
        out
    }

    pub(crate) fn pcm_fmt(rate: u32, channels: u16) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&1u16.to_le_bytes());
        f.extend_from_slice(&channels.to_le_bytes());
        f.extend_from_slice(&rate.to_le_bytes());
        f.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
        f.extend_from_slice(&(2 * channels).to_le_bytes());
        f.extend_from_slice(&16u16.to_le_bytes());
        f
    }

    #[test]
    fn a_plain_header_is_read() {
        let w = wav(&pcm_fmt(8000, 1), &[(b"data", &[1, 0, 2, 0])]);
        assert_eq!(
            parse_header(&w),
            Some(Header {
                rate: 8000,
                channels: 1,
                data_start: 44,
                data_len: 4
            })
        );
    }

    #[test]
    fn unusual_headers_are_left_to_symphonia() {
        let data: (&[u8; 4], &[u8]) = (b"data", &[0, 0]);
        let mut eight_bit = pcm_fmt(8000, 1);
        eight_bit[14] = 8;
        let mut float = pcm_fmt(8000, 1);
        float[0] = 3;
        let mut bad_align = pcm_fmt(8000, 2);
        bad_align[12] = 2;
        for (name, w) in [
            ("8-bit", wav(&eight_bit, &[data])),
            ("float", wav(&float, &[data])),
            ("block align", wav(&bad_align, &[data])),
            ("zero rate", wav(&pcm_fmt(0, 1), &[data])),
            ("no data", wav(&pcm_fmt(8000, 1), &[])),
            ("empty data", wav(&pcm_fmt(8000, 1), &[(b"data", &[])])),
            (
                "two fmt",
                wav(&pcm_fmt(8000, 1), &[(b"fmt ", &pcm_fmt(8000, 1)), data]),
            ),
            (
                "odd LIST",
                wav(&pcm_fmt(8000, 1), &[(b"LIST", b"adtlx"), data]),
            ),
            (
                "short fact",
                wav(&pcm_fmt(8000, 1), &[(b"fact", &[1, 2]), data]),
            ),
            (
                "INFO overrun",
                wav(
                    &pcm_fmt(8000, 1),
                    &[(b"LIST", b"INFOINAM\x10\x00\x00\x00ab"), data],
                ),
            ),
        ] {
            assert_eq!(parse_header(&w), None, "{name}");
        }
        let mut streaming = wav(&pcm_fmt(8000, 1), &[data]);
        streaming[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_header(&streaming), None, "data size 0xFFFFFFFF");
        let mut short_riff = wav(&pcm_fmt(8000, 1), &[(b"data", &[0; 100])]);
        short_riff[4..8].copy_from_slice(&40u32.to_le_bytes());
        assert_eq!(parse_header(&short_riff), None, "data overruns RIFF");
        let full = wav(&pcm_fmt(8000, 1), &[data]);
        for cut in 0..44 {
            assert_eq!(parse_header(&full[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn extra_chunks_before_data_are_skipped() {
        let w = wav(
            &pcm_fmt(16000, 2),
            &[
                (b"LIST", b"INFOINAM\x03\x00\x00\x00abc\x00"),
                (b"junk", b"odd"),
                (b"fact", &[4, 0, 0, 0]),
                (b"data", &[0; 8]),
            ],
        );
        let h = parse_header(&w).unwrap();
        assert_eq!((h.rate, h.channels, h.data_len), (16000, 2, 8));
        assert_eq!(&w[h.data_start - 8..h.data_start - 4], b"data");
    }

    /// Deterministic full-range samples (xorshift), so G.711 and the encoders see every
    /// kind of value.
    fn noise(len: usize) -> Vec<i16> {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 16) as i16
            })
            .collect()
    }

    fn le(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn extensible_fmt(rate: u32, channels: u16, mask: u32) -> Vec<u8> {
        let mut f = pcm_fmt(rate, channels);
        f[0..2].copy_from_slice(&0xFFFEu16.to_le_bytes());
        f.extend_from_slice(&22u16.to_le_bytes());
        f.extend_from_slice(&16u16.to_le_bytes());
        f.extend_from_slice(&mask.to_le_bytes());
        f.extend_from_slice(&SUBTYPE_PCM);
        f
    }

    /// The inputs of the identity test: name, bytes, whether the fast path must take it.
    fn inputs() -> Vec<(&'static str, Vec<u8>, bool)> {
        let mono = le(&noise(12_345));
        let stereo = le(&noise(2 * 7_777));
        let info: (&[u8; 4], &[u8]) = (b"LIST", b"INFOINAM\x05\x00\x00\x00call1\x00");
        let mut odd_byte = mono.clone();
        odd_byte.push(0x7F);
        let mut partial_frame = stereo.clone();
        partial_frame.extend_from_slice(&[1, 2]);
        let mut streaming = wav(&pcm_fmt(8000, 1), &[(b"data", &mono)]);
        streaming[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        streaming[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut zero_size = wav(&pcm_fmt(8000, 1), &[(b"data", &mono)]);
        zero_size[40..44].copy_from_slice(&0u32.to_le_bytes());
        let mut truncated = wav(&pcm_fmt(16000, 2), &[(b"data", &stereo)]);
        truncated.truncate(44 + 4 * 5_000 + 3);
        let mut truncated_odd = wav(&pcm_fmt(8000, 1), &[(b"data", &mono)]);
        truncated_odd.truncate(44 + 2 * 1_000 + 1);
        vec![
            ("mono", wav(&pcm_fmt(8000, 1), &[(b"data", &mono)]), true),
            (
                "stereo",
                wav(&pcm_fmt(16000, 2), &[(b"data", &stereo)]),
                true,
            ),
            (
                "odd byte",
                wav(&pcm_fmt(8000, 1), &[(b"data", &odd_byte)]),
                true,
            ),
            (
                "partial frame",
                wav(&pcm_fmt(16000, 2), &[(b"data", &partial_frame)]),
                true,
            ),
            (
                "LIST before and after",
                wav(
                    &pcm_fmt(8000, 1),
                    &[info, (b"junk", b"odd"), (b"data", &mono), info],
                ),
                true,
            ),
            (
                "extensible",
                wav(&extensible_fmt(16000, 2, 3), &[(b"data", &stereo)]),
                true,
            ),
            ("truncated mid-frame", truncated, true),
            ("truncated at an odd byte", truncated_odd, true),
            ("data size 0xFFFFFFFF", streaming, false),
            ("data size 0", zero_size, false),
            (
                "odd LIST",
                wav(&pcm_fmt(8000, 1), &[(b"LIST", b"adtlx"), (b"data", &mono)]),
                false,
            ),
        ]
    }

    /// Transcodes `bytes` three ways: from a reader and from a file (both may take the fast
    /// path) and through symphonia alone. Each gives the report (or error) and the file.
    fn three_ways(
        dir: &std::path::Path,
        bytes: &[u8],
        spec: &crate::media::audio::VoiceSpec,
    ) -> [(String, Vec<u8>); 3] {
        use crate::media::audio::{Decoder, run, transcode, transcode_file};
        let input = dir.join("in.wav");
        std::fs::write(&input, bytes).unwrap();
        let outcome = |name: &str, f: &dyn Fn(&mut std::fs::File) -> Result<_, _>| {
            let path = dir.join(name);
            let mut out = std::fs::File::create(&path).unwrap();
            let report = match f(&mut out) {
                Ok(r) => format!("{r:?}"),
                Err(e) => format!("error: {e}"),
            };
            (report, std::fs::read(&path).unwrap())
        };
        [
            outcome("reader", &|out| {
                transcode(Cursor::new(bytes.to_vec()), Some("wav"), spec, out)
            }),
            outcome("file", &|out| {
                transcode_file(std::fs::File::open(&input).unwrap(), Some("wav"), spec, out)
            }),
            outcome("general", &|out| {
                run(
                    Decoder::open(Cursor::new(bytes.to_vec()), Some("wav"))?,
                    spec,
                    out,
                )
            }),
        ]
    }

    /// The guard of the fast path: for every output format, with and without a rate or channel
    /// change, its output and report are those of the general path.
    #[test]
    fn the_fast_path_gives_the_general_paths_bytes() {
        use crate::media::audio::{VoiceFormat, VoiceSpec};
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes, fast) in inputs() {
            assert_eq!(parse_header(&bytes).is_some(), fast, "{name}");
            let channels = parse_header(&bytes).map_or(1, |h| h.channels);
            for format in VoiceFormat::ALL {
                for (rate, channels) in [
                    (None, None),
                    (None, Some(3 - channels)),
                    (Some(16000), None),
                ] {
                    let spec = VoiceSpec {
                        format,
                        rate,
                        channels,
                    };
                    let [reader, file, general] = three_ways(dir.path(), &bytes, &spec);
                    let what = format!("{name}, {format}, {rate:?} Hz, {channels:?} ch");
                    assert_eq!(reader.0, general.0, "{what}: reader report");
                    assert_eq!(file.0, general.0, "{what}: file report");
                    assert!(reader.1 == general.1, "{what}: reader output differs");
                    assert!(file.1 == general.1, "{what}: file output differs");
                    // Fallback inputs may fail (symphonia misreads an odd LIST); ours must not.
                    assert!(
                        !fast || !general.0.starts_with("error"),
                        "{what}: {}",
                        general.0
                    );
                }
            }
        }
    }

    /// Longer than the peeked prefix and many read blocks, every 16-bit value included.
    #[test]
    fn a_long_file_gives_the_general_paths_bytes() {
        use crate::media::audio::{VoiceFormat, VoiceSpec};
        let dir = tempfile::tempdir().unwrap();
        let mut samples: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        samples.extend(noise(300_001));
        let bytes = wav(&pcm_fmt(8000, 1), &[(b"data", &le(&samples))]);
        assert!(bytes.len() > PEEK + 8 * READ_BLOCK);
        for format in [
            VoiceFormat::WavUlaw,
            VoiceFormat::WavAlaw,
            VoiceFormat::WavPcm16,
            VoiceFormat::Flac,
        ] {
            let spec = VoiceSpec {
                format,
                rate: None,
                channels: None,
            };
            let [reader, file, general] = three_ways(dir.path(), &bytes, &spec);
            assert_eq!(reader.0, general.0, "{format}");
            assert_eq!(file.0, general.0, "{format}");
            assert!(reader.1 == general.1, "{format}: reader output differs");
            assert!(file.1 == general.1, "{format}: file output differs");
        }
    }

    /// With no `voice_rate`, the output keeps the input's rate, which a hostile header sets:
    /// a WAV output whose bytes per second do not fit its header's 32 bits is refused, never
    /// written with a wrapped (lying) value or a panic.
    #[test]
    fn an_input_rate_too_high_for_a_wav_header_is_refused() {
        use crate::media::audio::{AudioError, VoiceFormat, VoiceSpec, transcode};
        let dir = tempfile::tempdir().unwrap();
        let mut fmt = pcm_fmt(8000, 2);
        fmt[4..8].copy_from_slice(&0x8000_0000u32.to_le_bytes());
        let bytes = wav(&fmt, &[(b"data", &[1, 0, 2, 0])]);
        assert!(parse_header(&bytes).is_some(), "the fast path takes it");
        for format in [
            VoiceFormat::WavPcm16,
            VoiceFormat::WavUlaw,
            VoiceFormat::WavAlaw,
        ] {
            let spec = VoiceSpec {
                format,
                rate: None,
                channels: None,
            };
            let mut out = std::fs::File::create(dir.path().join("out.wav")).unwrap();
            let err =
                transcode(Cursor::new(bytes.clone()), Some("wav"), &spec, &mut out).unwrap_err();
            assert!(
                matches!(&err, AudioError::Unsupported { reason }
                    if reason.contains("2147483648 Hz")),
                "{format}: {err}"
            );
        }
    }

    #[test]
    fn a_truncated_stream_keeps_whole_frames_only() {
        let header = Header {
            rate: 8000,
            channels: 2,
            data_start: 0,
            data_len: 4 * READ_BLOCK as u32,
        };
        let bytes = vec![7u8; READ_BLOCK + 4 * 1000 + 3];
        let mut r = PcmReader::new(header, Cursor::new(bytes).chain(std::io::empty()));
        assert_eq!(r.next_block().unwrap().unwrap().len(), READ_BLOCK);
        assert_eq!(r.next_block().unwrap().unwrap().len(), 4 * 1000);
        assert!(r.next_block().unwrap().is_none());
    }
}
