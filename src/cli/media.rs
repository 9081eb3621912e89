//! `custodian transcode`, `stitch`, `encrypt` and `decrypt`: their arguments checked into a
//! plan, and what each file became as text or `--json`. They need no config or catalog, so
//! they start fast when run once per file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use custodian::app::media::{self, Crypted, StitchRequest, TranscodeObserver};
use custodian::media::audio::{AudioReport, VoiceFormat, VoiceSpec};
use custodian::media::crypto::FileError;

use super::args::Cli;
use super::out::{errln, human_bytes, outln, print_json};

#[derive(clap::Args)]
pub struct StitchArgs {
    /// The channel directory (`<root>/<tenant>/channels/<channel>`), segments and their records.
    #[arg(long)]
    channel: PathBuf,
    /// First instant, RFC 3339 (e.g. 2026-03-02T07:30:05Z).
    #[arg(long)]
    start: chrono::DateTime<chrono::FixedOffset>,
    /// Last instant, RFC 3339; the output lasts end - start, to the sample.
    #[arg(long)]
    end: chrono::DateTime<chrono::FixedOffset>,
    /// Output format: wav-pcm16, wav-ulaw, wav-alaw, flac or mp3.
    #[arg(long, default_value = "wav-pcm16")]
    format: VoiceFormat,
    /// Output sample rate in Hz (default: the first segment's).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rate: Option<u32>,
    /// Output channel count (default: the first segment's).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=8))]
    channels: Option<u16>,
    /// Keystore for encrypted segments.
    #[arg(long)]
    keystore: Option<PathBuf>,
    output: PathBuf,
}

#[derive(clap::Args)]
pub struct TranscodeArgs {
    /// Output format: wav-pcm16, wav-ulaw, wav-alaw, flac or mp3.
    #[arg(long)]
    format: VoiceFormat,
    /// Output sample rate in Hz (default: the input's).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rate: Option<u32>,
    /// Output channel count (default: the input's).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=8))]
    channels: Option<u16>,
    /// Batch mode: every positional is an input, written to DIR/<input stem>.<extension>.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Files transcoded at once in batch mode (default: the number of cores).
    #[arg(long, requires = "out_dir", value_parser = clap::value_parser!(u32).range(1..=1024))]
    jobs: Option<u32>,
    /// IN OUT; with --out-dir, IN...
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// What `transcode` was asked to do, checked before any file is opened.
enum TranscodePlan {
    One {
        input: PathBuf,
        output: PathBuf,
    },
    Batch {
        jobs: usize,
        items: Vec<(PathBuf, PathBuf)>,
    },
}

impl TranscodeArgs {
    /// Checks the positionals against the mode and works out every output name, refusing two
    /// inputs that would write the same file. The error is a usage error (exit 2).
    fn plan(&self) -> std::result::Result<TranscodePlan, String> {
        let Some(dir) = &self.out_dir else {
            return match &self.paths[..] {
                [input, output] => Ok(TranscodePlan::One {
                    input: input.clone(),
                    output: output.clone(),
                }),
                paths => Err(format!(
                    "expected IN OUT, got {} path(s); to transcode many files into a directory \
                     use --out-dir DIR IN...",
                    paths.len()
                )),
            };
        };
        let mut seen: std::collections::HashMap<PathBuf, &Path> = Default::default();
        let mut items = Vec::with_capacity(self.paths.len());
        for input in &self.paths {
            let stem = input
                .file_stem()
                .ok_or_else(|| format!("input {} has no file name", input.display()))?;
            let mut name = stem.to_os_string();
            name.push(".");
            name.push(self.format.extension());
            let output = dir.join(name);
            if let Some(first) = seen.insert(output.clone(), input) {
                return Err(format!(
                    "{} and {} would both be written to {}",
                    first.display(),
                    input.display(),
                    output.display()
                ));
            }
            items.push((input.clone(), output));
        }
        let jobs = self.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |j| j as usize,
        );
        Ok(TranscodePlan::Batch { jobs, items })
    }
}

/// One file's result in `--json`.
#[derive(Serialize)]
struct Transcoded<'a> {
    input: &'a Path,
    output: &'a Path,
    ok: bool,
    #[serde(flatten)]
    outcome: TranscodedOutcome,
}

#[derive(Serialize)]
#[serde(untagged)]
enum TranscodedOutcome {
    Done {
        format: VoiceFormat,
        #[serde(flatten)]
        report: AudioReport,
        seconds: f64,
    },
    Failed {
        error: String,
    },
}

impl<'a> Transcoded<'a> {
    fn new(
        input: &'a Path,
        output: &'a Path,
        format: VoiceFormat,
        result: &std::result::Result<AudioReport, String>,
    ) -> Self {
        let outcome = match result {
            Ok(report) => TranscodedOutcome::Done {
                format,
                report: *report,
                seconds: seconds(report),
            },
            Err(error) => TranscodedOutcome::Failed {
                error: error.clone(),
            },
        };
        Transcoded {
            input,
            output,
            ok: result.is_ok(),
            outcome,
        }
    }
}

fn seconds(report: &AudioReport) -> f64 {
    report.frames as f64 / f64::from(report.rate)
}

fn voice_spec(args: &TranscodeArgs) -> VoiceSpec {
    VoiceSpec {
        format: args.format,
        rate: args.rate,
        channels: args.channels,
    }
}

/// `custodian transcode`: IN to OUT, or a batch into `--out-dir`.
pub fn transcode(cli: &Cli, args: &TranscodeArgs) -> Result<u8> {
    match args.plan() {
        Ok(TranscodePlan::One { input, output }) => transcode_one(cli, args, &input, &output),
        Ok(TranscodePlan::Batch { jobs, items }) => transcode_batch(cli, args, jobs, &items),
        Err(message) => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            command.build();
            command
                .find_subcommand_mut("transcode")
                .expect("transcode is a subcommand")
                .error(clap::error::ErrorKind::ArgumentConflict, message)
                .exit()
        }
    }
}

/// Transcodes IN to OUT. Needs no config or catalog, so it starts fast when run once per file.
fn transcode_one(cli: &Cli, args: &TranscodeArgs, input: &Path, output: &Path) -> Result<u8> {
    let spec = voice_spec(args);
    let result = media::transcode(input, output, &spec)?;
    if cli.json {
        print_json(&Transcoded::new(input, output, spec.format, &result))?;
    }
    let report = match result {
        Ok(report) => report,
        Err(message) => {
            errln!("error: {message}");
            return Ok(1);
        }
    };
    if !cli.json {
        outln!(
            "transcode: {} ({} Hz, {} ch) -> {} ({}, {} Hz, {} ch): {} frames, {:.2}s",
            input.display(),
            report.input_rate,
            report.input_channels,
            output.display(),
            spec.format,
            report.rate,
            report.channels,
            report.frames,
            seconds(&report)
        )?;
    }
    Ok(0)
}

/// Prints each file that fails as it happens.
struct Failures;

impl TranscodeObserver for Failures {
    fn failed(&self, message: &str) {
        errln!("error: {message}");
    }
}

/// Transcodes every input into `--out-dir` on a pool of `jobs` threads. A file that fails is
/// reported on stderr as it happens and the others go on; the exit code is 1 if any failed.
fn transcode_batch(
    cli: &Cli,
    args: &TranscodeArgs,
    jobs: usize,
    items: &[(PathBuf, PathBuf)],
) -> Result<u8> {
    let spec = voice_spec(args);
    let dir = args.out_dir.as_deref().expect("batch mode has --out-dir");
    let media::Batch {
        results,
        seconds: wall,
    } = media::transcode_batch(dir, jobs, items, &spec, &Failures)?;
    let failed = results.iter().filter(|r| r.is_err()).count();
    if cli.json {
        let all: Vec<_> = items
            .iter()
            .zip(&results)
            .map(|((input, output), result)| Transcoded::new(input, output, spec.format, result))
            .collect();
        print_json(&all)?;
    } else {
        let audio: f64 = results.iter().flatten().map(seconds).sum();
        outln!(
            "transcode: {} files to {} in {} ({} failed), {:.1}s of audio in {:.2}s wall \
             ({:.0} files/s)",
            items.len(),
            spec.format,
            dir.display(),
            failed,
            audio,
            wall,
            items.len() as f64 / wall.max(1e-9)
        )?;
    }
    Ok(u8::from(failed > 0))
}

/// `custodian stitch`: one call out of a channel directory.
pub fn stitch(cli: &Cli, args: &StitchArgs) -> Result<u8> {
    let spec = VoiceSpec {
        format: args.format,
        rate: args.rate,
        channels: args.channels,
    };
    let stitched = media::stitch(&StitchRequest {
        channel: &args.channel,
        start: args.start,
        end: args.end,
        spec,
        keystore: args.keystore.as_deref(),
        output: &args.output,
    })?;
    let channel = stitched.channel;
    let report = match stitched.outcome {
        Ok(r) => r,
        Err(e) => {
            let e = anyhow::Error::from(e);
            if cli.json {
                print_json(&serde_json::json!({
                    "channel": args.channel, "output": args.output, "ok": false,
                    "error": format!("{e:#}")
                }))?;
            }
            errln!("error: {e:#}");
            return Ok(1);
        }
    };
    if cli.json {
        print_json(&serde_json::json!({
            "channel": args.channel, "output": args.output, "ok": true,
            "format": spec.format, "report": report,
            "seconds": report.frames as f64 / f64::from(report.rate),
        }))?;
    } else {
        outln!(
            "stitch: {} {}..{} -> {} ({}, {} Hz, {} ch): {} frames ({:.3}s), {} of silence, from {} segments",
            channel,
            args.start.to_rfc3339(),
            args.end.to_rfc3339(),
            args.output.display(),
            spec.format,
            report.rate,
            report.channels,
            report.frames,
            report.frames as f64 / f64::from(report.rate),
            report.silence_frames,
            report.segments.len()
        )?;
    }
    Ok(0)
}

/// `custodian encrypt`: a missing key id or an unwritable output is a bad start (2), an
/// unreadable input a failed item (1).
pub fn encrypt(
    cli: &Cli,
    keystore: &Path,
    key_id: &str,
    chunk_size: u32,
    input: &Path,
    output: &Path,
) -> Result<u8> {
    let crypted = media::encrypt(keystore, key_id, chunk_size, input, output)
        .with_context(|| format!("cannot encrypt {} with key `{key_id}`", input.display()))?;
    let code = |e: &FileError| {
        if matches!(e, FileError::Input { .. }) {
            1
        } else {
            2
        }
    };
    report_crypt(cli, "encrypted", input, output, crypted, code)
}

/// `custodian decrypt`: a bad input or a key id the keystore lacks is a failed item (1), an
/// unusable keystore or output a bad start (2).
pub fn decrypt(cli: &Cli, keystore: &Path, input: &Path, output: &Path) -> Result<u8> {
    let crypted = media::decrypt(keystore, input, output)
        .with_context(|| format!("cannot decrypt {}", input.display()))?;
    let code = |e: &FileError| {
        if matches!(e, FileError::Output { .. }) {
            2
        } else {
            1
        }
    };
    report_crypt(cli, "decrypted", input, output, crypted, code)
}

/// Prints what `encrypt` or `decrypt` did (or why it failed) and returns the exit code.
fn report_crypt(
    cli: &Cli,
    done: &str,
    input: &Path,
    output: &Path,
    crypted: Crypted,
    code: impl Fn(&FileError) -> u8,
) -> Result<u8> {
    let seconds = crypted.seconds;
    match crypted.result {
        Ok(r) => {
            if cli.json {
                print_json(&serde_json::json!({
                    "input": input, "output": output, "key_id": r.key_id, "bytes": r.bytes,
                    "chunks": r.chunks, "chunk_size": r.chunk_size, "seconds": seconds
                }))?;
            } else {
                outln!(
                    "{done} {} to {}: {} in {} chunks, key `{}`, {seconds:.2}s ({}/s)",
                    input.display(),
                    output.display(),
                    human_bytes(r.bytes),
                    r.chunks,
                    r.key_id,
                    human_bytes((r.bytes as f64 / seconds.max(1e-9)) as u64)
                )?;
            }
            Ok(0)
        }
        Err(e) => {
            if cli.json {
                print_json(&serde_json::json!({
                    "input": input, "output": output, "error": e.to_string()
                }))?;
            }
            errln!("error: {e}");
            Ok(code(&e))
        }
    }
}
