//! Accounts of the web portal and JSON API (docs/operations.md, "The web portal"): each a name
//! with groups and an argon2id password hash, API tokens and login sessions kept only as
//! SHA-256 digests, so a copy of the catalog hands out no way in. The service decides who
//! authenticates; the catalog only stores.

use super::Result;
use super::rows::Fields;
use crate::audit::NewEvent;

/// An account as stored: what it acts as (its name and groups) and how it proves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    /// Groups the roles file's `[groups]` grants apply through.
    pub groups: Vec<String>,
    /// The PHC string of its argon2id password hash.
    pub password_hash: String,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
}

/// A login session to store: the SHA-256 of its cookie value, its account, its CSRF token and
/// when it ends (seconds since the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    pub id_hash: String,
    pub account: String,
    pub csrf: String,
    pub expires_at: i64,
}

/// A live session found by its id's digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub account: Account,
    pub csrf: String,
    pub expires_at: i64,
}

/// Where accounts, their API tokens and their sessions are kept. Removing an account ends
/// its sessions and revokes its tokens in the same step. Each change of an account appends
/// its audit event in the transaction that makes it, so no change goes unrecorded and no
/// event records a change that did not happen.
pub trait Accounts: Send + Sync {
    /// Adds `account` with its `event`; refused if one of that name exists.
    fn add_account(&self, account: &Account, event: &NewEvent) -> Result<()>;
    fn account(&self, name: &str) -> Result<Option<Account>>;
    /// Every account, by name.
    fn accounts(&self) -> Result<Vec<Account>>;
    /// Removes the account `name` with its tokens and sessions, and appends `event`; false
    /// (and no event) if there was none.
    fn remove_account(&self, name: &str, event: &NewEvent) -> Result<bool>;
    /// Stores the digest of a new API token of `account` (which must exist) with its `event`.
    fn add_token(
        &self,
        account: &str,
        token_hash: &str,
        created_at: i64,
        event: &NewEvent,
    ) -> Result<()>;
    /// The account a token's digest belongs to.
    fn token_account(&self, token_hash: &str) -> Result<Option<Account>>;
    /// Stores a new session, and drops those expired before `now`.
    fn create_session(&self, session: &NewSession, now: i64) -> Result<()>;
    /// The session whose id has the digest `id_hash`, unless it expired before `now`.
    fn session(&self, id_hash: &str, now: i64) -> Result<Option<Session>>;
    /// Ends a session (logout); nothing if there is none.
    fn end_session(&self, id_hash: &str) -> Result<()>;
}

/// The refusal of a second account of one name.
pub(super) fn account_exists(name: &str) -> super::CatalogError {
    super::CatalogError::Refused(format!(
        "an account named `{name}` already exists (see `custodian user list`)"
    ))
}

/// The refusal of a token for an account that does not exist.
pub(super) fn unknown_account(name: &str) -> super::CatalogError {
    super::CatalogError::Refused(format!(
        "no account named `{name}` (see `custodian user list`)"
    ))
}

/// Groups as stored: one JSON array of strings.
pub(super) fn groups_text(groups: &[String]) -> String {
    serde_json::Value::from(groups.to_vec()).to_string()
}

/// An account from columns name, groups, password_hash, created_at starting at `at`.
pub(super) fn account(r: &impl Fields<usize>, at: usize) -> Result<Account> {
    let groups_json = r.text(at + 1)?;
    let groups: Vec<String> = serde_json::from_str(&groups_json)
        .map_err(|_| r.corrupt("accounts.groups", &groups_json))?;
    Ok(Account {
        name: r.text(at)?,
        groups,
        password_hash: r.text(at + 2)?,
        created_at: r.int(at + 3)?,
    })
}
