//! Helpers: an in-process server on 127.0.0.1:0 with a temp dir and a simulated
//! clock, and a tiny daemon that speaks `wire` over real QUIC.

use keys::{
    Entitlements, HardwareId, LicenseData, LicenseGrant, LicenseNumber, LicenseType, Protection,
    SimClock, TrustedKeys, UnixTime, Verified,
};
use portal::admin::{self, AdminContext, AdminEnvelope, AdminReply, AdminRequest};
use portal::config::Config;
use portal::domain::Licensee;
use portal::quic::client;
use portal::store::Store;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use wire::{
    Activate, Check, CheckReceipt, Nonce, Refusal, RefusalReason, Request, Response, RuntimeState,
    Seats, Token,
};

/// 2026-01-01T00:00:00Z.
pub const START: UnixTime = UnixTime(1_767_225_600);

pub struct TestServer {
    pub addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub fingerprint: String,
    pub trusted: TrustedKeys,
    pub store: Arc<Store>,
    pub clock: SimClock,
    pub admin: AdminContext,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), portal::store::StoreError>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        config.quic.listen = "127.0.0.1:0".parse().expect("addr");
        config.http.listen = "127.0.0.1:0".parse().expect("addr");
        config.metrics.listen = "127.0.0.1:0".parse().expect("addr");
        tune(&mut config);
        let clock = SimClock::at(START);
        let server = portal::Server::bind(config, Arc::new(clock.clone()))
            .await
            .expect("bind");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let ts = TestServer {
            addr: server.quic_addr(),
            http_addr: server.http_addr(),
            metrics_addr: server.metrics_addr(),
            fingerprint: server.identity().cert_fingerprint(),
            trusted: TrustedKeys::with([server.identity().public_key()]),
            store: server.store(),
            clock,
            admin: server.admin_context(),
            stop: Some(stop),
            task: None,
            _dir: dir,
        };
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            task: Some(task),
            ..ts
        }
    }

    /// Runs an admin command as the CLI would.
    pub fn admin(&self, request: AdminRequest) -> Result<AdminReply, String> {
        admin::execute(
            &self.admin,
            AdminEnvelope {
                idempotency_key: None,
                operator: "test".into(),
                request,
            },
        )
        .map_err(|e| e.to_string())
    }

    /// Creates a standard soft-dongle license; `paid` activates it. Returns number and token.
    pub fn license(&self, protection: Protection, paid: bool) -> (LicenseNumber, String) {
        let license_type = if protection == Protection::Engineering {
            LicenseType::Engineering
        } else {
            LicenseType::Standard
        };
        let entitlements = if license_type == LicenseType::Engineering {
            Entitlements::engineering()
        } else {
            Entitlements::standard_base()
        };
        let reply = self
            .admin(AdminRequest::CreateLicense {
                license_type,
                protection,
                entitlements,
                licensee: Licensee {
                    company: "MST System Solutions GmbH".into(),
                    ..Licensee::default()
                },
                license_data: LicenseData {
                    name: "Christoph Müller".into(),
                    postcode: "63457".into(),
                    city: "Hanau".into(),
                },
                account_email: None,
                paid,
            })
            .expect("create license");
        let number: LicenseNumber = reply.data["license"]["number"]
            .as_str()
            .expect("number")
            .parse()
            .expect("parse");
        let token = reply.data["token"].as_str().expect("token").to_owned();
        (number, token)
    }

    pub async fn daemon(&self, host: u8) -> Daemon {
        let ep = client::endpoint(&self.fingerprint).expect("client endpoint");
        let conn = client::connect(&ep, self.addr).await.expect("connect");
        Daemon {
            _ep: ep,
            conn,
            hardware_id: HardwareId::from_bytes([host; 16]),
            trusted: self.trusted.clone(),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("clean shutdown");
        }
    }
}

/// A daemon's side of the protocol, verifying everything it gets.
pub struct Daemon {
    _ep: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub hardware_id: HardwareId,
    trusted: TrustedKeys,
}

/// What a daemon learned from one answer, after verification.
// Test values, moved once each: boxing would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Answer {
    Granted {
        grant: Option<Verified<LicenseGrant>>,
        receipt: Verified<CheckReceipt>,
    },
    Refused(RefusalReason),
    Error(wire::ErrorReply),
}

impl Answer {
    pub fn grant(&self) -> Option<&Verified<LicenseGrant>> {
        match self {
            Answer::Granted { grant, .. } => grant.as_ref(),
            _ => None,
        }
    }
    pub fn refusal(&self) -> Option<RefusalReason> {
        match self {
            Answer::Refused(r) => Some(*r),
            _ => None,
        }
    }
}

impl Daemon {
    pub async fn activate(&self, number: &LicenseNumber, token: &str) -> Answer {
        let nonce = Nonce::random();
        let req = Request::Activate(Activate {
            license_number: number.clone(),
            token: Token(token.to_owned()),
            hardware_id: self.hardware_id.clone(),
            daemon_version: "promos-licd/test".into(),
            nonce,
        });
        self.ask(req, nonce).await
    }

    pub async fn check(
        &self,
        number: &LicenseNumber,
        held: Option<u64>,
        runtime: RuntimeState,
    ) -> Answer {
        let nonce = Nonce::random();
        let req = Request::Check(Check {
            license_number: number.clone(),
            hardware_id: self.hardware_id.clone(),
            grant_serial: held,
            runtime,
            seats: Seats { ge: 1, pwa: 0 },
            daemon_version: "promos-licd/test".into(),
            nonce,
        });
        self.ask(req, nonce).await
    }

    pub async fn ask(&self, req: Request, nonce: Nonce) -> Answer {
        let response = client::request(&self.conn, &req).await.expect("request");
        self.verify(response, nonce)
    }

    /// Checks signatures and that every signed answer is bound to this host and nonce.
    pub fn verify(&self, response: Response, nonce: Nonce) -> Answer {
        let receipt = |r: &keys::Signed<CheckReceipt>| {
            let r = self.trusted.verify(r).expect("receipt signature");
            assert_eq!(r.nonce, nonce, "receipt bound to the request");
            assert_eq!(r.hardware_id, self.hardware_id, "receipt bound to the host");
            assert_eq!(
                r.next_check_due,
                r.server_time.plus_days(1),
                "next check once a day"
            );
            r
        };
        match response {
            Response::Activated { grant, receipt: r } => {
                let grant = self.trusted.verify(&grant).expect("grant signature");
                Answer::Granted {
                    grant: Some(grant),
                    receipt: receipt(&r),
                }
            }
            Response::Checked { receipt: r, grant } => Answer::Granted {
                grant: grant.map(|g| self.trusted.verify(&g).expect("grant signature")),
                receipt: receipt(&r),
            },
            Response::Refused(signed) => {
                let refusal: Verified<Refusal> =
                    self.trusted.verify(&signed).expect("refusal signature");
                assert_eq!(refusal.nonce, nonce, "refusal bound to the request");
                assert_eq!(
                    refusal.hardware_id, self.hardware_id,
                    "refusal bound to the host"
                );
                Answer::Refused(refusal.reason)
            }
            Response::Error(e) => Answer::Error(e),
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

// ----- the pls binary -----------------------------------------------------------

/// Runs `pls --data-dir DATA ARGS...` (off the fixed default ports).
pub fn pls(data: &Path, args: &[&str]) -> Output {
    pls_on(data, None, args)
}

/// `pls` with its store on PostgreSQL (`PLS_DATABASE_URL`) when `url` is given.
pub fn pls_on(data: &Path, url: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pls"));
    if let Some(url) = url {
        cmd.env("PLS_DATABASE_URL", url);
    }
    cmd.arg("--data-dir")
        .arg(data)
        .args(args)
        .env("PLS_QUIC_LISTEN", "127.0.0.1:0")
        .env("PLS_HTTP_LISTEN", "127.0.0.1:0")
        .env("PLS_METRICS_LISTEN", "127.0.0.1:0")
        .output()
        .expect("run pls")
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "pls failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "pls should fail; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}
