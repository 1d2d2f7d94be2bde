//! Untrusted bytes from any web client: an `application/x-www-form-urlencoded`
//! form body or query string (and the same bytes as a `Cookie` or
//! `Accept-Language` header), through every form parser of the portal: the order
//! form with the real price list (new, upgrade, live price), registration, login,
//! password reset, the license edit form and the admin lists and forms. Must
//! never panic; `portal::fuzzing::forms` asserts the parsers' invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portal::fuzzing::forms(data);
});
