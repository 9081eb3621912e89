//! The media repository (DESIGN.md §2): layout, records, and the parallel index walk.
pub mod index;
pub mod record;
pub mod segment;
