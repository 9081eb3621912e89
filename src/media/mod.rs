//! Media transforms: the encrypted format v1 and its keystore, and audio decode, resample and
//! encode for exports.
pub mod audio;
pub mod crypto;
pub mod keystore;
pub mod stitch;
