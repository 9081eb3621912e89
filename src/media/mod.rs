//! Media transforms: the encrypted format v1, its AEAD primitive and its keystore.
pub mod aead;
pub mod crypto;
pub mod keystore;
