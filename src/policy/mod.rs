//! Policies: what each action does to the conversations it selects.
pub mod confidential;
pub mod export;
pub mod lifecycle;
pub mod produce;
pub mod roles;
pub mod template;
