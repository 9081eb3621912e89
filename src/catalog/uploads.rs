//! The upload journal: where remote targets note each multipart upload from its start to its
//! end, kept in the catalog so that an upload a crash cut off is found and aborted later.

use super::{Result, RunId};

/// A multipart upload in progress, as the journal remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenUpload {
    pub key: String,
    pub upload_id: String,
}

/// Where remote targets note each multipart upload from its start to its end, so that one a
/// crash cut off is found and aborted by the next run instead of lingering (and billing) at
/// the store. The catalog keeps it.
pub trait UploadJournal: Send + Sync {
    /// Notes an upload begun for `run` (None outside any run).
    fn upload_started(
        &self,
        target: &str,
        key: &str,
        upload_id: &str,
        run: Option<RunId>,
    ) -> Result<()>;
    fn upload_ended(&self, target: &str, upload_id: &str) -> Result<()>;
    /// The open uploads of `target` no live process is writing: those of no run, of a run no
    /// longer running (a killed run later finished, or pruned), and of `run` when given.
    fn abandoned_uploads(&self, target: &str, run: Option<RunId>) -> Result<Vec<OpenUpload>>;
}
