//! The connection pool: each pooled connection keeps the statements prepared on it, and runs
//! work alone (each statement commits by itself) or in one transaction.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row, Statement, Transaction};

use super::{CatalogError, Fallible, IDLE, PostgresCatalog, STATEMENTS, connect};
use crate::catalog::Result;

/// A pooled connection and the statements prepared on it.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) statements: HashMap<String, Statement>,
}

/// A connection or one of its transactions, with the connection's statement cache.
pub(super) struct Session<'a, C> {
    pub(super) client: &'a mut C,
    pub(super) statements: &'a mut HashMap<String, Statement>,
}

pub(super) type Params<'a> = [&'a (dyn ToSql + Sync)];

impl<C: GenericClient> Session<'_, C> {
    pub(super) fn prepared(
        &mut self,
        sql: &str,
    ) -> std::result::Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        if self.statements.len() >= STATEMENTS {
            self.statements.clear();
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    pub(super) fn execute(&mut self, sql: &str, params: &Params<'_>) -> Fallible<u64> {
        let s = self.prepared(sql)?;
        Ok(self.client.execute(&s, params)?)
    }

    pub(super) fn query(&mut self, sql: &str, params: &Params<'_>) -> Fallible<Vec<Row>> {
        let s = self.prepared(sql)?;
        Ok(self.client.query(&s, params)?)
    }

    pub(super) fn query_one(&mut self, sql: &str, params: &Params<'_>) -> Fallible<Row> {
        let s = self.prepared(sql)?;
        Ok(self.client.query_one(&s, params)?)
    }

    pub(super) fn query_opt(&mut self, sql: &str, params: &Params<'_>) -> Fallible<Option<Row>> {
        let s = self.prepared(sql)?;
        Ok(self.client.query_opt(&s, params)?)
    }
}

pub(super) type Tx<'s, 't> = Session<'s, Transaction<'t>>;

impl PostgresCatalog {
    fn with_conn<T>(&self, f: impl FnOnce(&mut Conn) -> Fallible<T>) -> Result<T> {
        let pooled = self.idle.lock().expect("catalog pool lock").pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => Conn {
                client: connect(&self.config).map_err(|message| CatalogError::Open {
                    location: self.location.clone(),
                    message,
                })?,
                statements: HashMap::new(),
            },
        };
        let out = f(&mut conn);
        if !conn.client.is_closed() {
            let mut idle = self.idle.lock().expect("catalog pool lock");
            if idle.len() < IDLE {
                idle.push(conn);
            }
        }
        out.map_err(|f| self.fail(f))
    }

    /// Runs `f` on a pooled connection outside a transaction: each statement commits alone
    /// (reads, and writes of one statement).
    pub(super) fn autocommit<T>(
        &self,
        f: impl FnOnce(&mut Session<'_, Client>) -> Fallible<T>,
    ) -> Result<T> {
        self.with_conn(|conn| {
            f(&mut Session {
                client: &mut conn.client,
                statements: &mut conn.statements,
            })
        })
    }

    /// Runs `f` in a transaction on a pooled connection, committed when it succeeds.
    pub(super) fn transaction<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_, '_>) -> Fallible<T>,
    ) -> Result<T> {
        self.with_conn(|conn| {
            let mut tx = conn.client.transaction()?;
            let out = f(&mut Session {
                client: &mut tx,
                statements: &mut conn.statements,
            })?;
            tx.commit()?;
            Ok(out)
        })
    }
}
