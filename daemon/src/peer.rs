//! Peer relay transport: the daemon's own identity, mutual TLS against the
//! configured peer list, and the QUIC endpoint for [`wire::PEER_ALPN`].
//!
//! Each daemon creates an Ed25519 identity on first start (`peer.key` in the
//! data directory, mode 0600, the same format as the server's key files). Its
//! TLS certificate is self-signed *with that key*, so the certificate's public
//! key is the identity. Both sides of a peer connection present their
//! certificate and both check it with [`PeerVerifier`]: the certificate's
//! subject public key must be one of the configured peers' keys, and the TLS
//! 1.3 handshake signature (Ed25519 only) must verify with it, which proves the
//! other side holds the identity's secret key. No CA, no names, no expiry: a
//! site's peers are exactly the keys in its configuration.
//!
//! What peers say is still not trusted: [`crate::service`] verifies every
//! server signature and binding in what comes from a peer, and [`PeerGuard`]
//! cuts off a peer that sends forged or replayed data or floods.

use crate::relay::{PeerKey, RateLimiter, PEER_BURST, PEER_PER_SEC};
use keys::{KeyFileError, PublicKey, SigningKeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime as PkiTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wire::{PeerRequest, PeerResponse};

/// The file name of the identity in the data directory.
pub const IDENTITY_FILE: &str = "peer.key";
/// TLS name peers use for each other (certificates are checked by key, not name).
pub const PEER_TLS_NAME: &str = "promos-licd-peer";
/// A peer that sent forged or replayed data, or flooded, is refused this long.
/// Ten minutes stops a flood cheaply and lets a peer that was fixed (or whose
/// bad answer was a fluke of its own uplink) back in soon.
pub const BAN: Duration = Duration::from_secs(600);
/// One exchange with a peer may take this long. A relay with an uplink waits
/// for the server (one attempt, see `relay_attempt_timeout`) before answering.
pub const PEER_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);
/// A handshake with a peer may take this long: a site LAN answers within
/// milliseconds, and a peer host that is switched off must not hold up every
/// check for long.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error("cannot make the peer certificate: {0}")]
    Certificate(String),
}

/// This daemon's peer identity: key and self-signed certificate.
#[derive(Debug)]
pub struct PeerIdentity {
    key: SigningKeyPair,
    cert_der: Vec<u8>,
}

impl PeerIdentity {
    /// Loads `dir/peer.key`, or creates it (mode 0600) on first start.
    pub fn load_or_create(dir: &Path) -> Result<PeerIdentity, IdentityError> {
        let path = dir.join(IDENTITY_FILE);
        let key = if path.exists() {
            SigningKeyPair::load(&path)?
        } else {
            let _ = std::fs::create_dir_all(dir);
            let key = SigningKeyPair::generate();
            key.save(&path)?;
            tracing::info!(public_key = %key.public(), file = %path.display(), "peer identity created");
            key
        };
        Self::from_key(key)
    }

    /// An identity from a key (tests; the key file path above otherwise).
    pub fn from_key(key: SigningKeyPair) -> Result<PeerIdentity, IdentityError> {
        let der = PrivatePkcs8KeyDer::from(key.to_pkcs8_der());
        let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let params = rcgen::CertificateParams::new(vec![PEER_TLS_NAME.to_owned()])
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let cert = params
            .self_signed(&pair)
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        Ok(PeerIdentity {
            key,
            cert_der: cert.der().to_vec(),
        })
    }

    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    fn cert_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from(self.cert_der.clone())]
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.to_pkcs8_der()))
    }
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The Ed25519 public key a certificate carries, parsed by rustls' own X.509
/// parser (not by searching bytes), or `None` if it is not an Ed25519 key.
pub fn cert_key(cert: &CertificateDer<'_>) -> Option<PeerKey> {
    let parsed = rustls::server::ParsedCertificate::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let raw = spki.as_ref().strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    raw.try_into().ok()
}

/// Accepts exactly the configured peers' keys, on both sides of a connection.
#[derive(Debug)]
pub struct PeerVerifier {
    allowed: Vec<PeerKey>,
    provider: Arc<CryptoProvider>,
}

impl PeerVerifier {
    pub fn new(allowed: &[PublicKey], provider: Arc<CryptoProvider>) -> Self {
        PeerVerifier {
            allowed: allowed.iter().map(PublicKey::to_bytes).collect(),
            provider,
        }
    }

    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        match cert_key(cert) {
            Some(k) if self.allowed.contains(&k) => Ok(()),
            Some(_) => Err(rustls::Error::General(
                "this peer's key is not in the configured peer list".into(),
            )),
            None => Err(rustls::Error::General(
                "the peer certificate does not carry an Ed25519 key".into(),
            )),
        }
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::Error::General(
                "peers sign the handshake with Ed25519 only".into(),
            ));
        }
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: PkiTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("peers speak TLS 1.3 only".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: PkiTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("peers speak TLS 1.3 only".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Setting up the peer endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerSetupError {
    #[error("peer TLS: {0}")]
    Tls(String),
    #[error("cannot listen for peers on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// An exchange with a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerExchangeError {
    #[error("cannot connect to peer {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("peer {addr} did not answer in time")]
    Timeout { addr: String },
    #[error("exchange with peer {addr} failed: {message}")]
    Exchange { addr: String, message: String },
    /// The connection was closed before the request was sent: the peer
    /// cannot have seen it, so it may be asked again on a new connection.
    #[error("the connection to peer {addr} was closed before the request was sent: {message}")]
    NotSent { addr: String, message: String },
}

/// The QUIC endpoint for peers: listens (if configured) and connects out, with
/// the same identity and the same peer list both ways.
#[derive(Debug, Clone)]
pub struct PeerEndpoint {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
}

impl PeerEndpoint {
    /// Binds `listen` (an ephemeral port if `None`: then it only connects out).
    pub fn bind(
        identity: &PeerIdentity,
        peers: &[PublicKey],
        listen: Option<SocketAddr>,
    ) -> Result<PeerEndpoint, PeerSetupError> {
        let tls = |e: rustls::Error| PeerSetupError::Tls(e.to_string());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PeerVerifier::new(peers, provider.clone()));

        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_client_cert_verifier(verifier.clone())
            .with_single_cert(identity.cert_chain(), identity.private_key())
            .map_err(tls)?;
        server.alpn_protocols = vec![wire::PEER_ALPN.to_vec()];
        let server = quinn::crypto::rustls::QuicServerConfig::try_from(server)
            .map_err(|e| PeerSetupError::Tls(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
        server.transport_config(Arc::new(transport()));

        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(identity.cert_chain(), identity.private_key())
            .map_err(tls)?;
        client.alpn_protocols = vec![wire::PEER_ALPN.to_vec()];
        let client = quinn::crypto::rustls::QuicClientConfig::try_from(client)
            .map_err(|e| PeerSetupError::Tls(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client));
        client.transport_config(Arc::new(transport()));

        let addr = listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let socket = std::net::UdpSocket::bind(addr)
            .map_err(|source| PeerSetupError::Bind { addr, source })?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| PeerSetupError::Tls("no async runtime".into()))?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            listen.map(|_| server),
            socket,
            runtime,
        )
        .map_err(|source| PeerSetupError::Bind { addr, source })?;
        Ok(PeerEndpoint { endpoint, client })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// Connects to a peer (its key is checked by the verifier).
    pub async fn connect(&self, addr: &str) -> Result<PeerConn, PeerExchangeError> {
        let err = |message: String| PeerExchangeError::Connect {
            addr: addr.to_owned(),
            message,
        };
        let sock = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| err(e.to_string()))?
            .next()
            .ok_or_else(|| err("no address".into()))?;
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), sock, PEER_TLS_NAME)
            .map_err(|e| err(e.to_string()))?;
        let conn = tokio::time::timeout(PEER_CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| PeerExchangeError::Timeout {
                addr: addr.to_owned(),
            })?
            .map_err(|e| err(e.to_string()))?;
        let key = remote_key(&conn).ok_or_else(|| err("no peer key".into()))?;
        Ok(PeerConn {
            conn,
            addr: addr.to_owned(),
            key,
        })
    }
}

/// The key the other side of `conn` authenticated with.
pub fn remote_key(conn: &quinn::Connection) -> Option<PeerKey> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    cert_key(certs.first()?)
}

fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    // A site LAN is fast; 30 s idle keeps one connection across one check's
    // exchanges (hello, forward, collect) and not much longer.
    if let Ok(idle) = Duration::from_secs(30).try_into() {
        t.max_idle_timeout(Some(idle));
    }
    // A peer has no business opening many streams at once: this bounds what one
    // connection can make us hold (8 * 64 KiB frames).
    t.max_concurrent_bidi_streams(8u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    t
}

/// An open connection to a peer (clones share it).
#[derive(Debug, Clone)]
pub struct PeerConn {
    conn: quinn::Connection,
    pub addr: String,
    pub key: PeerKey,
}

impl PeerConn {
    /// One request, one answer.
    pub async fn ask(&self, request: &PeerRequest) -> Result<PeerResponse, PeerExchangeError> {
        let err = |message: String| PeerExchangeError::Exchange {
            addr: self.addr.clone(),
            message,
        };
        let exchange = async {
            let (mut send, mut recv) =
                self.conn
                    .open_bi()
                    .await
                    .map_err(|e| PeerExchangeError::NotSent {
                        addr: self.addr.clone(),
                        message: e.to_string(),
                    })?;
            wire::codec::write_message(&mut send, request)
                .await
                .map_err(|e| err(e.to_string()))?;
            send.finish().map_err(|e| err(e.to_string()))?;
            wire::codec::read_message::<PeerResponse, _>(&mut recv)
                .await
                .map_err(|e| err(e.to_string()))
        };
        tokio::time::timeout(PEER_EXCHANGE_TIMEOUT, exchange)
            .await
            .map_err(|_| PeerExchangeError::Timeout {
                addr: self.addr.clone(),
            })?
    }

    /// Closes the connection, saying why (the peer misbehaved).
    pub fn cut_off(&self, why: &str) {
        self.conn.close(1u32.into(), why.as_bytes());
    }

    pub fn close(&self) {
        self.conn.close(0u32.into(), b"done");
    }

    /// Neither side has closed it, nor has it timed out, as far as this
    /// side knows (a peer that restarted is noticed only at the next packet).
    pub fn is_open(&self) -> bool {
        self.conn.close_reason().is_none()
    }

    /// Both are handles of the same connection.
    pub fn same(&self, other: &PeerConn) -> bool {
        self.conn.stable_id() == other.conn.stable_id()
    }
}

/// Bans and rate limits, shared by the listening and the connecting side.
#[derive(Debug)]
pub struct PeerGuard {
    started: Instant,
    banned: Mutex<HashMap<PeerKey, Instant>>,
    limiter: Mutex<RateLimiter>,
}

impl Default for PeerGuard {
    fn default() -> Self {
        PeerGuard {
            started: Instant::now(),
            banned: Mutex::new(HashMap::new()),
            limiter: Mutex::new(RateLimiter::new(PEER_BURST, PEER_PER_SEC)),
        }
    }
}

impl PeerGuard {
    /// Cuts `peer` off for [`BAN`] and logs why.
    pub fn ban(&self, peer: &PeerKey, addr: &str, why: &str) {
        tracing::warn!(peer = %hex::encode(peer), %addr, reason = why, "peer cut off: it sent forged or replayed data or flooded");
        self.banned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*peer, Instant::now() + BAN);
    }

    pub fn is_banned(&self, peer: &PeerKey) -> bool {
        let mut b = self.banned.lock().unwrap_or_else(|p| p.into_inner());
        match b.get(peer) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                b.remove(peer);
                false
            }
            None => false,
        }
    }

    /// One request from `peer`: false if it is over its rate limit.
    pub fn allow(&self, peer: &PeerKey) -> bool {
        let now = self.started.elapsed().as_secs_f64();
        self.limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(peer, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_key_is_the_identity() {
        let id = PeerIdentity::from_key(SigningKeyPair::from_seed(&[9; 32])).expect("identity");
        let cert = CertificateDer::from(id.cert_der.clone());
        assert_eq!(cert_key(&cert), Some(id.public().to_bytes()));
        assert_eq!(
            cert_key(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])),
            None
        );
    }

    /// Accepts connections on `server` and reports whether each handshake
    /// passed, and with which key.
    fn accept_all(server: &PeerEndpoint) -> tokio::sync::mpsc::UnboundedReceiver<Option<PeerKey>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let ep = server.endpoint().clone();
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let r = incoming.await.ok().and_then(|c| remote_key(&c));
                if tx.send(r).is_err() {
                    return;
                }
            }
        });
        rx
    }

    #[tokio::test]
    async fn only_listed_keys_pass_the_handshake_both_ways() {
        let id = |n: u8| PeerIdentity::from_key(SigningKeyPair::from_seed(&[n; 32])).expect("id");
        let (a, b, stranger) = (id(1), id(2), id(3));
        let local = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let server = PeerEndpoint::bind(&a, &[b.public()], local).expect("bind");
        let addr = server.local_addr().expect("addr").to_string();
        let mut results = accept_all(&server);

        // B is listed at A and lists A: both sides learn the other's key.
        let client = PeerEndpoint::bind(&b, &[a.public()], None).expect("bind");
        let conn = client.connect(&addr).await.expect("B connects");
        assert_eq!(conn.key, a.public().to_bytes());
        assert_eq!(
            results.recv().await.expect("result"),
            Some(b.public().to_bytes())
        );

        // A stranger is refused by A, even though it accepts A.
        let outsider = PeerEndpoint::bind(&stranger, &[a.public()], None).expect("bind");
        let _ = outsider.connect(&addr).await;
        assert_eq!(results.recv().await.expect("result"), None);

        // B refuses a server whose key it does not list.
        let picky = PeerEndpoint::bind(&b, &[stranger.public()], None).expect("bind");
        assert!(picky.connect(&addr).await.is_err());
    }

    #[tokio::test]
    async fn a_request_on_a_closed_connection_is_not_sent() {
        let id = |n: u8| PeerIdentity::from_key(SigningKeyPair::from_seed(&[n; 32])).expect("id");
        let (a, b) = (id(1), id(2));
        let local = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let server = PeerEndpoint::bind(&a, &[b.public()], local).expect("bind");
        let addr = server.local_addr().expect("addr").to_string();
        let _results = accept_all(&server);
        let client = PeerEndpoint::bind(&b, &[a.public()], None).expect("bind");
        let conn = client.connect(&addr).await.expect("B connects");
        let kept = conn.clone();
        assert!(kept.is_open() && kept.same(&conn));
        conn.close();
        assert!(!kept.is_open(), "clones share the connection");
        assert!(matches!(
            kept.ask(&PeerRequest::Collect).await,
            Err(PeerExchangeError::NotSent { .. })
        ));
    }

    #[test]
    fn identity_file_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let a = PeerIdentity::load_or_create(dir.path()).expect("created");
        let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = PeerIdentity::load_or_create(dir.path()).expect("loaded");
        assert_eq!(a.public(), b.public());
    }
}
