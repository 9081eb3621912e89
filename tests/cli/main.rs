//! End-to-end tests of the `custodian` binary, one temporary installation each.

mod common;
mod config_errors;
mod crash;
mod demo;
mod export;
mod transcode;
