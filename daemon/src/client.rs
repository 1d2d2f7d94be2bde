//! The QUIC client that talks to the license server.
//!
//! TLS trusts exactly one certificate: the server's, pinned by the SHA-256 of
//! its DER encoding (config `server_cert_sha256` or `server_cert_der`). There is
//! no CA chain, so a site behind a TLS-intercepting proxy cannot be fooled into
//! talking to the proxy. The handshake signature is still checked against the
//! pinned certificate's key (ring provider, installed explicitly, TLS 1.3 only).
//!
//! Transport contract (see `wire`): one bidirectional stream per request; the
//! client writes one frame, finishes its send side and reads one response frame.
//! Failed attempts are retried with exponential backoff and jitter.

use crate::config::CertPin;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime as PkiTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use wire::{CompactCheck, ErrorReply, Request, Response};

/// The largest UDP payload this client accepts and sends: QUIC's minimum,
/// which every path must carry. A check is a few hundred bytes each way.
pub const MAX_UDP_PAYLOAD: u16 = 1200;

/// One attempt may take this long: QUIC needs a few round trips, and a site on a
/// bad mobile line can take seconds per round trip.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Zero-length connection IDs for the client's endpoint, which carries one
/// connection (see [`ServerClient::endpoint`]).
#[derive(Debug)]
struct NoConnectionIds;

impl quinn::ConnectionIdGenerator for NoConnectionIds {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        quinn::ConnectionId::new(&[])
    }

    fn cid_len(&self) -> usize {
        0
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// A request to the server did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no server certificate is pinned: set server_cert_sha256 or server_cert_der")]
    NoPin,
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
    #[error("cannot set up the QUIC client: {0}")]
    Setup(String),
    #[error("cannot connect to the license server {server}: {message}")]
    Connect { server: String, message: String },
    #[error("the license server did not answer in time")]
    Timeout,
    #[error("the exchange with the license server failed: {0}")]
    Exchange(String),
}

/// Checks that the server presents exactly the pinned certificate.
#[derive(Debug)]
struct PinnedCert {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: PkiTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if sha256(end_entity.as_ref()) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the license server's certificate does not match the pinned SHA-256".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Exponential backoff with jitter for the attempts of one request.
#[derive(Clone, Debug)]
pub struct Backoff {
    pub attempts: u32,
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// 4 attempts, waiting about 1 s, 2 s, 4 s between them: a short outage is
    /// ridden out within one check, a long one is left to the state machine's
    /// retry schedule (1 minute doubling to 1 hour).
    fn default() -> Self {
        Backoff {
            attempts: 4,
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait before attempt `n` (1-based, n >= 1): `first * 2^(n-1)`, capped,
    /// times a random factor in [0.5, 1.5) so daemons that lost the server
    /// together do not come back in lockstep.
    pub fn delay(&self, n: u32, jitter: f64) -> Duration {
        let base = self
            .first
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
            .min(self.max);
        base.mul_f64(0.5 + jitter.clamp(0.0, 1.0))
    }
}

/// A QUIC client for one server.
#[derive(Debug, Clone)]
pub struct ServerClient {
    server: String,
    tls_name: String,
    config: quinn::ClientConfig,
    /// One endpoint for all connections ([`ServerClient::with_shared_socket`]).
    shared: Option<quinn::Endpoint>,
    backoff: Backoff,
    attempt_timeout: Duration,
    /// The connection [`ServerClient::once_kept`] keeps open and reuses
    /// (shared by the clones of this client).
    kept: Arc<tokio::sync::Mutex<Option<quinn::Connection>>>,
}

impl ServerClient {
    /// Builds the client (each attempt then binds its own UDP socket, which
    /// needs a tokio runtime).
    pub fn new(
        server: &str,
        tls_name: &str,
        pin: Option<&CertPin>,
    ) -> Result<ServerClient, RequestError> {
        let pin = pin.ok_or(RequestError::NoPin)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut crypto = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| RequestError::Setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCert {
                pin: pin.0,
                provider,
            }))
            .with_no_client_auth();
        crypto.alpn_protocols = vec![wire::ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
            .map_err(|e| RequestError::Setup(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        // One request per connection, a few hundred bytes each way: probing
        // for a larger path MTU only adds packets (quinn's PMTUD sends probes
        // up to ~1450 bytes once the handshake is done). The QUIC minimum
        // (1200, the initial MTU) carries every frame of a check.
        transport.mtu_discovery_config(None);
        // Idle connections are closed after this; each request opens its own.
        transport.max_idle_timeout(Some(
            Duration::from_secs(20)
                .try_into()
                .map_err(|_| RequestError::Setup("idle timeout".into()))?,
        ));
        config.transport_config(Arc::new(transport));
        Ok(ServerClient {
            server: server.to_owned(),
            tls_name: tls_name.to_owned(),
            config,
            shared: None,
            backoff: Backoff::default(),
            attempt_timeout: ATTEMPT_TIMEOUT,
            kept: Arc::default(),
        })
    }

    /// Lets all connections of this client (and of its clones) share one
    /// UDP socket, with connection IDs of 8 bytes to tell them apart: for a
    /// load generator that speaks for many daemons from one process (the
    /// file limit). Needs a tokio runtime.
    pub fn with_shared_socket(mut self) -> Result<Self, RequestError> {
        self.shared = Some(self.bind(true)?);
        Ok(self)
    }

    /// The endpoint for one connection: the shared one, or else its own
    /// UDP socket with connection IDs zero bytes long. A connection with its
    /// own socket needs none: the server's packets reach it by the client's
    /// address and port, which no other connection shares. Then the
    /// server's packets carry no connection ID, the client issues none and
    /// the server issues one instead of four (`NEW_CONNECTION_ID`): about
    /// 350 bytes a check less (BENCHMARKS.md, issue 16). Two connections
    /// of one such endpoint to the same server could not be told apart
    /// (quinn routes them by the server's address alone), and one client
    /// may have two at once (a retry while the last connection still
    /// drains), hence a socket for each.
    fn endpoint(&self) -> Result<quinn::Endpoint, RequestError> {
        match &self.shared {
            Some(endpoint) => Ok(endpoint.clone()),
            None => self.bind(false),
        }
    }

    fn bind(&self, connection_ids: bool) -> Result<quinn::Endpoint, RequestError> {
        let bind: SocketAddr = "[::]:0"
            .parse()
            .map_err(|_| RequestError::Setup("bind address".into()))?;
        let socket = std::net::UdpSocket::bind(bind)
            .or_else(|_| std::net::UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0))))
            .map_err(|e| RequestError::Setup(e.to_string()))?;
        // Tells the server (transport parameter max_udp_payload_size) that
        // datagrams over 1200 bytes are not wanted: then its path-MTU
        // discovery has nothing to probe for. Its probes (PING + padding up
        // to ~1450 bytes, four of them) were over half the bytes of a check.
        let mut endpoint_config = quinn::EndpointConfig::default();
        endpoint_config
            .max_udp_payload_size(MAX_UDP_PAYLOAD)
            .map_err(|e| RequestError::Setup(e.to_string()))?;
        if !connection_ids {
            endpoint_config.cid_generator(|| Box::new(NoConnectionIds));
        }
        let runtime = quinn::default_runtime()
            .ok_or_else(|| RequestError::Setup("no async runtime".into()))?;
        let mut endpoint = quinn::Endpoint::new(endpoint_config, None, socket, runtime)
            .map_err(|e| RequestError::Setup(e.to_string()))?;
        endpoint.set_default_client_config(self.config.clone());
        Ok(endpoint)
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends `request` and returns the response, retrying with backoff.
    pub async fn request(&self, request: &Request) -> Result<Response, RequestError> {
        let mut last = RequestError::Timeout;
        for n in 0..self.backoff.attempts.max(1) {
            if n > 0 {
                tokio::time::sleep(self.backoff.delay(n, rand::random::<f64>())).await;
            }
            match tokio::time::timeout(self.attempt_timeout, self.once(request)).await {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(e)) => {
                    tracing::debug!(attempt = n + 1, error = %e, "license server request failed");
                    last = e;
                }
                Err(_) => last = RequestError::Timeout,
            }
        }
        Err(last)
    }

    /// One attempt: connect, one stream, one frame each way.
    pub async fn once(&self, request: &Request) -> Result<Response, RequestError> {
        self.exchange(request).await.0
    }

    /// One attempt on the connection this client (and its clones) keep open:
    /// opened on first use, and again once it has closed (idle for 20 s, the
    /// server restarted, or failed). A relay carrying the checks of many peers
    /// makes one handshake for all of them, each check on a stream of its own
    /// (the server allows 8 at once; more wait for a stream). A kept
    /// connection that turns out closed is replaced and the request tried
    /// once more on a new one; after a timeout the next request starts a new
    /// connection, but this one is not tried again.
    pub async fn once_kept(&self, request: &Request) -> Result<Response, RequestError> {
        let (conn, fresh) = {
            let mut kept = self.kept.lock().await;
            match kept.as_ref() {
                Some(c) if c.close_reason().is_none() => (c.clone(), false),
                _ => {
                    // Its own socket, as every connection of this client has
                    // ([`ServerClient::endpoint`]); the endpoint's driver runs
                    // as long as the connection does.
                    let endpoint = self.endpoint()?;
                    let c = tokio::time::timeout(self.attempt_timeout, self.connect(&endpoint))
                        .await
                        .map_err(|_| RequestError::Timeout)??;
                    *kept = Some(c.clone());
                    (c, true)
                }
            }
        };
        let result = tokio::time::timeout(self.attempt_timeout, Self::ask(&conn, request))
            .await
            .unwrap_or(Err(RequestError::Timeout));
        if result.is_err() {
            // Closed under us (an old connection the server forgot), or not
            // answering: the next request starts a new one.
            let closed = conn.close_reason().is_some();
            let mut kept = self.kept.lock().await;
            if kept
                .as_ref()
                .is_some_and(|c| c.stable_id() == conn.stable_id())
            {
                conn.close(0u32.into(), b"failed");
                *kept = None;
            }
            drop(kept);
            if closed && !fresh {
                return Box::pin(self.once_kept(request)).await;
            }
        }
        result
    }

    /// One attempt, as [`ServerClient::once`], and the bytes it put on the
    /// wire: UDP payload sent and received, handshake and connection close
    /// included (it waits until the connection has drained).
    pub async fn once_measured(
        &self,
        request: &Request,
    ) -> (Result<Response, RequestError>, Option<WireBytes>) {
        let (result, used) = self.exchange(request).await;
        let Some((endpoint, conn)) = used else {
            return (result, None);
        };
        // The close is sent by the endpoint's driver; draining ends after
        // 3 PTOs (milliseconds on a LAN), bounded here for a dead peer.
        let _ = tokio::time::timeout(Duration::from_secs(5), endpoint.wait_idle()).await;
        let stats = conn.stats();
        (
            result,
            Some(WireBytes {
                sent: stats.udp_tx.bytes,
                received: stats.udp_rx.bytes,
                datagrams: stats.udp_tx.datagrams + stats.udp_rx.datagrams,
                frames_sent: stats.frame_tx,
                frames_received: stats.frame_rx,
            }),
        )
    }

    /// One attempt on an endpoint of its own; the endpoint and connection
    /// are handed back for measuring. Dropping them is fine: the endpoint's
    /// driver runs until the closed connection has drained.
    async fn exchange(
        &self,
        request: &Request,
    ) -> (
        Result<Response, RequestError>,
        Option<(quinn::Endpoint, quinn::Connection)>,
    ) {
        let endpoint = match self.endpoint() {
            Ok(endpoint) => endpoint,
            Err(e) => return (Err(e), None),
        };
        match self.connect(&endpoint).await {
            Err(e) => (Err(e), None),
            Ok(conn) => {
                let result = Self::ask(&conn, request).await;
                // No reason phrase: 4 bytes less than "done", and the code
                // (0) says it all.
                conn.close(0u32.into(), b"");
                (result, Some((endpoint, conn)))
            }
        }
    }

    async fn connect(&self, endpoint: &quinn::Endpoint) -> Result<quinn::Connection, RequestError> {
        let addr = tokio::net::lookup_host(&self.server)
            .await
            .map_err(|e| RequestError::Resolve(self.server.clone(), e.to_string()))?
            .next()
            .ok_or_else(|| RequestError::Resolve(self.server.clone(), "no address".into()))?;
        let connect_err = |message: String| RequestError::Connect {
            server: self.server.clone(),
            message,
        };
        endpoint
            .connect(addr, &self.tls_name)
            .map_err(|e| connect_err(e.to_string()))?
            .await
            .map_err(|e| connect_err(e.to_string()))
    }

    /// One request on `conn`. A daily check goes compact (its facts as a
    /// digest, the answer's receipt without what this host sent itself:
    /// about 300 bytes less on the wire) and its answer comes back as the
    /// whole [`Response::Checked`]. When the server keeps other facts of this
    /// host (`FactsNeeded`) or is older than the compact check (`Malformed`),
    /// the check goes again, whole, on the same connection.
    async fn ask(conn: &quinn::Connection, request: &Request) -> Result<Response, RequestError> {
        let Some((check, compact)) = (match request {
            Request::CheckWithFacts(check, facts) => {
                CompactCheck::of(check, facts).map(|c| (check, Request::CheckCompact(c)))
            }
            _ => None,
        }) else {
            return Self::ask_as_is(conn, request).await;
        };
        match Self::ask_as_is(conn, &compact).await? {
            Response::Error(ErrorReply::FactsNeeded) => Self::ask_as_is(conn, request).await,
            Response::Error(ErrorReply::Malformed(reason)) => {
                tracing::debug!(%reason, "the server does not know compact checks; asking again");
                Self::ask_as_is(conn, request).await
            }
            answer => Ok(answer.expanded(check)),
        }
    }

    async fn ask_as_is(
        conn: &quinn::Connection,
        request: &Request,
    ) -> Result<Response, RequestError> {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| RequestError::Exchange(e.to_string()))?;
        wire::codec::write_message(&mut send, request)
            .await
            .map_err(|e| RequestError::Exchange(e.to_string()))?;
        send.finish()
            .map_err(|e| RequestError::Exchange(e.to_string()))?;
        wire::codec::read_message::<Response, _>(&mut recv)
            .await
            .map_err(|e| RequestError::Exchange(e.to_string()))
    }
}

/// What one exchange with the server cost on the wire (UDP payloads), and
/// the QUIC frames by type.
#[derive(Clone, Copy, Debug)]
pub struct WireBytes {
    pub sent: u64,
    pub received: u64,
    pub datagrams: u64,
    pub frames_sent: quinn::FrameStats,
    pub frames_received: quinn::FrameStats,
}

impl WireBytes {
    pub fn total(&self) -> u64 {
        self.sent + self.received
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let b = Backoff {
            attempts: 5,
            first: Duration::from_secs(1),
            max: Duration::from_secs(4),
        };
        assert_eq!(b.delay(1, 0.5), Duration::from_secs(1));
        assert_eq!(b.delay(2, 0.5), Duration::from_secs(2));
        assert_eq!(b.delay(3, 0.5), Duration::from_secs(4));
        assert_eq!(b.delay(9, 0.5), Duration::from_secs(4));
        assert_eq!(b.delay(2, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(2, 1.0), Duration::from_secs(3));
    }
}
