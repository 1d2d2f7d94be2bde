//! The QUIC endpoint daemons talk to (quinn, rustls with ring, ALPN [`wire::ALPN`]).
//!
//! Transport contract (wire/src/lib.rs): one bidirectional stream per request; the
//! daemon writes one request frame and finishes its side; the server answers with
//! one response frame and finishes.
//!
//! A malformed or hostile peer only ever loses its own stream or connection:
//! every failure below is logged and ends at most that connection's task.

use crate::config::QuicConfig;
use crate::identity::Identity;
use crate::service::{Service, Source};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::VarInt;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime as TlsTime,
};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use wire::codec;
use wire::{ErrorReply, Response, MAX_FRAME_BYTES};

/// A stream that has not delivered its whole request within this time is
/// dropped: a real daemon sends well under 1 KiB at once; 10 s allows for a slow
/// satellite uplink without letting a peer hold a stream open indefinitely.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that sent this many undecodable frames is closed: one can be a
/// version mismatch worth answering, several are a broken or hostile peer.
const MALFORMED_PER_CONNECTION: u32 = 3;
/// Length prefix + largest body.
const MAX_REQUEST_BYTES: usize = MAX_FRAME_BYTES + 4;

/// Application error codes on QUIC close and reset frames.
mod code {
    pub const SHUTDOWN: u32 = 0;
    pub const TOO_MANY_MALFORMED: u32 = 1;
    pub const TOO_LARGE: u32 = 2;
}

/// The endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum QuicSetupError {
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("cannot listen on UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The rustls crypto provider: ring, chosen explicitly so no other provider is
/// pulled in or picked by accident.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Binds the server endpoint.
pub fn bind(identity: &Identity, config: &QuicConfig) -> Result<quinn::Endpoint, QuicSetupError> {
    let tls_err = |e: &dyn std::fmt::Display| QuicSetupError::Tls(e.to_string());
    let cert = CertificateDer::from(identity.cert_der.clone());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.tls_key_der().to_vec()));
    let mut tls = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| tls_err(&e))?;
    tls.alpn_protocols = vec![wire::ALPN.to_vec()];
    // No session tickets: rustls sends two NewSessionTicket messages (about
    // 160 bytes) on every connection by default, and no daemon resumes (each
    // request is a new connection of a new client). Resumption would not make
    // a check smaller either: the certificate travels inside the server's
    // first datagram, which QUIC pads to 1200 bytes anyway, and rustls
    // allows 0-RTT only with single-use server-side sessions that expire
    // after 24 hours, which the next daily check always misses
    // (BENCHMARKS.md, issue 16, "one check on the wire").
    tls.send_tls13_tickets = 0;
    let quic = QuicServerConfig::try_from(tls).map_err(|e| tls_err(&e))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(Arc::new(transport(config)));
    // No address-validation tokens (`NEW_TOKEN`): quinn sends two on every
    // connection (about 90 bytes of a daily check's 4.3 KB), for a client's
    // next connection to skip a Retry. This server sends no Retry, and a
    // daemon's next check is a new client that has forgotten them anyway
    // (BENCHMARKS.md, issue 16, "one check on the wire").
    let mut tokens = quinn::ValidationTokenConfig::default();
    tokens.sent(0);
    server.validation_token_config(tokens);
    quinn::Endpoint::server(server, config.listen).map_err(|source| QuicSetupError::Bind {
        addr: config.listen,
        source,
    })
}

fn transport(config: &QuicConfig) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(config.max_streams_per_connection));
    // The protocol uses bidirectional streams only.
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.max_idle_timeout(
        Duration::from_secs(config.idle_timeout_secs)
            .try_into()
            .ok(),
    );
    // One request frame per stream: the flow-control window need not exceed it,
    // so a peer cannot make us buffer more than a frame per stream.
    t.stream_receive_window(VarInt::from_u32(MAX_REQUEST_BYTES as u32));
    t.receive_window(VarInt::from_u32(
        MAX_REQUEST_BYTES as u32 * config.max_streams_per_connection.max(1),
    ));
    t
}

/// Counts open connections per source address.
#[derive(Debug, Default)]
struct PerSource(Mutex<HashMap<IpAddr, u32>>);

impl PerSource {
    fn try_add(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<SourceSlot> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            table: Arc::clone(self),
            ip,
        })
    }
}

/// Releases its connection slot when the connection task ends.
struct SourceSlot {
    table: Arc<PerSource>,
    ip: IpAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut m = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections until `shutdown` turns true, then closes the endpoint.
pub async fn serve(
    endpoint: quinn::Endpoint,
    service: Arc<Service>,
    config: QuicConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let per_source = Arc::new(PerSource::default());
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let Some(incoming) = incoming else { break };
        let remote = incoming.remote_address();
        let Some(slot) = per_source.try_add(remote.ip(), config.max_connections_per_source) else {
            tracing::warn!(from = %remote, "too many connections from this address; refused");
            service.metrics().quic_connection("refused_per_source");
            incoming.refuse();
            continue;
        };
        let service = Arc::clone(&service);
        tokio::spawn(async move {
            let _slot = slot;
            match incoming.await {
                Ok(conn) => {
                    service.metrics().quic_connection("accepted");
                    let _open = service.metrics().quic_open();
                    connection(conn, service).await
                }
                Err(e) => {
                    service.metrics().quic_connection("handshake_failed");
                    tracing::debug!(from = %remote, error = %e, "handshake failed")
                }
            }
        });
    }
    endpoint.close(VarInt::from_u32(code::SHUTDOWN), b"server shutting down");
    // Give in-flight answers a moment to leave; do not wait for idle peers.
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

async fn connection(conn: quinn::Connection, service: Arc<Service>) {
    let remote = conn.remote_address();
    tracing::debug!(from = %remote, "connection open");
    let malformed = Arc::new(std::sync::atomic::AtomicU32::new(0));
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(streams) => streams,
            Err(e) => {
                tracing::debug!(from = %remote, reason = %e, "connection closed");
                return;
            }
        };
        let service = Arc::clone(&service);
        let conn = conn.clone();
        let malformed = Arc::clone(&malformed);
        tokio::spawn(async move {
            if !stream(send, recv, remote, service).await {
                let n = malformed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n >= MALFORMED_PER_CONNECTION {
                    tracing::warn!(from = %remote, "closing connection after {n} malformed requests");
                    conn.close(
                        VarInt::from_u32(code::TOO_MANY_MALFORMED),
                        b"too many malformed requests",
                    );
                }
            }
        });
    }
}

/// Answers one request stream. Returns false if the request was malformed.
async fn stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    remote: SocketAddr,
    service: Arc<Service>,
) -> bool {
    let bytes =
        match tokio::time::timeout(REQUEST_READ_TIMEOUT, recv.read_to_end(MAX_REQUEST_BYTES)).await
        {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(quinn::ReadToEndError::TooLong)) => {
                tracing::warn!(from = %remote, "request larger than a frame; stream dropped");
                let _ = recv.stop(VarInt::from_u32(code::TOO_LARGE));
                let _ = send.reset(VarInt::from_u32(code::TOO_LARGE));
                return false;
            }
            Ok(Err(e)) => {
                tracing::debug!(from = %remote, error = %e, "stream ended before the request");
                return true;
            }
            Err(_) => {
                tracing::warn!(from = %remote, "request not completed in time; stream dropped");
                let _ = send.reset(VarInt::from_u32(code::TOO_LARGE));
                return false;
            }
        };
    let (response, ok) = match codec::split_frame(&bytes) {
        Ok(Some((body, used))) if used == bytes.len() => {
            let body = body.to_vec();
            let source = Source {
                ip: remote.ip(),
                label: remote.to_string(),
            };
            let svc = Arc::clone(&service);
            // Store writes flush to disk and signing is CPU work: off the async workers.
            let answer = tokio::task::spawn_blocking(move || svc.handle_body(&body, &source)).await;
            match answer {
                Ok(r) => {
                    let ok = !matches!(r, Response::Error(ErrorReply::Malformed(_)));
                    (r, ok)
                }
                Err(e) => {
                    tracing::error!(error = %e, "request handler failed");
                    (Response::Error(ErrorReply::Unavailable), true)
                }
            }
        }
        Ok(_) => {
            tracing::warn!(from = %remote, len = bytes.len(), "stream did not hold exactly one frame");
            framing_error(
                &service,
                (
                    Response::Error(ErrorReply::Malformed(
                        "the stream must hold exactly one frame".into(),
                    )),
                    false,
                ),
            )
        }
        Err(e) => {
            tracing::warn!(from = %remote, error = %e, "bad frame");
            framing_error(
                &service,
                (Response::Error(ErrorReply::Malformed(e.to_string())), false),
            )
        }
    };
    match codec::encode_frame(&response) {
        Ok(frame) => {
            if send.write_all(&frame).await.is_ok() {
                let _ = send.finish();
                // Wait until the peer has the answer (or gave up) before the task ends.
                let _ = tokio::time::timeout(REQUEST_READ_TIMEOUT, send.stopped()).await;
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot encode a response"),
    }
    ok
}

/// Counts an answer to a stream the service never saw (no single whole frame).
fn framing_error(service: &Service, answer: (Response, bool)) -> (Response, bool) {
    service
        .metrics()
        .daemon_request("undecodable", &answer.0, Duration::ZERO);
    answer
}

/// A minimal daemon-side client: the integration tests, the benchmark and
/// diagnostics use it. It pins the server certificate by SHA-256 fingerprint,
/// which is what a daemon is given instead of a CA.
pub mod client {
    use super::*;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::DigitallySignedStruct;
    use sha2::{Digest, Sha256};
    use wire::Request;

    /// Accepts exactly the certificate with the pinned fingerprint.
    #[derive(Debug)]
    pub struct PinnedCert {
        fingerprint: [u8; 32],
        provider: Arc<rustls::crypto::CryptoProvider>,
    }

    impl PinnedCert {
        /// `fingerprint`: 64 hex digits of the certificate's SHA-256.
        pub fn new(fingerprint: &str) -> Result<Self, String> {
            let mut fp = [0u8; 32];
            hex::decode_to_slice(fingerprint.trim(), &mut fp)
                .map_err(|e| format!("bad certificate fingerprint: {e}"))?;
            Ok(PinnedCert {
                fingerprint: fp,
                provider: crypto_provider(),
            })
        }
    }

    impl ServerCertVerifier for PinnedCert {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: TlsTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            if Sha256::digest(end_entity.as_ref()).as_slice() == self.fingerprint {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General(
                    "server certificate does not match the pinned fingerprint".into(),
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

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    /// A client endpoint that pins `fingerprint`.
    pub fn endpoint(fingerprint: &str) -> Result<quinn::Endpoint, String> {
        let tls = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCert::new(fingerprint)?))
            .with_no_client_auth();
        let mut tls = tls;
        tls.alpn_protocols = vec![wire::ALPN.to_vec()];
        let quic = QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
        let mut ep = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
            .map_err(|e| e.to_string())?;
        ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        Ok(ep)
    }

    /// Connects to the server.
    pub async fn connect(
        ep: &quinn::Endpoint,
        server: SocketAddr,
    ) -> Result<quinn::Connection, String> {
        ep.connect(server, "localhost")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends raw bytes on a new stream and reads the raw answer (for tests of
    /// malformed input).
    pub async fn raw(conn: &quinn::Connection, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(bytes).await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        recv.read_to_end(MAX_REQUEST_BYTES)
            .await
            .map_err(|e| e.to_string())
    }

    /// One request, one response, on a new stream.
    pub async fn request(conn: &quinn::Connection, request: &Request) -> Result<Response, String> {
        let frame = codec::encode_frame(request).map_err(|e| e.to_string())?;
        let answer = raw(conn, &frame).await?;
        codec::decode_frame(&answer).map_err(|e| e.to_string())
    }
}
