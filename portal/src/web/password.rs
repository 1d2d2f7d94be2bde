//! Passwords: the rule the registration page states, and argon2id hashes.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Minimum length; with the letter and digit rule this is the portal's stated
/// password rule (see `Texts::password_rule`).
pub const MIN_LEN: usize = 10;
/// Upper bound so a huge "password" cannot make argon2 work on megabytes.
pub const MAX_LEN: usize = 256;

/// True if `pw` meets the rule: 10 to 256 characters, a letter and a digit.
pub fn meets_rule(pw: &str) -> bool {
    let n = pw.chars().count();
    (MIN_LEN..=MAX_LEN).contains(&n)
        && pw.chars().any(|c| c.is_alphabetic())
        && pw.chars().any(|c| c.is_ascii_digit())
}

/// An argon2id PHC string (argon2 crate defaults: m=19 MiB, t=2, p=1, random salt).
pub fn hash(pw: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

/// Checks `pw` against a stored PHC string; a damaged hash never matches.
pub fn verify(pw: &str, phc: &str) -> bool {
    if pw.len() > MAX_LEN * 4 {
        return false;
    }
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(pw.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to compare against when the account does not exist, so a wrong email
/// takes as long as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("not-a-real-password-0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_and_hashes() {
        assert!(meets_rule("correcthorse9"));
        assert!(!meets_rule("short1"));
        assert!(!meets_rule("onlyletterslong"));
        assert!(!meets_rule("1234567890123"));
        let h = hash("correcthorse9");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correcthorse9", &h));
        assert!(!verify("correcthorse8", &h));
        assert!(!verify("correcthorse9", "garbage"));
    }
}
