//! Untrusted bytes from disk: `lic/promos.json`. Must never panic, and nothing but
//! a file the trusted key signed may verify.
#![no_main]

use keys::file;
use keys::{SigningKeyPair, TrustedKeys};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn trusted() -> &'static TrustedKeys {
    static T: OnceLock<TrustedKeys> = OnceLock::new();
    T.get_or_init(|| TrustedKeys::with([SigningKeyPair::from_seed(&[42u8; 32]).public()]))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(grant) = file::parse(data, trusted()) {
        // Only a genuine file verifies; it must re-render to exactly its bytes.
        assert_eq!(file::render(&grant).as_bytes(), data);
    }
});
