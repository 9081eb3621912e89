//! Media transforms: the encrypted format v1, its AEAD primitive and its keystore, and audio
//! decode, resample, encode and stitching for exports, and the private scratch space they use.
pub mod aead;
pub mod audio;
pub mod crypto;
pub mod keystore;
pub mod scratch;
pub mod stitch;
