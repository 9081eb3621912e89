//! End-to-end tests of the `custodian` binary, one temporary installation each.

mod api;
#[cfg(feature = "azure")]
mod azure;
mod browser;
#[cfg(feature = "postgres")]
mod cluster;
mod common;
mod config_errors;
mod crash;
mod crypto;
mod demo;
mod direct;
mod export;
mod foureyes;
#[cfg(feature = "gcs")]
mod gcs;
mod holds;
mod hostile_audit;
mod hostile_index;
mod hostile_keys;
mod hostile_output;
mod hostile_reads;
mod hostile_sweep;
mod hostile_target;
mod jobs;
mod lazyfs;
mod lifecycle;
#[cfg(feature = "s3")]
#[path = "../support/listed_fs.rs"]
mod listed_fs;
mod manual;
mod media;
mod osusers;
#[cfg(feature = "postgres")]
mod postgres;
mod power;
#[cfg(feature = "s3")]
mod s3;
mod socket;
mod stitch;
#[cfg(feature = "s3")]
mod store_export;
#[cfg(feature = "s3")]
mod store_repository;
#[cfg(feature = "s3")]
mod store_sweep;
mod transcode;
mod web;
#[cfg(feature = "s3")]
mod worm;
