//! Accounts, their API tokens and their sessions.

use super::*;
use crate::audit::{AuditKind, NewEvent};
use crate::catalog::accounts::{Account, NewSession};

fn alice() -> Account {
    Account {
        name: "alice".into(),
        groups: vec!["compliance".into(), "ops \"x\"".into()],
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_at: 1_700_000_000,
    }
}

/// The audit event of a change of kind `kind` to alice.
fn change(kind: AuditKind) -> NewEvent {
    NewEvent {
        at: chrono::Utc::now(),
        kind,
        actor: "root".into(),
        policy: None,
        run: None,
        tenant: None,
        conversation_id: None,
        details: serde_json::json!({"account": "alice"}),
    }
}

/// The kinds of the trail's events, oldest first.
fn kinds(cat: &dyn Catalog) -> Vec<&'static str> {
    cat.audit_events(&crate::catalog::AuditQuery {
        run: None,
        conversation_id: None,
        kind: None,
        after_seq: 0,
        limit: 100,
    })
    .unwrap()
    .iter()
    .map(|e| e.event.kind.as_str())
    .collect()
}

pub(crate) fn accounts_tokens_and_sessions(cat: &dyn Catalog) {
    let a = alice();
    let added = change(AuditKind::AccountAdded);
    let issued = change(AuditKind::AccountTokenIssued);
    let removed = change(AuditKind::AccountRemoved);
    cat.add_account(&a, &added).unwrap();
    refused(cat.add_account(&a, &added), "already exists");
    assert_eq!(cat.account("alice").unwrap(), Some(a.clone()));
    assert_eq!(cat.account("bob").unwrap(), None);
    assert_eq!(cat.accounts().unwrap(), vec![a.clone()]);

    cat.add_token("alice", "t1", 5, &issued).unwrap();
    refused(
        cat.add_token("bob", "t2", 5, &issued),
        "no account named `bob`",
    );
    // Each change left its event, and each refusal none.
    assert_eq!(kinds(cat), ["account_added", "account_token_issued"]);
    assert_eq!(cat.token_account("t1").unwrap(), Some(a.clone()));
    assert_eq!(cat.token_account("t2").unwrap(), None);

    let session = |id: &str, expires_at| NewSession {
        id_hash: id.into(),
        account: "alice".into(),
        csrf: format!("csrf-{id}"),
        expires_at,
    };
    cat.create_session(&session("s1", 100), 50).unwrap();
    let found = cat.session("s1", 60).unwrap().expect("live session");
    assert_eq!((found.account, found.csrf.as_str()), (a.clone(), "csrf-s1"));
    assert!(cat.session("s1", 101).unwrap().is_none(), "expired");
    // A new session drops the expired ones.
    cat.create_session(&session("s2", 300), 200).unwrap();
    assert!(cat.session("s1", 0).unwrap().is_none());
    cat.end_session("s2").unwrap();
    assert!(cat.session("s2", 200).unwrap().is_none());

    // Removing the account ends its sessions and revokes its tokens.
    cat.create_session(&session("s3", 300), 200).unwrap();
    assert!(cat.remove_account("alice", &removed).unwrap());
    assert!(!cat.remove_account("alice", &removed).unwrap());
    assert_eq!(
        kinds(cat),
        ["account_added", "account_token_issued", "account_removed"]
    );
    assert!(cat.session("s3", 200).unwrap().is_none());
    assert!(cat.token_account("t1").unwrap().is_none());
    // The name can be taken again, with nothing of the old account's.
    cat.add_account(&a, &added).unwrap();
    assert!(cat.token_account("t1").unwrap().is_none());
}
