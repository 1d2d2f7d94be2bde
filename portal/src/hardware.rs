//! Hosts whose hardware changes (issue 19): when a check from an unknown
//! hardware ID moves the binding instead of being refused.
//!
//! A daemon sends, with activation and every check, the hashed facts its
//! hardware ID is made of ([`wire::facts`]); the store keeps those of the
//! bound host (table `host_facts`). A check from another hardware ID whose
//! facts differ from the bound host's in at most `tolerance` facts
//! (`[licensing] hardware_tolerance`, default 1) is the same computer with,
//! say, a replaced network card: the binding moves to the new ID
//! ([`HardwareChange::Rebind`]). Everything else stays the manual's strict
//! rule ("bound to another computer"):
//!
//! - a changed (or missing) machine-id is always another computer (a
//!   reinstalled or copied system);
//! - `tolerance = 0` never rebinds;
//! - a binding without stored facts (bound by a daemon older than issue 19)
//!   never rebinds.
//!
//! Cloning is not a loophole: after a rebind from ID A to ID B, for
//! [`CLONE_WINDOW_DAYS`] (the longest a host runs on without a successful
//! check) A itself and any further ID close to the facts are refused as
//! [`HardwareChange::Cloned`]: two copies of one computer that take turns get
//! one rebind, then the other copy is refused, and the vendor sees both in the
//! audit trail. After the window, a host whose hardware changed again (or
//! changed back) is rebound as before.

use keys::{HardwareId, UnixTime};
use wire::{FactKind, HardwareFacts};

/// The default of `[licensing] hardware_tolerance`: one fact may change.
pub const DEFAULT_TOLERANCE: u32 = 1;

/// How long after a rebind (or after the last clone refused) another host
/// close to the facts counts as a clone, in days: 30, the longest a host runs
/// on without a successful check (the daemon's 10 silent days and 20 with a
/// warning, manual chapter 10), so a copy that kept the old grant cannot
/// outwait its own grace period and then be rebound. Not a setting: shorter
/// would open that gap, longer would hold back a genuine second hardware
/// change. The rule, its tests, the audit text and README's "Hosts whose
/// hardware changes" all use this one value.
pub const CLONE_WINDOW_DAYS: u64 = 30;

/// [`CLONE_WINDOW_DAYS`] in seconds.
pub const CLONE_WINDOW_SECS: u64 = CLONE_WINDOW_DAYS * UnixTime::DAY;

/// The bound host as the store knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundHost {
    pub hardware_id: HardwareId,
    /// Its hashed facts, as last sent.
    pub facts: HardwareFacts,
    /// The last rebind to this host: when, and from which hardware ID.
    pub rebound: Option<(UnixTime, HardwareId)>,
    /// The last check refused as a clone: the clone window runs on from it,
    /// so a clone that keeps asking never outwaits it.
    pub clone_refused_at: Option<UnixTime>,
}

/// How many facts changed between the bound host's `bound` and a new host's
/// `new`; `None` if they are different computers whatever the tolerance (the
/// machine-id differs or is missing on either side).
///
/// Per kind of fact, a change is a fact removed, added or replaced: one
/// network card replaced is one change (not one removed plus one added), one
/// added or removed is one, two replaced are two.
pub fn fact_changes(bound: &HardwareFacts, new: &HardwareFacts) -> Option<u32> {
    let machine_ids = |f: &HardwareFacts| f.of(FactKind::MachineId).copied().collect::<Vec<_>>();
    let (a, b) = (machine_ids(bound), machine_ids(new));
    if a.is_empty() || a != b {
        return None;
    }
    let mut changes = 0u32;
    for kind in [FactKind::DmiUuid, FactKind::Cpu, FactKind::Mac] {
        let old: Vec<_> = bound.of(kind).collect();
        let new: Vec<_> = new.of(kind).collect();
        let removed = old.iter().filter(|h| !new.contains(h)).count();
        let added = new.iter().filter(|h| !old.contains(h)).count();
        changes += removed.max(added) as u32;
    }
    Some(changes)
}

/// What a check from `host` (not the bound host) with `facts` means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HardwareChange {
    /// The bound computer with changed hardware: move the binding to `host`.
    Rebind { changes: u32 },
    /// A second computer close to the binding shortly after a rebind: a clone.
    Cloned {
        /// The rebind that makes it a clone: when, from which ID to which.
        rebound_at: UnixTime,
        from: HardwareId,
        to: HardwareId,
    },
    /// Another computer: the manual's "bound to another computer".
    AnotherHost,
}

/// The rule (see the module doc).
pub fn decide(
    bound: &BoundHost,
    host: &HardwareId,
    facts: &HardwareFacts,
    tolerance: u32,
    now: UnixTime,
) -> HardwareChange {
    if tolerance == 0 || host == &bound.hardware_id {
        return HardwareChange::AnotherHost;
    }
    let close = fact_changes(&bound.facts, facts).filter(|n| *n <= tolerance);
    if let Some((at, from)) = &bound.rebound {
        let since = bound.clone_refused_at.map_or(*at, |c| c.max(*at));
        let recent = now.secs() < since.secs().saturating_add(CLONE_WINDOW_SECS);
        if recent && (host == from || close.is_some()) {
            return HardwareChange::Cloned {
                rebound_at: *at,
                from: from.clone(),
                to: bound.hardware_id.clone(),
            };
        }
    }
    match close {
        Some(changes) => HardwareChange::Rebind { changes },
        None => HardwareChange::AnotherHost,
    }
}

/// The text form of facts kept in the store: `kind:hex` words, space-separated.
pub fn facts_to_text(facts: &HardwareFacts) -> String {
    facts
        .0
        .iter()
        .map(|f| format!("{}:{}", f.kind.name(), hex::encode(f.hash)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads [`facts_to_text`]'s form; `None` if it is damaged.
pub fn facts_from_text(text: &str) -> Option<HardwareFacts> {
    let mut out = vec![];
    for word in text.split_whitespace() {
        let (kind, hash) = word.split_once(':')?;
        let kind = FactKind::from_name(kind)?;
        let hash: [u8; 32] = hex::decode(hash).ok()?.try_into().ok()?;
        out.push(wire::FactHash { kind, hash });
    }
    Some(HardwareFacts::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(lines: &[&str]) -> HardwareFacts {
        HardwareFacts::from_lines(lines)
    }

    fn pc() -> Vec<&'static str> {
        vec![
            "machine-id=11111111111111111111111111111111",
            "dmi-uuid=4c4c4544-0042-3510",
            "cpu=Intel(R) Core(TM) i5",
            "mac=00:11:22:33:44:01",
            "mac=00:11:22:33:44:02",
        ]
    }

    fn with(replace: &[(&str, &'static str)]) -> HardwareFacts {
        let mut lines = pc();
        for (old, new) in replace {
            match lines.iter().position(|l| l == old) {
                Some(i) if new.is_empty() => {
                    lines.remove(i);
                }
                Some(i) => lines[i] = new,
                None => lines.push(new),
            }
        }
        facts(&lines)
    }

    fn id(n: u8) -> HardwareId {
        HardwareId::from_bytes([n; 16])
    }

    fn bound() -> BoundHost {
        BoundHost {
            hardware_id: id(1),
            facts: facts(&pc()),
            rebound: None,
            clone_refused_at: None,
        }
    }

    const NOW: UnixTime = UnixTime(1_800_000_000);

    #[test]
    fn changes_are_counted_per_fact_and_a_replaced_card_is_one() {
        let base = facts(&pc());
        assert_eq!(fact_changes(&base, &base), Some(0));
        let one_mac = with(&[("mac=00:11:22:33:44:02", "mac=00:11:22:33:44:99")]);
        assert_eq!(fact_changes(&base, &one_mac), Some(1));
        let added = with(&[("", "mac=00:11:22:33:44:03")]);
        assert_eq!(fact_changes(&base, &added), Some(1));
        let removed = with(&[("mac=00:11:22:33:44:01", "")]);
        assert_eq!(fact_changes(&base, &removed), Some(1));
        let two = with(&[
            ("mac=00:11:22:33:44:02", "mac=00:11:22:33:44:99"),
            ("dmi-uuid=4c4c4544-0042-3510", "dmi-uuid=ffff"),
        ]);
        assert_eq!(fact_changes(&base, &two), Some(2));
        let both_macs = with(&[
            ("mac=00:11:22:33:44:01", "mac=00:11:22:33:44:98"),
            ("mac=00:11:22:33:44:02", "mac=00:11:22:33:44:99"),
        ]);
        assert_eq!(fact_changes(&base, &both_macs), Some(2));
    }

    #[test]
    fn a_changed_or_missing_machine_id_is_always_another_computer() {
        let base = facts(&pc());
        let other_os = with(&[(
            "machine-id=11111111111111111111111111111111",
            "machine-id=22222222222222222222222222222222",
        )]);
        assert_eq!(fact_changes(&base, &other_os), None);
        assert_eq!(
            decide(&bound(), &id(2), &other_os, 5, NOW),
            HardwareChange::AnotherHost
        );
        let no_id = with(&[("machine-id=11111111111111111111111111111111", "")]);
        assert_eq!(fact_changes(&base, &no_id), None);
        assert_eq!(fact_changes(&no_id, &base), None);
        // A binding without facts (an older daemon) never rebinds.
        let old_daemon = BoundHost {
            facts: HardwareFacts::default(),
            ..bound()
        };
        assert_eq!(
            decide(&old_daemon, &id(2), &base, 1, NOW),
            HardwareChange::AnotherHost
        );
    }

    #[test]
    fn one_change_rebinds_two_do_not_and_zero_tolerance_is_strict() {
        let one_mac = with(&[("mac=00:11:22:33:44:02", "mac=00:11:22:33:44:99")]);
        assert_eq!(
            decide(&bound(), &id(2), &one_mac, 1, NOW),
            HardwareChange::Rebind { changes: 1 }
        );
        let two = with(&[
            ("mac=00:11:22:33:44:02", "mac=00:11:22:33:44:99"),
            ("cpu=Intel(R) Core(TM) i5", "cpu=AMD Ryzen 7"),
        ]);
        assert_eq!(
            decide(&bound(), &id(2), &two, 1, NOW),
            HardwareChange::AnotherHost
        );
        assert_eq!(
            decide(&bound(), &id(2), &two, 2, NOW),
            HardwareChange::Rebind { changes: 2 }
        );
        assert_eq!(
            decide(&bound(), &id(2), &one_mac, 0, NOW),
            HardwareChange::AnotherHost,
            "tolerance 0: the manual's strict rule"
        );
    }

    #[test]
    fn after_a_rebind_the_old_id_and_a_third_close_one_are_clones_within_the_window() {
        // Rebound from 1 to 2 at NOW.
        let after = BoundHost {
            hardware_id: id(2),
            facts: with(&[("mac=00:11:22:33:44:02", "mac=00:11:22:33:44:99")]),
            rebound: Some((NOW, id(1))),
            clone_refused_at: None,
        };
        let cloned = HardwareChange::Cloned {
            rebound_at: NOW,
            from: id(1),
            to: id(2),
        };
        let day = |d: u64| NOW.plus_days(d);
        // The old host (its facts one change away) checks again: a clone.
        assert_eq!(decide(&after, &id(1), &facts(&pc()), 1, day(1)), cloned);
        // Even without facts close to the binding, the old ID is a clone.
        let far = with(&[
            ("mac=00:11:22:33:44:01", "mac=00:11:22:33:44:98"),
            ("cpu=Intel(R) Core(TM) i5", "cpu=AMD Ryzen 7"),
        ]);
        assert_eq!(decide(&after, &id(1), &far, 1, day(1)), cloned);
        // A third ID close to the (moved) facts: a clone too.
        let third = with(&[
            ("mac=00:11:22:33:44:02", "mac=00:11:22:33:44:99"),
            ("mac=00:11:22:33:44:01", "mac=00:11:22:33:44:77"),
        ]);
        assert_eq!(
            decide(&after, &id(3), &third, 1, day(CLONE_WINDOW_DAYS - 1)),
            HardwareChange::Cloned {
                rebound_at: NOW,
                from: id(1),
                to: id(2),
            }
        );
        // Not close and not the old ID: simply another computer.
        assert_eq!(
            decide(&after, &id(3), &far, 1, day(2)),
            HardwareChange::AnotherHost
        );
        // The window's last second, then after it the hardware may change
        // (back) again.
        assert_eq!(
            decide(
                &after,
                &id(1),
                &facts(&pc()),
                1,
                NOW.plus_secs(CLONE_WINDOW_SECS - 1)
            ),
            cloned
        );
        assert_eq!(
            decide(&after, &id(1), &facts(&pc()), 1, day(CLONE_WINDOW_DAYS)),
            HardwareChange::Rebind { changes: 1 }
        );
        // But a clone that keeps asking keeps the window open.
        let still_asking = BoundHost {
            clone_refused_at: Some(day(29)),
            ..after
        };
        assert_eq!(
            decide(
                &still_asking,
                &id(1),
                &facts(&pc()),
                1,
                day(29 + CLONE_WINDOW_DAYS - 1)
            ),
            cloned
        );
        assert_eq!(
            decide(
                &still_asking,
                &id(1),
                &facts(&pc()),
                1,
                day(29 + CLONE_WINDOW_DAYS)
            ),
            HardwareChange::Rebind { changes: 1 }
        );
    }

    #[test]
    fn facts_survive_their_text_form_and_damage_is_noticed() {
        let f = facts(&pc());
        let text = facts_to_text(&f);
        assert!(text.starts_with("machine-id:"), "{text}");
        assert_eq!(facts_from_text(&text), Some(f));
        assert_eq!(facts_from_text(""), Some(HardwareFacts::default()));
        assert_eq!(facts_from_text("mac:zz"), None);
        assert_eq!(facts_from_text("disk:00"), None);
    }
}
