//! The command line's grammar: the global options and every command, with the argument types
//! of each command group in that group's module.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use custodian::media::crypto;

use super::{audit, direct, jobs, lifecycle, media, run, serve};

#[derive(Parser)]
#[command(
    name = "custodian",
    version,
    about = "Batch storage management for communications recordings"
)]
pub struct Cli {
    /// Config file.
    #[arg(
        long,
        global = true,
        default_value = "custodian.toml",
        env = "CUSTODIAN_CONFIG"
    )]
    pub config: PathBuf,
    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Index the media repository into the catalog (only changed records are read).
    Index,
    /// Run a policy now; `run lifecycle` deletes what the enabled lifecycle policies make due.
    Run {
        policy: String,
        /// Show what would be exported (or deleted), and the total bytes, without doing it.
        #[arg(long)]
        dry_run: bool,
        /// Do not index the repository first.
        #[arg(long)]
        no_index: bool,
        /// `run lifecycle`: delete even when more is due than the per-run limits allow.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        cluster: run::ClusterArgs,
    },
    /// Each policy's schedule, timezone, and when it is next due.
    Schedules,
    /// Run every enabled policy on its schedule until SIGTERM or SIGINT; SIGHUP reloads the
    /// config (a bad one is refused and the running one kept).
    Serve(serve::ServeArgs),
    /// Direct export on a recording server: watch the repository and export each conversation
    /// once it is complete, with an export policy's settings, until SIGTERM or SIGINT.
    Direct(direct::DirectArgs),
    /// Retention policies: create, version, enable, disable, activate, list, show.
    Lifecycle {
        #[command(subcommand)]
        command: lifecycle::LifecycleCommand,
    },
    /// Show what a policy would do now (same as `run --dry-run`).
    Plan {
        policy: String,
        #[arg(long)]
        no_index: bool,
    },
    /// Job history.
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Re-read every object of a run's manifest from its target and check size and SHA-256.
    Verify { run: i64 },
    /// Transcode audio files (WAV, MP3, FLAC, Ogg Vorbis, AAC/M4A) to a voice format: IN OUT, or
    /// many inputs into a directory with --out-dir DIR IN...
    Transcode(media::TranscodeArgs),
    /// Cut the audio between two instants out of a turret channel's continuous recording.
    Stitch(media::StitchArgs),
    /// Encrypt a file to the encrypted format v1 with a key from a keystore.
    Encrypt {
        /// Keystore file (JSON, mode 600).
        #[arg(long)]
        keystore: PathBuf,
        /// Id of the key to use; it is written in the file's header.
        #[arg(long)]
        key_id: String,
        /// Plaintext bytes per chunk.
        #[arg(long, default_value_t = crypto::DEFAULT_CHUNK_SIZE,
              value_parser = chunk_size_parser())]
        chunk_size: u32,
        /// Plaintext file.
        input: PathBuf,
        /// Encrypted file to write (appears only once complete).
        output: PathBuf,
    },
    /// Decrypt a format v1 file with the key its header names.
    Decrypt {
        /// Keystore file (JSON, mode 600).
        #[arg(long)]
        keystore: PathBuf,
        /// Encrypted file.
        input: PathBuf,
        /// Plaintext file to write (appears only once the whole input authenticates).
        output: PathBuf,
    },
}

/// `--chunk-size`: a u32 in the range the format allows.
fn chunk_size_parser() -> clap::builder::RangedI64ValueParser<u32> {
    let range = crypto::CHUNK_SIZE_RANGE;
    clap::value_parser!(u32).range(i64::from(*range.start())..=i64::from(*range.end()))
}
