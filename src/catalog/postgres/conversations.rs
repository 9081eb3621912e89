//! Conversations as the service shows them: a search page and one conversation's detail, each
//! read on one pooled connection.

use postgres::Client;

use super::pool::Session;
use super::{Columns, Fallible, PostgresCatalog, sql_params};
use crate::catalog::conversations::{
    self, ConversationDetail, ConversationSearch, ConversationSummary, DetailParts,
};
use crate::catalog::rows::{self, Fields};
use crate::catalog::totals::RunMetrics;
use crate::catalog::{Result, sql};
use crate::filter::Dialect;

pub(super) fn search(
    cat: &PostgresCatalog,
    search: &ConversationSearch,
) -> Result<Vec<ConversationSummary>> {
    let (text, params) = conversations::search_sql(Dialect::Postgres, search);
    cat.autocommit(|s| {
        let mut page = cat.rows(s.query(&text, &sql_params(&params))?, |r| {
            rows::conversation_summary(r)
        })?;
        let pks: Vec<i64> = page.iter().map(|c| c.cursor.pk).collect();
        let found = cat.rows(
            s.query(
                "SELECT conversation, user_name, extension, role FROM participants \
                 WHERE conversation = ANY($1) ORDER BY conversation, ordinal",
                &[&pks],
            )?,
            |r| Ok((r.int(0)?, rows::participant(r)?)),
        )?;
        for (pk, participant) in found {
            if let Some(c) = page.iter_mut().find(|c| c.cursor.pk == pk) {
                c.participants.push(participant);
            }
        }
        Ok(page)
    })
}

pub(super) fn detail(
    cat: &PostgresCatalog,
    tenant: &str,
    id: &str,
) -> Result<Option<ConversationDetail>> {
    cat.autocommit(|s| {
        let Some(found) = cat
            .rows(s.query(sql::CONVERSATION.postgres, &[&tenant, &id])?, |r| {
                rows::conversation(r)
            })?
            .pop()
        else {
            return Ok(None);
        };
        let pk = found.rowid;
        let parts = DetailParts {
            participants: by_pk(cat, s, sql::CONVERSATION_PARTICIPANTS.postgres, pk, |r| {
                rows::participant(r)
            })?,
            artifacts: by_pk(cat, s, sql::CONVERSATION_ARTIFACTS.postgres, pk, |r| {
                rows::artifact(r)
            })?,
            deletions: by_pk(cat, s, sql::CONVERSATION_DELETIONS.postgres, pk, |r| {
                rows::deletion(r)
            })?,
            quarantine: by_pk(cat, s, sql::CONVERSATION_QUARANTINE.postgres, pk, |r| {
                rows::quarantine_entry(r)
            })?,
            exports: cat.rows(
                s.query(sql::CONVERSATION_EXPORTS.postgres, &[&tenant, &id])?,
                |r| rows::export_entry(r),
            )?,
            confidential_flag: cat
                .rows(
                    s.query(sql::CONVERSATION_FLAG.postgres, &[&tenant, &id])?,
                    |r| rows::flag_origin(r),
                )?
                .pop(),
            holds: super::holds::holding(cat, s, &[pk])?
                .remove(&pk)
                .unwrap_or_default(),
            found,
        };
        Ok(Some(conversations::detail(parts)))
    })
}

/// The rows of a statement over one conversation's pk, each made by `make`.
fn by_pk<T>(
    cat: &PostgresCatalog,
    s: &mut Session<'_, Client>,
    text: &str,
    pk: i64,
    make: impl Fn(&Columns<'_>) -> Result<T>,
) -> Fallible<Vec<T>> {
    cat.rows(s.query(text, &[&pk])?, make)
}

pub(super) fn run_metrics(cat: &PostgresCatalog) -> Result<RunMetrics> {
    cat.autocommit(|s| {
        Ok(RunMetrics {
            totals: cat.rows(s.query(sql::RUN_TOTALS.postgres, &[])?, |r| {
                rows::run_totals(r)
            })?,
            running: cat.rows(s.query(sql::RUNNING_RUNS.postgres, &[])?, |r| {
                Ok((r.text(0)?, r.unsigned(1, "count")?))
            })?,
        }
        .with_durations(cat.rows(s.query(sql::RUN_DURATIONS.postgres, &[])?, |r| {
            rows::duration_bucket(r)
        })?))
    })
}
