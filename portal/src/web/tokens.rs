//! Single-use links sent by email: address verification and password reset.
//!
//! The link carries a random 256-bit token; the store keeps only its SHA-256, the
//! account, the purpose, the expiry and whether it was used. Verification links
//! are valid 24 hours (long enough to find the email the next morning), reset
//! links 1 hour (they grant control over the account).

use crate::domain::AccountId;
use crate::store::{EmailTokenRow, Store, StoreError};
use keys::UnixTime;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub const VERIFY_SECS: u64 = 24 * 3600;
pub const RESET_SECS: u64 = 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    Verify,
    Reset,
}

impl Purpose {
    /// The stored name (`email_tokens.purpose`).
    fn key(self) -> &'static str {
        match self {
            Purpose::Verify => "verify",
            Purpose::Reset => "reset",
        }
    }
}

/// The stored form of a token: its SHA-256 in hex.
fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
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
    store: Arc<Store>,
}

impl EmailTokens {
    pub fn open(store: &Arc<Store>) -> Result<Self, StoreError> {
        Ok(EmailTokens {
            store: Arc::clone(store),
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
        self.store.insert_email_token(
            &hash_token(&token),
            &EmailTokenRow {
                purpose: purpose.key().to_owned(),
                account,
                expires,
                used: false,
            },
        )?;
        Ok((token, expires))
    }

    /// Checks a token without using it up (to show the reset form).
    pub fn peek(
        &self,
        purpose: Purpose,
        token: &str,
        now: UnixTime,
    ) -> Result<TokenCheck, StoreError> {
        let Some(rec) = self.store.email_token(&hash_token(token))? else {
            return Ok(TokenCheck::Invalid);
        };
        if rec.purpose != purpose.key() || rec.used || now >= rec.expires {
            return Ok(TokenCheck::Invalid);
        }
        Ok(TokenCheck::Valid(rec.account))
    }

    /// The account a known token of `purpose` was issued to, whether or not it is
    /// still valid (a verification link clicked a second time: the page can say
    /// that the address is already confirmed instead of "link not valid").
    pub fn account_of(
        &self,
        purpose: Purpose,
        token: &str,
    ) -> Result<Option<AccountId>, StoreError> {
        Ok(self
            .store
            .email_token(&hash_token(token))?
            .filter(|rec| rec.purpose == purpose.key())
            .map(|rec| rec.account))
    }

    /// Uses a token up: it is valid exactly once, even under concurrent requests
    /// (the check and the mark are one transaction).
    pub fn consume(
        &self,
        purpose: Purpose,
        token: &str,
        now: UnixTime,
    ) -> Result<TokenCheck, StoreError> {
        Ok(
            match self
                .store
                .consume_email_token(&hash_token(token), purpose.key(), now)?
            {
                Some(a) => TokenCheck::Valid(a),
                None => TokenCheck::Invalid,
            },
        )
    }

    /// Ends every outstanding link of `purpose` for `account` (a changed password
    /// ends every reset link sent before). Returns how many were ended.
    pub fn revoke_all(&self, purpose: Purpose, account: AccountId) -> Result<usize, StoreError> {
        self.store.revoke_email_tokens(purpose.key(), account)
    }
}
