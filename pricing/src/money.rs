//! Money and counts as people read them: German `7.150,00 €`, English `€7,150.00`.

use rust_decimal::{Decimal, RoundingStrategy};

fn group(int: &str, sep: char) -> String {
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

/// An amount in euros with two decimals.
pub fn eur(amount: Decimal, german: bool) -> String {
    let rounded = amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    let negative = rounded.is_sign_negative() && !rounded.is_zero();
    let text = format!("{:.2}", rounded.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, "00"));
    let sign = if negative { "-" } else { "" };
    if german {
        format!("{sign}{},{frac} €", group(int, '.'))
    } else {
        format!("{sign}€{}.{frac}", group(int, ','))
    }
}

/// A whole number with thousands separators (`6.100` / `6,100`).
pub fn count(n: u64, german: bool) -> String {
    group(&n.to_string(), if german { '.' } else { ',' })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn german_and_english_formats() {
        assert_eq!(eur(dec!(7150), true), "7.150,00 €");
        assert_eq!(eur(dec!(1358.5), true), "1.358,50 €");
        assert_eq!(eur(dec!(8508.50), false), "€8,508.50");
        assert_eq!(eur(dec!(0), true), "0,00 €");
        assert_eq!(eur(dec!(1234567.891), false), "€1,234,567.89");
        assert_eq!(count(200_000, true), "200.000");
        assert_eq!(count(6100, false), "6,100");
        assert_eq!(count(100, false), "100");
    }
}
