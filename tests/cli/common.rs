//! A temporary installation: a repository, a config and a target directory, and the real
//! `custodian` binary run against them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

pub struct Env {
    pub dir: tempfile::TempDir,
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Env {
    /// A repository under `repo/`, target under `archive/`, catalog `catalog.db`, and a policy
    /// `export` with `policy_extra` lines added to its table.
    pub fn new(policy_extra: &str) -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(env.root()).unwrap();
        env.write_config(&format!(
            r#"[catalog]
url = "sqlite:catalog.db"

[repository]
root = "repo"

[targets.archive]
kind = "filesystem"
path = "archive"

[policies.export]
action = "export"
target = "archive"
{policy_extra}
"#
        ));
        env
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn root(&self) -> PathBuf {
        self.path().join("repo")
    }

    pub fn archive(&self) -> PathBuf {
        self.path().join("archive")
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("custodian.toml")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config(), text).unwrap();
    }

    /// Relative directory of a conversation made by [`Env::conversation`].
    pub fn rel_dir(tenant: &str, day: u32, id: &str) -> String {
        format!("{tenant}/2026/01/{day:02}/{id}")
    }

    /// Writes a voice conversation with the given files as audio artifacts.
    pub fn conversation(
        &self,
        tenant: &str,
        day: u32,
        id: &str,
        files: &[(&str, &[u8])],
    ) -> PathBuf {
        let arts: Vec<Art> = files
            .iter()
            .map(|(name, bytes)| Art::plain(name, "audio_recording", bytes))
            .collect();
        self.record(tenant, day, id, "voice", &arts)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_custodian"));
        cmd.arg("--config")
            .arg(self.config())
            .args(args)
            .env("TZ", "UTC")
            .env_remove("FAILPOINTS");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs with `--json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap(), value)
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One artifact of a record written by [`Env::record`].
pub struct Art<'a> {
    pub file: &'a str,
    pub bytes: &'a [u8],
    pub kind: &'a str,
    /// The key id the stored file is encrypted with (its bytes are then the ciphertext).
    pub key_id: Option<&'a str>,
}

impl Art<'_> {
    pub fn plain<'a>(file: &'a str, kind: &'a str, bytes: &'a [u8]) -> Art<'a> {
        Art {
            file,
            bytes,
            kind,
            key_id: None,
        }
    }
}

/// The key `keystore` writes for `id`: 32 bytes derived from the id.
pub fn test_key(id: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    key.copy_from_slice(&Sha256::digest(id.as_bytes()));
    key
}

/// `plain` encrypted in format v1 with [`test_key`] of `key_id`.
pub fn encrypt(plain: &[u8], key_id: &str, chunk_size: u32) -> Vec<u8> {
    let mut out = Vec::new();
    custodian::media::crypto::encrypt_stream(
        &test_key(key_id),
        key_id,
        chunk_size,
        &mut &plain[..],
        &mut out,
    )
    .unwrap();
    out
}

impl Env {
    /// Writes a record of conversation type `kind` with the given artifacts; returns its
    /// directory. Audio artifacts get the `conference_customer` audio type.
    pub fn record(&self, tenant: &str, day: u32, id: &str, kind: &str, arts: &[Art]) -> PathBuf {
        let dir = self.root().join(Self::rel_dir(tenant, day, id));
        std::fs::create_dir_all(&dir).unwrap();
        let artifacts: Vec<_> = arts
            .iter()
            .map(|a| {
                std::fs::write(dir.join(a.file), a.bytes).unwrap();
                let mut v = serde_json::json!({
                    "file": a.file, "type": a.kind,
                    "size": a.bytes.len(), "sha256": sha256(a.bytes)
                });
                if a.kind == "audio_recording" {
                    v["audio_type"] = "conference_customer".into();
                }
                if let Some(k) = a.key_id {
                    v["encryption"] = serde_json::json!({ "key_id": k });
                }
                v
            })
            .collect();
        let record = serde_json::json!({
            "schema": 1, "id": id, "tenant": tenant, "type": kind, "source_platform": "cisco",
            "direction": "inbound",
            "start": format!("2026-01-{day:02}T10:00:00+00:00"),
            "end": format!("2026-01-{day:02}T10:05:00+00:00"),
            "participants": [{"user": "alice", "extension": "1001", "role": "agent"}],
            "artifacts": artifacts
        });
        std::fs::write(
            dir.join("conversation.json"),
            serde_json::to_vec_pretty(&record).unwrap(),
        )
        .unwrap();
        dir
    }

    /// Writes `keystore.json` (mode 0600) holding [`test_key`] for each id.
    pub fn keystore(&self, ids: &[&str]) -> PathBuf {
        use base64::Engine;
        use std::os::unix::fs::PermissionsExt;
        let keys: serde_json::Map<String, serde_json::Value> = ids
            .iter()
            .map(|id| {
                (
                    id.to_string(),
                    base64::engine::general_purpose::STANDARD
                        .encode(test_key(id))
                        .into(),
                )
            })
            .collect();
        let path = self.path().join("keystore.json");
        std::fs::write(&path, serde_json::json!({ "keys": keys }).to_string()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// Every file under the target, relative, sorted (manifests excluded).
    pub fn archive_files(&self) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.archive(), &self.archive(), &mut out);
        out.retain(|f| !f.starts_with("_custodian/"));
        out.sort();
        out
    }
}

/// A tmpfs of `size` mounted over a directory for one test (mounting needs root, which this
/// machine and CI run tests as), unmounted when dropped.
pub struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    pub fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs on {} (run the tests as root): {}",
            dir.display(),
            text(&out)
        );
        SmallDisk(dir.to_owned())
    }

    pub fn resize(&self, size: &str) {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// 64 KiB of bytes particular to `i`: conversations big enough to fill a small disk.
pub fn payload(i: usize) -> Vec<u8> {
    (0..64 * 1024).map(|j| ((i * 7 + j) % 251) as u8).collect()
}
