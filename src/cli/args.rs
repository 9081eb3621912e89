//! The command line's grammar: the global options and every command, with the argument types
//! of each command group in that group's module. Every command's help ends with examples that
//! work with the demo config (`fixtures/demo/custodian.toml`) or come from `docs/operations.md`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use clap_complete::Shell;

use custodian::media::crypto;

use super::{audit, direct, holds, jobs, lifecycle, media, run, serve, users};

#[derive(Parser)]
#[command(
    name = "custodian",
    version,
    about = "Batch storage management for communications recordings",
    after_help = "Examples:
  custodian --config fixtures/demo/custodian.toml run demo-export
  custodian jobs list
  custodian run --help"
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
    #[command(after_help = "Examples:
  custodian index
  custodian --json index")]
    Index,
    /// Run a policy now; `run lifecycle` deletes what the enabled lifecycle policies make due.
    #[command(after_help = "Examples:
  custodian run demo-export
  custodian run demo-zip --dry-run
  custodian run nightly-export --node \"$(hostname)\"")]
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
    #[command(after_help = "Examples:
  custodian schedules
  custodian --json schedules")]
    Schedules,
    /// Run every enabled policy on its schedule until SIGTERM or SIGINT; SIGHUP reloads the
    /// config (a bad one is refused and the running one kept).
    #[command(after_help = "Examples:
  custodian serve
  custodian serve --max-concurrent 2 --shutdown-grace 2m")]
    Serve(serve::ServeArgs),
    /// Direct export on a recording server: watch the repository and export each conversation
    /// once it is complete, with an export policy's settings, until SIGTERM or SIGINT.
    #[command(after_help = "Examples:
  custodian direct nightly-export --interval 1s --patience 10m
  custodian direct nightly-export --once")]
    Direct(direct::DirectArgs),
    /// Retention policies: create, version, enable, disable, activate, list, show.
    #[command(after_help = "Examples:
  custodian lifecycle list
  custodian lifecycle show voice-customer-7y
  custodian lifecycle create --help")]
    Lifecycle {
        #[command(subcommand)]
        command: lifecycle::LifecycleCommand,
    },
    /// Legal holds: matters, and the holds placed under them that keep conversations from
    /// the lifecycle sweep.
    #[command(after_help = "Examples:
  custodian hold list
  custodian hold show smith-v-acme
  custodian hold add --help")]
    Hold {
        #[command(subcommand)]
        command: holds::HoldCommand,
    },
    /// Accounts of the web portal and JSON API, and their API tokens (run as the catalog's
    /// owner).
    #[command(after_help = "Examples:
  custodian user add alice --group compliance
  custodian user list
  custodian user token ci-reader")]
    User {
        #[command(subcommand)]
        command: users::UserCommand,
    },
    /// Show what a policy would do now (same as `run --dry-run`).
    #[command(after_help = "Examples:
  custodian plan demo-zip
  custodian plan lifecycle")]
    Plan {
        policy: String,
        #[arg(long)]
        no_index: bool,
    },
    /// Job history.
    #[command(after_help = "Examples:
  custodian jobs list
  custodian jobs show 1")]
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// The audit trail.
    #[command(after_help = "Examples:
  custodian audit list --limit 3
  custodian audit verify")]
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Re-read every object of a run's manifest from its target and check size and SHA-256.
    #[command(after_help = "Examples:
  custodian verify 1
  custodian --json verify 1")]
    Verify { run: i64 },
    /// Transcode audio files (WAV, MP3, FLAC, Ogg Vorbis, AAC/M4A) to a voice format: IN OUT, or
    /// many inputs into a directory with --out-dir DIR IN...
    #[command(after_help = "Examples:
  custodian transcode --format wav-ulaw --rate 8000 --channels 1 call.wav call-ulaw.wav
  custodian transcode --format flac --out-dir flac/ *.wav")]
    Transcode(media::TranscodeArgs),
    /// Cut the audio between two instants out of a turret channel's continuous recording.
    #[command(after_help = "Examples:
  custodian stitch --channel fixtures/demo/repo/acme/channels/turret-0042 \\
      --start 2026-03-02T07:30:05Z --end 2026-03-02T07:30:50Z \\
      --keystore fixtures/demo/keystore.json /tmp/cut.wav")]
    Stitch(media::StitchArgs),
    /// Encrypt a file to the encrypted format v1 with a key from a keystore.
    #[command(after_help = "Examples:
  custodian encrypt --keystore fixtures/demo/keystore.json --key-id demo-key-1 \\
      /tmp/call.wav /tmp/call.enc")]
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
    #[command(after_help = "Examples:
  custodian decrypt --keystore fixtures/demo/keystore.json \\
      fixtures/demo/repo/globex/2026/01/20/globex-v-0001/call.wav /tmp/call.wav")]
    Decrypt {
        /// Keystore file (JSON, mode 600).
        #[arg(long)]
        keystore: PathBuf,
        /// Encrypted file.
        input: PathBuf,
        /// Plaintext file to write (appears only once the whole input authenticates).
        output: PathBuf,
    },
    /// Print the shell completion script for SHELL on stdout.
    #[command(after_help = "Examples:
  custodian completions bash > ~/.local/share/bash-completion/completions/custodian
  custodian completions zsh > ~/.zfunc/_custodian
  custodian completions fish > ~/.config/fish/completions/custodian.fish")]
    Completions { shell: Shell },
    /// Print the man page custodian(1) on stdout, or write one page per command into a
    /// directory (custodian.1, custodian-run.1, custodian-lifecycle-create.1, …).
    #[command(after_help = "Examples:
  custodian man | man -l -
  custodian man --dir /usr/local/share/man/man1")]
    Man {
        /// Write every command's page into DIR (created if missing) instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `--chunk-size`: a u32 in the range the format allows.
fn chunk_size_parser() -> clap::builder::RangedI64ValueParser<u32> {
    let range = crypto::CHUNK_SIZE_RANGE;
    clap::value_parser!(u32).range(i64::from(*range.start())..=i64::from(*range.end()))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Walks `command` and its subcommands, nested ones too, pushing the name of each (such as
    /// `custodian lifecycle create`) to `visited`, and to `missing` when its help shows no
    /// example: an "Examples:" section with an indented `custodian …` line.
    fn walk(
        command: &clap::Command,
        name: &str,
        visited: &mut Vec<String>,
        missing: &mut Vec<String>,
    ) {
        visited.push(name.to_owned());
        let help = [command.get_after_help(), command.get_after_long_help()]
            .into_iter()
            .flatten()
            .map(|text| text.to_string())
            .collect::<String>();
        let has_example = help.split_once("Examples:").is_some_and(|(_, examples)| {
            examples
                .lines()
                .any(|line| line.starts_with("  custodian "))
        });
        if !has_example {
            missing.push(name.to_owned());
        }
        for sub in command.get_subcommands() {
            walk(sub, &format!("{name} {}", sub.get_name()), visited, missing);
        }
    }

    #[test]
    fn every_command_shows_an_example_in_its_help() {
        let (mut visited, mut missing) = (Vec::new(), Vec::new());
        walk(&Cli::command(), "custodian", &mut visited, &mut missing);
        for nested in [
            "custodian lifecycle create",
            "custodian jobs list",
            "custodian audit verify",
        ] {
            assert!(
                visited.iter().any(|v| v == nested),
                "{nested} not visited: {visited:?}"
            );
        }
        assert!(
            missing.is_empty(),
            "no example in the help of: {}",
            missing.join(", ")
        );
    }

    #[test]
    fn the_grammar_passes_clap_debug_asserts() {
        Cli::command().debug_assert();
    }
}
