//! Entry points of the fuzz targets in `fuzz/` and of their regression tests: the
//! web portal's parsers of untrusted form bodies, query strings and headers, run
//! without a store or a server. They panic only on a broken invariant.

use crate::domain::normalize_email;
use crate::web::{
    self, admin, answers, auth, i18n::Lang, license, password, session, shop, views, Form,
};
use keys::{DongleSerial, Entitlements, LicenseNumber, LicenseType, Protection};
use pricing::{PriceList, Selection};
use rust_decimal::Decimal;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// The embedded price list (the one `pls` sells with unless configured otherwise).
fn prices() -> &'static PriceList {
    static PRICES: OnceLock<PriceList> = OnceLock::new();
    PRICES.get_or_init(PriceList::embedded)
}

/// Entitlements of licenses to upgrade: the default standard license and an
/// engineering license.
fn current_licenses() -> &'static [Entitlements] {
    static CURRENT: OnceLock<Vec<Entitlements>> = OnceLock::new();
    CURRENT.get_or_init(|| {
        let standard = prices()
            .quote(&Selection::standard_default(Protection::SoftDongle), None)
            .map(|p| p.entitlements)
            .unwrap_or_else(|_| Entitlements::none());
        vec![standard, Entitlements::engineering()]
    })
}

/// Raw `application/x-www-form-urlencoded` bytes (a form body or a query string),
/// decoded as warp decodes them, through every form and query parser of the
/// portal; the same bytes as a `Cookie` and an `Accept-Language` header.
pub fn forms(data: &[u8]) {
    headers(&String::from_utf8_lossy(data));
    // `warp::body::form` and `warp::query::<Vec<(String, String)>>`.
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data) else {
        return;
    };
    let form = Form::from_pairs(pairs.clone());
    let mut seen = HashSet::new();
    for (k, v) in &pairs {
        assert!(form.has(k));
        if seen.insert(k.as_str()) {
            // The first value of a repeated field counts.
            assert_eq!(form.raw(k), v);
            assert_eq!(form.get(k), v.trim());
        }
    }
    order_form(&form);
    account_forms(&form);
    // `warp::query::<HashMap<String, String>>` of the admin lists and quotes.
    if let Ok(query) = serde_urlencoded::from_bytes::<HashMap<String, String>>(data) {
        match admin::search_and_page(&query) {
            Ok((search, page)) => {
                assert!((1..=1_000_000).contains(&page));
                assert_eq!(search.trim(), search.as_str());
                assert!(query.keys().all(|k| k == "q" || k == "page"));
            }
            Err(field) => assert!(query.contains_key(&field) || field == "page"),
        }
        if let Some((number, n)) = query.get("created").and_then(|c| c.split_once('/')) {
            let _ = (number.parse::<LicenseNumber>(), n.parse::<u32>());
        }
    }
}

/// The order form (new and upgrade, both languages): `Entered`, `evaluate`,
/// the summary and the live price answer, with the real price list.
fn order_form(form: &Form) {
    let entered = shop::Entered::from_form(form);
    // "Back" and "Get quote" resend the form as hidden fields: they come back
    // as the same form.
    let hidden = entered.hidden_fields();
    let body = serde_urlencoded::to_string(&hidden).expect("hidden fields encode");
    let again: Vec<(String, String)> =
        serde_urlencoded::from_str(&body).expect("hidden fields decode");
    assert_eq!(
        shop::Entered::from_form(&Form::from_pairs(again)).hidden_fields(),
        hidden
    );
    for de in [true, false] {
        for current in std::iter::once(None).chain(current_licenses().iter().map(Some)) {
            let (status, answer) = shop::price_answer(prices(), form, current, de);
            assert!(answer["ok"].is_boolean());
            assert_eq!(answer["ok"], answer["net"].is_string());
            // A total only when nothing was refused; a refusal always names a field.
            let errors = answer["errors"].as_object().map_or(0, |e| e.len());
            assert_eq!(answer["ok"].as_bool() == Some(true), errors == 0);
            assert_eq!(status.as_u16() == 200, errors == 0);
        }
        for license_type in [LicenseType::Standard, LicenseType::Engineering] {
            let mut entered = entered.clone();
            if license_type == LicenseType::Engineering {
                entered.protection = "engineering".into();
            }
            evaluate(&entered, license_type, None, de);
        }
        for current in current_licenses() {
            evaluate(&entered, LicenseType::Standard, Some(current), de);
        }
    }
}

fn evaluate(
    entered: &shop::Entered,
    license_type: LicenseType,
    current: Option<&Entitlements>,
    de: bool,
) {
    match shop::evaluate(prices(), entered, license_type, current, de) {
        Ok(priced) => {
            assert!(priced.net >= Decimal::ZERO);
            assert_eq!(priced.gross, priced.net + priced.vat);
            assert!(priced.entitlements.covers(&priced.added));
            if let Some(current) = current {
                assert!(priced.entitlements.covers(current));
            }
            // What is stored with the quote reads back as the same amounts.
            let summary = shop::summarize(&priced, &entered.licensee.country);
            for (text, amount) in [
                (&summary.net, priced.net),
                (&summary.vat, priced.vat),
                (&summary.gross, priced.gross),
            ] {
                assert_eq!(text.parse::<Decimal>().ok(), Some(amount.normalize()));
            }
            let view = views::SummaryView::build(&summary, &priced.entitlements, current, de);
            assert_eq!(view.positions.len(), priced.positions.len());
        }
        Err(refused) => {
            let (errors, _) = *refused;
            assert!(!errors.is_empty(), "a refused order form names its errors");
        }
    }
}

/// Registration, login, password reset, the license edit form and the admin
/// forms.
fn account_forms(form: &Form) {
    for lang in [Lang::De, Lang::En] {
        let (values, errors) = auth::register_form(form, lang.t());
        assert_eq!(errors.email.is_none(), auth::valid_email(&values.email));
        let pw = form.raw("password");
        assert_eq!(errors.password.is_none(), password::meets_rule(pw));
        assert_eq!(errors.password2.is_none(), pw == form.raw("password2"));
        let (data, errors) = license::license_data_form(form, lang.is_de());
        for (field, value) in [
            ("data_name", &data.name),
            ("data_postcode", &data.postcode),
            ("data_city", &data.city),
        ] {
            let bad = value.is_empty() || value.chars().count() > 200;
            assert_eq!(errors.contains_key(field), bad);
        }
    }
    let _ = normalize_email(form.get("email"));
    for field in ["next", "back"] {
        // Every redirect target named by a client stays on the site, as a browser
        // resolves it (tabs and line breaks dropped, `\` read as `/`).
        let target = web::input::redirect_target(form.raw(field), "/licenses");
        let base = url::Url::parse("https://portal.example/licenses").expect("base parses");
        let resolved = base.join(target).expect("a local path resolves");
        assert_eq!(resolved.host_str(), Some("portal.example"), "{target:?}");
        assert!(warp::http::HeaderValue::from_str(target).is_ok());
        // `login_first` puts the page asked for into `/login?next=`.
        let raw = form.raw(field);
        let encoded = answers::urlencode(raw);
        assert!(encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~/%".contains(&b)));
        let decoded: Vec<(String, String)> =
            serde_urlencoded::from_str(&format!("next={encoded}")).expect("next decodes");
        assert_eq!(decoded, [("next".to_owned(), raw.to_owned())]);
    }
    if let Ok(serial) = form.get("serial").parse::<DongleSerial>() {
        assert_eq!(
            serial.to_string().parse::<DongleSerial>().ok(),
            Some(serial)
        );
    }
    if let Ok(number) = form.get("license").parse::<LicenseNumber>() {
        assert_eq!(number.as_str().parse::<LicenseNumber>().ok(), Some(number));
    }
}

/// The `Cookie` and `Accept-Language` headers.
fn headers(text: &str) {
    for name in [
        session::SESSION_COOKIE,
        session::LANG_COOKIE,
        session::ANON_COOKIE,
    ] {
        if let Some(value) = session::read_cookie(Some(text), name) {
            assert!(!value.contains(';'));
            assert!(text.contains(value));
        }
    }
    let _ = Lang::from_accept_language(text);
    if let Some(lang) = Lang::from_code(text) {
        assert_eq!(Lang::from_code(lang.code()), Some(lang));
    }
}
