//! The `custodian` command line: turns arguments into a validated plan, runs it, prints a
//! summary (or `--json`), and exits 0 (all done), 1 (some items failed) or 2 (could not run).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod cli_direct;
mod cli_lifecycle;
mod cli_out;
mod cli_run;
mod cli_serve;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use clap::{Parser, Subcommand};
use serde::Serialize;

use custodian::audit::{AuditKind, ChainProblem, KeyError, KeySource};
use custodian::catalog::trail::{AnchorStatus, TrailReport, check_trail};
use custodian::catalog::{self, AuditQuery, Catalog, Exclude, JobRun, Mode, RunId};
use custodian::config::Config;
use custodian::filter::Filter;
use custodian::media::audio::{self, AudioReport, VoiceFormat, VoiceSpec};
use custodian::media::crypto::{self, FileError, FileReport};
use custodian::media::keystore::Keystore;
use custodian::media::scratch::Scratch;
use custodian::pipeline::Control;
use custodian::policy::Policy;
use custodian::policy::export::{Export, PlannedConversation, RunSummary};
use custodian::policy::index::{self, IndexReport};
use custodian::policy::lifecycle::LIFECYCLE_RUN;
use custodian::policy::produce::{self, MediaTools};
use custodian::schedule::runlog::RunLog;
use custodian::target::{self, ObjectKey, Target, manifest};

use cli_out::{StdoutClosed, errln, outln};

#[derive(Parser)]
#[command(
    name = "custodian",
    version,
    about = "Batch storage management for communications recordings"
)]
struct Cli {
    /// Config file.
    #[arg(
        long,
        global = true,
        default_value = "custodian.toml",
        env = "CUSTODIAN_CONFIG"
    )]
    config: PathBuf,
    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        cluster: cli_run::ClusterArgs,
    },
    /// Each policy's schedule, timezone, and when it is next due.
    Schedules,
    /// Run every enabled policy on its schedule until SIGTERM or SIGINT; SIGHUP reloads the
    /// config (a bad one is refused and the running one kept).
    Serve(cli_serve::ServeArgs),
    /// Direct export on a recording server: watch the repository and export each conversation
    /// once it is complete, with an export policy's settings, until SIGTERM or SIGINT.
    Direct(cli_direct::DirectArgs),
    /// Retention policies: create, version, enable, disable, activate, list, show.
    Lifecycle {
        #[command(subcommand)]
        command: cli_lifecycle::LifecycleCommand,
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
        command: JobsCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Re-read every object of a run's manifest from its target and check size and SHA-256.
    Verify { run: i64 },
    /// Transcode audio files (WAV, MP3, FLAC, Ogg Vorbis, AAC/M4A) to a voice format: IN OUT, or
    /// many inputs into a directory with --out-dir DIR IN...
    Transcode(TranscodeArgs),
    /// Cut the audio between two instants out of a turret channel's continuous recording.
    Stitch(StitchArgs),
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

#[derive(clap::Args)]
struct StitchArgs {
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
struct TranscodeArgs {
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

#[derive(Subcommand)]
enum JobsCommand {
    /// Recent runs, newest first.
    List {
        #[arg(long)]
        policy: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One run with its failed items.
    Show { run: i64 },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Audit events, oldest first.
    List {
        #[arg(long)]
        run: Option<i64>,
        #[arg(long)]
        conversation: Option<String>,
        /// One trail: conversation_exported, artifact_deleted (lifecycle history),
        /// lifecycle_acknowledged, lifecycle_policy_changed, confidential_flag_changed.
        #[arg(long, value_parser = parse_audit_kind)]
        kind: Option<AuditKind>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Check the whole audit trail: its hash chain (keyed with the audit key), and the
    /// catalog against the chain heads the newest manifest of each export policy anchored at
    /// its target.
    Verify,
    /// Create the audit key (`[audit] key_file`, 32 random bytes, mode 0600). It is also
    /// created on the first append to a catalog whose chain is not keyed yet.
    InitKey,
}

fn main() -> ExitCode {
    use tracing_subscriber::prelude::*;
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Serve { .. } => "warn,custodian=info,symphonia=error",
        _ => "warn,symphonia=error",
    };
    let run_log = RunLog::default();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .fmt_fields(custodian::display::EscapedFields)
                // A stderr closed early must not panic the run: tracing would report the
                // failed write with `eprintln!`.
                .log_internal_errors(false)
                .with_filter(
                    tracing_subscriber::EnvFilter::try_from_env("CUSTODIAN_LOG")
                        .unwrap_or_else(|_| default_filter.into()),
                ),
        )
        .with(run_log.layer())
        .init();
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    match dispatch(&cli, &run_log) {
        Ok(code) => ExitCode::from(code),
        // The reader of stdout went away once the work was done and recorded: end quietly.
        Err(e) if e.chain().any(|c| c.is::<StdoutClosed>()) => ExitCode::SUCCESS,
        Err(e) => {
            // Some causes (a TOML parse error) show the offending line on lines of their own.
            for (i, line) in format!("{e:#}").lines().enumerate() {
                if i == 0 {
                    errln!("error: {line}");
                } else {
                    errln!("{line}");
                }
            }
            ExitCode::from(2)
        }
    }
}

fn schedules(cli: &Cli) -> Result<u8> {
    #[derive(Serialize)]
    struct Row<'a> {
        policy: &'a str,
        enabled: bool,
        schedule: String,
        timezone: String,
        next_due: Option<chrono::DateTime<Utc>>,
        #[serde(skip)]
        tz: chrono_tz::Tz,
    }
    let config = custodian::config::Config::load(&cli.config)?;
    let now = Utc::now();
    // Every policy, and the lifecycle sweep when `[lifecycle]` schedules it.
    let sweep =
        (config.lifecycle.job.schedule != custodian::schedule::Schedule::Manual).then_some((
            custodian::policy::lifecycle::LIFECYCLE_RUN,
            true,
            &config.lifecycle.job,
        ));
    let rows: Vec<Row<'_>> = config
        .policies
        .values()
        .map(|p| (p.name(), p.enabled(), p.job()))
        .chain(sweep)
        .map(|(policy, enabled, job)| Row {
            policy,
            enabled,
            schedule: job.schedule.to_string(),
            timezone: job.timezone.name().to_owned(),
            tz: job.timezone,
            next_due: job
                .schedule
                .next_after(now, job.timezone)
                .filter(|_| enabled),
        })
        .collect();
    if cli.json {
        print_json(&rows)?;
        return Ok(0);
    }
    outln!(
        "{:<24} {:<8} {:<32} {:<20} NEXT DUE",
        "POLICY",
        "ENABLED",
        "SCHEDULE",
        "TIMEZONE"
    )?;
    for r in &rows {
        outln!(
            "{:<24} {:<8} {:<32} {:<20} {}",
            r.policy,
            if r.enabled { "yes" } else { "no" },
            r.schedule,
            r.timezone,
            r.next_due
                .map_or("-".into(), |t| t.with_timezone(&r.tz).to_rfc3339())
        )?;
    }
    Ok(0)
}

fn parse_audit_kind(s: &str) -> Result<AuditKind, String> {
    AuditKind::parse(s).ok_or_else(|| {
        format!("unknown kind `{s}`: conversation_exported, artifact_deleted, lifecycle_acknowledged, lifecycle_policy_changed or confidential_flag_changed")
    })
}

fn progress_bar(cli: &Cli, message: &str) -> indicatif::ProgressBar {
    if cli.json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0).with_message(message.to_owned());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>8} [{bar:40}] {pos}/{len} {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    cli_out::json(&serde_json::to_string_pretty(value)?)
}

struct Loaded {
    config: Config,
    catalog: std::sync::Arc<dyn Catalog>,
}

fn load(cli: &Cli) -> Result<Loaded> {
    let config = Config::load(&cli.config)?;
    let catalog =
        catalog::open_keyed(&config.catalog, KeySource::new(&config.audit.key_file))?.into();
    Ok(Loaded { config, catalog })
}

fn dispatch(cli: &Cli, run_log: &RunLog) -> Result<u8> {
    match &cli.command {
        Command::Index => {
            let l = load(cli)?;
            let control = Control::new();
            cli_run::cancel_on_signals(
                &control,
                "the index; what it has found is committed, and the next `custodian index` goes on",
            )?;
            let report = run_index(&l, &progress_bar(cli, "index"), &control)?;
            if cli.json {
                print_json(&report)?;
            } else {
                print_index(&report)?;
            }
            Ok(u8::from(!report.failures.is_empty() || report.stopped))
        }
        Command::Run {
            policy,
            dry_run,
            no_index,
            force,
            cluster,
        } => match (policy.as_str(), dry_run) {
            (LIFECYCLE_RUN, true) => cli_lifecycle::plan(cli, *no_index),
            (LIFECYCLE_RUN, false) => cli_lifecycle::run(cli, *no_index, *force, run_log),
            (_, true) => plan(cli, policy, *no_index),
            (_, false) => cli_run::run(cli, policy, *no_index, cluster, run_log),
        },
        Command::Plan { policy, no_index } if policy == LIFECYCLE_RUN => {
            cli_lifecycle::plan(cli, *no_index)
        }
        Command::Plan { policy, no_index } => plan(cli, policy, *no_index),
        Command::Lifecycle { command } => cli_lifecycle::command(cli, command),
        Command::Schedules => schedules(cli),
        Command::Serve(args) => cli_serve::serve(cli, args),
        Command::Direct(args) => cli_direct::direct(cli, args, run_log),
        Command::Jobs { command } => jobs(cli, command),
        Command::Audit { command } => audit(cli, command),
        Command::Verify { run } => verify(cli, RunId(*run)),
        Command::Transcode(args) => match args.plan() {
            Ok(TranscodePlan::One { input, output }) => transcode(cli, args, &input, &output),
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
        },
        Command::Stitch(args) => stitch(cli, args),
        Command::Encrypt {
            keystore,
            key_id,
            chunk_size,
            input,
            output,
        } => encrypt(cli, keystore, key_id, *chunk_size, input, output),
        Command::Decrypt {
            keystore,
            input,
            output,
        } => decrypt(cli, keystore, input, output),
    }
}

/// Indexes the repository; a stop asked of `control` (a signal, the run's time limit) ends the
/// pass early with what it found committed.
fn run_index(l: &Loaded, bar: &indicatif::ProgressBar, control: &Control) -> Result<IndexReport> {
    let report = index::index(
        &l.config.repository_root,
        l.config.max_record_bytes,
        l.catalog.as_ref(),
        bar,
        control,
    )?;
    bar.finish_and_clear();
    Ok(report)
}

fn print_index(r: &IndexReport) -> Result<()> {
    outln!(
        "index: {} conversations seen, {} indexed, {} unchanged, {} removed, {} failed",
        r.seen,
        r.indexed,
        r.unchanged,
        r.removed,
        r.failures.len()
    )?;
    for f in &r.failures {
        outln!("  failed: {f}")?;
    }
    if r.stopped {
        outln!(
            "index: stopped before it saw every conversation; what it found is committed, and the next index goes on from there"
        )?;
    }
    Ok(())
}

fn export_policy<'a>(
    l: &'a Loaded,
    name: &str,
) -> Result<&'a custodian::policy::export::ExportPolicy> {
    match l.config.policy(name)? {
        Policy::Export(p) => Ok(p),
        Policy::Confidential(_) => bail!(
            "policy `{name}` sets confidential flags and exports nothing; `custodian run {name}` runs it"
        ),
    }
}

fn build_target(l: &Loaded, name: &str) -> Result<Box<dyn Target>> {
    let config = l
        .config
        .targets
        .get(name)
        .with_context(|| format!("target `{name}` is not defined"))?;
    let journal: std::sync::Arc<dyn catalog::uploads::UploadJournal> = l.catalog.clone();
    Ok(target::build(name, config, Some(journal))?)
}

/// Builds a target, checks it is usable, and aborts the uploads a killed run left open.
fn open_target(l: &Loaded, name: &str) -> Result<Box<dyn Target>> {
    let t = build_target(l, name)?;
    t.check()?;
    Ok(t)
}

/// The keystore a policy needs (to decrypt artifacts or encrypted channel segments), loaded
/// before any work starts.
fn load_keystore(
    l: &Loaded,
    policy: &custodian::policy::export::ExportPolicy,
) -> Result<Option<Keystore>> {
    match &l.config.media.keystore {
        Some(path) if policy.decrypt || policy.stitch_cdr_only => Ok(Some(Keystore::load(path)?)),
        _ => Ok(None),
    }
}

/// The repository handle an export reads every file through, and this process's private
/// scratch directory (opening it sweeps what killed runs left in the scratch root).
fn export_io(l: &Loaded) -> Result<(custodian::confined::Dir, Scratch)> {
    let repo = custodian::confined::Dir::open_root(&l.config.repository_root)
        .context("opening the repository root")?;
    let scratch_root = l
        .config
        .media
        .scratch_dir
        .clone()
        .unwrap_or_else(Scratch::default_root);
    let scratch = Scratch::open(&scratch_root)?;
    if scratch.swept() > 0 {
        tracing::info!(
            "removed {} scratch director(ies) of dead processes from {}",
            scratch.swept(),
            scratch_root.display()
        );
    }
    Ok((repo, scratch))
}

/// Indexes (unless told not to) and sets up an export of `policy` to `target`.
fn prepare_export<'a>(
    l: &'a Loaded,
    policy: &'a custodian::policy::export::ExportPolicy,
    target: &'a dyn Target,
    keystore: Option<&'a Keystore>,
    no_index: bool,
    index_bar: &indicatif::ProgressBar,
    control: &Control,
) -> Result<(Option<IndexReport>, Export<'a>)> {
    let ffmpeg = l.config.media.ffmpeg.as_deref();
    if let (Some(ffmpeg), Some(_)) = (ffmpeg, &policy.video_format) {
        produce::check_ffmpeg(ffmpeg).map_err(anyhow::Error::msg)?;
    }
    let (repo, scratch) = export_io(l)?;
    let index = if no_index {
        None
    } else {
        Some(run_index(l, index_bar, control)?)
    };
    let export = Export {
        policy,
        repo,
        scratch,
        target,
        catalog: l.catalog.as_ref(),
        filter: Filter::resolve(&policy.criteria, Utc::now(), policy.job.timezone),
        tools: MediaTools { keystore, ffmpeg },
    };
    Ok((index, export))
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// "run R of policy P (mode[, resumed …])", the start of every run summary.
fn run_heading(run: RunId, policy: &str, mode: Mode, resumed: bool) -> String {
    format!(
        "run {run} of policy {policy} ({}{})",
        mode.as_str(),
        if resumed {
            ", resumed an interrupted run"
        } else {
            ""
        }
    )
}

fn print_summary(s: &RunSummary) -> Result<()> {
    if let Some(index) = &s.index {
        print_index(index)?;
    }
    let c = &s.counters;
    outln!(
        "{} to target {}: {}",
        run_heading(s.run, &s.policy, s.mode, s.resumed),
        s.target,
        s.status.as_str()
    )?;
    outln!(
        "  {} selected, {} exported, {} failed; {} objects, {} in {:.2}s ({}/s)",
        c.selected,
        c.exported,
        c.failed,
        c.objects,
        human_bytes(c.bytes),
        s.seconds,
        human_bytes((c.bytes as f64 / s.seconds.max(1e-9)) as u64)
    )?;
    outln!("  manifest: {}", s.manifest)?;
    for note in &s.media {
        outln!("  media: {note}")?;
    }
    for f in &s.failures {
        outln!("  failed: {}: {}", f.subject, f.error)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct PlanReport {
    policy: String,
    mode: Mode,
    target: String,
    conversations: u64,
    objects: u64,
    bytes: u64,
    plan: Vec<PlannedConversation>,
    errors: Vec<String>,
}

fn plan(cli: &Cli, name: &str, no_index: bool) -> Result<u8> {
    let l = load(cli)?;
    if let Policy::Confidential(p) = l.config.policy(name)? {
        return cli_run::plan_confidential(cli, &l, p, no_index);
    }
    let policy = export_policy(&l, name)?;
    let target = build_target(&l, &policy.target)?;
    let (index, export) = prepare_export(
        &l,
        policy,
        target.as_ref(),
        None,
        no_index,
        &progress_bar(cli, "index"),
        &Control::default(),
    )?;
    let exclude = match policy.mode {
        Mode::Incremental => Exclude::ExportedBy(name.to_owned()),
        Mode::Full => Exclude::Nothing,
    };
    let mut report = PlanReport {
        policy: name.to_owned(),
        mode: policy.mode,
        target: policy.target.clone(),
        conversations: 0,
        objects: 0,
        bytes: 0,
        plan: Vec::new(),
        errors: index
            .iter()
            .flat_map(|r| &r.failures)
            .map(|f| f.to_string())
            .collect(),
    };
    // A closed stdout stops the listing; the error is returned once the walk has stopped.
    let mut printed = Ok(());
    export.for_each_selected(&exclude, |s| {
        match export.plan(&s) {
            Ok(p) => {
                report.conversations += 1;
                report.objects += p.objects.len() as u64;
                report.bytes += p.objects.iter().map(|o| o.size).sum::<u64>();
                if !cli.json {
                    let object = format!("{}/{}", p.tenant, p.id);
                    for o in &p.objects {
                        printed = cli_out::fields(&[&object, &o.key, &human_bytes(o.size)]);
                        if printed.is_err() {
                            return false;
                        }
                    }
                }
                if cli.json {
                    report.plan.push(p);
                }
            }
            Err(e) => report.errors.push(format!(
                "{}/{}: {e}",
                s.conversation.tenant, s.conversation.id
            )),
        }
        true
    })?;
    printed?;
    if cli.json {
        print_json(&report)?;
    } else {
        outln!(
            "plan for {} ({}) to target {}: {} conversations, {} objects, {} (metadata files not counted)",
            report.policy,
            report.mode.as_str(),
            report.target,
            report.conversations,
            report.objects,
            human_bytes(report.bytes)
        )?;
        for e in &report.errors {
            outln!("  error: {e}")?;
        }
    }
    Ok(u8::from(!report.errors.is_empty()))
}

fn jobs(cli: &Cli, command: &JobsCommand) -> Result<u8> {
    let l = load(cli)?;
    match command {
        JobsCommand::List { policy, limit } => {
            let runs = l.catalog.job_runs(policy.as_deref(), *limit)?;
            if cli.json {
                print_json(&runs)?;
            } else {
                for r in &runs {
                    cli_run::print_run_line(r)?;
                }
            }
        }
        JobsCommand::Show { run } => {
            let Some(r) = l.catalog.job_run(RunId(*run))? else {
                bail!("no job run {run} in catalog {}", l.catalog.location());
            };
            let failures = l.catalog.failed_items(r.id, 1000)?;
            if cli.json {
                #[derive(Serialize)]
                struct Shown<'a> {
                    #[serde(flatten)]
                    run: &'a JobRun,
                    failures: &'a [catalog::FailedItem],
                }
                print_json(&Shown {
                    run: &r,
                    failures: &failures,
                })?;
            } else {
                outln!("run {} of policy {} ({})", r.id, r.policy, r.mode.as_str())?;
                outln!("  status:   {}", r.status.as_str())?;
                outln!("  target:   {}", r.target)?;
                outln!("  started:  {}", r.started_at.to_rfc3339())?;
                if let Some(f) = r.finished_at {
                    outln!("  finished: {}", f.to_rfc3339())?;
                }
                if r.resumed > 0 {
                    outln!("  resumed:  {} time(s) after an interruption", r.resumed)?;
                }
                let c = &r.counters;
                outln!(
                    "  counters: {} selected, {} exported, {} flagged, {} deleted, {} failed, {} objects, {}, {} index errors",
                    c.selected,
                    c.exported,
                    c.flagged,
                    c.deleted,
                    c.failed,
                    c.objects,
                    human_bytes(c.bytes),
                    c.index_errors
                )?;
                if let Some(m) = &r.manifest_key {
                    outln!("  manifest: {m}")?;
                }
                if let Some(e) = &r.error_summary {
                    outln!("  errors:   {e}")?;
                }
                if let Some(log) = &r.log_path {
                    outln!("  log:      {log}")?;
                }
                if let Some(n) = &r.notification {
                    outln!("  notified: {n}")?;
                }
                for f in &failures {
                    outln!("  failed:   {}: {}", f.subject, f.error)?;
                }
            }
        }
    }
    Ok(0)
}

fn audit(cli: &Cli, command: &AuditCommand) -> Result<u8> {
    let l = load(cli)?;
    match command {
        AuditCommand::List {
            run,
            conversation,
            kind,
            limit,
        } => {
            let events = l.catalog.audit_events(&AuditQuery {
                run: run.map(RunId),
                conversation_id: conversation.clone(),
                kind: *kind,
                after_seq: 0,
                limit: *limit,
            })?;
            if cli.json {
                print_json(&events)?;
            } else {
                for e in &events {
                    outln!(
                        "{:>8}  {}  {:<22} {:<10} run {:<6} {}/{}  {}",
                        e.seq,
                        e.event.at.format("%Y-%m-%d %H:%M:%S"),
                        e.event.kind.as_str(),
                        e.event.actor,
                        e.event.run.map(|r| r.to_string()).unwrap_or_default(),
                        e.event.tenant.as_deref().unwrap_or("-"),
                        e.event.conversation_id.as_deref().unwrap_or("-"),
                        e.event.details
                    )?;
                }
            }
            Ok(0)
        }
        AuditCommand::Verify => audit_verify(cli, &l),
        AuditCommand::InitKey => {
            let path = &l.config.audit.key_file;
            // A catalog keyed with a key whose file is gone needs that file back: a new key
            // could not continue its chain.
            let head = l.catalog.audit_head()?;
            let last = l.catalog.audit_events(&AuditQuery {
                after_seq: head.seq - 1,
                limit: 1,
                ..AuditQuery::default()
            })?;
            if let Some(key_id) = last.first().and_then(|e| e.key_id.clone())
                && custodian::audit::key::read_key(path)?.is_none()
            {
                return Err(KeyError::Missing {
                    path: path.clone(),
                    key_id,
                }
                .into());
            }
            let key = custodian::audit::key::create_key(path)?;
            if cli.json {
                print_json(&serde_json::json!({"key_file": path, "key_id": key.id()}))?;
            } else {
                outln!(
                    "created audit key {} (key id {}); keep it from anyone who can write the catalog, and give every node of this catalog a copy",
                    path.display(),
                    key.id()
                )?;
            }
            Ok(0)
        }
    }
}

/// `audit verify`: the chain, then the newest anchor of each export policy at its target.
/// Exit 1 when anything no longer matches, 2 when an anchor could not be read.
fn audit_verify(cli: &Cli, l: &Loaded) -> Result<u8> {
    let key_source = KeySource::new(&l.config.audit.key_file);
    let key = key_source.load()?;
    let mut anchors = Vec::new();
    let mut unreadable = Vec::new();
    for policy in l.config.policies.values() {
        let custodian::policy::Policy::Export(p) = policy else {
            continue;
        };
        let found = build_target(l, &p.target)
            .and_then(|t| Ok(manifest::newest_anchor(t.as_ref(), &p.name)?));
        match found {
            Ok(Some(anchor)) => anchors.push(anchor),
            Ok(None) => {}
            Err(e) => unreadable.push(serde_json::json!({
                "policy": p.name,
                "target": p.target,
                "error": format!("{e:#}"),
            })),
        }
    }
    let report = check_trail(l.catalog.as_ref(), key.as_deref(), anchors)?;
    if let Some(b) = &report.broken
        && let ChainProblem::NoKey { key_id } = &b.problem
    {
        return Err(KeyError::Missing {
            path: key_source.path().to_owned(),
            key_id: key_id.clone(),
        }
        .into());
    }
    let code = if !report.intact() {
        1
    } else if !unreadable.is_empty() {
        2
    } else {
        0
    };
    if cli.json {
        let mut value = serde_json::to_value(&report)?;
        value["ok"] = serde_json::Value::Bool(code == 0);
        value["unreadable"] = serde_json::Value::Array(unreadable);
        value["key_id"] = key
            .as_ref()
            .filter(|_| report.keyed_from.is_some())
            .map_or(serde_json::Value::Null, |k| k.id().into());
        print_json(&value)?;
    } else {
        print_trail(&report, key.as_deref().map(|k| k.id()), &unreadable)?;
    }
    Ok(code)
}

fn print_trail(
    report: &TrailReport,
    key_id: Option<&str>,
    unreadable: &[serde_json::Value],
) -> Result<()> {
    let keying = match (report.keyed_from, key_id) {
        (Some(1), Some(id)) => format!("keyed (HMAC-SHA-256, key {id})"),
        (Some(seq), Some(id)) => format!(
            "plain SHA-256 up to event {}, keyed (HMAC-SHA-256, key {id}) from event {seq}",
            seq - 1
        ),
        _ => "not keyed (plain SHA-256)".to_owned(),
    };
    match &report.broken {
        Some(b) => outln!("{b}")?,
        None => outln!(
            "audit chain unbroken: {} events, head {} {}; {keying}",
            report.events,
            report.head.seq,
            report.head.hash
        )?,
    }
    for a in &report.anchors {
        let what = format!(
            "anchor of run {} (policy {}, target {}, {}): event {} {}",
            a.anchor.run,
            a.anchor.policy,
            a.anchor.target,
            a.anchor.manifest,
            a.anchor.head.seq,
            a.anchor.head.hash
        );
        match &a.status {
            AnchorStatus::Matches => outln!("  {what}: matches")?,
            AnchorStatus::Truncated { chain_ends_at } => outln!(
                "  {what}: TRUNCATED: the catalog's chain ends at event {chain_ends_at}; events from {} on were removed",
                chain_ends_at + 1
            )?,
            AnchorStatus::Differs {
                catalog_hash,
                changed_from,
            } => outln!(
                "  {what}: DOES NOT MATCH: the catalog has {} there; an event from {changed_from} to {} was edited or removed and the chain recomputed",
                catalog_hash.as_deref().unwrap_or("no event"),
                a.anchor.head.seq
            )?,
        }
    }
    if report.anchors.is_empty() {
        outln!("  no anchors found: no export policy has written an anchored manifest yet")?;
    }
    for u in unreadable {
        outln!(
            "  anchor of policy {} at target {} could not be read: {}",
            u["policy"].as_str().unwrap_or(""),
            u["target"].as_str().unwrap_or(""),
            u["error"].as_str().unwrap_or("")
        )?;
    }
    if report.intact() && unreadable.is_empty() {
        outln!(
            "audit trail intact: {} events, {} anchor(s) checked",
            report.events,
            report.anchors.len()
        )?;
    } else if report.intact() {
        outln!("audit trail unconfirmed: some anchors could not be read")?;
    } else {
        outln!("audit trail TAMPERED or damaged")?;
    }
    Ok(())
}

fn verify(cli: &Cli, run: RunId) -> Result<u8> {
    let l = load(cli)?;
    let Some(r) = l.catalog.job_run(run)? else {
        bail!("no job run {run} in catalog {}", l.catalog.location());
    };
    let Some(key) = r.manifest_key.as_deref() else {
        bail!(
            "run {run} has no manifest (status {}); run the policy again to finish it",
            r.status.as_str()
        );
    };
    let target = open_target(&l, &r.target)?;
    let bar = progress_bar(cli, "verify");
    let report = manifest::verify(
        target.as_ref(),
        &ObjectKey::new(key).map_err(anyhow::Error::msg)?,
        &bar,
    )?;
    bar.finish_and_clear();
    if cli.json {
        print_json(&report)?;
    } else {
        outln!(
            "verify run {run}: {} objects, {} checked against {key}: {}",
            report.objects,
            human_bytes(report.bytes),
            if report.mismatches.is_empty() {
                "all match".to_string()
            } else {
                format!("{} mismatched", report.mismatches.len())
            }
        )?;
        for m in &report.mismatches {
            outln!("  {}: {}", m.key, m.problem)?;
        }
    }
    Ok(u8::from(!report.mismatches.is_empty()))
}

/// Transcodes `input` to a temporary file beside `output`, renamed to `output` only when
/// complete. The outer error is one to stop on (the temporary file cannot be made); the inner
/// one fails this file, with a message naming it.
fn transcode_one(
    input: &Path,
    output: &Path,
    spec: &VoiceSpec,
) -> Result<std::result::Result<AudioReport, String>> {
    let made = into_place(output, |out| {
        let file = std::fs::File::open(input).map_err(audio::AudioError::Io)?;
        let ext = input.extension().and_then(|e| e.to_str());
        audio::transcode_file(file, ext, spec, out)
    })?;
    Ok(made.map_err(|e| format!("{}: {e}", input.display())))
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

/// Transcodes IN to OUT. Needs no config or catalog, so it starts fast when run once per file.
fn transcode(cli: &Cli, args: &TranscodeArgs, input: &Path, output: &Path) -> Result<u8> {
    let spec = voice_spec(args);
    let result = transcode_one(input, output, &spec)?;
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

/// Transcodes every input into `--out-dir` on a pool of `jobs` threads. A file that fails is
/// reported on stderr as it happens and the others go on; the exit code is 1 if any failed.
fn transcode_batch(
    cli: &Cli,
    args: &TranscodeArgs,
    jobs: usize,
    items: &[(PathBuf, PathBuf)],
) -> Result<u8> {
    use rayon::prelude::*;
    let spec = voice_spec(args);
    let dir = args.out_dir.as_deref().expect("batch mode has --out-dir");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .context("cannot start the transcode threads")?;
    let started = std::time::Instant::now();
    let results: Vec<_> = pool.install(|| {
        items
            .par_iter()
            .map(|(input, output)| {
                let result =
                    transcode_one(input, output, &spec).unwrap_or_else(|e| Err(format!("{e:#}")));
                if let Err(message) = &result {
                    errln!("error: {message}");
                }
                result
            })
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
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

/// Writes `output` through `make` into a temporary file beside it, readable by the owner alone
/// (transcoded and stitched audio is a recording), renamed to `output` only when `make`
/// succeeds; when it fails the temporary file is removed and `output` is untouched. The outer
/// error (the temporary file cannot be made or renamed) stops the command; the inner one is
/// `make`'s.
fn into_place<T, E>(
    output: &Path,
    make: impl FnOnce(&mut std::fs::File) -> std::result::Result<T, E>,
) -> Result<std::result::Result<T, E>> {
    let mut staged =
        custodian::confined::Staged::beside(output, custodian::confined::PRIVATE_FILE_MODE)
            .with_context(|| format!("cannot write {}", output.display()))?;
    let made = make(staged.file());
    if made.is_ok() {
        staged
            .commit(false)
            .with_context(|| format!("cannot write {}", output.display()))?;
    }
    Ok(made)
}

/// Stitches one call out of a channel directory (no config or catalog needed).
fn stitch(cli: &Cli, args: &StitchArgs) -> Result<u8> {
    use custodian::media::crypto::Decryptor;
    use custodian::media::stitch::{self, ChannelSegment};
    let keystore = args.keystore.as_deref().map(Keystore::load).transpose()?;
    let channel = args.channel.file_name().map_or_else(
        || args.channel.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let dir = custodian::confined::Dir::open_root(&args.channel)?;
    let segments = stitch::load_channel(&dir, &channel)?;
    let spec = VoiceSpec {
        format: args.format,
        rate: args.rate,
        channels: args.channels,
    };
    let open =
        |s: &ChannelSegment| -> std::result::Result<Box<dyn std::io::Read + Send + Sync>, String> {
            let file = dir.open_file(&s.record.file).map_err(|e| e.to_string())?;
            let what = format!("segment {}", s.path.display());
            let expect = target::Expected {
                size: s.record.size,
                sha256: &s.record.sha256,
            };
            let file = produce::Verified::new(file, expect, &what);
            match (&s.record.encryption, &keystore) {
                (None, _) => Ok(Box::new(file)),
                (Some(e), None) => Err(format!(
                    "encrypted with key id `{}`: pass --keystore",
                    e.key_id
                )),
                (Some(_), Some(ks)) => Decryptor::new(file, |id| ks.key(id))
                    .map(|d| Box::new(d) as Box<dyn std::io::Read + Send + Sync>)
                    .map_err(|e| e.to_string()),
            }
        };
    let result = into_place(&args.output, |out| -> Result<_> {
        let out = out.try_clone()?;
        Ok(stitch::stitch(
            &channel, &segments, args.start, args.end, &spec, &open, out,
        )?)
    })?;
    let report = match result {
        Ok(r) => r,
        Err(e) => {
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

/// `--chunk-size`: a u32 in the range the format allows.
fn chunk_size_parser() -> clap::builder::RangedI64ValueParser<u32> {
    let range = crypto::CHUNK_SIZE_RANGE;
    clap::value_parser!(u32).range(i64::from(*range.start())..=i64::from(*range.end()))
}

/// `custodian encrypt`: a missing key id or an unwritable output is a bad start (2), an
/// unreadable input a failed item (1).
fn encrypt(
    cli: &Cli,
    keystore: &Path,
    key_id: &str,
    chunk_size: u32,
    input: &Path,
    output: &Path,
) -> Result<u8> {
    let keystore = Keystore::load(keystore)
        .with_context(|| format!("cannot encrypt {} with key `{key_id}`", input.display()))?;
    let started = std::time::Instant::now();
    let result = crypto::encrypt_file(input, &keystore, key_id, chunk_size, output);
    let code = |e: &FileError| {
        if matches!(e, FileError::Input { .. }) {
            1
        } else {
            2
        }
    };
    report_crypt(cli, "encrypted", input, output, started, result, code)
}

/// `custodian decrypt`: a bad input or a key id the keystore lacks is a failed item (1), an
/// unusable keystore or output a bad start (2).
fn decrypt(cli: &Cli, keystore: &Path, input: &Path, output: &Path) -> Result<u8> {
    let keystore =
        Keystore::load(keystore).with_context(|| format!("cannot decrypt {}", input.display()))?;
    let started = std::time::Instant::now();
    let result = crypto::decrypt_file(input, &keystore, output);
    let code = |e: &FileError| {
        if matches!(e, FileError::Output { .. }) {
            2
        } else {
            1
        }
    };
    report_crypt(cli, "decrypted", input, output, started, result, code)
}

/// Prints what `encrypt` or `decrypt` did (or why it failed) and returns the exit code.
fn report_crypt(
    cli: &Cli,
    done: &str,
    input: &Path,
    output: &Path,
    started: std::time::Instant,
    result: Result<FileReport, FileError>,
    code: impl Fn(&FileError) -> u8,
) -> Result<u8> {
    let seconds = started.elapsed().as_secs_f64();
    match result {
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
