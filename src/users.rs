//! Operating-system users: the one the process runs as, with its groups, and how a user is
//! named in messages.

use std::collections::BTreeSet;

/// The user running custodian cannot be told (no passwd entry, a failed lookup).
#[derive(Debug, thiserror::Error)]
#[error("cannot tell who is running custodian: {0}")]
pub struct UnknownUser(String);

/// The acting operating-system user and its groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub user: String,
    pub groups: Vec<String>,
}

impl Actor {
    /// The user this process runs as (real uid) and the groups it is in.
    pub fn current() -> Result<Actor, UnknownUser> {
        use nix::unistd::{Group, User, getgroups, getuid};
        let uid = getuid();
        let user = User::from_uid(uid)
            .map_err(|e| UnknownUser(e.to_string()))?
            .ok_or_else(|| UnknownUser(format!("uid {uid} has no passwd entry")))?;
        let mut gids = getgroups().map_err(|e| UnknownUser(e.to_string()))?;
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

    /// The user with `uid` (a peer the kernel named) and the groups the user database puts it
    /// in: its primary group and every group listing it (getgrouplist(3)), as a login would
    /// get them.
    pub fn of_uid(uid: u32) -> Result<Actor, UnknownUser> {
        use nix::unistd::{Group, Uid, User, getgrouplist};
        let user = User::from_uid(Uid::from_raw(uid))
            .map_err(|e| UnknownUser(e.to_string()))?
            .ok_or_else(|| UnknownUser(format!("uid {uid} has no passwd entry")))?;
        let name = std::ffi::CString::new(user.name.as_bytes())
            .map_err(|_| UnknownUser(format!("uid {uid} has a user name with a NUL byte")))?;
        let gids = getgrouplist(&name, user.gid)
            .map_err(|e| UnknownUser(format!("the groups of {} (uid {uid}): {e}", user.name)))?;
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

/// A user named for messages: `alice (uid 1000)`, or the uid alone without a passwd entry.
pub fn describe_uid(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("{} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_is_named_with_the_groups_of_its_user() {
        let root = Actor::of_uid(0).unwrap();
        assert_eq!(root.user, "root");
        assert!(root.groups.iter().any(|g| g == "root"), "{root:?}");
        let e = Actor::of_uid(3_999_999_999).unwrap_err().to_string();
        assert!(e.contains("uid 3999999999 has no passwd entry"), "{e}");
    }
}
