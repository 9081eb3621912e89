//! Four eyes (docs/operations.md, "Four eyes"): with `[lifecycle] approvals = 2`, a change that
//! makes a delete version take effect waits for a second user's approval. The tests that need
//! two users run as real operating-system users ([`crate::osusers`]); each refusal exits 2 and
//! changes neither the policy, nor the pending changes, nor the audit trail.

use crate::common::{Env, text};
use crate::lifecycle::{env_with, events, fails, ok};
use crate::osusers::{self, ALICE, BOB, EVE, GROUP, Shared};

const ACKS: [&str; 4] = [
    "--acknowledge",
    "storage-overage",
    "--acknowledge",
    "irreversible-delete",
];

/// Alice requests and may approve others' changes; Bob approves and runs the sweep; Eve, like
/// every member of the group, only reads.
const ROLES: &str = r#"[users]
"custodian-t-alice" = ["ARTIFACTS_LIFECYCLE_POLICY_CREATE", "ARTIFACTS_LIFECYCLE_POLICY_APPROVE", "LEGAL_HOLD_MANAGE"]
"custodian-t-bob" = ["ARTIFACTS_LIFECYCLE_POLICY_APPROVE", "ARTIFACTS_LIFECYCLE_POLICY_RUN"]
[groups]
"custodian-t" = ["ARTIFACTS_LIFECYCLE_POLICY_READ", "LEGAL_HOLD_READ"]
"#;

fn with(args: &[&str], extra: &[&str]) -> Vec<String> {
    args.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A shared installation under four eyes with two conversations due for a 30-day policy.
fn shared(lifecycle: &str) -> Shared {
    let s = Shared::new(
        ROLES,
        &format!("approvals = 2\nmax_delete_share = 1.0\n{lifecycle}"),
    );
    s.env.conversation(
        "acme",
        1,
        "c1",
        &[("a.wav", b"RIFF-1"), ("b.wav", b"RIFF-2")],
    );
    s.env.conversation("acme", 2, "c2", &[("a.wav", b"RIFF-3")]);
    s.share_repository();
    s
}

/// Alice creates `voice-30d` with a delete version `v1`, which is not active, and requests its
/// activation; returns the change's id.
fn requested(s: &Shared) -> i64 {
    let out = s.publish_voice_30d(ALICE);
    assert!(out.contains("it is not active"), "{out}");
    let out = s.ok(
        ALICE,
        &strs(&with(&["lifecycle", "activate", "voice-30d", "v1"], &ACKS)),
    );
    assert!(
        out.contains("custodian lifecycle approve") && out.contains("irreversible-delete"),
        "{out}"
    );
    let pending = s.json(EVE, &["lifecycle", "pending"]);
    assert_eq!(pending.as_array().unwrap().len(), 1, "{pending}");
    pending[0]["id"].as_i64().unwrap()
}

/// What a refusal must leave as it was: the policy, every change, the audit trail.
fn snapshot(s: &Shared) -> (serde_json::Value, serde_json::Value, usize) {
    (
        s.json(EVE, &["lifecycle", "show", "voice-30d"]),
        s.json(EVE, &["lifecycle", "pending", "--all"]),
        s.trail(EVE).len(),
    )
}

fn of_kind(trail: &[serde_json::Value], kind: &str) -> Vec<serde_json::Value> {
    trail
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

#[test]
fn a_second_user_approves_and_the_sweep_then_deletes() {
    if !osusers::available("a_second_user_approves_and_the_sweep_then_deletes") {
        return;
    }
    let s = shared("");
    approved_then_swept(&s);
    // The catalog the users share is theirs and their group's, never others'.
    let group = nix::unistd::Group::from_name(GROUP).unwrap().unwrap().gid;
    for file in s.catalog_files() {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(osusers::mode(&file) & 0o007, 0, "{}", file.display());
        assert_eq!(
            std::fs::metadata(&file).unwrap().gid(),
            group.as_raw(),
            "{}",
            file.display()
        );
    }
}

#[cfg(feature = "postgres")]
#[test]
fn a_second_user_approves_on_a_postgres_catalog() {
    if !osusers::available("a_second_user_approves_on_a_postgres_catalog") {
        return;
    }
    let scratch = crate::postgres::Scratch::new("foureyes");
    let s = shared("");
    s.use_catalog(&scratch.url());
    approved_then_swept(&s);
    assert_eq!(scratch.count("lifecycle_changes"), 2);
}

/// Alice's two requests (activate, then enable), each approved by Bob, then Bob's sweep.
fn approved_then_swept(s: &Shared) {
    s.ok(ALICE, &["index"]);
    let activate = requested(s);
    let (_, plan) = (0, s.json(EVE, &["plan", "lifecycle"]));
    assert_eq!(
        plan,
        serde_json::json!([]),
        "nothing is due before approval"
    );

    let approve = |id: i64| {
        let id = id.to_string();
        s.ok(BOB, &strs(&with(&["lifecycle", "approve", &id], &ACKS)))
    };
    let out = approve(activate);
    assert!(
        out.contains(&format!("approved change {activate}")),
        "{out}"
    );
    let policy = s.json(EVE, &["lifecycle", "show", "voice-30d"]);
    assert_eq!(
        (&policy["enabled"], &policy["active_version"]),
        (&false.into(), &"v1".into())
    );
    // Enabling a policy whose active version deletes is a change of its own.
    s.ok(
        ALICE,
        &strs(&with(&["lifecycle", "enable", "voice-30d"], &ACKS)),
    );
    assert_eq!(s.json(EVE, &["plan", "lifecycle"]), serde_json::json!([]));
    let enable = s.json(EVE, &["lifecycle", "pending"])[0]["id"]
        .as_i64()
        .unwrap();
    approve(enable);
    assert_eq!(
        s.json(EVE, &["lifecycle", "show", "voice-30d"])["enabled"],
        true
    );

    let report = s.json(BOB, &["run", "lifecycle"]);
    assert_eq!(report["deleted"], 3, "{report}");
    for (day, id, file) in [(1, "c1", "a.wav"), (1, "c1", "b.wav"), (2, "c2", "a.wav")] {
        assert!(
            !s.env
                .root()
                .join(Env::rel_dir("acme", day, id))
                .join(file)
                .exists()
        );
    }
    let trail = s.trail(EVE);
    let requests = of_kind(&trail, "lifecycle_change_requested");
    let approvals = of_kind(&trail, "lifecycle_change_approved");
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|e| e["actor"] == ALICE));
    assert_eq!(
        approvals
            .iter()
            .map(|e| (
                e["actor"].as_str().unwrap(),
                e["details"]["pending_change"].as_i64().unwrap(),
                e["details"]["requested_by"].as_str().unwrap()
            ))
            .collect::<Vec<_>>(),
        [(BOB, activate, ALICE), (BOB, enable, ALICE)]
    );
    let applied: Vec<_> = of_kind(&trail, "lifecycle_policy_changed")
        .into_iter()
        .filter(|e| e["details"]["pending_change"].is_i64())
        .map(|e| (e["actor"].clone(), e["details"]["change"].clone()))
        .collect();
    assert_eq!(
        applied,
        [
            (BOB.into(), "activate".into()),
            (BOB.into(), "enable".into())
        ]
    );
    let acks = of_kind(&trail, "lifecycle_acknowledged");
    for user in [ALICE, BOB] {
        assert_eq!(acks.iter().filter(|e| e["actor"] == user).count(), 4);
    }
    assert_eq!(of_kind(&trail, "artifact_deleted").len(), 3);
    s.ok(BOB, &["audit", "verify"]);
    assert!(
        s.json(EVE, &["lifecycle", "pending"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_requester_cannot_approve_and_an_approval_needs_its_acknowledgments() {
    if !osusers::available("the_requester_cannot_approve_and_an_approval_needs_its_acknowledgments")
    {
        return;
    }
    let s = shared("");
    let id = requested(&s).to_string();
    let before = snapshot(&s);
    let msg = s.fails(ALICE, &strs(&with(&["lifecycle", "approve", &id], &ACKS)));
    assert!(
        msg.contains(&format!("was requested by {ALICE}")) && msg.contains("four eyes"),
        "{msg}"
    );
    assert_eq!(snapshot(&s), before);
    let msg = s.fails(
        BOB,
        &[
            "lifecycle",
            "approve",
            &id,
            "--acknowledge",
            "storage-overage",
        ],
    );
    assert!(
        msg.contains("needs explicit acknowledgment") && msg.contains("irreversible-delete"),
        "{msg}"
    );
    assert_eq!(snapshot(&s), before);
    let msg = s.fails(BOB, &strs(&with(&["lifecycle", "approve", "99"], &ACKS)));
    assert!(msg.contains("no change 99"), "{msg}");
    assert_eq!(snapshot(&s), before);
}

#[test]
fn a_user_without_the_approve_permission_can_neither_approve_nor_reject() {
    if !osusers::available("a_user_without_the_approve_permission_can_neither_approve_nor_reject") {
        return;
    }
    let s = shared("");
    let id = requested(&s).to_string();
    let before = snapshot(&s);
    for args in [
        with(&["lifecycle", "approve", &id], &ACKS),
        with(&["lifecycle", "reject", &id], &[]),
    ] {
        let msg = s.fails(EVE, &strs(&args));
        assert!(
            msg.contains(&format!(
                "user `{EVE}` lacks the permission ARTIFACTS_LIFECYCLE_POLICY_APPROVE"
            )) && msg.contains(GROUP),
            "{msg}"
        );
        assert_eq!(snapshot(&s), before);
    }
}

#[test]
fn an_expired_change_cannot_be_approved_and_is_recorded_expired_once() {
    if !osusers::available("an_expired_change_cannot_be_approved_and_is_recorded_expired_once") {
        return;
    }
    let s = shared("approval_expiry = \"1s\"");
    let id = requested(&s);
    let (policy, _, events) = snapshot(&s);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for _ in 0..2 {
        let msg = s.fails(
            BOB,
            &strs(&with(&["lifecycle", "approve", &id.to_string()], &ACKS)),
        );
        assert!(
            msg.contains(&format!("change {id} expired at"))
                && msg.contains("request the change again"),
            "{msg}"
        );
    }
    let (policy_now, changes, events_now) = snapshot(&s);
    assert_eq!(policy_now, policy, "the policy is unchanged");
    assert_eq!(changes[0]["state"], "expired", "{changes}");
    assert_eq!(changes[0]["decided_by"], serde_json::Value::Null);
    assert_eq!(events_now, events + 1, "one event: the expiry");
    let expired = of_kind(&s.trail(EVE), "lifecycle_change_expired");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["actor"], BOB, "who noticed it");
    assert_eq!(expired[0]["details"]["pending_change"], id);
    assert_eq!(expired[0]["policy"], "voice-30d");
    // An expired change no longer holds the policy: it may be requested again.
    s.ok(
        ALICE,
        &strs(&with(&["lifecycle", "activate", "voice-30d", "v1"], &ACKS)),
    );
}

#[test]
fn a_rejected_change_is_closed_and_a_change_made_from_another_state_cannot_be_approved() {
    if !osusers::available(
        "a_rejected_change_is_closed_and_a_change_made_from_another_state_cannot_be_approved",
    ) {
        return;
    }
    let s = shared("");
    let id = requested(&s).to_string();
    // The policy changes under the request: a keep-forever version needs no approval.
    s.ok(
        ALICE,
        &[
            "lifecycle",
            "version",
            "voice-30d",
            "keep",
            "--keep-forever",
        ],
    );
    s.ok(
        ALICE,
        &[
            "lifecycle",
            "activate",
            "voice-30d",
            "keep",
            "--acknowledge",
            "storage-overage",
        ],
    );
    let before = snapshot(&s);
    let msg = s.fails(BOB, &strs(&with(&["lifecycle", "approve", &id], &ACKS)));
    assert!(
        msg.contains(&format!(
            "policy `voice-30d` changed since change {id} was requested"
        )) && msg.contains("it is disabled with `keep` active"),
        "{msg}"
    );
    assert_eq!(snapshot(&s), before);

    let out = s.ok(BOB, &["lifecycle", "reject", &id]);
    assert!(out.contains(&format!("rejected change {id}")), "{out}");
    let (policy, changes, events) = snapshot(&s);
    assert_eq!(policy, before.0, "a rejection leaves the policy as it is");
    assert_eq!(changes[0]["state"], "rejected");
    assert_eq!(changes[0]["decided_by"], BOB);
    assert_eq!(events, before.2 + 1);
    let rejected = of_kind(&s.trail(EVE), "lifecycle_change_rejected");
    assert_eq!(rejected[0]["actor"], BOB);
    assert_eq!(rejected[0]["details"]["pending_change"].to_string(), id);

    let after = snapshot(&s);
    let msg = s.fails(BOB, &strs(&with(&["lifecycle", "approve", &id], &ACKS)));
    assert!(
        msg.contains(&format!("change {id} was rejected already, by {BOB}")),
        "{msg}"
    );
    assert_eq!(snapshot(&s), after);
}

#[test]
fn a_policy_has_one_pending_change_at_a_time() {
    if !osusers::available("a_policy_has_one_pending_change_at_a_time") {
        return;
    }
    let s = shared("");
    let id = requested(&s);
    s.ok(
        ALICE,
        &[
            "lifecycle",
            "version",
            "voice-30d",
            "v2",
            "--delete-after-days",
            "60",
        ],
    );
    let before = snapshot(&s);
    let msg = s.fails(
        ALICE,
        &strs(&with(&["lifecycle", "activate", "voice-30d", "v2"], &ACKS)),
    );
    assert!(
        msg.contains(&format!(
            "policy `voice-30d` already has a pending change ({id}, activate `v1`, requested by {ALICE})"
        )),
        "{msg}"
    );
    assert_eq!(snapshot(&s), before);
}

#[test]
fn permissions_hold_for_real_users() {
    if !osusers::available("permissions_hold_for_real_users") {
        return;
    }
    let s = shared("");
    s.ok(ALICE, &["index"]);
    s.ok(ALICE, &["hold", "create", "smith-v-acme"]);
    let trail = s.trail(EVE).len();
    let lacks = |user: &str, args: &[&str], permission: &str| {
        let msg = s.fails(user, args);
        assert!(
            msg.contains(&format!("user `{user}` lacks the permission {permission}")),
            "{msg}"
        );
    };
    lacks(
        EVE,
        &["hold", "add", "smith-v-acme", "--conversation", "acme/c1"],
        "LEGAL_HOLD_MANAGE",
    );
    assert_eq!(
        s.json(EVE, &["hold", "show", "smith-v-acme"])["holds"],
        serde_json::json!([])
    );
    requested(&s);
    let before = snapshot(&s);
    lacks(
        BOB,
        &strs(&with(&["lifecycle", "enable", "voice-30d"], &ACKS)),
        "ARTIFACTS_LIFECYCLE_POLICY_CREATE",
    );
    lacks(EVE, &["run", "lifecycle"], "ARTIFACTS_LIFECYCLE_POLICY_RUN");
    assert_eq!(snapshot(&s), before);
    assert_eq!(
        s.json(EVE, &["jobs", "list", "--policy", "lifecycle"]),
        serde_json::json!([])
    );
    assert!(before.2 > trail);
}

#[test]
fn under_four_eyes_delete_versions_take_effect_only_through_a_pending_change() {
    let env = env_with(
        r#"["ARTIFACTS_LIFECYCLE_POLICY_READ", "ARTIFACTS_LIFECYCLE_POLICY_CREATE", "ARTIFACTS_LIFECYCLE_POLICY_DELETE", "ARTIFACTS_LIFECYCLE_POLICY_APPROVE"]"#,
        "approvals = 2",
    );
    ok(
        &env,
        &["lifecycle", "create", "t", "--artifact-type", "transcript"],
    );
    let out = ok(
        &env,
        &[
            "lifecycle",
            "version",
            "t",
            "v1",
            "--delete-after-days",
            "30",
        ],
    );
    assert!(out.contains("it is not active"), "{out}");
    let msg = fails(&env, &strs(&with(&["lifecycle", "enable", "t"], &ACKS)));
    assert!(msg.contains("has no active version"), "{msg}");
    // What deletes nothing needs no approval: a keep-forever version, enabling it, disabling.
    ok(
        &env,
        &["lifecycle", "version", "t", "keep", "--keep-forever"],
    );
    let keep = ["--acknowledge", "storage-overage"];
    ok(
        &env,
        &strs(&with(&["lifecycle", "activate", "t", "keep"], &keep)),
    );
    ok(&env, &strs(&with(&["lifecycle", "enable", "t"], &keep)));
    let out = ok(
        &env,
        &strs(&with(&["lifecycle", "activate", "t", "v1"], &ACKS)),
    );
    assert!(out.contains("change 1 requested"), "{out}");
    let (_, shown) = env.json(&["lifecycle", "show", "t"]);
    assert_eq!(
        (&shown["enabled"], &shown["active_version"]),
        (&true.into(), &"keep".into())
    );
    let (_, pending) = env.json(&["lifecycle", "pending"]);
    assert_eq!(pending[0]["change"], "activate");
    assert_eq!(pending[0]["version"], "v1");
    assert_eq!(pending[0]["enabled_before"], true);
    assert_eq!(
        pending[0]["acknowledgments"],
        serde_json::json!(["storage-overage", "irreversible-delete"])
    );
    let text_list = ok(&env, &["lifecycle", "pending"]);
    assert!(
        text_list.contains("activate") && text_list.contains("pending"),
        "{text_list}"
    );
    ok(&env, &strs(&with(&["lifecycle", "disable", "t"], &keep)));
    // The requester may withdraw their own change.
    ok(&env, &["lifecycle", "reject", "1"]);
    assert_eq!(events(&env, "lifecycle_change_requested").len(), 1);
    assert_eq!(events(&env, "lifecycle_change_rejected").len(), 1);
    let (_, pending) = env.json(&["lifecycle", "pending"]);
    assert_eq!(pending, serde_json::json!([]));
}

#[test]
fn four_eyes_settings_are_checked_naming_file_line_and_key() {
    for (setting, expected) in [
        ("approvals = 3", "lifecycle.approvals: must be 1"),
        (
            "approval_expiry = \"1h\"",
            "lifecycle.approval_expiry: applies only with `approvals = 2`",
        ),
        (
            "approvals = 2\napproval_expiry = \"soon\"",
            "lifecycle.approval_expiry: `soon` is not a duration",
        ),
    ] {
        let env = env_with(r#"["ARTIFACTS_LIFECYCLE_POLICY_READ"]"#, setting);
        let out = env.run(&["lifecycle", "list"]);
        assert_eq!(out.status.code(), Some(2));
        let msg = text(&out);
        assert!(
            msg.contains("custodian.toml:") && msg.contains(expected),
            "{setting}: {msg}"
        );
    }
}
