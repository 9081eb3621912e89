//! Selections: what a policy's filter picks, page by page, and confidential-flag pages.

use std::collections::HashMap;

use chrono::Utc;
use rusqlite::{Connection, params, params_from_iter};

use super::runs::REMEMBER;
use super::{Columns, SqliteCatalog, to_sql};
use crate::catalog::rows::{self, Fields};
use crate::catalog::{
    ConfidentialPage, Exclude, Result, Selected, flag_event, rfc3339_micros as ts, sql,
};
use crate::filter::{Dialect, Filter};

pub(super) fn count_selection(
    cat: &SqliteCatalog,
    filter: &Filter,
    exclude: &Exclude,
) -> Result<u64> {
    let (sql, params) = sql::selection(
        Dialect::Sqlite,
        sql::COUNT_SELECTION.sqlite,
        filter,
        exclude,
        i64::MIN,
        None,
    );
    cat.with_reader(|conn| {
        conn.prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_row(params_from_iter(params.iter().map(to_sql)), |r| r.get(0))
            })
            .map_err(|e| cat.err(e))
    })
}

pub(super) fn select_page(
    cat: &SqliteCatalog,
    filter: &Filter,
    exclude: &Exclude,
    after_rowid: i64,
    limit: usize,
) -> Result<Vec<Selected>> {
    let (sql, params) = sql::selection(
        Dialect::Sqlite,
        sql::SELECT_CONVERSATION.sqlite,
        filter,
        exclude,
        after_rowid,
        Some(limit),
    );
    cat.with_reader(|conn| {
        let mut page = cat.rows(
            conn,
            &sql,
            params_from_iter(params.iter().map(to_sql)),
            |r| rows::conversation(r),
        )?;
        let exported_by = match exclude {
            Exclude::ExportedBy(policy) => Some(policy.as_str()),
            _ => None,
        };
        fill_children(cat, conn, &mut page, exported_by)?;
        Ok(page)
    })
}

/// Fills participants, artifacts and the matters holding them of a page of conversations
/// ordered by rowid, and what `exported_by` (a policy) exported of them before.
fn fill_children(
    cat: &SqliteCatalog,
    conn: &Connection,
    page: &mut [Selected],
    exported_by: Option<&str>,
) -> Result<()> {
    let (Some(first), Some(last)) = (page.first(), page.last()) else {
        return Ok(());
    };
    let (lo, hi) = (first.rowid, last.rowid);
    let index: HashMap<i64, usize> = page.iter().enumerate().map(|(i, s)| (s.rowid, i)).collect();
    let pks: Vec<i64> = page.iter().map(|s| s.rowid).collect();
    for (pk, matters) in super::holds::holding(cat, conn, &pks)? {
        if let Some(&i) = index.get(&pk) {
            page[i].holds = matters;
        }
    }
    for (i, participant) in children(
        cat,
        conn,
        "SELECT conversation, user_name, extension, role FROM participants \
         WHERE conversation BETWEEN ? AND ? ORDER BY conversation, ordinal",
        params![lo, hi],
        &index,
        |r| rows::participant(r),
    )? {
        page[i].conversation.participants.push(participant);
    }
    for (i, artifact) in children(
        cat,
        conn,
        "SELECT conversation, file, kind, audio_type, size, sha256, key_id FROM artifacts a \
         WHERE conversation BETWEEN ? AND ? AND NOT EXISTS (SELECT 1 FROM artifact_deletions d \
         WHERE d.conversation = a.conversation AND d.file = a.file) AND NOT EXISTS (SELECT 1 FROM quarantine q \
         WHERE q.conversation = a.conversation AND q.file = a.file) ORDER BY conversation, ordinal",
        params![lo, hi],
        &index,
        |r| rows::artifact(r),
    )? {
        page[i].conversation.artifacts.push(artifact);
    }
    let Some(policy) = exported_by else {
        return Ok(());
    };
    for (i, exported) in children(
        cat,
        conn,
        "SELECT c.pk, e.file, e.sha256, e.key, e.size, e.out_sha256 FROM conversations c \
         JOIN export_artifacts e ON e.policy = ? AND e.tenant = c.tenant AND e.conversation_id = c.id \
         WHERE c.pk BETWEEN ? AND ?",
        params![policy, lo, hi],
        &index,
        |r| rows::exported_artifact(r),
    )? {
        page[i].exported.push(exported);
    }
    Ok(())
}

/// The rows of `sql` whose first column is a conversation of the page (by `index`), each as its
/// place in the page and what `make` reads from the row.
fn children<T>(
    cat: &SqliteCatalog,
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    index: &HashMap<i64, usize>,
    make: impl Fn(&Columns<'_, '_>) -> Result<T>,
) -> Result<Vec<(usize, T)>> {
    let found = cat.rows(conn, sql, params, |r| match index.get(&r.int(0)?) {
        Some(&i) => Ok(Some((i, make(r)?))),
        None => Ok(None),
    })?;
    Ok(found.into_iter().flatten().collect())
}

pub(super) fn set_confidential_page(
    cat: &SqliteCatalog,
    page: &ConfidentialPage<'_>,
    after_rowid: i64,
) -> Result<(u64, u64, i64)> {
    let (sql, params) = sql::selection(
        Dialect::Sqlite,
        sql::FLAG_PAGE.sqlite,
        page.filter,
        page.exclude,
        after_rowid,
        Some(page.limit),
    );
    let mut conn = cat.writer.lock().expect("catalog writer lock");
    let tx = conn.transaction().map_err(|e| cat.err(e))?;
    let now = Utc::now();
    let at = ts(now);
    let mut chain = cat.chain();
    let mut write = || -> rusqlite::Result<(u64, u64, i64)> {
        let rows: Vec<(i64, String, String, bool, i64, i64)> = tx
            .prepare_cached(&sql)?
            .query_map(params_from_iter(params.iter().map(to_sql)), |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut changed = 0;
        let mut set_flag =
            tx.prepare_cached("UPDATE conversations SET confidential = ? WHERE pk = ?")?;
        let mut keep = tx.prepare_cached(
            "INSERT OR REPLACE INTO confidential_flags (tenant, conversation_id, value, policy, run, at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )?;
        let mut state = tx.prepare_cached(REMEMBER)?;
        for (pk, tenant, id, was, mtime_ns, size) in &rows {
            if *was != page.value {
                set_flag.execute(params![page.value, pk])?;
                chain.append(&tx, &flag_event(page, tenant, id, *was, now))?;
                changed += 1;
            }
            keep.execute(params![tenant, id, page.value, page.policy, page.run.0, at])?;
            if page.remember {
                state.execute(params![
                    page.policy,
                    tenant,
                    id,
                    page.run.0,
                    at,
                    mtime_ns,
                    size
                ])?;
            }
        }
        Ok((
            rows.len() as u64,
            changed,
            rows.last().map_or(after_rowid, |r| r.0),
        ))
    };
    let result = write().map_err(|e| cat.err(e))?;
    tx.commit().map_err(|e| cat.err(e))?;
    Ok(result)
}
