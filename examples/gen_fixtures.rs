//! Regenerates the demo media repository `fixtures/demo/repo/` (deleted and written anew) and
//! its keystore `fixtures/demo/keystore.json` (mode 600).
//!
//! Run from anywhere in the crate: `cargo run --example gen_fixtures`. It needs `ffmpeg` on
//! PATH for the screen recording. Everything is deterministic (fixed seeds, fixed nonce
//! prefixes, a fixed demo key), so a rerun with the same ffmpeg and LAME writes the same bytes.
//!
//! Content, two tenants in different offsets (`acme` +01:00, `globex` -05:00/-04:00):
//! - voice calls with speech-like audio: 8 kHz mono WAV, a 16 kHz stereo WAV, MP3s (LAME),
//!   IVR and QM recordings, transcripts and metadata (XML, JSON); one call longer than 2 h
//!   (by its CDR); one confidential, one under legal hold, one imported (twilio);
//! - exactly one conversation whose audio is encrypted (format v1, key `demo-key-1`);
//! - IM conversations (`skype_for_business` with a PDF and a PNG attachment, `symphony`);
//! - a screen share with a small H.264 MP4;
//! - two CDR-only trader-voice records on channel `turret-0042`, whose three 20 s segments
//!   have a 2 s recorder gap, the middle segment encrypted.

mod common;

use std::fs;
use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use base64::Engine;
use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use custodian::media::crypto::{NONCE_PREFIX_LEN, encrypt_stream_with_prefix};
use custodian::repository::record::{
    Artifact, ArtifactType, AudioRecordingType, Conversation, ConversationType, Direction,
    Encryption, Flags, Participant, RECORD_FILE, Role, SCHEMA_VERSION,
};
use custodian::repository::segment::Segment;
use mp3lame_encoder::{Bitrate, Builder, FlushNoGap, MonoPcm, Quality};
use serde_json::json;
use sha2::{Digest, Sha256};

use common::speech;

const KEY_ID: &str = "demo-key-1";
/// The demo key. Fixed so the fixtures are byte-stable; it protects nothing.
const KEY: [u8; 32] = *b"custodian demo key - not secret!";
/// Plaintext bytes per encrypted chunk: the smallest allowed, so each encrypted fixture spans
/// many chunks.
const CHUNK_SIZE: u32 = 4096;
/// Sample rate of the turret channel recordings.
const CHANNEL_RATE: u32 = 8000;

type NoncePrefix = [u8; NONCE_PREFIX_LEN];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_fixtures: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo");
    let mut repo = Repo {
        root: demo.join("repo"),
        conversations: 0,
        files: 0,
        bytes: 0,
    };
    if repo.root.exists() {
        fs::remove_dir_all(&repo.root)
            .with_context(|| format!("removing {}", repo.root.display()))?;
    }
    acme(&mut repo)?;
    globex(&mut repo)?;
    let keystore = write_keystore(&demo)?;
    println!(
        "wrote {} conversations, {} files, {} bytes under {}; keystore {}",
        repo.conversations,
        repo.files,
        repo.bytes,
        repo.root.display(),
        keystore.display()
    );
    Ok(())
}

fn acme(repo: &mut Repo) -> Result<()> {
    let mut c = conversation(
        "acme",
        "acme-v-0001",
        ConversationType::Voice,
        "cisco",
        Direction::Inbound,
        "2026-01-12T09:15:00+01:00",
        3,
    );
    c.participants = vec![
        line("+442071234567", Role::Customer),
        person("alice", "1001", Role::Agent),
    ];
    repo.conversation(
        c,
        vec![
            File::audio(
                "customer.wav",
                AudioRecordingType::ConferenceCustomer,
                wav(&speech(101, 8000, 3.0), 1, 8000)?,
            ),
            File::audio(
                "agent.wav",
                AudioRecordingType::ConferenceAgent,
                wav(&speech(102, 8000, 3.0), 1, 8000)?,
            ),
            File::new(
                "transcript.txt",
                ArtifactType::Transcript,
                "[00:00.2] customer: Hello, I am calling about my last invoice.\n\
                 [00:01.6] alice: Of course, can I have the account number please?\n",
            ),
            File::new(
                "metadata.xml",
                ArtifactType::Metadata,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                 <call id=\"acme-v-0001\" platform=\"cisco\">\n  \
                 <ani>+442071234567</ani>\n  <dnis>1001</dnis>\n  \
                 <queue>support-uk</queue>\n  <wrapup>resolved</wrapup>\n</call>\n",
            ),
        ],
    )?;

    let mut c = conversation(
        "acme",
        "acme-v-0002",
        ConversationType::Voice,
        "teams",
        Direction::Outbound,
        "2026-01-14T16:40:10+01:00",
        2,
    );
    c.participants = vec![
        person("bob", "1002", Role::Caller),
        line("+33142685300", Role::Callee),
    ];
    c.flags.confidential = true;
    let (left, right) = (speech(201, 16000, 2.0), speech(202, 16000, 2.0));
    let stereo: Vec<i16> = left
        .iter()
        .zip(&right)
        .flat_map(|(l, r)| [*l, *r])
        .collect();
    repo.conversation(
        c,
        vec![
            File::audio(
                "recording.wav",
                AudioRecordingType::ConferenceCustomer,
                wav(&stereo, 2, 16000)?,
            ),
            File::new(
                "qm.mp3",
                ArtifactType::QmAudioRecording,
                mp3(&speech(203, 16000, 2.0), 16000)?,
            ),
        ],
    )?;

    let mut c = conversation(
        "acme",
        "acme-v-0003",
        ConversationType::Voice,
        "cisco",
        Direction::Inbound,
        "2026-02-03T11:05:30+01:00",
        4,
    );
    c.participants = vec![
        line("+441614960000", Role::Customer),
        line("7000", Role::Callee),
        person("carol", "1003", Role::Agent),
    ];
    c.flags.legal_hold = true;
    repo.conversation(
        c,
        vec![
            File::audio(
                "ivr.wav",
                AudioRecordingType::IvrSnippet,
                wav(&speech(301, 8000, 2.0), 1, 8000)?,
            ),
            File::audio(
                "call.mp3",
                AudioRecordingType::ConferenceCustomer,
                mp3(&speech(302, 8000, 4.0), 8000)?,
            ),
        ],
    )?;

    // The CDR says 2 h 21 min 30 s; the QM sample kept of it is a few seconds.
    let mut c = conversation(
        "acme",
        "acme-v-0004",
        ConversationType::Voice,
        "avaya",
        Direction::Internal,
        "2026-02-03T14:00:00+01:00",
        2 * 3600 + 21 * 60 + 30,
    );
    c.participants = vec![
        person("dave", "1004", Role::Organizer),
        person("erin", "1005", Role::Participant),
        person("frank", "1006", Role::Participant),
    ];
    repo.conversation(
        c,
        vec![
            File::audio(
                "recording.mp3",
                AudioRecordingType::QualityManagement,
                mp3(&speech(401, 8000, 5.0), 8000)?,
            ),
            File::new(
                "metadata.json",
                ArtifactType::Metadata,
                pretty(&json!({"bridge": "avaya-cm-1", "conference_id": "88231", "legs": 3}))?,
            ),
        ],
    )?;

    let mut c = conversation(
        "acme",
        "acme-im-0001",
        ConversationType::Im,
        "skype_for_business",
        Direction::Internal,
        "2026-02-17T10:02:00+01:00",
        17 * 60 + 45,
    );
    c.participants = vec![
        user("alice@acme.example", Role::Organizer),
        user("bob@acme.example", Role::Participant),
    ];
    repo.conversation(
        c,
        vec![
            File::new(
                "conversation.html",
                ArtifactType::MessagingTranscript,
                "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>acme-im-0001</title></head>\n\
                 <body>\n<p><b>10:02 alice@acme.example</b>: Bob, the Q1 numbers are in.</p>\n\
                 <p><b>10:03 alice@acme.example</b>: sent <a href=\"q1-report.pdf\">q1-report.pdf</a></p>\n\
                 <p><b>10:05 bob@acme.example</b>: Thanks. Chart for the deck: \
                 <a href=\"chart.png\">chart.png</a></p>\n\
                 <p><b>10:19 alice@acme.example</b>: Looks good.</p>\n</body></html>\n",
            ),
            File::new("q1-report.pdf", ArtifactType::Attachment, pdf("ACME Q1 2026 report")),
            File::new("chart.png", ArtifactType::Attachment, chart_png()?),
        ],
    )?;

    let mut c = conversation(
        "acme",
        "acme-ss-0001",
        ConversationType::ScreenShare,
        "teams",
        Direction::Internal,
        "2026-02-24T15:30:00+01:00",
        2,
    );
    c.participants = vec![
        person("erin", "1005", Role::Organizer),
        person("frank", "1006", Role::Participant),
    ];
    repo.conversation(
        c,
        vec![File::new(
            "screen.mp4",
            ArtifactType::ScreenRecording,
            screen_mp4()?,
        )],
    )?;

    // Channel turret-0042 records 07:30:00Z..07:30:40Z, has a gap, then 07:30:42Z..07:31:02Z;
    // segment times are UTC while the CDRs are +01:00.
    let channel = "turret-0042";
    repo.segment("acme", channel, "2026-03-02T07:30:00Z", 20.0, 501, None)?;
    repo.segment(
        "acme",
        channel,
        "2026-03-02T07:30:20Z",
        20.0,
        502,
        Some(*b"demo-s2"),
    )?;
    repo.segment("acme", channel, "2026-03-02T07:30:42Z", 20.0, 503, None)?;
    for (id, direction, start, seconds, counterparty) in [
        (
            "acme-tv-0001",
            Direction::Outbound,
            "2026-03-02T08:30:05+01:00",
            45,
            "+442079460000",
        ),
        (
            "acme-tv-0002",
            Direction::Inbound,
            "2026-03-02T08:30:52+01:00",
            8,
            "+41445550123",
        ),
    ] {
        let mut c = conversation(
            "acme",
            id,
            ConversationType::TraderVoice,
            "ipc",
            direction,
            start,
            seconds,
        );
        c.participants = vec![
            person("grace", "4201", Role::Trader),
            line(counterparty, Role::Counterparty),
        ];
        c.flags.cdr_only = true;
        c.channel = Some(channel.to_owned());
        repo.conversation(c, Vec::new())?;
    }
    Ok(())
}

fn globex(repo: &mut Repo) -> Result<()> {
    // 22:45 in New York is already the next day in UTC.
    let mut c = conversation(
        "globex",
        "globex-v-0001",
        ConversationType::Voice,
        "avaya",
        Direction::Inbound,
        "2026-01-20T22:45:00-05:00",
        4,
    );
    c.participants = vec![
        line("+12125550143", Role::Customer),
        person("henry", "2001", Role::Agent),
    ];
    repo.conversation(
        c,
        vec![
            File::audio(
                "call.wav",
                AudioRecordingType::ConferenceCustomer,
                wav(&speech(601, 8000, 4.0), 1, 8000)?,
            )
            .encrypted(*b"demo-c1"),
            File::new(
                "metadata.json",
                ArtifactType::Metadata,
                pretty(&json!({"queue": "after-hours", "skill": "billing", "hold_seconds": 0}))?,
            ),
        ],
    )?;

    let mut c = conversation(
        "globex",
        "globex-v-0002",
        ConversationType::Voice,
        "twilio",
        Direction::Outbound,
        "2026-02-09T13:12:00-05:00",
        3,
    );
    c.participants = vec![
        person("ivan", "2002", Role::Caller),
        line("+13125550199", Role::Callee),
    ];
    c.flags.imported = true;
    repo.conversation(
        c,
        vec![
            File::audio(
                "recording.mp3",
                AudioRecordingType::ConferenceAgent,
                mp3(&speech(701, 8000, 3.0), 8000)?,
            ),
            File::new(
                "transcript.txt",
                ArtifactType::Transcript,
                "[00:00.1] ivan: Hi, this is Ivan from Globex returning your call.\n\
                 [00:01.8] callee: Thanks for getting back to me.\n",
            ),
        ],
    )?;

    let mut c = conversation(
        "globex",
        "globex-v-0003",
        ConversationType::Voice,
        "cisco",
        Direction::Internal,
        "2026-03-10T09:00:00-04:00",
        3,
    );
    c.participants = vec![
        person("judy", "2003", Role::Organizer),
        person("ivan", "2002", Role::Participant),
        person("henry", "2001", Role::Participant),
        line("2999", Role::Participant),
    ];
    repo.conversation(
        c,
        vec![
            File::audio(
                "conference.wav",
                AudioRecordingType::ConferenceAgent,
                wav(&speech(801, 8000, 3.0), 1, 8000)?,
            ),
            File::new(
                "transcript.txt",
                ArtifactType::Transcript,
                "[00:00.3] judy: Morning all, quick stand-up.\n\
                 [00:01.5] ivan: Nothing blocking on my side.\n",
            ),
        ],
    )?;

    let mut c = conversation(
        "globex",
        "globex-im-0001",
        ConversationType::Im,
        "symphony",
        Direction::Inbound,
        "2026-03-11T17:20:00-04:00",
        6 * 60,
    );
    c.participants = vec![
        user("trader@counterparty.example", Role::Counterparty),
        user("kate@globex.example", Role::Trader),
    ];
    repo.conversation(
        c,
        vec![File::new(
            "chat.txt",
            ArtifactType::MessagingTranscript,
            "2026-03-11T17:20:00-04:00 trader@counterparty.example: Can you show 5y EUR swaps?\n\
             2026-03-11T17:21:30-04:00 kate@globex.example: 2.41 / 2.44, firm for 5 minutes.\n\
             2026-03-11T17:25:50-04:00 trader@counterparty.example: Pass for now, thanks.\n",
        )],
    )?;
    Ok(())
}

/// Where the fixtures go, and what has been written so far.
struct Repo {
    root: PathBuf,
    conversations: usize,
    files: usize,
    bytes: u64,
}

/// How a file was stored.
struct Stored {
    size: u64,
    sha256: String,
    encryption: Option<Encryption>,
}

impl Repo {
    /// Writes the files into the conversation's directory, lists them as its artifacts and
    /// writes its validated conversation.json.
    fn conversation(&mut self, mut c: Conversation, files: Vec<File>) -> Result<()> {
        let dir = self
            .root
            .join(&c.tenant)
            .join(c.start.format("%Y/%m/%d").to_string())
            .join(&c.id);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for f in files {
            let stored = self.store(&dir.join(f.name), &f.bytes, f.encrypt)?;
            c.artifacts.push(Artifact {
                file: f.name.to_owned(),
                kind: f.kind,
                audio_type: f.audio_type,
                size: stored.size,
                sha256: stored.sha256,
                encryption: stored.encryption,
            });
        }
        c.validate()
            .with_context(|| format!("conversation {} is invalid", c.id))?;
        self.store(&dir.join(RECORD_FILE), &pretty(&c)?, None)?;
        self.conversations += 1;
        Ok(())
    }

    /// Writes one 8 kHz mono WAV segment of `channel` and its segment record.
    fn segment(
        &mut self,
        tenant: &str,
        channel: &str,
        start: &str,
        seconds: f64,
        seed: u64,
        encrypt: Option<NoncePrefix>,
    ) -> Result<()> {
        let start = at(start);
        let dir = self.root.join(tenant).join("channels").join(channel);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let stem = format!(
            "{channel}_{}",
            start.with_timezone(&Utc).format("%Y%m%dT%H%M%SZ")
        );
        let samples = speech(seed, CHANNEL_RATE, seconds);
        let file = format!("{stem}.wav");
        let stored = self.store(&dir.join(&file), &wav(&samples, 1, CHANNEL_RATE)?, encrypt)?;
        let segment = Segment {
            schema: SCHEMA_VERSION,
            channel: channel.to_owned(),
            file,
            start,
            sample_rate: CHANNEL_RATE,
            channels: 1,
            frames: samples.len() as u64,
            size: stored.size,
            sha256: stored.sha256,
            encryption: stored.encryption,
        };
        let json = pretty(&segment)?;
        Segment::from_json(&json).map_err(anyhow::Error::msg)?;
        self.store(&dir.join(format!("{stem}.json")), &json, None)?;
        Ok(())
    }

    /// Writes `plain` to `path`, encrypted with the demo key when a nonce prefix is given.
    fn store(&mut self, path: &Path, plain: &[u8], encrypt: Option<NoncePrefix>) -> Result<Stored> {
        let (bytes, encryption) = match encrypt {
            Some(prefix) => {
                let mut sealed = Vec::new();
                encrypt_stream_with_prefix(
                    &KEY,
                    KEY_ID,
                    CHUNK_SIZE,
                    prefix,
                    &mut &plain[..],
                    &mut sealed,
                )
                .with_context(|| format!("encrypting {}", path.display()))?;
                let encryption = Encryption {
                    key_id: KEY_ID.to_owned(),
                };
                (sealed, Some(encryption))
            }
            None => (plain.to_vec(), None),
        };
        fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        self.files += 1;
        self.bytes += bytes.len() as u64;
        Ok(Stored {
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
            encryption,
        })
    }
}

/// One artifact of a conversation, before it is written.
struct File {
    name: &'static str,
    kind: ArtifactType,
    audio_type: Option<AudioRecordingType>,
    bytes: Vec<u8>,
    /// Nonce prefix when the file is stored encrypted; never reused under the demo key.
    encrypt: Option<NoncePrefix>,
}

impl File {
    fn new(name: &'static str, kind: ArtifactType, bytes: impl Into<Vec<u8>>) -> File {
        File {
            name,
            kind,
            audio_type: None,
            bytes: bytes.into(),
            encrypt: None,
        }
    }

    fn audio(name: &'static str, audio_type: AudioRecordingType, bytes: Vec<u8>) -> File {
        File {
            audio_type: Some(audio_type),
            ..File::new(name, ArtifactType::AudioRecording, bytes)
        }
    }

    fn encrypted(self, prefix: NoncePrefix) -> File {
        File {
            encrypt: Some(prefix),
            ..self
        }
    }
}

/// A fixed instant from an RFC 3339 literal in this file.
fn at(rfc3339: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(rfc3339).expect("RFC 3339 literal")
}

/// A record without participants, flags or artifacts, ending `seconds` after `start`.
fn conversation(
    tenant: &str,
    id: &str,
    kind: ConversationType,
    platform: &str,
    direction: Direction,
    start: &str,
    seconds: i64,
) -> Conversation {
    let start = at(start);
    Conversation {
        schema: SCHEMA_VERSION,
        id: id.to_owned(),
        tenant: tenant.to_owned(),
        kind,
        source_platform: platform.to_owned(),
        direction,
        start,
        end: start + TimeDelta::seconds(seconds),
        participants: Vec::new(),
        flags: Flags::default(),
        channel: None,
        artifacts: Vec::new(),
    }
}

fn person(user: &str, extension: &str, role: Role) -> Participant {
    Participant {
        user: Some(user.to_owned()),
        extension: Some(extension.to_owned()),
        role,
    }
}

fn line(extension: &str, role: Role) -> Participant {
    Participant {
        user: None,
        extension: Some(extension.to_owned()),
        role,
    }
}

fn user(user: &str, role: Role) -> Participant {
    Participant {
        user: Some(user.to_owned()),
        extension: None,
        role,
    }
}

fn pretty(value: &impl serde::Serialize) -> Result<Vec<u8>> {
    let mut json = serde_json::to_vec_pretty(value)?;
    json.push(b'\n');
    Ok(json)
}

/// 16-bit PCM WAV of interleaved `samples`.
fn wav(samples: &[i16], channels: u16, rate: u32) -> Result<Vec<u8>> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut out, spec)?;
    for &s in samples {
        writer.write_sample(s)?;
    }
    writer.finalize()?;
    Ok(out.into_inner())
}

/// Mono CBR MP3 (no ID3 or LAME tag) at the input rate: 24 kbit/s at 8 kHz, 32 kbit/s above.
fn mp3(samples: &[i16], rate: u32) -> Result<Vec<u8>> {
    let lame = |e| anyhow::anyhow!("LAME: {e}");
    let mut builder = Builder::new().context("LAME: out of memory")?;
    builder.set_num_channels(1).map_err(lame)?;
    builder.set_sample_rate(rate).map_err(lame)?;
    builder
        .set_output_sample_rate(std::num::NonZeroU32::new(rate))
        .map_err(lame)?;
    let bitrate = if rate <= 8000 {
        Bitrate::Kbps24
    } else {
        Bitrate::Kbps32
    };
    builder.set_brate(bitrate).map_err(lame)?;
    builder.set_quality(Quality::Good).map_err(lame)?;
    builder.set_to_write_vbr_tag(false).map_err(lame)?;
    let mut encoder = builder.build().map_err(lame)?;
    let mut out = Vec::with_capacity(mp3lame_encoder::max_required_buffer_size(samples.len()));
    let encode = |e| anyhow::anyhow!("LAME: {e}");
    encoder
        .encode_to_vec(MonoPcm(samples), &mut out)
        .map_err(encode)?;
    out.reserve(7200);
    encoder
        .flush_to_vec::<FlushNoGap>(&mut out)
        .map_err(encode)?;
    Ok(out)
}

/// A one-page PDF showing `title`, with a correct cross-reference table.
fn pdf(title: &str) -> Vec<u8> {
    let text = format!("BT /F1 18 Tf 24 72 Td ({title}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 144] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!("<< /Length {} >>\nstream\n{text}\nendstream", text.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut out = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out += &format!("{} 0 obj\n{body}\nendobj\n", i + 1);
    }
    let xref = out.len();
    out += &format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        out += &format!("{offset:010} 00000 n \n");
    }
    out += &format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    );
    out.into_bytes()
}

/// A 48×24 RGB bar chart.
fn chart_png() -> Result<Vec<u8>> {
    const W: u32 = 48;
    const H: u32 = 24;
    const BARS: [(u32, [u8; 3]); 4] = [
        (10, [0x1f, 0x77, 0xb4]),
        (16, [0xff, 0x7f, 0x0e]),
        (13, [0x2c, 0xa0, 0x2c]),
        (21, [0xd6, 0x27, 0x28]),
    ];
    let mut pixels = Vec::with_capacity((W * H * 3) as usize);
    for y in 0..H {
        for x in 0..W {
            let (height, colour) = BARS[(x / 12) as usize];
            let inside = x % 12 >= 2 && x % 12 < 10 && H - y <= height;
            pixels.extend_from_slice(if inside { &colour } else { &[0xff; 3] });
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, W, H);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(out)
}

/// A 2 s 160×120 test-pattern MP4 made by ffmpeg, bit-exact so reruns match.
fn screen_mp4() -> Result<Vec<u8>> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("screen.mp4");
    let output = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=5",
            "-t",
            "2",
            "-pix_fmt",
            "yuv420p",
            "-threads",
            "1",
            "-fflags",
            "+bitexact",
            "-flags:v",
            "+bitexact",
            "-map_metadata",
            "-1",
        ])
        .arg(&path)
        .output();
    match output {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "ffmpeg is not on PATH; it makes the screen-recording fixture (apt-get install ffmpeg)"
        ),
        Err(e) => Err(e).context("running ffmpeg"),
        Ok(o) if !o.status.success() => bail!(
            "ffmpeg failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(_) => fs::read(&path).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the demo keystore, readable by its owner only.
fn write_keystore(demo: &Path) -> Result<PathBuf> {
    let path = demo.join("keystore.json");
    let key = base64::engine::general_purpose::STANDARD.encode(KEY);
    fs::write(&path, pretty(&json!({"keys": {KEY_ID: key}}))?)
        .with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 600 {}", path.display()))?;
    Ok(path)
}
