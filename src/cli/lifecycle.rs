//! The `custodian lifecycle …` commands, `run lifecycle` and `plan lifecycle`: their
//! arguments, and what they did as text or `--json`.

use anyhow::{Result, bail};
use clap::Subcommand;

use custodian::app::Loaded;
use custodian::app::control::Watchers;
use custodian::app::lifecycle::{self, Sweep, SwitchOutcome};
use custodian::app::manage::{LifecycleOutcome, LifecycleRequest, Outcome, Request};
use custodian::catalog::Mode;
use custodian::catalog::lifecycle::LifecycleVersion;
use custodian::policy::lifecycle::{DueSummary, LIFECYCLE_RUN, SweepSummary};
use custodian::repository::record::{ArtifactType, AudioRecordingType};
use custodian::schedule::runlog::RunLog;

use super::args::Cli;
use super::out::{Bar, errln, outln, print_json};
use super::remote;
use super::run::{RunMessages, load_to_plan, print_index, print_notification, run_heading};

#[derive(Subcommand)]
pub enum LifecycleCommand {
    /// Create a policy (disabled, without versions) for an artifact type.
    #[command(after_help = "Examples:
  custodian lifecycle create voice-customer-7y --artifact-type audio_recording \\
      --audio-type conference_customer --description \"MiFID II: customer legs, 7 years\"")]
    Create {
        name: String,
        #[arg(long)]
        artifact_type: ArtifactType,
        /// Audio recording type; required for `audio_recording`, refused otherwise.
        #[arg(long)]
        audio_type: Option<AudioRecordingType>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Publish an immutable version; a policy's first version becomes its active one.
    #[command(after_help = "Examples:
  custodian lifecycle version voice-customer-7y v1 --delete-after-days 2557
  custodian lifecycle version voice-customer-7y v2 --keep-forever
  custodian lifecycle version voice-customer-7y v3 --delete-after-days 2557 --require-export archive")]
    Version {
        name: String,
        version: String,
        #[arg(
            long,
            conflicts_with = "delete_after_days",
            required_unless_present = "delete_after_days"
        )]
        keep_forever: bool,
        /// Delete artifacts this many days (1..=9999) after their interaction ended.
        #[arg(long)]
        delete_after_days: Option<u64>,
        /// Delete an artifact only once this export policy of the config has exported it at
        /// its current SHA-256, in a run that ended.
        #[arg(long, value_name = "POLICY")]
        require_export: Option<String>,
    },
    /// Enable a policy (needs acknowledgments).
    #[command(after_help = "Examples:
  custodian lifecycle enable voice-customer-7y \\
      --acknowledge storage-overage --acknowledge irreversible-delete")]
    Enable {
        name: String,
        #[arg(long = "acknowledge")]
        acknowledge: Vec<String>,
    },
    /// Disable a policy (needs acknowledgments).
    #[command(after_help = "Examples:
  custodian lifecycle disable voice-customer-7y \\
      --acknowledge storage-overage --acknowledge irreversible-delete")]
    Disable {
        name: String,
        #[arg(long = "acknowledge")]
        acknowledge: Vec<String>,
    },
    /// Make another published version the active one (needs acknowledgments).
    #[command(after_help = "Examples:
  custodian lifecycle activate voice-customer-7y v2 --acknowledge storage-overage")]
    Activate {
        name: String,
        version: String,
        #[arg(long = "acknowledge")]
        acknowledge: Vec<String>,
    },
    /// Changes waiting for a second user's approval (four eyes); with --all, decided ones too.
    #[command(after_help = "Examples:
  custodian lifecycle pending
  custodian --json lifecycle pending --all")]
    Pending {
        #[arg(long)]
        all: bool,
    },
    /// Approve another user's pending change, which applies it (needs its acknowledgments).
    #[command(after_help = "Examples:
  custodian lifecycle approve 3 \\
      --acknowledge storage-overage --acknowledge irreversible-delete")]
    Approve {
        change: i64,
        #[arg(long = "acknowledge")]
        acknowledge: Vec<String>,
    },
    /// Reject a pending change: it is closed and the policy stays as it is.
    #[command(after_help = "Examples:
  custodian lifecycle reject 3")]
    Reject { change: i64 },
    /// Every policy, a line each.
    #[command(after_help = "Examples:
  custodian lifecycle list
  custodian --json lifecycle list")]
    List,
    /// One policy with its versions.
    #[command(after_help = "Examples:
  custodian lifecycle show voice-customer-7y")]
    Show { name: String },
    /// Put quarantined artifacts back in their conversation directories; each is then exempt
    /// from the policy version that quarantined it.
    #[command(after_help = "Examples:
  custodian lifecycle restore --conversation acme/c-0042
  custodian lifecycle restore --run 17")]
    Restore {
        /// The conversation, as TENANT/ID, whose quarantined artifacts to restore.
        #[arg(long, conflicts_with = "run", required_unless_present = "run")]
        conversation: Option<String>,
        /// The sweep (its job run) whose quarantined artifacts to restore.
        #[arg(long)]
        run: Option<i64>,
    },
}

pub fn command(cli: &Cli, command: &LifecycleCommand) -> Result<u8> {
    match remote::manage(cli, Request::Lifecycle(request(command)))? {
        Outcome::Lifecycle(done) => print(cli, done),
        Outcome::Hold(_) => bail!("a `lifecycle` command was answered as a `hold` command"),
    }
}

/// The command as a request, to do here or at the service.
fn request(command: &LifecycleCommand) -> LifecycleRequest {
    match command {
        LifecycleCommand::Create {
            name,
            artifact_type,
            audio_type,
            description,
        } => LifecycleRequest::Create {
            name: name.clone(),
            artifact_type: *artifact_type,
            audio_type: *audio_type,
            description: description.clone(),
        },
        LifecycleCommand::Version {
            name,
            version,
            keep_forever,
            delete_after_days,
            require_export,
        } => LifecycleRequest::Version {
            name: name.clone(),
            version: version.clone(),
            keep_forever: *keep_forever,
            delete_after_days: *delete_after_days,
            require_export: require_export.clone(),
        },
        LifecycleCommand::Enable { name, acknowledge } => LifecycleRequest::Enable {
            name: name.clone(),
            acknowledge: acknowledge.clone(),
        },
        LifecycleCommand::Disable { name, acknowledge } => LifecycleRequest::Disable {
            name: name.clone(),
            acknowledge: acknowledge.clone(),
        },
        LifecycleCommand::Activate {
            name,
            version,
            acknowledge,
        } => LifecycleRequest::Activate {
            name: name.clone(),
            version: version.clone(),
            acknowledge: acknowledge.clone(),
        },
        LifecycleCommand::Pending { all } => LifecycleRequest::Pending { all: *all },
        LifecycleCommand::Approve {
            change,
            acknowledge,
        } => LifecycleRequest::Approve {
            change: *change,
            acknowledge: acknowledge.clone(),
        },
        LifecycleCommand::Reject { change } => LifecycleRequest::Reject { change: *change },
        LifecycleCommand::List => LifecycleRequest::List,
        LifecycleCommand::Show { name } => LifecycleRequest::Show { name: name.clone() },
        LifecycleCommand::Restore { conversation, run } => LifecycleRequest::Restore {
            conversation: conversation.clone(),
            run: *run,
        },
    }
}

/// What the command did, as text or `--json`; the exit code (1 when a restore failed items).
fn print(cli: &Cli, done: LifecycleOutcome) -> Result<u8> {
    match done {
        LifecycleOutcome::Created(policy) => {
            outln!(
                "created lifecycle policy `{}` for {} (disabled; publish a version next)",
                policy.name,
                policy.scope()
            )?;
        }
        LifecycleOutcome::Published(published) => {
            let (name, version) = (&published.policy, &published.version.name);
            outln!(
                "published version `{version}` of `{name}`: {}",
                describe(&published.version)
            )?;
            if published.awaits_activation {
                outln!(
                    "it is not active: with [lifecycle] approvals = 2 a delete version becomes active only once another user approves it; request that with `custodian lifecycle activate {name} {version} --acknowledge …`"
                )?;
            }
        }
        LifecycleOutcome::Switched(outcome) => print_switch(outcome)?,
        LifecycleOutcome::Pending(changes) => {
            if cli.json {
                print_json(&changes)?;
            } else if changes.is_empty() {
                outln!("no changes waiting for approval")?;
            } else {
                outln!(
                    "{:<6} {:<24} {:<9} {:<16} {:<16} {:<26} STATE",
                    "CHANGE",
                    "POLICY",
                    "WHAT",
                    "VERSION",
                    "REQUESTED BY",
                    "EXPIRES"
                )?;
                for c in &changes {
                    outln!(
                        "{:<6} {:<24} {:<9} {:<16} {:<16} {:<26} {}",
                        c.id,
                        c.policy,
                        c.change.as_str(),
                        c.version,
                        c.requested_by,
                        c.expires_at.to_rfc3339(),
                        match &c.decided_by {
                            Some(who) => format!("{} by {who}", c.state.as_str()),
                            None => c.state.as_str().to_owned(),
                        }
                    )?;
                }
            }
        }
        LifecycleOutcome::Approved(c) => {
            outln!(
                "approved change {}: policy `{}` is {} with version `{}` active (requested by {})",
                c.id,
                c.policy,
                if c.enabled_after() {
                    "enabled"
                } else {
                    "disabled"
                },
                c.version,
                c.requested_by
            )?;
        }
        LifecycleOutcome::Rejected(c) => {
            outln!(
                "rejected change {} ({} `{}` of policy `{}`, requested by {}); the policy is unchanged",
                c.id,
                c.change.as_str(),
                c.version,
                c.policy,
                c.requested_by
            )?;
        }
        LifecycleOutcome::List(policies) => {
            if cli.json {
                print_json(&policies)?;
            } else if policies.is_empty() {
                outln!("no lifecycle policies (create one with `custodian lifecycle create`)")?;
            } else {
                outln!(
                    "{:<24} {:<40} {:<8} {:<16} ACTION",
                    "NAME",
                    "SCOPE",
                    "ENABLED",
                    "ACTIVE"
                )?;
                for p in &policies {
                    outln!(
                        "{:<24} {:<40} {:<8} {:<16} {}",
                        p.name,
                        p.scope(),
                        if p.enabled { "yes" } else { "no" },
                        p.active_version.as_deref().unwrap_or("-"),
                        p.active().map_or("-".into(), describe)
                    )?;
                }
            }
        }
        LifecycleOutcome::Show(p) => {
            if cli.json {
                print_json(&p)?;
            } else {
                outln!("policy:      {}", p.name)?;
                outln!("description: {}", p.description)?;
                outln!("scope:       {}", p.scope())?;
                outln!("enabled:     {}", if p.enabled { "yes" } else { "no" })?;
                outln!(
                    "created:     {} by {}",
                    p.created_at.to_rfc3339(),
                    p.created_by
                )?;
                outln!("versions:")?;
                for v in &p.versions {
                    let mark = if Some(&v.name) == p.active_version.as_ref() {
                        "*"
                    } else {
                        " "
                    };
                    outln!(
                        "  {mark} {:<16} {:<36} published {} by {}",
                        v.name,
                        describe(v),
                        v.published_at.to_rfc3339(),
                        v.published_by
                    )?;
                }
            }
        }
        LifecycleOutcome::Restored(report) => {
            if cli.json {
                print_json(&report)?;
            } else {
                outln!(
                    "restored {} artifacts; {} failed; {} half-done restores completed",
                    report.restored,
                    report.failed,
                    report.resumed
                )?;
                for f in &report.failures {
                    outln!("  failed: {f}")?;
                }
            }
            return Ok(if report.failed > 0 { 1 } else { 0 });
        }
    }
    Ok(0)
}

/// What a version does: its action, and the export it requires first.
fn describe(v: &LifecycleVersion) -> String {
    match &v.require_export {
        Some(export) => format!("{}, once exported by {export}", v.action.describe()),
        None => v.action.describe(),
    }
}

/// Says what an enable, disable or activate did: applied, or requested for approval.
fn print_switch(outcome: SwitchOutcome) -> Result<()> {
    match outcome {
        SwitchOutcome::Applied(done) => outln!(
            "policy `{}` is {} with version `{}` active: {}",
            done.policy,
            if done.enabled { "enabled" } else { "disabled" },
            done.version.name,
            describe(&done.version)
        )?,
        SwitchOutcome::Requested(c) => {
            let acks: String = c
                .acknowledgments
                .iter()
                .map(|a| format!(" --acknowledge {a}"))
                .collect();
            outln!(
                "change {id} requested: {} `{}` of policy `{}` takes effect once another user holding ARTIFACTS_LIFECYCLE_POLICY_APPROVE approves it, before {}:\n  custodian lifecycle approve {id}{acks}\n(or rejects it: `custodian lifecycle reject {id}`; `custodian lifecycle pending` lists what waits)",
                c.change.as_str(),
                c.version,
                c.policy,
                c.expires_at.to_rfc3339(),
                id = c.id
            )?
        }
    }
    Ok(())
}

/// `plan lifecycle` / `run lifecycle --dry-run`: what is due now, per policy.
pub fn plan(cli: &Cli, no_index: bool) -> Result<u8> {
    let l = load_to_plan(cli, no_index)?;
    let due = lifecycle::plan(&l, no_index, &Bar::new(cli.json))?;
    if cli.json {
        print_json(&due)?;
        return Ok(0);
    }
    if due.is_empty() {
        outln!("no enabled lifecycle policy deletes anything")?;
    }
    for d in &due {
        outln!(
            "{}: version {} ({}, delete after {} days): {} artifacts due, {} bytes; {} kept by legal holds{}{}; next due {}",
            d.policy,
            d.version,
            d.scope,
            d.days,
            d.artifacts,
            d.bytes,
            d.held,
            by_matter(d),
            not_exported(d),
            d.next_due.map_or("never".into(), |t| t.to_rfc3339())
        )?;
        if d.in_quarantine > 0 {
            outln!(
                "  in quarantine: {} artifacts, {} bytes; purgeable now: {}",
                d.in_quarantine,
                d.quarantined_bytes,
                d.purgeable
            )?;
        }
    }
    Ok(0)
}

/// What a policy requiring an export holds back for it, as `; N held back: not exported by
/// POLICY`, or nothing.
fn not_exported(d: &DueSummary) -> String {
    d.require_export.as_ref().map_or(String::new(), |export| {
        format!("; {} held back: not exported by {export}", d.not_exported)
    })
}

/// How many artifacts each matter keeps back, as ` (matter: n, …)`, or nothing.
fn by_matter(d: &DueSummary) -> String {
    let held: Vec<String> = d
        .held_by_matter
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(m, n)| format!("{m}: {n}"))
        .collect();
    if held.is_empty() {
        String::new()
    } else {
        format!(" ({})", held.join(", "))
    }
}

/// `run lifecycle`: the sweep. Refused for its limits or an unusable repository root, it
/// exits 2.
pub fn run(cli: &Cli, no_index: bool, force: bool, log: &RunLog) -> Result<u8> {
    let l = Loaded::load_to_write(&cli.config)?;
    let (index, work) = (Bar::new(cli.json), Bar::new(cli.json));
    let watchers = Watchers {
        index: &index,
        work: &work,
        run: &RunMessages,
        log,
    };
    let done = lifecycle::run(&l, no_index, force, watchers)?;
    let code = match &done.outcome {
        Sweep::Done(summary) => {
            if cli.json {
                print_json(summary)?;
            } else {
                print_sweep(summary)?;
            }
            summary.status.exit_code()
        }
        Sweep::Refused(e) => {
            errln!("error: {e}");
            2
        }
    };
    print_notification(cli, &done)?;
    Ok(code)
}

fn print_sweep(s: &SweepSummary) -> Result<()> {
    if let Some(index) = &s.index {
        print_index(index)?;
    }
    let r = &s.report;
    outln!(
        "{}: {}",
        run_heading(s.run, LIFECYCLE_RUN, Mode::Full, s.resumed_run),
        s.status.as_str()
    )?;
    outln!(
        "lifecycle: deleted {} artifacts ({} bytes), {} of them already missing; {} held back; {} failed; {} half-done deletes completed in {:.2}s",
        r.deleted,
        r.bytes,
        r.already_missing,
        r.held_back,
        r.failed,
        r.resumed,
        s.seconds
    )?;
    if r.quarantined + r.restored + r.purged > 0 {
        outln!(
            "quarantine: {} artifacts moved in, {} restored for legal holds, {} purged",
            r.quarantined,
            r.restored,
            r.purged
        )?;
    }
    for p in r.policies.iter().filter(|p| p.held > 0) {
        outln!(
            "  {}: {} artifacts that would be due are kept by legal holds{}",
            p.policy,
            p.held,
            by_matter(p)
        )?;
    }
    for p in r.policies.iter().filter(|p| p.not_exported > 0) {
        outln!(
            "  {}: {} due artifacts held back: not exported by {}",
            p.policy,
            p.not_exported,
            p.require_export.as_deref().unwrap_or("-")
        )?;
    }
    for h in &r.held_back_reasons {
        outln!("  held back: {h}")?;
    }
    for f in &r.failures {
        outln!("  failed: {f}")?;
    }
    if let Some(e) = &s.error_summary {
        outln!("  {e}")?;
    }
    Ok(())
}
