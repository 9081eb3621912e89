//! The media repository (docs/repository.md): layout and records.
pub mod record;
pub mod segment;
