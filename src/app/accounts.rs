//! Accounts of the web portal and JSON API (`custodian user …`) and how the service
//! authenticates with them (docs/operations.md, "The web portal"): an argon2id password hash
//! per account, API tokens and session ids that are random 256-bit values kept in the catalog
//! only as SHA-256 digests. An account acts as `Actor { user: NAME, groups }`, so the roles
//! file's `[users]` and `[groups]` apply to it exactly as to an operating-system user of that
//! name: one person has the same permissions on every path.
//!
//! Only the catalog's owner manages accounts: whoever could write the catalog could add
//! themselves an account anyway, and everyone else must not.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::Utc;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use super::Loaded;
use crate::audit::{AuditKind, NewEvent};
use crate::catalog::accounts::{Account, NewSession};
use crate::catalog::{CatalogConfig, CatalogError};
use crate::users::{Actor, describe_uid};

/// Why an account command was refused or could not be done.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(
        "account name `{0}` is not valid: use 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `-`"
    )]
    Name(String),
    #[error(
        "group name `{0}` is not valid: use 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `-`"
    )]
    Group(String),
    #[error("the password is too short: use at least {MIN_PASSWORD} characters")]
    ShortPassword,
    #[error("the password is too long: use at most {MAX_PASSWORD} bytes")]
    LongPassword,
    #[error("no account named `{0}` (see `custodian user list`)")]
    NoSuchAccount(String),
    #[error(
        "only the catalog's owner, {owner}, manages accounts; {caller} is not: run the command as {owner} (the service account)"
    )]
    NotOwner { owner: String, caller: String },
    #[error("catalog {path}")]
    CatalogFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("the system's random number generator failed")]
    Random,
    #[error("cannot tell who runs this command, to name them in the audit trail")]
    Who(#[source] crate::users::UnknownUser),
}

/// Fewest characters a password may have.
pub const MIN_PASSWORD: usize = 10;
/// Most bytes a password may have: hashing is costly, and a login body is small.
pub const MAX_PASSWORD: usize = 1024;

/// A valid account or group name: what the roles file can name without quoting surprises.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The audit event of a change to account `account`: the operating-system user running the
/// command is its actor (accounts are managed only from the command line, by the catalog's
/// owner); `details` never hold a password or a token.
fn account_event(
    kind: AuditKind,
    account: &str,
    details: serde_json::Value,
) -> Result<NewEvent, AccountError> {
    let actor = crate::users::Actor::current().map_err(AccountError::Who)?;
    let mut details = details;
    details["account"] = serde_json::Value::from(account);
    Ok(NewEvent {
        at: Utc::now(),
        kind,
        actor: actor.user,
        policy: None,
        run: None,
        tenant: None,
        conversation_id: None,
        details,
    })
}

/// Refuses unless the process runs as the catalog's owner: the owner of the SQLite file, or,
/// for PostgreSQL, whoever holds the config's credentials (the database checks them).
fn require_owner(l: &Loaded) -> Result<(), AccountError> {
    let CatalogConfig::Sqlite { path } = &l.config.catalog else {
        return Ok(());
    };
    let owner = std::fs::metadata(path)
        .map_err(|source| AccountError::CatalogFile {
            path: path.clone(),
            source,
        })?
        .uid();
    let me = nix::unistd::getuid().as_raw();
    if me == owner {
        Ok(())
    } else {
        Err(AccountError::NotOwner {
            owner: describe_uid(owner),
            caller: describe_uid(me),
        })
    }
}

/// `n` random bytes from the operating system.
fn random_bytes<const N: usize>() -> Result<[u8; N], AccountError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AccountError::Random)?;
    Ok(bytes)
}

/// A new random 256-bit secret, as 64 hex digits.
pub fn new_secret() -> Result<String, AccountError> {
    Ok(hex::encode(random_bytes::<32>()?))
}

/// The SHA-256 of a secret (token, session id) as stored.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn check_password(password: &str) -> Result<(), AccountError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(AccountError::ShortPassword);
    }
    if password.len() > MAX_PASSWORD {
        return Err(AccountError::LongPassword);
    }
    Ok(())
}

/// The PHC string of `password`'s argon2id hash with a random salt.
fn hash_password(password: &str) -> Result<String, AccountError> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| AccountError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

/// `user add`: a new account with `groups` and `password`.
pub fn add(
    l: &Loaded,
    name: &str,
    groups: &[String],
    password: &str,
) -> Result<Account, AccountError> {
    require_owner(l)?;
    if !valid_name(name) {
        return Err(AccountError::Name(name.to_owned()));
    }
    if let Some(g) = groups.iter().find(|g| !valid_name(g)) {
        return Err(AccountError::Group(g.clone()));
    }
    check_password(password)?;
    let mut groups = groups.to_vec();
    groups.sort();
    groups.dedup();
    let account = Account {
        name: name.to_owned(),
        groups,
        password_hash: hash_password(password)?,
        created_at: Utc::now().timestamp(),
    };
    let event = account_event(
        AuditKind::AccountAdded,
        name,
        serde_json::json!({ "groups": account.groups }),
    )?;
    l.catalog.add_account(&account, &event)?;
    Ok(account)
}

/// `user list`: every account, by name.
pub fn list(l: &Loaded) -> Result<Vec<Account>, AccountError> {
    require_owner(l)?;
    Ok(l.catalog.accounts()?)
}

/// `user remove`: the account with its tokens and sessions.
pub fn remove(l: &Loaded, name: &str) -> Result<(), AccountError> {
    require_owner(l)?;
    let account = l
        .catalog
        .account(name)?
        .ok_or_else(|| AccountError::NoSuchAccount(name.to_owned()))?;
    let event = account_event(
        AuditKind::AccountRemoved,
        name,
        serde_json::json!({ "groups": account.groups }),
    )?;
    if l.catalog.remove_account(name, &event)? {
        Ok(())
    } else {
        Err(AccountError::NoSuchAccount(name.to_owned()))
    }
}

/// `user token`: a new API token of the account, returned once; only its digest is kept.
pub fn token(l: &Loaded, name: &str) -> Result<String, AccountError> {
    require_owner(l)?;
    let account = l
        .catalog
        .account(name)?
        .ok_or_else(|| AccountError::NoSuchAccount(name.to_owned()))?;
    let token = format!("cust_{}", new_secret()?);
    let event = account_event(
        AuditKind::AccountTokenIssued,
        name,
        serde_json::json!({ "groups": account.groups }),
    )?;
    l.catalog
        .add_token(name, &digest(&token), Utc::now().timestamp(), &event)?;
    Ok(token)
}

/// The account `name`, if there is one (for the service; no owner check).
pub fn find(l: &Loaded, name: &str) -> Result<Option<Account>, AccountError> {
    Ok(l.catalog.account(name)?)
}

/// Who an account acts as.
pub fn actor(account: &Account) -> Actor {
    Actor {
        user: account.name.clone(),
        groups: account.groups.clone(),
    }
}

/// A hash no password matches, verified when the account does not exist so that a login for
/// an unknown name costs what one for a known name costs (the name is not revealed by timing).
const NO_ACCOUNT_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$bm8tYWNjb3VudC1zYWx0$sEtKTj1ZRUlyDOQEbCSwGAW1kh8AVxMC9zQMHzpqvds";

/// The account `name` if `password` is its password.
pub fn check_login(
    l: &Loaded,
    name: &str,
    password: &str,
) -> Result<Option<Account>, AccountError> {
    if password.len() > MAX_PASSWORD {
        return Ok(None);
    }
    let account = if valid_name(name) {
        l.catalog.account(name)?
    } else {
        None
    };
    let stored = account
        .as_ref()
        .map_or(NO_ACCOUNT_HASH, |a| a.password_hash.as_str());
    let matches = PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    });
    Ok(account.filter(|_| matches))
}

/// A session just started: the cookie's value and the CSRF token its forms carry.
pub struct Started {
    pub id: String,
    pub csrf: String,
}

/// Starts a session of `account` lasting `ttl`.
pub fn start_session(
    l: &Loaded,
    account: &Account,
    ttl: chrono::Duration,
) -> Result<Started, AccountError> {
    let id = new_secret()?;
    let csrf = new_secret()?;
    let now = Utc::now();
    l.catalog.create_session(
        &NewSession {
            id_hash: digest(&id),
            account: account.name.clone(),
            csrf: csrf.clone(),
            expires_at: (now + ttl).timestamp(),
        },
        now.timestamp(),
    )?;
    Ok(Started { id, csrf })
}

/// The account and CSRF token of the live session whose cookie value is `id`.
pub fn session(l: &Loaded, id: &str) -> Result<Option<(Account, String)>, AccountError> {
    Ok(l.catalog
        .session(&digest(id), Utc::now().timestamp())?
        .map(|s| (s.account, s.csrf)))
}

/// Ends the session whose cookie value is `id`.
pub fn end_session(l: &Loaded, id: &str) -> Result<(), AccountError> {
    Ok(l.catalog.end_session(&digest(id))?)
}

/// The account an API token belongs to.
pub fn token_account(l: &Loaded, token: &str) -> Result<Option<Account>, AccountError> {
    Ok(l.catalog.token_account(&digest(token))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_refused_unless_plain() {
        for ok in ["alice", "a.b_c-1", "X"] {
            assert!(valid_name(ok), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", "-rf", "a b", "<script>", "é", "a/b", long.as_str()] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_password_hash_verifies_only_its_password() {
        let phc = hash_password("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        let hash = PasswordHash::new(&phc).unwrap();
        let argon = Argon2::default();
        assert!(
            argon
                .verify_password(b"correct horse battery", &hash)
                .is_ok()
        );
        assert!(
            argon
                .verify_password(b"correct horse batterx", &hash)
                .is_err()
        );
        // A random salt: the same password hashes differently.
        assert_ne!(phc, hash_password("correct horse battery").unwrap());
    }

    #[test]
    fn the_no_account_hash_parses() {
        assert!(PasswordHash::new(NO_ACCOUNT_HASH).is_ok());
    }
}
