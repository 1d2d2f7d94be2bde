//! The admin license search: what a search looks at and what counts as a match.
//!
//! A license matches a query `q` when one of its [`fields`], lowercased, contains
//! `q` lowercased. The store indexes the lowercased fields of every license by
//! their trigrams (SQLite: an FTS5 table with the trigram tokenizer,
//! `license_search`, one column per field, which keeps for each trigram only
//! the licenses that have it; PostgreSQL: pg_trgm) and asks it for the licenses
//! that have every trigram of `q`: a license whose field contains `q` has them
//! all, so the answer is a superset of the matches, and checking those
//! candidates with [`matches`] gives exactly the matches. Queries shorter than
//! [`GRAM`] characters have no trigram and are answered by looking at every
//! license.

use crate::domain::License;
use keys::Binding;

/// Characters per trigram: shorter queries cannot use the index.
pub const GRAM: usize = 3;

/// The fields a search looks at, lowercased: number, licensee (company, first
/// and last name, city, email), license data (name, city, postcode), the owning
/// customer's email, and the binding (hardware ID or dongle serial).
pub fn fields(l: &License, customer_email: &str) -> [String; 11] {
    let li = &l.licensee;
    let bound = match &l.binding {
        Some(Binding::HardwareId(h)) => h.to_string(),
        Some(Binding::DongleSerial(s)) => s.to_string(),
        None => String::new(),
    };
    [
        l.number.as_str(),
        &li.company,
        &li.first_name,
        &li.last_name,
        &li.city,
        &li.email,
        &l.license_data.name,
        &l.license_data.city,
        &l.license_data.postcode,
        customer_email,
        &bound,
    ]
    .map(|f| f.to_lowercase())
}

/// The query as it is compared: trimmed and lowercased.
pub fn normalize(q: &str) -> String {
    q.trim().to_lowercase()
}

/// Whether the license matches the normalized query `q` (see [`normalize`]); the
/// empty query matches everything.
pub fn matches(l: &License, customer_email: &str, q: &str) -> bool {
    q.is_empty() || fields(l, customer_email).iter().any(|f| f.contains(q))
}
