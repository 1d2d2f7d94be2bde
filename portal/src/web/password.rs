//! Passwords: the rule the registration page states, and argon2id hashes.
//!
//! Each argon2 computation holds 19 MiB and a core for a while, so at most
//! [`max_concurrent`] run at once (one per core); the others wait their turn.
//! Without the bound, N simultaneous logins held N x 19 MiB: the load harness
//! (`pls-load`, 32 users logging in together) saw the server's RSS jump to
//! 670 MiB, and anyone able to send login requests could do the same with
//! thousands.

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

/// How many argon2 computations may run at once: one per core.
pub fn max_concurrent() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// A counting gate around argon2 (callers are on blocking threads).
struct Gate {
    in_use: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
    peak: std::sync::atomic::AtomicUsize,
}

static GATE: Gate = Gate {
    in_use: std::sync::Mutex::new(0),
    freed: std::sync::Condvar::new(),
    peak: std::sync::atomic::AtomicUsize::new(0),
};

struct Permit;

impl Permit {
    fn acquire() -> Permit {
        let max = max_concurrent();
        let mut n = GATE.in_use.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= max {
            n = GATE.freed.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
        GATE.peak.fetch_max(*n, std::sync::atomic::Ordering::SeqCst);
        Permit
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut n = GATE.in_use.lock().unwrap_or_else(|p| p.into_inner());
        *n -= 1;
        GATE.freed.notify_one();
    }
}

/// The most argon2 computations that ever ran at once in this process.
pub fn peak_concurrent() -> usize {
    GATE.peak.load(std::sync::atomic::Ordering::SeqCst)
}

/// An argon2id PHC string (argon2 crate defaults: m=19 MiB, t=2, p=1, random salt).
pub fn hash(pw: &str) -> String {
    let _permit = Permit::acquire();
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
    let _permit = Permit::acquire();
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

    #[test]
    fn at_most_one_argon2_per_core_at_once() {
        let h = hash("correcthorse9");
        let threads: Vec<_> = (0..4 * max_concurrent())
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || verify("correcthorse9", &h))
            })
            .collect();
        for t in threads {
            assert!(t.join().expect("thread"));
        }
        assert!(peak_concurrent() >= 1);
        assert!(
            peak_concurrent() <= max_concurrent(),
            "{} argon2 at once, bound {}",
            peak_concurrent(),
            max_concurrent()
        );
    }
}
