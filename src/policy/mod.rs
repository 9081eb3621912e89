//! Policies: what each action does to the conversations it selects.
pub mod export;
pub mod produce;
pub mod template;
