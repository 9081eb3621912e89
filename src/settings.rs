//! What every config section's validation shares: the error naming the setting at fault, and
//! the helpers several sections use (paths relative to the config file, durations).
//!
//! Each section is validated by the module that owns it, which knows only its own table; the
//! `config` module adds the section's place in the file (table, line) to an [`Invalid`].

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A setting its section refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The setting's key relative to the section's table (`["notify", "to"]`); empty when
    /// the table itself is at fault (its name, a key it lacks).
    pub key: Vec<&'static str>,
    pub message: String,
}

impl Invalid {
    /// The setting `key` of the section is wrong.
    pub fn at(key: &'static str, message: impl Into<String>) -> Invalid {
        Invalid {
            key: vec![key],
            message: message.into(),
        }
    }

    /// The section's table as a whole is wrong.
    pub fn table(message: impl Into<String>) -> Invalid {
        Invalid {
            key: Vec::new(),
            message: message.into(),
        }
    }

    /// The same error seen from the table one level up, where `table` is this one's key.
    pub fn under(mut self, table: &'static str) -> Invalid {
        self.key.insert(0, table);
        self
    }
}

/// `p` as written in the config file at `base` (its directory): relative paths are relative
/// to the file, not to the working directory.
pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

/// A `"90s"`, `"2h 30m"` duration of at least one second.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d >= Duration::from_secs(1) => Ok(d),
        Ok(_) => Err("must be at least 1s".into()),
        Err(e) => Err(format!(
            "`{text}` is not a duration ({e}); write one such as \"90s\", \"15m\" or \"2h 30m\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_seen_from_above_gains_the_table_key() {
        let e = Invalid::at("to", "no").under("notify").under("lifecycle");
        assert_eq!(e.key, ["lifecycle", "notify", "to"]);
        assert_eq!(Invalid::table("no").under("x").key, ["x"]);
    }

    #[test]
    fn durations_are_at_least_a_second() {
        assert_eq!(positive_duration("2h 30m"), Ok(Duration::from_secs(9000)));
        assert_eq!(
            positive_duration("10ms").unwrap_err(),
            "must be at least 1s"
        );
        assert!(
            positive_duration("soon")
                .unwrap_err()
                .starts_with("`soon` is not a duration")
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let base = Path::new("/etc/custodian");
        assert_eq!(
            resolve(base, Path::new("a/b")),
            Path::new("/etc/custodian/a/b")
        );
        assert_eq!(resolve(base, Path::new("/srv/x")), Path::new("/srv/x"));
    }
}
