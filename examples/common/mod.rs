//! Shared by the generator examples (`gen_fixtures`, `synth`): a seeded PRNG and a speech-like
//! test signal, so every generated recording is deterministic and sounds like a voice call to
//! anything that looks at levels, pauses or spectra.

use std::f64::consts::TAU;

/// SplitMix64: tiny, fast and good enough for test data. Not for anything secret.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * unit
    }
}

/// Most harmonics summed per sample; speech has little energy above them and the cap keeps
/// high sample rates cheap.
const MAX_HARMONICS: usize = 40;

/// `seconds` of a speech-like signal at `rate` Hz, different for every seed: voiced syllables
/// (harmonics of a gliding fundamental, shaped by two formants, under a raised-cosine envelope)
/// separated by pauses. It starts and ends in silence, so pieces can be joined without clicks.
pub fn speech(seed: u64, rate: u32, seconds: f64) -> Vec<i16> {
    let mut rng = Rng::new(seed);
    let rate = f64::from(rate);
    let n = (rate * seconds).round() as usize;
    let mut out = vec![0i16; n];
    let f0_base = rng.range(95.0, 220.0);
    let mut at = (rng.range(0.02, 0.15) * rate) as usize;
    while at < n {
        let len = ((rng.range(0.12, 0.35) * rate) as usize).clamp(1, n - at);
        let f0_from = f0_base * rng.range(0.85, 1.15);
        let f0_to = f0_base * rng.range(0.85, 1.15);
        let (f1, f2) = (rng.range(300.0, 850.0), rng.range(900.0, 2400.0));
        let gain = rng.range(0.25, 0.6) * f64::from(i16::MAX);
        // Formant weights change slowly with the glide, so they are taken at the mean pitch.
        let f0_mean = f64::midpoint(f0_from, f0_to);
        let harmonics = ((0.45 * rate / f0_mean) as usize).clamp(1, MAX_HARMONICS);
        let weights: Vec<f64> = (1..=harmonics)
            .map(|h| {
                let f = h as f64 * f0_mean;
                let peak = |centre: f64, width: f64| (-((f - centre) / width).powi(2)).exp();
                peak(f1, 90.0) + 0.7 * peak(f2, 150.0) + 0.05 / h as f64
            })
            .collect();
        let norm: f64 = weights.iter().sum();
        let mut phase = 0.0f64;
        for (k, sample) in out[at..at + len].iter_mut().enumerate() {
            let x = k as f64 / len as f64;
            phase = (phase + TAU * (f0_from + (f0_to - f0_from) * x) / rate) % TAU;
            let voiced: f64 = weights
                .iter()
                .enumerate()
                .map(|(h, w)| w * ((h + 1) as f64 * phase).sin())
                .sum();
            let envelope = (std::f64::consts::PI * x).sin().powi(2);
            *sample = (gain * envelope * voiced / norm) as i16;
        }
        at += len + (rng.range(0.04, 0.3) * rate) as usize;
    }
    out
}
