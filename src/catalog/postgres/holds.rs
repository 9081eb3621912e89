//! Legal holds: matters, the holds placed under them, and what they cover.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use super::audit::{append_audit, lock_chain};
use super::pool::Session;
use super::{Fallible, PostgresCatalog, micros, sql_params};
use crate::audit::NewEvent;
use crate::catalog::holds::{
    self, ConversationRef, Hold, HoldScope, Matter, MatterState, Standing,
};
use crate::catalog::rows::{self, Fields};
use crate::catalog::{Result, sql};
use crate::filter::Dialect;

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
) -> Result<u64> {
    cat.transaction(|s| {
        let mut head = lock_chain(s, cat.audit_key.as_ref())?;
        if s.query_opt(sql::MATTER_EXISTS.postgres, &[&matter])?
            .is_none()
        {
            return Err(holds::unknown_matter(matter).into());
        }
        let released = s.execute(sql::RELEASE_HOLDS.postgres, &[&micros(at), &by, &matter])?;
        if released == 0 {
            return Err(holds::nothing_to_release(matter).into());
        }
        append_audit(s, &mut head, [event])?;
        Ok(released)
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
