//! The `[serve]` table: where `custodian serve` listens for management commands
//! (docs/configuration.md, "[serve]"; docs/operations.md, "The service and its socket"). Its
//! owner is here, beside the scheduler the same daemon runs; the listener itself is
//! `service::socket`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::settings::{Invalid, resolve};

/// The longest socket path the kernel takes: `sun_path` holds 108 bytes with the final NUL.
const MAX_SOCKET_PATH: usize = 107;

/// The `[serve]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSettings {
    socket: Option<PathBuf>,
    socket_group: Option<String>,
}

/// The management socket: its path, and the group that may connect to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketConfig {
    /// Where the daemon listens and the command line connects.
    pub path: PathBuf,
    /// The group the socket file is given (mode 0660); without one, the group it is created
    /// with (the daemon's primary group, or its directory's when that is setgid).
    pub group: Option<String>,
}

/// The validated `[serve]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServeConfig {
    /// Without a socket the command line runs every command itself.
    pub socket: Option<SocketConfig>,
}

impl ServeSettings {
    /// Checks the socket path (a file name, short enough for the kernel) and its group, and
    /// resolves the path against `base`, the config's directory.
    pub fn validate(self, base: &Path) -> Result<ServeConfig, Invalid> {
        let Some(path) = self.socket else {
            if self.socket_group.is_some() {
                return Err(Invalid::at(
                    "socket_group",
                    "a socket group needs a socket: set `socket` too, or remove `socket_group`",
                ));
            }
            return Ok(ServeConfig::default());
        };
        if path.as_os_str().is_empty() || path.file_name().is_none() {
            return Err(Invalid::at(
                "socket",
                "must name a file for the socket (such as \"/run/custodian/custodian.sock\"), not a directory",
            ));
        }
        let path = resolve(base, &path);
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(Invalid::at(
                "socket",
                format!(
                    "{} is {len} bytes long; a Unix socket path holds at most {MAX_SOCKET_PATH}: choose a shorter one (such as /run/custodian/custodian.sock)",
                    path.display()
                ),
            ));
        }
        if let Some(group) = &self.socket_group
            && (group.is_empty() || group.chars().any(|c| c.is_control() || c == ':'))
        {
            return Err(Invalid::at(
                "socket_group",
                "must be the name of a group of the system (such as \"custodian-operators\")",
            ));
        }
        Ok(ServeConfig {
            socket: Some(SocketConfig {
                path,
                group: self.socket_group,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(socket: Option<&str>, group: Option<&str>) -> ServeSettings {
        ServeSettings {
            socket: socket.map(PathBuf::from),
            socket_group: group.map(str::to_owned),
        }
    }

    #[test]
    fn without_a_socket_there_is_nothing_to_serve_on() {
        let c = settings(None, None).validate(Path::new("/etc/c")).unwrap();
        assert_eq!(c, ServeConfig::default());
    }

    #[test]
    fn a_relative_socket_resolves_against_the_config_directory() {
        let c = settings(Some("run/c.sock"), Some("ops"))
            .validate(Path::new("/etc/c"))
            .unwrap();
        let socket = c.socket.unwrap();
        assert_eq!(socket.path, Path::new("/etc/c/run/c.sock"));
        assert_eq!(socket.group.as_deref(), Some("ops"));
    }

    #[test]
    fn a_socket_path_the_kernel_cannot_take_is_refused() {
        let long = format!("/{}", "d".repeat(120));
        let e = settings(Some(&long), None)
            .validate(Path::new("/"))
            .unwrap_err();
        assert_eq!(e.key, ["socket"]);
        assert!(e.message.contains("at most 107"), "{}", e.message);
        let e = settings(Some(""), None)
            .validate(Path::new("/"))
            .unwrap_err();
        assert!(e.message.contains("must name a file"), "{}", e.message);
        let e = settings(Some("/run/.."), None)
            .validate(Path::new("/"))
            .unwrap_err();
        assert!(e.message.contains("must name a file"), "{}", e.message);
    }

    #[test]
    fn a_group_needs_a_socket_and_a_plain_name() {
        let e = settings(None, Some("ops"))
            .validate(Path::new("/"))
            .unwrap_err();
        assert_eq!(e.key, ["socket_group"]);
        let e = settings(Some("/run/c.sock"), Some("a:b"))
            .validate(Path::new("/"))
            .unwrap_err();
        assert_eq!(e.key, ["socket_group"]);
        assert!(e.message.contains("name of a group"), "{}", e.message);
    }
}
