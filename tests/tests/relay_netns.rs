//! Real separate hosts in Linux network namespaces, the real `promos-licd`
//! binary in them, the license server (in this process, on a simulated clock)
//! in the root namespace: the peer relay (issue 16); a host with no
//! network at all that is activated and checked by file, and two hosts with
//! only a cable between them that pass a grant applied by file on by gossip
//! (issue 19, at the end of this file).
//!
//! The relay: namespaces joined by veth pairs, a daemon in three of them.
//!
//! ```text
//!  root namespace                      namespace A              B, C
//!  pls 10.N.0.1  ---- uplink veth ---- 10.N.0.2  [br] 10.N.1.1 --- 10.N.1.2 / .3
//!  hostile 10.N.2.1 -- lan veth ------ 10.N.2.2
//! ```
//!
//! Only A has a route to the server (B and C are activated while A forwards,
//! then forwarding and their routes are taken away). The daemons' wall clock is
//! the test-only clock file (`PROMOS_LICD_TEST_CLOCK_FILE`), kept equal to the
//! server's simulated clock, so days pass in a step.
//!
//! Needs root (CI runs as root) and `ip` from iproute2. Without them the test
//! fails and says so; it is never skipped.

use daemon::config::CertPin;
use daemon::peer::{PeerEndpoint, PeerIdentity};
use daemon::socket::SocketClient;
use keys::{
    Entitlements, LicenseData, LicenseNumber, LicenseType, Protection, SigningKeyPair, SimClock,
    UnixTime,
};
use portal::admin::{AdminEnvelope, AdminRequest};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wire::{codec, PeerRequest, PeerResponse, Request, Response};

const T0: UnixTime = UnixTime(1_800_000_000);
/// Generous: these tests share two cores with other builds.
const WAIT: Duration = Duration::from_secs(60);
const PEER_PORT: u16 = 4434;
/// The goal (issue 16): once the relay host's check reaches the server again,
/// every host is back to normal, and an upgrade or a reset has reached every
/// host, within this long, with no check asked of the other hosts.
const SITE_RECOVERY: Duration = Duration::from_secs(10);

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ns(name: &str, args: &[&str]) {
    let mut all = vec!["ip", "netns", "exec", name];
    all.extend_from_slice(args);
    sh(&all);
}

/// These tests build network namespaces: they fail (never skip) without root
/// or without `ip`.
fn needs_root_and_ip() {
    let euid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    assert_eq!(
        euid, "0",
        "this test builds network namespaces (ip netns) and must run as root; CI runs it as root"
    );
    assert!(
        Command::new("ip").arg("-V").output().is_ok(),
        "this test needs `ip` from iproute2 (scripts/setup installs it)"
    );
}

/// A fresh namespace `name` (a stale one of an earlier run removed) with its
/// loopback up and nothing else.
fn fresh_netns(name: &str) {
    let _ = Command::new("ip").args(["netns", "del", name]).output();
    sh(&["ip", "netns", "add", name]);
    ns(name, &["ip", "link", "set", "lo", "up"]);
}

/// The namespaces and links; removed again on drop (also when a test fails).
struct Net {
    prefix: String,
    subnet: u8,
}

impl Net {
    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }
    fn ip(&self, net: u8, host: u8) -> String {
        format!("10.{}.{net}.{host}", self.subnet)
    }
    fn link(&self, what: &str) -> String {
        format!("{}{what}", self.prefix)
    }

    fn create() -> Net {
        needs_root_and_ip();
        let n = (std::process::id() % 50) as u8;
        let net = Net {
            prefix: format!("rl{n}"),
            subnet: 200 + n,
        };
        net.destroy();
        for h in ["a", "b", "c"] {
            fresh_netns(&net.ns(h));
        }
        let (a, b, c) = (net.ns("a"), net.ns("b"), net.ns("c"));
        // Uplink: root <-> A.
        let (up0, up1) = (net.link("up0"), net.link("up1"));
        sh(&[
            "ip", "link", "add", &up0, "type", "veth", "peer", "name", &up1,
        ]);
        sh(&["ip", "link", "set", &up1, "netns", &a]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", net.ip(0, 1)),
            "dev",
            &up0,
        ]);
        sh(&["ip", "link", "set", &up0, "up"]);
        ns(
            &a,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", net.ip(0, 2)),
                "dev",
                &up1,
            ],
        );
        ns(&a, &["ip", "link", "set", &up1, "up"]);
        // A second link root <-> A for the hostile peer (stays up when the uplink is cut).
        let (lan0, lan1) = (net.link("lan0"), net.link("lan1"));
        sh(&[
            "ip", "link", "add", &lan0, "type", "veth", "peer", "name", &lan1,
        ]);
        sh(&["ip", "link", "set", &lan1, "netns", &a]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", net.ip(2, 1)),
            "dev",
            &lan0,
        ]);
        sh(&["ip", "link", "set", &lan0, "up"]);
        ns(
            &a,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", net.ip(2, 2)),
                "dev",
                &lan1,
            ],
        );
        ns(&a, &["ip", "link", "set", &lan1, "up"]);
        // The site LAN: a bridge in A, B and C on it.
        ns(&a, &["ip", "link", "add", "br0", "type", "bridge"]);
        ns(
            &a,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", net.ip(1, 1)),
                "dev",
                "br0",
            ],
        );
        ns(&a, &["ip", "link", "set", "br0", "up"]);
        for (h, host_ip) in [(&b, 2u8), (&c, 3u8)] {
            let (x0, x1) = (format!("{h}0"), format!("{h}1"));
            sh(&[
                "ip", "link", "add", &x0, "type", "veth", "peer", "name", &x1,
            ]);
            sh(&["ip", "link", "set", &x0, "netns", &a]);
            sh(&["ip", "link", "set", &x1, "netns", h]);
            ns(&a, &["ip", "link", "set", &x0, "master", "br0"]);
            ns(&a, &["ip", "link", "set", &x0, "up"]);
            ns(
                h,
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("{}/24", net.ip(1, host_ip)),
                    "dev",
                    &x1,
                ],
            );
            ns(h, &["ip", "link", "set", &x1, "up"]);
        }
        net
    }

    /// B and C get a route to the server through A (activation day).
    fn route_all(&self, on: bool) {
        let a = self.ns("a");
        let v = if on { "1" } else { "0" };
        ns(
            &a,
            &["sysctl", "-q", "-w", &format!("net.ipv4.ip_forward={v}")],
        );
        let site = format!("10.{}.1.0/24", self.subnet);
        let gw = self.ip(0, 2);
        if on {
            sh(&["ip", "route", "replace", &site, "via", &gw]);
        } else {
            let _ = Command::new("ip").args(["route", "del", &site]).output();
        }
        for h in ["b", "c"] {
            let name = self.ns(h);
            if on {
                ns(
                    &name,
                    &["ip", "route", "replace", "default", "via", &self.ip(1, 1)],
                );
            } else {
                let _ = Command::new("ip")
                    .args(["netns", "exec", &name, "ip", "route", "del", "default"])
                    .output();
            }
        }
    }

    fn uplink(&self, up: bool) {
        ns(
            &self.ns("a"),
            &[
                "ip",
                "link",
                "set",
                &self.link("up1"),
                if up { "up" } else { "down" },
            ],
        );
    }

    fn destroy(&self) {
        for l in ["up0", "lan0"] {
            let _ = Command::new("ip")
                .args(["link", "del", &self.link(l)])
                .output();
        }
        for h in ["a", "b", "c"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(h)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["route", "del", &format!("10.{}.1.0/24", self.subnet)])
            .output();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// The real `promos-licd` binary of this build (built here if needed: a test of
/// the `e2e` package cannot name another package's binary).
fn licd_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-q", "-p", "daemon", "--bin", "promos-licd"]);
    if release {
        cmd.arg("--release");
    }
    if let Some(target) = profile_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    let status = cmd.status().expect("cargo build promos-licd");
    assert!(status.success(), "building promos-licd failed");
    let bin = profile_dir.join("promos-licd");
    assert!(bin.exists(), "{} missing after the build", bin.display());
    bin
}

/// The license server, in this process, on the root namespace's uplink address.
struct Pls {
    addr: SocketAddr,
    public: keys::PublicKey,
    fingerprint: String,
    admin: portal::admin::AdminContext,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Pls {
    async fn start(dir: &Path, listen: SocketAddr, clock: SimClock) -> Pls {
        let mut config = portal::config::Config {
            data_dir: dir.join("pls"),
            ..Default::default()
        };
        config.quic.listen = listen;
        config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.metrics.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.quic.activations_per_source_per_minute = 1000;
        let server = portal::Server::bind(config, Arc::new(clock))
            .await
            .expect("server starts");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let pls = Pls {
            addr: server.quic_addr(),
            public: server.identity().public_key(),
            fingerprint: server.identity().cert_fingerprint(),
            admin: server.admin_context(),
            stop: Some(tx),
        };
        tokio::spawn(async move {
            server
                .run(async move {
                    let _ = rx.await;
                })
                .await
                .expect("server ran");
        });
        pls
    }

    fn admin(&self, request: AdminRequest) -> Value {
        portal::admin::execute(
            &self.admin,
            AdminEnvelope {
                idempotency_key: None,
                operator: "e2e".into(),
                request,
            },
        )
        .unwrap_or_else(|e| panic!("admin command failed: {e}"))
        .data
    }

    fn create_license(&self) -> (LicenseNumber, String) {
        let data = self.admin(AdminRequest::CreateLicense {
            license_type: LicenseType::Standard,
            protection: Protection::SoftDongle,
            entitlements: Entitlements::standard_base(),
            licensee: serde_json::from_value(json!({
                "company": "Muster AG", "first_name": "Hans", "last_name": "Muster",
                "street": "Bahnhofstrasse 1", "postcode": "3000", "city": "Bern", "state": "BE",
                "country": "CH", "email": "hans@muster.example", "phone": "+41 31 000 00 00"
            }))
            .expect("licensee"),
            license_data: LicenseData {
                name: "Muster AG".into(),
                postcode: "3000".into(),
                city: "Bern".into(),
            },
            account_email: None,
            paid: true,
        });
        let number: LicenseNumber =
            serde_json::from_value(data["license"]["number"].clone()).expect("number");
        let token = data["token"].as_str().expect("token").to_owned();
        (number, token)
    }

    fn pin(&self) -> [u8; 32] {
        let mut pin = [0u8; 32];
        for (i, b) in pin.iter_mut().enumerate() {
            *b = u8::from_str_radix(&self.fingerprint[2 * i..2 * i + 2], 16).expect("hex");
        }
        pin
    }
}

impl Drop for Pls {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// One `promos-licd run` process inside a namespace.
struct Licd {
    name: &'static str,
    socket: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Licd {
    async fn client(&self) -> SocketClient {
        SocketClient::connect(&self.socket)
            .await
            .unwrap_or_else(|e| panic!("daemon {} socket: {e}", self.name))
    }

    async fn status(&self) -> Value {
        let v = self
            .client()
            .await
            .call(&json!({"cmd": "status"}))
            .await
            .expect("call");
        assert_eq!(v["ok"], json!(true), "{v}");
        v["status"].clone()
    }

    async fn check_now(&self) -> Value {
        let v = self
            .client()
            .await
            .call(&json!({"cmd": "check_now"}))
            .await
            .expect("call");
        assert_eq!(v["ok"], json!(true), "{v}");
        v["status"].clone()
    }

    async fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(mut c) = SocketClient::connect(&self.socket).await {
                if let Ok(v) = c.call(&json!({"cmd": "status"})).await {
                    if pred(&v["status"]) {
                        return v["status"].clone();
                    }
                    if tokio::time::Instant::now() >= deadline {
                        panic!(
                            "{}: timed out waiting for {what}; last status {}\nlog:\n{}",
                            self.name,
                            v["status"],
                            self.log_text()
                        );
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: timed out waiting for {what}\nlog:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (status only, no check asked) until `pred` holds, at most
    /// `limit` after `since`.
    async fn within(
        &self,
        since: tokio::time::Instant,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        loop {
            let s = self.status().await;
            if pred(&s) {
                return s;
            }
            assert!(
                since.elapsed() <= limit,
                "{}: {what} not within {limit:?}; status {s}\nlog:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Checks (through whatever path the daemon finds) until `pred` holds.
    async fn check_until(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.check_now().await;
            if pred(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: timed out waiting for {what}; last status {s}\nlog:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Licd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Site {
    clock: SimClock,
    clock_file: PathBuf,
}

impl Site {
    /// Moves the server's and every daemon's wall clock together.
    fn set_time(&self, t: UnixTime) {
        std::fs::write(&self.clock_file, t.secs().to_string()).expect("clock file");
        self.clock.set(t);
    }
}

fn peer_key(bin: &Path, data: &Path) -> String {
    let out = Command::new(bin)
        .arg("peer-key")
        .env("PROMOS_LICD_DATA_DIR", data)
        .env("PROMOS_LICD_CONFIG", "/dev/null")
        .output()
        .expect("promos-licd peer-key");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// What every test here starts from: the daemon binary, a temporary
/// directory, the site's clock (server and daemons at [`T0`]) and the license
/// server listening on `listen`.
struct Lab {
    // Dropped in this order: the server stops before its directory goes.
    pls: Pls,
    site: Site,
    tmp: tempfile::TempDir,
    bin: PathBuf,
}

impl Lab {
    async fn start(listen: SocketAddr) -> Lab {
        let bin = tokio::task::spawn_blocking(licd_binary)
            .await
            .expect("build");
        let tmp = tempfile::tempdir().expect("tempdir");
        let site = Site {
            clock: SimClock::at(T0),
            clock_file: tmp.path().join("clock"),
        };
        site.set_time(T0);
        let pls = Pls::start(tmp.path(), listen, site.clock.clone()).await;
        Lab {
            pls,
            site,
            tmp,
            bin,
        }
    }

    /// Host `name`'s data directory.
    fn data(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Host `name`'s peer key (its identity is created on first use, as the
    /// daemon does on first start).
    fn peer_key(&self, name: &str) -> String {
        peer_key(&self.bin, &self.data(name))
    }

    /// The vendor's answer file to a request file (`pls admin offline-answer`).
    fn answer(&self, request: &str) -> String {
        let data = self.pls.admin(AdminRequest::OfflineAnswer {
            request: request.to_owned(),
        });
        data["file"].as_str().expect("answer file").to_owned()
    }

    /// `promos-licd run` for host `name` inside namespace `netns`: trusting
    /// this server, on the site's clock, with a one-second tick and no dongle.
    /// `env` adds the rest: the server address (always), and a license to
    /// activate and the peers where the test needs them.
    fn spawn(&self, name: &'static str, netns: &str, hwid: &str, env: &[(&str, String)]) -> Licd {
        let data = self.data(name);
        std::fs::create_dir_all(data.join("project/lic")).expect("dirs");
        let config = data.join("licd.toml");
        std::fs::write(&config, "check_attempts = 1\nattempt_timeout_secs = 2\n").expect("config");
        let socket = data.join("licd.sock");
        let log = data.join("licd.log");
        let child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(&self.bin)
            .arg("run")
            .env("PROMOS_LICD_CONFIG", &config)
            .env("PROMOS_LICD_SERVER_NAME", "localhost")
            .env("PROMOS_LICD_SERVER_CERT_SHA256", hex(&self.pls.pin()))
            .env("PROMOS_LICD_TRUSTED_KEYS", self.pls.public.to_string())
            .env("PROMOS_LICD_DATA_DIR", &data)
            .env("PROMOS_LICD_PROJECT_DIR", data.join("project"))
            .env("PROMOS_LICD_SOCKET", &socket)
            .env("PROMOS_LICD_TICK_SECS", "1")
            .env("PROMOS_LICD_DONGLE_BACKEND", "simulated")
            .env("PROMOS_LICD_SIMULATED_DONGLE_FILE", data.join("NO-DONGLE"))
            .env("PROMOS_LICD_TEST_HARDWARE_ID", hwid)
            .env("PROMOS_LICD_TEST_CLOCK_FILE", &self.site.clock_file)
            .env("PROMOS_LICD_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("ip netns exec promos-licd run");
        Licd {
            name,
            socket,
            log,
            child,
        }
    }
}

/// The environment of a daemon listening for peers on [`PEER_PORT`], with
/// `peers` (`address=key,...`) as its site.
fn peer_env(peers: &str) -> [(&'static str, String); 2] {
    [
        ("PROMOS_LICD_PEER_LISTEN", format!("0.0.0.0:{PEER_PORT}")),
        ("PROMOS_LICD_PEERS", peers.to_owned()),
    ]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What the hostile peer answers when A asks it to relay.
#[derive(Clone, Debug, PartialEq)]
enum Hostility {
    /// Says its queue is full (while the test is not about it).
    Decline,
    /// Carries the check honestly to the server (and keeps the answer).
    Honest,
    /// Signs a receipt for A's very request with a key the server never had.
    Forge,
    /// Hands back the answer it kept from an earlier honest relay.
    Replay,
}

/// The hostile peer: listed in A's peer list (so it passes the TLS check), in
/// this process, on the root namespace's second link to A.
struct Hostile {
    endpoint: PeerEndpoint,
    mode: Arc<Mutex<Hostility>>,
    kept: Arc<Mutex<Option<Vec<u8>>>>,
    relayed: Arc<Mutex<u32>>,
    /// `ServerReached` received: never, its Hello does not list the capability
    /// (it stands for an older daemon, which could not decode it).
    reached: Arc<Mutex<u32>>,
}

impl Hostile {
    fn start(
        identity: &PeerIdentity,
        a_key: &keys::PublicKey,
        listen: SocketAddr,
        pls: &Pls,
    ) -> Hostile {
        let endpoint =
            PeerEndpoint::bind(identity, std::slice::from_ref(a_key), Some(listen)).expect("bind");
        let h = Hostile {
            endpoint: endpoint.clone(),
            mode: Arc::new(Mutex::new(Hostility::Decline)),
            kept: Arc::new(Mutex::new(None)),
            relayed: Arc::new(Mutex::new(0)),
            reached: Arc::new(Mutex::new(0)),
        };
        let (mode, kept, relayed, reached) = (
            h.mode.clone(),
            h.kept.clone(),
            h.relayed.clone(),
            h.reached.clone(),
        );
        let server = daemon::client::ServerClient::new(
            &pls.addr.to_string(),
            "localhost",
            Some(&CertPin(pls.pin())),
        )
        .expect("client")
        .with_backoff(daemon::client::Backoff {
            attempts: 1,
            ..Default::default()
        });
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.endpoint().accept().await {
                let Ok(conn) = incoming.await else { continue };
                let (mode, kept, relayed, reached, server) = (
                    mode.clone(),
                    kept.clone(),
                    relayed.clone(),
                    reached.clone(),
                    server.clone(),
                );
                tokio::spawn(async move {
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        let Ok(req) = codec::read_message::<PeerRequest, _>(&mut recv).await else {
                            return;
                        };
                        let answer = match req {
                            PeerRequest::Forward { body } => {
                                let m = mode.lock().expect("mode").clone();
                                match m {
                                    Hostility::Decline => {
                                        PeerResponse::Error(wire::PeerError::QueueFull)
                                    }
                                    Hostility::Honest => {
                                        let r = server
                                            .request(&Request::Relay(wire::RelayEnvelope {
                                                relay: "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
                                                    .parse()
                                                    .expect("hwid"),
                                                body,
                                            }))
                                            .await;
                                        match r {
                                            Ok(Response::Relayed(env)) => {
                                                *kept.lock().expect("kept") =
                                                    Some(env.body.clone());
                                                PeerResponse::Answer { body: env.body }
                                            }
                                            other => panic!(
                                                "hostile peer's honest relay failed: {other:?}"
                                            ),
                                        }
                                    }
                                    Hostility::Forge => {
                                        let Ok(Request::Check(c)) =
                                            codec::decode_body::<Request>(&body)
                                        else {
                                            return;
                                        };
                                        let fake = SigningKeyPair::generate();
                                        let receipt = wire::CheckReceipt {
                                            license_number: c.license_number,
                                            hardware_id: c.hardware_id,
                                            nonce: c.nonce,
                                            server_time: UnixTime(u64::MAX / 4),
                                            next_check_due: UnixTime(u64::MAX / 4),
                                            current_serial: 99,
                                        };
                                        let resp = Response::Checked {
                                            receipt: keys::Signed::sign(&receipt, &fake),
                                            grant: None,
                                        };
                                        PeerResponse::Answer {
                                            body: codec::encode_body(&resp).expect("encode"),
                                        }
                                    }
                                    Hostility::Replay => PeerResponse::Answer {
                                        body: kept
                                            .lock()
                                            .expect("kept")
                                            .clone()
                                            .expect("kept answer"),
                                    },
                                }
                            }
                            PeerRequest::Hello { .. } => PeerResponse::Ack,
                            PeerRequest::Collect => PeerResponse::Collected {
                                answers: vec![],
                                grants: vec![],
                            },
                            PeerRequest::Grants(_) => PeerResponse::Ack,
                            PeerRequest::ServerReached => {
                                *reached.lock().expect("reached") += 1;
                                PeerResponse::Ack
                            }
                        };
                        if matches!(answer, PeerResponse::Answer { .. }) {
                            *relayed.lock().expect("relayed") += 1;
                        }
                        if codec::write_message(&mut send, &answer).await.is_err() {
                            return;
                        }
                        let _ = send.finish();
                    }
                });
            }
        });
        h
    }

    fn set(&self, m: Hostility) {
        *self.mode.lock().expect("mode") = m;
    }

    fn relayed(&self) -> u32 {
        *self.relayed.lock().expect("relayed")
    }
}

const HOST_A: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const HOST_B: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
const HOST_C: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_one_uplink_relay_grace_restore_reset_and_a_hostile_peer() {
    let net = Net::create();
    let lab = Lab::start(format!("{}:0", net.ip(0, 1)).parse().expect("addr")).await;
    let (site, pls) = (&lab.site, &lab.pls);
    let (ka, kb, kc) = (lab.peer_key("a"), lab.peer_key("b"), lab.peer_key("c"));
    let a_public: keys::PublicKey = ka.parse().expect("key");
    // Four hostile identities, all listed in A's configuration: two relays
    // (replay, forge) and two that only push (forged grants, flood).
    let hostile_ids: Vec<PeerIdentity> = (0..4)
        .map(|_| PeerIdentity::from_key(SigningKeyPair::generate()).expect("identity"))
        .collect();
    let hostile_addr: SocketAddr = format!("{}:0", net.ip(2, 1)).parse().expect("addr");
    let hostiles: Vec<Hostile> = hostile_ids
        .iter()
        .map(|id| Hostile::start(id, &a_public, hostile_addr, pls))
        .collect();
    let hostile_list: Vec<String> = hostiles
        .iter()
        .zip(&hostile_ids)
        .map(|(h, id)| format!("{}={}", h.endpoint.local_addr().expect("addr"), id.public()))
        .collect();

    let (ip_a, ip_b, ip_c) = (net.ip(1, 1), net.ip(1, 2), net.ip(1, 3));
    // A asks the hostile peer first, so every relay request reaches it.
    let peers_a = format!(
        "{},{ip_b}:{PEER_PORT}={kb},{ip_c}:{PEER_PORT}={kc}",
        hostile_list.join(",")
    );
    let peers_b = format!("{ip_a}:{PEER_PORT}={ka},{ip_c}:{PEER_PORT}={kc}");
    let peers_c = format!("{ip_a}:{PEER_PORT}={ka},{ip_b}:{PEER_PORT}={kb}");

    // Activation day: everyone reaches the server through A.
    net.route_all(true);
    let (la, lb, lc) = (
        pls.create_license(),
        pls.create_license(),
        pls.create_license(),
    );
    // Activated over the network (number and token in the environment).
    let online = |license: &(LicenseNumber, String), peers: &str| {
        let mut env = vec![
            ("PROMOS_LICD_SERVER", pls.addr.to_string()),
            ("PROMOS_LICD_LICENSE_NUMBER", license.0.to_string()),
            ("PROMOS_LICD_TOKEN", license.1.clone()),
        ];
        env.extend(peer_env(peers));
        env
    };
    let a = lab.spawn("a", &net.ns("a"), HOST_A, &online(&la, &peers_a));
    let b = lab.spawn("b", &net.ns("b"), HOST_B, &online(&lb, &peers_b));
    let c = lab.spawn("c", &net.ns("c"), HOST_C, &online(&lc, &peers_c));
    for d in [&a, &b, &c] {
        d.wait_status("activation", |s| s["state"] == json!("licensed"))
            .await;
    }

    // From now on only A has a route to the server.
    net.route_all(false);

    // 1. All three stay licensed through the relay, day after day.
    for day in [1u64, 8, 15] {
        let t = T0.plus_days(day);
        site.set_time(t);
        a.check_until("a direct check", |s| {
            s["last_check"] == json!(t.to_string())
        })
        .await;
        for d in [&b, &c] {
            let s = d
                .check_until("a relayed check", |s| {
                    s["last_check"] == json!(t.to_string())
                })
                .await;
            assert_eq!(s["state"], json!("licensed"), "{s}");
            assert!(s["warning"].is_null(), "{s}");
        }
    }
    for (l, host) in [(&lb.0, HOST_B), (&lc.0, HOST_C)] {
        let show = pls.admin(AdminRequest::Show { number: l.clone() });
        let from = show["last_check_in"]["from"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            from.contains(&format!("via relay {HOST_A}")),
            "{host}'s check came through A: {from}"
        );
    }
    assert!(
        b.log_text().contains("check relayed by a peer"),
        "{}",
        b.log_text()
    );

    // 2. The uplink is cut: after 10 silent days the warning comes, for all.
    let last = T0.plus_days(15);
    net.uplink(false);
    site.set_time(last.plus_days(11));
    for d in [&a, &b, &c] {
        let s = d
            .check_until("the grace warning", |s| {
                s["state"] == json!("server_unreachable")
            })
            .await;
        assert_eq!(s["licensed"], json!(true), "{s}");
        assert!(!s["warning"].is_null(), "{s}");
        assert_eq!(s["last_check"], json!(last.to_string()), "{s}");
        assert_eq!(
            s["stop_at"],
            json!(last.plus_days(30).secs()),
            "the stop counts from the last server time: {s}"
        );
    }
    // B's and C's checks wait at A (store and forward).
    assert!(b.log_text().contains("waits at peer"), "{}", b.log_text());

    // 3. The uplink returns. B and C tried once more just before (queued at
    //    A), so their own next retry is an hour away. Only A is asked to
    //    check: it forwards what it kept and tells B and C at once
    //    (`ServerReached`); each checks through A: all back within 10 s.
    let back = last.plus_days(12);
    site.set_time(back);
    for d in [&a, &b, &c] {
        let s = d.check_now().await;
        assert_eq!(s["state"], json!("server_unreachable"), "{s}");
    }
    net.uplink(true);
    a.check_until("A restored", |s| s["state"] == json!("licensed"))
        .await;
    let a_checked = tokio::time::Instant::now();
    for d in [&b, &c] {
        let s = d
            .within(
                a_checked,
                SITE_RECOVERY,
                "restored through A's report",
                |s| {
                    s["state"] == json!("licensed")
                        && s["warning"].is_null()
                        && s["last_check"] == json!(back.to_string())
                },
            )
            .await;
        assert_eq!(s["licensed"], json!(true), "{s}");
    }
    assert!(a.log_text().contains("queued"), "{}", a.log_text());
    assert!(
        b.log_text()
            .contains("checked through a peer that reached the server"),
        "{}",
        b.log_text()
    );

    // 4. C is reset and B upgraded in the server; neither reaches the server
    //    itself. A's next check reports to them, and within 10 s C has the
    //    refusal and B the new grant, both through A.
    pls.admin(AdminRequest::Reset {
        number: lc.0.clone(),
    });
    let before = b.status().await;
    let serial_b = before["grant_serial"].clone();
    let pwa_b = before["entitlements"]["pwa_users"]
        .as_u64()
        .expect("pwa users");
    let mut adds = Entitlements::none();
    adds.pwa_users = 3;
    pls.admin(AdminRequest::Upgrade {
        number: lb.0.clone(),
        adds,
        paid: true,
    });
    let s = a.check_now().await;
    assert_eq!(s["state"], json!("licensed"), "{s}");
    let a_checked = tokio::time::Instant::now();
    let s = c
        .within(a_checked, SITE_RECOVERY, "the reset", |s| {
            s["state"] == json!("refused")
        })
        .await;
    assert_eq!(s["licensed"], json!(false), "{s}");
    assert_eq!(s["reason"]["code"], json!("license_was_reset"), "{s}");
    let s = b
        .within(a_checked, SITE_RECOVERY, "the upgrade", |s| {
            s["grant_serial"] != serial_b
        })
        .await;
    assert_eq!(
        s["state"],
        json!("licensed"),
        "B is not affected by C's reset: {s}"
    );
    assert_eq!(
        s["entitlements"]["pwa_users"].as_u64(),
        Some(pwa_b + 3),
        "{s}"
    );

    // 5. Hostile peers (listed in A's configuration, so they pass the TLS check).
    net.uplink(false);
    let serial_before = a.status().await["grant_serial"].clone();
    let a_addr = format!("{}:{PEER_PORT}", net.ip(2, 2));
    // a) One relays honestly once: A's check goes through it (any listed peer may relay).
    hostiles[0].set(Hostility::Honest);
    let t = back.plus_days(1);
    site.set_time(t);
    let s = a
        .check_until("relayed by the hostile peer, honestly", |s| {
            s["last_check"] == json!(t.to_string())
        })
        .await;
    assert_eq!(s["state"], json!("licensed"), "{s}");
    // b) It replays that answer to A's next check: detected, changes nothing, cut off.
    hostiles[0].set(Hostility::Replay);
    site.set_time(t.plus_days(1));
    let s = a.check_now().await;
    assert_eq!(
        s["last_check"],
        json!(t.to_string()),
        "a replay changes nothing: {s}"
    );
    assert!(
        a.log_text().contains("peer cut off") && a.log_text().contains("replayed receipt"),
        "{}",
        a.log_text()
    );
    let relayed = hostiles[0].relayed();
    let _ = a.check_now().await;
    assert_eq!(
        hostiles[0].relayed(),
        relayed,
        "a cut-off peer is not asked again"
    );
    // c) Another forges a receipt for A's very request: refused, cut off.
    hostiles[1].set(Hostility::Forge);
    let s = a.check_now().await;
    assert_eq!(
        s["last_check"],
        json!(t.to_string()),
        "a forged receipt changes nothing: {s}"
    );
    assert!(hostiles[1].relayed() >= 1);
    assert!(a.log_text().contains("forged receipt"), "{}", a.log_text());
    // d) A third pushes a forged grant for A's license: cut off.
    let conn = hostiles[2]
        .endpoint
        .connect(&a_addr)
        .await
        .expect("connect");
    let fake = SigningKeyPair::generate();
    let forged = keys::LicenseGrant {
        format: keys::grant::GRANT_FORMAT,
        license_number: la.0.clone(),
        license_type: LicenseType::Standard,
        protection: Protection::SoftDongle,
        license_data: LicenseData {
            name: "Evil".into(),
            postcode: "0".into(),
            city: "X".into(),
        },
        binding: keys::Binding::HardwareId(HOST_A.parse().expect("hwid")),
        entitlements: Entitlements::engineering(),
        issued_at: t,
        valid_until: None,
        serial: 1_000,
        key_id: pls.public.key_id(),
    };
    let answer = conn
        .ask(&PeerRequest::Grants(vec![keys::Signed::sign(
            &forged, &fake,
        )]))
        .await;
    assert!(answer.is_err(), "cut off instead of an answer: {answer:?}");
    assert!(a.log_text().contains("forged grant"), "{}", a.log_text());
    let again = match hostiles[2].endpoint.connect(&a_addr).await {
        Ok(c) => c.ask(&PeerRequest::Collect).await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(again.is_err(), "a cut-off peer gets nothing: {again:?}");
    // e) The fourth floods: cut off once over the rate limit.
    let conn = hostiles[3]
        .endpoint
        .connect(&a_addr)
        .await
        .expect("connect");
    let mut answered = 0;
    for _ in 0..(daemon::relay::PEER_BURST * 3) {
        if conn.ask(&PeerRequest::Collect).await.is_err() {
            break;
        }
        answered += 1;
    }
    assert!(
        answered < daemon::relay::PEER_BURST * 3,
        "the flood was cut off after {answered} requests"
    );
    assert!(a.log_text().contains("flood"), "{}", a.log_text());
    // f) An unlisted identity does not even get through the handshake.
    let stranger = PeerIdentity::from_key(SigningKeyPair::generate()).expect("identity");
    let outsider =
        PeerEndpoint::bind(&stranger, std::slice::from_ref(&a_public), None).expect("endpoint");
    let result = match outsider.connect(&a_addr).await {
        Ok(conn) => conn.ask(&PeerRequest::Collect).await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(result.is_err(), "an unlisted key is refused: {result:?}");

    // Nothing the hostile peers did changed a license: A holds its genuine
    // receipt and grant, B is licensed, C stays reset.
    let s = a.status().await;
    assert_eq!(
        (
            s["state"].clone(),
            s["last_check"].clone(),
            s["grant_serial"].clone()
        ),
        (json!("licensed"), json!(t.to_string()), serial_before),
        "{s}"
    );
    assert_eq!(b.status().await["state"], json!("licensed"));
    assert_eq!(c.status().await["state"], json!("refused"));
    // A reported every check that reached the server to its peers, but only
    // to those whose Hello lists the capability: never to these.
    for h in &hostiles {
        assert_eq!(*h.reached.lock().expect("reached"), 0);
    }
}

// ---- A host with no network at all (issue 19) ----

/// A namespace with nothing but its own loopback: no link, no route, so no
/// packet of the daemon in it can reach the server or anything else. Removed
/// on drop.
struct Isolated {
    name: String,
}

impl Isolated {
    fn create(host: &str) -> Isolated {
        needs_root_and_ip();
        let me = Isolated {
            name: format!("ol{}{host}", std::process::id() % 50),
        };
        fresh_netns(&me.name);
        me
    }

    /// `ip` run inside the namespace, its output.
    fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "ip"])
            .args(args)
            .output()
            .expect("ip netns exec");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Isolated {
    /// Routes (IPv4 and IPv6) that lead anywhere but the loopback: none.
    fn routes_off_loopback(&self) -> Vec<String> {
        [self.ip(&["-4", "route"]), self.ip(&["-6", "route"])]
            .iter()
            .flat_map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>())
            .filter(|l| !l.trim().is_empty() && !l.contains(" dev lo"))
            .collect()
    }

    /// This namespace's end of [`Isolated::cable_to`].
    fn cable_end(&self) -> String {
        format!("{}l", self.name)
    }

    /// A site LAN of two hosts and nothing else: one cable (a veth pair)
    /// from this namespace to `other`, on `10.N.3.0/24`, no route beyond it.
    /// The two addresses.
    fn cable_to(&self, other: &Isolated) -> (String, String) {
        let subnet = 200 + std::process::id() % 50;
        let (here, there) = (self.cable_end(), other.cable_end());
        let _ = Command::new("ip").args(["link", "del", &here]).output();
        sh(&[
            "ip", "link", "add", &here, "type", "veth", "peer", "name", &there,
        ]);
        let mut ips = Vec::new();
        for (name, link, host) in [(&self.name, &here, 1), (&other.name, &there, 2)] {
            sh(&["ip", "link", "set", link, "netns", name]);
            let ip = format!("10.{subnet}.3.{host}");
            ns(
                name,
                &["ip", "addr", "add", &format!("{ip}/24"), "dev", link],
            );
            ns(name, &["ip", "link", "set", link, "up"]);
            ips.push(ip);
        }
        (ips.remove(0), ips.remove(0))
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The server address of a host without network: an address of the
/// documentation range, for which its namespace has no route. No token is
/// given either: nothing is typed on a plant host.
fn offline_env() -> [(&'static str, String); 1] {
    [("PROMOS_LICD_SERVER", "192.0.2.1:4433".to_owned())]
}

impl Licd {
    /// One socket command, its whole answer.
    async fn call(&self, cmd: Value) -> Value {
        self.client().await.call(&cmd).await.expect("call")
    }

    /// Writes a request file (`offline_request`); its text.
    async fn offline_request(&self, license: Option<&LicenseNumber>) -> String {
        let license = license.map(|n| n.to_string());
        let v = self
            .call(json!({"cmd": "offline_request", "license_number": license}))
            .await;
        assert_eq!(v["ok"], json!(true), "{v}");
        v["file"].as_str().expect("file").to_owned()
    }

    async fn offline_apply(&self, file: &str) -> Value {
        self.call(json!({"cmd": "offline_apply", "file": file}))
            .await
    }
}

/// The issue's test, with the daemon really cut off: a host in a namespace
/// with only loopback is activated by file, runs 25 simulated days, gets a
/// check by file, and its grace periods restart from the file's server time;
/// the same answer applied twice, on another host, edited in one byte, or
/// after a newer answer is refused with its reason and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_no_network_at_all_is_activated_and_checked_by_file() {
    let (here, there) = (Isolated::create("a"), Isolated::create("b"));
    // Nothing but loopback, and no route anywhere.
    let links = here.ip(&["-o", "link"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains(": lo:"), "{links}");
    assert_eq!(here.routes_off_loopback(), Vec::<String>::new());
    let lab = Lab::start(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let (site, pls) = (&lab.site, &lab.pls);
    let (number, _token) = pls.create_license();
    let a = lab.spawn("a", &here.name, HOST_A, &offline_env());
    let b = lab.spawn("b", &there.name, HOST_B, &offline_env());
    a.wait_status("the daemon up", |s| s["state"] == json!("not_activated"))
        .await;
    b.wait_status("the daemon up", |s| s["state"] == json!("not_activated"))
        .await;
    // Activated by file.
    let act = a.offline_request(Some(&number)).await;
    assert!(act.contains("Kind: activation"), "{act}");
    let act_answer = lab.answer(&act);
    let v = a.offline_apply(&act_answer).await;
    assert_eq!(
        (v["ok"].clone(), v["applied"].clone()),
        (json!(true), json!("activated")),
        "{v}"
    );
    assert_eq!(v["status"]["state"], json!("licensed"), "{v}");
    // Activated, it tries the network and cannot reach the server at all.
    let v = a.call(json!({"cmd": "check_now"})).await;
    assert_eq!(v["check"], json!("failed"), "{v}");
    assert!(
        v["status"]["last_check_failure"].is_string(),
        "the failure is named: {v}"
    );
    // The same answer twice: refused, nothing changed.
    let seen = |s: &Value| {
        (
            s["state"].clone(),
            s["last_check_unix"].clone(),
            s["grant_serial"].clone(),
        )
    };
    let before = a.status().await;
    let v = a.offline_apply(&act_answer).await;
    assert_eq!(
        (v["ok"].clone(), v["reason"].clone()),
        (json!(false), json!("not_waiting")),
        "{v}"
    );
    assert_eq!(seen(&a.status().await), seen(&before));

    // 25 simulated days without any network: the warning period.
    site.set_time(T0.plus_days(25));
    let s = a
        .wait_status("the warning period", |s| {
            s["state"] == json!("server_unreachable")
        })
        .await;
    assert_eq!(s["licensed"], json!(true), "{s}");

    // A check by file, answered on day 25 and carried for two days.
    let check = a.offline_request(None).await;
    assert!(check.contains("Kind: check"), "{check}");
    let check_answer = lab.answer(&check);
    site.set_time(T0.plus_days(27));
    let before = a.status().await;
    // Edited in one byte: refused, nothing changed.
    let at = check_answer.find("\n\n").expect("block") + 10;
    let mut bytes = check_answer.clone().into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let edited = String::from_utf8(bytes).expect("ascii");
    let v = a.offline_apply(&edited).await;
    assert_eq!(v["ok"], json!(false), "{v}");
    assert!(
        ["bad_file", "not_verified"].contains(&v["reason"].as_str().unwrap_or("")),
        "{v}"
    );
    assert_eq!(seen(&a.status().await), seen(&before));
    // Applied on another host: refused there, nothing changed there.
    let v = b.offline_apply(&check_answer).await;
    assert_eq!(v["reason"], json!("other_host"), "{v}");
    assert_eq!(b.status().await["state"], json!("not_activated"));
    // Applied here: the periods restart from the file's server time (day 25).
    let v = a.offline_apply(&check_answer).await;
    assert_eq!(v["applied"], json!("checked"), "{v}");
    assert_eq!(
        v["status"]["last_check_unix"],
        json!(T0.plus_days(25).secs())
    );
    assert_eq!(v["status"]["state"], json!("licensed"), "{v}");
    // Ten silent days from day 25, not from day 27: the warning is back on day 35.
    site.set_time(UnixTime(T0.plus_days(35).secs() - 60));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a.status().await["state"], json!("licensed"));
    site.set_time(T0.plus_days(35).plus_secs(60));
    a.wait_status("the warning again from day 35", |s| {
        s["state"] == json!("server_unreachable")
    })
    .await;

    // Applied after a newer answer: refused, nothing changed.
    let first = a.offline_request(None).await;
    let second = a.offline_request(None).await;
    let first_answer = lab.answer(&first);
    site.set_time(T0.plus_days(35).plus_secs(120));
    let second_answer = lab.answer(&second);
    let v = a.offline_apply(&second_answer).await;
    assert_eq!(v["applied"], json!("checked"), "{v}");
    let before = a.status().await;
    let v = a.offline_apply(&first_answer).await;
    assert_eq!(v["reason"], json!("older_answer"), "{v}");
    let after = a.status().await;
    assert_eq!(
        (after["last_check_unix"].clone(), after["state"].clone()),
        (
            json!(T0.plus_days(35).plus_secs(120).secs()),
            json!("licensed")
        )
    );
    assert_eq!(after["grant_serial"], before["grant_serial"]);
    // And all the while it sent nothing anywhere: still no route, no link.
    assert_eq!(here.routes_off_loopback(), Vec::<String>::new());
}

/// Issue 19, peers: on a site without any way to the server, the license
/// moves from the old computer B to the new computer A, both activated by
/// file. Only A's answer file carries the new grant; B learns by gossip,
/// within seconds and with no check and no file of its own, that its license
/// was reset and moved, and stops ("license was reset"), as the server's
/// refusal would have told it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_applied_by_file_reaches_the_peers_by_gossip() {
    let (new_pc, old_pc) = (Isolated::create("na"), Isolated::create("nb"));
    let (ip_a, ip_b) = new_pc.cable_to(&old_pc);
    let lab = Lab::start(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let (number, _token) = lab.pls.create_license();
    let (ka, kb) = (lab.peer_key("a"), lab.peer_key("b"));
    // Each lists the other as its peer; neither has a server it can reach.
    let spawn = |name, host: &Isolated, hwid, peer: String| {
        let mut env = offline_env().to_vec();
        env.extend(peer_env(&peer));
        lab.spawn(name, &host.name, hwid, &env)
    };
    let a = spawn("a", &new_pc, HOST_A, format!("{ip_b}:{PEER_PORT}={kb}"));
    let b = spawn("b", &old_pc, HOST_B, format!("{ip_a}:{PEER_PORT}={ka}"));
    for d in [&a, &b] {
        d.wait_status("the daemon up", |s| s["state"] == json!("not_activated"))
            .await;
    }

    // The old computer is activated by file.
    let v = b
        .offline_apply(&lab.answer(&b.offline_request(Some(&number)).await))
        .await;
    assert_eq!(v["applied"], json!("activated"), "{v}");
    let old_serial = v["status"]["grant_serial"].as_u64().expect("serial");

    // The license is reset in the portal and the new computer activated by file.
    lab.pls.admin(AdminRequest::Reset {
        number: number.clone(),
    });
    let v = a
        .offline_apply(&lab.answer(&a.offline_request(Some(&number)).await))
        .await;
    assert_eq!(v["applied"], json!("activated"), "{v}");
    let new_serial = v["status"]["grant_serial"].as_u64().expect("serial");
    assert!(new_serial > old_serial, "{v}");
    let applied = tokio::time::Instant::now();

    // B hears it from A: its license ends here, A's goes on.
    let s = b
        .within(applied, SITE_RECOVERY, "the move, by gossip", |s| {
            s["state"] == json!("refused")
        })
        .await;
    assert_eq!(s["licensed"], json!(false), "{s}");
    assert_eq!(s["reason"]["code"], json!("license_was_reset"), "{s}");
    assert!(
        b.log_text()
            .contains("a newer grant of this license came from a peer"),
        "{}",
        b.log_text()
    );
    assert!(
        a.log_text()
            .contains("a grant came by file: passing it on to the peers"),
        "{}",
        a.log_text()
    );
    let s = a.status().await;
    assert_eq!(
        (s["state"].clone(), s["grant_serial"].clone()),
        (json!("licensed"), json!(new_serial)),
        "{s}"
    );
    // Neither host had a route beyond the cable between them.
    for host in [&new_pc, &old_pc] {
        let routes = host.routes_off_loopback();
        let cable = format!(" dev {} ", host.cable_end());
        assert!(
            !routes.is_empty() && routes.iter().all(|r| r.contains(&cable)),
            "{routes:?}"
        );
    }
}
