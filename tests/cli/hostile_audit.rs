//! The audit trail against someone who can write the catalog but not read the audit key:
//! cutting the last events, or editing events and recomputing the chain, is reported by
//! `audit verify` against the chain heads anchored in the manifests at the target.

use std::os::unix::fs::PermissionsExt;

use custodian::audit::{AuditEvent, GENESIS};
use custodian::catalog::sqlite::SqliteCatalog;
use custodian::catalog::{AuditQuery, Catalog};

use crate::common::{Env, text};

/// An installation where run 1 of `export` exported three conversations (three audit
/// events, all keyed).
fn exported() -> Env {
    let env = Env::new("");
    for id in ["c1", "c2", "c3"] {
        env.conversation("acme", 1, id, &[("call.wav", id.as_bytes())]);
    }
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    env
}

fn catalog_path(env: &Env) -> std::path::PathBuf {
    env.path().join("catalog.db")
}

fn events(env: &Env) -> Vec<AuditEvent> {
    SqliteCatalog::open(&catalog_path(env))
        .unwrap()
        .audit_events(&AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        })
        .unwrap()
}

/// Writes `events` over the stored ones, as an attacker with write access to the catalog
/// would.
fn overwrite(env: &Env, events: &[AuditEvent]) {
    let db = rusqlite::Connection::open(catalog_path(env)).unwrap();
    for e in events {
        db.execute(
            "UPDATE audit_events SET details = ?1, prev_hash = ?2, hash = ?3, key_id = ?4 WHERE seq = ?5",
            rusqlite::params![e.event.details.to_string(), e.prev_hash, e.hash, e.key_id, e.seq],
        )
        .unwrap();
    }
}

/// Recomputes the chain's plain SHA-256 hashes from event `from` (1-based) on, the best
/// anyone without the key can do.
fn rechain_plain(events: &mut [AuditEvent], from: usize) {
    let mut prev = if from == 1 {
        GENESIS.to_owned()
    } else {
        events[from - 2].hash.clone()
    };
    for e in &mut events[from - 1..] {
        e.prev_hash = prev.clone();
        e.hash = e.event.chain_hash(e.seq, &prev);
        prev = e.hash.clone();
    }
}

fn verify(env: &Env) -> (i32, serde_json::Value, String) {
    let (code, json) = env.json(&["audit", "verify"]);
    let out = env.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    (code, json, text(&out))
}

#[test]
fn intact_trail_is_intact_and_lists_the_anchors_it_checked() {
    let env = exported();
    let key = env.path().join("audit.key");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let all = events(&env);
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|e| e.key_id.is_some()), "{all:?}");

    let (code, json, out) = verify(&env);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["ok"], true);
    assert_eq!(json["keyed_from"], 1);
    let anchors = json["anchors"].as_array().unwrap();
    assert_eq!(anchors.len(), 1, "{json}");
    assert_eq!(anchors[0]["status"], "matches");
    assert_eq!(anchors[0]["policy"], "export");
    assert_eq!(anchors[0]["target"], "archive");
    assert_eq!(anchors[0]["run"], 1);
    assert_eq!(anchors[0]["seq"], 3);
    assert_eq!(anchors[0]["hash"], all[2].hash.as_str());
    assert!(
        out.contains("audit trail intact: 3 events, 1 anchor(s) checked"),
        "{out}"
    );
    assert!(
        out.contains("anchor of run 1 (policy export, target archive") && out.contains(": matches"),
        "{out}"
    );
    // The anchor is in the manifest's header, where the pointer says.
    let header = std::fs::read_to_string(
        env.archive()
            .join("_custodian/manifests/export/run-1.jsonl"),
    )
    .unwrap();
    let header: serde_json::Value = serde_json::from_str(header.lines().next().unwrap()).unwrap();
    assert_eq!(header["audit"]["seq"], 3);
}

#[test]
fn deleting_the_last_events_is_reported_as_truncation_against_the_manifest_anchor() {
    let env = exported();
    let db = rusqlite::Connection::open(catalog_path(&env)).unwrap();
    db.execute("DELETE FROM audit_events WHERE seq >= 2", [])
        .unwrap();
    drop(db);

    let (code, json, out) = verify(&env);
    assert_eq!(code, 1, "{out}");
    assert_eq!(json["ok"], false);
    // What is left is a consistent chain; only the anchor shows what went.
    assert!(json["broken"].is_null(), "{json}");
    let anchor = &json["anchors"][0];
    assert_eq!(anchor["status"], "truncated", "{json}");
    assert_eq!(anchor["seq"], 3);
    assert_eq!(anchor["chain_ends_at"], 1);
    assert!(
        out.contains(
            "TRUNCATED: the catalog's chain ends at event 1; events from 2 on were removed"
        ),
        "{out}"
    );
    assert!(out.contains("audit trail TAMPERED"), "{out}");
}

#[test]
fn editing_a_keyed_event_and_recomputing_the_unkeyed_chain_is_reported_at_that_event() {
    let env = exported();
    let mut all = events(&env);
    all[1].event.details["objects"] = serde_json::json!([]);
    rechain_plain(&mut all, 2);
    overwrite(&env, &all);

    let (code, json, out) = verify(&env);
    assert_eq!(code, 1, "{out}");
    assert_eq!(json["broken"]["seq"], 2, "{json}");
    assert!(
        out.contains("audit trail broken at event 2: content does not match its keyed hash"),
        "{out}"
    );
    assert_eq!(json["anchors"][0]["status"], "differs", "{json}");
}

#[test]
fn recomputing_the_whole_trail_unkeyed_is_reported_against_the_anchor() {
    let env = exported();
    let mut all = events(&env);
    all[1].event.details["objects"] = serde_json::json!([]);
    for e in &mut all {
        e.key_id = None;
    }
    rechain_plain(&mut all, 1);
    overwrite(&env, &all);

    let (code, json, out) = verify(&env);
    assert_eq!(code, 1, "{out}");
    // A plain chain from the start holds together by itself ...
    assert!(json["broken"].is_null(), "{json}");
    // ... but not against the head the manifest anchored.
    let anchor = &json["anchors"][0];
    assert_eq!(anchor["status"], "differs", "{json}");
    assert_eq!(anchor["changed_from"], 1);
    assert_eq!(anchor["catalog_hash"], all[2].hash.as_str());
    assert!(out.contains("DOES NOT MATCH"), "{out}");
}

#[test]
fn a_catalog_from_before_keying_goes_on_keyed_and_verifies_both_parts() {
    let env = Env::new("");
    // Two events appended the way custodian did before the chain had a key.
    {
        let cat = SqliteCatalog::open(&catalog_path(&env)).unwrap();
        for name in ["old1", "old2"] {
            let policy = custodian::catalog::lifecycle::LifecyclePolicy::new(
                name,
                "",
                custodian::repository::record::ArtifactType::Transcript,
                None,
                "tester",
            );
            let event = custodian::audit::NewEvent {
                at: chrono::Utc::now(),
                kind: custodian::audit::AuditKind::LifecyclePolicyChanged,
                actor: "tester".into(),
                policy: Some(name.into()),
                run: None,
                tenant: None,
                conversation_id: None,
                details: serde_json::json!({}),
            };
            cat.create_lifecycle_policy(&policy, &event).unwrap();
        }
    }
    assert!(!env.path().join("audit.key").exists());
    env.conversation("acme", 1, "c1", &[("call.wav", b"one")]);
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let all = events(&env);
    assert_eq!(
        all.iter().map(|e| e.key_id.is_some()).collect::<Vec<_>>(),
        [false, false, true]
    );

    let (code, json, out) = verify(&env);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["keyed_from"], 3);
    assert!(
        out.contains("plain SHA-256 up to event 2, keyed (HMAC-SHA-256, key "),
        "{out}"
    );

    // Taking the keyed event back to a plain hash is not a way out of the key.
    let mut all = all;
    all[2].key_id = None;
    rechain_plain(&mut all, 3);
    overwrite(&env, &all);
    let (code, _, out) = verify(&env);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn a_keyed_catalog_without_its_key_file_is_a_clear_error_naming_the_file() {
    let env = exported();
    let key = env.path().join("audit.key");
    std::fs::rename(&key, env.path().join("elsewhere.key")).unwrap();
    env.conversation("acme", 1, "c4", &[("call.wav", b"four")]);

    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let message = text(&out);
    assert!(
        message.contains(&format!("audit key file {} does not exist", key.display()))
            && message.contains("restore that key file"),
        "{message}"
    );
    // No new key replaced it: a new key could not continue the chain.
    assert!(!key.exists());

    let out = env.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&key.display().to_string()),
        "{}",
        text(&out)
    );
    let out = env.run(&["audit", "init-key"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!key.exists());
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let env = exported();
    let key = env.path().join("audit.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.conversation("acme", 1, "c4", &[("call.wav", b"four")]);
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("is readable or writable by others (mode 644); `chmod 600` it"),
        "{}",
        text(&out)
    );
}
