//! WAV input, through the 16-bit PCM fast path or symphonia's WAV reader (which also reads
//! G.711 µ-law and A-law input), to every output format. `transcode` must give exactly what the
//! general path gives (symphonia's decoder, the resampler, the encoder): the same report and
//! the same bytes, or an error from both. The first byte picks the output; the rest is the file.
#![no_main]

use std::io::{Cursor, Read, Seek, SeekFrom};

use custodian::media::audio::{
    AudioError, AudioReport, Decoder, Encoder, Resampler, VoiceFormat, VoiceSpec, transcode,
};
use libfuzzer_sys::fuzz_target;

/// The general path, as `transcode` takes it for anything that is not 16-bit PCM WAV.
fn general(input: &[u8], spec: &VoiceSpec, out: &std::fs::File) -> Result<AudioReport, AudioError> {
    let mut decoder = Decoder::open(Cursor::new(input.to_vec()), Some("wav"))?;
    let rate = spec.rate.unwrap_or(decoder.rate());
    let channels = spec.channels.unwrap_or(decoder.channels());
    if channels > 8 {
        return Err(AudioError::Unsupported {
            reason: format!("{channels} channels"),
        });
    }
    let mut convert = Resampler::new(decoder.rate(), decoder.channels(), rate, channels)?;
    let mut encoder = Encoder::new(spec.format, rate, channels, out.try_clone()?)?;
    while let Some(block) = decoder.next_block()? {
        encoder.write(convert.process(block)?)?;
    }
    encoder.write(convert.flush()?)?;
    Ok(AudioReport {
        input_rate: decoder.rate(),
        input_channels: decoder.channels(),
        rate,
        channels,
        frames: encoder.finish()?,
    })
}

fn contents(mut file: &std::fs::File) -> Vec<u8> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0)).expect("seek");
    file.read_to_end(&mut bytes).expect("read back");
    bytes
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, input)) = data.split_first() else {
        return;
    };
    if input.get(0..4) != Some(b"RIFF") || input.get(8..12) != Some(b"WAVE") {
        return;
    }
    let spec = VoiceSpec {
        format: VoiceFormat::ALL[usize::from(choice & 7) % VoiceFormat::ALL.len()],
        rate: [None, Some(8000), Some(16000), None][usize::from(choice >> 3 & 3)],
        channels: [None, Some(1), Some(2), None][usize::from(choice >> 5 & 3)],
    };
    let fast_out = tempfile::tempfile().expect("temporary file");
    let fast = transcode(
        Cursor::new(input.to_vec()),
        Some("wav"),
        &spec,
        &mut fast_out.try_clone().expect("clone"),
    );
    let general_out = tempfile::tempfile().expect("temporary file");
    let slow = general(input, &spec, &general_out);
    match (&fast, &slow) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "reports differ");
            assert!(
                contents(&fast_out) == contents(&general_out),
                "outputs differ"
            );
        }
        (Err(_), Err(_)) => {}
        _ => panic!("transcode {fast:?} but the general path {slow:?}"),
    }
});
