//! Table-driven walks through simulated days for every license type, dongle
//! removal and return, restarts in every phase and clock-rollback attempts.

use super::*;
use keys::grant::GRANT_FORMAT;
use keys::{LicenseData, LicenseNumber, LicenseType, Signed, SigningKeyPair, TrustedKeys};

const T0: UnixTime = UnixTime(1_800_000_000);
const H: u64 = UnixTime::HOUR;
const D: u64 = UnixTime::DAY;

fn key() -> SigningKeyPair {
    SigningKeyPair::from_seed(&[42u8; 32])
}
fn trusted() -> TrustedKeys {
    TrustedKeys::with([key().public()])
}
fn number() -> LicenseNumber {
    LicenseNumber::from_body(192_190_001).expect("number")
}
fn hwid() -> HardwareId {
    "502c649d1171ad2e8705074ce97791db".parse().expect("hwid")
}
fn serial() -> DongleSerial {
    "DG-0001".parse().expect("serial")
}

fn grant(protection: Protection, serial_no: u64) -> Verified<LicenseGrant> {
    let k = key();
    let (license_type, entitlements, valid_until, binding) = match protection {
        Protection::Engineering => (
            LicenseType::Engineering,
            Entitlements::engineering(),
            Some(T0.plus_days(3 * 365)),
            Binding::HardwareId(hwid()),
        ),
        Protection::SoftDongle => (
            LicenseType::Standard,
            Entitlements::standard_base(),
            None,
            Binding::HardwareId(hwid()),
        ),
        Protection::HardDongle => (
            LicenseType::Standard,
            Entitlements::standard_base(),
            None,
            Binding::DongleSerial(serial()),
        ),
    };
    let g = LicenseGrant {
        format: GRANT_FORMAT,
        license_number: number(),
        license_type,
        protection,
        license_data: LicenseData {
            name: "Muster AG".into(),
            postcode: "3000".into(),
            city: "Bern".into(),
        },
        binding,
        entitlements,
        issued_at: T0,
        valid_until,
        serial: serial_no,
        key_id: k.key_id(),
    };
    trusted()
        .verify(&Signed::sign(&g, &k))
        .expect("verify grant")
}

fn receipt(nonce: Nonce, server_time: UnixTime) -> Verified<CheckReceipt> {
    let r = CheckReceipt {
        license_number: number(),
        hardware_id: hwid(),
        nonce,
        server_time,
        next_check_due: server_time.plus_secs(D),
        current_serial: 1,
    };
    trusted()
        .verify(&Signed::sign(&r, &key()))
        .expect("verify receipt")
}

fn refusal(nonce: Nonce, reason: RefusalReason, at: UnixTime) -> Verified<Refusal> {
    let r = Refusal {
        reason,
        license_number: number(),
        hardware_id: hwid(),
        nonce,
        server_time: at,
    };
    trusted()
        .verify(&Signed::sign(&r, &key()))
        .expect("verify refusal")
}

/// A simulated host: wall clock and monotonic time move together unless a test
/// sets the wall clock on its own.
struct Host {
    m: LicenseMachine,
    boot: String,
    wall: UnixTime,
    mono: u64,
    outputs: Vec<Output>,
}

impl Host {
    /// A soft-dongle or engineering host activated at T0.
    fn activated(protection: Protection) -> Host {
        let (m, _) = LicenseMachine::start(
            hwid(),
            Persisted::default(),
            "boot-1",
            Now {
                wall: T0,
                since_start: 0,
            },
        );
        let mut h = Host {
            m,
            boot: "boot-1".into(),
            wall: T0,
            mono: 0,
            outputs: Vec::new(),
        };
        let n = Nonce::random();
        h.input(Input::CheckSucceeded {
            nonce: n,
            receipt: receipt(n, T0),
            grant: Some(grant(protection, 1)),
        });
        h
    }

    /// A hard-dongle host with lic/promos.json and the dongle plugged in.
    fn hard() -> Host {
        let (m, _) = LicenseMachine::start(
            hwid(),
            Persisted::default(),
            "boot-1",
            Now {
                wall: T0,
                since_start: 0,
            },
        );
        let mut h = Host {
            m,
            boot: "boot-1".into(),
            wall: T0,
            mono: 0,
            outputs: Vec::new(),
        };
        h.input(Input::ProjectScan(ProjectScan {
            promos_json: Some(Ok(grant(Protection::HardDongle, 1))),
            other_json: vec![],
        }));
        h.input(Input::DongleScan(vec![serial()]));
        h
    }

    fn now(&self) -> Now {
        Now {
            wall: self.wall,
            since_start: self.mono,
        }
    }

    fn input(&mut self, i: Input) {
        let now = self.now();
        let out = self.m.handle(i, now);
        self.outputs.extend(out);
    }

    /// Real time passes.
    fn advance(&mut self, secs: u64) {
        self.wall = self.wall.plus_secs(secs);
        self.mono += secs;
        self.input(Input::Tick);
    }

    fn advance_to(&mut self, t: UnixTime) {
        let secs = t.since(self.wall);
        self.advance(secs);
    }

    /// Someone sets the wall clock (monotonic time does not move).
    fn set_wall(&mut self, t: UnixTime) {
        self.wall = t;
        self.input(Input::Tick);
    }

    fn check_ok(&mut self) {
        let n = Nonce::random();
        let r = receipt(n, self.wall);
        self.input(Input::CheckSucceeded {
            nonce: n,
            receipt: r,
            grant: None,
        });
    }

    fn check_fails(&mut self) {
        self.input(Input::CheckFailed {
            reason: "no network".into(),
        });
    }

    /// The daemon restarts: state from what it persisted, monotonic time from 0.
    fn restart(&mut self) {
        let p = self.m.persisted();
        let file = self.m.file.clone();
        let dongles = self.m.dongles.clone();
        let (m, out) = LicenseMachine::start(
            hwid(),
            p,
            &self.boot,
            Now {
                wall: self.wall,
                since_start: 0,
            },
        );
        self.m = m;
        self.mono = 0;
        self.outputs = out;
        if let Some(f) = file {
            self.input(Input::ProjectScan(ProjectScan {
                promos_json: Some(f),
                other_json: vec![],
            }));
        }
        self.input(Input::DongleScan(dongles));
    }

    fn decide(&mut self) -> Decision {
        let now = self.now();
        self.m.decide(now)
    }

    fn phase(&mut self) -> Phase {
        self.decide().phase
    }

    fn notices(&mut self) -> Vec<Event> {
        let n = self
            .outputs
            .iter()
            .filter_map(|o| match o {
                Output::Notify(n) => Some(n.clone()),
                Output::CheckNow => None,
            })
            .collect();
        self.outputs.clear();
        n
    }
}

fn day(d: u64) -> UnixTime {
    T0.plus_days(d)
}

/// The soft-dongle offline rule, day by day, for a runtime that keeps running.
#[test]
fn soft_dongle_server_gone_runtime_keeps_running_days_0_to_40() {
    let mut h = Host::activated(Protection::SoftDongle);
    h.input(Input::RuntimeStarted);
    for d in 0..=40u64 {
        h.advance_to(day(d).plus_secs(12 * H));
        h.check_fails();
        let dec = h.decide();
        let (phase, warn, stop) = match d {
            0..=9 => (Phase::Licensed, false, None),
            10..=29 => (Phase::ServerUnreachable, true, Some(day(30))),
            _ => (Phase::Stopped, false, Some(day(30))),
        };
        assert_eq!(
            (dec.phase, dec.warning.is_some(), dec.stop_at),
            (phase, warn, stop),
            "day {d}"
        );
        assert_eq!(dec.licensed, d < 30, "day {d}");
        assert_eq!(dec.entitlements.is_some(), d < 30, "day {d}");
        if warn {
            let w = dec.warning.expect("warning");
            assert!(w.en.contains("license server is not available"), "{}", w.en);
            assert!(
                w.de.contains("Lizenzserver ist nicht erreichbar"),
                "{}",
                w.de
            );
        }
    }
}

/// The same, but ProMoS and the daemon restart every day: after day 30 every
/// start gets 1 hour.
#[test]
fn soft_dongle_server_gone_restarts_every_day_get_one_hour_after_day_30() {
    let mut h = Host::activated(Protection::SoftDongle);
    for d in 0..=40u64 {
        h.advance_to(day(d).plus_secs(8 * H));
        h.input(Input::RuntimeStopped);
        h.restart();
        h.check_fails();
        h.input(Input::RuntimeStarted);
        let dec = h.decide();
        match d {
            0..=9 => assert_eq!((dec.phase, dec.stop_at), (Phase::Licensed, None), "day {d}"),
            10..=29 => assert_eq!(
                (dec.phase, dec.stop_at),
                (Phase::ServerUnreachable, Some(day(30))),
                "day {d}"
            ),
            _ => {
                let start = day(d).plus_secs(8 * H);
                assert_eq!(
                    (dec.phase, dec.stop_at),
                    (Phase::OfflineStartHour, Some(start.plus_secs(H))),
                    "day {d}"
                );
                assert!(dec.licensed);
                h.advance(H - 1);
                assert_eq!(
                    h.phase(),
                    Phase::OfflineStartHour,
                    "day {d}, 1 s before the hour"
                );
                h.advance(1);
                assert_eq!(h.phase(), Phase::Stopped, "day {d}, the hour is over");
                assert!(!h.decide().licensed);
            }
        }
    }
}

#[test]
fn one_successful_check_restores_in_every_phase() {
    for d in [3u64, 12, 29, 30, 33, 40] {
        let mut h = Host::activated(Protection::SoftDongle);
        h.input(Input::RuntimeStarted);
        h.advance_to(day(d).plus_secs(H));
        h.check_fails();
        h.notices();
        h.check_ok();
        let dec = h.decide();
        assert_eq!(
            (dec.phase, dec.licensed, dec.stop_at, dec.warning),
            (Phase::Licensed, true, None, None),
            "day {d}"
        );
        if d >= 30 {
            assert_eq!(h.notices(), vec![Event::LicenseRestored], "day {d}");
        }
        // And the periods count from the new check.
        h.advance(10 * D - 1);
        assert_eq!(h.phase(), Phase::Licensed);
        h.advance(1);
        assert_eq!(h.phase(), Phase::ServerUnreachable);
    }
}

#[test]
fn daily_checks_keep_a_soft_dongle_licensed_for_40_days_and_checks_are_due_daily() {
    let mut h = Host::activated(Protection::SoftDongle);
    h.input(Input::RuntimeStarted);
    for d in 1..=40u64 {
        h.outputs.clear();
        h.advance_to(day(d));
        assert!(
            h.outputs.contains(&Output::CheckNow),
            "a check is due on day {d}"
        );
        h.check_ok();
        assert_eq!(h.phase(), Phase::Licensed, "day {d}");
        assert_eq!(h.m.next_check_at(), Some(day(d + 1)));
    }
}

#[test]
fn failed_checks_are_retried_with_growing_waits_up_to_an_hour() {
    let mut h = Host::activated(Protection::SoftDongle);
    h.advance_to(day(1));
    let mut waits = Vec::new();
    for _ in 0..9 {
        h.check_fails();
        let next = h.m.next_check_at().expect("online");
        waits.push(next.since(h.m.high_water()));
        h.advance_to(next);
    }
    assert_eq!(waits, vec![60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
}

#[test]
fn a_refusal_ends_the_license_at_once_and_a_later_check_restores_it() {
    for reason in [
        RefusalReason::LicenseWasReset,
        RefusalReason::BoundToAnotherHost,
        RefusalReason::Expired,
    ] {
        let mut h = Host::activated(Protection::SoftDongle);
        h.input(Input::RuntimeStarted);
        h.advance_to(day(5));
        h.notices();
        let n = Nonce::random();
        h.input(Input::Refused {
            nonce: n,
            refusal: refusal(n, reason, day(5)),
        });
        let dec = h.decide();
        assert!(!dec.licensed, "{reason:?}");
        assert_eq!(dec.reason_code, reason.key());
        assert_eq!(dec.reason.de, reason.message(true));
        assert!(
            matches!(h.notices().as_slice(), [Event::LicenseEnded { .. }]),
            "{reason:?}"
        );
        // Survives a restart.
        h.restart();
        assert!(!h.decide().licensed);
        h.check_ok();
        assert!(h.decide().licensed);
    }
}

/// Found by the power-cut test: a refused host (reset) is activated again
/// while a check it sent before is still out; that check's refusal, in the
/// same second as the activation's receipt, must not end the new binding.
#[test]
fn the_answer_to_a_check_sent_before_an_activation_changes_nothing() {
    let mut h = Host::activated(Protection::SoftDongle);
    h.advance_to(day(1));
    let n = Nonce::random();
    h.input(Input::Refused {
        nonce: n,
        refusal: refusal(n, RefusalReason::LicenseWasReset, day(1)),
    });
    assert!(!h.decide().licensed);
    let (before, answered_ok) = (Nonce::random(), Nonce::random());
    h.input(Input::CheckSent { nonce: before });
    h.input(Input::CheckSent { nonce: answered_ok });
    let a = Nonce::random();
    h.input(Input::Activated {
        nonce: a,
        receipt: receipt(a, day(1)),
        grant: grant(Protection::SoftDongle, 2),
    });
    assert!(h.decide().licensed);
    assert!(
        h.m.persisted().pending.is_empty(),
        "stale checks are not waited for"
    );
    h.input(Input::Refused {
        nonce: before,
        refusal: refusal(before, RefusalReason::LicenseWasReset, day(1)),
    });
    assert!(h.decide().licensed, "a stale refusal ended the new binding");
    assert!(h.m.persisted().refusal.is_none());
    // Nor when it comes late, through a peer.
    h.input(Input::LateRefusal {
        refusal: refusal(answered_ok, RefusalReason::LicenseWasReset, day(1)),
    });
    assert!(h.decide().licensed);
    // A check sent after the activation is answered as always.
    let after = Nonce::random();
    h.input(Input::CheckSent { nonce: after });
    h.input(Input::Refused {
        nonce: after,
        refusal: refusal(after, RefusalReason::LicenseWasReset, day(1)),
    });
    assert!(!h.decide().licensed);
}

#[test]
fn answers_for_another_request_or_host_are_ignored() {
    let mut h = Host::activated(Protection::SoftDongle);
    h.advance_to(day(12));
    // A replayed receipt (wrong nonce) does not restore anything.
    let old = receipt(Nonce([1; 16]), day(12));
    h.input(Input::CheckSucceeded {
        nonce: Nonce([2; 16]),
        receipt: old,
        grant: None,
    });
    assert_eq!(h.phase(), Phase::ServerUnreachable);
    // Nor does a refusal for another request end the license.
    let r = refusal(Nonce([3; 16]), RefusalReason::LicenseWasReset, day(12));
    h.input(Input::Refused {
        nonce: Nonce([4; 16]),
        refusal: r,
    });
    assert!(h.decide().licensed);
}

#[test]
fn engineering_runs_24_hours_per_start_and_ends_after_3_years() {
    let mut h = Host::activated(Protection::Engineering);
    h.input(Input::RuntimeStarted);
    let start = h.wall;
    for hour in 0..=30u64 {
        h.advance_to(start.plus_secs(hour * H));
        h.check_ok();
        let dec = h.decide();
        if hour < 24 {
            assert_eq!(
                (dec.phase, dec.stop_at),
                (Phase::Licensed, Some(start.plus_secs(24 * H))),
                "hour {hour}"
            );
            assert_eq!(dec.entitlements, Some(Entitlements::engineering()));
        } else {
            assert_eq!(
                (dec.phase, dec.reason_code),
                (Phase::Stopped, "engineering_run_over"),
                "hour {hour}"
            );
        }
    }
    // A new start gets 24 hours again.
    h.input(Input::RuntimeStopped);
    h.input(Input::RuntimeStarted);
    assert_eq!(h.phase(), Phase::Licensed);
    // Walking days 0..40 with daily restarts and checks: always licensed.
    for d in 2..=40u64 {
        h.advance_to(day(d));
        h.input(Input::RuntimeStopped);
        h.restart();
        h.check_ok();
        h.input(Input::RuntimeStarted);
        assert_eq!(h.phase(), Phase::Licensed, "day {d}");
    }
    // The offline rule applies too.
    h.advance_to(day(40 + 10).plus_secs(60));
    h.input(Input::RuntimeStopped);
    h.input(Input::RuntimeStarted);
    assert_eq!(h.phase(), Phase::ServerUnreachable);
    // Validity: 3 years from activation.
    let end = T0.plus_days(3 * 365);
    h.advance_to(end);
    h.check_ok();
    h.input(Input::RuntimeStopped);
    h.input(Input::RuntimeStarted);
    let dec = h.decide();
    assert_eq!((dec.phase, dec.reason_code), (Phase::Expired, "expired"));
    assert!(!dec.licensed);
}

#[test]
fn engineering_stop_is_the_earliest_of_run_end_grace_end_and_validity() {
    let mut h = Host::activated(Protection::Engineering);
    h.advance_to(day(29).plus_secs(12 * H));
    h.check_fails();
    h.input(Input::RuntimeStarted);
    let dec = h.decide();
    assert_eq!(
        (dec.phase, dec.stop_at),
        (Phase::ServerUnreachable, Some(day(30)))
    );
}

#[test]
fn hard_dongle_days_0_to_40_without_any_network() {
    let mut h = Host::hard();
    h.input(Input::RuntimeStarted);
    for d in 0..=40u64 {
        h.advance_to(day(d));
        h.input(Input::DongleScan(vec![serial()]));
        let dec = h.decide();
        assert_eq!(
            (dec.phase, dec.licensed, dec.stop_at),
            (Phase::Licensed, true, None),
            "day {d}"
        );
        assert!(
            !h.outputs.contains(&Output::CheckNow),
            "no network for hard dongles"
        );
        assert_eq!(h.m.next_check_at(), None);
    }
}

#[test]
fn hard_dongle_removed_runs_one_more_hour_and_back_in_time_is_normal() {
    // (minutes after removal, plugged back in at that minute?, expected phase)
    let table: &[(u64, Option<u64>, Phase)] = &[
        (0, None, Phase::DongleRemoved),
        (30, None, Phase::DongleRemoved),
        (59, None, Phase::DongleRemoved),
        (61, None, Phase::DongleMissing),
        (120, None, Phase::DongleMissing),
        (45, Some(30), Phase::Licensed),
        (200, Some(59), Phase::Licensed),
        // Too late: the runtime had to stop at minute 60; with the dongle back a
        // new start is licensed normally.
        (90, Some(70), Phase::Licensed),
    ];
    for &(minute, back_at, expected) in table {
        let mut h = Host::hard();
        h.input(Input::RuntimeStarted);
        h.advance(3 * D);
        h.input(Input::DongleScan(vec![serial()]));
        let removed = h.wall;
        h.input(Input::DongleScan(vec![]));
        h.notices();
        if let Some(b) = back_at {
            h.advance_to(removed.plus_secs(b * 60));
            h.input(Input::DongleScan(vec![serial()]));
        }
        h.advance_to(removed.plus_secs(minute * 60));
        let dec = h.decide();
        assert_eq!(dec.phase, expected, "minute {minute}, back at {back_at:?}");
        if expected == Phase::DongleRemoved {
            assert_eq!(dec.stop_at, Some(removed.plus_secs(H)));
            assert!(dec.warning.expect("warning").en.contains("DG-0001"));
        }
    }
}

#[test]
fn hard_dongle_a_dongle_with_another_serial_does_not_count_and_restart_keeps_the_grace() {
    let mut h = Host::hard();
    h.advance(H);
    h.input(Input::DongleScan(vec!["DG-9999".parse().expect("serial")]));
    h.advance(30 * 60);
    assert_eq!(h.phase(), Phase::DongleRemoved);
    // A daemon restart inside the grace hour does not give a new hour.
    h.restart();
    h.input(Input::DongleScan(vec![]));
    assert_eq!(h.phase(), Phase::DongleRemoved);
    h.advance(31 * 60);
    assert_eq!(h.phase(), Phase::DongleMissing);
    // Starting without the dongle at all: not licensed.
    let (mut m, _) = LicenseMachine::start(
        hwid(),
        Persisted::default(),
        "boot-1",
        Now {
            wall: T0,
            since_start: 0,
        },
    );
    let now = Now {
        wall: T0,
        since_start: 0,
    };
    m.handle(
        Input::ProjectScan(ProjectScan {
            promos_json: Some(Ok(grant(Protection::HardDongle, 1))),
            other_json: vec![],
        }),
        now,
    );
    assert_eq!(m.decide(now).phase, Phase::DongleMissing);
}

#[test]
fn hard_dongle_invalid_or_wrong_kind_of_license_file() {
    let now = Now {
        wall: T0,
        since_start: 0,
    };
    let (mut m, _) = LicenseMachine::start(hwid(), Persisted::default(), "boot-1", now);
    m.handle(
        Input::ProjectScan(ProjectScan {
            promos_json: Some(Err("it was changed after download".into())),
            other_json: vec![],
        }),
        now,
    );
    let d = m.decide(now);
    assert_eq!(d.phase, Phase::InvalidLicenseFile);
    assert!(d.reason.en.contains("changed after download"));
    m.handle(
        Input::ProjectScan(ProjectScan {
            promos_json: Some(Ok(grant(Protection::SoftDongle, 1))),
            other_json: vec![],
        }),
        now,
    );
    assert_eq!(m.decide(now).reason_code, "not_a_dongle_license");
    m.handle(
        Input::ProjectScan(ProjectScan {
            promos_json: None,
            other_json: vec!["1921900012.json".into()],
        }),
        now,
    );
    let d = m.decide(now);
    assert_eq!(
        (d.phase, d.reason_code),
        (Phase::NotActivated, "license_file_misnamed")
    );
}

#[test]
fn soft_dongle_conflicts_get_a_diagnosis() {
    let mut h = Host::activated(Protection::SoftDongle);
    assert!(h.decide().diagnosis.is_empty());
    h.input(Input::DongleScan(vec![serial()]));
    let d = h.decide();
    assert!(d.licensed, "a conflict does not stop the plant by itself");
    assert_eq!(d.diagnosis.len(), 1);
    assert!(d.diagnosis[0]
        .en
        .contains("hardware dongle is plugged into a soft-dongle host"));
    assert_eq!(d.warning.as_ref(), Some(&d.diagnosis[0]));
    h.input(Input::DongleScan(vec![]));
    h.input(Input::ProjectScan(ProjectScan {
        promos_json: Some(Err("x".into())),
        other_json: vec!["1921900012.json".into()],
    }));
    let d = h.decide();
    assert_eq!(d.diagnosis.len(), 1);
    assert!(
        d.diagnosis[0].en.contains("promos.json, 1921900012.json"),
        "{}",
        d.diagnosis[0].en
    );
    assert!(d.diagnosis[0].de.contains("nur licinfo.cfg"));
    assert_eq!(
        d.phase,
        Phase::Licensed,
        "the online grant wins over a stray file"
    );
}

#[test]
fn notices_for_warning_stop_end_new_grant_and_restore() {
    let mut h = Host::activated(Protection::SoftDongle);
    h.input(Input::RuntimeStarted);
    h.notices();
    h.advance_to(day(10));
    let n = h.notices();
    assert!(
        n.iter().any(|n| matches!(n, Event::WarningBegins { .. })),
        "{n:?}"
    );
    assert!(
        n.contains(&Event::StopScheduled {
            at: day(30),
            at_text: day(30).to_string()
        }),
        "{n:?}"
    );
    h.advance_to(day(11));
    assert_eq!(h.notices(), vec![], "no repeats while nothing changes");
    h.advance_to(day(30));
    assert!(
        matches!(h.notices().as_slice(), [Event::LicenseEnded { reason_code, .. }] if reason_code == "server_unreachable_stop")
    );
    // Upgrade: a newer grant arrives with a check.
    let n = Nonce::random();
    let r = receipt(n, day(30));
    let mut better = grant(Protection::SoftDongle, 2).into_inner();
    better.entitlements.pwa_users = 5;
    let better = trusted()
        .verify(&Signed::sign(&better, &key()))
        .expect("verify");
    h.input(Input::CheckSucceeded {
        nonce: n,
        receipt: r,
        grant: Some(better),
    });
    let got = h.notices();
    assert!(got.contains(&Event::NewGrant { serial: 2 }), "{got:?}");
    assert!(got.contains(&Event::LicenseRestored), "{got:?}");
    assert_eq!(h.decide().entitlements.expect("licensed").pwa_users, 5);
    // An older grant never replaces a newer one.
    let n = Nonce::random();
    h.input(Input::CheckSucceeded {
        nonce: n,
        receipt: receipt(n, day(30)),
        grant: Some(grant(Protection::SoftDongle, 1)),
    });
    assert_eq!(h.m.grant().expect("grant").serial, 2);
}

// ----- clock rollback -----

#[test]
fn rollback_during_the_warning_period_does_not_extend_it() {
    let mut h = Host::activated(Protection::SoftDongle);
    h.input(Input::RuntimeStarted);
    h.advance_to(day(29));
    h.check_fails();
    assert_eq!(h.phase(), Phase::ServerUnreachable);
    h.set_wall(day(5));
    assert_eq!(
        h.phase(),
        Phase::ServerUnreachable,
        "setting the clock back changes nothing"
    );
    // A day of real (monotonic) time later the stop is reached although the wall
    // clock only says day 6.
    h.mono += D;
    h.wall = day(6);
    h.input(Input::Tick);
    assert_eq!(h.phase(), Phase::Stopped);
}

#[test]
fn rollback_across_a_restart_does_not_bring_back_the_silent_period() {
    let mut h = Host::activated(Protection::SoftDongle);
    h.advance_to(day(31));
    h.check_fails();
    h.restart();
    h.set_wall(day(2));
    h.check_fails();
    let d = h.decide();
    assert_eq!(
        d.phase,
        Phase::OfflineStartHour,
        "after the grace a start gets 1 hour, not 'licensed'"
    );
    assert!(d.now >= day(31));
    h.input(Input::RuntimeStarted);
    h.mono += H + 1;
    h.input(Input::Tick);
    assert_eq!(h.phase(), Phase::Stopped);
}

#[test]
fn rollback_during_a_one_hour_run_does_not_extend_it() {
    let mut h = Host::activated(Protection::SoftDongle);
    h.advance_to(day(32));
    h.check_fails();
    h.input(Input::RuntimeStarted);
    let stop = h.decide().stop_at.expect("stop");
    h.advance(30 * 60);
    h.set_wall(UnixTime(h.wall.secs() - 2 * H));
    assert_eq!(h.decide().stop_at, Some(stop));
    h.mono += 31 * 60;
    h.input(Input::Tick);
    assert_eq!(h.phase(), Phase::Stopped);
}

#[test]
fn rollback_during_a_24_hour_engineering_run_does_not_extend_it() {
    let mut h = Host::activated(Protection::Engineering);
    h.input(Input::RuntimeStarted);
    h.advance(20 * H);
    h.check_ok();
    h.set_wall(UnixTime(h.wall.secs() - 10 * H));
    h.mono += 4 * H + 1;
    h.input(Input::Tick);
    assert_eq!(h.decide().reason_code, "engineering_run_over");
}

#[test]
fn rollback_during_the_dongle_grace_hour_does_not_extend_it() {
    let mut h = Host::hard();
    h.advance(H);
    h.input(Input::DongleScan(vec![]));
    h.set_wall(T0);
    h.mono += H + 1;
    h.input(Input::Tick);
    assert_eq!(h.phase(), Phase::DongleMissing);
}

#[test]
fn receipts_from_the_future_are_refused_beyond_one_hour() {
    let mut h = Host::activated(Protection::SoftDongle);
    h.advance_to(day(12));
    // 2 hours ahead: refused, the clock is diagnosed, nothing restored.
    let n = Nonce::random();
    h.input(Input::CheckSucceeded {
        nonce: n,
        receipt: receipt(n, day(12).plus_secs(2 * H)),
        grant: None,
    });
    let d = h.decide();
    assert_eq!(d.phase, Phase::ServerUnreachable);
    assert!(h
        .m
        .last_failure()
        .expect("failure")
        .contains("more than 1 hour ahead"));
    assert!(
        d.diagnosis.iter().any(|t| t.en.contains("clock")),
        "{:?}",
        d.diagnosis
    );
    // 30 minutes ahead: accepted, and the high-water mark moves to the server's time.
    let n = Nonce::random();
    h.input(Input::CheckSucceeded {
        nonce: n,
        receipt: receipt(n, day(12).plus_secs(30 * 60)),
        grant: None,
    });
    assert_eq!(h.phase(), Phase::Licensed);
    assert_eq!(h.m.high_water(), day(12).plus_secs(30 * 60));
    assert!(h.decide().diagnosis.is_empty());
}

#[test]
fn time_keeper_never_goes_back_and_follows_monotonic_time() {
    let mut tk = TimeKeeper::start(
        UnixTime(1000),
        Now {
            wall: UnixTime(500),
            since_start: 0,
        },
    );
    assert_eq!(
        tk.effective(Now {
            wall: UnixTime(500),
            since_start: 0
        }),
        UnixTime(1000)
    );
    assert_eq!(
        tk.effective(Now {
            wall: UnixTime(500),
            since_start: 10
        }),
        UnixTime(1010)
    );
    assert_eq!(
        tk.effective(Now {
            wall: UnixTime(5000),
            since_start: 11
        }),
        UnixTime(5000)
    );
    assert_eq!(
        tk.effective(Now {
            wall: UnixTime(10),
            since_start: 12
        }),
        UnixTime(5000)
    );
    assert_eq!(tk.high_water(), UnixTime(5000));
}

mod rollback_properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Whatever anyone does to the wall clock, a soft-dongle runtime started
        /// right after the last check is never licensed once 30 days of real
        /// (monotonic) time have passed, and the effective time never runs behind
        /// real time or backwards.
        #[test]
        fn no_clock_setting_extends_the_grace_period(
            steps in proptest::collection::vec((0u64..3 * D, -40i64 * D as i64..D as i64), 1..40)
        ) {
            let mut h = Host::activated(Protection::SoftDongle);
            h.input(Input::RuntimeStarted);
            let mut last = h.decide().now;
            for (dt, offset) in steps {
                h.mono += dt;
                let wall = (T0.secs() + h.mono) as i64 + offset;
                h.wall = UnixTime(wall.max(0) as u64);
                h.check_fails();
                let d = h.decide();
                prop_assert!(d.now >= T0.plus_secs(h.mono), "effective time behind real time");
                prop_assert!(d.now >= last, "effective time went backwards");
                last = d.now;
                if h.mono >= 30 * D {
                    prop_assert!(!d.licensed, "licensed after {} s of real time: {:?}", h.mono, d.phase);
                }
                if h.mono >= 10 * D {
                    prop_assert!(d.phase != Phase::Licensed, "silent after {} s of real time", h.mono);
                }
            }
        }

        /// The same for the 1-hour dongle grace: unplugged, nobody gets more than
        /// one hour of the daemon's running time out of any clock setting or
        /// restart. (A step with a restart models the daemon being down for that
        /// step's time: downtime is not counted, as the module doc says, but
        /// never more than that.)
        #[test]
        fn no_clock_setting_or_restart_extends_the_dongle_hour(
            steps in proptest::collection::vec((0u64..20 * 60, -2i64 * D as i64..H as i64, any::<bool>()), 1..20)
        ) {
            let mut h = Host::hard();
            h.input(Input::DongleScan(vec![]));
            let mut real = 0u64;
            let mut down = 0u64;
            for (dt, offset, restart) in steps {
                h.mono += dt;
                real += dt;
                if restart {
                    down += dt;
                }
                let wall = (T0.secs() + real) as i64 + offset;
                h.wall = UnixTime(wall.max(0) as u64);
                if restart {
                    h.restart();
                    h.input(Input::DongleScan(vec![]));
                } else {
                    h.input(Input::Tick);
                }
                if real - down >= H {
                    prop_assert_eq!(h.phase(), Phase::DongleMissing, "after {} s unplugged, {} s down", real, down);
                }
            }
        }
    }
}

#[test]
fn a_daemon_restart_is_not_a_runtime_start_but_a_reboot_is() {
    for protection in [Protection::SoftDongle, Protection::Engineering] {
        let mut h = Host::activated(protection);
        if protection == Protection::SoftDongle {
            h.advance_to(day(32)); // after the grace periods: 1-hour runs
        } else {
            h.advance(H);
        }
        h.check_fails();
        h.input(Input::RuntimeStarted);
        let stop = h.decide().stop_at.expect("a run has a stop");
        // The daemon restarts (same boot); the runtime reconnects and says it runs.
        h.advance(30 * 60);
        h.restart();
        h.check_fails();
        h.input(Input::RuntimeStarted);
        assert_eq!(
            h.decide().stop_at,
            Some(stop),
            "{protection:?}: the run continues"
        );
        // A reboot: the runtime started anew, a new run.
        h.advance(10 * 60);
        h.boot = "boot-2".into();
        h.restart();
        h.check_fails();
        h.input(Input::RuntimeStarted);
        let new_stop = h.decide().stop_at.expect("stop");
        assert!(new_stop > stop, "{protection:?}: a reboot starts a new run");
        // A runtime that stopped before the daemon restarted starts a new run too.
        h.input(Input::RuntimeStopped);
        h.advance(60);
        h.restart();
        h.input(Input::RuntimeStarted);
        assert!(
            h.decide().stop_at.expect("stop") > new_stop,
            "{protection:?}"
        );
    }
}

// ---- peer relay: late answers, replays, gossip ----------------------------

fn grant_for(binding: HardwareId, serial_no: u64, issued_at: UnixTime) -> Verified<LicenseGrant> {
    let k = key();
    let mut g = grant(Protection::SoftDongle, serial_no).into_inner();
    g.binding = Binding::HardwareId(binding);
    g.issued_at = issued_at;
    trusted()
        .verify(&Signed::sign(&g, &k))
        .expect("verify grant")
}

#[test]
fn a_late_receipt_counts_from_its_server_time_and_only_once() {
    let mut h = Host::activated(Protection::SoftDongle);
    let n = Nonce::random();
    h.input(Input::CheckSent { nonce: n });
    // The check waits at a relay without uplink; 12 days pass: warning.
    h.advance(12 * D);
    assert_eq!(h.m.decide(h.now()).phase, Phase::ServerUnreachable);
    // The relay's uplink came back on day 11 and forwarded it then.
    let late = receipt(n, T0.plus_days(11));
    h.input(Input::LateReceipt {
        receipt: late.clone(),
        grant: None,
    });
    let d = h.m.decide(h.now());
    assert_eq!(d.phase, Phase::Licensed, "10 silent days from day 11");
    assert_eq!(h.m.last_check(), Some(T0.plus_days(11)));
    // Replayed later: it answers no open check and changes nothing.
    h.advance(10 * D);
    assert_eq!(h.m.decide(h.now()).phase, Phase::ServerUnreachable);
    h.input(Input::LateReceipt {
        receipt: late,
        grant: None,
    });
    assert_eq!(h.m.decide(h.now()).phase, Phase::ServerUnreachable);
    assert!(!h.m.is_pending(&n));
}

#[test]
fn a_late_receipt_never_winds_the_clock_back_or_beats_a_newer_one() {
    let mut h = Host::activated(Protection::SoftDongle);
    let old = Nonce::random();
    h.input(Input::CheckSent { nonce: old });
    h.advance(2 * D);
    h.check_ok();
    let before = h.m.high_water();
    h.input(Input::LateReceipt {
        receipt: receipt(old, T0.plus_days(1)),
        grant: None,
    });
    assert_eq!(
        h.m.last_check(),
        Some(T0.plus_days(2)),
        "the newer receipt stays"
    );
    assert!(h.m.high_water() >= before);
}

#[test]
fn a_late_refusal_for_an_open_check_ends_the_license() {
    let mut h = Host::activated(Protection::SoftDongle);
    let n = Nonce::random();
    h.input(Input::CheckSent { nonce: n });
    h.advance(H);
    h.input(Input::LateRefusal {
        refusal: refusal(n, RefusalReason::LicenseWasReset, h.wall),
    });
    let d = h.m.decide(h.now());
    assert_eq!((d.phase, d.licensed), (Phase::Refused, false));
    assert_eq!(d.reason_code, "license_was_reset");
    // One for a check never sent is ignored.
    let mut g = Host::activated(Protection::SoftDongle);
    g.input(Input::LateRefusal {
        refusal: refusal(Nonce::random(), RefusalReason::LicenseWasReset, g.wall),
    });
    assert!(g.m.decide(g.now()).licensed);
}

#[test]
fn open_checks_are_bounded_and_survive_a_restart() {
    let mut h = Host::activated(Protection::SoftDongle);
    let first = Nonce::random();
    h.input(Input::CheckSent { nonce: first });
    for _ in 0..MAX_PENDING_NONCES {
        h.input(Input::CheckSent {
            nonce: Nonce::random(),
        });
    }
    assert!(!h.m.is_pending(&first), "the oldest is forgotten first");
    let last = Nonce::random();
    h.input(Input::CheckSent { nonce: last });
    h.restart();
    assert!(h.m.is_pending(&last));
    assert_eq!(h.m.persisted().pending.len(), MAX_PENDING_NONCES);
}

#[test]
fn gossip_highest_serial_wins_and_a_grant_bound_elsewhere_ends_the_license() {
    let mut h = Host::activated(Protection::SoftDongle);
    // An upgrade for this host, passed on by a peer.
    h.input(Input::PeerGrant {
        grant: grant_for(hwid(), 3, T0),
    });
    assert_eq!(h.m.grant().map(|g| g.serial), Some(3));
    // An older one changes nothing.
    h.input(Input::PeerGrant {
        grant: grant_for(hwid(), 2, T0),
    });
    assert_eq!(h.m.grant().map(|g| g.serial), Some(3));
    // An older grant bound elsewhere changes nothing either.
    let other: HardwareId = "ffffffffffffffffffffffffffffffff".parse().expect("hwid");
    h.input(Input::PeerGrant {
        grant: grant_for(other.clone(), 2, T0),
    });
    assert!(h.m.decide(h.now()).licensed);
    // The license was reset and activated on another host: serial 5 elsewhere.
    h.input(Input::PeerGrant {
        grant: grant_for(other, 5, T0.plus_days(1)),
    });
    let d = h.m.decide(h.now());
    assert_eq!(
        (d.phase, d.reason_code),
        (Phase::Refused, "license_was_reset")
    );
    h.restart();
    assert!(!h.m.decide(h.now()).licensed, "persisted");
    // Moved back here later (serial 7): licensed again.
    h.input(Input::PeerGrant {
        grant: grant_for(hwid(), 7, T0.plus_days(2)),
    });
    assert!(h.m.decide(h.now()).licensed);
}

#[test]
fn a_receipt_of_another_host_is_useless_here_even_with_an_open_nonce() {
    // A relay that carried host X's check holds X's genuine receipt; it cannot
    // use it for itself, even if it sent a check with the same nonce.
    let mut h = Host::activated(Protection::SoftDongle);
    h.advance_to(day(12));
    let n = Nonce::random();
    h.input(Input::CheckSent { nonce: n });
    let other: HardwareId = "ffffffffffffffffffffffffffffffff".parse().expect("hwid");
    let mut r = receipt(n, day(12)).into_inner();
    r.hardware_id = other;
    let theirs = trusted()
        .verify(&Signed::sign(&r, &key()))
        .expect("genuine, for the other host");
    h.input(Input::CheckSucceeded {
        nonce: n,
        receipt: theirs.clone(),
        grant: None,
    });
    assert_eq!(h.phase(), Phase::ServerUnreachable);
    h.input(Input::CheckSent { nonce: n });
    h.input(Input::LateReceipt {
        receipt: theirs,
        grant: None,
    });
    assert_eq!(h.phase(), Phase::ServerUnreachable);
}

// ---- poll_timeout: the next moment anything can change ----

/// Lets time pass up to `poll_timeout` again and again and returns the
/// moments it named; every one is exactly when the decision changed or a
/// check fell due.
fn timeouts_until(h: &mut Host, end: UnixTime) -> Vec<UnixTime> {
    let mut seen = Vec::new();
    while let Some(at) = h.m.poll_timeout() {
        if at > end {
            break;
        }
        assert!(at > h.wall, "poll_timeout {at} is not after now {}", h.wall);
        h.advance_to(at);
        seen.push(at);
        assert!(seen.len() < 1000, "poll_timeout does not advance: {seen:?}");
    }
    seen
}

#[test]
fn poll_timeout_is_the_next_check_then_the_warning_then_the_stop_of_a_soft_dongle() {
    let mut h = Host::activated(Protection::SoftDongle);
    // Licensed: the next check is the next thing (the receipt says a day).
    assert_eq!(h.m.poll_timeout(), Some(day(1)));
    h.advance_to(day(1));
    assert!(h.outputs.contains(&Output::CheckNow));
    // The check fails: retries after 1, 2, 4, ... minutes, at most hourly.
    h.check_fails();
    assert_eq!(h.m.poll_timeout(), Some(day(1).plus_secs(60)));
    h.advance_to(day(1).plus_secs(60));
    h.check_fails();
    assert_eq!(h.m.poll_timeout(), Some(day(1).plus_secs(60 + 120)));
    // Hourly retries from now on; the warning starts at day 10 exactly.
    for _ in 0..10 {
        let at = h.m.poll_timeout().expect("retry");
        h.advance_to(at);
        h.check_fails();
    }
    h.advance_to(day(10).minus_secs(10));
    h.check_fails();
    assert_eq!(h.m.poll_timeout(), Some(day(10)), "the warning begins");
    h.advance_to(day(10));
    assert_eq!(h.phase(), Phase::ServerUnreachable);
    // Near the end of the grace periods, with the last retry just before it:
    // the stop is next.
    h.input(Input::RuntimeStarted);
    h.advance_to(day(30).minus_secs(10 * 60));
    h.check_fails();
    assert_eq!(
        h.m.poll_timeout(),
        Some(day(30)),
        "the end of the grace periods"
    );
    h.advance_to(day(30));
    assert_eq!(h.phase(), Phase::Stopped);
}

#[test]
fn poll_timeout_is_the_end_of_the_one_hour_run() {
    let mut h = Host::activated(Protection::SoftDongle);
    h.advance_to(day(31));
    for _ in 0..10 {
        h.check_fails(); // backoff at its hourly maximum
    }
    h.advance_to(day(31).plus_secs(30 * 60 + 7));
    h.input(Input::RuntimeStarted);
    let start = h.m.run_started().expect("run");
    h.check_fails(); // the check at the start
    h.advance(10 * 60);
    h.check_fails(); // one more: the next retry is 70 minutes after the start
    assert_eq!(h.phase(), Phase::OfflineStartHour);
    assert_eq!(
        h.m.poll_timeout(),
        Some(start.plus_secs(OFFLINE_START_SECS)),
        "the 1-hour run ends before the next hourly retry"
    );
    h.advance_to(start.plus_secs(OFFLINE_START_SECS));
    assert_eq!(h.phase(), Phase::Stopped);
}

#[test]
fn poll_timeout_is_the_end_of_the_engineering_run_and_of_validity() {
    let mut h = Host::activated(Protection::Engineering);
    h.advance(3600);
    h.input(Input::RuntimeStarted);
    let start = h.m.run_started().expect("run");
    // Checks succeed daily; the run's end comes first after the day's check.
    h.advance_to(day(1));
    h.check_ok();
    assert_eq!(
        h.m.poll_timeout(),
        Some(start.plus_secs(ENGINEERING_RUN_SECS))
    );
    h.advance_to(start.plus_secs(ENGINEERING_RUN_SECS));
    assert_eq!(h.phase(), Phase::Stopped);
    // Near the end of validity, checked just before: validity ends first.
    h.input(Input::RuntimeStopped);
    let end = T0.plus_days(3 * 365);
    h.advance_to(end.minus_secs(3600));
    h.check_ok();
    assert_eq!(h.m.poll_timeout(), Some(end));
    h.advance_to(end);
    assert_eq!(h.phase(), Phase::Expired);
}

/// A status request (`decide`) moves the effective time on without an input:
/// a moment it passed is still returned until an input handles it.
#[test]
fn poll_timeout_keeps_a_passed_moment_until_an_input_handles_it() {
    let mut h = Host::hard();
    h.input(Input::DongleScan(vec![]));
    let stop = h.wall.plus_secs(DONGLE_GRACE_SECS);
    h.wall = stop.plus_secs(5);
    h.mono += DONGLE_GRACE_SECS + 5;
    assert_eq!(h.decide().phase, Phase::DongleMissing);
    assert_eq!(h.m.poll_timeout(), Some(stop), "not handled yet");
    h.input(Input::Tick);
    assert!(matches!(
        h.notices().as_slice(),
        [.., Event::LicenseEnded { .. }]
    ));
    assert_eq!(h.m.poll_timeout(), None);
}

#[test]
fn poll_timeout_is_the_end_of_the_dongle_hour_and_nothing_while_it_is_plugged_in() {
    let mut h = Host::hard();
    assert_eq!(
        h.m.poll_timeout(),
        None,
        "a plugged-in dongle: nothing to wait for"
    );
    h.advance(120);
    let seen = h.wall;
    h.input(Input::DongleScan(vec![]));
    assert_eq!(h.phase(), Phase::DongleRemoved);
    assert_eq!(h.m.poll_timeout(), Some(seen.plus_secs(DONGLE_GRACE_SECS)));
    let moments = timeouts_until(&mut h, seen.plus_days(2));
    assert_eq!(moments, vec![seen.plus_secs(DONGLE_GRACE_SECS)]);
    assert_eq!(h.phase(), Phase::DongleMissing);
}

/// Walking a soft-dongle host through 40 days by nothing but its own
/// timeouts: every change of the decision happens at a named moment, so a
/// shell that sleeps until `poll_timeout` misses none.
#[test]
fn sleeping_until_poll_timeout_sees_every_change_when_it_happens() {
    let mut h = Host::activated(Protection::SoftDongle);
    h.input(Input::RuntimeStarted);
    let mut last = h.decide();
    let mut changes = 0;
    while let Some(at) = h.m.poll_timeout() {
        if at > day(40) {
            break;
        }
        // One second before the moment nothing has changed yet.
        h.advance_to(at.minus_secs(1));
        let before = h.decide();
        assert_eq!(
            (before.phase, before.stop_at, before.warning.is_some()),
            (last.phase, last.stop_at, last.warning.is_some()),
            "a change before {at}"
        );
        h.advance_to(at);
        if h.outputs.contains(&Output::CheckNow) {
            h.outputs.clear();
            h.check_fails();
        }
        let now = h.decide();
        if (now.phase, now.stop_at) != (last.phase, last.stop_at) {
            changes += 1;
        }
        last = now;
    }
    assert_eq!(last.phase, Phase::Stopped);
    assert!(changes >= 2, "warning and stop were both seen ({changes})");
}

trait MinusSecs {
    fn minus_secs(self, secs: u64) -> UnixTime;
}

impl MinusSecs for UnixTime {
    fn minus_secs(self, secs: u64) -> UnixTime {
        UnixTime(self.0 - secs)
    }
}

// ---- Answer files (sites without any internet) ----

fn receipt_for(host: HardwareId, nonce: Nonce, server_time: UnixTime) -> Verified<CheckReceipt> {
    let r = CheckReceipt {
        license_number: number(),
        hardware_id: host,
        nonce,
        server_time,
        next_check_due: server_time.plus_secs(D),
        current_serial: 1,
    };
    trusted()
        .verify(&Signed::sign(&r, &key()))
        .expect("verify receipt")
}

fn file_receipt(nonce: Nonce, at: UnixTime) -> OfflineAnswer {
    OfflineAnswer::Receipt {
        receipt: receipt(nonce, at),
        grant: None,
    }
}

#[test]
fn an_offline_activation_and_check_count_from_the_files_server_time() {
    let (m, _) = LicenseMachine::start(
        hwid(),
        Persisted::default(),
        "boot-1",
        Now {
            wall: T0,
            since_start: 0,
        },
    );
    let mut h = Host {
        m,
        boot: "boot-1".into(),
        wall: T0,
        mono: 0,
        outputs: Vec::new(),
    };
    assert_eq!(h.phase(), Phase::NotActivated);
    let act = Nonce::random();
    h.input(Input::OfflineRequested { nonce: act });
    // The file travels for two days; the server answers at T0 + 1 day.
    h.advance(2 * D);
    let answer = OfflineAnswer::Receipt {
        receipt: receipt(act, day(1)),
        grant: Some(grant(Protection::SoftDongle, 1)),
    };
    let now = h.now();
    assert_eq!(h.m.offline_verdict(&answer, now), Ok(()));
    h.input(Input::OfflineAnswer(answer.clone()));
    assert_eq!(h.phase(), Phase::Licensed);
    assert_eq!(h.m.last_check(), Some(day(1)));
    // 25 days without network: the warning from day 11, stop at day 31.
    h.advance_to(day(25));
    assert_eq!(h.phase(), Phase::ServerUnreachable);
    let chk = Nonce::random();
    h.input(Input::OfflineRequested { nonce: chk });
    // Carried for a week: answered on day 26, applied on day 33.
    h.advance_to(day(33));
    let later = file_receipt(chk, day(26));
    h.input(Input::OfflineAnswer(later.clone()));
    assert_eq!(
        h.m.last_check(),
        Some(day(26)),
        "the periods count from day 26"
    );
    assert_eq!(h.phase(), Phase::Licensed);
    h.advance_to(day(36).plus_secs(1));
    assert_eq!(
        h.phase(),
        Phase::ServerUnreachable,
        "a week less of silence"
    );
    // The same answer again, and the activation answer again: not waiting.
    let now = h.now();
    assert_eq!(
        h.m.offline_verdict(&later, now),
        Err(OfflineRefusal::NotWaiting)
    );
    assert_eq!(
        h.m.offline_verdict(&answer, now),
        Err(OfflineRefusal::NotWaiting)
    );
}

#[test]
fn an_offline_answer_is_refused_for_another_host_an_older_one_or_a_clock_behind() {
    let mut h = Host::activated(Protection::SoftDongle);
    let (a, b) = (Nonce::random(), Nonce::random());
    h.input(Input::OfflineRequested { nonce: a });
    h.advance(D);
    h.input(Input::OfflineRequested { nonce: b });
    h.advance(D);
    let now = h.now();
    // Another host's answer, even for an open nonce.
    let other: HardwareId = "00000000000000000000000000000001".parse().expect("hwid");
    let foreign = OfflineAnswer::Receipt {
        receipt: receipt_for(other.clone(), a, day(1)),
        grant: None,
    };
    assert_eq!(
        h.m.offline_verdict(&foreign, now),
        Err(OfflineRefusal::OtherHost {
            answer: other,
            this: hwid()
        })
    );
    // The newer answer first, then the older one: refused, nothing changes.
    h.input(Input::OfflineAnswer(file_receipt(b, day(2))));
    assert_eq!(h.m.last_check(), Some(day(2)));
    let before = h.m.persisted();
    let now = h.now();
    assert_eq!(
        h.m.offline_verdict(&file_receipt(a, day(1)), now),
        Err(OfflineRefusal::Older {
            held: day(2),
            answer: day(1)
        })
    );
    h.input(Input::OfflineAnswer(file_receipt(a, day(1))));
    assert_eq!(h.m.last_check(), Some(day(2)));
    assert_eq!(
        h.m.persisted().offline_pending,
        before.offline_pending,
        "a refused answer changes nothing"
    );
    // A clock set back: the answer lies more than an hour ahead.
    let c = Nonce::random();
    h.input(Input::OfflineRequested { nonce: c });
    let now = h.now();
    let ahead = h.wall.plus_secs(2 * H);
    assert!(matches!(
        h.m.offline_verdict(&file_receipt(c, ahead), now),
        Err(OfflineRefusal::ClockBehind { .. })
    ));
    // A network check's nonce is no request file.
    let n = Nonce::random();
    h.input(Input::CheckSent { nonce: n });
    assert_eq!(
        h.m.offline_verdict(&file_receipt(n, h.wall), now),
        Err(OfflineRefusal::NotWaiting)
    );
}

#[test]
fn open_request_files_are_bounded_survive_a_restart_and_outlast_network_checks() {
    let mut h = Host::activated(Protection::SoftDongle);
    let first = Nonce::random();
    h.input(Input::OfflineRequested { nonce: first });
    // A week of hourly failed network checks does not push the file out.
    for _ in 0..(7 * 24) {
        h.input(Input::CheckSent {
            nonce: Nonce::random(),
        });
    }
    h.restart();
    assert!(h.m.is_offline_pending(&first));
    for _ in 0..MAX_OFFLINE_PENDING {
        h.input(Input::OfflineRequested {
            nonce: Nonce::random(),
        });
    }
    assert!(
        !h.m.is_offline_pending(&first),
        "the oldest is forgotten first"
    );
    assert_eq!(h.m.persisted().offline_pending.len(), MAX_OFFLINE_PENDING);
}

#[test]
fn an_offline_refusal_ends_the_license_like_a_network_one() {
    let mut h = Host::activated(Protection::SoftDongle);
    let n = Nonce::random();
    h.input(Input::OfflineRequested { nonce: n });
    h.advance(H);
    h.input(Input::OfflineAnswer(OfflineAnswer::Refusal(refusal(
        n,
        RefusalReason::LicenseWasReset,
        h.wall,
    ))));
    let d = h.decide();
    assert_eq!((d.phase, d.licensed), (Phase::Refused, false));
}
