//! Single-use links sent by email: address verification and password reset.
//!
//! The link carries a random 256-bit token; the store keeps only its SHA-256, the
//! account, the purpose, the expiry and whether it was used. Verification links
//! are valid 24 hours (long enough to find the email the next morning), reset
//! links 1 hour (they grant control over the account).

use crate::domain::AccountId;
use crate::store::{Store, StoreError};
use keys::UnixTime;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const VERIFY_SECS: u64 = 24 * 3600;
pub const RESET_SECS: u64 = 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    Verify,
    Reset,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TokenRecord {
    purpose: Purpose,
    account: u64,
    expires: UnixTime,
    used: bool,
}

/// What a presented token turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenCheck {
    Valid(AccountId),
    /// Unknown, expired, used, or for another purpose: the page offers a new link.
    Invalid,
}

#[derive(Debug)]
pub struct EmailTokens {
    tree: sled::Tree,
}

impl EmailTokens {
    pub fn open(store: &Store) -> Result<Self, StoreError> {
        Ok(EmailTokens {
            tree: store.web_tree("email_tokens")?,
        })
    }

    /// Issues a token; returns it (for the link) and its expiry.
    pub fn issue(
        &self,
        purpose: Purpose,
        account: AccountId,
        now: UnixTime,
    ) -> Result<(String, UnixTime), StoreError> {
        let token = hex::encode(rand::random::<[u8; 32]>());
        let life = match purpose {
            Purpose::Verify => VERIFY_SECS,
            Purpose::Reset => RESET_SECS,
        };
        let expires = now.plus_secs(life);
        let rec = TokenRecord {
            purpose,
            account: account.0,
            expires,
            used: false,
        };
        self.tree.insert(
            Sha256::digest(token.as_bytes()).as_slice(),
            serde_json::to_vec(&rec).unwrap_or_default(),
        )?;
        self.tree.flush()?;
        Ok((token, expires))
    }

    /// Checks a token without using it up (to show the reset form).
    pub fn peek(
        &self,
        purpose: Purpose,
        token: &str,
        now: UnixTime,
    ) -> Result<TokenCheck, StoreError> {
        let key = Sha256::digest(token.as_bytes());
        let Some(v) = self.tree.get(key.as_slice())? else {
            return Ok(TokenCheck::Invalid);
        };
        let Ok(rec) = serde_json::from_slice::<TokenRecord>(&v) else {
            return Ok(TokenCheck::Invalid);
        };
        if rec.purpose != purpose || rec.used || now >= rec.expires {
            return Ok(TokenCheck::Invalid);
        }
        Ok(TokenCheck::Valid(AccountId(rec.account)))
    }

    /// The account a known token of `purpose` was issued to, whether or not it is
    /// still valid (a verification link clicked a second time: the page can say
    /// that the address is already confirmed instead of "link not valid").
    pub fn account_of(
        &self,
        purpose: Purpose,
        token: &str,
    ) -> Result<Option<AccountId>, StoreError> {
        let key = Sha256::digest(token.as_bytes());
        let Some(v) = self.tree.get(key.as_slice())? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice::<TokenRecord>(&v)
            .ok()
            .filter(|rec| rec.purpose == purpose)
            .map(|rec| AccountId(rec.account)))
    }

    /// Uses a token up: it is valid exactly once, even under concurrent requests.
    pub fn consume(
        &self,
        purpose: Purpose,
        token: &str,
        now: UnixTime,
    ) -> Result<TokenCheck, StoreError> {
        let key = Sha256::digest(token.as_bytes());
        loop {
            let Some(old) = self.tree.get(key.as_slice())? else {
                return Ok(TokenCheck::Invalid);
            };
            let Ok(mut rec) = serde_json::from_slice::<TokenRecord>(&old) else {
                return Ok(TokenCheck::Invalid);
            };
            if rec.purpose != purpose || rec.used || now >= rec.expires {
                return Ok(TokenCheck::Invalid);
            }
            rec.used = true;
            let new = serde_json::to_vec(&rec).unwrap_or_default();
            if self
                .tree
                .compare_and_swap(key.as_slice(), Some(old), Some(new))?
                .is_ok()
            {
                self.tree.flush()?;
                return Ok(TokenCheck::Valid(AccountId(rec.account)));
            }
        }
    }

    /// Ends every outstanding link of `purpose` for `account` (a changed password
    /// ends every reset link sent before). Returns how many were ended.
    pub fn revoke_all(&self, purpose: Purpose, account: AccountId) -> Result<usize, StoreError> {
        let mut ended = 0;
        for entry in self.tree.iter() {
            let (key, old) = entry?;
            let Ok(mut rec) = serde_json::from_slice::<TokenRecord>(&old) else {
                continue;
            };
            if rec.purpose != purpose || rec.account != account.0 || rec.used {
                continue;
            }
            rec.used = true;
            let new = serde_json::to_vec(&rec).unwrap_or_default();
            // A concurrent change (the link used right now) leaves it used anyway.
            if self
                .tree
                .compare_and_swap(&key, Some(old), Some(new))?
                .is_ok()
            {
                ended += 1;
            }
        }
        self.tree.flush()?;
        Ok(ended)
    }
}
