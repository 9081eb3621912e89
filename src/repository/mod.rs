//! The media repository (docs/repository.md): layout, records, and the parallel index walk.
pub mod index;
pub mod record;
pub mod segment;
