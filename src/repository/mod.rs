//! The media repository (docs/repository.md): layout and records.
pub mod record;
pub mod segment;

/// Default of `[repository] max_record_bytes`: far above any real record (a thousand
/// participants and artifacts take some 200 KiB), far below what would strain memory.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 16 << 20;
pub const MIN_RECORD_BYTES: u64 = 1024;
/// Each indexing thread may hold one record this large, and its parsed form, at once.
pub const MAX_RECORD_BYTES: u64 = 1 << 30;
