//! `custodian audit …`: the audit trail listed, checked against its key and the anchors at the
//! targets, and its key created.

use anyhow::Result;
use clap::Subcommand;

use custodian::app::Loaded;
use custodian::app::audit::{self, TrailCheck, Unreadable};
use custodian::audit::AuditKind;
use custodian::catalog::trail::{AnchorStatus, TrailReport};
use custodian::catalog::{AuditQuery, RunId};

use super::args::Cli;
use super::out::{outln, print_json};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Audit events, oldest first.
    #[command(after_help = "Examples:
  custodian audit list --limit 3
  custodian audit list --kind artifact_deleted --limit 5")]
    List {
        #[arg(long)]
        run: Option<i64>,
        #[arg(long)]
        conversation: Option<String>,
        /// One trail: conversation_exported, artifact_deleted, artifact_quarantined,
        /// artifact_restored (lifecycle history),
        /// lifecycle_acknowledged, lifecycle_policy_changed, confidential_flag_changed,
        /// matter_created, legal_hold_placed, legal_hold_released (the legal-hold trail),
        /// lifecycle_change_requested, lifecycle_change_approved, lifecycle_change_rejected,
        /// lifecycle_change_expired (four eyes), account_added, account_removed,
        /// account_token_issued (portal accounts), trail_verified (verifications asked of
        /// the portal or the API).
        #[arg(long, value_parser = parse_audit_kind)]
        kind: Option<AuditKind>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Check the whole audit trail: its hash chain (keyed with the audit key), and the
    /// catalog against the chain heads the newest manifest of each export policy anchored at
    /// its target.
    #[command(after_help = "Examples:
  custodian audit verify
  custodian --json audit verify")]
    Verify,
    /// Create the audit key (`[audit] key_file`, 32 random bytes, mode 0600). It is also
    /// created on the first append to a catalog whose chain is not keyed yet.
    #[command(after_help = "Examples:
  custodian audit init-key")]
    InitKey,
}

/// `custodian audit …`.
pub fn audit(cli: &Cli, command: &AuditCommand) -> Result<u8> {
    let l = Loaded::load(&cli.config)?;
    match command {
        AuditCommand::List {
            run,
            conversation,
            kind,
            limit,
        } => {
            let events = audit::events(
                &l,
                &AuditQuery {
                    run: run.map(RunId),
                    conversation_id: conversation.clone(),
                    kind: *kind,
                    after_seq: 0,
                    limit: *limit,
                },
            )?;
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
        AuditCommand::Verify => verify(cli, &l),
        AuditCommand::InitKey => {
            let (path, key) = audit::init_key(&l)?;
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
fn verify(cli: &Cli, l: &Loaded) -> Result<u8> {
    let TrailCheck {
        report,
        key,
        unreadable,
    } = audit::verify(l)?;
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
        value["unreadable"] = unreadable
            .iter()
            .map(|u| serde_json::json!({"policy": u.policy, "target": u.target, "error": u.error}))
            .collect();
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
    unreadable: &[Unreadable],
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
            u.policy,
            u.target,
            u.error
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

fn parse_audit_kind(s: &str) -> Result<AuditKind, String> {
    AuditKind::parse(s).ok_or_else(|| {
        format!("unknown kind `{s}`: conversation_exported, artifact_deleted, artifact_quarantined, artifact_restored, lifecycle_acknowledged, lifecycle_policy_changed, confidential_flag_changed, matter_created, legal_hold_placed, legal_hold_released, lifecycle_change_requested, lifecycle_change_approved, lifecycle_change_rejected, lifecycle_change_expired, account_added, account_removed, account_token_issued or trail_verified")
    })
}
