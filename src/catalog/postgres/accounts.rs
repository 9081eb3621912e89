//! Accounts of the web portal and JSON API, their tokens and sessions.

use super::PostgresCatalog;
use super::audit::{append_audit, lock_chain};
use crate::audit::NewEvent;
use crate::catalog::accounts::{self, Account, Accounts, NewSession, Session};
use crate::catalog::rows::Fields;
use crate::catalog::{Result, sql};

impl Accounts for PostgresCatalog {
    fn add_account(&self, a: &Account, event: &NewEvent) -> Result<()> {
        let groups = accounts::groups_text(&a.groups);
        self.transaction(|s| {
            let mut head = lock_chain(s, self.audit_key.as_ref())?;
            if s.query_opt(sql::ACCOUNT.postgres, &[&a.name])?.is_some() {
                return Err(accounts::account_exists(&a.name).into());
            }
            s.execute(
                sql::INSERT_ACCOUNT.postgres,
                &[&a.name, &groups, &a.password_hash, &a.created_at],
            )?;
            append_audit(s, &mut head, [event])
        })
    }

    fn account(&self, name: &str) -> Result<Option<Account>> {
        self.autocommit(|s| {
            let found = s.query(sql::ACCOUNT.postgres, &[&name])?;
            Ok(self.rows(found, |r| accounts::account(r, 0))?.pop())
        })
    }

    fn accounts(&self) -> Result<Vec<Account>> {
        self.autocommit(|s| {
            let found = s.query(sql::ACCOUNTS.postgres, &[])?;
            self.rows(found, |r| accounts::account(r, 0))
        })
    }

    fn remove_account(&self, name: &str, event: &NewEvent) -> Result<bool> {
        self.transaction(|s| {
            let mut head = lock_chain(s, self.audit_key.as_ref())?;
            for statement in [sql::REMOVE_ACCOUNT_TOKENS, sql::REMOVE_ACCOUNT_SESSIONS] {
                s.execute(statement.postgres, &[&name])?;
            }
            if s.execute(sql::REMOVE_ACCOUNT.postgres, &[&name])? == 0 {
                return Ok(false);
            }
            append_audit(s, &mut head, [event])?;
            Ok(true)
        })
    }

    fn add_token(
        &self,
        account: &str,
        token_hash: &str,
        created_at: i64,
        event: &NewEvent,
    ) -> Result<()> {
        self.transaction(|s| {
            let mut head = lock_chain(s, self.audit_key.as_ref())?;
            if s.query_opt(sql::ACCOUNT.postgres, &[&account])?.is_none() {
                return Err(accounts::unknown_account(account).into());
            }
            s.execute(
                sql::INSERT_TOKEN.postgres,
                &[&token_hash, &account, &created_at],
            )?;
            append_audit(s, &mut head, [event])
        })
    }

    fn token_account(&self, token_hash: &str) -> Result<Option<Account>> {
        self.autocommit(|s| {
            let found = s.query(sql::TOKEN_ACCOUNT.postgres, &[&token_hash])?;
            Ok(self.rows(found, |r| accounts::account(r, 0))?.pop())
        })
    }

    fn create_session(&self, new: &NewSession, now: i64) -> Result<()> {
        self.transaction(|s| {
            s.execute(sql::EXPIRE_SESSIONS.postgres, &[&now])?;
            s.execute(
                sql::INSERT_SESSION.postgres,
                &[&new.id_hash, &new.account, &new.csrf, &new.expires_at],
            )
            .map(drop)
        })
    }

    fn session(&self, id_hash: &str, now: i64) -> Result<Option<Session>> {
        self.autocommit(|s| {
            let found = s.query(sql::SESSION.postgres, &[&id_hash, &now])?;
            Ok(self
                .rows(found, |r| {
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
        self.autocommit(|s| s.execute(sql::END_SESSION.postgres, &[&id_hash]).map(drop))
    }
}
