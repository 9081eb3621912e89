//! Real operating-system users for the permission tests: custodian's actor is the user its
//! process runs as (docs/operations.md, "Permissions and roles"), so these tests create users
//! and a group with `useradd` and `groupadd` and run the binary as them.
//!
//! Creating users needs root. Run as another user, the tests that need them say why they do
//! not run and pass, unless `CUSTODIAN_REQUIRE_ROOT_TESTS` is set, which makes that a failure.
//!
//! The users share one installation the way docs/operations.md ("Several users on one SQLite
//! catalog") describes: a directory of their group with the setgid bit, a umask of 007, a
//! roles file owned by root, and a config of their own naming their own copy of the audit key.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::common::{Env, text};

/// The group every test user is in (its primary group), which owns a shared installation.
pub const GROUP: &str = "custodian-t";

/// Requests changes: lifecycle create, enable, activate; may approve others' changes too.
pub const ALICE: &str = "custodian-t-alice";
/// Approves changes and runs the sweep.
pub const BOB: &str = "custodian-t-bob";
/// Holds only what the group is granted: reading lifecycle policies.
pub const EVE: &str = "custodian-t-eve";
/// The service account `custodian serve` runs as (tests/cli/socket.rs): it owns the catalog.
pub const SERVICE: &str = "custodian-t-svc";
/// A group alice and bob are in besides [`GROUP`] (a supplementary group, as an operators'
/// group would be), which the socket tests grant permissions through.
pub const ADMINS: &str = "custodian-t-admins";

/// Every test user.
const EVERY_USER: [&str; 4] = [ALICE, BOB, EVE, SERVICE];

/// Every user's copy of the audit key (a test key: 32 bytes as hex).
const AUDIT_KEY: &str = "3f1c5a7e9b2d4f6081a3c5e7092b4d6f8a1c3e5072947b6d8f0a2c4e6183a5c7";

/// Whether this process may create users and run as them (it runs as root). When not, it says
/// why on stderr, and panics instead when `CUSTODIAN_REQUIRE_ROOT_TESTS` is set.
pub fn available(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let why = format!(
        "{test}: needs root, to create test users with useradd and run custodian as them; run the tests as root (scripts/test.sh does)"
    );
    assert!(
        std::env::var_os("CUSTODIAN_REQUIRE_ROOT_TESTS").is_none(),
        "{why} (CUSTODIAN_REQUIRE_ROOT_TESTS is set)"
    );
    eprintln!("skipped: {why}; set CUSTODIAN_REQUIRE_ROOT_TESTS=1 to make this a failure");
    false
}

/// A user's ids.
#[derive(Clone, Copy)]
struct Ids {
    uid: u32,
    gid: u32,
}

/// Creates the group and the users once per test process, and, across processes, under a
/// lock: each step first checks whether it is done, so a second process only checks.
fn ensure_users() -> &'static [(String, Ids)] {
    static USERS: OnceLock<Vec<(String, Ids)>> = OnceLock::new();
    USERS.get_or_init(|| {
        let lock = std::fs::File::create("/run/lock/custodian-test-users.lock")
            .or_else(|_| std::fs::File::create("/tmp/custodian-test-users.lock"))
            .expect("a lock file for creating test users");
        lock.lock().expect("lock for creating test users");
        if nix::unistd::Group::from_name(GROUP).unwrap().is_none() {
            must(Command::new("groupadd").args(["--system", GROUP]));
        }
        let gid = nix::unistd::Group::from_name(GROUP)
            .unwrap()
            .expect("the test group")
            .gid
            .as_raw();
        if nix::unistd::Group::from_name(ADMINS).unwrap().is_none() {
            must(Command::new("groupadd").args(["--system", ADMINS]));
        }
        let users = EVERY_USER
            .into_iter()
            .map(|name| {
                let user = match nix::unistd::User::from_name(name).unwrap() {
                    Some(u) => u,
                    None => {
                        must(Command::new("useradd").args([
                            "--system",
                            "--no-create-home",
                            "--home-dir",
                            "/nonexistent",
                            "--shell",
                            "/usr/sbin/nologin",
                            "--gid",
                            GROUP,
                            name,
                        ]));
                        nix::unistd::User::from_name(name)
                            .unwrap()
                            .expect("the user just added")
                    }
                };
                assert_eq!(
                    user.gid.as_raw(),
                    gid,
                    "test user {name} exists with another primary group than {GROUP}; remove it (userdel {name})"
                );
                (
                    name.to_owned(),
                    Ids {
                        uid: user.uid.as_raw(),
                        gid,
                    },
                )
            })
            .collect();
        let admins = nix::unistd::Group::from_name(ADMINS).unwrap().unwrap();
        for member in [ALICE, BOB] {
            if !admins.mem.iter().any(|m| m == member) {
                must(Command::new("usermod").args(["--append", "--groups", ADMINS, member]));
            }
        }
        users
    })
}

fn must(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
}

fn ids(user: &str) -> Ids {
    ensure_users()
        .iter()
        .find(|(name, _)| name == user)
        .map(|(_, ids)| *ids)
        .unwrap_or_else(|| panic!("{user} is not a test user"))
}

/// An installation the test users share: its directory belongs to [`GROUP`] (mode 2770), each
/// user has a config `USER.toml` naming its own copy of the audit key, and the roles file
/// (owned by root) holds `roles`.
pub struct Shared {
    pub env: Env,
}

impl Shared {
    /// `lifecycle` is added to the `[lifecycle]` table.
    pub fn new(roles: &str, lifecycle: &str) -> Shared {
        let env = Env::new("");
        let gid = ids(ALICE).gid;
        std::os::unix::fs::chown(env.path(), None, Some(gid)).unwrap();
        std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o2770)).unwrap();
        std::fs::write(env.path().join("roles.toml"), roles).unwrap();
        let config = std::fs::read_to_string(env.config()).unwrap();
        for user in EVERY_USER {
            let key = env.path().join(format!("{user}.key"));
            std::fs::write(&key, format!("{AUDIT_KEY}\n")).unwrap();
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(&key, Some(ids(user).uid), None).unwrap();
            std::fs::write(
                env.path().join(format!("{user}.toml")),
                format!(
                    "{config}\n[audit]\nkey_file = \"{user}.key\"\n\n[lifecycle]\nroles = \"roles.toml\"\n{lifecycle}\n"
                ),
            )
            .unwrap();
        }
        // The test users may not reach the build's own copy (a target directory under root's
        // home is closed to them): they run one inside the installation.
        let bin = env.path().join("custodian");
        std::fs::hard_link(env!("CARGO_BIN_EXE_custodian"), &bin)
            .or_else(|_| std::fs::copy(env!("CARGO_BIN_EXE_custodian"), &bin).map(drop))
            .unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        Shared { env }
    }

    /// Points every user's config at the catalog at `url` instead of the SQLite file.
    #[cfg(feature = "postgres")]
    pub fn use_catalog(&self, url: &str) {
        for user in EVERY_USER {
            let config = self.env.path().join(format!("{user}.toml"));
            let text = std::fs::read_to_string(&config).unwrap();
            std::fs::write(&config, text.replace("sqlite:catalog.db", url)).unwrap();
        }
    }

    /// Hands the repository written so far to the group, as a recorder writing for the sweep
    /// to delete from would: group-writable directories, nothing for others.
    pub fn share_repository(&self) {
        must(
            Command::new("chgrp")
                .arg("-R")
                .arg(GROUP)
                .arg(self.env.root()),
        );
        must(
            Command::new("chmod")
                .args(["-R", "g+rwX,o-rwx"])
                .arg(self.env.root()),
        );
    }

    /// `custodian` run as `user`, with its config, in the installation's directory, with the
    /// umask the shared installation needs.
    pub fn command(&self, user: &str, args: &[&str]) -> Command {
        self.command_with(user, &self.config(user), args)
    }

    /// `user`'s config, `USER.toml`.
    pub fn config(&self, user: &str) -> PathBuf {
        self.env.path().join(format!("{user}.toml"))
    }

    /// `custodian` run as `user` with the config at `config`, as [`Shared::command`] runs it.
    pub fn command_with(&self, user: &str, config: &Path, args: &[&str]) -> Command {
        let Ids { uid, gid } = ids(user);
        let mut cmd = Command::new(self.env.path().join("custodian"));
        cmd.arg("--config")
            .arg(config)
            .args(args)
            .current_dir(self.env.path())
            .env("TZ", "UTC")
            .env_remove("FAILPOINTS")
            .uid(uid)
            .gid(gid);
        // SAFETY: umask(2) is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o007));
                Ok(())
            });
        }
        cmd
    }

    pub fn run(&self, user: &str, args: &[&str]) -> Output {
        self.command(user, args).output().unwrap()
    }

    pub fn ok(&self, user: &str, args: &[&str]) -> String {
        let out = self.run(user, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{user} {args:?}: {}",
            text(&out)
        );
        text(&out)
    }

    /// `user` creates policy `voice-30d` over customer audio and publishes its version `v1`,
    /// deleting 30 days after the end; what `lifecycle version` printed.
    pub fn publish_voice_30d(&self, user: &str) -> String {
        self.ok(
            user,
            &[
                "lifecycle",
                "create",
                "voice-30d",
                "--artifact-type",
                "audio_recording",
                "--audio-type",
                "conference_customer",
            ],
        );
        self.ok(
            user,
            &[
                "lifecycle",
                "version",
                "voice-30d",
                "v1",
                "--delete-after-days",
                "30",
            ],
        )
    }

    pub fn fails(&self, user: &str, args: &[&str]) -> String {
        let out = self.run(user, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{user} {args:?}: {}",
            text(&out)
        );
        text(&out)
    }

    /// Runs with `--json` and parses stdout.
    pub fn json(&self, user: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(user, &all);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{user} {args:?}: {}",
            text(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Every audit event, oldest first, as `user` lists them.
    pub fn trail(&self, user: &str) -> Vec<serde_json::Value> {
        self.json(user, &["audit", "list", "--limit", "100000"])
            .as_array()
            .unwrap()
            .clone()
    }

    /// The catalog's files (the database, its WAL and shared memory, while they exist).
    pub fn catalog_files(&self) -> Vec<PathBuf> {
        ["catalog.db", "catalog.db-wal", "catalog.db-shm"]
            .iter()
            .map(|f| self.env.path().join(f))
            .filter(|p| p.exists())
            .collect()
    }
}

/// The uid of a test user.
pub fn uid(user: &str) -> u32 {
    ids(user).uid
}

/// The permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}
