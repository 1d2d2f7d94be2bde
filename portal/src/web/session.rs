//! Server-side sessions, CSRF tokens and the cookies that carry them.
//!
//! - `pls_session`: a random 256-bit session id. The store keeps only its SHA-256,
//!   so a copy of the database cannot be used to take over a session. HttpOnly,
//!   SameSite=Lax, `Secure` when the public URL is https. With "remember me" it
//!   lives 30 days, otherwise it is a browser-session cookie and the server ends
//!   it after 12 hours.
//! - `pls_anon`: a random id for visitors who are not logged in, only to bind the
//!   CSRF token of the login and registration forms.
//! - CSRF token: HMAC-SHA256 over the session (or anonymous) id with a server
//!   secret kept in the store. Every form carries it; every POST checks it.

use crate::domain::{Account, AccountId};
use crate::store::{SessionRow, Store, StoreError};
use hmac::{Hmac, Mac};
use keys::UnixTime;
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub const SESSION_COOKIE: &str = "pls_session";
pub const ANON_COOKIE: &str = "pls_anon";
pub const LANG_COOKIE: &str = "pls_lang";
/// "Remember me": 30 days, as the issue asks.
pub const REMEMBER_SECS: u64 = 30 * 24 * 3600;
/// A browser-session login still ends on the server after 12 hours, so a shared
/// computer left logged in does not stay open for ever.
pub const BROWSER_SESSION_SECS: u64 = 12 * 3600;

/// A live session with its account (`None` if it was deleted) and the
/// account's language preference ([`Sessions::lookup_with_account`]).
pub type SessionWithAccount = (Session, Option<Account>, Option<String>);

/// A live session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The cookie value (the secret id), needed for CSRF binding and logout.
    pub id: String,
    pub account: AccountId,
}

#[derive(Debug)]
pub struct Sessions {
    store: Arc<Store>,
    secret: [u8; 32],
}

/// The stored form of a session id: its SHA-256 in hex.
fn hash_id(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

pub fn random_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    pub fn open(store: &Arc<Store>) -> Result<Self, StoreError> {
        Ok(Sessions {
            secret: store.web_secret("csrf_secret")?,
            store: Arc::clone(store),
        })
    }

    /// Starts a session for `account`; returns the cookie value and its lifetime
    /// (`None` = browser session).
    pub fn create(
        &self,
        account: AccountId,
        persistent: bool,
        now: UnixTime,
    ) -> Result<(Session, Option<u64>), StoreError> {
        let id = random_id();
        let life = if persistent {
            REMEMBER_SECS
        } else {
            BROWSER_SESSION_SECS
        };
        self.store.insert_session(
            &hash_id(&id),
            &SessionRow {
                account,
                created: now,
                expires: now.plus_secs(life),
                persistent,
            },
        )?;
        Ok((Session { id, account }, persistent.then_some(life)))
    }

    /// The session behind a cookie value, if it is live.
    pub fn lookup(&self, id: &str, now: UnixTime) -> Result<Option<Session>, StoreError> {
        Ok(self.lookup_with_account(id, now)?.map(|(s, _, _)| s))
    }

    /// [`Sessions::lookup`] with the session's account (`None` if it was
    /// deleted) and the account's language preference, all read in one store
    /// statement.
    pub fn lookup_with_account(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<SessionWithAccount>, StoreError> {
        if id.len() != 64 {
            return Ok(None);
        }
        let Some(found) = self.store.session_with_account(&hash_id(id))? else {
            return Ok(None);
        };
        if now >= found.session.expires {
            self.remove(id)?;
            return Ok(None);
        }
        let session = Session {
            id: id.to_owned(),
            account: found.session.account,
        };
        Ok(Some((session, found.account, found.lang)))
    }

    /// Ends one session (logout).
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.store.remove_session(&hash_id(id))
    }

    /// Ends every session of an account (after a password reset).
    pub fn remove_all(&self, account: AccountId) -> Result<usize, StoreError> {
        self.store.remove_sessions_of(account)
    }

    /// The CSRF token for forms shown to the holder of `binding` (session id or
    /// anonymous id).
    pub fn csrf_token(&self, binding: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
        mac.update(b"csrf:");
        mac.update(binding.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// Constant-time check of a submitted CSRF token.
    pub fn csrf_ok(&self, binding: &str, submitted: &str) -> bool {
        let expected = self.csrf_token(binding);
        expected.len() == submitted.len()
            && expected
                .bytes()
                .zip(submitted.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// Builds a `Set-Cookie` value.
pub fn cookie(name: &str, value: &str, max_age: Option<u64>, secure: bool) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// A `Set-Cookie` value that deletes the cookie.
pub fn expired_cookie(name: &str, secure: bool) -> String {
    cookie(name, "", Some(0), secure)
}

/// Reads one cookie from a `Cookie` header.
pub fn read_cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}
