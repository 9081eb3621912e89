//! Synthetic media repository for benchmarks, in the layout of docs/repository.md.
//!
//! ```text
//! cargo run --release --example synth -- OUT_DIR --conversations N \
//!     [--seconds S] [--rate HZ] [--tenants T] [--days D] [--seed X]
//! ```
//!
//! Writes N conversations spread over T tenants and D days from 2026-01-01 (each tenant in its
//! own UTC offset), each with a conversation.json and either one mono 16-bit PCM WAV of S
//! seconds (an `audio_recording`, `conference_customer`) or, with `--seconds 0`, a ~200-byte
//! transcript, so a million conversations stay small. Type, platform, direction, participants
//! and flags vary deterministically with the seed, so filters have something to select; the
//! same arguments always write the same bytes. `OUT_DIR` must be absent or empty.

mod common;

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, FixedOffset, NaiveDate, TimeDelta, TimeZone};
use clap::{Parser, value_parser};
use custodian::repository::record::{
    Artifact, ArtifactType, AudioRecordingType, Conversation, ConversationType, Direction, Flags,
    Participant, RECORD_FILE, Role, SCHEMA_VERSION,
};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use common::{Rng, speech};

#[derive(Parser)]
#[command(about = "Write a synthetic media repository for benchmarks")]
struct Args {
    /// Directory to write the repository into (absent or empty).
    out_dir: PathBuf,
    /// Number of conversations.
    #[arg(long, value_parser = value_parser!(u64).range(1..))]
    conversations: u64,
    /// Length of each recording in seconds; 0 writes a small transcript instead of audio.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Sample rate of the recordings in Hz.
    #[arg(long, default_value_t = 8000, value_parser = value_parser!(u32).range(1000..=192_000))]
    rate: u32,
    /// Number of tenants.
    #[arg(long, default_value_t = 4, value_parser = value_parser!(u32).range(1..=1000))]
    tenants: u32,
    /// Number of days the conversations are spread over, from 2026-01-01.
    #[arg(long, default_value_t = 30, value_parser = value_parser!(u32).range(1..=3650))]
    days: u32,
    /// Seed of everything that varies.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Distinct one-second blocks of speech every recording is assembled from: synthesising each
/// recording would cost far more than writing it.
const BLOCKS: u64 = 64;

/// UTC offsets of the tenants, in seconds east, taken in turn.
const OFFSETS: [i32; 6] = [0, 3600, -5 * 3600, 9 * 3600, 5 * 3600 + 1800, -8 * 3600];

/// Conversation types, their platforms and their weights. Types with audio come first: the
/// last one (IM) is only drawn for repositories without audio.
const KINDS: [(ConversationType, &[&str], u64); 4] = [
    (
        ConversationType::Voice,
        &["cisco", "avaya", "teams", "genesys", "twilio"],
        60,
    ),
    (
        ConversationType::TraderVoice,
        &["ipc", "bt_its", "speakerbus"],
        20,
    ),
    (ConversationType::Video, &["teams", "zoom"], 8),
    (
        ConversationType::Im,
        &["skype_for_business", "symphony", "teams"],
        12,
    ),
];

const MIB: f64 = 1024.0 * 1024.0;

const DIRECTIONS: [Direction; 3] = [Direction::Inbound, Direction::Outbound, Direction::Internal];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    let data_len = u64::from(args.seconds) * u64::from(args.rate) * 2;
    if data_len > u64::from(u32::MAX) - 36 {
        bail!("--seconds × --rate is too long for a WAV file (4 GiB at most)");
    }
    if args.out_dir.exists()
        && fs::read_dir(&args.out_dir)
            .with_context(|| format!("reading {}", args.out_dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty; synth writes into an absent or empty directory",
            args.out_dir.display()
        );
    }
    let started = Instant::now();
    let blocks: Vec<Vec<u8>> = (0..BLOCKS)
        .into_par_iter()
        .map(|k| {
            speech(args.seed.wrapping_mul(BLOCKS) + k, args.rate, 1.0)
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect()
        })
        .collect();
    let header = wav_header(args.rate, data_len as u32);
    let stats = (0..args.conversations)
        .into_par_iter()
        .map(|i| write_conversation(&args, &blocks, &header, i))
        .try_reduce(Stats::default, |a, b| Ok(a.merge(b)))?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "synth: {} conversations ({} tenants, {} days, {} s audio each), {} files, {} bytes \
         ({:.1} MiB) in {seconds:.2} s ({:.0} MiB/s) under {}",
        stats.conversations,
        args.tenants,
        args.days,
        args.seconds,
        stats.files,
        stats.bytes,
        stats.bytes as f64 / MIB,
        stats.bytes as f64 / MIB / seconds,
        args.out_dir.display()
    );
    Ok(())
}

/// What was written.
#[derive(Default)]
struct Stats {
    conversations: u64,
    files: u64,
    bytes: u64,
}

impl Stats {
    fn merge(self, other: Stats) -> Stats {
        Stats {
            conversations: self.conversations + other.conversations,
            files: self.files + other.files,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// Writes conversation `i`: its artifact, then its record.
fn write_conversation(args: &Args, blocks: &[Vec<u8>], header: &[u8], i: u64) -> Result<Stats> {
    // Reseeding from a mixed output keeps the streams of neighbouring conversations apart.
    let mut rng = Rng::new(Rng::new(args.seed ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64());
    let mut c = record(args, &mut rng, i);
    let dir = args
        .out_dir
        .join(&c.tenant)
        .join(c.start.format("%Y/%m/%d").to_string())
        .join(&c.id);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let artifact = if args.seconds > 0 {
        let file = "recording.wav";
        let (size, sha256) = write_wav(&dir.join(file), header, blocks, &mut rng, args.seconds)?;
        Artifact {
            file: file.to_owned(),
            kind: ArtifactType::AudioRecording,
            audio_type: Some(AudioRecordingType::ConferenceCustomer),
            size,
            sha256,
            encryption: None,
        }
    } else {
        let (file, kind) = match c.kind {
            ConversationType::Im => ("chat.txt", ArtifactType::MessagingTranscript),
            _ => ("transcript.txt", ArtifactType::Transcript),
        };
        let text = transcript(&c, &mut rng);
        write_file(&dir.join(file), text.as_bytes())?;
        Artifact {
            file: file.to_owned(),
            kind,
            audio_type: None,
            size: text.len() as u64,
            sha256: hex::encode(Sha256::digest(&text)),
            encryption: None,
        }
    };
    let artifact_size = artifact.size;
    c.artifacts.push(artifact);
    c.validate()
        .with_context(|| format!("conversation {} is invalid", c.id))?;
    let mut json = serde_json::to_vec_pretty(&c)?;
    json.push(b'\n');
    write_file(&dir.join(RECORD_FILE), &json)?;
    Ok(Stats {
        conversations: 1,
        files: 2,
        bytes: artifact_size + json.len() as u64,
    })
}

/// The CDR of conversation `i`, without artifacts.
fn record(args: &Args, rng: &mut Rng, i: u64) -> Conversation {
    let tenant = (i % u64::from(args.tenants)) as usize;
    let offset = FixedOffset::east_opt(OFFSETS[tenant % OFFSETS.len()]).expect("offset in range");
    let local = NaiveDate::from_ymd_opt(2026, 1, 1)
        .expect("valid date")
        .and_hms_opt(0, 0, 0)
        .expect("valid time")
        + TimeDelta::days(below(rng, u64::from(args.days)) as i64)
        + TimeDelta::seconds(below(rng, 86_400) as i64);
    let start: DateTime<FixedOffset> = offset
        .from_local_datetime(&local)
        .single()
        .expect("a fixed offset has one instant per local time");
    let kinds = if args.seconds > 0 {
        &KINDS[..KINDS.len() - 1]
    } else {
        &KINDS[..]
    };
    let total: u64 = kinds.iter().map(|k| k.2).sum();
    let mut draw = below(rng, total);
    let &(kind, platforms, _) = kinds
        .iter()
        .find(|k| {
            let hit = draw < k.2;
            draw = draw.saturating_sub(k.2);
            hit
        })
        .expect("draw below the total weight");
    let platform = platforms[below(rng, platforms.len() as u64) as usize];
    let seconds = match args.seconds {
        0 => 30 + below(rng, 1800) as i64,
        s => i64::from(s),
    };
    let chance = |rng: &mut Rng, percent| below(rng, 100) < percent;
    let flags = Flags {
        cdr_only: false,
        imported: platform == "twilio" || chance(rng, 2),
        confidential: chance(rng, 5),
        legal_hold: chance(rng, 2),
    };
    Conversation {
        schema: SCHEMA_VERSION,
        id: format!("syn-{i:09}"),
        tenant: format!("tenant-{tenant:03}"),
        kind,
        source_platform: platform.to_owned(),
        direction: DIRECTIONS[below(rng, DIRECTIONS.len() as u64) as usize],
        start,
        end: start + TimeDelta::seconds(seconds),
        participants: participants(kind, rng),
        flags,
        channel: None,
        artifacts: Vec::new(),
    }
}

/// Two to four parties: an internal user with an extension in the role the type gives the
/// recorded side, an outside party (phone number, or user for IM), and internal participants.
fn participants(kind: ConversationType, rng: &mut Rng) -> Vec<Participant> {
    let (inside, outside) = match kind {
        ConversationType::TraderVoice => (Role::Trader, Role::Counterparty),
        ConversationType::Voice => (Role::Agent, Role::Customer),
        _ => (Role::Organizer, Role::Participant),
    };
    let extra = below(rng, 3);
    let mut internal = |role| {
        let n = below(rng, 500);
        Participant {
            user: Some(format!("user{n:03}")),
            extension: (kind != ConversationType::Im).then(|| (1000 + n).to_string()),
            role,
        }
    };
    let mut parties = vec![internal(inside)];
    parties.extend((0..extra).map(|_| internal(Role::Participant)));
    let n = below(rng, 10_000_000);
    parties.push(match kind {
        ConversationType::Im => Participant {
            user: Some(format!("contact{n:07}@external.example")),
            extension: None,
            role: outside,
        },
        _ => Participant {
            user: None,
            extension: Some(format!("+1555{n:07}")),
            role: outside,
        },
    });
    parties
}

/// A ~200-byte transcript between the first and the last party.
fn transcript(c: &Conversation, rng: &mut Rng) -> String {
    let name = |p: &Participant| {
        p.user
            .clone()
            .or_else(|| p.extension.clone())
            .expect("a participant has a user or an extension")
    };
    let first = name(&c.participants[0]);
    let last = name(&c.participants[c.participants.len() - 1]);
    format!(
        "[00:00.4] {first}: Good morning, thanks for getting in touch about reference {:08x}.\n\
         [00:03.9] {last}: Thanks. I would like to confirm the details we discussed yesterday.\n",
        rng.next_u64() as u32
    )
}

/// Streams a WAV of `seconds` blocks drawn from `blocks` to `path`, hashing as it goes.
/// Returns its size and lower-case hex SHA-256.
fn write_wav(
    path: &Path,
    header: &[u8],
    blocks: &[Vec<u8>],
    rng: &mut Rng,
    seconds: u32,
) -> Result<(u64, String)> {
    let context = || format!("writing {}", path.display());
    let file = File::create(path).with_context(context)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut hash = Sha256::new();
    let mut size = 0u64;
    for part in std::iter::once(header)
        .chain((0..seconds).map(|_| blocks[below(rng, blocks.len() as u64) as usize].as_slice()))
    {
        hash.update(part);
        out.write_all(part).with_context(context)?;
        size += part.len() as u64;
    }
    out.flush().with_context(context)?;
    Ok((size, hex::encode(hash.finalize())))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The 44-byte header of a mono 16-bit PCM WAV with `data_len` bytes of samples.
fn wav_header(rate: u32, data_len: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_len).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    h.extend_from_slice(&1u16.to_le_bytes()); // PCM
    h.extend_from_slice(&1u16.to_le_bytes()); // channels
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * 2).to_le_bytes()); // bytes per second
    h.extend_from_slice(&2u16.to_le_bytes()); // bytes per frame
    h.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

/// Uniform in `0..n`; the modulo bias is irrelevant for test data.
fn below(rng: &mut Rng, n: u64) -> u64 {
    rng.next_u64() % n
}
