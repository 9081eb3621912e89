//! The media repository (DESIGN.md §2): layout and records.
pub mod record;
pub mod segment;
