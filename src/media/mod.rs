//! Media transforms: the encrypted format v1 and its keystore.
pub mod crypto;
pub mod keystore;
