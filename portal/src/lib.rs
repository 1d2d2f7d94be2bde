//! The ProMoS license server ("PLS").
//!
//! - [`config`]: TOML file plus `PLS_...` environment overrides;
//! - [`identity`]: the signing key and the QUIC certificate, created on first start;
//! - [`domain`]: the license lifecycle as pure functions (numbers, tokens,
//!   mutations, binding, reset, engineering validity, upgrades);
//! - [`store`]: the SQLite database, its migrations, one transaction per
//!   lifecycle write, backups and restores; [`import_sled`] reads the old sled store;
//! - [`service`]: answers daemon requests (signed grants, receipts, refusals);
//! - [`quic`]: the quinn endpoint and its limits, and a small pinned client;
//! - [`admin`]: the vendor's commands and the local admin socket;
//! - [`daemon_config`]: the `promos-licd.toml` a daemon of this server needs;
//! - [`license_file`]: the signed license file of a hardware-dongle license;
//! - [`metrics`]: Prometheus metrics on their own (loopback) listener.
//!
//! [`Server::bind`] then [`Server::run`] (or [`run`]) is the whole server; `main.rs`
//! only parses the command line. The web portal ([`web`], with [`mail`]) runs in
//! the same process, next to the QUIC endpoint.

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod daemon_config;
pub mod demo;
pub mod domain;
#[doc(hidden)]
pub mod fuzzing;
pub mod hardware;
pub mod identity;
pub mod import_sled;
pub mod license_file;
pub mod mail;
pub mod metrics;
pub mod quic;
pub mod search;
pub mod service;
pub mod store;
pub mod web;

use crate::admin::AdminContext;
use crate::config::Config;
use crate::identity::{Identity, IdentityError};
use crate::service::Service;
use crate::store::{OpenError, Store};
use keys::Clock;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

/// How often quotes past their validity are marked expired. Hourly is plenty for
/// a validity counted in months.
/// How often quotes are expired and renewal reminders sent.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(600);

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Store(#[from] OpenError),
    #[error("another pls serve runs on this data directory (its admin socket {0} answers); stop it first")]
    AlreadyRunning(String),
    #[error(transparent)]
    Quic(#[from] quic::QuicSetupError),
    #[error("cannot start the email sender: {0}")]
    Mail(String),
    #[error("price list: {0}")]
    Prices(String),
    #[error("cannot listen for the web portal on {addr}: {reason}")]
    Http { addr: SocketAddr, reason: String },
    #[error("cannot listen for metrics on {addr}: {reason} (set [metrics] listen or PLS_METRICS_LISTEN to a free address, or off)")]
    Metrics { addr: SocketAddr, reason: String },
    #[error("cannot listen on the admin socket {path}: {source}")]
    AdminSocket {
        path: String,
        source: std::io::Error,
    },
}

/// Runs blocking work (the store, argon2) on tokio's blocking pool, never on an
/// async worker thread; a panic in it continues in the caller.
/// The daemon-facing service for `pls admin offline-answer` on a stopped
/// server's database: the configured hardware tolerance, and the "Hardware
/// geändert" email composed as the server composes it and queued with the
/// move (the server sends it when it runs again). Blocking (reads the store).
pub fn standalone_daemon_service(
    config: &Config,
    store: Arc<Store>,
    key: Arc<keys::SigningKeyPair>,
    clock: Arc<dyn Clock>,
) -> Result<Arc<Service>, String> {
    let mailer =
        mail::Mailer::from_config(&store, config, Arc::clone(&clock)).map_err(|e| e.to_string())?;
    let web = web::Web::new(
        Arc::clone(&store),
        Arc::clone(&clock),
        Arc::new(mailer),
        config.http.clone(),
        Arc::clone(&key),
    )
    .map_err(|e| e.to_string())?
    .with_hardware_tolerance(config.licensing.hardware_tolerance);
    Ok(Arc::new(Arc::new(web).daemon_service()))
}

pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(t) => t,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("a blocking task was cancelled: {e}"),
        },
    }
}

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    config: Config,
    /// What the daemons need (the real QUIC port when bound to 0).
    daemon_settings: daemon_config::DaemonSettings,
    identity: Identity,
    store: Arc<Store>,
    service: Arc<Service>,
    clock: Arc<dyn Clock>,
    endpoint: quinn::Endpoint,
    admin: tokio::net::UnixListener,
    web: Arc<web::Web>,
    http: web::HttpListener,
    metrics: Option<web::HttpListener>,
}

impl Server {
    /// Creates or loads the data directory, opens the store, binds the QUIC
    /// endpoint and the admin socket. Must be called inside a tokio runtime.
    pub async fn bind(config: Config, clock: Arc<dyn Clock>) -> Result<Server, StartError> {
        let identity = Identity::load_or_create(&config)?;
        let _ = std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700));
        let store = Arc::new({
            let config = config.clone();
            blocking(move || config.open_store()).await?
        });
        let registry = Arc::new(metrics::Metrics::new());
        let endpoint = quic::bind(&identity, &config.quic)?;
        let daemon_settings = daemon_config::DaemonSettings::new(
            &config.quic,
            endpoint.local_addr().unwrap_or(config.quic.listen),
            &identity,
        );
        let sock = config.admin_socket_path();
        // A socket that answers belongs to a server on this data directory.
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            return Err(StartError::AlreadyRunning(sock.display().to_string()));
        }
        // Nobody answers: a socket file left here is stale.
        let _ = std::fs::remove_file(&sock);
        let sock_err = |source| StartError::AdminSocket {
            path: sock.display().to_string(),
            source,
        };
        let admin = tokio::net::UnixListener::bind(&sock).map_err(sock_err)?;
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
            .map_err(sock_err)?;
        let prices = match &config.prices {
            Some(path) => {
                pricing::PriceList::load(path).map_err(|e| StartError::Prices(e.to_string()))?
            }
            None => pricing::PriceList::embedded(),
        };
        if prices.has_placeholders() {
            tracing::warn!("the price list contains placeholder prices (marked `placeholder = true`); replace them before selling (README, \"Prices\")");
        }
        let mailer = mail::Mailer::from_config(&store, &config, Arc::clone(&clock))
            .map_err(|e| StartError::Mail(e.to_string()))?
            .with_metrics(Arc::clone(&registry));
        // Web::new reads the store (the CSRF key): on a blocking thread.
        let web = {
            let (store, clock, http, key) = (
                Arc::clone(&store),
                Arc::clone(&clock),
                config.http.clone(),
                Arc::clone(&identity.key),
            );
            blocking(move || web::Web::new(store, clock, Arc::new(mailer), http, key))
                .await
                .map_err(|e| StartError::Mail(e.to_string()))?
        };
        let web = Arc::new(
            web.with_prices(prices)
                .with_metrics(Arc::clone(&registry))
                .with_daemon_settings(daemon_settings.clone())
                .with_hardware_tolerance(config.licensing.hardware_tolerance),
        );
        // The daemons' service: a binding that follows a changed host emails
        // the customer through the portal's mail queue and templates.
        // The email is queued in the move's own transaction.
        let hook = web::emails::hardware_change_hook(&web);
        let service = Arc::new(
            Service::new(
                Arc::clone(&store),
                Arc::clone(&identity.key),
                Arc::clone(&clock),
                config.quic.activations_per_source_per_minute,
            )
            .with_metrics(Arc::clone(&registry))
            .with_hardware_tolerance(config.licensing.hardware_tolerance)
            .with_hardware_change_hook(hook),
        );
        let http = web::HttpListener::bind(Arc::clone(&web)).map_err(|e| StartError::Http {
            addr: config.http.listen,
            reason: e.to_string(),
        })?;
        let metrics = match config.metrics.enabled {
            false => None,
            true => Some(
                web::HttpListener::bind_metrics(config.metrics.listen, Arc::clone(&web)).map_err(
                    |e| StartError::Metrics {
                        addr: config.metrics.listen,
                        reason: e.to_string(),
                    },
                )?,
            ),
        };
        Ok(Server {
            config,
            daemon_settings,
            identity,
            store,
            service,
            clock,
            endpoint,
            admin,
            web,
            http,
            metrics,
        })
    }

    /// The address metrics are served on (the real port when bound to 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.addr)
    }

    /// The address the web portal listens on (the real port when bound to 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http.addr
    }

    /// The web portal's shared state (store, mailer, sessions).
    pub fn web(&self) -> Arc<web::Web> {
        Arc::clone(&self.web)
    }

    /// The address the QUIC endpoint listens on (the real port when bound to 0).
    pub fn quic_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .unwrap_or(self.config.quic.listen)
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The `promos-licd.toml` settings of this server (see [`daemon_config`]).
    pub fn daemon_settings(&self) -> &daemon_config::DaemonSettings {
        &self.daemon_settings
    }

    pub fn store(&self) -> Arc<Store> {
        Arc::clone(&self.store)
    }

    /// What the admin commands need (for the web portal's admin pages too).
    pub fn admin_context(&self) -> AdminContext {
        AdminContext {
            store: Arc::clone(&self.store),
            key: Arc::clone(&self.identity.key),
            clock: Arc::clone(&self.clock),
            identity: self.identity.operator_notice(),
            daemon: self.daemon_settings.clone(),
            daemon_service: Some(Arc::clone(&self.service)),
        }
    }

    /// Serves until `shutdown` completes, then closes the endpoint, removes the
    /// admin socket and flushes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), store::StoreError> {
        let licenses = {
            let store = Arc::clone(&self.store);
            blocking(move || store.license_count()).await?
        };
        tracing::info!(
            http = %self.http_addr(),
            quic = %self.quic_addr(),
            metrics = %self.metrics_addr().map_or("off".to_owned(), |a| a.to_string()),
            key_id = %self.identity.key.key_id(),
            cert_sha256 = %self.identity.cert_fingerprint(),
            licenses,
            "license server running"
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let admin_stop = stop_rx.clone();
        let quic_task = tokio::spawn(quic::serve(
            self.endpoint.clone(),
            Arc::clone(&self.service),
            self.config.quic.clone(),
            stop_rx,
        ));
        let admin_ctx = self.admin_context();
        let admin_task = tokio::spawn(admin::serve_socket(self.admin, admin_ctx, admin_stop));
        let web = Arc::clone(&self.web);
        let expiry_task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
            loop {
                tick.tick().await;
                let web = Arc::clone(&web);
                match tokio::task::spawn_blocking(move || web.housekeeping()).await {
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "housekeeping (quote expiry, renewal reminders) failed")
                    }
                    Err(e) => tracing::error!(error = %e, "housekeeping task failed"),
                    Ok(Ok(())) => {}
                }
            }
        });
        let (mail_stop_tx, mail_stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mail_task = tokio::spawn(Arc::clone(&self.web.mailer).run(async move {
            let _ = mail_stop_rx.await;
        }));
        let (http_stop, http_task) = self.http.spawn();
        let metrics = self.metrics.map(web::HttpListener::spawn);
        shutdown.await;
        tracing::info!("shutting down");
        let _ = http_stop.send(());
        let _ = http_task.await;
        if let Some((stop, task)) = metrics {
            let _ = stop.send(());
            let _ = task.await;
        }
        let _ = mail_stop_tx.send(());
        let _ = mail_task.await;
        let _ = stop_tx.send(true);
        let _ = quic_task.await;
        // Every admin command already accepted is carried out and answered.
        let _ = admin_task.await;
        expiry_task.abort();
        let _ = std::fs::remove_file(self.config.admin_socket_path());
        let store = Arc::clone(&self.store);
        blocking(move || store.flush()).await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The error of [`run`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// Binds and runs the server until `shutdown` completes.
pub async fn run(
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let server = Server::bind(config, clock).await?;
    if server.identity().created {
        println!("{}", server.identity().operator_notice());
    }
    server.run(shutdown).await?;
    Ok(())
}
