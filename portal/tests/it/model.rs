//! Model-based test of the store: random operation sequences run against the real
//! store and against a small in-memory model of the rules; every answer and the
//! resulting state must agree, and the store must stay consistent.

use keys::{
    Binding, Driver, Entitlements, HardwareId, LicenseData, LicenseNumber, LicenseType, Protection,
    SigningKeyPair, UnixTime,
};
use portal::domain::{Actor, Licensee, MutationKind, NewLicense};
use portal::store::{HostActivation, HostCheck, LicenseError, NewMutation, Store};
use proptest::prelude::*;
use wire::RefusalReason;

#[derive(Clone, Debug)]
enum Op {
    Create(u8),
    OrderNew(usize),
    Upgrade(usize, u32),
    MarkPaid(usize, usize),
    Activate(usize, u8),
    Check(usize, u8, bool),
    Reset(usize),
    SetDongle(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..3).prop_map(Op::Create),
        2 => any::<usize>().prop_map(Op::OrderNew),
        2 => (any::<usize>(), 1u32..12_000).prop_map(|(l, n)| Op::Upgrade(l, n)),
        3 => (any::<usize>(), any::<usize>()).prop_map(|(l, m)| Op::MarkPaid(l, m)),
        3 => (any::<usize>(), 0u8..3).prop_map(|(l, h)| Op::Activate(l, h)),
        3 => (any::<usize>(), 0u8..3, any::<bool>()).prop_map(|(l, h, r)| Op::Check(l, h, r)),
        1 => any::<usize>().prop_map(Op::Reset),
        1 => any::<usize>().prop_map(Op::SetDongle),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum MState {
    Ordered,
    Activated,
}

#[derive(Clone, Debug)]
struct ModelMutation {
    kind: MutationKind,
    adds: Entitlements,
    state: MState,
}

#[derive(Clone, Debug)]
struct ModelLicense {
    number: LicenseNumber,
    token: String,
    protection: Protection,
    mutations: Vec<ModelMutation>,
    binding: Option<Binding>,
    released: Vec<HardwareId>,
    serial: u64,
    current: Option<u64>,
    last_check: Option<(HardwareId, bool)>,
    resets: u64,
}

impl ModelLicense {
    fn entitlements(&self) -> Entitlements {
        self.mutations
            .iter()
            .filter(|m| m.state == MState::Activated)
            .fold(Entitlements::none(), |sum, m| sum.plus(&m.adds))
    }
    fn active(&self) -> bool {
        self.entitlements() != Entitlements::none()
    }
    fn running(&self) -> bool {
        match (&self.binding, &self.last_check) {
            (Some(Binding::HardwareId(h)), Some((c, r))) => h == c && *r,
            (Some(Binding::DongleSerial(_)), Some((_, r))) => *r,
            _ => false,
        }
    }
    /// A new grant if bound and active.
    fn issue(&mut self) {
        if self.binding.is_some() && self.active() {
            self.serial += 1;
            self.current = Some(self.serial);
        }
    }
}

fn host(h: u8) -> HardwareId {
    HardwareId::from_bytes([h + 1; 16])
}

fn run(store: Store, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let key = SigningKeyPair::from_seed(&[3; 32]);
    let actor = Actor::Admin("model".into());
    let now = UnixTime(1_767_225_600);
    let mut model: Vec<ModelLicense> = vec![];
    for op in ops {
        match op {
            Op::Create(p) => {
                let protection = [
                    Protection::SoftDongle,
                    Protection::HardDongle,
                    Protection::Engineering,
                ][p as usize];
                let license_type = if protection == Protection::Engineering {
                    LicenseType::Engineering
                } else {
                    LicenseType::Standard
                };
                let l = store
                    .create_license(
                        NewLicense {
                            account: None,
                            license_type,
                            protection,
                            licensee: Licensee::default(),
                            license_data: LicenseData {
                                name: "n".into(),
                                postcode: "1".into(),
                                city: "c".into(),
                            },
                        },
                        &actor,
                        now,
                    )
                    .expect("create");
                prop_assert!(
                    model.iter().all(|m| m.number != l.number),
                    "license numbers are unique"
                );
                model.push(ModelLicense {
                    number: l.number.clone(),
                    token: l.token.expose().to_owned(),
                    protection,
                    mutations: vec![],
                    binding: None,
                    released: vec![],
                    serial: 0,
                    current: None,
                    last_check: None,
                    resets: 0,
                });
            }
            _ if model.is_empty() => continue,
            Op::OrderNew(i) => {
                let len = model.len();
                let m = &mut model[i % len];
                let adds = if m.protection == Protection::Engineering {
                    Entitlements::engineering()
                } else {
                    Entitlements::standard_base()
                };
                let new = NewMutation {
                    kind: MutationKind::New,
                    adds: adds.clone(),
                    price_net: None,
                    priced: None,
                    remarks: String::new(),
                };
                let got = store.add_mutation(&m.number, new, true, &key, &actor, now);
                if m.mutations.iter().any(|x| x.kind == MutationKind::New) {
                    prop_assert!(matches!(got, Err(LicenseError::Rule(_))), "{got:?}");
                } else {
                    let got = got.expect("order");
                    prop_assert_eq!(got.number as usize, m.mutations.len() + 1);
                    // Engineering licenses are free: their orders activate at once.
                    let engineering = m.protection == Protection::Engineering;
                    m.mutations.push(ModelMutation {
                        kind: MutationKind::New,
                        adds,
                        state: if engineering {
                            MState::Activated
                        } else {
                            MState::Ordered
                        },
                    });
                    if engineering {
                        m.issue();
                    }
                }
            }
            Op::Upgrade(i, n) => {
                let len = model.len();
                let m = &mut model[i % len];
                let mut adds = Entitlements::none();
                adds.drivers.insert(Driver::Modbus, n);
                let new = NewMutation {
                    kind: MutationKind::Upgrade,
                    adds: adds.clone(),
                    price_net: None,
                    priced: None,
                    remarks: String::new(),
                };
                let got = store.add_mutation(&m.number, new, true, &key, &actor, now);
                let modbus: u32 = m
                    .mutations
                    .iter()
                    .map(|x| x.adds.driver(Driver::Modbus))
                    .sum::<u32>()
                    + n;
                let allowed = m.mutations.iter().any(|x| x.kind == MutationKind::New)
                    && m.protection != Protection::Engineering
                    && !m.running()
                    && modbus <= Driver::Modbus.maximum();
                prop_assert_eq!(got.is_ok(), allowed, "{:?}", got);
                if allowed {
                    m.mutations.push(ModelMutation {
                        kind: MutationKind::Upgrade,
                        adds,
                        state: MState::Ordered,
                    });
                }
            }
            Op::MarkPaid(i, k) => {
                let len = model.len();
                let m = &mut model[i % len];
                if m.mutations.is_empty() {
                    let got = store.activate_mutation(&m.number, 1, &key, &actor, now);
                    prop_assert!(
                        matches!(got, Err(LicenseError::UnknownMutation(..))),
                        "{got:?}"
                    );
                    continue;
                }
                let idx = k % m.mutations.len();
                let got = store.activate_mutation(&m.number, idx as u32 + 1, &key, &actor, now);
                if m.mutations[idx].state == MState::Ordered {
                    prop_assert!(got.is_ok(), "{:?}", got);
                    m.mutations[idx].state = MState::Activated;
                    m.issue();
                } else {
                    prop_assert!(
                        matches!(got, Err(LicenseError::Transition { .. })),
                        "{got:?}"
                    );
                }
            }
            Op::Activate(i, h) => {
                let len = model.len();
                let m = &mut model[i % len];
                let hid = host(h);
                let req = HostActivation {
                    license: &m.number,
                    token: &m.token,
                    hardware_id: &hid,
                    daemon_version: "t",
                    from: "model".into(),
                };
                let got = store.activate_host(&req, &key, now).expect("store");
                let expected: Result<u64, RefusalReason> = if !m.active() {
                    Err(RefusalReason::NotYetActivated)
                } else if m.protection == Protection::HardDongle {
                    match m.current {
                        Some(s) => Ok(s),
                        None => Err(RefusalReason::NotYetActivated),
                    }
                } else {
                    match &m.binding {
                        None => {
                            m.released.retain(|x| x != &hid);
                            m.binding = Some(Binding::HardwareId(hid.clone()));
                            m.issue();
                            Ok(m.serial)
                        }
                        Some(Binding::HardwareId(b)) if *b == hid => {
                            if m.current.is_none() {
                                m.issue();
                            }
                            Ok(m.current.unwrap_or(0))
                        }
                        Some(_) => Err(RefusalReason::BoundToAnotherHost),
                    }
                };
                let got_serial = got.map(|g| {
                    serde_json::from_slice::<keys::LicenseGrant>(g.payload())
                        .expect("grant")
                        .serial
                });
                prop_assert_eq!(got_serial, expected);
            }
            Op::Check(i, h, running) => {
                let len = model.len();
                let m = &mut model[i % len];
                let hid = host(h);
                let req = HostCheck {
                    license: &m.number,
                    hardware_id: &hid,
                    held_serial: None,
                    running,
                    ge_seats: 0,
                    pwa_seats: 0,
                    daemon_version: "t",
                    from: "model".into(),
                };
                let got = store.check_host(&req, now).expect("store");
                let bound_here = match &m.binding {
                    Some(Binding::HardwareId(b)) => *b == hid,
                    Some(Binding::DongleSerial(_)) => true,
                    None => false,
                };
                let expected: Result<Option<u64>, RefusalReason> = if !bound_here {
                    if m.released.contains(&hid) {
                        Err(RefusalReason::LicenseWasReset)
                    } else if m.binding.is_some() {
                        Err(RefusalReason::BoundToAnotherHost)
                    } else {
                        Err(RefusalReason::NotYetActivated)
                    }
                } else if !m.active() {
                    Err(RefusalReason::NotYetActivated)
                } else {
                    m.last_check = Some((hid.clone(), running));
                    Ok(m.current)
                };
                let got = got.map(|o| {
                    o.newer_grant.map(|g| {
                        serde_json::from_slice::<keys::LicenseGrant>(g.payload())
                            .expect("grant")
                            .serial
                    })
                });
                prop_assert_eq!(got, expected);
            }
            Op::Reset(i) => {
                let len = model.len();
                let m = &mut model[i % len];
                let got = store.reset_binding(&m.number, &actor, now);
                match (&m.binding, m.protection) {
                    (_, Protection::HardDongle) | (None, _) => prop_assert!(got.is_err()),
                    (Some(Binding::HardwareId(old)), _) => {
                        prop_assert!(got.is_ok(), "{:?}", got);
                        let old = old.clone();
                        if !m.released.contains(&old) {
                            m.released.push(old);
                        }
                        m.binding = None;
                        m.serial += 1;
                        m.resets += 1;
                        m.current = None;
                    }
                    (Some(Binding::DongleSerial(_)), _) => prop_assert!(got.is_err()),
                }
            }
            Op::SetDongle(i) => {
                let len = model.len();
                let m = &mut model[i % len];
                let serial: keys::DongleSerial = "DG-1".parse().expect("serial");
                let got = store.set_dongle_serial(&m.number, serial.clone(), &key, &actor, now);
                if m.protection == Protection::HardDongle {
                    prop_assert!(got.is_ok(), "{:?}", got);
                    m.binding = Some(Binding::DongleSerial(serial));
                    m.issue();
                } else {
                    prop_assert!(
                        matches!(got, Err(LicenseError::NotHardDongle(_))),
                        "{got:?}"
                    );
                }
            }
        }
        // After every step the stored licenses match the model.
        for m in &model {
            let l = store.license(&m.number).expect("read").expect("license");
            prop_assert_eq!(
                &l.entitlements,
                &m.entitlements(),
                "entitlements of {}",
                m.number
            );
            prop_assert_eq!(&l.binding, &m.binding, "binding of {}", m.number);
            prop_assert_eq!(l.serial, m.serial, "serial of {}", m.number);
            prop_assert_eq!(l.current_grant, m.current, "current grant of {}", m.number);
            prop_assert_eq!(
                store.mutations(&m.number).expect("read").len(),
                m.mutations.len()
            );
            // Every serial is a stored grant, except those a reset reserved.
            prop_assert_eq!(
                store.grants(&m.number).expect("read").len() as u64,
                m.serial - m.resets
            );
        }
    }
    let problems = store.verify().expect("verify");
    prop_assert!(problems.is_empty(), "{:?}", problems);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn store_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(Store::temporary().expect("store"), ops)?;
    }
}

// The same model on PostgreSQL (each case a new database of the test binary's
// throwaway cluster); fewer cases, as each costs a database.
proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn postgres_store_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(Store::temporary_postgres().expect("PostgreSQL store"), ops)?;
    }
}
