//! Power cuts (docs/operations.md, "Durability"). Each job runs on the crash-harness filesystem
//! ([`LazyFs`]) holding the repository, the target and the SQLite catalog; the power is cut
//! after its n-th counted operation (a write, a sync, a rename…) at points spread over every
//! phase; the machine "reboots" onto what a disk would have kept, where the guarantees are
//! checked before anything repairs the state; then the job runs again to completion and they
//! are checked again, with its completion. The same export to a target that syncs nothing must
//! break them, which shows that the harness sees a missing sync.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::types::Value::Integer;
use rusqlite::{Connection, OpenFlags};

use crate::common::{Art, Env, sha256, text};
use crate::lazyfs::{LazyFs, Op};
use crate::lifecycle::{ALL, enabled_policy, env_with};

/// Cut points per job: they include the operations next to each sync and rename, and are
/// spread over the whole run.
const CUTS: usize = 30;

fn custodian(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_custodian"));
    cmd.arg("--config")
        .arg(root.join("custodian.toml"))
        .args(args)
        .env("TZ", "UTC")
        .env_remove("FAILPOINTS");
    cmd
}

/// Copies the tree at `from` to `to` (which must not exist), modes and times included.
fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// `CUTS` operation numbers of a run whose counted operations were `log`: each sync and
/// rename, and the operation just before it, are candidates beside evenly spaced ones; the
/// points are spread evenly over the candidates.
fn cut_points(log: &[Op]) -> Vec<u64> {
    let n = log.len() as u64;
    let mut candidates: BTreeSet<u64> = (1..=n).step_by((n as usize / CUTS).max(1)).collect();
    for (i, op) in (1..).zip(log) {
        if matches!(op, Op::Fsync | Op::FsyncDir | Op::Rename) {
            candidates.extend([i - 1, i]);
        }
    }
    candidates.remove(&0);
    let all: Vec<u64> = candidates.into_iter().collect();
    let picked: BTreeSet<u64> = (0..CUTS.min(all.len()))
        .map(|j| all[j * all.len() / CUTS.min(all.len())])
        .chain(all.last().copied())
        .collect();
    picked.into_iter().collect()
}

/// When the guarantees are checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Moment {
    /// Right after the reboot: what a disk kept must be consistent on its own.
    Rebooted,
    /// After the rerun: also complete.
    Rerun,
}

/// Runs `job` on copies of the installation at `prepared`, cutting the power at each of the
/// points [`cut_points`] picks from a full run; after each cut and reboot, and again after
/// rerunning `job` to completion, returns what `invariants` finds wrong, each naming its cut.
fn cut_everywhere(
    prepared: &Path,
    job: &[&str],
    invariants: impl Fn(&Path, Moment) -> Vec<String>,
) -> Vec<String> {
    let scratch = tempfile::tempdir().unwrap();
    let mnt = scratch.path().join("mnt");
    let backing = scratch.path().join("disk");
    copy_tree(prepared, &backing);
    let fs = LazyFs::mount(&backing, &mnt);
    let full = custodian(&mnt, job).output().unwrap();
    assert!(
        full.status.success(),
        "{job:?} on the harness: {}",
        text(&full)
    );
    let log = fs.log();
    fs.unmount_keeping_all();
    std::fs::remove_dir_all(&backing).unwrap();

    let mut violations = Vec::new();
    for n in cut_points(&log) {
        let at = format!(
            "cut after operation {n} of {} ({:?})",
            log.len(),
            log[n as usize - 1]
        );
        copy_tree(prepared, &backing);
        let fs = LazyFs::mount(&backing, &mnt);
        fs.cut_after(n);
        let mut child = custodian(&mnt, job)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !fs.is_cut() && child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "{at}: the job neither ended nor reached the cut"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        child.wait().unwrap();
        fs.power_cut();

        let fs = LazyFs::mount(&backing, &mnt);
        let found = invariants(&mnt, Moment::Rebooted);
        violations.extend(found.into_iter().map(|v| format!("{at}, rebooted: {v}")));
        let rerun = custodian(&mnt, job).output().unwrap();
        if rerun.status.success() {
            let found = invariants(&mnt, Moment::Rerun);
            violations.extend(found.into_iter().map(|v| format!("{at}, rerun: {v}")));
        } else {
            violations.push(format!("{at}: the rerun failed: {}", text(&rerun)));
        }
        fs.unmount_keeping_all();
        std::fs::remove_dir_all(&backing).unwrap();
    }
    violations
}

/// The catalog, if the disk kept one with its whole schema (a cut while it was being made
/// leaves none, an empty file, or some of its migrations, before anything is recorded). Opened for writing, as the next run would, so that SQLite can
/// recover it (roll back a journal a cut left).
fn catalog(root: &Path) -> Option<Connection> {
    let path = root.join("catalog.db");
    let db = path
        .exists()
        .then(|| Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).unwrap())?;
    let made = rows::<i64>(
        &db,
        "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('run_objects', 'object_keys')",
    )[0][0];
    (made == 2).then_some(db)
}

fn rows<T: rusqlite::types::FromSql>(db: &Connection, sql: &str) -> Vec<Vec<T>> {
    let mut stmt = db.prepare(sql).unwrap();
    let columns = stmt.column_count();
    stmt.query_map([], |r| (0..columns).map(|i| r.get(i)).collect())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// `custodian audit verify` passes.
fn audit_holds(root: &Path) -> Vec<String> {
    let out = custodian(root, &["audit", "verify"]).output().unwrap();
    if out.status.success() {
        Vec::new()
    } else {
        vec![format!("audit verify: {}", text(&out))]
    }
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
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
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The guarantees of an export of `conversations` conversations to `archive/`: every object
/// the catalog records is intact at the target, every ended run's manifest verifies, the
/// audit chain holds, nothing is at the target twice under different keys, and after the
/// rerun every conversation is exported.
fn export_holds(root: &Path, moment: Moment, conversations: usize) -> Vec<String> {
    let mut wrong = Vec::new();
    let Some(db) = catalog(root) else {
        return Vec::new();
    };
    for object in rows::<rusqlite::types::Value>(&db, "SELECT key, size, sha256 FROM run_objects") {
        let [
            rusqlite::types::Value::Text(key),
            rusqlite::types::Value::Integer(size),
            rusqlite::types::Value::Text(hash),
        ] = &object[..]
        else {
            panic!("run_objects row {object:?}");
        };
        match std::fs::read(root.join("archive").join(key)) {
            Ok(bytes) if bytes.len() as i64 == *size && sha256(&bytes) == *hash => {}
            Ok(bytes) => wrong.push(format!(
                "{key} is recorded exported ({size} bytes) but holds {} other bytes",
                bytes.len()
            )),
            Err(e) => wrong.push(format!(
                "{key} is recorded exported but cannot be read: {e}"
            )),
        }
    }
    for run in rows::<i64>(
        &db,
        "SELECT id FROM job_runs WHERE status <> 'running' AND manifest_key IS NOT NULL",
    ) {
        let run = run[0].to_string();
        let out = custodian(root, &["verify", &run]).output().unwrap();
        if !out.status.success() {
            wrong.push(format!("verify {run}: {}", text(&out)));
        }
    }
    let exported = rows::<i64>(&db, "SELECT COUNT(*) FROM export_state")[0][0];
    if moment == Moment::Rerun && exported != conversations as i64 {
        wrong.push(format!(
            "{exported} of {conversations} conversations recorded exported"
        ));
    }
    let mut keys_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows::<String>(
        &db,
        "SELECT key, tenant || '/' || conversation_id || '/' || file FROM object_keys",
    ) {
        keys_of
            .entry(row[1].clone())
            .or_default()
            .push(row[0].clone());
    }
    let claimed: BTreeSet<&String> = keys_of.values().flatten().collect();
    for (source, keys) in &keys_of {
        if keys.len() > 1 {
            wrong.push(format!("{source} is exported under {keys:?}"));
        }
    }
    for file in files_under(&root.join("archive")) {
        let name = file.rsplit('/').next().unwrap_or_default();
        if !file.starts_with("_custodian/")
            && !name.starts_with(".custodian-tmp-")
            && !claimed.contains(&file)
        {
            wrong.push(format!("{file} is at the target but no export claims it"));
        }
    }
    wrong.extend(audit_holds(root));
    wrong
}

/// An installation of `n` voice conversations of two artifacts each.
fn voice_env(n: usize, policy_extra: &str) -> Env {
    let env = Env::new(policy_extra);
    for i in 0..n {
        let audio: Vec<u8> = (0..6000u32).map(|b| (b * 7 + i as u32) as u8).collect();
        let transcript = format!("conversation {i} transcript").into_bytes();
        env.record(
            "acme",
            1 + i as u32 % 3,
            &format!("c{i}"),
            "voice",
            &[
                Art::plain("call.wav", "audio_recording", &audio),
                Art::plain("call.txt", "transcript", &transcript),
            ],
        );
    }
    env
}

#[test]
fn an_export_cut_anywhere_keeps_every_recorded_object_and_finishes_on_rerun() {
    let env = voice_env(4, "");
    let wrong = cut_everywhere(env.path(), &["run", "export"], |root, moment| {
        export_holds(root, moment, 4)
    });
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn an_export_that_syncs_nothing_loses_recorded_objects_to_a_power_cut() {
    let env = voice_env(4, "");
    let config = std::fs::read_to_string(env.config()).unwrap().replace(
        "path = \"archive\"\n",
        "path = \"archive\"\ndurability = \"unsafe_no_sync\"\n",
    );
    env.write_config(&config);
    let wrong = cut_everywhere(env.path(), &["run", "export"], |root, moment| {
        export_holds(root, moment, 4)
    });
    assert!(
        wrong.iter().any(|w| w.contains("is recorded exported")),
        "the harness must see objects recorded exported but lost: {wrong:?}"
    );
}

#[test]
fn a_direct_export_cut_anywhere_keeps_every_recorded_object() {
    let env = voice_env(4, "");
    let wrong = cut_everywhere(
        env.path(),
        &["direct", "export", "--once"],
        |root, moment| export_holds(root, moment, 4),
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_sweep_cut_anywhere_deletes_each_due_artifact_once_with_its_event() {
    let env = env_with(ALL, "");
    for i in 0..4 {
        env.conversation(
            "acme",
            1 + i % 2,
            &format!("c{i}"),
            &[("a.wav", b"customer leg")],
        );
    }
    assert!(env.run(&["index"]).status.success());
    enabled_policy(&env);
    let sweep = ["run", "lifecycle", "--no-index", "--force"];
    let wrong = cut_everywhere(env.path(), &sweep, |root, moment| {
        let mut wrong = Vec::new();
        let db = catalog(root).expect("the catalog was made before the cut");
        let count = |sql: &str| -> BTreeMap<String, i64> {
            rows::<rusqlite::types::Value>(&db, sql)
                .into_iter()
                .map(|r| match &r[..] {
                    [
                        rusqlite::types::Value::Text(path),
                        rusqlite::types::Value::Integer(n),
                    ] => (path.clone(), *n),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let events = count(
            "SELECT json_extract(details, '$.path'), COUNT(*) FROM audit_events \
             WHERE kind = 'artifact_deleted' GROUP BY 1",
        );
        let intents =
            count("SELECT rel_dir || '/' || file, COUNT(*) FROM delete_intents GROUP BY 1");
        for row in rows::<String>(
            &db,
            "SELECT c.rel_dir || '/' || a.file FROM artifacts a JOIN conversations c ON c.pk = a.conversation",
        ) {
            let path = &row[0];
            let on_disk = root.join("repo").join(path).exists();
            let intent = intents.contains_key(path) && moment == Moment::Rebooted;
            match (on_disk, events.get(path).copied().unwrap_or(0), intent) {
                (true, 0, _) | (false, 1, false) | (false, 0, true) => {}
                (true, n, _) => {
                    wrong.push(format!("{path} has {n} deletion event(s) but is on disk"))
                }
                (false, n, _) => wrong.push(format!(
                    "{path} is gone with {n} deletion events and {} intent",
                    if intent { "an" } else { "no" }
                )),
            }
        }
        if moment == Moment::Rerun {
            if events.len() != 4 {
                wrong.push(format!(
                    "{} of 4 due artifacts deleted: {events:?}",
                    events.len()
                ));
            }
            if !intents.is_empty() {
                wrong.push(format!(
                    "delete intents left after a completed sweep: {intents:?}"
                ));
            }
        }
        wrong.extend(audit_holds(root));
        wrong
    });
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_quarantine_sweep_cut_anywhere_moves_each_due_artifact_once_with_its_event() {
    let env = env_with(ALL, "quarantine_days = 7");
    for i in 0..4 {
        env.conversation(
            "acme",
            1 + i % 2,
            &format!("c{i}"),
            &[("a.wav", b"customer leg")],
        );
    }
    assert!(env.run(&["index"]).status.success());
    enabled_policy(&env);
    let sweep = ["run", "lifecycle", "--no-index", "--force"];
    let wrong = cut_everywhere(env.path(), &sweep, |root, moment| {
        let mut wrong = Vec::new();
        let db = catalog(root).expect("the catalog was made before the cut");
        let pairs = |sql: &str| -> BTreeMap<String, Vec<String>> {
            rows::<String>(&db, sql)
                .into_iter()
                .map(|r| (r[0].clone(), r[1..].to_vec()))
                .collect()
        };
        // Per artifact path: how many events, and the name in the area the last one gives.
        let events = pairs(
            "SELECT json_extract(details, '$.path'), CAST(COUNT(*) AS TEXT), \
             max(json_extract(details, '$.quarantine_name')) FROM audit_events \
             WHERE kind = 'artifact_quarantined' GROUP BY 1",
        );
        let entries = pairs("SELECT rel_dir || '/' || file, state, name FROM quarantine");
        let area = root.join("repo/.custodian-quarantine");
        for row in rows::<String>(
            &db,
            "SELECT c.rel_dir || '/' || a.file FROM artifacts a JOIN conversations c ON c.pk = a.conversation",
        ) {
            let path = &row[0];
            let in_repo = root.join("repo").join(path).exists();
            let entry = entries.get(path);
            let in_area = entry.is_some_and(|e| area.join(&e[1]).exists());
            match (events.get(path).map(|e| e[0].as_str()), entry) {
                (Some("1"), Some(e)) if e[0] == "quarantined" && in_area && !in_repo => {}
                (Some(n), _) => wrong.push(format!(
                    "{path} has {n} quarantine event(s), entry {entry:?}, in the area: {in_area}, in the repository: {in_repo}"
                )),
                (None, None) if in_repo => {}
                // A cut between the syncs of the area and of the conversation directory keeps
                // both names of the file; the rerun removes the old one.
                (None, Some(e)) if e[0] == "moving" && (in_repo || in_area) => {
                    if moment == Moment::Rerun {
                        wrong.push(format!("{path}: a move left after a completed sweep"));
                    }
                }
                (None, _) => wrong.push(format!(
                    "{path} has no event, entry {entry:?}, in the area: {in_area}, in the repository: {in_repo}"
                )),
            }
        }
        if moment == Moment::Rerun && events.len() != 4 {
            wrong.push(format!(
                "{} of 4 due artifacts quarantined: {events:?}",
                events.len()
            ));
        }
        wrong.extend(audit_holds(root));
        wrong
    });
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_quarantine_restore_and_purge_cut_anywhere_are_each_recorded_once() {
    let env = env_with(ALL, "quarantine_days = 7");
    let dirs: Vec<_> = (0..4)
        .map(|i| {
            env.conversation(
                "acme",
                1 + i % 2,
                &format!("c{i}"),
                &[("a.wav", b"customer leg")],
            )
        })
        .collect();
    assert!(env.run(&["index"]).status.success());
    enabled_policy(&env);
    let sweep = ["run", "lifecycle", "--no-index", "--force"];
    assert!(env.run(&sweep).status.success());
    // c0 and c1 are put under legal hold while quarantined; all four are 8 days in: the next
    // sweep restores c0 and c1 and purges c2 and c3.
    for dir in &dirs[..2] {
        let record = dir.join("conversation.json");
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
        json["flags"] = serde_json::json!({"legal_hold": true});
        std::fs::write(&record, serde_json::to_vec(&json).unwrap()).unwrap();
    }
    assert!(env.run(&["index"]).status.success());
    Connection::open(env.path().join("catalog.db"))
        .unwrap()
        .execute(
            "UPDATE quarantine SET quarantined_ms = quarantined_ms - 8 * 86400000",
            [],
        )
        .unwrap();
    let wrong = cut_everywhere(env.path(), &sweep, |root, moment| {
        let mut wrong = Vec::new();
        let db = catalog(root).expect("the catalog was made before the cut");
        let count = |kind: &str, id: &str| -> i64 {
            rows::<i64>(
                &db,
                &format!(
                    "SELECT COUNT(*) FROM audit_events WHERE kind = '{kind}' AND conversation_id = '{id}'"
                ),
            )[0][0]
        };
        for i in 0..4 {
            let id = format!("c{i}");
            let rel = format!("acme/2026/01/{:02}/{id}/a.wav", 1 + i % 2);
            let name = rows::<String>(
                &db,
                &format!(
                    "SELECT json_extract(details, '$.quarantine_name') FROM audit_events \
                     WHERE kind = 'artifact_quarantined' AND conversation_id = '{id}'"
                ),
            )[0][0]
                .clone();
            let state = rows::<String>(
                &db,
                &format!("SELECT state FROM quarantine WHERE conversation_id = '{id}'"),
            )
            .first()
            .map(|r| r[0].clone());
            let in_repo = root.join("repo").join(&rel).exists();
            let in_area = root.join("repo/.custodian-quarantine").join(&name).exists();
            let (restored, deleted) = (
                count("artifact_restored", &id),
                count("artifact_deleted", &id),
            );
            let held = i < 2;
            let half_done = moment == Moment::Rebooted;
            let fine = match (held, restored, deleted, state.as_deref()) {
                (true, 1, 0, None) => in_repo && !in_area,
                (true, 0, 0, Some("quarantined")) => in_area && !in_repo && half_done,
                (true, 0, 0, Some("restoring")) => (in_area || in_repo) && half_done,
                (false, 0, 1, None) => !in_area && !in_repo,
                (false, 0, 0, Some("quarantined")) => in_area && !in_repo && half_done,
                (false, 0, 0, Some("purging")) => !in_repo && half_done,
                _ => false,
            };
            if !fine {
                wrong.push(format!(
                    "{rel}: {restored} restored and {deleted} deleted event(s), entry {state:?}, in the area: {in_area}, in the repository: {in_repo}"
                ));
            }
        }
        wrong.extend(audit_holds(root));
        wrong
    });
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_confidential_run_cut_anywhere_flags_each_conversation_once() {
    let env = Env::new("");
    for i in 0..6 {
        env.conversation("acme", 1 + i % 3, &format!("c{i}"), &[("a.wav", b"voice")]);
    }
    let config = std::fs::read_to_string(env.config()).unwrap()
        + "\n[policies.flag]\naction = \"confidential\"\nflag = \"set\"\nmode = \"incremental\"\n";
    env.write_config(&config);
    assert!(env.run(&["index"]).status.success());
    let wrong = cut_everywhere(
        env.path(),
        &["run", "flag", "--no-index"],
        |root, moment| {
            let mut wrong = Vec::new();
            let db = catalog(root).expect("the catalog was made before the cut");
            for row in rows::<rusqlite::types::Value>(
                &db,
                "SELECT c.id, c.confidential, COUNT(e.seq) FROM conversations c LEFT JOIN audit_events e \
             ON e.conversation_id = c.id AND e.kind = 'confidential_flag_changed' GROUP BY c.id",
            ) {
                let [id, flag, events] = &row[..] else {
                    panic!("{row:?}")
                };
                if flag != events || (moment == Moment::Rerun && *flag != Integer(1)) {
                    wrong.push(format!("{id:?}: flag {flag:?} with {events:?} flag events"));
                }
            }
            wrong.extend(audit_holds(root));
            wrong
        },
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
