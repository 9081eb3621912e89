//! G.711 µ-law and A-law encoding of 16-bit linear PCM, bit-exact with sox.
//!
//! sox reduces a sample to 14 bits (µ-law) or 13 bits (A-law) by rounding to nearest, halves up,
//! saturating (its `SOX_SAMPLE_TO_SIGNED` macro, not a plain `x >> 2`), then applies Sun
//! Microsystems' public-domain `g711.c` (`sox_14linear2ulaw`, `sox_13linear2alaw`). We follow the
//! same arithmetic so that our WAV G.711 output matches sox byte for byte (a test checks all
//! 65,536 inputs against the real sox), and answer each sample from a 64 K table built at compile
//! time.

/// Upper ends of the µ-law segments, on the 14-bit magnitude after the bias is added.
const SEG_UEND: [i16; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
/// Upper ends of the A-law segments, on the 13-bit magnitude.
const SEG_AEND: [i16; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
/// µ-law bias (0x84) scaled to 14 bits.
const ULAW_BIAS: i16 = 0x84 >> 2;
/// Largest 14-bit magnitude µ-law represents.
const ULAW_CLIP: i16 = 8159;

/// The segment `value` falls in: the first whose upper end is at least `value`, or 8.
const fn segment(value: i16, ends: &[i16; 8]) -> i16 {
    let mut seg = 0;
    while seg < 8 && value > ends[seg] {
        seg += 1;
    }
    seg as i16
}

/// Sun's `linear2ulaw` on a 14-bit two's-complement sample (sox's `sox_14linear2ulaw`).
const fn ulaw_from_14bit(pcm: i16) -> u8 {
    let (magnitude, mask) = if pcm < 0 { (-pcm, 0x7F) } else { (pcm, 0xFF) };
    let clipped = if magnitude > ULAW_CLIP {
        ULAW_CLIP
    } else {
        magnitude
    };
    let magnitude = clipped + ULAW_BIAS;
    let seg = segment(magnitude, &SEG_UEND);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let code = ((seg << 4) | ((magnitude >> (seg + 1)) & 0xF)) as u8;
    code ^ mask
}

/// Sun's `linear2alaw` on a 13-bit two's-complement sample (sox's `sox_13linear2alaw`).
const fn alaw_from_13bit(pcm: i16) -> u8 {
    let (magnitude, mask) = if pcm >= 0 {
        (pcm, 0xD5)
    } else {
        (-pcm - 1, 0x55)
    };
    let seg = segment(magnitude, &SEG_AEND);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let shift = if seg < 2 { 1 } else { seg };
    let code = ((seg << 4) | ((magnitude >> shift) & 0xF)) as u8;
    code ^ mask
}

/// `x` reduced to `bits` bits as sox does: `x / 2^(16 - bits)` rounded half up, saturated.
const fn reduce(x: i16, bits: u32) -> i16 {
    let shift = 16 - bits;
    let max = (1i32 << (bits - 1)) - 1;
    let r = (x as i32 + (1 << (shift - 1))) >> shift;
    (if r > max { max } else { r }) as i16
}

/// One code byte for every 16-bit sample, indexed by the sample's bits as `u16`; built by the
/// compiler, so a process that encodes one file pays nothing for it.
const fn table(law: Law) -> [u8; 65536] {
    let mut table = [0u8; 65536];
    let mut bits = 0usize;
    while bits < 65536 {
        let x = bits as u16 as i16;
        table[bits] = match law {
            Law::Ulaw => ulaw_from_14bit(reduce(x, 14)),
            Law::Alaw => alaw_from_13bit(reduce(x, 13)),
        };
        bits += 1;
    }
    table
}

static ULAW: [u8; 65536] = table(Law::Ulaw);
static ALAW: [u8; 65536] = table(Law::Alaw);

/// Which G.711 companding law.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Law {
    /// µ-law (North America, Japan); WAVE format tag 7.
    Ulaw,
    /// A-law (Europe and most of the rest); WAVE format tag 6.
    Alaw,
}

impl Law {
    /// The 64 K table from 16-bit sample (as `u16`) to code byte.
    pub fn table(self) -> &'static [u8; 65536] {
        match self {
            Law::Ulaw => &ULAW,
            Law::Alaw => &ALAW,
        }
    }

    /// Encodes `samples` into `out` (cleared first), one byte per sample.
    pub fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        let table = self.table();
        out.clear();
        out.extend(samples.iter().map(|&s| table[s as u16 as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::audio::tests::{data_chunk, run_tool, write_wav_i16};

    #[test]
    fn ulaw_known_values() {
        // ITU-T G.711 / Sun reference points: silence, full scale, a mid-scale value.
        let t = Law::Ulaw.table();
        assert_eq!(t[0], 0xFF);
        // -1 rounds to 0 on the way to 14 bits; -3 rounds to -1.
        assert_eq!(t[(-1i16) as u16 as usize], 0xFF);
        assert_eq!(t[(-3i16) as u16 as usize], 0x7E);
        assert_eq!(t[32767], 0x80);
        assert_eq!(t[(-32768i16) as u16 as usize], 0x00);
        assert_eq!(t[1000], 0xCE);
        assert_eq!(t[(-1000i16) as u16 as usize], 0x4E);
    }

    #[test]
    fn alaw_known_values() {
        let t = Law::Alaw.table();
        assert_eq!(t[0], 0xD5);
        assert_eq!(t[(-1i16) as u16 as usize], 0xD5);
        assert_eq!(t[(-5i16) as u16 as usize], 0x55);
        assert_eq!(t[32767], 0xAA);
        assert_eq!(t[(-32768i16) as u16 as usize], 0x2A);
        assert_eq!(t[1000], 0xFA);
        assert_eq!(t[(-1000i16) as u16 as usize], 0x7A);
    }

    /// Every 16-bit value through sox and through us: the code bytes must be identical.
    fn exhaustive_against_sox(law: Law, encoding: &str) {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("all.wav");
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        write_wav_i16(&input, 8000, 1, &all);
        let output = dir.path().join(format!("{encoding}.wav"));
        run_tool(
            "sox",
            &[
                "-D".as_ref(),
                input.as_os_str(),
                "-e".as_ref(),
                encoding.as_ref(),
                output.as_os_str(),
            ],
        );
        let file = std::fs::read(&output).unwrap();
        let theirs = data_chunk(&file);
        let mut ours = Vec::new();
        law.encode(&all, &mut ours);
        assert_eq!(theirs.len(), ours.len());
        for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
            assert_eq!(a, b, "sample {}: ours {a:#04x}, sox {b:#04x}", all[i]);
        }
    }

    #[test]
    fn ulaw_matches_sox_for_every_16_bit_value() {
        exhaustive_against_sox(Law::Ulaw, "u-law");
    }

    #[test]
    fn alaw_matches_sox_for_every_16_bit_value() {
        exhaustive_against_sox(Law::Alaw, "a-law");
    }
}
