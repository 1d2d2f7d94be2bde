//! Input rules every handler shares: where a redirect may go, how a count is
//! typed in the page's language, which field names a form may carry and how long
//! a field may be. One place for each rule, so no handler guesses on its own.
//!
//! Every rule refuses rather than repairs: a redirect target that is not plainly
//! local becomes `/`, a count with a misplaced separator is a field error, an
//! unknown field name is a field error.

use std::collections::BTreeSet;

/// Longest redirect target kept; a longer one is not a page of ours.
const MAX_TARGET: usize = 512;

/// `raw` if it is a plainly local path: exactly one `/` followed by a character
/// that is not `/` or `\`, visible ASCII only (no control character, no space, no
/// backslash anywhere). Browsers strip tabs and line breaks from a `Location` and
/// read `\` as `/`, so `/\t/evil.example` or `/\evil.example` would leave the site.
pub fn local_path(raw: &str) -> Option<&str> {
    let bytes = raw.as_bytes();
    let plain = bytes.len() < MAX_TARGET
        && bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && bytes
            .iter()
            .all(|b| (0x21..=0x7e).contains(b) && *b != b'\\');
    plain.then_some(raw)
}

/// Where a redirect named by the client (`next=`, `back=`) goes: `default` when
/// none was named, the target when it is a [`local_path`], else `/`.
pub fn redirect_target<'a>(raw: &'a str, default: &'a str) -> &'a str {
    if raw.is_empty() {
        default
    } else {
        local_path(raw).unwrap_or("/")
    }
}

/// A count as typed on a page in German (`de`) or English: plain digits
/// (`6000`), or digits grouped in threes by the language's thousands separator
/// (`6.000` in German, `6,000` in English). Empty is 0. Everything else (a
/// decimal such as `6.5` or `1,5`, the other language's separator, signs,
/// exponents, letters, more than nine digits) is `None`: a field error, never
/// read as some other number.
pub fn parse_count(raw: &str, de: bool) -> Option<u32> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Some(0);
    }
    let sep = if de { '.' } else { ',' };
    let mut groups = raw.split(sep);
    let first = groups.next().unwrap_or("");
    let rest: Vec<&str> = groups.collect();
    let digits = |g: &str| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit());
    let grouped_ok = rest.is_empty()
        || (first.len() <= 3
            && !first.starts_with('0')
            && rest.iter().all(|g| g.len() == 3 && digits(g)));
    if !digits(first) || !grouped_ok {
        return None;
    }
    let all: String = std::iter::once(first).chain(rest).collect();
    if all.len() > 9 {
        return None;
    }
    all.parse().ok()
}

/// The field error for a count that [`parse_count`] refused.
pub fn count_error(de: bool) -> &'static str {
    if de {
        "Bitte eine ganze Zahl eingeben, z.B. 6000 oder 6.000 (ohne Nachkommastellen)."
    } else {
        "Please enter a whole number, e.g. 6000 or 6,000 (no decimals)."
    }
}

/// Highest page number a list link can carry; anything beyond is not a page
/// of ours (lists clamp to their last page below it).
const MAX_PAGE: usize = 1_000_000;

/// A list's `page` parameter (1-based): absent is the first page. A value
/// that is not a whole number from 1 to a million (`0`, `-1`, `2.5`, `abc`,
/// an empty value) is `None`: refused, never read as some other page.
pub fn list_page(raw: Option<&str>) -> Option<usize> {
    let Some(raw) = raw else { return Some(1) };
    if raw.is_empty() || raw.len() > 7 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok().filter(|p| (1..=MAX_PAGE).contains(p))
}

/// The field error for a field name a form does not have.
pub fn unknown_field_error(de: bool) -> &'static str {
    if de {
        "Dieses Feld gibt es im Formular nicht."
    } else {
        "This form has no such field."
    }
}

/// The field error for a field sent more than once.
pub fn repeated_field_error(de: bool) -> &'static str {
    if de {
        "Dieses Feld wurde mehrfach gesendet."
    } else {
        "This field was sent more than once."
    }
}

/// Longest value of any single form field, in characters. The longest field a
/// form has is the 2,000-character remarks; anything far beyond is not typed by a
/// person and is refused with "input too long" naming the field (413) before a
/// handler sees it.
pub const MAX_FIELD_CHARS: usize = 8 * 1024;

/// The first field of `fields` whose value is longer than [`MAX_FIELD_CHARS`].
pub fn overlong_field<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<&'a str> {
    fields
        .into_iter()
        .find(|(_, v)| v.len() > MAX_FIELD_CHARS && v.chars().count() > MAX_FIELD_CHARS)
        .map(|(k, _)| k)
}

/// The names in `names` that are not in `allowed`, in order, each once.
pub fn unknown_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
    allowed: &BTreeSet<String>,
) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for n in names {
        if !allowed.contains(n) && !out.iter().any(|o| o == n) {
            out.push(n.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_list_page_is_a_whole_number_from_one_or_refused() {
        assert_eq!(list_page(None), Some(1));
        assert_eq!(list_page(Some("1")), Some(1));
        assert_eq!(list_page(Some("17")), Some(17));
        assert_eq!(list_page(Some("1000000")), Some(1_000_000));
        for bad in [
            "",
            "0",
            "-1",
            "+2",
            "2.5",
            "1e3",
            "abc",
            " 2",
            "1000001",
            "99999999999",
        ] {
            assert_eq!(list_page(Some(bad)), None, "{bad:?}");
        }
    }

    /// Hostile and harmless redirect targets, as a browser would meet them in a
    /// `Location` header; the regression table of the open-redirect report.
    pub const HOSTILE: &[&str] = &[
        "//evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r/evil.example",
        "/\x0b/evil.example",
        "/\0/evil.example",
        "/\\evil.example",
        "/\\/evil.example",
        "\\\\evil.example",
        "https://evil.example",
        "http:evil.example",
        "javascript:alert(1)",
        " /licenses",
        "/licenses\r\nSet-Cookie: x=1",
        "/\u{7f}/evil.example",
        "/\u{85}/evil.example",
        "/li zenzen",
        "evil.example",
        "./licenses",
    ];

    #[test]
    fn hostile_targets_become_the_start_page() {
        for raw in HOSTILE {
            assert_eq!(local_path(raw), None, "{raw:?}");
            assert_eq!(redirect_target(raw, "/licenses"), "/", "{raw:?}");
        }
        for ok in [
            "/",
            "/licenses",
            "/quotes?created=1/2",
            "/admin/licenses?q=a%2Fb",
        ] {
            assert_eq!(local_path(ok), Some(ok));
            assert_eq!(redirect_target(ok, "/x"), ok);
        }
        assert_eq!(redirect_target("", "/licenses"), "/licenses");
        assert_eq!(local_path(&format!("/{}", "a".repeat(600))), None);
    }

    proptest! {
        /// Whatever is accepted stays on the site when a browser resolves it
        /// (WHATWG URL parsing: tabs and line breaks dropped, `\` read as `/`).
        #[test]
        fn accepted_targets_stay_on_the_site(raw in "\\PC{0,12}|[/\\\\\t\n\r a-z.:]{0,12}") {
            if let Some(p) = local_path(&raw) {
                let base = url::Url::parse("https://portal.example/licenses").unwrap();
                let joined = base.join(p).unwrap();
                prop_assert_eq!(joined.host_str(), Some("portal.example"));
                prop_assert_eq!(joined.scheme(), "https");
            }
        }

        #[test]
        fn plain_digits_read_in_both_languages(n in 0u32..999_999_999) {
            prop_assert_eq!(parse_count(&n.to_string(), true), Some(n));
            prop_assert_eq!(parse_count(&n.to_string(), false), Some(n));
        }

        #[test]
        fn grouped_digits_read_in_their_language_only(n in 1_000u32..999_999_999) {
            let plain = n.to_string();
            let group = |sep: char| {
                let mut out = String::new();
                for (i, c) in plain.chars().enumerate() {
                    if i > 0 && (plain.len() - i) % 3 == 0 { out.push(sep); }
                    out.push(c);
                }
                out
            };
            prop_assert_eq!(parse_count(&group('.'), true), Some(n));
            prop_assert_eq!(parse_count(&group(','), false), Some(n));
            prop_assert_eq!(parse_count(&group(','), true), None);
            prop_assert_eq!(parse_count(&group('.'), false), None);
        }
    }

    #[test]
    fn counts_are_never_misread() {
        assert_eq!(parse_count("6000", true), Some(6000));
        assert_eq!(parse_count("6.500", true), Some(6500));
        assert_eq!(parse_count("6,500", false), Some(6500));
        assert_eq!(parse_count(" 1.000.000 ", true), Some(1_000_000));
        assert_eq!(parse_count("", true), Some(0));
        for bad in [
            "6.5",
            "1,5",
            "6.50",
            "6.5000",
            ".500",
            "6.",
            "06.500",
            "-5",
            "+5",
            "1e3",
            "12a",
            "6 000",
            "6'000",
            "9999999999",
            "1.000.0000",
            "abc",
            "1e30",
        ] {
            assert_eq!(parse_count(bad, true), None, "de {bad:?}");
            let en = bad.replace('.', ",");
            assert_eq!(parse_count(&en, false), None, "en {en:?}");
        }
        assert_eq!(parse_count("6,500", true), None);
        assert_eq!(parse_count("6.500", false), None);
    }

    #[test]
    fn overlong_fields_are_named() {
        let long = "x".repeat(MAX_FIELD_CHARS + 1);
        let fields = [("company", "ACME"), ("remarks", long.as_str())];
        assert_eq!(overlong_field(fields), Some("remarks"));
        assert_eq!(overlong_field([("company", "ACME")]), None);
    }
}
