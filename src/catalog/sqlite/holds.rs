//! Legal holds: matters, the holds placed under them, and what they cover.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::{SqliteCatalog, to_sql};
use crate::audit::NewEvent;
use crate::catalog::holds::{
    self, ConversationRef, Hold, HoldScope, HoldSync, Matter, MatterState, Standing,
};
use crate::catalog::rows::{self, Fields};
use crate::catalog::{Result, rfc3339_micros as ts, sql};
use crate::filter::{Dialect, Filter};

pub(super) fn create_matter(cat: &SqliteCatalog, m: &Matter, event: &NewEvent) -> Result<()> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    if exists(cat, &tx, &m.name)? {
        return Err(holds::matter_exists(&m.name));
    }
    tx.execute(
        sql::INSERT_MATTER.sqlite,
        params![m.name, m.description, ts(m.created_at), m.created_by],
    )
    .map_err(|e| cat.err(e))?;
    cat.chain().append(&tx, event).map_err(|e| cat.err(e))?;
    tx.commit().map_err(|e| cat.err(e))
}

fn exists(cat: &SqliteCatalog, conn: &Connection, matter: &str) -> Result<bool> {
    conn.query_row(sql::MATTER_EXISTS.sqlite, [matter], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
        .map_err(|e| cat.err(e))
}

pub(super) fn place_hold(
    cat: &SqliteCatalog,
    matter: &str,
    scope: &HoldScope,
    at: DateTime<Utc>,
    by: &str,
    event: &NewEvent,
    sync_targets: &[String],
) -> Result<i64> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    if !exists(cat, &tx, matter)? {
        return Err(holds::unknown_matter(matter));
    }
    let criteria = match scope {
        HoldScope::Standing(c) => Some(holds::criteria_text(c)),
        HoldScope::Conversations(list) => {
            let mut known = HashSet::new();
            {
                let mut probe = tx
                    .prepare_cached("SELECT 1 FROM conversations WHERE tenant = ? AND id = ?")
                    .map_err(|e| cat.err(e))?;
                for c in list {
                    if probe
                        .exists(params![c.tenant, c.id])
                        .map_err(|e| cat.err(e))?
                    {
                        known.insert(c.clone());
                    }
                }
            }
            let missing: Vec<ConversationRef> = list
                .iter()
                .filter(|c| !known.contains(*c))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(holds::unknown_conversations(&missing));
            }
            None
        }
    };
    let id: i64 = tx
        .query_row(
            sql::INSERT_HOLD.sqlite,
            params![matter, criteria, ts(at), by],
            |r| r.get(0),
        )
        .map_err(|e| cat.err(e))?;
    if let HoldScope::Conversations(list) = scope {
        let mut ins = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO hold_conversations (hold, tenant, conversation_id) \
                 VALUES (?, ?, ?)",
            )
            .map_err(|e| cat.err(e))?;
        for c in list {
            ins.execute(params![id, c.tenant, c.id])
                .map_err(|e| cat.err(e))?;
        }
    }
    let standing = match scope {
        HoldScope::Standing(c) => Some(holds::standing(matter.to_owned(), c).filter),
        HoldScope::Conversations(_) => None,
    };
    queue_sync(cat, &tx, id, standing.as_ref(), sync_targets)?;
    cat.chain()
        .append(&tx, &holds::placed_event(event, id))
        .map_err(|e| cat.err(e))?;
    tx.commit().map_err(|e| cat.err(e))?;
    Ok(id)
}

pub(super) fn release_holds(
    cat: &SqliteCatalog,
    matter: &str,
    at: DateTime<Utc>,
    by: &str,
    event: &NewEvent,
    sync_targets: &[String],
) -> Result<u64> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    if !exists(cat, &tx, matter)? {
        return Err(holds::unknown_matter(matter));
    }
    let active = cat.rows(&tx, sql::ACTIVE_HOLDS_OF.sqlite, [matter], |r| {
        Ok((r.int(0)?, rows::opt_criteria(r, 1)?))
    })?;
    for (id, criteria) in &active {
        let standing = criteria
            .as_ref()
            .map(|c| holds::standing(matter.to_owned(), c).filter);
        queue_sync(cat, &tx, *id, standing.as_ref(), sync_targets)?;
    }
    let released = tx
        .execute(sql::RELEASE_HOLDS.sqlite, params![ts(at), by, matter])
        .map_err(|e| cat.err(e))?;
    if released == 0 {
        return Err(holds::nothing_to_release(matter));
    }
    cat.chain().append(&tx, event).map_err(|e| cat.err(e))?;
    tx.commit().map_err(|e| cat.err(e))?;
    Ok(released as u64)
}

/// Queues a legal-hold sync for the exported conversations hold `id` covers, in `conn`'s
/// transaction (docs/operations.md, "WORM exports").
fn queue_sync(
    cat: &SqliteCatalog,
    conn: &Connection,
    id: i64,
    standing: Option<&Filter>,
    sync_targets: &[String],
) -> Result<()> {
    if sync_targets.is_empty() {
        return Ok(());
    }
    let (text, params) = sql::queue_hold_sync(Dialect::Sqlite, id, standing, sync_targets);
    conn.execute(&text, params_from_iter(params.iter().map(to_sql)))
        .map(|_| ())
        .map_err(|e| cat.err(e))
}

pub(super) fn hold_syncs(
    cat: &SqliteCatalog,
    after: Option<&ConversationRef>,
    limit: usize,
) -> Result<Vec<HoldSync>> {
    cat.with_reader(|conn| {
        let (tenant, id) = after.map_or(("", ""), |c| (c.tenant.as_str(), c.id.as_str()));
        let queued = cat.rows(
            conn,
            sql::HOLD_SYNCS.sqlite,
            params![tenant, id, limit as i64],
            |r| {
                Ok((
                    ConversationRef {
                        tenant: r.text(0)?,
                        id: r.text(1)?,
                    },
                    r.int(2)?,
                    r.opt_int(3)?,
                    r.flag(4)?,
                ))
            },
        )?;
        let pks: Vec<i64> = queued.iter().filter_map(|q| q.2).collect();
        let held = holding(cat, conn, &pks)?;
        queued
            .into_iter()
            .map(|(conversation, generation, pk, flag)| {
                let objects = cat.rows(
                    conn,
                    sql::CONVERSATION_OBJECTS.sqlite,
                    params![conversation.tenant, conversation.id],
                    |r| Ok((r.text(0)?, r.text(1)?)),
                )?;
                Ok(HoldSync {
                    held: flag || pk.is_some_and(|pk| held.contains_key(&pk)),
                    conversation,
                    generation,
                    objects,
                })
            })
            .collect()
    })
}

pub(super) fn finish_hold_syncs(
    cat: &SqliteCatalog,
    done: &[HoldSync],
    events: &[NewEvent],
) -> Result<()> {
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    {
        let mut delete = tx
            .prepare_cached(sql::FINISH_HOLD_SYNC.sqlite)
            .map_err(|e| cat.err(e))?;
        for d in done {
            delete
                .execute(params![
                    d.conversation.tenant,
                    d.conversation.id,
                    d.generation
                ])
                .map_err(|e| cat.err(e))?;
        }
    }
    for e in events {
        cat.chain().append(&tx, e).map_err(|e| cat.err(e))?;
    }
    tx.commit().map_err(|e| cat.err(e))
}

/// Every active standing hold, resolved.
pub(super) fn standing(cat: &SqliteCatalog, conn: &Connection) -> Result<Vec<Standing>> {
    cat.rows(conn, sql::ACTIVE_STANDING.sqlite, [], |r| {
        Ok(holds::standing(r.text(0)?, &rows::criteria(r, 1)?))
    })
}

pub(super) fn matters(cat: &SqliteCatalog, only: Option<&str>) -> Result<Vec<MatterState>> {
    cat.with_reader(|conn| {
        let mut matters = cat.rows(conn, sql::MATTERS.sqlite, [], |r| rows::matter(r))?;
        matters.retain(|m| only.is_none_or(|name| m.name == name));
        let mut all: Vec<Hold> = cat.rows(conn, sql::HOLDS.sqlite, [], |r| rows::hold(r))?;
        holds::attach_conversations(
            &mut all,
            cat.rows(conn, sql::HOLD_CONVERSATIONS.sqlite, [], |r| {
                rows::hold_conversation(r)
            })?,
        );
        let standing = standing(cat, conn)?;
        matters
            .into_iter()
            .map(|matter| {
                let [conversations, artifacts] =
                    sql::matter_counts(Dialect::Sqlite, &matter.name, &standing).map(
                        |(text, params)| {
                            conn.prepare_cached(&text)
                                .and_then(|mut s| {
                                    s.query_row(params_from_iter(params.iter().map(to_sql)), |r| {
                                        r.get::<_, i64>(0)
                                    })
                                })
                                .map(|n| n.max(0) as u64)
                                .map_err(|e| cat.err(e))
                        },
                    );
                Ok(MatterState {
                    holds: all
                        .iter()
                        .filter(|h| h.matter == matter.name)
                        .cloned()
                        .collect(),
                    matter,
                    conversations: conversations?,
                    artifacts: artifacts?,
                })
            })
            .collect()
    })
}

pub(super) fn holding_matters(
    cat: &SqliteCatalog,
    pks: &[i64],
) -> Result<HashMap<i64, Vec<String>>> {
    cat.with_reader(|conn| holding(cat, conn, pks))
}

/// What [`holding_matters`] returns, on `conn`.
pub(super) fn holding(
    cat: &SqliteCatalog,
    conn: &Connection,
    pks: &[i64],
) -> Result<HashMap<i64, Vec<String>>> {
    if pks.is_empty() {
        return Ok(HashMap::new());
    }
    let standing = standing(cat, conn)?;
    let mut params = Vec::new();
    let text = sql::holding(Dialect::Sqlite, pks, &standing, &mut params);
    let found = cat.rows(
        conn,
        &text,
        params_from_iter(params.iter().map(to_sql)),
        |r| Ok((r.int(0)?, r.text(1)?)),
    )?;
    Ok(holds::by_conversation(found))
}
