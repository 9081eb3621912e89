//! What each command does, below the command line that parses its arguments and prints its
//! results: run control, the runs and plans of policies, serve's supervisor, the direct-export
//! loop, lifecycle administration, verification, the audit trail and the media commands. Each
//! takes typed inputs and returns a typed report or error; none prints. What a command has to
//! say while it goes (progress, a failed file, a finished run) it tells an observer the caller
//! passes in.
//!
//! This module holds what several commands share: the loaded config and catalog, targets,
//! keystores, and the setup of an export.

pub mod access;
pub mod accounts;
pub mod audit;
pub mod control;
pub mod conversations;
pub mod direct;
pub mod holds;
pub mod jobs;
pub mod lifecycle;
pub mod manage;
pub mod media;
pub mod metrics;
pub mod plan;
pub mod run;
pub mod serve;

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;

use crate::audit::{KeySource, current_actor};
use crate::catalog::uploads::UploadJournal;
use crate::catalog::{self, Catalog, CatalogError};
use crate::config::{Config, ConfigError};
use crate::confined::{ConfinedError, Dir};
use crate::filter::Filter;
use crate::media::keystore::{Keystore, KeystoreError};
use crate::media::scratch::{Scratch, ScratchError};
use crate::pipeline::Control;
use crate::policy::Policy;
use crate::policy::export::{Export, ExportPolicy};
use crate::policy::index::{self, IndexError, IndexReport};
use crate::policy::produce::{self, MediaTools};
use crate::progress::Progress;
#[cfg(feature = "remote")]
use crate::source::Store;
use crate::source::{Repository, RepositoryConfig, SourceError};
use crate::target::{self, Target, TargetError};
use crate::users::Actor;

/// Why a command could not set itself up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("target `{0}` is not defined")]
    UnknownTarget(String),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    #[error("opening the repository root")]
    RepositoryRoot(#[source] ConfinedError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Scratch(#[from] ScratchError),
    /// The configured ffmpeg cannot make the policy's video.
    #[error("{0}")]
    Ffmpeg(String),
    #[error(
        "policy `{0}` sets confidential flags and exports nothing; `custodian run {0}` runs it"
    )]
    NotExport(String),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    NotOwner(#[from] access::NotOwner),
    /// The signal handlers could not be installed.
    #[error(transparent)]
    Signals(std::io::Error),
}

/// A command's config and the catalog it names, and whose permissions it runs with.
pub struct Loaded {
    pub config: Config,
    pub catalog: Arc<dyn Catalog>,
    pub acting: Acting,
}

/// Whose permissions a command is checked against (docs/operations.md, "Permissions and
/// roles").
#[derive(Clone, Debug)]
pub enum Acting {
    /// The operating-system user this process runs as.
    Process,
    /// A user the service authenticated for a request: a peer of its socket (told by the
    /// kernel) or an account of its web portal.
    As(Actor),
}

impl Acting {
    /// The user acting.
    pub fn actor(&self) -> Result<Actor, crate::users::UnknownUser> {
        match self {
            Acting::Process => Actor::current(),
            Acting::As(actor) => Ok(actor.clone()),
        }
    }
}

impl Loaded {
    /// Reads the config at `path` and opens its catalog, keyed with the audit key.
    pub fn load(path: &Path) -> Result<Loaded, SetupError> {
        Loaded::open(Config::load(path)?)
    }

    /// Reads the config at `path` for a command that writes the catalog, which it refuses when
    /// the catalog is a file of another user not shared with a group
    /// ([`access::own_catalog`]), then opens the catalog.
    pub fn load_to_write(path: &Path) -> Result<Loaded, SetupError> {
        Loaded::open_to_write(Config::load(path)?)
    }

    /// Opens the catalog `config` names for a command that writes it, unless
    /// [`access::own_catalog`] refuses it.
    pub fn open_to_write(config: Config) -> Result<Loaded, SetupError> {
        access::own_catalog(&config)?;
        Loaded::open(config)
    }

    /// Opens the catalog `config` names, keyed with its audit key.
    pub fn open(config: Config) -> Result<Loaded, SetupError> {
        let catalog =
            catalog::open_keyed(&config.catalog, KeySource::new(&config.audit.key_file))?.into();
        Ok(Loaded {
            config,
            catalog,
            acting: Acting::Process,
        })
    }

    /// The same config and catalog, acting as `actor`.
    pub fn acting_as(&self, actor: Actor) -> Loaded {
        Loaded {
            config: self.config.clone(),
            catalog: self.catalog.clone(),
            acting: Acting::As(actor),
        }
    }

    /// The export policy `name`.
    pub fn export_policy(&self, name: &str) -> Result<&ExportPolicy, SetupError> {
        match self.config.policy(name)? {
            Policy::Export(p) => Ok(p),
            Policy::Confidential(_) => Err(SetupError::NotExport(name.to_owned())),
        }
    }

    /// The target `name`, built but not yet checked.
    pub fn build_target(&self, name: &str) -> Result<Box<dyn Target>, SetupError> {
        let config = self
            .config
            .targets
            .get(name)
            .ok_or_else(|| SetupError::UnknownTarget(name.to_owned()))?;
        let journal: Arc<dyn UploadJournal> = self.catalog.clone();
        Ok(target::build(name, config, Some(journal))?)
    }

    /// Builds a target, checks it is usable, and aborts the uploads a killed run left open.
    pub fn open_target(&self, name: &str) -> Result<Box<dyn Target>, SetupError> {
        let t = self.build_target(name)?;
        t.check()?;
        Ok(t)
    }

    /// The keystore a policy needs (to decrypt artifacts or encrypted channel segments), loaded
    /// before any work starts.
    pub fn keystore(&self, policy: &ExportPolicy) -> Result<Option<Keystore>, SetupError> {
        let media = &self.config.media;
        match &media.keystore {
            Some(path) if policy.decrypt || policy.stitch_cdr_only => {
                Ok(Some(if media.tighten_keystore {
                    Keystore::load_tightening(path)?
                } else {
                    Keystore::load(path)?
                }))
            }
            _ => Ok(None),
        }
    }

    /// The repository's root directory, for `what`, which works on a directory only.
    pub fn local_root(&self, what: &'static str) -> Result<&std::path::Path, SourceError> {
        self.config
            .repository
            .local_root()
            .ok_or(SourceError::NeedsDirectory { what })
    }

    /// Indexes the repository; a stop asked of `control` (a signal, the run's time limit) ends
    /// the pass early with what it found committed.
    pub fn index(
        &self,
        progress: &dyn Progress,
        control: &Control,
    ) -> Result<IndexReport, IndexError> {
        progress.message("index");
        let max = self.config.max_record_bytes;
        let catalog = self.catalog.as_ref();
        let mut report = match &self.config.repository {
            RepositoryConfig::Filesystem { root } => {
                index::index(root, max, catalog, progress, control)?
            }
            #[cfg(feature = "remote")]
            RepositoryConfig::Store(target) => {
                let store = Store::connect(target)?;
                store.check()?;
                index::index_store(&store, max, catalog, progress, control)?
            }
            // A build without object stores refuses to open one, naming why.
            #[cfg(not(feature = "remote"))]
            RepositoryConfig::Store(_) => match Repository::open(&self.config.repository)? {
                Repository::Local(dir) => {
                    index::index(dir.path(), max, catalog, progress, control)?
                }
            },
        };
        progress.finish();
        self.sync_recorder_holds(&mut report);
        Ok(report)
    }

    /// After an index pass: sets the legal-hold status of the locked objects of conversations
    /// whose recorder `legal_hold` flag changed (queued by the pass), and whatever else is
    /// queued, on behalf of the process (the recorder decided, not a user). What cannot be
    /// set stays queued and is reported, never failing the pass.
    fn sync_recorder_holds(&self, report: &mut IndexReport) {
        if !self
            .config
            .targets
            .values()
            .any(|t| t.object_lock().is_some())
        {
            return;
        }
        let synced = self
            .acting
            .actor()
            .map_err(|e| e.to_string())
            .and_then(|actor| holds::drain(self, &actor).map_err(|e| e.to_string()));
        match synced {
            Ok(sync) => {
                report.legal_hold_statuses_set = sync.on + sync.off;
                report.legal_hold_syncs_left = sync.left;
            }
            Err(e) => report
                .legal_hold_syncs_left
                .push(format!("the legal-hold sync queue: {e}")),
        }
    }

    /// Sets up an export of `policy` to `target` over the conversations `filter` selects.
    pub fn export<'a>(
        &'a self,
        policy: &'a ExportPolicy,
        target: &'a dyn Target,
        keystore: Option<&'a Keystore>,
        filter: Filter,
    ) -> Result<Export<'a>, SetupError> {
        let io = self.export_io(policy)?;
        Ok(self.assemble(policy, target, keystore, filter, io))
    }

    /// Sets up an export of `policy` as its criteria select once the repository is indexed
    /// (unless `no_index`).
    pub fn prepare_export<'a>(
        &'a self,
        policy: &'a ExportPolicy,
        target: &'a dyn Target,
        keystore: Option<&'a Keystore>,
        no_index: bool,
        index_progress: &dyn Progress,
        control: &Control,
    ) -> Result<(Option<IndexReport>, Export<'a>), SetupError> {
        let io = self.export_io(policy)?;
        let index = if no_index {
            None
        } else {
            Some(self.index(index_progress, control)?)
        };
        let filter = Filter::resolve(&policy.criteria, Utc::now(), policy.job.timezone);
        let export = self.assemble(policy, target, keystore, filter, io);
        Ok((index, export))
    }

    /// Checks that the configured ffmpeg can make the policy's video, then opens the repository
    /// an export reads every file through (checking that a store answers) and this process's
    /// private scratch directory (opening it sweeps what killed runs left in the scratch root).
    fn export_io(&self, policy: &ExportPolicy) -> Result<ExportIo, SetupError> {
        if let (Some(ffmpeg), Some(_)) = (&self.config.media.ffmpeg, &policy.video_format) {
            produce::check_ffmpeg(ffmpeg).map_err(SetupError::Ffmpeg)?;
        }
        let repo = match &self.config.repository {
            RepositoryConfig::Filesystem { root } => {
                Repository::Local(Dir::open_root(root).map_err(SetupError::RepositoryRoot)?)
            }
            store => Repository::open(store)?,
        };
        #[cfg(feature = "remote")]
        if let Repository::Store(store) = &repo {
            store.check()?;
        }
        let in_store = match (
            &self.config.repository,
            self.config.targets.get(&policy.target),
        ) {
            (RepositoryConfig::Store(source), Some(target)) => {
                crate::target::copies_from(target, source).map(str::to_owned)
            }
            _ => None,
        };
        let scratch_root = self
            .config
            .media
            .scratch_dir
            .clone()
            .unwrap_or_else(Scratch::default_root);
        let scratch = Scratch::open(&scratch_root)?;
        if scratch.swept() > 0 {
            tracing::info!(
                "removed {} scratch director(ies) of dead processes from {}",
                scratch.swept(),
                scratch_root.display()
            );
        }
        Ok(ExportIo {
            repo,
            in_store,
            scratch,
        })
    }

    fn assemble<'a>(
        &'a self,
        policy: &'a ExportPolicy,
        target: &'a dyn Target,
        keystore: Option<&'a Keystore>,
        filter: Filter,
        io: ExportIo,
    ) -> Export<'a> {
        Export {
            policy,
            repo: io.repo,
            in_store: io.in_store,
            scratch: io.scratch,
            target,
            catalog: self.catalog.as_ref(),
            filter,
            tools: MediaTools {
                keystore,
                ffmpeg: self.config.media.ffmpeg.as_deref(),
            },
            actor: current_actor(),
        }
    }
}

/// What an export reads from and stages in.
struct ExportIo {
    repo: Repository,
    in_store: Option<String>,
    scratch: Scratch,
}

/// `error` and each of its sources after a colon, as the command line prints errors.
pub fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
