//! The cheapest combination of packages covering an amount (unbounded min-cost
//! cover, solved by dynamic programming).
//!
//! Package sizes are divided by their greatest common divisor first, so the table
//! has at most `maximum / gcd` entries (200 for SAIA PCD's 200,000 in steps of
//! 1,000). Among equally cheap combinations the one covering more wins (better for
//! the customer), then the one with fewer packages.

/// One package kind: size in data points and price in cents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Package {
    pub size: u32,
    pub cents: i64,
}

/// The chosen packages: `(index into the package slice, count)`, ascending by
/// index, plus totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cover {
    pub counts: Vec<(usize, u32)>,
    pub covered: u64,
    pub cents: i64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Cheapest cover of `amount`. `None` if there are no usable packages and the
/// amount is above zero.
pub fn cheapest(packages: &[Package], amount: u64) -> Option<Cover> {
    if amount == 0 {
        return Some(Cover {
            counts: Vec::new(),
            covered: 0,
            cents: 0,
        });
    }
    let usable: Vec<usize> = (0..packages.len())
        .filter(|&i| packages[i].size > 0)
        .collect();
    let g = usable
        .iter()
        .fold(0u64, |g, &i| gcd(g, u64::from(packages[i].size)));
    if g == 0 {
        return None;
    }
    let target = amount.div_ceil(g) as usize;
    // best[t] = (cents, covered units, package count, choice) for covering >= t units.
    let mut best: Vec<(i64, u64, u32, usize)> = Vec::with_capacity(target + 1);
    best.push((0, 0, 0, usize::MAX));
    for t in 1..=target {
        let mut cur: Option<(i64, u64, u32, usize)> = None;
        for &i in &usable {
            let units = u64::from(packages[i].size) / g;
            let rest = t.saturating_sub(units as usize);
            let (c, cov, n, _) = best[rest];
            let cand = (c + packages[i].cents, cov + units, n + 1, i);
            let better = match cur {
                None => true,
                Some((bc, bcov, bn, _)) => {
                    (cand.0, std::cmp::Reverse(cand.1), cand.2) < (bc, std::cmp::Reverse(bcov), bn)
                }
            };
            if better {
                cur = Some(cand);
            }
        }
        best.push(cur?);
    }
    let mut counts = vec![0u32; packages.len()];
    let mut t = target;
    while t > 0 {
        let i = best[t].3;
        counts[i] += 1;
        t = t.saturating_sub((u64::from(packages[i].size) / g) as usize);
    }
    let (cents, units, _, _) = best[target];
    Some(Cover {
        counts: counts
            .into_iter()
            .enumerate()
            .filter(|(_, c)| *c > 0)
            .collect(),
        covered: units * g,
        cents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saia() -> Vec<Package> {
        [
            (1000, 25_000),
            (5000, 50_000),
            (10_000, 80_000),
            (50_000, 300_000),
            (100_000, 500_000),
        ]
        .into_iter()
        .map(|(size, cents)| Package { size, cents })
        .collect()
    }

    #[test]
    fn saia_6000_is_5000_plus_1000_for_750() {
        let c = cheapest(&saia(), 6000).expect("cover");
        assert_eq!(c.counts, vec![(0, 1), (1, 1)]);
        assert_eq!(c.covered, 6000);
        assert_eq!(c.cents, 75_000);
    }

    #[test]
    fn a_bigger_package_wins_when_cheaper() {
        // 4 x 1000 = 1000 EUR, but 5000 = 500 EUR.
        let c = cheapest(&saia(), 4000).expect("cover");
        assert_eq!(c.counts, vec![(1, 1)]);
        assert_eq!(c.cents, 50_000);
        // 100,000 = 5000, cheaper than 2 x 50,000 = 6000.
        assert_eq!(cheapest(&saia(), 100_000).expect("cover").cents, 500_000);
        assert_eq!(cheapest(&saia(), 1).expect("cover").cents, 25_000);
    }

    #[test]
    fn zero_needs_nothing_and_no_packages_cannot_cover() {
        assert_eq!(cheapest(&saia(), 0).expect("cover").cents, 0);
        assert!(cheapest(&[], 5).is_none());
    }
}
