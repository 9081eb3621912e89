//! The `custodian hold …` commands: their arguments, and what they did as text or `--json`.

use std::time::Duration;

use anyhow::{Result, bail};
use chrono::{DateTime, FixedOffset};
use clap::{Args, Subcommand};

use custodian::app::holds::{Placed, SyncReport};
use custodian::app::manage::{HoldOutcome, HoldRequest, Outcome, Request};
use custodian::catalog::holds::{ConversationRef, Hold, HoldScope, MatterState};
use custodian::filter::Criteria;
use custodian::repository::record::{
    ArtifactType, AudioRecordingType, ConversationType, Direction,
};

use super::args::Cli;
use super::out::{outln, print_json};
use super::remote;

#[derive(Subcommand)]
pub enum HoldCommand {
    /// Create a matter, under which legal holds are placed.
    #[command(after_help = "Examples:
  custodian hold create smith-v-acme --description \"Smith v. Acme, case 26-1042\"")]
    Create {
        matter: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Place a legal hold under a matter: explicit conversations (--conversation), or a
    /// standing hold on criteria that covers every matching conversation, now and indexed later.
    #[command(after_help = "Examples:
  custodian hold add smith-v-acme --conversation acme/c-1001 --conversation acme/c-1002
  custodian hold add smith-v-acme --tenant acme --user jsmith \\
      --start-after 2025-06-01T00:00:00Z --start-before 2026-01-01T00:00:00Z")]
    Add {
        matter: String,
        /// A conversation to hold, as TENANT/ID (repeatable).
        #[arg(long = "conversation", value_name = "TENANT/ID")]
        conversations: Vec<ConversationRef>,
        #[command(flatten)]
        criteria: Box<CriteriaArgs>,
    },
    /// Release every active hold of a matter (needs --acknowledge hold-release).
    #[command(after_help = "Examples:
  custodian hold release smith-v-acme --acknowledge hold-release")]
    Release {
        matter: String,
        #[arg(long = "acknowledge")]
        acknowledge: Vec<String>,
    },
    /// Every matter, with how many conversations and artifacts its holds keep.
    #[command(after_help = "Examples:
  custodian hold list
  custodian --json hold list")]
    List,
    /// One matter with its holds, and how many conversations and artifacts they keep.
    #[command(after_help = "Examples:
  custodian hold show smith-v-acme
  custodian --json hold show smith-v-acme")]
    Show { matter: String },
    /// Set the Object Lock legal-hold status of exported objects on locked targets to what
    /// their conversations' holds say now: finishes what a hold change left queued (a store
    /// that failed, a killed process). `hold add` and `hold release` run it themselves.
    #[command(after_help = "Examples:
  custodian hold sync
  custodian --json hold sync")]
    Sync,
}

/// A standing hold's criteria (docs/configuration.md, the `filter` table): all combine with
/// AND, a repeated flag matches any of its values.
#[derive(Args)]
pub struct CriteriaArgs {
    #[arg(long = "tenant", help_heading = "Standing hold")]
    tenants: Vec<String>,
    #[arg(long = "conversation-type", help_heading = "Standing hold")]
    conversation_types: Vec<ConversationType>,
    #[arg(long = "source-platform", help_heading = "Standing hold")]
    source_platforms: Vec<String>,
    #[arg(long = "direction", help_heading = "Standing hold")]
    directions: Vec<Direction>,
    /// A participant's user.
    #[arg(long = "user", help_heading = "Standing hold")]
    users: Vec<String>,
    /// A participant's extension.
    #[arg(long = "extension", help_heading = "Standing hold")]
    extensions: Vec<String>,
    /// Started at or after this instant (RFC 3339, such as 2026-01-31T00:00:00Z).
    #[arg(long, value_parser = instant, help_heading = "Standing hold")]
    start_after: Option<DateTime<FixedOffset>>,
    /// Started before this instant.
    #[arg(long, value_parser = instant, help_heading = "Standing hold")]
    start_before: Option<DateTime<FixedOffset>>,
    /// Lasted at least this long ("90s", "2h 30m").
    #[arg(long, value_parser = humantime::parse_duration, help_heading = "Standing hold")]
    min_duration: Option<Duration>,
    /// Lasted at most this long.
    #[arg(long, value_parser = humantime::parse_duration, help_heading = "Standing hold")]
    max_duration: Option<Duration>,
    /// Has an artifact of this type (the whole conversation is held).
    #[arg(long = "artifact-type", help_heading = "Standing hold")]
    artifact_types: Vec<ArtifactType>,
    /// Has an audio recording of this type.
    #[arg(long = "audio-type", help_heading = "Standing hold")]
    audio_recording_types: Vec<AudioRecordingType>,
    /// Has a file with this extension.
    #[arg(long = "file-extension", help_heading = "Standing hold")]
    file_extensions: Vec<String>,
}

fn instant(s: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s)
        .map_err(|_| format!("`{s}` needs a date, a time and an offset, e.g. 2026-01-31T00:00:00Z"))
}

impl CriteriaArgs {
    fn criteria(&self) -> Criteria {
        Criteria {
            tenants: self.tenants.clone(),
            conversation_types: self.conversation_types.clone(),
            source_platforms: self.source_platforms.clone(),
            directions: self.directions.clone(),
            users: self.users.clone(),
            extensions: self.extensions.clone(),
            start_after: self.start_after,
            start_before: self.start_before,
            min_duration: self.min_duration,
            max_duration: self.max_duration,
            artifact_types: self.artifact_types.clone(),
            audio_recording_types: self.audio_recording_types.clone(),
            file_extensions: self.file_extensions.clone(),
            ..Criteria::default()
        }
    }
}

/// Exit 1 when a legal-hold sync left conversations queued: the hold change itself is done.
pub fn command(cli: &Cli, command: &HoldCommand) -> Result<u8> {
    match remote::manage(cli, Request::Hold(request(command)))? {
        Outcome::Hold(done) => print(cli, done),
        Outcome::Lifecycle(_) => bail!("a `hold` command was answered as a `lifecycle` command"),
    }
}

/// The command as a request, to do here or at the service.
fn request(command: &HoldCommand) -> HoldRequest {
    match command {
        HoldCommand::Create {
            matter,
            description,
        } => HoldRequest::Create {
            matter: matter.clone(),
            description: description.clone(),
        },
        HoldCommand::Add {
            matter,
            conversations,
            criteria,
        } => HoldRequest::Add {
            matter: matter.clone(),
            conversations: conversations.clone(),
            criteria: Box::new(criteria.criteria()),
        },
        HoldCommand::Release {
            matter,
            acknowledge,
        } => HoldRequest::Release {
            matter: matter.clone(),
            acknowledge: acknowledge.clone(),
        },
        HoldCommand::Sync => HoldRequest::Sync,
        HoldCommand::List => HoldRequest::List,
        HoldCommand::Show { matter } => HoldRequest::Show {
            matter: matter.clone(),
        },
    }
}

/// What the command did, as text or `--json`; the exit code.
fn print(cli: &Cli, done: HoldOutcome) -> Result<u8> {
    let mut code = 0;
    match done {
        HoldOutcome::Created(m) => {
            if cli.json {
                print_json(&m)?;
            } else {
                outln!(
                    "created matter `{matter}` (it holds nothing yet; place holds with `custodian hold add {matter} …`)",
                    matter = m.name
                )?;
            }
        }
        HoldOutcome::Placed(placed) => {
            if cli.json {
                print_json(&serde_json::json!({
                    "id": placed.id,
                    "matter": placed.matter,
                    "scope": placed.scope,
                    "sync": placed.sync,
                }))?;
            } else {
                print_placed(&placed)?;
                print_sync(&placed.sync)?;
            }
            code = sync_code(&placed.sync);
        }
        HoldOutcome::Released {
            matter,
            released,
            sync,
        } => {
            if cli.json {
                print_json(
                    &serde_json::json!({"matter": matter, "released": released, "sync": sync}),
                )?;
            } else {
                outln!("released {released} hold(s) of matter `{matter}`")?;
                print_sync(&sync)?;
            }
            code = sync_code(&sync);
        }
        HoldOutcome::Synced(sync) => {
            if cli.json {
                print_json(&sync)?;
            } else if sync == SyncReport::default() {
                outln!("legal-hold sync: nothing queued")?;
            } else {
                print_sync(&sync)?;
            }
            code = sync_code(&sync);
        }
        HoldOutcome::List(matters) => {
            if cli.json {
                print_json(&matters)?;
            } else if matters.is_empty() {
                outln!("no matters (create one with `custodian hold create`)")?;
            } else {
                outln!(
                    "{:<24} {:>6} {:>14} {:>10}  DESCRIPTION",
                    "MATTER",
                    "HOLDS",
                    "CONVERSATIONS",
                    "ARTIFACTS"
                )?;
                for m in &matters {
                    outln!(
                        "{:<24} {:>6} {:>14} {:>10}  {}",
                        m.matter.name,
                        active(m),
                        m.conversations,
                        m.artifacts,
                        m.matter.description
                    )?;
                }
            }
        }
        HoldOutcome::Show(m) => {
            if cli.json {
                print_json(&m)?;
            } else {
                print_matter(&m)?;
            }
        }
    }
    Ok(code)
}

fn sync_code(sync: &SyncReport) -> u8 {
    u8::from(!sync.left.is_empty())
}

/// A legal-hold sync, in a line, and each conversation it left queued.
fn print_sync(sync: &SyncReport) -> Result<()> {
    if *sync == SyncReport::default() {
        return Ok(());
    }
    outln!(
        "legal-hold status of exported objects: {} set ON, {} set OFF, {} recorded but not stored; {} conversation(s) done, {} left queued",
        sync.on,
        sync.off,
        sync.missing,
        sync.conversations,
        sync.left.len()
    )?;
    for why in &sync.left {
        outln!("  left queued: {why}")?;
    }
    if !sync.left.is_empty() {
        outln!("fix what is named above, then run `custodian hold sync`")?;
    }
    Ok(())
}

fn active(m: &MatterState) -> usize {
    m.holds.iter().filter(|h| h.released.is_none()).count()
}

/// What a hold covers, in one line.
fn describe(scope: &HoldScope) -> String {
    match scope {
        HoldScope::Standing(c) => format!(
            "standing: {}",
            serde_json::to_string(c).expect("criteria serialize")
        ),
        HoldScope::Conversations(list) => format!(
            "conversations: {}",
            list.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn print_placed(p: &Placed) -> Result<()> {
    outln!(
        "placed hold {} under matter `{}`: {}",
        p.id,
        p.matter,
        describe(&p.scope)
    )?;
    Ok(())
}

fn print_hold(h: &Hold) -> Result<()> {
    let state = match &h.released {
        Some(r) => format!("released {} by {}", r.at.to_rfc3339(), r.by),
        None => "active".into(),
    };
    outln!(
        "  hold {}: {}; placed {} by {}; {state}",
        h.id,
        describe(&h.scope),
        h.placed_at.to_rfc3339(),
        h.placed_by
    )?;
    Ok(())
}

fn print_matter(m: &MatterState) -> Result<()> {
    outln!("matter:        {}", m.matter.name)?;
    outln!("description:   {}", m.matter.description)?;
    outln!(
        "created:       {} by {}",
        m.matter.created_at.to_rfc3339(),
        m.matter.created_by
    )?;
    outln!(
        "holds:         {} active of {}; they keep {} conversations, {} artifacts",
        active(m),
        m.holds.len(),
        m.conversations,
        m.artifacts
    )?;
    for h in &m.holds {
        print_hold(h)?;
    }
    Ok(())
}
