//! Who may run the commands that manage retention and legal holds: the acting user (the one
//! the process runs as, or the one the service authenticated) checked against the roles file `roles` in `[lifecycle]` names
//! (docs/operations.md, "Permissions and roles").

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::{Acting, Loaded};
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
    let actor = match &l.acting {
        Acting::Process => Actor::current()?,
        Acting::As(actor) => actor.clone(),
    };
    for permission in permissions {
        roles.require(&actor, *permission)?;
    }
    Ok(actor)
}
