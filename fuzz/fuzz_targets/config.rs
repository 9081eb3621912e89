//! The config parser: any text is either a validated config or a `ConfigError`, never a panic.
//! Parsing does no I/O, so the file name is only used in messages and to resolve relative
//! paths.
#![no_main]

use std::path::Path;

use custodian::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse(Path::new("/fuzz/custodian.toml"), text) {
        let _ = e.to_string();
    }
});
