//! How a long step (an index pass, an export, a sweep, a verify) tells whoever watches how far
//! it has come. The library only reports through [`Progress`]; the command line draws a bar
//! from it, and everything else passes [`Silent`].

/// An observer of one step's progress. Called from worker threads, so it is `Sync`.
pub trait Progress: Send + Sync {
    /// How many items the step has in all, once it knows.
    fn set_length(&self, len: u64);
    /// `n` more items are done.
    fn advance(&self, n: u64);
    /// What the step is (`index`, `export`, …), said before it starts.
    fn message(&self, text: &'static str);
    /// The step is over: whatever shows it can go.
    fn finish(&self);
}

/// Progress nobody watches.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn set_length(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn message(&self, _: &'static str) {}
    fn finish(&self) {}
}
