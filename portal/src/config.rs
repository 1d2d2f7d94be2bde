//! Server configuration: a TOML file, then `PLS_...` environment overrides.
//!
//! Every key has a default, so no file is needed to start. Example (all defaults):
//!
//! ```toml
//! data_dir = "./pls-data"
//!
//! [quic]
//! listen = "0.0.0.0:4433"
//! server_names = ["localhost"]
//! idle_timeout_secs = 30
//! max_streams_per_connection = 8
//! max_connections_per_source = 256
//! activations_per_source_per_minute = 30
//!
//! [licensing]
//! hardware_tolerance = 1
//!
//! [metrics]
//! enabled = true
//! listen = "127.0.0.1:9464"
//!
//! [log]
//! filter = "info"
//! json = false
//!
//! [database]
//! # unset: SQLite in <data_dir>/pls.sqlite3; or PostgreSQL:
//! # url = "postgres://pls:secret@db.example/pls"
//! ```
//!
//! Environment overrides (applied after the file): `PLS_DATA_DIR`, `PLS_QUIC_LISTEN`,
//! `PLS_QUIC_SERVER_NAMES` (comma separated), `PLS_QUIC_MAX_CONNECTIONS_PER_SOURCE`,
//! `PLS_QUIC_ACTIVATIONS_PER_SOURCE_PER_MINUTE`, `PLS_PRICES` (path of the price
//! list), `PLS_METRICS_LISTEN` (an address, or `off`), `PLS_LOG` (a tracing filter such as
//! `info,portal=debug`), `PLS_LOG_JSON` (`1`/`true`), `PLS_DATABASE_URL` (a PostgreSQL URL or
//! key=value connection string; empty: SQLite), `PLS_HARDWARE_TOLERANCE`.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Holds the database (`db/`), the signing key, the QUIC certificate and the
    /// admin socket.
    pub data_dir: PathBuf,
    pub quic: QuicConfig,
    /// The web portal's listener, public address and email sender.
    pub http: crate::web::HttpConfig,
    /// SMTP server; without it emails go to the file outbox `<data_dir>/outbox`.
    pub smtp: Option<crate::mail::SmtpConfig>,
    /// The price list (a `prices.toml` like `pricing/prices.toml`); the list compiled
    /// into `pls` when unset.
    pub prices: Option<PathBuf>,
    /// The Prometheus metrics listener (loopback by default).
    pub metrics: crate::metrics::MetricsConfig,
    pub log: LogConfig,
    /// Which SQL engine holds the store.
    pub database: DatabaseConfig,
    /// The vendor's license rules that are settings.
    pub licensing: LicensingConfig,
}

/// The vendor's license rules that are settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LicensingConfig {
    /// Hosts whose hardware changes ([`crate::hardware`]): how many of the
    /// facts a hardware ID is made of may differ from the bound computer's
    /// for a check from a new hardware ID to move the binding there (a
    /// replaced network card is one). A changed machine-id is always another
    /// computer. 0: the manual's strict rule. Default 1.
    pub hardware_tolerance: u32,
}

impl Default for LicensingConfig {
    fn default() -> Self {
        LicensingConfig {
            hardware_tolerance: crate::hardware::DEFAULT_TOLERANCE,
        }
    }
}

/// The store's engine: SQLite in the data directory unless a PostgreSQL URL is
/// given.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host/db` or `host=a,b dbname=pls
    /// target_session_attrs=read-write`; unset: SQLite.
    pub url: Option<String>,
}

impl std::fmt::Debug for DatabaseConfig {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_deref().map(crate::store::redact_url))
            .finish()
    }
}

/// The QUIC endpoint for daemons.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuicConfig {
    pub listen: SocketAddr,
    /// DNS names (and IP addresses) the self-signed certificate names. Daemons pin
    /// the certificate's fingerprint, so these matter only for diagnostics tools.
    pub server_names: Vec<String>,
    /// A daemon opens a connection, sends one to three requests and leaves; 30 s of
    /// silence means it is gone (or a peer is holding a slot for nothing).
    pub idle_timeout_secs: u64,
    /// A daemon sends its requests one after another; a relaying daemon forwards a
    /// few peers' requests at once. 8 covers a relay for a site's hosts while
    /// keeping what one connection can make us hold at 8 x 64 KiB frames.
    pub max_streams_per_connection: u32,
    /// Many hosts of one site share one address (NAT, or a relay); 256 is far
    /// above a site's host count, yet stops one address from filling the server.
    pub max_connections_per_source: u32,
    /// Activations carry the token; limiting attempts per address makes guessing a
    /// 128-bit token hopeless twice over and keeps a runaway daemon from flooding
    /// the audit trail. A site activating its hosts needs a handful per minute.
    pub activations_per_source_per_minute: u32,
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing-subscriber `EnvFilter` directive.
    pub filter: String,
    /// One JSON object per line instead of text.
    pub json: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./pls-data"),
            quic: QuicConfig::default(),
            http: crate::web::HttpConfig::default(),
            smtp: None,
            prices: None,
            metrics: crate::metrics::MetricsConfig::default(),
            log: LogConfig::default(),
            database: DatabaseConfig::default(),
            licensing: LicensingConfig::default(),
        }
    }
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 4433)),
            server_names: vec!["localhost".into()],
            idle_timeout_secs: 30,
            max_streams_per_connection: 8,
            max_connections_per_source: 256,
            activations_per_source_per_minute: 30,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
            json: false,
        }
    }
}

/// The configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}={value:?} is not valid: {reason}")]
    Env {
        name: String,
        value: String,
        reason: String,
    },
}

impl Config {
    /// Reads `file` (if given) and applies the `PLS_...` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?
            }
            None => Config::default(),
        };
        for (name, value) in env {
            config.apply_env(&name, &value)?;
        }
        Ok(config)
    }

    fn apply_env(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |reason: String| ConfigError::Env {
            name: name.to_owned(),
            value: value.to_owned(),
            reason,
        };
        let number = |v: &str| v.trim().parse::<u32>().map_err(|e| bad(e.to_string()));
        match name {
            "PLS_DATA_DIR" => self.data_dir = PathBuf::from(value),
            "PLS_QUIC_LISTEN" => {
                self.quic.listen = value
                    .trim()
                    .parse()
                    .map_err(|e: std::net::AddrParseError| bad(e.to_string()))?
            }
            "PLS_QUIC_SERVER_NAMES" => {
                self.quic.server_names = value
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            }
            "PLS_QUIC_MAX_CONNECTIONS_PER_SOURCE" => {
                self.quic.max_connections_per_source = number(value)?
            }
            "PLS_QUIC_ACTIVATIONS_PER_SOURCE_PER_MINUTE" => {
                self.quic.activations_per_source_per_minute = number(value)?
            }
            "PLS_HTTP_LISTEN" => {
                self.http.listen = value
                    .parse()
                    .map_err(|e: std::net::AddrParseError| bad(e.to_string()))?
            }
            "PLS_PUBLIC_URL" => self.http.public_url = value.trim_end_matches('/').to_owned(),
            "PLS_TRUST_FORWARDED_FOR" => {
                self.http.trust_forwarded_for = flag(value).map_err(bad)?
            }
            "PLS_MAIL_FROM" => self.http.mail_from = value.to_owned(),
            "PLS_SMTP_HOST" => self.smtp_mut().host = value.to_owned(),
            "PLS_SMTP_PORT" => {
                self.smtp_mut().port = value
                    .parse()
                    .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?
            }
            "PLS_SMTP_TLS" => {
                self.smtp_mut().tls = match value {
                    "none" => crate::mail::SmtpTls::None,
                    "starttls" => crate::mail::SmtpTls::Starttls,
                    "tls" => crate::mail::SmtpTls::Tls,
                    _ => return Err(bad("expected none, starttls or tls".into())),
                }
            }
            "PLS_SMTP_USERNAME" => self.smtp_mut().username = Some(value.to_owned()),
            "PLS_SMTP_PASSWORD" => self.smtp_mut().password = Some(value.to_owned()),
            "PLS_PRICES" => self.prices = Some(PathBuf::from(value)),
            "PLS_METRICS_LISTEN" => match value.trim() {
                "off" | "" => self.metrics.enabled = false,
                addr => {
                    self.metrics.enabled = true;
                    self.metrics.listen = addr.parse().map_err(|e: std::net::AddrParseError| {
                        bad(format!("{e}; give an address like 127.0.0.1:9464, or off"))
                    })?
                }
            },
            "PLS_LOG" => self.log.filter = value.to_owned(),
            "PLS_DATABASE_URL" => {
                self.database.url = Some(value.trim().to_owned()).filter(|u| !u.is_empty())
            }
            "PLS_LOG_JSON" => self.log.json = flag(value).map_err(bad)?,
            "PLS_HARDWARE_TOLERANCE" => self.licensing.hardware_tolerance = number(value)?,
            _ => {}
        }
        Ok(())
    }

    /// The SQLite database file (`pls.sqlite3`).
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join(crate::store::DB_FILE)
    }

    /// Opens the configured store: PostgreSQL at `[database] url`, otherwise
    /// SQLite in the data directory.
    pub fn open_store(&self) -> Result<crate::store::Store, crate::store::OpenError> {
        match &self.database.url {
            Some(url) => crate::store::Store::open_url(url),
            None => crate::store::Store::open(&self.db_path()),
        }
    }
    /// Where the old sled store lived (`pls admin import-sled` reads it).
    pub fn sled_dir(&self) -> PathBuf {
        self.data_dir.join("db")
    }
    pub fn signing_key_path(&self) -> PathBuf {
        self.data_dir.join("signing.key")
    }
    pub fn public_key_path(&self) -> PathBuf {
        self.data_dir.join("signing.pub")
    }
    pub fn cert_path(&self) -> PathBuf {
        self.data_dir.join("quic-cert.der")
    }
    /// The admin socket `pls admin` uses while the server runs.
    pub fn admin_socket_path(&self) -> PathBuf {
        self.data_dir.join("admin.sock")
    }
    /// Where emails go when no SMTP server is configured: one `.eml` per message.
    pub fn outbox_dir(&self) -> PathBuf {
        self.data_dir.join("outbox")
    }

    /// The SMTP section, created by the first `PLS_SMTP_*` variable.
    fn smtp_mut(&mut self) -> &mut crate::mail::SmtpConfig {
        self.smtp.get_or_insert_with(|| crate::mail::SmtpConfig {
            host: String::new(),
            port: 587,
            tls: crate::mail::SmtpTls::Starttls,
            username: None,
            password: None,
        })
    }
}

/// A yes/no environment value.
fn flag(value: &str) -> Result<bool, String> {
    match value.trim() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" | "" => Ok(false),
        other => Err(format!("{other:?} is not a boolean (use true or false)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example configuration the packages install (`/etc/pls/pls.toml`).
    const EXAMPLE: &str = include_str!("../../packaging/pls/pls.toml");

    #[test]
    fn the_shipped_example_configuration_reads_as_is_and_with_every_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pls.toml");
        std::fs::write(&file, EXAMPLE).expect("write");
        let as_is = Config::load(Some(&file), Vec::new()).expect("the example as shipped");
        assert_eq!(as_is, Config::default());
        // Every key switched on: each value given is the default or a valid example.
        let on: String = EXAMPLE
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&file, on).expect("write");
        let c = Config::load(Some(&file), Vec::new()).expect("every key on");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/pls"));
        assert_eq!(c.quic, Config::default().quic);
        assert_eq!(c.http, Config::default().http);
        assert_eq!(c.metrics, Config::default().metrics);
        assert_eq!(c.log, Config::default().log);
        assert_eq!(c.licensing.hardware_tolerance, 1);
        assert_eq!(c.prices, Some(PathBuf::from("/etc/pls/prices.toml")));
        let smtp = c.smtp.expect("smtp");
        assert_eq!((smtp.host.as_str(), smtp.port), ("smtp.example.com", 587));
    }

    #[test]
    fn defaults_file_and_env_layer_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pls.toml");
        std::fs::write(
            &file,
            "data_dir = \"/srv/pls\"\n[quic]\nlisten = \"127.0.0.1:5000\"\n",
        )
        .expect("write");
        let env = vec![
            ("PLS_QUIC_LISTEN".to_owned(), "[::1]:6000".to_owned()),
            ("PLS_LOG_JSON".to_owned(), "true".to_owned()),
            ("PLS_HARDWARE_TOLERANCE".to_owned(), "0".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        let c = Config::load(Some(&file), env).expect("load");
        assert_eq!(c.data_dir, PathBuf::from("/srv/pls"));
        assert_eq!(c.quic.listen, "[::1]:6000".parse().expect("addr"));
        assert_eq!(c.quic.idle_timeout_secs, 30);
        assert!(c.log.json);
        assert_eq!(
            c.licensing.hardware_tolerance, 0,
            "strict, from the environment"
        );
        assert_eq!(Config::default().licensing.hardware_tolerance, 1);
        assert_eq!(
            Config::load(None, vec![]).expect("defaults"),
            Config::default()
        );
        assert_eq!(Config::default().quic.listen.port(), 4433);
    }

    #[test]
    fn the_metrics_listener_is_on_loopback_by_default_and_can_be_moved_or_switched_off() {
        let c = Config::default();
        assert!(c.metrics.enabled);
        assert!(c.metrics.listen.ip().is_loopback());
        let moved = Config::load(
            None,
            vec![("PLS_METRICS_LISTEN".into(), "0.0.0.0:9000".into())],
        )
        .expect("moved");
        assert_eq!(moved.metrics.listen, "0.0.0.0:9000".parse().expect("addr"));
        let off =
            Config::load(None, vec![("PLS_METRICS_LISTEN".into(), "off".into())]).expect("off");
        assert!(!off.metrics.enabled);
        let e = Config::load(None, vec![("PLS_METRICS_LISTEN".into(), "9464".into())])
            .expect_err("a port alone is not an address");
        assert!(e.to_string().contains("127.0.0.1:9464, or off"), "{e}");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pls.toml");
        std::fs::write(&file, "[metrics]\nenabled = false\n").expect("write");
        assert!(
            !Config::load(Some(&file), vec![])
                .expect("file")
                .metrics
                .enabled
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pls.toml");
        std::fs::write(&file, "[quic]\nlisten_addr = \"x\"\n").expect("write");
        let e = Config::load(Some(&file), vec![]).expect_err("unknown key");
        assert!(e.to_string().contains("listen_addr"), "{e}");
        let e = Config::load(None, vec![("PLS_QUIC_LISTEN".into(), "nowhere".into())])
            .expect_err("bad");
        assert!(e.to_string().contains("PLS_QUIC_LISTEN"), "{e}");
    }

    #[test]
    fn web_portal_and_smtp_settings_from_file_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pls.toml");
        std::fs::write(
            &file,
            "[http]\npublic_url = \"https://license.example.com\"\n[smtp]\nhost = \"smtp.example.com\"\n",
        )
        .expect("write");
        let c = Config::load(
            Some(&file),
            vec![
                ("PLS_HTTP_LISTEN".into(), "127.0.0.1:9090".into()),
                ("PLS_TRUST_FORWARDED_FOR".into(), "true".into()),
                ("PLS_SMTP_PORT".into(), "465".into()),
                ("PLS_SMTP_TLS".into(), "tls".into()),
                ("PLS_SMTP_USERNAME".into(), "pls".into()),
            ],
        )
        .expect("valid");
        assert_eq!(c.http.listen, "127.0.0.1:9090".parse().expect("addr"));
        assert_eq!(c.http.public_url, "https://license.example.com");
        assert!(c.http.trust_forwarded_for);
        let smtp = c.smtp.expect("smtp");
        assert_eq!((smtp.host.as_str(), smtp.port), ("smtp.example.com", 465));
        assert_eq!(smtp.tls, crate::mail::SmtpTls::Tls);
        assert_eq!(smtp.username.as_deref(), Some("pls"));
        // Defaults: loopback portal, file outbox.
        let d = Config::default();
        assert_eq!(d.http.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert!(d.smtp.is_none());
        let e = Config::load(None, vec![("PLS_SMTP_TLS".into(), "maybe".into())]).expect_err("bad");
        assert!(e.to_string().contains("PLS_SMTP_TLS"), "{e}");
    }
}
