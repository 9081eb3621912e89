//! Who may manage lifecycle policies: permissions granted to operating-system users and groups
//! in a roles file the config names. The acting user is the one the process runs as.
//!
//! ```toml
//! [users]
//! alice = ["ARTIFACTS_LIFECYCLE_POLICY_READ", "ARTIFACTS_LIFECYCLE_POLICY_CREATE"]
//! "*" = ["ARTIFACTS_LIFECYCLE_POLICY_READ"]      # every user
//! [groups]
//! compliance = ["ARTIFACTS_LIFECYCLE_POLICY_DELETE"]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A permission over lifecycle policies.
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
}

impl Permission {
    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "ARTIFACTS_LIFECYCLE_POLICY_READ",
            Permission::Create => "ARTIFACTS_LIFECYCLE_POLICY_CREATE",
            Permission::Delete => "ARTIFACTS_LIFECYCLE_POLICY_DELETE",
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
        "user `{user}` lacks the permission {permission} (roles file {file}); ask an administrator to grant it to the user or one of its groups ({groups})"
    )]
    Denied {
        user: String,
        groups: String,
        permission: &'static str,
        file: PathBuf,
    },
    #[error("cannot tell who is running custodian: {0}")]
    Identity(String),
}

/// The acting operating-system user and its groups.
#[derive(Clone, Debug)]
pub struct Actor {
    pub user: String,
    pub groups: Vec<String>,
}

impl Actor {
    /// The user this process runs as (real uid) and the groups it is in.
    pub fn current() -> Result<Actor, RolesError> {
        use nix::unistd::{Group, User, getgroups, getuid};
        let uid = getuid();
        let user = User::from_uid(uid)
            .map_err(|e| RolesError::Identity(e.to_string()))?
            .ok_or_else(|| RolesError::Identity(format!("uid {uid} has no passwd entry")))?;
        let mut gids = getgroups().map_err(|e| RolesError::Identity(e.to_string()))?;
        gids.push(user.gid);
        let mut groups: BTreeSet<String> = BTreeSet::new();
        for gid in gids {
            if let Ok(Some(g)) = Group::from_gid(gid) {
                groups.insert(g.name);
            }
        }
        Ok(Actor {
            user: user.name,
            groups: groups.into_iter().collect(),
        })
    }
}

/// Grants from a roles file.
pub struct Roles {
    file: PathBuf,
    raw: RawRoles,
}

impl Roles {
    pub fn load(file: &Path) -> Result<Roles, RolesError> {
        let err = |message: String| RolesError::File {
            file: file.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(file).map_err(|e| err(e.to_string()))?;
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
    fn unknown_permissions_are_refused() {
        assert!(toml_edit::de::from_str::<RawRoles>("[users]\na = [\"ROOT\"]\n").is_err());
    }
}
