//! G.711 output: any 16-bit samples, at any rate and channel count, encode to a µ-law or A-law
//! WAV that a standard reader (symphonia) decodes back to the same frames, each sample within
//! G.711's quantisation step of the input. Byte 0 picks the law and channels, bytes 1..5 the
//! rate; the rest are little-endian samples.
#![no_main]

use std::io::{Read, Seek, SeekFrom};

use custodian::media::audio::{Decoder, Encoder, VoiceFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_at_checked(5) else {
        return;
    };
    let format = if head[0] & 1 == 0 {
        VoiceFormat::WavUlaw
    } else {
        VoiceFormat::WavAlaw
    };
    let channels = u16::from(head[0] >> 1 & 7) + 1;
    let rate = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    let mut samples: Vec<i16> = body
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    samples.truncate(samples.len() / usize::from(channels) * usize::from(channels));

    let mut out = tempfile::tempfile().expect("temporary file");
    let Ok(mut encoder) = Encoder::new(format, rate, channels, out.try_clone().expect("clone"))
    else {
        let byte_rate = u64::from(rate) * u64::from(channels);
        assert!(
            rate == 0 || byte_rate > u64::from(u32::MAX),
            "only a zero rate, or one whose bytes per second overflow the header, is refused"
        );
        return;
    };
    encoder.write_i16(&samples).expect("encode");
    let frames = encoder.finish().expect("finish");
    assert_eq!(frames as usize, samples.len() / usize::from(channels));

    let mut file = Vec::new();
    out.seek(SeekFrom::Start(0)).expect("seek");
    out.read_to_end(&mut file).expect("read back");
    let mut decoder = Decoder::open(std::io::Cursor::new(file), Some("wav")).expect("readable");
    assert_eq!((decoder.rate(), decoder.channels()), (rate, channels));
    let mut decoded = Vec::new();
    while let Some(block) = decoder.next_block().expect("decodes") {
        decoded.extend_from_slice(block);
    }
    assert_eq!(decoded.len(), samples.len());
    for (i, (&x, &y)) in samples.iter().zip(&decoded).enumerate() {
        let back = f64::from(y) * 32768.0;
        let error = (back - f64::from(x)).abs();
        let step = 16.0 + f64::from(x).abs() / 16.0;
        assert!(error <= step, "sample {i}: {x} came back as {back}");
    }
});
