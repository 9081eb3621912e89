//! The media repository (DESIGN.md §2): layout, records, and the parallel scan.
pub mod record;
pub mod segment;
