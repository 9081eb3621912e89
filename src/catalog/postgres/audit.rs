//! The audit trail: one hash chain that writers in any number of processes extend, each
//! transaction holding the chain head's row lock while it appends.

use std::sync::Arc;

use super::pool::Tx;
use super::{Fallible, PostgresCatalog, micros};
use crate::audit::{AuditEvent, AuditHead, ChainKey, GENESIS, KeyError, KeySource, NewEvent};
use crate::catalog::rows;
use crate::catalog::{AuditQuery, CatalogError, Result, sql};

/// The head of the audit chain, locked by the transaction that read it, and the key the
/// transaction appends with.
pub(super) struct ChainHead {
    seq: i64,
    hash: String,
    key: Option<Arc<ChainKey>>,
}

/// Locks the chain head for the rest of the transaction. Every transaction that appends audit
/// events takes it before anything else, so they run one at a time and never deadlock. The
/// head row also says which key the chain is keyed with, so checking the key costs no round
/// trip.
pub(super) fn lock_chain(s: &mut Tx<'_, '_>, source: Option<&KeySource>) -> Fallible<ChainHead> {
    let row = s.query_one("SELECT seq, hash, key_id FROM audit_head FOR UPDATE", &[])?;
    let chain_id: Option<String> = row.try_get(2)?;
    let key = match (source, &chain_id) {
        (None, None) => None,
        (None, Some(key_id)) => {
            return Err(CatalogError::AuditKey(KeyError::NotConfigured {
                key_id: key_id.clone(),
            })
            .into());
        }
        (Some(source), chain_id) => Some(
            source
                .for_append(chain_id.as_deref())
                .map_err(CatalogError::AuditKey)?,
        ),
    };
    Ok(ChainHead {
        seq: row.try_get(0)?,
        hash: row.try_get(1)?,
        key,
    })
}

/// Appends `events` after `head` in one statement and moves the head.
pub(super) fn append_audit<'e>(
    s: &mut Tx<'_, '_>,
    head: &mut ChainHead,
    events: impl IntoIterator<Item = &'e NewEvent>,
) -> Fallible<()> {
    let mut seq = Vec::new();
    let mut at = Vec::new();
    let mut kind = Vec::new();
    let mut actor = Vec::new();
    let mut policy = Vec::new();
    let mut run = Vec::new();
    let mut tenant = Vec::new();
    let mut conversation = Vec::new();
    let mut details = Vec::new();
    let mut prev = Vec::new();
    let mut hash = Vec::new();
    let key_id = head.key.as_ref().map(|k| k.id().to_owned());
    for e in events {
        let n = head.seq + 1;
        let h = e.hash_with(head.key.as_deref(), n, &head.hash);
        seq.push(n);
        at.push(micros(e.at));
        kind.push(e.kind.as_str());
        actor.push(e.actor.as_str());
        policy.push(e.policy.as_deref());
        run.push(e.run);
        tenant.push(e.tenant.as_deref());
        conversation.push(e.conversation_id.as_deref());
        details.push(e.details.to_string());
        prev.push(std::mem::replace(&mut head.hash, h.clone()));
        hash.push(h);
        head.seq = n;
    }
    if seq.is_empty() {
        return Ok(());
    }
    s.execute(
        "INSERT INTO audit_events (seq, at, kind, actor, policy, run, tenant, conversation_id, details, prev_hash, hash, key_id) \
         SELECT *, $12::text FROM unnest($1::int8[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::int8[], \
         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])",
        &[
            &seq,
            &at,
            &kind,
            &actor,
            &policy,
            &run,
            &tenant,
            &conversation,
            &details,
            &prev,
            &hash,
            &key_id,
        ],
    )?;
    s.execute(
        "UPDATE audit_head SET seq = $1, hash = $2, key_id = $3",
        &[&head.seq, &head.hash, &key_id],
    )?;
    Ok(())
}

pub(super) fn audit_events(cat: &PostgresCatalog, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
    cat.autocommit(|s| {
        let found = s.query(
            "SELECT seq, at, kind, actor, policy, run, tenant, conversation_id, details, prev_hash, hash, key_id \
             FROM audit_events WHERE seq > $1 AND ($2::int8 IS NULL OR run = $2) \
             AND ($3::text IS NULL OR conversation_id = $3) AND ($4::text IS NULL OR kind = $4) \
             ORDER BY seq LIMIT $5",
            &[
                &q.after_seq,
                &q.run.map(|r| r.0),
                &q.conversation_id,
                &q.kind.map(|k| k.as_str()),
                &(q.limit as i64),
            ],
        )?;
        cat.rows(found, |r| rows::audit_event(r))
    })
}

pub(super) fn audit_head(cat: &PostgresCatalog) -> Result<AuditHead> {
    cat.autocommit(|s| {
        let head = match s.query_opt(sql::AUDIT_HEAD.postgres, &[])? {
            Some(r) => Some(rows::audit_head(&cat.columns(&r))?),
            None => None,
        };
        Ok(head.unwrap_or_else(|| AuditHead {
            seq: 0,
            hash: GENESIS.to_owned(),
        }))
    })
}

pub(super) fn append_audit_event(cat: &PostgresCatalog, event: &NewEvent) -> Result<()> {
    cat.transaction(|s| {
        let mut head = lock_chain(s, cat.audit_key.as_ref())?;
        append_audit(s, &mut head, [event])
    })
}

pub(super) fn newest_verification(cat: &PostgresCatalog) -> Result<Option<AuditEvent>> {
    cat.autocommit(|s| {
        let found = s.query(sql::NEWEST_VERIFICATION.postgres, &[])?;
        Ok(cat.rows(found, |r| rows::audit_event(r))?.pop())
    })
}
