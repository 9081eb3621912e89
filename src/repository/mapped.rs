//! Memory-mapped reads of repository files: the export hot path hashes and writes a file
//! straight from the page cache, without first copying it into a buffer.
//!
//! This is the crate's only `unsafe`. Safety argument: a mapping is undefined behaviour only if
//! the file changes while mapped. Repository files are written once by the recorder and then
//! only read or unlinked (unlinking keeps a mapping valid); custodian itself never writes them.
//! An external process truncating a file mid-export would make the process fault (SIGBUS)
//! rather than export wrong bytes, so the risk is a crashed run, which the next run resumes.
//! Files smaller than [`MIN_MAPPED`] are read normally, where a mapping does not pay.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

/// Smallest file worth mapping.
pub const MIN_MAPPED: u64 = 256 * 1024;

/// A read-only view of a whole file.
pub struct Mapped(memmap2::Mmap);

impl std::ops::Deref for Mapped {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// Maps `file` (of `len` bytes) if it is large enough to be worth it.
pub fn map(file: &File, len: u64) -> io::Result<Option<Mapped>> {
    if len < MIN_MAPPED {
        return Ok(None);
    }
    // SAFETY: see the module documentation: repository files are not modified in place.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(file)? };
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(Some(Mapped(map)))
}
