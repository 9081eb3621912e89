//! The index: what the repository holds, written one record at a time.

use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteCatalog;
use crate::catalog::rows::{self, Fields};
use crate::catalog::{Fingerprint, IndexChange, Result, duplicate_id, sql, unstorable};
use crate::repository::record::Conversation;

pub(super) fn fingerprints_under(
    cat: &SqliteCatalog,
    rel_prefix: &str,
) -> Result<Vec<(String, Fingerprint)>> {
    let lo = format!("{rel_prefix}/");
    let hi = format!("{rel_prefix}0");
    cat.with_reader(|conn| {
        cat.rows(conn, sql::FINGERPRINTS_UNDER.sqlite, params![lo, hi], |r| {
            rows::dir_fingerprint(r)
        })
    })
}

pub(super) fn indexed_days(cat: &SqliteCatalog) -> Result<Vec<String>> {
    cat.with_reader(|conn| cat.rows(conn, sql::INDEXED_DAYS.sqlite, [], |r| r.text(0)))
}

pub(super) fn conversation_count(cat: &SqliteCatalog) -> Result<u64> {
    cat.with_reader(|conn| {
        conn.query_row(sql::CONVERSATION_COUNT.sqlite, [], |r| r.get(0))
            .map_err(|e| cat.err(e))
    })
}

pub(super) fn apply_index(
    cat: &SqliteCatalog,
    changes: &[IndexChange],
) -> Result<Vec<Option<String>>> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let mut tx = conn.transaction().map_err(|e| cat.err(e))?;
    let mut outcomes = Vec::with_capacity(changes.len());
    for change in changes {
        let (rel_dir, fingerprint, conversation) = match change {
            IndexChange::Remove { rel_dir } => {
                tx.prepare_cached("DELETE FROM conversations WHERE rel_dir = ?")
                    .and_then(|mut s| s.execute([rel_dir]))
                    .map_err(|e| cat.err(e))?;
                outcomes.push(None);
                continue;
            }
            IndexChange::Upsert {
                rel_dir,
                fingerprint,
                conversation,
            } => (rel_dir, *fingerprint, conversation),
        };
        if let Some(reason) = unstorable(conversation, fingerprint) {
            outcomes.push(Some(reason));
            continue;
        }
        // Each record in a savepoint of its own: one that cannot be stored leaves nothing
        // half-written behind and fails alone.
        let sp = tx.savepoint().map_err(|e| cat.err(e))?;
        let written = upsert(&sp, rel_dir, fingerprint, conversation);
        let failed = match written {
            Ok(()) => {
                sp.commit().map_err(|e| cat.err(e))?;
                outcomes.push(None);
                continue;
            }
            Err(e) => e,
        };
        drop(sp);
        outcomes.push(Some(match failed {
            rusqlite::Error::SqliteFailure(e, _)
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let other: Option<String> = tx
                    .query_row(
                        "SELECT rel_dir FROM conversations WHERE tenant = ? AND id = ?",
                        params![conversation.tenant, conversation.id],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| cat.err(e))?;
                duplicate_id(conversation, other.as_deref())
            }
            e @ (rusqlite::Error::ToSqlConversionFailure(_)
            | rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error {
                    code: rusqlite::ErrorCode::TooBig,
                    ..
                },
                _,
            )) => format!("the catalog cannot store this record: {e}"),
            e => return Err(cat.err(e)),
        }));
    }
    tx.commit().map_err(|e| cat.err(e))?;
    Ok(outcomes)
}

/// Writes one record: its conversation row (keeping a confidential flag a policy set) and
/// its participants and artifacts.
fn upsert(
    tx: &Connection,
    rel_dir: &str,
    fp: Fingerprint,
    c: &Conversation,
) -> rusqlite::Result<()> {
    let start = c.start.to_rfc3339();
    let end = c.end.to_rfc3339();
    let values = params![
        rel_dir,
        fp.mtime_ns,
        fp.size,
        c.tenant,
        c.id,
        c.kind.as_str(),
        c.source_platform,
        c.direction.as_str(),
        start,
        end,
        c.start.timestamp_millis(),
        c.duration_ms(),
        c.flags.confidential,
        c.flags.cdr_only,
        c.flags.imported,
        c.flags.legal_hold,
        c.channel,
        rel_dir.rsplit_once('/').map_or("", |(day, _)| day),
    ];
    // Most upserts of a first index are new rows: try a plain insert, and only for a record
    // that changed fall back to updating it and replacing its children.
    let inserted: Option<i64> = tx
        .prepare_cached(
            "INSERT INTO conversations (rel_dir, json_mtime_ns, json_size, tenant, id, kind, \
             source_platform, direction, start_text, end_text, start_ms, duration_ms, confidential, \
             cdr_only, imported, legal_hold, channel, day) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
             COALESCE((SELECT value FROM confidential_flags WHERE tenant = ?4 AND conversation_id = ?5), ?13), \
             ?14, ?15, ?16, ?17, ?18) \
             ON CONFLICT (rel_dir) DO NOTHING RETURNING pk",
        )?
        .query_row(values, |r| r.get(0))
        .optional()?;
    let pk = match inserted {
        Some(pk) => pk,
        None => {
            // A recorder that changed the record's legal_hold flag: its exported objects'
            // legal-hold status follows through the sync queue (docs/operations.md, "WORM
            // exports"), queued with the change.
            tx.prepare_cached(
                "INSERT INTO hold_syncs (tenant, conversation_id) SELECT c.tenant, c.id \
                 FROM conversations c WHERE c.rel_dir = ?1 AND c.legal_hold <> ?2 \
                 AND EXISTS (SELECT 1 FROM object_keys o \
                   WHERE o.tenant = c.tenant AND o.conversation_id = c.id) \
                 ON CONFLICT (tenant, conversation_id) \
                 DO UPDATE SET generation = hold_syncs.generation + 1",
            )?
            .execute(params![rel_dir, c.flags.legal_hold])?;
            let pk: i64 = tx
                .prepare_cached(
                    "UPDATE conversations SET json_mtime_ns = ?2, json_size = ?3, tenant = ?4, \
                     id = ?5, kind = ?6, source_platform = ?7, direction = ?8, start_text = ?9, \
                     end_text = ?10, start_ms = ?11, duration_ms = ?12, \
                     confidential = COALESCE((SELECT value FROM confidential_flags \
                       WHERE tenant = ?4 AND conversation_id = ?5), ?13), \
                     cdr_only = ?14, imported = ?15, legal_hold = ?16, channel = ?17, day = ?18 \
                     WHERE rel_dir = ?1 RETURNING pk",
                )?
                .query_row(values, |r| r.get(0))?;
            tx.prepare_cached("DELETE FROM participants WHERE conversation = ?")?
                .execute([pk])?;
            tx.prepare_cached("DELETE FROM artifacts WHERE conversation = ?")?
                .execute([pk])?;
            pk
        }
    };
    let mut ins = tx.prepare_cached(
        "INSERT INTO participants (conversation, ordinal, user_name, extension, role, start_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, (SELECT start_ms FROM conversations WHERE pk = ?1))",
    )?;
    for (i, p) in c.participants.iter().enumerate() {
        ins.execute(params![pk, i, p.user, p.extension, p.role.as_str()])?;
    }
    let mut ins = tx.prepare_cached(
        "INSERT INTO artifacts (conversation, ordinal, file, kind, audio_type, extension, size, sha256, key_id) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    for (i, a) in c.artifacts.iter().enumerate() {
        ins.execute(params![
            pk,
            i,
            a.file,
            a.kind.as_str(),
            a.audio_type.map(|t| t.as_str()),
            a.extension(),
            a.size,
            a.sha256,
            a.encryption.as_ref().map(|e| e.key_id.as_str()),
        ])?;
    }
    Ok(())
}
