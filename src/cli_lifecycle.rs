//! The `custodian lifecycle …` commands, `run lifecycle` and `plan lifecycle`: retention
//! policy management with permissions and acknowledgments, and the sweep.

use std::os::unix::fs::MetadataExt;

use crate::cli_out::{errln, outln};
use anyhow::{Context, Result, bail};
use chrono::Utc;
use clap::Subcommand;

use custodian::audit::{AuditKind, NewEvent};
use custodian::catalog::lifecycle::{LifecyclePolicy, LifecycleVersion, RetentionAction};
use custodian::catalog::{CatalogConfig, Mode};
use custodian::pipeline::Control;
use custodian::policy::lifecycle::{
    self, Acknowledgment, LIFECYCLE_RUN, Limits, SweepError, SweepSummary,
};
use custodian::policy::roles::{Permission, Roles};
use custodian::repository::record::{ArtifactType, AudioRecordingType};
use custodian::schedule::runlog::RunLog;
use custodian::users::{Actor, describe_uid};

use super::{Cli, Loaded, load, print_index, print_json, progress_bar, run_heading, run_index};

#[derive(Subcommand)]
pub enum LifecycleCommand {
    /// Create a policy (disabled, without versions) for an artifact type.
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
    },
    /// Enable a policy (needs acknowledgments).
    Enable {
        name: String,
        #[arg(long = "acknowledge")]
        acknowledge: Vec<String>,
    },
    /// Disable a policy (needs acknowledgments).
    Disable {
        name: String,
        #[arg(long = "acknowledge")]
        acknowledge: Vec<String>,
    },
    /// Make another published version the active one (needs acknowledgments).
    Activate {
        name: String,
        version: String,
        #[arg(long = "acknowledge")]
        acknowledge: Vec<String>,
    },
    /// Every policy, a line each.
    List,
    /// One policy with its versions.
    Show { name: String },
}

/// Besides root, who may own the roles file: the owner of the SQLite catalog file, or, for a
/// PostgreSQL catalog (no file to own), the user running custodian. The uid and how messages
/// name it.
fn trusted_owner(catalog: &CatalogConfig) -> Result<(u32, String)> {
    Ok(match catalog {
        CatalogConfig::Sqlite { path } => {
            let uid = std::fs::metadata(path)
                .with_context(|| format!("catalog {}", path.display()))?
                .uid();
            (
                uid,
                format!(
                    "the catalog's owner {} ({})",
                    describe_uid(uid),
                    path.display()
                ),
            )
        }
        CatalogConfig::Postgres { .. } => {
            let uid = nix::unistd::getuid().as_raw();
            (
                uid,
                format!("the user running custodian, {}", describe_uid(uid)),
            )
        }
    })
}

/// The roles file and the acting user, checked for each of `permissions`.
fn authorize(l: &Loaded, permissions: &[Permission]) -> Result<Actor> {
    let Some(roles) = &l.config.lifecycle.roles else {
        bail!(
            "lifecycle commands need a roles file granting permissions: set `roles` in the [lifecycle] table of {}",
            l.config.file.display()
        );
    };
    let (trusted, trusted_as) = trusted_owner(&l.config.catalog)?;
    let roles = Roles::load(roles, trusted, &trusted_as)?;
    let actor = Actor::current()?;
    for permission in permissions {
        roles.require(&actor, *permission)?;
    }
    Ok(actor)
}

fn event(actor: &Actor, kind: AuditKind, policy: &str, details: serde_json::Value) -> NewEvent {
    NewEvent {
        at: Utc::now(),
        kind,
        actor: actor.user.clone(),
        policy: Some(policy.to_owned()),
        run: None,
        tenant: None,
        conversation_id: None,
        details,
    }
}

fn find(l: &Loaded, name: &str) -> Result<LifecyclePolicy> {
    l.catalog
        .lifecycle_policies()?
        .into_iter()
        .find(|p| p.name == name)
        .with_context(|| {
            format!("no lifecycle policy named `{name}` (see `custodian lifecycle list`)")
        })
}

pub fn command(cli: &Cli, command: &LifecycleCommand) -> Result<u8> {
    let l = load(cli)?;
    match command {
        LifecycleCommand::Create {
            name,
            artifact_type,
            audio_type,
            description,
        } => {
            let actor = authorize(&l, &[Permission::Create])?;
            match (artifact_type, audio_type) {
                (ArtifactType::AudioRecording, None) => bail!(
                    "an audio_recording policy covers one audio recording type: add --audio-type ({})",
                    AudioRecordingType::ALL
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (t, Some(_)) if *t != ArtifactType::AudioRecording => {
                    bail!("--audio-type applies only to --artifact-type audio_recording")
                }
                _ => {}
            }
            if name.is_empty() || name.chars().any(char::is_control) {
                bail!("a policy name must be non-empty printable text");
            }
            let policy =
                LifecyclePolicy::new(name, description, *artifact_type, *audio_type, &actor.user);
            let e = event(
                &actor,
                AuditKind::LifecyclePolicyChanged,
                name,
                serde_json::json!({"change": "created", "scope": policy.scope(), "description": description}),
            );
            l.catalog.create_lifecycle_policy(&policy, &e)?;
            outln!(
                "created lifecycle policy `{name}` for {} (disabled; publish a version next)",
                policy.scope()
            )?;
            Ok(0)
        }
        LifecycleCommand::Version {
            name,
            version,
            keep_forever,
            delete_after_days,
        } => {
            let actor = authorize(&l, &[Permission::Create])?;
            let action = match (keep_forever, delete_after_days) {
                (true, _) => RetentionAction::KeepForever,
                (false, Some(days)) => {
                    RetentionAction::delete_after(*days).map_err(anyhow::Error::msg)?
                }
                (false, None) => bail!("give --keep-forever or --delete-after-days N"),
            };
            if version.is_empty() || version.chars().any(char::is_control) {
                bail!("a version name must be non-empty printable text");
            }
            let v = LifecycleVersion::new(version, action, &actor.user);
            let e = event(
                &actor,
                AuditKind::LifecyclePolicyChanged,
                name,
                serde_json::json!({"change": "version_published", "version": v}),
            );
            l.catalog.publish_lifecycle_version(name, &v, &e)?;
            outln!(
                "published version `{version}` of `{name}`: {}",
                action.describe()
            )?;
            Ok(0)
        }
        LifecycleCommand::Enable { name, acknowledge } => {
            let actor = authorize(&l, &[Permission::Create])?;
            let p = find(&l, name)?;
            let Some(active) = p.active() else {
                bail!(
                    "policy `{name}` has no version yet: publish one with `custodian lifecycle version {name} VERSION …`"
                );
            };
            change(&l, &actor, &p, true, active, "enable", acknowledge)
        }
        LifecycleCommand::Disable { name, acknowledge } => {
            let actor = authorize(&l, &[Permission::Delete])?;
            let p = find(&l, name)?;
            let Some(active) = p.active() else {
                bail!("policy `{name}` has no version and is not enabled");
            };
            change(&l, &actor, &p, false, active, "disable", acknowledge)
        }
        LifecycleCommand::Activate {
            name,
            version,
            acknowledge,
        } => {
            let actor = authorize(&l, &[Permission::Create])?;
            let p = find(&l, name)?;
            let Some(v) = p.version(version) else {
                bail!(
                    "policy `{name}` has no version `{version}` (published: {})",
                    p.versions
                        .iter()
                        .map(|v| v.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            change(&l, &actor, &p, p.enabled, v, "activate", acknowledge)
        }
        LifecycleCommand::List => {
            authorize(&l, &[Permission::Read])?;
            let policies = l.catalog.lifecycle_policies()?;
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
                        p.active().map_or("-".into(), |v| v.action.describe())
                    )?;
                }
            }
            Ok(0)
        }
        LifecycleCommand::Show { name } => {
            authorize(&l, &[Permission::Read])?;
            let p = find(&l, name)?;
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
                        v.action.describe(),
                        v.published_at.to_rfc3339(),
                        v.published_by
                    )?;
                }
            }
            Ok(0)
        }
    }
}

/// Enables, disables or re-points a policy once the acknowledgments `version` needs are given;
/// each acknowledgment is an audit event committed with the change.
fn change(
    l: &Loaded,
    actor: &Actor,
    p: &LifecyclePolicy,
    enabled: bool,
    version: &LifecycleVersion,
    what: &str,
    given: &[String],
) -> Result<u8> {
    let needed = Acknowledgment::needed_for(version);
    Acknowledgment::check(&needed, given).map_err(anyhow::Error::msg)?;
    let mut events: Vec<NewEvent> = needed
        .iter()
        .map(|a| {
            event(
                actor,
                AuditKind::LifecycleAcknowledged,
                &p.name,
                serde_json::json!({
                    "change": what,
                    "version": version.name,
                    "acknowledgment": a.token(),
                    "text": a.text(),
                }),
            )
        })
        .collect();
    events.push(event(
        actor,
        AuditKind::LifecyclePolicyChanged,
        &p.name,
        serde_json::json!({"change": what, "version": version.name, "enabled": enabled}),
    ));
    l.catalog
        .update_lifecycle_policy(&p.name, enabled, &version.name, &events)?;
    outln!(
        "policy `{}` is {} with version `{}` active: {}",
        p.name,
        if enabled { "enabled" } else { "disabled" },
        version.name,
        version.action.describe()
    )?;
    Ok(0)
}

/// `plan lifecycle` / `run lifecycle --dry-run`: what is due now, per policy.
pub fn plan(cli: &Cli, no_index: bool) -> Result<u8> {
    let l = load(cli)?;
    if !no_index {
        run_index(&l, &progress_bar(cli, "index"), &Control::default())?;
    }
    let due = lifecycle::plan(l.catalog.as_ref(), Utc::now())?;
    if cli.json {
        print_json(&due)?;
        return Ok(0);
    }
    if due.is_empty() {
        outln!("no enabled lifecycle policy deletes anything")?;
    }
    for d in &due {
        outln!(
            "{}: version {} ({}, delete after {} days): {} artifacts due, {} bytes; next due {}",
            d.policy,
            d.version,
            d.scope,
            d.days,
            d.artifacts,
            d.bytes,
            d.next_due.map_or("never".into(), |t| t.to_rfc3339())
        )?;
    }
    Ok(0)
}

/// `run lifecycle`: the sweep, as a job run under the `[lifecycle]` job settings. It needs a
/// permission of its own, and `--force` (past the safety limits) another.
pub fn run(cli: &Cli, no_index: bool, force: bool, log: &RunLog) -> Result<u8> {
    let l = load(cli)?;
    let needed: &[Permission] = if force {
        &[Permission::Run, Permission::Force]
    } else {
        &[Permission::Run]
    };
    let actor = authorize(&l, needed)?;
    let job = l.config.lifecycle.job.clone();
    let index_bar = progress_bar(cli, "index");
    let bar = progress_bar(cli, "delete");
    super::cli_run::controlled(
        cli,
        &l,
        LIFECYCLE_RUN,
        &job,
        [&index_bar, &bar],
        log,
        |control| {
            let _lock = l.catalog.lock_policy(LIFECYCLE_RUN)?;
            let index = if no_index {
                None
            } else {
                Some(run_index(&l, &index_bar, control)?)
            };
            let limits = Limits {
                max_count: l.config.lifecycle.max_deletes_per_run,
                max_share: l.config.lifecycle.max_delete_share,
                force,
            };
            let summary = match lifecycle::run(
                l.catalog.as_ref(),
                &l.config.repository_root,
                Utc::now(),
                &job,
                &format!("{} (lifecycle)", actor.user),
                limits,
                index,
                &bar,
                control,
                log,
            ) {
                Ok(s) => s,
                Err(e @ (SweepError::OverLimit { .. } | SweepError::Root { .. })) => {
                    bar.finish_and_clear();
                    errln!("error: {e}");
                    return Ok(2);
                }
                Err(SweepError::Catalog(e)) => return Err(e.into()),
            };
            bar.finish_and_clear();
            if cli.json {
                print_json(&summary)?;
            } else {
                print_sweep(&summary)?;
            }
            Ok(summary.status.exit_code())
        },
    )
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
