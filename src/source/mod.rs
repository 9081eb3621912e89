//! Where the recordings are read and removed: the repository on a filesystem, through
//! directory handles (`confined`), or in a bucket or container of an object store, through
//! the store's client (`target::remote`). The layout is the same in both
//! (docs/repository.md, "Layout"); in a store a directory is a key prefix ending in `/`.

mod settings;
#[cfg(feature = "remote")]
mod store;

pub use settings::{RepositoryConfig, RepositorySettings};
#[cfg(feature = "remote")]
pub use store::{Store, StoreFolder, StoreReader, Stored};

use crate::confined::{ConfinedError, Dir};

/// Why the repository could not be reached or read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("repository root: {0}; check `root` in [repository] of the config")]
    Root(ConfinedError),
    /// `message` carries the store's words and never a credential.
    #[error("repository {location}: {key}: {message}")]
    Store {
        location: String,
        key: String,
        message: String,
    },
    #[error("repository {location}: {key}: not found")]
    NotFound { location: String, key: String },
    #[error("repository {location}: {key}: more than {max} bytes")]
    TooLarge {
        location: String,
        key: String,
        max: u64,
    },
    /// `what` works on a repository in a directory only.
    #[error(
        "{what} works on a repository in a directory; [repository] of the config names an object store"
    )]
    NeedsDirectory { what: &'static str },
    #[error("repository {location} is not usable: {message}")]
    Unusable { location: String, message: String },
}

/// The repository, opened.
pub enum Repository {
    /// A directory tree, as a handle everything is opened beneath.
    Local(Dir),
    /// A bucket or container.
    #[cfg(feature = "remote")]
    Store(Store),
}

impl Repository {
    /// Opens the repository `config` names: the root directory's handle, or the store's client
    /// (which connects nowhere until used; [`Store::check`] tries it).
    pub fn open(config: &RepositoryConfig) -> Result<Repository, SourceError> {
        match config {
            RepositoryConfig::Filesystem { root } => Dir::open_root(root)
                .map(Repository::Local)
                .map_err(SourceError::Root),
            #[cfg(feature = "remote")]
            RepositoryConfig::Store(target) => Store::connect(target).map(Repository::Store),
            #[cfg(not(feature = "remote"))]
            RepositoryConfig::Store(_) => Err(SourceError::Unusable {
                location: "[repository]".into(),
                message: "this build of custodian leaves out object stores".into(),
            }),
        }
    }
}
