//! Who may run the commands that manage retention and legal holds: the acting user (the one
//! the process runs as, or the one the service authenticated) checked against the roles file `roles` in `[lifecycle]` names
//! (docs/operations.md, "Permissions and roles").

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::Loaded;
use crate::catalog::CatalogConfig;
use crate::policy::roles::{Permission, Roles, RolesError};
use crate::users::{Actor, UnknownUser, describe_uid};

/// Why the acting user could not be authorized.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Roles(#[from] RolesError),
    #[error(transparent)]
    User(#[from] UnknownUser),
    #[error(
        "this command needs a roles file granting permissions: set `roles` in the [lifecycle] table of {0}"
    )]
    NoRoles(PathBuf),
    #[error("catalog {path}")]
    CatalogFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Besides root, who may own the roles file: the owner of the SQLite catalog file, or, for a
/// PostgreSQL catalog (no file to own), the user running custodian. The uid and how messages
/// name it.
fn trusted_owner(catalog: &CatalogConfig) -> Result<(u32, String), AccessError> {
    Ok(match catalog {
        CatalogConfig::Sqlite { path } => {
            let uid = std::fs::metadata(path)
                .map_err(|source| AccessError::CatalogFile {
                    path: path.clone(),
                    source,
                })?
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
pub fn authorize(l: &Loaded, permissions: &[Permission]) -> Result<Actor, AccessError> {
    let Some(roles) = &l.config.lifecycle.roles else {
        return Err(AccessError::NoRoles(l.config.file.clone()));
    };
    let (trusted, trusted_as) = trusted_owner(&l.config.catalog)?;
    let roles = Roles::load(roles, trusted, &trusted_as)?;
    let actor = l.acting.actor()?;
    for permission in permissions {
        roles.require(&actor, *permission)?;
    }
    Ok(actor)
}

/// A command that writes the catalog was refused: the catalog is a file of another user, not
/// shared with a group (docs/operations.md, "The service and its socket").
#[derive(Debug, thiserror::Error)]
#[error(
    "catalog {} belongs to {owner}, not to {you}, and is not shared with a group: this command writes the catalog, so it is refused; {what}",
    path.display()
)]
pub struct NotOwner {
    path: PathBuf,
    owner: String,
    you: String,
    what: String,
}

/// Refuses a command that writes the catalog when the catalog is a SQLite file that another
/// user owns and has not opened to its group (mode without g+w): the service's catalog (0600),
/// whose only writer is `custodian serve`. A catalog shared through a group ("Several users on
/// one SQLite catalog"), a file yet to be created and a PostgreSQL catalog (its server checks
/// who connects) are not refused here.
pub fn own_catalog(config: &crate::config::Config) -> Result<(), NotOwner> {
    let CatalogConfig::Sqlite { path } = &config.catalog else {
        return Ok(());
    };
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let uid = nix::unistd::getuid().as_raw();
    if meta.uid() == uid || meta.mode() & 0o020 != 0 {
        return Ok(());
    }
    let what = match &config.serve.socket {
        Some(socket) => format!(
            "management commands (lifecycle, hold, run) go to the service through its socket {}; is `custodian serve` running?",
            socket.path.display()
        ),
        None => format!(
            "ask its owner, or send management commands to the service that owns it: name its socket in `socket` of the [serve] table of {}",
            config.file.display()
        ),
    };
    Err(NotOwner {
        path: path.clone(),
        owner: describe_uid(meta.uid()),
        you: describe_uid(uid),
        what,
    })
}
