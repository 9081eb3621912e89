//! Accounts of the web portal and JSON API, their tokens and sessions.

use rusqlite::{OptionalExtension, params};

use super::SqliteCatalog;
use crate::audit::NewEvent;
use crate::catalog::accounts::{self, Account, Accounts, NewSession, Session};
use crate::catalog::rows::Fields;
use crate::catalog::{Result, sql};

impl Accounts for SqliteCatalog {
    fn add_account(&self, a: &Account, event: &NewEvent) -> Result<()> {
        let mut conn = self.writer.lock().expect("catalog writer lock");
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let exists = tx
            .query_row(sql::ACCOUNT.sqlite, [&a.name], |_| Ok(()))
            .optional()
            .map_err(|e| self.err(e))?
            .is_some();
        if exists {
            return Err(accounts::account_exists(&a.name));
        }
        tx.execute(
            sql::INSERT_ACCOUNT.sqlite,
            params![
                a.name,
                accounts::groups_text(&a.groups),
                a.password_hash,
                a.created_at
            ],
        )
        .map_err(|e| self.err(e))?;
        self.chain().append(&tx, event).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    fn account(&self, name: &str) -> Result<Option<Account>> {
        self.with_reader(|conn| {
            Ok(self
                .rows(conn, sql::ACCOUNT.sqlite, [name], |r| {
                    accounts::account(r, 0)
                })?
                .pop())
        })
    }

    fn accounts(&self) -> Result<Vec<Account>> {
        self.with_reader(|conn| {
            self.rows(conn, sql::ACCOUNTS.sqlite, [], |r| accounts::account(r, 0))
        })
    }

    fn remove_account(&self, name: &str, event: &NewEvent) -> Result<bool> {
        let mut conn = self.writer.lock().expect("catalog writer lock");
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        for statement in [sql::REMOVE_ACCOUNT_TOKENS, sql::REMOVE_ACCOUNT_SESSIONS] {
            tx.execute(statement.sqlite, [name])
                .map_err(|e| self.err(e))?;
        }
        let removed = tx
            .execute(sql::REMOVE_ACCOUNT.sqlite, [name])
            .map_err(|e| self.err(e))?;
        if removed == 0 {
            return Ok(false);
        }
        self.chain().append(&tx, event).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(true)
    }

    fn add_token(
        &self,
        account: &str,
        token_hash: &str,
        created_at: i64,
        event: &NewEvent,
    ) -> Result<()> {
        let mut conn = self.writer.lock().expect("catalog writer lock");
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let exists = tx
            .query_row(sql::ACCOUNT.sqlite, [account], |_| Ok(()))
            .optional()
            .map_err(|e| self.err(e))?
            .is_some();
        if !exists {
            return Err(accounts::unknown_account(account));
        }
        tx.execute(
            sql::INSERT_TOKEN.sqlite,
            params![token_hash, account, created_at],
        )
        .map_err(|e| self.err(e))?;
        self.chain().append(&tx, event).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    fn token_account(&self, token_hash: &str) -> Result<Option<Account>> {
        self.with_reader(|conn| {
            Ok(self
                .rows(conn, sql::TOKEN_ACCOUNT.sqlite, [token_hash], |r| {
                    accounts::account(r, 0)
                })?
                .pop())
        })
    }

    fn create_session(&self, s: &NewSession, now: i64) -> Result<()> {
        let mut conn = self.writer.lock().expect("catalog writer lock");
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute(sql::EXPIRE_SESSIONS.sqlite, [now])
            .map_err(|e| self.err(e))?;
        tx.execute(
            sql::INSERT_SESSION.sqlite,
            params![s.id_hash, s.account, s.csrf, s.expires_at],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    fn session(&self, id_hash: &str, now: i64) -> Result<Option<Session>> {
        self.with_reader(|conn| {
            Ok(self
                .rows(conn, sql::SESSION.sqlite, params![id_hash, now], |r| {
                    Ok(Session {
                        account: accounts::account(r, 0)?,
                        csrf: r.text(4)?,
                        expires_at: r.int(5)?,
                    })
                })?
                .pop())
        })
    }

    fn end_session(&self, id_hash: &str) -> Result<()> {
        let conn = self.writer.lock().expect("catalog writer lock");
        conn.execute(sql::END_SESSION.sqlite, [id_hash])
            .map(drop)
            .map_err(|e| self.err(e))
    }
}
