//! The sweep against a hostile repository and hostile settings: a swapped directory, a hold set
//! after indexing, a roles file others control, missing permissions, a keystore of another user.

use std::os::unix::fs::PermissionsExt;

use crate::common::{Env, text};
use crate::lifecycle::{ALL, enabled_policy, env_with, events, fails, ok};

/// An installation with two due conversations, `victim` and `other`, indexed and an enabled
/// 30-day policy; returns the environment and `victim`'s directory.
fn indexed(grants: &str) -> (Env, std::path::PathBuf) {
    let env = env_with(grants, "max_delete_share = 1.0");
    let victim = env.conversation("acme", 1, "victim", &[("a.wav", b"RIFF-victim")]);
    env.conversation("acme", 2, "other", &[("a.wav", b"RIFF-other")]);
    ok(&env, &["index"]);
    enabled_policy(&env);
    (env, victim)
}

fn chown_to_nobody(path: &std::path::Path) {
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
    std::os::unix::fs::chown(path, Some(nobody.as_raw()), None).unwrap();
}

#[test]
fn a_conversation_directory_swapped_for_a_link_deletes_nothing_outside() {
    let (env, victim) = indexed(ALL);
    let outside = env.path().join("outside");
    std::fs::rename(&victim, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &victim).unwrap();

    let (code, report) = env.json(&["run", "lifecycle", "--no-index"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["deleted"], 1, "{report}");
    assert_eq!(report["failed"], 1, "{report}");
    let why = report["failures"][0].as_str().unwrap();
    assert!(
        why.contains("victim") && why.contains("symbolic link") && why.contains("next sweep"),
        "{why}"
    );
    assert_eq!(
        std::fs::read(outside.join("a.wav")).unwrap(),
        b"RIFF-victim",
        "the file outside the repository survives"
    );
    let deleted = events(&env, "artifact_deleted");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["conversation_id"], "other");
    // It stays due: once the real directory is back, the next sweep deletes it.
    std::fs::remove_file(&victim).unwrap();
    std::fs::rename(&outside, &victim).unwrap();
    let (code, report) = env.json(&["run", "lifecycle", "--no-index"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["deleted"], 1);
    assert!(!victim.join("a.wav").exists());
}

#[test]
fn a_record_put_on_hold_after_indexing_is_held_back() {
    let (env, victim) = indexed(ALL);
    let record = victim.join("conversation.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    json["flags"] = serde_json::json!({"legal_hold": true});
    std::fs::write(&record, serde_json::to_vec(&json).unwrap()).unwrap();

    let (code, report) = env.json(&["run", "lifecycle", "--no-index"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["deleted"], 1, "{report}");
    assert_eq!(report["held_back"], 1, "{report}");
    assert!(
        report["held_back_reasons"][0]
            .as_str()
            .unwrap()
            .contains("victim"),
        "{report}"
    );
    assert!(
        victim.join("a.wav").exists(),
        "a held record is not deleted"
    );
    let deleted = events(&env, "artifact_deleted");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["conversation_id"], "other");
    // Reindexed, the catalog knows the hold, and nothing is due any more.
    let out = ok(&env, &["run", "lifecycle"]);
    assert!(out.contains("deleted 0 artifacts"), "{out}");
    assert!(victim.join("a.wav").exists());
}

#[test]
fn a_world_writable_roles_file_is_refused() {
    let (env, victim) = indexed(ALL);
    let roles = env.path().join("roles.toml");
    std::fs::set_permissions(&roles, std::fs::Permissions::from_mode(0o666)).unwrap();
    for args in [&["run", "lifecycle"][..], &["lifecycle", "list"]] {
        let msg = fails(&env, args);
        assert!(
            msg.contains(&roles.display().to_string())
                && msg.contains("mode 666")
                && msg.contains("chmod go-w"),
            "{msg}"
        );
    }
    assert!(victim.join("a.wav").exists());
    assert!(events(&env, "artifact_deleted").is_empty());
}

#[test]
fn a_roles_file_owned_by_someone_else_is_refused() {
    let (env, victim) = indexed(ALL);
    let roles = env.path().join("roles.toml");
    chown_to_nobody(&roles);
    let msg = fails(&env, &["run", "lifecycle", "--force"]);
    assert!(
        msg.contains(&roles.display().to_string())
            && msg.contains("owned by nobody")
            && msg.contains("the catalog's owner")
            && msg.contains("chown root"),
        "{msg}"
    );
    assert!(victim.join("a.wav").exists());
    assert!(events(&env, "artifact_deleted").is_empty());
}

#[test]
fn the_sweep_and_force_need_permissions_of_their_own() {
    let manage = r#"["ARTIFACTS_LIFECYCLE_POLICY_READ", "ARTIFACTS_LIFECYCLE_POLICY_CREATE", "ARTIFACTS_LIFECYCLE_POLICY_DELETE"]"#;
    let (env, victim) = indexed(manage);
    for args in [&["run", "lifecycle"][..], &["run", "lifecycle", "--force"]] {
        let msg = fails(&env, args);
        assert!(
            msg.contains("lacks the permission ARTIFACTS_LIFECYCLE_POLICY_RUN"),
            "{args:?}: {msg}"
        );
    }
    assert!(victim.join("a.wav").exists());

    let run_only = r#"["ARTIFACTS_LIFECYCLE_POLICY_READ", "ARTIFACTS_LIFECYCLE_POLICY_CREATE", "ARTIFACTS_LIFECYCLE_POLICY_DELETE", "ARTIFACTS_LIFECYCLE_POLICY_RUN"]"#;
    std::fs::write(
        env.path().join("roles.toml"),
        format!("[users]\n\"*\" = {run_only}\n"),
    )
    .unwrap();
    let msg = fails(&env, &["run", "lifecycle", "--force"]);
    assert!(
        msg.contains("lacks the permission ARTIFACTS_LIFECYCLE_POLICY_FORCE"),
        "{msg}"
    );
    assert!(victim.join("a.wav").exists());
    assert!(events(&env, "artifact_deleted").is_empty());
    let (code, report) = env.json(&["run", "lifecycle"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["deleted"], 2);
}

#[test]
fn a_keystore_owned_by_another_user_is_refused() {
    let env = Env::new("");
    let keystore = env.keystore(&["k1"]);
    chown_to_nobody(&keystore);
    let input = env.path().join("plain.bin");
    std::fs::write(&input, b"secret audio").unwrap();
    let out = env.run(&[
        "encrypt",
        "--keystore",
        keystore.to_str().unwrap(),
        "--key-id",
        "k1",
        input.to_str().unwrap(),
        env.path().join("sealed.bin").to_str().unwrap(),
    ]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains(&keystore.display().to_string())
            && msg.contains("owner nobody")
            && msg.contains("mode 600")
            && msg.contains("chown root"),
        "{msg}"
    );
    assert!(!env.path().join("sealed.bin").exists());
}
