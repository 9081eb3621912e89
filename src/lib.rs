//! custodian: batch storage management for communications recordings.
#![forbid(unsafe_code)]

pub mod media;
pub mod repository;
