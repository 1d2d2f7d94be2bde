//! Deterministic simulation of a site: a SIMULATED license server, 2 to 5
//! daemons (the real [`LicenseMachine`]), SIMULATED uplinks and LAN links
//! between them, relays with store-and-forward queues, gossip of grants,
//! partitions, restarts, clock jumps, runtime starts, resets, upgrades,
//! reactivation elsewhere and replayed answers. Each schedule is drawn from a
//! seed; after every step every daemon's decision is compared with an
//! independent model of PRODUCT.md's rules:
//!
//! - licensed and silent for 10 days after the newest accepted server time,
//!   then licensed with a warning and the stop at +30 days, then 1 hour per
//!   runtime start;
//! - a reset ends the license (the refusal reaches the host through a relay),
//!   and so does a newer grant of its license bound to another host (gossip);
//! - the highest grant serial bound to the host wins;
//! - setting the clock back never extends anything (the model's time is the
//!   largest time seen, moving with real time).
//!
//! `RELAY_SIM_SCHEDULES` sets how many schedules run (default 2000);
//! `RELAY_SIM_SEED=<n>` replays one. A failure prints its seed.
//!
//! The network and relays are modelled here (queues in memory, links as
//! booleans); the QUIC transport, mutual TLS and sled queues are covered by
//! the unit tests and by `tests/tests/relay_netns.rs`.

use daemon::state::{Input, LicenseMachine, Now, Persisted, MAX_PENDING_NONCES};
use keys::grant::GRANT_FORMAT;
use keys::{
    Binding, Entitlements, HardwareId, LicenseData, LicenseGrant, LicenseNumber, LicenseType,
    Protection, Signed, SigningKeyPair, TrustedKeys, UnixTime, Verified,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use wire::{CheckReceipt, Nonce, Refusal, RefusalReason};

const T0: UnixTime = UnixTime(1_800_000_000);
const H: u64 = UnixTime::HOUR;
const D: u64 = UnixTime::DAY;
/// Relay queue per requester, as in `daemon::relay::MAX_QUEUED_PER_PEER`.
const QUEUE_PER_PEER: usize = daemon::relay::MAX_QUEUED_PER_PEER;
const STEPS: usize = 60;

/// What the SIMULATED server knows about one license.
#[derive(Clone, Debug)]
struct SimLicense {
    number: LicenseNumber,
    bound: Option<HardwareId>,
    serial: u64,
    /// Hosts released by a reset: their checks are refused.
    released: Vec<HardwareId>,
    pwa_users: u32,
}

/// A server answer, as the relays carry it.
#[derive(Clone, Debug)]
enum Answer {
    Receipt(Signed<CheckReceipt>, Option<Signed<LicenseGrant>>),
    Refusal(Signed<Refusal>),
}

struct Server {
    key: SigningKeyPair,
    licenses: Vec<SimLicense>,
}

impl Server {
    fn grant(&self, l: &SimLicense, binding: HardwareId, now: UnixTime) -> Signed<LicenseGrant> {
        let mut entitlements = Entitlements::standard_base();
        entitlements.pwa_users = l.pwa_users;
        Signed::sign(
            &LicenseGrant {
                format: GRANT_FORMAT,
                license_number: l.number.clone(),
                license_type: LicenseType::Standard,
                protection: Protection::SoftDongle,
                license_data: LicenseData {
                    name: "Sim AG".into(),
                    postcode: "3000".into(),
                    city: "Bern".into(),
                },
                binding: Binding::HardwareId(binding),
                entitlements,
                issued_at: now,
                valid_until: None,
                serial: l.serial,
                key_id: self.key.key_id(),
            },
            &self.key,
        )
    }

    /// The check rules (portal's `decide_check`, reduced to what the site sees).
    fn check(&self, i: usize, host: &HardwareId, held: u64, nonce: Nonce, now: UnixTime) -> Answer {
        let l = &self.licenses[i];
        if l.bound.as_ref() == Some(host) {
            let receipt = CheckReceipt {
                license_number: l.number.clone(),
                hardware_id: host.clone(),
                nonce,
                server_time: now,
                next_check_due: now.plus_secs(D),
                current_serial: l.serial,
            };
            let grant = (held < l.serial).then(|| self.grant(l, host.clone(), now));
            Answer::Receipt(Signed::sign(&receipt, &self.key), grant)
        } else {
            let reason = if l.released.contains(host) {
                RefusalReason::LicenseWasReset
            } else {
                RefusalReason::BoundToAnotherHost
            };
            Answer::Refusal(Signed::sign(
                &Refusal {
                    reason,
                    license_number: l.number.clone(),
                    hardware_id: host.clone(),
                    nonce,
                    server_time: now,
                },
                &self.key,
            ))
        }
    }
}

/// The independent model of what one daemon must decide.
#[derive(Clone, Debug, Default)]
struct Model {
    /// The model's effective time: `max(wall, largest time seen, anchor +
    /// real time since the start)` (README, "The clock-rollback rule").
    t: u64,
    /// The effective time when the daemon (re)started.
    anchor: u64,
    /// Newest accepted server time.
    last: u64,
    /// Open checks, oldest first, bounded like the daemon's.
    open: VecDeque<Nonce>,
    /// The license ended (refusal, or a newer grant bound elsewhere).
    ended: bool,
    /// Time of the refusal that ended it (a later receipt older than this changes nothing).
    refused_at: Option<u64>,
    /// Highest serial bound here; highest serial bound elsewhere.
    serial_here: u64,
    serial_elsewhere: u64,
    run_started: Option<u64>,
}

impl Model {
    fn answered(&mut self, nonce: Nonce) -> bool {
        let before = self.open.len();
        self.open.retain(|n| *n != nonce);
        before != self.open.len()
    }

    fn expect(&self) -> (bool, bool, Option<u64>) {
        if self.ended || self.serial_elsewhere > self.serial_here {
            return (false, false, None);
        }
        let warn_from = self.last + 10 * D;
        let grace_end = self.last + 30 * D;
        if self.t < warn_from {
            (true, false, None)
        } else if self.t < grace_end {
            (true, true, Some(grace_end))
        } else {
            match self.run_started {
                None => (true, true, None),
                Some(s) => {
                    let stop = if s < grace_end { grace_end } else { s + H };
                    (self.t < stop, self.t < stop, Some(stop))
                }
            }
        }
    }
}

struct Host {
    hwid: HardwareId,
    license: usize,
    machine: LicenseMachine,
    model: Model,
    /// Wall clock offset from real time (clock jumps).
    offset: i64,
    mono: u64,
    uplink: bool,
    running: bool,
    /// Answers this host holds for each requester (store and forward).
    queue: Vec<VecDeque<(usize, Nonce, u64)>>,
    answers: Vec<Vec<Answer>>,
    /// Grants this host has seen for the site (highest serial per license).
    site: Vec<Option<(u64, Signed<LicenseGrant>)>>,
    /// Answers this host received before, for replay attacks.
    seen: Vec<Answer>,
}

struct Sim {
    rng: StdRng,
    server: Server,
    trusted: TrustedKeys,
    hosts: Vec<Host>,
    lan: Vec<Vec<bool>>,
    /// Real (server) time.
    now: u64,
    log: Vec<String>,
    seen: Seen,
}

/// How often the interesting things happened (the test fails if the schedules
/// stop reaching one of them).
#[derive(Debug, Default)]
struct Seen {
    relayed: u64,
    late_accepted: u64,
    replays: u64,
    refused: u64,
    ended_by_gossip: u64,
    warnings: u64,
    stopped: u64,
    upgrades_by_gossip: u64,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let key = SigningKeyPair::from_seed(&[77; 32]);
        let trusted = TrustedKeys::with([key.public()]);
        let n = rng.gen_range(2..=5);
        let mut server = Server {
            key,
            licenses: Vec::new(),
        };
        let mut hosts = Vec::new();
        for i in 0..n {
            let hwid = HardwareId::from_bytes([i as u8 + 1; 16]);
            server.licenses.push(SimLicense {
                number: LicenseNumber::from_body(192_190_001 + i as u32).expect("number"),
                bound: Some(hwid.clone()),
                serial: 1,
                released: Vec::new(),
                pwa_users: 1,
            });
            let grant = server.grant(&server.licenses[i], hwid.clone(), T0);
            let nonce = Nonce(rng.gen());
            let receipt = match server.check(i, &hwid, 1, nonce, T0) {
                Answer::Receipt(r, _) => r,
                Answer::Refusal(_) => unreachable!("bound at start"),
            };
            let now = Now {
                wall: T0,
                since_start: 0,
            };
            let (mut machine, _) =
                LicenseMachine::start(hwid.clone(), Persisted::default(), "boot", now);
            machine.handle(
                Input::CheckSucceeded {
                    nonce,
                    receipt: trusted.verify(&receipt).expect("verify"),
                    grant: Some(trusted.verify(&grant).expect("verify")),
                },
                now,
            );
            hosts.push(Host {
                hwid,
                license: i,
                machine,
                model: Model {
                    t: T0.secs(),
                    anchor: T0.secs(),
                    last: T0.secs(),
                    serial_here: 1,
                    ..Model::default()
                },
                offset: 0,
                mono: 0,
                uplink: rng.gen_bool(0.5),
                running: false,
                queue: vec![VecDeque::new(); n],
                answers: vec![Vec::new(); n],
                site: vec![None; n],
                seen: Vec::new(),
            });
        }
        hosts[0].uplink = true;
        Sim {
            rng,
            server,
            trusted,
            lan: vec![vec![true; n]; n],
            hosts,
            now: T0.secs(),
            log: Vec::new(),
            seen: Seen::default(),
        }
    }

    fn host_now(&self, h: usize) -> Now {
        let host = &self.hosts[h];
        Now {
            wall: UnixTime(self.now.saturating_add_signed(host.offset)),
            since_start: host.mono,
        }
    }

    fn feed(&mut self, h: usize, input: Input) {
        let now = self.host_now(h);
        self.hosts[h].machine.handle(input, now);
    }

    /// An answer reaches host `h`: `direct` if it answers the check just sent.
    fn deliver(&mut self, h: usize, answer: Answer, direct: Option<Nonce>) {
        self.hosts[h].seen.push(answer.clone());
        if self.hosts[h].seen.len() > 16 {
            self.hosts[h].seen.remove(0);
        }
        match answer {
            Answer::Receipt(r, g) => {
                let receipt = self.trusted.verify(&r).expect("server-signed");
                let grant = g.map(|g| self.trusted.verify(&g).expect("server-signed"));
                let nonce = receipt.nonce;
                let m = &mut self.hosts[h].model;
                if direct.is_none() && m.open.contains(&nonce) {
                    self.seen.late_accepted += 1;
                }
                if m.answered(nonce) {
                    if let Some(g) = &grant {
                        m.serial_here = m.serial_here.max(g.serial);
                    }
                    let st = receipt.server_time.secs();
                    if m.refused_at.is_none_or(|r| r < st) && !m.ended {
                        m.last = m.last.max(st);
                    }
                    m.t = m.t.max(st);
                }
                let input = match direct {
                    Some(n) => Input::CheckSucceeded {
                        nonce: n,
                        receipt,
                        grant,
                    },
                    None => Input::LateReceipt { receipt, grant },
                };
                self.feed(h, input);
            }
            Answer::Refusal(r) => {
                let refusal = self.trusted.verify(&r).expect("server-signed");
                let m = &mut self.hosts[h].model;
                if m.answered(refusal.nonce) && m.last <= refusal.server_time.secs() {
                    self.seen.refused += 1;
                    m.ended = true;
                    m.refused_at = Some(refusal.server_time.secs());
                }
                let input = match direct {
                    Some(n) => Input::Refused { nonce: n, refusal },
                    None => Input::LateRefusal { refusal },
                };
                self.feed(h, input);
            }
        }
    }

    fn offer_site(&mut self, h: usize, g: &Signed<LicenseGrant>) {
        // A grant the receiver's table already holds changes nothing (the
        // relay's grant table keeps it), so most gossip ends here.
        if self.hosts[h].site.iter().flatten().any(|(_, x)| x == g) {
            return;
        }
        let v: Verified<LicenseGrant> = self.trusted.verify(g).expect("server-signed");
        let l = self
            .server
            .licenses
            .iter()
            .position(|x| x.number == v.license_number)
            .expect("site license");
        let held = self.hosts[h].site[l].as_ref().map_or(0, |(s, _)| *s);
        if v.serial > held {
            self.hosts[h].site[l] = Some((v.serial, g.clone()));
        }
        if l == self.hosts[h].license {
            let here = v.binding == Binding::HardwareId(self.hosts[h].hwid.clone());
            let m = &mut self.hosts[h].model;
            if here {
                if v.serial > m.serial_here {
                    self.seen.upgrades_by_gossip += 1;
                }
                m.serial_here = m.serial_here.max(v.serial);
            } else if v.serial > m.serial_elsewhere {
                if v.serial > m.serial_here && m.serial_elsewhere <= m.serial_here {
                    self.seen.ended_by_gossip += 1;
                }
                m.serial_elsewhere = v.serial;
            }
            self.feed(h, Input::PeerGrant { grant: v });
        }
    }

    /// Host `h` checks: directly, else through the first reachable peer.
    fn check(&mut self, h: usize) {
        let Some(g) = self.hosts[h].machine.grant().cloned() else {
            return;
        };
        let nonce = Nonce(self.rng.gen());
        self.feed(h, Input::CheckSent { nonce });
        let m = &mut self.hosts[h].model;
        m.open.push_back(nonce);
        while m.open.len() > MAX_PENDING_NONCES {
            m.open.pop_front();
        }
        let lic = self.hosts[h].license;
        if self.hosts[h].uplink {
            let a = self.server.check(
                lic,
                &self.hosts[h].hwid,
                g.serial,
                nonce,
                UnixTime(self.now),
            );
            self.deliver(h, a, Some(nonce));
            self.flush(h);
        } else {
            let peers: Vec<usize> = (0..self.hosts.len())
                .filter(|&p| p != h && self.lan[h][p])
                .collect();
            let mut done = false;
            for p in peers {
                if self.hosts[p].uplink {
                    let a = self.server.check(
                        lic,
                        &self.hosts[h].hwid,
                        g.serial,
                        nonce,
                        UnixTime(self.now),
                    );
                    self.learn(p, &a);
                    self.seen.relayed += 1;
                    self.deliver(h, a, Some(nonce));
                    done = true;
                    break;
                }
                let q = &mut self.hosts[p].queue[h];
                if q.len() >= QUEUE_PER_PEER {
                    q.pop_front();
                }
                q.push_back((lic, nonce, g.serial));
            }
            if !done {
                self.feed(
                    h,
                    Input::CheckFailed {
                        reason: "no uplink (simulated)".into(),
                    },
                );
            }
        }
        self.exchange(h);
    }

    fn learn(&mut self, relay: usize, a: &Answer) {
        if let Answer::Receipt(_, Some(g)) = a {
            let g = g.clone();
            self.offer_site(relay, &g);
        }
    }

    /// Relay `p` has its uplink: forward what it kept.
    fn flush(&mut self, p: usize) {
        for r in 0..self.hosts.len() {
            while let Some((lic, nonce, held)) = self.hosts[p].queue[r].pop_front() {
                let hwid = self.hosts[r].hwid.clone();
                let a = self
                    .server
                    .check(lic, &hwid, held, nonce, UnixTime(self.now));
                self.learn(p, &a);
                let ans = &mut self.hosts[p].answers[r];
                if ans.len() >= daemon::relay::MAX_ANSWERS_PER_PEER {
                    ans.remove(0);
                }
                ans.push(a);
            }
        }
    }

    /// Collect late answers from reachable peers, gossip grants both ways.
    fn exchange(&mut self, h: usize) {
        let own = self.hosts[h].machine.grant().map(|g| g.signed().clone());
        if let Some(g) = own {
            self.offer_site(h, &g);
        }
        for p in 0..self.hosts.len() {
            if p == h || !self.lan[h][p] {
                continue;
            }
            let answers = std::mem::take(&mut self.hosts[p].answers[h]);
            for a in answers {
                self.deliver(h, a, None);
            }
            let theirs: Vec<_> = self.hosts[p].site.iter().flatten().cloned().collect();
            for (_, g) in theirs {
                self.offer_site(h, &g);
            }
            let ours: Vec<_> = self.hosts[h].site.iter().flatten().cloned().collect();
            for (_, g) in ours {
                self.offer_site(p, &g);
            }
        }
    }

    fn advance(&mut self, secs: u64) {
        self.now += secs;
        for h in 0..self.hosts.len() {
            self.hosts[h].mono += secs;
            let wall = self.now.saturating_add_signed(self.hosts[h].offset);
            let mono = self.hosts[h].mono;
            let m = &mut self.hosts[h].model;
            m.t = m.t.max(wall).max(m.anchor + mono);
            self.feed(h, Input::Tick);
            // The daemon checks when its machine says so (daily, retries).
            let due = self.hosts[h]
                .machine
                .next_check_at()
                .is_some_and(|at| at.secs() <= self.hosts[h].model.t);
            if due && self.rng.gen_bool(0.7) {
                self.check(h);
            }
        }
    }

    fn step(&mut self) {
        let n = self.hosts.len();
        let h = self.rng.gen_range(0..n);
        match self.rng.gen_range(0..100) {
            0..=29 => {
                let secs = match self.rng.gen_range(0..3) {
                    0 => self.rng.gen_range(60..6 * H),
                    1 => self.rng.gen_range(H..3 * D),
                    _ => self.rng.gen_range(D..12 * D),
                };
                self.log.push(format!("advance {secs}s"));
                self.advance(secs);
            }
            30..=44 => {
                self.hosts[h].uplink = !self.hosts[h].uplink;
                self.log
                    .push(format!("uplink {h} {}", self.hosts[h].uplink));
            }
            45..=52 => {
                let p = self.rng.gen_range(0..n);
                if p != h {
                    let up = !self.lan[h][p];
                    self.lan[h][p] = up;
                    self.lan[p][h] = up;
                    self.log.push(format!("lan {h}-{p} {up}"));
                }
            }
            53..=64 => {
                self.log.push(format!("check {h}"));
                self.check(h);
            }
            65..=69 => {
                // Restart: the machine starts again from what it persisted.
                self.log.push(format!("restart {h}"));
                let p = self.hosts[h].machine.persisted();
                self.hosts[h].mono = 0;
                let now = self.host_now(h);
                let (m, _) = LicenseMachine::start(self.hosts[h].hwid.clone(), p, "boot", now);
                self.hosts[h].machine = m;
                let wall = now.wall.secs();
                let model = &mut self.hosts[h].model;
                model.t = model.t.max(wall);
                model.anchor = model.t;
                if self.hosts[h].running {
                    // The runtime reconnects and continues its run.
                    self.feed(h, Input::RuntimeStarted);
                }
            }
            70..=74 => {
                // Someone sets the clock: back up to 5 days or forward up to 1 day.
                let jump = self.rng.gen_range(-5 * D as i64..D as i64);
                self.hosts[h].offset += jump;
                self.log.push(format!("clock {h} {jump:+}"));
                let wall = self.now.saturating_add_signed(self.hosts[h].offset);
                let m = &mut self.hosts[h].model;
                m.t = m.t.max(wall);
                self.feed(h, Input::Tick);
            }
            75..=81 => {
                self.hosts[h].running = !self.hosts[h].running;
                self.log
                    .push(format!("runtime {h} {}", self.hosts[h].running));
                if self.hosts[h].running {
                    self.hosts[h].model.run_started = Some(self.hosts[h].model.t);
                    self.feed(h, Input::RuntimeStarted);
                } else {
                    self.hosts[h].model.run_started = None;
                    self.feed(h, Input::RuntimeStopped);
                }
            }
            82..=87 => {
                // Upgrade in the server: a new serial for the bound host.
                let l = &mut self.server.licenses[self.hosts[h].license];
                if l.bound.is_some() {
                    l.serial += 1;
                    l.pwa_users += 1;
                    self.log.push(format!("upgrade {h}"));
                }
            }
            88..=90 => {
                // Reset; sometimes the license is then activated on a new host
                // that gossips its grant into the site through host `p`.
                let lic = self.hosts[h].license;
                let l = &mut self.server.licenses[lic];
                if let Some(old) = l.bound.take() {
                    l.released.push(old);
                    l.serial += 1;
                    self.log.push(format!("reset {h}"));
                    if self.rng.gen_bool(0.5) {
                        let l = &mut self.server.licenses[lic];
                        let new_host = HardwareId::from_bytes([0xee; 16]);
                        l.bound = Some(new_host.clone());
                        l.serial += 1;
                        let g = self.server.grant(
                            &self.server.licenses[lic],
                            new_host,
                            UnixTime(self.now),
                        );
                        let p = self.rng.gen_range(0..n);
                        self.log
                            .push(format!("reactivated elsewhere, gossip via {p}"));
                        self.offer_site(p, &g);
                    }
                }
            }
            _ => {
                // A hostile peer replays an answer this host saw before.
                if let Some(a) = {
                    let seen = &self.hosts[h].seen;
                    (!seen.is_empty()).then(|| seen[self.rng.gen_range(0..seen.len())].clone())
                } {
                    self.log.push(format!("replay to {h}"));
                    self.seen.replays += 1;
                    self.deliver(h, a, None);
                }
            }
        }
    }

    /// Compares every daemon's decision with the model.
    fn verify(&mut self) -> Result<(), String> {
        for h in 0..self.hosts.len() {
            let now = self.host_now(h);
            let d = self.hosts[h].machine.decide(now);
            let m = &self.hosts[h].model;
            if d.now.secs() < self.now {
                return Err(format!(
                    "host {h}: effective time {} is behind real time {}: a clock set back extended a period",
                    d.now.secs(),
                    self.now
                ));
            }
            if d.now.secs() != m.t {
                return Err(format!(
                    "host {h}: effective time {} but the model says {}",
                    d.now.secs(),
                    m.t
                ));
            }
            let (licensed, warning, stop) = m.expect();
            if licensed && warning {
                self.seen.warnings += 1;
            }
            if !licensed && !m.ended && m.serial_elsewhere <= m.serial_here {
                self.seen.stopped += 1;
            }
            if d.licensed != licensed {
                return Err(format!(
                    "host {h}: licensed={} ({:?}, {}) but the rules say {licensed}; model {m:?}",
                    d.licensed, d.phase, d.reason_code
                ));
            }
            if licensed && d.warning.is_some() != warning {
                return Err(format!(
                    "host {h}: warning {:?} but the rules say {warning}; model {m:?}",
                    d.warning
                ));
            }
            if licensed && d.stop_at.map(|t| t.secs()) != stop {
                return Err(format!(
                    "host {h}: stop at {:?} but the rules say {stop:?}; model {m:?}",
                    d.stop_at
                ));
            }
            let serial = self.hosts[h].machine.grant().map_or(0, |g| g.serial);
            if serial != m.serial_here {
                return Err(format!(
                    "host {h}: grant serial {serial} but the highest bound here is {}",
                    m.serial_here
                ));
            }
        }
        Ok(())
    }
}

fn run(seed: u64, total: &mut Seen) -> Result<(), String> {
    let mut sim = Sim::new(seed);
    sim.verify()?;
    for _ in 0..STEPS {
        sim.step();
        sim.verify()
            .map_err(|e| format!("{e}\nschedule: {}", sim.log.join("; ")))?;
    }
    let s = sim.seen;
    total.relayed += s.relayed;
    total.late_accepted += s.late_accepted;
    total.replays += s.replays;
    total.refused += s.refused;
    total.ended_by_gossip += s.ended_by_gossip;
    total.warnings += s.warnings;
    total.stopped += s.stopped;
    total.upgrades_by_gossip += s.upgrades_by_gossip;
    Ok(())
}

#[test]
fn random_site_schedules_follow_the_license_rules() {
    if let Ok(seed) = std::env::var("RELAY_SIM_SEED") {
        let seed: u64 = seed.parse().expect("RELAY_SIM_SEED is a number");
        let mut seen = Seen::default();
        if let Err(e) = run(seed, &mut seen) {
            panic!("seed {seed}: {e}");
        }
        println!("seed {seed}: {seen:?}");
        return;
    }
    let schedules: u64 = std::env::var("RELAY_SIM_SCHEDULES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let mut seen = Seen::default();
    for seed in 0..schedules {
        if let Err(e) = run(seed, &mut seen) {
            panic!("seed {seed} failed (replay: RELAY_SIM_SEED={seed} cargo test -p daemon --test relay_sim): {e}");
        }
    }
    println!("{schedules} schedules: {seen:?}");
    if schedules >= 500 {
        // The schedules must keep reaching every rule they are meant to test.
        for (what, n) in [
            ("checks relayed", seen.relayed),
            ("late answers accepted", seen.late_accepted),
            ("replays", seen.replays),
            ("refusals through the site", seen.refused),
            ("licenses ended by a gossiped grant", seen.ended_by_gossip),
            ("upgrades by gossip", seen.upgrades_by_gossip),
            ("warnings", seen.warnings),
            ("grace periods over", seen.stopped),
        ] {
            assert!(n > 0, "no schedule reached: {what} ({seen:?})");
        }
    }
}
