//! Conversations as the service shows them: a search page and one conversation's detail, each
//! read on one reader connection.

use rusqlite::{Connection, params, params_from_iter};

use super::{SqliteCatalog, to_sql};
use crate::catalog::conversations::{
    self, ConversationDetail, ConversationSearch, ConversationSummary, DetailParts,
};
use crate::catalog::rows::{self, Fields};
use crate::catalog::totals::RunMetrics;
use crate::catalog::{Result, sql};
use crate::filter::{Dialect, SqlValue};

pub(super) fn search(
    cat: &SqliteCatalog,
    search: &ConversationSearch,
) -> Result<Vec<ConversationSummary>> {
    let (text, params) = conversations::search_sql(Dialect::Sqlite, search);
    cat.with_reader(|conn| {
        let mut page = cat.rows(
            conn,
            &text,
            params_from_iter(params.iter().map(to_sql)),
            |r| rows::conversation_summary(r),
        )?;
        let pks: Vec<String> = page.iter().map(|s| s.cursor.pk.to_string()).collect();
        let list = SqlValue::Text(format!("[{}]", pks.join(",")));
        let found = cat.rows(
            conn,
            "SELECT conversation, user_name, extension, role FROM participants \
             WHERE conversation IN (SELECT value FROM json_each(?1)) ORDER BY conversation, ordinal",
            [to_sql(&list)],
            |r| Ok((r.int(0)?, rows::participant(r)?)),
        )?;
        for (pk, participant) in found {
            if let Some(s) = page.iter_mut().find(|s| s.cursor.pk == pk) {
                s.participants.push(participant);
            }
        }
        Ok(page)
    })
}

pub(super) fn detail(
    cat: &SqliteCatalog,
    tenant: &str,
    id: &str,
) -> Result<Option<ConversationDetail>> {
    cat.with_reader(|conn| {
        let Some(found) = cat
            .rows(conn, sql::CONVERSATION.sqlite, params![tenant, id], |r| {
                rows::conversation(r)
            })?
            .pop()
        else {
            return Ok(None);
        };
        let pk = found.rowid;
        let parts = DetailParts {
            participants: by_pk(cat, conn, sql::CONVERSATION_PARTICIPANTS.sqlite, pk, |r| {
                rows::participant(r)
            })?,
            artifacts: by_pk(cat, conn, sql::CONVERSATION_ARTIFACTS.sqlite, pk, |r| {
                rows::artifact(r)
            })?,
            deletions: by_pk(cat, conn, sql::CONVERSATION_DELETIONS.sqlite, pk, |r| {
                rows::deletion(r)
            })?,
            quarantine: by_pk(cat, conn, sql::CONVERSATION_QUARANTINE.sqlite, pk, |r| {
                rows::quarantine_entry(r)
            })?,
            exports: cat.rows(
                conn,
                sql::CONVERSATION_EXPORTS.sqlite,
                params![tenant, id],
                |r| rows::export_entry(r),
            )?,
            confidential_flag: cat
                .rows(
                    conn,
                    sql::CONVERSATION_FLAG.sqlite,
                    params![tenant, id],
                    |r| rows::flag_origin(r),
                )?
                .pop(),
            holds: super::holds::holding(cat, conn, &[pk])?
                .remove(&pk)
                .unwrap_or_default(),
            found,
        };
        Ok(Some(conversations::detail(parts)))
    })
}

/// The rows of a statement over one conversation's pk, each made by `make`.
fn by_pk<T>(
    cat: &SqliteCatalog,
    conn: &Connection,
    text: &str,
    pk: i64,
    make: impl Fn(&super::Columns<'_, '_>) -> Result<T>,
) -> Result<Vec<T>> {
    cat.rows(conn, text, [pk], |r| make(r))
}

pub(super) fn run_metrics(cat: &SqliteCatalog) -> Result<RunMetrics> {
    cat.with_reader(|conn| {
        Ok(RunMetrics {
            totals: cat.rows(conn, sql::RUN_TOTALS.sqlite, [], |r| rows::run_totals(r))?,
            running: cat.rows(conn, sql::RUNNING_RUNS.sqlite, [], |r| {
                Ok((r.text(0)?, r.unsigned(1, "count")?))
            })?,
        }
        .with_durations(cat.rows(conn, sql::RUN_DURATIONS.sqlite, [], |r| {
            rows::duration_bucket(r)
        })?))
    })
}
