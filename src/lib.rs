//! custodian: batch storage management for communications recordings.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod confined;
pub mod display;
pub mod filter;
pub mod media;
pub mod pipeline;
pub mod policy;
pub mod progress;
pub mod repository;
pub mod schedule;
pub mod service;
pub mod settings;
pub mod source;
pub mod target;
pub mod users;
