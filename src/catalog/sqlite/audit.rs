//! The audit trail: the hash chain a write transaction extends, and reading it back.

use std::sync::Arc;

use rusqlite::{OptionalExtension, params};

use super::{Columns, SqliteCatalog};
use crate::audit::{AuditEvent, AuditHead, ChainKey, GENESIS, KeyError, KeySource, NewEvent};
use crate::catalog::rows;
use crate::catalog::{AuditQuery, Result, rfc3339_micros as ts, sql};

impl SqliteCatalog {
    /// The chain as a write transaction about to append finds it.
    pub(super) fn chain(&self) -> Chain<'_> {
        Chain {
            source: self.audit_key.as_ref(),
            head: None,
        }
    }
}

/// The audit chain as one write transaction extends it: the head is read at the first append
/// (the transaction then holds the write lock, so no other writer moves it) and kept here.
pub(super) struct Chain<'k> {
    source: Option<&'k KeySource>,
    head: Option<ChainHead>,
}

struct ChainHead {
    seq: i64,
    hash: String,
    key: Option<Arc<ChainKey>>,
}

/// A key error carried through rusqlite's error type out of a write closure; [`sql_err`]
/// turns it back into [`CatalogError::AuditKey`].
fn key_err(e: KeyError) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

impl Chain<'_> {
    /// The head, read once. Whether the chain is keyed, and with which key, is the last
    /// event's `key_id`: a keyed chain stays keyed, so no other event needs reading.
    fn head(&mut self, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<&mut ChainHead> {
        if let Some(head) = self.head.take() {
            return Ok(self.head.insert(head));
        }
        let (seq, hash, chain_id): (i64, String, Option<String>) = tx
            .prepare_cached("SELECT seq, hash, key_id FROM audit_events ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?
            .unwrap_or((0, GENESIS.to_string(), None));
        let key = match (self.source, chain_id) {
            (None, None) => None,
            (None, Some(key_id)) => return Err(key_err(KeyError::NotConfigured { key_id })),
            (Some(source), chain_id) => {
                Some(source.for_append(chain_id.as_deref()).map_err(key_err)?)
            }
        };
        Ok(self.head.insert(ChainHead { seq, hash, key }))
    }

    pub(super) fn append(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        e: &NewEvent,
    ) -> rusqlite::Result<()> {
        let head = self.head(tx)?;
        let seq = head.seq + 1;
        let hash = e.hash_with(head.key.as_deref(), seq, &head.hash);
        tx.prepare_cached(
            "INSERT INTO audit_events (seq, at, kind, actor, policy, run, tenant, conversation_id, details, prev_hash, hash, key_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(params![
            seq,
            ts(e.at),
            e.kind.as_str(),
            e.actor,
            e.policy,
            e.run,
            e.tenant,
            e.conversation_id,
            e.details.to_string(),
            head.hash,
            hash,
            head.key.as_ref().map(|k| k.id())
        ])?;
        head.seq = seq;
        head.hash = hash;
        Ok(())
    }
}

pub(super) fn audit_events(cat: &SqliteCatalog, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
    // A run's events are found through its index: `?2 IS NULL OR run = ?2` would have the
    // planner walk the whole trail.
    let run = if q.run.is_some() {
        "run = ?2"
    } else {
        "?2 IS NULL"
    };
    let sql = format!(
        "SELECT seq, at, kind, actor, policy, run, tenant, conversation_id, details, prev_hash, hash, key_id \
         FROM audit_events WHERE seq > ?1 AND {run} \
         AND (?3 IS NULL OR conversation_id = ?3) AND (?5 IS NULL OR kind = ?5) \
         ORDER BY seq LIMIT ?4"
    );
    cat.with_reader(|conn| {
        cat.rows(
            conn,
            &sql,
            params![
                q.after_seq,
                q.run.map(|r| r.0),
                q.conversation_id,
                q.limit as i64,
                q.kind.map(|k| k.as_str())
            ],
            |r| rows::audit_event(r),
        )
    })
}

pub(super) fn audit_head(cat: &SqliteCatalog) -> Result<AuditHead> {
    cat.with_reader(|conn| {
        let head = conn
            .prepare_cached(sql::AUDIT_HEAD.sqlite)
            .and_then(|mut s| {
                s.query_row([], |row| Ok(rows::audit_head(&Columns { row, cat })))
                    .optional()
            })
            .map_err(|e| cat.err(e))?
            .transpose()?;
        Ok(head.unwrap_or_else(|| AuditHead {
            seq: 0,
            hash: GENESIS.to_owned(),
        }))
    })
}

pub(super) fn append_audit_event(cat: &SqliteCatalog, event: &NewEvent) -> Result<()> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    cat.chain().append(&tx, event).map_err(|e| cat.err(e))?;
    tx.commit().map_err(|e| cat.err(e))
}

pub(super) fn newest_verification(cat: &SqliteCatalog) -> Result<Option<AuditEvent>> {
    cat.with_reader(|conn| {
        Ok(cat
            .rows(conn, sql::NEWEST_VERIFICATION.sqlite, [], |r| {
                rows::audit_event(r)
            })?
            .pop())
    })
}
