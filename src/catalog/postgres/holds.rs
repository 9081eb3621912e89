//! Legal holds: matters, the holds placed under them, and what they cover.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use super::audit::{append_audit, lock_chain};
use super::pool::Session;
use super::{Fallible, PostgresCatalog, micros, sql_params};
use crate::audit::NewEvent;
use crate::catalog::holds::{
    self, ConversationRef, Hold, HoldScope, HoldSync, Matter, MatterState, Standing,
};
use crate::catalog::rows::{self, Fields};
use crate::catalog::{Result, sql};
use crate::filter::{Dialect, Filter};

pub(super) fn create_matter(cat: &PostgresCatalog, m: &Matter, event: &NewEvent) -> Result<()> {
    cat.transaction(|s| {
        let mut head = lock_chain(s, cat.audit_key.as_ref())?;
        if s.query_opt(sql::MATTER_EXISTS.postgres, &[&m.name])?
            .is_some()
        {
            return Err(holds::matter_exists(&m.name).into());
        }
        s.execute(
            sql::INSERT_MATTER.postgres,
            &[
                &m.name,
                &m.description,
                &micros(m.created_at),
                &m.created_by,
            ],
        )?;
        append_audit(s, &mut head, [event])
    })
}

pub(super) fn place_hold(
    cat: &PostgresCatalog,
    matter: &str,
    scope: &HoldScope,
    at: DateTime<Utc>,
    by: &str,
    event: &NewEvent,
    sync_targets: &[String],
) -> Result<i64> {
    cat.transaction(|s| {
        let mut head = lock_chain(s, cat.audit_key.as_ref())?;
        if s.query_opt(sql::MATTER_EXISTS.postgres, &[&matter])?
            .is_none()
        {
            return Err(holds::unknown_matter(matter).into());
        }
        let (criteria, tenants, ids) = match scope {
            HoldScope::Standing(c) => (Some(holds::criteria_text(c)), Vec::new(), Vec::new()),
            HoldScope::Conversations(list) => {
                let tenants: Vec<&str> = list.iter().map(|c| c.tenant.as_str()).collect();
                let ids: Vec<&str> = list.iter().map(|c| c.id.as_str()).collect();
                let known: HashSet<ConversationRef> = s
                    .query(
                        "SELECT c.tenant, c.id FROM unnest($1::text[], $2::text[]) AS w (tenant, id) \
                         JOIN conversations c ON c.tenant = w.tenant AND c.id = w.id",
                        &[&tenants, &ids],
                    )?
                    .iter()
                    .map(|r| {
                        Ok(ConversationRef {
                            tenant: r.try_get(0)?,
                            id: r.try_get(1)?,
                        })
                    })
                    .collect::<Fallible<_>>()?;
                let missing: Vec<ConversationRef> = list
                    .iter()
                    .filter(|c| !known.contains(*c))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    return Err(holds::unknown_conversations(&missing).into());
                }
                (None, tenants, ids)
            }
        };
        let id: i64 = s
            .query_one(
                sql::INSERT_HOLD.postgres,
                &[&matter, &criteria, &micros(at), &by],
            )?
            .try_get(0)?;
        if !tenants.is_empty() {
            s.execute(
                "INSERT INTO hold_conversations (hold, tenant, conversation_id) \
                 SELECT $1, tenant, id FROM unnest($2::text[], $3::text[]) AS w (tenant, id) \
                 ON CONFLICT DO NOTHING",
                &[&id, &tenants, &ids],
            )?;
        }
        let standing = match scope {
            HoldScope::Standing(c) => Some(holds::standing(matter.to_owned(), c).filter),
            HoldScope::Conversations(_) => None,
        };
        queue_sync(s, id, standing.as_ref(), sync_targets)?;
        append_audit(s, &mut head, [&holds::placed_event(event, id)])?;
        Ok(id)
    })
}

pub(super) fn release_holds(
    cat: &PostgresCatalog,
    matter: &str,
    at: DateTime<Utc>,
    by: &str,
    event: &NewEvent,
    sync_targets: &[String],
) -> Result<u64> {
    cat.transaction(|s| {
        let mut head = lock_chain(s, cat.audit_key.as_ref())?;
        if s.query_opt(sql::MATTER_EXISTS.postgres, &[&matter])?
            .is_none()
        {
            return Err(holds::unknown_matter(matter).into());
        }
        let active = cat.rows(s.query(sql::ACTIVE_HOLDS_OF.postgres, &[&matter])?, |r| {
            Ok((r.int(0)?, rows::opt_criteria(r, 1)?))
        })?;
        for (id, criteria) in &active {
            let standing = criteria
                .as_ref()
                .map(|c| holds::standing(matter.to_owned(), c).filter);
            queue_sync(s, *id, standing.as_ref(), sync_targets)?;
        }
        let released = s.execute(sql::RELEASE_HOLDS.postgres, &[&micros(at), &by, &matter])?;
        if released == 0 {
            return Err(holds::nothing_to_release(matter).into());
        }
        append_audit(s, &mut head, [event])?;
        Ok(released)
    })
}

/// Queues a legal-hold sync for the exported conversations hold `id` covers, in the
/// transaction of `s` (docs/operations.md, "WORM exports").
fn queue_sync<C: GenericClient>(
    s: &mut Session<'_, C>,
    id: i64,
    standing: Option<&Filter>,
    sync_targets: &[String],
) -> Fallible<()> {
    if sync_targets.is_empty() {
        return Ok(());
    }
    let (text, params) = sql::queue_hold_sync(Dialect::Postgres, id, standing, sync_targets);
    s.execute(&text, &sql_params(&params))?;
    Ok(())
}

pub(super) fn hold_syncs(
    cat: &PostgresCatalog,
    after: Option<&ConversationRef>,
    limit: usize,
) -> Result<Vec<HoldSync>> {
    cat.autocommit(|s| {
        let (tenant, id) = after.map_or(("", ""), |c| (c.tenant.as_str(), c.id.as_str()));
        let queued = cat.rows(
            s.query(sql::HOLD_SYNCS.postgres, &[&tenant, &id, &(limit as i64)])?,
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
        let held = holding(cat, s, &pks)?;
        // The page's objects in one statement, not one a conversation (a round trip each).
        let tenants: Vec<&str> = queued.iter().map(|q| q.0.tenant.as_str()).collect();
        let ids: Vec<&str> = queued.iter().map(|q| q.0.id.as_str()).collect();
        let mut objects: HashMap<(String, String), Vec<(String, String)>> = HashMap::new();
        for (tenant, id, object) in cat.rows(
            s.query(
                "SELECT k.tenant, k.conversation_id, k.target, k.key FROM object_keys k \
                 JOIN unnest($1::text[], $2::text[]) AS u(tenant, id) \
                 ON k.tenant = u.tenant AND k.conversation_id = u.id \
                 ORDER BY k.target, k.key",
                &[&tenants, &ids],
            )?,
            |r| Ok((r.text(0)?, r.text(1)?, (r.text(2)?, r.text(3)?))),
        )? {
            objects.entry((tenant, id)).or_default().push(object);
        }
        Ok(queued
            .into_iter()
            .map(|(conversation, generation, pk, flag)| HoldSync {
                held: flag || pk.is_some_and(|pk| held.contains_key(&pk)),
                objects: objects
                    .remove(&(conversation.tenant.clone(), conversation.id.clone()))
                    .unwrap_or_default(),
                conversation,
                generation,
            })
            .collect())
    })
}

pub(super) fn finish_hold_syncs(
    cat: &PostgresCatalog,
    done: &[HoldSync],
    events: &[NewEvent],
) -> Result<()> {
    cat.transaction(|s| {
        let mut head = lock_chain(s, cat.audit_key.as_ref())?;
        for d in done {
            s.execute(
                sql::FINISH_HOLD_SYNC.postgres,
                &[&d.conversation.tenant, &d.conversation.id, &d.generation],
            )?;
        }
        append_audit(s, &mut head, events)
    })
}

/// Every active standing hold, resolved.
pub(super) fn standing<C: GenericClient>(
    cat: &PostgresCatalog,
    s: &mut Session<'_, C>,
) -> Fallible<Vec<Standing>> {
    cat.rows(s.query(sql::ACTIVE_STANDING.postgres, &[])?, |r| {
        Ok(holds::standing(r.text(0)?, &rows::criteria(r, 1)?))
    })
}

pub(super) fn matters(cat: &PostgresCatalog, only: Option<&str>) -> Result<Vec<MatterState>> {
    cat.autocommit(|s| {
        let mut matters = cat.rows(s.query(sql::MATTERS.postgres, &[])?, |r| rows::matter(r))?;
        matters.retain(|m| only.is_none_or(|name| m.name == name));
        let mut all: Vec<Hold> = cat.rows(s.query(sql::HOLDS.postgres, &[])?, |r| rows::hold(r))?;
        holds::attach_conversations(
            &mut all,
            cat.rows(s.query(sql::HOLD_CONVERSATIONS.postgres, &[])?, |r| {
                rows::hold_conversation(r)
            })?,
        );
        let standing = standing(cat, s)?;
        let mut out = Vec::with_capacity(matters.len());
        for matter in matters {
            let mut counts = [0u64; 2];
            for (n, (text, params)) in counts.iter_mut().zip(sql::matter_counts(
                Dialect::Postgres,
                &matter.name,
                &standing,
            )) {
                let found: i64 = s.query_one(&text, &sql_params(&params))?.try_get(0)?;
                *n = cat.unsigned("count", found)?;
            }
            out.push(MatterState {
                holds: all
                    .iter()
                    .filter(|h| h.matter == matter.name)
                    .cloned()
                    .collect(),
                matter,
                conversations: counts[0],
                artifacts: counts[1],
            });
        }
        Ok(out)
    })
}

pub(super) fn holding_matters(
    cat: &PostgresCatalog,
    pks: &[i64],
) -> Result<HashMap<i64, Vec<String>>> {
    cat.autocommit(|s| holding(cat, s, pks))
}

/// What [`holding_matters`] returns, in session `s`.
pub(super) fn holding<C: GenericClient>(
    cat: &PostgresCatalog,
    s: &mut Session<'_, C>,
    pks: &[i64],
) -> Fallible<HashMap<i64, Vec<String>>> {
    if pks.is_empty() {
        return Ok(HashMap::new());
    }
    let standing = standing(cat, s)?;
    let mut params = Vec::new();
    let text = sql::holding(Dialect::Postgres, pks, &standing, &mut params);
    let found = cat.rows(s.query(&text, &sql_params(&params))?, |r| {
        Ok((r.int(0)?, r.text(1)?))
    })?;
    Ok(holds::by_conversation(found))
}
