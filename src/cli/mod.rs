//! The command line above the library: each module turns one command group's arguments into
//! calls of [`custodian::app`] and its results into text or `--json`, and nothing more.

pub mod args;
pub mod audit;
pub mod direct;
pub mod holds;
pub mod jobs;
pub mod lifecycle;
pub mod manual;
pub mod media;
pub mod out;
pub mod run;
pub mod serve;
pub mod users;
