//! The admin license search: what a search looks at, what counts as a match, and
//! the trigram keys of the search index (schema 2, tree `license_search`).
//!
//! A license matches a query `q` when one of its [`fields`], lowercased, contains
//! `q` lowercased. The index lists, for every trigram (three consecutive
//! characters) of every lowercased field, the licenses that have it. Every
//! substring of three or more characters has all its trigrams in the field it
//! comes from, so the licenses having all trigrams of `q` are a superset of the
//! matches; checking those candidates with [`matches`] gives exactly the matches.
//! Queries shorter than three characters have no trigram and are answered by
//! looking at every license.

use crate::domain::License;
use keys::Binding;
use std::collections::BTreeSet;

/// Characters per index gram.
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

/// The trigrams of `text` (already lowercased).
pub fn grams(text: &str) -> BTreeSet<&str> {
    let starts: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    starts
        .windows(GRAM + 1)
        .map(|w| &text[w[0]..w[GRAM]])
        .collect()
}

/// Every index key of a license: one per distinct trigram of its fields.
pub fn index_keys(l: &License, customer_email: &str) -> BTreeSet<Vec<u8>> {
    let number = l.number.as_str().as_bytes();
    let fields = fields(l, customer_email);
    fields
        .iter()
        .flat_map(|f| grams(f))
        .map(|g| {
            let mut k = gram_prefix(g);
            k.extend_from_slice(number);
            k
        })
        .collect()
}

/// The key prefix of a trigram's entries: its length in bytes (one byte), then
/// its UTF-8 bytes; the license number (10 ASCII digits) follows.
pub fn gram_prefix(gram: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + gram.len() + 10);
    // A gram is three characters, at most 12 bytes.
    k.push(gram.len() as u8);
    k.extend_from_slice(gram.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grams_are_character_windows() {
        assert_eq!(
            grams("müller").into_iter().collect::<Vec<_>>(),
            vec!["ler", "lle", "mül", "üll"]
        );
        assert!(grams("ab").is_empty());
        assert_eq!(grams("abc").into_iter().collect::<Vec<_>>(), vec!["abc"]);
        assert_eq!(gram_prefix("mül"), b"\x04m\xc3\xbcl".to_vec());
    }
}
