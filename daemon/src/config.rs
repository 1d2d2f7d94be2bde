//! Configuration: a TOML file plus `PROMOS_LICD_*` environment overrides.
//!
//! ```toml
//! # /etc/promos-licd/promos-licd.toml
//! server = "license.promosnt.com:4433"        # host:port, UDP (QUIC)
//! # server = ["pls-a.example:4433", "pls-b.example:4433"]  # or several: tried in order,
//! #                                           # starting with the last one that answered
//! # server_name = "license.promosnt.com"      # TLS name; default: host part of `server`
//! server_cert_sha256 = "<64 hex digits>"      # pin: SHA-256 of the server certificate (DER)
//! # server_cert_sha256 = ["<a's pin>", "<b's pin>"]  # several servers: one pin for all or one each
//! # server_cert_der = "/etc/promos-licd/server.der"  # or: the certificate file to pin
//! trusted_keys = ["promos-ed25519-public:<64 hex digits>"]
//! license_number = "1921900019"               # optional: else from lic/licinfo.cfg
//! # token = "..."                             # optional: activates unattended at start
//! project_dir = "/opt/promos/proj/site"       # holds lic/ and bin/
//! data_dir = "/var/lib/promos-licd"
//! socket_path = "/run/promos-licd/promos-licd.sock"
//! socket_group = "promos"                     # group allowed to use the socket
//! socket_mode = "0660"
//! tick_secs = 30                              # how often stop times and dongles are re-checked
//! check_attempts = 4                          # attempts per check, backoff with jitter between
//! attempt_timeout_secs = 15                   # one attempt's time limit
//!
//! metrics_listen = "127.0.0.1:9465"             # Prometheus metrics; default: none
//!
//! [dongle]
//! backend = "hidapi"                          # or "simulated" (tests and demos only)
//! vendor_id = "0x096e"                        # USB ids of the ProMoS dongle
//! product_id = "0x0006"
//! # simulated_file = "/var/lib/promos-licd/SIMULATED-DONGLE"
//!
//! [peers]                                     # peer relay (other ProMoS hosts of the site)
//! listen = "0.0.0.0:4434"                     # UDP (QUIC) port for peers; none: only connect out
//! [[peers.peer]]
//! address = "10.0.0.2:4434"
//! public_key = "promos-ed25519-public:<64 hex digits>"   # `promos-licd peer-key` on that host
//! ```
//!
//! Environment overrides (same meaning, win over the file): `PROMOS_LICD_CONFIG`
//! (the file's path), `PROMOS_LICD_SERVER` (several: comma-separated),
//! `PROMOS_LICD_SERVER_NAME`, `PROMOS_LICD_SERVER_CERT_SHA256` (comma-separated
//! like the servers), `PROMOS_LICD_SERVER_CERT_DER`,
//! `PROMOS_LICD_TRUSTED_KEYS` (comma-separated), `PROMOS_LICD_LICENSE_NUMBER`,
//! `PROMOS_LICD_TOKEN`, `PROMOS_LICD_PROJECT_DIR`, `PROMOS_LICD_DATA_DIR`,
//! `PROMOS_LICD_SOCKET`, `PROMOS_LICD_SOCKET_GROUP`, `PROMOS_LICD_SOCKET_MODE`,
//! `PROMOS_LICD_TICK_SECS`, `PROMOS_LICD_DONGLE_BACKEND`,
//! `PROMOS_LICD_DONGLE_VENDOR_ID`, `PROMOS_LICD_DONGLE_PRODUCT_ID`,
//! `PROMOS_LICD_SIMULATED_DONGLE_FILE`, `PROMOS_LICD_PEER_LISTEN`,
//! `PROMOS_LICD_PEERS` (`address=public_key` pairs, comma-separated; replaces
//! the file's list), `PROMOS_LICD_METRICS_LISTEN` (an address, or `off`). Logging
//! is set before the file is read: `PROMOS_LICD_LOG` (a tracing filter) and
//! `PROMOS_LICD_LOG_JSON=1` (one JSON object per line).
//!
//! `PROMOS_LICD_TEST_HARDWARE_ID` is **test-only**: it replaces the computed
//! hardware ID so end-to-end tests can run two daemons on one machine. It has no
//! TOML key on purpose. `PROMOS_LICD_TEST_CLOCK_FILE` is **test-only** too: the
//! daemon's wall clock becomes the Unix time written in that file (re-read at
//! every reading), so a test can move several daemon processes through days
//! together. The clock-rollback rule still applies to it.
//! `PROMOS_LICD_SIMULATED_HARDWARE_FACTS` is **test-only** and SIMULATED: the
//! path of a file of `name=value` lines (`machine-id=...`, `dmi-uuid=...`,
//! `cpu=...`, `mac=...`, as `promos-licd hwid --facts` prints them) read at
//! start instead of this machine's facts; the hardware ID is computed from
//! them (unless `PROMOS_LICD_TEST_HARDWARE_ID` is set too), so a test can
//! replace a network card of a simulated host by editing a line. Without
//! it, a daemon with a test hardware ID sends no hardware facts (its ID is not
//! made of this machine's).

use keys::{HardwareId, LicenseNumber, PublicKey, TrustedKeys};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_SERVER: &str = "license.promosnt.com:4433";
pub const DEFAULT_SOCKET: &str = "/run/promos-licd/promos-licd.sock";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/promos-licd";
pub const DEFAULT_CONFIG: &str = "/etc/promos-licd/promos-licd.toml";
/// The test-only hardware ID override (see the module doc).
pub const TEST_HARDWARE_ID_ENV: &str = "PROMOS_LICD_TEST_HARDWARE_ID";
/// The test-only clock file (see the module doc).
pub const TEST_CLOCK_FILE_ENV: &str = "PROMOS_LICD_TEST_CLOCK_FILE";
/// The test-only, simulated hardware facts file (see the module doc).
pub const SIMULATED_HARDWARE_FACTS_ENV: &str = "PROMOS_LICD_SIMULATED_HARDWARE_FACTS";

/// The `name=value` lines of a simulated facts file (blank lines and `#`
/// comments left out).
pub fn read_fact_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Trust anchors a vendor's release build may carry, so a site enters only
/// license number and token: set at build time through the environment of
/// `cargo build` / `./scripts/package` (`PROMOS_LICD_BUILTIN_SERVER`,
/// `PROMOS_LICD_BUILTIN_SERVER_CERT_SHA256`, `PROMOS_LICD_BUILTIN_TRUSTED_KEYS`,
/// comma-separated). Each is used only where neither the file nor the
/// environment gives the key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuiltIn {
    pub server: Option<&'static str>,
    pub server_cert_sha256: Option<&'static str>,
    pub trusted_keys: Option<&'static str>,
}

/// What this binary was built with.
pub const BUILT_IN: BuiltIn = BuiltIn {
    server: option_env!("PROMOS_LICD_BUILTIN_SERVER"),
    server_cert_sha256: option_env!("PROMOS_LICD_BUILTIN_SERVER_CERT_SHA256"),
    trusted_keys: option_env!("PROMOS_LICD_BUILTIN_TRUSTED_KEYS"),
};

/// Another daemon of the site this one relays with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    /// `host:port` (UDP/QUIC).
    pub address: String,
    /// Its identity (`promos-licd peer-key` on that host).
    pub public_key: PublicKey,
}

/// The configuration could not be used; says which key and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Where dongles are looked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DongleBackend {
    /// Real USB HID dongles, enumerated by vendor and product ID.
    Hidapi {
        vendor_id: Option<u16>,
        product_id: Option<u16>,
    },
    /// SIMULATED dongle for tests and demos: the file's presence means "plugged
    /// in", its content is the serial. Never use on a real site.
    Simulated { file: PathBuf },
}

/// A built-in trust anchor that does not parse: the binary was built wrongly.
fn built_in_error(key: &'static str, e: ConfigError) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: format!(
            "the value built into this binary is invalid ({e}); set {key} in the configuration file, or rebuild with a valid PROMOS_LICD_BUILTIN_* value"
        ),
    }
}

/// How the server's certificate is pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPin(pub [u8; 32]);

/// The daemon's whole configuration, parsed.
#[derive(Clone, Debug)]
pub struct Config {
    /// The license server (the first of the list).
    pub server: String,
    pub server_name: Option<String>,
    pub cert_pin: Option<CertPin>,
    /// Further license servers of the same vendor (redundant servers), tried
    /// after `server` in this order, each with its pin (`None`: `cert_pin`).
    pub more_servers: Vec<(String, Option<CertPin>)>,
    pub trusted_keys: TrustedKeys,
    pub license_number: Option<LicenseNumber>,
    pub token: Option<wire::Token>,
    pub project_dir: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub socket_path: PathBuf,
    pub socket_group: Option<String>,
    pub socket_mode: u32,
    pub tick: Duration,
    /// Attempts per check (exponential backoff with jitter between them).
    pub check_attempts: u32,
    /// How long one attempt may take.
    pub attempt_timeout: Duration,
    pub dongle: DongleBackend,
    /// TEST-ONLY: replaces the computed hardware ID (see the module doc).
    pub test_hardware_id: Option<HardwareId>,
    /// TEST-ONLY, SIMULATED: the host's hardware facts as `name=value` lines
    /// instead of this machine's (see the module doc).
    pub simulated_hardware_facts: Option<Vec<String>>,
    /// Where peers connect to this daemon (none: it only connects out).
    pub peer_listen: Option<std::net::SocketAddr>,
    /// The site's other daemons: the only ones it talks to as peers.
    pub peers: Vec<PeerEntry>,
    /// Where Prometheus metrics are served (none: no metrics listener).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// TEST-ONLY: the wall clock is read from this file (see the module doc).
    pub test_clock_file: Option<PathBuf>,
}

/// A TOML value that is one string or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMore {
    One(String),
    More(Vec<String>),
}

impl OneOrMore {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMore::One(s) => vec![s],
            OneOrMore::More(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: Option<OneOrMore>,
    server_name: Option<String>,
    server_cert_sha256: Option<OneOrMore>,
    server_cert_der: Option<PathBuf>,
    #[serde(default)]
    trusted_keys: Vec<String>,
    license_number: Option<String>,
    token: Option<String>,
    project_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    socket_path: Option<PathBuf>,
    socket_group: Option<String>,
    socket_mode: Option<String>,
    tick_secs: Option<u64>,
    check_attempts: Option<u32>,
    attempt_timeout_secs: Option<u64>,
    metrics_listen: Option<String>,
    #[serde(default)]
    dongle: FileDongle,
    #[serde(default)]
    peers: FilePeers,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePeers {
    listen: Option<String>,
    #[serde(default)]
    peer: Vec<FilePeer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePeer {
    address: String,
    public_key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDongle {
    backend: Option<String>,
    vendor_id: Option<String>,
    product_id: Option<String>,
    simulated_file: Option<PathBuf>,
}

impl Config {
    /// A configuration with every default, for tests to adjust.
    pub fn with_defaults(data_dir: &Path) -> Config {
        Config {
            server: DEFAULT_SERVER.into(),
            server_name: None,
            cert_pin: None,
            more_servers: Vec::new(),
            trusted_keys: TrustedKeys::new(),
            license_number: None,
            token: None,
            project_dir: None,
            data_dir: data_dir.to_owned(),
            socket_path: PathBuf::from(DEFAULT_SOCKET),
            socket_group: None,
            socket_mode: 0o660,
            tick: Duration::from_secs(30),
            check_attempts: 4,
            attempt_timeout: crate::client::ATTEMPT_TIMEOUT,
            dongle: DongleBackend::Hidapi {
                vendor_id: None,
                product_id: None,
            },
            test_hardware_id: None,
            simulated_hardware_facts: None,
            peer_listen: None,
            peers: Vec::new(),
            metrics_listen: None,
            test_clock_file: None,
        }
    }

    /// Loads the config file (if `path` is given or `PROMOS_LICD_CONFIG` names
    /// one; the default path only if it exists) and applies `env` on top.
    pub fn load(
        path: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let explicit = path
            .map(Path::to_owned)
            .or_else(|| env.get("PROMOS_LICD_CONFIG").map(PathBuf::from));
        let file = match explicit {
            Some(p) => Some(read_file(&p)?),
            None if Path::new(DEFAULT_CONFIG).exists() => {
                Some(read_file(Path::new(DEFAULT_CONFIG))?)
            }
            None => None,
        };
        Self::from_parts(file.unwrap_or_default(), env, &BUILT_IN)
    }

    /// Parses TOML text (no file) and applies `env`; for tests.
    pub fn from_toml(text: &str, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        Self::from_toml_built_with(text, env, &BUILT_IN)
    }

    /// [`Config::from_toml`] for a binary built with `built_in`; for tests.
    pub fn from_toml_built_with(
        text: &str,
        env: &BTreeMap<String, String>,
        built_in: &BuiltIn,
    ) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        Self::from_parts(file, env, built_in)
    }

    fn from_parts(
        f: FileConfig,
        env: &BTreeMap<String, String>,
        built_in: &BuiltIn,
    ) -> Result<Config, ConfigError> {
        let e = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        let split = |text: String| -> Vec<String> {
            text.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let servers: Vec<String> = e("PROMOS_LICD_SERVER")
            .map(split)
            .or(f.server.map(OneOrMore::into_vec))
            .or(built_in.server.map(|s| vec![s.to_owned()]))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec![DEFAULT_SERVER.into()])
            .iter()
            .map(|s| normalize_server(s))
            .collect();
        let server_name = e("PROMOS_LICD_SERVER_NAME").or(f.server_name);
        let shas: Option<Vec<String>> = e("PROMOS_LICD_SERVER_CERT_SHA256")
            .map(split)
            .or(f.server_cert_sha256.map(OneOrMore::into_vec))
            .filter(|v| !v.is_empty());
        let der = e("PROMOS_LICD_SERVER_CERT_DER")
            .map(PathBuf::from)
            .or(f.server_cert_der);
        let pins: Vec<CertPin> = match (shas, der) {
            (Some(hexes), _) => hexes
                .iter()
                .map(|h| parse_pin(h))
                .collect::<Result<_, _>>()?,
            (None, None) if built_in.server_cert_sha256.is_some() => {
                let hex = built_in.server_cert_sha256.unwrap_or_default();
                vec![parse_pin(hex).map_err(|e| built_in_error("server_cert_sha256", e))?]
            }
            (None, Some(path)) => {
                let bytes = std::fs::read(&path).map_err(|err| ConfigError::Invalid {
                    key: "server_cert_der",
                    message: format!("cannot read {}: {err}", path.display()),
                })?;
                vec![CertPin(crate::client::sha256(&bytes))]
            }
            (None, None) => vec![],
        };
        if pins.len() > 1 && pins.len() != servers.len() {
            return Err(ConfigError::Invalid {
                key: "server_cert_sha256",
                message: format!(
                    "{} pins for {} servers: give one pin for all servers, or one per server in the order of `server`",
                    pins.len(),
                    servers.len()
                ),
            });
        }
        let cert_pin = pins.first().cloned();
        let mut servers = servers.into_iter();
        let server = servers.next().unwrap_or_else(|| DEFAULT_SERVER.into());
        let more_servers = servers
            .enumerate()
            .map(|(i, s)| (s, pins.get(i + 1).cloned()))
            .collect();
        let list = |text: &str| -> Vec<String> {
            text.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let (key_texts, from_build): (Vec<String>, bool) = match e("PROMOS_LICD_TRUSTED_KEYS") {
            Some(text) => (list(&text), false),
            None if !f.trusted_keys.is_empty() => (f.trusted_keys, false),
            None => (list(built_in.trusted_keys.unwrap_or_default()), true),
        };
        let mut trusted_keys = TrustedKeys::new();
        for k in key_texts {
            let key: PublicKey = k.parse().map_err(|message| {
                let e = ConfigError::Invalid {
                    key: "trusted_keys",
                    message,
                };
                if from_build {
                    built_in_error("trusted_keys", e)
                } else {
                    e
                }
            })?;
            trusted_keys.insert(key);
        }
        let license_number = e("PROMOS_LICD_LICENSE_NUMBER")
            .or(f.license_number)
            .map(|n| n.parse::<LicenseNumber>())
            .transpose()
            .map_err(|err| ConfigError::Invalid {
                key: "license_number",
                message: err.to_string(),
            })?;
        let token = e("PROMOS_LICD_TOKEN").or(f.token).map(wire::Token);
        let socket_mode = match e("PROMOS_LICD_SOCKET_MODE").or(f.socket_mode) {
            Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or(ConfigError::Invalid {
                    key: "socket_mode",
                    message: format!("{m:?} is not an octal mode like \"0660\""),
                })?,
            None => 0o660,
        };
        let tick_secs = match e("PROMOS_LICD_TICK_SECS") {
            Some(t) => t.parse().map_err(|_| ConfigError::Invalid {
                key: "tick_secs",
                message: format!("{t:?} is not a number"),
            })?,
            None => f.tick_secs.unwrap_or(30),
        };
        if tick_secs == 0 || tick_secs > 600 {
            // Stop times are enforced to the tick: more than 10 minutes would let a
            // 1-hour run overrun noticeably.
            return Err(ConfigError::Invalid {
                key: "tick_secs",
                message: "must be 1 to 600".into(),
            });
        }
        let backend = e("PROMOS_LICD_DONGLE_BACKEND")
            .or(f.dongle.backend)
            .unwrap_or_else(|| "hidapi".into());
        let dongle = match backend.as_str() {
            "hidapi" => DongleBackend::Hidapi {
                vendor_id: parse_usb_id(
                    "dongle.vendor_id",
                    e("PROMOS_LICD_DONGLE_VENDOR_ID").or(f.dongle.vendor_id),
                )?,
                product_id: parse_usb_id(
                    "dongle.product_id",
                    e("PROMOS_LICD_DONGLE_PRODUCT_ID").or(f.dongle.product_id),
                )?,
            },
            "simulated" => DongleBackend::Simulated {
                file: e("PROMOS_LICD_SIMULATED_DONGLE_FILE")
                    .map(PathBuf::from)
                    .or(f.dongle.simulated_file)
                    .ok_or(ConfigError::Invalid {
                        key: "dongle.simulated_file",
                        message: "the simulated dongle backend needs the path of its file".into(),
                    })?,
            },
            other => {
                return Err(ConfigError::Invalid {
                    key: "dongle.backend",
                    message: format!("{other:?}: expected \"hidapi\" or \"simulated\""),
                })
            }
        };
        let test_hardware_id = e(TEST_HARDWARE_ID_ENV)
            .map(|h| h.parse::<HardwareId>())
            .transpose()
            .map_err(|err| ConfigError::Invalid {
                key: TEST_HARDWARE_ID_ENV,
                message: err.to_string(),
            })?;
        let simulated_hardware_facts = e(SIMULATED_HARDWARE_FACTS_ENV)
            .map(|path| {
                std::fs::read_to_string(&path)
                    .map(|text| read_fact_lines(&text))
                    .map_err(|err| ConfigError::Invalid {
                        key: SIMULATED_HARDWARE_FACTS_ENV,
                        message: format!("{path}: {err}"),
                    })
            })
            .transpose()?;
        let peer_listen = e("PROMOS_LICD_PEER_LISTEN")
            .or(f.peers.listen)
            .map(|a| socket_addr("peers.listen", &a))
            .transpose()?;
        let metrics_listen = e("PROMOS_LICD_METRICS_LISTEN")
            .or(f.metrics_listen)
            .filter(|a| a != "off")
            .map(|a| socket_addr("metrics_listen", &a))
            .transpose()?;
        let peer_pairs: Vec<(String, String)> = match e("PROMOS_LICD_PEERS") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.split_once('=')
                        .map(|(a, k)| (a.trim().to_owned(), k.trim().to_owned()))
                        .ok_or(ConfigError::Invalid {
                            key: "PROMOS_LICD_PEERS",
                            message: format!("{p:?}: expected address=public_key"),
                        })
                })
                .collect::<Result<_, _>>()?,
            None => f
                .peers
                .peer
                .into_iter()
                .map(|p| (p.address, p.public_key))
                .collect(),
        };
        let mut peers = Vec::new();
        for (address, key) in peer_pairs {
            let public_key: PublicKey = key.parse().map_err(|message| ConfigError::Invalid {
                key: "peers.peer.public_key",
                message,
            })?;
            if address.rsplit_once(':').is_none() {
                return Err(ConfigError::Invalid {
                    key: "peers.peer.address",
                    message: format!("{address:?}: expected host:port"),
                });
            }
            peers.push(PeerEntry {
                address,
                public_key,
            });
        }
        Ok(Config {
            peer_listen,
            peers,
            metrics_listen,
            test_clock_file: e(TEST_CLOCK_FILE_ENV).map(PathBuf::from),
            server,
            server_name,
            cert_pin,
            more_servers,
            trusted_keys,
            license_number,
            token,
            project_dir: e("PROMOS_LICD_PROJECT_DIR")
                .map(PathBuf::from)
                .or(f.project_dir),
            data_dir: e("PROMOS_LICD_DATA_DIR")
                .map(PathBuf::from)
                .or(f.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            socket_path: e("PROMOS_LICD_SOCKET")
                .map(PathBuf::from)
                .or(f.socket_path)
                .unwrap_or_else(|| DEFAULT_SOCKET.into()),
            socket_group: e("PROMOS_LICD_SOCKET_GROUP").or(f.socket_group),
            socket_mode,
            tick: Duration::from_secs(tick_secs),
            check_attempts: f.check_attempts.unwrap_or(4).clamp(1, 10),
            attempt_timeout: f
                .attempt_timeout_secs
                .map_or(crate::client::ATTEMPT_TIMEOUT, |s| {
                    Duration::from_secs(s.clamp(1, 120))
                }),
            dongle,
            test_hardware_id,
            simulated_hardware_facts,
        })
    }

    /// Every configured server in order with its pin: `server` first.
    pub fn servers(&self) -> Vec<(String, Option<CertPin>)> {
        std::iter::once((self.server.clone(), self.cert_pin.clone()))
            .chain(
                self.more_servers
                    .iter()
                    .map(|(s, pin)| (s.clone(), pin.clone().or_else(|| self.cert_pin.clone()))),
            )
            .collect()
    }

    /// The TLS server name: `server_name`, else the host part of `server`.
    pub fn tls_name(&self) -> String {
        self.server_name
            .clone()
            .unwrap_or_else(|| host_part(&self.server))
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Accepts `host`, `host:port`, `https://host` (as the manual's dialog shows it)
/// and returns `host:port` with the default port 4433.
pub fn normalize_server(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("quic://"))
        .unwrap_or(s);
    let s = s.trim_end_matches('/');
    let has_port = match s.rsplit_once(':') {
        Some((host, port)) => {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    };
    if has_port {
        s.to_owned()
    } else {
        format!("{s}:4433")
    }
}

/// An `ip:port` value of `key`.
fn socket_addr(key: &'static str, a: &str) -> Result<std::net::SocketAddr, ConfigError> {
    a.parse().map_err(|err| ConfigError::Invalid {
        key,
        message: format!("{a:?}: {err} (expected ip:port)"),
    })
}

fn host_part(server: &str) -> String {
    match server.rsplit_once(':') {
        Some((host, _)) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        None => server.to_owned(),
    }
}

fn parse_pin(hex_text: &str) -> Result<CertPin, ConfigError> {
    let cleaned: String = hex_text
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect();
    let mut pin = [0u8; 32];
    hex::decode_to_slice(cleaned.to_ascii_lowercase(), &mut pin).map_err(|_| {
        ConfigError::Invalid {
            key: "server_cert_sha256",
            message: "expected the SHA-256 of the certificate as 64 hex digits (colons allowed)"
                .into(),
        }
    })?;
    Ok(CertPin(pin))
}

fn parse_usb_id(key: &'static str, v: Option<String>) -> Result<Option<u16>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    let t = v.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u16::from_str_radix(h, 16),
        None => u16::from_str_radix(t, 16),
    };
    parsed.map(Some).map_err(|_| ConfigError::Invalid {
        key,
        message: format!("{v:?} is not a USB id like \"0x096e\""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The example configuration the packages install
    /// (`/etc/promos-licd/promos-licd.toml`).
    const EXAMPLE: &str = include_str!("../../packaging/promos-licd/promos-licd.toml");

    /// The example with every commented key switched on (the placeholder keys
    /// replaced by a real one; one pin form only).
    fn example_uncommented(key: &PublicKey) -> String {
        EXAMPLE
            .lines()
            .filter(|l| !l.starts_with("#server_cert_der"))
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => {
                    rest.replace(
                        &format!("promos-ed25519-public:{}", "0".repeat(64)),
                        &key.to_string(),
                    )
                }
                _ => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_shipped_example_configuration_reads_as_is_and_with_every_key() {
        let as_is = Config::from_toml(EXAMPLE, &env(&[])).expect("the example as shipped");
        assert_eq!(
            format!("{as_is:?}"),
            format!("{:?}", Config::from_toml("", &env(&[])).expect("no file"))
        );
        let key = keys::SigningKeyPair::from_seed(&[3; 32]).public();
        let c = Config::from_toml(&example_uncommented(&key), &env(&[])).expect("every key on");
        assert_eq!(c.server, "license.promosnt.com:4433");
        assert_eq!(c.server_name.as_deref(), Some("license.promosnt.com"));
        assert!(c.cert_pin.is_some());
        assert_eq!(c.trusted_keys.active_ids(), vec![key.key_id()]);
        assert_eq!(
            c.license_number.map(|n| n.to_string()).as_deref(),
            Some("1921900019")
        );
        assert!(c.token.is_some());
        assert_eq!(c.project_dir, Some(PathBuf::from("/opt/promos/proj/site")));
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.socket_group.as_deref(), Some("promos"));
        assert_eq!(c.socket_mode, 0o660);
        assert_eq!(
            c.metrics_listen,
            Some("127.0.0.1:9465".parse().expect("addr"))
        );
        assert_eq!(c.peer_listen, Some("0.0.0.0:4434".parse().expect("addr")));
        assert_eq!(c.peers.len(), 1);
    }

    #[test]
    fn built_in_trust_anchors_apply_where_nothing_else_is_set() {
        let key = keys::SigningKeyPair::from_seed(&[4; 32]).public();
        let other = keys::SigningKeyPair::from_seed(&[5; 32]).public();
        let key_text: &'static str = Box::leak(key.to_string().into_boxed_str());
        let built = BuiltIn {
            server: Some("pls.vendor.example:4433"),
            server_cert_sha256: Some(
                "4902533e93790ac4b4b9ae92be108d3becf8d07b3f323764dd76d5d265335f8e",
            ),
            trusted_keys: Some(key_text),
        };
        // A site enters only license number and token.
        let c =
            Config::from_toml_built_with("license_number = \"1921900019\"\n", &env(&[]), &built)
                .expect("config");
        assert_eq!(c.server, "pls.vendor.example:4433");
        assert!(c.cert_pin.is_some());
        assert_eq!(c.trusted_keys.active_ids(), vec![key.key_id()]);
        // The file and the environment win.
        let text = format!("server = \"other.example:4433\"\ntrusted_keys = [\"{other}\"]\n");
        let c = Config::from_toml_built_with(&text, &env(&[]), &built).expect("config");
        assert_eq!(c.server, "other.example:4433");
        assert_eq!(c.trusted_keys.active_ids(), vec![other.key_id()]);
        let c = Config::from_toml_built_with(
            "",
            &env(&[("PROMOS_LICD_SERVER", "env.example:4433")]),
            &built,
        )
        .expect("config");
        assert_eq!(c.server, "env.example:4433");
        // A broken built-in value is a clear error naming where it came from.
        let broken = BuiltIn {
            trusted_keys: Some("not-a-key"),
            ..BuiltIn::default()
        };
        let err = Config::from_toml_built_with("", &env(&[]), &broken).expect_err("broken");
        assert!(err.to_string().contains("built into this binary"), "{err}");
        // Without built-in values nothing changes.
        let c = Config::from_toml_built_with("", &env(&[]), &BuiltIn::default()).expect("config");
        assert_eq!(c.server, DEFAULT_SERVER);
        assert!(c.trusted_keys.is_empty() && c.cert_pin.is_none());
    }

    #[test]
    fn several_servers_each_with_its_pin_or_one_for_all() {
        let (a, b) = ("ab".repeat(32), "cd".repeat(32));
        let c = Config::from_toml(
            &format!("server = [\"pls-a.example\", \"pls-b.example:5000\"]\nserver_cert_sha256 = [\"{a}\", \"{b}\"]\n"),
            &env(&[]),
        )
        .expect("a list");
        assert_eq!(
            c.servers(),
            vec![
                ("pls-a.example:4433".to_owned(), Some(CertPin([0xab; 32]))),
                ("pls-b.example:5000".to_owned(), Some(CertPin([0xcd; 32]))),
            ]
        );
        // One pin for all; the environment's comma-separated list wins.
        let c = Config::from_toml(
            &format!("server = \"x.example\"\nserver_cert_sha256 = \"{a}\"\n"),
            &env(&[(
                "PROMOS_LICD_SERVER",
                "pls-a.example, pls-b.example,pls-c.example",
            )]),
        )
        .expect("env list");
        let servers = c.servers();
        assert_eq!(servers.len(), 3);
        assert!(servers
            .iter()
            .all(|(_, pin)| *pin == Some(CertPin([0xab; 32]))));
        assert_eq!(servers[2].0, "pls-c.example:4433");
        // Two pins for three servers: which goes where is unclear, refused.
        let err = Config::from_toml(
            &format!("server = [\"a\", \"b\", \"c\"]\nserver_cert_sha256 = [\"{a}\", \"{b}\"]\n"),
            &env(&[]),
        )
        .expect_err("pins do not match");
        assert!(err.to_string().contains("one pin for all servers"), "{err}");
    }

    #[test]
    fn peers_from_toml_and_env() {
        let k1 = keys::SigningKeyPair::from_seed(&[1; 32]).public();
        let k2 = keys::SigningKeyPair::from_seed(&[2; 32]).public();
        let text = format!(
            "[peers]\nlisten = \"0.0.0.0:4434\"\n[[peers.peer]]\naddress = \"10.0.0.2:4434\"\npublic_key = \"{k1}\"\n"
        );
        let c = Config::from_toml(&text, &env(&[])).expect("config");
        assert_eq!(c.peer_listen, Some("0.0.0.0:4434".parse().expect("addr")));
        assert_eq!(
            c.peers,
            vec![PeerEntry {
                address: "10.0.0.2:4434".into(),
                public_key: k1
            }]
        );
        let list = format!("10.0.0.3:4434={k1}, host-c:4434={k2}");
        let c = Config::from_toml(
            &text,
            &env(&[
                ("PROMOS_LICD_PEERS", &list),
                ("PROMOS_LICD_PEER_LISTEN", "127.0.0.1:5000"),
            ]),
        )
        .expect("config");
        assert_eq!(c.peers.len(), 2, "the environment replaces the file's list");
        assert_eq!(
            (c.peers[1].address.as_str(), &c.peers[1].public_key),
            ("host-c:4434", &k2)
        );
        assert_eq!(c.peer_listen, Some("127.0.0.1:5000".parse().expect("addr")));
        for bad in [
            "10.0.0.3:4434",
            "10.0.0.3=promos-ed25519-public:00",
            "nohostport=x",
        ] {
            assert!(
                Config::from_toml("", &env(&[("PROMOS_LICD_PEERS", bad)])).is_err(),
                "{bad}"
            );
        }
        assert!(Config::from_toml("", &env(&[("PROMOS_LICD_PEER_LISTEN", "4434")])).is_err());
    }

    #[test]
    fn defaults_and_env_overrides() {
        let c = Config::from_toml("", &env(&[])).expect("empty config");
        assert_eq!(c.server, "license.promosnt.com:4433");
        assert_eq!(c.tls_name(), "license.promosnt.com");
        assert_eq!(
            c.socket_path,
            PathBuf::from("/run/promos-licd/promos-licd.sock")
        );
        assert_eq!(c.socket_mode, 0o660);
        assert!(matches!(
            c.dongle,
            DongleBackend::Hidapi {
                vendor_id: None,
                product_id: None
            }
        ));

        let number = LicenseNumber::from_body(192_190_001).expect("number");
        let toml = &format!(
            r#"
            server = "https://pls.example.ch"
            license_number = "{number}"
            socket_group = "promos"
            [dongle]
            backend = "hidapi"
            vendor_id = "0x096e"
            product_id = "0006"
        "#
        );
        let c = Config::from_toml(toml, &env(&[])).expect("config");
        assert_eq!(c.server, "pls.example.ch:4433");
        assert_eq!(c.license_number, Some(number));
        assert_eq!(c.socket_group.as_deref(), Some("promos"));
        assert_eq!(
            c.dongle,
            DongleBackend::Hidapi {
                vendor_id: Some(0x096e),
                product_id: Some(6)
            }
        );

        let c = Config::from_toml(
            toml,
            &env(&[
                ("PROMOS_LICD_SERVER", "127.0.0.1:5000"),
                ("PROMOS_LICD_DONGLE_BACKEND", "simulated"),
                ("PROMOS_LICD_SIMULATED_DONGLE_FILE", "/tmp/dongle"),
                (
                    "PROMOS_LICD_TEST_HARDWARE_ID",
                    "502c649d1171ad2e8705074ce97791db",
                ),
                ("PROMOS_LICD_SERVER_CERT_SHA256", &"ab".repeat(32)),
            ]),
        )
        .expect("env");
        assert_eq!(c.server, "127.0.0.1:5000");
        assert_eq!(c.tls_name(), "127.0.0.1");
        assert_eq!(
            c.dongle,
            DongleBackend::Simulated {
                file: "/tmp/dongle".into()
            }
        );
        assert_eq!(
            c.test_hardware_id.expect("test id").as_str(),
            "502c649d1171ad2e8705074ce97791db"
        );
        assert_eq!(c.cert_pin, Some(CertPin([0xab; 32])));
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("license_number = \"1234567890\"", "license_number"),
            ("trusted_keys = [\"nope\"]", "trusted_keys"),
            ("server_cert_sha256 = \"zz\"", "server_cert_sha256"),
            ("socket_mode = \"999\"", "socket_mode"),
            ("tick_secs = 0", "tick_secs"),
            ("[dongle]\nbackend = \"usb\"", "dongle.backend"),
            ("[dongle]\nbackend = \"simulated\"", "dongle.simulated_file"),
        ];
        for (toml, key) in cases {
            let err = Config::from_toml(toml, &env(&[])).expect_err(toml);
            assert!(err.to_string().contains(key), "{toml}: {err}");
        }
        let err = Config::from_toml("sever = \"typo\"", &env(&[])).expect_err("unknown key");
        assert!(err.to_string().contains("sever"), "{err}");
    }

    #[test]
    fn the_pin_can_come_from_the_certificate_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let der = dir.path().join("server.der");
        std::fs::write(&der, b"not really DER, but any bytes hash").expect("write");
        let c = Config::from_toml(
            &format!("server_cert_der = {:?}", der.display().to_string()),
            &env(&[]),
        )
        .expect("config");
        assert_eq!(
            c.cert_pin,
            Some(CertPin(crate::client::sha256(
                b"not really DER, but any bytes hash"
            )))
        );
        let err = Config::from_toml("server_cert_der = \"/nonexistent/server.der\"", &env(&[]))
            .expect_err("missing");
        assert!(err.to_string().contains("server_cert_der"), "{err}");
        // Colons and upper case are fine in the fingerprint.
        let colons = vec!["AB"; 32].join(":");
        let c = Config::from_toml(&format!("server_cert_sha256 = {colons:?}"), &env(&[]))
            .expect("colons");
        assert_eq!(c.cert_pin, Some(CertPin([0xab; 32])));
    }

    #[test]
    fn server_addresses_are_normalized() {
        assert_eq!(
            normalize_server("license.promosnt.com"),
            "license.promosnt.com:4433"
        );
        assert_eq!(
            normalize_server("https://license.promosnt.com/"),
            "license.promosnt.com:4433"
        );
        assert_eq!(normalize_server("10.0.0.1:9000"), "10.0.0.1:9000");
        assert_eq!(normalize_server("[::1]:9000"), "[::1]:9000");
    }
}
