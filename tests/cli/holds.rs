//! Legal holds end to end: matters, standing and explicit holds keeping conversations from the
//! lifecycle sweep, their release, the matters listed in exported metadata, the audit trail,
//! permissions, and what bad input gets.

use crate::common::Env;
use crate::lifecycle::{enabled_policy, env_with, events, fails, ok};

const ALL: &str = r#"["ARTIFACTS_LIFECYCLE_POLICY_READ", "ARTIFACTS_LIFECYCLE_POLICY_CREATE", "ARTIFACTS_LIFECYCLE_POLICY_DELETE", "ARTIFACTS_LIFECYCLE_POLICY_RUN", "LEGAL_HOLD_READ", "LEGAL_HOLD_MANAGE"]"#;
const RELEASE: [&str; 2] = ["--acknowledge", "hold-release"];

/// A voice conversation of tenant acme on January `day` with `user` as its agent, and one
/// customer recording.
fn conversation(env: &Env, day: u32, id: &str, user: &str) {
    let dir = env.conversation("acme", day, id, &[("a.wav", b"RIFF-a")]);
    let record = dir.join("conversation.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    json["participants"][0]["user"] = user.into();
    std::fs::write(&record, serde_json::to_vec(&json).unwrap()).unwrap();
}

/// Whether the recording of conversation `id` (named `…-DAY`) is still in the repository.
fn kept(env: &Env, id: &str) -> bool {
    let day = id.rsplit('-').next().unwrap().parse().unwrap();
    env.root()
        .join(Env::rel_dir("acme", day, id))
        .join("a.wav")
        .exists()
}

/// What `plan lifecycle` says the one policy makes due, and keeps for holds.
fn plan(env: &Env) -> (u64, u64) {
    let (code, plan) = env.json(&["plan", "lifecycle"]);
    assert_eq!(code, 0, "{plan}");
    (
        plan[0]["artifacts"].as_u64().unwrap(),
        plan[0]["held"].as_u64().unwrap(),
    )
}

fn exported_metadata(env: &Env, id: &str) -> serde_json::Value {
    let file = env
        .archive_files()
        .into_iter()
        .find(|f| f.contains(id) && f.ends_with("conversation.json"))
        .unwrap_or_else(|| panic!("no metadata for {id} in {:?}", env.archive_files()));
    serde_json::from_slice(&std::fs::read(env.archive().join(file)).unwrap()).unwrap()
}

#[test]
fn standing_and_explicit_holds_keep_conversations_from_the_sweep_until_released() {
    holds_keep_conversations_until_released(&env_with(ALL, "max_delete_share = 1.0"));
}

#[cfg(feature = "postgres")]
#[test]
fn holds_work_the_same_on_a_postgres_catalog() {
    let scratch = crate::postgres::Scratch::new("holds");
    let env = env_with(ALL, "max_delete_share = 1.0");
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&config.replace("sqlite:catalog.db", &scratch.url()));
    holds_keep_conversations_until_released(&env);
}

fn holds_keep_conversations_until_released(env: &Env) {
    conversation(env, 1, "alice-1", "alice");
    conversation(env, 2, "bob-2", "bob");
    conversation(env, 3, "carol-3", "carol");
    enabled_policy(env);
    ok(env, &["index"]);
    assert_eq!(plan(env), (3, 0));

    ok(
        env,
        &[
            "hold",
            "create",
            "smith-v-acme",
            "--description",
            "Smith v. Acme",
        ],
    );
    let placed = ok(env, &["hold", "add", "smith-v-acme", "--user", "bob"]);
    assert!(placed.contains("standing"), "{placed}");
    ok(env, &["hold", "create", "audit-2026"]);
    ok(
        env,
        &[
            "hold",
            "add",
            "audit-2026",
            "--conversation",
            "acme/carol-3",
        ],
    );
    // Recorded after the standing hold was placed, and held by it all the same.
    conversation(env, 4, "bob-4", "bob");
    assert_eq!(plan(env), (1, 3));

    let (code, report) = env.json(&["run", "lifecycle"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["deleted"], 1, "{report}");
    assert_eq!(report["policies"][0]["held"], 3, "{report}");
    assert_eq!(
        report["policies"][0]["held_by_matter"],
        serde_json::json!({"audit-2026": 1, "smith-v-acme": 2}),
        "{report}"
    );
    assert!(!kept(env, "alice-1"));
    for id in ["bob-2", "bob-4", "carol-3"] {
        assert!(kept(env, id), "{id} is held");
    }

    let (_, matters) = env.json(&["hold", "list"]);
    let counts: Vec<(&str, u64, u64)> = matters
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["conversations"].as_u64().unwrap(),
                m["artifacts"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, [("audit-2026", 1, 1), ("smith-v-acme", 2, 2)]);
    let shown = ok(env, &["hold", "show", "smith-v-acme"]);
    assert!(
        shown.contains("1 active of 1; they keep 2 conversations, 2 artifacts")
            && shown.contains(r#"standing: {"users":["bob"]}"#),
        "{shown}"
    );

    // Exported metadata lists the matters holding each conversation.
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(
        exported_metadata(env, "bob-2")["legal_holds"],
        serde_json::json!(["smith-v-acme"])
    );
    assert_eq!(
        exported_metadata(env, "carol-3")["legal_holds"],
        serde_json::json!(["audit-2026"])
    );
    assert!(
        exported_metadata(env, "alice-1")
            .get("legal_holds")
            .is_none()
    );

    // Released, a matter holds nothing: what it kept is due again.
    let mut release = vec!["hold", "release", "smith-v-acme"];
    release.extend(RELEASE);
    assert!(ok(env, &release).contains("released 1 hold(s)"));
    assert_eq!(plan(env), (2, 1));
    let (_, report) = env.json(&["run", "lifecycle"]);
    assert_eq!(report["deleted"], 2, "{report}");
    assert!(!kept(env, "bob-2") && !kept(env, "bob-4"));
    assert!(kept(env, "carol-3"));
    let mut release = vec!["hold", "release", "audit-2026"];
    release.extend(RELEASE);
    ok(env, &release);
    let (_, report) = env.json(&["run", "lifecycle"]);
    assert_eq!(report["deleted"], 1, "{report}");

    let created = events(env, "matter_created");
    assert_eq!(created.len(), 2);
    assert_eq!(created[0]["details"]["matter"], "smith-v-acme");
    let placed = events(env, "legal_hold_placed");
    assert_eq!(placed.len(), 2);
    assert_eq!(
        placed[0]["details"]["criteria"],
        serde_json::json!({"users": ["bob"]})
    );
    assert_eq!(
        placed[1]["details"]["conversations"],
        serde_json::json!(["acme/carol-3"])
    );
    assert!(
        placed
            .iter()
            .all(|e| e["actor"].as_str().is_some_and(|a| !a.is_empty()))
    );
    let released = events(env, "legal_hold_released");
    assert_eq!(released.len(), 2);
    assert_eq!(released[0]["details"]["acknowledgment"], "hold-release");
    ok(env, &["audit", "verify"]);
}

#[test]
fn bad_input_is_refused_with_exit_2_and_changes_nothing() {
    let env = env_with(ALL, "max_delete_share = 1.0");
    conversation(&env, 1, "bob-1", "bob");
    enabled_policy(&env);
    ok(&env, &["index"]);
    ok(&env, &["hold", "create", "smith"]);
    ok(
        &env,
        &["hold", "add", "smith", "--conversation", "acme/bob-1"],
    );
    let before = events(&env, "legal_hold_placed").len();

    for (args, needle) in [
        (
            &["hold", "add", "nope", "--user", "bob"][..],
            "no matter named `nope`",
        ),
        (&["hold", "add", "smith"][..], "say what to hold"),
        (
            &["hold", "add", "smith", "--conversation", "acme/ghost"][..],
            "not in the catalog: acme/ghost",
        ),
        (
            &[
                "hold",
                "add",
                "smith",
                "--conversation",
                "acme/bob-1",
                "--user",
                "bob",
            ][..],
            "not both",
        ),
        (
            &["hold", "add", "smith", "--conversation", "bob-1"][..],
            "TENANT/ID",
        ),
        (
            &["hold", "add", "smith", "--start-after", "2026-01-01"][..],
            "needs a date, a time and an offset",
        ),
        (
            &[
                "hold",
                "add",
                "smith",
                "--start-after",
                "2026-02-01T00:00:00Z",
                "--start-before",
                "2026-01-01T00:00:00Z",
            ][..],
            "--start-before",
        ),
        (&["hold", "create", "smith"][..], "already exists"),
        (&["hold", "create", " "][..], "matter name"),
        (
            &["hold", "release", "smith"][..],
            "--acknowledge hold-release",
        ),
        (
            &["hold", "release", "smith", "--acknowledge", "yes"][..],
            "--acknowledge hold-release",
        ),
        (
            &["hold", "release", "nope", "--acknowledge", "hold-release"][..],
            "no matter named `nope`",
        ),
        (&["hold", "show", "nope"][..], "no matter named `nope`"),
    ] {
        let msg = fails(&env, args);
        assert!(msg.contains(needle), "{args:?}: {msg}");
    }
    assert_eq!(events(&env, "legal_hold_placed").len(), before);
    assert!(events(&env, "legal_hold_released").is_empty());
    assert_eq!(events(&env, "matter_created").len(), 1);
    assert_eq!(plan(&env), (0, 1), "still held");
    ok(&env, &["audit", "verify"]);
}

#[test]
fn holds_need_their_permissions() {
    let env = env_with(r#"["LEGAL_HOLD_READ"]"#, "");
    conversation(&env, 1, "bob-1", "bob");
    ok(&env, &["index"]);
    let msg = fails(&env, &["hold", "create", "smith"]);
    assert!(
        msg.contains("lacks the permission LEGAL_HOLD_MANAGE"),
        "{msg}"
    );
    assert!(ok(&env, &["hold", "list"]).contains("no matters"));
    std::fs::write(
        env.path().join("roles.toml"),
        "[users]\n\"*\" = [\"ARTIFACTS_LIFECYCLE_POLICY_READ\"]\n",
    )
    .unwrap();
    let msg = fails(&env, &["hold", "list"]);
    assert!(
        msg.contains("lacks the permission LEGAL_HOLD_READ"),
        "{msg}"
    );
    let msg = fails(
        &env,
        &["hold", "release", "smith", "--acknowledge", "hold-release"],
    );
    assert!(msg.contains("LEGAL_HOLD_MANAGE"), "{msg}");
    assert!(events(&env, "matter_created").is_empty());
}
