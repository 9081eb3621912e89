//! Who may manage lifecycle policies, run the sweep, and see or manage legal holds: permissions
//! granted to operating-system users and groups in a roles file the config names. The acting
//! user is the one the process runs as.
//!
//! Whoever can write the roles file can grant any permission, so, as ssh treats its key files,
//! it is refused unless only its owner can write it and that owner is root or the one the
//! caller trusts (the catalog's owner).
//!
//! ```toml
//! [users]
//! alice = ["ARTIFACTS_LIFECYCLE_POLICY_READ", "ARTIFACTS_LIFECYCLE_POLICY_CREATE"]
//! "*" = ["ARTIFACTS_LIFECYCLE_POLICY_READ"]      # every user
//! [groups]
//! compliance = ["ARTIFACTS_LIFECYCLE_POLICY_DELETE", "LEGAL_HOLD_READ", "LEGAL_HOLD_MANAGE"]
//! ```

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::users::{Actor, describe_uid};

/// A permission over lifecycle policies or legal holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Permission {
    /// List and show policies.
    #[serde(rename = "ARTIFACTS_LIFECYCLE_POLICY_READ")]
    Read,
    /// Create policies, publish versions, enable, choose the active version.
    #[serde(rename = "ARTIFACTS_LIFECYCLE_POLICY_CREATE")]
    Create,
    /// Disable policies.
    #[serde(rename = "ARTIFACTS_LIFECYCLE_POLICY_DELETE")]
    Delete,
    /// Run the sweep (`run lifecycle`), which deletes what the enabled policies make due.
    #[serde(rename = "ARTIFACTS_LIFECYCLE_POLICY_RUN")]
    Run,
    /// Run the sweep past its safety limits (`run lifecycle --force`).
    #[serde(rename = "ARTIFACTS_LIFECYCLE_POLICY_FORCE")]
    Force,
    /// Approve or reject another user's change that makes a delete version take effect
    /// (`lifecycle approve`, `lifecycle reject`; four eyes).
    #[serde(rename = "ARTIFACTS_LIFECYCLE_POLICY_APPROVE")]
    Approve,
    /// Put quarantined artifacts back (`lifecycle restore`).
    #[serde(rename = "ARTIFACTS_LIFECYCLE_POLICY_RESTORE")]
    Restore,
    /// List and show matters and their legal holds (`hold list`, `hold show`).
    #[serde(rename = "LEGAL_HOLD_READ")]
    LegalHoldRead,
    /// Create matters, place and release legal holds (`hold create`, `add`, `release`).
    #[serde(rename = "LEGAL_HOLD_MANAGE")]
    LegalHoldManage,
    /// See policies, their schedules, and job runs with their failed items and manifests
    /// (the service's `/runs` and `/policies`).
    #[serde(rename = "JOBS_READ")]
    JobsRead,
    /// Start a run of a policy now, through the service.
    #[serde(rename = "JOBS_RUN")]
    JobsRun,
    /// Read the audit trail and its verification status through the service.
    #[serde(rename = "AUDIT_READ")]
    AuditRead,
    /// Search conversations and see their records, artifacts, exports, flags and holds
    /// through the service.
    #[serde(rename = "CONVERSATIONS_READ")]
    ConversationsRead,
}

impl Permission {
    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "ARTIFACTS_LIFECYCLE_POLICY_READ",
            Permission::Create => "ARTIFACTS_LIFECYCLE_POLICY_CREATE",
            Permission::Delete => "ARTIFACTS_LIFECYCLE_POLICY_DELETE",
            Permission::Run => "ARTIFACTS_LIFECYCLE_POLICY_RUN",
            Permission::Force => "ARTIFACTS_LIFECYCLE_POLICY_FORCE",
            Permission::Approve => "ARTIFACTS_LIFECYCLE_POLICY_APPROVE",
            Permission::Restore => "ARTIFACTS_LIFECYCLE_POLICY_RESTORE",
            Permission::LegalHoldRead => "LEGAL_HOLD_READ",
            Permission::LegalHoldManage => "LEGAL_HOLD_MANAGE",
            Permission::JobsRead => "JOBS_READ",
            Permission::JobsRun => "JOBS_RUN",
            Permission::AuditRead => "AUDIT_READ",
            Permission::ConversationsRead => "CONVERSATIONS_READ",
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRoles {
    #[serde(default)]
    users: BTreeMap<String, Vec<Permission>>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<Permission>>,
}

/// Why permissions could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum RolesError {
    #[error("roles file {file}: {message}")]
    File { file: PathBuf, message: String },
    #[error(
        "roles file {file} is writable by group or others (mode {mode:03o}), so anyone could grant themselves permissions; run `chmod go-w {file}`"
    )]
    Writable { file: PathBuf, mode: u32 },
    #[error(
        "roles file {file} is owned by {owner}, not by root or {trusted}; only they may grant permissions: run `chown root {file}` (or chown it to {trusted})"
    )]
    Owner {
        file: PathBuf,
        owner: String,
        trusted: String,
    },
    #[error(
        "user `{user}` lacks the permission {permission} (roles file {file}); ask an administrator to grant it to the user or one of its groups ({groups})"
    )]
    Denied {
        user: String,
        groups: String,
        permission: &'static str,
        file: PathBuf,
    },
}

/// Largest roles file read; a real one is a few lines.
const MAX_ROLES_BYTES: u64 = 1 << 20;

/// Grants from a roles file.
pub struct Roles {
    file: PathBuf,
    raw: RawRoles,
}

impl Roles {
    /// Loads the roles file, refusing one that group or others can write, or that is owned by
    /// anyone but root and `trusted` (a uid, described in messages as `trusted_as`).
    pub fn load(file: &Path, trusted: u32, trusted_as: &str) -> Result<Roles, RolesError> {
        let err = |message: String| RolesError::File {
            file: file.to_owned(),
            message,
        };
        let opened = std::fs::File::open(file).map_err(|e| err(e.to_string()))?;
        // Checked on the open file, so what is read is what was checked.
        let meta = opened.metadata().map_err(|e| err(e.to_string()))?;
        if !meta.is_file() {
            return Err(err("not a regular file".into()));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(RolesError::Writable {
                file: file.to_owned(),
                mode,
            });
        }
        if meta.uid() != 0 && meta.uid() != trusted {
            return Err(RolesError::Owner {
                file: file.to_owned(),
                owner: describe_uid(meta.uid()),
                trusted: trusted_as.to_owned(),
            });
        }
        let mut text = String::new();
        opened
            .take(MAX_ROLES_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| err(e.to_string()))?;
        if text.len() as u64 > MAX_ROLES_BYTES {
            return Err(err(format!(
                "larger than {MAX_ROLES_BYTES} bytes; a roles file lists a few users and groups"
            )));
        }
        let raw: RawRoles = toml_edit::de::from_str(&text).map_err(|e| err(e.to_string()))?;
        Ok(Roles {
            file: file.to_owned(),
            raw,
        })
    }

    /// Refuses unless `actor` (or `*`, or one of its groups) holds `permission`.
    pub fn require(&self, actor: &Actor, permission: Permission) -> Result<(), RolesError> {
        let by_user = [actor.user.as_str(), "*"]
            .iter()
            .filter_map(|u| self.raw.users.get(*u))
            .any(|p| p.contains(&permission));
        let by_group = actor
            .groups
            .iter()
            .filter_map(|g| self.raw.groups.get(g))
            .any(|p| p.contains(&permission));
        if by_user || by_group {
            Ok(())
        } else {
            Err(RolesError::Denied {
                user: actor.user.clone(),
                groups: actor.groups.join(", "),
                permission: permission.name(),
                file: self.file.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(text: &str) -> Roles {
        Roles {
            file: "roles.toml".into(),
            raw: toml_edit::de::from_str(text).unwrap(),
        }
    }

    #[test]
    fn grants_by_user_wildcard_and_group() {
        let r = roles(
            "[users]\nalice = [\"ARTIFACTS_LIFECYCLE_POLICY_CREATE\"]\n\"*\" = [\"ARTIFACTS_LIFECYCLE_POLICY_READ\"]\n[groups]\nops = [\"ARTIFACTS_LIFECYCLE_POLICY_DELETE\"]\n",
        );
        let alice = Actor {
            user: "alice".into(),
            groups: vec![],
        };
        let bob = Actor {
            user: "bob".into(),
            groups: vec!["ops".into()],
        };
        assert!(r.require(&alice, Permission::Create).is_ok());
        assert!(r.require(&alice, Permission::Read).is_ok());
        assert!(r.require(&bob, Permission::Delete).is_ok());
        let err = r.require(&bob, Permission::Create).unwrap_err().to_string();
        assert!(
            err.contains("ARTIFACTS_LIFECYCLE_POLICY_CREATE") && err.contains("`bob`"),
            "{err}"
        );
    }

    #[test]
    fn the_sweep_and_force_are_permissions_of_their_own() {
        let r = roles(
            "[users]\nops = [\"ARTIFACTS_LIFECYCLE_POLICY_RUN\"]\n\"*\" = [\"ARTIFACTS_LIFECYCLE_POLICY_READ\", \"ARTIFACTS_LIFECYCLE_POLICY_CREATE\", \"ARTIFACTS_LIFECYCLE_POLICY_DELETE\"]\n[groups]\nadmins = [\"ARTIFACTS_LIFECYCLE_POLICY_FORCE\"]\n",
        );
        let anyone = Actor {
            user: "eve".into(),
            groups: vec![],
        };
        let ops = Actor {
            user: "ops".into(),
            groups: vec![],
        };
        let admin = Actor {
            user: "root".into(),
            groups: vec!["admins".into()],
        };
        for p in [Permission::Run, Permission::Force] {
            let err = r.require(&anyone, p).unwrap_err().to_string();
            assert!(err.contains(p.name()), "{err}");
        }
        assert!(r.require(&ops, Permission::Run).is_ok());
        assert!(r.require(&ops, Permission::Force).is_err());
        assert!(r.require(&admin, Permission::Force).is_ok());
    }

    #[test]
    fn approving_is_a_permission_of_its_own() {
        let r = roles(
            "[users]\n\"*\" = [\"ARTIFACTS_LIFECYCLE_POLICY_CREATE\"]\n[groups]\ncompliance = [\"ARTIFACTS_LIFECYCLE_POLICY_APPROVE\"]\n",
        );
        let requester = Actor {
            user: "alice".into(),
            groups: vec![],
        };
        let approver = Actor {
            user: "bob".into(),
            groups: vec!["compliance".into()],
        };
        let err = r
            .require(&requester, Permission::Approve)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ARTIFACTS_LIFECYCLE_POLICY_APPROVE"), "{err}");
        assert!(r.require(&approver, Permission::Approve).is_ok());
    }

    fn roles_file(dir: &Path, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let file = dir.join("roles.toml");
        std::fs::write(
            &file,
            "[users]\n\"*\" = [\"ARTIFACTS_LIFECYCLE_POLICY_RUN\"]\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        file
    }

    fn owner_of(file: &Path) -> u32 {
        std::fs::metadata(file).unwrap().uid()
    }

    #[test]
    fn a_roles_file_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o666, 0o620, 0o602] {
            let file = roles_file(dir.path(), mode);
            let err = Roles::load(&file, owner_of(&file), "the catalog's owner")
                .err()
                .expect("refused")
                .to_string();
            assert!(
                err.contains(&format!("mode {mode:03o}")) && err.contains("chmod go-w"),
                "{err}"
            );
        }
        let file = roles_file(dir.path(), 0o644);
        assert!(Roles::load(&file, owner_of(&file), "the catalog's owner").is_ok());
    }

    #[test]
    fn a_roles_file_owned_by_someone_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = roles_file(dir.path(), 0o644);
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
        std::os::unix::fs::chown(&file, Some(nobody.as_raw()), None).unwrap();
        // Owned by nobody: refused whoever is trusted, unless nobody is.
        let mine = nix::unistd::getuid().as_raw();
        let err = Roles::load(&file, mine, "the catalog's owner")
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("owned by nobody") && err.contains("chown root"),
            "{err}"
        );
        assert!(Roles::load(&file, nobody.as_raw(), "nobody").is_ok());
    }

    #[test]
    fn unknown_permissions_are_refused() {
        assert!(toml_edit::de::from_str::<RawRoles>("[users]\na = [\"ROOT\"]\n").is_err());
    }
}
