//! Selections: what a policy's filter picks, page by page, and confidential-flag pages.

use std::collections::HashMap;

use chrono::Utc;
use postgres::Client;

use super::audit::{append_audit, lock_chain};
use super::pool::Session;
use super::runs::{Handled, remember};
use super::{Columns, Fallible, PostgresCatalog, micros, sql_params};
use crate::catalog::rows::{self, Fields};
use crate::catalog::{ConfidentialPage, Exclude, Result, Selected, flag_event, sql};
use crate::filter::{Dialect, Filter};

pub(super) fn count_selection(
    cat: &PostgresCatalog,
    filter: &Filter,
    exclude: &Exclude,
) -> Result<u64> {
    let (sql, params) = sql::selection(
        Dialect::Postgres,
        sql::COUNT_SELECTION.postgres,
        filter,
        exclude,
        i64::MIN,
        None,
    );
    cat.autocommit(|s| {
        let n: i64 = s.query_one(&sql, &sql_params(&params))?.try_get(0)?;
        cat.unsigned("count", n)
    })
}

pub(super) fn select_page(
    cat: &PostgresCatalog,
    filter: &Filter,
    exclude: &Exclude,
    after_rowid: i64,
    limit: usize,
) -> Result<Vec<Selected>> {
    let (sql, params) = sql::selection(
        Dialect::Postgres,
        sql::SELECT_CONVERSATION.postgres,
        filter,
        exclude,
        after_rowid,
        Some(limit),
    );
    cat.autocommit(|s| {
        let mut page = cat.rows(s.query(&sql, &sql_params(&params))?, |r| {
            rows::conversation(r)
        })?;
        let exported_by = match exclude {
            Exclude::ExportedBy(policy) => Some(policy.as_str()),
            _ => None,
        };
        fill_children(cat, s, &mut page, exported_by)?;
        Ok(page)
    })
}

/// Fills participants and artifacts of a page of conversations (two queries a page), the
/// matters holding them (a third), and what `exported_by` (a policy) exported of them before
/// (a fourth).
fn fill_children(
    cat: &PostgresCatalog,
    s: &mut Session<'_, Client>,
    page: &mut [Selected],
    exported_by: Option<&str>,
) -> Fallible<()> {
    if page.is_empty() {
        return Ok(());
    }
    let pks: Vec<i64> = page.iter().map(|p| p.rowid).collect();
    let index: HashMap<i64, usize> = pks.iter().enumerate().map(|(i, pk)| (*pk, i)).collect();
    let place = |r: &Columns<'_>| -> Result<usize> { Ok(index[&r.int(0)?]) };
    for (pk, matters) in super::holds::holding(cat, s, &pks)? {
        if let Some(&i) = index.get(&pk) {
            page[i].holds = matters;
        }
    }
    for (i, participant) in cat.rows(
        s.query(
            "SELECT conversation, user_name, extension, role FROM participants \
             WHERE conversation = ANY($1) ORDER BY conversation, ordinal",
            &[&pks],
        )?,
        |r| Ok((place(r)?, rows::participant(r)?)),
    )? {
        page[i].conversation.participants.push(participant);
    }
    for (i, artifact) in cat.rows(
        s.query(
            "SELECT conversation, file, kind, audio_type, size, sha256, key_id FROM artifacts a \
             WHERE conversation = ANY($1) AND NOT EXISTS (SELECT 1 FROM artifact_deletions d \
             WHERE d.conversation = a.conversation AND d.file = a.file OFFSET 0) AND NOT EXISTS (SELECT 1 FROM quarantine q \
             WHERE q.conversation = a.conversation AND q.file = a.file OFFSET 0) ORDER BY conversation, ordinal",
            &[&pks],
        )?,
        |r| Ok((place(r)?, rows::artifact(r)?)),
    )? {
        page[i].conversation.artifacts.push(artifact);
    }
    let Some(policy) = exported_by else {
        return Ok(());
    };
    for (i, exported) in cat.rows(
        s.query(
            "SELECT c.pk, e.file, e.sha256, e.key, e.size, e.out_sha256 FROM conversations c \
             CROSS JOIN LATERAL (SELECT * FROM export_artifacts e WHERE e.policy = $1 \
             AND e.tenant = c.tenant AND e.conversation_id = c.id OFFSET 0) e WHERE c.pk = ANY($2)",
            &[&policy, &pks],
        )?,
        |r| Ok((place(r)?, rows::exported_artifact(r)?)),
    )? {
        page[i].exported.push(exported);
    }
    Ok(())
}

pub(super) fn set_confidential_page(
    cat: &PostgresCatalog,
    page: &ConfidentialPage<'_>,
    after_rowid: i64,
) -> Result<(u64, u64, i64)> {
    let (sql, params) = sql::selection(
        Dialect::Postgres,
        sql::FLAG_PAGE.postgres,
        page.filter,
        page.exclude,
        after_rowid,
        Some(page.limit),
    );
    let now = micros(Utc::now());
    cat.transaction(|s| {
        let mut head = lock_chain(s, cat.audit_key.as_ref())?;
        let rows = s.query(&sql, &sql_params(&params))?;
        let mut tenants = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        let mut handled = Handled::default();
        let mut changed = Vec::new();
        let mut events = Vec::new();
        for r in &rows {
            let pk: i64 = r.try_get(0)?;
            let tenant: &str = r.try_get(1)?;
            let id: &str = r.try_get(2)?;
            let was: bool = r.try_get(3)?;
            if was != page.value {
                changed.push(pk);
                events.push(flag_event(page, tenant, id, was, now));
            }
            tenants.push(tenant);
            ids.push(id);
            handled.push(tenant, id, rows::fingerprint(&cat.columns(r), 4, 5)?)?;
        }
        if !changed.is_empty() {
            s.execute(
                "UPDATE conversations SET confidential = $1 WHERE pk = ANY($2)",
                &[&page.value, &changed],
            )?;
        }
        if !tenants.is_empty() {
            s.execute(
                "INSERT INTO confidential_flags (tenant, conversation_id, value, policy, run, at) \
                 SELECT u.tenant, u.id, $1, $2, $3, $4 FROM unnest($5::text[], $6::text[]) AS u(tenant, id) \
                 ON CONFLICT (tenant, conversation_id) DO UPDATE SET value = EXCLUDED.value, \
                 policy = EXCLUDED.policy, run = EXCLUDED.run, at = EXCLUDED.at",
                &[&page.value, &page.policy, &page.run.0, &now, &tenants, &ids],
            )?;
        }
        if page.remember {
            remember(s, page.policy, page.run, now, &handled)?;
        }
        append_audit(s, &mut head, &events)?;
        let last = match rows.last() {
            Some(r) => r.try_get(0)?,
            None => after_rowid,
        };
        Ok((rows.len() as u64, changed.len() as u64, last))
    })
}
