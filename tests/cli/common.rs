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
        let dir = self.root().join(Self::rel_dir(tenant, day, id));
        std::fs::create_dir_all(&dir).unwrap();
        let artifacts: Vec<_> = files
            .iter()
            .map(|(name, bytes)| {
                std::fs::write(dir.join(name), bytes).unwrap();
                serde_json::json!({
                    "file": name, "type": "audio_recording", "audio_type": "conference_customer",
                    "size": bytes.len(), "sha256": sha256(bytes)
                })
            })
            .collect();
        let record = serde_json::json!({
            "schema": 1, "id": id, "tenant": tenant, "type": "voice", "source_platform": "cisco",
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

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_custodian"));
        cmd.arg("--config").arg(self.config()).args(args);
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
